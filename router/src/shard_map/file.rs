//! The shard map as written in `peakgate.toml`: `[sharding]` and `[[tables]]`, serde types only.
//! Values stay spanned and loosely typed (names as strings) so that validation can report every
//! mistake at once, each with its key path and line; `build.rs` turns them into a [`super::ShardMap`].

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
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeConfig {
    /// The shard holding these keys.
    pub shard: Spanned<String>,
    /// First key (inclusive). Only the first range may leave it out: unbounded below.
    pub from: Option<Spanned<i64>>,
    /// End key (exclusive). Only the last range may leave it out: unbounded above.
    pub to: Option<Spanned<i64>>,
}
