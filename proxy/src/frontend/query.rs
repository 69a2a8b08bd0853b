//! COM_QUERY and the other forwarded commands: classify, take a backend connection (the pinned one
//! or a pooled one brought to the session's state), relay the answer, then decide what the
//! session keeps.

use peakgate_router::{SessionEffects, Statement};
use tracing::debug;

use super::Session;
use super::protect::Protection;
use super::route::Route;
use super::shard::ShardDecision;
use crate::backend::PooledConn;
use crate::config::Unparseable;
use crate::errors::{ClientError, from_backend};
use crate::execute::{AnswerKind, Outcome, relay};
use crate::metrics::METRICS;
use crate::protocol;
use crate::protocol::constants::*;

/// A read answered on a shared connection with warnings, kept for the next command (and the
/// ones after while they too read warnings): the warnings stayed on the shared connection, which
/// runs other sessions' statements next.
#[derive(Clone)]
pub(super) struct WarnedRead {
    pub(super) inst: std::sync::Arc<crate::backend::topology::Instance>,
    /// The COM_QUERY, or the client's COM_STMT_EXECUTE (its statement id is the client's).
    pub(super) payload: Vec<u8>,
    /// For an EXECUTE: the statement, prepared again on the pooled connection that repeats it.
    pub(super) prepared: Option<Box<super::prepared::ProxyStmt>>,
}

/// Reads whose warnings `SHOW WARNINGS` may fetch by running them again hold at most this many
/// rows (the repeat drops the rows unread, but the server produces them all again).
const WARNED_READ_MAX_ROWS: u64 = 1000;

/// How a relayed command ended.
pub(super) enum Relayed {
    /// The client has its answer (rows, OK, or an error).
    Done,
    /// The instance failed before the client saw anything: run the read again elsewhere.
    Retry,
}

impl Session {
    pub(super) async fn com_query(
        &mut self,
        seq: u8,
        payload: &[u8],
        warned: Option<WarnedRead>,
    ) -> Result<(), protocol::Error> {
        let mut stmt = self.shared.classifier.classify(&payload[1..]);
        METRICS.statement(stmt.kind);
        // A KILL names the proxy's sessions, never a backend thread (`kill.rs`).
        if let Some(k) = super::kill::parse(&stmt, &payload[1..]) {
            return match self.kill(seq, k).await? {
                true => Err(protocol::Error::Closed),
                false => Ok(()),
            };
        }
        if let Some(w) = warned
            // SHOW WARNINGS / ERRORS / COUNT(*) WARNINGS, @@warning_count, GET DIAGNOSTICS, ...
            && stmt.effects.uses_diagnostics
            && !stmt.multi
            && self.pinned.is_none()
            && let Some(conn) = self.repeat_warned_read(w.clone()).await
        {
            // `SHOW WARNINGS` again, or after `SELECT @@warning_count`, sees them again.
            self.warned_read = Some(w);
            return self
                .relay_query(seq, conn, payload, &stmt, None)
                .await
                .map(|_| ());
        }
        if !stmt.parsed {
            METRICS.unparseable.inc();
            if self.shared.config.routing.unparseable == Unparseable::Reject {
                let e = ClientError::new(
                    1064,
                    "42000",
                    "PeakGate could not parse this statement and routing.unparseable = \"reject\"",
                );
                self.send_error(seq, &e).await;
                return Ok(());
            }
        }
        if stmt.multi && !self.multi_statements {
            let e = ClientError::new(
                1064,
                "42000",
                "You have an error in your SQL syntax: several statements in one query need CLIENT_MULTI_STATEMENTS",
            );
            self.send_error(seq, &e).await;
            return Ok(());
        }
        debug!(kind = stmt.kind.as_str(), digest = %stmt.digest_text, "statement");
        if self.lost.is_some() && self.lost_gate(seq, &stmt, &payload[1..]).await? {
            return Ok(());
        }
        let (_protection, critical) = match self.protect(seq, &stmt, &payload[1..]).await? {
            Protection::Refused => return Ok(()),
            p @ Protection::Run {
                route, critical, ..
            } => {
                if route.is_some() && stmt.hints.route.is_none() {
                    stmt.hints.route = route;
                }
                (p, critical)
            }
        };
        let shard = match self.shard_decision(seq, &stmt, &payload[1..], None).await? {
            ShardDecision::One(s) => s,
            ShardDecision::Answered => return Ok(()),
        };
        self.throttle(&stmt, shard, critical).await;
        if self
            .hot_queue(seq, &stmt, &payload[1..], shard, None)
            .await?
        {
            return Ok(());
        }
        let tables = self.tables_of(&stmt, &payload[1..]);
        let mut exclude = None;
        for attempt in 0..2 {
            let mut route = match self.route(Some(&stmt), shard, exclude, &tables).await {
                Ok(r) => r,
                Err(e) => {
                    self.send_error(seq, &e).await;
                    return Ok(());
                }
            };
            if !route.pinned
                && route.wait_for.is_none()
                && self.is_pipelineable(&stmt)
                && let Some(schema) = self.state.schema.clone()
            {
                let h = self.handles(&route.inst);
                let (pipeline, pool) = (h.pipeline.clone(), h.pool.clone());
                if let Some(pipe) = pipeline.pick(&self.state.sysvars, &pool) {
                    let res = pipe
                        .run(&schema, payload, &mut self.client, self.caps)
                        .await;
                    let repeat = || WarnedRead {
                        inst: route.inst.clone(),
                        payload: payload.to_vec(),
                        prepared: None,
                    };
                    if let Some(answered) = self.pipelined_answer(res, repeat).await {
                        return answered;
                    }
                }
            }
            let conn = match self.acquire(&mut route).await {
                Ok(c) => c,
                Err(e) if self.should_retry(&route, &e, attempt) => {
                    exclude = Some(route.target);
                    continue;
                }
                Err(e) => return self.backend_failed(seq, &e).await,
            };
            let relayed = self
                .relay_query(seq, conn, payload, &stmt, Some((&route, attempt)))
                .await?;
            match relayed {
                Relayed::Done => return Ok(()),
                Relayed::Retry => exclude = Some(route.target),
            }
        }
        Ok(())
    }

