//! Moving a SKU's stock row between its home shard and the hot instance, and switching its
//! routing, without losing or doubling a sale. Start at [`HotMoves::run`]; `docs/flash-sale.md`
//! ("Moving a SKU's row") is the user's side.
//!
//! One move, in order:
//! 1. **Close the SKU's gate** (`hotmove/gate.rs`): statements naming the SKU that arrive now wait
//!    (up to `move_wait_ms`, then ERR 1205 "being moved, retry"); the move waits up to
//!    `move_drain_ms` for those already in flight to finish: autocommit statements, hot-row queue
//!    batches (their clients hold passes until answered) and open transactions that touched the
//!    SKU. Past that the move is refused and nothing has changed.
//! 2. **Copy under lock**: on the source, `BEGIN; SELECT * ... FOR UPDATE` (so nothing that bypasses
//!    the gate, such as a range UPDATE or a direct client, changes the row meanwhile); on the
//!    destination, `BEGIN`, delete whatever it holds for the SKU (a stale copy), insert the rows;
//!    on the source, delete them. The source keeps no copy: a second copy would be counted by
//!    scans on the home shard and could not be told from the live row after a restart.
//! 3. **Commit the destination, then the source.** A failure before the destination's COMMIT
//!    rolls both back: nothing changed. Once the destination committed, it holds exactly what the
//!    locked source held and nothing wrote either since, so routing to it is right whatever
//!    happens to the source's COMMIT; a failed source COMMIT only leaves a stale copy behind.
//!    The reverse order could lose the row (deleted at the source, not committed at the
//!    destination).
//! 4. **Switch routing** (the registry), reset the row's hot-row queue and sold-out state, open
//!    the gate: the waiting statements run where the row now is.
//!
//! If the proxy dies mid-move the servers roll back what was not committed; at the next start
//! [`restore`] routes every SKU that has a row on the hot instance there, so the row is found
//! where it is in every crash window (see the runbook in `docs/operations.md`).

pub mod gate;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use peakgate_router::hotspot::{HotEvent, HotRegistry, Origin};
use serde::Serialize;
use tracing::{info, warn};

use crate::backend::conn::{Column, Reply};
use crate::backend::{Error, PooledConn};
use crate::metrics::METRICS;
use crate::server::Shared;
use gate::{CloseError, MoveGates};

/// Where a row goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The hot instance.
    Hot,
    /// The home shard (`routing.default_shard`, where the stock table's normal rows live).
    Home,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Hot => "hot",
            Side::Home => "home",
        }
    }

    pub fn parse(s: &str) -> Option<Side> {
        match s {
            "hot" => Some(Side::Hot),
            "home" => Some(Side::Home),
            _ => None,
        }
    }
}

/// Who asked for a move, and how routing switches once the row is in place.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    /// `POST /hotspot/move`: a missing source row is an error.
    AdminMove,
    /// `POST /hotspot?action=add|remove`: a missing source row only switches routing.
    AdminMark,
    /// Detection's proposal (`auto_move`).
    Detection(HotEvent),
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::AdminMove | Trigger::AdminMark => "admin",
            Trigger::Detection(_) => "detection",
        }
    }

    /// Switches routing in the registry to where the row now is (the gate is closed). A
    /// demotion whose SKU the admin pinned meanwhile still goes home: routing follows the row.
    fn switch(self, hot: &HotRegistry, sku: u64, to: Side) {
        match (self, to) {
            (Trigger::Detection(e), _) if hot.apply(&e) => {}
            (_, Side::Hot) => {
                hot.add(sku);
            }
            (_, Side::Home) => {
                hot.remove(sku);
            }
        }
    }
}

