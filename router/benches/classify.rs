//! Hot-path benchmarks for statement classification: the cached classify (what the proxy pays per
//! COM_QUERY in steady state), the lexer-only pass, bare tokenizing, and sqlparser for comparison.
//!
//! Run: `cargo bench -p peakgate-router -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use peakgate_router::Classifier;
use peakgate_router::classify::scan;
use peakgate_router::lexer::Lexer;
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

/// sysbench oltp_point_select, text protocol.
const POINT_SELECT: &str = "SELECT c FROM sbtest1 WHERE id=5004";
/// The shop's product page.
const SHOP_QUERY: &str = "SELECT p.product_id, p.title, p.price_cents, s.stock FROM products p \
    JOIN sku_stock s ON s.sku_id = p.sku_id WHERE p.product_id = 42 AND p.status = 'on_sale'";

fn queries() -> [(&'static str, &'static str); 2] {
    [("point_select", POINT_SELECT), ("shop_query", SHOP_QUERY)]
}

fn classify_cached(c: &mut Criterion) {
    let mut group = c.benchmark_group("classify_cached");
    let classifier = Classifier::new(1024);
    for (name, sql) in queries() {
        classifier.classify(sql.as_bytes());
        group.bench_function(name, |b| {
            b.iter(|| classifier.classify(black_box(sql.as_bytes())))
        });
    }
    group.finish();
}

fn lexer_only(c: &mut Criterion) {
    let mut group = c.benchmark_group("scan_lexer_only");
    for (name, sql) in queries() {
        group.bench_function(name, |b| b.iter(|| scan(black_box(sql.as_bytes()))));
    }
    group.finish();
    let mut group = c.benchmark_group("tokens_only");
    for (name, sql) in queries() {
        group.bench_function(name, |b| {
            b.iter(|| Lexer::new(black_box(sql.as_bytes())).count())
        });
    }
    group.finish();
}

fn sqlparser_reference(c: &mut Criterion) {
    let mut group = c.benchmark_group("sqlparser_parse");
    for (name, sql) in queries() {
        group.bench_function(name, |b| {
            b.iter(|| Parser::parse_sql(&MySqlDialect {}, black_box(sql)))
        });
    }
    group.finish();
}

criterion_group!(benches, classify_cached, lexer_only, sqlparser_reference);
criterion_main!(benches);
