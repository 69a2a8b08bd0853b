//! The fixed keyword table the scanner matches words against, and what each keyword implies.
//!
//! Only words that change a decision are here (statement starters, the words that qualify them,
//! functions with session effects, and the operators that decide digest spacing); every other word
//! is [`Kw::Other`]. Lookup lowercases at most [`MAX_LEN`] bytes onto the stack and does one `match`.

/// A word the scanner cares about. `Other` is every other word.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) enum Kw {
    #[default]
    Other,
    // Statement starters.
    Alter,
    Analyze,
    Backup,
    Begin,
    Binlog,
    Cache,
    Call,
    Change,
    Check,
    Checksum,
    Clone,
    Commit,
    Create,
    Deallocate,
    Delete,
    Desc,
    Describe,
    Do,
    Drop,
    Execute,
    Explain,
    Flush,
    Get,
    Grant,
    Handler,
    Help,
    Import,
    Insert,
    Install,
    Kill,
    Load,
    Lock,
    Optimize,
    Prepare,
    Purge,
    Release,
    Rename,
    Repair,
    Replace,
    Reset,
    Resignal,
    Restart,
    Revoke,
    Rollback,
    Savepoint,
    Select,
    Set,
    Show,
    Shutdown,
    Signal,
    Start,
    Stop,
    Table,
    Truncate,
    Uninstall,
    Unlock,
    Update,
    Use,
    Values,
    With,
    Xa,
    // Qualifiers.
    Aggregate,
    Data,
    Database,
    Default,
    Diagnostics,
    Dumpfile,
    End,
    Errors,
    Event,
    Export,
    For,
    Fulltext,
    Function,
    Global,
    In,
    Index,
    Instance,
    Into,
    Local,
    Next,
    NoWriteToBinlog,
    Not,
    Or,
    Outfile,
    Password,
    Persist,
    PersistOnly,
    Procedure,
    Read,
    Recover,
    Role,
    Schema,
    Sequence,
    Server,
    Session,
    Share,
    Spatial,
    Stage,
    Statement,
    Tables,
    Tablespace,
    Temporary,
    To,
    Transaction,
    Trigger,
    Unique,
    User,
    Value,
    View,
    Warnings,
    Work,
    // Functions with session effects.
    FoundRows,
    GetLock,
    LastInsertId,
    Nextval,
    ReleaseAllLocks,
    ReleaseLock,
    RowCount,
    Setval,
    SqlCalcFoundRows,
    // Operators and clause words: only digest spacing and sign folding look at these.
    All,
    And,
    Any,
    As,
    Between,
    By,
    Case,
    Collate,
    Distinct,
    Div,
    Else,
    Elseif,
    Escape,
    Except,
    Exists,
    From,
    Having,
    Intersect,
    Interval,
    Is,
    Join,
    Like,
    Limit,
    Mod,
    Offset,
    On,
    Over,
    Regexp,
    Return,
    Rlike,
    Some,
    Then,
    Union,
    Using,
    When,
    Where,
    Xor,
}

/// Longest keyword in the table (`sql_calc_found_rows`), rounded up.
pub(crate) const MAX_LEN: usize = 24;

/// A word of up to 16 bytes packed little-endian into a `u128`, so that the keyword table is one
/// `match` on integers (a binary search in machine code) instead of a chain of slice compares.
const fn pack(word: &[u8]) -> u128 {
    let mut key = 0u128;
    let mut i = 0;
    while i < word.len() {
        key |= (word[i] as u128) << (8 * i);
        i += 1;
    }
    key
}

/// Declares the keyword table: one packed constant per short keyword and the lookup over them.
macro_rules! keyword_table {
    ($($word:literal => $kw:ident,)*) => {
        /// Packed keywords, named after their [`Kw`] variant.
        #[allow(non_upper_case_globals)]
        mod packed {
            $(pub(super) const $kw: u128 = super::pack($word);)*
        }

        /// The keyword for a packed lowercase word of at most 16 bytes.
        fn lookup_packed(key: u128) -> Kw {
            match key {
                $(packed::$kw => Kw::$kw,)*
                _ => Kw::Other,
            }
        }
    };
}

