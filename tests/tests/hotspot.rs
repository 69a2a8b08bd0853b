//! Hot (flash-sale) SKUs: statements on hot SKU rows of the stock table run on the `hot` instance,
//! the others on the home shard; DDL reaches both. The topology's `[hotspot]` (SKUs 1001-1010 of
//! `shop.sku_stock`) is moved to a table of the test's own.

use mysql_async::prelude::*;
use peakgate_tests::{
    S0_PRIMARY, Scratch, TestProxy, direct, metric_value, proxy_with_stock_table, unique_name,
};

const HOT: u16 = 3331;

/// The hot-row queue's counters (`peakgate_hot_*` in /metrics) belong to the process, and
/// `cargo test` runs this file's tests as threads of one process: a test that uses the queue
/// holds this lock, so a test can count exactly what its own statements added.
static HOT_COUNTERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// SKU 1001's stock in `shop.<t>`, read directly on the hot instance.
async fn stock_on_hot(t: &str) -> anyhow::Result<Option<i64>> {
    let mut d = direct(HOT, Some("shop")).await?;
    let v = d
        .query_first(format!("SELECT stock FROM {t} WHERE sku_id = 1001"))
        .await?;
    d.disconnect().await?;
    Ok(v)
}

/// The value of metric `name` in a /metrics text (0 when absent).
fn metric(metrics: &str, name: &str) -> u64 {
    metric_value(metrics, name) as u64
}

