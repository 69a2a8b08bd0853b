//! Which shards a statement runs on, from its [`Analysis`] and the [`ShardMap`]: one shard (the
//! key, a gene id, a global table, or no mapped table at all), some or all shards (scatter), every
//! shard for broadcast writes and DDL, and a multi-row INSERT split per shard. Refusals name what
//! is wrong: a changed shard key, a join across shards, a scatter write the map forbids.

use std::collections::BTreeSet;

use crate::analyze::{Analysis, KeyColumns, KeyConstraint, KeyRef, ShardKeys, StatementType};
use crate::ring::{KeyValue, ShardIdx};
use crate::shard_map::{ScatterWrites, ShardMap, TableKind, TableRule};

/// Where the statement runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shards {
    /// One shard.
    One(ShardIdx),
    /// Several shards, in index order (a read scatters, a write runs on each).
    Many(Vec<ShardIdx>),
}

impl Shards {
    /// The shards as a list.
    pub fn list(&self) -> Vec<ShardIdx> {
        match self {
            Shards::One(s) => vec![*s],
            Shards::Many(v) => v.clone(),
        }
    }
}

/// The shard decision for one statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardPlan {
    pub shards: Shards,
    /// A write that must reach every listed shard (broadcast table, DDL, scatter UPDATE/DELETE).
    pub write_all: bool,
    /// A multi-row INSERT whose rows go to different shards: the row indexes per shard.
    pub split_rows: Option<Vec<(ShardIdx, Vec<usize>)>>,
    /// The INSERT leaves the gene column out: the proxy generates ids (table index in the analysis).
    pub generate_ids: bool,
}

impl ShardPlan {
    fn one(s: ShardIdx) -> Self {
        Self {
            shards: Shards::One(s),
            write_all: false,
            split_rows: None,
            generate_ids: false,
        }
    }
}

/// Why a statement cannot be routed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardPlanError {
    #[error("changing the shard key of {0} is not supported: delete the row and insert it again")]
    UpdatesShardKey(String),
    #[error(
        "{0} and {1} live on different shards and are not joined on their shard key: run the query per shard or join on the key"
    )]
    CrossShardJoin(String, String),
    #[error(
        "{0}: a write without the shard key would run on every shard and sharding.scatter_writes = \"reject\""
    )]
    ScatterWriteRefused(String),
    #[error("INSERT into {0} needs the shard key column {1} in its column list")]
    InsertWithoutKey(String, String),
    #[error("INSERT ... SELECT into the sharded table {0} is not supported")]
    InsertSelect(String),
    #[error("the shard key value of {0} cannot be read: {1}")]
    BadKey(String, String),
}

/// The proxy's view of the map for `analyze`: names resolve against the session's schema.
pub struct MapKeys<'a> {
    pub map: &'a ShardMap,
    /// The session's current schema, for unqualified table names.
    pub schema: Option<&'a str>,
}

impl MapKeys<'_> {
    fn rule(&self, schema: Option<&str>, table: &str) -> Option<&TableRule> {
        self.map.table(schema.or(self.schema), table)
    }
}

impl ShardKeys for MapKeys<'_> {
    fn shard_key(&self, schema: Option<&str>, table: &str) -> Option<KeyColumns> {
        match self.rule(schema, table)?.kind() {
            TableKind::Sharded(s) => Some(KeyColumns {
                key: s.shard_key.to_ascii_lowercase(),
                gene: s.gene_column.as_ref().map(|g| g.to_ascii_lowercase()),
            }),
            TableKind::Binding(b) => Some(KeyColumns {
                key: b.binding_key.to_ascii_lowercase(),
                gene: None,
            }),
            TableKind::Global(_) | TableKind::Broadcast => None,
        }
    }
}

/// Whether the statement names any table of the map (cacheable per digest and schema: table
/// names are never literals).
pub fn touches_map(a: &Analysis, keys: &MapKeys<'_>) -> bool {
    a.tables
        .iter()
        .any(|t| keys.rule(t.schema.as_deref(), &t.name).is_some())
        || a.ddl.as_ref().is_some_and(|d| d.database.is_some())
}

