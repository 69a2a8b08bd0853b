//! [`Merger`]: merges the shards' rows of one [`MergeSpec`] as they arrive.
//!
//! Three modes, chosen from the spec:
//! - **pass-through** (no ORDER BY, no grouping): a pushed row is ready at once; DISTINCT,
//!   OFFSET and LIMIT are applied on the way.
//! - **k-way merge** (ORDER BY, no grouping): every shard sends its rows sorted (the shard SQL
//!   keeps the ORDER BY), so the next row overall is the least head of the shards' queues, known
//!   as soon as every shard still running has a row queued. Memory is the rows queued while a
//!   slow shard has none; each shard sends at most OFFSET + LIMIT rows.
//! - **grouped** (GROUP BY or aggregates): groups in a hash map keyed by the group columns'
//!   bytes, partial aggregates folded in as they arrive; when the last shard ends: AVG, HAVING,
//!   ORDER BY, DISTINCT, OFFSET/LIMIT. A column that is neither grouped nor aggregated keeps its
//!   first value, as MariaDB keeps any.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet, VecDeque};

use super::aggregate::{Acc, Condition, Function};
use super::value::{Cell, ColumnType, compare_values};
use super::{Aggregate, ColumnPos, Having, MergeError, MergeSpec, Row, SortKey};

/// Merges the rows of one scatter-gathered `SELECT`. See the module doc of [`super`].
#[derive(Debug)]
pub struct Merger {
    types: Vec<ColumnType>,
    /// Columns the client sees (the first `visible` of each row).
    visible: usize,
    order: Vec<(usize, SortKey)>,
    seen: Option<HashSet<Row>>,
    limit: Option<u64>,
    offset: u64,
    skipped: u64,
    emitted: u64,
    ready: VecDeque<Row>,
    ended: Vec<bool>,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    PassThrough,
    Sorted { queues: Vec<VecDeque<Row>> },
    Grouped(Box<Groups>),
}

#[derive(Debug)]
struct Groups {
    group_by: Vec<usize>,
    /// Aggregate columns and how they merge.
    functions: Vec<(usize, Function)>,
    /// For each entry of `functions` that is an AVG, the index in `functions` of its count.
    avg_counts: Vec<Option<usize>>,
    having: Option<Condition>,
    index: HashMap<Vec<Cell>, usize>,
    groups: Vec<(Row, Vec<Acc>)>,
}

impl Merger {
    /// A merger for `shards` shards of `spec`'s shard SQL, whose result columns (visible and
    /// hidden) have `types`.
    pub fn new(
        spec: &MergeSpec,
        types: Vec<ColumnType>,
        shards: usize,
    ) -> Result<Merger, MergeError> {
        let total = types.len();
        let hidden = spec.hidden_columns;
        let expected = spec.visible_columns.unwrap_or(0) + hidden;
        let count_error = MergeError::ColumnCount {
            expected,
            got: total,
        };
        let visible = total
            .checked_sub(hidden)
            .ok_or_else(|| count_error.clone())?;
        if spec.visible_columns.is_some_and(|v| v != visible) {
            return Err(count_error);
        }
        let resolve = |pos: ColumnPos| -> Result<usize, MergeError> {
            match pos {
                ColumnPos::Start(i) if i < visible => Ok(i),
                ColumnPos::End(k) if k < visible => Ok(visible - 1 - k),
                ColumnPos::Hidden(j) if j < hidden => Ok(visible + j),
                _ => Err(count_error.clone()),
            }
        };
        let order = spec
            .order_by
            .iter()
            .map(|key| Ok((resolve(key.column)?, *key)))
            .collect::<Result<Vec<_>, MergeError>>()?;
        let mode = if spec.is_grouped() {
            let mut functions = Vec::with_capacity(spec.aggregates.len());
            for aggregate in &spec.aggregates {
                let function = match aggregate.function {
                    Aggregate::Count => Function::Count,
                    Aggregate::Sum => Function::Sum,
                    Aggregate::Min => Function::Min,
                    Aggregate::Max => Function::Max,
                    Aggregate::Avg { count } => Function::Avg {
                        count: resolve(count)?,
                    },
                };
                functions.push((resolve(aggregate.column)?, function));
            }
            let avg_counts = functions
                .iter()
                .map(|(_, f)| match f {
                    Function::Avg { count } => functions
                        .iter()
                        .position(|(c, f)| c == count && *f == Function::Count),
                    _ => None,
                })
                .collect();
            let having = spec
                .having
                .as_ref()
                .map(|h| condition(h, &resolve))
                .transpose()?;
            Mode::Grouped(Box::new(Groups {
                group_by: spec
                    .group_by
                    .iter()
                    .map(|&p| resolve(p))
                    .collect::<Result<_, _>>()?,
                functions,
                avg_counts,
                having,
                index: HashMap::new(),
                groups: Vec::new(),
            }))
        } else if order.is_empty() {
            Mode::PassThrough
        } else {
            Mode::Sorted {
                queues: vec![VecDeque::new(); shards],
            }
        };
        Ok(Merger {
            types,
            visible,
            order,
            seen: spec.distinct.then(HashSet::new),
            limit: spec.limit,
            offset: spec.offset,
            skipped: 0,
            emitted: 0,
            ready: VecDeque::new(),
            ended: vec![false; shards],
            mode,
        })
    }

