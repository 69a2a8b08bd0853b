//! Sharding benchmark (a benchmark, not a test): the topology's shard map moved to a database of
//! its own, a proxy in this process on free ports, and the same data in one database directly on
//! the s0 primary. Measures, interleaved and repeated (median):
//! 1. point lookups by member_id (text protocol) through 2 shards vs direct on one server;
//! 2. `ORDER BY created_at DESC LIMIT 20` over all orders: a scatter over 2 shards merged in the
//!    proxy vs the same query on one server.
//!
//! Prints QPS and the proxy/direct ratios. Knobs: SHARD_BENCH_SECONDS (5), SHARD_BENCH_REPEAT (3),
//! SHARD_BENCH_ROWS (20000), SHARD_BENCH_CLIENTS (16).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use peakgate_tests::{S0_PRIMARY, TestProxy, direct, ensure_topology};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const DB: &str = "peakgate_shard_bench";
const DIRECT_DB: &str = "peakgate_shard_bench_direct";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let seconds = env("SHARD_BENCH_SECONDS", 5);
    let repeat = env("SHARD_BENCH_REPEAT", 3);
    let rows = env("SHARD_BENCH_ROWS", 20_000) as i64;
    let clients = env("SHARD_BENCH_CLIENTS", 16) as usize;
    ensure_topology()?;
    let proxy = TestProxy::start_with(|cfg| {
        *cfg = cfg.replace("name = \"shop.", &format!("name = \"{DB}."));
        *cfg = cfg.replace("binding = \"shop.", &format!("binding = \"{DB}."));
    })
    .await?;
    let mut p = proxy.conn(None).await?;
    let mut d = direct(S0_PRIMARY, None).await?;
    eprintln!(
        "shard-bench: loading {rows} members and {rows} orders through the proxy and directly"
    );
    for (c, db) in [(&mut p, DB), (&mut d, DIRECT_DB)] {
        c.query_drop(format!("DROP DATABASE IF EXISTS {db}"))
            .await?;
        c.query_drop(format!("CREATE DATABASE {db}")).await?;
        c.query_drop(format!("USE {db}")).await?;
        c.query_drop(
            "CREATE TABLE members (member_id BIGINT PRIMARY KEY, name VARCHAR(32) NOT NULL)",
        )
        .await?;
        c.query_drop(
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, \
             total DECIMAL(10,2) NOT NULL, created_at DATETIME(6) NOT NULL, KEY (created_at), KEY (member_id))",
        )
        .await?;
    }
    for start in (1..=rows).step_by(500) {
        let end = (start + 499).min(rows);
        let m: Vec<String> = (start..=end)
            .map(|i| format!("({i}, 'member {i}')"))
            .collect();
        let o: Vec<String> = (start..=end)
            .map(|i| {
                format!(
                    "({i}, {}.{:02}, NOW(6) - INTERVAL {i} SECOND)",
                    i % 500,
                    i % 100
                )
            })
            .collect();
        p.query_drop(format!(
            "INSERT INTO members (member_id, name) VALUES {}",
            m.join(",")
        ))
        .await?;
        d.query_drop(format!(
            "INSERT INTO members (member_id, name) VALUES {}",
            m.join(",")
        ))
        .await?;
        // Through the proxy the ids are generated (with the member's shard bits).
        p.query_drop(format!(
            "INSERT INTO orders (member_id, total, created_at) VALUES {}",
            o.join(",")
        ))
        .await?;
        let od: Vec<String> = (start..=end)
            .map(|i| {
                format!(
                    "({i}, {i}, {}.{:02}, NOW(6) - INTERVAL {i} SECOND)",
                    i % 500,
                    i % 100
                )
            })
            .collect();
        d.query_drop(format!(
            "INSERT INTO orders (id, member_id, total, created_at) VALUES {}",
            od.join(",")
        ))
        .await?;
    }
    peakgate_tests::sync_replicas().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let proxy_opts = proxy.opts(Some(DB));
    let direct_opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(S0_PRIMARY)
        .user(Some("root"))
        .db_name(Some(DIRECT_DB))
        .prefer_socket(false)
        .into();
    let point = |n: u64| {
        format!(
            "SELECT name FROM members WHERE member_id = {}",
            1 + n % rows as u64
        )
    };
    let top = |_: u64| {
        "SELECT id, member_id, total FROM orders ORDER BY created_at DESC LIMIT 20".to_string()
    };
    let mut results: Vec<(&str, &str, Vec<f64>)> = Vec::new();
    for (name, q, n) in [
        (
            "point lookup by member_id",
            &point as &(dyn Fn(u64) -> String + Sync),
            clients,
        ),
        ("ORDER BY created_at DESC LIMIT 20", &top, clients / 2),
    ] {
        let mut d_qps = Vec::new();
        let mut p_qps = Vec::new();
        for _ in 0..repeat {
            d_qps.push(run(&direct_opts, n, seconds, q).await?);
            p_qps.push(run(&proxy_opts, n, seconds, q).await?);
        }
        results.push((name, "direct", d_qps));
        results.push((name, "proxy", p_qps));
    }
    let median = |v: &Vec<f64>| {
        let mut s = v.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        s[s.len() / 2]
    };
    println!(
        "sharding benchmark: {rows} members and orders, {seconds}s per run, median of {repeat}"
    );
    println!(
        "through PeakGate: 2 shards (s0, s1; reads on their replicas); direct: one server (127.0.0.1:{S0_PRIMARY})"
    );
    for pair in results.chunks(2) {
        let (name, _, dq) = &pair[0];
        let (_, _, pq) = &pair[1];
        let (dm, pm) = (median(dq), median(pq));
        println!(
            "  {name:36} direct {dm:8.0} QPS  proxy {pm:8.0} QPS  proxy/direct {:.2}",
            pm / dm
        );
    }
    for (c, db) in [(&mut p, DB), (&mut d, DIRECT_DB)] {
        c.query_drop(format!("DROP DATABASE IF EXISTS {db}"))
            .await?;
    }
    Ok(())
}

/// `clients` connections running `query(n)` for `seconds`; returns queries per second.
async fn run(
    opts: &mysql_async::Opts,
    clients: usize,
    seconds: u64,
    query: &(dyn Fn(u64) -> String + Sync),
) -> anyhow::Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let queries: Vec<String> = (0..4096u64)
        .map(|i| query(i.wrapping_mul(2654435761)))
        .collect();
    let queries = Arc::new(queries);
    for c in 0..clients {
        let (opts, stop, done, queries) =
            (opts.clone(), stop.clone(), done.clone(), queries.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await?;
            let mut i = c * 97;
            while !stop.load(Ordering::Relaxed) {
                let _: Vec<mysql_async::Row> = conn.query(&queries[i % queries.len()]).await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            conn.disconnect().await?;
            anyhow::Ok(())
        }));
    }
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let n = done.load(Ordering::Relaxed);
    let el = t.elapsed().as_secs_f64();
    for t in tasks {
        t.await??;
    }
    Ok(n as f64 / el)
}