/// Plans the shards of an analysed statement. `param` gives the value of the `?` placeholder
/// with that position (prepared statements), `None` when unknown.
pub fn shard_plan<'p>(
    a: &Analysis,
    keys: &MapKeys<'_>,
    param: &dyn Fn(usize) -> Option<KeyValue<'p>>,
) -> Result<ShardPlan, ShardPlanError> {
    let map = keys.map;
    let all: Vec<ShardIdx> = (0..map.shards().len())
        .filter_map(|i| u16::try_from(i).ok().map(ShardIdx))
        .collect();
    let default = map.default_shard().unwrap_or(ShardIdx(0));
    let name = |i: usize| {
        let t = &a.tables[i];
        match &t.schema {
            Some(s) => format!("{s}.{}", t.name),
            None => t.name.clone(),
        }
    };
    let rules: Vec<Option<&TableRule>> = a
        .tables
        .iter()
        .map(|t| keys.rule(t.schema.as_deref(), &t.name))
        .collect();
    let many = |v: Vec<ShardIdx>| {
        if v.len() == 1 {
            Shards::One(v[0])
        } else {
            Shards::Many(v)
        }
    };

    if a.kind == StatementType::Ddl {
        let everywhere = a.ddl.as_ref().is_some_and(|d| d.database.is_some())
            || rules.iter().flatten().any(|r| !r.is_global());
        if everywhere {
            return Ok(ShardPlan {
                shards: many(all),
                write_all: true,
                split_rows: None,
                generate_ids: false,
            });
        }
        let shard = rules.iter().flatten().find_map(|r| match r.kind() {
            TableKind::Global(s) => Some(*s),
            _ => None,
        });
        return Ok(ShardPlan::one(shard.unwrap_or(default)));
    }
    if a.updates_shard_key {
        let t = a
            .sharded
            .first()
            .map_or_else(String::new, |s| name(s.table));
        return Err(ShardPlanError::UpdatesShardKey(t));
    }

    // The written table of INSERT / UPDATE / DELETE is the first table reference.
    let write = matches!(
        a.kind,
        StatementType::Insert
            | StatementType::Replace
            | StatementType::Update
            | StatementType::Delete
    );
    if write && let Some(Some(rule)) = rules.first() {
        if rule.is_broadcast() {
            return Ok(ShardPlan {
                shards: many(all),
                write_all: true,
                split_rows: None,
                generate_ids: false,
            });
        }
        if let Some(ins) = &a.insert
            && !rule.is_global()
        {
            return plan_insert(a, ins, rule, map, param, &name);
        }
    }

    // Reads, UPDATE, DELETE: the shards of each mapped table, then whether they can be combined.
    let mut sets: Vec<(usize, BTreeSet<ShardIdx>)> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let Some(rule) = r else { continue };
        let set: BTreeSet<ShardIdx> = match rule.kind() {
            TableKind::Global(s) => [*s].into(),
            TableKind::Broadcast => continue,
            TableKind::Sharded(_) | TableKind::Binding(_) => {
                match a.sharded_table(i).map(|s| &s.constraint) {
                    Some(KeyConstraint::Values(vals)) => {
                        let mut set = BTreeSet::new();
                        let mut known = true;
                        for v in vals {
                            match resolve(v, rule, map, param)
                                .map_err(|e| ShardPlanError::BadKey(name(i), e))?
                            {
                                Some(s) => {
                                    set.insert(s);
                                }
                                None => known = false,
                            }
                        }
                        if known {
                            set
                        } else {
                            all.iter().copied().collect()
                        }
                    }
                    _ => all.iter().copied().collect(),
                }
            }
        };
        sets.push((i, set));
    }
    if sets.is_empty() {
        // Only broadcast tables (any shard has them; reads take the default) or no mapped table.
        return Ok(ShardPlan::one(default));
    }
    // Tables joined on their placement columns keep matching rows together: a constraint on one
    // narrows the other (`orders o JOIN order_items i ON i.order_id = o.id WHERE o.id = ?`).
    for x in 0..sets.len() {
        for y in x + 1..sets.len() {
            let (i, j) = (sets[x].0, sets[y].0);
            if colocated(a, i, j, rules[i], rules[j]) {
                let both: BTreeSet<ShardIdx> =
                    sets[x].1.intersection(&sets[y].1).copied().collect();
                sets[x].1 = both.clone();
                sets[y].1 = both;
            }
        }
    }
    let union: BTreeSet<ShardIdx> = sets.iter().flat_map(|(_, s)| s.iter().copied()).collect();
    if union.len() > 1 && sets.len() > 1 {
        // Several mapped tables over several shards: every pair must be co-located by a join.
        for (x, (i, si)) in sets.iter().enumerate() {
            for (j, sj) in &sets[x + 1..] {
                if si.len() == 1 && si == sj {
                    continue;
                }
                if !colocated(a, *i, *j, rules[*i], rules[*j]) {
                    return Err(ShardPlanError::CrossShardJoin(name(*i), name(*j)));
                }
            }
        }
    }
    if union.is_empty() {
        // Contradicting constraints (`o.id` on one shard, its items' key on another): no rows
        // anywhere; the default shard answers the empty result.
        return Ok(ShardPlan::one(default));
    }
    let list: Vec<ShardIdx> = union.into_iter().collect();
    if write && list.len() > 1 && map.scatter_writes() == ScatterWrites::Reject {
        return Err(ShardPlanError::ScatterWriteRefused(name(0)));
    }
    Ok(ShardPlan {
        write_all: write && list.len() > 1,
        shards: many(list),
        split_rows: None,
        generate_ids: false,
    })
}

