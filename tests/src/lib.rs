//! Shared helpers for the integration tests: bring up the local topology (real mariadbd
//! primaries and GTID replicas, via `scripts/topology up`), start a proxy in-process on free
//! ports, and connect real clients to it.
//!
//! Tests reuse a running topology; `scripts/topology up` is idempotent and serialised by a lock,
//! so parallel test binaries are safe. Proxies are per test, on port 0.
//!
//! Tests share the servers, so every table or database a test makes has a unique name
//! (`unique_name`) and a `Scratch` guard that drops it even when the test fails.

pub mod cluster;
pub mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

/// Runs `scripts/topology up` once per test process and returns the config it wrote; with
/// `PEAKGATE_CONFIG` set, uses that running topology's config as is (another checkout's topology,
/// whose fixed ports this one could not take).
pub fn ensure_topology() -> anyhow::Result<PathBuf> {
    static UP: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    UP.get_or_init(|| {
        if let Ok(path) = std::env::var("PEAKGATE_CONFIG") {
            return Ok(PathBuf::from(path));
        }
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
    /// The running proxy's shared state (reload, topology).
    pub shared: std::sync::Arc<peakgate::server::Shared>,
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
        Self::start_text(&text).await
    }

    /// Starts a proxy with this config text (its listeners should be on port 0).
    pub async fn start_text(text: &str) -> anyhow::Result<Self> {
        let config = Config::parse(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let proxy = Proxy::bind(config.clone()).await?;
        let mysql = proxy.mysql_addr()?;
        let Some(admin) = proxy.admin_addr() else {
            bail!("admin listener missing")
        };
        let (stop, rx) = watch::channel(false);
        let shared = proxy.shared();
        tokio::spawn(proxy.serve(rx));
        Ok(Self {
            mysql,
            admin,
            config,
            shared,
            stop,
        })
    }

    /// A copy of the addresses (for use in blocking threads); it does not own the proxy.
    pub fn clone_addrs(&self) -> TestProxyAddrs {
        TestProxyAddrs {
            mysql: self.mysql,
            admin: self.admin,
        }
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
        Ok(self.admin_request("GET", path).await?.1)
    }

    /// One unlabelled counter or gauge from `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        Ok(metric_value(&self.admin_get("/metrics").await?, name))
    }

    /// A request to the admin listener; returns the status code and the body.
    pub async fn admin_request(&self, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
        self.admin_request_as(method, path, None).await
    }

    /// A request to the admin listener with `Authorization: Bearer <token>` when given.
    pub async fn admin_request_as(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        admin_http(self.admin, method, path, token, "").await
    }
}

/// One unlabelled counter or gauge in a `/metrics` text (0 when absent).
pub fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// One HTTP request with `body` to an admin listener (`Authorization: Bearer <token>` when
/// given); the status code and the response body.
pub async fn admin_http(
    admin: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(admin).await?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(out);
    Ok((code, body))
}

/// The proxy as a child process (`tests/src/bin/proxy_process.rs`, or any binary that prints
/// `mysql=ADDR admin=ADDR` once it listens): for tests that kill it and for benchmarks that must
/// not share a runtime with their load generator. Killed when dropped.
pub struct ProxyProcess {
    child: tokio::process::Child,
    pub mysql: String,
    pub admin: String,
}

impl ProxyProcess {
    /// Starts `binary CONFIG`, with `PEAKGATE_FAILPOINT` set to `failpoint` (or unset).
    pub async fn start(
        binary: impl AsRef<Path>,
        config: &Path,
        failpoint: Option<&str>,
    ) -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = tokio::process::Command::new(binary.as_ref());
        cmd.arg(config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        match failpoint {
            Some(f) => cmd.env("PEAKGATE_FAILPOINT", f),
            None => cmd.env_remove("PEAKGATE_FAILPOINT"),
        };
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {}", binary.as_ref().display()))?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(20),
            tokio::io::BufReader::new(out).read_line(&mut line),
        )
        .await??;
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_string)
                .ok_or_else(|| anyhow::anyhow!("proxy process said {line:?}"))
        };
        Ok(Self {
            mysql: field("mysql=")?,
            admin: field("admin=")?,
            child,
        })
    }

    /// mysql_async options for shop/shop in database `db`.
    pub fn opts(&self, db: &str) -> anyhow::Result<mysql_async::Opts> {
        Ok(mysql_async::Opts::from_url(&format!(
            "mysql://shop:shop@{}/{db}",
            self.mysql
        ))?)
    }

    /// One unlabelled counter or gauge from the process's `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let admin = self.admin.parse()?;
        let (_, text) = admin_http(admin, "GET", "/metrics", None, "").await?;
        Ok(metric_value(&text, name))
    }

    /// The process id (for CPU accounting), while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// `kill -9`.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }
}

