//! Product search end to end: the topology's servers behind an in-process proxy (the shop's map
//! moved to a database of the test's own), a seeded catalogue with Chinese and Latin names, a
//! real tantivy index in a temporary directory built by `reindex`, the service on port 0, and
//! NATS JetStream with a stream, subjects and durable consumer named after the run.
//!
//! One test, in phases (the proxy's statement counters are per process, so the "no SQL" check
//! must not overlap anything else that queries):
//! 1. relevance (Latin, CJK, a Chinese brand, mixed), filters, sorts, facets and highlighting
//!    against counts computed from the database, bad parameters, and no SQL during searches;
//! 2. the pipeline: relay and index consumer running; a price change through the API is
//!    searchable within 2 s; the consumer is stopped, changes are made, and after a restart every
//!    one of them is in the index; an old event published again changes nothing; a second
//!    replica (own directory and durable consumer) gets the next change too.
//!
//! Needs the topology (PEAKGATE_CONFIG, or `scripts/topology up`), NATS JetStream
//! (SHOP_TEST_NATS, default nats://127.0.0.1:4222) and Redis on 127.0.0.1:6379.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context;
use common::{ShopProxy, delete_stream, nats_url, wait_until};
use mysql_async::prelude::Queryable;
use peakgate_shop::outbox::{Relay, RelayConfig};
use peakgate_shop::search::sync::{IndexSync, IndexSyncConfig, SearchStats, open_stream};
use peakgate_shop::search::{SearchIndex, query, rebuild};
use peakgate_shop::{db, schema, seed, service};
use serde_json::{Value, json};

const PRODUCTS: u64 = 120;

/// A product as the test reads it from the database.
#[derive(Debug, Clone)]
struct Row {
    id: u64,
    category: u64,
    title: String,
    title_en: String,
    brand: String,
    price_cents: i64,
}

