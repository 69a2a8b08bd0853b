//! Flash-sale SKUs: statements on the hot table (`[hotspot] table`, key `key_column`) whose SKU is
//! hot run on the hot instance, so a sale cannot slow checkout on the shard primaries. DDL on the
//! hot table runs on its home shard and on the hot instance. Every statement naming SKUs of the
//! hot table holds their move gates' passes while it runs (a transaction: to its end).

use peakgate_router::analyze::{
    Analysis, KeyColumns, KeyConstraint, KeyRef, ShardKeys, StatementType, analyze,
};
use peakgate_router::hotspot::HotRegistry;
use peakgate_router::{Statement, StatementKind};

use super::Session;
use super::prepared::ProxyStmt;
use super::shard::ShardDecision;
use crate::errors::ClientError;
use crate::protocol;
use crate::protocol::stmt::ParamValue;

/// The hot table, for `analyze`.
struct HotKeys<'a> {
    hot: &'a HotRegistry,
    schema: Option<&'a str>,
}

impl HotKeys<'_> {
    fn qualified(&self, schema: Option<&str>, table: &str) -> String {
        match schema.or(self.schema) {
            Some(s) => format!("{s}.{table}"),
            None => table.to_string(),
        }
    }
}

impl ShardKeys for HotKeys<'_> {
    fn shard_key(&self, schema: Option<&str>, table: &str) -> Option<KeyColumns> {
        self.hot
            .is_table(&self.qualified(schema, table))
            .then(|| KeyColumns {
                key: self.hot.settings().key_column.to_ascii_lowercase(),
                gene: None,
            })
    }
}

impl Session {
    /// Runs an autocommit write of one hot row through the row's queue (group commit), when it
    /// qualifies; `false` when it does not and must take the normal path. `prepared`: the
    /// statement is a COM_STMT_EXECUTE of this statement with these parameters; it is queued as
    /// its text with the parameters written in as literals (so a guarded decrement is batched
    /// like its text form), in the database it was prepared in. The client's answer is an OK or
    /// an ERR either way, which is also the binary protocol's answer to a write.
    pub(super) async fn hot_queue(
        &mut self,
        seq: u8,
        stmt: &Statement,
        sql: &[u8],
        shard: usize,
        prepared: Option<(&ProxyStmt, &[ParamValue])>,
    ) -> Result<bool, protocol::Error> {
        let shared = self.shared.clone();
        let (Some(rows), Some(hot), Some(sku)) = (
            shared.hot_rows.as_ref(),
            shared.hot.as_ref(),
            self.hot_sku.take(),
        ) else {
            return Ok(false);
        };
        if Some(shard) != shared.topology.hot_shard()
            || stmt.kind != StatementKind::Write
            || stmt.multi
            || self.pinned.is_some()
            || self.deferred_begin.is_some()
            || !self.state.is_autocommit()
        {
            return Ok(false);
        }
        let (text, schema, decrement) = match prepared {
            None => {
                let Ok(text) = std::str::from_utf8(sql) else {
                    return Ok(false);
                };
                let decrement = guarded_decrement(stmt, sql, hot);
                (text.to_string(), self.state.schema.clone(), decrement)
            }
            Some((ps, params)) => {
                let Some(text) = protocol::stmt::interpolate(ps.sql.text(), params) else {
                    return Ok(false);
                };
                let filled = shared.classifier.classify(text.as_bytes());
                let decrement = guarded_decrement(&filled, text.as_bytes(), hot);
                (text, ps.schema.as_deref().map(String::from), decrement)
            }
        };
        let res = rows.submit(sku, schema, text, decrement).await;
        self.hot_written = true;
        self.last_hot_write = Some(std::time::Instant::now());
        use crate::hotrow::JobResult;
        match res {
            JobResult::Ok { affected_rows } => {
                self.last_write = Some(std::time::Instant::now());
                self.send_ok_counts(seq, affected_rows, 0, 0).await?;
            }
            JobResult::Server(e) => {
                self.send_error_raw(seq, e.code, &e.sqlstate, &e.message)
                    .await?
            }
            JobResult::Busy(m) => {
                self.send_error(seq, &ClientError::new(1205, "HY000", m))
                    .await
            }
            JobResult::Failed(m) => {
                self.send_error(seq, &ClientError::new(1105, "HY000", m))
                    .await
            }
        }
        Ok(true)
    }

