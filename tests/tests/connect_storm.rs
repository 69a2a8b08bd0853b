//! A connection storm on a busy host: new backend connects time out while the pool's existing
//! connections work. The statements waiting for a connection must be served by the working ones
//! (not all failed with the first timed-out connect), and the circuit breaker must stay closed:
//! the instance is up. With no working connection at all, a failed connect still fails fast.
//!
//! The s0 primary is reached through a small TCP forwarder in the test that, once told to, holds
//! new connections open without passing them on (the server never greets), so a connect times out
//! exactly as it does when the server or the host is too busy to answer in time.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use peakgate_tests::{
    Forwarder, S0_PRIMARY, Scratch, TestProxy, direct, tcp_only, unique_name, use_hot_table,
};

/// The breaker counter belongs to the process, and `cargo test` runs this file's tests as threads
/// of one process: each test holds this lock and counts only what it added.
static BREAKER_COUNTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn proxy_through(f: &Forwarder) -> anyhow::Result<TestProxy> {
    let addr = f.addr.to_string();
    TestProxy::start_with(move |cfg| {
        let primary = format!("primary = \"127.0.0.1:{S0_PRIMARY}\"");
        assert!(cfg.contains(&primary), "{cfg}");
        *cfg = cfg.replace(&primary, &format!("primary = \"{addr}\""));
        tcp_only(cfg);
        *cfg = cfg.replace("[routing]", "[routing]\nreplica_reads = false");
        *cfg = cfg.replacen(
            "[backend]\n",
            "[backend]\npool_size = 4\nconnect_timeout_ms = 300\nbreaker_failures = 3\n",
            1,
        );
        for key in ["pool_size = 32\n", "connect_timeout_ms = 2000\n"] {
            *cfg = cfg.replacen(key, "", 1);
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_connects_do_not_fail_statements_a_live_connection_can_serve()
-> anyhow::Result<()> {
    let _counter = BREAKER_COUNTER.lock().await;
    let fwd = Forwarder::start(S0_PRIMARY, false).await?;
    let proxy = proxy_through(&fwd).await?;
    let opens0 = proxy.metric("peakgate_breaker_opens_total").await?;
    // One working pooled connection.
    let mut warm = proxy.conn(None).await?;
    let one: Option<i64> = warm.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));
    warm.disconnect().await?;
    // From now on every new backend connect times out.
    fwd.stall.store(true, Ordering::SeqCst);
    let clients = 20;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let opts = proxy.opts(None);
        tasks.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await?;
            let got: Option<(i64, i64)> = c.query_first(format!("SELECT SLEEP(0.05), {i}")).await?;
            c.disconnect().await?;
            anyhow::Ok(got)
        }));
    }
    let mut failures = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await? {
            Ok(got) => assert_eq!(got, Some((0, i as i64))),
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(
        fwd.stalled.load(Ordering::SeqCst) >= 1,
        "the pool never tried a new connect: the storm did not happen"
    );
    assert!(
        failures.is_empty(),
        "{} of {clients} statements failed although a live connection could serve them: {failures:?}",
        failures.len()
    );
    let opens = proxy.metric("peakgate_breaker_opens_total").await? - opens0;
    assert_eq!(opens, 0.0, "the breaker opened on an instance that is up");
    // Served one after another on the one live connection, well inside pool_wait_timeout_ms.
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    proxy.assert_serves().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_live_connection_a_timed_out_connect_still_fails_fast() -> anyhow::Result<()> {
    let _counter = BREAKER_COUNTER.lock().await;
    let fwd = Forwarder::start(S0_PRIMARY, true).await?;
    let proxy = proxy_through(&fwd).await?;
    let opens0 = proxy.metric("peakgate_breaker_opens_total").await?;
    let opts = mysql_async::OptsBuilder::from_opts(proxy.opts(None))
        .max_allowed_packet(Some(16 << 20))
        .wait_timeout(Some(28_800));
    let mut c = mysql_async::Conn::new(opts).await?;
    let started = Instant::now();
    match c.query_drop("SELECT 1").await {
        Err(mysql_async::Error::Server(e)) => {
            assert_eq!(e.code, 2003, "{e:?}");
            assert!(e.message.contains(&fwd.addr.to_string()), "{}", e.message);
        }
        other => panic!("expected ERR 2003, got {other:?}"),
    }
    // The connect timeout (300 ms), not the pool wait (10 s).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Repeated failures with nothing alive open the breaker, which then refuses at once.
    for _ in 0..3 {
        let _ = c.query_drop("SELECT 1").await;
    }
    let opens = proxy.metric("peakgate_breaker_opens_total").await? - opens0;
    assert!(opens >= 1.0, "the breaker never opened");
    c.ping().await?;
    c.disconnect().await?;
    Ok(())
}

/// The hot-row queue opens its connections to the hot instance itself: a connect that fails or
/// times out (nothing of the batch sent yet) is tried again within `wait_ms` instead of failing
/// the buyers' statements with "the hot instance failed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hot_row_queue_tries_a_failed_connect_again_within_wait_ms() -> anyhow::Result<()> {
    const HOT: u16 = 3331;
    let t = unique_name("it_hot_connect");
    let _drop = Scratch::hot_table("shop", &t);
    let mut d = direct(HOT, Some("shop")).await?;
    d.query_drop(format!(
        "CREATE TABLE {t} (sku_id BIGINT PRIMARY KEY, stock INT NOT NULL)"
    ))
    .await?;
    d.query_drop(format!("INSERT INTO {t} VALUES (1001, 10)"))
        .await?;
    // Every connect to the hot instance stalls until told otherwise.
    let fwd = Forwarder::start(HOT, true).await?;
    let (addr, table) = (fwd.addr.to_string(), t.clone());
    let proxy = TestProxy::start_with(move |cfg| {
        let hot = format!("instance = \"127.0.0.1:{HOT}\"");
        assert!(cfg.contains(&hot), "{cfg}");
        *cfg = cfg.replace(&hot, &format!("instance = \"{addr}\""));
        tcp_only(cfg);
        use_hot_table(cfg, &table, "queue = { wait_ms = 10000 }");
        *cfg = cfg.replacen("connect_timeout_ms = 2000", "connect_timeout_ms = 300", 1);
    })
    .await?;
    let opts = proxy.opts(Some("shop"));
    let sql = format!("UPDATE {t} SET stock = stock - 1 WHERE sku_id = 1001 AND stock >= 1");
    let buyer = tokio::spawn(async move {
        let mut c = mysql_async::Conn::new(opts).await?;
        c.query_drop(sql).await?;
        let rows = c.affected_rows();
        c.disconnect().await?;
        anyhow::Ok(rows)
    });
    // Let connects time out (300 ms each) a few times, then let them through.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        !buyer.is_finished(),
        "the statement was answered while the hot instance was unreachable"
    );
    fwd.stall.store(false, Ordering::SeqCst);
    let rows = buyer.await??;
    assert!(
        fwd.stalled.load(Ordering::SeqCst) >= 2,
        "connects were not tried again"
    );
    assert_eq!(rows, 1, "the decrement committed once");
    let stock: Option<i64> = d
        .query_first(format!("SELECT stock FROM {t} WHERE sku_id = 1001"))
        .await?;
    assert_eq!(stock, Some(9));
    d.disconnect().await?;
    Ok(())
}
