//! Property tests of the scatter-gather merge: a random table split randomly across 2-4 shards,
//! a random query; running the spec's shard SQL on every shard and merging the results must
//! give what the query gives over the whole table.
//!
//! The reference is a tiny evaluator over sqlparser's AST for the subset of SELECT the queries
//! use (columns, COUNT/SUM/MIN/MAX/AVG, GROUP BY, HAVING, DISTINCT, ORDER BY, LIMIT/OFFSET),
//! producing MariaDB's text: SUM of integers as DECIMAL(scale 0), AVG with 4 more decimals than
//! its argument, rounded half away from zero, NULL sorted lowest, strings byte-wise.

use std::cmp::Ordering;

use peakgate_router::merge::{Cell, ColumnType, Row, merge_all, merge_spec};
use proptest::prelude::*;
use sqlparser::ast::{
    BinaryOperator, Distinct, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    LimitClause, OrderByKind, OrderBySort, SelectItem, SetExpr, Statement, UnaryOperator, Value,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

const COLUMNS: [&str; 5] = ["id", "g", "a", "d", "s"];
const TYPES: [ColumnType; 5] = [
    ColumnType::Int,
    ColumnType::Int,
    ColumnType::Int,
    ColumnType::Decimal,
    ColumnType::Bytes,
];

// ---------------------------------------------------------------------------------------------
// Reference evaluator

/// A decimal as (scaled integer, scale).
fn parse_scaled(text: &[u8]) -> (i128, u32) {
    let text = std::str::from_utf8(text).expect("ascii");
    match text.split_once('.') {
        Some((int, frac)) => {
            let negative = int.starts_with('-');
            let int: i128 = int.trim_start_matches('-').parse().unwrap_or(0);
            let scale = frac.len() as u32;
            let frac: i128 = frac.parse().expect("digits");
            let magnitude = int * 10i128.pow(scale) + frac;
            (if negative { -magnitude } else { magnitude }, scale)
        }
        None => (text.parse().expect("integer"), 0),
    }
}

fn format_scaled(value: i128, scale: u32) -> Vec<u8> {
    let digits = format!("{:0width$}", value.abs(), width = scale as usize + 1);
    let (int, frac) = digits.split_at(digits.len() - scale as usize);
    let sign = if value < 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int}").into_bytes()
    } else {
        format!("{sign}{int}.{frac}").into_bytes()
    }
}

fn as_f64(cell: &[u8]) -> f64 {
    std::str::from_utf8(cell)
        .expect("ascii")
        .parse()
        .expect("number")
}

fn compare(ty: ColumnType, a: &Cell, b: &Cell) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => match ty {
            ColumnType::Bytes => x.cmp(y),
            _ => as_f64(x).total_cmp(&as_f64(y)),
        },
    }
}

fn column(name: &str) -> usize {
    COLUMNS
        .iter()
        .position(|c| c.eq_ignore_ascii_case(name))
        .expect("a known column")
}

