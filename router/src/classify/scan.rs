//! The one pass over a statement's bytes that fills a [`Statement`]: kind, keyword, hints, digest,
//! literal spans and session effects, without sqlparser.
//!
//! Tokens flow through [`Scan::step`], which keeps a little per-statement state ([`Stmt`]: the first
//! few words, paren depth, the previous token, flags) and feeds the digest writer. At each `;` and at
//! the end, [`decide`] turns that state into a kind. Nothing here allocates per token: the digest
//! text, the literal list and (rarely) user-variable names are the only allocations.

use std::ops::Range;

use crate::digest::{DigestWriter, Piece};
use crate::hints::{self, Hints};
use crate::keyword::Kw;
use crate::lexer::{Lexer, Token, TokenKind};

use super::{SessionEffects, Statement, StatementKind};

/// Classifies `sql` with the lexer alone: the full [`Statement`], with `parsed` false.
/// This is what [`super::Classifier::classify`] does before its cache lookup.
pub fn scan(sql: &[u8]) -> Statement {
    scan_with_complexity(sql).0
}

/// How complex a text is, for sparing sqlparser hostile input (see `parse::MAX_PARSER_DEPTH`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Complexity {
    /// Deepest paren nesting.
    pub(super) max_depth: u32,
    /// Binary operators (`+`, `=`, `AND`, `UNION`, ...): each is one level of a left-deep tree.
    pub(super) operators: u32,
}

/// [`scan`], plus how complex the text is.
pub(super) fn scan_with_complexity(sql: &[u8]) -> (Statement, Complexity) {
    let mut scan = Scan::new(sql);
    scan.run();
    let complexity = scan.complexity;
    (scan.finish(), complexity)
}

/// Per-statement state. A multi-statement text resets it at each `;`.
#[derive(Debug, Default)]
struct Stmt {
    /// Tokens seen (trivia excluded).
    ntok: u32,
    /// The statement keyword (after any leading `(`); `None` until a word is seen.
    first: Option<Kw>,
    /// The text started with something that is neither a word nor `(`.
    garbage: bool,
    /// `(SELECT ...)`.
    leading_paren: bool,
    /// The three tokens after the first word (`Kw::Other` for anything not in the table).
    after: [Kw; 3],
    after_n: usize,
    depth: u32,
    prev: Option<Token>,
    /// The previous token's keyword (`Kw::Other` unless it was a word).
    prev_kw: Kw,
    /// The previous token was a user variable in an assignment-target position of `SET`.
    prev_set_target_var: bool,
    /// The previous token was a `,` at depth 0.
    prev_comma0: bool,
    /// First statement-level DML keyword after the first word (`WITH ... DELETE`, `EXPLAIN SELECT`).
    dml: Option<Kw>,
    /// `ANALYZE` after the first word (`EXPLAIN ANALYZE`).
    analyze: bool,
    /// First object-type word after CREATE / ALTER / DROP / RENAME.
    object: Option<Kw>,
    /// A compound statement (`CREATE PROCEDURE ... BEGIN ...; ...; END`, MariaDB's
    /// `BEGIN NOT ATOMIC ... END`): `;` does not end the statement.
    no_split: bool,
    /// A stored program's definition: its body runs later, so its effects are not this statement's.
    program_body: bool,
    /// The previous token was `INTO`.
    into_expect: bool,
    /// Inside `INTO @a, @b`.
    into_vars: bool,
    into_outfile: bool,
    /// `FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE`.
    locking: bool,
    /// `WITH READ LOCK`, `FOR EXPORT` (for FLUSH).
    read_lock: bool,
    /// `GLOBAL`, `PERSIST`, `@@global.x` (for SET).
    global_scope: bool,
    /// `NEXTVAL(`, `SETVAL(`, `NEXT VALUE FOR`: a SELECT that writes.
    sequence_write: bool,
    /// `WARNINGS` / `ERRORS` (for SHOW).
    warnings: bool,
    /// Commas at depth 0 (DROP TEMPORARY TABLE a, b).
    commas0: u32,
    values_seen: bool,
    /// `SET STATEMENT ... FOR`: this state is the inner statement's.
    set_statement: bool,
}

struct Scan<'a> {
    sql: &'a [u8],
    lexer: Lexer<'a>,
    peeked: Option<Token>,
    digest: DigestWriter,
    literals: Vec<Range<usize>>,
    hints: Hints,
    effects: SessionEffects,
    st: Stmt,
    statements: u32,
    kind: StatementKind,
    keyword: &'static str,
    locking_read: bool,
    multi: bool,
    /// A statement ended with `;`: the next token starts another one.
    pending_break: bool,
    complexity: Complexity,
}

