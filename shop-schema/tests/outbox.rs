//! The outbox pipeline end to end: orders placed through the shop service (and more outbox rows
//! written through the proxy), the relay and the back-office consumer in-process, both crashed
//! at their worst moment and the consumer aborted mid-way and restarted; in the end every event
//! is applied once in effect and every outbox row is published.
//!
//! Needs the topology (PEAKGATE_CONFIG, or `scripts/topology up`), NATS JetStream
//! (SHOP_TEST_NATS, default nats://127.0.0.1:4222), Redis on 127.0.0.1:6379 and a MariaDB for the
//! back-office database (SHOP_TEST_BACKOFFICE_MYSQL, default mysql://root@127.0.0.1:3306).
//! Everything is named after the test run (shop database, stream, subjects, durable, back-office
//! database) and removed at the end.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context;
use common::{ShopProxy, delete_stream, drop_database, nats_url, wait_until};
use mysql_async::prelude::Queryable;
use peakgate_shop::backoffice::{Backoffice, BackofficeConfig, BackofficeStats};
use peakgate_shop::outbox::{Relay, RelayConfig, event_id};
use peakgate_shop::{backoffice, db, schema, seed, service};
use serde_json::{Value, json};

const MEMBERS: u64 = 12;
/// Outbox rows written directly through the proxy, besides the orders' own.
const EXTRA_ROWS: u64 = 240;

