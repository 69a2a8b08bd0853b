//! Prepared statements. Client statement ids are the proxy's own; each backend connection keeps
//! its own prepares (cached by SQL text and database), made transparently on whichever connection
//! an EXECUTE lands on, in the database that was current when the client prepared (the server binds
//! a statement to that database, and so does the proxy). Long data is buffered in the proxy and replayed right before the EXECUTE, and the
//! parameter types a client bound once are re-sent on every EXECUTE.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use peakgate_router::Statement;

use super::Session;
use super::protect::Protection;
use super::query::{Relayed, WarnedRead};
use super::shard::ShardDecision;
use crate::backend::PooledConn;
use crate::backend::conn::{BackendStmt, StmtKey, StmtSql};
use crate::errors::ClientError;
use crate::execute::{AnswerKind, Outcome};
use crate::metrics::METRICS;
use crate::protocol;
use crate::protocol::constants::*;
use crate::protocol::response::{ErrPacket, parse_err};
use crate::protocol::stmt::{
    ParamValue, command_stmt_id, param_values, parse_execute, parse_prepare_ok, rewrite_execute,
    set_stmt_id,
};

/// A statement prepared by the client.
#[derive(Debug, Clone)]
pub struct ProxyStmt {
    pub sql: StmtSql,
    /// The session's database when the client prepared the statement.
    pub schema: Option<Arc<str>>,
    pub num_params: u16,
    pub num_columns: u16,
    /// Parameter types from the last EXECUTE that carried them (shared: every EXECUTE copies the
    /// statement's description, and a client binds types far less often than it executes).
    pub types: Option<Arc<[u8]>>,
    /// COM_STMT_SEND_LONG_DATA chunks per parameter, until the next EXECUTE.
    pub long_data: BTreeMap<u16, Vec<u8>>,
    long_data_bytes: usize,
    long_data_overflow: bool,
    /// Shared: every EXECUTE reads it, none changes it.
    pub statement: Arc<Statement>,
}

const CURSOR_FLAGS: u8 = 0x07;

impl Session {
    pub(super) async fn stmt_prepare(
        &mut self,
        seq: u8,
        payload: &[u8],
    ) -> Result<(), protocol::Error> {
        let Ok(sql) = std::str::from_utf8(&payload[1..]) else {
            let e = ClientError::new(
                1300,
                "HY000",
                "Invalid utf8 character string in the statement to prepare",
            );
            self.send_error(seq, &e).await;
            return Ok(());
        };
        let max = self.shared.config.proxy.max_prepared_stmt_count;
        if self.shared.prepared_stmts.load(Ordering::Relaxed) >= max {
            METRICS.prepared_refused.inc();
            let e = ClientError::new(
                1461,
                "42000",
                format!(
                    "Can't create more than max_prepared_stmt_count statements (current value: {max})"
                ),
            );
            self.send_error(seq, &e).await;
            return Ok(());
        }
        let sql = StmtSql::new(Arc::from(sql));
        let schema: Option<Arc<str>> = self.state.schema.as_deref().map(Arc::from);
        let statement = Arc::new(self.shared.classifier.classify(sql.as_bytes()));
        // The prepare's answer (parameter and column counts) is the same on every instance.
        let Some((_route, conn)) = self.command_conn(seq).await? else {
            return Ok(());
        };
        let Some((conn, bs)) = self.prepare_on(seq, conn, schema.as_ref(), &sql).await? else {
            return Ok(());
        };
        let id = self.next_stmt_id;
        self.next_stmt_id = self.next_stmt_id.wrapping_add(1).max(1);
        let mut answer = (*bs.answer).clone();
        set_stmt_id(&mut answer, 5, id);
        self.client.write_raw(&answer);
        let replaced = self.stmts.insert(
            id,
            ProxyStmt {
                sql,
                schema,
                num_params: bs.num_params,
                num_columns: bs.num_columns,
                types: None,
                long_data: BTreeMap::new(),
                long_data_bytes: 0,
                long_data_overflow: false,
                statement,
            },
        );
        if replaced.is_none() {
            self.shared.prepared_stmts.fetch_add(1, Ordering::Relaxed);
        }
        self.finish(conn, &Outcome::default(), None).await;
        self.client.flush().await
    }