impl<'a> Scan<'a> {
    fn new(sql: &'a [u8]) -> Self {
        Scan {
            sql,
            lexer: Lexer::new(sql),
            peeked: None,
            digest: DigestWriter::with_capacity(sql.len() + 8),
            literals: Vec::new(),
            hints: Hints::default(),
            effects: SessionEffects::default(),
            st: Stmt::default(),
            statements: 0,
            kind: StatementKind::Unknown,
            keyword: "",
            locking_read: false,
            multi: false,
            pending_break: false,
            complexity: Complexity::default(),
        }
    }

    fn run(&mut self) {
        while let Some(tok) = self.peeked.take().or_else(|| self.lexer.next()) {
            match tok.kind {
                TokenKind::Comment => {
                    hints::apply_comment(&mut self.hints, tok.text(self.sql));
                    continue;
                }
                TokenKind::ExecOpen | TokenKind::ExecClose => continue,
                _ => {}
            }
            if !self.st.no_split && tok.is_punct(self.sql, b";") {
                self.finish_statement();
                continue;
            }
            if self.pending_break {
                self.pending_break = false;
                self.multi = true;
                self.digest.statement_break();
            }
            let tok = self.fold_sign(tok);
            self.step(tok);
        }
        self.finish_statement();
    }

    /// `-1` after an operator or an operand-expecting keyword is one literal, so that `a = -1` and
    /// `a = 1` share a digest and the literal span carries the sign.
    fn fold_sign(&mut self, tok: Token) -> Token {
        if tok.kind != TokenKind::Punct
            || !matches!(tok.text(self.sql), b"-" | b"+")
            || self.prev_is_operand()
        {
            return tok;
        }
        match self.lexer.next() {
            Some(next) if next.kind == TokenKind::Number => Token {
                kind: TokenKind::Number,
                start: tok.start,
                end: next.end,
            },
            other => {
                self.peeked = other;
                tok
            }
        }
    }

    fn prev_is_operand(&self) -> bool {
        let Some(prev) = self.st.prev else {
            return false;
        };
        match prev.kind {
            TokenKind::Word => !self.st.prev_kw.expects_operand(),
            TokenKind::Punct => prev.text(self.sql) == b")",
            TokenKind::Comment | TokenKind::ExecOpen | TokenKind::ExecClose => false,
            _ => true,
        }
    }