fn backoffice_server() -> String {
    std::env::var("SHOP_TEST_BACKOFFICE_MYSQL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

async fn conn(url: &str) -> anyhow::Result<mysql_async::Conn> {
    Ok(mysql_async::Conn::new(
        mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(url)?).prefer_socket(false),
    )
    .await?)
}

async fn count(url: &str, sql: &str) -> anyhow::Result<i64> {
    let mut c = conn(url).await?;
    let n: Option<i64> = c.query_first(sql).await?;
    c.disconnect().await?;
    Ok(n.unwrap_or(0))
}

struct Env {
    shop_url: String,
    hot_url: String,
    bo_url: String,
    bo_db: String,
    stream: String,
    shop: ShopProxy,
}

impl Env {
    async fn cleanup(&self) {
        self.shop.drop_database().await;
        drop_database(&self.bo_url, &self.bo_db).await;
        // Deleting the stream deletes its durable consumer too.
        delete_stream(&self.stream).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_reaches_the_back_office_exactly_once() -> anyhow::Result<()> {
    let shop = ShopProxy::start("it_outbox").await?;
    let name = shop.db.clone();
    let env = Env {
        shop_url: shop.url.clone(),
        hot_url: shop.hot_url.clone(),
        bo_url: format!("{}/{name}_bo", backoffice_server()),
        bo_db: format!("{name}_bo"),
        stream: name.to_uppercase(),
        shop,
    };
    let result = run(&env, &name).await;
    env.cleanup().await;
    result
}

async fn run(env: &Env, name: &str) -> anyhow::Result<()> {
    schema::migrate(&env.shop_url, Some(&env.hot_url), |_| {}).await?;
    let pool = db::pool(&env.shop_url, 8)?;
    let mut c = pool.get_conn().await?;
    seed::seed(
        &mut c,
        &seed::SeedPlan {
            members: MEMBERS,
            products: 20,
            hot_stock: 10,
            seed: 11,
            progress: false,
        },
    )
    .await?;
    drop(c);

    // Real orders through the service: every member orders twice and pays the first order.
    let redis = peakgate_shop::cache::redis_manager("redis://127.0.0.1:6379/").await?;
    let shop_cfg = service::ServiceConfig {
        redis_prefix: name.to_string(),
        session_ttl: Duration::from_secs(600),
        ..Default::default()
    };
    let app = service::router(Arc::new(service::Shop::new(pool.clone(), redis, shop_cfg)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    for m in 1..=MEMBERS {
        let login: Value = http
            .post(format!("{base}/sessions"))
            .json(&json!({ "email": seed::member_email(m), "password": seed::SEED_PASSWORD }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = login["token"].as_str().context("token")?.to_string();
        for i in 0..2 {
            let r = http
                .post(format!("{base}/orders"))
                .bearer_auth(&token)
                .header("idempotency-key", format!("ob-{m}-{i}"))
                .json(&json!({ "items": [{ "sku_id": 2 + i, "quantity": 1 }] }))
                .send()
                .await?;
            anyhow::ensure!(r.status().as_u16() == 201, "order: {}", r.status());
            let v: Value = r.json().await?;
            let id = v["order_id"].as_u64().context("order_id")?;
            if i == 0 {
                let r = http
                    .post(format!("{base}/orders/{id}/pay"))
                    .bearer_auth(&token)
                    .json(&json!({ "method": "card" }))
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "pay: {}", r.status());
            }
        }
    }
    server.abort();

    // More events written straight into the outbox through the proxy (each on its member's
    // shard): a created and a paid event for each synthetic order.
    let mut c = pool.get_conn().await?;
    for k in 0..EXTRA_ROWS / 2 {
        let m = 1 + k % MEMBERS;
        let order = 9_000_000 + k;
        let created = json!({ "order_id": order, "member_id": m, "status": "pending",
            "kind": "normal", "total": "10.00", "item_count": 1,
            "items": [{ "sku_id": 3, "title": "测试 item", "unit_price": "10.00", "quantity": 1, "line_total": "10.00" }] });
        let paid =
            json!({ "order_id": order, "member_id": m, "amount": "10.00", "method": "wallet" });
        c.query_drop(format!(
            "INSERT INTO outbox (member_id, aggregate_type, aggregate_id, event_type, payload) \
             VALUES ({m}, 'order', {order}, 'order.created', {}), ({m}, 'order', {order}, 'order.paid', {})",
            db::lit(created.to_string()),
            db::lit(paid.to_string())
        ))
        .await?;
    }
    drop(c);

    // Every outbox row, over both shards: (member, id) -> aggregate.
    let mut c = conn(&env.shop_url).await?;
    let rows: Vec<(u64, u64, u64, String)> = c
        .query(
            "/* peakgate: route=primary */ SELECT member_id, id, aggregate_id, \
             CAST(created_at AS CHAR) FROM outbox ORDER BY id",
        )
        .await?;
    c.disconnect().await?;
    let total = rows.len() as u64;
    anyhow::ensure!(
        total == MEMBERS * 3 + EXTRA_ROWS,
        "outbox rows: {total}, expected {}",
        MEMBERS * 3 + EXTRA_ROWS
    );
    let shards_used = rows.iter().filter(|r| r.1 == 1).count();
    anyhow::ensure!(
        shards_used >= 2,
        "outbox ids restart per shard: {shards_used} shards"
    );
    let mut per_order: BTreeMap<u64, i64> = BTreeMap::new();
    for r in &rows {
        *per_order.entry(r.2).or_default() += 1;
    }

    let prefix = format!("{name}.outbox");
    let relay_cfg = RelayConfig {
        stream: env.stream.clone(),
        subject_prefix: prefix.clone(),
        batch: 50,
        idle: Duration::from_millis(50),
        ..Default::default()
    };

    // 1. A relay that crashes between the publish acks and the UPDATE: 30 rows are in the
    //    stream but not stamped.
    let crashing = Relay::connect(
        db::pool(&env.shop_url, 2)?,
        &nats_url(),
        RelayConfig {
            crash_after_acks: Some(30),
            ..relay_cfg.clone()
        },
    )
    .await?;
    let err = crashing
        .run()
        .await
        .err()
        .context("the crashing relay returned Ok")?;
    anyhow::ensure!(format!("{err}").contains("fault injection"), "{err:#}");
    let unpublished =
        "/* peakgate: route=primary */ SELECT COUNT(*) FROM outbox WHERE published_at IS NULL";
    anyhow::ensure!(
        count(&env.shop_url, unpublished).await? == total as i64,
        "the crashed relay stamped rows"
    );
    drop(crashing);

    // 2. The real relay, running through the rest of the test.
    let relay = Relay::connect(db::pool(&env.shop_url, 2)?, &nats_url(), relay_cfg).await?;
    let relay_stats = relay.stats.clone();
    let relay_task = tokio::spawn(async move { relay.run().await });

    // 3. Back office: a consumer that crashes after its 25th commit, before acking it.
    let bo_pool = backoffice::prepare_db(&env.bo_url).await?;
    let stats = Arc::new(BackofficeStats::default());
    let bo_cfg = BackofficeConfig {
        stream: env.stream.clone(),
        subject_prefix: prefix.clone(),
        durable: format!("{name}_bo"),
        ack_wait: Duration::from_secs(2),
        batch: 20,
        ..Default::default()
    };
    let crashing = Backoffice::connect(
        bo_pool.clone(),
        &nats_url(),
        BackofficeConfig {
            crash_after_commits: Some(25),
            ..bo_cfg.clone()
        },
        stats.clone(),
    )
    .await?;
    let err = tokio::time::timeout(Duration::from_secs(60), crashing.run())
        .await
        .context("the crashing consumer never crashed")?
        .err()
        .context("the crashing consumer returned Ok")?;
    anyhow::ensure!(format!("{err}").contains("fault injection"), "{err:#}");
    drop(crashing);
    let applied_sql = "SELECT COUNT(*) FROM applied_events";
    anyhow::ensure!(
        count(&env.bo_url, applied_sql).await? == 25,
        "25 applied before the crash"
    );

    // 4. A consumer killed (task aborted) somewhere in the middle.
    let consumer =
        Backoffice::connect(bo_pool.clone(), &nats_url(), bo_cfg.clone(), stats.clone()).await?;
    let task = tokio::spawn(async move { consumer.run().await });
    wait_until(
        Duration::from_secs(60),
        "the second consumer to apply events",
        || async { Ok(count(&env.bo_url, applied_sql).await? >= 120) },
    )
    .await?;
    task.abort();
    let _ = task.await;
    let at_kill = count(&env.bo_url, applied_sql).await?;
    anyhow::ensure!(
        (at_kill as u64) < total,
        "the consumer finished before it was killed ({at_kill} of {total})"
    );

    // 5. Restarted: resumes from the durable position and finishes.
    let consumer = Backoffice::connect(bo_pool.clone(), &nats_url(), bo_cfg, stats.clone()).await?;
    let task = tokio::spawn(async move { consumer.run().await });
    let all = total as i64;
    wait_until(
        Duration::from_secs(90),
        "every event applied and published",
        || async {
            Ok(count(&env.bo_url, applied_sql).await? == all
                && count(&env.shop_url, unpublished).await? == 0)
        },
    )
    .await?;
    // Redeliveries (the message whose ack the crash skipped, anything in flight at the kill)
    // must have come back by now: wait past the ack wait, then nothing may have changed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    task.abort();
    relay_task.abort();

    // Exactly once in effect.
    let mut b = conn(&env.bo_url).await?;
    let applied: Vec<(String, i64)> = b
        .query("SELECT event_id, lag_ms FROM applied_events")
        .await?;
    anyhow::ensure!(
        applied.len() as u64 == total,
        "applied {} of {total}",
        applied.len()
    );
    let mut want: Vec<String> = rows.iter().map(|r| event_id(r.0, r.1, &r.3)).collect();
    let mut got: Vec<String> = applied.iter().map(|a| a.0.clone()).collect();
    want.sort();
    got.sort();
    anyhow::ensure!(want == got, "applied events differ from the outbox rows");
    anyhow::ensure!(applied.iter().all(|a| a.1 >= 0), "negative lag");
    let bo: Vec<(u64, i64, String)> = b
        .query("SELECT order_id, events_applied, status FROM bo_orders")
        .await?;
    anyhow::ensure!(
        bo.len() == per_order.len(),
        "bo_orders {} of {}",
        bo.len(),
        per_order.len()
    );
    for (order, n, status) in &bo {
        let expected = per_order.get(order).copied().unwrap_or(0);
        anyhow::ensure!(
            *n == expected,
            "order {order}: {n} effects, {expected} events"
        );
        let want_status = if expected == 2 { "paid" } else { "pending" };
        anyhow::ensure!(status == want_status, "order {order}: {status}");
    }
    let items: i64 = b
        .query_first("SELECT COUNT(*) FROM bo_order_items")
        .await?
        .unwrap_or(0);
    anyhow::ensure!(items as usize == per_order.len(), "bo_order_items {items}");
    b.disconnect().await?;
    anyhow::ensure!(
        count(&env.shop_url, unpublished).await? == 0,
        "unpublished rows left"
    );

    // The stream holds each event once: the crashed relay's publishes were de-duplicated.
    let client = async_nats::connect(nats_url()).await?;
    let info = async_nats::jetstream::new(client)
        .get_stream(&env.stream)
        .await?
        .get_info()
        .await?;
    anyhow::ensure!(
        info.state.messages == total,
        "stream holds {} messages for {total} rows",
        info.state.messages
    );
    anyhow::ensure!(
        relay_stats.duplicates.load(Relaxed) >= 30,
        "republished rows acked as duplicates: {}",
        relay_stats.duplicates.load(Relaxed)
    );
    // The crash after commit left one committed event unacked: it came back as a duplicate.
    anyhow::ensure!(
        stats.duplicates.load(Relaxed) >= 1,
        "no redelivered event was seen as a duplicate"
    );
    anyhow::ensure!(
        stats
            .render()
            .contains("shop_outbox_pipeline_lag_seconds_count")
    );
    eprintln!(
        "{total} events; consumer killed at {at_kill} applied; relay duplicates {}; \
         consumer duplicates {}; max lag {} ms",
        relay_stats.duplicates.load(Relaxed),
        stats.duplicates.load(Relaxed),
        applied.iter().map(|a| a.1).max().unwrap_or(0)
    );
    Ok(())
}