    /// Takes one row of shard `shard` (rows of one shard in the order it sent them).
    pub fn push(&mut self, shard: usize, row: Row) -> Result<(), MergeError> {
        let shards = self.ended.len();
        if shard >= shards {
            return Err(MergeError::NoSuchShard { shard, shards });
        }
        if row.len() != self.types.len() {
            return Err(MergeError::RowWidth {
                shard,
                expected: self.types.len(),
                got: row.len(),
            });
        }
        if self.is_done() {
            return Ok(());
        }
        match &mut self.mode {
            Mode::PassThrough => self.emit(row),
            Mode::Sorted { queues } => {
                queues[shard].push_back(row);
                self.drain_sorted();
            }
            Mode::Grouped(groups) => groups.add(row, &self.types)?,
        }
        Ok(())
    }

    /// Shard `shard`'s result has ended (idempotent). When the last shard ends, a grouped
    /// merge computes its rows.
    pub fn end_shard(&mut self, shard: usize) -> Result<(), MergeError> {
        let shards = self.ended.len();
        let ended = self
            .ended
            .get_mut(shard)
            .ok_or(MergeError::NoSuchShard { shard, shards })?;
        if *ended {
            return Ok(());
        }
        *ended = true;
        let all_ended = self.ended.iter().all(|&e| e);
        match &mut self.mode {
            Mode::PassThrough => {}
            Mode::Sorted { .. } => self.drain_sorted(),
            Mode::Grouped(groups) if all_ended => {
                let mut rows = groups.finish(&self.types)?;
                let (order, types) = (&self.order, &self.types);
                rows.sort_by(|a, b| compare_rows(order, types, a, b));
                for row in rows {
                    self.emit(row);
                }
            }
            Mode::Grouped(_) => {}
        }
        Ok(())
    }

    /// The next merged row, if one is ready (hidden columns removed).
    pub fn next_row(&mut self) -> Option<Row> {
        self.ready.pop_front()
    }

    /// LIMIT is reached: no more rows will be produced, whatever the shards still send.
    pub fn is_done(&self) -> bool {
        self.limit.is_some_and(|limit| self.emitted >= limit)
    }

    /// Rows queued for shard `shard` in a k-way merge, waiting for the other shards (for
    /// back-pressure: stop reading a shard that is far ahead).
    pub fn queued(&self, shard: usize) -> usize {
        match &self.mode {
            Mode::Sorted { queues } => queues.get(shard).map_or(0, VecDeque::len),
            _ => 0,
        }
    }

    fn drain_sorted(&mut self) {
        loop {
            if self.is_done() {
                break;
            }
            let Mode::Sorted { queues } = &mut self.mode else {
                return;
            };
            let waiting = queues
                .iter()
                .zip(&self.ended)
                .any(|(queue, &ended)| queue.is_empty() && !ended);
            if waiting {
                break;
            }
            let (order, types) = (&self.order, &self.types);
            let mut best: Option<usize> = None;
            for (shard, queue) in queues.iter().enumerate() {
                let Some(head) = queue.front() else {
                    continue;
                };
                let better = match best.and_then(|b| queues[b].front()) {
                    None => true,
                    Some(current) => compare_rows(order, types, head, current) == Ordering::Less,
                };
                if better {
                    best = Some(shard);
                }
            }
            let Some(row) = best.and_then(|b| queues[b].pop_front()) else {
                break;
            };
            self.emit(row);
        }
    }

