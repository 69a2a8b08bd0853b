//! Unit tests for the merge: the shard SQL rewrite, the spec, and the merger's modes. The
//! property tests against a reference evaluator are in `tests/merge_props.rs`.

use super::*;
use ColumnType::{Bytes, Decimal, Float, Int};

fn spec(sql: &str) -> MergeSpec {
    match merge_spec(sql) {
        Ok(spec) => spec,
        Err(e) => panic!("{sql}: {e}"),
    }
}

fn cell(text: &str) -> Cell {
    (text != "NULL").then(|| text.as_bytes().to_vec())
}

fn rows(rows: &[&[&str]]) -> Vec<Row> {
    rows.iter()
        .map(|r| r.iter().map(|c| cell(c)).collect())
        .collect()
}

fn merged(sql: &str, types: &[ColumnType], shards: &[&[&[&str]]]) -> Vec<Vec<String>> {
    let spec = spec(sql);
    let shards = shards.iter().map(|s| rows(s)).collect();
    let out = match merge_all(&spec, types.to_vec(), shards) {
        Ok(out) => out,
        Err(e) => panic!("{sql}: {e}"),
    };
    out.into_iter()
        .map(|r| {
            r.into_iter()
                .map(|c| {
                    c.map_or_else(
                        || "NULL".into(),
                        |v| String::from_utf8_lossy(&v).into_owned(),
                    )
                })
                .collect()
        })
        .collect()
}

#[test]
fn limit_offset_becomes_one_limit_on_the_shards() {
    let s = spec("SELECT id, created_at FROM orders ORDER BY created_at DESC LIMIT 20 OFFSET 40");
    assert_eq!(
        s.shard_sql,
        "SELECT id, created_at FROM orders ORDER BY created_at DESC LIMIT 60"
    );
    assert_eq!((s.limit, s.offset), (Some(20), 40));
    let s = spec("SELECT id FROM orders ORDER BY id LIMIT 10, 5 FOR UPDATE");
    assert_eq!(
        s.shard_sql,
        "SELECT id FROM orders ORDER BY id LIMIT 15 FOR UPDATE"
    );
    assert_eq!((s.limit, s.offset), (Some(5), 10));
}

#[test]
fn order_by_columns_outside_the_list_are_hidden() {
    let s = spec(
        "SELECT id FROM `orders` /* keep */ WHERE note = 'a\\'b' ORDER BY created_at DESC LIMIT 20",
    );
    assert_eq!(
        s.shard_sql,
        "SELECT id, created_at FROM `orders` /* keep */ WHERE note = 'a\\'b' ORDER BY created_at DESC LIMIT 20"
    );
    assert_eq!(s.hidden_columns, 1);
    assert_eq!(
        s.order_by,
        vec![SortKey {
            column: ColumnPos::Hidden(0),
            descending: true,
            nulls_first: false
        }]
    );
    // By alias, by position, and by the same column qualified: no hidden column.
    for sql in [
        "SELECT o.created_at AS c FROM orders o ORDER BY c",
        "SELECT o.created_at FROM orders o ORDER BY 1",
        "SELECT o.created_at FROM orders o ORDER BY created_at",
    ] {
        assert_eq!(spec(sql).hidden_columns, 0, "{sql}");
    }
}

#[test]
fn wildcard_positions_resolve_against_the_shards_columns() {
    let s = spec("SELECT *, total * 2 AS t2 FROM orders ORDER BY t2, created_at LIMIT 3");
    assert_eq!(s.visible_columns, None);
    assert_eq!(s.order_by[0].column, ColumnPos::End(0));
    assert_eq!(s.order_by[1].column, ColumnPos::Hidden(0));
    assert_eq!(
        s.shard_sql,
        "SELECT *, total * 2 AS t2, created_at FROM orders ORDER BY t2, created_at LIMIT 3"
    );
    // 3 columns from `*`, t2, hidden created_at.
    let out = merged(
        "SELECT *, total * 2 AS t2 FROM orders ORDER BY t2, created_at LIMIT 3",
        &[Int, Int, Bytes, Int, Bytes],
        &[
            &[&["1", "5", "a", "10", "d2"], &["2", "6", "b", "12", "d1"]],
            &[&["3", "5", "c", "10", "d1"]],
        ],
    );
    assert_eq!(
        out,
        [
            ["3", "5", "c", "10"],
            ["1", "5", "a", "10"],
            ["2", "6", "b", "12"]
        ]
    );
}