    /// Sends COM_QUERY `payload` (statement `stmt`) on `conn` and relays its results.
    async fn relay_query(
        &mut self,
        seq: u8,
        conn: PooledConn,
        payload: &[u8],
        stmt: &Statement,
        retry: Option<(&Route, u32)>,
    ) -> Result<Relayed, protocol::Error> {
        self.send_and_relay(
            seq,
            conn,
            payload,
            AnswerKind::Results,
            Some((stmt, &payload[1..])),
            false,
            retry,
        )
        .await
    }

    /// A pooled connection of the warned read's instance, in the session's state, on which that
    /// read ran again (its answer dropped): its warnings are now that connection's. `None` when
    /// that failed (the warnings question then runs as usual).
    async fn repeat_warned_read(&mut self, w: WarnedRead) -> Option<PooledConn> {
        let mut conn = self.pooled(&w.inst).await.ok()?;
        conn.sync_to(&self.state).await.ok()?;
        let execute;
        let payload = match &w.prepared {
            None => &w.payload,
            Some(ps) => {
                let bs =
                    match super::prepared::ensure_prepared(&mut conn, ps.schema.as_ref(), &ps.sql)
                        .await
                    {
                        Ok(Ok(bs)) => bs,
                        Ok(Err(_)) => return None,
                        Err(_) => {
                            conn.broken = true;
                            return None;
                        }
                    };
                execute = protocol::stmt::rewrite_execute(
                    &w.payload,
                    ps.num_params,
                    bs.id,
                    ps.types.as_deref(),
                )
                .ok()?;
                &execute
            }
        };
        match conn.command_discarding(payload).await {
            Ok(_) => Some(conn),
            Err(crate::backend::Error::Server { .. }) => None,
            Err(_) => {
                conn.broken = true;
                None
            }
        }
    }