keyword_table! {
    b"alter" => Alter,
    b"analyze" => Analyze,
    b"backup" => Backup,
    b"begin" => Begin,
    b"binlog" => Binlog,
    b"cache" => Cache,
    b"call" => Call,
    b"change" => Change,
    b"check" => Check,
    b"checksum" => Checksum,
    b"clone" => Clone,
    b"commit" => Commit,
    b"create" => Create,
    b"deallocate" => Deallocate,
    b"delete" => Delete,
    b"desc" => Desc,
    b"describe" => Describe,
    b"do" => Do,
    b"drop" => Drop,
    b"execute" => Execute,
    b"explain" => Explain,
    b"flush" => Flush,
    b"get" => Get,
    b"grant" => Grant,
    b"handler" => Handler,
    b"help" => Help,
    b"import" => Import,
    b"insert" => Insert,
    b"install" => Install,
    b"kill" => Kill,
    b"load" => Load,
    b"lock" => Lock,
    b"optimize" => Optimize,
    b"prepare" => Prepare,
    b"purge" => Purge,
    b"release" => Release,
    b"rename" => Rename,
    b"repair" => Repair,
    b"replace" => Replace,
    b"reset" => Reset,
    b"resignal" => Resignal,
    b"restart" => Restart,
    b"revoke" => Revoke,
    b"rollback" => Rollback,
    b"savepoint" => Savepoint,
    b"select" => Select,
    b"set" => Set,
    b"show" => Show,
    b"shutdown" => Shutdown,
    b"signal" => Signal,
    b"start" => Start,
    b"stop" => Stop,
    b"table" => Table,
    b"truncate" => Truncate,
    b"uninstall" => Uninstall,
    b"unlock" => Unlock,
    b"update" => Update,
    b"use" => Use,
    b"values" => Values,
    b"with" => With,
    b"xa" => Xa,
    b"aggregate" => Aggregate,
    b"data" => Data,
    b"database" => Database,
    b"default" => Default,
    b"diagnostics" => Diagnostics,
    b"dumpfile" => Dumpfile,
    b"end" => End,
    b"errors" => Errors,
    b"event" => Event,
    b"export" => Export,
    b"for" => For,
    b"fulltext" => Fulltext,
    b"function" => Function,
    b"global" => Global,
    b"in" => In,
    b"index" => Index,
    b"instance" => Instance,
    b"into" => Into,
    b"local" => Local,
    b"next" => Next,
    b"not" => Not,
    b"or" => Or,
    b"outfile" => Outfile,
    b"password" => Password,
    b"persist" => Persist,
    b"persist_only" => PersistOnly,
    b"procedure" => Procedure,
    b"read" => Read,
    b"recover" => Recover,
    b"role" => Role,
    b"schema" => Schema,
    b"sequence" => Sequence,
    b"server" => Server,
    b"session" => Session,
    b"share" => Share,
    b"spatial" => Spatial,
    b"stage" => Stage,
    b"statement" => Statement,
    b"tables" => Tables,
    b"tablespace" => Tablespace,
    b"temporary" => Temporary,
    b"to" => To,
    b"transaction" => Transaction,
    b"trigger" => Trigger,
    b"unique" => Unique,
    b"user" => User,
    b"value" => Value,
    b"view" => View,
    b"warnings" => Warnings,
    b"work" => Work,
    b"found_rows" => FoundRows,
    b"get_lock" => GetLock,
    b"last_insert_id" => LastInsertId,
    b"nextval" => Nextval,
    b"release_lock" => ReleaseLock,
    b"row_count" => RowCount,
    b"setval" => Setval,
    b"all" => All,
    b"and" => And,
    b"any" => Any,
    b"as" => As,
    b"between" => Between,
    b"by" => By,
    b"case" => Case,
    b"collate" => Collate,
    b"distinct" => Distinct,
    b"div" => Div,
    b"else" => Else,
    b"elseif" => Elseif,
    b"escape" => Escape,
    b"except" => Except,
    b"exists" => Exists,
    b"from" => From,
    b"having" => Having,
    b"intersect" => Intersect,
    b"interval" => Interval,
    b"is" => Is,
    b"join" => Join,
    b"like" => Like,
    b"limit" => Limit,
    b"mod" => Mod,
    b"offset" => Offset,
    b"on" => On,
    b"over" => Over,
    b"regexp" => Regexp,
    b"return" => Return,
    b"rlike" => Rlike,
    b"some" => Some,
    b"then" => Then,
    b"union" => Union,
    b"using" => Using,
    b"when" => When,
    b"where" => Where,
    b"xor" => Xor,
}

