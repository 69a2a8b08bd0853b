//! Validation of a sharded table: shard key, key type, algorithm, its shards or ranges, virtual
//! nodes and gene column. The other half of [`Builder`] (sections, kinds, bindings) is `build.rs`.

use toml::Spanned;

use super::Sharding;
use super::build::Builder;
use super::file::{RangeConfig, TableConfig};
use crate::ring::{Algorithm, ConsistentHash, KeyType, Modulo, RangeTable, ShardIdx};

/// Virtual nodes per shard when a `consistent_hash` table sets none.
pub const DEFAULT_VIRTUAL_NODES: u32 = 160;
/// Most virtual nodes per shard.
pub const MAX_VIRTUAL_NODES: u32 = 4096;

impl Builder<'_> {
    /// The shards of a `consistent_hash` or `modulo` table, default all.
    fn table_shards(&mut self, i: usize, t: &TableConfig) -> Option<Vec<ShardIdx>> {
        let Some(list) = &t.shards else {
            if self.shard_names.is_empty() {
                self.error(
                    format!("tables[{i}].shards"),
                    Some(t.name.span()),
                    "no shards to spread the table over: [[shards]] is empty".into(),
                );
                return None;
            }
            return Some((0..self.shard_names.len() as u16).map(ShardIdx).collect());
        };
        if list.get_ref().is_empty() {
            self.error(
                format!("tables[{i}].shards"),
                Some(list.span()),
                "zero shards; list at least one, or leave the key out for all of them".into(),
            );
            return None;
        }
        let mut shards = Vec::new();
        let mut ok = true;
        for (j, name) in list.get_ref().iter().enumerate() {
            match self.shard(format!("tables[{i}].shards[{j}]"), name) {
                Some(idx) if shards.contains(&idx) => {
                    self.error(
                        format!("tables[{i}].shards[{j}]"),
                        Some(name.span()),
                        format!("shard \"{}\" is listed twice", name.get_ref()),
                    );
                    ok = false;
                }
                Some(idx) => shards.push(idx),
                None => ok = false,
            }
        }
        ok.then_some(shards)
    }

    fn ranges(&mut self, i: usize, t: &TableConfig) -> Option<RangeTable> {
        let Some(list) = &t.ranges else {
            self.error(
                format!("tables[{i}].ranges"),
                Some(t.name.span()),
                "missing: a range table needs ranges = [{ shard = \"s0\", from = 0, to = 1000 }, ...]"
                    .into(),
            );
            return None;
        };
        let ranges: &[Spanned<RangeConfig>] = list.get_ref();
        if ranges.is_empty() {
            self.error(
                format!("tables[{i}].ranges"),
                Some(list.span()),
                "no ranges; list at least one".into(),
            );
            return None;
        }
        let mut ok = true;
        let mut starts = Vec::new();
        // End of the previous range, when it was readable.
        let mut prev_end: Option<Option<i64>> = None;
        for (j, r) in ranges.iter().enumerate() {
            let path = format!("tables[{i}].ranges[{j}]");
            let shard = self.shard(format!("{path}.shard"), &r.get_ref().shard);
            ok &= shard.is_some();
            let from = match &r.get_ref().from {
                Some(f) => *f.get_ref(),
                None if j == 0 => i64::MIN,
                None => {
                    self.error(
                        format!("{path}.from"),
                        Some(r.span()),
                        "missing: only the first range may leave out from (unbounded below)".into(),
                    );
                    ok = false;
                    prev_end = None;
                    continue;
                }
            };
            let from_span = r.get_ref().from.as_ref().map_or(r.span(), Spanned::span);
            let to = match &r.get_ref().to {
                Some(to) if *to.get_ref() <= from => {
                    self.error(
                        format!("{path}.to"),
                        Some(to.span()),
                        format!(
                            "empty range [{from}, {}): to must be above from",
                            to.get_ref()
                        ),
                    );
                    ok = false;
                    Some(*to.get_ref())
                }
                Some(to) => Some(*to.get_ref()),
                None if j + 1 == ranges.len() => None,
                None => {
                    self.error(
                        format!("{path}.to"),
                        Some(r.span()),
                        "missing: only the last range may leave out to (unbounded above)".into(),
                    );
                    ok = false;
                    None
                }
            };
            match prev_end {
                Some(Some(end)) if from > end => {
                    self.error(
                        format!("{path}.from"),
                        Some(from_span),
                        format!(
                            "gap: keys in [{end}, {from}) have no shard; ranges[{}] ends at {end}, \
                             start this range there",
                            j - 1
                        ),
                    );
                    ok = false;
                }
                Some(Some(end)) if from < end => {
                    self.error(
                        format!("{path}.from"),
                        Some(from_span),
                        format!(
                            "overlap: {from} is inside ranges[{}], which ends at {end}; list ranges \
                             in ascending order, each from equal to the previous to",
                            j - 1
                        ),
                    );
                    ok = false;
                }
                _ => {}
            }
            if let Some(shard) = shard {
                starts.push((from, shard));
            }
            prev_end = Some(to);
        }
        if !ok {
            return None;
        }
        let end = ranges
            .last()
            .and_then(|r| r.get_ref().to.as_ref())
            .map(|t| *t.get_ref());
        let table = RangeTable::new(starts, end);
        if table.is_none() {
            self.error(
                format!("tables[{i}].ranges"),
                Some(list.span()),
                "ranges must ascend, each from equal to the previous to".into(),
            );
        }
        table
    }

    pub(super) fn sharded(&mut self, i: usize, t: &TableConfig) -> Option<Sharding> {
        let shard_key = match &t.shard_key {
            Some(k) => self.column(format!("tables[{i}].shard_key"), k),
            None => {
                self.error(
                    format!("tables[{i}].shard_key"),
                    Some(t.name.span()),
                    "missing: a sharded table needs the column that picks its shard (or set \
                     global, broadcast or binding)"
                        .into(),
                );
                None
            }
        };
        let key_type = match t
            .key_type
            .as_ref()
            .map(|k| (k.get_ref().as_str(), k.span()))
        {
            None | Some(("integer", _)) => Some(KeyType::Integer),
            Some(("string", _)) => Some(KeyType::String),
            Some((other, span)) => {
                self.error(
                    format!("tables[{i}].key_type"),
                    Some(span),
                    format!("unknown key type \"{other}\"; expected \"integer\" or \"string\""),
                );
                None
            }
        };
        // Outer None: the gene column is invalid (reported); inner: whether there is one.
        let gene_column = match &t.gene_column {
            Some(g) => match self.column(format!("tables[{i}].gene_column"), g) {
                Some(c)
                    if shard_key
                        .as_ref()
                        .is_some_and(|k| c.eq_ignore_ascii_case(k)) =>
                {
                    self.error(
                        format!("tables[{i}].gene_column"),
                        Some(g.span()),
                        "is the shard key itself; name the id column that carries the key's shard"
                            .into(),
                    );
                    None
                }
                Some(c) => Some(Some(c)),
                None => None,
            },
            None => Some(None),
        };
        let Some(algorithm) = &t.algorithm else {
            self.error(
                format!("tables[{i}].algorithm"),
                Some(t.name.span()),
                "missing; expected \"consistent_hash\", \"range\" or \"modulo\"".into(),
            );
            return None;
        };
        let vnodes_span = t.virtual_nodes.as_ref().map(Spanned::span);
        let ranges_span = t.ranges.as_ref().map(Spanned::span);
        let gene_span = t.gene_column.as_ref().map(Spanned::span);
        let algorithm = match algorithm.get_ref().as_str() {
            "consistent_hash" => {
                let mut ok = self.forbid(i, "ranges", ranges_span, "only a range table has ranges");
                let vnodes = match &t.virtual_nodes {
                    None => DEFAULT_VIRTUAL_NODES,
                    Some(v) => match u32::try_from(*v.get_ref()) {
                        Ok(n) if (1..=MAX_VIRTUAL_NODES).contains(&n) => n,
                        _ => {
                            self.error(
                                format!("tables[{i}].virtual_nodes"),
                                Some(v.span()),
                                format!("{} is out of range 1..={MAX_VIRTUAL_NODES}", v.get_ref()),
                            );
                            ok = false;
                            DEFAULT_VIRTUAL_NODES
                        }
                    },
                };
                let shards = self.table_shards(i, t);
                let named: Vec<(ShardIdx, &str)> = shards
                    .iter()
                    .flatten()
                    .map(|&s| (s, self.shard_names[s.index()].as_str()))
                    .collect();
                ConsistentHash::new(&named, vnodes)
                    .filter(|_| ok)
                    .map(Algorithm::ConsistentHash)
            }
            "modulo" => {
                let a = self.forbid(i, "ranges", ranges_span, "only a range table has ranges");
                let b = self.forbid(
                    i,
                    "virtual_nodes",
                    vnodes_span,
                    "only a consistent_hash table has virtual nodes",
                );
                let c = self.forbid(
                    i,
                    "gene_column",
                    gene_span,
                    "needs algorithm = \"consistent_hash\": an id carries its key's slot, and only \
                     consistent_hash maps slots to shards",
                );
                let shards = self.table_shards(i, t);
                shards
                    .and_then(Modulo::new)
                    .filter(|_| a && b && c)
                    .map(Algorithm::Modulo)
            }
            "range" => {
                let a = self.forbid(
                    i,
                    "shards",
                    t.shards.as_ref().map(Spanned::span),
                    "not used by a range table: its ranges name their shards",
                );
                let b = self.forbid(
                    i,
                    "virtual_nodes",
                    vnodes_span,
                    "only a consistent_hash table has virtual nodes",
                );
                let c = self.forbid(
                    i,
                    "gene_column",
                    gene_span,
                    "needs algorithm = \"consistent_hash\": an id carries its key's slot, and only \
                     consistent_hash maps slots to shards",
                );
                let d = match (&t.key_type, key_type) {
                    (Some(k), Some(KeyType::String)) => {
                        self.error(
                            format!("tables[{i}].key_type"),
                            Some(k.span()),
                            "a range table needs integer keys".into(),
                        );
                        false
                    }
                    _ => true,
                };
                let ranges = self.ranges(i, t);
                ranges.filter(|_| a && b && c && d).map(Algorithm::Range)
            }
            other => {
                self.error(
                    format!("tables[{i}].algorithm"),
                    Some(algorithm.span()),
                    format!(
                        "unknown algorithm \"{other}\"; expected \"consistent_hash\", \"range\" \
                         or \"modulo\""
                    ),
                );
                None
            }
        };
        Some(Sharding {
            shard_key: shard_key?,
            key_type: key_type?,
            algorithm: algorithm?,
            gene_column: gene_column?,
        })
    }
}
