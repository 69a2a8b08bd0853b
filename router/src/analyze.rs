//! What a statement touches, for shard routing: its tables, the shard-key values it is limited
//! to, the join conditions between its tables, and for writes what the proxy needs to split or
//! refuse them ([`analyze`]).
//!
//! Start at [`analyze`] and [`Analysis`]. The shard map is not known here: a [`ShardKeys`]
//! implementation answers which tables are sharded and on which column, so this module stays
//! independent of how shards are configured. Which shard a [`KeyRef`] lands on is the shard map's
//! business, as is how a string literal on an integer key (`member_id = '42'`) hashes.
//!
//! Rules (the golden cases in `tests/cases/analyze.toml` show each):
//! - A sharded table is constrained only by its own `SELECT`'s `WHERE` (and the `ON` of inner
//!   joins): `key = lit`, `lit = key`, `key IN (lits)`, `OR` of such on the same table, and any
//!   one conjunct of an `AND` (the smallest set wins, the key over the gene column on a tie).
//!   `key = 1 OR x = 2` does not constrain. Anything else is [`KeyConstraint::Any`] (scatter).
//! - An unqualified column belongs to the only table of its `SELECT`, or else to the one table
//!   of that `SELECT` whose key or gene column has that name (valid SQL cannot mean another
//!   table's column of the same name: MySQL would call it ambiguous). Otherwise it is unresolved.
//! - Table names are reported as written (quotes removed, case kept); column names lower-cased.
//! - Placeholders are numbered by their position in the text, from 0.
//!
//! Layout: `analyze/walk.rs` walks queries, scopes and expressions; `analyze/keys.rs` finds the
//! shard-key constraints of a scope; `analyze/write.rs` handles
//! INSERT/REPLACE rows, UPDATE assignments and DDL; `analyze/lexed_ddl.rs` reads the one table of
//! DDL that sqlparser cannot parse.

mod keys;
mod lexed_ddl;
mod walk;
mod write;

pub use lexed_ddl::lexed_ddl;

use std::ops::Range;

use crate::source::{self, ParseFailure, Source};

/// Which tables are sharded, and on what (answered by the shard map's owner).
pub trait ShardKeys {
    /// The shard-key column of a sharded table (lower-case), None when the table is not sharded.
    /// `schema` is the qualifier as written (`shop` in `shop.orders`), `None` when unqualified.
    fn shard_key(&self, schema: Option<&str>, table: &str) -> Option<KeyColumns>;
}

/// The columns that locate a sharded table's rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyColumns {
    /// The shard key (lower-case), e.g. `member_id`.
    pub key: String,
    /// A column whose values carry the key's shard (lower-case), e.g. `orders.id`, which embeds
    /// the member's shard bits.
    pub gene: Option<String>,
}

/// What kind of statement it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatementType {
    /// `SELECT`, `WITH ... SELECT`, set operations of selects, `VALUES`, `TABLE t`.
    Select,
    /// `INSERT`.
    Insert,
    /// `REPLACE`.
    Replace,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `CREATE`, `ALTER`, `DROP`, `TRUNCATE`, `RENAME` of tables, views, indexes, databases.
    Ddl,
    /// Anything else (`SET`, `SHOW`, transaction control, ...): no tables are reported.
    Other,
}

impl StatementType {
    /// The type's snake_case name, as used in golden files.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementType::Select => "select",
            StatementType::Insert => "insert",
            StatementType::Replace => "replace",
            StatementType::Update => "update",
            StatementType::Delete => "delete",
            StatementType::Ddl => "ddl",
            StatementType::Other => "other",
        }
    }
}

/// One table reference in the statement (a self-join references the same table twice).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRef {
    /// The schema qualifier as written, if any.
    pub schema: Option<String>,
    /// The table name as written (quotes removed).
    pub name: String,
    /// The alias, if any.
    pub alias: Option<String>,
}

/// A column of one table reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnRef {
    /// Index into [`Analysis::tables`].
    pub table: usize,
    /// Column name, lower-case.
    pub column: String,
}

/// `left = right` between columns of two different table references, from a join's `ON`, a
/// `USING`, or a `WHERE` conjunct (implicit joins and correlated subqueries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinCondition {
    /// The column on the left of `=`.
    pub left: ColumnRef,
    /// The column on the right of `=`.
    pub right: ColumnRef,
}

/// One shard-key value the statement is limited to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyRef {
    /// An integer literal of the key (`member_id = 42`, `member_id = -1`).
    Int(i64),
    /// Any other literal of the key, as its value (a string's content without quotes, or a
    /// number's text when it is not an `i64`, such as `1.5`).
    Str(String),
    /// The key's value is the `?` placeholder with this 0-based position in the text.
    Param(usize),
    /// An integer literal of the gene column (`orders.id = 123`): the shard is in its bits.
    Gene(i64),
    /// The gene column's value is the `?` placeholder with this position.
    GeneParam(usize),
}

