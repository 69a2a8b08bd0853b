//! Lexer unit tests: every tricky token, invalid UTF-8, unterminated input, linear time.

use super::*;
use TokenKind::*;

type Owned = std::string::String;

fn lex(src: &str) -> Vec<(TokenKind, Owned)> {
    lex_bytes(src.as_bytes())
}

fn lex_bytes(src: &[u8]) -> Vec<(TokenKind, Owned)> {
    tokenize(src)
        .into_iter()
        .map(|t| (t.kind, Owned::from_utf8_lossy(t.text(src)).into_owned()))
        .collect()
}

fn kinds(src: &str) -> Vec<TokenKind> {
    tokenize(src.as_bytes())
        .into_iter()
        .map(|t| t.kind)
        .collect()
}

fn t(kind: TokenKind, text: &str) -> (TokenKind, Owned) {
    (kind, text.to_owned())
}

#[test]
fn point_select() {
    assert_eq!(
        lex("SELECT c FROM sbtest1 WHERE id=5"),
        vec![
            t(Word, "SELECT"),
            t(Word, "c"),
            t(Word, "FROM"),
            t(Word, "sbtest1"),
            t(Word, "WHERE"),
            t(Word, "id"),
            t(Punct, "="),
            t(Number, "5"),
        ]
    );
}

