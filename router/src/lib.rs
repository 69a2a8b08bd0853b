//! Routing decisions for PeakGate: pure functions from statement text (and, later, topology
//! snapshots) to decisions. No I/O, no tokio; every decision is a unit test or a fuzz target.
//!
//! The proxy calls [`Classifier::classify`] on every COM_QUERY. That call makes one pass over the
//! bytes with a hand-written lexer (kind, keyword, hints, digest, literal spans, session effects)
//! and runs sqlparser only once per new digest, caching its verdict: sqlparser costs several
//! microseconds per statement, too much for every query.
//!
//! # Layout
//! - [`lexer`]: one-pass MySQL lexer over `&[u8]` (strings, quoted identifiers, comments,
//!   executable comments as code, literals, variables). Start here to see what a token is.
//! - [`classify`]: [`StatementKind`], [`SessionEffects`], [`Statement`] and the [`Classifier`]
//!   with its per-digest LRU of sqlparser verdicts. `classify/scan.rs` is the one pass and the
//!   classification rules; `classify/parse.rs` is the sqlparser side.
//! - [`analyze`]: what a statement touches for shard routing: tables, shard-key values, join
//!   conditions, INSERT rows with their byte ranges ([`analyze::analyze`], a [`ShardKeys`] answers
//!   which tables are sharded).
//! - [`merge`]: scatter-gather merge of shard results: the shard SQL rewrite and [`MergeSpec`]
//!   ([`merge::merge_spec`]), and the streaming [`Merger`] (ORDER BY, LIMIT/OFFSET, GROUP BY,
//!   aggregates, HAVING, DISTINCT).
//! - `source.rs` (private): sqlparser behind the classifier's guards, AST positions as byte offsets.
//! - [`digest`]: the normalised fingerprint text and its FNV-1a 64 hash.
//! - [`hints`]: `/* peakgate: route=reporting shard=s1 */` comment hints.
//! - [`plan`]: where a statement runs in its shard (primary, replica by lag and read-your-writes,
//!   reporting), from the statement, the session's facts and the replicas' state.
//! - [`shard_map`]: the `[sharding]` / `[[tables]]` map: validation with line-precise errors and
//!   the per-statement lookups (table rule, key -> shard, gene id -> shard).
//! - [`ring`]: the sharding algorithms and the key hash: slots, the consistent-hash ring, range,
//!   modulo. Part of the data-placement contract, pinned by `tests/cases/shard_vectors.toml`.
//! - [`hotspot`]: the hot SKU registry: configured and detected hot SKUs, lock-free lookups,
//!   heavy-hitter detection with hysteresis ([`hotspot::HotRegistry`]).
//! - [`gene`]: gene ids (time-ordered, carrying their row's shard) and their generator.
//! - [`error`]: [`Error`], this crate's error enum.
//! - `keyword.rs` (private): the fixed keyword table the scanner matches words against.
//!
//! Golden cases for every classification rule live in `tests/cases/classify.toml`, for every
//! analysis rule in `tests/cases/analyze.toml`.

pub mod analyze;
pub mod classify;
pub mod digest;
pub mod error;
pub mod gene;
pub mod hints;
pub mod hotspot;
mod keyword;
pub mod lexer;
pub mod merge;
pub mod plan;
pub mod ring;
pub mod shard_map;
mod source;

pub use analyze::{
    Analysis, AnalyzeError, KeyColumns, KeyConstraint, KeyRef, ShardKeys, StatementType,
};
pub use classify::{Classifier, SessionEffects, Statement, StatementKind};
pub use error::Error;
pub use gene::IdGenerator;
pub use hints::{Hints, RouteHint};
pub use merge::{ColumnType, MergeError, MergeSpec, Merger, merge_spec};
pub use ring::{KeyType, KeyValue, ShardIdx, Slot};
pub use shard_map::{ConfigError, ShardMap, TableKind, TableRule};
