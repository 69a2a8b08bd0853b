//! Scatter-gather merge of one `SELECT`'s rows from several shards: what each shard is sent and
//! how their text-protocol rows become one result.
//!
//! 1. [`merge_spec`] reads the client's `SELECT` once (cache it per digest) and gives a
//!    [`MergeSpec`]: the SQL every shard receives ([`MergeSpec::shard_sql`]) and what to do with
//!    the rows: ORDER BY keys, LIMIT/OFFSET, GROUP BY columns, aggregates, HAVING, DISTINCT.
//! 2. [`Merger::new`] takes the spec and the column types the shards reported; the proxy then
//!    [`Merger::push`]es each shard's rows as they arrive, calls [`Merger::end_shard`] when a
//!    shard's result ends, and sends what [`Merger::next_row`] yields. [`Merger::is_done`] says
//!    that LIMIT is reached and the shards' remaining rows are not needed.
//!
//! The shard SQL differs from the client's where a merge needs more than the final rows:
//! - `LIMIT n OFFSET m` becomes `LIMIT m+n` (the offset is applied once, after the merge);
//!   with GROUP BY or aggregates, ORDER BY and LIMIT are dropped (a shard cannot know which of
//!   its groups make the global top n).
//! - `AVG(x)` becomes `SUM(x)` in place plus a hidden `COUNT(x)` column; the merged AVG is the
//!   sum of sums over the sum of counts, formatted as MariaDB does (DECIMAL scale + 4).
//! - ORDER BY, GROUP BY and HAVING expressions not in the select list are appended as hidden
//!   columns, removed again from the merged rows.
//! - A HAVING that refers to aggregates is removed and applied after the merge; one on group
//!   columns only stays on the shards.
//!
//! Everything else is kept byte for byte from the client's text (comments, hints, quoting,
//! `FOR UPDATE`); appended and replaced pieces are rendered by sqlparser, and refused when a
//! string literal in them holds a backslash (sqlparser would print it unescaped).
//!
//! Not supported (an error, so the proxy can refuse or run the query elsewhere): set operations
//! (`UNION`), `COUNT(DISTINCT ..)` / `SUM(DISTINCT ..)` / `AVG(DISTINCT ..)`, other aggregate
//! functions (`GROUP_CONCAT`, `STDDEV`, ...), aggregates inside larger expressions
//! (`SUM(a) / COUNT(b)`), `WITH ROLLUP`, LIMIT given by placeholders (substitute parameters
//! first), DISTINCT together with ORDER BY/GROUP BY columns outside the select list, and column
//! references between two `*` wildcards.
//!
//! Values compare as their [`ColumnType`] says; strings byte-wise (see [`value`] for the
//! collation caveat).
//!
//! Layout: `merge/spec.rs` derives the spec and the shard SQL, `merge/value.rs` compares and
//! adds cells, `merge/merger.rs` is the [`Merger`], `merge/aggregate.rs` its accumulators and
//! HAVING evaluation.

mod aggregate;
mod merger;
mod spec;
pub mod value;

pub use merger::{Merger, merge_all};
pub use spec::merge_spec;
pub use value::{Cell, ColumnType};

/// One row as the shards send it: one cell per column, `None` for NULL.
pub type Row = Vec<Cell>;

/// A column of the shard result, by position. The select list's count is unknown while it
/// holds a `*`, so positions are resolved against the shards' column count in [`Merger::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnPos {
    /// The n-th column from the start (0-based), for items before any `*`.
    Start(usize),
    /// The n-th visible column counted back from the last visible one (0 = last), for items
    /// after a `*`.
    End(usize),
    /// The n-th hidden column appended for the merge (0-based), after the visible ones.
    Hidden(usize),
}

/// One ORDER BY key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortKey {
    /// The column sorted on.
    pub column: ColumnPos,
    /// `DESC`.
    pub descending: bool,
    /// NULLs before other values: MySQL's default is true for `ASC` and false for `DESC`.
    pub nulls_first: bool,
}

/// How an aggregate column merges across shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    /// `COUNT(..)`: the sum of the shards' counts; never NULL.
    Count,
    /// `SUM(x)`: the exact sum of the shards' sums; NULL when all are NULL.
    Sum,
    /// `MIN(x)`: the least non-NULL value.
    Min,
    /// `MAX(x)`: the greatest non-NULL value.
    Max,
    /// `AVG(x)`: the column carries `SUM(x)` from the shards; `count` is the hidden `COUNT(x)`.
    Avg {
        /// The column with the shards' `COUNT(x)`.
        count: ColumnPos,
    },
}

