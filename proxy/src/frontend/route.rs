//! Where a session's statement runs: asks `router::plan` (hints, rules, lag, read-your-writes)
//! unless the session holds a pinned connection, and takes a connection there: the instance's pool,
//! the reporting concurrency limit, and the `MASTER_GTID_WAIT` a read-your-writes plan asks for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use peakgate_router::plan::{self, Gtid, Plan, Reason, Role, SessionFacts, Target};
use peakgate_router::{Statement, StatementKind};
use tokio::sync::OwnedSemaphorePermit;
use tracing::debug;

use super::Session;
use crate::backend::conn::Reply;
use crate::backend::pipeline::Pipeline;
use crate::backend::pool::Pool;
use crate::backend::topology::{InFlight, Instance};
use crate::backend::{Error, PooledConn};
use crate::errors::ClientError;
use crate::metrics::METRICS;
use crate::protocol::constants::*;

/// A cache key for the session's current schema (FNV-1a: computed for every statement, and the
/// key only has to tell this process's schemas apart; "no schema" is 0).
pub(super) fn schema_key(schema: Option<&str>) -> u64 {
    schema.map_or(0, |s| peakgate_router::digest::fnv1a64(s.as_bytes()).max(1))
}

/// A session's handles on one instance, made on first use.
pub(super) struct Handles {
    pub pool: Pool,
    pub pipeline: Arc<Pipeline>,
}

/// Where the next statement runs.
pub(super) struct Route {
    pub inst: Arc<Instance>,
    pub target: Target,
    pub reason: Reason,
    /// Wait for this GTID on the replica before running (read-your-writes).
    pub wait_for: Option<Gtid>,
    /// The session's pinned connection (transaction, locks, ...): no choice, no retry.
    pub pinned: bool,
    /// Held while the statement runs.
    _in_flight: Option<InFlight>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Route {
    /// A read on a replica or reporting instance that may be retried elsewhere if the instance
    /// fails before the client sees a byte of the answer.
    pub fn is_retryable(&self) -> bool {
        !self.pinned && self.target != Target::Primary
    }
}

impl Session {
    /// The session's handles on `inst`.
    pub(super) fn handles(&mut self, inst: &Instance) -> &Handles {
        if self.handles.len() <= inst.index {
            self.handles.resize_with(inst.index + 1, || None);
        }
        let variant = self.caps & VARIANT_CAPABILITIES;
        let shared = &self.shared;
        self.handles[inst.index].get_or_insert_with(|| Handles {
            pool: shared.pools.pool(&inst.addr, variant),
            pipeline: shared.pipeline(&inst.addr, variant),
        })
    }

    /// The instance of the default shard's primary.
    pub(super) fn primary(&self) -> Arc<Instance> {
        let t = &self.shared.topology;
        t.shards[t.default_shard].primary.clone()
    }

