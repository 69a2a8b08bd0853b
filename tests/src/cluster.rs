//! A private replicated cluster for tests that break servers on purpose (stop replication, kill -9,
//! SIGSTOP): one primary and its GTID replicas as real `mariadbd` processes on free ports, with
//! their own data directories under `target/test-clusters/`, copied from the template that
//! `scripts/topology up` makes. Everything is killed and removed when the `Cluster` drops.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mysql_async::prelude::*;

use crate::{ensure_topology, repo_root, unique_name};

/// The backend account's privileges, as `scripts/topology` grants them (no READ_ONLY ADMIN, so
/// the proxy can never write to a read-only replica).
const PEAKGATE_PRIVILEGES: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, \
    CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, \
    ALTER ROUTINE, EVENT, TRIGGER, REFERENCES, PROCESS, SLAVE MONITOR, BINLOG MONITOR, RELOAD, \
    CONNECTION ADMIN";

/// One mariadbd of a cluster.
pub struct Node {
    pub port: u16,
    pub role: &'static str,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn cnf(&self) -> PathBuf {
        self.dir.join("my.cnf")
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = mariadbd()?;
        let child = Command::new(bin)
            .arg(format!("--defaults-file={}", self.cnf().display()))
            .arg(format!("--user={}", whoami()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start mariadbd")?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the server hangs with its sockets open.
    pub fn stop_signal(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    /// SIGCONT after `stop_signal`.
    pub fn cont_signal(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, sig: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("not running")?;
        let st = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?;
        if !st.success() {
            bail!("kill {sig} {pid} failed");
        }
        Ok(())
    }

    /// Waits until this node's own server answers. A free port can be taken between choosing it
    /// and the server binding it (by another cluster's server, which would then answer here):
    /// a server that exits or a port answered by another server id moves this node to a new port.
    async fn ready(&mut self) -> anyhow::Result<()> {
        for _ in 0..3 {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mine = loop {
                if let Some(c) = self.child.as_mut()
                    && c.try_wait()?.is_some()
                {
                    self.child = None;
                    break false;
                }
                if let Ok(mut c) = root_conn(self.port).await {
                    let id: Option<u32> = c.query_first("SELECT @@server_id").await?;
                    let _ = c.disconnect().await;
                    break id == Some(u32::from(self.port));
                }
                if Instant::now() > deadline {
                    bail!(
                        "mariadbd on port {} did not accept connections within 60 s",
                        self.port
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            if mine {
                return Ok(());
            }
            self.kill9();
            self.port = free_port()?;
            write_cnf(self, self.role != "primary")?;
            self.spawn()?;
        }
        bail!("mariadbd for {} found no free port in 3 tries", self.role)
    }

    /// Starts the server again after `kill9` (its data directory is kept, replication resumes).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        wait_ready(self.port).await
    }

    /// A root connection.
    pub async fn root(&self) -> anyhow::Result<mysql_async::Conn> {
        root_conn(self.port).await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A stopped process cannot die of SIGKILL until continued on some kernels' views; be sure.
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
        self.kill9();
    }
}

/// A primary with replicas and reporting replicas.
pub struct Cluster {
    pub primary: Node,
    pub replicas: Vec<Node>,
    pub reporting: Vec<Node>,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self
            .replicas
            .iter_mut()
            .chain(self.reporting.iter_mut())
            .chain(std::iter::once(&mut self.primary))
        {
            n.kill9();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    /// Starts a primary, `replicas` replicas and `reporting` reporting replicas, all replicating.
    pub async fn start(replicas: usize, reporting: usize) -> anyhow::Result<Cluster> {
        ensure_topology()?;
        let template = repo_root().join("target/topology/.template/data");
        if !template.is_dir() {
            bail!(
                "no template datadir at target/topology/.template (scripts/topology up makes it)"
            );
        }
        let dir = repo_root()
            .join("target/test-clusters")
            .join(unique_name("cluster"));
        std::fs::create_dir_all(&dir)?;
        let make = |role: &'static str, i: usize| -> anyhow::Result<Node> {
            let port = free_port()?;
            let d = dir.join(format!("{role}{i}"));
            std::fs::create_dir_all(&d)?;
            let st = Command::new("cp")
                .args(["-a"])
                .arg(&template)
                .arg(d.join("data"))
                .status()?;
            if !st.success() {
                bail!("copy template datadir failed");
            }
            let node = Node {
                port,
                role,
                dir: d,
                child: None,
            };
            write_cnf(&node, role != "primary")?;
            Ok(node)
        };
        let mut primary = make("primary", 0)?;
        let mut reps = (0..replicas)
            .map(|i| make("replica", i))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut rpts = (0..reporting)
            .map(|i| make("reporting", i))
            .collect::<anyhow::Result<Vec<_>>>()?;
        primary.spawn()?;
        for n in reps.iter_mut().chain(rpts.iter_mut()) {
            n.spawn()?;
        }
        let mut cluster = Cluster {
            primary,
            replicas: reps,
            reporting: rpts,
            dir,
        };
        for n in std::iter::once(&mut cluster.primary)
            .chain(cluster.replicas.iter_mut())
            .chain(cluster.reporting.iter_mut())
        {
            n.ready().await?;
        }
        let mut p = cluster.primary.root().await?;
        p.query_drop(format!(
            "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl'; \
             GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'; \
             CREATE USER 'peakgate'@'127.0.0.1' IDENTIFIED BY 'peakgate'; \
             GRANT {PEAKGATE_PRIVILEGES} ON *.* TO 'peakgate'@'127.0.0.1'"
        ))
        .await?;
        let port = cluster.primary.port;
        for n in cluster.replicas.iter().chain(&cluster.reporting) {
            let mut c = n.root().await?;
            c.query_drop(format!(
                "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {port}, \
                 MASTER_USER = 'repl', MASTER_PASSWORD = 'repl', MASTER_USE_GTID = slave_pos, \
                 MASTER_CONNECT_RETRY = 1; START SLAVE"
            ))
            .await?;
        }
        cluster.sync().await?;
        Ok(cluster)
    }

    /// Waits until every running replica has applied everything the primary has written.
    pub async fn sync(&self) -> anyhow::Result<()> {
        let mut p = self.primary.root().await?;
        let pos: String = p
            .query_first("SELECT @@gtid_binlog_pos")
            .await?
            .unwrap_or_default();
        for n in self.replicas.iter().chain(&self.reporting) {
            if n.child.is_none() {
                continue;
            }
            let mut c = n.root().await?;
            let r: Option<i64> = c
                .query_first(format!("SELECT MASTER_GTID_WAIT('{pos}', 30)"))
                .await?;
            if r != Some(0) {
                bail!("replica {} did not reach {pos}", n.port);
            }
        }
        Ok(())
    }

    /// A proxy config for this cluster (listeners on port 0, user shop/shop); `routing` is added
    /// to the `[routing]` table.
    pub fn proxy_config(&self, routing: &str) -> String {
        let list = |v: &[Node]| {
            v.iter()
                .map(|n| format!("\"{}\"", n.addr()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            r#"[listen]
mysql = "127.0.0.1:0"
admin = "127.0.0.1:0"

[backend]
user = "peakgate"
password = "peakgate"
pool_size = 80
connect_timeout_ms = 500

[[users]]
name = "shop"
password_sha1 = "*4EF1FA2885332E606E8B51A52EA5B56134B2E575"

[[users]]
name = "report"
password_sha1 = "*4EF1FA2885332E606E8B51A52EA5B56134B2E575"

[routing]
default_shard = "c0"
{routing}

[[shards]]
name = "c0"
primary = "{}"
replicas = [{}]
reporting = [{}]
"#,
            self.primary.addr(),
            list(&self.replicas),
            list(&self.reporting)
        )
    }
}

fn write_cnf(n: &Node, replica: bool) -> anyhow::Result<()> {
    let sock = std::env::temp_dir().join(format!("pg-cluster-{}.sock", n.port));
    let d = &n.dir;
    let mut s = format!(
        "[mariadbd]\ndatadir={}\nport={}\nsocket={}\npid_file={}\nlog_error={}\n\
         bind_address=127.0.0.1\nskip_name_resolve\nserver_id={}\ngtid_domain_id={}\n\
         gtid_strict_mode=ON\nlog_bin=binlog\nrelay_log=relay-bin\nbinlog_format=ROW\n\
         log_slave_updates=ON\nsync_binlog=0\ncharacter_set_server=utf8mb4\n\
         collation_server=utf8mb4_general_ci\nmax_connections=1000\n\
         innodb_buffer_pool_size=32M\ninnodb_log_file_size=48M\n\
         innodb_flush_log_at_trx_commit=2\n",
        d.join("data").display(),
        n.port,
        sock.display(),
        d.join("mariadbd.pid").display(),
        d.join("mariadbd.log").display(),
        n.port,
        n.port,
    );
    if replica {
        s.push_str("read_only=ON\n");
    }
    std::fs::write(n.cnf(), s)?;
    Ok(())
}

fn mariadbd() -> anyhow::Result<PathBuf> {
    for p in [
        "/usr/sbin/mariadbd",
        "/usr/bin/mariadbd",
        "/usr/local/bin/mariadbd",
    ] {
        let p = PathBuf::from(p);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("mariadbd not found (install mariadb-server)")
}

fn whoami() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "root".into())
}

/// A port nobody listens on now and that this process has not handed out before (the kernel
/// may offer a just-released port again, so two nodes of one cluster could get the same one).
fn free_port() -> anyhow::Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
}

async fn root_conn(port: u16) -> anyhow::Result<mysql_async::Conn> {
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("root"))
        .prefer_socket(false)
        .into();
    Ok(mysql_async::Conn::new(opts).await?)
}

async fn wait_ready(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(c) = root_conn(port).await {
            let _ = c.disconnect().await;
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("mariadbd on port {port} did not accept connections within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
