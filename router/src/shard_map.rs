//! The shard map: which table lives where, resolved from `[sharding]` and `[[tables]]` in
//! `peakgate.toml`, and the per-statement lookups the planner calls.
//!
//! Start at [`ShardMap::from_toml`] (or [`ShardMap::from_config`] when the proxy has already
//! deserialised the file): it validates the whole map, returning every mistake with its key path
//! and line, and resolves names to [`ShardIdx`]es and algorithms to lookup tables. Then:
//! - [`ShardMap::table`] finds a table's rule (case-insensitive; a rule without schema matches any);
//! - [`ShardMap::shard_for`] / [`ShardMap::shard_for_column`] give a key's shard;
//! - [`ShardMap::shard_of_gene_id`] gives the shard of a generated id, [`ShardMap::gene_for`] the
//!   gene to generate one with (see [`crate::gene`]).
//!
//! Lookups never allocate. Table kinds:
//! - sharded: a shard key and an algorithm ([`crate::ring`]), optionally a gene column;
//! - binding: follows a sharded table through a column holding that table's gene ids (or its
//!   shard key values), e.g. `order_items.order_id` -> `orders.id`;
//! - global: on the default shard only; broadcast: a copy on every shard.
//!
//! The file format is in `shard_map/file.rs`, validation in `shard_map/build.rs` and
//! `shard_map/sharded.rs`, and the user documentation in `docs/sharding.md`.

mod build;
mod explain;
mod file;
mod sharded;

use std::fmt;

pub use explain::Lookup;
pub use file::{MapFile, RangeConfig, ShardingConfig, TableConfig};
pub use sharded::{DEFAULT_VIRTUAL_NODES, MAX_VIRTUAL_NODES};

use crate::digest::{FNV_OFFSET_BASIS, FNV_PRIME};
use crate::error::Error;
use crate::ring::{Algorithm, KeyType, KeyValue, ShardIdx, Slot, parse_decimal, with_key};

/// One validation error: the key path, what is wrong, and the line when known.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}{}", .line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct ConfigError {
    /// Key path, e.g. `tables[1].shard_key`.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
    /// 1-based line in the file.
    pub line: Option<usize>,
}

/// `[sharding] scatter_writes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScatterWrites {
    /// An UPDATE/DELETE without the shard key runs on every shard of its table.
    #[default]
    Allow,
    /// Such a statement is refused.
    Reject,
}

/// `[sharding] cross_shard_transactions`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CrossShardTransactions {
    /// A transaction that reaches a second shard gets an error.
    #[default]
    Error,
    /// Transactions opened with BEGIN run as MariaDB XA transactions across the shards they touch
    /// (two-phase commit, recovery at start-up; see docs/sharding.md).
    Xa,
}

/// The resolved shard map.
#[derive(Clone, Default)]
pub struct ShardMap {
    shards: Vec<String>,
    default_shard: Option<ShardIdx>,
    node_id: u16,
    scatter_writes: ScatterWrites,
    cross_shard_transactions: CrossShardTransactions,
    tables: Vec<TableRule>,
    /// `(case-folded hash of the table name, index into tables)`, sorted.
    index: Vec<(u64, u32)>,
}

/// One table's rule.
#[derive(Clone, Debug)]
pub struct TableRule {
    schema: Option<String>,
    name: String,
    kind: TableKind,
}

/// Where a table's rows live.
#[derive(Clone, Debug)]
pub enum TableKind {
    /// Spread over shards by a key.
    Sharded(Sharding),
    /// Follows a sharded table.
    Binding(Binding),
    /// On this shard (the default shard) only.
    Global(ShardIdx),
    /// A copy on every shard.
    Broadcast,
}

/// A sharded table's key and algorithm.
#[derive(Clone, Debug)]
pub struct Sharding {
    /// The shard key column.
    pub shard_key: String,
    /// How key values are read.
    pub key_type: KeyType,
    /// The algorithm with its lookup tables.
    pub algorithm: Algorithm,
    /// The column whose generated ids carry the key's slot (only with `consistent_hash`).
    pub gene_column: Option<String>,
}

