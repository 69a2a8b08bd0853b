//! Statement classification: what a statement is ([`StatementKind`]), what it does to the session
//! ([`SessionEffects`]), its digest, and the [`Classifier`] that caches sqlparser's verdict per digest.
//!
//! Every COM_QUERY goes through [`Classifier::classify`]:
//! 1. [`scan`] makes one pass with the hand-written lexer and fills the whole [`Statement`]: kind,
//!    keyword, hints, digest, literal spans, session effects (a few hundred nanoseconds).
//! 2. The digest is looked up in a bounded LRU. On a hit, `parsed` and the refined kind come from
//!    the cache. On a miss, sqlparser (MySqlDialect) parses the statement once, outside the lock,
//!    and the verdict is cached. Digests are compared by text too, so a hash collision costs a
//!    re-parse, never a wrong answer.
//!
//! sqlparser only ever *refines*: it can turn a lexer `Read` into `Write`/`Ddl`; when it rejects a
//! statement (it does reject some valid MySQL/MariaDB, such as
//! `LOCK IN SHARE MODE` and `XA START`), the lexer's kind stands and `parsed` is false.

mod parse;
mod scan;

use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

use lru::LruCache;

use crate::hints::Hints;

pub use scan::scan;

/// Parses `sql` with sqlparser (MySqlDialect) behind the same guards the classifier uses (paren
/// depth, operator count, UTF-8, executable-comment markers blanked in place, panics caught), for
/// the router's other users of the AST. Byte offsets in the text handed to sqlparser are those of
/// `sql`.
pub(crate) fn parse_guarded(sql: &[u8]) -> Result<Vec<sqlparser::ast::Statement>, crate::Error> {
    let (_, complexity) = scan::scan_with_complexity(sql);
    parse::parse(sql, complexity)
}

/// What a statement is, as far as routing cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatementKind {
    /// Reads data and changes nothing: `SELECT`, `WITH ... SELECT`, `TABLE`, `VALUES`, `DESCRIBE`,
    /// `EXPLAIN` (not `EXPLAIN ANALYZE` of a write), `HANDLER`. A locking read (`FOR UPDATE`) is
    /// still `Read`, with [`Statement::locking_read`] set.
    Read,
    /// Changes data or may: `INSERT`, `UPDATE`, `DELETE`, `REPLACE`, `LOAD DATA`, `CALL`, `DO`,
    /// `EXECUTE` (of an unknown prepared statement), `SELECT ... INTO OUTFILE`, sequence
    /// `NEXTVAL()`; also any multi-statement whose statements are not all of one kind.
    Write,
    /// Starts a transaction: `BEGIN`, `START TRANSACTION`, `XA START` / `XA BEGIN`.
    TxnBegin,
    /// Ends a transaction: `COMMIT`, `ROLLBACK`, `XA END` / `PREPARE` / `COMMIT` / `ROLLBACK`.
    TxnEnd,
    /// Changes session state only: `SET` (not `GLOBAL`), `USE`, `SAVEPOINT`, `RELEASE SAVEPOINT`,
    /// `ROLLBACK TO SAVEPOINT`, `LOCK` / `UNLOCK TABLES`, `PREPARE`, `DEALLOCATE PREPARE`,
    /// `GET DIAGNOSTICS`, `SIGNAL`.
    Session,
    /// Changes schema: `CREATE`, `ALTER`, `DROP`, `TRUNCATE`, `RENAME` (of tables, views,
    /// databases, indexes, routines; not of users and roles).
    Ddl,
    /// Server administration: `SHOW`, `KILL`, `FLUSH`, `GRANT`, `REVOKE`, account management,
    /// `OPTIMIZE` / `CHECK` / `CHECKSUM` / `REPAIR` / `ANALYZE TABLE`, replication control,
    /// `SET GLOBAL`, `INSTALL`, `HELP`, `PURGE`, `RESET`, `XA RECOVER`.
    Admin,
    /// Empty, comment-only, or not recognisable as MySQL.
    Unknown,
}

impl StatementKind {
    /// Every kind, in declaration order (for metrics labels).
    pub const ALL: [StatementKind; 8] = [
        StatementKind::Read,
        StatementKind::Write,
        StatementKind::TxnBegin,
        StatementKind::TxnEnd,
        StatementKind::Session,
        StatementKind::Ddl,
        StatementKind::Admin,
        StatementKind::Unknown,
    ];

