//! The session's side of sharding: which shard a statement belongs to (`router::analyze` and
//! `router::plan::shard` over the config's shard map), transactions kept on one shard (BEGIN is
//! held back until the first statement shows where the transaction lives), and statements that
//! run on several shards (`scatter`).

use std::time::{SystemTime, UNIX_EPOCH};

use peakgate_router::analyze::{Analysis, InsertInfo, KeyRef, analyze};
use peakgate_router::plan::shard::{
    MapKeys, ShardPlan, ShardPlanError, Shards, shard_plan, touches_map,
};
use peakgate_router::ring::{KeyValue, ShardIdx};
use peakgate_router::shard_map::{ShardMap, TableKind};
use peakgate_router::{Statement, StatementKind};

use super::Session;
use crate::errors::ClientError;
use crate::execute::scatter::{self, ScatterError};
use crate::metrics::METRICS;
use crate::protocol;
use crate::protocol::stmt::ParamValue;

/// What the sharding layer decided for a statement.
pub(super) enum ShardDecision {
    /// Run on this shard (index into the topology's shards) by the normal path.
    One(usize),
    /// The client has its answer (an error, a held-back BEGIN, or a statement run on several shards).
    Answered,
}

impl Session {
    /// Decides the shard of `stmt` (text `sql`, prepared-statement parameters `params`), answering
    /// the client itself when the statement does not take the single-shard path.
    pub(super) async fn shard_decision(
        &mut self,
        seq: u8,
        stmt: &Statement,
        sql: &[u8],
        params: Option<&[ParamValue]>,
    ) -> Result<ShardDecision, protocol::Error> {
        let shared = self.shared.clone();
        let map_arc = shared.shard_map();
        let map = &*map_arc;
        let default = shared.topology.default_shard;
        if self.xa.is_some() {
            if stmt.kind == StatementKind::TxnEnd && stmt.keyword != "XA" {
                self.xa_end(seq, stmt).await?;
                return Ok(ShardDecision::Answered);
            }
            if let Some(e) = self.xa_lost() {
                self.send_error(seq, &e).await;
                return Ok(ShardDecision::Answered);
            }
        }
        if let Some(d) = self.hot_decision(seq, stmt, sql, params).await? {
            if let ShardDecision::One(hot) = d
                && self.xa.is_some()
            {
                return Ok(if self.xa_switch(seq, hot).await? {
                    d
                } else {
                    ShardDecision::Answered
                });
            }
            if let ShardDecision::One(hot) = d
                && let Some(p) = self.pinned.as_ref().map(|c| self.shard_of_addr(&c.addr))
                && p != hot
                && !self.drop_one_shot_pin()
            {
                let e = ClientError::new(
                    1235,
                    "42000",
                    "this statement is about a hot (flash-sale) SKU, whose rows live on the hot instance, \
                     but the transaction runs on another shard; run it outside the transaction",
                );
                self.send_error(seq, &e).await;
                return Ok(ShardDecision::Answered);
            }
            return Ok(d);
        }
        if map.is_empty() || stmt.multi {
            if !stmt.multi
                && shared.topology.hot_shard().is_some()
                && is_database_ddl(stmt)
                && let Ok(text) = std::str::from_utf8(sql)
            {
                let a = peakgate_router::analyze::Analysis {
                    kind: peakgate_router::analyze::StatementType::Ddl,
                    tables: Vec::new(),
                    sharded: Vec::new(),
                    joins: Vec::new(),
                    insert: None,
                    updates_shard_key: false,
                    ddl: Some(peakgate_router::analyze::DdlInfo {
                        database: Some(String::new()),
                    }),
                };
                let plan = ShardPlan {
                    shards: Shards::One(ShardIdx(u16::try_from(default).unwrap_or(0))),
                    write_all: true,
                    split_rows: None,
                    generate_ids: false,
                };
                self.run_on_shards(seq, text, &a, &plan, stmt, false)
                    .await?;
                return Ok(ShardDecision::Answered);
            }
            return Ok(ShardDecision::One(default));
        }
        // Transactions: BEGIN waits for the first statement, which names the shard. A connection
        // kept only for the next statement (its warnings) binds no shard: `kept_shard` is where
        // a statement that names no shard goes (SHOW WARNINGS), `pinned_shard` the binding one.
        let kept_shard = self.pinned.as_ref().map(|c| self.shard_of_addr(&c.addr));
        let pinned_shard = kept_shard.filter(|_| !self.pins.only_one_shot());
        if pinned_shard.is_none() && params.is_none() {
            if stmt.kind == StatementKind::TxnBegin && stmt.keyword != "XA" && !is_read_only(stmt) {
                self.drop_one_shot_pin();
                self.deferred_begin = Some(String::from_utf8_lossy(sql).into_owned());
                self.send_ok(seq).await?;
                return Ok(ShardDecision::Answered);
            }
            if stmt.kind == StatementKind::TxnEnd && self.deferred_begin.take().is_some() {
                // Nothing ran inside: nothing to commit or roll back.
                self.send_ok(seq).await?;
                return Ok(ShardDecision::Answered);
            }
        }
        let Ok(text) = std::str::from_utf8(sql) else {
            return Ok(ShardDecision::One(kept_shard.unwrap_or(default)));
        };
        // Most statements name no table of the map, which is known per digest after the first
        // time: settle that before copying the schema name for the analysis.
        let touch_key = (stmt.digest, super::route::schema_key(self.names_db()));
        if shared.touches_map(touch_key) == Some(false) {
            return Ok(ShardDecision::One(kept_shard.unwrap_or(default)));
        }
        let schema = self.names_db().map(str::to_string);
        let keys = MapKeys {
            map,
            schema: schema.as_deref(),
        };
        let analysis = match self.analysis(stmt, text, &keys) {
            Ok(Some(a)) => a,
            Ok(None) => return Ok(ShardDecision::One(kept_shard.unwrap_or(default))),
            Err(e) => {
                self.send_error(seq, &e).await;
                return Ok(ShardDecision::Answered);
            }
        };
        let param = |i: usize| -> Option<KeyValue<'_>> {
            match params?.get(i)? {
                ParamValue::Int(v) => Some(KeyValue::Int(*v)),
                ParamValue::UInt(v) => Some(KeyValue::UInt(*v)),
                ParamValue::Bytes(b) => Some(KeyValue::Bytes(b)),
                ParamValue::Null | ParamValue::Double(_) | ParamValue::Temporal(_) => None,
            }
        };
        let plan = match shard_plan(&analysis, &keys, &param) {
            Ok(p) => p,
            Err(e) => {
                self.send_error(seq, &plan_error(&e)).await;
                return Ok(ShardDecision::Answered);
            }
        };
        METRICS.shard_plan(&plan.shards);
        // The statement goes elsewhere than a connection kept only for its warnings: let it go
        // (a binding pin stays, and the checks below refuse the statement).
        if !matches!(plan.shards, Shards::One(s) if Some(s.index()) == kept_shard) {
            self.drop_one_shot_pin();
        }
        let in_txn = pinned_shard.is_some() || self.deferred_begin.is_some();
        // With autocommit off every write opens (or joins) the session's implicit transaction,
        // which lives on one connection: a write to several shards cannot be part of it.
        let implicit_txn = !self.state.is_autocommit() && changes_rows(&analysis);
        // In an XA transaction a statement for another shard runs on that shard's branch.
        if self.xa.is_some()
            && let Shards::One(s) = plan.shards
            && !self.xa_switch(seq, s.index()).await?
        {
            return Ok(ShardDecision::Answered);
        }
        match (&plan.shards, pinned_shard) {
            (Shards::One(s), Some(p)) if s.index() != p && self.xa.is_none() => {
                let e = cross_shard(map, *s, p);
                self.send_error(seq, &e).await;
                return Ok(ShardDecision::Answered);
            }
            (Shards::Many(_), _) if in_txn => {
                let e = ClientError::new(
                    1235,
                    "42000",
                    "this statement runs on several shards, which a statement inside a transaction cannot \
                     (even with sharding.cross_shard_transactions = \"xa\", each statement of a transaction \
                     must route to one shard); run it outside the transaction",
                );
                self.send_error(seq, &e).await;
                return Ok(ShardDecision::Answered);
            }
            (Shards::Many(_), _) if implicit_txn => {
                let e = ClientError::new(
                    1235,
                    "42000",
                    "this write runs on several shards, and with autocommit = 0 it would belong to the \
                     session's transaction, which lives on one shard; give the shard key, or run it with \
                     autocommit = 1",
                );
                self.send_error(seq, &e).await;
                return Ok(ShardDecision::Answered);
            }
            _ => {}
        }
        if let Shards::One(s) = plan.shards
            && !plan.write_all
            && !plan.generate_ids
        {
            return Ok(ShardDecision::One(s.index()));
        }
        let Some(params) = params else {
            self.run_on_shards(seq, text, &analysis, &plan, stmt, false)
                .await?;
            return Ok(ShardDecision::Answered);
        };
        // A prepared statement for several shards (or with generated ids) runs as its text with
        // the parameters written in; a read answers in the binary protocol EXECUTE expects.
        let filled = protocol::stmt::interpolate(text, params);
        let again = filled.as_deref().and_then(|t| {
            let a = analyze(t, &keys).ok()?;
            let p = shard_plan(&a, &keys, &|_| None).ok()?;
            Some((a, p))
        });
        let (Some(filled), Some((a, p))) = (filled.as_deref(), again) else {
            let e = ClientError::new(
                1235,
                "42000",
                "a prepared statement that runs on several shards (or needs generated ids) cannot carry \
                 non-finite floats; send it as text, or give the shard key",
            );
            self.send_error(seq, &e).await;
            return Ok(ShardDecision::Answered);
        };
        // Its text runs in the database it was prepared in (the session's is put back after).
        let current = self
            .exec_db
            .as_ref()
            .map(|db| self.state.schema.replace(db.to_string()));
        let res = self.run_on_shards(seq, filled, &a, &p, stmt, true).await;
        if let Some(db) = current {
            self.state.schema = db;
        }
        res?;
        Ok(ShardDecision::Answered)
    }

    /// The analysis of a statement that names a table of the map; `None` when it names none
    /// (known per digest and schema after the first time).
    fn analysis(
        &self,
        stmt: &Statement,
        text: &str,
        keys: &MapKeys<'_>,
    ) -> Result<Option<Analysis>, ClientError> {
        let key = (stmt.digest, super::route::schema_key(keys.schema));
        if self.shared.touches_map(key) == Some(false) {
            return Ok(None);
        }
        match analyze(text, keys) {
            Ok(a) => {
                let touches = touches_map(&a, keys);
                self.shared.remember_touch(key, touches);
                Ok(touches.then_some(a))
            }
            Err(e) => {
                // DDL sqlparser cannot read (MariaDB's `ADD COLUMN IF NOT EXISTS`, ...) that
                // changes one table of the map: the lexer names the table, which is all its
                // routing needs (every shard of a sharded table).
                if stmt.kind == StatementKind::Ddl
                    && let Some(a) = peakgate_router::analyze::lexed_ddl(text)
                    && touches_map(&a, keys)
                {
                    return Ok(Some(a));
                }
                if names_a_mapped_table(text, keys.map) {
                    Err(ClientError::new(
                        1064,
                        "42000",
                        format!("PeakGate cannot route this statement on a sharded table: {e}"),
                    ))
                } else {
                    self.shared.remember_touch(key, false);
                    Ok(None)
                }
            }
        }
    }

    /// The topology shard index of a backend address.
    pub(super) fn shard_of_addr(&self, addr: &str) -> usize {
        self.instance_of(addr).shard
    }

    /// Runs a statement that needs several shards (or generated ids) and answers the client;
    /// `binary`: rows in the binary protocol (the answer to COM_STMT_EXECUTE).
    async fn run_on_shards(
        &mut self,
        seq: u8,
        text: &str,
        a: &Analysis,
        plan: &ShardPlan,
        stmt: &Statement,
        binary: bool,
    ) -> Result<(), protocol::Error> {
        let shared = self.shared.clone();
        let map_arc = shared.shard_map();
        let map = &*map_arc;
        let shards = plan.shards.list();
        if a.kind == peakgate_router::analyze::StatementType::Select {
            let spec = match peakgate_router::merge::merge_spec(text) {
                Ok(s) => s,
                Err(e) => {
                    let e = ClientError::new(
                        1235,
                        "42000",
                        format!("this query spans several shards and {e}"),
                    );
                    self.send_error(seq, &e).await;
                    return Ok(());
                }
            };
            // Each shard's part goes where a read of that shard would (its replicas under the
            // lag and read-your-writes rules), unless the session holds a connection.
            let tables = self.tables_of(stmt, text.as_bytes());
            let mut conns = Vec::with_capacity(shards.len());
            let mut routes = Vec::with_capacity(shards.len());
            for s in &shards {
                let conn = if self.pinned.is_some() {
                    self.primary_conn(s.index()).await
                } else {
                    match self.route(Some(stmt), s.index(), None, &tables).await {
                        Ok(mut r) => {
                            let c = self.acquire(&mut r).await;
                            routes.push(r);
                            c
                        }
                        Err(e) => {
                            self.send_error(seq, &e).await;
                            return Ok(());
                        }
                    }
                };
                match conn {
                    Ok(c) => conns.push((map.shard_name(*s).to_string(), c)),
                    Err(e) => return self.backend_failed(seq, &e).await,
                }
            }
            METRICS.scatter_reads.inc();
            let status = self.status_flags();
            let res = scatter::read(
                &mut conns,
                &spec,
                &mut self.client,
                self.caps,
                status,
                binary,
            )
            .await;
            if res.is_ok() && !self.state.is_autocommit() {
                // With autocommit off each shard's read opened a transaction on its connection:
                // end it before the connection goes back to the pool, where a later user would
                // otherwise read from its old snapshot (or commit it).
                for (_, c) in &mut conns {
                    if c.query("ROLLBACK").await.is_err() {
                        c.broken = true;
                    }
                }
            }
            drop(conns);
            drop(routes);
            if let Err(f) = res {
                let (code, state, msg) = scatter_error(f.error);
                return self.send_error_raw(f.next_seq, code, &state, &msg).await;
            }
            return Ok(());
        }
        // Writes: the same text everywhere, or the INSERT split (and ids generated) per shard.
        let mut first_id = 0u64;
        let statements: Vec<(ShardIdx, String)> = match &a.insert {
            Some(ins) if plan.generate_ids || plan.split_rows.is_some() => {
                match self.insert_per_shard(text, a, ins, plan) {
                    Ok((v, id)) => {
                        first_id = id;
                        v
                    }
                    Err(e) => {
                        self.send_error(seq, &e).await;
                        return Ok(());
                    }
                }
            }
            _ => shards.iter().map(|s| (*s, text.to_string())).collect(),
        };
        // Inside a transaction the statement runs on the transaction's connection (one shard:
        // statements for several shards were refused above); with autocommit off it opens the
        // session's implicit transaction there if none is open, and the session keeps it.
        let txn =
            (self.pins.in_txn || self.deferred_begin.is_some() || !self.state.is_autocommit())
                && statements.len() == 1
                && a.ddl.is_none();
        let mut conns = Vec::with_capacity(statements.len() + 1);
        for (s, sql) in statements {
            let conn = if txn {
                self.txn_conn(s.index()).await
            } else {
                self.primary_conn(s.index()).await
            };
            match conn {
                Ok(c) => conns.push((map.shard_name(s).to_string(), c, sql)),
                Err(e) => return self.backend_failed(seq, &e).await,
            }
        }
        // A database is created (or dropped) on the hot instance too: its stock table lives there.
        if a.ddl.as_ref().is_some_and(|d| d.database.is_some())
            && let Some(hot) = shared.topology.hot_shard()
        {
            match self.primary_conn(hot).await {
                Ok(c) => conns.push((
                    shared.topology.shards[hot].name.clone(),
                    c,
                    text.to_string(),
                )),
                Err(e) => return self.backend_failed(seq, &e).await,
            }
        }
        if conns.len() > 1 {
            METRICS.scatter_writes.inc();
        }
        let res = scatter::write(&mut conns).await;
        self.note_writes(&mut conns);
        if txn && let Some((_, c, _)) = conns.pop() {
            if c.broken {
                drop(c);
                self.after_lost_backend(Some((stmt, text.as_bytes())));
            } else {
                self.pinned = Some(c);
                self.pins.in_txn = true;
            }
        }
        drop(conns);
        match res {
            Ok(total) => {
                if first_id != 0 {
                    self.state.last_insert_id = first_id;
                    // A kept connection answers LAST_INSERT_ID() itself: give it the id.
                    if let Some(c) = self.pinned.as_mut()
                        && c.sync_to(&self.state).await.is_err()
                    {
                        c.broken = true;
                    }
                }
                self.last_write = Some(std::time::Instant::now());
                self.send_ok_counts(seq, total.affected_rows, first_id, total.warnings)
                    .await
            }
            Err(e) => {
                let (code, state, msg) = scatter_error(e);
                let msg = self.lost_note(msg);
                self.send_error_raw(seq, code, &state, &msg).await
            }
        }
    }

    /// The connection of the session's transaction on `shard`: the pinned one, or (first
    /// statement after a held-back BEGIN, or of an autocommit = 0 session's transaction) a
    /// pooled one on which the transaction opens.
    async fn txn_conn(
        &mut self,
        shard: usize,
    ) -> Result<crate::backend::PooledConn, crate::backend::Error> {
        // Connection-bound state (the transaction, temporary tables, locks) is on the pinned
        // connection, of this shard (another shard was refused). A connection kept only for the
        // next statement's diagnostics may be a replica's: it goes, as for any write.
        let mut c = match self.pinned.take() {
            Some(c) if self.pins.needs_reset() => c,
            kept => {
                if kept.is_some() {
                    self.pins = super::Pins::default();
                }
                drop(kept);
                self.primary_conn(shard).await?
            }
        };
        if let Some(begin) = self.deferred_begin.take()
            && let Err(e) = self.open_transaction(&mut c, shard, &begin).await
        {
            self.begin_lost();
            return Err(e);
        }
        Ok(c)
    }

    /// A pooled connection to a shard's primary, brought to the session's state.
    async fn primary_conn(
        &mut self,
        shard: usize,
    ) -> Result<crate::backend::PooledConn, crate::backend::Error> {
        let inst = self.shared.topology.shards[shard].primary.clone();
        self.pooled(&inst).await
    }

    /// The INSERT text for each shard, with generated ids when the gene column was left out;
    /// also the first generated id.
    fn insert_per_shard(
        &self,
        text: &str,
        a: &Analysis,
        ins: &InsertInfo,
        plan: &ShardPlan,
    ) -> Result<(Vec<(ShardIdx, String)>, u64), ClientError> {
        let map_arc = self.shared.shard_map();
        let map = &*map_arc;
        let schema = self.names_db();
        let t = &a.tables[ins.table];
        let rule = map
            .table(t.schema.as_deref().or(schema), &t.name)
            .ok_or_else(|| ClientError::new(1105, "HY000", "the INSERT's table left the map"))?;
        let (Some(first), Some(last)) = (ins.rows.first(), ins.rows.last()) else {
            return Err(ClientError::new(1105, "HY000", "an INSERT without rows"));
        };
        let mut prefix = text[..first.span.start].to_string();
        let suffix = &text[last.span.end..];
        let mut rows: Vec<String> = ins
            .rows
            .iter()
            .map(|r| text[r.span.clone()].to_string())
            .collect();
        let mut first_id = 0;
        if plan.generate_ids {
            let TableKind::Sharded(s) = rule.kind() else {
                return Err(ClientError::new(
                    1105,
                    "HY000",
                    "ids are generated only for sharded tables",
                ));
            };
            let gene = s.gene_column.clone().unwrap_or_default();
            prefix = add_column(&prefix, &gene).ok_or_else(|| {
                ClientError::new(
                    1235,
                    "42000",
                    "PeakGate generates ids only for INSERT ... (columns) VALUES (...)",
                )
            })?;
            for (row, info) in rows.iter_mut().zip(&ins.rows) {
                let key = match &info.key {
                    Some(KeyRef::Int(v)) => KeyValue::Int(*v),
                    Some(KeyRef::Str(v)) => KeyValue::Bytes(v.as_bytes()),
                    _ => {
                        return Err(ClientError::new(
                            1235,
                            "42000",
                            "PeakGate generates ids only when the shard key is a literal",
                        ));
                    }
                };
                let slot = map
                    .gene_for(rule, key)
                    .map_err(|e| ClientError::new(1105, "HY000", e.to_string()))?;
                let id = self.shared.next_id(slot)?;
                if first_id == 0 {
                    first_id = id;
                }
                let Some(open) = row.find('(') else {
                    return Err(ClientError::new(
                        1105,
                        "HY000",
                        "a VALUES row without parentheses",
                    ));
                };
                row.insert_str(open + 1, &format!("{id}, "));
            }
        }
        let groups: Vec<(ShardIdx, Vec<usize>)> = match &plan.split_rows {
            Some(g) => g.clone(),
            None => vec![(
                plan.shards.list().first().copied().unwrap_or(ShardIdx(0)),
                (0..rows.len()).collect(),
            )],
        };
        let out = groups
            .into_iter()
            .map(|(s, idx)| {
                let body: Vec<&str> = idx
                    .iter()
                    .filter_map(|&i| rows.get(i).map(String::as_str))
                    .collect();
                (s, format!("{prefix}{}{suffix}", body.join(", ")))
            })
            .collect();
        Ok((out, first_id))
    }
}