/// Why a move did not happen. In every case but [`MoveError::Stale`]'s note routing is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("no [hotspot] with a hot instance is configured")]
    NotConfigured,
    #[error("hotspot.table = \"{0}\" has no schema: write schema.table to move rows")]
    NoSchema(String),
    #[error("SKU {sku} is already routed to the {} side", .to.as_str())]
    AlreadyThere { sku: u64, to: Side },
    #[error("no row for SKU {sku} in {table} on {at}; nothing moved{also}")]
    NoRow {
        sku: u64,
        table: String,
        at: String,
        also: String,
    },
    #[error("SKU {0} is configured or pinned by the admin: detection does not move it")]
    Pinned(u64),
    #[error("another move of SKU {0} is running")]
    Moving(u64),
    #[error(
        "SKU {sku} is still in use by {active} statement(s) or open transaction(s) after \
         hotspot.move_drain_ms = {ms} ms; nothing moved, retry when they have finished"
    )]
    Busy { sku: u64, active: u32, ms: u64 },
    #[error("moving SKU {sku} failed at {step} ({error}); nothing changed{note}")]
    Failed {
        sku: u64,
        step: String,
        error: String,
        note: String,
    },
}

impl MoveError {
    /// Whether the request could never work as asked (HTTP 422) rather than failing now (409/503).
    pub fn http_code(&self) -> u16 {
        match self {
            MoveError::NotConfigured
            | MoveError::NoSchema(_)
            | MoveError::AlreadyThere { .. }
            | MoveError::NoRow { .. }
            | MoveError::Pinned(_) => 422,
            MoveError::Moving(_) | MoveError::Busy { .. } => 409,
            MoveError::Failed { .. } => 503,
        }
    }

    fn result(&self) -> &'static str {
        match self {
            MoveError::Busy { .. } | MoveError::Moving(_) => "refused",
            MoveError::Failed { .. } => "failed",
            _ => "invalid",
        }
    }
}

/// A finished move.
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    pub sku: u64,
    pub to: Side,
    /// Rows copied (0: the source had none, only routing switched).
    pub rows: u64,
    /// How long the gate was closed, ms.
    pub closed_ms: u64,
    /// Something an operator should clean up (a stale source copy), if any.
    pub warning: Option<String>,
}

/// Which SKU goes where, and who asked.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MoveHead {
    pub sku: u64,
    pub to: Side,
    /// `admin` or `detection`.
    pub trigger: &'static str,
}

/// A finished move as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MoveRecord {
    #[serde(flatten)]
    pub head: MoveHead,
    /// `done`, `refused` (busy SKU), `failed` (a server failed; nothing changed) or `invalid`.
    pub result: &'static str,
    pub rows: u64,
    pub took_ms: u64,
    /// Milliseconds since the unix epoch when it ended.
    pub at_unix_ms: u64,
    pub detail: String,
}

/// A move in progress as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Running {
    #[serde(flatten)]
    pub head: MoveHead,
    /// `draining` (waiting for statements using the SKU) or `copying`.
    pub phase: &'static str,
    pub since_unix_ms: u64,
}

/// Moves kept for `/status`.
const RECENT: usize = 32;

/// The moves of one proxy: the SKU gates, what runs now and what ran lately.
#[derive(Debug)]
pub struct HotMoves {
    pub gates: Arc<MoveGates>,
    log: Mutex<Log>,
    waited: AtomicU64,
    refused: AtomicU64,
}

#[derive(Debug, Default)]
struct Log {
    running: BTreeMap<u64, Running>,
    recent: VecDeque<MoveRecord>,
    /// Finished moves by result.
    results: BTreeMap<&'static str, u64>,
}

/// This proxy's moves for `/status` (the metrics count every proxy of the process).
#[derive(Debug, Clone, Serialize)]
pub struct MovesStatus {
    pub running: Vec<Running>,
    /// The latest finished moves, newest first.
    pub recent: Vec<MoveRecord>,
    /// Finished moves by result (`done`, `refused`, `failed`, `invalid`).
    pub results: BTreeMap<&'static str, u64>,
    /// Statements that waited at a closed gate, and those refused after `move_wait_ms`.
    pub statements_waited: u64,
    pub statements_refused: u64,
}

