//! Moving a SKU's stock row between its home shard and the hot instance (`POST /hotspot/move`,
//! `auto_move`): under concurrent buyers no sale is lost or doubled, a SKU held by an open
//! transaction is not moved, and detection's promotions and demotions move rows both ways. Each
//! test moves the topology's `[hotspot]` table to a table of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use peakgate_tests::{
    HOT_PRIMARY as HOT, S0_PRIMARY, Scratch, TestProxy, direct, unique_name, use_hot_table,
};

/// A proxy whose hot table is `shop.<t>`, with `extra` added under `[hotspot]` and `listen`
/// under `[listen]`.
async fn proxy_for(t: &str, extra: &str, listen: &str) -> anyhow::Result<TestProxy> {
    let (t, extra, listen) = (t.to_string(), extra.to_string(), listen.to_string());
    TestProxy::start_with(move |cfg| {
        use_hot_table(cfg, &t, &extra);
        *cfg = cfg.replace("[routing]", "[routing]\nreplica_reads = false");
        *cfg = cfg.replace("[listen]", &format!("[listen]\n{listen}"));
    })
    .await
}

/// A table of the test's own (`sku_id`, `stock`) with SKU 5's row (stock 10) at home, behind a
/// proxy as [`proxy_for`] makes it; the guards drop the table on both instances.
async fn sku_5_at_home(
    prefix: &str,
    extra: &str,
    listen: &str,
) -> anyhow::Result<(String, [Scratch; 2], TestProxy, mysql_async::Conn)> {
    let t = unique_name(prefix);
    let guards = [Scratch::table("shop", &t), Scratch::hot_table("shop", &t)];
    let proxy = proxy_for(&t, extra, listen).await?;
    let mut c = proxy.conn(Some("shop")).await?;
    c.query_drop(format!(
        "CREATE TABLE {t} (sku_id BIGINT PRIMARY KEY, stock INT NOT NULL)"
    ))
    .await?;
    c.query_drop(format!("INSERT INTO {t} VALUES (5, 10)"))
        .await?;
    Ok((t, guards, proxy, c))
}

/// Rows of SKU `sku` in `shop.<t>`: (on the home shard, on the hot instance).
async fn rows_at(t: &str, sku: u64) -> anyhow::Result<(i64, i64)> {
    let mut n = [0; 2];
    for (i, port) in [S0_PRIMARY, HOT].into_iter().enumerate() {
        let mut d = direct(port, Some("shop")).await?;
        let c: Option<i64> = d
            .query_first(format!("SELECT COUNT(*) FROM {t} WHERE sku_id = {sku}"))
            .await?;
        d.disconnect().await?;
        n[i] = c.unwrap_or(-1);
    }
    Ok((n[0], n[1]))
}

