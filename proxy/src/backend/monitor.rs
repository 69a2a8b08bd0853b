//! The lag and health monitor: a heartbeat writer per primary and a prober per replica, each on
//! its own connection (never a pooled one), publishing into the [`Topology`]'s instances.
//!
//! Lag is measured with a heartbeat row, not `Seconds_Behind_Master`: every `heartbeat_ms` the
//! proxy writes its own clock (unix microseconds) into `peakgate.heartbeat` on each primary (the
//! table is created if missing) and remembers what it wrote. A replica's lag is the age of the
//! oldest heartbeat it has not applied yet: 0 when it has the last one, otherwise `now - written`
//! of the first heartbeat after the one it shows. Both ends use the proxy's clock, so server clock
//! skew does not matter, and an idle replica that lost its source shows a growing lag instead of
//! `Seconds_Behind_Master`'s reassuring 0.
//!
//! `SHOW SLAVE STATUS` is read on every probe too: a stopped IO or SQL thread is unhealthy (its
//! `Seconds_Behind_Master` is NULL, not 0), and before the first heartbeat has arrived its
//! `Seconds_Behind_Master` is the fallback lag. A probe that does not finish within
//! `health_timeout_ms` (a hung server) or fails (a dead one) puts the replica out at once; it comes
//! back through the [`LagGate`]'s hold-down.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peakgate_router::plan::{GtidPos, LagGate, Role};
use tokio::sync::watch;
use tracing::{Instrument, debug, info, info_span, warn};

use super::conn::{Column, Reply};
use super::topology::{Health, Instance, Topology};
use super::{BackendConn, Error};
use crate::config::Config;

/// Heartbeats written and not yet known to be old, per primary (a bounded ring).
#[derive(Debug, Default)]
struct Beats {
    written: Mutex<VecDeque<u64>>,
}

/// How many written heartbeats are remembered (at 100 ms: a minute).
const RING: usize = 600;

