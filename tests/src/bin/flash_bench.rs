//! Flash-sale benchmark (a benchmark, not a test): 256 buyers on one hot SKU with a large stock,
//! each looping the guarded decrement for N seconds, directly against MariaDB (the hot instance)
//! and through PeakGate (hot-row queue and group commit) in both batch modes: `statements` (each
//! client's statement in the batch's multi-statement round trip) and `merged` (one arithmetic
//! UPDATE per batch), interleaved in the same run. Prints successful decrements per second (and
//! the ratios to direct), p50/p99 of a decrement, and the p99 of normal point selects on the s0
//! primary, through the proxy and directly, while the sale runs vs idle.
//!
//! The proxy runs as its own process (`proxy_process`, built next to this binary), the buyers on
//! this process's runtime and the checkout probe on a runtime of its own, so neither the proxy
//! nor the probe waits behind the load generator's tasks.
//!
//! Knobs: FLASH_SECONDS (20), FLASH_BUYERS (256), FLASH_REPEAT (1), FLASH_LANE (1: the proxies'
//! `hotspot.lane_threads`; 0 runs the sale's sessions on the proxy's runtime), FLASH_LANE_NICE
//! (the proxies' `hotspot.lane_nice`, default theirs), FLASH_ISOLATE (0). With
//! FLASH_ISOLATE=1 the buyers' threads and the hot instance's mariadbd run at nice 10: on this
//! one box that stands in for the sale's clients and the hot instance being other machines, so
//! the checkout p99 shows what the sale costs normal traffic *in the proxy* (the proxy and the
//! shard primary keep normal priority).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use peakgate_tests::{ProxyProcess, S0_PRIMARY, direct, ensure_topology, repo_root};

const HOT: u16 = 3331;
const NICE: i32 = 10;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let isolate = env("FLASH_ISOLATE", 0) == 1;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(2).enable_all();
    if isolate {
        rt.on_thread_start(|| renice_self(NICE));
    }
    rt.build()?.block_on(run(isolate))
}

/// Sets this thread's nice value (`renice` on a thread id applies to that thread only).
fn renice_self(nice: i32) {
    if let Ok(link) = std::fs::read_link("/proc/thread-self")
        && let Some(tid) = link.file_name().and_then(|t| t.to_str())
    {
        renice(tid, nice);
    }
}

fn renice(tid: &str, nice: i32) {
    let _ = std::process::Command::new("renice")
        .args(["-n", &nice.to_string(), "-p", tid])
        .stdout(std::process::Stdio::null())
        .status();
}

/// Sets the nice value of every thread of process `pid` (threads it creates later inherit it
/// from the thread that creates them).
fn renice_process(pid: u32, nice: i32) -> anyhow::Result<()> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        renice(&task?.file_name().to_string_lossy(), nice);
    }
    Ok(())
}

/// The hot instance's server process, from its pid file.
fn hot_pid() -> anyhow::Result<u32> {
    let path = repo_root().join("target/topology/hot/mariadbd.pid");
    Ok(std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .trim()
        .parse()?)
}

