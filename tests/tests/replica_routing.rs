//! Replication-aware reads against a private cluster of real mariadbd servers with GTID
//! replication (the tests stop replication, kill and freeze servers, so they do not use the shared
//! topology). A read tells where it ran by `SELECT @@server_id` (each server's id is its port).
//!
//! The tests run one at a time (they measure timings and latency on a 2-core machine).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use peakgate_tests::TestProxy;
use peakgate_tests::cluster::Cluster;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

const FAST: &str =
    "heartbeat_ms = 100\nhealth_timeout_ms = 400\nmax_replica_lag_ms = 500\nhold_down_ms = 1000";

/// The instance entry of `/status`.
async fn instance(proxy: &TestProxy, addr: &str) -> anyhow::Result<serde_json::Value> {
    let body = proxy.admin_get("/status").await?;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    v["instances"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["instance"] == addr).cloned())
        .ok_or_else(|| anyhow::anyhow!("{addr} not in /status: {body}"))
}

async fn wait_eligible(
    proxy: &TestProxy,
    addr: &str,
    want: bool,
    within: Duration,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    loop {
        if instance(proxy, addr).await?["eligible"] == want {
            return Ok(t.elapsed());
        }
        if t.elapsed() > within {
            anyhow::bail!(
                "{addr} not eligible={want} within {within:?}: {}",
                instance(proxy, addr).await?
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One read: when it started, where it ran (server id), or its error.
#[derive(Debug, Clone)]
struct Read {
    at: Instant,
    server: Option<u32>,
    error: Option<String>,
}

/// `n` sessions reading `SELECT @@server_id` in a loop until `stop`.
fn readers(
    proxy: &TestProxy,
    n: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Read>>> {
    (0..n)
        .map(|_| {
            let opts = proxy.opts(None);
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                let mut conn: Option<mysql_async::Conn> = None;
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    if conn.is_none() {
                        match mysql_async::Conn::new(opts.clone()).await {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                out.push(Read {
                                    at,
                                    server: None,
                                    error: Some(e.to_string()),
                                });
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        }
                    }
                    let Some(c) = conn.as_mut() else { continue };
                    match c.query_first::<u32, _>("SELECT @@server_id").await {
                        Ok(id) => out.push(Read {
                            at,
                            server: id,
                            error: None,
                        }),
                        Err(e) => {
                            out.push(Read {
                                at,
                                server: None,
                                error: Some(e.to_string()),
                            });
                            conn = None;
                        }
                    }
                }
                out
            })
        })
        .collect()
}

async fn join(handles: Vec<tokio::task::JoinHandle<Vec<Read>>>) -> anyhow::Result<Vec<Read>> {
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await?);
    }
    all.sort_by_key(|r| r.at);
    Ok(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_gets_no_reads_within_two_heartbeats_and_comes_back() -> anyhow::Result<()>
{
    let _serial = SERIAL.lock().await;
    let c = Cluster::start(2, 0).await?;
    let proxy = TestProxy::start_text(&c.proxy_config(FAST)).await?;
    let (a, b) = (&c.replicas[0], &c.replicas[1]);
    for r in [a, b] {
        wait_eligible(&proxy, &r.addr(), true, Duration::from_secs(10)).await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = readers(&proxy, 4, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. The SQL thread stops: out within 2 x heartbeat_ms.
    let mut ra = a.root().await?;
    let t_stop = Instant::now();
    ra.query_drop("STOP SLAVE SQL_THREAD").await?;
    let out_after = wait_eligible(&proxy, &a.addr(), false, Duration::from_secs(2)).await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let st = instance(&proxy, &a.addr()).await?;
    assert_eq!(st["state"], "replication_stopped", "{st}");

    // 2. Restarted: back after the hold-down period.
    ra.query_drop("START SLAVE SQL_THREAD").await?;
    let t_start = Instant::now();
    let back_after = wait_eligible(&proxy, &a.addr(), true, Duration::from_secs(5)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 3. MASTER_DELAY: replication runs but 3 s behind; the heartbeat shows it.
    let t_delay = Instant::now();
    ra.query_drop("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 3; START SLAVE")
        .await?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let st = instance(&proxy, &a.addr()).await?;
    let lag = st["lag_ms"].as_u64().unwrap_or(0);
    assert!(lag > 500, "a replica 3 s behind must show its lag: {st}");
    assert_eq!(st["eligible"], false, "{st}");
    let t_delay_end = Instant::now();
    ra.query_drop("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE")
        .await?;
    wait_eligible(&proxy, &a.addr(), true, Duration::from_secs(10)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let reads = join(tasks).await?;

    let aid = u32::from(a.port);
    let on_a = |from: Instant, to: Instant| {
        reads
            .iter()
            .filter(|r| r.at >= from && r.at < to && r.server == Some(aid))
            .count()
    };
    let window = Duration::from_millis(200);
    println!(
        "reads {}; marked out {out_after:?} after STOP SLAVE SQL_THREAD, back {back_after:?} after START; lag seen {lag} ms",
        reads.len()
    );
    assert!(
        out_after <= window + Duration::from_millis(100),
        "out after {out_after:?}"
    );
    assert!(
        on_a(reads[0].at, t_stop) > 0,
        "the reader never used replica a before the test"
    );
    assert_eq!(
        on_a(t_stop + window, t_start),
        0,
        "reads landed on a stopped replica"
    );
    // Its lag grows from 0 when replication restarts with the delay: it must be out within
    // 2 x heartbeat_ms of passing max_replica_lag_ms (500 ms).
    assert_eq!(
        on_a(t_delay + Duration::from_millis(500) + window, t_delay_end),
        0,
        "reads landed on a delayed replica"
    );
    assert!(
        on_a(t_start + back_after, t_delay) > 0,
        "replica a never came back"
    );
    let errors: Vec<_> = reads.iter().filter_map(|r| r.error.clone()).collect();
    assert!(errors.is_empty(), "client errors: {errors:?}");
    Ok(())
}

/// 32 sessions write their own row and read it back at once, for `secs`, while one replica runs
/// 2 s behind (still under the lag limit, so eligible) and the other stops its SQL thread now and
/// then. Returns (stale reads, reads on replicas, reads on the primary).
async fn stale_read_checker(mode: &str, secs: u64) -> anyhow::Result<(usize, usize, usize)> {
    let c = Cluster::start(2, 0).await?;
    let routing = format!(
        "heartbeat_ms = 100\nhealth_timeout_ms = 400\nmax_replica_lag_ms = 5000\nhold_down_ms = 300\nread_your_writes = \"{mode}\"\nryw_wait_ms = 50"
    );
    let proxy = TestProxy::start_text(&c.proxy_config(&routing)).await?;
    let mut p = c.primary.root().await?;
    p.query_drop(
        "CREATE DATABASE shop; CREATE TABLE shop.kv (id INT PRIMARY KEY, v BIGINT NOT NULL)",
    )
    .await?;
    p.query_drop(format!(
        "INSERT INTO shop.kv VALUES {}",
        (0..32)
            .map(|i| format!("({i}, 0)"))
            .collect::<Vec<_>>()
            .join(",")
    ))
    .await?;
    c.sync().await?;
    let (slow, flaky) = (&c.replicas[0], &c.replicas[1]);
    slow.root()
        .await?
        .query_drop("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 2; START SLAVE")
        .await?;
    for r in [slow, flaky] {
        wait_eligible(&proxy, &r.addr(), true, Duration::from_secs(10)).await?;
    }
    let ids = [
        u32::from(slow.port),
        u32::from(flaky.port),
        u32::from(c.primary.port),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for id in 0..32u32 {
        let opts = proxy.opts(Some("shop"));
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await?;
            let (mut stale, mut replica, mut primary) = (0usize, 0usize, 0usize);
            let mut v = 0i64;
            while !stop.load(Ordering::Relaxed) {
                v += 1;
                conn.exec_drop("UPDATE kv SET v = ? WHERE id = ?", (v, id))
                    .await?;
                let (got, server): (i64, u32) = conn
                    .query_first(format!("SELECT v, @@server_id FROM kv WHERE id = {id}"))
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("row {id} missing"))?;
                if got < v {
                    stale += 1;
                }
                if server == ids[2] {
                    primary += 1;
                } else if ids[..2].contains(&server) {
                    replica += 1;
                }
            }
            anyhow::Ok((stale, replica, primary))
        }));
    }
    let flaky_conn = flaky.root().await;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut fr = flaky_conn?;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        fr.query_drop("STOP SLAVE SQL_THREAD").await?;
        tokio::time::sleep(Duration::from_millis(150)).await;
        fr.query_drop("START SLAVE SQL_THREAD").await?;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut stale, mut replica, mut primary) = (0, 0, 0);
    for t in tasks {
        let (s, r, p) = t.await??;
        stale += s;
        replica += r;
        primary += p;
    }
    println!(
        "read_your_writes = {mode}: {stale} stale reads; reads on replicas {replica}, on the primary {primary}"
    );
    Ok((stale, replica, primary))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_read_your_writes_never_reads_stale_and_mostly_reads_replicas() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let (stale, replica, primary) = stale_read_checker("gtid", 20).await?;
    assert_eq!(stale, 0, "stale reads in gtid mode");
    assert!(
        replica > primary,
        "most reads should run on replicas: {replica} vs {primary}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stale_read_checker_finds_stale_reads_without_read_your_writes() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let (stale, _, _) = stale_read_checker("off", 5).await?;
    assert!(
        stale > 0,
        "with read_your_writes = off the checker must see stale reads"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_frozen_replicas_cost_no_errors_once_marked_out() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start(2, 0).await?;
    let proxy = TestProxy::start_text(&c.proxy_config(FAST)).await?;
    let (a_addr, b_addr) = (c.replicas[0].addr(), c.replicas[1].addr());
    for r in [&a_addr, &b_addr] {
        wait_eligible(&proxy, r, true, Duration::from_secs(10)).await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = readers(&proxy, 64, stop.clone());
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // kill -9 of replica a.
    let t_kill = Instant::now();
    c.replicas[0].kill9();
    let kill_out = wait_eligible(&proxy, &a_addr, false, Duration::from_secs(2)).await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    c.replicas[0].restart().await?;
    let back = wait_eligible(&proxy, &a_addr, true, Duration::from_secs(15)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // SIGSTOP of replica b: out within health_timeout_ms.
    let t_freeze = Instant::now();
    c.replicas[1].stop_signal()?;
    let freeze_out = wait_eligible(&proxy, &b_addr, false, Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t_thaw = Instant::now();
    c.replicas[1].cont_signal()?;
    let freeze_out = freeze_out?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let reads = join(tasks).await?;

    let errors_in = |from: Instant, to: Instant| {
        reads
            .iter()
            .filter(|r| r.at >= from && r.at < to && r.error.is_some())
            .collect::<Vec<_>>()
    };
    let before_kill_out = errors_in(t_kill, t_kill + kill_out);
    let after_kill_out = errors_in(t_kill + kill_out, t_freeze);
    let before_freeze_out = errors_in(t_freeze, t_freeze + freeze_out);
    let after_freeze_out = errors_in(t_freeze + freeze_out, t_thaw);
    println!(
        "{} reads by 64 sessions; kill -9: out after {kill_out:?}, {} errors before, back after {back:?}; \
         SIGSTOP: out after {freeze_out:?}, {} errors before",
        reads.len(),
        before_kill_out.len(),
        before_freeze_out.len()
    );
    assert!(
        kill_out <= Duration::from_millis(300),
        "kill -9 noticed after {kill_out:?}"
    );
    assert!(
        freeze_out <= Duration::from_millis(600),
        "SIGSTOP noticed after {freeze_out:?}"
    );
    assert!(
        after_kill_out.is_empty(),
        "errors after the killed replica was out: {after_kill_out:?}"
    );
    assert!(
        after_freeze_out.is_empty(),
        "errors after the frozen replica was out: {after_freeze_out:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reporting_reads_run_on_the_reporting_replica_and_spare_point_selects() -> anyhow::Result<()>
{
    let _serial = SERIAL.lock().await;
    let c = Cluster::start(1, 1).await?;
    let routing = format!(
        "{FAST}\nreporting_max_concurrency = 10\n[[routing.rules]]\nuser = \"report\"\nroute = \"reporting\"\n[[routing.rules]]\nkind = \"read\"\ntables = [\"daily_sales\"]\nroute = \"reporting\""
    );
    let proxy = TestProxy::start_text(&c.proxy_config(&routing)).await?;
    let rep = &c.reporting[0];
    wait_eligible(&proxy, &rep.addr(), true, Duration::from_secs(10)).await?;
    wait_eligible(&proxy, &c.replicas[0].addr(), true, Duration::from_secs(10)).await?;
    let mut p = c.primary.root().await?;
    p.query_drop("CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, status VARCHAR(10), total INT)")
        .await?;
    p.query_drop(format!(
        "INSERT INTO shop.orders VALUES {}",
        (0..200)
            .map(|i| format!("({i}, '{}', {i})", ["new", "paid", "sent"][i % 3]))
            .collect::<Vec<_>>()
            .join(",")
    ))
    .await?;
    c.sync().await?;

    // By hint and by user rule.
    let mut conn = proxy.conn(Some("shop")).await?;
    let (server, n): (u32, i64) = conn
        .query_first("/* peakgate: route=reporting */ SELECT @@server_id, COUNT(*) FROM orders GROUP BY status ORDER BY status LIMIT 1")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    assert_eq!(server, u32::from(rep.port));
    assert_eq!(n, 67);
    let opts = mysql_async::OptsBuilder::from_opts(proxy.opts(Some("shop"))).user(Some("report"));
    let mut report = mysql_async::Conn::new(opts.clone()).await?;
    let server: Option<u32> = report.query_first("SELECT @@server_id").await?;
    assert_eq!(server, Some(u32::from(rep.port)));
    // By table rule.
    p.query_drop("CREATE TABLE shop.daily_sales (day DATE PRIMARY KEY, total INT)")
        .await?;
    p.query_drop("INSERT INTO shop.daily_sales VALUES ('2026-11-11', 42)")
        .await?;
    c.sync().await?;
    let server: Option<u32> = conn
        .query_first("SELECT @@server_id FROM daily_sales WHERE total > 0")
        .await?;
    assert_eq!(server, Some(u32::from(rep.port)), "a daily_sales read");
    // OLTP reads never go there.
    for _ in 0..50 {
        let s: Option<u32> = conn.query_first("SELECT @@server_id").await?;
        assert_ne!(s, Some(u32::from(rep.port)));
    }

    // p99 of point selects alone, then with 20 slow reports running.
    async fn p99(proxy: &TestProxy, secs: u64) -> anyhow::Result<Duration> {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let opts = proxy.opts(Some("shop"));
            tasks.push(tokio::spawn(async move {
                let mut c = mysql_async::Conn::new(opts).await?;
                let mut lat = Vec::new();
                let end = Instant::now() + Duration::from_secs(secs);
                let mut i = 0;
                while Instant::now() < end {
                    let t = Instant::now();
                    let _: Option<i64> = c
                        .query_first(format!("SELECT total FROM orders WHERE id = {}", i % 200))
                        .await?;
                    lat.push(t.elapsed());
                    i += 1;
                }
                anyhow::Ok(lat)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        all.sort();
        Ok(all[all.len() * 99 / 100])
    }
    let alone = p99(&proxy, 3).await?;
    let mut reports = Vec::new();
    for _ in 0..20 {
        let opts = opts.clone();
        reports.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await?;
            let _: Option<i64> = c
                .query_first("SELECT SLEEP(2) + COUNT(*) FROM orders")
                .await?;
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let in_flight = instance(&proxy, &rep.addr()).await?["in_flight"]
        .as_u64()
        .unwrap_or(0);
    let busy = p99(&proxy, 3).await?;
    for r in reports {
        r.await??;
    }
    println!(
        "point-select p99 alone {alone:?}, with 20 slow reports {busy:?}; reports in flight on the reporting replica: {in_flight}"
    );
    assert!(
        in_flight <= 10,
        "reporting_max_concurrency = 10, saw {in_flight}"
    );
    assert!(
        busy <= alone * 2 + Duration::from_millis(2),
        "p99 rose from {alone:?} to {busy:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_slow_down_while_a_replica_lags_except_critical_ones() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start(1, 0).await?;
    let routing = "heartbeat_ms = 100\nhealth_timeout_ms = 400\nhold_down_ms = 1000\nmax_replica_lag_ms = 5000\n\
         throttle_lag_ms = 300\nthrottle_max_wait_ms = 400\n\
         [[limits.rules]]\nname = \"checkout\"\ntable = \"payments\"\npriority = \"critical\"";
    let proxy = TestProxy::start_text(&c.proxy_config(routing)).await?;
    let mut p = c.primary.root().await?;
    p.query_drop(
        "CREATE DATABASE shop; CREATE TABLE shop.kv (id INT PRIMARY KEY, v INT); \
         CREATE TABLE shop.payments (id INT AUTO_INCREMENT PRIMARY KEY, amount INT); \
         INSERT INTO shop.kv VALUES (1, 0)",
    )
    .await?;
    c.sync().await?;
    let r = &c.replicas[0];
    wait_eligible(&proxy, &r.addr(), true, Duration::from_secs(10)).await?;
    let mut conn = proxy.conn(Some("shop")).await?;
    // No lag: writes are not slowed.
    let t = Instant::now();
    conn.query_drop("UPDATE kv SET v = v + 1 WHERE id = 1")
        .await?;
    let calm = t.elapsed();
    // The replica's SQL thread stops: its heartbeat lag grows.
    let mut rr = r.root().await?;
    rr.query_drop("STOP SLAVE SQL_THREAD").await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lag = instance(&proxy, &r.addr()).await?["lag_ms"]
            .as_u64()
            .unwrap_or(0);
        if lag > 300 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the replica never showed lag");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Instant::now();
    conn.query_drop("UPDATE kv SET v = v + 1 WHERE id = 1")
        .await?;
    let throttled = t.elapsed();
    let t = Instant::now();
    conn.query_drop("INSERT INTO payments (amount) VALUES (10)")
        .await?;
    let critical = t.elapsed();
    let metrics = proxy.admin_get("/metrics").await?;
    println!("write without lag {calm:?}, throttled {throttled:?}, critical {critical:?}");
    assert!(
        throttled >= Duration::from_millis(350),
        "not throttled: {throttled:?}"
    );
    assert!(
        critical < Duration::from_millis(200),
        "a critical write was slowed: {critical:?}"
    );
    assert!(
        metrics.contains("peakgate_throttled_writes_total 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("throttl"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Lag recovers: throttling ends.
    rr.query_drop("START SLAVE SQL_THREAD").await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lag = instance(&proxy, &r.addr()).await?["lag_ms"]
            .as_u64()
            .unwrap_or(u64::MAX);
        if lag < 300 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the lag never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Instant::now();
    conn.query_drop("UPDATE kv SET v = v + 1 WHERE id = 1")
        .await?;
    let after = t.elapsed();
    println!("write after the lag recovered {after:?}");
    assert!(
        after < Duration::from_millis(200),
        "still throttled: {after:?}"
    );
    Ok(())
}

/// Two sessions of one user (a service's connection pool): one writes, the other reads right
/// after, while the only replica runs 1 s behind (under the lag limit, so it takes reads).
/// Returns the stale reads out of 40.
async fn pooled_reader_sees(scope: &str) -> anyhow::Result<usize> {
    let c = Cluster::start(1, 0).await?;
    let routing = format!(
        "heartbeat_ms = 100\nhealth_timeout_ms = 400\nmax_replica_lag_ms = 5000\nhold_down_ms = 300\n\
         read_your_writes = \"gtid\"\nread_your_writes_scope = \"{scope}\"\nryw_wait_ms = 30"
    );
    let proxy = TestProxy::start_text(&c.proxy_config(&routing)).await?;
    let mut p = c.primary.root().await?;
    p.query_drop("CREATE DATABASE shop; CREATE TABLE shop.kv (id INT PRIMARY KEY, v INT); INSERT INTO shop.kv VALUES (1, 0)")
        .await?;
    c.sync().await?;
    let r = &c.replicas[0];
    r.root()
        .await?
        .query_drop("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 1; START SLAVE")
        .await?;
    wait_eligible(&proxy, &r.addr(), true, Duration::from_secs(10)).await?;
    let mut writer = proxy.conn(Some("shop")).await?;
    let mut reader = proxy.conn(Some("shop")).await?;
    let mut stale = 0;
    for i in 1..=40 {
        writer
            .exec_drop("UPDATE kv SET v = ? WHERE id = 1", (i,))
            .await?;
        let v: Option<i64> = reader.query_first("SELECT v FROM kv WHERE id = 1").await?;
        if v != Some(i) {
            stale += 1;
        }
    }
    println!(
        "read_your_writes_scope = {scope}: {stale} of 40 reads by another session of the user were stale"
    );
    Ok(stale)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_scope_read_your_writes_covers_pooled_sessions() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    assert_eq!(
        pooled_reader_sees("user").await?,
        0,
        "user scope: stale reads"
    );
    assert!(
        pooled_reader_sees("session").await? > 0,
        "session scope must let the checker see stale reads"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_primary_opens_the_circuit_breaker_and_it_closes_again() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start(0, 0).await?;
    let cfg = c.proxy_config("replica_reads = false").replace(
        "connect_timeout_ms = 500",
        "connect_timeout_ms = 500\nbreaker_failures = 3\nbreaker_open_ms = 1500",
    );
    let proxy = TestProxy::start_text(&cfg).await?;
    let mut conn = proxy.conn(None).await?;
    let one: Option<i64> = conn.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));
    c.primary.kill9();
    let mut messages = Vec::new();
    // The first error is the dead pooled connection, then 3 failed connects, then the breaker.
    for _ in 0..8 {
        let t = Instant::now();
        let e = conn
            .query_drop("SELECT 1")
            .await
            .expect_err("primary is dead");
        messages.push((e.to_string(), t.elapsed()));
    }
    let opened = messages
        .iter()
        .filter(|(m, _)| m.contains("circuit breaker open"))
        .count();
    // 2013 for the statement that met the dead pooled connection, 2003 for the connects.
    assert!(
        messages
            .iter()
            .all(|(m, _)| m.contains("2003") || m.contains("2013")),
        "{messages:?}"
    );
    assert!(opened >= 3, "the breaker never opened: {messages:?}");
    assert!(
        messages
            .iter()
            .filter(|(m, _)| m.contains("circuit breaker open"))
            .all(|(_, d)| *d < Duration::from_millis(100)),
        "an open breaker answers at once"
    );
    c.primary.restart().await?;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match conn.query_first::<i64, _>("SELECT 1").await {
            Ok(v) => {
                assert_eq!(v, Some(1));
                break;
            }
            Err(e) => anyhow::ensure!(Instant::now() < deadline, "still failing: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = proxy.admin_get("/status").await?;
    assert!(status.contains("\"breaker\":\"closed\""), "{status}");
    Ok(())
}
