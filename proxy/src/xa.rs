//! Cross-shard transactions as MariaDB XA (`[sharding] cross_shard_transactions = "xa"`): the
//! transaction ids, the commit decision record and the recovery of prepared branches a crash left.
//!
//! A session's transaction gets one XA branch per shard it touches (`XA START 'gtrid','shard',F`,
//! see `frontend/xa.rs`). At COMMIT with more than one branch:
//! 1. the first branch (the coordinator) inserts `gtrid` into `peakgate.xa_log` inside the XA
//!    transaction, then every branch runs `XA END` and `XA PREPARE`;
//! 2. any failure: `XA ROLLBACK` everywhere, the client gets an error, nothing is committed;
//! 3. all prepared: `XA COMMIT` on the coordinator. Its commit makes the log row visible: that is
//!    the commit decision, durable on the coordinator's shard;
//! 4. `XA COMMIT` on the other branches; the client gets OK.
//!
//! Recovery (at start-up, then every `SWEEP_EVERY`): `XA RECOVER` on every shard primary finds
//! prepared branches of this proxy's node id (`gtrid` = `pg-<node>-<start ms>-<n>`) that no live
//! session owns; a gtrid with a log row on any shard is committed everywhere, one without (every
//! shard answered) is rolled back everywhere. A crash before step 3 therefore rolls back, after it
//! commits: the shards never disagree.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::backend::Error;
use crate::backend::conn::Reply;
use crate::metrics::METRICS;
use crate::server::Shared;

/// The XA format id of PeakGate's transactions ("PG").
pub const FORMAT_ID: u32 = 0x5047;

/// How often prepared branches nobody owns are looked for after the start-up pass.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// `CREATE TABLE` of the commit decision record.
const LOG_TABLE: &str = "CREATE TABLE IF NOT EXISTS peakgate.xa_log (gtrid VARBINARY(64) NOT NULL PRIMARY KEY, \
     at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB";

/// Transaction ids and the set of XA transactions live sessions of this process own.
pub struct Coordinator {
    prefix: String,
    node_prefix: String,
    next: AtomicU64,
    live: std::sync::Mutex<HashSet<String>>,
}

/// An XA transaction id a session owns; dropping it hands the transaction to recovery.
pub struct Gtrid {
    pub id: String,
    coordinator: Arc<Coordinator>,
}

