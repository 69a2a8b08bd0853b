//! Golden classification cases: every case in `tests/cases/classify.toml`, checked in bulk.
//!
//! All mismatches are collected and printed before the test fails, so one run shows every rule
//! that moved. Fields a case leaves out are checked against their defaults where the file's header
//! says so (no effects, no hints, not multi, not a locking read).

use std::collections::BTreeMap;

use peakgate_router::{Classifier, RouteHint, SessionEffects, Statement, StatementKind};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    comment: String,
    sql: String,
    kind: String,
    keyword: String,
    digest_text: Option<String>,
    literals: Option<Vec<String>>,
    #[serde(default)]
    locking_read: bool,
    #[serde(default)]
    multi: bool,
    parsed: Option<bool>,
    #[serde(default)]
    hints: ExpectedHints,
    #[serde(default)]
    effects: ExpectedEffects,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedHints {
    route: Option<String>,
    shard: Option<String>,
}

/// Mirrors [`SessionEffects`]; every field defaults to "no effect".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ExpectedEffects {
    creates_temp_table: bool,
    drops_temp_tables: u32,
    get_lock: bool,
    release_lock: bool,
    release_all_locks: bool,
    lock_tables: bool,
    unlock_tables: bool,
    calc_found_rows: bool,
    set_transaction_next: bool,
    user_vars_assigned: Vec<String>,
    sql_prepare: bool,
    pins_connection: bool,
    uses_last_insert_id: bool,
    uses_found_rows: bool,
    uses_diagnostics: bool,
}

impl From<ExpectedEffects> for SessionEffects {
    fn from(e: ExpectedEffects) -> Self {
        SessionEffects {
            creates_temp_table: e.creates_temp_table,
            drops_temp_tables: e.drops_temp_tables,
            get_lock: e.get_lock,
            release_lock: e.release_lock,
            release_all_locks: e.release_all_locks,
            lock_tables: e.lock_tables,
            unlock_tables: e.unlock_tables,
            calc_found_rows: e.calc_found_rows,
            set_transaction_next: e.set_transaction_next,
            user_vars_assigned: e.user_vars_assigned,
            sql_prepare: e.sql_prepare,
            pins_connection: e.pins_connection,
            uses_last_insert_id: e.uses_last_insert_id,
            uses_found_rows: e.uses_found_rows,
            uses_diagnostics: e.uses_diagnostics,
        }
    }
}

fn load() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cases/classify.toml");
    let text = std::fs::read_to_string(path).expect("golden file is readable");
    let file: File = toml::from_str(&text).expect("golden file is valid TOML of cases");
    file.case
}

/// Every way `got` differs from `case`, as readable lines.
fn mismatches(case: Case, got: &Statement) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: &str, expected: String, actual: String| {
        if expected != actual {
            out.push(format!("  {what}: expected {expected}, got {actual}"));
        }
    };
    match StatementKind::from_name(&case.kind) {
        Some(kind) => check("kind", kind.as_str().into(), got.kind.as_str().into()),
        None => check(
            "kind",
            format!("a known kind (not {:?})", case.kind),
            String::new(),
        ),
    }
    check(
        "keyword",
        format!("{:?}", case.keyword),
        format!("{:?}", got.keyword),
    );
    if let Some(text) = case.digest_text {
        check(
            "digest_text",
            format!("{text:?}"),
            format!("{:?}", got.digest_text),
        );
    }
    if let Some(literals) = case.literals {
        let actual: Vec<String> = got
            .literals
            .iter()
            .map(|r| {
                case.sql
                    .get(r.clone())
                    .unwrap_or("<not a char boundary>")
                    .to_owned()
            })
            .collect();
        check("literals", format!("{literals:?}"), format!("{actual:?}"));
    }
    check(
        "locking_read",
        case.locking_read.to_string(),
        got.locking_read.to_string(),
    );
    check("multi", case.multi.to_string(), got.multi.to_string());
    if let Some(parsed) = case.parsed {
        check("parsed", parsed.to_string(), got.parsed.to_string());
    }
    let route = case.hints.route.as_deref().map(|r| {
        RouteHint::parse(r.as_bytes())
            .map_or_else(|| format!("unknown route {r:?}"), |h| format!("{h:?}"))
    });
    check(
        "hints.route",
        format!("{route:?}"),
        format!("{:?}", got.hints.route.map(|h| format!("{h:?}"))),
    );
    check(
        "hints.shard",
        format!("{:?}", case.hints.shard),
        format!("{:?}", got.hints.shard),
    );
    let effects = SessionEffects::from(case.effects);
    check(
        "effects",
        format!("{effects:?}"),
        format!("{:?}", got.effects),
    );
    out
}

#[test]
fn golden_cases() {
    let cases = load();
    assert!(cases.len() >= 70, "only {} golden cases", cases.len());
    let classifier = Classifier::new(1024);
    let mut failures = Vec::new();
    let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
    let total = cases.len();
    for case in cases {
        let got = classifier.classify(case.sql.as_bytes());
        *kinds.entry(got.kind.as_str()).or_default() += 1;
        let header = format!("case {:?}\n  sql: {}", case.comment, case.sql);
        let diffs = mismatches(case, &got);
        if !diffs.is_empty() {
            failures.push(format!("{header}\n{}", diffs.join("\n")));
        }
    }
    println!("{total} golden cases, by kind: {kinds:?}");
    assert!(
        failures.is_empty(),
        "{} of {total} golden cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn golden_cases_are_stable_across_cache_hits() {
    // A second pass answers from the cache: the verdict must not change.
    let classifier = Classifier::new(1024);
    for case in load() {
        let first = classifier.classify(case.sql.as_bytes());
        let second = classifier.classify(case.sql.as_bytes());
        assert_eq!(
            (first.kind, first.parsed, first.digest),
            (second.kind, second.parsed, second.digest),
            "{}",
            case.comment
        );
    }
}
