//! DDL that sqlparser cannot read (MariaDB syntax such as `ALTER TABLE t ADD COLUMN IF NOT EXISTS`
//! in some positions), read by the lexer instead: when the statement's shape says which one table
//! it changes, that is all routing needs (DDL on a sharded table runs on every shard).

use super::{Analysis, DdlInfo, StatementType, TableRef};
use crate::lexer::{Lexer, Token, TokenKind};

/// The analysis of a DDL statement that changes exactly one table, found by its shape:
/// `ALTER [ONLINE] [IGNORE] TABLE [IF EXISTS] t ...`, `TRUNCATE [TABLE] t`,
/// `CREATE [OR REPLACE] [UNIQUE|FULLTEXT|SPATIAL] INDEX [IF NOT EXISTS] i ... ON t ...`,
/// `DROP INDEX [IF EXISTS] i ON t`. `None` for anything else (several statements, other DDL).
pub fn lexed_ddl(sql: &str) -> Option<Analysis> {
    let src = sql.as_bytes();
    let toks: Vec<Token> = Lexer::new(src).filter(|t| !t.kind.is_trivia()).collect();
    // One statement (a trailing `;` allowed).
    let semis = toks.iter().filter(|t| t.is_punct(src, b";")).count();
    if semis > 1 || (semis == 1 && !toks.last().is_some_and(|t| t.is_punct(src, b";"))) {
        return None;
    }
    let word = |i: usize| -> Option<String> {
        toks.get(i)
            .filter(|t| t.kind == TokenKind::Word)
            .map(|t| String::from_utf8_lossy(t.text(src)).to_ascii_uppercase())
    };
    let is = |i: usize, w: &str| word(i).as_deref() == Some(w);
    let mut i = 1;
    let at = match word(0)?.as_str() {
        "ALTER" => {
            while is(i, "ONLINE") || is(i, "IGNORE") {
                i += 1;
            }
            if !is(i, "TABLE") {
                return None;
            }
            i += 1;
            if is(i, "IF") && is(i + 1, "EXISTS") {
                i += 2;
            }
            i
        }
        "TRUNCATE" => {
            if is(i, "TABLE") {
                i += 1;
            }
            i
        }
        "CREATE" | "DROP" => {
            if is(i, "OR") && is(i + 1, "REPLACE") {
                i += 2;
            }
            if is(i, "UNIQUE") || is(i, "FULLTEXT") || is(i, "SPATIAL") {
                i += 1;
            }
            if !is(i, "INDEX") {
                return None;
            }
            // The table follows the first ON (index names and options come before it).
            let on = (i + 1..toks.len()).find(|&j| is(j, "ON"))?;
            on + 1
        }
        _ => return None,
    };
    let (table, _) = table_name(src, &toks, at)?;
    Some(Analysis {
        kind: StatementType::Ddl,
        tables: vec![table],
        sharded: Vec::new(),
        joins: Vec::new(),
        insert: None,
        updates_shard_key: false,
        ddl: Some(DdlInfo { database: None }),
    })
}

/// `name` or `schema.name` (either part bare or backtick-quoted) at token `i`; also the index
/// after it.
fn table_name(src: &[u8], toks: &[Token], i: usize) -> Option<(TableRef, usize)> {
    let first = ident(src, toks.get(i)?)?;
    if toks.get(i + 1).is_some_and(|t| t.is_punct(src, b".")) {
        let second = ident(src, toks.get(i + 2)?)?;
        return Some((
            TableRef {
                schema: Some(first),
                name: second,
                alias: None,
            },
            i + 3,
        ));
    }
    Some((
        TableRef {
            schema: None,
            name: first,
            alias: None,
        },
        i + 1,
    ))
}

/// An identifier's name (backticks removed, doubled backticks undone).
fn ident(src: &[u8], t: &Token) -> Option<String> {
    let text = String::from_utf8_lossy(t.text(src));
    match t.kind {
        TokenKind::Word => Some(text.into_owned()),
        TokenKind::QuotedIdent => Some(
            text.strip_prefix('`')?
                .strip_suffix('`')?
                .replace("``", "`"),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(sql: &str) -> Option<(Option<String>, String)> {
        lexed_ddl(sql).map(|a| {
            assert_eq!(a.kind, StatementType::Ddl);
            let t = a.tables.into_iter().next().expect("one table");
            (t.schema, t.name)
        })
    }

    #[test]
    fn the_one_table_of_ddl() {
        let t = |s: Option<&str>, n: &str| Some((s.map(String::from), n.to_string()));
        assert_eq!(
            table("ALTER TABLE members ADD COLUMN IF NOT EXISTS phone VARCHAR(32) NULL AFTER tier"),
            t(None, "members")
        );
        assert_eq!(
            table("alter online ignore table if exists `shop`.`mem``bers` add x int;"),
            t(Some("shop"), "mem`bers")
        );
        assert_eq!(
            table("/* m */ ALTER TABLE shop.orders ADD INDEX IF NOT EXISTS i (a)"),
            t(Some("shop"), "orders")
        );
        assert_eq!(table("TRUNCATE TABLE orders"), t(None, "orders"));
        assert_eq!(table("truncate orders"), t(None, "orders"));
        assert_eq!(
            table("CREATE UNIQUE INDEX IF NOT EXISTS i USING BTREE ON orders (a)"),
            t(None, "orders")
        );
        assert_eq!(
            table("DROP INDEX IF EXISTS i ON shop.orders"),
            t(Some("shop"), "orders")
        );
    }

    #[test]
    fn other_statements_are_not_guessed() {
        for sql in [
            "ALTER TABLE a ADD x INT; ALTER TABLE b ADD y INT",
            "ALTER DATABASE shop CHARACTER SET utf8mb4",
            "CREATE TABLE t (a INT)",
            "DROP TABLE a, b",
            "ALTER TABLE 'x' ADD y INT",
            "SELECT 1",
            "ALTER TABLE",
        ] {
            assert!(lexed_ddl(sql).is_none(), "{sql}");
        }
    }
}
