//! Validation and resolution: the file's values in, a [`ShardMap`] or every mistake out. Each
//! error names its key path and the line of the offending value (or of the table's `name` when a
//! key is missing). One mistake is reported once: a table that fails validation is left out, and
//! what refers to it is not reported again.

use std::ops::Range;

use toml::Spanned;

use super::file::{ShardingConfig, TableConfig};
use super::{
    Binding, ConfigError, CrossShardTransactions, ScatterWrites, ShardMap, TableKind, TableRule,
    folded_hash,
};
use crate::gene::MAX_NODE_ID;
use crate::ring::ShardIdx;

/// The 1-based line of byte `offset` in `text`.
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Splits `schema.table` or `table`; None if it is neither.
fn split_name(name: &str) -> Option<(Option<&str>, &str)> {
    let ok = |part: &str| {
        !part.is_empty() && !part.bytes().any(|b| b.is_ascii_whitespace() || b == b'`')
    };
    match name.split_once('.') {
        None if ok(name) => Some((None, name)),
        Some((schema, table)) if ok(schema) && ok(table) && !table.contains('.') => {
            Some((Some(schema), table))
        }
        _ => None,
    }
}

/// A table entry between the two passes.
enum Draft<'c> {
    Ready(TableKind),
    Binding {
        parent: &'c Spanned<String>,
        key: &'c Spanned<String>,
    },
    /// Failed validation (already reported).
    Broken,
}

struct Entry<'c> {
    config_index: usize,
    schema: Option<String>,
    name: String,
    name_span: Range<usize>,
    draft: Draft<'c>,
}

impl Entry<'_> {
    fn display(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Collects errors while it resolves; `sharded.rs` holds the sharded-table half.
pub(super) struct Builder<'a> {
    pub(super) text: &'a str,
    pub(super) shard_names: &'a [String],
    pub(super) errors: Vec<ConfigError>,
}