/// A binding table's link to the sharded table it follows.
#[derive(Clone, Debug)]
pub struct Binding {
    /// The followed table, `schema.table` as its rule names it.
    pub parent: String,
    /// The column holding the parent's gene ids (or shard key values).
    pub binding_key: String,
    /// The parent's sharding, copied so a lookup needs no second search.
    pub parent_sharding: Sharding,
}

impl Sharding {
    /// The shard of a shard key value.
    pub fn shard_for(&self, key: KeyValue<'_>) -> Result<ShardIdx, Error> {
        with_key(self.key_type, key, |k| self.algorithm.shard_of(k))?
    }

    /// The shard of a generated id of the gene column.
    pub fn shard_of_gene_id(&self, id: u64) -> Result<ShardIdx, Error> {
        match &self.algorithm {
            Algorithm::ConsistentHash(ch) if self.gene_column.is_some() => {
                Ok(ch.shard_of_slot(Slot::of_gene_id(id)))
            }
            _ => Err(Error::NoGeneColumn),
        }
    }
}

impl TableRule {
    /// The schema, None when the rule matches any schema.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where its rows live.
    pub fn kind(&self) -> &TableKind {
        &self.kind
    }

    /// Whether every shard holds a copy.
    pub fn is_broadcast(&self) -> bool {
        matches!(self.kind, TableKind::Broadcast)
    }

    /// Whether the table lives on the default shard only.
    pub fn is_global(&self) -> bool {
        matches!(self.kind, TableKind::Global(_))
    }
}

impl fmt::Display for TableRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => write!(f, "*.{}", self.name),
        }
    }
}

/// FNV-1a 64 over ASCII-lowercased bytes: the index key of a table name.
fn folded_hash(name: &[u8]) -> u64 {
    name.iter().fold(FNV_OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(FNV_PRIME)
    })
}

/// A gene id written as a statement value: a non-negative integer.
fn gene_id(key: KeyValue<'_>) -> Result<u64, Error> {
    match key {
        KeyValue::Int(v) => u64::try_from(v).map_err(|_| Error::NegativeId),
        KeyValue::UInt(v) => Ok(v),
        KeyValue::Bytes(b) => {
            let v = parse_decimal(b).ok_or(Error::KeyNotInteger)?;
            u64::try_from(v).map_err(|_| Error::NegativeId)
        }
    }
}

