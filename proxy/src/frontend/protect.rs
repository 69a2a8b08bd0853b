//! Peak protection for one statement: the `[[limits.rules]]` decision (refuse, queue, delay,
//! reroute) before it runs, and its digest statistics after.

use std::sync::Arc;

use peakgate_router::{RouteHint, Statement};

use super::Session;
use crate::limits::{Decision, Permit, Priority, Query, Refusal};
use crate::protocol;

/// What the rules allow.
pub(super) enum Protection {
    /// Run it (holding the permit of a concurrency rule until the answer is sent), on `route`
    /// when a rule reroutes it.
    Run {
        _permit: Option<Permit>,
        route: Option<RouteHint>,
        /// Critical writes are never throttled on replica lag.
        critical: bool,
    },
    /// The client got the rule's ERR.
    Refused,
}

impl Session {
    /// Applies the limits rules to `stmt` (text `sql`).
    pub(super) async fn protect(
        &mut self,
        seq: u8,
        stmt: &Statement,
        sql: &[u8],
    ) -> Result<Protection, protocol::Error> {
        self.current_digest = Some(stmt.digest);
        self.current_digest_text.clear();
        self.current_digest_text.push_str(&stmt.digest_text);
        self.exec_limit = None;
        let limits = self.shared.limits.clone();
        if !limits.is_active() && !limits.has_priorities() {
            return Ok(Protection::Run {
                _permit: None,
                route: None,
                critical: false,
            });
        }
        let tables = self.tables_of(stmt, sql);
        let names: Vec<&str> = tables.iter().map(String::as_str).collect();
        let route_hint = stmt.hints.route.map(|r| ("route", r.as_str()));
        let shard_hint = stmt.hints.shard.as_deref().map(|s| ("shard", s));
        let hints: Vec<(&str, &str)> = route_hint.into_iter().chain(shard_hint).collect();
        let q = Query {
            user: &self.user,
            schema: self.names_db(),
            tables: &names,
            kind: stmt.kind,
            digest: stmt.digest,
            hints: &hints,
        };
        let critical = limits.priority(&q) == Priority::Critical;
        let exec_limit = limits.max_execution(&q).map(|(_, d)| d);
        let decision = if limits.is_active() {
            limits.check(&q)
        } else {
            Decision::Allow
        };
        self.exec_limit = exec_limit;
        match decision {
            Decision::Allow => Ok(Protection::Run {
                _permit: None,
                route: None,
                critical,
            }),
            Decision::Deny(r) => self.refuse(seq, &r).await,
            Decision::Wait(admission) => match admission.admit().await {
                Ok(permit) => Ok(Protection::Run {
                    _permit: Some(permit),
                    route: None,
                    critical,
                }),
                Err(r) => self.refuse(seq, &r).await,
            },
            Decision::Delay { duration, .. } => {
                tokio::time::sleep(duration).await;
                Ok(Protection::Run {
                    _permit: None,
                    route: None,
                    critical,
                })
            }
            Decision::Route { route, .. } => Ok(Protection::Run {
                _permit: None,
                route: Some(route),
                critical,
            }),
        }
    }

    /// Write throttling on replica lag: a non-critical write to `shard` waits while the shard's
    /// worst replica lag is over `routing.throttle_lag_ms`, in 10 ms steps, for at most
    /// `routing.throttle_max_wait_ms`; then it runs anyway (throttling slows writers, it does not
    /// refuse them).
    pub(super) async fn throttle(&mut self, stmt: &Statement, shard: usize, critical: bool) {
        let r = &self.shared.config.routing;
        if r.throttle_lag_ms == 0
            || critical
            || !matches!(stmt.kind, peakgate_router::StatementKind::Write)
        {
            return;
        }
        let (limit, max_wait) = (r.throttle_lag_ms, r.throttle_max_wait_ms);
        let topo = self.shared.topology.clone();
        let Some(sh) = topo.shards.get(shard) else {
            return;
        };
        let worst = || {
            sh.replicas
                .iter()
                .filter_map(|i| i.lag())
                .max()
                .unwrap_or(0)
        };
        if worst() <= limit {
            return;
        }
        let started = std::time::Instant::now();
        crate::metrics::METRICS.throttled_writes.inc();
        while worst() > limit && started.elapsed().as_millis() < u128::from(max_wait) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        crate::metrics::METRICS
            .throttled_us
            .add(started.elapsed().as_micros() as u64);
    }

    /// A watchdog that runs `KILL QUERY` on the backend connection `thread_id` of `addr` once
    /// the statement's `max_execution_ms` has passed; dropping the guard cancels it.
    pub(super) fn watchdog(&self, addr: Arc<str>, thread_id: u32) -> Option<Watchdog> {
        let limit = self.exec_limit?;
        let b = self.shared.config.backend.clone();
        let ctl = self.ctl.ctl.clone();
        let handle = tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            // Only while the statement still runs there: once answered, its connection may be
            // back in the pool running another session's statement.
            match ctl.kill_running(&b, Some((&addr, thread_id))).await {
                Ok(true) => crate::metrics::METRICS.queries_killed.inc(),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "KILL QUERY failed"),
            }
        });
        Some(Watchdog(handle))
    }

    async fn refuse(&mut self, seq: u8, r: &Refusal) -> Result<Protection, protocol::Error> {
        self.send_error_raw(seq, r.code, &r.sqlstate, &r.message)
            .await
            .map(|()| Protection::Refused)
    }

    /// Records the finished statement's digest statistics.
    pub(super) fn record_digest(&mut self, latency_us: u64) {
        if let Some(digest) = self.current_digest.take() {
            let failed = std::mem::take(&mut self.statement_failed);
            let rows = std::mem::take(&mut self.statement_rows);
            self.shared
                .digests
                .record(digest, &self.current_digest_text, latency_us, rows, failed);
        }
        self.statement_failed = false;
    }
}

/// Cancels a pending `KILL QUERY` when dropped (the statement finished in time).
pub(super) struct Watchdog(tokio::task::JoinHandle<()>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.abort();
    }
}