/// (batches, batched statements, sold-out answers) of the hot-row queue so far.
async fn hot_counters(proxy: &TestProxy) -> anyhow::Result<(u64, u64, u64)> {
    let m = proxy.admin_get("/metrics").await?;
    Ok((
        metric(&m, "peakgate_hot_batches_total"),
        metric(&m, "peakgate_hot_batched_statements_total"),
        metric(&m, "peakgate_hot_sold_out_answers_total"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_skus_run_on_the_hot_instance() -> anyhow::Result<()> {
    let _counters = HOT_COUNTERS.lock().await;
    let (t, _drop, proxy, mut c) = proxy_with_stock_table("it_stock", "", |cfg| {
        *cfg = cfg.replace("[routing]", "[routing]\nreplica_reads = false");
    })
    .await?;
    let count_on = |port: u16, sql: String| async move {
        let mut d = direct(port, Some("shop")).await?;
        let n: Option<i64> = d.query_first(sql).await?;
        d.disconnect().await?;
        anyhow::Ok(n)
    };
    // CREATE / DROP DATABASE reach the hot instance too.
    let db = unique_name("it_hotdb");
    c.query_drop(format!("CREATE DATABASE {db}")).await?;
    let on_hot = |db: String| async move {
        let mut d = direct(HOT, None).await?;
        let n: Option<i64> = d
            .query_first(format!(
                "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{db}'"
            ))
            .await?;
        d.disconnect().await?;
        anyhow::Ok(n)
    };
    assert_eq!(
        on_hot(db.clone()).await?,
        Some(1),
        "database on the hot instance"
    );
    c.query_drop(format!("DROP DATABASE {db}")).await?;
    assert_eq!(
        on_hot(db.clone()).await?,
        Some(0),
        "dropped on the hot instance"
    );
    // DDL on both the home shard and the hot instance.
    for port in [S0_PRIMARY, HOT] {
        let n = count_on(
            port,
            format!("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = '{t}'"),
        )
        .await?;
        assert_eq!(n, Some(1), "table on port {port}");
    }
    c.query_drop(format!(
        "INSERT INTO {t} (sku_id, stock) VALUES (1001, 100)"
    ))
    .await?;
    c.query_drop(format!(
        "INSERT INTO {t} (sku_id, stock) VALUES (5, 10), (6, 10)"
    ))
    .await?;
    assert_eq!(
        count_on(HOT, format!("SELECT COUNT(*) FROM {t}")).await?,
        Some(1)
    );
    assert_eq!(
        count_on(S0_PRIMARY, format!("SELECT COUNT(*) FROM {t}")).await?,
        Some(2)
    );
    // A guarded decrement of hot stock, text and prepared.
    c.query_drop(format!(
        "UPDATE {t} SET stock = stock - 1 WHERE sku_id = 1001 AND stock > 0"
    ))
    .await?;
    c.exec_drop(
        format!("UPDATE {t} SET stock = stock - 1 WHERE sku_id = ? AND stock > 0"),
        (1001,),
    )
    .await?;
    let left: Option<i64> = c
        .exec_first(format!("SELECT stock FROM {t} WHERE sku_id = ?"), (1001,))
        .await?;
    assert_eq!(left, Some(98));
    assert_eq!(
        count_on(HOT, format!("SELECT stock FROM {t} WHERE sku_id = 1001")).await?,
        Some(98)
    );
    let normal: Option<i64> = c
        .query_first(format!("SELECT stock FROM {t} WHERE sku_id = 5"))
        .await?;
    assert_eq!(normal, Some(10));
    // Hot and normal SKUs in one statement: refused.
    let e = c
        .query_drop(format!(
            "UPDATE {t} SET stock = 0 WHERE sku_id IN (5, 1001)"
        ))
        .await
        .expect_err("mixed");
    assert!(e.to_string().contains("1235"), "{e}");
    // A SKU made hot at run time (its row moved by the operator first).
    c.query_drop(format!("DELETE FROM {t} WHERE sku_id = 6"))
        .await?;
    let (code, body) = proxy
        .admin_request("POST", "/hotspot?sku=6&action=add")
        .await?;
    assert_eq!(code, 200, "{body}");
    c.query_drop(format!("INSERT INTO {t} (sku_id, stock) VALUES (6, 7)"))
        .await?;
    assert_eq!(
        count_on(HOT, format!("SELECT stock FROM {t} WHERE sku_id = 6")).await?,
        Some(7)
    );
    let metrics = proxy.admin_get("/metrics").await?;
    assert!(
        !metrics.contains("peakgate_hot_statements_total 0\n"),
        "no hot statement counted"
    );
    let status = proxy.admin_get("/status").await?;
    assert!(status.contains("\"hot_skus\""), "{status}");
    Ok(())
}

/// `buyers` sessions (connections opened first, then all buy at once) each run the guarded
/// decrement once against `opts`, as text or (`prepared`) as a server-side prepared statement
/// with parameters (prepared before the start); returns (successes, sum of affected rows, errors).
async fn flash_sale(
    opts: mysql_async::Opts,
    table: &str,
    buyers: usize,
    prepared: bool,
) -> anyhow::Result<(u64, u64, Vec<String>)> {
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(buyers));
    let mut tasks = Vec::with_capacity(buyers);
    for _ in 0..buyers {
        let (opts, start, table) = (opts.clone(), start.clone(), table.to_string());
        tasks.push(tokio::spawn(async move {
            let ready = async {
                let mut c = mysql_async::Conn::new(opts).await?;
                let mut stmt = None;
                if prepared {
                    stmt = Some(
                        c.prep(format!(
                            "UPDATE {table} SET stock = stock - ? WHERE sku_id = ? AND stock >= ?"
                        ))
                        .await?,
                    );
                }
                Ok::<_, mysql_async::Error>((c, stmt))
            }
            .await;
            // Every buyer reaches the start, also one whose connect or prepare failed (it reports
            // that): one missing there would keep the others waiting for good.
            start.wait().await;
            let (mut c, stmt) = ready.map_err(|e| format!("before the sale: {e}"))?;
            let r = match &stmt {
                Some(stmt) => c
                    .exec_drop(stmt, (1, 1001, 1))
                    .await
                    .map(|()| c.affected_rows()),
                None => c
                    .query_iter(format!(
                        "UPDATE {table} SET stock = stock - 1 WHERE sku_id = 1001 AND stock >= 1"
                    ))
                    .await
                    .map(|res| res.affected_rows()),
            };
            let _ = c.disconnect().await;
            r.map_err(|e| e.to_string())
        }));
    }
    let (mut ok, mut rows, mut errors) = (0, 0, Vec::new());
    for t in tasks {
        match t.await? {
            Ok(n) => {
                rows += n;
                ok += u64::from(n == 1);
            }
            Err(e) => errors.push(e),
        }
    }
    Ok((ok, rows, errors))
}

/// Sells 1,000 units of SKU 1001 (in a stock table of the test's own, returned with its guards)
/// to `SALE_BUYERS` (default 5,000) concurrent buyers through a proxy, as text or as prepared
/// statements: exactly the stock is sold, the affected rows the buyers were told add up to it,
/// and every buyer's statement went through the hot-row queue (run in a batch, or answered by
/// the sold-out short-circuit), in batches of more than one statement on average.
async fn sale_through_the_proxy(
    prefix: &str,
    prepared: bool,
) -> anyhow::Result<(String, [Scratch; 2])> {
    // This test counts sales, not waits: on a busy 2-core machine 5,000 buyers of a debug build
    // may wait longer than the default 2 s for their batch, and a new connection to the hot
    // instance may take longer than the topology's 2 s to open (the queue then refuses the
    // statements it was for, seen about once in five runs of the whole file).
    let (t, guards, proxy, mut c) =
        proxy_with_stock_table(prefix, "queue = { wait_ms = 30000 }", |cfg| {
            for (from, to) in [
                (
                    "max_client_connections = 4096",
                    "max_client_connections = 8000",
                ),
                ("connect_timeout_ms = 2000", "connect_timeout_ms = 10000"),
            ] {
                assert!(cfg.contains(from), "{cfg}");
                *cfg = cfg.replace(from, to);
            }
        })
        .await?;
    c.query_drop(format!(
        "INSERT INTO {t} (sku_id, stock) VALUES (1001, 1000)"
    ))
    .await?;
    let buyers = std::env::var("SALE_BUYERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let (batches, batched, sold_out) = hot_counters(&proxy).await?;
    let started = std::time::Instant::now();
    let (ok, rows, errors) = flash_sale(proxy.opts(Some("shop")), &t, buyers, prepared).await?;
    let took = started.elapsed();
    let left = stock_on_hot(&t).await?;
    let (b, s, o) = hot_counters(&proxy).await?;
    let (batches, batched, sold_out) = (b - batches, s - batched, o - sold_out);
    println!(
        "{buyers} buyers ({}) through the proxy in {took:?}: {ok} bought, {} errors, stock left {left:?}; \
         batches {batches}, batched statements {batched}, sold-out answers {sold_out}",
        if prepared { "prepared" } else { "text" },
        errors.len(),
    );
    assert!(
        errors.is_empty(),
        "errors: {:?}",
        &errors[..errors.len().min(5)]
    );
    assert_eq!(ok, 1000, "exactly the stock is sold");
    assert_eq!(rows, 1000, "affected rows reported to clients");
    assert_eq!(left, Some(0));
    assert_eq!(
        batched + sold_out,
        buyers as u64,
        "every buyer's statement went through the hot-row queue"
    );
    assert!(
        batches > 0 && batched > batches,
        "batches of more than one statement: {batched} statements in {batches} batches"
    );
    Ok((t, guards))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_sale_never_oversells_through_the_hot_row_queue() -> anyhow::Result<()> {
    let _counters = HOT_COUNTERS.lock().await;
    let (t, _drop) = sale_through_the_proxy("it_sale", false).await?;

    // The same checker directly against the hot instance counts right too.
    let mut d = direct(HOT, Some("shop")).await?;
    d.query_drop(format!("UPDATE {t} SET stock = 300 WHERE sku_id = 1001"))
        .await?;
    d.disconnect().await?;
    let direct_opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(HOT)
        .user(Some("root"))
        .db_name(Some("shop"))
        .prefer_socket(false)
        .into();
    let (ok, rows, errors) = flash_sale(direct_opts, &t, 500, false).await?;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!((ok, rows), (300, 300), "directly: 300 in stock, 500 buyers");
    Ok(())
}

/// The same sale with server-side prepared statements (COM_STMT_EXECUTE with parameters, as
/// JDBC with useServerPrepStmts or sysbench send them): queued and batched like text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_flash_sale_never_oversells_through_the_hot_row_queue() -> anyhow::Result<()> {
    let _counters = HOT_COUNTERS.lock().await;
    sale_through_the_proxy("it_psale", true).await.map(|_| ())
}

/// Prepared writes of a hot row one at a time: a guarded decrement goes through the queue (the
/// sold-out short-circuit answers for it), another write goes through the queue on its own
/// (it clears the sold-out state), the server's error reaches the client with its code, and
/// inside a transaction the write runs directly in the transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_hot_writes_take_the_queue_outside_transactions() -> anyhow::Result<()> {
    let _counters = HOT_COUNTERS.lock().await;
    // A sold-out state that outlives the test, so a slow machine cannot let it lapse.
    let (t, _drop, proxy, mut c) =
        proxy_with_stock_table("it_pstock", "queue = { sold_out_ttl_ms = 600000 }", |_| {}).await?;
    c.query_drop(format!("INSERT INTO {t} (sku_id, stock) VALUES (1001, 1)"))
        .await?;
    let set_on_hot = |stock: i64| {
        let t = t.clone();
        async move {
            let mut d = direct(HOT, Some("shop")).await?;
            d.query_drop(format!(
                "UPDATE {t} SET stock = {stock} WHERE sku_id = 1001"
            ))
            .await?;
            d.disconnect().await?;
            anyhow::Ok(())
        }
    };
    let decrement = c
        .prep(format!(
            "UPDATE {t} SET stock = stock - ? WHERE sku_id = ? AND stock >= ?"
        ))
        .await?;
    let restock = c
        .prep(format!("UPDATE {t} SET stock = ? WHERE sku_id = ?"))
        .await?;

    // Sold, then sold out (the server's answer), both through the queue.
    let (batches, batched, sold_out) = hot_counters(&proxy).await?;
    c.exec_drop(&decrement, (1, 1001, 1)).await?;
    assert_eq!(c.affected_rows(), 1, "the last unit");
    c.exec_drop(&decrement, (1, 1001, 1)).await?;
    assert_eq!(c.affected_rows(), 0, "sold out");
    assert_eq!(
        hot_counters(&proxy).await?,
        (batches + 2, batched + 2, sold_out),
        "two decrements, each its own batch"
    );
    // Restocked behind the proxy's back: the row is sold out for the proxy until its TTL, so the
    // next decrement is answered without the database.
    set_on_hot(5).await?;
    c.exec_drop(&decrement, (1, 1001, 1)).await?;
    assert_eq!(
        c.affected_rows(),
        0,
        "answered by the sold-out short-circuit"
    );
    assert_eq!(
        hot_counters(&proxy).await?,
        (batches + 2, batched + 2, sold_out + 1)
    );
    assert_eq!(stock_on_hot(&t).await?, Some(5), "nothing ran");

    // Inside a transaction a prepared decrement runs directly (the proxy's sold-out state does
    // not answer for it), and is undone by its ROLLBACK.
    c.query_drop("BEGIN").await?;
    c.exec_drop(&decrement, (2, 1001, 2)).await?;
    assert_eq!(c.affected_rows(), 1, "ran in the transaction");
    c.query_drop("ROLLBACK").await?;
    assert_eq!(stock_on_hot(&t).await?, Some(5), "rolled back");
    c.query_drop("BEGIN").await?;
    c.exec_drop(&decrement, (2, 1001, 2)).await?;
    c.query_drop("COMMIT").await?;
    assert_eq!(stock_on_hot(&t).await?, Some(3), "committed");
    assert_eq!(
        hot_counters(&proxy).await?,
        (batches + 2, batched + 2, sold_out + 1),
        "nothing of the transactions went through the queue"
    );

    // A write that is not a guarded decrement goes through the queue as a batch of its own and
    // clears the sold-out state: the next decrement reaches the database again.
    c.exec_drop(&restock, (10, 1001)).await?;
    assert_eq!(c.affected_rows(), 1);
    assert_eq!(
        hot_counters(&proxy).await?,
        (batches + 3, batched + 3, sold_out + 1),
        "the restock: one batch of one statement"
    );
    c.exec_drop(&decrement, (4, 1001, 4)).await?;
    assert_eq!(c.affected_rows(), 1, "sold again after the restock");
    assert_eq!(stock_on_hot(&t).await?, Some(6));

    // The server's refusal reaches the client as its own ERR, and nothing changed.
    let e = c
        .exec_drop(&restock, (None::<i64>, 1001))
        .await
        .expect_err("NULL stock");
    match &e {
        mysql_async::Error::Server(se) => assert_eq!(se.code, 1048, "{e}"),
        other => panic!("expected a server error, got {other}"),
    }
    assert_eq!(
        hot_counters(&proxy).await?,
        (batches + 5, batched + 5, sold_out + 1),
        "the failed write went through the queue too"
    );
    assert_eq!(stock_on_hot(&t).await?, Some(6));
    // The session goes on.
    c.exec_drop(&decrement, (1, 1001, 1)).await?;
    assert_eq!(c.affected_rows(), 1);
    assert_eq!(stock_on_hot(&t).await?, Some(5));
    Ok(())
}

/// Without a shard map (`[hotspot]` alone) a prepared write of a hot SKU is still about the hot
/// row: its parameters are read for the hot-SKU decision, it changes the row on the hot
/// instance, through the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_hot_writes_need_no_shard_map() -> anyhow::Result<()> {
    let _counters = HOT_COUNTERS.lock().await;
    let (t, _drop, proxy, mut c) = proxy_with_stock_table("it_nomap", "", |cfg| {
        // The shard map is the config's last part.
        let at = cfg
            .find("[sharding]")
            .expect("the topology has a shard map");
        cfg.truncate(at);
    })
    .await?;
    c.query_drop(format!("INSERT INTO {t} (sku_id, stock) VALUES (1001, 3)"))
        .await?;
    let (batches, batched, sold_out) = hot_counters(&proxy).await?;
    c.exec_drop(
        format!("UPDATE {t} SET stock = stock - ? WHERE sku_id = ? AND stock >= ?"),
        (2, 1001, 2),
    )
    .await?;
    assert_eq!(c.affected_rows(), 1, "the row is found");
    assert_eq!(
        hot_counters(&proxy).await?,
        (batches + 1, batched + 1, sold_out),
        "through the queue"
    );
    let left: Option<i64> = c
        .exec_first(format!("SELECT stock FROM {t} WHERE sku_id = ?"), (1001,))
        .await?;
    assert_eq!(left, Some(1));
    assert_eq!(stock_on_hot(&t).await?, Some(1), "on the hot instance");
    Ok(())
}

/// kill -9 of the hot instance in the middle of a sale (on a private server: the shared topology
/// must not lose its hot instance): every buyer either got OK and its decrement is in the
/// database, or got an error and it is not. The decrements are identical, so the check is a sum:
/// OKs reported with 1 row == initial stock - final stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_hot_instance_mid_sale_loses_or_invents_no_sale() -> anyhow::Result<()> {
    kill_mid_sale("statements").await
}

/// The same with merged batches: a lost batch's marker holds `m/k`, from which each client's
/// answer is rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_hot_instance_mid_merged_sale_loses_or_invents_no_sale() -> anyhow::Result<()> {
    kill_mid_sale("merged").await
}

