//! sqlparser's verdict on a statement: whether MySqlDialect accepts it, and the kind it implies.
//!
//! Runs once per new digest (see [`super::Classifier`]). The text handed to sqlparser is the raw
//! statement with executable-comment markers (`/*!40101`, `/*M!`, their `*/`) blanked out, so that
//! sqlparser sees exactly the code the lexer classified.

use std::panic::{AssertUnwindSafe, catch_unwind};

use sqlparser::ast::{self, SetExpr};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use super::scan::Complexity;
use super::{Statement, StatementKind};
use crate::Error;
use crate::lexer::{Lexer, TokenKind};

/// Deepest paren nesting handed to sqlparser. Its own recursion limit (50) rejects deeper
/// statements anyway; checking first keeps hostile nesting away from its stack entirely.
pub(super) const MAX_PARSER_DEPTH: u32 = 48;

/// Most binary operators handed to sqlparser. It builds `a + b + c ...` and `... UNION ...` chains
/// iteratively, but their AST is dropped recursively, one stack frame pair per operator: 50,000
/// of them overflow a 2 MiB thread stack (an abort, not a panic), 20,000 do on the error path in a
/// debug build. 2,000 leaves a wide margin; longer statements are classified by the lexer alone.
pub(super) const MAX_PARSER_OPERATORS: u32 = 2_000;

/// `(parsed, kind)` for `sql`, whose lexer pass produced `scanned`.
pub(super) fn verdict(
    sql: &[u8],
    scanned: &Statement,
    complexity: Complexity,
) -> (bool, StatementKind) {
    if scanned.digest_text.is_empty() {
        return (false, scanned.kind);
    }
    match parse(sql, complexity) {
        Ok(statements) if !statements.is_empty() => {
            (true, refine(scanned.kind, scanned.multi, &statements))
        }
        _ => (false, scanned.kind),
    }
}