/// Polls `/status` until SKU `sku` is detected-hot (`hot`) or not, for up to 30 s.
async fn wait_detected(proxy: &TestProxy, sku: u64, hot: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while detected(proxy).await?.contains(&sku) != hot {
        anyhow::ensure!(
            Instant::now() < deadline,
            "SKU {sku} never became {}",
            if hot { "hot" } else { "normal" }
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// What one buyer saw.
#[derive(Default)]
struct Outcomes {
    /// Tagged sales the proxy answered with 1 row.
    tags_ok: Vec<u64>,
    /// Tagged sales answered with an error or 0 rows.
    tags_not: Vec<u64>,
    /// Batchable decrements answered with 1 row.
    batched_ok: u64,
    errors: Vec<String>,
}

/// Buyers of SKU `sku` until `stop`: even ones send the batchable guarded decrement (counted in
/// `sold`), odd ones a decrement that appends the buyer's unique tag to the row (run alone), so
/// every tagged outcome can be checked against the row.
fn spawn_buyers(
    proxy: &TestProxy,
    t: &str,
    sku: u64,
    n: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<Outcomes>>> {
    static NEXT_TAG: AtomicU64 = AtomicU64::new(1);
    (0..n)
        .map(|i| {
            let (opts, stop, t) = (proxy.opts(Some("shop")), stop.clone(), t.to_string());
            tokio::spawn(async move {
                let mut c = mysql_async::Conn::new(opts).await?;
                let mut out = Outcomes::default();
                while !stop.load(Ordering::Relaxed) {
                    let tag = (i % 2 == 1).then(|| NEXT_TAG.fetch_add(1, Ordering::Relaxed));
                    let sql = match tag {
                        None => format!(
                            "UPDATE {t} SET stock = stock - 1, sold = sold + 1 WHERE sku_id = {sku} AND stock >= 1"
                        ),
                        Some(tag) => format!(
                            "UPDATE {t} SET stock = stock - 1, tags = CONCAT(tags, '{tag},') WHERE sku_id = {sku} AND stock >= 1"
                        ),
                    };
                    let res = c.query_iter(sql).await.map(|r| r.affected_rows());
                    match (res, tag) {
                        (Ok(1), Some(tag)) => out.tags_ok.push(tag),
                        (Ok(1), None) => out.batched_ok += 1,
                        (Ok(_), Some(tag)) => out.tags_not.push(tag),
                        (Ok(_), None) => {}
                        (Err(e), tag) => {
                            out.tags_not.extend(tag);
                            out.errors.push(e.to_string());
                            if !matches!(e, mysql_async::Error::Server(_)) {
                                c = mysql_async::Conn::new(c.opts().clone()).await?;
                            }
                        }
                    }
                }
                let _ = c.disconnect().await;
                Ok(out)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_row_back_and_forth_under_buyers_loses_or_doubles_no_sale() -> anyhow::Result<()> {
    let t = unique_name("it_move");
    let _drop = Scratch::table("shop", &t);
    let _drop_hot = Scratch::hot_table("shop", &t);
    let proxy = proxy_for(&t, "", "").await?;
    let mut c = proxy.conn(Some("shop")).await?;
    c.query_drop(format!(
        "CREATE TABLE {t} (sku_id BIGINT PRIMARY KEY, stock INT NOT NULL, sold INT NOT NULL DEFAULT 0, \
         tags MEDIUMTEXT NOT NULL, note VARCHAR(40) CHARACTER SET utf8mb4)"
    ))
    .await?;
    const SKU: u64 = 77;
    const STOCK: i64 = 200_000;
    c.query_drop(format!(
        "INSERT INTO {t} (sku_id, stock, tags, note) VALUES ({SKU}, {STOCK}, '', 'crème ''brûlée'''), (78, 5, '', NULL)"
    ))
    .await?;
    assert_eq!(rows_at(&t, SKU).await?, (1, 0), "starts at home");

    let stop = Arc::new(AtomicBool::new(false));
    let buyers = spawn_buyers(&proxy, &t, SKU, 16, stop.clone());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut moves = Vec::new();
    for round in 0..3 {
        for (to, at) in [("hot", (0, 1)), ("home", (1, 0))] {
            let (code, body) = proxy
                .admin_request("POST", &format!("/hotspot/move?sku={SKU}&to={to}"))
                .await?;
            assert_eq!(code, 200, "round {round} to {to}: {body}");
            assert!(body.contains("1 row(s) moved"), "{body}");
            assert_eq!(rows_at(&t, SKU).await?, at, "row on {to}, none left behind");
            moves.push(body);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut all = Outcomes::default();
    for b in buyers {
        let o = b.await??;
        all.tags_ok.extend(o.tags_ok);
        all.tags_not.extend(o.tags_not);
        all.batched_ok += o.batched_ok;
        all.errors.extend(o.errors);
    }
    // The row is home again; read it directly.
    let mut d = direct(S0_PRIMARY, Some("shop")).await?;
    let (stock, sold, tags, note): (i64, i64, String, Option<String>) = d
        .query_first(format!(
            "SELECT stock, sold, tags, note FROM {t} WHERE sku_id = {SKU}"
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("the row is gone"))?;
    d.disconnect().await?;
    let mut in_db: HashMap<u64, u32> = HashMap::new();
    for tag in tags.split(',').filter(|s| !s.is_empty()) {
        *in_db.entry(tag.parse()?).or_default() += 1;
    }
    println!(
        "6 moves under 16 buyers: {} batched and {} tagged sales OK, {} refused or failed; stock {stock}; \
         gate closed per move: {:?}",
        all.batched_ok,
        all.tags_ok.len(),
        all.errors.len(),
        moves
            .iter()
            .filter_map(|m| m.split("waited ").nth(1)?.split(' ').next())
            .collect::<Vec<_>>()
    );
    for tag in &all.tags_ok {
        assert_eq!(
            in_db.get(tag),
            Some(&1),
            "OK'd sale {tag} is in the row once"
        );
    }
    for tag in &all.tags_not {
        assert_eq!(in_db.get(tag), None, "failed sale {tag} is not in the row");
    }
    assert_eq!(
        in_db.len(),
        all.tags_ok.len(),
        "no tagged sale nobody was told about"
    );
    assert_eq!(
        sold as u64, all.batched_ok,
        "batched sales: OKs == the row's count"
    );
    assert_eq!(
        stock,
        STOCK - all.batched_ok as i64 - all.tags_ok.len() as i64,
        "stock = initial - successes"
    );
    assert!(stock >= 0);
    assert!(
        all.batched_ok > 0 && !all.tags_ok.is_empty(),
        "nothing sold"
    );
    assert_eq!(
        note.as_deref(),
        Some("crème 'brûlée'"),
        "columns copied exactly"
    );
    for e in &all.errors {
        assert!(e.contains("1205"), "only 'retry' refusals are allowed: {e}");
    }
    // Visibility.
    let status: serde_json::Value = serde_json::from_str(&proxy.admin_get("/status").await?)?;
    assert_eq!(
        status["hot_moves"]["results"]["done"], 6,
        "{}",
        status["hot_moves"]
    );
    assert_eq!(status["hot_moves"]["recent"][0]["to"], "home");
    assert_eq!(status["hot_moves"]["recent"][0]["result"], "done");
    let metrics = proxy.admin_get("/metrics").await?;
    for to in ["hot", "home"] {
        // Counted for every proxy of the test process: at least this one's.
        let name = format!("peakgate_hot_moves_total{{to=\"{to}\",result=\"done\"}} ");
        let n: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&name)?.parse().ok())
            .unwrap_or(0);
        assert!(n >= 3, "{name}{n}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_on_the_sku_refuses_the_move_and_nothing_changes() -> anyhow::Result<()>
{
    let (t, _drop, proxy, mut c) = sku_5_at_home(
        "it_move_busy",
        "move_drain_ms = 1500\nmove_wait_ms = 300",
        "",
    )
    .await?;
    // A transaction that touched SKU 5 and stays open.
    c.query_drop("BEGIN").await?;
    c.query_drop(format!("UPDATE {t} SET stock = stock - 1 WHERE sku_id = 5"))
        .await?;
    let addrs = proxy.clone_addrs();
    let opts = proxy.opts(Some("shop"));
    let mover = {
        let proxy_admin = addrs.admin;
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(proxy_admin).await?;
            s.write_all(
                b"POST /hotspot/move?sku=5&to=hot HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            )
            .await?;
            let mut out = String::new();
            s.read_to_string(&mut out).await?;
            anyhow::Ok(out)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // While the move drains, a new statement on SKU 5 waits, then is refused (move_wait_ms).
    let mut other = mysql_async::Conn::new(opts.clone()).await?;
    let started = Instant::now();
    let e = other
        .query_drop(format!("SELECT stock FROM {t} WHERE sku_id = 5"))
        .await
        .expect_err("waits for the move, then 1205");
    assert!(
        e.to_string().contains("1205") && e.to_string().contains("being moved"),
        "{e}"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    // Other SKUs never wait.
    other
        .query_drop(format!("SELECT stock FROM {t} WHERE sku_id = 6"))
        .await?;
    let out = mover.await??;
    assert!(out.starts_with("HTTP/1.1 409"), "{out}");
    assert!(
        out.contains("still in use by 1") && out.contains("nothing moved"),
        "{out}"
    );
    // Nothing changed: the row is home, routing too, and the transaction goes on.
    assert_eq!(rows_at(&t, 5).await?, (1, 0));
    c.query_drop(format!("UPDATE {t} SET stock = stock - 1 WHERE sku_id = 5"))
        .await?;
    c.query_drop("COMMIT").await?;
    let left: Option<i64> = other
        .query_first(format!("SELECT stock FROM {t} WHERE sku_id = 5"))
        .await?;
    assert_eq!(left, Some(8), "the transaction's two decrements");
    // Once the transaction is over the move goes through.
    let (code, body) = proxy
        .admin_request("POST", "/hotspot/move?sku=5&to=hot")
        .await?;
    assert_eq!(code, 200, "{body}");
    assert_eq!(rows_at(&t, 5).await?, (0, 1));
    let left: Option<i64> = other
        .query_first(format!("SELECT stock FROM {t} WHERE sku_id = 5"))
        .await?;
    assert_eq!(left, Some(8));
    let status: serde_json::Value = serde_json::from_str(&proxy.admin_get("/status").await?)?;
    assert_eq!(status["hot_moves"]["results"]["refused"], 1);
    assert_eq!(status["hot_moves"]["statements_refused"], 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hotspot_admin_calls_move_rows_and_refuse_bad_requests() -> anyhow::Result<()> {
    let token = "s3cret";
    let (t, _drop, proxy, mut c) =
        sku_5_at_home("it_move_api", "", &format!("admin_token = \"{token}\"")).await?;
    // No token, wrong token.
    for tok in [None, Some("wrong")] {
        let (code, body) = proxy
            .admin_request_as("POST", "/hotspot/move?sku=5&to=hot", tok)
            .await?;
        assert_eq!(code, 401, "{body}");
    }
    assert_eq!(rows_at(&t, 5).await?, (1, 0), "nothing moved");
    // Bad requests.
    for (path, want) in [
        ("/hotspot/move?sku=5&to=sideways", "to=hot|home"),
        ("/hotspot/move?sku=x&to=hot", "sku=N"),
        ("/hotspot/move?sku=999&to=hot", "no row for SKU 999"),
        (
            "/hotspot/move?sku=5&to=home",
            "already routed to the home side",
        ),
    ] {
        let (code, body) = proxy.admin_request_as("POST", path, Some(token)).await?;
        assert_eq!(code, 422, "{path}: {body}");
        assert!(body.contains(want), "{path}: {body}");
    }
    // Marking hot moves the row; a sold-out answer does not survive the move.
    let (code, body) = proxy
        .admin_request_as("POST", "/hotspot?sku=5&action=add", Some(token))
        .await?;
    assert_eq!(code, 200, "{body}");
    assert_eq!(rows_at(&t, 5).await?, (0, 1));
    let decrement = format!("UPDATE {t} SET stock = stock - 20 WHERE sku_id = 5 AND stock >= 20");
    c.query_drop(&decrement).await?;
    assert_eq!(c.affected_rows(), 0, "sold out for 20");
    // Restock directly on the hot instance (bypassing the proxy's sold-out memory), then move:
    // the move forgets the row's sold-out state, so the next decrement sees the new stock.
    let mut d = direct(HOT, Some("shop")).await?;
    d.query_drop(format!("UPDATE {t} SET stock = 100 WHERE sku_id = 5"))
        .await?;
    d.disconnect().await?;
    let (code, body) = proxy
        .admin_request_as("POST", "/hotspot?sku=5&action=remove", Some(token))
        .await?;
    assert_eq!(code, 200, "{body}");
    assert_eq!(rows_at(&t, 5).await?, (1, 0));
    let (code, body) = proxy
        .admin_request_as("POST", "/hotspot?sku=5&action=add", Some(token))
        .await?;
    assert_eq!(code, 200, "{body}");
    c.query_drop(&decrement).await?;
    assert_eq!(c.affected_rows(), 1, "restocked row sold after the move");
    // A SKU without a row: marking only switches routing; moving is refused.
    let (code, body) = proxy
        .admin_request_as("POST", "/hotspot?sku=6&action=add", Some(token))
        .await?;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("0 row(s)"), "{body}");
    c.query_drop(format!("INSERT INTO {t} (sku_id, stock) VALUES (6, 3)"))
        .await?;
    assert_eq!(rows_at(&t, 6).await?, (0, 1), "a hot SKU's new row");
    // A restarted proxy routes the SKUs whose rows are on the hot instance there again.
    drop(c);
    drop(proxy);
    let proxy = proxy_for(&t, "", "").await?;
    assert_eq!(hot_by(&proxy, "manual").await?, [5, 6]);
    let mut c = proxy.conn(Some("shop")).await?;
    let left: Option<i64> = c
        .query_first(format!("SELECT stock FROM {t} WHERE sku_id = 5"))
        .await?;
    assert_eq!(left, Some(80), "read from the hot instance's row");
    Ok(())
}

/// A zipf sampler over ranks 1..=n (exponent `s`) with its own xorshift generator.
struct Zipf {
    cdf: Vec<f64>,
    state: u64,
}

impl Zipf {
    fn new(n: usize, s: f64, seed: u64) -> Self {
        let w: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        let cdf = w
            .iter()
            .map(|x| {
                acc += x / total;
                acc
            })
            .collect();
        Self {
            cdf,
            state: seed | 1,
        }
    }

    /// A rank, 0-based.
    fn next(&mut self) -> usize {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let u = (self.state >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_moves_the_hottest_row_to_the_hot_instance_and_back() -> anyhow::Result<()> {
    let t = unique_name("it_move_auto");
    let _drop = Scratch::table("shop", &t);
    let _drop_hot = Scratch::hot_table("shop", &t);
    let proxy = proxy_for(
        &t,
        "auto_detect = { top_k = 4, min_qps = 40, demote_ratio = 0.5, cool_down_ms = 2000 }\nauto_move = true",
        "",
    )
    .await?;
    let mut c = proxy.conn(Some("shop")).await?;
    c.query_drop(format!(
        "CREATE TABLE {t} (sku_id BIGINT PRIMARY KEY, stock INT NOT NULL)"
    ))
    .await?;
    const SKUS: u64 = 300;
    const STOCK: i64 = 1_000_000;
    let values: Vec<String> = (1..=SKUS).map(|s| format!("({s}, {STOCK})")).collect();
    c.query_drop(format!("INSERT INTO {t} VALUES {}", values.join(", ")))
        .await?;
    // Phase 0: rank r is SKU r + 1 (SKU 1 hottest); phase 1: SKU 151 + r (SKU 1 cold).
    let phase = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let (opts, stop, phase, t) = (
            proxy.opts(Some("shop")),
            stop.clone(),
            phase.clone(),
            t.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await?;
            let mut zipf = Zipf::new(SKUS as usize, 1.2, 0x9e37_79b9 + i);
            let mut sold: HashMap<u64, u64> = HashMap::new();
            let mut refused = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = zipf.next() as u64;
                let sku = match phase.load(Ordering::Relaxed) {
                    0 => r + 1,
                    _ => (r + 150) % SKUS + 1,
                };
                match c
                    .query_iter(format!(
                        "UPDATE {t} SET stock = stock - 1 WHERE sku_id = {sku} AND stock >= 1"
                    ))
                    .await
                {
                    Ok(res) => *sold.entry(sku).or_default() += res.affected_rows(),
                    Err(mysql_async::Error::Server(e)) if e.code == 1205 => refused += 1,
                    Err(e) => return Err(e.into()),
                }
            }
            let _ = c.disconnect().await;
            anyhow::Ok((sold, refused))
        }));
    }
    wait_detected(&proxy, 1, true).await?;
    assert_eq!(
        rows_at(&t, 1).await?,
        (0, 1),
        "promoted: row on the hot instance"
    );
    let promoted = detected(&proxy).await?;
    // The load moves on: SKU 1 cools and goes home.
    phase.store(1, Ordering::Relaxed);
    wait_detected(&proxy, 1, false).await?;
    assert_eq!(rows_at(&t, 1).await?, (1, 0), "demoted: row back home");
    // Let the new hot SKUs settle in, then stop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let now_hot = detected(&proxy).await?;
    stop.store(true, Ordering::Relaxed);
    let mut sold: HashMap<u64, u64> = HashMap::new();
    let mut refused = 0;
    for task in tasks {
        let (s, r) = task.await??;
        refused += r;
        for (k, v) in s {
            *sold.entry(k).or_default() += v;
        }
    }
    // Every SKU has exactly one row across home and hot, and stock + sold is exact.
    let mut stock: HashMap<u64, (i64, u32)> = HashMap::new();
    for port in [S0_PRIMARY, HOT] {
        let mut d = direct(port, Some("shop")).await?;
        let rows: Vec<(u64, i64)> = d.query(format!("SELECT sku_id, stock FROM {t}")).await?;
        d.disconnect().await?;
        for (sku, s) in rows {
            let e = stock.entry(sku).or_default();
            e.0 += s;
            e.1 += 1;
        }
    }
    let total_sold: u64 = sold.values().sum();
    println!(
        "zipf load: promoted {promoted:?} first, hot at the end {now_hot:?}; {total_sold} sold, \
         {refused} refused while moving"
    );
    assert_eq!(stock.len() as u64, SKUS);
    for sku in 1..=SKUS {
        let (s, copies) = stock[&sku];
        assert_eq!(copies, 1, "SKU {sku}: one row");
        assert_eq!(
            s + sold.get(&sku).copied().unwrap_or(0) as i64,
            STOCK,
            "SKU {sku}: stock + sold"
        );
    }
    let status: serde_json::Value = serde_json::from_str(&proxy.admin_get("/status").await?)?;
    let recent = status["hot_moves"]["recent"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        recent
            .iter()
            .any(|m| m["sku"] == 1 && m["to"] == "home" && m["trigger"] == "detection"),
        "{recent:?}"
    );
    Ok(())
}

/// The SKUs detection made hot, from `/status`.
async fn detected(proxy: &TestProxy) -> anyhow::Result<Vec<u64>> {
    hot_by(proxy, "detected").await
}

/// The hot SKUs of one origin (`configured`, `manual`, `detected`), from `/status`.
async fn hot_by(proxy: &TestProxy, origin: &str) -> anyhow::Result<Vec<u64>> {
    let status: serde_json::Value = serde_json::from_str(&proxy.admin_get("/status").await?)?;
    Ok(status["hot_skus"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|h| h["origin"] == origin)
                .filter_map(|h| h["sku"].as_u64())
                .collect()
        })
        .unwrap_or_default())
}