async fn kill_mid_sale(batch_mode: &str) -> anyhow::Result<()> {
    let _counters = HOT_COUNTERS.lock().await;
    use peakgate_tests::cluster::Cluster;
    let mut c = Cluster::start(0, 0).await?;
    let addr = c.primary.addr();
    let cfg = c.proxy_config("replica_reads = false").replace(
        "[[shards]]",
        &format!(
            "[hotspot]\ninstance = \"{addr}\"\ntable = \"shop.stock\"\nskus = [1001]\n\
             queue = {{ batch_mode = \"{batch_mode}\" }}\n\n[[shards]]"
        ),
    );
    let cfg = cfg.replace(
        "connect_timeout_ms = 500",
        "connect_timeout_ms = 500\npool_wait_timeout_ms = 2000",
    );
    let proxy = TestProxy::start_text(&cfg).await?;
    // The counters belong to the process (`cargo test` runs this file's tests in one): count
    // this test's own from here.
    let resolved0 = proxy.metric("peakgate_hot_batches_resolved_total").await?;
    let merged0 = proxy.metric("peakgate_hot_merged_batches_total").await?;
    let mut p = c.primary.root().await?;
    p.query_drop("CREATE DATABASE shop; CREATE TABLE shop.stock (sku_id BIGINT PRIMARY KEY, stock INT NOT NULL); \
                  INSERT INTO shop.stock VALUES (1001, 100000)")
        .await?;
    drop(p);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (opts, stop) = (proxy.opts(Some("shop")), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut conn: Option<mysql_async::Conn> = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if conn.is_none() {
                    match mysql_async::Conn::new(opts.clone()).await {
                        Ok(c) => conn = Some(c),
                        Err(_) => {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                match c
                    .query_iter(
                        "UPDATE stock SET stock = stock - 1 WHERE sku_id = 1001 AND stock >= 1",
                    )
                    .await
                {
                    Ok(r) => ok += r.affected_rows(),
                    Err(mysql_async::Error::Server(_)) => failed += 1,
                    Err(_) => {
                        failed += 1;
                        conn = None;
                    }
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    c.primary.kill9();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    c.primary.restart().await?;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f) = t.await?;
        ok += o;
        failed += f;
    }
    let mut p = c.primary.root().await?;
    let left: Option<i64> = p
        .query_first("SELECT stock FROM shop.stock WHERE sku_id = 1001")
        .await?;
    let sold = 100_000 - left.unwrap_or(-1);
    let resolved = proxy.metric("peakgate_hot_batches_resolved_total").await? - resolved0;
    let merged = proxy.metric("peakgate_hot_merged_batches_total").await? - merged0;
    println!(
        "kill -9 mid-sale ({batch_mode}, {merged} merged batches): {ok} OK decrements, {failed} errors, {sold} sold in the database; \
         {resolved} batches resolved from their marker after the crash"
    );
    anyhow::ensure!(ok > 0, "nothing sold");
    anyhow::ensure!(
        (batch_mode == "merged") == (merged > 0.0),
        "{merged} merged batches in {batch_mode} mode"
    );
    anyhow::ensure!(resolved >= 1.0, "the kill did not land mid-batch");
    anyhow::ensure!(
        sold == ok as i64,
        "OKs reported {ok} but the database sold {sold}"
    );
    Ok(())
}

/// A write that leaves a warning keeps its connection (on the home shard) for the next statement
/// only: a statement about a hot SKU right after it runs on the hot instance (it was refused as
/// "the transaction runs on another shard").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_sku_statement_after_a_warning_on_the_home_shard() -> anyhow::Result<()> {
    // Its decrement goes through the hot-row queue, whose counters other tests count.
    let _counters = HOT_COUNTERS.lock().await;
    let (t, _drop, _proxy, mut c) = proxy_with_stock_table("it_stock_warn", "", |cfg| {
        *cfg = cfg.replace("[routing]", "[routing]\nreplica_reads = false");
    })
    .await?;
    c.query_drop(format!("INSERT INTO {t} (sku_id, stock) VALUES (1001, 10)"))
        .await?;
    c.query_drop(format!("INSERT INTO {t} (sku_id, stock) VALUES (5, 1)"))
        .await?;
    // A duplicate normal SKU: a warning on the home shard.
    c.query_drop(format!(
        "INSERT IGNORE INTO {t} (sku_id, stock) VALUES (5, 2)"
    ))
    .await?;
    let warnings: Option<i64> = c.query_first("SELECT @@warning_count").await?;
    assert_eq!(warnings, Some(1), "the duplicate's warning");
    c.query_drop(format!(
        "INSERT IGNORE INTO {t} (sku_id, stock) VALUES (5, 2)"
    ))
    .await?;
    c.query_drop(format!(
        "UPDATE {t} SET stock = stock - 1 WHERE sku_id = 1001 AND stock > 0"
    ))
    .await?;
    assert_eq!(
        stock_on_hot(&t).await?,
        Some(9),
        "decremented on the hot instance"
    );
    Ok(())
}