impl Drop for Gtrid {
    fn drop(&mut self) {
        self.coordinator
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl Coordinator {
    pub fn new(node_id: u16) -> Arc<Self> {
        let node_prefix = format!("pg-{node_id}-");
        Arc::new(Self {
            prefix: format!("{node_prefix}{}-", crate::frontend::now_ms()),
            node_prefix,
            next: AtomicU64::new(1),
            live: std::sync::Mutex::new(HashSet::new()),
        })
    }

    /// A new transaction id, owned by the caller until the `Gtrid` is dropped.
    pub fn begin(self: &Arc<Self>) -> Gtrid {
        let id = format!(
            "{}{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone());
        Gtrid {
            id,
            coordinator: self.clone(),
        }
    }

    fn is_live(&self, gtrid: &str) -> bool {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(gtrid)
    }

    pub fn live_count(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// `'gtrid','bqual',FORMAT_ID` for XA statements (both parts are the proxy's own ASCII).
pub fn xid(gtrid: &str, bqual: &str) -> String {
    format!(
        "{},{},{FORMAT_ID}",
        crate::session_state::quote_str(gtrid.as_bytes()),
        crate::session_state::quote_str(bqual.as_bytes())
    )
}

/// The branch qualifier of a shard: its name, cut to XA's 64 bytes.
pub fn bqual(shard_name: &str) -> String {
    let mut end = shard_name.len().min(64);
    while !shard_name.is_char_boundary(end) {
        end -= 1;
    }
    shard_name[..end].to_string()
}

/// Creates the commit decision table on a shard primary (once per connection that asks).
pub async fn ensure_log(c: &mut crate::backend::PooledConn) -> Result<(), Error> {
    c.query("CREATE DATABASE IF NOT EXISTS peakgate").await?;
    c.query(LOG_TABLE).await?;
    Ok(())
}

/// A failpoint for crash tests: when the environment variable `PEAKGATE_FAILPOINT` names `name`,
/// the calling task stops here for good (the test then kills the process).
pub async fn failpoint(name: &str) {
    static WANTED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let wanted = WANTED.get_or_init(|| std::env::var("PEAKGATE_FAILPOINT").ok());
    if wanted.as_deref() == Some(name) {
        warn!(failpoint = name, "failpoint reached: this task stops here");
        std::future::pending::<()>().await;
    }
}

/// Runs recovery once now, then every `SWEEP_EVERY` while the map asks for XA, until shutdown.
pub fn spawn(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let xa_mode = shared.shard_map().cross_shard_transactions()
                == peakgate_router::shard_map::CrossShardTransactions::Xa;
            if first || xa_mode {
                match recover(&shared, xa_mode).await {
                    Ok(r) if r.committed + r.rolled_back > 0 => info!(
                        committed = r.committed,
                        rolled_back = r.rolled_back,
                        undecided = r.undecided,
                        "XA recovery resolved prepared branches"
                    ),
                    Ok(r) if r.undecided > 0 => warn!(
                        undecided = r.undecided,
                        "XA recovery: prepared branches wait for an unreachable shard"
                    ),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "XA recovery pass failed; next pass later"),
                }
                METRICS.xa_sweeps.inc();
            }
            first = false;
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
}

/// What one recovery pass did (branches).
#[derive(Debug, Default)]
pub struct Recovered {
    pub committed: u64,
    pub rolled_back: u64,
    /// Prepared branches left for a later pass (a shard did not answer).
    pub undecided: u64,
}

/// One recovery pass over every shard primary. `create_log`: make the decision table where it
/// is missing (XA mode).
pub async fn recover(shared: &Shared, create_log: bool) -> Result<Recovered, String> {
    let coord = &shared.xa;
    let topo = &shared.topology;
    let mut conns = Vec::new();
    let mut all_answered = true;
    // gtrid -> (shard index, bqual) of its prepared branches.
    let mut prepared: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
    for (i, shard) in topo.shards.iter().enumerate() {
        let pool = shared.pools.pool(&shard.primary.addr, 0);
        let mut c = match pool.get().await {
            Ok(c) => c,
            Err(e) => {
                warn!(shard = %shard.name, error = %e, "XA recovery: shard unreachable");
                all_answered = false;
                conns.push(None);
                continue;
            }
        };
        if create_log && let Err(e) = ensure_log(&mut c).await {
            warn!(shard = %shard.name, error = %e, "XA recovery: cannot create peakgate.xa_log");
        }
        match c.query("XA RECOVER").await {
            Ok(Reply::Rows { rows, .. }) => {
                for r in rows {
                    let Some((gtrid, bqual)) = parse_recover_row(&r) else {
                        continue;
                    };
                    if gtrid.starts_with(&coord.node_prefix) && !coord.is_live(&gtrid) {
                        prepared.entry(gtrid).or_default().push((i, bqual));
                    }
                }
            }
            Ok(Reply::Ok { .. }) => {}
            Err(e) => {
                warn!(shard = %shard.name, error = %e, "XA recovery: XA RECOVER failed");
                all_answered = false;
                conns.push(None);
                continue;
            }
        }
        conns.push(Some(c));
    }
    let mut out = Recovered::default();
    if prepared.is_empty() {
        return Ok(out);
    }
    // The decision: a log row on any shard means the coordinator committed.
    let list = prepared
        .keys()
        .map(|g| crate::session_state::quote_str(g.as_bytes()))
        .collect::<Vec<_>>()
        .join(",");
    let mut decided_commit = HashSet::new();
    for c in conns.iter_mut().flatten() {
        match c
            .query(&format!(
                "SELECT gtrid FROM peakgate.xa_log WHERE gtrid IN ({list})"
            ))
            .await
        {
            Ok(Reply::Rows { rows, .. }) => {
                for r in rows {
                    if let Some(Some(g)) = r.into_iter().next() {
                        decided_commit.insert(String::from_utf8_lossy(&g).into_owned());
                    }
                }
            }
            Ok(Reply::Ok { .. }) => {}
            // No decision table on this shard: no transaction committed with it as coordinator.
            Err(Error::Server { ref err, .. }) if err.code == 1146 || err.code == 1049 => {}
            Err(e) => {
                warn!(error = %e, "XA recovery: reading peakgate.xa_log failed");
                all_answered = false;
            }
        }
    }
    for (gtrid, branches) in &prepared {
        let commit = decided_commit.contains(gtrid);
        if !commit && !all_answered {
            out.undecided += branches.len() as u64;
            continue;
        }
        let verb = if commit { "COMMIT" } else { "ROLLBACK" };
        let mut done = true;
        for (shard, bqual) in branches {
            let Some(c) = conns.get_mut(*shard).and_then(Option::as_mut) else {
                done = false;
                continue;
            };
            match c.query(&format!("XA {verb} {}", xid(gtrid, bqual))).await {
                // 1397: already resolved by someone else; 1402: a read-only branch had nothing.
                Ok(_) => {}
                Err(Error::Server { ref err, .. }) if err.code == 1397 || err.code == 1402 => {}
                Err(e) => {
                    warn!(gtrid, error = %e, "XA recovery: XA {verb} failed");
                    done = false;
                    continue;
                }
            }
            if commit {
                out.committed += 1;
                METRICS.xa_recovered_commit.inc();
            } else {
                out.rolled_back += 1;
                METRICS.xa_recovered_rollback.inc();
            }
        }
        if commit && done {
            forget(&mut conns, gtrid).await;
        }
    }
    Ok(out)
}

/// Deletes a gtrid's decision record once every branch committed.
async fn forget(conns: &mut [Option<crate::backend::PooledConn>], gtrid: &str) {
    for c in conns.iter_mut().flatten() {
        let _ = c
            .query(&format!(
                "DELETE FROM peakgate.xa_log WHERE gtrid = {}",
                crate::session_state::quote_str(gtrid.as_bytes())
            ))
            .await;
    }
}

/// `(gtrid, bqual)` of a PeakGate row of `XA RECOVER` (formatID, gtrid_length, bqual_length, data).
fn parse_recover_row(r: &[Option<Vec<u8>>]) -> Option<(String, String)> {
    let num =
        |i: usize| -> Option<usize> { std::str::from_utf8(r.get(i)?.as_ref()?).ok()?.parse().ok() };
    if num(0)? != FORMAT_ID as usize {
        return None;
    }
    let (gl, bl) = (num(1)?, num(2)?);
    let data = r.get(3)?.as_ref()?;
    if data.len() < gl + bl {
        return None;
    }
    Some((
        String::from_utf8(data[..gl].to_vec()).ok()?,
        String::from_utf8(data[gl..gl + bl].to_vec()).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<Option<Vec<u8>>> {
        cells.iter().map(|c| Some(c.as_bytes().to_vec())).collect()
    }

    #[test]
    fn recover_rows_split_gtrid_and_bqual_by_their_lengths() {
        let r = row(&["20551", "10", "2", "pg-1-5-100s1"]);
        assert_eq!(
            parse_recover_row(&r),
            Some(("pg-1-5-100s1"[..10].to_string(), "s1".to_string()))
        );
        // Another format id is not PeakGate's.
        assert_eq!(parse_recover_row(&row(&["1", "2", "2", "g1b1"])), None);
        // Lengths longer than the data: not trusted.
        assert_eq!(parse_recover_row(&row(&["20551", "9", "9", "short"])), None);
    }

    #[test]
    fn gtrids_carry_the_node_and_are_unique() {
        let c = Coordinator::new(7);
        let (a, b) = (c.begin(), c.begin());
        assert!(a.id.starts_with("pg-7-") && b.id.starts_with("pg-7-"));
        assert_ne!(a.id, b.id);
        assert!(a.id.len() <= 64);
        assert_eq!(c.live_count(), 2);
        assert!(c.is_live(&a.id));
        drop(a);
        assert_eq!(c.live_count(), 1);
        assert_eq!(xid("g", "s0"), "'g','s0',20551");
        assert_eq!(bqual(&"x".repeat(80)).len(), 64);
    }
}