/// An aggregate column of the shard result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AggregateColumn {
    /// Where it is.
    pub column: ColumnPos,
    /// How it merges.
    pub function: Aggregate,
}

/// A comparison operator of HAVING.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`, `!=`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}

/// A literal of HAVING.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Literal {
    /// A number, as written (`10`, `-2.5`).
    Number(String),
    /// A string's value.
    Str(Vec<u8>),
    /// `NULL` (every comparison with it is unknown).
    Null,
}

/// A HAVING condition applied after the merge, in SQL's three-valued logic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Having {
    /// Both hold.
    And(Box<Having>, Box<Having>),
    /// Either holds.
    Or(Box<Having>, Box<Having>),
    /// Negation.
    Not(Box<Having>),
    /// `column op value`.
    Compare {
        /// The merged column.
        column: ColumnPos,
        /// The operator, with the column on its left.
        op: CmpOp,
        /// The literal on its right.
        value: Literal,
    },
}

/// What to send the shards and how to merge what they return. Built by [`merge_spec`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeSpec {
    /// The SQL every shard receives.
    pub shard_sql: String,
    /// The select list's length, `None` when it holds a `*` (the shards' metadata tells).
    pub visible_columns: Option<usize>,
    /// Hidden columns appended to the select list; the merged rows leave them out.
    pub hidden_columns: usize,
    /// ORDER BY keys, in order.
    pub order_by: Vec<SortKey>,
    /// GROUP BY columns.
    pub group_by: Vec<ColumnPos>,
    /// Aggregate columns (visible and hidden).
    pub aggregates: Vec<AggregateColumn>,
    /// Applied after the merge (`None` when there is none, or when it stays on the shards).
    pub having: Option<Having>,
    /// `SELECT DISTINCT`.
    pub distinct: bool,
    /// `LIMIT`, `None` without one.
    pub limit: Option<u64>,
    /// `OFFSET` (0 without one).
    pub offset: u64,
    /// Visible columns whose shard-side name differs from what the client asked for (an
    /// unaliased `AVG(x)` arrives named `SUM(x)`): the name the client expects, i.e. the item's
    /// text. Their DECIMAL scale grows by 4 too (an AVG has 4 more decimals than a SUM).
    pub renamed: Vec<(ColumnPos, String)>,
}

impl MergeSpec {
    /// Whether rows are grouped (GROUP BY or aggregates): nothing can be sent before every shard
    /// has ended.
    pub fn is_grouped(&self) -> bool {
        !self.group_by.is_empty() || !self.aggregates.is_empty()
    }
}

/// Why a statement cannot be merged, or rows could not be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// sqlparser rejected the statement (or it was too deep / too complex / several / empty).
    #[error("cannot merge: {0}")]
    Unparseable(String),
    /// The statement is not a `SELECT`.
    #[error("cannot merge a statement that is not a SELECT")]
    NotASelect,
    /// The `SELECT` uses something the merge cannot compute across shards.
    #[error("cannot merge across shards: {0}")]
    Unsupported(String),
    /// The shards' column count does not fit the spec.
    #[error("shards returned {got} columns, the merge expects {expected}")]
    ColumnCount {
        /// What the spec needs (at least).
        expected: usize,
        /// What the column types given say.
        got: usize,
    },
    /// A row's width differs from the column count.
    #[error("shard {shard} sent a row of {got} cells, the result has {expected} columns")]
    RowWidth {
        /// The shard.
        shard: usize,
        /// The column count.
        expected: usize,
        /// The row's width.
        got: usize,
    },
    /// A shard index beyond the shard count.
    #[error("no shard {shard} (merging {shards} shards)")]
    NoSuchShard {
        /// The index given.
        shard: usize,
        /// The shard count.
        shards: usize,
    },
    /// An aggregate's value is not a number of its column's type, or a sum overflows 38 digits.
    #[error("cannot merge column {column}: {reason}")]
    BadValue {
        /// The column's index in the shard result.
        column: usize,
        /// What went wrong.
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests;
