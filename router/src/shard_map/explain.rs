//! [`ShardMap::explain`]: a lookup with the reasoning spelled out, for `peakgate shard-of` and for
//! error messages. Not for the hot path: it allocates its text.

use super::{ShardMap, Sharding, TableKind, TableRule, gene_id};
use crate::error::Error;
use crate::ring::{Algorithm, Key, KeyValue, ShardIdx, Slot, key_hash, with_key};

/// A lookup's answer and how it was reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    /// The shard; None when the rows are on every shard (broadcast, or a column that routes nothing).
    pub shard: Option<ShardIdx>,
    /// How the shard follows from the map, in one or more sentences.
    pub how: String,
}

impl ShardMap {
    /// Like [`ShardMap::shard_for_column`], with the reasoning. `column` None means the table's
    /// routing column (shard key or binding key).
    pub fn explain(
        &self,
        table: &TableRule,
        column: Option<&str>,
        key: KeyValue<'_>,
    ) -> Result<Lookup, Error> {
        let routes_nothing = |column: &str| Lookup {
            shard: None,
            how: format!(
                "{column} does not pick {table}'s shard: such a lookup goes to every shard"
            ),
        };
        match &table.kind {
            TableKind::Global(shard) => Ok(Lookup {
                shard: Some(*shard),
                how: format!("{table} is global: it lives on the default shard only"),
            }),
            TableKind::Broadcast => Ok(Lookup {
                shard: None,
                how: format!(
                    "{table} is broadcast: a copy on every shard ({}); reads go to one, writes to all",
                    self.shards.join(", ")
                ),
            }),
            TableKind::Sharded(s) => {
                let column = column.unwrap_or(&s.shard_key);
                if column.eq_ignore_ascii_case(&s.shard_key) {
                    self.explain_key(s, key)
                } else if s
                    .gene_column
                    .as_deref()
                    .is_some_and(|g| g.eq_ignore_ascii_case(column))
                {
                    self.explain_gene_id(s, column, gene_id(key)?)
                } else {
                    Ok(routes_nothing(column))
                }
            }
            TableKind::Binding(b) => {
                let column = column.unwrap_or(&b.binding_key);
                if !column.eq_ignore_ascii_case(&b.binding_key) {
                    return Ok(routes_nothing(column));
                }
                let parent = &b.parent_sharding;
                let inner = match &parent.gene_column {
                    Some(gene) => self.explain_gene_id(parent, gene, gene_id(key)?)?,
                    None => self.explain_key(parent, key)?,
                };
                let holds = match &parent.gene_column {
                    Some(gene) => format!("{}.{gene} values", b.parent),
                    None => format!("{}.{} values", b.parent, parent.shard_key),
                };
                Ok(Lookup {
                    shard: inner.shard,
                    how: format!(
                        "{table} follows {}: {} holds {holds}. {}",
                        b.parent, b.binding_key, inner.how
                    ),
                })
            }
        }
    }

    fn explain_key(&self, s: &Sharding, key: KeyValue<'_>) -> Result<Lookup, Error> {
        let shard = s.shard_for(key)?;
        let name = self.shard_name(shard);
        let how = with_key(s.key_type, key, |k| match &s.algorithm {
            Algorithm::ConsistentHash(ch) => {
                let slot = k.slot().get();
                let mut how = format!(
                    "consistent_hash over {} shards: the {} key hashes to slot {slot} of {}, \
                     which the ring gives to {name}",
                    ch.shards().len(),
                    s.key_type.as_str(),
                    Slot::COUNT
                );
                if let Some(gene) = &s.gene_column {
                    how.push_str(&format!(
                        "; {gene} values generated for this key carry gene {slot} (id & 1023), \
                         so they route to {name} too"
                    ));
                }
                how
            }
            Algorithm::Modulo(m) => {
                let n = m.shards().len();
                let position = match k {
                    Key::Int(v) => format!("{v} mod {n} = {}", v.rem_euclid(n as i128)),
                    Key::Bytes(b) => {
                        let h = key_hash(b);
                        format!("hash {h:#018x} mod {n} = {}", h % n as u64)
                    }
                };
                format!("modulo: {position}, the position of {name} in the table's shard list")
            }
            Algorithm::Range(r) => {
                let holds = |from: i64, to: Option<i64>| match k {
                    Key::Int(v) => i128::from(from) <= v && to.is_none_or(|t| v < i128::from(t)),
                    Key::Bytes(_) => false,
                };
                let range = r
                    .ranges()
                    .find(|&(from, to, _)| holds(from, to))
                    .map(|(from, to, _)| {
                        let from = if from == i64::MIN {
                            "..".to_string()
                        } else {
                            from.to_string()
                        };
                        let to = to.map_or("..".to_string(), |t| t.to_string());
                        format!("[{from}, {to})")
                    })
                    .unwrap_or_default();
                format!("range: the key is in {range}, which is {name}'s")
            }
        })?;
        Ok(Lookup {
            shard: Some(shard),
            how,
        })
    }

    fn explain_gene_id(&self, s: &Sharding, column: &str, id: u64) -> Result<Lookup, Error> {
        let shard = s.shard_of_gene_id(id)?;
        let gene = Slot::of_gene_id(id).get();
        Ok(Lookup {
            shard: Some(shard),
            how: format!(
                "{column} {id} carries gene {gene} (id & 1023), the slot of its row's {}; \
                 the ring gives slot {gene} to {}",
                s.shard_key,
                self.shard_name(shard)
            ),
        })
    }
}
