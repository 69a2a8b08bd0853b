//! The instances the proxy routes to, per shard, with the live state the monitor keeps for each
//! (eligibility, lag, GTID position, health, requests in flight). Sessions read it without locks:
//! atomics for what every statement reads, `ArcSwap` for what only the planner's read-your-writes
//! check and the status page read.

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use peakgate_router::plan::{Gtid, GtidPos, ReplicaView, Role};
use tokio::sync::Semaphore;

use crate::config::Config;

/// What the monitor last saw of an instance (for `/status`).
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// `up`, `lagging`, `down`, `replication_stopped`, `unknown` (not probed yet), `failed`
    /// (the data path saw it fail; the monitor decides again at its next probe).
    pub state: &'static str,
    /// Why it is not `up`, when it is not.
    pub detail: String,
    /// `Seconds_Behind_Master` as the server reports it (`None`: NULL or not a replica).
    pub seconds_behind: Option<u64>,
    /// Unix time of the last probe, in milliseconds.
    pub checked_unix_ms: u64,
}

/// One MariaDB server and its live state.
#[derive(Debug)]
pub struct Instance {
    pub addr: Arc<str>,
    pub shard: usize,
    pub role: Role,
    /// Position in [`Topology::instances`] (sessions index their per-instance pools by it).
    pub index: usize,
    eligible: AtomicBool,
    in_flight: AtomicU32,
    /// Measured lag in ms; -1 when unknown.
    lag_ms: AtomicI64,
    /// Set by the data path when a connection failed; the monitor takes it.
    failed: AtomicBool,
    /// Bumped whenever the instance is seen failing: pooled connections opened before are stale
    /// (after a crash and restart they are dead sockets) and are discarded at checkout.
    epoch: AtomicU32,
    /// Circuit breaker: consecutive connect failures, and until when (ms on `CLOCK`) it is open.
    failures: AtomicU32,
    open_until_ms: AtomicU64,
    pos: ArcSwap<GtidPos>,
    health: ArcSwap<Health>,
    /// Reporting instances: at most `routing.reporting_max_concurrency` reads at a time.
    pub slots: Option<Arc<Semaphore>>,
}

impl Instance {
    fn new(addr: &str, shard: usize, role: Role, index: usize, slots: Option<usize>) -> Self {
        Self {
            addr: Arc::from(addr),
            shard,
            role,
            index,
            // Replicas take reads only once the monitor has seen them healthy.
            eligible: AtomicBool::new(role == Role::Primary),
            in_flight: AtomicU32::new(0),
            lag_ms: AtomicI64::new(-1),
            failed: AtomicBool::new(false),
            epoch: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            pos: ArcSwap::from_pointee(GtidPos::default()),
            health: ArcSwap::from_pointee(Health {
                state: "unknown",
                ..Health::default()
            }),
            slots: slots.map(|n| Arc::new(Semaphore::new(n))),
        }
    }

    /// Counts a request in flight until the guard drops.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    pub fn in_flight_now(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The data path saw this instance fail: no more reads until the monitor sees it healthy
    /// again for the hold-down period.
    pub fn mark_failed(&self) {
        self.bump_epoch();
        if self.role != Role::Primary {
            self.eligible.store(false, Ordering::Release);
            self.failed.store(true, Ordering::Release);
        }
    }

    /// Whether the circuit breaker refuses now; `Some(ms left)` when it does.
    pub fn breaker_refuses(&self) -> Option<u64> {
        let until = self.open_until_ms.load(Ordering::Acquire);
        let now = clock_ms();
        (until > now).then(|| until - now)
    }

    /// A connect to this instance worked: the breaker closes.
    pub fn breaker_success(&self) {
        if self.failures.swap(0, Ordering::AcqRel) != 0 {
            self.open_until_ms.store(0, Ordering::Release);
        }
    }

    /// A connect to this instance failed: after `threshold` in a row the breaker opens for
    /// `open_ms` (again after each failed half-open try). Returns whether it opened now.
    pub fn breaker_failure(&self, threshold: u32, open_ms: u64) -> bool {
        if threshold == 0 {
            return false;
        }
        let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= threshold {
            self.open_until_ms
                .store(clock_ms() + open_ms, Ordering::Release);
            crate::metrics::METRICS.breaker_opens.inc();
            return true;
        }
        false
    }