#[test]
fn avg_is_rewritten_to_sum_and_a_hidden_count() {
    let s = spec(
        "SELECT status, AVG(total), avg(qty) AS q FROM orders GROUP BY status ORDER BY status LIMIT 5",
    );
    assert_eq!(
        s.shard_sql,
        "SELECT status, SUM(total), SUM(qty) AS q, COUNT(total), COUNT(qty) FROM orders GROUP BY status"
    );
    assert_eq!(
        s.renamed,
        vec![(ColumnPos::Start(1), "AVG(total)".to_owned())]
    );
    assert_eq!(s.hidden_columns, 2);
    let out = merged(
        "SELECT status, AVG(total) FROM orders GROUP BY status",
        &[Bytes, Decimal, Int],
        &[
            &[&["new", "10.50", "2"], &["paid", "3.00", "1"]],
            &[&["new", "1.00", "1"], &["gone", "NULL", "0"]],
        ],
    );
    // Sorted by the group column (MariaDB's implicit GROUP BY order); 11.50 / 3.
    assert_eq!(
        out,
        [["gone", "NULL"], ["new", "3.833333"], ["paid", "3.000000"]]
    );
}

#[test]
fn having_on_aggregates_moves_after_the_merge() {
    let sql = "SELECT status, COUNT(*) AS n FROM orders GROUP BY status HAVING n > 2 AND SUM(total) >= 10 ORDER BY n DESC";
    let s = spec(sql);
    assert_eq!(
        s.shard_sql,
        "SELECT status, COUNT(*) AS n, SUM(total) FROM orders GROUP BY status"
    );
    let out = merged(
        sql,
        &[Bytes, Int, Decimal],
        &[
            &[&["a", "2", "5"], &["b", "1", "50"], &["c", "9", "1"]],
            &[&["a", "2", "5"], &["b", "1", "50"]],
        ],
    );
    assert_eq!(out, [["a", "4"]]);
    // A HAVING on group columns only stays on the shards.
    let s = spec("SELECT status, COUNT(*) FROM orders GROUP BY status HAVING status <> 'x'");
    assert_eq!(s.having, None);
    assert!(s.shard_sql.contains("HAVING status <> 'x'"));
}

#[test]
fn aggregates_without_group_by_merge_to_one_row() {
    let out = merged(
        "SELECT COUNT(*), SUM(total), MIN(name), MAX(total), SUM(missing) FROM orders",
        &[Int, Decimal, Bytes, Decimal, Decimal],
        &[
            &[&["3", "10.25", "bob", "9.99", "NULL"]],
            &[&["0", "NULL", "NULL", "NULL", "NULL"]],
            &[&["2", "-0.25", "Al", "10.00", "NULL"]],
        ],
    );
    assert_eq!(out, [["5", "10.00", "Al", "10.00", "NULL"]]);
}

#[test]
fn float_sums_and_averages() {
    let out = merged(
        "SELECT SUM(w), AVG(w) FROM t",
        &[Float, Float, Int],
        &[&[&["0.5", "0.5", "1"]], &[&["1.25", "1.25", "2"]]],
    );
    assert_eq!(out, [["1.75", "0.5833333333333334"]]);
}

#[test]
fn k_way_merge_streams_before_every_row_arrived() {
    let s = spec("SELECT id FROM t ORDER BY id LIMIT 2");
    let mut merger = match Merger::new(&s, vec![Int], 2) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let push =
        |m: &mut Merger, shard, v: &str| m.push(shard, vec![cell(v)]).map_err(|e| e.to_string());
    assert_eq!(push(&mut merger, 0, "1"), Ok(()));
    assert_eq!(
        merger.next_row(),
        None,
        "shard 1 may still send a smaller id"
    );
    assert_eq!(merger.queued(0), 1);
    assert_eq!(push(&mut merger, 1, "5"), Ok(()));
    assert_eq!(merger.next_row(), Some(vec![cell("1")]));
    assert_eq!(push(&mut merger, 0, "3"), Ok(()));
    assert_eq!(merger.next_row(), Some(vec![cell("3")]));
    assert!(merger.is_done());
    assert_eq!(push(&mut merger, 0, "4"), Ok(()));
    assert_eq!(merger.next_row(), None);
}