async fn run(isolate: bool) -> anyhow::Result<()> {
    let seconds = env("FLASH_SECONDS", 20);
    let buyers = env("FLASH_BUYERS", 256) as usize;
    let repeat = env("FLASH_REPEAT", 1);
    let lane = env("FLASH_LANE", 1);
    let nice = std::env::var("FLASH_LANE_NICE")
        .ok()
        .map_or(String::new(), |n| format!("\nlane_nice = {n}"));
    let topo = ensure_topology()?;
    let table = "peakgate_flash_bench";
    let topo = std::fs::read_to_string(&topo)?;
    let dir = repo_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let binary = std::env::current_exe()?.with_file_name("proxy_process");
    let start = |mode: &'static str| {
        let config = topo
            .replace("mysql = \"127.0.0.1:6033\"", "mysql = \"127.0.0.1:0\"")
            .replace("admin = \"127.0.0.1:6080\"", "admin = \"127.0.0.1:0\"")
            .replace(
                "table = \"shop.sku_stock\"",
                &format!(
                    "table = \"shop.{table}\"\nqueue = {{ batch_mode = \"{mode}\" }}\nlane_threads = {lane}{nice}"
                ),
            );
        let (binary, path) = (binary.clone(), dir.join(format!("flash-sale-{mode}.toml")));
        async move {
            std::fs::write(&path, config)?;
            ProxyProcess::start(&binary, &path, None).await
        }
    };
    let proxy = start("statements").await?;
    let merged = start("merged").await?;
    let proxy_opts = proxy.opts("shop")?;
    let merged_opts = merged.opts("shop")?;
    let mut p = mysql_async::Conn::new(proxy_opts.clone()).await?;
    p.query_drop(format!("DROP TABLE IF EXISTS {table}"))
        .await?;
    p.query_drop(format!(
        "CREATE TABLE {table} (sku_id BIGINT PRIMARY KEY, stock BIGINT NOT NULL)"
    ))
    .await?;
    p.query_drop(format!(
        "INSERT INTO {table} (sku_id, stock) VALUES (1001, 1000000000)"
    ))
    .await?;
    // Normal checkout traffic's point select, on the s0 primary.
    p.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {table}_items (id INT PRIMARY KEY, v INT)"
    ))
    .await?;
    p.query_drop(format!(
        "REPLACE INTO {table}_items VALUES (1, 1), (2, 2), (3, 3)"
    ))
    .await?;
    let direct_opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(HOT)
        .user(Some("root"))
        .db_name(Some("shop"))
        .prefer_socket(false)
        .into();
    let hot = if isolate {
        let pid = hot_pid()?;
        renice_process(pid, NICE)?;
        Some(pid)
    } else {
        None
    };
    // The same point select through the proxy and directly on the s0 primary: what the sale
    // costs normal traffic in the proxy shows as the difference between the two.
    let s0_opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(S0_PRIMARY)
        .user(Some("root"))
        .db_name(Some("shop"))
        .prefer_socket(false)
        .into();
    let idle = probe(
        &[proxy_opts.clone(), s0_opts.clone()],
        table,
        Duration::from_secs(3),
        None,
    )
    .await?;
    let mut rows = Vec::new();
    for _ in 0..repeat {
        // Checkout traffic goes through the proxy that runs the sale (for the direct sale, the
        // statements-mode one, which then only serves the checkout).
        for (name, opts, checkout) in [
            ("direct", &direct_opts, &proxy_opts),
            ("statements", &proxy_opts, &proxy_opts),
            ("merged", &merged_opts, &merged_opts),
        ] {
            let stop = Arc::new(AtomicBool::new(false));
            let sale = tokio::spawn(sale(
                opts.clone(),
                table.to_string(),
                buyers,
                seconds,
                stop.clone(),
            ));
            tokio::time::sleep(Duration::from_secs(1)).await;
            let busy = probe(
                &[checkout.clone(), s0_opts.clone()],
                table,
                Duration::from_secs(seconds.saturating_sub(2).max(1)),
                Some(&stop),
            )
            .await?;
            let (per_s, p50, p99) = sale.await??;
            rows.push((name, per_s, p50, p99, busy));
        }
    }
    if let Some(pid) = hot {
        renice_process(pid, 0)?;
    }
    println!(
        "flash sale: {buyers} buyers on one SKU, {seconds}s per run, {repeat} run(s) each; sale lane threads {lane}"
    );
    if isolate {
        println!(
            "FLASH_ISOLATE=1: buyers and the hot instance at nice {NICE} (standing in for other machines)"
        );
    }
    println!(
        "normal point-select p99 while idle: through the proxy {:?}, directly on the s0 primary {:?}",
        idle[0], idle[1]
    );
    let x = |busy: Duration, idle: Duration| busy.as_secs_f64() / idle.as_secs_f64().max(1e-9);
    for (name, per_s, p50, p99, busy) in &rows {
        println!(
            "  {name:10} {per_s:9.0} decrements/s  p50 {p50:?}  p99 {p99:?}  checkout p99 during the sale: proxy {:?} ({:.2}x idle), s0 direct {:?} ({:.2}x idle)",
            busy[0],
            x(busy[0], idle[0]),
            busy[1],
            x(busy[1], idle[1])
        );
    }
    let med = |n: &str| {
        let mut v: Vec<f64> = rows.iter().filter(|r| r.0 == n).map(|r| r.1).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let direct_per_s = med("direct").max(1e-9);
    println!(
        "  decrements per second vs direct: statements {:.2}x, merged {:.2}x (merged/statements {:.2})",
        med("statements") / direct_per_s,
        med("merged") / direct_per_s,
        med("merged") / med("statements").max(1e-9)
    );
    let batches = merged.metric("peakgate_hot_batches_total").await?;
    println!(
        "  merged proxy: {batches:.0} batches, {:.0} of them merged, {:.1} statements per batch",
        merged.metric("peakgate_hot_merged_batches_total").await?,
        merged
            .metric("peakgate_hot_batched_statements_total")
            .await?
            / batches.max(1.0)
    );
    p.query_drop(format!("DROP TABLE IF EXISTS {table}, {table}_items"))
        .await?;
    drop(p);
    drop((proxy, merged));
    let mut d = direct(HOT, Some("shop")).await?;
    d.query_drop(format!("DROP TABLE IF EXISTS {table}"))
        .await?;
    let _ = direct(S0_PRIMARY, None).await?;
    Ok(())
}

