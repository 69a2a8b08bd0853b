//! Setup shared by the shop's integration tests: a proxy in-process (ports 0) on the running
//! topology's config with the shop's shard map moved to a database of the test's own, and the
//! cleanup of what a test created (databases, a JetStream stream).
//!
//! The topology is the one PEAKGATE_CONFIG names, or the one `scripts/topology up` brings up.

#![allow(dead_code)] // each test binary uses part of it

use std::time::{Duration, Instant};

use anyhow::Context;
use mysql_async::prelude::Queryable;
use peakgate_shop::proxy_config;
use peakgate_tests::{TestProxy, unique_name};

/// NATS JetStream for the tests (SHOP_TEST_NATS, default nats://127.0.0.1:4222).
pub fn nats_url() -> String {
    std::env::var("SHOP_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A proxy with the shop's map on database `db`.
pub struct ShopProxy {
    pub proxy: TestProxy,
    /// `mysql://shop:shop@<proxy>/<db>`.
    pub url: String,
    pub db: String,
    /// The hot instance, directly, as root (migrate creates the database there).
    pub hot_url: String,
}

impl ShopProxy {
    /// Starts the proxy for a database named after `prefix` and this run.
    pub async fn start(prefix: &str) -> anyhow::Result<ShopProxy> {
        let path = match std::env::var("PEAKGATE_CONFIG") {
            Ok(p) => p.into(),
            Err(_) => peakgate_tests::ensure_topology()?,
        };
        let topology =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let db = unique_name(prefix);
        let text = proxy_config::merge(
            &topology,
            &proxy_config::Overrides {
                database: Some(db.clone()),
                mysql: Some("127.0.0.1:0".into()),
                admin: Some("127.0.0.1:0".into()),
            },
        )?;
        let cfg: toml::Table = toml::from_str(&text)?;
        let hot = cfg["hotspot"]["instance"]
            .as_str()
            .context("the topology has no hot instance")?;
        let hot_url = format!("mysql://root@{hot}");
        let proxy = TestProxy::start_text(&text).await?;
        let url = format!("mysql://shop:shop@{}/{db}", proxy.mysql);
        Ok(ShopProxy {
            proxy,
            url,
            db,
            hot_url,
        })
    }

    /// Drops the test's database on every shard (through the proxy) and on the hot instance.
    pub async fn drop_database(&self) {
        drop_database(&self.url, &self.db).await;
        drop_database(&self.hot_url, &self.db).await;
    }
}

/// `DROP DATABASE IF EXISTS db` on the server behind `url` (errors ignored: cleanup).
pub async fn drop_database(url: &str, db: &str) {
    let Ok(opts) = mysql_async::Opts::from_url(url) else {
        return;
    };
    let opts = mysql_async::OptsBuilder::from_opts(opts)
        .db_name(None::<String>)
        .prefer_socket(false);
    if let Ok(mut c) = mysql_async::Conn::new(opts).await {
        let _ = c
            .query_drop(format!("DROP DATABASE IF EXISTS `{db}`"))
            .await;
        let _ = c.disconnect().await;
    }
}

/// Deletes a JetStream stream (and so its consumers); errors ignored: cleanup.
pub async fn delete_stream(name: &str) {
    if let Ok(client) = async_nats::connect(nats_url()).await {
        let _ = async_nats::jetstream::new(client).delete_stream(name).await;
    }
}

/// Polls `check` every 50 ms until it holds; fails after `limit`. Returns the time it took.
pub async fn wait_until<F, Fut>(
    limit: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let start = Instant::now();
    loop {
        if check().await? {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(
            start.elapsed() < limit,
            "{what}: not after {} ms",
            limit.as_millis()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
