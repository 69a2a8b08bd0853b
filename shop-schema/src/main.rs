//! `peakgate-shop`: migrate, seed, serve, load, proxy-config. See the crate's README.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use peakgate_shop::{db, load, proxy_config, schema, seed, service};

const DEFAULT_URL: &str = "mysql://shop:shop@127.0.0.1:6033/shop";

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
    },
    /// Drive the service with a workload and check the flash sale for oversell.
    Load {
        /// browse | checkout | flash-sale | mixed (`peak` = mixed).
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
        } => {
            let db = db::pool(&url, pool)?;
            let client = redis::Client::open(redis.as_str())?;
            let redis = client
                .get_connection_manager()
                .await
                .context("connect to Redis")?;
            let cfg = service::ServiceConfig {
                redis_prefix,
                cache_ttl: Duration::from_secs(cache_ttl.max(1)),
                outbox: !no_outbox,
                ..Default::default()
            };
            let shop = Arc::new(service::Shop::new(db, redis, cfg));
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
        } => {
            let Some(scenario) = load::Scenario::parse(&scenario) else {
                anyhow::bail!("scenario {scenario:?}: browse, checkout, flash-sale or mixed")
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
            })
            .await?;
            print!("{}", report.render());
            anyhow::ensure!(report.oversell_ok(), "oversell check failed");
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
