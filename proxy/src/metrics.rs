//! Metric names and values. Every name is a `pub const` here; values are atomics updated on the
//! hot path without locks, rendered in the Prometheus text format by `render`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::LazyLock;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use peakgate_router::StatementKind;

use crate::backend::pool::Pool;

/// Gauge: client connections open now.
pub const CLIENT_CONNECTIONS: &str = "peakgate_client_connections";
/// Counter: client connections accepted since start.
pub const CLIENT_CONNECTIONS_TOTAL: &str = "peakgate_client_connections_total";
/// Counter: client connections refused with ERR 1040 (over `max_client_connections`).
pub const CLIENT_CONNECTIONS_REFUSED: &str = "peakgate_client_connections_refused_total";
/// Gauge, labels `instance` (host:port), `variant` (capability bits), `state` (in_use | idle).
pub const BACKEND_CONNECTIONS: &str = "peakgate_backend_connections";
/// Gauge, labels `instance`, `variant`: shared (pipelined) backend connections open, on top of
/// the pool's `peakgate_backend_connections`.
pub const PIPELINE_CONNECTIONS: &str = "peakgate_pipeline_connections";
/// Counter: backend connections opened.
pub const BACKEND_CONNECTS: &str = "peakgate_backend_connects_total";
/// Counter, label `kind` (read | write | txn_begin | txn_end | session | ddl | admin | unknown).
pub const STATEMENTS: &str = "peakgate_statements_total";
/// Counter: statements run on shared (pipelined) backend connections.
pub const PIPELINED: &str = "peakgate_pipelined_statements_total";
/// Counter: statements sqlparser could not parse (still forwarded, see routing.unparseable).
pub const UNPARSEABLE: &str = "peakgate_unparseable_statements_total";
/// Counter, label `code` (MySQL error code): ERR packets sent to clients, the server's and the proxy's own.
pub const ERRORS: &str = "peakgate_errors_total";
/// Counter, label `role` (primary | replica | reporting): statements by the role of the instance
/// that ran them (pinned connections included).
pub const ROUTED: &str = "peakgate_routed_statements_total";
/// Counter: reads that waited on a replica for the session's last write (MASTER_GTID_WAIT).
pub const RYW_WAITS: &str = "peakgate_ryw_waits_total";
/// Counter: reads that went to the primary because no replica had the session's last write in time.
pub const RYW_FALLBACKS: &str = "peakgate_ryw_primary_fallbacks_total";
/// Counter: reads that went to the primary because no replica was eligible (lag, health).
pub const LAG_FALLBACKS: &str = "peakgate_lag_fallbacks_total";
/// Counter: reads retried on another instance after a replica failed before answering.
pub const READ_RETRIES: &str = "peakgate_read_retries_total";
/// Counter, label `shard`: statements of mapped tables routed to each shard (a scatter statement
/// counts on each of its shards).
pub const SHARD_STATEMENTS: &str = "peakgate_shard_statements_total";
/// Counter: writes slowed because a replica of their shard lagged over `throttle_lag_ms`.
pub const THROTTLED_WRITES: &str = "peakgate_throttled_writes_total";
/// Counter (seconds): time writes spent throttled.
pub const THROTTLED_SECONDS: &str = "peakgate_write_throttled_seconds_total";
/// Counter: statements on hot SKU rows, run on the hot instance.
pub const HOT_STATEMENTS: &str = "peakgate_hot_statements_total";
/// Counter: hot-row batches run.
pub const HOT_BATCHES: &str = "peakgate_hot_batches_total";
/// Counter: statements run in hot-row batches (divide by batches for the mean batch size).
pub const HOT_BATCHED: &str = "peakgate_hot_batched_statements_total";
/// Counter: hot-row batches run as one merged UPDATE (`batch_mode = "merged"`; included in
/// `peakgate_hot_batches_total`).
pub const HOT_MERGED: &str = "peakgate_hot_merged_batches_total";
/// Counter: hot-row statements refused (queue full or waited too long).
pub const HOT_BUSY: &str = "peakgate_hot_busy_total";
/// Counter: guarded decrements answered 0 rows by the sold-out short-circuit.
pub const HOT_SOLD_OUT: &str = "peakgate_hot_sold_out_answers_total";
/// Counter: hot-row batches whose connection died mid-batch (outcome read from the marker row).
pub const HOT_RESOLVED: &str = "peakgate_hot_batches_resolved_total";
/// Counter, labels `to` (hot | home) and `result` (done | refused | failed | invalid): SKU row
/// moves between the home shard and the hot instance (`refused`: the SKU stayed in use past
/// `move_drain_ms` or another move ran; `failed`: a server failed, nothing changed; `invalid`: a
/// request that cannot be done, such as a SKU without a row).
pub const HOT_MOVES: &str = "peakgate_hot_moves_total";
/// Counter: statements that waited for a SKU row move to end before running.
pub const HOT_MOVE_WAITS: &str = "peakgate_hot_move_waits_total";
/// Counter: statements refused (ERR 1205) because a SKU row move outlasted `move_wait_ms`.
pub const HOT_MOVE_REFUSALS: &str = "peakgate_hot_move_refusals_total";
/// Counter: statements killed (KILL QUERY) past a limits rule's `max_execution_ms`.
pub const QUERIES_KILLED: &str = "peakgate_queries_killed_total";
/// Counter: clients' `KILL` statements (and COM_PROCESS_KILL) the proxy carried out.
pub const CLIENT_KILLS: &str = "peakgate_client_kills_total";
/// Counter: COM_STMT_PREPAREs refused (ERR 1461) at `proxy.max_prepared_stmt_count`.
pub const PREPARED_REFUSED: &str = "peakgate_prepared_refused_total";
/// Counter: circuit breakers opened after consecutive connect failures of an instance.
pub const BREAKER_OPENS: &str = "peakgate_breaker_opens_total";
/// Counter: shard maps put in effect by `/reload` or SIGHUP.
pub const MAP_RELOADS: &str = "peakgate_shard_map_reloads_total";
/// Counter, label `kind` (read | write): statements run on several shards.
pub const SCATTER: &str = "peakgate_scatter_statements_total";
/// Counter, label `outcome` (one_phase | two_phase | rollback | failed): ended XA (cross-shard)
/// transactions.
pub const XA_TRANSACTIONS: &str = "peakgate_xa_transactions_total";
/// Counter, label `action` (commit | rollback): prepared XA branches resolved by recovery.
pub const XA_RECOVERED: &str = "peakgate_xa_recovered_branches_total";
/// Gauge, labels `instance`, `shard`, `role`: replica lag in milliseconds measured by the
/// heartbeat (absent while unknown).
pub const REPLICA_LAG: &str = "peakgate_replica_lag_ms";
/// Gauge, labels `instance`, `shard`, `role`: 1 when the instance takes reads.
pub const INSTANCE_ELIGIBLE: &str = "peakgate_instance_eligible";
/// Gauge, labels `instance`, `shard`, `role`: routed requests in flight.
pub const INSTANCE_IN_FLIGHT: &str = "peakgate_instance_in_flight";
/// Histogram (seconds): statement latency seen by the proxy, command received to answer flushed.
pub const STATEMENT_DURATION: &str = "peakgate_statement_duration_seconds";