impl ShardMap {
    /// Reads `[sharding]` and `[[tables]]` from a whole config file (other keys are ignored) and
    /// validates them against the proxy's shard names (`[[shards]]` order) and default shard.
    pub fn from_toml(
        text: &str,
        shard_names: &[String],
        default_shard: Option<&str>,
    ) -> Result<ShardMap, Vec<ConfigError>> {
        let file: MapFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| build::line_at(text, s.start));
            vec![ConfigError {
                path: "shard map".into(),
                message: e.message().trim_end().to_string(),
                line,
            }]
        })?;
        Self::from_config(
            file.sharding.as_ref(),
            &file.tables,
            text,
            shard_names,
            default_shard,
        )
    }

    /// Validates and resolves an already deserialised map; `text` is the file it came from, for
    /// line numbers.
    pub fn from_config(
        sharding: Option<&ShardingConfig>,
        tables: &[TableConfig],
        text: &str,
        shard_names: &[String],
        default_shard: Option<&str>,
    ) -> Result<ShardMap, Vec<ConfigError>> {
        build::build(sharding, tables, text, shard_names, default_shard)
    }

    /// An empty map over these shards: no table rules.
    pub fn empty(shard_names: &[String], default_shard: Option<&str>) -> ShardMap {
        let default = default_shard
            .and_then(|d| shard_names.iter().position(|s| s == d))
            .or((!shard_names.is_empty()).then_some(0));
        ShardMap {
            shards: shard_names.to_vec(),
            default_shard: default.and_then(|i| u16::try_from(i).ok()).map(ShardIdx),
            ..ShardMap::default()
        }
    }

    /// The rule for `schema.name`: a rule naming that schema first, else a rule without schema.
    /// `schema` is the statement's qualifier or the session's current schema; with None only rules
    /// without schema match. Names compare ASCII case-insensitively.
    pub fn table(&self, schema: Option<&str>, name: &str) -> Option<&TableRule> {
        let hash = folded_hash(name.as_bytes());
        let start = self.index.partition_point(|&(h, _)| h < hash);
        let mut any_schema = None;
        for &(h, i) in &self.index[start..] {
            if h != hash {
                break;
            }
            let rule = &self.tables[i as usize];
            if !rule.name.eq_ignore_ascii_case(name) {
                continue;
            }
            match (&rule.schema, schema) {
                (Some(s), Some(q)) if s.eq_ignore_ascii_case(q) => return Some(rule),
                (None, _) => any_schema = Some(rule),
                _ => {}
            }
        }
        any_schema
    }

    /// The shard of a row of `table` whose routing key is `key`: the shard key of a sharded table,
    /// the binding key of a binding table. A global table answers its shard whatever the key; a
    /// broadcast table is [`Error::BroadcastTable`].
    pub fn shard_for(&self, table: &TableRule, key: KeyValue<'_>) -> Result<ShardIdx, Error> {
        match &table.kind {
            TableKind::Sharded(s) => s.shard_for(key),
            TableKind::Binding(b) if b.parent_sharding.gene_column.is_some() => {
                b.parent_sharding.shard_of_gene_id(gene_id(key)?)
            }
            TableKind::Binding(b) => b.parent_sharding.shard_for(key),
            TableKind::Global(shard) => Ok(*shard),
            TableKind::Broadcast => Err(Error::BroadcastTable),
        }
    }

    /// The shard picked by `column = key`, or None when `column` routes nothing in this table
    /// (not its shard key, gene column or binding key). Global and broadcast tables as
    /// [`ShardMap::shard_for`]. Column names compare ASCII case-insensitively.
    pub fn shard_for_column(
        &self,
        table: &TableRule,
        column: &str,
        key: KeyValue<'_>,
    ) -> Result<Option<ShardIdx>, Error> {
        match &table.kind {
            TableKind::Sharded(s) if s.shard_key.eq_ignore_ascii_case(column) => {
                s.shard_for(key).map(Some)
            }
            TableKind::Sharded(s)
                if s.gene_column
                    .as_deref()
                    .is_some_and(|g| g.eq_ignore_ascii_case(column)) =>
            {
                s.shard_of_gene_id(gene_id(key)?).map(Some)
            }
            TableKind::Sharded(_) => Ok(None),
            TableKind::Binding(b) if b.binding_key.eq_ignore_ascii_case(column) => {
                self.shard_for(table, key).map(Some)
            }
            TableKind::Binding(_) => Ok(None),
            TableKind::Global(_) | TableKind::Broadcast => self.shard_for(table, key).map(Some),
        }
    }

    /// The shard of a generated id of `table`'s gene column (or, for a binding table, of the
    /// followed table's gene column).
    pub fn shard_of_gene_id(&self, table: &TableRule, id: u64) -> Result<ShardIdx, Error> {
        match &table.kind {
            TableKind::Sharded(s) => s.shard_of_gene_id(id),
            TableKind::Binding(b) => b.parent_sharding.shard_of_gene_id(id),
            TableKind::Global(_) | TableKind::Broadcast => Err(Error::NoGeneColumn),
        }
    }

    /// The gene to generate `table`'s gene column ids with, for a row whose shard key is `key`.
    pub fn gene_for(&self, table: &TableRule, key: KeyValue<'_>) -> Result<Slot, Error> {
        match &table.kind {
            TableKind::Sharded(s) if s.gene_column.is_some() => {
                with_key(s.key_type, key, |k| k.slot())
            }
            _ => Err(Error::NoGeneColumn),
        }
    }

    /// Shard names, in `[[shards]]` order; a [`ShardIdx`] indexes this.
    pub fn shards(&self) -> &[String] {
        &self.shards
    }

    /// A shard's name ("?" for an index from another map).
    pub fn shard_name(&self, shard: ShardIdx) -> &str {
        self.shards.get(shard.index()).map_or("?", String::as_str)
    }

    /// The shard holding global tables; None only when there are no shards.
    pub fn default_shard(&self) -> Option<ShardIdx> {
        self.default_shard
    }

    /// `[sharding] node_id`.
    pub fn node_id(&self) -> u16 {
        self.node_id
    }

    /// `[sharding] scatter_writes`.
    pub fn scatter_writes(&self) -> ScatterWrites {
        self.scatter_writes
    }

    /// `[sharding] cross_shard_transactions`.
    pub fn cross_shard_transactions(&self) -> CrossShardTransactions {
        self.cross_shard_transactions
    }

    /// Every table rule, in file order.
    pub fn tables(&self) -> &[TableRule] {
        &self.tables
    }

    /// Whether the map has no table rules.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    fn names(&self, shards: &[ShardIdx]) -> String {
        let names: Vec<&str> = shards.iter().map(|&s| self.shard_name(s)).collect();
        names.join(", ")
    }

    fn describe_sharding(&self, f: &mut fmt::Formatter<'_>, s: &Sharding) -> fmt::Result {
        write!(
            f,
            "sharded by {} ({}), {}",
            s.shard_key,
            s.key_type.as_str(),
            s.algorithm.name()
        )?;
        match &s.algorithm {
            Algorithm::ConsistentHash(ch) => {
                let slots: Vec<String> = ch
                    .shards()
                    .iter()
                    .map(|&sh| {
                        let n = ch.slot_table().count(sh);
                        format!("{} {n}", self.shard_name(sh))
                    })
                    .collect();
                write!(
                    f,
                    " over {}, {} virtual nodes each, slots of 1024: {}",
                    self.names(ch.shards()),
                    ch.virtual_nodes(),
                    slots.join(", ")
                )?;
            }
            Algorithm::Modulo(m) => write!(f, " over {} (in this order)", self.names(m.shards()))?,
            Algorithm::Range(r) => {
                let ranges: Vec<String> = r
                    .ranges()
                    .enumerate()
                    .map(|(i, (from, to, shard))| {
                        let from = if i == 0 && from == i64::MIN {
                            "..".to_string()
                        } else {
                            from.to_string()
                        };
                        let to = to.map_or("..".to_string(), |t| t.to_string());
                        format!("[{from}, {to}) -> {}", self.shard_name(shard))
                    })
                    .collect();
                write!(f, ": {}", ranges.join(", "))?;
            }
        }
        if let Some(gene) = &s.gene_column {
            write!(f, "; gene column {gene}: its values carry the shard")?;
        }
        Ok(())
    }
}