    /// The hot-SKU decision: `Some` when the statement is about hot rows (or is DDL on the hot
    /// table, which this answers itself), `None` to route it as usual.
    pub(super) async fn hot_decision(
        &mut self,
        seq: u8,
        stmt: &Statement,
        sql: &[u8],
        params: Option<&[ParamValue]>,
    ) -> Result<Option<ShardDecision>, protocol::Error> {
        self.hot_sku = None;
        let shared = self.shared.clone();
        let (Some(hot), Some(hot_shard)) = (shared.hot.as_ref(), shared.topology.hot_shard())
        else {
            return Ok(None);
        };
        let name = hot.settings().table.rsplit('.').next().unwrap_or("");
        if name.is_empty() || stmt.multi || !contains_word(sql, name.as_bytes()) {
            return Ok(None);
        }
        let Ok(text) = std::str::from_utf8(sql) else {
            return Ok(None);
        };
        let keys = HotKeys {
            hot,
            schema: self.names_db(),
        };
        let Ok(a) = analyze(text, &keys) else {
            return Ok(None);
        };
        let Some(table) = a
            .tables
            .iter()
            .position(|t| hot.is_table(&keys.qualified(t.schema.as_deref(), &t.name)))
        else {
            return Ok(None);
        };
        if a.kind == StatementType::Ddl || stmt.kind == StatementKind::Ddl {
            let home = shared.topology.default_shard;
            self.hot_ddl(seq, text, home, hot_shard).await?;
            return Ok(Some(ShardDecision::Answered));
        }
        let skus = hot_keys(&a, table, params);
        let Some(skus) = skus else {
            // No SKU to go by (a range, a scan): the home shard's rows only.
            return Ok(None);
        };
        let table_name = keys.qualified(a.tables[table].schema.as_deref(), &a.tables[table].name);
        // Through the SKUs' gates before routing: a move in progress decides where they are.
        if !self.enter_hot_gates(seq, &skus).await? {
            return Ok(Some(ShardDecision::Answered));
        }
        let mut hot_n = 0;
        for s in &skus {
            hot.observe(*s);
            if hot.is_hot(&table_name, *s) {
                hot_n += 1;
            }
        }
        if hot_n == 0 {
            return Ok(None);
        }
        if hot_n != skus.len() {
            let e = ClientError::new(
                1235,
                "42000",
                "this statement names hot (flash-sale) and normal SKUs together; send them separately",
            );
            self.send_error(seq, &e).await;
            return Ok(Some(ShardDecision::Answered));
        }
        crate::metrics::METRICS.hot_statements.inc();
        self.hot_sku = (skus.len() == 1).then(|| skus[0]);
        Ok(Some(ShardDecision::One(hot_shard)))
    }