/// How far a sharded table's rows are narrowed down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyConstraint {
    /// The rows lie on the shards of these values (at least one value).
    Values(Vec<KeyRef>),
    /// No usable constraint: every shard (scatter).
    Any,
}

/// One reference to a sharded table and its constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardedTable {
    /// Index into [`Analysis::tables`].
    pub table: usize,
    /// Its key columns, as [`ShardKeys`] gave them.
    pub key: KeyColumns,
    /// What the statement limits it to.
    pub constraint: KeyConstraint,
}

/// One row of `INSERT ... VALUES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InsertRow {
    /// The row's shard: the key's literal or placeholder, else the gene column's
    /// ([`KeyRef::Gene`] / [`KeyRef::GeneParam`]); `None` when neither is a literal or
    /// placeholder, the table is not sharded, or there is no column list.
    pub key: Option<KeyRef>,
    /// The row's byte range in the text, parentheses included: `(1, 'a')`. For `INSERT ... SET`
    /// the range of the assignments.
    pub span: Range<usize>,
}

/// What an `INSERT` / `REPLACE` writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InsertInfo {
    /// Index into [`Analysis::tables`] of the target table.
    pub table: usize,
    /// The statement names its columns (`INSERT INTO t (a, b) ...`). Without a list the key's
    /// position is unknown here, so rows carry no key.
    pub columns_listed: bool,
    /// The target has a gene column and the column list leaves it out: the proxy generates ids.
    pub gene_absent: bool,
    /// The `VALUES` rows (or the one `SET` row), in order; empty for `INSERT ... SELECT`.
    pub rows: Vec<InsertRow>,
    /// `INSERT ... SELECT` (the select's tables are in [`Analysis::tables`]).
    pub from_select: bool,
}

/// What a DDL statement is about (its tables are in [`Analysis::tables`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DdlInfo {
    /// `CREATE DATABASE` / `CREATE SCHEMA` / `DROP DATABASE` / `DROP SCHEMA`: the database's name.
    pub database: Option<String>,
}

/// What a statement touches. See the module doc for the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Analysis {
    /// The kind of statement.
    pub kind: StatementType,
    /// Every table referenced, in the order the walk meets them (`FROM` and joins before
    /// `WHERE` subqueries), including those of joins, subqueries and CTE bodies; CTE names and
    /// derived-table aliases are not tables.
    pub tables: Vec<TableRef>,
    /// One entry per reference to a sharded table, in [`Analysis::tables`] order.
    pub sharded: Vec<ShardedTable>,
    /// Column equalities between table references.
    pub joins: Vec<JoinCondition>,
    /// For `INSERT` / `REPLACE`.
    pub insert: Option<InsertInfo>,
    /// An `UPDATE`'s `SET`, or an `INSERT ... ON DUPLICATE KEY UPDATE`, assigns a sharded table's
    /// key or gene column: the row may have to move shards.
    pub updates_shard_key: bool,
    /// For DDL.
    pub ddl: Option<DdlInfo>,
}

impl Analysis {
    /// The sharded-table entry of table reference `table`, if that table is sharded.
    pub fn sharded_table(&self, table: usize) -> Option<&ShardedTable> {
        self.sharded.iter().find(|s| s.table == table)
    }
}

/// Why a statement could not be analysed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnalyzeError {
    /// sqlparser rejected the statement (or it was too deep / too complex to hand to it).
    #[error("cannot analyse the statement: {0}")]
    Unparseable(String),
    /// The text holds no statement.
    #[error("cannot analyse an empty statement")]
    Empty,
    /// The text holds several statements.
    #[error("cannot analyse {0} statements at once; send them one by one")]
    MultiStatement(usize),
    /// sqlparser gave a node without a position where one was needed.
    #[error("cannot locate {0} in the statement text")]
    NoPosition(&'static str),
}

impl From<ParseFailure> for AnalyzeError {
    fn from(failure: ParseFailure) -> Self {
        match failure {
            ParseFailure::Parser(message) => AnalyzeError::Unparseable(message),
            ParseFailure::Empty => AnalyzeError::Empty,
            ParseFailure::Multi(n) => AnalyzeError::MultiStatement(n),
        }
    }
}

/// Analyses one statement. Pure; parses with sqlparser (cache the result per digest: this costs
/// a parse).
pub fn analyze(sql: &str, rules: &dyn ShardKeys) -> Result<Analysis, AnalyzeError> {
    let statement = source::parse_one(sql)?;
    let src = Source::new(sql);
    let mut walker = walk::Walker::new(&src, rules);
    let kind = walker.statement(&statement)?;
    Ok(walker.finish(kind))
}

#[cfg(test)]
mod tests;