/// Upper bounds (microseconds) of the latency histogram's finite buckets.
pub const BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    5_000_000, 30_000_000,
];

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe_us(&self, us: u64) {
        if let Some(i) = BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Per-bucket counts (not cumulative, bounds in `BUCKETS_US`) and the total count; the
    /// observations over the last bound are `count - sum(buckets)`.
    pub fn snapshot(&self) -> ([u64; BUCKETS_US.len()], u64) {
        let buckets = std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed));
        (buckets, self.count.load(Ordering::Relaxed))
    }
}

#[derive(Default)]
pub struct Metrics {
    pub client_connections: Gauge,
    pub client_connections_total: Counter,
    pub client_connections_refused: Counter,
    pub backend_connects: Counter,
    pub statements: [Counter; StatementKind::ALL.len()],
    pub unparseable: Counter,
    pub pipelined: Counter,
    /// By role: primary, replica, reporting.
    pub routed: [Counter; 3],
    pub ryw_waits: Counter,
    pub ryw_fallbacks: Counter,
    pub lag_fallbacks: Counter,
    pub read_retries: Counter,
    /// Statements by shard (index), from the shard planner.
    pub per_shard: [Counter; 16],
    pub scatter_reads: Counter,
    pub scatter_writes: Counter,
    pub xa_one_phase: Counter,
    pub xa_two_phase: Counter,
    pub xa_rollbacks: Counter,
    pub xa_failed: Counter,
    pub xa_recovered_commit: Counter,
    pub xa_recovered_rollback: Counter,
    /// XA recovery passes run.
    pub xa_sweeps: Counter,
    pub map_reloads: Counter,
    pub throttled_writes: Counter,
    /// Statements on hot SKU rows, run on the hot instance.
    pub hot_statements: Counter,
    /// Hot-row batches run, and the statements in them.
    pub hot_batches: Counter,
    pub hot_batched: Counter,
    /// Hot-row batches run as one merged UPDATE.
    pub hot_merged: Counter,
    /// Hot-row statements refused (queue full or waited too long).
    pub hot_busy: Counter,
    /// Guarded decrements answered "0 rows" by the sold-out short-circuit.
    pub hot_sold_out_answers: Counter,
    /// Hot-row batches whose connection died mid-batch, resolved from their marker row.
    pub hot_resolved: Counter,
    /// SKU row moves by destination (hot, home) and result (see [`Metrics::hot_move`]).
    pub hot_moves: [[Counter; 4]; 2],
    /// Statements that waited for a row move, and those refused after `move_wait_ms`.
    pub hot_move_waits: Counter,
    pub hot_move_refusals: Counter,
    /// Statements killed (KILL QUERY) past a rule's max_execution_ms.
    pub queries_killed: Counter,
    /// Clients' KILL statements carried out.
    pub client_kills: Counter,
    /// Prepares refused at max_prepared_stmt_count.
    pub prepared_refused: Counter,
    /// Circuit breakers opened (instances refused after consecutive connect failures).
    pub breaker_opens: Counter,
    /// Microseconds writes spent throttled.
    pub throttled_us: Counter,
    errors: Mutex<BTreeMap<u16, u64>>,
    pub latency: Histogram,
}