    /// Takes a pass for each SKU the session does not hold yet, waiting (up to `move_wait_ms`)
    /// while one is being moved; `false` when the client got ERR 1205 instead.
    async fn enter_hot_gates(&mut self, seq: u8, skus: &[u64]) -> Result<bool, protocol::Error> {
        let shared = self.shared.clone();
        let (Some(moves), Some(hot)) = (shared.hot_moves.as_ref(), shared.hot.as_ref()) else {
            return Ok(true);
        };
        let wait = std::time::Duration::from_millis(hot.settings().move_wait_ms);
        for &sku in skus {
            if self.hot_passes.iter().any(|p| p.sku() == sku) {
                continue;
            }
            match moves.gates.enter(sku, wait).await {
                Ok((pass, waited)) => {
                    if waited {
                        moves.note_statement(false);
                    }
                    self.hot_passes.push(pass);
                }
                Err(()) => {
                    moves.note_statement(true);
                    let e = ClientError::new(
                        1205,
                        "HY000",
                        format!(
                            "SKU {sku}'s stock row is being moved between its home shard and the hot \
                             instance (waited hotspot.move_wait_ms = {} ms); retry",
                            wait.as_millis()
                        ),
                    );
                    self.send_error(seq, &e).await;
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// After each command: gives the SKU passes back unless a transaction is still open (it keeps
    /// them to its end, so a move waits for it).
    pub(super) fn release_hot_passes(&mut self) {
        if !self.hot_passes.is_empty()
            && !self.pins.in_txn
            && self.deferred_begin.is_none()
            && self.xa.is_none()
        {
            self.hot_passes.clear();
        }
    }

    /// DDL on the hot table: on its home shard, then on the hot instance; one OK.
    async fn hot_ddl(
        &mut self,
        seq: u8,
        text: &str,
        home: usize,
        hot: usize,
    ) -> Result<(), protocol::Error> {
        let topo = self.shared.topology.clone();
        let mut conns = Vec::new();
        for s in [home, hot] {
            let inst = topo.shards[s].primary.clone();
            match self.pooled(&inst).await {
                Ok(c) => conns.push((topo.shards[s].name.clone(), c, text.to_string())),
                Err(e) => return self.backend_failed(seq, &e).await,
            }
        }
        let res = crate::execute::scatter::write(&mut conns).await;
        self.note_writes(&mut conns);
        drop(conns);
        match res {
            Ok(total) => {
                self.send_ok_counts(seq, total.affected_rows, 0, total.warnings)
                    .await
            }
            Err(e) => {
                let (code, state, msg) = super::shard::scatter_error(e);
                self.send_error_raw(seq, code, &state, &msg).await
            }
        }
    }
}

/// The SKUs the statement is limited to on the hot table (`None` when it is not limited to
/// known values).
fn hot_keys(a: &Analysis, table: usize, params: Option<&[ParamValue]>) -> Option<Vec<u64>> {
    let value = |k: &KeyRef| -> Option<u64> {
        match k {
            KeyRef::Int(v) => u64::try_from(*v).ok(),
            KeyRef::Str(s) => s.trim().parse().ok(),
            KeyRef::Param(i) => match params?.get(*i)? {
                ParamValue::Int(v) => u64::try_from(*v).ok(),
                ParamValue::UInt(v) => Some(*v),
                ParamValue::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
                _ => None,
            },
            _ => None,
        }
    };
    if let Some(ins) = &a.insert
        && ins.table == table
    {
        return ins
            .rows
            .iter()
            .map(|r| r.key.as_ref().and_then(value))
            .collect();
    }
    match &a.sharded_table(table)?.constraint {
        KeyConstraint::Values(v) => v.iter().map(value).collect(),
        KeyConstraint::Any => None,
    }
}

/// Whether `hay` contains `word` (ASCII case-insensitive) not inside a longer identifier.
fn contains_word(hay: &[u8], word: &[u8]) -> bool {
    let Some(&first) = word.first() else {
        return false;
    };
    if hay.len() < word.len() {
        return false;
    }
    // Every statement passes here: look for the first byte only (either case), compare the rest
    // only where it matches.
    let (lo, up) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let last = hay.len() - word.len();
    let mut i = 0;
    while let Some(p) = hay[i..=last].iter().position(|&b| b == lo || b == up) {
        let at = i + p;
        if hay[at..at + word.len()].eq_ignore_ascii_case(word)
            && (at == 0 || !ident(hay[at - 1]))
            && hay.get(at + word.len()).is_none_or(|&b| !ident(b))
        {
            return true;
        }
        i = at + 1;
        if i > last {
            return false;
        }
    }
    false
}

/// The decrement's least stock needed when `stmt` is the batchable guarded decrement
/// `UPDATE <table> SET <stock> = <stock> - N [, <col> = <col> +|- M ...] WHERE <key> = K AND
/// <stock> >= G` (or `> G`), with literal N > 0: a single-row, deterministic change whose only
/// condition besides the key is the stock guard.
fn guarded_decrement(
    stmt: &Statement,
    sql: &[u8],
    hot: &HotRegistry,
) -> Option<crate::hotrow::Decrement> {
    let s = hot.settings();
    let (c, k) = (
        s.stock_column.to_ascii_lowercase(),
        s.key_column.to_ascii_lowercase(),
    );
    let full = s.table.to_ascii_lowercase();
    let short = full.rsplit('.').next().unwrap_or(&full).to_string();
    let text = stmt.digest_text.as_str();
    let (table, rest) = text.strip_prefix("update ")?.split_once(" set ")?;
    let named = table == full
        || table == short
        || (!full.contains('.') && table.rsplit_once('.').is_some_and(|(_, t)| t == short));
    if !named {
        return None;
    }
    let (sets, cond) = rest.split_once(" where ")?;
    let op = [">=", ">"]
        .into_iter()
        .find(|op| cond == format!("{k} = ? and {c} {op} ?"))?;
    // Every assignment is `x = x + ?` or `x = x - ?`; the stock one is a decrement.
    let mut stock_at = None;
    let assignments: Vec<&str> = sets.split(", ").collect();
    for (i, a) in assignments.iter().enumerate() {
        let (lhs, rhs) = a.split_once(" = ")?;
        let plus = rhs == format!("{lhs} + ?");
        let minus = rhs == format!("{lhs} - ?");
        if !plus && !minus {
            return None;
        }
        if lhs == c {
            if !minus || stock_at.is_some() {
                return None;
            }
            stock_at = Some(i);
        }
    }
    let stock_at = stock_at?;
    if stmt.literals.len() != assignments.len() + 2 {
        return None;
    }
    let lit = |i: usize| -> Option<i64> {
        let r = stmt.literals.get(i)?.clone();
        std::str::from_utf8(sql.get(r)?).ok()?.trim().parse().ok()
    };
    let (n, g) = (lit(stock_at)?, lit(assignments.len() + 1)?);
    if n <= 0 {
        return None;
    }
    // Identical copies merge into one UPDATE when every amount is an integer literal.
    let merge =
        (0..assignments.len())
            .all(|i| lit(i).is_some())
            .then(|| crate::hotrow::MergeShape {
                stock: s.stock_column.clone(),
                amount: n,
                guard: g,
                strict: op == ">",
                amounts: stmt.literals[..assignments.len()].to_vec(),
            });
    Some(crate::hotrow::Decrement {
        need: if op == ">" { g.saturating_add(1) } else { g },
        merge,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use peakgate_router::hotspot::HotspotSettings;

    #[test]
    fn contains_word_matches_whole_words_in_any_case() {
        let w = b"sku_stock";
        assert!(contains_word(b"UPDATE SKU_STOCK SET s = 1", w));
        assert!(contains_word(b"select * from shop.sku_stock", w));
        assert!(contains_word(b"sku_stock", w));
        assert!(contains_word(b"x sku_stoc sku_stock", w));
        assert!(contains_word(b"`Sku_Stock`", b"SKU_STOCK"));
        assert!(!contains_word(b"select * from sku_stocks", w));
        assert!(!contains_word(b"select * from my_sku_stock", w));
        assert!(!contains_word(b"sku_stoc", w));
        assert!(!contains_word(b"", w));
        assert!(!contains_word(b"sku_stock", b""));
    }

    fn decrement(sql: &str, table: &str) -> Option<crate::hotrow::Decrement> {
        let mut settings = HotspotSettings::new("127.0.0.1:1");
        settings.table = table.into();
        let hot = HotRegistry::new(settings).expect("registry");
        let stmt = peakgate_router::Classifier::new(4).classify(sql.as_bytes());
        guarded_decrement(&stmt, sql.as_bytes(), &hot)
    }

    fn need(sql: &str, table: &str) -> Option<i64> {
        decrement(sql, table).map(|d| d.need)
    }

    #[test]
    fn merge_shapes_carry_the_amounts_and_the_guard() {
        let sql =
            "UPDATE sku_stock SET stock = stock-2, sold = sold + 3 WHERE sku_id = 5 AND stock > 1";
        let m = decrement(sql, "sku_stock")
            .and_then(|d| d.merge)
            .expect("mergeable");
        assert_eq!(
            (m.stock.as_str(), m.amount, m.guard, m.strict),
            ("stock", 2, 1, true)
        );
        let amounts: Vec<&str> = m.amounts.iter().map(|r| &sql[r.clone()]).collect();
        assert_eq!(amounts, ["2", "3"]);
        // A quoted amount: batched statement by statement, never merged.
        let quoted = "UPDATE sku_stock SET stock = stock - 1, sold = sold + '1' WHERE sku_id = 5 AND stock >= 1";
        let d = decrement(quoted, "sku_stock").expect("a guarded decrement");
        assert_eq!((d.need, d.merge), (1, None));
    }

    #[test]
    fn guarded_decrements_are_recognised() {
        let t = "sku_stock";
        assert_eq!(
            need(
                "UPDATE sku_stock SET stock = stock - 1 WHERE sku_id = 1001 AND stock >= 1",
                t
            ),
            Some(1)
        );
        assert_eq!(
            need(
                "update sku_stock set stock=stock-3 where sku_id=7 and stock>0",
                t
            ),
            Some(1)
        );
        assert_eq!(
            need(
                "UPDATE shop.sku_stock SET stock = stock - 2, sold = sold + 2 WHERE sku_id = 5 AND stock >= 2",
                t
            ),
            Some(2)
        );
        assert_eq!(
            need(
                "UPDATE shop.sku_stock SET stock = stock - 2 WHERE sku_id = 5 AND stock >= 2",
                "shop.sku_stock"
            ),
            Some(2)
        );
    }

    #[test]
    fn prepared_decrements_are_recognised_with_their_parameters() {
        use crate::protocol::stmt::interpolate;
        use ParamValue::{Bytes, Double, Int, Null, UInt};
        let need_with = |sql: &str, params: &[ParamValue]| {
            need(&interpolate(sql, params).expect("literals"), "sku_stock")
        };
        let dec = "UPDATE sku_stock SET stock = stock - ? WHERE sku_id = ? AND stock >= ?";
        assert_eq!(need_with(dec, &[Int(2), UInt(1001), Int(2)]), Some(2));
        let mixed = "UPDATE sku_stock SET stock = stock - 1 WHERE sku_id = ? AND stock > ?";
        assert_eq!(need_with(mixed, &[Int(1001), Int(0)]), Some(1));
        // A value the proxy cannot read as a number, or no positive amount: it runs alone.
        for params in [
            [Bytes(b"1".to_vec()), Int(1001), Int(1)],
            [Null, Int(1001), Int(1)],
            [Int(0), Int(1001), Int(0)],
            [Int(-1), Int(1001), Int(1)],
            [Double(1.0), Int(1001), Int(1)],
        ] {
            assert_eq!(need_with(dec, &params), None, "{params:?}");
        }
    }

    #[test]
    fn other_statements_are_not_batched() {
        let t = "sku_stock";
        for sql in [
            "UPDATE sku_stock SET stock = 5 WHERE sku_id = 1 AND stock >= 1",
            "UPDATE sku_stock SET stock = stock + 10 WHERE sku_id = 1 AND stock >= 0",
            "UPDATE sku_stock SET stock = stock - 1 WHERE sku_id = 1",
            "UPDATE sku_stock SET stock = stock - 1 WHERE sku_id = 1 AND stock >= 1 AND price > 3",
            "UPDATE sku_stock SET stock = stock - 0 WHERE sku_id = 1 AND stock >= 0",
            "UPDATE sku_stock SET stock = stock - 1, price = 3 WHERE sku_id = 1 AND stock >= 1",
            "UPDATE other SET stock = stock - 1 WHERE sku_id = 1 AND stock >= 1",
            "DELETE FROM sku_stock WHERE sku_id = 1",
        ] {
            assert_eq!(need(sql, t), None, "{sql}");
        }
    }
}
