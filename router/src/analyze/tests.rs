//! Unit tests for the analysis: what the golden file cannot show (spans, hostile input).

use super::*;

struct Shop;

impl ShardKeys for Shop {
    fn shard_key(&self, _schema: Option<&str>, table: &str) -> Option<KeyColumns> {
        match table {
            "orders" => Some(KeyColumns {
                key: "member_id".into(),
                gene: Some("id".into()),
            }),
            "members" => Some(KeyColumns {
                key: "member_id".into(),
                gene: None,
            }),
            _ => None,
        }
    }
}

#[test]
fn insert_row_spans_slice_the_tuples_even_after_multibyte_text() {
    let sql = "INSERT INTO orders (member_id, note) VALUES ('é', 'ü'), (?, 'x')";
    let analysis = analyze(sql, &Shop).expect("parses");
    let insert = analysis.insert.expect("an insert");
    let rows: Vec<&str> = insert.rows.iter().map(|r| &sql[r.span.clone()]).collect();
    assert_eq!(rows, ["('é', 'ü')", "(?, 'x')"]);
    assert_eq!(insert.rows[1].key, Some(KeyRef::Param(0)));
    assert!(insert.gene_absent);
}

#[test]
fn long_and_chains_do_not_recurse() {
    // 990 conjuncts: 1,981 operators with the `=`s, just under the guard.
    let conjuncts: Vec<String> = (0..990).map(|i| format!("x{i} = {i}")).collect();
    let sql = format!(
        "SELECT * FROM orders WHERE {} AND member_id = 7",
        conjuncts.join(" AND ")
    );
    let analysis = analyze(&sql, &Shop).expect("parses");
    assert_eq!(
        analysis.sharded[0].constraint,
        KeyConstraint::Values(vec![KeyRef::Int(7)])
    );
}

#[test]
fn too_deep_is_an_error_not_a_crash() {
    let sql = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
    assert!(matches!(
        analyze(&sql, &Shop),
        Err(AnalyzeError::Unparseable(_))
    ));
}
