//! `peakgate-shop`: migrate, seed, serve, relay, backoffice, load, proxy-config. See the crate's
//! README.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use peakgate_shop::search::{SearchIndex, rebuild, sync};
use peakgate_shop::{backoffice, db, load, outbox, proxy_config, schema, seed, service};

const DEFAULT_URL: &str = "mysql://shop:shop@127.0.0.1:6033/shop";
const DEFAULT_NATS: &str = "nats://127.0.0.1:4222";
const DEFAULT_BACKOFFICE_DB: &str = "mysql://root@127.0.0.1:3306/shop_backoffice";

/// Where outbox events go: the JetStream stream and its subjects.
#[derive(clap::Args, Clone)]
struct StreamArgs {
    /// The JetStream stream (created if missing).
    #[arg(long, default_value = "SHOP_OUTBOX")]
    stream: String,
    /// Events are published to `<PREFIX>.<event_type>`.
    #[arg(long, default_value = "shop.outbox")]
    subject_prefix: String,
    /// The stream's de-duplication window, seconds (when this process creates the stream).
    #[arg(long, default_value_t = 120)]
    duplicate_window: u64,
}

#[derive(Parser)]
#[command(name = "peakgate-shop", about = "The reference shop on PeakGate")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the database and tables through the proxy.
    Migrate {
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        /// The hot instance, directly (e.g. mysql://root@127.0.0.1:3331), to create the
        /// database there: the proxy's CREATE DATABASE does not reach it yet.
        #[arg(long)]
        hot_url: Option<String>,
    },
    /// Load categories, products, stock and members through the proxy.
    Seed {
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        #[arg(long, default_value_t = 1000)]
        members: u64,
        #[arg(long, default_value_t = 2000)]
        products: u64,
        /// Stock of each flash-sale SKU (1001-1010).
        #[arg(long, default_value_t = 500)]
        hot_stock: i64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Run the HTTP service.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        #[arg(long, default_value = "redis://127.0.0.1:6379/")]
        redis: String,
        /// Prefix of the service's Redis keys.
        #[arg(long, default_value = "shop")]
        redis_prefix: String,
        /// Most connections to the proxy.
        #[arg(long, default_value_t = 64)]
        pool: usize,
        /// Base TTL of cached catalogue reads, seconds.
        #[arg(long, default_value_t = 60)]
        cache_ttl: u64,
        /// Do not write outbox rows (for a proxy whose map does not shard `outbox`).
        #[arg(long)]
        no_outbox: bool,
        /// Also run the outbox relay in this process (same as `relay`, its own connections).
        #[arg(long, conflicts_with = "no_outbox")]
        relay: bool,
        /// NATS server of the in-process relay and of the search index consumer.
        #[arg(long, default_value = DEFAULT_NATS)]
        nats: String,
        #[command(flatten)]
        stream: StreamArgs,
        /// Serve `GET /search` from a search index in this directory (created, and built from
        /// the database, if empty), kept in sync by an index consumer in this process. One
        /// directory per instance: each instance holds its own replica.
        #[arg(long)]
        search_index: Option<PathBuf>,
        /// The index consumer's durable name (default: from the host name and the index
        /// directory). Every replica needs its own.
        #[arg(long, requires = "search_index")]
        search_consumer: Option<String>,
    },
    /// Rebuild a search index from the database (the service using that directory must be
    /// stopped); it then resumes the stream from where the rebuild read it.
    Reindex {
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        /// The index directory (created if missing).
        #[arg(long)]
        index: PathBuf,
        /// NATS: the rebuild records the stream position the index continues from.
        #[arg(long, default_value = DEFAULT_NATS)]
        nats: String,
        #[command(flatten)]
        stream: StreamArgs,
    },
    /// Publish unpublished outbox rows (read through the proxy) to NATS JetStream, at least once.
    Relay {
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        #[arg(long, default_value = DEFAULT_NATS)]
        nats: String,
        #[command(flatten)]
        stream: StreamArgs,
        /// Rows per round.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Pause between rounds that found less than a batch, milliseconds.
        #[arg(long, default_value_t = 200)]
        idle_ms: u64,
    },
    /// Apply the outbox events from JetStream to the back-office database, exactly once in effect.
    Backoffice {
        #[arg(long, default_value = DEFAULT_NATS)]
        nats: String,
        /// The back-office database (created with its tables if missing).
        #[arg(long, default_value = DEFAULT_BACKOFFICE_DB)]
        db: String,
        #[command(flatten)]
        stream: StreamArgs,
        /// The durable consumer's name.
        #[arg(long, default_value = "shop_backoffice")]
        durable: String,
        /// Seconds before an unacknowledged message is delivered again.
        #[arg(long, default_value_t = 30)]
        ack_wait: u64,
        /// Serve `/metrics` (counters, pipeline-lag histogram) on this address.
        #[arg(long)]
        metrics_listen: Option<String>,
    },
    /// Drive the service with a workload and check the flash sale for oversell.
    Load {
        /// browse | search | checkout | flash-sale | mixed (`peak` = mixed). browse and search
        /// need `serve --search-index`.
        #[arg(long, default_value = "mixed")]
        scenario: String,
        /// Run time in seconds.
        #[arg(long, visible_alias = "seconds", default_value_t = 30)]
        duration: u64,
        /// Concurrent users (each logs in as a seeded member).
        #[arg(long, visible_alias = "concurrency", default_value_t = 32)]
        users: usize,
        /// Second of the run at which the flash sale opens (mixed; default a third of the run).
        #[arg(long)]
        flash_at: Option<u64>,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Seeded members to log in as (member1..memberN).
        #[arg(long, default_value_t = 1000)]
        members: u64,
        /// Seeded normal products to browse (ids as seed makes them).
        #[arg(long, default_value_t = 2000)]
        products: u64,
        /// The flash-sale SKU and the stock it is given at the start.
        #[arg(long, default_value_t = 1001)]
        flash_sku: u64,
        #[arg(long, default_value_t = 300)]
        flash_stock: i64,
        /// The proxy's admin metrics (e.g. http://127.0.0.1:6080/metrics): its statement
        /// counters are compared before and after; a search run must add none.
        #[arg(long)]
        proxy_metrics: Option<String>,
    },
    /// Print a proxy config: a topology's config with the shop's shard map in place of its own.
    ProxyConfig {
        /// The topology's config (scripts/topology writes target/topology/peakgate.toml).
        #[arg(long)]
        topology: PathBuf,
        #[arg(long)]
        mysql: Option<String>,
        #[arg(long)]
        admin: Option<String>,
        /// Database of the shop's tables (default shop).
        #[arg(long)]
        database: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::Migrate { url, hot_url } => {
            schema::migrate(&url, hot_url.as_deref(), |f| println!("applied {f}")).await?;
            println!("schema ready in database {}", schema::database_of(&url)?);
        }
        Cmd::Seed {
            url,
            members,
            products,
            hot_stock,
            seed: rng_seed,
        } => {
            let pool = db::pool(&url, 2)?;
            let mut conn = pool.get_conn().await?;
            let plan = seed::SeedPlan {
                members,
                products,
                hot_stock,
                seed: rng_seed,
                progress: true,
            };
            seed::seed(&mut conn, &plan).await?;
            drop(conn);
            pool.disconnect().await?;
            println!(
                "seeded {members} members (password {:?}), {products} products + flash-sale SKUs 1001-1010",
                seed::SEED_PASSWORD
            );
        }
        Cmd::Serve {
            listen,
            url,
            redis,
            redis_prefix,
            pool,
            cache_ttl,
            no_outbox,
            relay,
            nats,
            stream,
            search_index,
            search_consumer,
        } => {
            if relay {
                let relay =
                    outbox::Relay::connect(db::pool(&url, 2)?, &nats, relay_config(&stream))
                        .await?;
                tracing::info!(%nats, stream = %stream.stream, "outbox relay running in-process");
                spawn_relay_log(relay.stats.clone());
                tokio::spawn(async move { relay.run().await });
            }
            let db = db::pool(&url, pool)?;
            let redis = peakgate_shop::cache::redis_manager(redis.as_str())
                .await
                .context("connect to Redis")?;
            let cfg = service::ServiceConfig {
                redis_prefix,
                cache_ttl: Duration::from_secs(cache_ttl.max(1)),
                outbox: !no_outbox,
                ..Default::default()
            };
            let mut shop = service::Shop::new(db, redis, cfg);
            if let Some(dir) = search_index {
                let durable = search_consumer.unwrap_or_else(|| sync::default_durable(&dir));
                let (index, stats) = start_search(&dir, &url, &nats, &stream, durable).await?;
                shop = shop.with_search(index, stats);
            }
            let shop = Arc::new(shop);
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("listen on {listen}"))?;
            tracing::info!(addr = %listener.local_addr()?, "shop service listening");
            axum::serve(listener, service::router(shop))
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await?;
        }
        Cmd::Reindex {
            url,
            index,
            nats,
            stream,
        } => {
            let cfg = index_sync_config(&stream, String::new());
            let dir = index;
            let index = Arc::new(SearchIndex::open(&dir)?);
            let js_stream = sync::open_stream(&nats, &cfg).await?;
            let pool = db::pool(&url, 2)?;
            let report = rebuild::rebuild(index, &pool, &js_stream, true).await?;
            pool.disconnect().await?;
            println!(
                "indexed {} products into {} in {:.1} s; the index continues stream {} after \
                 sequence {}",
                report.documents,
                dir.display(),
                report.took.as_secs_f64(),
                report.position.stream,
                report.position.stream_seq
            );
        }
        Cmd::Relay {
            url,
            nats,
            stream,
            batch,
            idle_ms,
        } => {
            let cfg = outbox::RelayConfig {
                batch: batch.max(1),
                idle: Duration::from_millis(idle_ms),
                ..relay_config(&stream)
            };
            let relay = outbox::Relay::connect(db::pool(&url, 2)?, &nats, cfg).await?;
            tracing::info!(%nats, stream = %stream.stream, "outbox relay running");
            spawn_relay_log(relay.stats.clone());
            tokio::select! {
                r = relay.run() => r?,
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Cmd::Backoffice {
            nats,
            db,
            stream,
            durable,
            ack_wait,
            metrics_listen,
        } => {
            let pool = backoffice::prepare_db(&db).await?;
            let cfg = backoffice::BackofficeConfig {
                stream: stream.stream.clone(),
                subject_prefix: stream.subject_prefix.clone(),
                durable,
                ack_wait: Duration::from_secs(ack_wait.max(1)),
                duplicate_window: Duration::from_secs(stream.duplicate_window.max(1)),
                ..Default::default()
            };
            let stats = Arc::new(backoffice::BackofficeStats::default());
            let consumer = backoffice::Backoffice::connect(pool, &nats, cfg, stats.clone()).await?;
            if let Some(addr) = metrics_listen {
                let listener = tokio::net::TcpListener::bind(&addr)
                    .await
                    .with_context(|| format!("listen on {addr}"))?;
                tracing::info!(addr = %listener.local_addr()?, "back-office metrics on /metrics");
                let app = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let stats = stats.clone();
                        async move { stats.render() }
                    }),
                );
                tokio::spawn(async move { axum::serve(listener, app).await });
            } else {
                spawn_backoffice_log(stats);
            }
            tracing::info!(%nats, "back-office consumer running");
            tokio::select! {
                r = consumer.run() => r?,
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Cmd::Load {
            scenario,
            duration: seconds,
            users: concurrency,
            flash_at,
            url,
            members,
            products,
            flash_sku,
            flash_stock,
            proxy_metrics,
        } => {
            let Some(scenario) = load::Scenario::parse(&scenario) else {
                anyhow::bail!(
                    "scenario {scenario:?}: browse, search, checkout, flash-sale or mixed"
                )
            };
            let report = load::run(&load::LoadPlan {
                scenario,
                flash_at_s: flash_at,
                base: url,
                seconds,
                concurrency,
                members,
                products,
                flash_sku,
                flash_stock,
                progress: true,
                proxy_metrics,
            })
            .await?;
            print!("{}", report.render());
            anyhow::ensure!(report.oversell_ok(), "oversell check failed");
            anyhow::ensure!(report.no_sql_ok(), "the search-only run issued SQL");
        }
        Cmd::ProxyConfig {
            topology,
            mysql,
            admin,
            database,
        } => {
            let text = std::fs::read_to_string(&topology)
                .with_context(|| format!("read {}", topology.display()))?;
            let out = proxy_config::merge(
                &text,
                &proxy_config::Overrides {
                    database,
                    mysql,
                    admin,
                },
            )?;
            print!("{out}");
        }
    }
    Ok(())
}

