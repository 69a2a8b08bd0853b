//! The hot-row queue and group commit for flash-sale inventory. Autocommit writes of one hot row
//! wait in one FIFO per row in the proxy; `workers` tasks per row (default 2) each take up to
//! `batch_max` of them and run them in **one round trip** on the hot instance:
//!
//! ```sql
//! BEGIN; <s1>; SET @pg1 = ROW_COUNT(); ...; <sn>; SET @pgn = ROW_COUNT();
//! INSERT INTO peakgate.hot_batches (id, counts) VALUES (<batch id>, CONCAT_WS(',', @pg1, ...)); COMMIT
//! ```
//!
//! Each statement runs individually, so each client gets its own exact affected rows; every
//! client's OK is sent only after the COMMIT succeeded. If a statement fails, the server stops
//! there, the proxy rolls the batch back and runs each statement again alone (each alone is a
//! batch of one, with the same marker): a client never gets OK for a change that was not
//! committed. If the connection dies mid-batch, whether the COMMIT happened is read back from the
//! marker row on a new connection: found, the batch committed and its counts are the clients'
//! answers; not found, nothing of it committed and the statements run again. So a committed change
//! is never reported as failed.
//!
//! With `batch_mode = "merged"` a batch whose statements are all the same guarded decrement (same
//! text) runs instead as one arithmetic UPDATE that takes the batch's total at once and splits it
//! exactly among the clients (`hotrow/merged.rs`); same transaction, marker and guarantees.
//!
//! Only one statement shape is batched with others, the guarded decrement the proxy can prove
//! safe: `UPDATE <table> SET <stock> = <stock> - ? WHERE <key> = ? AND <stock> >= ?` (or `> ?`).
//! Other writes on a hot row queue too but run alone. A guarded decrement that found too little
//! stock marks the row "sold out below T" (stock < T); later decrements needing at least T are
//! answered with 0 rows by the proxy for `sold_out_ttl_ms`, unless any other write of that row
//! passes through the queue first. A write to the row that bypasses the proxy (a direct restock)
//! is seen only after the TTL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peakgate_router::hotspot::{BatchMode, HotQueue};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::backend::conn::Reply;
use crate::backend::pool::Pool;
use crate::backend::{Error, PooledConn};
use crate::metrics::METRICS;
use crate::protocol::constants::COM_SET_OPTION;
use crate::protocol::response::ErrPacket;

mod merged;
pub use merged::MergeShape;

/// A guarded decrement: the least stock it needs (`stock >= need`), and how identical copies of
/// it merge into one UPDATE (`None`: they cannot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrement {
    pub need: i64,
    pub merge: Option<MergeShape>,
}

/// One client's write waiting for its batch.
pub struct Job {
    pub sql: String,
    /// The session's current database (statements of one batch share it).
    pub schema: Option<String>,
    /// `Some` for a guarded decrement (batchable, sold-out aware).
    pub decrement: Option<Decrement>,
    pub deadline: Instant,
    pub reply: oneshot::Sender<JobResult>,
}

/// What a client is told.
#[derive(Debug, Clone)]
pub enum JobResult {
    /// Committed (or answered "0 rows" by the sold-out short-circuit).
    Ok { affected_rows: u64 },
    /// The server's error for this statement (nothing of it committed).
    Server(ErrPacket),
    /// Refused before it ran: queue full or waited too long.
    Busy(String),
    /// The hot instance failed and the outcome is known not to be committed.
    Failed(String),
}

/// Per-row queues of one hot instance.
pub struct HotRows {
    pool: Pool,
    settings: HotQueue,
    rows: Mutex<HashMap<u64, Arc<Row>>>,
    next_batch: AtomicU64,
    /// The marker table exists (created on first use).
    ready: tokio::sync::OnceCell<()>,
    /// Where the row workers run: the sale lane when there is one (`frontend::lane`).
    spawner: Option<tokio::runtime::Handle>,
}