    /// Finishes a statement run on a shared connection: `Some` when the client got its answer
    /// (or an error the server gave), `None` when the shared connection failed before answering,
    /// so the statement (a read) must run again on the pool. `repeat` describes the read for a
    /// `SHOW WARNINGS` right after it, called only when it left warnings (see [`WarnedRead`]).
    pub(super) async fn pipelined_answer(
        &mut self,
        res: Result<Outcome, crate::execute::RelayError>,
        repeat: impl FnOnce() -> WarnedRead,
    ) -> Option<Result<(), protocol::Error>> {
        match res {
            Ok(out) => {
                METRICS.pipelined.inc();
                self.statement_rows += out.rows;
                if out.warnings > 0 && out.rows <= WARNED_READ_MAX_ROWS {
                    self.warned_read = Some(repeat());
                }
                if out.client_gone {
                    return Some(Err(protocol::Error::Closed));
                }
                if let Some(code) = out.error {
                    METRICS.error(code);
                    self.statement_failed = true;
                }
                Some(Ok(()))
            }
            Err(e) => {
                if let crate::backend::Error::Server { .. } = e.source {
                    let (code, state, msg) = from_backend(&e.source);
                    return Some(self.send_error_raw(e.next_seq, code, &state, &msg).await);
                }
                debug!(error = %e.source, "shared connection failed; retrying on the pool");
                None
            }
        }
    }

    /// Whether a statement may run on a shared (pipelined) connection: an autocommit read that
    /// needs nothing of a connection but the database and system variables.
    pub(super) fn is_pipelineable(&self, stmt: &Statement) -> bool {
        self.shared.config.backend.shared_connections() > 0
            && self.pinned.is_none()
            && !self.pins.holds()
            // A held-back BEGIN opens on the next statement's connection, never a shared one.
            && self.deferred_begin.is_none()
            && stmt.kind == peakgate_router::StatementKind::Read
            && !stmt.locking_read
            && !stmt.multi
            && stmt.effects.is_none()
            && stmt.hints.is_empty()
            // A `max_execution_ms` limit kills the statement's server thread: not a shared one.
            && self.exec_limit.is_none()
            && self.state.user_vars.is_empty()
            && self.state.schema.is_some()
            // With autocommit off a read opens a transaction, which must not happen on a shared connection.
            && self.state.is_autocommit()
    }

    /// Forwards a command without a statement to classify (COM_INIT_DB, COM_FIELD_LIST, COM_STATISTICS).
    pub(super) async fn forward_simple(
        &mut self,
        seq: u8,
        payload: &[u8],
        kind: AnswerKind,
    ) -> Result<(), protocol::Error> {
        let Some((_route, conn)) = self.command_conn(seq).await? else {
            return Ok(());
        };
        self.send_and_relay(seq, conn, payload, kind, None, false, None)
            .await
            .map(|_| ())
    }