    fn step(&mut self, tok: Token) {
        let text = tok.text(self.sql);
        let is_word = tok.kind == TokenKind::Word;
        let kw = if is_word { Kw::lookup(text) } else { Kw::Other };
        let is_punct = |p: &[u8]| tok.kind == TokenKind::Punct && text == p;
        let (is_open, is_close, is_comma) = (is_punct(b"("), is_punct(b")"), is_punct(b","));
        let st = &mut self.st;
        let depth0 = st.depth == 0;
        let position = st.after_n;

        // The statement head: leading parens, the keyword, the three tokens after it.
        let mut is_first = false;
        if st.first.is_none() && !st.garbage {
            if is_open {
                st.leading_paren = true;
            } else if is_word {
                st.first = Some(kw);
                is_first = true;
            } else {
                st.garbage = true;
            }
        } else if st.first.is_some() && st.after_n < st.after.len() {
            st.after[st.after_n] = kw;
            st.after_n += 1;
        }
        let first = st.first;

        // MariaDB `SET STATEMENT var = x FOR stmt`: from here on it is `stmt` that runs.
        if first == Some(Kw::Set) && st.after[0] == Kw::Statement && kw == Kw::For && depth0 {
            let ntok = st.ntok + 1;
            self.st = Stmt {
                set_statement: true,
                ntok,
                ..Stmt::default()
            };
            self.digest.push(Piece::Word(text, kw));
            return;
        }

        let set_target =
            first == Some(Kw::Set) && !is_first && depth0 && (position == 0 || st.prev_comma0);
        let prev_kw = st.prev_kw;

        if !st.program_body {
            let effects = &mut self.effects;
            match tok.kind {
                TokenKind::Word => match kw {
                    Kw::SqlCalcFoundRows => effects.calc_found_rows = true,
                    Kw::Value if prev_kw == Kw::Next => st.sequence_write = true,
                    _ => {}
                },
                TokenKind::Punct if is_open => match prev_kw {
                    Kw::GetLock => {
                        effects.get_lock = true;
                        effects.pins_connection = true;
                    }
                    Kw::ReleaseLock => effects.release_lock = true,
                    Kw::ReleaseAllLocks => effects.release_all_locks = true,
                    Kw::LastInsertId => effects.uses_last_insert_id = true,
                    Kw::FoundRows => effects.uses_found_rows = true,
                    Kw::RowCount => effects.uses_diagnostics = true,
                    Kw::Nextval | Kw::Setval => st.sequence_write = true,
                    _ => {}
                },
                TokenKind::Punct if text == b":=" || (text == b"=" && st.prev_set_target_var) => {
                    if let Some(prev) = st.prev.filter(|p| p.kind == TokenKind::UserVar) {
                        add_user_var(effects, prev.text(self.sql));
                    }
                }
                TokenKind::SysVar => system_variable(text, effects, st),
                _ => {}
            }
            if st.into_vars {
                if tok.kind == TokenKind::UserVar {
                    add_user_var(effects, text);
                } else if !is_comma {
                    st.into_vars = false;
                }
            }
            if st.into_expect {
                st.into_expect = false;
                match (tok.kind, kw) {
                    (TokenKind::UserVar, _) => {
                        add_user_var(effects, text);
                        st.into_vars = true;
                    }
                    (TokenKind::Word, Kw::Outfile | Kw::Dumpfile) => st.into_outfile = true,
                    _ => {}
                }
            }
            if kw == Kw::Into {
                st.into_expect = true;
            }
        }

        let mut start_rows = false;
        if is_word {
            match kw {
                Kw::Update | Kw::Share if prev_kw == Kw::For => st.locking = true,
                Kw::In if prev_kw == Kw::Lock => st.locking = true,
                Kw::Lock if prev_kw == Kw::Read => st.read_lock = true,
                Kw::Export if prev_kw == Kw::For => st.read_lock = true,
                Kw::Warnings | Kw::Errors => st.warnings = true,
                Kw::Global | Kw::Persist | Kw::PersistOnly if depth0 => st.global_scope = true,
                Kw::Not if first == Some(Kw::Begin) && position == 0 => st.no_split = true,
                _ => {}
            }
            if depth0 && !is_first {
                if st.dml.is_none() && kw.is_dml() {
                    st.dml = Some(kw);
                }
                if kw == Kw::Analyze {
                    st.analyze = true;
                }
                if st.object.is_none()
                    && kw.is_object_type()
                    && matches!(first, Some(Kw::Create | Kw::Alter | Kw::Drop | Kw::Rename))
                {
                    st.object = Some(kw);
                    if first == Some(Kw::Create)
                        && matches!(
                            kw,
                            Kw::Procedure | Kw::Function | Kw::Aggregate | Kw::Trigger | Kw::Event
                        )
                    {
                        st.no_split = true;
                        st.program_body = true;
                    }
                }
                if matches!(kw, Kw::Values | Kw::Value)
                    && matches!(first, Some(Kw::Insert | Kw::Replace))
                    && !st.values_seen
                {
                    st.values_seen = true;
                    start_rows = true;
                }
            }
        }

        let is_operator = match tok.kind {
            TokenKind::Punct => !matches!(text, b"(" | b")" | b"," | b";" | b"." | b"@"),
            TokenKind::Word => kw.is_binary_operator(),
            _ => false,
        };
        if is_operator {
            self.complexity.operators = self.complexity.operators.saturating_add(1);
        }
        if is_open {
            st.depth += 1;
            self.complexity.max_depth = self.complexity.max_depth.max(st.depth);
        } else if is_close {
            st.depth = st.depth.saturating_sub(1);
        } else if is_comma && depth0 {
            st.commas0 += 1;
        }
        st.ntok += 1;
        st.prev = Some(tok);
        st.prev_kw = kw;
        st.prev_set_target_var = set_target && tok.kind == TokenKind::UserVar;
        st.prev_comma0 = is_comma && depth0;

        let piece = match tok.kind {
            TokenKind::Word => Piece::Word(text, kw),
            TokenKind::QuotedIdent => Piece::Verbatim(text),
            TokenKind::UserVar if matches!(text.get(1), Some(b'`' | b'\'' | b'"')) => {
                Piece::Verbatim(text)
            }
            TokenKind::UserVar | TokenKind::SysVar => Piece::Lowercase(text),
            TokenKind::String | TokenKind::Number | TokenKind::Hex | TokenKind::Bit => {
                self.literals.push(tok.start..tok.end);
                Piece::Value
            }
            TokenKind::Placeholder => Piece::Value,
            TokenKind::Punct => Piece::Punct(text),
            TokenKind::Comment | TokenKind::ExecOpen | TokenKind::ExecClose => return,
        };
        self.digest.push(piece);
        if start_rows {
            self.digest.start_rows();
        }
    }

