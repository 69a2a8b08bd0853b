//! The running proxy: shared state, the MySQL listener's accept loop, the admin listener, shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use peakgate_router::Classifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tracing::{Instrument, info, info_span, warn};

use crate::backend::Pools;
use crate::backend::conn::Reply;
use crate::config::{Account, Config};
use crate::metrics::METRICS;
use crate::protocol::Framed;
use crate::protocol::response::encode_err;

/// Per (digest, schema hash): the tables a statement names.
type TablesCache = lru::LruCache<(u64, u64), Arc<Vec<String>>>;

/// One user's last writes, shared by the user's sessions (`read_your_writes_scope = "user"`):
/// per shard the newest GTID, and when the user last wrote.
#[derive(Debug, Default)]
pub struct UserWrites {
    gtids: std::sync::Mutex<Vec<Option<peakgate_router::plan::Gtid>>>,
    /// Milliseconds since the proxy started, + 1 (0: never wrote).
    last_write_ms: std::sync::atomic::AtomicU64,
}

impl UserWrites {
    pub fn note(&self, shard: usize, gtid: Option<peakgate_router::plan::Gtid>, started: Instant) {
        self.last_write_ms
            .store(started.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        if let Some(g) = gtid {
            let mut v = self
                .gtids
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if v.len() <= shard {
                v.resize(shard + 1, None);
            }
            // Sequence numbers only grow within a domain: keep the newest.
            if v[shard].is_none_or(|old| old.domain != g.domain || old.seq < g.seq) {
                v[shard] = Some(g);
            }
        }
    }

    pub fn gtid(&self, shard: usize) -> Option<peakgate_router::plan::Gtid> {
        self.gtids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(shard)
            .copied()
            .flatten()
    }

    pub fn since_last_write_ms(&self, started: Instant) -> Option<u64> {
        match self.last_write_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some((started.elapsed().as_millis() as u64 + 1).saturating_sub(at)),
        }
    }
}

/// What every session shares.
pub struct Shared {
    pub config: Config,
    pub accounts: Vec<Account>,
    pub pools: Pools,
    /// Every shard's instances with the live state the monitor keeps.
    pub topology: Arc<crate::backend::topology::Topology>,
    /// The read-routing policy from `[routing]`.
    pub read_policy: peakgate_router::plan::ReadPolicy,
    pub classifier: Classifier,
    pub server_version: String,
    pub started: Instant,
    /// TLS for clients, when `[tls]` is configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// `caching_sha2_password` fast-auth entries (SHA256(SHA256(password))) per user, filled by a
    /// successful full authentication, as MySQL's own cache is.
    pub sha2_cache: std::sync::Mutex<std::collections::HashMap<String, [u8; 32]>>,
    pipelines: std::sync::Mutex<
        std::collections::HashMap<(String, u32), Arc<crate::backend::pipeline::Pipeline>>,
    >,
    next_conn_id: AtomicU32,
    client_slots: Arc<Semaphore>,
    /// Per (digest, schema): whether the statement names a table of the shard map.
    map_touch: std::sync::Mutex<lru::LruCache<(u64, u64), bool>>,
    /// Peak-protection rules (`[[limits.rules]]`, changeable at run time).
    pub limits: Arc<crate::limits::Limits>,
    /// Per-digest statement statistics (`/status/digests`).
    pub digests: crate::digests::DigestStats,
    /// Per user, the last writes (only with `read_your_writes_scope = "user"`).
    user_writes: std::sync::Mutex<std::collections::HashMap<String, Arc<UserWrites>>>,
    /// Hot (flash-sale) SKUs, when `[hotspot]` is configured.
    pub hot: Option<peakgate_router::hotspot::HotRegistry>,
    /// The hot-row queues, when `[hotspot] queue` is enabled.
    pub hot_rows: Option<Arc<crate::hotrow::HotRows>>,
    /// The sale lane's runtime (`frontend::lane`), with the hot-row queue.
    pub sale_lane: Option<crate::frontend::lane::SaleLane>,
    /// SKU row moves and their per-SKU gates, when `[hotspot]` is configured.
    pub hot_moves: Option<Arc<crate::hotmove::HotMoves>>,
    /// The shard map in effect; `/reload` and SIGHUP swap it.
    map: arc_swap::ArcSwap<peakgate_router::ShardMap>,
    /// The file the config came from (for `/reload` and SIGHUP).
    config_path: std::sync::Mutex<Option<std::path::PathBuf>>,
    /// Per (digest, schema): the tables a statement names, for routing rules on tables.
    rule_tables: std::sync::Mutex<TablesCache>,
    /// The table list of statements when no rule looks at tables.
    pub no_tables: Arc<Vec<String>>,
    /// Ids for sharded tables' gene columns (`sharding.node_id` keeps proxies apart).
    ids: std::sync::Mutex<peakgate_router::IdGenerator>,
    /// XA transaction ids and the transactions live sessions own (`crate::xa`).
    pub xa: Arc<crate::xa::Coordinator>,
    /// The logged-in sessions by connection id, for clients' KILL.
    pub sessions: crate::frontend::kill::Sessions,
    /// Prepared statements the clients hold open (`proxy.max_prepared_stmt_count`).
    pub prepared_stmts: std::sync::atomic::AtomicUsize,
}

