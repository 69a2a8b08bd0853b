//! The shop end to end: the topology's servers, a proxy in-process with the shop's shard map
//! moved to a database of the test's own, the schema and a small seed applied through it, the
//! HTTP service in-process on port 0, and a real HTTP client.
//!
//! Set PEAKGATE_CONFIG to a running topology's config to use it as is; otherwise
//! `scripts/topology up` brings one up.

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::ShopProxy;
use mysql_async::prelude::Queryable;
use peakgate_shop::{db, schema, seed, service};
use serde_json::{Value, json};

struct Shop {
    base: String,
    http: reqwest::Client,
    url: String,
    proxy: ShopProxy,
}

impl Shop {
    async fn start(members: u64) -> anyhow::Result<Shop> {
        let proxy = ShopProxy::start("it_shop").await?;
        let url = proxy.url.clone();
        schema::migrate(&url, Some(&proxy.hot_url), |_| {}).await?;
        // Re-running is harmless (the README says so): every CREATE TABLE IF NOT EXISTS now
        // leaves a note, which must not bind the next statement to one shard.
        schema::migrate(&url, Some(&proxy.hot_url), |_| {}).await?;
        let pool = db::pool(&url, 16)?;
        let mut conn = pool.get_conn().await?;
        seed::seed(
            &mut conn,
            &seed::SeedPlan {
                members,
                products: 40,
                hot_stock: 100,
                seed: 7,
                progress: false,
            },
        )
        .await?;
        drop(conn);
        let redis = peakgate_shop::cache::redis_manager("redis://127.0.0.1:6379/").await?;
        let cfg = service::ServiceConfig {
            redis_prefix: proxy.db.clone(),
            session_ttl: Duration::from_secs(600),
            ..Default::default()
        };
        let app = service::router(Arc::new(service::Shop::new(pool, redis, cfg)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Shop {
            base,
            http: reqwest::Client::new(),
            url,
            proxy,
        })
    }

    async fn login(&self, member: u64) -> anyhow::Result<String> {
        let v: Value = self
            .http
            .post(format!("{}/sessions", self.base))
            .json(&json!({ "email": seed::member_email(member), "password": seed::SEED_PASSWORD }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(v["token"].as_str().context("token")?.to_string())
    }

    async fn sql_count(&self, sql: &str) -> anyhow::Result<i64> {
        let mut c = mysql_async::Conn::new(
            mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&self.url)?)
                .prefer_socket(false),
        )
        .await?;
        let n: Option<i64> = c.query_first(sql).await?;
        c.disconnect().await?;
        Ok(n.unwrap_or(0))
    }

    /// Drops the test's database everywhere (shards through the proxy, the hot instance directly).
    async fn cleanup(&self) {
        self.proxy.drop_database().await;
    }
}

async fn place(
    shop: &Shop,
    token: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<(u16, Option<String>, Value)> {
    let r = shop
        .http
        .post(format!("{}/orders", shop.base))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    let replayed = r
        .headers()
        .get("idempotent-replayed")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((status, replayed, r.json().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_order_placement_and_bad_requests() -> anyhow::Result<()> {
    let shop = Shop::start(10).await?;
    let result = async {
        let token = shop.login(3).await?;
        let body =
            json!({ "items": [{ "sku_id": 7, "quantity": 2 }, { "sku_id": 8, "quantity": 1 }] });
        let sold_before = shop
            .sql_count("SELECT sold FROM sku_stock WHERE sku_id = 7")
            .await?;

        let (s1, r1, first) = place(&shop, &token, "checkout-1", &body).await?;
        anyhow::ensure!(s1 == 201 && r1.is_none(), "{s1} {first}");
        let id = first["order_id"].as_u64().context("order_id")?;
        let (s2, r2, again) = place(&shop, &token, "checkout-1", &body).await?;
        anyhow::ensure!(s2 == 201 && r2.as_deref() == Some("true"), "{s2} {again}");
        anyhow::ensure!(again["order_id"].as_u64() == Some(id), "{again}");

        // Eight concurrent retries of a new key: one order.
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (http, base, token, body) = (
                shop.http.clone(),
                shop.base.clone(),
                token.clone(),
                body.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let r = http
                    .post(format!("{base}/orders"))
                    .bearer_auth(token)
                    .header("idempotency-key", "checkout-2")
                    .json(&body)
                    .send()
                    .await?;
                let s = r.status().as_u16();
                let v: Value = r.json().await?;
                anyhow::Ok((s, v["order_id"].as_u64()))
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            let (s, id) = t.await??;
            anyhow::ensure!(s == 201, "concurrent retry got {s}");
            ids.push(id.context("no order id")?);
        }
        ids.dedup();
        anyhow::ensure!(
            ids.len() == 1,
            "concurrent retries got several orders: {ids:?}"
        );

        let orders = shop
            .sql_count(
                "SELECT COUNT(*) FROM orders WHERE member_id = 3 \
                 AND idempotency_key IN ('checkout-1', 'checkout-2')",
            )
            .await?;
        anyhow::ensure!(orders == 2, "orders written: {orders}");
        let sold = shop
            .sql_count("SELECT sold FROM sku_stock WHERE sku_id = 7")
            .await?;
        anyhow::ensure!(
            sold - sold_before == 4,
            "stock taken: {}",
            sold - sold_before
        );

        // The same key for another request is refused.
        let other = json!({ "items": [{ "sku_id": 9, "quantity": 1 }] });
        let (s, _, v) = place(&shop, &token, "checkout-1", &other).await?;
        anyhow::ensure!(s == 422, "{s} {v}");

        // Bad requests: JSON 4xx.
        for (body, want) in [
            (json!({ "items": [] }), 400),
            (json!({ "items": [{ "sku_id": 7, "quantity": -1 }] }), 400),
            (
                json!({ "items": [{ "sku_id": 999_999, "quantity": 1 }] }),
                404,
            ),
            (json!({ "items": [{ "sku_id": 1001, "quantity": 1 }] }), 422),
            (json!({ "nothing": 1 }), 400),
        ] {
            let (s, _, v) = place(&shop, &token, "bad", &body).await?;
            anyhow::ensure!(s == want && v["error"].is_string(), "{body}: {s} {v}");
        }
        // Over a raw socket: the service answers 413 and closes before the whole body is
        // written, which an HTTP client reports as a failed write ("broken pipe") instead of
        // reading the answer. Here a failed write is ignored and the answer read.
        let status = huge_body_status(&shop.base, &token).await?;
        anyhow::ensure!(status.starts_with("HTTP/1.1 413"), "huge body: {status}");
        let r = shop
            .http
            .post(format!("{}/orders", shop.base))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 401, "no login: {}", r.status());

        // The catalogue: the second read of a product is a cache hit.
        let mut seen = Vec::new();
        for _ in 0..2 {
            let r = shop
                .http
                .get(format!("{}/products/12", shop.base))
                .send()
                .await?;
            anyhow::ensure!(r.status().as_u16() == 200, "detail {}", r.status());
            seen.push(
                r.headers()
                    .get("x-cache")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string(),
            );
        }
        anyhow::ensure!(seen == ["miss", "hit"], "x-cache: {seen:?}");
        anyhow::Ok(())
    }
    .await;
    shop.cleanup().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_sale_never_oversells() -> anyhow::Result<()> {
    // The test: stock 100, 1,000 buyers, exactly 100 orders.
    const BUYERS: u64 = 1000;
    const STOCK: u64 = 100;
    let shop = Shop::start(BUYERS).await?;
    let result = async {
        let r = shop
            .http
            .put(format!("{}/admin/skus/1001/stock", shop.base))
            .json(&json!({ "stock": STOCK }))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "restock {}", r.status());
        let mut tokens = Vec::new();
        for m in 1..=BUYERS {
            tokens.push(shop.login(m).await?);
        }
        let start = Arc::new(tokio::sync::Barrier::new(BUYERS as usize));
        let mut tasks = Vec::new();
        for t in tokens {
            let (http, base, start) = (shop.http.clone(), shop.base.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                let r = http
                    .post(format!("{base}/flash/1001/buy"))
                    .bearer_auth(t)
                    .send()
                    .await?;
                let s = r.status().as_u16();
                let v: Value = r.json().await?;
                anyhow::Ok((s, v))
            }));
        }
        let (mut ok, mut sold_out) = (0, 0);
        for t in tasks {
            let (s, v) = t.await??;
            match s {
                201 => ok += 1,
                409 if v["error"] == "sold_out" => sold_out += 1,
                _ => anyhow::bail!("unexpected answer {s} {v}"),
            }
        }
        anyhow::ensure!(
            ok == STOCK && sold_out == BUYERS - STOCK,
            "{ok} sold, {sold_out} sold out"
        );
        let stock: Value = shop
            .http
            .get(format!("{}/skus/1001/stock", shop.base))
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(stock["stock"] == 0 && stock["sold"] == STOCK, "{stock}");
        let units = shop
            .sql_count("SELECT SUM(quantity) FROM order_items WHERE sku_id = 1001")
            .await?;
        anyhow::ensure!(units == STOCK as i64, "order units for 1001: {units}");
        let orders = shop
            .sql_count("SELECT COUNT(*) FROM order_items WHERE sku_id = 1001")
            .await?;
        anyhow::ensure!(
            orders == STOCK as i64,
            "order lines for 1001 (one per flash order): {orders}"
        );
        anyhow::Ok(())
    }
    .await;
    shop.cleanup().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_history_reads_its_own_writes() -> anyhow::Result<()> {
    let shop = Shop::start(10).await?;
    let result = async {
        for member in [2, 5] {
            let token = shop.login(member).await?;
            for i in 0..5 {
                let body = json!({ "items": [{ "sku_id": 10 + i, "quantity": 1 }] });
                let (s, _, v) = place(&shop, &token, &format!("h-{member}-{i}"), &body).await?;
                anyhow::ensure!(s == 201, "{s} {v}");
                let id = v["order_id"].as_u64().context("order_id")?;
                let h: Value = shop
                    .http
                    .get(format!("{}/orders", shop.base))
                    .bearer_auth(&token)
                    .send()
                    .await?
                    .json()
                    .await?;
                let latest = h["orders"][0]["order_id"].as_u64();
                anyhow::ensure!(latest == Some(id), "history misses order {id}: {h}");
                anyhow::ensure!(
                    h["orders"].as_array().map(Vec::len) == Some(i as usize + 1),
                    "{h}"
                );
                let one = shop
                    .http
                    .get(format!("{}/orders/{id}", shop.base))
                    .bearer_auth(&token)
                    .send()
                    .await?;
                anyhow::ensure!(one.status().as_u16() == 200, "order {id}: {}", one.status());
            }
        }
        // Members on both shards got their orders.
        let outbox = shop
            .sql_count("SELECT COUNT(*) FROM outbox WHERE event_type = 'order.created'")
            .await?;
        anyhow::ensure!(outbox == 10, "outbox rows: {outbox}");
        anyhow::Ok(())
    }
    .await;
    shop.cleanup().await;
    result
}

/// The status line the service answers a POST /orders with a 200 KB body.
async fn huge_body_status(base: &str, token: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await?;
    let body = vec![b'['; 200_000];
    let head = format!(
        "POST /orders HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // The service may stop reading (and close) once it has seen enough: a failed write is fine.
    if sock.write_all(head.as_bytes()).await.is_ok() {
        let _ = sock.write_all(&body).await;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or("").to_string())
}