    /// Sends `payload` on `conn` (after anything already queued on it), relays the answer to the
    /// client, then lets `finish` decide what the session keeps. `stmt` is the statement with its
    /// SQL text (none for commands without one). `cursor` marks an EXECUTE that
    /// asked for a cursor: if the server opened one, the connection stays with the session.
    /// `retry` is the route and attempt of a read that may run again elsewhere: when the backend
    /// fails before any of the answer was flushed, the queued part is dropped and the answer is
    /// [`Relayed::Retry`] instead of an error to the client.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn send_and_relay(
        &mut self,
        seq: u8,
        mut conn: PooledConn,
        payload: &[u8],
        kind: AnswerKind,
        stmt_sql: Option<(&Statement, &[u8])>,
        cursor: bool,
        retry: Option<(&Route, u32)>,
    ) -> Result<Relayed, protocol::Error> {
        let stmt = stmt_sql.map(|s| s.0);
        let mark = self.client.pending_write();
        if let Err(e) = conn.send_command(payload).await {
            drop(conn);
            self.after_lost_backend(stmt_sql);
            if self.rolled_back_by_loss(stmt_sql) {
                return self.send_ok(seq).await.map(|()| Relayed::Done);
            }
            if let Some((route, attempt)) = retry
                && self.should_retry(route, &e, attempt)
            {
                return Ok(Relayed::Retry);
            }
            return self.backend_failed(seq, &e).await.map(|()| Relayed::Done);
        }
        let _watchdog = stmt.and_then(|_| self.watchdog(conn.addr.clone(), conn.thread_id));
        let running = self.ctl.ctl.running(conn.addr.clone(), conn.thread_id);
        let relayed = relay(
            &mut conn,
            &mut self.client,
            self.caps,
            kind,
            &mut self.state,
        )
        .await;
        running.end().await;
        match relayed {
            Ok(out) => {
                if out.client_gone {
                    drop(conn);
                    self.after_lost_backend(None);
                    return Err(protocol::Error::Closed);
                }
                if let Some(code) = out.error {
                    METRICS.error(code);
                    self.statement_failed = true;
                    // ER_CONNECTION_KILLED: the server closes the connection after this answer.
                    if code == 1927 {
                        conn.broken = true;
                    }
                }
                self.statement_rows += out.rows;
                if cursor && out.status & SERVER_STATUS_CURSOR_EXISTS != 0 {
                    self.pins.sticky = true;
                }
                let addr = conn.addr.clone();
                self.note_answer(out.gtid, stmt, &addr);
                self.finish(conn, &out, stmt.map(|s| &s.effects)).await;
                Ok(Relayed::Done)
            }
            Err(e) => {
                drop(conn);
                self.after_lost_backend(stmt_sql);
                if !e.flushed && self.rolled_back_by_loss(stmt_sql) {
                    self.client.truncate_write(mark);
                    return self.send_ok(seq).await.map(|()| Relayed::Done);
                }
                if !e.flushed
                    && let Some((route, attempt)) = retry
                    && self.should_retry(route, &e.source, attempt)
                {
                    self.client.truncate_write(mark);
                    return Ok(Relayed::Retry);
                }
                let (code, state, msg) = from_backend(&e.source);
                let msg = self.lost_note(msg);
                self.send_error_raw(e.next_seq, code, &state, &msg)
                    .await
                    .map(|()| Relayed::Done)
            }
        }
    }

    /// Answers a backend failure (saying so when it cost the session its transaction).
    pub(super) async fn backend_failed(
        &mut self,
        seq: u8,
        e: &crate::backend::Error,
    ) -> Result<(), protocol::Error> {
        let (code, state, msg) = from_backend(e);
        let msg = self.lost_note(msg);
        self.send_error_raw(seq, code, &state, &msg).await
    }

    /// After a command: learn what the answer says about the session, then keep or give back the connection.
    pub(super) async fn finish(
        &mut self,
        mut conn: PooledConn,
        out: &Outcome,
        effects: Option<&SessionEffects>,
    ) {
        if let Some(id) = out.last_insert_id {
            self.state.last_insert_id = id;
            conn.state.last_insert_id = id;
        }
        let ok = out.error.is_none();
        let pins = &mut self.pins;
        if out.status_known {
            // An XA branch stays with the session until the transaction ends.
            pins.in_txn = out.status & SERVER_STATUS_IN_TRANS != 0 || self.xa.is_some();
        }
        // Warnings, or an error: `SHOW WARNINGS` next asks this connection (as on a plain server).
        pins.one_shot = out.warnings > 0 || out.error.is_some();
        if let Some(fx) = effects {
            if ok {
                if fx.creates_temp_table {
                    pins.temp_tables += 1;
                }
                pins.temp_tables = pins.temp_tables.saturating_sub(fx.drops_temp_tables);
                if fx.get_lock {
                    pins.locks += 1;
                }
                if fx.release_lock {
                    pins.locks = pins.locks.saturating_sub(1);
                }
                if fx.release_all_locks {
                    pins.locks = 0;
                }
                if fx.lock_tables {
                    pins.lock_tables = true;
                }
                if fx.unlock_tables {
                    pins.lock_tables = false;
                }
                // GET_LOCK and LOCK TABLES also count as pinning for the router, but they are
                // tracked above and end with RELEASE_LOCK / UNLOCK TABLES: they must not make the
                // session keep its connection for good.
                if fx.sql_prepare || (fx.pins_connection && !fx.get_lock && !fx.lock_tables) {
                    pins.sticky = true;
                }
                if fx.calc_found_rows || fx.set_transaction_next {
                    pins.one_shot = true;
                }
            }
            if !fx.user_vars_assigned.is_empty() && !conn.broken {
                match conn.capture_user_vars(&fx.user_vars_assigned).await {
                    Ok(vals) => {
                        for (k, v) in vals {
                            conn.state.user_vars.insert(k.clone(), v.clone());
                            self.state.user_vars.insert(k, v);
                        }
                    }
                    Err(e) => {
                        debug!(error = %e, "could not read back user variables; keeping the connection");
                        self.pins.sticky = true;
                    }
                }
            }
        }
        if self.pins.holds() && !conn.broken {
            self.pinned = Some(conn);
        } else {
            if conn.broken {
                // The answer came, then the connection failed: `pins` already say what the
                // statement left open.
                self.after_lost_backend(None);
            }
            drop(conn);
        }
    }
}