impl Beats {
    fn push(&self, ts: u64) {
        let mut w = self.lock();
        if w.len() == RING {
            w.pop_front();
        }
        w.push_back(ts);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<u64>> {
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lag of a replica that shows heartbeat `seen`, at `now` (both unix microseconds), in ms.
    fn lag_ms(&self, seen: u64, now: u64) -> u64 {
        let w = self.lock();
        let waiting_since = match w.iter().find(|&&b| b > seen) {
            Some(&b) => b,
            None => return 0,
        };
        // Older than the ring: the replica is at least as old as what it shows.
        let since = if w.front().is_some_and(|&f| f > seen) && w.len() == RING {
            seen
        } else {
            waiting_since
        };
        now.saturating_sub(since) / 1000
    }
}

/// Settings the monitor tasks share.
#[derive(Debug, Clone)]
struct Settings {
    user: String,
    password: String,
    node: String,
    heartbeat: Duration,
    timeout: Duration,
    max_lag_ms: u64,
    hold_down_ms: u64,
}

/// Starts the monitor tasks; they stop when `shutdown` turns true.
pub fn spawn(topo: &Arc<Topology>, cfg: &Config, shutdown: watch::Receiver<bool>) {
    let settings = Settings {
        user: cfg.backend.user.clone(),
        password: cfg.backend.password.clone(),
        node: node_name(&cfg.listen.mysql),
        heartbeat: Duration::from_millis(cfg.routing.heartbeat_ms.max(1)),
        timeout: Duration::from_millis(cfg.routing.health_timeout_ms.max(1)),
        max_lag_ms: cfg.routing.max_replica_lag_ms,
        hold_down_ms: cfg.routing.hold_down_ms,
    };
    for shard in &topo.shards {
        let beats = Arc::new(Beats::default());
        let s = settings.clone();
        let p = shard.primary.clone();
        let b = beats.clone();
        let rx = shutdown.clone();
        tokio::spawn(
            heartbeat(p, b, s, rx).instrument(
                info_span!("heartbeat", shard = %shard.name, addr = %shard.primary.addr),
            ),
        );
        for r in shard.replicas.iter().chain(&shard.reporting) {
            let s = settings.clone();
            let b = beats.clone();
            let rx = shutdown.clone();
            tokio::spawn(
                probe_loop(r.clone(), b, s, rx)
                    .instrument(info_span!("probe", shard = %shard.name, addr = %r.addr)),
            );
        }
    }
}

/// This proxy's row in `peakgate.heartbeat`: host name and listener, so proxies sharing a
/// primary keep separate rows.
fn node_name(listen: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{host}/{listen}")
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

async fn connect(addr: &Arc<str>, s: &Settings) -> Result<BackendConn, Error> {
    BackendConn::connect(addr.clone(), None, &s.user, &s.password, 0, s.timeout).await
}

/// Writes the heartbeat on a primary every `heartbeat_ms`.
async fn heartbeat(
    primary: Arc<Instance>,
    beats: Arc<Beats>,
    s: Settings,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(s.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn: Option<BackendConn> = None;
    let mut created = false;
    let node = quote(&s.node);
    let mut last_error = String::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let ts = now_us();
        let step = async {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => conn.insert(connect(&primary.addr, &s).await?),
            };
            if !created {
                c.query("CREATE DATABASE IF NOT EXISTS peakgate").await?;
                c.query(
                    "CREATE TABLE IF NOT EXISTS peakgate.heartbeat (\
                     node VARCHAR(255) NOT NULL PRIMARY KEY, \
                     ts BIGINT NOT NULL COMMENT 'unix microseconds, proxy clock') ENGINE=InnoDB",
                )
                .await?;
                created = true;
            }
            c.query(&format!(
                "INSERT INTO peakgate.heartbeat (node, ts) VALUES ({node}, {ts}) \
                 ON DUPLICATE KEY UPDATE ts = VALUES(ts)"
            ))
            .await
        };
        match tokio::time::timeout(s.timeout, step).await {
            Ok(Ok(_)) => {
                beats.push(ts);
                primary.breaker_success();
                if !last_error.is_empty() {
                    info!("heartbeat writes again");
                    last_error.clear();
                }
                primary.publish(true, Some(0), None, health("up", String::new(), None));
            }
            outcome => {
                primary.bump_epoch();
                let why = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {:?}", s.timeout),
                };
                if why != last_error {
                    warn!(error = %why, "heartbeat write failed");
                    last_error = why.clone();
                }
                conn = None;
                primary.publish(true, None, None, health("down", why, None));
            }
        }
    }
}

/// Probes a replica every `heartbeat_ms` and publishes its verdict.
async fn probe_loop(
    inst: Arc<Instance>,
    beats: Arc<Beats>,
    s: Settings,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(s.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn: Option<BackendConn> = None;
    let mut gate = LagGate::default();
    let started = std::time::Instant::now();
    let mut was = "unknown";
    let node = quote(&s.node);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if inst.take_failed() {
            gate.force_out();
        }
        let reading =
            match tokio::time::timeout(s.timeout, probe(&mut conn, &inst, &s, &node)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    conn = None;
                    inst.bump_epoch();
                    Reading::down(e.to_string())
                }
                Err(_) => {
                    conn = None;
                    inst.bump_epoch();
                    Reading::down(format!("no answer within {:?}", s.timeout))
                }
            };
        let (lag, state, detail) = reading.verdict(&beats, now_us());
        // What the heartbeat says even when the replica is out (a stopped SQL thread): shown in
        // /status and /metrics, and what write throttling goes by.
        let measured = lag.or_else(|| {
            (reading.down.is_none())
                .then_some(reading.heartbeat)
                .flatten()
                .map(|seen| beats.lag_ms(seen, now_us()))
        });
        let now_ms = started.elapsed().as_millis() as u64;
        let eligible = gate.observe(now_ms, lag, s.max_lag_ms, s.hold_down_ms);
        let state = match (state, lag) {
            ("up", Some(l)) if l > s.max_lag_ms => "lagging",
            ("up", _) if !eligible => "holding",
            (st, _) => st,
        };
        if state != was {
            info!(state, lag_ms = ?lag, detail = %detail, "replica state");
            was = state;
        }
        inst.publish(
            eligible,
            measured,
            reading.pos,
            health(state, detail, reading.seconds_behind),
        );
    }
}

/// One probe's raw findings.
#[derive(Debug, Default)]
struct Reading {
    /// Why the probe failed, when it did.
    down: Option<String>,
    io_running: bool,
    sql_running: bool,
    seconds_behind: Option<u64>,
    last_error: String,
    /// The proxy's heartbeat as the replica shows it.
    heartbeat: Option<u64>,
    pos: Option<GtidPos>,
}

impl Reading {
    fn down(why: String) -> Self {
        Self {
            down: Some(why),
            ..Self::default()
        }
    }

    /// Lag in ms (`None`: unhealthy), state, detail.
    fn verdict(&self, beats: &Beats, now: u64) -> (Option<u64>, &'static str, String) {
        if let Some(why) = &self.down {
            return (None, "down", why.clone());
        }
        if !self.io_running || !self.sql_running {
            let which = match (self.io_running, self.sql_running) {
                (false, false) => "IO and SQL threads",
                (false, true) => "IO thread",
                _ => "SQL thread",
            };
            let mut d = format!("replication {which} not running");
            if !self.last_error.is_empty() {
                d.push_str(": ");
                d.push_str(&self.last_error);
            }
            return (None, "replication_stopped", d);
        }
        match (self.heartbeat, self.seconds_behind) {
            (Some(seen), _) => (Some(beats.lag_ms(seen, now)), "up", String::new()),
            (None, Some(sbm)) => (
                Some(sbm.saturating_mul(1000)),
                "up",
                "no heartbeat row yet: lag from Seconds_Behind_Master".into(),
            ),
            (None, None) => (
                None,
                "unknown",
                "no heartbeat row and Seconds_Behind_Master is NULL".into(),
            ),
        }
    }
}

