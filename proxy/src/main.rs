//! The `peakgate` binary: parses flags, loads the config, runs the proxy until SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use peakgate::{Config, Proxy};
use tokio::sync::watch;

/// PeakGate: a MySQL wire-protocol proxy for peak-traffic e-commerce.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML), e.g. target/topology/peakgate.toml written by `scripts/topology up`.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax); RUST_LOG overrides it.
    #[arg(long, default_value = "info")]
    log: String,
    /// Tokio worker threads (default: half the cores, at least one). Most of a proxy's work is
    /// the kernel's (socket sends and receives); fewer, busier threads sleep and wake less, and
    /// leave cores to the database and the kernel on a shared host (docs/benchmarks.md).
    #[arg(long)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration file and print the resolved settings and shard map; exits 1 with
    /// every error.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Print the shard a key of a table lands on under FILE's shard map, and how it was derived.
    /// The first line is the shard name alone ("*" for every shard).
    ///
    /// Example: `peakgate shard-of peakgate.toml shop.orders 42` (by shard key member_id), or
    /// `peakgate shard-of peakgate.toml shop.orders 2190231552131073 --column id` (by generated id).
    ShardOf {
        /// The configuration file.
        file: PathBuf,
        /// The table, `schema.table` (or `table` when only one rule has that name).
        table: String,
        /// The key: read as an integer when it is one, otherwise as a string.
        key: String,
        /// The column the key belongs to; default the table's shard key (binding key for a binding table).
        #[arg(long)]
        column: Option<String>,
    },
    /// Print the `password_sha1` value for a password (what `SELECT PASSWORD('...')` prints).
    HashPassword {
        /// The password to hash.
        password: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::CheckConfig { file }) => {
            let cfg = Config::load(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            println!("{cfg:#?}");
            println!();
            print!("{}", cfg.shard_map());
            return Ok(());
        }
        Some(Command::ShardOf {
            file,
            table,
            key,
            column,
        }) => {
            let cfg = Config::load(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            return shard_of(cfg.shard_map(), table, key, column.as_deref());
        }
        Some(Command::HashPassword { password }) => {
            let h = peakgate::protocol::auth::native_hash(password.as_bytes());
            println!("{}", peakgate::protocol::auth::format_native_hash(&h));
            return Ok(());
        }
        None => {}
    }
    let path = cli
        .config
        .clone()
        .context("--config FILE is required (see --help)")?;
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| cli.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .init();
    let cfg = Config::load(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    rt.worker_threads(cli.threads.unwrap_or_else(default_threads).max(1));
    rt.build()?.block_on(async move {
        let proxy = Proxy::bind(cfg).await?;
        let shared = proxy.shared();
        shared.set_config_path(path.clone());
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                match shared.reload() {
                    Ok(_) => tracing::info!("SIGHUP: shard map reloaded"),
                    Err(e) => tracing::warn!(error = %e, "SIGHUP: reload refused; the old shard map stays"),
                }
            }
        });
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = tx.send(true);
        });
        proxy.serve(rx).await
    })
}

/// Half the cores the process may run on, at least one.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// `peakgate shard-of`: prints the shard of `key` in `table`, then how it was derived.
fn shard_of(
    map: &peakgate_router::ShardMap,
    table: &str,
    key: &str,
    column: Option<&str>,
) -> anyhow::Result<()> {
    let (schema, name) = match table.split_once('.') {
        Some((schema, name)) => (Some(schema), name),
        None => (None, table),
    };
    let rule = match map.table(schema, name) {
        Some(rule) => rule,
        None if schema.is_none() => {
            let mut same = map
                .tables()
                .iter()
                .filter(|t| t.name().eq_ignore_ascii_case(name));
            match (same.next(), same.next()) {
                (Some(rule), None) => rule,
                (Some(_), Some(_)) => anyhow::bail!("\"{table}\" is ambiguous: name its schema"),
                (None, _) => {
                    anyhow::bail!("no [[tables]] rule for \"{table}\": it is on the default shard")
                }
            }
        }
        None => anyhow::bail!("no [[tables]] rule for \"{table}\": it is on the default shard"),
    };
    let value = if let Ok(v) = key.parse::<i64>() {
        peakgate_router::KeyValue::Int(v)
    } else if let Ok(v) = key.parse::<u64>() {
        peakgate_router::KeyValue::UInt(v)
    } else {
        peakgate_router::KeyValue::Bytes(key.as_bytes())
    };
    let lookup = map
        .explain(rule, column, value)
        .map_err(|e| anyhow::anyhow!("{rule} key {key:?}: {e}"))?;
    println!("{}", lookup.shard.map_or("*", |s| map.shard_name(s)));
    println!("{}", lookup.how);
    Ok(())
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