/// Everything but the lookup index.
impl fmt::Debug for ShardMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardMap")
            .field("shards", &self.shards)
            .field("default_shard", &self.default_shard)
            .field("node_id", &self.node_id)
            .field("scatter_writes", &self.scatter_writes)
            .field("cross_shard_transactions", &self.cross_shard_transactions)
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

/// The resolved map, as `peakgate check-config` prints it.
impl fmt::Display for ShardMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let default = self.default_shard.map_or("none", |s| self.shard_name(s));
        writeln!(
            f,
            "shard map: shards {}; default shard {default}; node_id {}; scatter_writes {}; \
             cross_shard_transactions {}",
            self.shards.join(", "),
            self.node_id,
            match self.scatter_writes {
                ScatterWrites::Allow => "allow",
                ScatterWrites::Reject => "reject",
            },
            match self.cross_shard_transactions {
                CrossShardTransactions::Error => "error",
                CrossShardTransactions::Xa => "xa",
            },
        )?;
        if self.tables.is_empty() {
            return writeln!(f, "  no [[tables]]: every table is on the default shard");
        }
        for table in &self.tables {
            write!(f, "  {table}: ")?;
            match &table.kind {
                TableKind::Sharded(s) => self.describe_sharding(f, s)?,
                TableKind::Binding(b) => {
                    let parent = &b.parent_sharding;
                    match &parent.gene_column {
                        Some(gene) => write!(
                            f,
                            "bound to {} by {} (holds {}.{gene} values, which carry the shard)",
                            b.parent, b.binding_key, b.parent
                        )?,
                        None => write!(
                            f,
                            "bound to {} by {} (holds {}.{} values)",
                            b.parent, b.binding_key, b.parent, parent.shard_key
                        )?,
                    }
                }
                TableKind::Global(shard) => write!(f, "global, on {}", self.shard_name(*shard))?,
                TableKind::Broadcast => {
                    write!(f, "broadcast, a copy on each of {}", self.shards.join(", "))?;
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
