//! `[hotspot] queue.batch_mode = "merged"`: a batch of identical guarded decrements of one hot row
//! runs as one arithmetic UPDATE whose total is split among the clients. Every test checks each
//! client's answer against what running the statements one after another gives. The topology's
//! `[hotspot]` (SKUs 1001-1010 of `shop.sku_stock`) is moved to a table of the test's own.

use mysql_async::prelude::*;
use peakgate_tests::raw::RawConn;
use peakgate_tests::{Scratch, TestProxy, direct, sale_proxy, unique_name};

const HOT: u16 = 3331;

/// The queue's counters belong to the process, and `cargo test` runs this file's tests as threads
/// of one process: each test holds this lock and counts only what its own statements added.
static COUNTERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A proxy in merged mode on a new hot table (`sku_id` with `key`, `stock`, `sold`) holding `rows`
/// (`(sku, stock, sold), ...`); the table's name, and the guards that drop it. Waits are long:
/// these tests count sales, not waits, and 5,000 buyers of a debug build on a busy 2-core machine
/// may wait longer than the default 2 s for their batch.
async fn merged_sale(
    prefix: &str,
    key: &str,
    rows: &str,
) -> anyhow::Result<(TestProxy, String, [Scratch; 2])> {
    let t = unique_name(prefix);
    let drops = [Scratch::table("shop", &t), Scratch::hot_table("shop", &t)];
    let proxy = sale_proxy(&t, "batch_mode = \"merged\", wait_ms = 30000").await?;
    let mut c = proxy.conn(Some("shop")).await?;
    c.query_drop(format!(
        "CREATE TABLE {t} (sku_id BIGINT {key}, stock INT NOT NULL, sold INT NOT NULL)"
    ))
    .await?;
    // (A column list: the proxy routes INSERT rows by their SKU only with one.)
    c.query_drop(format!(
        "INSERT INTO {t} (sku_id, stock, sold) VALUES {rows}"
    ))
    .await?;
    c.disconnect().await?;
    Ok((proxy, t, drops))
}

/// One buyer per statement, connected first, then all sent at once: each buyer's affected rows
/// (or error), in the order of `sqls`.
async fn buy_at_once(
    opts: &mysql_async::Opts,
    sqls: Vec<String>,
) -> anyhow::Result<Vec<Result<u64, String>>> {
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(sqls.len()));
    let mut tasks = Vec::with_capacity(sqls.len());
    for sql in sqls {
        let (opts, start) = (opts.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            // Everyone reaches the barrier, connected or not, so that one failed connect does
            // not leave the others waiting forever.
            let conn = mysql_async::Conn::new(opts).await;
            start.wait().await;
            let mut c = match conn {
                Ok(c) => c,
                Err(e) => return Err(format!("connect: {e}")),
            };
            let out = match c.query_iter(sql).await {
                Ok(r) => Ok(r.affected_rows()),
                Err(e) => Err(e.to_string()),
            };
            let _ = c.disconnect().await;
            out
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await?);
    }
    Ok(out)
}