/// Evaluates `expr` over one row, or over a group's rows (plain columns: the first row's).
fn value(expr: &Expr, rows: &[&Row], grouped: bool) -> (Cell, ColumnType) {
    match expr {
        Expr::Identifier(ident) => {
            let c = column(&ident.value);
            (rows.first().and_then(|r| r[c].clone()), TYPES[c])
        }
        Expr::Function(f) => {
            assert!(grouped, "aggregate outside a group");
            let name = f.name.to_string().to_ascii_uppercase();
            let FunctionArguments::List(list) = &f.args else {
                panic!("no args")
            };
            let arg = match &list.args[0] {
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => None,
                FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(i))) => {
                    Some(column(&i.value))
                }
                other => panic!("unexpected argument {other}"),
            };
            let values: Vec<&Vec<u8>> = match arg {
                None => Vec::new(),
                Some(c) => rows.iter().filter_map(|r| r[c].as_ref()).collect(),
            };
            let ty = arg.map(|c| TYPES[c]);
            match name.as_str() {
                "COUNT" => {
                    let n = if arg.is_none() {
                        rows.len()
                    } else {
                        values.len()
                    };
                    (Some(n.to_string().into_bytes()), ColumnType::Int)
                }
                "SUM" | "AVG" => {
                    if values.is_empty() {
                        return (None, ColumnType::Decimal);
                    }
                    let scaled: Vec<(i128, u32)> = values.iter().map(|v| parse_scaled(v)).collect();
                    let scale = scaled[0].1;
                    let sum: i128 = scaled.iter().map(|(v, _)| v).sum();
                    if name == "SUM" {
                        return (Some(format_scaled(sum, scale)), ColumnType::Decimal);
                    }
                    let count = values.len() as i128;
                    let numerator = sum.abs() * 10_000;
                    let mut quotient = numerator / count;
                    if 2 * (numerator % count) >= count {
                        quotient += 1;
                    }
                    let avg = if sum < 0 { -quotient } else { quotient };
                    (Some(format_scaled(avg, scale + 4)), ColumnType::Decimal)
                }
                "MIN" | "MAX" => {
                    let ty = ty.expect("a column");
                    let best = values.into_iter().cloned().map(Some).reduce(|a, b| {
                        let ordering = compare(ty, &b, &a);
                        let take = if name == "MIN" {
                            ordering == Ordering::Less
                        } else {
                            ordering == Ordering::Greater
                        };
                        if take { b } else { a }
                    });
                    (best.flatten(), ty)
                }
                other => panic!("unexpected aggregate {other}"),
            }
        }
        other => panic!("unexpected expression {other}"),
    }
}

fn number(expr: &Expr) -> f64 {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().expect("number"),
            other => panic!("unexpected literal {other}"),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => -number(expr),
        other => panic!("unexpected literal {other}"),
    }
}