/// Client connection ids start here, far above the thread ids servers hand out, so that a KILL
/// of a backend thread's id (from the servers' process lists) sent through the proxy finds no
/// session (ERR 1094) instead of ending an unrelated client's.
const FIRST_CONN_ID: u32 = 1_000_000_001;

impl Shared {
    pub fn next_conn_id(&self) -> u32 {
        loop {
            let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// The shared connections for `addr` and capability variant `variant`.
    pub fn pipeline(&self, addr: &str, variant: u32) -> Arc<crate::backend::pipeline::Pipeline> {
        let mut map = self
            .pipelines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry((addr.to_string(), variant))
            .or_insert_with(|| {
                Arc::new(crate::backend::pipeline::Pipeline::new(
                    self.config.backend.shared_connections(),
                    std::time::Duration::from_millis(self.config.backend.pipeline_stall_ms),
                    self.pools.home(),
                ))
            })
            .clone()
    }

    /// Open shared (pipelined) connections per (instance, capability variant).
    pub fn pipeline_counts(&self) -> Vec<(String, u32, usize)> {
        let map = self
            .pipelines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut v: Vec<_> = map
            .iter()
            .map(|((a, var), p)| (a.clone(), *var, p.open()))
            .collect();
        v.sort();
        v
    }

    /// The user's shared read-your-writes state, when the scope is "user".
    pub fn user_writes(&self, user: &str) -> Option<Arc<UserWrites>> {
        if self.config.routing.read_your_writes_scope != crate::config::RywScope::User {
            return None;
        }
        Some(
            self.user_writes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(user.to_string())
                .or_default()
                .clone(),
        )
    }

    /// The shard map in effect now.
    pub fn shard_map(&self) -> Arc<peakgate_router::ShardMap> {
        self.map.load_full()
    }

    /// Remembers the config file, so `/reload` and SIGHUP can read it again.
    pub fn set_config_path(&self, path: std::path::PathBuf) {
        *self
            .config_path
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(path);
    }

    /// Reads the config file again and, if it is valid and its `[[shards]]` are unchanged, puts
    /// its shard map in effect for new statements (sessions and transactions stay; a transaction
    /// keeps its shard). Returns what is in effect now, or every error (the old map stays).
    pub fn reload(&self) -> Result<String, String> {
        let path = self
            .config_path
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| "the proxy was not started from a config file".to_string())?;
        let new = Config::load(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let same_shards = new.shards.len() == self.config.shards.len()
            && new.shards.iter().zip(&self.config.shards).all(|(a, b)| {
                a.name == b.name
                    && a.primary == b.primary
                    && a.replicas == b.replicas
                    && a.reporting == b.reporting
            });
        if !same_shards {
            return Err(format!(
                "{}: [[shards]] changed; reload applies shard-map changes ([sharding], [[tables]]) only, restart the proxy for new instances",
                path.display()
            ));
        }
        let map = new.shard_map_arc();
        let text = map.to_string();
        self.map.store(map);
        self.map_touch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        METRICS.map_reloads.inc();
        info!(path = %path.display(), "shard map reloaded");
        Ok(text)
    }

    pub fn cached_tables(&self, key: (u64, u64)) -> Option<Arc<Vec<String>>> {
        self.rule_tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned()
    }

    pub fn cache_tables(&self, key: (u64, u64), tables: Arc<Vec<String>>) {
        self.rule_tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .put(key, tables);
    }

    /// Whether statements of this digest in this schema name a mapped table, if known.
    pub fn touches_map(&self, key: (u64, u64)) -> Option<bool> {
        self.map_touch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .copied()
    }

    pub fn remember_touch(&self, key: (u64, u64), touches: bool) {
        self.map_touch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .put(key, touches);
    }

    /// A new id for a gene column, carrying `slot` (time-ordered, unique per node id).
    pub fn next_id(
        &self,
        slot: peakgate_router::ring::Slot,
    ) -> Result<u64, crate::errors::ClientError> {
        let mut g = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut now = crate::frontend::now_ms();
        for _ in 0..1000 {
            match g.next_id(now, slot) {
                Ok(id) => return Ok(id),
                // Every id of this gene in this millisecond is taken: take the next millisecond's.
                Err(peakgate_router::Error::SequenceExhausted { retry_at_ms }) => now = retry_at_ms,
                Err(e) => {
                    return Err(crate::errors::ClientError::new(
                        1105,
                        "HY000",
                        e.to_string(),
                    ));
                }
            }
        }
        Err(crate::errors::ClientError::new(
            1105,
            "HY000",
            "id generation stalled",
        ))
    }

    /// The default shard's primary.
    pub fn default_primary(&self) -> &str {
        self.config.default_primary()
    }
}

/// A bound, not yet serving proxy (bind first, so tests can use port 0 and read the address).
pub struct Proxy {
    shared: Arc<Shared>,
    mysql: TcpListener,
    admin: Option<TcpListener>,
}

impl Proxy {
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let pools = Pools::new(config.backend.clone());
        let server_version = match &config.proxy.server_version {
            Some(v) => v.clone(),
            None => discover_version(&pools, config.default_primary()).await,
        };
        let tls = match &config.tls {
            Some(t) => Some(
                crate::protocol::tls::acceptor(&t.cert, &t.key).map_err(|e| anyhow::anyhow!(e))?,
            ),
            None => None,
        };
        let mysql = listen(&config.listen.mysql)?;
        let admin = match &config.listen.admin {
            Some(a) => Some(TcpListener::bind(a).await?),
            None => None,
        };
        let map = arc_swap::ArcSwap::new(config.shard_map_arc());
        let limits = crate::limits::Limits::new(config.limits.rules.clone())
            .map_err(|e| anyhow::anyhow!("limits: {e}"))?;
        if let Some(file) = &config.limits.runtime_file
            && limits
                .load_runtime(std::path::Path::new(file))
                .map_err(|e| anyhow::anyhow!("limits.runtime_file: {e}"))?
        {
            info!(file, "limits rules loaded from the runtime file");
        }
        let xa = crate::xa::Coordinator::new(config.shard_map().node_id());
        let ids = peakgate_router::IdGenerator::new(config.shard_map().node_id())
            .map_err(|e| anyhow::anyhow!("sharding.node_id: {e}"))?;
        let hot = match &config.hotspot {
            Some(h) => Some(
                peakgate_router::hotspot::HotRegistry::new(h.clone()).map_err(|errs| {
                    anyhow::anyhow!(
                        "hotspot: {}",
                        errs.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                })?,
            ),
            None => None,
        };
        let sale_lane = match &config.hotspot {
            Some(h) if h.queue.enabled && h.lane_threads > 0 => Some(
                crate::frontend::lane::SaleLane::start(
                    h.lane_threads,
                    h.lane_linger_ms,
                    h.lane_nice,
                    tokio::runtime::Handle::current(),
                )
                .map_err(|e| anyhow::anyhow!("hotspot.lane_threads: {e}"))?,
            ),
            _ => None,
        };
        let hot_rows = config
            .hotspot
            .as_ref()
            .filter(|h| h.queue.enabled)
            .map(|h| {
                crate::hotrow::HotRows::new(
                    pools.pool(&h.instance, 0),
                    h.queue.clone(),
                    sale_lane
                        .as_ref()
                        .map(|l| l.handle(crate::frontend::lane::Lane::Sale).clone()),
                )
            });
        let hot_moves = hot.as_ref().map(|_| crate::hotmove::HotMoves::new());
        let shared = Arc::new(Shared {
            sessions: crate::frontend::kill::Sessions::default(),
            prepared_stmts: std::sync::atomic::AtomicUsize::new(0),
            hot_moves,
            user_writes: std::sync::Mutex::new(std::collections::HashMap::new()),
            hot,
            hot_rows,
            sale_lane,
            accounts: config.accounts(),
            topology: Arc::new(crate::backend::topology::Topology::from_config(&config)),
            read_policy: config.routing.read_policy(),
            client_slots: Arc::new(Semaphore::new(config.proxy.max_client_connections)),
            config,
            pools,
            classifier: Classifier::new(4096),
            server_version,
            started: Instant::now(),
            tls,
            pipelines: std::sync::Mutex::new(std::collections::HashMap::new()),
            sha2_cache: std::sync::Mutex::new(std::collections::HashMap::new()),
            next_conn_id: AtomicU32::new(FIRST_CONN_ID),
            map_touch: std::sync::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(4096).expect("4096 is not zero"),
            )),
            ids: std::sync::Mutex::new(ids),
            xa,
            map,
            limits: Arc::new(limits),
            digests: crate::digests::DigestStats::default(),
            rule_tables: std::sync::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(4096).expect("4096 is not zero"),
            )),
            config_path: std::sync::Mutex::new(None),
            no_tables: Arc::default(),
        });
        Ok(Self {
            shared,
            mysql,
            admin,
        })
    }

    pub fn mysql_addr(&self) -> std::io::Result<SocketAddr> {
        self.mysql.local_addr()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until `shutdown` turns true.
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let Self {
            shared,
            mysql,
            admin,
        } = self;
        info!(mysql = %mysql.local_addr()?, version = %shared.server_version, "peakgate listening");
        // Before any client is served: SKUs whose rows are on the hot instance go there.
        crate::hotmove::restore(&shared).await;
        if let Some(admin) = admin {
            let s = shared.clone();
            let rx = shutdown.clone();
            let series = crate::sampler::spawn(shutdown.clone());
            tokio::spawn(crate::admin::serve(admin, s, series, rx).instrument(info_span!("admin")));
        }
        crate::backend::monitor::spawn(&shared.topology, &shared.config, shutdown.clone());
        crate::xa::spawn(shared.clone(), shutdown.clone());
        if shared.hot.is_some() {
            let s = shared.clone();
            let mut rx = shutdown.clone();
            tokio::spawn(
                async move {
                    let started = Instant::now();
                    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                    loop {
                        tokio::select! {
                            _ = tick.tick() => {}
                            _ = rx.changed() => return,
                        }
                        let Some(hot) = s.hot.as_ref() else { return };
                        let events = hot.tick(started.elapsed().as_millis() as u64);
                        for e in &events {
                            info!(event = ?e, "hot SKU detection");
                        }
                        // Without auto_move a proposal is only logged (detection proposes it
                        // again after cool_down_ms). Moves run here, between ticks, never
                        // cancelled half-way.
                        if hot.settings().auto_move
                            && !events.is_empty()
                            && let Some(moves) = &s.hot_moves
                        {
                            moves.apply_detection(&s, events).await;
                        }
                    }
                }
                .instrument(info_span!("hotspot")),
            );
        }
        loop {
            tokio::select! {
                accepted = mysql.accept() => match accepted {
                    Ok((stream, peer)) => accept(&shared, stream, peer),
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                },
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        info!("shutting down");
                        return Ok(());
                    }
                }
            }
        }
    }
}