    /// Routes `stmt` (`None`: a command without a statement, such as COM_INIT_DB, which runs where
    /// the session is pinned or on the primary). `exclude` is an instance that just failed this
    /// statement. `Err` is the client's error.
    pub(super) async fn route(
        &mut self,
        stmt: Option<&Statement>,
        shard: usize,
        exclude: Option<Target>,
        tables: &[String],
    ) -> Result<Route, ClientError> {
        if let Some(c) = &self.pinned {
            let inst = self.instance_of(&c.addr);
            // A one-shot pin (warnings, FOUND_ROWS) on a replica must not catch a write.
            let only_one_shot = self.pins.only_one_shot();
            let wants_primary =
                stmt.is_some_and(|s| !matches!(s.kind, StatementKind::Read | StatementKind::Admin));
            if only_one_shot && inst.role != Role::Primary && wants_primary {
                self.release_pinned().await;
            } else {
                let target = match inst.role {
                    Role::Primary => Target::Primary,
                    Role::Replica => Target::Replica(0),
                    Role::Reporting => Target::Reporting(0),
                };
                METRICS.routed(inst.role);
                return Ok(Route {
                    _in_flight: Some(inst.start_request()),
                    inst,
                    target,
                    reason: Reason::NotRead,
                    wait_for: None,
                    pinned: true,
                    _permit: None,
                });
            }
        }
        let topo = self.shared.topology.clone();
        let shard_idx = shard.min(topo.shards.len() - 1);
        let shard = &topo.shards[shard_idx];
        let plan = match stmt {
            // A held-back BEGIN: the transaction starts on this statement's primary.
            _ if self.deferred_begin.is_some() => Plan {
                target: Target::Primary,
                reason: Reason::NotRead,
                wait_for: None,
            },
            None => Plan {
                target: Target::Primary,
                reason: Reason::NotRead,
                wait_for: None,
            },
            Some(s) => {
                let facts = SessionFacts {
                    user: &self.user,
                    autocommit: self.state.is_autocommit(),
                    since_last_write_ms: self.since_last_write_ms(),
                    last_gtid: self.last_gtid_on(shard_idx),
                    tables,
                };
                plan::plan(
                    s,
                    &facts,
                    &shard.replicas,
                    &shard.reporting,
                    &self.shared.read_policy,
                    exclude,
                )
                .map_err(|e| ClientError::new(1105, "HY000", e.to_string()))?
            }
        };
        match plan.reason {
            Reason::LagFallback => METRICS.lag_fallbacks.inc(),
            Reason::RywPrimary => METRICS.ryw_fallbacks.inc(),
            _ => {}
        }
        let inst = match plan.target {
            Target::Primary => shard.primary.clone(),
            Target::Replica(i) => shard.replicas[i].clone(),
            Target::Reporting(i) => shard.reporting[i].clone(),
        };
        let permit = match &inst.slots {
            Some(slots) => {
                let wait = Duration::from_millis(self.shared.config.backend.pool_wait_timeout_ms);
                match tokio::time::timeout(wait, slots.clone().acquire_owned()).await {
                    Ok(Ok(p)) => Some(p),
                    _ => {
                        return Err(ClientError::new(
                            1040,
                            "08004",
                            format!(
                                "reporting instance {} is at routing.reporting_max_concurrency; retry later",
                                inst.addr
                            ),
                        ));
                    }
                }
            }
            None => None,
        };
        debug!(target = inst.role.as_str(), addr = %inst.addr, reason = plan.reason.as_str(), "routed");
        METRICS.routed(inst.role);
        Ok(Route {
            _in_flight: Some(inst.start_request()),
            inst,
            target: plan.target,
            reason: plan.reason,
            wait_for: plan.wait_for,
            pinned: false,
            _permit: permit,
        })
    }

    /// Where a command that is no statement of the transaction runs (COM_STMT_PREPARE,
    /// COM_INIT_DB, COM_FIELD_LIST, COM_STATISTICS): the held connection, else a connection of
    /// the default shard's primary. A held-back BEGIN stays held back: it opens with the first
    /// statement, which names the shard; opened here, the transaction would start, and stay, where
    /// this command ran. `None`: the client got the error.
    pub(super) async fn command_conn(
        &mut self,
        seq: u8,
    ) -> Result<Option<(Route, PooledConn)>, crate::protocol::Error> {
        let shard = match &self.pinned {
            Some(c) => self.shard_of_addr(&c.addr),
            None => self.shared.topology.default_shard,
        };
        let begin = self.deferred_begin.take();
        let conn = match self.route(None, shard, None, &[]).await {
            Ok(mut route) => match self.acquire(&mut route).await {
                Ok(c) => Ok((route, c)),
                Err(e) => Err(Err(e)),
            },
            Err(e) => Err(Ok(e)),
        };
        self.deferred_begin = begin;
        match conn {
            Ok(rc) => Ok(Some(rc)),
            Err(Ok(e)) => {
                self.send_error(seq, &e).await;
                Ok(None)
            }
            Err(Err(e)) => self.backend_failed(seq, &e).await.map(|()| None),
        }
    }