    /// The kind's snake_case name, as used in metrics labels and golden files.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Read => "read",
            StatementKind::Write => "write",
            StatementKind::TxnBegin => "txn_begin",
            StatementKind::TxnEnd => "txn_end",
            StatementKind::Session => "session",
            StatementKind::Ddl => "ddl",
            StatementKind::Admin => "admin",
            StatementKind::Unknown => "unknown",
        }
    }

    /// The kind named `name` (the inverse of [`StatementKind::as_str`]).
    pub fn from_name(name: &str) -> Option<StatementKind> {
        StatementKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for StatementKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a statement does to connection-bound state (decides whether the proxy must pin the backend
/// connection). Collected over every statement of a multi-statement. Effects inside a stored
/// program's body (`CREATE PROCEDURE ... BEGIN ... END`) are not the `CREATE`'s and are not listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionEffects {
    /// `CREATE [OR REPLACE] TEMPORARY TABLE`.
    pub creates_temp_table: bool,
    /// Number of tables named in `DROP TEMPORARY TABLE [IF EXISTS] a, b`. A plain `DROP TABLE t`
    /// drops a temporary `t` too when one exists; that is not counted here (names are not tracked).
    pub drops_temp_tables: u32,
    /// `GET_LOCK(` in code (not in strings or comments).
    pub get_lock: bool,
    /// `RELEASE_LOCK(`.
    pub release_lock: bool,
    /// `RELEASE_ALL_LOCKS(`.
    pub release_all_locks: bool,
    /// `LOCK TABLE(S) ...`, `FLUSH TABLES ... WITH READ LOCK`, `FLUSH TABLES ... FOR EXPORT`.
    pub lock_tables: bool,
    /// `UNLOCK TABLE(S)`.
    pub unlock_tables: bool,
    /// `SQL_CALC_FOUND_ROWS`.
    pub calc_found_rows: bool,
    /// `SET TRANSACTION ...` without `SESSION`/`GLOBAL`: applies to the next transaction only.
    pub set_transaction_next: bool,
    /// User variables assigned: `SET @a = ..`, `SET @a := ..`, `@a := expr`, `SELECT .. INTO @a, @b`.
    /// Names lowercased, without `@` and quotes (`@'x y'` -> `x y`), each once, in order.
    pub user_vars_assigned: Vec<String>,
    /// SQL-level `PREPARE` / `EXECUTE` / `DEALLOCATE PREPARE` / `DROP PREPARE`.
    pub sql_prepare: bool,
    /// Other connection-bound state: `HANDLER`, `XA START/BEGIN/END/PREPARE`, `LOCK TABLES`,
    /// `FLUSH ... WITH READ LOCK`, `LOCK INSTANCE FOR BACKUP`, MariaDB `BACKUP LOCK` / `BACKUP STAGE`,
    /// and `GET_LOCK(`.
    pub pins_connection: bool,
    /// `LAST_INSERT_ID(` or `@@last_insert_id` / `@@identity`.
    pub uses_last_insert_id: bool,
    /// `FOUND_ROWS(`.
    pub uses_found_rows: bool,
    /// Reads the previous statement's diagnostics on this connection: `ROW_COUNT(`,
    /// `SHOW WARNINGS` / `SHOW ERRORS` / `SHOW COUNT(*) WARNINGS`, `GET DIAGNOSTICS`,
    /// `@@warning_count`, `@@error_count`.
    pub uses_diagnostics: bool,
}

impl SessionEffects {
    /// Whether the statement touches no connection-bound state at all.
    pub fn is_none(&self) -> bool {
        *self == SessionEffects::default()
    }
}

/// One classified COM_QUERY text.
#[derive(Clone, Debug)]
pub struct Statement {
    /// What the statement is (for a multi-statement: the common kind, or `Write` when they differ).
    pub kind: StatementKind,
    /// First statement keyword, uppercase, from a fixed table (`"SELECT"`, `"INSERT"`, ...);
    /// `""` when there is none or it is not recognised.
    pub keyword: &'static str,
    /// Routing hints from comments.
    pub hints: Hints,
    /// FNV-1a 64 of [`Statement::digest_text`] (see [`crate::digest`]).
    pub digest: u64,
    /// The normalised fingerprint (see [`crate::digest`]).
    pub digest_text: String,
    /// Byte ranges of the literals in the raw SQL, in order (a folded sign belongs to its number).
    pub literals: Vec<Range<usize>>,
    /// What the statement does to connection-bound state.
    pub effects: SessionEffects,
    /// More than one statement: a `;` followed by more code.
    pub multi: bool,
    /// `SELECT ... FOR UPDATE` / `FOR SHARE` / `LOCK IN SHARE MODE` (only set on `Read` statements).
    pub locking_read: bool,
    /// sqlparser (MySqlDialect) accepted the statement (cached per digest).
    pub parsed: bool,
}

/// sqlparser's verdict on one digest.
#[derive(Clone, Debug)]
struct Verdict {
    /// The digest text, to tell a hash collision from a hit.
    digest_text: Box<str>,
    parsed: bool,
    kind: StatementKind,
}

/// Classifies statements. Thread-safe: a bounded LRU of per-digest sqlparser verdicts behind a
/// mutex that is held only for the lookup and the insert, never while sqlparser runs.
pub struct Classifier {
    cache: Mutex<LruCache<u64, Verdict>>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("cache_len", &self.cache_len())
            .finish()
    }
}

impl Classifier {
    /// A classifier that remembers sqlparser's verdict for `cache_capacity` digests (at least one).
    pub fn new(cache_capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(cache_capacity).unwrap_or(NonZeroUsize::MIN);
        Classifier {
            cache: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// Classifies one COM_QUERY text. Never panics, whatever the bytes.
    pub fn classify(&self, sql: &[u8]) -> Statement {
        let (mut statement, complexity) = scan::scan_with_complexity(sql);
        if let Some((parsed, kind)) = self.cached(statement.digest, &statement.digest_text) {
            statement.parsed = parsed;
            statement.kind = kind;
            return statement;
        }
        let (parsed, kind) = parse::verdict(sql, &statement, complexity);
        statement.parsed = parsed;
        statement.kind = kind;
        self.lock().put(
            statement.digest,
            Verdict {
                digest_text: statement.digest_text.as_str().into(),
                parsed,
                kind,
            },
        );
        statement
    }

    /// Number of digests whose verdict is cached.
    pub fn cache_len(&self) -> usize {
        self.lock().len()
    }

    fn cached(&self, digest: u64, digest_text: &str) -> Option<(bool, StatementKind)> {
        let mut cache = self.lock();
        let verdict = cache.get(&digest)?;
        (*verdict.digest_text == *digest_text).then_some((verdict.parsed, verdict.kind))
    }

    /// The cache. A panic while it was held cannot leave it inconsistent (the LRU's own methods
    /// do not panic midway), so a poisoned lock is simply taken over.
    fn lock(&self) -> MutexGuard<'_, LruCache<u64, Verdict>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests;