fn plan_insert<'p>(
    a: &Analysis,
    ins: &crate::analyze::InsertInfo,
    rule: &TableRule,
    map: &ShardMap,
    param: &dyn Fn(usize) -> Option<KeyValue<'p>>,
    name: &dyn Fn(usize) -> String,
) -> Result<ShardPlan, ShardPlanError> {
    let t = name(ins.table);
    if ins.from_select {
        return Err(ShardPlanError::InsertSelect(t));
    }
    let key_col = match rule.kind() {
        TableKind::Sharded(s) => s.shard_key.clone(),
        TableKind::Binding(b) => b.binding_key.clone(),
        _ => String::new(),
    };
    let mut per: Vec<(ShardIdx, Vec<usize>)> = Vec::new();
    for (n, row) in ins.rows.iter().enumerate() {
        let Some(k) = &row.key else {
            return Err(ShardPlanError::InsertWithoutKey(t, key_col));
        };
        let Some(s) =
            resolve(k, rule, map, param).map_err(|e| ShardPlanError::BadKey(t.clone(), e))?
        else {
            return Err(ShardPlanError::InsertWithoutKey(t, key_col));
        };
        match per.iter_mut().find(|(x, _)| *x == s) {
            Some((_, rows)) => rows.push(n),
            None => per.push((s, vec![n])),
        }
    }
    per.sort_by_key(|(s, _)| *s);
    let Some(first) = per.first().map(|(s, _)| *s) else {
        return Err(ShardPlanError::InsertWithoutKey(t, key_col));
    };
    let _ = a;
    Ok(ShardPlan {
        shards: if per.len() == 1 {
            Shards::One(first)
        } else {
            Shards::Many(per.iter().map(|(s, _)| *s).collect())
        },
        write_all: false,
        split_rows: (per.len() > 1).then_some(per),
        generate_ids: ins.gene_absent,
    })
}

/// The shard of one key reference; `None` for a placeholder whose value is unknown.
fn resolve<'p>(
    k: &KeyRef,
    rule: &TableRule,
    map: &ShardMap,
    param: &dyn Fn(usize) -> Option<KeyValue<'p>>,
) -> Result<Option<ShardIdx>, String> {
    let r = match k {
        KeyRef::Int(v) => map.shard_for(rule, KeyValue::Int(*v)),
        KeyRef::Str(s) => map.shard_for(rule, KeyValue::Bytes(s.as_bytes())),
        KeyRef::Param(i) => match param(*i) {
            Some(v) => map.shard_for(rule, v),
            None => return Ok(None),
        },
        KeyRef::Gene(v) => match u64::try_from(*v) {
            Ok(id) => map.shard_of_gene_id(rule, id),
            Err(_) => return Err("a negative id is not a generated id".into()),
        },
        KeyRef::GeneParam(i) => match param(*i) {
            Some(KeyValue::Int(v)) if v >= 0 => map.shard_of_gene_id(rule, v as u64),
            Some(KeyValue::UInt(v)) => map.shard_of_gene_id(rule, v),
            Some(_) => return Err("the id parameter is not a non-negative integer".into()),
            None => return Ok(None),
        },
    };
    r.map(Some).map_err(|e| e.to_string())
}

/// Whether table references `i` and `j` keep matching rows on the same shard through a join
/// condition: both sharded by the same placement on their keys (`members.member_id =
/// orders.member_id`), or a binding table's key equal to its parent's gene column
/// (`order_items.order_id = orders.id`) or key.
fn colocated(
    a: &Analysis,
    i: usize,
    j: usize,
    ri: Option<&TableRule>,
    rj: Option<&TableRule>,
) -> bool {
    let (Some(ri), Some(rj)) = (ri, rj) else {
        return false;
    };
    // The column of a reference that decides placement, and what it holds: the shard key
    // value, or a gene id.
    let placement = |r: &TableRule| -> Vec<(String, bool)> {
        match r.kind() {
            TableKind::Sharded(s) => {
                let mut v = vec![(s.shard_key.to_ascii_lowercase(), false)];
                if let Some(g) = &s.gene_column {
                    v.push((g.to_ascii_lowercase(), true));
                }
                v
            }
            TableKind::Binding(b) => {
                vec![(
                    b.binding_key.to_ascii_lowercase(),
                    b.parent_sharding.gene_column.is_some(),
                )]
            }
            _ => Vec::new(),
        }
    };
    let same = match (algorithm(ri), algorithm(rj)) {
        (Some(x), Some(y)) => x.same_placement(y),
        _ => false,
    };
    if !same {
        return false;
    }
    let (pi, pj) = (placement(ri), placement(rj));
    a.joins.iter().any(|jc| {
        let (ci, cj) = if jc.left.table == i && jc.right.table == j {
            (&jc.left.column, &jc.right.column)
        } else if jc.left.table == j && jc.right.table == i {
            (&jc.right.column, &jc.left.column)
        } else {
            return false;
        };
        let wi = pi.iter().find(|(c, _)| c == ci);
        let wj = pj.iter().find(|(c, _)| c == cj);
        // Same kind of value on both sides (key with key, gene id with gene id), same placement.
        matches!((wi, wj), (Some((_, gi)), Some((_, gj))) if gi == gj)
    })
}

fn algorithm(r: &TableRule) -> Option<&crate::ring::Algorithm> {
    match r.kind() {
        TableKind::Sharded(s) => Some(&s.algorithm),
        TableKind::Binding(b) => Some(&b.parent_sharding.algorithm),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
