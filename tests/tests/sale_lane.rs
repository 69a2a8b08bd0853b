//! The sale lane (`[hotspot] lane_threads`, `lane_linger_ms`): a session whose write went through
//! the hot-row queue moves to the lane's runtime between statements, keeps working there (normal
//! statements, transactions, prepared statements), and comes back after a statement that was not
//! a queued write once its last one is `lane_linger_ms` old. `/status` `sale_lane` counts the
//! sessions on the lane; a client leaving from the lane is counted out of it. These tests check where sessions run and that they keep working; what the lane
//! buys in latency is measured by `scripts/bench flash-sale` (a benchmark, not a test).

use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use peakgate_tests::{Scratch, TestProxy, proxy_with_stock_table};

/// A proxy whose hot table is a new `shop.<t>` holding SKU 1001 with stock 100, with this lane.
async fn lane_proxy(lane: &str) -> anyhow::Result<(TestProxy, String, [Scratch; 2])> {
    let (t, drops, proxy, mut c) = proxy_with_stock_table("it_lane", lane, |_| {}).await?;
    c.query_drop(format!(
        "INSERT INTO {t} (sku_id, stock) VALUES (1001, 100)"
    ))
    .await?;
    c.disconnect().await?;
    Ok((proxy, t, drops))
}

/// `/status` `sale_lane` as (sessions, moves); `None` when the proxy has no lane.
/// SKU 1001's stock in table `t`, read through the proxy on a connection of its own.
async fn stock_of(proxy: &TestProxy, t: &str) -> anyhow::Result<Option<i64>> {
    let mut c = proxy.conn(Some("shop")).await?;
    let stock = c
        .query_first(format!("SELECT stock FROM {t} WHERE sku_id = 1001"))
        .await?;
    c.disconnect().await?;
    Ok(stock)
}

async fn lane_counts(proxy: &TestProxy) -> anyhow::Result<Option<(u64, u64)>> {
    let status: serde_json::Value = serde_json::from_str(&proxy.admin_get("/status").await?)?;
    let lane = &status["sale_lane"];
    if lane.is_null() {
        return Ok(None);
    }
    Ok(Some((
        lane["sessions"].as_u64().unwrap_or(u64::MAX),
        lane["moves"].as_u64().unwrap_or(u64::MAX),
    )))
}

/// Waits (up to 5 s) until `/status` shows `sessions` on the lane; the moves so far.
async fn wait_lane(proxy: &TestProxy, sessions: u64) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = lane_counts(proxy).await?;
        if let Some((s, moves)) = got
            && s == sessions
        {
            return Ok(moves);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "sale_lane never showed {sessions} session(s): {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_to_the_sale_lane_works_there_and_comes_back() -> anyhow::Result<()> {
    let (proxy, t, _drops) = lane_proxy("lane_threads = 1\nlane_linger_ms = 300").await?;
    // (The setup's INSERT of the hot row went through the queue too.)
    let m0 = wait_lane(&proxy, 0).await?;
    let decrement = format!("UPDATE {t} SET stock = stock - 1 WHERE sku_id = 1001 AND stock >= 1");
    let mut c = proxy.conn(Some("shop")).await?;
    c.query_drop(&decrement).await?;
    assert_eq!(c.affected_rows(), 1);
    assert_eq!(
        wait_lane(&proxy, 1).await?,
        m0 + 1,
        "one move onto the lane"
    );
    // On the lane: a second queued write keeps it there; normal statements, a transaction and a
    // prepared statement work (within the linger time, so it stays).
    c.query_drop(&decrement).await?;
    let one: Option<i64> = c.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));
    assert_eq!(
        wait_lane(&proxy, 1).await?,
        m0 + 1,
        "still on the lane, no new move"
    );
    c.query_drop("BEGIN").await?;
    let stock: Option<i64> = c
        .exec_first(format!("SELECT stock FROM {t} WHERE sku_id = ?"), (1001,))
        .await?;
    assert_eq!(stock, Some(98));
    c.query_drop("COMMIT").await?;
    // Past the linger time, the next statement that is not a queued write brings it back.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let two: Option<i64> = c.query_first("SELECT 2").await?;
    assert_eq!(two, Some(2));
    assert_eq!(wait_lane(&proxy, 0).await?, m0 + 1);
    // And it serves on the proxy's runtime as before; a new queued write moves it again.
    c.query_drop(&decrement).await?;
    assert_eq!(wait_lane(&proxy, 1).await?, m0 + 2);
    // Leaving from the lane counts the session out of it.
    c.disconnect().await?;
    wait_lane(&proxy, 0).await?;
    assert_eq!(stock_of(&proxy, &t).await?, Some(97));
    proxy.assert_serves().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_buyers_on_the_lane_sell_exactly_the_stock() -> anyhow::Result<()> {
    let (proxy, t, _drops) = lane_proxy("lane_threads = 1").await?;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (opts, t) = (proxy.opts(Some("shop")), t.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await?;
            let mut sold = 0;
            for _ in 0..4 {
                c.query_drop(format!(
                    "UPDATE {t} SET stock = stock - 1 WHERE sku_id = 1001 AND stock >= 1"
                ))
                .await?;
                sold += c.affected_rows();
            }
            // Normal work on the same connection while it is on the lane.
            let one: Option<i64> = c.query_first("SELECT 1").await?;
            anyhow::ensure!(one == Some(1));
            c.disconnect().await?;
            anyhow::Ok(sold)
        }));
    }
    let mut sold = 0;
    for task in tasks {
        sold += task.await??;
    }
    assert_eq!(sold, 100, "200 decrements for a stock of 100");
    let moves = wait_lane(&proxy, 0).await?;
    assert!(moves >= 1, "no session went onto the lane");
    assert_eq!(stock_of(&proxy, &t).await?, Some(0));
    proxy.assert_serves().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lane_threads_0_keeps_every_session_on_the_proxy_runtime() -> anyhow::Result<()> {
    let (proxy, t, _drops) = lane_proxy("lane_threads = 0").await?;
    let mut c = proxy.conn(Some("shop")).await?;
    c.query_drop(format!(
        "UPDATE {t} SET stock = stock - 1 WHERE sku_id = 1001 AND stock >= 1"
    ))
    .await?;
    assert_eq!(c.affected_rows(), 1);
    assert_eq!(lane_counts(&proxy).await?, None);
    c.disconnect().await?;
    Ok(())
}