async fn probe(
    conn: &mut Option<BackendConn>,
    inst: &Instance,
    s: &Settings,
    node: &str,
) -> Result<Reading, Error> {
    let addr: Arc<str> = inst.addr.clone();
    let c = match conn.as_mut() {
        Some(c) => c,
        None => conn.insert(connect(&addr, s).await?),
    };
    let mut r = Reading::default();
    match c.query("SHOW SLAVE STATUS").await? {
        Reply::Rows { columns, rows, .. } => match rows.first() {
            Some(row) => {
                let get = |name: &str| cell(&columns, row, name);
                r.io_running = get("Slave_IO_Running").as_deref() == Some("Yes");
                r.sql_running = get("Slave_SQL_Running").as_deref() == Some("Yes");
                r.seconds_behind = get("Seconds_Behind_Master").and_then(|v| v.parse().ok());
                r.last_error = [get("Last_SQL_Error"), get("Last_IO_Error")]
                    .into_iter()
                    .flatten()
                    .filter(|e| !e.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ");
            }
            None => r.last_error = "not configured as a replica".into(),
        },
        Reply::Ok { .. } => r.last_error = "not configured as a replica".into(),
    }
    let sql =
        format!("SELECT @@gtid_slave_pos, (SELECT ts FROM peakgate.heartbeat WHERE node = {node})");
    let reply = match c.query(&sql).await {
        Ok(r) => r,
        // The heartbeat table has not replicated yet (1146) or its database is missing (1049).
        Err(Error::Server { err, .. }) if err.code == 1146 || err.code == 1049 => {
            c.query("SELECT @@gtid_slave_pos, NULL").await?
        }
        Err(e) => return Err(e),
    };
    if let Reply::Rows { rows, .. } = reply
        && let Some(row) = rows.first()
    {
        let text = |i: usize| {
            row.get(i)
                .cloned()
                .flatten()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        r.pos = text(0).map(|p| GtidPos::parse(&p));
        r.heartbeat = text(1).and_then(|v| v.parse().ok());
    }
    debug!(role = inst.role.as_str(), heartbeat = ?r.heartbeat, "probed");
    if inst.role == Role::Primary {
        r.io_running = true;
        r.sql_running = true;
    }
    Ok(r)
}

fn cell(columns: &[Column], row: &[Option<Vec<u8>>], name: &str) -> Option<String> {
    let i = columns.iter().position(|c| c.name == name)?;
    row.get(i)?
        .as_ref()
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn health(state: &'static str, detail: String, seconds_behind: Option<u64>) -> Health {
    Health {
        state,
        detail,
        seconds_behind,
        checked_unix_ms: now_us() / 1000,
    }
}

/// A SQL string literal (hex, so no escaping rules apply).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(3 + 2 * s.len());
    out.push_str("X'");
    for b in s.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_age_of_the_oldest_unapplied_heartbeat() {
        let b = Beats::default();
        for ts in [1_000_000, 1_100_000, 1_200_000] {
            b.push(ts);
        }
        // Has the last one: no lag, however old it is.
        assert_eq!(b.lag_ms(1_200_000, 9_000_000), 0);
        // Shows the first: the second has waited since 1.1 s.
        assert_eq!(b.lag_ms(1_000_000, 1_250_000), 150);
        // Shows something older than anything written (another run's row).
        assert_eq!(b.lag_ms(5, 1_250_000), 250);
    }

    #[test]
    fn a_stopped_thread_is_unhealthy_even_when_seconds_behind_says_zero() {
        let b = Beats::default();
        let r = Reading {
            io_running: true,
            sql_running: false,
            seconds_behind: Some(0),
            heartbeat: Some(1),
            ..Reading::default()
        };
        let (lag, state, detail) = r.verdict(&b, 10);
        assert_eq!((lag, state), (None, "replication_stopped"));
        assert!(detail.contains("SQL thread"), "{detail}");
        let r = Reading {
            io_running: true,
            sql_running: true,
            seconds_behind: None,
            ..Reading::default()
        };
        assert_eq!(r.verdict(&b, 10).0, None);
        let r = Reading {
            io_running: true,
            sql_running: true,
            seconds_behind: Some(3),
            ..Reading::default()
        };
        assert_eq!(r.verdict(&b, 10).0, Some(3000));
    }

    #[test]
    fn quote_is_hex() {
        assert_eq!(quote("a/b"), "X'612f62'");
    }
}