fn relay_config(s: &StreamArgs) -> outbox::RelayConfig {
    outbox::RelayConfig {
        stream: s.stream.clone(),
        subject_prefix: s.subject_prefix.clone(),
        duplicate_window: Duration::from_secs(s.duplicate_window.max(1)),
        ..Default::default()
    }
}

fn index_sync_config(s: &StreamArgs, durable: String) -> sync::IndexSyncConfig {
    sync::IndexSyncConfig {
        stream: s.stream.clone(),
        subject_prefix: s.subject_prefix.clone(),
        durable,
        duplicate_window: Duration::from_secs(s.duplicate_window.max(1)),
        ..Default::default()
    }
}

/// Opens the search index in `dir`, builds it from the database if it cannot resume the
/// stream (empty, or its stream is gone), and runs its consumer in the background.
async fn start_search(
    dir: &std::path::Path,
    url: &str,
    nats: &str,
    stream: &StreamArgs,
    durable: String,
) -> anyhow::Result<(Arc<SearchIndex>, Arc<sync::SearchStats>)> {
    let index = Arc::new(SearchIndex::open(dir)?);
    let cfg = index_sync_config(stream, durable);
    let js_stream = sync::open_stream(nats, &cfg).await?;
    let info = js_stream.get_info().await?;
    if let Some(why) = sync::rebuild_reason(index.position()?.as_ref(), &info) {
        tracing::info!(dir = %dir.display(), %why, "building the search index from the database");
        let pool = db::pool(url, 2)?;
        let report = rebuild::rebuild(index.clone(), &pool, &js_stream, false).await?;
        pool.disconnect().await?;
        tracing::info!(
            documents = report.documents,
            took_ms = report.took.as_millis() as u64,
            "search index built"
        );
    }
    let stats = Arc::new(sync::SearchStats::default());
    let durable = cfg.durable.clone();
    let consumer = sync::IndexSync::connect(index.clone(), nats, cfg, stats.clone()).await?;
    tracing::info!(
        dir = %dir.display(),
        %durable,
        documents = index.num_docs(),
        position = stats.position.load(std::sync::atomic::Ordering::Relaxed),
        "search index consumer running"
    );
    tokio::spawn(async move {
        loop {
            if let Err(e) = consumer.run().await {
                tracing::warn!(error = %format!("{e:#}"), "search index consumer stopped; restarting");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Ok((index, stats))
}

/// Logs the relay's counters every 10 s while they move.
fn spawn_relay_log(stats: Arc<outbox::RelayStats>) {
    use std::sync::atomic::Ordering::Relaxed;
    tokio::spawn(async move {
        let mut last = u64::MAX;
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let published = stats.published.load(Relaxed);
            if published != last {
                tracing::info!(
                    published,
                    duplicates = stats.duplicates.load(Relaxed),
                    marked = stats.marked.load(Relaxed),
                    errors = stats.errors.load(Relaxed),
                    oldest_unpublished_ms = stats.oldest_unpublished_ms.load(Relaxed),
                    "outbox relay"
                );
                last = published;
            }
        }
    });
}

/// Logs the back-office counters and the last pipeline lag every 10 s while they move.
fn spawn_backoffice_log(stats: Arc<backoffice::BackofficeStats>) {
    use std::sync::atomic::Ordering::Relaxed;
    tokio::spawn(async move {
        let mut last = u64::MAX;
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let applied = stats.applied.load(Relaxed);
            if applied != last {
                tracing::info!(
                    applied,
                    duplicates = stats.duplicates.load(Relaxed),
                    invalid = stats.invalid.load(Relaxed),
                    errors = stats.errors.load(Relaxed),
                    last_lag_ms = stats.lag.last_ms.load(Relaxed),
                    "back office"
                );
                last = applied;
            }
        }
    });
}
