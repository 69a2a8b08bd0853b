//! Property tests: the classifier never panics and keeps its invariants on arbitrary bytes, and the
//! digest depends on a statement's shape only (not on whitespace, comments, keyword case or literal
//! values).

use peakgate_router::digest::fnv1a64;
use peakgate_router::lexer::Lexer;
use peakgate_router::{Classifier, Statement, hints::parse_hints};
use proptest::prelude::*;

fn check_invariants(sql: &[u8], st: &Statement) -> Result<(), TestCaseError> {
    prop_assert_eq!(st.digest, fnv1a64(st.digest_text.as_bytes()));
    let mut last = 0;
    for range in &st.literals {
        prop_assert!(range.start >= last && range.start < range.end && range.end <= sql.len());
        last = range.end;
    }
    if st.keyword.is_empty() {
        prop_assert!(
            st.kind == peakgate_router::StatementKind::Unknown || st.multi,
            "no keyword but kind {:?}",
            st.kind
        );
    }
    Ok(())
}

/// Bytes drawn mostly from SQL's special characters, so that quotes, comments, executable
/// comments, variables and nesting all get exercised.
fn sqlish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        "SELECT ",
        "select",
        " FROM t",
        " WHERE ",
        "id",
        "=",
        "?",
        "'",
        "\"",
        "`",
        "\\",
        "--",
        "-- ",
        "#",
        "\n",
        "/*",
        "*/",
        "/*!",
        "/*!40101",
        "/*M!",
        "@",
        "@@",
        "@`",
        ":=",
        "(",
        ")",
        ",",
        ";",
        "0x",
        "X'",
        "b'",
        "_utf8mb4'",
        "N'",
        "1",
        ".5",
        "1e",
        "e10",
        "IN (",
        "VALUES (",
        "INTO @a",
        "FOR UPDATE",
        "LOCK IN SHARE MODE",
        "GET_LOCK(",
        "SET ",
        "SET STATEMENT x=1 FOR ",
        "WITH ",
        "CREATE PROCEDURE p() BEGIN ",
        "END",
        "DROP TEMPORARY TABLE ",
        "XA START ",
        "\u{e9}",
        "\u{0}",
        "/* peakgate: route=replica shard=s1 */",
        "-",
        "+",
        " ",
        "\t",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn classify_never_panics_on_arbitrary_bytes(sql in prop::collection::vec(any::<u8>(), 0..300)) {
        let classifier = Classifier::new(8);
        let st = classifier.classify(&sql);
        check_invariants(&sql, &st)?;
        let _ = parse_hints(&sql);
        let tokens: Vec<_> = Lexer::new(&sql).collect();
        for pair in tokens.windows(2) {
            prop_assert!(pair[0].end <= pair[1].start);
        }
    }

    #[test]
    fn classify_never_panics_on_sqlish_text(sql in sqlish_bytes()) {
        let classifier = Classifier::new(8);
        let st = classifier.classify(&sql);
        check_invariants(&sql, &st)?;
        // The cached verdict is the same verdict.
        let again = classifier.classify(&sql);
        prop_assert_eq!((st.kind, st.parsed, st.digest), (again.kind, again.parsed, again.digest));
    }
}

