//! Shared helpers for the integration tests: bring up the local topology (real mariadbd
//! primaries and GTID replicas, via `scripts/topology up`), start a proxy in-process on free
//! ports, and connect real clients to it.
//!
//! Tests reuse a running topology; `scripts/topology up` is idempotent and serialised by a lock,
//! so parallel test binaries are safe. Proxies are per test, on port 0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, bail};
use peakgate::{Config, Proxy};
use tokio::sync::watch;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Runs `scripts/topology up` once per test process and returns the config it wrote.
pub fn ensure_topology() -> anyhow::Result<PathBuf> {
    static UP: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    UP.get_or_init(|| {
        let root = repo_root();
        let out = Command::new(root.join("scripts/topology"))
            .args(["up", "--quiet"])
            .current_dir(&root)
            .output()
            .map_err(|e| format!("cannot run scripts/topology: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/topology up failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(root.join("target/topology/peakgate.toml"))
    })
    .clone()
    .map_err(|e| anyhow::anyhow!(e))
}

/// A proxy running in this process on free ports; stops when dropped.
pub struct TestProxy {
    pub mysql: SocketAddr,
    pub admin: SocketAddr,
    pub config: Config,
    stop: watch::Sender<bool>,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl TestProxy {
    /// Starts a proxy with the topology's config, listeners moved to free ports.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Starts a proxy after `edit` has changed the topology's config text.
    pub async fn start_with(edit: impl FnOnce(&mut String)) -> anyhow::Result<Self> {
        let path = ensure_topology()?;
        let mut text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        text = text
            .replace("mysql = \"127.0.0.1:6033\"", "mysql = \"127.0.0.1:0\"")
            .replace("admin = \"127.0.0.1:6080\"", "admin = \"127.0.0.1:0\"");
        edit(&mut text);
        let config = Config::parse(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let proxy = Proxy::bind(config.clone()).await?;
        let mysql = proxy.mysql_addr()?;
        let Some(admin) = proxy.admin_addr() else {
            bail!("admin listener missing")
        };
        let (stop, rx) = watch::channel(false);
        tokio::spawn(proxy.serve(rx));
        Ok(Self {
            mysql,
            admin,
            config,
            stop,
        })
    }

    /// mysql_async options for user shop/shop, optionally with a database.
    pub fn opts(&self, db: Option<&str>) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.mysql.ip().to_string())
            .tcp_port(self.mysql.port())
            .user(Some("shop"))
            .pass(Some("shop"))
            .db_name(db)
            .prefer_socket(false)
            .into()
    }

    /// A new connection as shop/shop.
    pub async fn conn(&self, db: Option<&str>) -> anyhow::Result<mysql_async::Conn> {
        Ok(mysql_async::Conn::new(self.opts(db)).await?)
    }

    /// GET a path on the admin listener; returns the body.
    pub async fn admin_get(&self, path: &str) -> anyhow::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.admin).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or(out))
    }
}

/// A direct connection to an instance of the topology as root (for setup and checks).
pub async fn direct(port: u16, db: Option<&str>) -> anyhow::Result<mysql_async::Conn> {
    ensure_topology()?;
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("root"))
        .db_name(db)
        .prefer_socket(false)
        .into();
    Ok(mysql_async::Conn::new(opts).await?)
}

/// The s0 primary's port in the local topology.
pub const S0_PRIMARY: u16 = 3311;