/// `INSERT INTO t (a, b) VALUES ` with `column` added first to the column list.
fn add_column(prefix: &str, column: &str) -> Option<String> {
    let lower = prefix.to_ascii_lowercase();
    let values = lower.rfind("value")?;
    let close = prefix[..values].rfind(')')?;
    let open = prefix[..close].rfind('(')?;
    let mut out = prefix.to_string();
    out.insert_str(open + 1, &format!("`{column}`, "));
    Some(out)
}

/// `CREATE` / `DROP` `DATABASE` / `SCHEMA`.
fn is_database_ddl(stmt: &Statement) -> bool {
    let t = stmt.digest_text.as_str();
    [
        "create database",
        "create schema",
        "drop database",
        "drop schema",
    ]
    .iter()
    .any(|p| t.starts_with(p))
}

/// Whether the analysed statement changes rows (DDL is not counted: it commits by itself).
fn changes_rows(a: &Analysis) -> bool {
    use peakgate_router::analyze::StatementType as T;
    matches!(a.kind, T::Insert | T::Replace | T::Update | T::Delete)
}

fn is_read_only(stmt: &Statement) -> bool {
    let t = stmt.digest_text.to_ascii_uppercase();
    t.contains("READ ONLY")
}

/// Whether the text mentions the name of a mapped table (for SQL the parser cannot read).
fn names_a_mapped_table(text: &str, map: &ShardMap) -> bool {
    let lower = text.to_ascii_lowercase();
    map.tables().iter().any(|t| {
        let name = t.name().to_ascii_lowercase();
        lower.match_indices(&name).any(|(i, _)| {
            let before = lower[..i].chars().next_back();
            let after = lower[i + name.len()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            !word(before) && !word(after)
        })
    })
}

fn cross_shard(map: &ShardMap, want: ShardIdx, have: usize) -> ClientError {
    let have = u16::try_from(have)
        .map(ShardIdx)
        .map_or("?", |s| map.shard_name(s));
    ClientError::new(
        1235,
        "42000",
        format!(
            "this statement belongs to shard {}, but the transaction runs on shard {have}; a transaction \
             cannot span shards (sharding.cross_shard_transactions = \"error\")",
            map.shard_name(want)
        ),
    )
}

fn plan_error(e: &ShardPlanError) -> ClientError {
    match e {
        ShardPlanError::ScatterWriteRefused(_) => ClientError::new(1290, "HY000", e.to_string()),
        ShardPlanError::BadKey(..) | ShardPlanError::InsertWithoutKey(..) => {
            ClientError::new(1105, "HY000", e.to_string())
        }
        _ => ClientError::new(1235, "42000", e.to_string()),
    }
}

/// The client's error for a failed scatter statement: the server's own code and state, the
/// message prefixed with the shard.
pub(super) fn scatter_error(e: ScatterError) -> (u16, String, String) {
    match e {
        ScatterError::Server { shard, err } => (
            err.code,
            err.sqlstate,
            format!("shard {shard}: {}", err.message),
        ),
        ScatterError::Backend { shard, source } => {
            let (code, state, msg) = crate::errors::from_backend(&source);
            (code, state, format!("shard {shard}: {msg}"))
        }
        ScatterError::Merge(m) => (
            1105,
            "HY000".into(),
            format!("merging the shards' rows failed: {m}"),
        ),
    }
}

/// Milliseconds since the unix epoch, for id generation.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