struct Env {
    shop: ShopProxy,
    url: String,
    db: String,
    hot_url: String,
    stream: String,
    prefix: String,
    base: String,
    http: reqwest::Client,
    pool: mysql_async::Pool,
    index: Arc<SearchIndex>,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn get(&self, path_and_query: &str) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .send()
            .await?;
        Ok((r.status().as_u16(), r.json().await?))
    }

    async fn search(&self, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let url = reqwest::Url::parse_with_params(&format!("{}/search", self.base), query)?;
        let r = self.http.get(url).send().await?;
        anyhow::ensure!(r.status().is_success(), "search {query:?}: {}", r.status());
        Ok(r.json().await?)
    }

    async fn put(&self, path: &str, body: Value) -> anyhow::Result<()> {
        let r = self
            .http
            .put(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "PUT {path}: {}", r.status());
        Ok(())
    }

    /// Sum of the proxy's `peakgate_statements_total` (every kind).
    async fn proxy_statements(&self) -> anyhow::Result<u64> {
        let text = self.shop.proxy.admin_get("/metrics").await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("peakgate_statements_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum())
    }

    async fn cleanup(&self) {
        self.shop.drop_database().await;
        delete_stream(&self.stream).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_on_the_index_and_through_the_outbox() -> anyhow::Result<()> {
    let shop_proxy = ShopProxy::start("it_search").await?;
    let name = shop_proxy.db.clone();
    let url = shop_proxy.url.clone();
    let dir = tempfile::tempdir()?;
    let index = Arc::new(SearchIndex::open(dir.path())?);
    let redis = peakgate_shop::cache::redis_manager("redis://127.0.0.1:6379/").await?;
    let pool = db::pool(&url, 8)?;
    let shop = service::Shop::new(
        pool.clone(),
        redis,
        service::ServiceConfig {
            redis_prefix: name.clone(),
            ..Default::default()
        },
    )
    .with_search(index.clone(), Arc::new(SearchStats::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = service::router(Arc::new(shop));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let env = Env {
        hot_url: shop_proxy.hot_url.clone(),
        shop: shop_proxy,
        url,
        db: name.clone(),
        stream: name.to_uppercase(),
        prefix: format!("{name}.outbox"),
        base,
        http: reqwest::Client::new(),
        pool,
        index,
        _dir: dir,
    };
    let result = async {
        let catalogue = prepare(&env).await?;
        relevance_filters_and_facets(&env, &catalogue).await?;
        pipeline(&env, &catalogue).await
    }
    .await;
    env.cleanup().await;
    result
}

/// Schema, seed, a few products of the test's own, and the index built by `reindex`.
async fn prepare(env: &Env) -> anyhow::Result<Vec<Row>> {
    schema::migrate(&env.url, Some(&env.hot_url), |_| {}).await?;
    // A database of an earlier shop (no products.version) is upgraded by migrate's last step.
    let mut c = env.pool.get_conn().await?;
    c.query_drop("ALTER TABLE products DROP COLUMN version")
        .await?;
    let mut upgrades = Vec::new();
    schema::upgrade(&mut c, |s| upgrades.push(s.to_string())).await?;
    anyhow::ensure!(
        upgrades.iter().any(|s| s.contains("ADD COLUMN version")),
        "{upgrades:?}"
    );
    seed::seed(
        &mut c,
        &seed::SeedPlan {
            members: 2,
            products: PRODUCTS,
            hot_stock: 5,
            seed: 5,
            progress: false,
        },
    )
    .await?;
    // Relevance: 90001 has the words in its title, 90002 only in its description. Popularity:
    // 90003 and 90004 differ only in units sold. Stock: product 5 is sold out.
    c.query_drop(
        "INSERT INTO products (id, category_id, title, title_en, brand, description, price, \
         list_price) VALUES \
         (90001, 10, '珍珠奶茶 礼盒', 'Pearl Milk Tea Box', '茶颜', '下午茶', 30, 30), \
         (90002, 10, '下午茶 礼盒', 'Afternoon Tea Box', '茶颜', '含珍珠奶茶一杯', 30, 30), \
         (90003, 10, '乌龙茶 罐装', 'Oolong Tea Can', '茶颜', '乌龙茶', 20, 20), \
         (90004, 10, '乌龙茶 罐装', 'Oolong Tea Can', '茶颜', '乌龙茶', 20, 20)",
    )
    .await?;
    c.query_drop(
        "INSERT INTO sku_stock (sku_id, product_id, stock, sold) VALUES \
         (90001, 90001, 9, 0), (90002, 90002, 9, 0), (90003, 90003, 9, 10), (90004, 90004, 9, 3000)",
    )
    .await?;
    c.query_drop("UPDATE sku_stock SET stock = 0 WHERE sku_id = 5")
        .await?;
    let rows: Vec<(u64, u64, String, String, String, String)> = c
        .query(
            "/* peakgate: route=primary */ SELECT id, category_id, title, title_en, brand, \
             CAST(price AS CHAR) FROM products WHERE status = 'active' ORDER BY id",
        )
        .await?;
    drop(c);
    let catalogue = rows
        .into_iter()
        .map(|r| Row {
            id: r.0,
            category: r.1,
            title: r.2,
            title_en: r.3,
            brand: r.4,
            price_cents: peakgate_shop::money::Money::parse(&r.5).map_or(-1, |m| m.0),
        })
        .collect::<Vec<_>>();
    anyhow::ensure!(
        catalogue.len() as u64 == PRODUCTS + 14,
        "{} products",
        catalogue.len()
    );

    let stream = open_stream(&nats_url(), &sync_config(env, "unused")).await?;
    let report = rebuild::rebuild(env.index.clone(), &env.pool, &stream, false).await?;
    anyhow::ensure!(
        report.documents == catalogue.len() as u64,
        "reindex wrote {} documents for {} products",
        report.documents,
        catalogue.len()
    );
    Ok(catalogue)
}

fn sync_config(env: &Env, durable: &str) -> IndexSyncConfig {
    IndexSyncConfig {
        stream: env.stream.clone(),
        subject_prefix: env.prefix.clone(),
        durable: durable.to_string(),
        ack_wait: Duration::from_secs(2),
        ..Default::default()
    }
}

fn ids(v: &Value) -> Vec<u64> {
    v["hits"]
        .as_array()
        .map(|h| h.iter().filter_map(|h| h["id"].as_u64()).collect())
        .unwrap_or_default()
}

fn total(v: &Value) -> u64 {
    v["total"].as_u64().unwrap_or(u64::MAX)
}

/// Every hit of a query (all pages).
async fn all_hits(env: &Env, query: &[(&str, &str)]) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for page in 1.. {
        let p = page.to_string();
        let mut q = query.to_vec();
        q.extend([("per_page", "50"), ("page", p.as_str())]);
        let v = env.search(&q).await?;
        let hits = v["hits"].as_array().cloned().unwrap_or_default();
        let done = hits.len() < 50;
        out.extend(hits);
        if done {
            break;
        }
    }
    Ok(out)
}

async fn relevance_filters_and_facets(env: &Env, catalogue: &[Row]) -> anyhow::Result<()> {
    let statements_before = env.proxy_statements().await?;
    let count = |f: &dyn Fn(&Row) -> bool| catalogue.iter().filter(|r| f(r)).count() as u64;

    // CJK: every product with the words, each highlighted; nothing else.
    let want = count(&|r| r.title.contains("蓝牙耳机"));
    anyhow::ensure!(want > 3, "the seed has {want} earbuds");
    let hits = all_hits(env, &[("q", "蓝牙耳机")]).await?;
    anyhow::ensure!(
        hits.len() as u64 == want,
        "蓝牙耳机: {} of {want}",
        hits.len()
    );
    for h in &hits {
        let html = h["title_html"].as_str().unwrap_or("");
        anyhow::ensure!(html.contains("<b>蓝牙耳机</b>"), "not highlighted: {html}");
    }

    // Latin, case-insensitive, two words, each highlighted.
    let want = count(&|r| r.title_en.contains("Running Shoes"));
    let hits = all_hits(env, &[("q", "running SHOES")]).await?;
    anyhow::ensure!(
        hits.len() as u64 == want && want > 3,
        "running shoes: {} of {want}",
        hits.len()
    );
    let html = hits[0]["title_en_html"].as_str().unwrap_or("");
    anyhow::ensure!(html.contains("<b>Running</b> <b>Shoes</b>"), "{html}");

    // A Chinese brand, and Latin + CJK together.
    let want = count(&|r| r.brand == "三只松鼠");
    let hits = all_hits(env, &[("q", "三只松鼠")]).await?;
    anyhow::ensure!(
        hits.len() as u64 == want && want > 0,
        "三只松鼠: {} of {want}",
        hits.len()
    );
    anyhow::ensure!(hits.iter().all(|h| h["brand"] == "三只松鼠"));
    let want = count(&|r| r.brand == "Xiaomi" && r.title.contains("手机"));
    let hits = all_hits(env, &[("q", "xiaomi 手机")]).await?;
    anyhow::ensure!(
        hits.len() as u64 == want && want > 0,
        "xiaomi 手机: {} of {want}",
        hits.len()
    );

    // Relevance: a title match before a description match; equal text, the better seller first.
    let v = env.search(&[("q", "珍珠奶茶")]).await?;
    anyhow::ensure!(ids(&v) == [90001, 90002], "珍珠奶茶: {:?}", ids(&v));
    let v = env.search(&[("q", "乌龙茶")]).await?;
    anyhow::ensure!(ids(&v) == [90004, 90003], "乌龙茶: {:?}", ids(&v));

    // Facets without a category: one count per category, as in the database, adding up.
    let v = env.search(&[]).await?;
    anyhow::ensure!(
        total(&v) == catalogue.len() as u64,
        "everything: {}",
        total(&v)
    );
    let mut want: BTreeMap<u64, u64> = BTreeMap::new();
    for r in catalogue {
        *want.entry(r.category).or_default() += 1;
    }
    let got: BTreeMap<u64, u64> = v["facets"]
        .as_array()
        .context("facets")?
        .iter()
        .map(|f| {
            (
                f["category_id"].as_u64().unwrap_or(0),
                f["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    anyhow::ensure!(got == want, "facets {got:?}, database {want:?}");

    // A category filter: hits of that category only; facets still show the others.
    let tea = count(&|r| r.title.contains('茶'));
    let v = env.search(&[("q", "茶"), ("category", "10")]).await?;
    let in_10 = count(&|r| r.title.contains('茶') && r.category == 10);
    anyhow::ensure!(total(&v) == in_10, "茶 in 10: {} of {in_10}", total(&v));
    let facet_sum: u64 = v["facets"]
        .as_array()
        .context("facets")?
        .iter()
        .filter_map(|f| f["count"].as_u64())
        .sum();
    anyhow::ensure!(
        facet_sum == tea,
        "茶 facets add up to {facet_sum}, {tea} match"
    );

    // Price range, sorted by price.
    let want = count(&|r| (10_000..=300_000).contains(&r.price_cents));
    let hits = all_hits(
        env,
        &[
            ("min_price", "100"),
            ("max_price", "3000.00"),
            ("sort", "price"),
        ],
    )
    .await?;
    anyhow::ensure!(
        hits.len() as u64 == want,
        "price range: {} of {want}",
        hits.len()
    );
    let prices: Vec<i64> = hits
        .iter()
        .filter_map(|h| peakgate_shop::money::Money::parse(h["price"].as_str()?).map(|m| m.0))
        .collect();
    anyhow::ensure!(prices.windows(2).all(|w| w[0] <= w[1]), "not by price");
    anyhow::ensure!(prices.iter().all(|p| (10_000..=300_000).contains(p)));

    // Stock: product 5 is the only one sold out.
    let v = env.search(&[("in_stock", "false")]).await?;
    anyhow::ensure!(ids(&v) == [5], "sold out: {:?}", ids(&v));
    let v = env.search(&[("in_stock", "true")]).await?;
    anyhow::ensure!(total(&v) == catalogue.len() as u64 - 1);

    // Popularity order and pages.
    let p1 = env
        .search(&[("sort", "popularity"), ("per_page", "10")])
        .await?;
    let p2 = env
        .search(&[("sort", "popularity"), ("per_page", "10"), ("page", "2")])
        .await?;
    let pops: Vec<u64> = [&p1, &p2]
        .iter()
        .flat_map(|v| v["hits"].as_array().cloned().unwrap_or_default())
        .filter_map(|h| h["popularity"].as_u64())
        .collect();
    anyhow::ensure!(
        pops.len() == 20 && pops.windows(2).all(|w| w[0] >= w[1]),
        "{pops:?}"
    );
    anyhow::ensure!(
        ids(&p1).iter().all(|i| !ids(&p2).contains(i)),
        "pages overlap"
    );

    // Bad parameters: JSON 400s naming the parameter.
    for (q, what) in [
        ("sort=cheapest", "sort"),
        ("min_price=abc", "min_price"),
        ("page=0", "page"),
        ("in_stock=maybe", "in_stock"),
        ("min_price=9&max_price=1", "min_price"),
    ] {
        let (status, v) = env.get(&format!("/search?{q}")).await?;
        let msg = v["message"].as_str().unwrap_or("");
        anyhow::ensure!(
            status == 400 && v["error"] == "bad_request" && msg.contains(what),
            "{q}: {status} {v}"
        );
    }

    // None of that reached the database.
    let statements_after = env.proxy_statements().await?;
    anyhow::ensure!(
        statements_after == statements_before,
        "searches issued {} statements through the proxy",
        statements_after - statements_before
    );
    Ok(())
}

/// Is product `id` found at exactly `price`?
async fn found_at(env: &Env, id: u64, price: &str) -> anyhow::Result<bool> {
    let v = env
        .search(&[("min_price", price), ("max_price", price)])
        .await?;
    Ok(ids(&v).contains(&id))
}

async fn pipeline(env: &Env, catalogue: &[Row]) -> anyhow::Result<()> {
    let relay = Relay::connect(
        db::pool(&env.url, 2)?,
        &nats_url(),
        RelayConfig {
            stream: env.stream.clone(),
            subject_prefix: env.prefix.clone(),
            idle: Duration::from_millis(50),
            ..Default::default()
        },
    )
    .await?;
    let relay_task = tokio::spawn(async move { relay.run().await });
    let durable = format!("{}_search", env.db);
    let stats = Arc::new(SearchStats::default());
    let consumer = IndexSync::connect(
        env.index.clone(),
        &nats_url(),
        sync_config(env, &durable),
        stats.clone(),
    )
    .await?;
    let task = tokio::spawn(async move { consumer.run().await });

    // A price change through the API is searchable within 2 s.
    let id = catalogue[7].id;
    env.put(
        &format!("/admin/products/{id}/price"),
        json!({ "price": "12345.67" }),
    )
    .await?;
    let took = wait_until(Duration::from_secs(2), "the new price searchable", || {
        found_at(env, id, "12345.67")
    })
    .await?;
    anyhow::ensure!(stats.lag.count() >= 1, "no index lag observed");

    // The consumer stops; changes go on (the relay publishes them); nothing reaches the index.
    task.abort();
    let _ = task.await;
    let changed: Vec<(u64, String)> = catalogue[10..16]
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id, format!("{}.{:02}", 20_000 + i, i)))
        .collect();
    for (id, price) in &changed {
        env.put(
            &format!("/admin/products/{id}/price"),
            json!({ "price": price }),
        )
        .await?;
    }
    let sold_out = catalogue[20].id;
    env.put(
        &format!("/admin/skus/{sold_out}/stock"),
        json!({ "stock": 0 }),
    )
    .await?;
    wait_until(
        Duration::from_secs(10),
        "catalogue events published",
        || async {
            let mut c = env.pool.get_conn().await?;
            let n: Option<i64> = c
                .query_first(
                    "/* peakgate: route=primary */ SELECT COUNT(*) FROM catalog_outbox \
                 WHERE published_at IS NULL",
                )
                .await?;
            Ok(n == Some(0))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (id, price) in &changed {
        anyhow::ensure!(
            !found_at(env, *id, price).await?,
            "{id} indexed while stopped"
        );
    }

    // Restarted on the same durable and directory: every change arrives.
    let consumer = IndexSync::connect(
        env.index.clone(),
        &nats_url(),
        sync_config(env, &durable),
        stats.clone(),
    )
    .await?;
    let task = tokio::spawn(async move { consumer.run().await });
    wait_until(
        Duration::from_secs(10),
        "every change after the restart",
        || async {
            for (id, price) in &changed {
                if !found_at(env, *id, price).await? {
                    return Ok(false);
                }
            }
            let v = env.search(&[("in_stock", "false")]).await?;
            Ok(ids(&v).contains(&sold_out))
        },
    )
    .await?;
    anyhow::ensure!(
        stats.applied.load(Relaxed) == 1 + changed.len() as u64 + 1,
        "applied {} events",
        stats.applied.load(Relaxed)
    );

    // An old version of the last event (the restock) published again, as a relay could after
    // the stream's de-duplication window: skipped by its version.
    let stale_before = stats.stale.load(Relaxed);
    let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await?);
    let first = js
        .get_stream(&env.stream)
        .await?
        .get_last_raw_message_by_subject(&format!("{}.product.updated", env.prefix))
        .await?;
    let mut env_json: Value = serde_json::from_slice(&first.payload)?;
    env_json["payload"]["product"]["version"] = json!(1);
    env_json["payload"]["product"]["in_stock"] = json!(true);
    js.publish(
        format!("{}.product.updated", env.prefix),
        serde_json::to_vec(&env_json)?.into(),
    )
    .await?
    .await?;
    wait_until(Duration::from_secs(5), "the old event seen", || async {
        Ok(stats.stale.load(Relaxed) > stale_before)
    })
    .await?;
    let v = env.search(&[("in_stock", "false")]).await?;
    anyhow::ensure!(
        ids(&v).contains(&sold_out),
        "an old event overwrote a newer one"
    );
    let metrics = env.get_text("/metrics").await?;
    anyhow::ensure!(
        metrics.contains("shop_search_index_lag_seconds_count"),
        "no lag metric"
    );

    // A second replica (another directory, its own durable consumer), built from the database
    // now: it has every change so far, and the next change reaches both.
    let dir_b = tempfile::tempdir()?;
    let index_b = Arc::new(SearchIndex::open(dir_b.path())?);
    let stream = open_stream(&nats_url(), &sync_config(env, "unused")).await?;
    rebuild::rebuild(index_b.clone(), &env.pool, &stream, false).await?;
    let replica = IndexSync::connect(
        index_b.clone(),
        &nats_url(),
        sync_config(env, &format!("{}_search_b", env.db)),
        Arc::new(SearchStats::default()),
    )
    .await?;
    let task_b = tokio::spawn(async move { replica.run().await });
    let found_in_b = |price: &str| {
        let params = query::SearchParams {
            min_price: Some(price.to_string()),
            max_price: Some(price.to_string()),
            ..Default::default()
        };
        let request = query::SearchRequest::parse(&params).map_err(anyhow::Error::msg)?;
        let ids: Vec<u64> = query::search(&index_b, &request)?
            .hits
            .iter()
            .map(|h| h.id)
            .collect();
        anyhow::Ok(ids)
    };
    anyhow::ensure!(
        found_in_b(&changed[0].1)? == [changed[0].0],
        "replica B lacks a change"
    );
    let id = catalogue[30].id;
    env.put(
        &format!("/admin/products/{id}/price"),
        json!({ "price": "54321.00" }),
    )
    .await?;
    wait_until(
        Duration::from_secs(2),
        "the change in both replicas",
        || async { Ok(found_at(env, id, "54321.00").await? && found_in_b("54321.00")? == [id]) },
    )
    .await?;
    task_b.abort();
    task.abort();
    relay_task.abort();
    eprintln!(
        "price change searchable after {} ms; index lag p-last {} ms; applied {}, stale {}",
        took.as_millis(),
        stats.lag.last_ms.load(Relaxed),
        stats.applied.load(Relaxed),
        stats.stale.load(Relaxed)
    );
    Ok(())
}

impl Env {
    async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await?
            .text()
            .await?)
    }
}