fn having(expr: &Expr, items: &[(Option<String>, &Expr)], rows: &[&Row]) -> Option<bool> {
    match expr {
        Expr::Nested(inner) => having(inner, items, rows),
        Expr::BinaryOp { left, op, right } => match op {
            BinaryOperator::And => match (having(left, items, rows), having(right, items, rows)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            BinaryOperator::Or => match (having(left, items, rows), having(right, items, rows)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            op => {
                let operand = match left.as_ref() {
                    Expr::Identifier(i) => items
                        .iter()
                        .find(|(alias, _)| alias.as_deref() == Some(i.value.as_str()))
                        .map_or(left.as_ref(), |(_, e)| *e),
                    other => other,
                };
                let (cell, _) = value(operand, rows, true);
                let ordering = as_f64(&cell?).total_cmp(&number(right));
                Some(match op {
                    BinaryOperator::Gt => ordering == Ordering::Greater,
                    BinaryOperator::GtEq => ordering != Ordering::Less,
                    BinaryOperator::Lt => ordering == Ordering::Less,
                    BinaryOperator::LtEq => ordering != Ordering::Greater,
                    BinaryOperator::Eq => ordering == Ordering::Equal,
                    BinaryOperator::NotEq => ordering != Ordering::Equal,
                    other => panic!("unexpected operator {other}"),
                })
            }
        },
        other => panic!("unexpected HAVING {other}"),
    }
}

/// One ORDER BY value of an output row: the value, its type, descending.
type SortValue = (Cell, ColumnType, bool);

/// Runs `sql` over `table`: the result's column types and rows.
fn evaluate(sql: &str, table: &[Row]) -> (Vec<ColumnType>, Vec<Row>) {
    let statements = Parser::parse_sql(&MySqlDialect {}, sql).expect("the evaluator's SQL parses");
    let Statement::Query(query) = &statements[0] else {
        panic!("not a query")
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        panic!("not a select")
    };
    let items: Vec<(Option<String>, &Expr)> = select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => (None, e),
            SelectItem::ExprWithAlias { expr, alias } => (Some(alias.value.clone()), expr),
            other => panic!("unexpected item {other}"),
        })
        .collect();
    let group_by: Vec<usize> = match &select.group_by {
        GroupByExpr::Expressions(exprs, _) => exprs
            .iter()
            .map(|e| match e {
                Expr::Identifier(i) => column(&i.value),
                other => panic!("unexpected GROUP BY {other}"),
            })
            .collect(),
        GroupByExpr::All(_) => panic!("GROUP BY ALL"),
    };
    let grouped = !group_by.is_empty() || items.iter().any(|(_, e)| matches!(e, Expr::Function(_)));

    // The units the select list is computed over: single rows, or groups.
    let units: Vec<Vec<&Row>> = if grouped {
        let mut groups: Vec<(Vec<Cell>, Vec<&Row>)> = Vec::new();
        for row in table {
            let key: Vec<Cell> = group_by.iter().map(|&c| row[c].clone()).collect();
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, rows)) => rows.push(row),
                None => groups.push((key, vec![row])),
            }
        }
        if groups.is_empty() && group_by.is_empty() {
            groups.push((Vec::new(), Vec::new()));
        }
        groups.into_iter().map(|(_, rows)| rows).collect()
    } else {
        table.iter().map(|r| vec![r]).collect()
    };
    let units: Vec<Vec<&Row>> = match &select.having {
        Some(condition) => units
            .into_iter()
            .filter(|rows| having(condition, &items, rows) == Some(true))
            .collect(),
        None => units,
    };

    // Output rows with their sort keys.
    let mut types = Vec::new();
    let order: Vec<(&Expr, bool)> = match &query.order_by {
        Some(order) => match &order.kind {
            OrderByKind::Expressions(keys) => keys
                .iter()
                .map(|k| (&k.expr, k.options.sort == Some(OrderBySort::Desc)))
                .collect(),
            OrderByKind::All(_) => panic!("ORDER BY ALL"),
        },
        None if grouped => Vec::new(),
        None => Vec::new(),
    };
    let implicit_group_order = grouped && query.order_by.is_none();
    let mut out: Vec<(Row, Vec<SortValue>)> = Vec::new();
    for rows in &units {
        let mut row = Vec::new();
        types.clear();
        for (_, expr) in &items {
            let (cell, ty) = value(expr, rows, grouped);
            row.push(cell);
            types.push(ty);
        }
        let mut keys = Vec::new();
        for &(expr, descending) in &order {
            let by_item = match expr {
                Expr::Identifier(i) => items
                    .iter()
                    .position(|(alias, _)| alias.as_deref() == Some(i.value.as_str())),
                _ => None,
            };
            let (cell, ty) = match by_item {
                Some(index) => (row[index].clone(), types[index]),
                None => value(expr, rows, grouped),
            };
            keys.push((cell, ty, descending));
        }
        if implicit_group_order {
            for &c in &group_by {
                keys.push((rows[0][c].clone(), TYPES[c], false));
            }
        }
        out.push((row, keys));
    }
    if types.is_empty() {
        types = items
            .iter()
            .map(|(_, e)| value(e, &[], grouped).1)
            .collect();
    }
    if matches!(select.distinct, Some(Distinct::Distinct)) {
        let mut seen: Vec<Row> = Vec::new();
        out.retain(|(row, _)| {
            if seen.contains(row) {
                false
            } else {
                seen.push(row.clone());
                true
            }
        });
    }
    out.sort_by(|(_, a), (_, b)| {
        a.iter()
            .zip(b)
            .map(|((x, ty, descending), (y, _, _))| {
                let ordering = compare(*ty, x, y);
                if *descending {
                    ordering.reverse()
                } else {
                    ordering
                }
            })
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    });
    let (limit, offset) = match &query.limit_clause {
        None => (usize::MAX, 0),
        Some(LimitClause::LimitOffset { limit, offset, .. }) => (
            limit.as_ref().map_or(usize::MAX, |e| number(e) as usize),
            offset.as_ref().map_or(0, |o| number(&o.value) as usize),
        ),
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
            (number(limit) as usize, number(offset) as usize)
        }
    };
    let rows = out
        .into_iter()
        .map(|(row, _)| row)
        .skip(offset)
        .take(limit)
        .collect();
    (types, rows)
}

// ---------------------------------------------------------------------------------------------
// Data and queries