    /// Applies DISTINCT, OFFSET and LIMIT to one merged row and queues it for the client.
    fn emit(&mut self, mut row: Row) {
        if self.is_done() {
            return;
        }
        row.truncate(self.visible);
        if let Some(seen) = &mut self.seen
            && !seen.insert(row.clone())
        {
            return;
        }
        if self.skipped < self.offset {
            self.skipped += 1;
            return;
        }
        self.ready.push_back(row);
        self.emitted += 1;
    }
}

impl Groups {
    fn add(&mut self, row: Row, types: &[ColumnType]) -> Result<(), MergeError> {
        let key: Vec<Cell> = self.group_by.iter().map(|&c| row[c].clone()).collect();
        let index = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                let accs = self
                    .functions
                    .iter()
                    .map(|&(c, f)| Acc::new(f, types[c]))
                    .collect();
                self.groups.push((row.clone(), accs));
                self.index.insert(key, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let (_, accs) = &mut self.groups[index];
        for (acc, &(column, _)) in accs.iter_mut().zip(&self.functions) {
            acc.add(&row[column], types[column], column)?;
        }
        Ok(())
    }

    /// The merged rows that pass HAVING, in first-seen order.
    fn finish(&mut self, types: &[ColumnType]) -> Result<Vec<Row>, MergeError> {
        let mut rows = Vec::with_capacity(self.groups.len());
        for (mut row, accs) in std::mem::take(&mut self.groups) {
            for (i, (acc, &(column, function))) in accs.iter().zip(&self.functions).enumerate() {
                row[column] = match function {
                    Function::Avg { .. } => {
                        let count = self.avg_counts[i].and_then(|j| accs.get(j));
                        match count {
                            Some(count) => acc.average(count, column)?,
                            None => None,
                        }
                    }
                    _ => acc.value(),
                };
            }
            let keep = self
                .having
                .as_ref()
                .is_none_or(|h| h.eval(&row, types) == Some(true));
            if keep {
                rows.push(row);
            }
        }
        self.index.clear();
        Ok(rows)
    }
}

/// Orders two rows by the ORDER BY keys.
fn compare_rows(order: &[(usize, SortKey)], types: &[ColumnType], a: &Row, b: &Row) -> Ordering {
    for &(column, key) in order {
        let ordering = match (&a[column], &b[column]) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) if key.nulls_first => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) if key.nulls_first => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => {
                let ordering = compare_values(types[column], x, y);
                if key.descending {
                    ordering.reverse()
                } else {
                    ordering
                }
            }
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

fn condition(
    having: &Having,
    resolve: &dyn Fn(ColumnPos) -> Result<usize, MergeError>,
) -> Result<Condition, MergeError> {
    Ok(match having {
        Having::And(a, b) => Condition::And(
            Box::new(condition(a, resolve)?),
            Box::new(condition(b, resolve)?),
        ),
        Having::Or(a, b) => Condition::Or(
            Box::new(condition(a, resolve)?),
            Box::new(condition(b, resolve)?),
        ),
        Having::Not(a) => Condition::Not(Box::new(condition(a, resolve)?)),
        Having::Compare { column, op, value } => Condition::Compare {
            column: resolve(*column)?,
            op: *op,
            value: value.clone(),
        },
    })
}

/// Merges complete shard results at once (tests, small results): rows are fed round-robin,
/// one per shard at a time, as a proxy reading the shards concurrently would.
pub fn merge_all(
    spec: &MergeSpec,
    types: Vec<ColumnType>,
    shards: Vec<Vec<Row>>,
) -> Result<Vec<Row>, MergeError> {
    let mut merger = Merger::new(spec, types, shards.len())?;
    let mut streams: Vec<_> = shards.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    let mut live = streams.len();
    while live > 0 {
        live = 0;
        for (shard, stream) in streams.iter_mut().enumerate() {
            match stream.next() {
                Some(row) => {
                    merger.push(shard, row)?;
                    live += 1;
                }
                None => merger.end_shard(shard)?,
            }
        }
        out.extend(std::iter::from_fn(|| merger.next_row()));
    }
    out.extend(std::iter::from_fn(|| merger.next_row()));
    Ok(out)
}