    pub(super) async fn stmt_execute(
        &mut self,
        seq: u8,
        payload: &[u8],
    ) -> Result<(), protocol::Error> {
        self.exec_db = command_stmt_id(payload)
            .ok()
            .and_then(|id| self.stmts.get(&id))
            .and_then(|ps| ps.schema.clone());
        let res = self.execute_prepared(seq, payload).await;
        self.exec_db = None;
        res
    }

    async fn execute_prepared(&mut self, seq: u8, payload: &[u8]) -> Result<(), protocol::Error> {
        let bad_args =
            ClientError::new(1210, "HY000", "Incorrect arguments to mysqld_stmt_execute");
        let Ok(id) = command_stmt_id(payload) else {
            self.send_error(seq, &bad_args).await;
            return Ok(());
        };
        let Some(ps) = self.stmts.get_mut(&id) else {
            let e = ClientError::new(
                1243,
                "HY000",
                format!("Unknown prepared statement handler ({id}) given to mysqld_stmt_execute"),
            );
            self.send_error(seq, &e).await;
            return Ok(());
        };
        let Ok(ex) = parse_execute(payload, ps.num_params) else {
            self.send_error(seq, &bad_args).await;
            return Ok(());
        };
        if let Some(t) = ex.types {
            ps.types = Some(t.into());
        }
        if ps.long_data_overflow {
            ps.long_data.clear();
            ps.long_data_bytes = 0;
            ps.long_data_overflow = false;
            let e = ClientError::new(
                1153,
                "08S01",
                "Got a packet bigger than 'max_allowed_packet' bytes (long data)",
            );
            self.send_error(seq, &e).await;
            return Ok(());
        }
        let long_data = std::mem::take(&mut ps.long_data);
        ps.long_data_bytes = 0;
        let mut ps = ps.clone();
        METRICS.statement(ps.statement.kind);
        if self.lost.is_some()
            && self
                .lost_gate(seq, &ps.statement, ps.sql.as_bytes())
                .await?
        {
            return Ok(());
        }
        let (_protection, critical) =
            match self.protect(seq, &ps.statement, ps.sql.as_bytes()).await? {
                Protection::Refused => return Ok(()),
                p @ Protection::Run {
                    route, critical, ..
                } => {
                    if let Some(r) = route
                        && ps.statement.hints.route.is_none()
                    {
                        let mut s = (*ps.statement).clone();
                        s.hints.route = Some(r);
                        ps.statement = Arc::new(s);
                    }
                    (p, critical)
                }
            };
        let cursor = ex.flags & CURSOR_FLAGS != 0;
        let params: Vec<ParamValue> = match &ps.types {
            Some(types) if !self.shared.shard_map().is_empty() || self.shared.hot.is_some() => {
                param_values(payload, ps.num_params, types, &long_data).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let shard = match self
            .shard_decision(seq, &ps.statement, ps.sql.as_bytes(), Some(&params))
            .await?
        {
            ShardDecision::One(s) => s,
            ShardDecision::Answered => return Ok(()),
        };
        self.throttle(&ps.statement, shard, critical).await;
        // Long data is not among `params` (it is sent on its own): such a statement runs directly.
        if long_data.is_empty()
            && self
                .hot_queue(
                    seq,
                    &ps.statement,
                    ps.sql.as_bytes(),
                    shard,
                    Some((&ps, &params)),
                )
                .await?
        {
            return Ok(());
        }
        let tables = self.tables_of(&ps.statement, ps.sql.as_bytes());
        let mut exclude = None;
        for attempt in 0..2 {
            let mut route = match self
                .route(Some(&ps.statement), shard, exclude, &tables)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    self.send_error(seq, &e).await;
                    return Ok(());
                }
            };
            if long_data.is_empty()
                && !cursor
                && !route.pinned
                && route.wait_for.is_none()
                && self.is_pipelineable(&ps.statement)
                && let Some(schema) = ps.schema.clone()
            {
                let h = self.handles(&route.inst);
                let (pipeline, pool) = (h.pipeline.clone(), h.pool.clone());
                if let Some(pipe) = pipeline.pick(&self.state.sysvars, &pool)
                    && let Ok(Ok((pipe_id, n))) = pipe.prepared(&schema, ps.sql.text()).await
                    && n == ps.num_params
                    && let Ok(rewritten) =
                        rewrite_execute(payload, ps.num_params, pipe_id, ps.types.as_deref())
                {
                    // A prepare the server refuses, or a failed shared connection, falls through to
                    // the pool below, which answers exactly as it would have without pipelining.
                    let res = pipe
                        .run(&schema, &rewritten, &mut self.client, self.caps)
                        .await;
                    let repeat = || WarnedRead {
                        inst: route.inst.clone(),
                        payload: payload.to_vec(),
                        prepared: Some(Box::new(ps.clone())),
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
            let Some((mut conn, bs)) = self
                .prepare_on(seq, conn, ps.schema.as_ref(), &ps.sql)
                .await?
            else {
                return Ok(());
            };
            let rewritten =
                match rewrite_execute(payload, ps.num_params, bs.id, ps.types.as_deref()) {
                    Ok(r) => r,
                    Err(_) => {
                        self.finish(conn, &Outcome::default(), None).await;
                        self.send_error(seq, &bad_args).await;
                        return Ok(());
                    }
                };
            for (param, data) in &long_data {
                let mut p = Vec::with_capacity(7 + data.len());
                p.push(COM_STMT_SEND_LONG_DATA);
                p.extend_from_slice(&bs.id.to_le_bytes());
                p.extend_from_slice(&param.to_le_bytes());
                p.extend_from_slice(data);
                conn.framed.write_packet(0, &p);
            }
            let relayed = self
                .send_and_relay(
                    seq,
                    conn,
                    &rewritten,
                    AnswerKind::Results,
                    Some((&ps.statement, ps.sql.as_bytes())),
                    cursor,
                    Some((&route, attempt)),
                )
                .await?;
            match relayed {
                Relayed::Done => return Ok(()),
                Relayed::Retry => exclude = Some(route.target),
            }
        }
        Ok(())
    }

    /// `conn` with `sql` prepared on it in `schema`. `None` when the client has already been
    /// answered with the error (the server refused the prepare, or the backend failed).
    async fn prepare_on(
        &mut self,
        seq: u8,
        mut conn: PooledConn,
        schema: Option<&Arc<str>>,
        sql: &StmtSql,
    ) -> Result<Option<(PooledConn, BackendStmt)>, protocol::Error> {
        match ensure_prepared(&mut conn, schema, sql).await {
            Ok(Ok(bs)) => Ok(Some((conn, bs))),
            Ok(Err(err)) => {
                self.finish(conn, &Outcome::default(), None).await;
                self.send_error_raw(seq, err.code, &err.sqlstate, &err.message)
                    .await
                    .map(|()| None)
            }
            Err(e) => {
                drop(conn);
                self.after_lost_backend(None);
                self.backend_failed(seq, &e).await.map(|()| None)
            }
        }
    }

    pub(super) async fn stmt_fetch(
        &mut self,
        seq: u8,
        payload: &[u8],
    ) -> Result<(), protocol::Error> {
        let id = command_stmt_id(payload).ok();
        let ps = id
            .and_then(|id| self.stmts.get(&id))
            .map(|s| (s.schema.clone(), s.sql.clone()));
        let (Some((schema, sql)), Some(conn)) = (ps, self.pinned.take()) else {
            let e = ClientError::new(1421, "HY000", "The statement has no open cursor");
            self.send_error(seq, &e).await;
            return Ok(());
        };
        let (key, _) = stmt_key(&conn, schema.as_ref(), &sql);
        let Some(bs_id) = conn.cached_stmt(&key).map(|b| b.id) else {
            self.pinned = Some(conn);
            let e = ClientError::new(1421, "HY000", "The statement has no open cursor");
            self.send_error(seq, &e).await;
            return Ok(());
        };
        let mut p = payload.to_vec();
        set_stmt_id(&mut p, 1, bs_id);
        // `finish` keeps the connection: the cursor's `sticky` pin holds until the session resets.
        self.send_and_relay(seq, conn, &p, AnswerKind::Rows, None, false, None)
            .await
            .map(|_| ())
    }

    /// COM_STMT_SEND_LONG_DATA has no answer; data is kept until the next EXECUTE, at most
    /// `max_allowed_packet` bytes for all of the session's statements together (a statement whose
    /// data would pass that fails its EXECUTE with ERR 1153).
    pub(super) async fn stmt_send_long_data(&mut self, payload: &[u8]) {
        let max = self.shared.config.proxy.max_allowed_packet;
        let (Ok(id), Some(param)) = (command_stmt_id(payload), payload.get(5..7)) else {
            return;
        };
        let param = u16::from_le_bytes([param[0], param[1]]);
        let others: usize = self
            .stmts
            .iter()
            .filter(|(k, _)| **k != id)
            .map(|(_, s)| s.long_data_bytes)
            .sum();
        let Some(ps) = self.stmts.get_mut(&id) else {
            return;
        };
        if param >= ps.num_params {
            return;
        }
        let data = &payload[7..];
        if others + ps.long_data_bytes + data.len() > max {
            ps.long_data_overflow = true;
            ps.long_data.clear();
            ps.long_data_bytes = 0;
            return;
        }
        ps.long_data_bytes += data.len();
        ps.long_data
            .entry(param)
            .or_default()
            .extend_from_slice(data);
    }

    pub(super) fn stmt_close(&mut self, payload: &[u8]) {
        if let Ok(id) = command_stmt_id(payload)
            && self.stmts.remove(&id).is_some()
        {
            self.shared.prepared_stmts.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(super) async fn stmt_reset(
        &mut self,
        seq: u8,
        payload: &[u8],
    ) -> Result<(), protocol::Error> {
        let id = command_stmt_id(payload).ok();
        match id.and_then(|id| self.stmts.get_mut(&id)) {
            Some(ps) => {
                ps.long_data.clear();
                ps.long_data_bytes = 0;
                ps.long_data_overflow = false;
                self.send_ok(seq).await
            }
            None => {
                let e = ClientError::new(
                    1243,
                    "HY000",
                    format!(
                        "Unknown prepared statement handler ({}) given to mysqld_stmt_reset",
                        id.unwrap_or(0)
                    ),
                );
                self.send_error(seq, &e).await;
                Ok(())
            }
        }
    }
}

/// The cache key for `sql` prepared in database `schema` on `conn`, and whether preparing it
/// there needs a switch of database first. Switching to or from "no database" would take a
/// connection reset, so then the connection's current database stands in: a statement prepared
/// without a database names no table unqualified, only `DATABASE()` can tell the difference.
fn stmt_key(conn: &PooledConn, schema: Option<&Arc<str>>, sql: &StmtSql) -> (StmtKey, bool) {
    let current = conn.state.schema.as_deref();
    let (schema, switch) = match (schema, current) {
        (Some(s), Some(c)) => (Some(s.clone()), **s != *c),
        (None, None) => (None, false),
        (_, c) => (c.map(Arc::from), false),
    };
    (
        StmtKey {
            schema,
            sql: sql.clone(),
        },
        switch,
    )
}

/// COM_INIT_DB `db` on `conn`, for the proxy's own use.
async fn init_db(conn: &mut PooledConn, db: &str) -> Result<(), crate::backend::Error> {
    let mut p = Vec::with_capacity(db.len() + 1);
    p.push(COM_INIT_DB);
    p.extend_from_slice(db.as_bytes());
    conn.command(&p).await?;
    conn.state.schema = Some(db.to_string());
    Ok(())
}

/// The statement prepared on `conn` in database `schema`, preparing it there if needed (switching
/// the connection's database for the prepare and back). `Ok(Err(_))` is the server refusing the
/// prepare (a client error); `Err(_)` is the connection failing.
pub(super) async fn ensure_prepared(
    conn: &mut PooledConn,
    schema: Option<&Arc<str>>,
    sql: &StmtSql,
) -> Result<Result<BackendStmt, ErrPacket>, crate::backend::Error> {
    let (key, switch) = stmt_key(conn, schema, sql);
    if let Some(bs) = conn.cached_stmt(&key) {
        return Ok(Ok(bs.clone()));
    }
    let back = if switch {
        let back = conn.state.schema.clone();
        if let Some(db) = &key.schema {
            match init_db(conn, db).await {
                Ok(()) => {}
                // E.g. the database was dropped since: the client's error, the connection is fine.
                Err(crate::backend::Error::Server { err, .. }) => return Ok(Err(err)),
                Err(e) => return Err(e),
            }
        }
        back
    } else {
        None
    };
    let prepared = prepare(conn, key).await;
    if let Some(db) = back
        && let Err(e) = init_db(conn, &db).await
    {
        // The connection is left in the wrong database: nobody may use it any more.
        conn.broken = true;
        return Err(e);
    }
    prepared
}

/// COM_STMT_PREPARE on `conn` as it is; a success is cached under `key`.
async fn prepare(
    conn: &mut PooledConn,
    key: StmtKey,
) -> Result<Result<BackendStmt, ErrPacket>, crate::backend::Error> {
    let sql = &key.sql;
    let mut p = Vec::with_capacity(sql.len() + 1);
    p.push(COM_STMT_PREPARE);
    p.extend_from_slice(sql.as_bytes());
    conn.send_command(&p).await?;
    let mut answer = Vec::with_capacity(512);
    let mut seq = 1u8;
    let first = conn.read().await?;
    frame(&mut answer, &mut seq, &first);
    if first.first() == Some(&0xff) {
        let err = parse_err(&first).map_err(|e| proto_err(conn, e))?;
        return Ok(Err(err));
    }
    let ok = parse_prepare_ok(&first).map_err(|e| proto_err(conn, e))?;
    let eof = conn.caps & CLIENT_DEPRECATE_EOF == 0;
    let mut follow = 0usize;
    for n in [ok.num_params, ok.num_columns] {
        if n > 0 {
            follow += usize::from(n) + usize::from(eof);
        }
    }
    for _ in 0..follow {
        let p = conn.read().await?;
        frame(&mut answer, &mut seq, &p);
    }
    let bs = BackendStmt {
        id: ok.stmt_id,
        num_params: ok.num_params,
        num_columns: ok.num_columns,
        answer: Arc::new(answer),
    };
    if let Some(old) = conn.cache_stmt(key, bs.clone()) {
        let mut close = vec![COM_STMT_CLOSE];
        close.extend_from_slice(&old.to_le_bytes());
        conn.send_command(&close).await?;
    }
    Ok(Ok(bs))
}

fn proto_err(conn: &mut PooledConn, e: protocol::Error) -> crate::backend::Error {
    conn.broken = true;
    crate::backend::Error::Protocol {
        addr: conn.addr.to_string(),
        source: e,
    }
}

fn frame(out: &mut Vec<u8>, seq: &mut u8, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
    out.push(*seq);
    out.extend_from_slice(payload);
    *seq = seq.wrapping_add(1);
}
