//! Golden analysis cases: every case in `tests/cases/analyze.toml`, checked in bulk.
//!
//! The shard rules are the shop's: `orders` (key `member_id`, gene `id`), `members` (key
//! `member_id`), `order_items` (key `member_id`, gene `order_id`), unqualified or in schema
//! `shop`; tables of any other schema are not sharded. Each case's expectation is rendered as
//! text (see the file's header), and all mismatches are printed before the test fails.

use peakgate_router::analyze::{
    Analysis, InsertInfo, KeyColumns, KeyConstraint, KeyRef, ShardKeys, TableRef, analyze,
};
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
    expected: Expected,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Expected {
    kind: Option<String>,
    error: Option<String>,
    tables: Vec<String>,
    keys: Vec<String>,
    joins: Vec<String>,
    updates_shard_key: bool,
    insert: Option<ExpectedInsert>,
    database: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct ExpectedInsert {
    columns_listed: bool,
    gene_absent: bool,
    #[serde(default)]
    from_select: bool,
    rows: Vec<String>,
}

struct Shop;

impl ShardKeys for Shop {
    fn shard_key(&self, schema: Option<&str>, table: &str) -> Option<KeyColumns> {
        if schema.is_some_and(|s| s != "shop") {
            return None;
        }
        let (key, gene) = match table {
            "orders" => ("member_id", Some("id")),
            "members" => ("member_id", None),
            "order_items" => ("member_id", Some("order_id")),
            _ => return None,
        };
        Some(KeyColumns {
            key: key.into(),
            gene: gene.map(Into::into),
        })
    }
}

fn table(t: &TableRef) -> String {
    let mut out = String::new();
    if let Some(schema) = &t.schema {
        out.push_str(schema);
        out.push('.');
    }
    out.push_str(&t.name);
    if let Some(alias) = &t.alias {
        out.push_str(" AS ");
        out.push_str(alias);
    }
    out
}

fn key(k: &KeyRef) -> String {
    match k {
        KeyRef::Int(n) => n.to_string(),
        KeyRef::Str(s) => format!("'{s}'"),
        KeyRef::Param(i) => format!("?{i}"),
        KeyRef::Gene(n) => format!("gene {n}"),
        KeyRef::GeneParam(i) => format!("gene ?{i}"),
    }
}

fn keys(a: &Analysis) -> Vec<String> {
    a.sharded
        .iter()
        .map(|s| {
            let name = a.tables.get(s.table).map(table).unwrap_or_default();
            match &s.constraint {
                KeyConstraint::Any => format!("{name}: any"),
                KeyConstraint::Values(values) => format!(
                    "{name}: {}",
                    values.iter().map(key).collect::<Vec<_>>().join(", ")
                ),
            }
        })
        .collect()
}

fn joins(a: &Analysis) -> Vec<String> {
    let side = |c: &peakgate_router::analyze::ColumnRef| {
        let t = a.tables.get(c.table);
        let name = t
            .map(|t| t.alias.clone().unwrap_or_else(|| t.name.clone()))
            .unwrap_or_default();
        format!("{name}.{}", c.column)
    };
    a.joins
        .iter()
        .map(|j| format!("{} = {}", side(&j.left), side(&j.right)))
        .collect()
}

fn insert(sql: &str, i: &InsertInfo) -> ExpectedInsert {
    ExpectedInsert {
        columns_listed: i.columns_listed,
        gene_absent: i.gene_absent,
        from_select: i.from_select,
        rows: i
            .rows
            .iter()
            .map(|r| {
                let k = r.key.as_ref().map_or_else(|| "none".to_owned(), key);
                format!("{k} @ {}", sql.get(r.span.clone()).unwrap_or("<bad span>"))
            })
            .collect(),
    }
}

fn mismatches(case: &Case) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: &str, expected: String, actual: String| {
        if expected != actual {
            out.push(format!(
                "  {what}: expected {expected}\n  {what}:      got {actual}"
            ));
        }
    };
    let e = &case.expected;
    let got = analyze(&case.sql, &Shop);
    match (&e.error, got) {
        (Some(needle), Err(err)) => {
            let message = err.to_string();
            if !message.contains(needle.as_str()) {
                check("error", format!("containing {needle:?}"), message);
            }
        }
        (Some(needle), Ok(a)) => check("error", format!("{needle:?}"), format!("{a:?}")),
        (None, Err(err)) => check("result", "an analysis".into(), err.to_string()),
        (None, Ok(a)) => {
            check(
                "kind",
                format!("{:?}", e.kind),
                format!("{:?}", Some(a.kind.as_str())),
            );
            let tables: Vec<String> = a.tables.iter().map(table).collect();
            check("tables", format!("{:?}", e.tables), format!("{tables:?}"));
            check("keys", format!("{:?}", e.keys), format!("{:?}", keys(&a)));
            check(
                "joins",
                format!("{:?}", e.joins),
                format!("{:?}", joins(&a)),
            );
            check(
                "updates_shard_key",
                e.updates_shard_key.to_string(),
                a.updates_shard_key.to_string(),
            );
            let got_insert = a.insert.as_ref().map(|i| insert(&case.sql, i));
            check(
                "insert",
                format!("{:?}", e.insert),
                format!("{got_insert:?}"),
            );
            let database = a.ddl.as_ref().and_then(|d| d.database.clone());
            check(
                "database",
                format!("{:?}", e.database),
                format!("{database:?}"),
            );
        }
    }
    out
}

#[test]
fn analyze_golden_cases() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cases/analyze.toml");
    let text = std::fs::read_to_string(path).expect("golden file is readable");
    let file: File = toml::from_str(&text).expect("golden file is valid TOML of cases");
    assert!(file.case.len() >= 60, "only {} cases", file.case.len());
    let total = file.case.len();
    let failures: Vec<String> = file
        .case
        .iter()
        .filter_map(|case| {
            let diffs = mismatches(case);
            (!diffs.is_empty()).then(|| {
                format!(
                    "case {:?}\n  sql: {}\n{}",
                    case.comment,
                    case.sql,
                    diffs.join("\n")
                )
            })
        })
        .collect();
    println!("{total} analysis cases");
    assert!(
        failures.is_empty(),
        "{} of {total} analysis cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