impl Metrics {
    pub fn statement(&self, kind: StatementKind) {
        if let Some(i) = StatementKind::ALL.iter().position(|k| *k == kind) {
            self.statements[i].inc();
        }
    }

    /// The results [`HOT_MOVES`] counts, in the order of `hot_moves`' inner arrays.
    pub const HOT_MOVE_RESULTS: [&'static str; 4] = ["done", "refused", "failed", "invalid"];

    /// Counts a finished SKU row move.
    pub fn hot_move(&self, to_hot: bool, result: &str) {
        if let Some(i) = Self::HOT_MOVE_RESULTS.iter().position(|r| *r == result) {
            self.hot_moves[usize::from(!to_hot)][i].inc();
        }
    }

    pub fn routed(&self, role: peakgate_router::plan::Role) {
        use peakgate_router::plan::Role;
        let i = match role {
            Role::Primary => 0,
            Role::Replica => 1,
            Role::Reporting => 2,
        };
        self.routed[i].inc();
    }

    /// Counts a planned statement on each of its shards (the first 16 shards).
    pub fn shard_plan(&self, shards: &peakgate_router::plan::shard::Shards) {
        for s in shards.list() {
            if let Some(c) = self.per_shard.get(s.index()) {
                c.inc();
            }
        }
    }

    pub fn error(&self, code: u16) {
        let mut m = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *m.entry(code).or_default() += 1;
    }

    pub fn errors(&self) -> BTreeMap<u16, u64> {
        self.errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// Renders all metrics in the Prometheus text exposition format.
pub fn render(
    pools: &[Pool],
    pipelines: &[(String, u32, usize)],
    topo: &crate::backend::topology::Topology,
) -> String {
    let m = &*METRICS;
    let mut s = String::with_capacity(4096);
    let head = |s: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    head(
        &mut s,
        CLIENT_CONNECTIONS,
        "gauge",
        "Client connections open now.",
    );
    let _ = writeln!(s, "{CLIENT_CONNECTIONS} {}", m.client_connections.get());
    head(
        &mut s,
        CLIENT_CONNECTIONS_TOTAL,
        "counter",
        "Client connections accepted.",
    );
    let _ = writeln!(
        s,
        "{CLIENT_CONNECTIONS_TOTAL} {}",
        m.client_connections_total.get()
    );
    head(
        &mut s,
        CLIENT_CONNECTIONS_REFUSED,
        "counter",
        "Client connections refused over max_client_connections.",
    );
    let _ = writeln!(
        s,
        "{CLIENT_CONNECTIONS_REFUSED} {}",
        m.client_connections_refused.get()
    );
    head(
        &mut s,
        BACKEND_CONNECTIONS,
        "gauge",
        "Backend connections per pool, in use or idle.",
    );
    for p in pools {
        let st = p.inner.state();
        let in_use = st.connections.saturating_sub(st.idle_connections);
        let _ = writeln!(
            s,
            "{BACKEND_CONNECTIONS}{{instance=\"{}\",variant=\"{}\",state=\"in_use\"}} {in_use}",
            p.addr, p.variant
        );
        let _ = writeln!(
            s,
            "{BACKEND_CONNECTIONS}{{instance=\"{}\",variant=\"{}\",state=\"idle\"}} {}",
            p.addr, p.variant, st.idle_connections
        );
    }
    head(
        &mut s,
        BACKEND_CONNECTS,
        "counter",
        "Backend connections opened.",
    );
    let _ = writeln!(s, "{BACKEND_CONNECTS} {}", m.backend_connects.get());
    head(&mut s, STATEMENTS, "counter", "Statements by kind.");
    for (k, c) in StatementKind::ALL.iter().zip(m.statements.iter()) {
        let _ = writeln!(s, "{STATEMENTS}{{kind=\"{}\"}} {}", k.as_str(), c.get());
    }
    head(
        &mut s,
        UNPARSEABLE,
        "counter",
        "Statements the SQL parser rejected (forwarded or refused per routing.unparseable).",
    );
    let _ = writeln!(s, "{UNPARSEABLE} {}", m.unparseable.get());
    head(
        &mut s,
        PIPELINED,
        "counter",
        "Statements run on shared (pipelined) backend connections.",
    );
    let _ = writeln!(s, "{PIPELINED} {}", m.pipelined.get());
    head(
        &mut s,
        PIPELINE_CONNECTIONS,
        "gauge",
        "Shared (pipelined) backend connections open, besides the pools.",
    );
    for (addr, variant, open) in pipelines {
        let _ = writeln!(
            s,
            "{PIPELINE_CONNECTIONS}{{instance=\"{addr}\",variant=\"{variant}\"}} {open}"
        );
    }
    head(
        &mut s,
        ROUTED,
        "counter",
        "Statements by the role of the instance that ran them.",
    );
    for (role, c) in ["primary", "replica", "reporting"].iter().zip(&m.routed) {
        let _ = writeln!(s, "{ROUTED}{{role=\"{role}\"}} {}", c.get());
    }
    for (name, help, c) in [
        (
            RYW_WAITS,
            "Reads that waited on a replica for the session's last write.",
            &m.ryw_waits,
        ),
        (
            RYW_FALLBACKS,
            "Reads sent to the primary: no replica had the session's last write in time.",
            &m.ryw_fallbacks,
        ),
        (
            LAG_FALLBACKS,
            "Reads sent to the primary: no replica was eligible.",
            &m.lag_fallbacks,
        ),
        (
            READ_RETRIES,
            "Reads retried elsewhere after a replica failed before answering.",
            &m.read_retries,
        ),
    ] {
        head(&mut s, name, "counter", help);
        let _ = writeln!(s, "{name} {}", c.get());
    }
    head(
        &mut s,
        SHARD_STATEMENTS,
        "counter",
        "Statements of mapped tables by shard.",
    );
    for (i, sh) in topo.shards.iter().enumerate() {
        if let Some(c) = m.per_shard.get(i) {
            let _ = writeln!(s, "{SHARD_STATEMENTS}{{shard=\"{}\"}} {}", sh.name, c.get());
        }
    }
    head(
        &mut s,
        SCATTER,
        "counter",
        "Statements run on several shards.",
    );
    let _ = writeln!(s, "{SCATTER}{{kind=\"read\"}} {}", m.scatter_reads.get());
    let _ = writeln!(s, "{SCATTER}{{kind=\"write\"}} {}", m.scatter_writes.get());
    head(
        &mut s,
        XA_TRANSACTIONS,
        "counter",
        "Ended cross-shard (XA) transactions by outcome.",
    );
    for (outcome, c) in [
        ("one_phase", &m.xa_one_phase),
        ("two_phase", &m.xa_two_phase),
        ("rollback", &m.xa_rollbacks),
        ("failed", &m.xa_failed),
    ] {
        let _ = writeln!(s, "{XA_TRANSACTIONS}{{outcome=\"{outcome}\"}} {}", c.get());
    }
    head(
        &mut s,
        XA_RECOVERED,
        "counter",
        "Prepared XA branches resolved by recovery.",
    );
    for (action, c) in [
        ("commit", &m.xa_recovered_commit),
        ("rollback", &m.xa_recovered_rollback),
    ] {
        let _ = writeln!(s, "{XA_RECOVERED}{{action=\"{action}\"}} {}", c.get());
    }
    head(
        &mut s,
        REPLICA_LAG,
        "gauge",
        "Replica lag measured by the heartbeat, in milliseconds.",
    );
    for sh in &topo.shards {
        for i in sh.replicas.iter().chain(&sh.reporting) {
            if let Some(l) = i.lag() {
                let _ = writeln!(
                    s,
                    "{REPLICA_LAG}{{instance=\"{}\",shard=\"{}\",role=\"{}\"}} {l}",
                    i.addr,
                    sh.name,
                    i.role.as_str()
                );
            }
        }
    }
    for (name, help) in [
        (INSTANCE_ELIGIBLE, "1 when the instance takes reads."),
        (INSTANCE_IN_FLIGHT, "Routed requests in flight."),
    ] {
        head(&mut s, name, "gauge", help);
        for sh in &topo.shards {
            for i in std::iter::once(&sh.primary)
                .chain(&sh.replicas)
                .chain(&sh.reporting)
            {
                use peakgate_router::plan::ReplicaView;
                let v = if name == INSTANCE_ELIGIBLE {
                    u32::from(i.is_eligible())
                } else {
                    i.in_flight_now()
                };
                let _ = writeln!(
                    s,
                    "{name}{{instance=\"{}\",shard=\"{}\",role=\"{}\"}} {v}",
                    i.addr,
                    sh.name,
                    i.role.as_str()
                );
            }
        }
    }
    for (name, help, v) in [
        (
            THROTTLED_WRITES,
            "Writes slowed by replica lag.",
            m.throttled_writes.get() as f64,
        ),
        (
            THROTTLED_SECONDS,
            "Time writes spent throttled on replica lag.",
            m.throttled_us.get() as f64 / 1e6,
        ),
        (
            HOT_STATEMENTS,
            "Statements on hot (flash-sale) SKU rows, run on the hot instance.",
            m.hot_statements.get() as f64,
        ),
        (
            HOT_BATCHES,
            "Hot-row batches run (one transaction, one round trip each).",
            m.hot_batches.get() as f64,
        ),
        (
            HOT_BATCHED,
            "Statements run in hot-row batches.",
            m.hot_batched.get() as f64,
        ),
        (
            HOT_MERGED,
            "Hot-row batches run as one merged UPDATE whose total is split among the clients.",
            m.hot_merged.get() as f64,
        ),
        (
            HOT_BUSY,
            "Hot-row statements refused: queue full or waited too long (ERR 1205).",
            m.hot_busy.get() as f64,
        ),
        (
            HOT_SOLD_OUT,
            "Guarded decrements answered 0 rows by the sold-out short-circuit.",
            m.hot_sold_out_answers.get() as f64,
        ),
        (
            HOT_RESOLVED,
            "Hot-row batches whose connection died mid-batch, resolved from their marker row.",
            m.hot_resolved.get() as f64,
        ),
        (
            HOT_MOVE_WAITS,
            "Statements that waited for a SKU row move to end.",
            m.hot_move_waits.get() as f64,
        ),
        (
            HOT_MOVE_REFUSALS,
            "Statements refused (ERR 1205) because a SKU row move outlasted move_wait_ms.",
            m.hot_move_refusals.get() as f64,
        ),
        (
            QUERIES_KILLED,
            "Statements killed (KILL QUERY) past a limits rule's max_execution_ms.",
            m.queries_killed.get() as f64,
        ),
        (
            CLIENT_KILLS,
            "Clients' KILL statements (and COM_PROCESS_KILL) the proxy carried out.",
            m.client_kills.get() as f64,
        ),
        (
            PREPARED_REFUSED,
            "COM_STMT_PREPAREs refused (ERR 1461) at proxy.max_prepared_stmt_count.",
            m.prepared_refused.get() as f64,
        ),
        (
            BREAKER_OPENS,
            "Circuit breakers opened after consecutive connect failures.",
            m.breaker_opens.get() as f64,
        ),
        (
            MAP_RELOADS,
            "Shard maps put in effect by /reload or SIGHUP.",
            m.map_reloads.get() as f64,
        ),
    ] {
        head(&mut s, name, "counter", help);
        let _ = writeln!(s, "{name} {v}");
    }
    head(
        &mut s,
        HOT_MOVES,
        "counter",
        "SKU row moves between the home shard and the hot instance, by destination and result.",
    );
    for (to, counters) in ["hot", "home"].iter().zip(&m.hot_moves) {
        for (result, c) in Metrics::HOT_MOVE_RESULTS.iter().zip(counters) {
            let _ = writeln!(
                s,
                "{HOT_MOVES}{{to=\"{to}\",result=\"{result}\"}} {}",
                c.get()
            );
        }
    }
    head(
        &mut s,
        ERRORS,
        "counter",
        "ERR packets sent to clients by error code.",
    );
    for (code, n) in m.errors() {
        let _ = writeln!(s, "{ERRORS}{{code=\"{code}\"}} {n}");
    }
    head(
        &mut s,
        STATEMENT_DURATION,
        "histogram",
        "Statement latency through the proxy.",
    );
    let mut cum = 0;
    for (b, c) in BUCKETS_US.iter().zip(m.latency.buckets.iter()) {
        cum += c.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "{STATEMENT_DURATION}_bucket{{le=\"{}\"}} {cum}",
            *b as f64 / 1e6
        );
    }
    let count = m.latency.count.load(Ordering::Relaxed);
    let _ = writeln!(s, "{STATEMENT_DURATION}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(
        s,
        "{STATEMENT_DURATION}_sum {}",
        m.latency.sum_us.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(s, "{STATEMENT_DURATION}_count {count}");
    s
}
