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
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration file and print the resolved settings; exits 1 on errors.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
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
            return Ok(());
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
    if let Some(n) = cli.threads {
        rt.worker_threads(n);
    }
    rt.build()?.block_on(async move {
        let proxy = Proxy::bind(cfg).await?;
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = tx.send(true);
        });
        proxy.serve(rx).await
    })
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