    /// The tables `sql` names as `schema.table` (lower-case, unqualified names in the session's
    /// schema), when a routing or limits rule may match on tables; cached per digest and schema.
    pub(super) fn tables_of(&self, stmt: &Statement, sql: &[u8]) -> Arc<Vec<String>> {
        if !self.shared.read_policy.needs_tables()
            && !self.shared.limits.is_active()
            && !self.shared.limits.has_priorities()
        {
            // One shared empty list: `Arc::default()` would allocate for every statement.
            return self.shared.no_tables.clone();
        }
        let schema = self.names_db();
        let key = (stmt.digest, schema_key(schema));
        if let Some(t) = self.shared.cached_tables(key) {
            return t;
        }
        struct NoKeys;
        impl peakgate_router::analyze::ShardKeys for NoKeys {
            fn shard_key(
                &self,
                _: Option<&str>,
                _: &str,
            ) -> Option<peakgate_router::analyze::KeyColumns> {
                None
            }
        }
        let tables: Vec<String> = std::str::from_utf8(sql)
            .ok()
            .and_then(|text| peakgate_router::analyze::analyze(text, &NoKeys).ok())
            .map(|a| {
                a.tables
                    .iter()
                    .map(|t| {
                        let s = t.schema.as_deref().or(schema).unwrap_or("");
                        format!("{s}.{}", t.name).to_ascii_lowercase()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let tables = Arc::new(tables);
        self.shared.cache_tables(key, tables.clone());
        tables
    }

    /// The instance a backend address belongs to (the primary when none does, which cannot
    /// happen for connections the session took from its routes).
    pub(super) fn instance_of(&self, addr: &str) -> Arc<Instance> {
        self.shared
            .topology
            .instances
            .iter()
            .find(|i| &*i.addr == addr)
            .cloned()
            .unwrap_or_else(|| self.primary())
    }

    /// A backend connection for `route`: the pinned one, or a pooled one brought to the session's
    /// state. A read-your-writes wait that times out moves the route to the primary.
    pub(super) async fn acquire(&mut self, route: &mut Route) -> Result<PooledConn, Error> {
        if route.pinned
            && let Some(c) = self.pinned.take()
        {
            return Ok(c);
        }
        let mut c = self.pooled(&route.inst.clone()).await?;
        if let Some(begin) = self.deferred_begin.take() {
            // The transaction the client opened starts here, on the shard its first statement needs.
            if let Err(e) = self
                .open_transaction(&mut c, route.inst.shard, &begin)
                .await
            {
                self.begin_lost();
                return Err(e);
            }
        }
        if let Some(g) = route.wait_for.take() {
            METRICS.ryw_waits.inc();
            let secs = self.shared.config.routing.ryw_wait_ms as f64 / 1000.0;
            let reached = match c
                .query(&format!("SELECT MASTER_GTID_WAIT('{g}', {secs:.3})"))
                .await?
            {
                Reply::Rows { rows, .. } => {
                    rows.first().and_then(|r| r.first()).cloned().flatten() == Some(b"0".to_vec())
                }
                Reply::Ok { .. } => false,
            };
            if !reached {
                METRICS.ryw_fallbacks.inc();
                drop(c);
                // The primary of the shard the read is for (not the default shard's).
                let shard = route.inst.shard;
                route.inst = self.shared.topology.shards[shard].primary.clone();
                route.target = Target::Primary;
                route.reason = Reason::RywPrimary;
                route._in_flight = Some(route.inst.start_request());
                c = self.pooled(&route.inst.clone()).await?;
            }
        }
        Ok(c)
    }

    pub(super) async fn pooled(&mut self, inst: &Instance) -> Result<PooledConn, Error> {
        let backend = &self.shared.config.backend;
        let (threshold, open_ms) = (backend.breaker_failures, backend.breaker_open_ms);
        if threshold > 0
            && let Some(left) = inst.breaker_refuses()
        {
            return Err(Error::Connect {
                addr: inst.addr.to_string(),
                reason: format!(
                    "circuit breaker open after {} failed connects; next try in {left} ms",
                    inst.breaker_failures()
                ),
            });
        }
        let pool = self.handles(inst).pool.clone();
        let mut c = match pool.get().await {
            Ok(c) => {
                inst.breaker_success();
                c
            }
            Err(e) => {
                // Only failures with no live connection to the instance count: a connect that
                // times out in a storm while the pool's other connections work is not an outage.
                if matches!(e, Error::Connect { .. } | Error::Login { .. })
                    && !pool.has_live_connections()
                {
                    inst.breaker_failure(threshold, open_ms);
                }
                return Err(e);
            }
        };
        // Connections from before the instance last failed are dead or suspect: drop them (a
        // bounded number of times; new ones carry the current epoch).
        for _ in 0..=self.shared.config.backend.pool_size {
            let now = inst.epoch();
            match c.epoch {
                Some(e) if e != now => {
                    c.broken = true;
                    drop(c);
                    c = pool.get().await?;
                }
                _ => {
                    c.epoch = Some(now);
                    break;
                }
            }
        }
        if c.multi_statements != self.multi_statements {
            let opt: u16 = if self.multi_statements { 0 } else { 1 };
            let mut p = vec![COM_SET_OPTION];
            p.extend_from_slice(&opt.to_le_bytes());
            c.command(&p).await?;
            c.multi_statements = self.multi_statements;
        }
        c.sync_to(&self.state).await?;
        Ok(c)
    }

    /// A statement failed on `route`'s instance before the client saw anything: take the
    /// instance out of reads and say whether to try once more elsewhere.
    pub(super) fn should_retry(&self, route: &Route, e: &Error, attempt: u32) -> bool {
        let instance_failed = matches!(
            e,
            Error::Connect { .. } | Error::Login { .. } | Error::Protocol { .. }
        );
        if instance_failed {
            route.inst.mark_failed();
        }
        let retry = attempt == 0
            && route.is_retryable()
            && (instance_failed || matches!(e, Error::PoolTimeout { .. }));
        if retry {
            METRICS.read_retries.inc();
            debug!(addr = %route.inst.addr, error = %e, "read failed before answering; retrying elsewhere");
        }
        retry
    }

    /// Learns from an answer what read-your-writes needs: a committed GTID means a write (on the
    /// shard of the backend connection `addr`).
    pub(super) fn note_answer(&mut self, gtid: Option<Gtid>, stmt: Option<&Statement>, addr: &str) {
        let wrote = gtid.is_some()
            || stmt.is_some_and(|s| matches!(s.kind, StatementKind::Write | StatementKind::Ddl));
        if !wrote {
            return;
        }
        let now = Instant::now();
        self.last_write = Some(now);
        let shard = self.shard_of_addr(addr);
        if let Some(g) = gtid {
            if self.last_gtids.len() <= shard {
                self.last_gtids.resize(shard + 1, None);
            }
            self.last_gtids[shard] = Some(g);
        }
        if let Some(u) = &self.user_ryw {
            u.note(shard, gtid, self.shared.started);
        }
    }

    /// Read-your-writes after a statement that ran on several connections (a scatter write, DDL
    /// on a table and its hot copy): each connection's committed GTID, on its own shard.
    pub(super) fn note_writes(&mut self, conns: &mut [(String, PooledConn, String)]) {
        for (_, c, _) in conns.iter_mut() {
            let gtid = c.last_gtid.take();
            let addr = c.addr.clone();
            self.note_answer(gtid, None, &addr);
        }
    }

    /// The GTID reads on `shard` must see: the session's, or the user's when the scope is "user".
    fn last_gtid_on(&self, shard: usize) -> Option<Gtid> {
        let own = self.last_gtids.get(shard).copied().flatten();
        let user = self.user_ryw.as_ref().and_then(|u| u.gtid(shard));
        match (own, user) {
            (Some(a), Some(b)) if a.domain == b.domain => Some(if a.seq >= b.seq { a } else { b }),
            (Some(a), _) => Some(a),
            (None, b) => b,
        }
    }

    /// Milliseconds since the last write of the session (or of its user, with the "user" scope).
    fn since_last_write_ms(&self) -> Option<u64> {
        let own = self.last_write.map(|t| t.elapsed().as_millis() as u64);
        let user = self
            .user_ryw
            .as_ref()
            .and_then(|u| u.since_last_write_ms(self.shared.started));
        match (own, user) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
