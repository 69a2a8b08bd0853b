//! Pipelined shared backend connections (`backend.pipeline_connections`): many clients' autocommit
//! reads on a few shared connections, each client getting exactly its own answers, in its own
//! database, also for large results and when a client vanishes mid-answer.

use mysql_async::prelude::*;
use peakgate_tests::TestProxy;
use peakgate_tests::raw::{COM_QUERY, RawConn};

async fn pipelined_proxy() -> anyhow::Result<TestProxy> {
    TestProxy::start_with(|t| {
        *t = t.replacen("[backend]", "[backend]\npipeline_connections = 2", 1);
    })
    .await
}

/// The tests of this file run one at a time: `cargo test` runs them as threads of one process,
/// whose metrics are process-wide, and some count pipelined statements.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_get_their_own_answers_in_their_own_database() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let proxy = pipelined_proxy().await?;
    let mut tasks = Vec::new();
    for client in 0..40u32 {
        let opts = proxy.opts(Some(if client % 2 == 0 { "shop" } else { "sbtest" }));
        tasks.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await?;
            let db = if client % 2 == 0 { "shop" } else { "sbtest" };
            for i in 0..150u32 {
                let row: Option<(u32, u32, String, String)> = c
                    .query_first(format!(
                        "SELECT {client}, {i}, DATABASE(), REPEAT('p', {})",
                        (client * 7 + i) % 300
                    ))
                    .await?;
                let (c_seen, i_seen, db_seen, pad) = row.expect("one row");
                assert_eq!((c_seen, i_seen), (client, i), "another client's answer");
                assert_eq!(db_seen, db);
                assert_eq!(pad.len() as u32, (client * 7 + i) % 300);
                if i == 149 {
                    // A statement with session effects goes through the pool (and a session
                    // with user variables stays off the shared connections).
                    c.query_drop(format!("SET @mine = {client}")).await?;
                    let mine: Option<u32> = c.query_first("SELECT @mine").await?;
                    assert_eq!(mine, Some(client));
                }
            }
            c.disconnect().await?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let metrics = proxy.admin_get("/metrics").await?;
    let pipelined = metric(&metrics, "peakgate_pipelined_statements_total");
    assert!(
        pipelined > 3_000,
        "most reads should be pipelined, got {pipelined}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_and_vanishing_clients_keep_the_shared_connection_in_step()
-> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let proxy = pipelined_proxy().await?;
    // Warm up the shared connections (they open in the background on first use).
    let mut warm = proxy.conn(Some("shop")).await?;
    for _ in 0..20 {
        let _: Option<u32> = warm.query_first("SELECT 1").await?;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Clients that start a 20 MB answer and vanish after a few packets.
    for _ in 0..4 {
        let mut raw = RawConn::login(proxy.mysql, "shop", "shop", Some("shop")).await?;
        let mut q = vec![COM_QUERY];
        q.extend_from_slice(b"SELECT REPEAT('x', 1000) FROM seq_1_to_20000");
        raw.write_packet(0, &q).await?;
        for _ in 0..5 {
            raw.expect_packet().await?;
        }
        drop(raw);
    }
    // Meanwhile and afterwards, large and small answers are whole and exact.
    let mut handles = Vec::new();
    for k in 0..6u32 {
        let opts = proxy.opts(Some("shop"));
        handles.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await?;
            for round in 0..5u32 {
                let rows: Vec<String> = c
                    .query("SELECT REPEAT('y', 1000) FROM seq_1_to_3000")
                    .await?;
                assert_eq!(rows.len(), 3000);
                assert!(rows.iter().all(|r| r.len() == 1000));
                let v: Option<(u32, u32)> = c.query_first(format!("SELECT {k}, {round}")).await?;
                assert_eq!(v, Some((k, round)));
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let metrics = proxy.admin_get("/metrics").await?;
    assert!(
        metric(&metrics, "peakgate_pipelined_statements_total") > 0,
        "pipeline was used"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_reads_are_pipelined_per_database_and_parameters() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let proxy = pipelined_proxy().await?;
    let before = metric(
        &proxy.admin_get("/metrics").await?,
        "peakgate_pipelined_statements_total",
    );
    let mut tasks = Vec::new();
    for client in 0..24u32 {
        let db = if client % 2 == 0 { "shop" } else { "sbtest" };
        let opts = proxy.opts(Some(db));
        tasks.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await?;
            let stmt = c.prep("SELECT ?, ? * 2, DATABASE()").await?;
            for i in 0..100u32 {
                let row: Option<(u32, u32, String)> = c.exec_first(&stmt, (client, i)).await?;
                assert_eq!(
                    row,
                    Some((client, i * 2, db.to_string())),
                    "client {client} round {i}"
                );
            }
            c.disconnect().await?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let after = metric(
        &proxy.admin_get("/metrics").await?,
        "peakgate_pipelined_statements_total",
    );
    assert!(
        after - before > 1_000,
        "prepared reads should be pipelined: {}",
        after - before
    );
    Ok(())
}

/// Reads on `c` until the proxy has a shared connection open (the first reads open it in the
/// background).
async fn wait_for_shared_connection(
    proxy: &TestProxy,
    c: &mut mysql_async::Conn,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let open = |m: String| {
        m.lines()
            .filter(|l| l.starts_with("peakgate_pipeline_connections{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    while open(proxy.admin_get("/metrics").await?) < 1.0 {
        c.query_drop("SELECT 1").await?;
        anyhow::ensure!(std::time::Instant::now() < deadline, "no shared connection");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

/// How many of 8 quick reads, sent one after another by 8 other clients while a `SLEEP(2)` runs
/// on the proxy's only shared connection, were answered while the sleep still had a second to go.
async fn quick_reads_beside_a_slow_one(stall_ms: u64) -> anyhow::Result<usize> {
    let proxy = TestProxy::start_with(|t| {
        *t = t.replacen(
            "[backend]",
            &format!("[backend]\npipeline_connections = 1\npipeline_stall_ms = {stall_ms}"),
            1,
        );
    })
    .await?;
    let mut slow = proxy.conn(Some("shop")).await?;
    let mut quick = Vec::new();
    for _ in 0..8 {
        quick.push(proxy.conn(Some("shop")).await?);
    }
    wait_for_shared_connection(&proxy, &mut slow).await?;
    let sleeper = tokio::spawn(async move {
        let r: Option<i64> = slow.query_first("SELECT SLEEP(2)").await?;
        anyhow::ensure!(r == Some(0), "SLEEP answered {r:?}");
        anyhow::Ok(std::time::Instant::now())
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut answered = Vec::new();
    for (i, c) in quick.iter_mut().enumerate() {
        let v: Option<usize> = c.query_first(format!("SELECT {i}")).await?;
        anyhow::ensure!(v == Some(i), "client {i} got {v:?}");
        answered.push(std::time::Instant::now());
    }
    let slept = sleeper.await??;
    // A read queued behind the sleep is answered right after it, maybe noted a moment before
    // the sleeper's own task notes the end: count only reads answered a full second earlier.
    let margin = std::time::Duration::from_secs(1);
    Ok(answered.iter().filter(|t| **t + margin < slept).count())
}

/// A slow read on a shared connection holds up only what was queued behind it before
/// `pipeline_stall_ms` passed: later reads go to the pool. With the guard out of reach (an hour),
/// the same reads all wait for the slow one, which shows they would have queued behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_read_stalls_only_what_queued_before_the_guard() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let guarded = quick_reads_beside_a_slow_one(5).await?;
    assert_eq!(
        guarded, 8,
        "quick reads answered during the slow one, guard on"
    );
    let unguarded = quick_reads_beside_a_slow_one(3_600_000).await?;
    assert_eq!(
        unguarded, 0,
        "quick reads answered during the slow one, guard off"
    );
    Ok(())
}

/// `CAST(value AS SIGNED)` (a warning for a value that is not a number), as text or prepared,
/// read until it ran on a shared connection: it runs where reads go (the replica, or the primary
/// while the replica is not eligible), whose shared connection may still be opening.
async fn read_on_a_shared_connection(
    proxy: &TestProxy,
    c: &mut mysql_async::Conn,
    value: &str,
    prepared: bool,
) -> anyhow::Result<Option<i64>> {
    let pipelined = || async {
        let m = proxy.admin_get("/metrics").await?;
        anyhow::Ok(metric(&m, "peakgate_pipelined_statements_total"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let before = pipelined().await?;
        let v: Option<i64> = if prepared {
            c.exec_first("SELECT CAST(? AS SIGNED)", (value,)).await?
        } else {
            c.query_first(format!("SELECT CAST('{value}' AS SIGNED)"))
                .await?
        };
        if pipelined().await? - before == 1 {
            return Ok(v);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the read never ran on a shared connection"
        );
        // A pooled read with warnings keeps its connection for one statement: let it go.
        c.query_drop("SELECT 1").await?;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A read answered on a shared connection with warnings: `SHOW WARNINGS` and `@@warning_count`
/// right after it (one or several of them) show them, as on a plain server (the proxy runs the
/// read again on a pooled connection and asks there); text and prepared reads alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_warnings_after_a_pipelined_read() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let proxy = pipelined_proxy().await?;
    let mut c = proxy.conn(Some("shop")).await?;
    wait_for_shared_connection(&proxy, &mut c).await?;
    let v = read_on_a_shared_connection(&proxy, &mut c, "7x", false).await?;
    assert_eq!(v, Some(7));
    let w: Vec<(String, u32, String)> = c.query("SHOW WARNINGS").await?;
    assert!(
        w.len() == 1 && w[0].1 == 1292 && w[0].2.contains("7x"),
        "SHOW WARNINGS: {w:?}"
    );
    let _: Option<i64> = c.query_first("SELECT CAST('8y' AS SIGNED)").await?;
    let n: Option<u32> = c.query_first("SELECT @@warning_count").await?;
    assert_eq!(n, Some(1), "@@warning_count right after the read");
    for _ in 0..2 {
        let w: Vec<(String, u32, String)> = c.query("SHOW WARNINGS").await?;
        assert!(
            w.len() == 1 && w[0].2.contains("8y"),
            "SHOW WARNINGS after @@warning_count: {w:?}"
        );
    }
    // The same for a prepared read (binary protocol): it is prepared and run again on the pool.
    let v = read_on_a_shared_connection(&proxy, &mut c, "9z", true).await?;
    assert_eq!(v, Some(9));
    let w: Vec<(String, u32, String)> = c.query("SHOW WARNINGS").await?;
    assert!(
        w.len() == 1 && w[0].1 == 1292 && w[0].2.contains("9z"),
        "SHOW WARNINGS after a prepared read: {w:?}"
    );
    Ok(())
}