fn cell_strategy(c: usize) -> BoxedStrategy<Cell> {
    let value: BoxedStrategy<Vec<u8>> = match c {
        1 => (0i64..4).prop_map(|v| v.to_string().into_bytes()).boxed(),
        2 => (-20i64..20)
            .prop_map(|v| v.to_string().into_bytes())
            .boxed(),
        3 => (-5000i128..5000).prop_map(|v| format_scaled(v, 2)).boxed(),
        _ => prop::sample::select(vec!["a", "B", "b", "ab", "", "Z"])
            .prop_map(|s| s.as_bytes().to_vec())
            .boxed(),
    };
    prop::option::weighted(0.85, value).boxed()
}

/// Rows (with unique ids) and each row's shard, for `shards` shards.
fn dataset() -> impl Strategy<Value = (Vec<Row>, Vec<usize>, usize)> {
    (2usize..=4).prop_flat_map(|shards| {
        let row = (
            cell_strategy(1),
            cell_strategy(2),
            cell_strategy(3),
            cell_strategy(4),
        );
        prop::collection::vec((row, 0..shards), 0..40).prop_map(move |rows| {
            let mut table = Vec::new();
            let mut placement = Vec::new();
            for (id, ((g, a, d, s), shard)) in rows.into_iter().enumerate() {
                table.push(vec![Some(id.to_string().into_bytes()), g, a, d, s]);
                placement.push(shard);
            }
            (table, placement, shards)
        })
    })
}

fn limit_clause() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        (0u64..12).prop_map(|l| format!(" LIMIT {l}")),
        (0u64..12, 0u64..8).prop_map(|(l, o)| format!(" LIMIT {l} OFFSET {o}")),
        (0u64..8, 0u64..12).prop_map(|(o, l)| format!(" LIMIT {o}, {l}")),
    ]
}

fn direction() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", " ASC", " DESC"])
}

/// Whether the query's result order is fully determined (exact comparison) or not.
#[derive(Debug, Clone)]
struct Query {
    sql: String,
    total_order: bool,
    has_limit: bool,
}

fn ordered_select() -> impl Strategy<Value = Query> {
    (
        prop::sample::subsequence(vec!["id", "g", "a", "d", "s"], 1..=5),
        prop::sample::subsequence(vec!["g", "a", "d", "s"], 0..=3),
        prop::collection::vec(direction(), 4),
        direction(),
        limit_clause(),
    )
        .prop_map(|(columns, keys, dirs, id_dir, limit)| {
            let keys: Vec<String> = keys
                .iter()
                .zip(dirs)
                .map(|(k, d)| format!("{k}{d}"))
                .chain([format!("id{id_dir}")])
                .collect();
            Query {
                sql: format!(
                    "SELECT {} FROM t ORDER BY {}{limit}",
                    columns.join(", "),
                    keys.join(", ")
                ),
                total_order: true,
                has_limit: !limit.is_empty(),
            }
        })
}

fn unordered_select() -> impl Strategy<Value = Query> {
    (
        prop::sample::subsequence(vec!["id", "g", "a", "d", "s"], 1..=5),
        any::<bool>(),
        limit_clause(),
    )
        .prop_map(|(columns, distinct, limit)| Query {
            sql: format!(
                "SELECT {}{} FROM t{limit}",
                if distinct { "DISTINCT " } else { "" },
                columns.join(", ")
            ),
            total_order: false,
            has_limit: !limit.is_empty(),
        })
}

fn distinct_ordered() -> impl Strategy<Value = Query> {
    (
        prop::sample::subsequence(vec!["g", "a", "d", "s"], 1..=3),
        prop::collection::vec(direction(), 3),
        limit_clause(),
    )
        .prop_map(|(columns, dirs, limit)| {
            let keys: Vec<String> = columns
                .iter()
                .rev()
                .zip(dirs)
                .map(|(c, d)| format!("{c}{d}"))
                .collect();
            Query {
                sql: format!(
                    "SELECT DISTINCT {} FROM t ORDER BY {}{limit}",
                    columns.join(", "),
                    keys.join(", ")
                ),
                total_order: true,
                has_limit: !limit.is_empty(),
            }
        })
}

const AGGREGATES: [&str; 10] = [
    "COUNT(*)", "COUNT(a)", "SUM(a)", "SUM(d)", "MIN(s)", "MAX(d)", "AVG(a)", "AVG(d)", "MIN(a)",
    "MAX(s)",
];