    /// Consecutive connect failures now (for `/status`).
    pub fn breaker_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Makes every pooled connection opened so far stale.
    pub fn bump_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    pub fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether the data path marked it failed since the last call (the monitor's side).
    pub fn take_failed(&self) -> bool {
        self.failed.swap(false, Ordering::AcqRel)
    }

    /// The monitor's verdict.
    pub fn publish(
        &self,
        eligible: bool,
        lag_ms: Option<u64>,
        pos: Option<GtidPos>,
        health: Health,
    ) {
        self.lag_ms.store(
            lag_ms.map_or(-1, |l| l.min(i64::MAX as u64) as i64),
            Ordering::Relaxed,
        );
        if let Some(p) = pos {
            self.pos.store(Arc::new(p));
        }
        self.health.store(Arc::new(health));
        self.eligible.store(eligible, Ordering::Release);
    }

    pub fn lag(&self) -> Option<u64> {
        u64::try_from(self.lag_ms.load(Ordering::Relaxed)).ok()
    }

    pub fn position(&self) -> Arc<GtidPos> {
        self.pos.load_full()
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.load_full()
    }
}

impl ReplicaView for Instance {
    fn is_eligible(&self) -> bool {
        self.eligible.load(Ordering::Acquire)
    }

    fn has_reached(&self, g: &Gtid) -> bool {
        self.pos.load().has_reached(g)
    }

    fn in_flight(&self) -> u32 {
        self.in_flight_now()
    }
}

/// A request in flight on an instance (see [`Instance::start_request`]).
#[derive(Debug)]
pub struct InFlight(Arc<Instance>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One shard's instances.
#[derive(Debug)]
pub struct ShardInstances {
    pub name: String,
    pub primary: Arc<Instance>,
    pub replicas: Vec<Arc<Instance>>,
    pub reporting: Vec<Arc<Instance>>,
}

/// Milliseconds on the breaker's clock (since the first use).
fn clock_ms() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    START.elapsed().as_millis() as u64 + 1
}

/// The name of the hot instance's shard in the topology (it is not a shard of the map).
pub const HOT_SHARD: &str = "hot";

/// Every shard and instance of the config.
#[derive(Debug)]
pub struct Topology {
    pub shards: Vec<ShardInstances>,
    /// Index of `routing.default_shard`.
    pub default_shard: usize,
    /// All instances, by [`Instance::index`].
    pub instances: Vec<Arc<Instance>>,
}

impl Topology {
    /// The index of the hot instance's shard, when `[hotspot]` is configured.
    pub fn hot_shard(&self) -> Option<usize> {
        self.shards.iter().position(|s| s.name == HOT_SHARD)
    }

    pub fn from_config(cfg: &Config) -> Self {
        let mut instances = Vec::new();
        let mut shards = Vec::new();
        let slots = cfg.routing.reporting_max_concurrency;
        for (si, s) in cfg.shards.iter().enumerate() {
            let mut make = |addr: &str, role: Role| {
                let slots = (role == Role::Reporting).then_some(slots);
                let i = Arc::new(Instance::new(addr, si, role, instances.len(), slots));
                instances.push(i.clone());
                i
            };
            let primary = make(&s.primary, Role::Primary);
            let replicas = s.replicas.iter().map(|a| make(a, Role::Replica)).collect();
            let reporting = s
                .reporting
                .iter()
                .map(|a| make(a, Role::Reporting))
                .collect();
            shards.push(ShardInstances {
                name: s.name.clone(),
                primary,
                replicas,
                reporting,
            });
        }
        if let Some(h) = &cfg.hotspot {
            // The hot instance is a shard of its own (a primary, no replicas): statements on hot
            // SKU rows are routed to it like to any shard, and a transaction stays on it.
            let si = shards.len();
            let primary = Arc::new(Instance::new(
                &h.instance,
                si,
                Role::Primary,
                instances.len(),
                None,
            ));
            instances.push(primary.clone());
            shards.push(ShardInstances {
                name: HOT_SHARD.to_string(),
                primary,
                replicas: Vec::new(),
                reporting: Vec::new(),
            });
        }
        let default_shard = cfg
            .shards
            .iter()
            .position(|s| s.name == cfg.routing.default_shard)
            .unwrap_or(0);
        Self {
            shards,
            default_shard,
            instances,
        }
    }
}
