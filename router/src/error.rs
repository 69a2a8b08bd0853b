//! `router::Error`: what can go wrong inside the router crate.
//!
//! Classification itself never fails (an unrecognisable statement is [`crate::StatementKind::Unknown`]);
//! these errors explain why sqlparser gave no verdict and, later, why a plan cannot be made.

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
    /// A statement could not be analysed for shard routing.
    #[error(transparent)]
    Analyze(#[from] crate::analyze::AnalyzeError),
    /// A scatter-gathered SELECT cannot be merged, or its rows could not be.
    #[error(transparent)]
    Merge(#[from] crate::merge::MergeError),
}