/// The affected rows, or the first errors.
fn affected(results: Vec<Result<u64, String>>) -> anyhow::Result<Vec<u64>> {
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    anyhow::ensure!(
        errors.is_empty(),
        "{} errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    Ok(results.into_iter().flatten().collect())
}

/// `(stock, sold)` of SKU 1001, read on the hot instance.
async fn row(t: &str) -> anyhow::Result<(i64, i64)> {
    let mut d = direct(HOT, Some("shop")).await?;
    let r: Option<(i64, i64)> = d
        .query_first(format!("SELECT stock, sold FROM {t} WHERE sku_id = 1001"))
        .await?;
    d.disconnect().await?;
    r.ok_or_else(|| anyhow::anyhow!("no row 1001 in {t}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_batches_sell_exactly_the_stock() -> anyhow::Result<()> {
    let _counters = COUNTERS.lock().await;
    let (proxy, t, _drops) = merged_sale("it_merged", "PRIMARY KEY", "(1001, 1000, 0)").await?;
    let (batches0, merged0) = (
        proxy.metric("peakgate_hot_batches_total").await?,
        proxy.metric("peakgate_hot_merged_batches_total").await?,
    );
    let buyers: usize = std::env::var("SALE_BUYERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let sql = format!(
        "UPDATE {t} SET stock = stock - 1, sold = sold + 1 WHERE sku_id = 1001 AND stock >= 1"
    );
    let started = std::time::Instant::now();
    let rows = affected(buy_at_once(&proxy.opts(Some("shop")), vec![sql; buyers]).await?)?;
    let (batches, merged) = (
        proxy.metric("peakgate_hot_batches_total").await? - batches0,
        proxy.metric("peakgate_hot_merged_batches_total").await? - merged0,
    );
    println!(
        "{buyers} buyers in merged mode in {:?}: {batches} batches, {merged} merged, {} statements \
         batched, {} sold-out answers",
        started.elapsed(),
        proxy
            .metric("peakgate_hot_batched_statements_total")
            .await?,
        proxy.metric("peakgate_hot_sold_out_answers_total").await?,
    );
    let sold = buyers.min(1000);
    assert_eq!(
        rows.iter().filter(|&&n| n == 1).count(),
        sold,
        "buyers told yes"
    );
    assert_eq!(
        rows.iter().sum::<u64>(),
        sold as u64,
        "affected rows reported"
    );
    assert_eq!(
        row(&t).await?,
        (1000 - sold as i64, sold as i64),
        "stock and sold in the row"
    );
    assert!(merged >= 1.0, "no batch ran merged ({batches} batches)");
    // The batches' variables do not stay on the hot instance's pooled connections: a client
    // with the workers' capabilities (no CLIENT_DEPRECATE_EOF or CLIENT_FOUND_ROWS: the same
    // pool) reads the row on them afterwards.
    for _ in 0..8 {
        let mut c = RawConn::login(proxy.mysql, "shop", "shop", Some("shop")).await?;
        let v = c
            .query_column(&format!(
                "SELECT COALESCE(@pg_m, @pg0, 'none') FROM {t} WHERE sku_id = 1001"
            ))
            .await?;
        assert_eq!(v, [Some("none".to_string())], "a batch's variable leaked");
        c.quit().await?;
    }
    Ok(())
}

/// What `k` copies of `stock = stock - n WHERE stock >= g` (`>` when `strict`) give one after
/// another from `stock`: successes and the stock after.
fn one_by_one(mut stock: i64, n: i64, g: i64, strict: bool, k: usize) -> (usize, i64) {
    let mut ok = 0;
    for _ in 0..k {
        if stock > g || (!strict && stock == g) {
            stock -= n;
            ok += 1;
        }
    }
    (ok, stock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_batches_split_amounts_and_guards_like_one_by_one() -> anyhow::Result<()> {
    let _counters = COUNTERS.lock().await;
    let (proxy, t, _drops) = merged_sale("it_merged_n", "PRIMARY KEY", "(1001, 0, 0)").await?;
    let opts = proxy.opts(Some("shop"));
    let mut c = proxy.conn(Some("shop")).await?;
    // (amount, guard, strict, stock): remainders, guards above and below the amount, and a
    // `> 0` guard that lets the last buyer take the stock below zero, as it would alone.
    for (n, g, strict, stock) in [
        (3, 3, false, 100),
        (2, 1, true, 101),
        (4, 10, false, 97),
        (5, 0, true, 23),
        (7, 7, false, 6),
    ] {
        // A restock through the proxy: clears the previous case's sold-out state.
        c.query_drop(format!(
            "UPDATE {t} SET stock = {stock}, sold = 0 WHERE sku_id = 1001"
        ))
        .await?;
        let op = if strict { ">" } else { ">=" };
        let sql = format!(
            "UPDATE {t} SET stock = stock - {n}, sold = sold + {n} WHERE sku_id = 1001 AND stock {op} {g}"
        );
        let merged_before = proxy.metric("peakgate_hot_merged_batches_total").await?;
        let rows = affected(buy_at_once(&opts, vec![sql.clone(); 200]).await?)?;
        let (ok, left) = one_by_one(stock, n, g, strict, 200);
        assert_eq!(
            rows.iter().filter(|&&r| r == 1).count(),
            ok,
            "successes of {sql} from {stock}"
        );
        assert_eq!(rows.iter().sum::<u64>(), ok as u64, "{sql}");
        assert_eq!(row(&t).await?, (left, n * ok as i64), "row after {sql}");
        let merged = proxy.metric("peakgate_hot_merged_batches_total").await? - merged_before;
        println!("{sql} from {stock}: {ok} sold, {left} left, {merged} merged batches");
        // (With nothing to sell the first answer makes the rest sold-out answers: nothing to merge.)
        assert!(ok == 0 || merged >= 1.0, "no batch of {sql} ran merged");
    }
    c.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_runs_statement_by_statement() -> anyhow::Result<()> {
    let _counters = COUNTERS.lock().await;
    let (proxy, t, _drops) = merged_sale("it_merged_mix", "PRIMARY KEY", "(1001, 200, 0)").await?;
    // Amounts 1 and 2 alternate: a batch holds both, so it cannot be merged.
    let amounts: Vec<i64> = (0..300).map(|i| 1 + i % 2).collect();
    let sqls = amounts
        .iter()
        .map(|n| {
            format!(
                "UPDATE {t} SET stock = stock - {n}, sold = sold + {n} WHERE sku_id = 1001 AND stock >= {n}"
            )
        })
        .collect();
    let rows = affected(buy_at_once(&proxy.opts(Some("shop")), sqls).await?)?;
    let taken: i64 = amounts
        .iter()
        .zip(&rows)
        .map(|(n, &r)| {
            assert!(r <= 1, "{r} rows");
            n * r as i64
        })
        .sum();
    let (stock, sold) = row(&t).await?;
    println!(
        "mixed amounts: {taken} taken, stock {stock}; {} batches, {} merged",
        proxy.metric("peakgate_hot_batches_total").await?,
        proxy.metric("peakgate_hot_merged_batches_total").await?
    );
    assert_eq!(
        (stock, sold),
        (200 - taken, taken),
        "the row matches the answers"
    );
    // Had any buyer left stock >= 2 unsold, every buyer would have bought (450 > 200).
    assert!((0..=1).contains(&stock), "stock {stock} left unsold");
    Ok(())
}

/// The key matches two rows (no primary key): the merged UPDATE would change both with one
/// split, so its marker refuses to be written, the batch rolls back and every statement runs
/// alone, each changing both rows as long as both have stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_merged_batch_rolls_back_and_runs_each_alone() -> anyhow::Result<()> {
    let _counters = COUNTERS.lock().await;
    let (proxy, t, _drops) =
        merged_sale("it_merged_two", "NOT NULL", "(1001, 10, 0), (1001, 5, 0)").await?;
    let merged0 = proxy.metric("peakgate_hot_merged_batches_total").await?;
    let sql = format!("UPDATE {t} SET stock = stock - 1 WHERE sku_id = 1001 AND stock >= 1");
    let rows = affected(buy_at_once(&proxy.opts(Some("shop")), vec![sql; 64]).await?)?;
    let count = |n: u64| rows.iter().filter(|&&r| r == n).count();
    // One after another: 5 statements change both rows, 5 more the larger one, the rest none.
    assert_eq!((count(2), count(1), count(0)), (5, 5, 54));
    let mut d = direct(HOT, Some("shop")).await?;
    let left: Vec<i64> = d
        .query(format!("SELECT stock FROM {t} WHERE sku_id = 1001"))
        .await?;
    d.disconnect().await?;
    assert_eq!(left, [0, 0]);
    assert!(
        proxy.metric("peakgate_hot_merged_batches_total").await? - merged0 >= 1.0,
        "no batch tried to merge"
    );
    Ok(())
}
