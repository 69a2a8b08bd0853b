//! Cross-shard transactions as MariaDB XA (`[sharding] cross_shard_transactions = "xa"`) over the
//! topology's two shards: commit and rollback reach both shards or neither, a client that vanishes
//! leaves nothing behind, and a proxy killed (`kill -9`) between prepare and commit leaves
//! prepared branches that the restarted proxy's recovery resolves so both shards agree.
//!
//! The map is the topology's, moved to a database of the test's own; each proxy gets a node id of
//! its own, as the recovery of a proxy resolves only its own node's XA transactions.

use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use peakgate_tests::{
    ProxyProcess, S0_PRIMARY, S1_PRIMARY, TestProxy, direct, map_to_db, members_on_both_shards,
    unique_name,
};

const MEMBERS: &str = "CREATE TABLE members (member_id BIGINT PRIMARY KEY, name VARCHAR(32) NOT NULL, tier INT NOT NULL)";
const ORDERS: &str = "CREATE TABLE orders (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, \
     total DECIMAL(10,2) NOT NULL, status VARCHAR(8) NOT NULL, KEY (member_id))";

/// The topology's config with the map moved to `db`, XA on and node id `node`.
fn xa_config(text: &str, db: &str, node: u16) -> String {
    map_to_db(text, db)
        .replace("[routing]", "[routing]\nreplica_reads = false")
        .replace(
            "[sharding]\nnode_id = 0",
            &format!("[sharding]\nnode_id = {node}\ncross_shard_transactions = \"xa\""),
        )
}

/// A node id no other test of this run uses.
fn node_id() -> u16 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos());
    100 + (n % 900) as u16 + (std::process::id() % 3) as u16
}

/// Creates `db` with members 1..=20 through `p`; returns a member on s0 and one on s1.
async fn setup(p: &mut mysql_async::Conn, db: &str) -> anyhow::Result<(i64, i64)> {
    p.query_drop(format!("CREATE DATABASE {db}")).await?;
    p.query_drop(format!("USE {db}")).await?;
    p.query_drop(MEMBERS).await?;
    p.query_drop(ORDERS).await?;
    members_on_both_shards(p, db).await
}

/// The tier of `member` read directly on the shard primary at `port`.
async fn tier(port: u16, db: &str, member: i64) -> anyhow::Result<Option<i64>> {
    let mut d = direct(port, Some(db)).await?;
    let t: Option<i64> = d
        .query_first(format!(
            "SELECT tier FROM members WHERE member_id = {member}"
        ))
        .await?;
    d.disconnect().await?;
    Ok(t)
}

/// Prepared XA branches of node `node` on the primary at `port`.
async fn prepared(port: u16, node: u16) -> anyhow::Result<usize> {
    let mut d = direct(port, None).await?;
    let rows: Vec<(i64, i64, i64, Vec<u8>)> = d.query("XA RECOVER").await?;
    d.disconnect().await?;
    let prefix = format!("pg-{node}-");
    Ok(rows
        .iter()
        .filter(|(f, ..)| *f == 0x5047)
        .filter(|(.., data)| data.starts_with(prefix.as_bytes()))
        .count())
}