#[test]
fn pass_through_applies_offset_limit_and_distinct() {
    let out = merged(
        "SELECT DISTINCT status FROM orders LIMIT 2 OFFSET 1",
        &[Bytes],
        &[&[&["a"], &["b"]], &[&["a"], &["c"]]],
    );
    assert_eq!(out, [["b"], ["c"]]);
    assert_eq!(
        spec("SELECT DISTINCT status FROM orders LIMIT 2 OFFSET 1").shard_sql,
        "SELECT DISTINCT status FROM orders LIMIT 3"
    );
}

#[test]
fn nulls_sort_first_ascending_and_last_descending() {
    let shards: &[&[&[&str]]] = &[&[&["NULL"], &["2"]], &[&["1"]]];
    assert_eq!(
        merged("SELECT a FROM t ORDER BY a", &[Int], shards),
        [["NULL"], ["1"], ["2"]]
    );
    let shards: &[&[&[&str]]] = &[&[&["2"], &["NULL"]], &[&["10"]]];
    assert_eq!(
        merged("SELECT a FROM t ORDER BY a DESC", &[Int], shards),
        [["10"], ["2"], ["NULL"]]
    );
}

#[test]
fn unsupported_queries_are_refused_with_a_reason() {
    for (sql, needle) in [
        ("SELECT COUNT(DISTINCT member_id) FROM orders", "DISTINCT"),
        ("SELECT GROUP_CONCAT(id) FROM orders", "GROUP_CONCAT"),
        (
            "SELECT SUM(a) / COUNT(b) FROM t",
            "inside a larger expression",
        ),
        ("SELECT id FROM a UNION SELECT id FROM b", "set operations"),
        ("SELECT id FROM t LIMIT ?", "LIMIT"),
        ("SELECT a, COUNT(*) FROM t GROUP BY a WITH ROLLUP", "ROLLUP"),
        ("SELECT DISTINCT a FROM t ORDER BY b", "DISTINCT"),
        ("SELECT a FROM t GROUP BY a HAVING COUNT(*) > b", "literal"),
        ("SELECT ROW_NUMBER() OVER (ORDER BY a) FROM t", "window"),
        (
            "SELECT a FROM t WHERE s = 'x\\\\y' ORDER BY CONCAT(a, 'p\\\\q')",
            "backslash",
        ),
    ] {
        match merge_spec(sql) {
            Ok(s) => panic!("{sql}: expected an error, got {s:?}"),
            Err(e) => assert!(e.to_string().contains(needle), "{sql}: {e}"),
        }
    }
    assert_eq!(
        merge_spec("UPDATE t SET a = 1"),
        Err(MergeError::NotASelect)
    );
    assert!(matches!(
        merge_spec("SELEC 1"),
        Err(MergeError::Unparseable(_))
    ));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let s = spec("SELECT a, SUM(b) FROM t GROUP BY a");
    assert!(matches!(
        Merger::new(&s, vec![Int], 2),
        Err(MergeError::ColumnCount { .. })
    ));
    let Ok(mut m) = Merger::new(&s, vec![Int, Decimal], 2) else {
        panic!("merger");
    };
    assert!(matches!(
        m.push(2, vec![None, None]),
        Err(MergeError::NoSuchShard { .. })
    ));
    assert!(matches!(
        m.push(0, vec![None]),
        Err(MergeError::RowWidth { .. })
    ));
    assert!(matches!(
        m.push(0, vec![cell("1"), cell("abc")]),
        Err(MergeError::BadValue { column: 1, .. })
    ));
}

#[test]
fn a_hidden_avg_does_not_share_its_sum_with_a_plain_sum() {
    let sql = "SELECT g FROM t GROUP BY g HAVING SUM(a) > 1 ORDER BY AVG(a) DESC, g";
    let s = spec(sql);
    assert_eq!(
        s.shard_sql,
        "SELECT g, SUM(a), COUNT(a), SUM(a) FROM t GROUP BY g"
    );
    // g=1: sum 4 over 4 rows (avg 1); g=2: sum 3 over 1 row (avg 3).
    let out = merged(
        sql,
        &[Int, Decimal, Int, Decimal],
        &[
            &[&["1", "2", "2", "2"], &["2", "3", "1", "3"]],
            &[&["1", "2", "2", "2"]],
        ],
    );
    assert_eq!(out, [["2"], ["1"]]);
}