impl Builder<'_> {
    pub(super) fn error(&mut self, path: String, span: Option<Range<usize>>, message: String) {
        let line = span
            .filter(|s| !self.text.is_empty() && s.start <= self.text.len())
            .map(|s| line_at(self.text, s.start));
        self.errors.push(ConfigError {
            path,
            message,
            line,
        });
    }

    /// The index of shard `name`, or an error at `path`.
    pub(super) fn shard(&mut self, path: String, name: &Spanned<String>) -> Option<ShardIdx> {
        let found = self.shard_names.iter().position(|s| s == name.get_ref());
        match found.and_then(|i| u16::try_from(i).ok()) {
            Some(i) => Some(ShardIdx(i)),
            None => {
                let defined = self.shard_names.join(", ");
                self.error(
                    path,
                    Some(name.span()),
                    format!(
                        "shard \"{}\" is not defined in [[shards]] (defined: {defined})",
                        name.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn sharding(&mut self, s: &ShardingConfig, map: &mut ShardMap, fallback: Option<&str>) {
        if let Some(d) = &s.default_shard
            && let Some(idx) = self.shard("sharding.default_shard".into(), d)
        {
            if let Some(other) = fallback.filter(|o| *o != d.get_ref()) {
                self.error(
                    "sharding.default_shard".into(),
                    Some(d.span()),
                    format!(
                        "\"{}\" differs from routing.default_shard \"{other}\"; global tables and \
                         unrouted statements share one default shard: set one of the two",
                        d.get_ref()
                    ),
                );
            }
            map.default_shard = Some(idx);
        }
        if let Some(n) = &s.node_id {
            match u16::try_from(*n.get_ref()) {
                Ok(id) if id <= MAX_NODE_ID => map.node_id = id,
                _ => self.error(
                    "sharding.node_id".into(),
                    Some(n.span()),
                    format!(
                        "{} is out of range 0..={MAX_NODE_ID}; give each proxy instance its own",
                        n.get_ref()
                    ),
                ),
            }
        }
        if let Some(v) = &s.scatter_writes {
            match v.get_ref().as_str() {
                "allow" => map.scatter_writes = ScatterWrites::Allow,
                "reject" => map.scatter_writes = ScatterWrites::Reject,
                other => self.error(
                    "sharding.scatter_writes".into(),
                    Some(v.span()),
                    format!("unknown value \"{other}\"; expected \"allow\" or \"reject\""),
                ),
            }
        }
        if let Some(v) = &s.cross_shard_transactions {
            match v.get_ref().as_str() {
                "error" => map.cross_shard_transactions = CrossShardTransactions::Error,
                "xa" => map.cross_shard_transactions = CrossShardTransactions::Xa,
                other => self.error(
                    "sharding.cross_shard_transactions".into(),
                    Some(v.span()),
                    format!("unknown value \"{other}\"; expected \"error\" or \"xa\""),
                ),
            }
        }
    }

    /// Reports every sharding key present on a table of kind `kind` (which takes none).
    fn forbid_sharding_keys(&mut self, i: usize, t: &TableConfig, kind: &str) {
        let keys = [
            ("shard_key", t.shard_key.as_ref().map(Spanned::span)),
            ("key_type", t.key_type.as_ref().map(Spanned::span)),
            ("algorithm", t.algorithm.as_ref().map(Spanned::span)),
            ("shards", t.shards.as_ref().map(Spanned::span)),
            ("virtual_nodes", t.virtual_nodes.as_ref().map(Spanned::span)),
            ("ranges", t.ranges.as_ref().map(Spanned::span)),
            ("gene_column", t.gene_column.as_ref().map(Spanned::span)),
        ];
        for (key, span) in keys {
            if let Some(span) = span {
                self.error(
                    format!("tables[{i}].{key}"),
                    Some(span),
                    format!("not used by a {kind} table; remove it"),
                );
            }
        }
    }

    /// A key that `algorithm` does not use.
    pub(super) fn forbid(
        &mut self,
        i: usize,
        key: &str,
        span: Option<Range<usize>>,
        why: &str,
    ) -> bool {
        match span {
            Some(span) => {
                self.error(format!("tables[{i}].{key}"), Some(span), why.to_string());
                false
            }
            None => true,
        }
    }

    pub(super) fn column(&mut self, path: String, column: &Spanned<String>) -> Option<String> {
        let c = column.get_ref();
        if c.is_empty()
            || c.bytes()
                .any(|b| b.is_ascii_whitespace() || b == b'`' || b == b'.')
        {
            self.error(
                path,
                Some(column.span()),
                format!("\"{c}\" is not a column name (no quotes, dots or spaces)"),
            );
            return None;
        }
        Some(c.clone())
    }

    fn draft<'c>(&mut self, i: usize, t: &'c TableConfig, default: Option<ShardIdx>) -> Draft<'c> {
        let global = t.global.as_ref().is_some_and(|g| *g.get_ref());
        let broadcast = t.broadcast.as_ref().is_some_and(|b| *b.get_ref());
        let binding = t.binding.is_some() || t.binding_key.is_some();
        if usize::from(global) + usize::from(broadcast) + usize::from(binding) > 1 {
            let (key, span) = match (&t.broadcast, &t.binding) {
                (Some(b), _) if broadcast => ("broadcast", b.span()),
                (_, Some(b)) => ("binding", b.span()),
                _ => ("name", t.name.span()),
            };
            self.error(
                format!("tables[{i}].{key}"),
                Some(span),
                "a table is one of global (default shard only), broadcast (a copy on every \
                 shard), binding (follows a sharded table) or sharded, not several"
                    .into(),
            );
            return Draft::Broken;
        }
        if global || broadcast {
            let kind = if global { "global" } else { "broadcast" };
            let errors = self.errors.len();
            self.forbid_sharding_keys(i, t, kind);
            if self.errors.len() > errors {
                return Draft::Broken;
            }
            if broadcast {
                return Draft::Ready(TableKind::Broadcast);
            }
            return match default {
                Some(shard) => Draft::Ready(TableKind::Global(shard)),
                None => {
                    self.error(
                        format!("tables[{i}].global"),
                        t.global.as_ref().map(Spanned::span),
                        "no default shard to put it on: [[shards]] is empty".into(),
                    );
                    Draft::Broken
                }
            };
        }
        if binding {
            let errors = self.errors.len();
            self.forbid_sharding_keys(i, t, "binding");
            let (parent, key) = match (&t.binding, &t.binding_key) {
                (Some(parent), Some(key)) => (parent, key),
                (None, _) => {
                    self.error(
                        format!("tables[{i}].binding"),
                        Some(t.name.span()),
                        "missing: binding_key needs binding, the sharded table this one follows"
                            .into(),
                    );
                    return Draft::Broken;
                }
                (Some(parent), None) => {
                    self.error(
                        format!("tables[{i}].binding_key"),
                        Some(t.name.span()),
                        format!(
                            "missing: the column holding {}'s ids (or shard keys)",
                            parent.get_ref()
                        ),
                    );
                    return Draft::Broken;
                }
            };
            if self
                .column(format!("tables[{i}].binding_key"), key)
                .is_none()
                || self.errors.len() > errors
            {
                return Draft::Broken;
            }
            return Draft::Binding { parent, key };
        }
        match self.sharded(i, t) {
            Some(s) => Draft::Ready(TableKind::Sharded(s)),
            None => Draft::Broken,
        }
    }

    /// Resolves a binding entry against the other entries.
    fn bind(&mut self, entries: &[Entry<'_>], at: usize) -> Option<TableKind> {
        let e = &entries[at];
        let Draft::Binding { parent, key } = &e.draft else {
            return None;
        };
        let i = e.config_index;
        let Some((schema, name)) = split_name(parent.get_ref()) else {
            self.error(
                format!("tables[{i}].binding"),
                Some(parent.span()),
                format!(
                    "\"{}\" is not a table name (schema.table)",
                    parent.get_ref()
                ),
            );
            return None;
        };
        let schema = schema.or(e.schema.as_deref());
        let same_name = |c: &&Entry<'_>| c.name.eq_ignore_ascii_case(name);
        let found = entries
            .iter()
            .filter(same_name)
            .find(|c| match (&c.schema, schema) {
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                _ => false,
            })
            .or_else(|| {
                entries
                    .iter()
                    .filter(same_name)
                    .find(|c| c.schema.is_none())
            });
        let Some(p) = found else {
            self.error(
                format!("tables[{i}].binding"),
                Some(parent.span()),
                format!(
                    "no [[tables]] entry for \"{}\"; a binding table follows a sharded table",
                    parent.get_ref()
                ),
            );
            return None;
        };
        let why = match &p.draft {
            Draft::Ready(TableKind::Sharded(s)) => {
                return Some(TableKind::Binding(Binding {
                    parent: p.display(),
                    binding_key: key.get_ref().clone(),
                    parent_sharding: s.clone(),
                }));
            }
            Draft::Broken => return None,
            Draft::Binding { .. } => "itself a binding table; bind to the table it follows",
            Draft::Ready(TableKind::Binding(_)) => "itself a binding table",
            Draft::Ready(TableKind::Global(_)) => "a global table, which is not sharded",
            Draft::Ready(TableKind::Broadcast) => "a broadcast table, which is not sharded",
        };
        self.error(
            format!("tables[{i}].binding"),
            Some(parent.span()),
            format!("\"{}\" is {why}", p.display()),
        );
        None
    }
}

pub(super) fn build(
    sharding: Option<&ShardingConfig>,
    tables: &[TableConfig],
    text: &str,
    shard_names: &[String],
    default_shard: Option<&str>,
) -> Result<ShardMap, Vec<ConfigError>> {
    let mut b = Builder {
        text,
        shard_names,
        errors: Vec::new(),
    };
    let mut map = ShardMap::empty(shard_names, default_shard);
    if let Some(s) = sharding {
        b.sharding(s, &mut map, default_shard);
    }

    let mut entries: Vec<Entry<'_>> = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let Some((schema, name)) = split_name(t.name.get_ref()) else {
            b.error(
                format!("tables[{i}].name"),
                Some(t.name.span()),
                format!(
                    "\"{}\" is not a table name: expected schema.table or table",
                    t.name.get_ref()
                ),
            );
            continue;
        };
        let duplicate = entries.iter().find(|e| {
            e.name.eq_ignore_ascii_case(name)
                && match (&e.schema, schema) {
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    (None, None) => true,
                    _ => false,
                }
        });
        if let Some(first) = duplicate {
            let line = line_at(text, first.name_span.start);
            b.error(
                format!("tables[{i}].name"),
                Some(t.name.span()),
                format!(
                    "\"{}\" is already mapped by tables[{}] on line {line}",
                    t.name.get_ref(),
                    first.config_index
                ),
            );
            continue;
        }
        let draft = b.draft(i, t, map.default_shard);
        entries.push(Entry {
            config_index: i,
            schema: schema.map(str::to_string),
            name: name.to_string(),
            name_span: t.name.span(),
            draft,
        });
    }
    for at in 0..entries.len() {
        if matches!(entries[at].draft, Draft::Binding { .. }) {
            entries[at].draft = match b.bind(&entries, at) {
                Some(kind) => Draft::Ready(kind),
                None => Draft::Broken,
            };
        }
    }
    if !b.errors.is_empty() {
        return Err(b.errors);
    }
    for e in entries {
        if let Draft::Ready(kind) = e.draft {
            map.tables.push(TableRule {
                schema: e.schema,
                name: e.name,
                kind,
            });
        }
    }
    map.index = map
        .tables
        .iter()
        .enumerate()
        .map(|(i, t)| (folded_hash(t.name.as_bytes()), i as u32))
        .collect();
    map.index.sort_unstable();
    Ok(map)
}