/// Buyers looping the guarded decrement; decrements per second, p50, p99.
async fn sale(
    opts: mysql_async::Opts,
    table: String,
    buyers: usize,
    seconds: u64,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(f64, Duration, Duration)> {
    let mut tasks = Vec::new();
    let started = Instant::now();
    for _ in 0..buyers {
        let (opts, table) = (opts.clone(), table.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await?;
            let mut lat = Vec::new();
            let end = started + Duration::from_secs(seconds);
            let mut ok = 0u64;
            while Instant::now() < end {
                let t = Instant::now();
                let r = c
                    .query_iter(format!(
                        "UPDATE {table} SET stock = stock - 1 WHERE sku_id = 1001 AND stock >= 1"
                    ))
                    .await?;
                ok += r.affected_rows();
                drop(r);
                lat.push(t.elapsed());
            }
            let _ = c.disconnect().await;
            anyhow::Ok((ok, lat))
        }));
    }
    let (mut ok, mut lat) = (0, Vec::new());
    for t in tasks {
        let (o, l) = t.await??;
        ok += o;
        lat.extend(l);
    }
    stop.store(true, Ordering::Relaxed);
    let took = started.elapsed().as_secs_f64();
    lat.sort();
    let q = |f: f64| {
        lat.get(((lat.len() as f64) * f) as usize)
            .copied()
            .unwrap_or_default()
    };
    Ok((ok as f64 / took, q(0.5), q(0.99)))
}

/// [`checkout_p99`] over each of `paths` at the same time, on a runtime of its own (one
/// thread), so the probe never waits behind the buyers' tasks.
async fn probe(
    paths: &[mysql_async::Opts],
    table: &str,
    dur: Duration,
    stop: Option<&Arc<AtomicBool>>,
) -> anyhow::Result<Vec<Duration>> {
    let (paths, table, stop) = (paths.to_vec(), table.to_string(), stop.cloned());
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let res = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.block_on(async {
                    // One task per path, so the paths are probed at the same time.
                    let tasks: Vec<_> = paths
                        .into_iter()
                        .map(|opts| {
                            let (table, stop) = (table.clone(), stop.clone());
                            tokio::spawn(async move {
                                checkout_p99(&opts, &table, dur, stop.as_ref()).await
                            })
                        })
                        .collect();
                    let mut out = Vec::with_capacity(tasks.len());
                    for t in tasks {
                        out.push(t.await??);
                    }
                    anyhow::Ok(out)
                })
            });
        let _ = tx.send(res);
    });
    rx.await?
}

/// p99 of point selects (8 sessions) for `dur`, or until `stop`.
async fn checkout_p99(
    opts: &mysql_async::Opts,
    table: &str,
    dur: Duration,
    stop: Option<&Arc<AtomicBool>>,
) -> anyhow::Result<Duration> {
    let end = Instant::now() + dur;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (opts, table) = (opts.clone(), table.to_string());
        let stop = stop.cloned();
        tasks.push(tokio::task::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await?;
            let mut lat = Vec::new();
            while Instant::now() < end && !stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed))
            {
                let t = Instant::now();
                let _: Option<i64> = c
                    .query_first(format!(
                        "/* peakgate: route=primary */ SELECT v FROM {table}_items WHERE id = {}",
                        1 + i % 3
                    ))
                    .await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    Ok(all.get(all.len() * 99 / 100).copied().unwrap_or_default())
}
