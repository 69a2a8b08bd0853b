//! The shard map as written in `peakgate.toml`: `[sharding]` and `[[tables]]`, serde types only.
//! Values stay spanned and loosely typed (names as strings) so that validation can report every
//! mistake at once, each with its key path and line; `build.rs` turns them into a [`super::ShardMap`].
//! `Debug` shows the values as written, without spans (`peakgate check-config` prints it).

use std::fmt;

use serde::Deserialize;
use toml::Spanned;

/// The map's keys in a config file; every other top-level key belongs to the proxy and is ignored here.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MapFile {
    /// `[sharding]`.
    #[serde(default)]
    pub sharding: Option<ShardingConfig>,
    /// `[[tables]]`.
    #[serde(default)]
    pub tables: Vec<TableConfig>,
}

/// `[sharding]`: settings that apply to every sharded table.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardingConfig {
    /// The shard that holds global tables. Optional: the proxy's `routing.default_shard` is used
    /// when absent; when both are set they must agree.
    pub default_shard: Option<Spanned<String>>,
    /// This proxy instance's node id, 0..=1023, written into every generated id so that instances
    /// never issue the same id. Default 0; give each instance its own.
    pub node_id: Option<Spanned<i64>>,
    /// `allow` (default) or `reject`: whether an UPDATE or DELETE without the shard key may run on
    /// every shard of its table.
    pub scatter_writes: Option<Spanned<String>>,
    /// `error` (default) or `xa`: what a transaction that touches a second shard gets.
    pub cross_shard_transactions: Option<Spanned<String>>,
}

/// One `[[tables]]` entry: a sharded, binding, global or broadcast table.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// `schema.table`, or `table` alone to match that table in any schema. Case-insensitive.
    pub name: Spanned<String>,
    /// Sharded tables: the column whose value picks the shard.
    pub shard_key: Option<Spanned<String>>,
    /// Sharded tables: `integer` (default) or `string`, the shard key column's type. It decides how
    /// a value is hashed, so that `key = '42'` and `key = 42` land together.
    pub key_type: Option<Spanned<String>>,
    /// Sharded tables: `consistent_hash`, `range` or `modulo`.
    pub algorithm: Option<Spanned<String>>,
    /// `consistent_hash` and `modulo`: the shards the table is spread over, by name. Default: every
    /// shard in `[[shards]]` order. For `modulo` the order is part of the placement.
    pub shards: Option<Spanned<Vec<Spanned<String>>>>,
    /// `consistent_hash`: points per shard on the ring, 1..=4096, default 160.
    pub virtual_nodes: Option<Spanned<i64>>,
    /// `range`: the shards' key ranges, in ascending order, each starting where the previous ends.
    pub ranges: Option<Spanned<Vec<Spanned<RangeConfig>>>>,
    /// `consistent_hash`: a column whose values are generated ids carrying the shard key's slot
    /// (e.g. `orders.id`), so a lookup by it routes to one shard.
    pub gene_column: Option<Spanned<String>>,
    /// Binding tables: the sharded table this one follows (`schema.table`; without a schema, this
    /// table's schema).
    pub binding: Option<Spanned<String>>,
    /// Binding tables: the column holding the followed table's gene ids (if it has a
    /// `gene_column`), otherwise its shard key values.
    pub binding_key: Option<Spanned<String>>,
    /// `true`: the table lives on the default shard only.
    pub global: Option<Spanned<bool>>,
    /// `true`: every shard holds a copy; reads go to one shard, writes to all.
    pub broadcast: Option<Spanned<bool>>,
}

/// One range of a `range` table: keys in `[from, to)` live on `shard`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeConfig {
    /// The shard holding these keys.
    pub shard: Spanned<String>,
    /// First key (inclusive). Only the first range may leave it out: unbounded below.
    pub from: Option<Spanned<i64>>,
    /// End key (exclusive). Only the last range may leave it out: unbounded above.
    pub to: Option<Spanned<i64>>,
}

/// Adds `name: value` when the key is present.
fn present<T: fmt::Debug>(d: &mut fmt::DebugStruct<'_, '_>, name: &str, v: &Option<Spanned<T>>) {
    if let Some(v) = v {
        d.field(name, v.get_ref());
    }
}

impl fmt::Debug for ShardingConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ShardingConfig");
        present(&mut d, "default_shard", &self.default_shard);
        present(&mut d, "node_id", &self.node_id);
        present(&mut d, "scatter_writes", &self.scatter_writes);
        present(
            &mut d,
            "cross_shard_transactions",
            &self.cross_shard_transactions,
        );
        d.finish()
    }
}

impl fmt::Debug for TableConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TableConfig");
        d.field("name", self.name.get_ref());
        present(&mut d, "shard_key", &self.shard_key);
        present(&mut d, "key_type", &self.key_type);
        present(&mut d, "algorithm", &self.algorithm);
        if let Some(shards) = &self.shards {
            let names: Vec<&String> = shards.get_ref().iter().map(Spanned::get_ref).collect();
            d.field("shards", &names);
        }
        present(&mut d, "virtual_nodes", &self.virtual_nodes);
        if let Some(ranges) = &self.ranges {
            let ranges: Vec<&RangeConfig> = ranges.get_ref().iter().map(Spanned::get_ref).collect();
            d.field("ranges", &ranges);
        }
        present(&mut d, "gene_column", &self.gene_column);
        present(&mut d, "binding", &self.binding);
        present(&mut d, "binding_key", &self.binding_key);
        present(&mut d, "global", &self.global);
        present(&mut d, "broadcast", &self.broadcast);
        d.finish()
    }
}

impl fmt::Debug for RangeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RangeConfig");
        d.field("shard", self.shard.get_ref());
        present(&mut d, "from", &self.from);
        present(&mut d, "to", &self.to);
        d.finish()
    }
}