/// One hot row's queue.
struct Row {
    tx: mpsc::Sender<Job>,
    /// Sold out below this stock until this instant.
    sold_out: Mutex<Option<(i64, Instant)>>,
    depth: AtomicU64,
}

impl HotRows {
    pub fn new(
        pool: Pool,
        settings: HotQueue,
        spawner: Option<tokio::runtime::Handle>,
    ) -> Arc<Self> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Arc::new(Self {
            pool,
            settings,
            rows: Mutex::new(HashMap::new()),
            next_batch: AtomicU64::new(seed << 8),
            ready: tokio::sync::OnceCell::new(),
            spawner,
        })
    }

    /// Queues one write of row `sku` and waits for its answer.
    pub async fn submit(
        self: &Arc<Self>,
        sku: u64,
        schema: Option<String>,
        sql: String,
        decrement: Option<Decrement>,
    ) -> JobResult {
        let row = self.row(sku);
        if let Some(d) = &decrement {
            let sold = *row
                .sold_out
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((below, until)) = sold
                && Instant::now() < until
                && d.need >= below
            {
                METRICS.hot_sold_out_answers.inc();
                return JobResult::Ok { affected_rows: 0 };
            }
        }
        let (tx, rx) = oneshot::channel();
        let job = Job {
            sql,
            schema,
            decrement,
            deadline: Instant::now() + Duration::from_millis(self.settings.wait_ms),
            reply: tx,
        };
        row.depth.fetch_add(1, Ordering::Relaxed);
        if row.tx.try_send(job).is_err() {
            row.depth.fetch_sub(1, Ordering::Relaxed);
            METRICS.hot_busy.inc();
            return JobResult::Busy(format!(
                "flash sale busy: {} statements wait for SKU {sku} (hotspot.queue.queue_max); retry",
                self.settings.queue_max
            ));
        }
        rx.await
            .unwrap_or_else(|_| JobResult::Failed("the hot-row queue stopped".into()))
    }

    /// Queue depth per hot row (for `/status`).
    pub fn depths(&self) -> Vec<(u64, u64, bool)> {
        let rows = self
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let mut v: Vec<_> = rows
            .iter()
            .map(|(sku, r)| {
                let sold = r
                    .sold_out
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .is_some_and(|(_, until)| now < until);
                (*sku, r.depth.load(Ordering::Relaxed), sold)
            })
            .collect();
        v.sort_unstable();
        v
    }

    fn row(self: &Arc<Self>, sku: u64) -> Arc<Row> {
        let mut rows = self
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(r) = rows.get(&sku) {
            return r.clone();
        }
        let (tx, rx) = mpsc::channel(self.settings.queue_max.max(1));
        let row = Arc::new(Row {
            tx,
            sold_out: Mutex::new(None),
            depth: AtomicU64::new(0),
        });
        rows.insert(sku, row.clone());
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..self.settings.workers.max(1) {
            let me = self.clone();
            let (rx, row) = (rx.clone(), Arc::downgrade(&row));
            let work = async move { me.work(row, rx).await };
            match &self.spawner {
                Some(h) => h.spawn(work),
                None => tokio::spawn(work),
            };
        }
        row
    }

    /// Forgets row `sku`'s queue and sold-out state: its row has just moved (nothing is queued
    /// then, the move's gate saw to it). Its workers end; the next write starts a fresh queue.
    pub fn reset(&self, sku: u64) {
        self.rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&sku);
    }

    /// One worker of a row: take a batch, run it, answer it; until the queue closes (the row
    /// was reset and its last submitter is gone, which drops the sending side).
    async fn work(
        self: Arc<Self>,
        row: std::sync::Weak<Row>,
        rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    ) {
        loop {
            let mut batch = Vec::new();
            let row = {
                let mut rx = rx.lock().await;
                let Some(first) = rx.recv().await else {
                    return;
                };
                // The job's submitter holds the row while it waits for its answer.
                let Some(row) = row.upgrade() else {
                    let _ = first
                        .reply
                        .send(JobResult::Busy("the hot row was reset; retry".into()));
                    return;
                };
                let batchable = first.decrement.is_some();
                batch.push(first);
                while batchable && batch.len() < self.settings.batch_max {
                    match rx.try_recv() {
                        Ok(j) if j.decrement.is_some() && j.schema == batch[0].schema => {
                            batch.push(j)
                        }
                        Ok(j) => {
                            // Not batchable: it runs next, alone (order is kept per worker).
                            self.run_and_answer(&row, vec![j]).await;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                row
            };
            row.depth.fetch_sub(batch.len() as u64, Ordering::Relaxed);
            // Statements that waited too long are refused, never run.
            let now = Instant::now();
            let (late, batch): (Vec<Job>, Vec<Job>) =
                batch.into_iter().partition(|j| now > j.deadline);
            for j in late {
                METRICS.hot_busy.inc();
                let _ = j.reply.send(JobResult::Busy(format!(
                    "flash sale busy: waited over {} ms (hotspot.queue.wait_ms); retry",
                    self.settings.wait_ms
                )));
            }
            if !batch.is_empty() {
                self.run_and_answer(&row, batch).await;
            }
        }
    }

    /// Runs `batch` and answers every job: as one transaction when it can, else one by one.
    async fn run_and_answer(&self, row: &Row, batch: Vec<Job>) {
        METRICS.hot_batches.inc();
        METRICS.hot_batched.add(batch.len() as u64);
        let sqls: Vec<&str> = batch.iter().map(|j| j.sql.as_str()).collect();
        let schema = batch.first().and_then(|j| j.schema.clone());
        let schema = schema.as_deref();
        let first = match self.merge_shape(&batch) {
            Some(shape) => {
                METRICS.hot_merged.inc();
                let k = sqls.len();
                self.run_batch(schema, Batch::Merged(sqls[0], shape, k))
                    .await
            }
            None => self.run_batch(schema, Batch::Statements(&sqls)).await,
        };
        let results = match first {
            Outcome::Committed(counts) => counts
                .into_iter()
                .map(|n| JobResult::Ok { affected_rows: n })
                .collect(),
            Outcome::Retry if batch.len() > 1 => {
                // Rolled back (or never committed): each alone, in order.
                let mut v = Vec::with_capacity(batch.len());
                for s in &sqls {
                    v.push(
                        match self.run_batch(schema, Batch::Statements(&[*s])).await {
                            Outcome::Committed(c) => JobResult::Ok {
                                affected_rows: c.first().copied().unwrap_or(0),
                            },
                            Outcome::Failed(e) => JobResult::Server(e),
                            Outcome::Retry => JobResult::Failed(
                                "the hot instance failed; the statement did not commit".into(),
                            ),
                            Outcome::Lost(m) => JobResult::Failed(m),
                        },
                    );
                }
                v
            }
            Outcome::Retry => vec![JobResult::Failed(
                "the hot instance failed; the statement did not commit".into(),
            )],
            Outcome::Failed(e) => vec![JobResult::Server(e)],
            Outcome::Lost(m) => batch.iter().map(|_| JobResult::Failed(m.clone())).collect(),
        };
        let ttl = Duration::from_millis(self.settings.sold_out_ttl_ms);
        for (job, res) in batch.into_iter().zip(results) {
            {
                let mut sold = row
                    .sold_out
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match (&res, &job.decrement) {
                    (JobResult::Ok { affected_rows: 0 }, Some(d)) if ttl > Duration::ZERO => {
                        let below = sold.map_or(d.need, |(b, _)| b.min(d.need));
                        *sold = Some((below, Instant::now() + ttl));
                    }
                    (JobResult::Ok { .. }, None) => *sold = None,
                    _ => {}
                }
            }
            let _ = job.reply.send(res);
        }
    }

    /// The merged form of `batch` when it runs merged: `batch_mode = "merged"`, more than one
    /// statement, all the same mergeable guarded decrement.
    fn merge_shape<'a>(&self, batch: &'a [Job]) -> Option<&'a MergeShape> {
        let (first, rest) = batch.split_first()?;
        let shape = first.decrement.as_ref()?.merge.as_ref()?;
        (self.settings.batch_mode == BatchMode::Merged
            && !rest.is_empty()
            && rest.iter().all(|j| j.sql == first.sql))
        .then_some(shape)
    }

    /// One transaction for `batch` with its marker, in one round trip.
    async fn run_batch(&self, schema: Option<&str>, batch: Batch<'_>) -> Outcome {
        let id = self.next_batch.fetch_add(1, Ordering::Relaxed);
        let mut conn = match self.conn().await {
            Ok(c) => c,
            Err(e) => return Outcome::Retry.or_lost(e),
        };
        let mut text = String::new();
        if let Some(db) = schema {
            text.push_str(&format!("USE `{}`; ", db.replace('`', "``")));
        }
        text.push_str("BEGIN");
        let first = usize::from(schema.is_some());
        // The statements between BEGIN and COMMIT, and the SET that clears their variables (so
        // nobody who gets this pooled connection next sees them).
        let (body, clear) = match batch {
            Batch::Statements(sqls) => {
                let mut vars = Vec::with_capacity(sqls.len());
                for (i, s) in sqls.iter().enumerate() {
                    text.push_str("; ");
                    text.push_str(s);
                    text.push_str(&format!("; SET @pg{i} = ROW_COUNT()"));
                    vars.push(format!("@pg{i}"));
                }
                let clear = format!("SET {} = NULL", vars.join(" = NULL, "));
                text.push_str(&format!(
                    "; INSERT INTO peakgate.hot_batches (id, counts) VALUES ({id}, CONCAT_WS(',', {})); {clear}",
                    vars.join(", ")
                ));
                (2 * sqls.len() + 2, clear)
            }
            Batch::Merged(sql, shape, k) => {
                text.push_str(&merged::body(sql, shape, k, id));
                (merged::BODY_STATEMENTS, merged::CLEAR.to_string())
            }
        };
        text.push_str("; COMMIT");
        let n = batch.len();
        match conn.query_all(&text).await {
            Ok(results) => {
                let expected = first + body + 2;
                if results.len() == expected && results.iter().all(Result::is_ok) {
                    // Committed: each client's count from the body's answers.
                    let body = &results[first + 1..expected - 1];
                    let counts = match batch {
                        Batch::Statements(_) => Some(
                            body.iter()
                                .step_by(2)
                                .take(n)
                                .map(|r| match r {
                                    Ok(Reply::Ok { affected_rows, .. }) => *affected_rows,
                                    _ => 0,
                                })
                                .collect(),
                        ),
                        Batch::Merged(..) => merged::counts(body, n),
                    };
                    if let Some(counts) = counts {
                        return Outcome::Committed(counts);
                    }
                    warn!(
                        batch = id,
                        "unexpected answer to a committed batch; reading its marker"
                    );
                    return self.outcome_of(id, n).await;
                }
                // A statement failed: the server stopped there, the transaction is open.
                let failed = results.iter().find_map(|r| r.as_ref().err().cloned());
                let undone = conn.query_all(&format!("ROLLBACK; {clear}")).await;
                if !undone.is_ok_and(|r| r.len() == 2 && r.iter().all(Result::is_ok)) {
                    conn.broken = true;
                }
                match failed {
                    Some(e) if n == 1 => Outcome::Failed(e),
                    _ => Outcome::Retry,
                }
            }
            Err(e) => {
                conn.broken = true;
                drop(conn);
                warn!(error = %e, batch = id, "hot instance failed mid-batch; reading the batch's outcome");
                METRICS.hot_resolved.inc();
                self.outcome_of(id, n).await
            }
        }
    }

    /// After a connection loss: did batch `id` commit? Its marker row tells.
    async fn outcome_of(&self, id: u64, n: usize) -> Outcome {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.conn().await {
                Ok(mut c) => {
                    match c
                        .query(&format!(
                            "SELECT counts FROM peakgate.hot_batches WHERE id = {id}"
                        ))
                        .await
                    {
                        Ok(Reply::Rows { rows, .. }) => {
                            let Some(cell) =
                                rows.first().and_then(|r| r.first()).cloned().flatten()
                            else {
                                return Outcome::Retry;
                            };
                            let marker = String::from_utf8_lossy(&cell);
                            if marker.contains('/') {
                                // A merged batch: `m/k`.
                                if let Some(counts) = merged::marker_counts(&marker, n) {
                                    return Outcome::Committed(counts);
                                }
                                return Outcome::Lost(format!("batch {id}: unreadable marker"));
                            }
                            let counts: Vec<u64> = marker
                                .split(',')
                                .map(|v| v.trim().parse().unwrap_or(0))
                                .collect();
                            if counts.len() == n {
                                return Outcome::Committed(counts);
                            }
                            return Outcome::Lost(format!("batch {id}: unreadable marker"));
                        }
                        Ok(_) => return Outcome::Retry,
                        Err(e) => debug!(error = %e, "reading the batch marker"),
                    }
                }
                Err(e) => debug!(error = %e, "reconnecting to read the batch marker"),
            }
            if Instant::now() > deadline {
                return Outcome::Lost(format!(
                    "the hot instance is unreachable; whether batch {id} committed is unknown (check peakgate.hot_batches)"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A connection to the hot instance, ready for batches. A connect that fails or times out
    /// (nothing of the batch was sent yet) is tried again for up to `wait_ms`, so a slow connect
    /// in a storm or a hot instance back after a restart does not fail the batch's clients.
    async fn conn(&self) -> Result<PooledConn, Error> {
        let give_up = Instant::now() + Duration::from_millis(self.settings.wait_ms);
        loop {
            match self.conn_once().await {
                Err(e @ (Error::Connect { .. } | Error::PoolTimeout { .. }))
                    if Instant::now() < give_up =>
                {
                    debug!(error = %e, "hot instance connect failed; trying again");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    async fn conn_once(&self) -> Result<PooledConn, Error> {
        let mut c = self.pool.get().await?;
        if !c.multi_statements {
            let mut p = vec![COM_SET_OPTION];
            p.extend_from_slice(&0u16.to_le_bytes());
            c.command(&p).await?;
            c.multi_statements = true;
        }
        self.ready
            .get_or_try_init(|| async {
                c.query("CREATE DATABASE IF NOT EXISTS peakgate").await?;
                c.query(
                    "CREATE TABLE IF NOT EXISTS peakgate.hot_batches (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, \
                     counts TEXT NOT NULL, at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, KEY (at)) ENGINE=InnoDB",
                )
                .await?;
                // Markers are only read right after a failure: old ones go.
                c.query("DELETE FROM peakgate.hot_batches WHERE at < NOW() - INTERVAL 1 DAY")
                    .await?;
                Ok::<(), Error>(())
            })
            .await?;
        Ok(c)
    }
}

/// How one batch runs (`BatchMode`).
#[derive(Clone, Copy)]
enum Batch<'a> {
    /// Each statement as written, in order.
    Statements(&'a [&'a str]),
    /// `k` copies of one guarded decrement as one UPDATE.
    Merged(&'a str, &'a MergeShape, usize),
}

impl Batch<'_> {
    /// Clients in the batch.
    fn len(&self) -> usize {
        match *self {
            Batch::Statements(s) => s.len(),
            Batch::Merged(_, _, k) => k,
        }
    }
}

enum Outcome {
    /// Committed; affected rows per statement.
    Committed(Vec<u64>),
    /// A single statement's own error (nothing committed).
    Failed(ErrPacket),
    /// Nothing committed; run again (alone).
    Retry,
    /// Unknown whether it committed.
    Lost(String),
}

impl Outcome {
    fn or_lost(self, e: Error) -> Outcome {
        debug!(error = %e, "no connection to the hot instance");
        self
    }
}