impl Kw {
    /// The keyword for `word` (any case); [`Kw::Other`] when it is not in the table.
    pub(crate) fn lookup(word: &[u8]) -> Kw {
        if word.len() > MAX_LEN || word.is_empty() {
            return Kw::Other;
        }
        let mut buf = [0u8; MAX_LEN];
        for (to, from) in buf.iter_mut().zip(word) {
            *to = from.to_ascii_lowercase();
        }
        if word.len() <= 16 {
            // The bytes after the word are zero, as `pack` leaves them.
            let mut head = [0u8; 16];
            head.copy_from_slice(&buf[..16]);
            return lookup_packed(u128::from_le_bytes(head));
        }
        match &buf[..word.len()] {
            b"no_write_to_binlog" => Kw::NoWriteToBinlog,
            b"release_all_locks" => Kw::ReleaseAllLocks,
            b"sql_calc_found_rows" => Kw::SqlCalcFoundRows,
            _ => Kw::Other,
        }
    }

    /// The statement keyword, uppercased, when this word can start a statement.
    pub(crate) fn statement_keyword(self) -> Option<&'static str> {
        Some(match self {
            Kw::Alter => "ALTER",
            Kw::Analyze => "ANALYZE",
            Kw::Backup => "BACKUP",
            Kw::Begin => "BEGIN",
            Kw::Binlog => "BINLOG",
            Kw::Cache => "CACHE",
            Kw::Call => "CALL",
            Kw::Change => "CHANGE",
            Kw::Check => "CHECK",
            Kw::Checksum => "CHECKSUM",
            Kw::Clone => "CLONE",
            Kw::Commit => "COMMIT",
            Kw::Create => "CREATE",
            Kw::Deallocate => "DEALLOCATE",
            Kw::Delete => "DELETE",
            Kw::Desc => "DESC",
            Kw::Describe => "DESCRIBE",
            Kw::Do => "DO",
            Kw::Drop => "DROP",
            Kw::Execute => "EXECUTE",
            Kw::Explain => "EXPLAIN",
            Kw::Flush => "FLUSH",
            Kw::Get => "GET",
            Kw::Grant => "GRANT",
            Kw::Handler => "HANDLER",
            Kw::Help => "HELP",
            Kw::Import => "IMPORT",
            Kw::Insert => "INSERT",
            Kw::Install => "INSTALL",
            Kw::Kill => "KILL",
            Kw::Load => "LOAD",
            Kw::Lock => "LOCK",
            Kw::Optimize => "OPTIMIZE",
            Kw::Prepare => "PREPARE",
            Kw::Purge => "PURGE",
            Kw::Release => "RELEASE",
            Kw::Rename => "RENAME",
            Kw::Repair => "REPAIR",
            Kw::Replace => "REPLACE",
            Kw::Reset => "RESET",
            Kw::Resignal => "RESIGNAL",
            Kw::Restart => "RESTART",
            Kw::Revoke => "REVOKE",
            Kw::Rollback => "ROLLBACK",
            Kw::Savepoint => "SAVEPOINT",
            Kw::Select => "SELECT",
            Kw::Set => "SET",
            Kw::Show => "SHOW",
            Kw::Shutdown => "SHUTDOWN",
            Kw::Signal => "SIGNAL",
            Kw::Start => "START",
            Kw::Stop => "STOP",
            Kw::Table => "TABLE",
            Kw::Truncate => "TRUNCATE",
            Kw::Uninstall => "UNINSTALL",
            Kw::Unlock => "UNLOCK",
            Kw::Update => "UPDATE",
            Kw::Use => "USE",
            Kw::Values => "VALUES",
            Kw::With => "WITH",
            Kw::Xa => "XA",
            _ => return None,
        })
    }

    /// The statement keywords a query expression or DML statement starts with (used to find the
    /// statement inside `WITH ...`, `EXPLAIN ...`, MariaDB's `ANALYZE ...`).
    pub(crate) fn is_dml(self) -> bool {
        matches!(
            self,
            Kw::Select
                | Kw::Table
                | Kw::Values
                | Kw::Insert
                | Kw::Update
                | Kw::Delete
                | Kw::Replace
        )
    }

    /// DML that changes data.
    pub(crate) fn is_dml_write(self) -> bool {
        matches!(self, Kw::Insert | Kw::Update | Kw::Delete | Kw::Replace)
    }

    /// Object types after CREATE / ALTER / DROP / RENAME (`CREATE OR REPLACE TEMPORARY TABLE`,
    /// `CREATE DEFINER = x PROCEDURE`): the first such word names what the statement works on.
    pub(crate) fn is_object_type(self) -> bool {
        matches!(
            self,
            Kw::Table
                | Kw::Tables
                | Kw::Temporary
                | Kw::Index
                | Kw::Unique
                | Kw::Fulltext
                | Kw::Spatial
                | Kw::View
                | Kw::Database
                | Kw::Schema
                | Kw::User
                | Kw::Role
                | Kw::Procedure
                | Kw::Function
                | Kw::Aggregate
                | Kw::Trigger
                | Kw::Event
                | Kw::Sequence
                | Kw::Server
                | Kw::Tablespace
                | Kw::Prepare
                | Kw::Instance
        )
    }

    /// After these words a `(` opens an expression or a list rather than a call's arguments, so the
    /// digest writes a space before it: `IN (...)`, `VALUES (?)`, `AND (a OR b)`, `count(*)`.
    pub(crate) fn spaces_paren(self) -> bool {
        matches!(
            self,
            Kw::In
                | Kw::Values
                | Kw::Value
                | Kw::And
                | Kw::Or
                | Kw::Xor
                | Kw::Not
                | Kw::On
                | Kw::From
                | Kw::Join
                | Kw::Where
                | Kw::As
                | Kw::Select
                | Kw::Exists
                | Kw::Using
                | Kw::By
                | Kw::When
                | Kw::Then
                | Kw::Else
                | Kw::Union
                | Kw::Except
                | Kw::Intersect
                | Kw::All
                | Kw::Any
                | Kw::Some
                | Kw::Is
                | Kw::Like
                | Kw::Between
                | Kw::With
                | Kw::Set
                | Kw::Having
                | Kw::Distinct
                | Kw::Case
                | Kw::Interval
                | Kw::Div
                | Kw::Return
                | Kw::Over
                | Kw::Into
                | Kw::Table
                | Kw::Do
                | Kw::Regexp
                | Kw::Rlike
                | Kw::Escape
                | Kw::Limit
                | Kw::Offset
        )
    }

    /// Words that combine two operands into a binary tree node in a parser's AST (sqlparser builds
    /// long chains of them iteratively, but drops them recursively).
    pub(crate) fn is_binary_operator(self) -> bool {
        matches!(
            self,
            Kw::And
                | Kw::Or
                | Kw::Xor
                | Kw::Is
                | Kw::Like
                | Kw::Between
                | Kw::In
                | Kw::Div
                | Kw::Mod
                | Kw::Regexp
                | Kw::Rlike
                | Kw::Escape
                | Kw::Collate
                | Kw::Union
                | Kw::Except
                | Kw::Intersect
        )
    }

    /// After these words a `-` or `+` is a sign, not a subtraction: `SELECT -1`, `WHERE a = -1`.
    /// Every other word is a value (a column, `NULL`, a function name), so `k -1` subtracts.
    pub(crate) fn expects_operand(self) -> bool {
        self.spaces_paren() && !matches!(self, Kw::Table | Kw::Into)
            || matches!(self, Kw::Elseif | Kw::Mod)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_bounded() {
        assert_eq!(Kw::lookup(b"SELECT"), Kw::Select);
        assert_eq!(Kw::lookup(b"sElEcT"), Kw::Select);
        assert_eq!(Kw::lookup(b"SQL_CALC_FOUND_ROWS"), Kw::SqlCalcFoundRows);
        assert_eq!(Kw::lookup(b"selectx"), Kw::Other);
        assert_eq!(Kw::lookup(b""), Kw::Other);
        assert_eq!(Kw::lookup(&[b'a'; 100]), Kw::Other);
        assert_eq!(Kw::lookup(b"\xff\xfe"), Kw::Other);
    }

    #[test]
    fn statement_keywords_round_trip() {
        for word in ["SELECT", "INSERT", "XA", "DEALLOCATE", "SAVEPOINT", "WITH"] {
            let kw = Kw::lookup(word.as_bytes());
            assert_eq!(kw.statement_keyword(), Some(word));
        }
        assert_eq!(Kw::Into.statement_keyword(), None);
    }
}