fn grouped_select() -> impl Strategy<Value = Query> {
    let aggregate = prop::sample::select(AGGREGATES.to_vec());
    let having_term = (
        prop::sample::select(vec!["COUNT(*)", "SUM(a)", "AVG(d)", "MIN(a)", "n"]),
        prop::sample::select(vec![">", ">=", "<", "<=", "=", "<>"]),
        -30i64..30,
    )
        .prop_map(|(agg, op, lit)| format!("{agg} {op} {lit}"));
    let having = prop_oneof![
        Just(String::new()),
        having_term.clone().prop_map(|t| format!(" HAVING {t}")),
        (
            having_term.clone(),
            prop::sample::select(vec!["AND", "OR"]),
            having_term
        )
            .prop_map(|(a, c, b)| format!(" HAVING ({a}) {c} {b}")),
    ];
    let order = prop_oneof![
        Just(None),
        (
            prop::sample::select(vec!["n", "SUM(d)", "MAX(a)", "AVG(a)", "COUNT(a)"]),
            direction()
        )
            .prop_map(|(k, d)| Some(format!("{k}{d}"))),
    ];
    (
        prop::collection::vec(aggregate, 1..4),
        prop::sample::select(vec!["g", "s", "g, s"]),
        having,
        order,
        direction(),
        limit_clause(),
    )
        .prop_map(|(aggs, group, having, order, group_dir, limit)| {
            let order = match order {
                Some(key) => format!(" ORDER BY {key}, {}{group_dir}", group.replace(", ", &format!("{group_dir}, "))),
                None if limit.is_empty() => String::new(),
                None => format!(" ORDER BY {}{group_dir}", group.replace(", ", &format!("{group_dir}, "))),
            };
            Query {
                sql: format!(
                    "SELECT {group}, COUNT(*) AS n, {} FROM t GROUP BY {group}{having}{order}{limit}",
                    aggs.join(", ")
                ),
                total_order: true,
                has_limit: !limit.is_empty(),
            }
        })
}

fn total_aggregates() -> impl Strategy<Value = Query> {
    prop::collection::vec(prop::sample::select(AGGREGATES.to_vec()), 1..5).prop_map(|aggs| Query {
        sql: format!("SELECT {} FROM t", aggs.join(", ")),
        total_order: true,
        has_limit: false,
    })
}

fn query() -> impl Strategy<Value = Query> {
    prop_oneof![
        ordered_select(),
        unordered_select(),
        distinct_ordered(),
        grouped_select(),
        total_aggregates(),
    ]
}

fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort();
    rows
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn merging_shards_equals_running_on_the_whole_table(
        (table, placement, shards) in dataset(),
        query in query(),
    ) {
        let (_, expected) = evaluate(&query.sql, &table);
        let spec = merge_spec(&query.sql).map_err(|e| TestCaseError::fail(format!("{}: {e}", query.sql)))?;
        let mut types = Vec::new();
        let mut results = Vec::new();
        for shard in 0..shards {
            let part: Vec<Row> = table
                .iter()
                .zip(&placement)
                .filter(|(_, s)| **s == shard)
                .map(|(r, _)| r.clone())
                .collect();
            let (shard_types, rows) = evaluate(&spec.shard_sql, &part);
            types = shard_types;
            results.push(rows);
        }
        let merged = merge_all(&spec, types, results)
            .map_err(|e| TestCaseError::fail(format!("{}: {e}", query.sql)))?;
        if query.total_order {
            prop_assert_eq!(&merged, &expected, "{} -> {}", query.sql, spec.shard_sql);
        } else if !query.has_limit {
            prop_assert_eq!(sorted(merged), sorted(expected), "{}", query.sql);
        } else {
            // Any rows of the full result will do, as many as it has.
            let (_, everything) = evaluate(query.sql.split(" LIMIT").next().unwrap_or_default(), &table);
            prop_assert_eq!(merged.len(), expected.len(), "{}", query.sql);
            let mut pool = everything;
            for row in &merged {
                let at = pool.iter().position(|r| r == row);
                prop_assert!(at.is_some(), "{}: {:?} is not in the full result", query.sql, row);
                if let Some(at) = at {
                    pool.swap_remove(at);
                }
            }
        }
    }
}