/// A slot in a statement template.
#[derive(Clone, Debug)]
enum Part {
    /// Keyword or identifier: its case may change.
    Word(&'static str),
    /// Punctuation.
    Punct(&'static str),
    /// Any literal.
    Literal,
    /// An IN list of 1..8 literals, parentheses included.
    List,
}

use Part::{List, Literal as Lit, Punct as P, Word as W};

fn templates() -> Vec<Vec<Part>> {
    vec![
        vec![
            W("SELECT"),
            W("c"),
            W("FROM"),
            W("sbtest1"),
            W("WHERE"),
            W("id"),
            P("="),
            Lit,
        ],
        vec![
            W("SELECT"),
            W("DISTINCT"),
            W("c"),
            W("FROM"),
            W("sbtest1"),
            W("WHERE"),
            W("id"),
            W("BETWEEN"),
            Lit,
            W("AND"),
            Lit,
            W("ORDER"),
            W("BY"),
            W("c"),
        ],
        vec![
            W("UPDATE"),
            W("sku_stock"),
            W("SET"),
            W("stock"),
            P("="),
            W("stock"),
            P("-"),
            Lit,
            W("WHERE"),
            W("sku_id"),
            P("="),
            Lit,
            W("AND"),
            W("stock"),
            P(">="),
            Lit,
        ],
        vec![
            W("INSERT"),
            W("INTO"),
            W("orders"),
            P("("),
            W("order_id"),
            P(","),
            W("member_id"),
            P(","),
            W("note"),
            P(")"),
            W("VALUES"),
            P("("),
            Lit,
            P(","),
            Lit,
            P(","),
            Lit,
            P(")"),
        ],
        vec![
            W("SELECT"),
            W("sku_id"),
            P(","),
            W("stock"),
            W("FROM"),
            W("sku_stock"),
            W("WHERE"),
            W("sku_id"),
            W("IN"),
            List,
            W("AND"),
            W("stock"),
            P(">"),
            Lit,
            W("LIMIT"),
            Lit,
        ],
        vec![
            W("SET"),
            P("@x"),
            P(":="),
            Lit,
            P(","),
            W("autocommit"),
            P("="),
            Lit,
        ],
        vec![
            W("SELECT"),
            W("COUNT"),
            P("("),
            P("*"),
            P(")"),
            W("FROM"),
            W("t"),
            W("WHERE"),
            P("("),
            W("a"),
            P("="),
            Lit,
            W("OR"),
            W("b"),
            P("<>"),
            Lit,
            P(")"),
        ],
    ]
}

fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (any::<u32>(), 0u32..1000).prop_map(|(a, b)| format!("{a}.{b}")),
        (1u32..99, -20i32..20).prop_map(|(m, e)| format!("{m}e{e}")),
        "[a-zA-Z0-9 ]{0,12}".prop_map(|s| format!("'{s}'")),
        "[a-z]{0,6}".prop_map(|s| format!("'it''s {s}'")),
        "[a-z]{0,6}".prop_map(|s| format!(r"'a\'b {s}'")),
        "[a-z]{0,6}".prop_map(|s| format!("\"{s}\"")),
        "[0-9A-F]{2,8}".prop_map(|s| format!("X'{s}'")),
        "[0-9a-f]{1,8}".prop_map(|s| format!("0x{s}")),
        "[01]{1,8}".prop_map(|s| format!("b'{s}'")),
        "[a-z]{0,6}".prop_map(|s| format!("_utf8mb4'{s}'")),
        Just("?".to_owned()),
    ]
}

fn separator() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[ \t\n\r]{1,3}",
        1 => Just(" /* note */ ".to_owned()),
        1 => Just(" -- note\n".to_owned()),
        1 => Just(" # note\n".to_owned()),
    ]
}

/// Renders a template with the given literals, separators and keyword cases.
fn render(
    template: &[Part],
    literals: &mut impl Iterator<Item = String>,
    lists: &mut impl Iterator<Item = Vec<String>>,
    seps: &mut impl Iterator<Item = String>,
    upper: &mut impl Iterator<Item = bool>,
) -> String {
    let mut out = String::new();
    for (i, part) in template.iter().enumerate() {
        if i > 0 {
            out.push_str(&seps.next().unwrap_or_else(|| " ".into()));
        }
        match part {
            Part::Word(w) if upper.next().unwrap_or(true) => out.push_str(&w.to_uppercase()),
            Part::Word(w) => out.push_str(&w.to_lowercase()),
            Part::Punct(p) => out.push_str(p),
            Part::Literal => out.push_str(&literals.next().unwrap_or_else(|| "1".into())),
            Part::List => {
                let items = lists.next().unwrap_or_else(|| vec!["1".into()]);
                out.push('(');
                // Between list items: a comma and any whitespace (comments too).
                let sep = format!(",{}", seps.next().unwrap_or_default());
                out.push_str(&items.join(&sep));
                out.push(')');
            }
        }
    }
    out
}

fn canonical(template: &[Part]) -> String {
    let mut lits = std::iter::repeat_with(|| "1".to_owned());
    let mut lists = std::iter::repeat_with(|| vec!["1".to_owned()]);
    let mut seps = std::iter::repeat_with(|| " ".to_owned());
    let mut upper = std::iter::repeat(true);
    render(template, &mut lits, &mut lists, &mut seps, &mut upper)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn digest_depends_on_shape_only(
        which in 0usize..7,
        literals in prop::collection::vec(literal(), 8),
        lists in prop::collection::vec(prop::collection::vec(literal(), 1..8), 2),
        seps in prop::collection::vec(separator(), 40),
        upper in prop::collection::vec(any::<bool>(), 40),
    ) {
        let template = &templates()[which];
        let sql = render(
            template,
            &mut literals.into_iter(),
            &mut lists.into_iter(),
            &mut seps.into_iter(),
            &mut upper.into_iter(),
        );
        let reference = canonical(template);
        let classifier = Classifier::new(16);
        let got = classifier.classify(sql.as_bytes());
        let want = classifier.classify(reference.as_bytes());
        prop_assert_eq!(&got.digest_text, &want.digest_text, "sql: {}", sql);
        prop_assert_eq!(got.digest, want.digest);
        prop_assert_eq!(got.kind, want.kind);
        prop_assert_eq!(got.keyword, want.keyword);
    }
}