impl HotMoves {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            gates: MoveGates::new(),
            log: Mutex::new(Log::default()),
            waited: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves in progress, the latest finished ones and the counts.
    pub fn status(&self) -> MovesStatus {
        let log = self.log();
        MovesStatus {
            running: log.running.values().cloned().collect(),
            recent: log.recent.iter().rev().cloned().collect(),
            results: log.results.clone(),
            statements_waited: self.waited.load(Ordering::Relaxed),
            statements_refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// A statement waited at a closed gate (`refused`: and was refused after `move_wait_ms`).
    pub fn note_statement(&self, refused: bool) {
        if refused {
            self.refused.fetch_add(1, Ordering::Relaxed);
            METRICS.hot_move_refusals.inc();
        } else {
            self.waited.fetch_add(1, Ordering::Relaxed);
            METRICS.hot_move_waits.inc();
        }
    }

    fn phase(&self, sku: u64, phase: &'static str) {
        if let Some(r) = self.log().running.get_mut(&sku) {
            r.phase = phase;
        }
    }

    /// Moves `sku`'s row to `to` and switches its routing (see the module doc). Never cancel the
    /// future half-way: run it in a task of its own.
    pub async fn run(
        &self,
        shared: &Shared,
        sku: u64,
        to: Side,
        trigger: Trigger,
    ) -> Result<Moved, MoveError> {
        let started = Instant::now();
        let head = MoveHead {
            sku,
            to,
            trigger: trigger.as_str(),
        };
        self.log().running.insert(
            sku,
            Running {
                head,
                phase: "draining",
                since_unix_ms: crate::frontend::now_ms(),
            },
        );
        let res = self.run_gated(shared, head, trigger).await;
        let took_ms = started.elapsed().as_millis() as u64;
        let (result, rows, detail) = match &res {
            Ok(m) => ("done", m.rows, m.warning.clone().unwrap_or_default()),
            Err(e) => (e.result(), 0, e.to_string()),
        };
        METRICS.hot_move(to == Side::Hot, result);
        match &res {
            Ok(m) => {
                info!(sku, to = to.as_str(), rows = m.rows, closed_ms = m.closed_ms, warning = ?m.warning, "hot SKU row moved")
            }
            Err(e) => warn!(sku, to = to.as_str(), error = %e, "hot SKU row not moved"),
        }
        let mut log = self.log();
        log.running.remove(&sku);
        *log.results.entry(result).or_default() += 1;
        if log.recent.len() == RECENT {
            log.recent.pop_front();
        }
        log.recent.push_back(MoveRecord {
            head,
            result,
            rows,
            took_ms,
            at_unix_ms: crate::frontend::now_ms(),
            detail,
        });
        res
    }

    async fn run_gated(
        &self,
        shared: &Shared,
        head: MoveHead,
        trigger: Trigger,
    ) -> Result<Moved, MoveError> {
        let MoveHead { sku, to, .. } = head;
        let (Some(hot), Some(hot_shard)) = (shared.hot.as_ref(), shared.topology.hot_shard())
        else {
            return Err(MoveError::NotConfigured);
        };
        let settings = hot.settings();
        let Some((schema, table)) = settings.table.split_once('.') else {
            return Err(MoveError::NoSchema(settings.table.clone()));
        };
        let drain_ms = settings.move_drain_ms;
        let closed = match self.gates.close(sku, Duration::from_millis(drain_ms)).await {
            Ok(c) => c,
            Err(CloseError::Moving) => return Err(MoveError::Moving(sku)),
            Err(CloseError::Busy { active }) => {
                return Err(MoveError::Busy {
                    sku,
                    active,
                    ms: drain_ms,
                });
            }
        };
        let closed_at = Instant::now();
        self.phase(sku, "copying");
        // Decided with the gate closed: no other move changes it now.
        let routed_hot = hot.snapshot().contains(sku);
        if routed_hot == (to == Side::Hot) {
            return Err(MoveError::AlreadyThere { sku, to });
        }
        if let Trigger::Detection(HotEvent::Demote { .. }) = trigger
            && hot.snapshot().get(sku).map(|h| h.entry.origin) != Some(Origin::Detected)
        {
            return Err(MoveError::Pinned(sku));
        }
        let topo = &shared.topology;
        let home = &topo.shards[topo.default_shard];
        let hot_side = &topo.shards[hot_shard];
        let (src, dst) = match to {
            Side::Hot => (home, hot_side),
            Side::Home => (hot_side, home),
        };
        let copy = Copy {
            table: format!("`{}`.`{}`", ident(schema), ident(table)),
            key: format!("`{}`", ident(&settings.key_column)),
            sku,
            lock_wait_s: drain_ms.div_ceil(1000).max(1),
        };
        let side_name = |s: &crate::backend::topology::ShardInstances| {
            format!("{} ({})", s.name, s.primary.addr)
        };
        let outcome = copy
            .run(
                shared.pools.pool(&src.primary.addr, 0),
                shared.pools.pool(&dst.primary.addr, 0),
            )
            .await;
        let fail = |step: &str, error: String, note: String| MoveError::Failed {
            sku,
            step: step.to_string(),
            error,
            note,
        };
        let (rows, warning) = match outcome {
            CopyOutcome::Done { rows, source_left } => (
                rows,
                source_left.map(|e| {
                    format!(
                        "the row is on {} now, but deleting it on {} failed ({e}): that copy is stale, delete it there",
                        side_name(dst),
                        side_name(src)
                    )
                }),
            ),
            CopyOutcome::NoRow { at_destination } => {
                if matches!(trigger, Trigger::AdminMove) {
                    return Err(MoveError::NoRow {
                        sku,
                        table: settings.table.clone(),
                        at: side_name(src),
                        also: if at_destination {
                            format!(
                                " (it has one on {}: use /hotspot?action={} to route there)",
                                side_name(dst),
                                if to == Side::Hot { "add" } else { "remove" }
                            )
                        } else {
                            String::new()
                        },
                    });
                }
                (0, None)
            }
            CopyOutcome::Failed {
                step,
                error,
                destination_left,
            } => {
                let note = match destination_left {
                    Some(e) => format!(
                        "; {} may keep a stale copy, which the proxy does not route to and the next move replaces (deleting it failed: {e})",
                        side_name(dst)
                    ),
                    None => String::new(),
                };
                return Err(fail(step, error, note));
            }
        };
        trigger.switch(hot, sku, to);
        if let Some(rows) = &shared.hot_rows {
            rows.reset(sku);
        }
        let closed_ms = closed_at.elapsed().as_millis() as u64;
        drop(closed);
        Ok(Moved {
            sku,
            to,
            rows,
            closed_ms,
            warning,
        })
    }

    /// Carries out detection's proposals (`auto_move`): promoted SKUs' rows go to the hot
    /// instance, demoted ones home; configured and admin-pinned SKUs are never proposed.
    pub async fn apply_detection(&self, shared: &Shared, events: Vec<HotEvent>) {
        for e in events {
            let to = match e {
                HotEvent::Promote { .. } => Side::Hot,
                HotEvent::Demote { .. } => Side::Home,
            };
            // Errors are logged and recorded by `run`; detection proposes it again later.
            if self
                .run(shared, e.sku(), to, Trigger::Detection(e))
                .await
                .is_err()
                && let Some(hot) = &shared.hot
            {
                hot.abandon(&e);
            }
        }
    }
}

/// At start: SKUs whose rows are on the hot instance are routed there (the run-time hot set is
/// not kept across restarts, the rows are). With `auto_move` they count as detected (demoted home
/// when they cool), otherwise as added by the admin. Quietly does nothing when the table does not
/// exist there yet; logs when the instance cannot be asked.
pub async fn restore(shared: &Shared) {
    let (Some(hot), Some(hot_shard)) = (shared.hot.as_ref(), shared.topology.hot_shard()) else {
        return;
    };
    let s = hot.settings();
    let Some((schema, table)) = s.table.split_once('.') else {
        return;
    };
    let addr = &shared.topology.shards[hot_shard].primary.addr;
    let sql = format!(
        "SELECT DISTINCT `{k}` FROM `{}`.`{}` WHERE `{k}` >= 0 LIMIT 100000",
        ident(schema),
        ident(table),
        k = ident(&s.key_column)
    );
    let rows = async {
        let mut c = shared.pools.pool(addr, 0).get().await?;
        let r = c.query(&sql).await;
        c.broken = true;
        r
    };
    let rows = match tokio::time::timeout(Duration::from_secs(10), rows).await {
        Ok(Ok(Reply::Rows { rows, .. })) => rows,
        Ok(Ok(Reply::Ok { .. })) => return,
        Ok(Err(Error::Server { err, .. })) if err.code == 1146 || err.code == 1049 => return,
        Ok(Err(e)) => {
            warn!(error = %e, "could not read which SKU rows are on the hot instance; only configured SKUs are hot");
            return;
        }
        Err(_) => {
            warn!(
                "reading which SKU rows are on the hot instance timed out; only configured SKUs are hot"
            );
            return;
        }
    };
    let set = hot.snapshot();
    let mut restored = 0;
    for sku in rows
        .iter()
        .filter_map(|r| r.first().cloned().flatten())
        .filter_map(|v| std::str::from_utf8(&v).ok()?.parse::<u64>().ok())
    {
        if set.contains(sku) {
            continue;
        }
        if s.auto_move {
            hot.apply(&HotEvent::Promote { sku, qps: 0 });
        } else {
            hot.add(sku);
        }
        restored += 1;
    }
    if restored > 0 {
        info!(
            restored,
            "SKUs with rows on the hot instance are routed there again"
        );
    }
}

/// A backtick-quoted identifier's inside.
fn ident(name: &str) -> String {
    name.replace('`', "``")
}

/// The copy of one SKU's rows between two instances.
struct Copy {
    table: String,
    key: String,
    sku: u64,
    lock_wait_s: u64,
}

enum CopyOutcome {
    /// Copied and committed on the destination; `source_left` when deleting the source's copy
    /// did not (certainly) commit.
    Done {
        rows: u64,
        source_left: Option<String>,
    },
    /// The source has no row for the SKU (nothing done); whether the destination has one.
    NoRow { at_destination: bool },
    /// Nothing committed (`destination_left`: a stale destination copy may remain).
    Failed {
        step: &'static str,
        error: String,
        destination_left: Option<String>,
    },
}

impl Copy {
    async fn run(
        &self,
        src_pool: crate::backend::pool::Pool,
        dst_pool: crate::backend::pool::Pool,
    ) -> CopyOutcome {
        let failed = |step: &'static str, e: Error| CopyOutcome::Failed {
            step,
            error: e.to_string(),
            destination_left: None,
        };
        let mut src = match open(&src_pool, self.lock_wait_s).await {
            Ok(c) => c,
            Err(e) => return failed("connecting to the source", e),
        };
        let mut dst = match open(&dst_pool, self.lock_wait_s).await {
            Ok(c) => c,
            Err(e) => return failed("connecting to the destination", e),
        };
        let (sku, t, k) = (self.sku, &self.table, &self.key);
        let locked = async {
            src.query("BEGIN").await?;
            src.query(&format!("SELECT * FROM {t} WHERE {k} = {sku} FOR UPDATE"))
                .await
        };
        let (columns, rows) = match locked.await {
            Ok(Reply::Rows { columns, rows, .. }) => (columns, rows),
            Ok(Reply::Ok { .. }) => (Vec::new(), Vec::new()),
            Err(e) => return failed("locking the source row", e),
        };
        if rows.is_empty() {
            let _ = src.query("ROLLBACK").await;
            let at_destination = matches!(
                dst.query(&format!("SELECT 1 FROM {t} WHERE {k} = {sku} LIMIT 1")).await,
                Ok(Reply::Rows { rows, .. }) if !rows.is_empty()
            );
            return CopyOutcome::NoRow { at_destination };
        }
        let insert = insert_sql(t, &columns, &rows);
        let copied = async {
            dst.query("BEGIN").await?;
            dst.query(&format!("DELETE FROM {t} WHERE {k} = {sku}"))
                .await?;
            dst.query(&insert).await?;
            src.query(&format!("DELETE FROM {t} WHERE {k} = {sku}"))
                .await
        };
        if let Err(e) = copied.await {
            // Neither side committed: dropping the connections (marked broken) rolls both back.
            return failed("copying the row", e);
        }
        if let Err(e) = dst.query("COMMIT").await {
            let _ = src.query("ROLLBACK").await;
            // The COMMIT may have happened before the connection failed: remove the copy, which
            // the proxy will not route to (the source still has the row).
            let in_doubt = !matches!(e, Error::Server { .. });
            let destination_left = if in_doubt {
                remove_copy(&dst_pool, self)
                    .await
                    .err()
                    .map(|e| e.to_string())
            } else {
                None
            };
            return CopyOutcome::Failed {
                step: "committing on the destination",
                error: e.to_string(),
                destination_left,
            };
        }
        let source_left = src.query("COMMIT").await.err().map(|e| e.to_string());
        CopyOutcome::Done {
            rows: rows.len() as u64,
            source_left,
        }
    }
}

/// A connection of the proxy's own for a move: utf8mb4 results, lock waits bounded. Marked broken
/// so that it is closed, not pooled, after the move (its session state is the move's).
async fn open(pool: &crate::backend::pool::Pool, lock_wait_s: u64) -> Result<PooledConn, Error> {
    let mut c = pool.get().await?;
    c.broken = true;
    c.query(&format!(
        "SET NAMES utf8mb4, SESSION innodb_lock_wait_timeout = {lock_wait_s}, SESSION autocommit = 1"
    ))
    .await?;
    Ok(c)
}

/// Deletes a destination copy whose COMMIT was in doubt.
async fn remove_copy(pool: &crate::backend::pool::Pool, copy: &Copy) -> Result<(), Error> {
    let mut c = open(pool, copy.lock_wait_s).await?;
    c.query(&format!(
        "DELETE FROM {} WHERE {} = {}",
        copy.table, copy.key, copy.sku
    ))
    .await
    .map(|_| ())
}

/// `INSERT INTO t (cols) VALUES (...), ...` reproducing `rows` exactly: every value is sent as
/// its bytes in hex with the column's character set (`_binary` for binary columns and numbers,
/// whose text the server converts back exactly), so no quoting or escaping mode matters.
fn insert_sql(table: &str, columns: &[Column], rows: &[Vec<Option<Vec<u8>>>]) -> String {
    use std::fmt::Write;
    let mut sql = format!("INSERT INTO {table} (");
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "`{}`", ident(&c.name));
    }
    sql.push_str(") VALUES ");
    for (r, row) in rows.iter().enumerate() {
        sql.push_str(if r > 0 { ", (" } else { "(" });
        for (i, (v, c)) in row.iter().zip(columns).enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            match v {
                None => sql.push_str("NULL"),
                Some(bytes) => {
                    sql.push_str(if c.charset == 63 {
                        "_binary X'"
                    } else {
                        "_utf8mb4 X'"
                    });
                    for b in bytes {
                        let _ = write!(sql, "{b:02x}");
                    }
                    sql.push('\'');
                }
            }
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_copied_as_hex_in_their_charset() {
        let col = |name: &str, charset| Column {
            name: name.into(),
            charset,
            column_type: 0,
        };
        let sql = insert_sql(
            "`shop`.`t`",
            &[col("sku_id", 63), col("na`me", 45)],
            &[
                vec![Some(b"10".to_vec()), Some("é'".as_bytes().to_vec())],
                vec![Some(b"11".to_vec()), None],
            ],
        );
        assert_eq!(
            sql,
            "INSERT INTO `shop`.`t` (`sku_id`, `na``me`) VALUES (_binary X'3130', _utf8mb4 X'c3a927'), \
             (_binary X'3131', NULL)"
        );
    }
}