fn accept(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let permit = match shared.client_slots.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            METRICS.client_connections_refused.inc();
            METRICS.error(1040);
            tokio::spawn(async move {
                let mut f = Framed::new(stream);
                f.write_packet(
                    0,
                    &encode_err(
                        1040,
                        "08004",
                        "Too many connections: the proxy is at max_client_connections",
                    ),
                );
                let _ = f.flush().await;
            });
            return;
        }
    };
    let conn_id = shared.next_conn_id();
    let shared = shared.clone();
    let span = info_span!("client", conn_id, %peer, user = tracing::field::Empty);
    tokio::spawn(
        async move {
            METRICS.client_connections.inc();
            METRICS.client_connections_total.inc();
            let guard = crate::frontend::ClientGuard::new(permit);
            crate::frontend::serve_client(shared, stream, peer, conn_id, guard).await;
        }
        .instrument(span),
    );
}

/// Binds the MySQL listener with a deep accept backlog (tokio's default of 1024 overflows under
/// connection storms, leaving clients waiting for a greeting that never comes).
fn listen(addr: &str) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = addr.parse()?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket.listen(4096)?)
}

/// Asks the default primary for its version, announced to clients with "-PeakGate" appended.
async fn discover_version(pools: &Pools, addr: &str) -> String {
    let fallback = "5.5.5-10.11.0-MariaDB-PeakGate".to_string();
    let pool = pools.pool(addr, 0);
    let Ok(mut c) = pool.get().await else {
        warn!(
            instance = addr,
            "default primary unreachable at start; announcing a generic version"
        );
        return fallback;
    };
    match c.query("SELECT VERSION()").await {
        Ok(Reply::Rows { rows, .. }) => rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .map(|v| {
                let v = String::from_utf8_lossy(&v).into_owned();
                let v = if v.contains("MariaDB") && !v.starts_with("5.5.5-") {
                    format!("5.5.5-{v}")
                } else {
                    v
                };
                format!("{v}-PeakGate")
            })
            .unwrap_or(fallback),
        _ => fallback,
    }
}
