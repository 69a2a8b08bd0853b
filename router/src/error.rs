//! `router::Error`: what can go wrong inside the router crate.
//!
//! Classification itself never fails (an unrecognisable statement is [`crate::StatementKind::Unknown`]);
//! these errors explain why sqlparser gave no verdict, why a shard key has no shard and why an id
//! cannot be issued. The shard and id errors carry no text, so the per-statement lookups that
//! return them never allocate; the caller adds the table and column.

/// Router errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The statement text is not valid UTF-8, so sqlparser cannot read it.
    #[error("statement is not valid UTF-8 (byte {valid_up_to})")]
    InvalidUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// sqlparser (MySqlDialect) rejected the statement.
    #[error("sqlparser rejected the statement: {0}")]
    Parse(String),
    /// sqlparser panicked on the statement (a sqlparser bug; the lexer's verdict stands).
    #[error("sqlparser panicked on the statement")]
    ParserPanicked,
    /// The statement nests parentheses deeper than sqlparser is allowed to recurse.
    #[error("statement nests parentheses {depth} deep, more than the parser's limit of {limit}")]
    TooDeep {
        /// Deepest nesting in the statement.
        depth: u32,
        /// The limit.
        limit: u32,
    },
    /// The statement chains more binary operators than sqlparser's AST can safely hold.
    #[error("statement has {operators} binary operators, more than the parser's limit of {limit}")]
    TooComplex {
        /// Binary operators in the statement.
        operators: u32,
        /// The limit.
        limit: u32,
    },
    /// A shard key that must be an integer (an integer column, or a `range` table) is not one.
    #[error("the shard key value is not an integer")]
    KeyNotInteger,
    /// No range of a `range` table holds the key.
    #[error("no shard range holds the key")]
    KeyOutOfRange,
    /// The table is broadcast: reads may go to any shard and writes go to all, so no single shard is its.
    #[error("the table is broadcast to every shard")]
    BroadcastTable,
    /// The table has no `gene_column` (nor a binding to a table with one), so its ids carry no shard.
    #[error("the table's ids carry no shard (no gene_column)")]
    NoGeneColumn,
    /// A gene id that is negative, so it was not issued by the id generator.
    #[error("the id is negative, not a generated id")]
    NegativeId,
    /// The clock is before the id epoch (2025-01-01).
    #[error("the clock is before the id epoch")]
    ClockBeforeEpoch,
    /// The clock is past the last millisecond the id layout can hold (2094).
    #[error("the clock is past the id layout's last millisecond")]
    ClockPastEnd,
    /// A node id above 1023.
    #[error("node id is above 1023")]
    NodeIdOutOfRange,
    /// A sequence number above the layout's 2 bits.
    #[error("sequence number is above 3")]
    SequenceOutOfRange,
    /// This node issued every id for this gene in this millisecond; ask again at `retry_at_ms`.
    #[error("ids for this key are exhausted until {retry_at_ms} ms")]
    SequenceExhausted {
        /// The Unix millisecond from which ids are available again.
        retry_at_ms: u64,
    },
    /// A statement could not be analysed for shard routing.
    #[error(transparent)]
    Analyze(#[from] crate::analyze::AnalyzeError),
    /// A scatter-gathered SELECT cannot be merged, or its rows could not be.
    #[error(transparent)]
    Merge(#[from] crate::merge::MergeError),
}