#[test]
fn strings_with_escapes_and_doubled_quotes() {
    assert_eq!(lex(r"'it''s'"), vec![t(String, "'it''s'")]);
    assert_eq!(lex(r"'a\'b' x"), vec![t(String, r"'a\'b'"), t(Word, "x")]);
    assert_eq!(
        lex(r#""say ""hi""" x"#),
        vec![t(String, r#""say ""hi""""#), t(Word, "x")]
    );
    assert_eq!(lex(r#""a\"b""#), vec![t(String, r#""a\"b""#)]);
    assert_eq!(lex(r"'a\\' b"), vec![t(String, r"'a\\'"), t(Word, "b")]);
    // A comment opener or a `;` inside a string is string.
    assert_eq!(lex("'/* -- ; #'"), vec![t(String, "'/* -- ; #'")]);
}

#[test]
fn unterminated_tokens_run_to_the_end() {
    assert_eq!(
        lex("SELECT 'abc"),
        vec![t(Word, "SELECT"), t(String, "'abc")]
    );
    assert_eq!(lex(r"'abc\"), vec![t(String, r"'abc\")]);
    assert_eq!(lex("`abc"), vec![t(QuotedIdent, "`abc")]);
    assert_eq!(
        lex("x /* never closed"),
        vec![t(Word, "x"), t(Comment, "/* never closed")]
    );
    assert_eq!(lex("/*"), vec![t(Comment, "/*")]);
    assert_eq!(lex("/*!"), vec![t(ExecOpen, "/*!")]);
    assert_eq!(lex("@'x"), vec![t(UserVar, "@'x")]);
    assert_eq!(lex("X'1F"), vec![t(Hex, "X'1F")]);
}

#[test]
fn backtick_identifiers() {
    assert_eq!(
        lex("`my``table`.`c`"),
        vec![
            t(QuotedIdent, "`my``table`"),
            t(Punct, "."),
            t(QuotedIdent, "`c`")
        ]
    );
    // No backslash escapes inside backticks.
    assert_eq!(lex(r"`a\` b"), vec![t(QuotedIdent, r"`a\`"), t(Word, "b")]);
}

#[test]
fn dash_dash_is_a_comment_only_before_space_control_or_end() {
    assert_eq!(
        lex("1 -- x\n2"),
        vec![t(Number, "1"), t(Comment, "-- x"), t(Number, "2")]
    );
    assert_eq!(
        lex("1 --\t\n2"),
        vec![t(Number, "1"), t(Comment, "--\t"), t(Number, "2")]
    );
    assert_eq!(lex("1 --"), vec![t(Number, "1"), t(Comment, "--")]);
    assert_eq!(
        lex("5--3"),
        vec![t(Number, "5"), t(Punct, "-"), t(Punct, "-"), t(Number, "3")]
    );
}

#[test]
fn hash_and_block_comments() {
    assert_eq!(
        lex("1 # x ; y\n2"),
        vec![t(Number, "1"), t(Comment, "# x ; y"), t(Number, "2")]
    );
    assert_eq!(
        lex("1/* a */2"),
        vec![t(Number, "1"), t(Comment, "/* a */"), t(Number, "2")]
    );
    assert_eq!(lex("/*+ BKA(t) */"), vec![t(Comment, "/*+ BKA(t) */")]);
    // `*/` outside an executable comment is just two operators.
    assert_eq!(
        lex("2*/3"),
        vec![t(Number, "2"), t(Punct, "*"), t(Punct, "/"), t(Number, "3")]
    );
}

#[test]
fn executable_comments_are_code() {
    assert_eq!(
        lex("/*!40101 SET NAMES utf8 */;"),
        vec![
            t(ExecOpen, "/*!40101"),
            t(Word, "SET"),
            t(Word, "NAMES"),
            t(Word, "utf8"),
            t(ExecClose, "*/"),
            t(Punct, ";"),
        ]
    );
    assert_eq!(
        lex("/*! SELECT */"),
        vec![t(ExecOpen, "/*!"), t(Word, "SELECT"), t(ExecClose, "*/")]
    );
    assert_eq!(
        lex("/*M!100101 SELECT 1*/"),
        vec![
            t(ExecOpen, "/*M!100101"),
            t(Word, "SELECT"),
            t(Number, "1"),
            t(ExecClose, "*/")
        ]
    );
    assert_eq!(
        lex("/*M! x*/"),
        vec![t(ExecOpen, "/*M!"), t(Word, "x"), t(ExecClose, "*/")]
    );
    // Only six version digits belong to the marker.
    assert_eq!(
        lex("/*!1234567 */"),
        vec![t(ExecOpen, "/*!123456"), t(Number, "7"), t(ExecClose, "*/")]
    );
    // A comment inside an executable comment, and a string holding `*/`.
    assert_eq!(
        kinds("/*!50100 a /* c */ '*/' */ b"),
        vec![ExecOpen, Word, Comment, String, ExecClose, Word]
    );
}

#[test]
fn numbers() {
    for n in [
        "1", "123", "1.5", ".5", "1.", "1e10", "1E+10", "1.5e-3", "0.0",
    ] {
        assert_eq!(lex(n), vec![t(Number, n)], "{n}");
    }
    assert_eq!(lex("1e"), vec![t(Word, "1e")]);
    assert_eq!(lex("1abc"), vec![t(Word, "1abc")]);
    assert_eq!(lex("1.5abc"), vec![t(Number, "1.5"), t(Word, "abc")]);
    assert_eq!(
        lex("1+2"),
        vec![t(Number, "1"), t(Punct, "+"), t(Number, "2")]
    );
    // A dot after an identifier qualifies it; it does not start a number.
    assert_eq!(
        lex("t.5"),
        vec![t(Word, "t"), t(Punct, "."), t(Number, "5")]
    );
    assert_eq!(
        lex("(.5)"),
        vec![t(Punct, "("), t(Number, ".5"), t(Punct, ")")]
    );
}

#[test]
fn hex_and_bit_literals() {
    assert_eq!(lex("0x1F"), vec![t(Hex, "0x1F")]);
    assert_eq!(lex("X'1F'"), vec![t(Hex, "X'1F'")]);
    assert_eq!(lex("x'1f'"), vec![t(Hex, "x'1f'")]);
    assert_eq!(lex("0b0101"), vec![t(Bit, "0b0101")]);
    assert_eq!(lex("b'01'"), vec![t(Bit, "b'01'")]);
    assert_eq!(lex("B'01'"), vec![t(Bit, "B'01'")]);
    // Not literals: identifiers that happen to start like one.
    assert_eq!(lex("0x1G"), vec![t(Word, "0x1G")]);
    assert_eq!(lex("0xg"), vec![t(Word, "0xg")]);
    assert_eq!(lex("0X1F"), vec![t(Word, "0X1F")]);
    assert_eq!(lex("0b2"), vec![t(Word, "0b2")]);
    assert_eq!(lex("x 'a'"), vec![t(Word, "x"), t(String, "'a'")]);
}

#[test]
fn introducers_and_national_strings() {
    assert_eq!(lex("_utf8mb4'x'"), vec![t(String, "_utf8mb4'x'")]);
    assert_eq!(lex("_binary'a\\'b'"), vec![t(String, "_binary'a\\'b'")]);
    assert_eq!(lex("_latin1\"x\""), vec![t(String, "_latin1\"x\"")]);
    assert_eq!(lex("N'x'"), vec![t(String, "N'x'")]);
    assert_eq!(lex("n'x'"), vec![t(String, "n'x'")]);
    assert_eq!(lex("_x"), vec![t(Word, "_x")]);
    assert_eq!(lex("_ 'x'"), vec![t(Word, "_"), t(String, "'x'")]);
}

#[test]
fn placeholders_and_operators() {
    assert_eq!(
        lex("a<=>?,b:=1->>'$.x'"),
        vec![
            t(Word, "a"),
            t(Punct, "<=>"),
            t(Placeholder, "?"),
            t(Punct, ","),
            t(Word, "b"),
            t(Punct, ":="),
            t(Number, "1"),
            t(Punct, "->>"),
            t(String, "'$.x'"),
        ]
    );
    assert_eq!(kinds("a<>b!=c>=d<=e<<f>>g&&h||i->j"), {
        let mut v = vec![Word];
        for _ in 0..9 {
            v.extend([Punct, Word]);
        }
        v
    });
}

#[test]
fn variables() {
    assert_eq!(lex("@x"), vec![t(UserVar, "@x")]);
    assert_eq!(lex("@x.y_$1"), vec![t(UserVar, "@x.y_$1")]);
    assert_eq!(lex("@`x y`"), vec![t(UserVar, "@`x y`")]);
    assert_eq!(lex("@'x y'"), vec![t(UserVar, "@'x y'")]);
    assert_eq!(lex("@\"x\""), vec![t(UserVar, "@\"x\"")]);
    assert_eq!(lex("@@x"), vec![t(SysVar, "@@x")]);
    assert_eq!(
        lex("@@session.auto_increment_increment AS a"),
        vec![
            t(SysVar, "@@session.auto_increment_increment"),
            t(Word, "AS"),
            t(Word, "a"),
        ]
    );
    assert_eq!(lex("@@`x`"), vec![t(SysVar, "@@`x`")]);
    assert_eq!(
        lex("@a:=1"),
        vec![t(UserVar, "@a"), t(Punct, ":="), t(Number, "1")]
    );
    // Account names: the `@` is a separator, not a variable.
    assert_eq!(
        lex("'u'@'localhost'"),
        vec![t(String, "'u'"), t(Punct, "@"), t(String, "'localhost'")]
    );
    assert_eq!(
        lex("`u`@`%`"),
        vec![t(QuotedIdent, "`u`"), t(Punct, "@"), t(QuotedIdent, "`%`")]
    );
    assert_eq!(
        lex("root@localhost"),
        vec![t(Word, "root"), t(Punct, "@"), t(Word, "localhost")]
    );
    assert_eq!(lex("@"), vec![t(Punct, "@")]);
    assert_eq!(lex("@@"), vec![t(SysVar, "@@")]);
}

#[test]
fn invalid_utf8_stays_inside_tokens() {
    let src = b"SELECT \xff\xfe FROM t WHERE c = '\xc3\x28' -- \xff\n";
    let toks = lex_bytes(src);
    assert_eq!(toks[0], t(Word, "SELECT"));
    assert_eq!(toks[1].0, Word);
    assert_eq!(toks[6], t(Punct, "="));
    assert_eq!(toks[7].0, String);
    assert_eq!(toks[8].0, Comment);
    assert_eq!(toks.len(), 9);
    // Lone bytes of every value never panic.
    for b in 0..=255u8 {
        let src = [b, b'\'', b, b'`', b, b'@', b, b'/', b'*', b'!', b];
        let _ = tokenize(&src);
    }
}

#[test]
fn spans_cover_the_code_and_are_ordered() {
    let src = b"SELECT /* x */ a, 'b' FROM `t` WHERE c IN (1, 2)";
    let toks = tokenize(src);
    let mut last = 0;
    for tok in toks {
        assert!(tok.start >= last && tok.end > tok.start && tok.end <= src.len());
        assert!(src[last..tok.start].iter().all(|&b| is_space(b)));
        last = tok.end;
    }
    assert_eq!(last, src.len());
}

#[test]
fn huge_inputs_lex_in_linear_time() {
    // Pathological shapes: many quotes, many comment openers, many backslashes, a long
    // unterminated comment and string. Quadratic behaviour would take minutes here.
    let n = 2_000_000;
    let cases: Vec<Vec<u8>> = vec![
        b"'".repeat(n),
        b"/*".repeat(n / 2),
        b"\\".repeat(n),
        [b"/*".as_slice(), &b"x".repeat(n)].concat(),
        [b"'".as_slice(), &b"\\'".repeat(n / 2)].concat(),
        b"/*!*/".repeat(n / 5),
        b"@@.".repeat(n / 3),
        b"1e".repeat(n / 2),
        b"-- \n".repeat(n / 4),
        b"x IN (1, ".repeat(n / 9),
    ];
    let started = std::time::Instant::now();
    for src in &cases {
        let count = Lexer::new(src).count();
        assert!(count >= 1);
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "lexing took {:?}",
        started.elapsed()
    );
}