    fn finish_statement(&mut self) {
        let st = std::mem::take(&mut self.st);
        if st.ntok > 0 {
            let kind = decide(&st);
            statement_effects(&st, &mut self.effects);
            let keyword = if st.set_statement {
                "SET"
            } else if kind == StatementKind::Unknown {
                ""
            } else {
                st.first.and_then(Kw::statement_keyword).unwrap_or("")
            };
            if self.statements == 0 {
                self.kind = kind;
                self.keyword = keyword;
            } else if self.kind != kind {
                self.kind = StatementKind::Write;
            }
            self.locking_read |= st.locking && kind == StatementKind::Read;
            self.statements += 1;
        }
        self.pending_break = self.statements > 0;
    }

    fn finish(self) -> Statement {
        let (digest_text, digest) = self.digest.finish();
        Statement {
            kind: self.kind,
            keyword: self.keyword,
            hints: self.hints,
            digest,
            digest_text,
            literals: self.literals,
            effects: self.effects,
            multi: self.multi,
            locking_read: self.locking_read,
            parsed: false,
        }
    }
}

/// The kind of one statement, from what the pass collected.
fn decide(st: &Stmt) -> StatementKind {
    use StatementKind as K;
    let Some(first) = st.first else {
        return K::Unknown;
    };
    if st.leading_paren && !matches!(first, Kw::Select | Kw::With | Kw::Values | Kw::Table) {
        return K::Unknown;
    }
    let [a0, a1, _] = st.after;
    let dml_write = st.dml.is_some_and(Kw::is_dml_write);
    match first {
        Kw::Select | Kw::Table | Kw::Values | Kw::With => {
            if st.into_outfile || st.sequence_write || (first == Kw::With && dml_write) {
                K::Write
            } else {
                K::Read
            }
        }
        // EXPLAIN ANALYZE runs the statement it explains.
        Kw::Explain | Kw::Describe | Kw::Desc if st.analyze && dml_write => K::Write,
        Kw::Explain | Kw::Describe | Kw::Desc | Kw::Handler => K::Read,
        // MariaDB's ANALYZE <statement> runs it; ANALYZE TABLE is maintenance.
        Kw::Analyze => match (a0, st.dml) {
            (Kw::Table | Kw::Tables | Kw::Local | Kw::NoWriteToBinlog, _) | (_, None) => K::Admin,
            _ if dml_write => K::Write,
            _ => K::Read,
        },
        Kw::Insert | Kw::Update | Kw::Delete | Kw::Replace | Kw::Call | Kw::Do | Kw::Execute => {
            K::Write
        }
        Kw::Load if a0 == Kw::Index => K::Admin,
        Kw::Load => K::Write,
        // MariaDB's anonymous block `BEGIN NOT ATOMIC ... END` may do anything.
        Kw::Begin if a0 == Kw::Not => K::Write,
        Kw::Begin => K::TxnBegin,
        Kw::Start if a0 == Kw::Transaction => K::TxnBegin,
        Kw::Start => K::Admin,
        Kw::Commit => K::TxnEnd,
        Kw::Rollback if a0 == Kw::To || (a0 == Kw::Work && a1 == Kw::To) => K::Session,
        Kw::Rollback => K::TxnEnd,
        Kw::Savepoint | Kw::Release => K::Session,
        Kw::Xa => match a0 {
            Kw::Start | Kw::Begin => K::TxnBegin,
            Kw::End | Kw::Prepare | Kw::Commit | Kw::Rollback => K::TxnEnd,
            Kw::Recover => K::Admin,
            _ => K::Unknown,
        },
        Kw::Set
            if st.global_scope || a0 == Kw::Password || (a0 == Kw::Default && a1 == Kw::Role) =>
        {
            K::Admin
        }
        Kw::Set
        | Kw::Use
        | Kw::Lock
        | Kw::Unlock
        | Kw::Prepare
        | Kw::Deallocate
        | Kw::Get
        | Kw::Signal
        | Kw::Resignal => K::Session,
        Kw::Create | Kw::Alter | Kw::Drop | Kw::Rename => match st.object {
            Some(Kw::User | Kw::Role | Kw::Server | Kw::Instance) => K::Admin,
            Some(Kw::Prepare) => K::Session,
            _ => K::Ddl,
        },
        Kw::Truncate | Kw::Import => K::Ddl,
        Kw::Show
        | Kw::Kill
        | Kw::Flush
        | Kw::Grant
        | Kw::Revoke
        | Kw::Optimize
        | Kw::Check
        | Kw::Checksum
        | Kw::Repair
        | Kw::Install
        | Kw::Uninstall
        | Kw::Help
        | Kw::Purge
        | Kw::Change
        | Kw::Stop
        | Kw::Reset
        | Kw::Binlog
        | Kw::Cache
        | Kw::Shutdown
        | Kw::Restart
        | Kw::Clone
        | Kw::Backup => K::Admin,
        _ => K::Unknown,
    }
}