/// Parses `sql` (of the given complexity) with MySqlDialect. Never panics, never overflows.
pub(super) fn parse(sql: &[u8], complexity: Complexity) -> Result<Vec<ast::Statement>, Error> {
    if complexity.max_depth > MAX_PARSER_DEPTH {
        return Err(Error::TooDeep {
            depth: complexity.max_depth,
            limit: MAX_PARSER_DEPTH,
        });
    }
    if complexity.operators > MAX_PARSER_OPERATORS {
        return Err(Error::TooComplex {
            operators: complexity.operators,
            limit: MAX_PARSER_OPERATORS,
        });
    }
    let text = std::str::from_utf8(sql).map_err(|e| Error::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let code = blank_exec_markers(text);
    catch_unwind(AssertUnwindSafe(|| {
        Parser::parse_sql(&MySqlDialect {}, &code)
    }))
    .map_err(|_| Error::ParserPanicked)?
    .map_err(|e| Error::Parse(e.to_string()))
}

/// `text` with executable-comment markers replaced by spaces (same length, still valid UTF-8:
/// the markers are ASCII).
fn blank_exec_markers(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut markers = Lexer::new(bytes)
        .filter(|t| matches!(t.kind, TokenKind::ExecOpen | TokenKind::ExecClose))
        .peekable();
    if markers.peek().is_none() {
        return text.to_owned();
    }
    let mut code = bytes.to_vec();
    for marker in markers {
        code[marker.start..marker.end].fill(b' ');
    }
    String::from_utf8(code).unwrap_or_else(|_| text.to_owned())
}

/// The lexer's kind, refined by what sqlparser saw. sqlparser may only move a statement towards
/// the primary (`Read` -> `Write`/`Ddl`): the lexer knows MySQL's corners (`INTO OUTFILE`,
/// `FOR UPDATE`, `SET GLOBAL`) better than a generic parser does, and sqlparser accepts other
/// dialects' statements (`END` as `COMMIT`, `COPY`, `PRAGMA`), so its name for a statement the
/// lexer does not know is no evidence that MySQL knows it.
fn refine(lexer: StatementKind, multi: bool, statements: &[ast::Statement]) -> StatementKind {
    let [statement] = statements else {
        return lexer;
    };
    if multi {
        return lexer;
    }
    match (lexer, kind_of(statement)) {
        (StatementKind::Read, Some(parser @ (StatementKind::Write | StatementKind::Ddl))) => parser,
        _ => lexer,
    }
}

/// The kind sqlparser's AST implies, where it is unambiguous.
fn kind_of(statement: &ast::Statement) -> Option<StatementKind> {
    use ast::Statement as S;
    Some(match statement {
        S::Query(query) => kind_of_query(query),
        S::Insert(_) | S::Update(_) | S::Delete(_) | S::Merge(_) | S::Call(_) => {
            StatementKind::Write
        }
        S::LoadData { .. } => StatementKind::Write,
        S::Explain {
            analyze, statement, ..
        } => {
            if *analyze && kind_of(statement) == Some(StatementKind::Write) {
                StatementKind::Write
            } else {
                StatementKind::Read
            }
        }
        S::ExplainTable { .. } => StatementKind::Read,
        S::CreateTable(_)
        | S::CreateView(_)
        | S::CreateIndex(_)
        | S::AlterTable(_)
        | S::Drop { .. }
        | S::Truncate(_)
        | S::RenameTable(_) => StatementKind::Ddl,
        S::StartTransaction { .. } => StatementKind::TxnBegin,
        S::Commit { .. } => StatementKind::TxnEnd,
        S::Rollback { savepoint, .. } => {
            if savepoint.is_some() {
                StatementKind::Session
            } else {
                StatementKind::TxnEnd
            }
        }
        S::Savepoint { .. } | S::ReleaseSavepoint { .. } | S::Use(_) => StatementKind::Session,
        _ => return None,
    })
}

fn kind_of_query(query: &ast::Query) -> StatementKind {
    kind_of_set_expr(&query.body)
}

fn kind_of_set_expr(body: &SetExpr) -> StatementKind {
    match body {
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
            StatementKind::Write
        }
        SetExpr::Query(query) => kind_of_query(query),
        SetExpr::SetOperation { left, right, .. } => {
            if kind_of_set_expr(left) == StatementKind::Write
                || kind_of_set_expr(right) == StatementKind::Write
            {
                StatementKind::Write
            } else {
                StatementKind::Read
            }
        }
        _ => StatementKind::Read,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_blanked_in_place() {
        let text = "/*!40101 SET NAMES utf8 */; /*M!100101 SELECT 1*/";
        let code = blank_exec_markers(text);
        assert_eq!(code.len(), text.len());
        let expected = format!(
            "{}SET NAMES utf8{};{}SELECT 1{}",
            " ".repeat(9),
            " ".repeat(3),
            " ".repeat(12),
            " ".repeat(2)
        );
        assert_eq!(code, expected);
    }

    const SIMPLE: Complexity = Complexity {
        max_depth: 0,
        operators: 0,
    };

    #[test]
    fn parse_errors_are_reported_not_panicked() {
        assert!(matches!(parse(b"SELEC 1", SIMPLE), Err(Error::Parse(_))));
        assert!(matches!(
            parse(b"SELECT '\xff'", SIMPLE),
            Err(Error::InvalidUtf8 { valid_up_to: 8 })
        ));
        let deep = Complexity {
            max_depth: 49,
            ..SIMPLE
        };
        assert!(matches!(
            parse(b"SELECT 1", deep),
            Err(Error::TooDeep { .. })
        ));
        let long = Complexity {
            operators: 2_001,
            ..SIMPLE
        };
        assert!(matches!(
            parse(b"SELECT 1", long),
            Err(Error::TooComplex { .. })
        ));
        assert_eq!(parse(b"SELECT 1", SIMPLE).map(|s| s.len()).ok(), Some(1));
    }

    #[test]
    fn with_delete_is_a_write_to_sqlparser() {
        let sql = b"WITH x AS (SELECT 1) DELETE FROM t WHERE id IN (SELECT * FROM x)";
        let statements = parse(sql, SIMPLE);
        if let Ok(statements) = statements {
            assert_eq!(
                refine(StatementKind::Read, false, &statements),
                StatementKind::Write
            );
        }
    }
}