/// A TCP forwarder to `127.0.0.1:<port>` that, while `stall` is set, holds new connections open
/// without passing them on (the server never greets): a connect through it times out exactly as
/// it does when the server or its host is too busy to answer in time. `stalled` counts them.
pub struct Forwarder {
    pub addr: SocketAddr,
    pub stall: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub stalled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Forwarder {
    pub async fn start(port: u16, stall_from_start: bool) -> anyhow::Result<Self> {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use tokio::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stall = Arc::new(AtomicBool::new(stall_from_start));
        let stalled = Arc::new(AtomicUsize::new(0));
        let (st, sd) = (stall.clone(), stalled.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut client, _)) = listener.accept().await {
                if st.load(Ordering::SeqCst) {
                    sd.fetch_add(1, Ordering::SeqCst);
                    held.push(client);
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            stall,
            stalled,
        })
    }
}

/// The addresses of a running `TestProxy`.
#[derive(Debug, Clone, Copy)]
pub struct TestProxyAddrs {
    pub mysql: SocketAddr,
    pub admin: SocketAddr,
}

/// Waits until the s0 replicas (serving and reporting) have applied everything on the s0 primary:
/// after a write made directly on the primary, or in another session, before reading it through
/// the proxy (read-your-writes holds within one session only).
pub async fn sync_replicas() -> anyhow::Result<()> {
    use mysql_async::prelude::Queryable;
    let mut p = direct(S0_PRIMARY, None).await?;
    let pos: String = p
        .query_first("SELECT @@gtid_binlog_pos")
        .await?
        .unwrap_or_default();
    p.disconnect().await?;
    for port in [S0_REPLICA, S0_REPORTING] {
        let mut r = direct(port, None).await?;
        let got: Option<i64> = r
            .query_first(format!("SELECT MASTER_GTID_WAIT('{pos}', 30)"))
            .await?;
        r.disconnect().await?;
        if got != Some(0) {
            bail!("replica {port} did not reach {pos} within 30 s");
        }
    }
    Ok(())
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

/// The topology's hot instance (`[hotspot] instance`).
pub const HOT_PRIMARY: u16 = 3331;

/// Points the topology config's `[hotspot]` at `shop.<table>` (a test's own), with `extra` lines
/// added to the section.
pub fn use_hot_table(cfg: &mut String, table: &str, extra: &str) {
    assert!(cfg.contains("table = \"shop.sku_stock\""), "{cfg}");
    *cfg = cfg.replace(
        "table = \"shop.sku_stock\"",
        &format!("table = \"shop.{table}\"\n{extra}"),
    );
}

/// A stock table of the test's own (`shop.<prefix>_<unique>`, dropped when the guards go) made
/// through a proxy whose hot table it is (`extra`: more `[hotspot]` keys; `edit`: more config).
pub async fn proxy_with_stock_table(
    prefix: &str,
    extra: &str,
    edit: impl FnOnce(&mut String),
) -> anyhow::Result<(String, [Scratch; 2], TestProxy, mysql_async::Conn)> {
    let t = unique_name(prefix);
    let guards = [Scratch::table("shop", &t), Scratch::hot_table("shop", &t)];
    let proxy = TestProxy::start_with(|cfg| {
        use_hot_table(cfg, &t, extra);
        edit(cfg);
    })
    .await?;
    let mut c = proxy.conn(Some("shop")).await?;
    mysql_async::prelude::Queryable::query_drop(
        &mut c,
        format!("CREATE TABLE {t} (sku_id BIGINT PRIMARY KEY, stock INT NOT NULL)"),
    )
    .await?;
    Ok((t, guards, proxy, c))
}

/// A proxy for a flash sale on hot table `shop.<table>`, with `[hotspot] queue = { <queue> }` and
/// room for 8,000 clients (the topology allows 4,096).
pub async fn sale_proxy(table: &str, queue: &str) -> anyhow::Result<TestProxy> {
    TestProxy::start_with(|cfg| {
        use_hot_table(cfg, table, &format!("queue = {{ {queue} }}"));
        assert!(cfg.contains("max_client_connections = 4096"), "{cfg}");
        *cfg = cfg.replace(
            "max_client_connections = 4096",
            "max_client_connections = 8000",
        );
    })
    .await
}

/// The topology's shard map moved to database `db`: every `[[tables]]` name and binding of
/// `shop.` becomes `db.` (tests keep their sharded tables apart from the shop's).
pub fn map_to_db(cfg: &str, db: &str) -> String {
    cfg.replace("name = \"shop.", &format!("name = \"{db}."))
        .replace("binding = \"shop.", &format!("binding = \"{db}."))
}

/// A `/proc/self/status` field in KiB (`VmHWM:` is the peak RSS), 0 when unreadable.
pub fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The s0 primary's port in the local topology.
pub const S0_PRIMARY: u16 = 3311;
/// The topology's replica of s0.
pub const S0_REPLICA: u16 = 3312;
/// The topology's reporting replica of s0.
pub const S0_REPORTING: u16 = 3313;
/// The s1 primary's port in the local topology.
pub const S1_PRIMARY: u16 = 3321;

/// Inserts members 1..=20 (`members (member_id, name, tier)` of the session's database, sharded
/// by member_id over s0 and s1) through the proxy connection `p`; returns the lowest member on
/// s0 and on s1, read directly on the primaries.
pub async fn members_on_both_shards(
    p: &mut mysql_async::Conn,
    db: &str,
) -> anyhow::Result<(i64, i64)> {
    use mysql_async::prelude::Queryable;
    let vals: Vec<String> = (1..=20).map(|i| format!("({i}, 'm{i}', 0)")).collect();
    p.query_drop(format!(
        "INSERT INTO members (member_id, name, tier) VALUES {}",
        vals.join(", ")
    ))
    .await?;
    let mut on = Vec::new();
    for port in [S0_PRIMARY, S1_PRIMARY] {
        let mut d = direct(port, Some(db)).await?;
        let first: Option<i64> = d.query_first("SELECT MIN(member_id) FROM members").await?;
        d.disconnect().await?;
        on.push(first.ok_or_else(|| anyhow::anyhow!("no member on {port}"))?);
    }
    Ok((on[0], on[1]))
}

/// Takes `[backend] sockets` out of a config text, so the proxy reaches every instance over TCP.
/// The topology's config names every instance's unix socket; a test that moves an instance to
/// another address (a forwarder, a dead port) must drop them, as the config refuses a socket for
/// an address that is no instance.
pub fn tcp_only(cfg: &mut String) {
    *cfg = cfg
        .lines()
        .filter(|l| !l.trim_start().starts_with("sockets ="))
        .map(|l| format!("{l}\n"))
        .collect();
}

/// A name no other test (in this or another process) uses: `prefix`, the process id and a counter.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a cleanup statement as root on an instance when dropped, so scratch tables and databases
/// go away even when the test fails half-way.
pub struct Scratch {
    port: u16,
    drop_sql: String,
}

impl Scratch {
    /// Drops table `db`.`table` on the s0 primary at the end.
    pub fn table(db: &str, table: &str) -> Self {
        Self {
            port: S0_PRIMARY,
            drop_sql: format!("DROP TABLE IF EXISTS `{db}`.`{table}`"),
        }
    }

    /// Drops table `db`.`table` on the hot instance at the end (a hot table lives there too).
    pub fn hot_table(db: &str, table: &str) -> Self {
        Self {
            port: HOT_PRIMARY,
            drop_sql: format!("DROP TABLE IF EXISTS `{db}`.`{table}`"),
        }
    }

    /// Drops database `db` on the s0 primary at the end.
    pub fn database(db: &str) -> Self {
        Self {
            port: S0_PRIMARY,
            drop_sql: format!("DROP DATABASE IF EXISTS `{db}`"),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Synchronous on purpose: Drop cannot await, and the `mysql` client is always there.
        let out = Command::new("mysql")
            .args([
                "--no-defaults",
                "-h127.0.0.1",
                &format!("-P{}", self.port),
                "-uroot",
                "-e",
            ])
            .arg(&self.drop_sql)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "cleanup `{}` failed: {}",
                self.drop_sql,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("cleanup `{}` failed: {e}", self.drop_sql),
        }
    }
}

/// Drops database `db` on both shard primaries and the hot instance when dropped: with a shard map
/// the proxy creates a database on each of them.
pub struct ShardedScratch(pub String);

impl Drop for ShardedScratch {
    fn drop(&mut self) {
        for port in [S0_PRIMARY, S1_PRIMARY, HOT_PRIMARY] {
            drop(Scratch {
                port,
                drop_sql: format!("DROP DATABASE IF EXISTS `{}`", self.0),
            });
        }
    }
}

/// What a command-line client run printed and how it ended.
#[derive(Debug)]
pub struct CliOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Fails with both streams shown unless the command exited 0.
    pub fn ok(self) -> anyhow::Result<Self> {
        if self.code != Some(0) {
            bail!(
                "exit code {:?}\nstdout:\n{}\nstderr:\n{}",
                self.code,
                self.stdout,
                self.stderr
            );
        }
        Ok(self)
    }

    /// The stdout lines (tab-separated columns in `--batch` mode).
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// Runs a command to its end with `stdin` fed in (and closed), capturing both output streams.
/// The child is killed if the test future is dropped.
pub async fn run_command(
    mut cmd: tokio::process::Command,
    stdin: &[u8],
) -> anyhow::Result<CliOutput> {
    use tokio::io::AsyncWriteExt;
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("spawn")?;
    let mut input = child.stdin.take().context("stdin")?;
    let data = stdin.to_vec();
    let writer = tokio::spawn(async move {
        let r = input.write_all(&data).await;
        drop(input);
        r
    });
    let out = child.wait_with_output().await?;
    writer.await??;
    Ok(CliOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// The `mysql` command-line client in batch mode against `host:port` with `args` appended.
pub fn mysql_cli(
    port: u16,
    user: &str,
    password: Option<&str>,
    args: &[&str],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("mysql");
    // --no-defaults first: no option file (~/.my.cnf, /etc/mysql) leaks into the test.
    cmd.arg("--no-defaults")
        .arg("-h127.0.0.1")
        .arg(format!("-P{port}"))
        .arg(format!("-u{user}"))
        .arg("--batch")
        .env_remove("MYSQL_PWD");
    if let Some(p) = password {
        cmd.arg(format!("-p{p}"));
    }
    cmd.args(args);
    cmd
}

impl TestProxy {
    /// The `mysql` command-line client logged in through this proxy as shop/shop.
    pub fn cli(&self, args: &[&str]) -> tokio::process::Command {
        mysql_cli(self.mysql.port(), "shop", Some("shop"), args)
    }

    /// `/status` as JSON.
    pub async fn status(&self) -> anyhow::Result<serde_json::Value> {
        let body = self.admin_get("/status").await?;
        serde_json::from_str(&body).with_context(|| format!("/status is not JSON: {body}"))
    }

    /// Backend connections open now, per pool: `(instance, variant, connections, in_use)`.
    pub async fn pools(&self) -> anyhow::Result<Vec<(String, u64, u64, u64)>> {
        let st = self.status().await?;
        let pools = st["pools"].as_array().context("/status has no pools")?;
        pools
            .iter()
            .map(|p| {
                Ok((
                    p["instance"].as_str().context("instance")?.to_string(),
                    p["variant"].as_u64().context("variant")?,
                    p["connections"].as_u64().context("connections")?,
                    p["in_use"].as_u64().context("in_use")?,
                ))
            })
            .collect()
    }

    /// Waits (up to `limit`) until no pooled backend connection is in use, e.g. after clients
    /// went away and the proxy finished cleaning up after them.
    pub async fn wait_pools_idle(&self, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let pools = self.pools().await?;
            if pools.iter().all(|p| p.3 == 0) {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!("backend connections still in use after {limit:?}: {pools:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Checks the proxy still serves an ordinary client: log in, one query, log out.
    pub async fn assert_serves(&self) -> anyhow::Result<()> {
        use mysql_async::prelude::Queryable;
        let mut c = self.conn(Some("shop")).await.context("a new client")?;
        let v: Option<(i64, String)> = c.query_first("SELECT 1 + 1, DATABASE()").await?;
        anyhow::ensure!(v == Some((2, "shop".into())), "unexpected answer {v:?}");
        c.disconnect().await?;
        Ok(())
    }
}