fn drop_db(db: &str) {
    // The proxy creates databases on the hot instance (3331) too.
    for port in [S0_PRIMARY, S1_PRIMARY, 3331] {
        let _ = std::process::Command::new("mysql")
            .args(["--no-defaults", "-h127.0.0.1", "-uroot", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS {db}"))
            .arg(format!("-P{port}"))
            .status();
    }
}

struct DropDb(String);

impl Drop for DropDb {
    fn drop(&mut self) {
        drop_db(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xa_transactions_commit_or_roll_back_on_both_shards() -> anyhow::Result<()> {
    let db = unique_name("it_xa");
    let _drop = DropDb(db.clone());
    let node = node_id();
    let proxy = TestProxy::start_with(|cfg| *cfg = xa_config(cfg, &db, node)).await?;
    let mut p = proxy.conn(None).await?;
    let (a, b) = setup(&mut p, &db).await?;
    // Recovery's first pass made the decision table (the start-up pass runs on its own task).
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let text = proxy.admin_get("/metrics").await?;
        if text.contains("peakgate_xa_recovered_branches_total") && has_log_tables().await? {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Commit: both shards, and nothing visible outside before COMMIT.
    p.query_drop("BEGIN").await?;
    p.query_drop(format!("UPDATE members SET tier = 1 WHERE member_id = {a}"))
        .await?;
    p.query_drop(format!("UPDATE members SET tier = 1 WHERE member_id = {b}"))
        .await?;
    let inside: Option<i64> = p
        .query_first(format!("SELECT tier FROM members WHERE member_id = {a}"))
        .await?;
    assert_eq!(inside, Some(1), "the transaction sees its own write on s0");
    assert_eq!(
        tier(S0_PRIMARY, &db, a).await?,
        Some(0),
        "not visible before COMMIT"
    );
    assert_eq!(
        tier(S1_PRIMARY, &db, b).await?,
        Some(0),
        "not visible before COMMIT"
    );
    p.query_drop("COMMIT").await?;
    assert_eq!(tier(S0_PRIMARY, &db, a).await?, Some(1));
    assert_eq!(tier(S1_PRIMARY, &db, b).await?, Some(1));
    // The decision record is gone once every branch committed.
    for port in [S0_PRIMARY, S1_PRIMARY] {
        let mut d = direct(port, None).await?;
        let n: Option<i64> = d
            .query_first(format!(
                "SELECT COUNT(*) FROM peakgate.xa_log WHERE gtrid LIKE 'pg-{node}-%'"
            ))
            .await?;
        d.disconnect().await?;
        assert_eq!(n, Some(0), "decision records left on {port}");
    }

    // Rollback: neither shard.
    p.query_drop("START TRANSACTION").await?;
    p.query_drop(format!("UPDATE members SET tier = 2 WHERE member_id = {b}"))
        .await?;
    p.query_drop(format!("UPDATE members SET tier = 2 WHERE member_id = {a}"))
        .await?;
    p.query_drop("ROLLBACK").await?;
    assert_eq!(tier(S0_PRIMARY, &db, a).await?, Some(1));
    assert_eq!(tier(S1_PRIMARY, &db, b).await?, Some(1));

    // An INSERT whose id the proxy generates stays inside the transaction.
    p.query_drop("BEGIN").await?;
    p.query_drop(format!(
        "INSERT INTO orders (member_id, total, status) VALUES ({a}, 9.50, 'new')"
    ))
    .await?;
    p.query_drop(format!("UPDATE members SET tier = 3 WHERE member_id = {b}"))
        .await?;
    p.query_drop("ROLLBACK").await?;
    let orders: Option<i64> = p.query_first("SELECT COUNT(*) FROM orders").await?;
    assert_eq!(
        orders,
        Some(0),
        "a rolled-back generated-id INSERT left a row"
    );
    p.query_drop("BEGIN").await?;
    p.query_drop(format!(
        "INSERT INTO orders (member_id, total, status) VALUES ({a}, 9.50, 'new')"
    ))
    .await?;
    let id: Option<u64> = p.query_first("SELECT LAST_INSERT_ID()").await?;
    p.query_drop(format!("UPDATE members SET tier = 3 WHERE member_id = {b}"))
        .await?;
    p.query_drop("COMMIT").await?;
    let got: Option<u64> = p
        .query_first(format!("SELECT id FROM orders WHERE member_id = {a}"))
        .await?;
    assert_eq!(got, id, "the committed order carries the generated id");
    assert_eq!(tier(S1_PRIMARY, &db, b).await?, Some(3));

    // One shard only: committed in one phase.
    p.query_drop("BEGIN").await?;
    p.query_drop(format!("UPDATE members SET tier = 4 WHERE member_id = {a}"))
        .await?;
    p.query_drop("COMMIT").await?;
    assert_eq!(tier(S0_PRIMARY, &db, a).await?, Some(4));
    let status = proxy.status().await?;
    assert_eq!(status["xa"]["mode"], serde_json::json!(true), "{status}");
    assert!(status["xa"]["two_phase"].as_u64() >= Some(2), "{status}");
    let metrics = proxy.admin_get("/metrics").await?;
    for outcome in ["one_phase", "two_phase", "rollback"] {
        let line = format!("peakgate_xa_transactions_total{{outcome=\"{outcome}\"}} ");
        let n: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        assert!(n >= 1, "{outcome}: {n}\n{metrics}");
    }

    // A client that vanishes mid-transaction: both branches roll back and release their locks.
    let mut q = proxy.conn(Some(&db)).await?;
    q.query_drop("BEGIN").await?;
    q.query_drop(format!("UPDATE members SET tier = 5 WHERE member_id = {a}"))
        .await?;
    q.query_drop(format!("UPDATE members SET tier = 5 WHERE member_id = {b}"))
        .await?;
    drop(q);
    for (port, m) in [(S0_PRIMARY, a), (S1_PRIMARY, b)] {
        let mut d = direct(port, Some(&db)).await?;
        d.query_drop("SET SESSION innodb_lock_wait_timeout = 5")
            .await?;
        d.query_drop(format!(
            "UPDATE members SET tier = tier WHERE member_id = {m}"
        ))
        .await?;
        d.disconnect().await?;
    }
    assert_eq!(tier(S0_PRIMARY, &db, a).await?, Some(4));
    assert_eq!(tier(S1_PRIMARY, &db, b).await?, Some(3));
    assert_eq!(prepared(S0_PRIMARY, node).await?, 0);
    assert_eq!(prepared(S1_PRIMARY, node).await?, 0);
    drop(p);
    Ok(())
}

async fn has_log_tables() -> anyhow::Result<bool> {
    for port in [S0_PRIMARY, S1_PRIMARY] {
        let mut d = direct(port, None).await?;
        let n: Option<i64> = d
            .query_first(
                "SELECT COUNT(*) FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = 'peakgate' AND TABLE_NAME = 'xa_log'",
            )
            .await?;
        d.disconnect().await?;
        if n != Some(1) {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_killed_between_prepare_and_commit_leaves_both_shards_agreeing()
-> anyhow::Result<()> {
    let db = unique_name("it_xa_kill");
    let _drop = DropDb(db.clone());
    let node = node_id() + 1;
    let topo = std::fs::read_to_string(peakgate_tests::ensure_topology()?)?
        .replace("mysql = \"127.0.0.1:6033\"", "mysql = \"127.0.0.1:0\"")
        .replace("admin = \"127.0.0.1:6080\"", "admin = \"127.0.0.1:0\"");
    let dir = std::env::temp_dir().join(&db);
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("peakgate.toml");
    std::fs::write(&config, xa_config(&topo, &db, node))?;

    let mut proxy = ProxyProcess::start(env!("CARGO_BIN_EXE_proxy_process"), &config, None).await?;
    let mut p = mysql_async::Conn::new(proxy.opts("mysql")?).await?;
    let (a, b) = setup(&mut p, &db).await?;
    drop(p);
    let result = async {
        // Killed after both branches prepared, before the decision: all rolled back.
        // Killed after the coordinator (s0, the first branch) committed: all committed.
        for (round, failpoint, committed) in [
            (1, "xa-after-prepare", false),
            (2, "xa-after-commit-decision", true),
        ] {
            proxy.kill9().await?;
            proxy = ProxyProcess::start(
                env!("CARGO_BIN_EXE_proxy_process"),
                &config,
                Some(failpoint),
            )
            .await?;
            let before = (
                tier(S0_PRIMARY, &db, a).await?,
                tier(S1_PRIMARY, &db, b).await?,
            );
            let opts = proxy.opts(&db)?;
            let client = tokio::spawn(async move {
                let mut c = mysql_async::Conn::new(opts).await?;
                c.query_drop("BEGIN").await?;
                c.query_drop(format!(
                    "UPDATE members SET tier = {} WHERE member_id = {a}",
                    10 + round
                ))
                .await?;
                c.query_drop(format!(
                    "UPDATE members SET tier = {} WHERE member_id = {b}",
                    10 + round
                ))
                .await?;
                c.query_drop("COMMIT").await?;
                anyhow::Ok(())
            });
            // Wait until the proxy is where the failpoint holds it, as the servers show it.
            let want_s0 = usize::from(!committed);
            wait_until(failpoint, Duration::from_secs(20), || async {
                Ok(prepared(S0_PRIMARY, node).await? == want_s0
                    && prepared(S1_PRIMARY, node).await? == 1)
            })
            .await?;
            proxy.kill9().await?;
            let answered = client.await?;
            assert!(
                answered.is_err(),
                "{failpoint}: the client got OK from a proxy killed before answering"
            );
            // Prepared branches hold their rows until someone decides.
            assert_eq!(prepared(S1_PRIMARY, node).await?, 1, "{failpoint}");
            proxy = ProxyProcess::start(env!("CARGO_BIN_EXE_proxy_process"), &config, None).await?;
            wait_until("recovery", Duration::from_secs(20), || async {
                Ok(
                    prepared(S0_PRIMARY, node).await? == 0
                        && prepared(S1_PRIMARY, node).await? == 0,
                )
            })
            .await?;
            let after = (
                tier(S0_PRIMARY, &db, a).await?,
                tier(S1_PRIMARY, &db, b).await?,
            );
            let new = Some(10 + round);
            if committed {
                assert_eq!(after, (new, new), "{failpoint}: both shards commit");
            } else {
                assert_eq!(after, before, "{failpoint}: both shards roll back");
            }
            println!("{failpoint}: before {before:?}, after recovery {after:?}");
        }
        anyhow::Ok(())
    }
    .await;
    let _ = proxy.kill9().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The flash sale's second variant (issue contract): each buyer decrements the hot SKU's stock
/// (on the hot instance) and inserts its order row (on its member's shard) in one transaction,
/// which runs as an XA transaction over both; the hot-row queue must not batch these decrements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_sale_with_the_order_in_the_same_transaction_never_oversells() -> anyhow::Result<()>
{
    let db = unique_name("it_xa_sale");
    let _drop = DropDb(db.clone());
    let node = node_id() + 2;
    let proxy = TestProxy::start_with(|cfg| {
        *cfg = xa_config(cfg, &db, node)
            .replace(
                "table = \"shop.sku_stock\"",
                &format!("table = \"{db}.sku_stock\""),
            )
            .replace(
                "max_client_connections = 4096",
                "max_client_connections = 8000",
            )
            // 5,000 clients at once on a cold pool of a busy 2-core machine: connects and pool
            // waits take seconds here, which is not what this test is about.
            .replace(
                "connect_timeout_ms = 2000",
                "connect_timeout_ms = 15000\npool_wait_timeout_ms = 120000",
            );
    })
    .await?;
    let mut p = proxy.conn(None).await?;
    setup(&mut p, &db).await?;
    p.query_drop("CREATE TABLE sku_stock (sku_id BIGINT PRIMARY KEY, stock INT NOT NULL)")
        .await?;
    p.query_drop("INSERT INTO sku_stock (sku_id, stock) VALUES (1001, 1000)")
        .await?;
    let buyers: i64 = std::env::var("SALE_BUYERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(buyers as usize));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for member in 1..=buyers {
        let (opts, start) = (proxy.opts(Some(&db)), start.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await?;
            start.wait().await;
            let r = async {
                c.query_drop("BEGIN").await?;
                let res = c
                    .query_iter("UPDATE sku_stock SET stock = stock - 1 WHERE sku_id = 1001 AND stock >= 1")
                    .await?;
                let bought = res.affected_rows();
                drop(res);
                if bought == 1 {
                    c.query_drop(format!(
                        "INSERT INTO orders (member_id, total, status) VALUES ({member}, 1.00, 'flash')"
                    ))
                    .await?;
                    c.query_drop("COMMIT").await?;
                } else {
                    c.query_drop("ROLLBACK").await?;
                }
                anyhow::Ok(bought)
            }
            .await;
            let _ = c.disconnect().await;
            anyhow::Ok((member, r.map_err(|e| e.to_string())))
        }));
    }
    let (mut sold, mut errors) = (std::collections::BTreeSet::new(), Vec::new());
    let mut affected = 0;
    for t in tasks {
        let (member, r) = t.await??;
        match r {
            Ok(n) => {
                affected += n;
                if n == 1 {
                    sold.insert(member);
                }
            }
            Err(e) => errors.push((member, e)),
        }
    }
    let took = started.elapsed();
    let mut hot = direct(3331, Some(&db)).await?;
    let left: Option<i64> = hot
        .query_first("SELECT stock FROM sku_stock WHERE sku_id = 1001")
        .await?;
    hot.disconnect().await?;
    let mut in_db = std::collections::BTreeSet::new();
    for port in [S0_PRIMARY, S1_PRIMARY] {
        let mut d = direct(port, Some(&db)).await?;
        let m: Vec<i64> = d.query("SELECT member_id FROM orders").await?;
        d.disconnect().await?;
        in_db.extend(m);
    }
    println!(
        "{buyers} buyers in {took:?}: {} bought, {} errors (first: {:?}), stock left {left:?}, {} orders",
        sold.len(),
        errors.len(),
        errors.first(),
        in_db.len()
    );
    assert!(
        errors.is_empty(),
        "errors: {:?}",
        &errors[..errors.len().min(5)]
    );
    assert_eq!(sold.len(), 1000, "exactly the stock is sold");
    assert_eq!(affected, 1000, "client-reported affected rows");
    assert_eq!(left, Some(0), "stock ends at 0");
    assert_eq!(in_db, sold, "an order row exactly for every buyer told OK");
    assert_eq!(prepared(S0_PRIMARY, node).await?, 0);
    assert_eq!(prepared(S1_PRIMARY, node).await?, 0);
    assert_eq!(prepared(3331, node).await?, 0);
    Ok(())
}