/// Effects that follow from the statement as a whole (its keyword and the words after it).
fn statement_effects(st: &Stmt, effects: &mut SessionEffects) {
    let Some(first) = st.first else {
        return;
    };
    let [a0, a1, _] = st.after;
    let tables = matches!(a0, Kw::Table | Kw::Tables);
    match first {
        Kw::Create if st.object == Some(Kw::Temporary) => effects.creates_temp_table = true,
        Kw::Drop if st.object == Some(Kw::Temporary) => {
            effects.drops_temp_tables = effects
                .drops_temp_tables
                .saturating_add(st.commas0.saturating_add(1));
        }
        Kw::Drop if st.object == Some(Kw::Prepare) => effects.sql_prepare = true,
        Kw::Lock if tables => {
            effects.lock_tables = true;
            effects.pins_connection = true;
        }
        Kw::Lock if a0 == Kw::Instance => effects.pins_connection = true,
        Kw::Unlock if tables => effects.unlock_tables = true,
        Kw::Flush if st.read_lock => {
            effects.lock_tables = true;
            effects.pins_connection = true;
        }
        Kw::Set if a0 == Kw::Transaction => effects.set_transaction_next = true,
        Kw::Prepare | Kw::Execute | Kw::Deallocate => effects.sql_prepare = true,
        Kw::Handler => effects.pins_connection = true,
        Kw::Xa if matches!(a0, Kw::Start | Kw::Begin | Kw::End | Kw::Prepare) => {
            effects.pins_connection = true;
        }
        Kw::Backup if matches!(a0, Kw::Lock | Kw::Stage) => effects.pins_connection = true,
        Kw::Get if a0 == Kw::Diagnostics || a1 == Kw::Diagnostics => {
            effects.uses_diagnostics = true;
        }
        Kw::Show if st.warnings => effects.uses_diagnostics = true,
        _ => {}
    }
}

/// `@@[scope.]name`: connection-bound reads, and the scope for `SET @@global.x`.
fn system_variable(text: &[u8], effects: &mut SessionEffects, st: &mut Stmt) {
    let body = text.get(2..).unwrap_or_default();
    let (scope, name) = match body.iter().position(|&b| b == b'.') {
        Some(dot) => (&body[..dot], &body[dot + 1..]),
        None => (&b""[..], body),
    };
    let is = |a: &[u8], b: &str| a.eq_ignore_ascii_case(b.as_bytes());
    let name = if ["global", "persist", "persist_only"]
        .iter()
        .any(|s| is(scope, s))
    {
        st.global_scope = true;
        name
    } else if is(scope, "session") || is(scope, "local") {
        name
    } else {
        body
    };
    if is(name, "last_insert_id") || is(name, "identity") {
        effects.uses_last_insert_id = true;
    } else if is(name, "warning_count") || is(name, "error_count") {
        effects.uses_diagnostics = true;
    }
}

/// Records the user variable `@name` (token text) as assigned: lowercased, unquoted, once.
fn add_user_var(effects: &mut SessionEffects, token: &[u8]) {
    let name = token.get(1..).unwrap_or_default();
    let name = match name {
        [q @ (b'`' | b'\'' | b'"'), rest @ ..] => {
            let inner = rest.strip_suffix(&[*q]).unwrap_or(rest);
            let mut unquoted = Vec::with_capacity(inner.len());
            let mut i = 0;
            while let Some(&b) = inner.get(i) {
                unquoted.push(b);
                // A doubled quote stands for one.
                i += if b == *q && inner.get(i + 1) == Some(q) {
                    2
                } else {
                    1
                };
            }
            String::from_utf8_lossy(&unquoted).to_lowercase()
        }
        _ => String::from_utf8_lossy(name).to_lowercase(),
    };
    if !effects.user_vars_assigned.contains(&name) {
        effects.user_vars_assigned.push(name);
    }
}
