//! `peakgate.toml`: listeners, users, backend credentials, shards and their instances, and the
//! shard map (`[sharding]`, `[[tables]]`, validated and resolved by `peakgate_router::shard_map`).
//! Loading and validation; every error names the key path and, where it can, the line.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use peakgate_router::ShardMap;
use peakgate_router::shard_map::{ConfigError, ShardingConfig, TableConfig};
use serde::Deserialize;

use crate::protocol::auth::{NativeHash, parse_native_hash};

/// Configuration errors. Each names what is wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// The whole proxy configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the proxy listens.
    pub listen: Listen,
    /// Client-facing limits.
    #[serde(default)]
    pub proxy: ProxySettings,
    /// How the proxy logs in to the backends.
    pub backend: BackendSettings,
    /// Client accounts; clients log in with these, never with backend credentials.
    pub users: Vec<User>,
    /// TLS for client connections (optional).
    #[serde(default)]
    pub tls: Option<Tls>,
    /// Routing rules.
    pub routing: Routing,
    /// Shards, each a primary with its replicas.
    pub shards: Vec<Shard>,
    /// Flash-sale SKUs: the dedicated instance, the stock table and key column, the configured
    /// hot SKUs and automatic detection (see `peakgate_router::hotspot`).
    #[serde(default)]
    pub hotspot: Option<peakgate_router::hotspot::HotspotSettings>,
    /// Settings for sharded tables (docs/sharding.md).
    #[serde(default)]
    pub sharding: Option<ShardingConfig>,
    /// Where each sharded, binding, global or broadcast table lives (docs/sharding.md).
    #[serde(default)]
    pub tables: Vec<TableConfig>,
    /// Peak protection: `[[limits.rules]]` (rate and concurrency limits, feature switches).
    #[serde(default)]
    pub limits: crate::limits::LimitsConfig,
    /// `sharding` and `tables` resolved against `shards`; set by [`Config::parse`].
    #[serde(skip)]
    shard_map: ResolvedShardMap,
}

/// The resolved shard map. Its `Debug` is one line: `check-config` prints the map in full (Display).
#[derive(Clone, Default)]
struct ResolvedShardMap(Arc<ShardMap>);

impl std::fmt::Debug for ResolvedShardMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShardMap {{ {} table rules }}", self.0.tables().len())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// MySQL protocol listener, e.g. "127.0.0.1:6033".
    pub mysql: String,
    /// HTTP admin listener (/metrics, /status), e.g. "127.0.0.1:6080". None disables it.
    #[serde(default)]
    pub admin: Option<String>,
    /// Token every admin write action (POST) must carry as `Authorization: Bearer TOKEN`;
    /// without one, POSTs are open to whoever reaches the admin listener.
    #[serde(default)]
    pub admin_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySettings {
    /// Client connections beyond this get ERR 1040 at once.
    #[serde(default = "default_max_clients")]
    pub max_client_connections: usize,
    /// Largest client packet (bytes, after joining split packets); larger ones get ERR 1153.
    #[serde(default = "default_max_packet")]
    pub max_allowed_packet: usize,
    /// Prepared statements all clients together may hold open (MariaDB's own default and
    /// error: ERR 1461 beyond it); bounds the memory clients that never close them can take.
    #[serde(default = "default_max_prepared")]
    pub max_prepared_stmt_count: usize,
    /// Version string announced to clients; by default the default primary's own, with "-PeakGate".
    #[serde(default)]
    pub server_version: Option<String>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            max_client_connections: default_max_clients(),
            max_allowed_packet: default_max_packet(),
            max_prepared_stmt_count: default_max_prepared(),
            server_version: None,
        }
    }
}

fn default_max_clients() -> usize {
    4096
}
fn default_max_packet() -> usize {
    64 << 20
}
fn default_max_prepared() -> usize {
    16382
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSettings {
    /// Backend account (needs its own explicit privileges; see docs/configuration.md).
    pub user: String,
    /// Backend password. The proxy must know it to answer the servers' scrambles.
    pub password: String,
    /// Most backend connections per instance and client capability variant, the shared
    /// (pipelined) ones included: see [`BackendSettings::shared_connections`].
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// TCP connect + login timeout.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// How long a statement waits for a free pooled connection before ERR 1040.
    #[serde(default = "default_pool_wait")]
    pub pool_wait_timeout_ms: u64,
    /// Idle pooled connections are closed after this long.
    #[serde(default = "default_idle")]
    pub idle_timeout_ms: u64,
    /// Circuit breaker: after this many consecutive connect failures of an instance, statements
    /// for it fail at once (ERR 2003 naming the breaker) for `breaker_open_ms`, then one try is
    /// let through again (half-open); 0 turns the breaker off.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open breaker refuses before the next try.
    #[serde(default = "default_breaker_open")]
    pub breaker_open_ms: u64,
    /// Shared (pipelined) connections per instance and capability variant for independent
    /// autocommit reads; 0 turns pipelining off. See docs/protocol.md.
    #[serde(default = "default_pipeline_connections")]
    pub pipeline_connections: usize,
    /// A shared connection whose oldest unanswered command has waited longer than this (a slow
    /// read runs) takes no new statements until it catches up: they go to another shared
    /// connection or the pool, so a slow read delays only what was queued behind it meanwhile.
    #[serde(default = "default_pipeline_stall")]
    pub pipeline_stall_ms: u64,
    /// Unix sockets of instances on the proxy's own host, by instance address
    /// (`"127.0.0.1:3311" = "/run/mysqld/mysqld.sock"`): the proxy's pooled, pipelined and
    /// KILL connections to them go over the socket instead of TCP (the monitor's stay on TCP).
    #[serde(default)]
    pub sockets: std::collections::BTreeMap<String, String>,
}

impl BackendSettings {
    /// The shared (pipelined) connections per instance and variant: `pipeline_connections`, but
    /// at most `pool_size - 1`, which leaves the pool (`pool_size` minus these) at least one.
    pub fn shared_connections(&self) -> usize {
        self.pipeline_connections
            .min((self.pool_size as usize).saturating_sub(1))
    }
}

fn default_pipeline_connections() -> usize {
    1
}
fn default_pipeline_stall() -> u64 {
    5
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_open() -> u64 {
    1000
}
fn default_pool_size() -> u32 {
    32
}
fn default_connect_timeout() -> u64 {
    2000
}
fn default_pool_wait() -> u64 {
    10_000
}
fn default_idle() -> u64 {
    600_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name.
    pub name: String,
    /// `PASSWORD('...')` output: "*" + 40 hex digits of SHA1(SHA1(password)). Never plaintext.
    pub password_sha1: String,
    /// Refuse this user unless the connection is TLS.
    #[serde(default)]
    pub require_tls: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// The shard that takes every statement not routed elsewhere.
    pub default_shard: String,
    /// What to do with SQL the parser rejects: send it to the default primary, or refuse it.
    #[serde(default)]
    pub unparseable: Unparseable,
    /// Send plain reads to replicas (false: everything runs on the primary; hints still apply).
    #[serde(default = "yes")]
    pub replica_reads: bool,
    /// A replica whose measured lag is above this gets no reads.
    #[serde(default = "default_max_lag")]
    pub max_replica_lag_ms: u64,
    /// When no replica is eligible: read the primary, or refuse the read.
    #[serde(default)]
    pub lag_fallback: LagFallback,
    /// A replica that was out must stay healthy and under the lag limit this long before it
    /// takes reads again.
    #[serde(default = "default_hold_down")]
    pub hold_down_ms: u64,
    /// How often the proxy writes the heartbeat row on every primary and reads it on every replica.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
    /// A replica that does not answer the monitor within this is out (connect and probe timeout).
    #[serde(default = "default_health_timeout")]
    pub health_timeout_ms: u64,
    /// Read-your-writes mode: `gtid` (default), `sticky_primary_ms`, or `off`.
    #[serde(default)]
    pub read_your_writes: ReadYourWritesMode,
    /// Whose writes a session's reads must see: `session` (its own, default) or `user` (those of
    /// every session of the same client user, e.g. a service's connection pool).
    #[serde(default)]
    pub read_your_writes_scope: RywScope,
    /// For `read_your_writes = "sticky_primary_ms"`: reads go to the primary this long after a write.
    #[serde(default = "default_sticky")]
    pub sticky_primary_ms: u64,
    /// For `read_your_writes = "gtid"`: how long a replica may wait (MASTER_GTID_WAIT) for the
    /// session's last write before the read goes to the primary; 0 reads the primary at once.
    #[serde(default = "default_ryw_wait")]
    pub ryw_wait_ms: u64,
    /// Reporting reads in flight per reporting instance; more wait (up to
    /// `backend.pool_wait_timeout_ms`), so reports cannot take the pools from checkout traffic.
    #[serde(default = "default_reporting_concurrency")]
    pub reporting_max_concurrency: usize,
    /// Write throttling: while a shard's worst replica lag is above this, its non-critical
    /// writes wait (see `throttle_max_wait_ms`); 0 turns it off.
    #[serde(default)]
    pub throttle_lag_ms: u64,
    /// The longest a throttled write waits before it runs anyway.
    #[serde(default = "default_throttle_wait")]
    pub throttle_max_wait_ms: u64,
    /// Routing rules by user and statement kind, first match wins; a hint beats a rule.
    #[serde(default)]
    pub rules: Vec<RouteRule>,
}

/// `[[routing.rules]]`: statements of `user` and/or `kind` go to `route`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Only this client user.
    #[serde(default)]
    pub user: Option<String>,
    /// Only this statement kind: read, write, txn_begin, txn_end, session, ddl, admin, unknown.
    #[serde(default)]
    pub kind: Option<String>,
    /// Only statements naming one of these tables (`table`, any schema, or `schema.table`).
    #[serde(default)]
    pub tables: Vec<String>,
    /// primary | replica | reporting.
    pub route: String,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LagFallback {
    /// Read the primary.
    #[default]
    Primary,
    /// Refuse the read with ERR 1105 naming the setting.
    Error,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RywScope {
    /// A session sees its own writes.
    #[default]
    Session,
    /// A session sees the writes of every session of its user.
    User,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReadYourWritesMode {
    /// No guarantee.
    Off,
    /// Reads go to the primary for `sticky_primary_ms` after the session's last write.
    StickyPrimaryMs,
    /// Reads go to a replica that has applied the session's last write (see `ryw_wait_ms`).
    #[default]
    Gtid,
}

fn yes() -> bool {
    true
}
fn default_max_lag() -> u64 {
    500
}
fn default_hold_down() -> u64 {
    1000
}
fn default_heartbeat() -> u64 {
    100
}
fn default_health_timeout() -> u64 {
    500
}
fn default_sticky() -> u64 {
    1000
}
fn default_ryw_wait() -> u64 {
    50
}
fn default_throttle_wait() -> u64 {
    1000
}
fn default_reporting_concurrency() -> usize {
    8
}

impl Routing {
    /// The planner's view of these settings (rules were validated at load).
    pub fn read_policy(&self) -> peakgate_router::plan::ReadPolicy {
        use peakgate_router::plan::{self as p, ReadYourWrites};
        p::ReadPolicy {
            replica_reads: self.replica_reads,
            read_your_writes: match self.read_your_writes {
                ReadYourWritesMode::Off => ReadYourWrites::Off,
                ReadYourWritesMode::StickyPrimaryMs => ReadYourWrites::StickyPrimary {
                    ms: self.sticky_primary_ms,
                },
                ReadYourWritesMode::Gtid => ReadYourWrites::Gtid {
                    wait_ms: self.ryw_wait_ms,
                },
            },
            lag_fallback: match self.lag_fallback {
                LagFallback::Primary => p::LagFallback::Primary,
                LagFallback::Error => p::LagFallback::Error,
            },
            rules: self
                .rules
                .iter()
                .filter_map(|r| {
                    Some(p::Rule {
                        user: r.user.clone(),
                        kind: match &r.kind {
                            Some(k) => Some(parse_kind(k)?),
                            None => None,
                        },
                        tables: r.tables.iter().map(|t| t.to_ascii_lowercase()).collect(),
                        route: peakgate_router::RouteHint::parse(r.route.as_bytes())?,
                    })
                })
                .collect(),
        }
    }
}

fn parse_kind(k: &str) -> Option<peakgate_router::StatementKind> {
    peakgate_router::StatementKind::from_name(&k.to_ascii_lowercase())
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unparseable {
    /// Forward to the default shard's primary (counted in `peakgate_unparseable_statements_total`).
    #[default]
    Primary,
    /// Refuse with ERR 1064.
    Reject,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// Shard name, e.g. "s0".
    pub name: String,
    /// The primary's address.
    pub primary: String,
    /// Replicas serving normal reads.
    #[serde(default)]
    pub replicas: Vec<String>,
    /// Replicas serving only reporting reads.
    #[serde(default)]
    pub reporting: Vec<String>,
}

/// A user with the parsed hash.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub hash: NativeHash,
    pub require_tls: bool,
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| Error::Parse(e.to_string()))?;
        cfg.validate(text)?;
        // Built a second time after validate reported its errors along with the others: a few
        // microseconds at load, and validate stays a check.
        let map = cfg
            .build_shard_map(text)
            .map_err(|errs| Error::Invalid(errs.iter().map(ConfigError::to_string).collect()))?;
        cfg.shard_map = ResolvedShardMap(Arc::new(map));
        Ok(cfg)
    }

    /// The shard map over `[[shards]]` (names in file order), with `routing.default_shard` as its
    /// default shard.
    fn build_shard_map(&self, text: &str) -> Result<ShardMap, Vec<ConfigError>> {
        let names: Vec<String> = self.shards.iter().map(|s| s.name.clone()).collect();
        ShardMap::from_config(
            self.sharding.as_ref(),
            &self.tables,
            text,
            &names,
            Some(&self.routing.default_shard),
        )
    }

    /// The resolved shard map; without `[[tables]]` an empty one (every table on the default shard).
    pub fn shard_map(&self) -> &ShardMap {
        &self.shard_map.0
    }

    /// The resolved shard map, shared (for the proxy's swappable copy).
    pub fn shard_map_arc(&self) -> Arc<ShardMap> {
        self.shard_map.0.clone()
    }

    fn validate(&self, text: &str) -> Result<(), Error> {
        let mut errs = Vec::new();
        let at = |needle: &str| {
            line_of(text, needle)
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default()
        };
        for (key, addr) in [
            ("listen.mysql", Some(&self.listen.mysql)),
            ("listen.admin", self.listen.admin.as_ref()),
        ] {
            if let Some(a) = addr
                && a.parse::<SocketAddr>().is_err()
            {
                errs.push(format!("{key}: \"{a}\" is not an ip:port address{}", at(a)));
            }
        }
        let mut names = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if parse_native_hash(&u.password_sha1).is_none() {
                errs.push(format!(
                    "users[{i}].password_sha1: expected \"*\" and 40 hex digits (SELECT PASSWORD('...')){}",
                    at(&u.password_sha1)
                ));
            }
            if !names.insert(u.name.as_str()) {
                errs.push(format!(
                    "users[{i}].name: duplicate user \"{}\"{}",
                    u.name,
                    at(&u.name)
                ));
            }
        }
        if self.users.is_empty() {
            errs.push("users: at least one [[users]] entry is needed".into());
        }
        let mut shard_names = HashSet::new();
        for (i, s) in self.shards.iter().enumerate() {
            if !shard_names.insert(s.name.as_str()) {
                errs.push(format!(
                    "shards[{i}].name: duplicate shard \"{}\"{}",
                    s.name,
                    at(&s.name)
                ));
            }
            let addrs = std::iter::once(("primary", &s.primary))
                .chain(s.replicas.iter().map(|a| ("replicas", a)))
                .chain(s.reporting.iter().map(|a| ("reporting", a)));
            for (key, a) in addrs {
                if a.parse::<SocketAddr>().is_err() {
                    errs.push(format!(
                        "shards[{i}].{key}: \"{a}\" is not an ip:port address{}",
                        at(a)
                    ));
                }
            }
        }
        if !shard_names.contains(self.routing.default_shard.as_str()) {
            errs.push(format!(
                "routing.default_shard: shard \"{}\" is not defined in [[shards]]{}",
                self.routing.default_shard,
                at(&self.routing.default_shard)
            ));
        }
        for (i, r) in self.routing.rules.iter().enumerate() {
            if peakgate_router::RouteHint::parse(r.route.as_bytes()).is_none() {
                errs.push(format!(
                    "routing.rules[{i}].route: \"{}\" is not primary, replica or reporting{}",
                    r.route,
                    at(&r.route)
                ));
            }
            if let Some(k) = &r.kind
                && parse_kind(k).is_none()
            {
                let kinds: Vec<&str> = peakgate_router::StatementKind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect();
                errs.push(format!(
                    "routing.rules[{i}].kind: \"{k}\" is not one of {}{}",
                    kinds.join(", "),
                    at(k)
                ));
            }
        }
        if self.routing.heartbeat_ms == 0 {
            errs.push("routing.heartbeat_ms: must be at least 1".into());
        }
        if self.routing.reporting_max_concurrency == 0 {
            errs.push("routing.reporting_max_concurrency: must be at least 1".into());
        }
        if let Some(h) = &self.hotspot
            && let Err(hot_errs) = peakgate_router::hotspot::HotRegistry::new(h.clone())
        {
            errs.extend(hot_errs.iter().map(|e| format!("hotspot.{e}")));
        }
        if let Some(h) = &self.hotspot
            && h.instance.parse::<SocketAddr>().is_err()
        {
            errs.push(format!(
                "hotspot.instance: \"{}\" is not an ip:port address{}",
                h.instance,
                at(&h.instance)
            ));
        }
        if self.backend.pool_size == 0 {
            errs.push("backend.pool_size: must be at least 1".into());
        }
        for addr in self.backend.sockets.keys() {
            let known = self.hotspot.as_ref().is_some_and(|h| &h.instance == addr)
                || self.shards.iter().any(|s| {
                    &s.primary == addr || s.replicas.contains(addr) || s.reporting.contains(addr)
                });
            if !known {
                errs.push(format!(
                    "backend.sockets: \"{addr}\" is not an instance of any shard or the hot instance{}",
                    at(addr)
                ));
            }
        }
        if let Some(t) = &self.tls {
            for (key, p) in [("tls.cert", &t.cert), ("tls.key", &t.key)] {
                if !Path::new(p).exists() {
                    errs.push(format!("{key}: file \"{p}\" does not exist{}", at(p)));
                }
            }
        }
        if self.tls.is_none()
            && let Some(u) = self.users.iter().find(|u| u.require_tls)
        {
            errs.push(format!(
                "users: \"{}\" has require_tls but no [tls] is configured",
                u.name
            ));
        }
        errs.extend(self.limits.validate(text));
        if let Err(map_errs) = self.build_shard_map(text) {
            errs.extend(map_errs.iter().map(ConfigError::to_string));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(errs))
        }
    }

    /// The accounts with parsed hashes (validation already checked them).
    pub fn accounts(&self) -> Vec<Account> {
        self.users
            .iter()
            .filter_map(|u| {
                Some(Account {
                    name: u.name.clone(),
                    hash: parse_native_hash(&u.password_sha1)?,
                    require_tls: u.require_tls,
                })
            })
            .collect()
    }

    /// The default shard's primary address.
    pub fn default_primary(&self) -> &str {
        self.shards
            .iter()
            .find(|s| s.name == self.routing.default_shard)
            .map_or(self.shards[0].primary.as_str(), |s| s.primary.as_str())
    }
}

fn line_of(text: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[listen]
mysql = "127.0.0.1:6033"
admin = "127.0.0.1:6080"

[backend]
user = "peakgate"
password = "peakgate"

[[users]]
name = "shop"
password_sha1 = "*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9"

[routing]
default_shard = "s0"

[[shards]]
name = "s0"
primary = "127.0.0.1:3311"
replicas = ["127.0.0.1:3312"]
"#;

    #[test]
    fn good_config_parses() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.default_primary(), "127.0.0.1:3311");
        assert_eq!(c.backend.pool_size, 32);
        assert_eq!(c.accounts().len(), 1);
    }

    #[test]
    fn shared_connections_come_out_of_the_pool_size() {
        let shared = |extra: &str| {
            let c =
                Config::parse(&GOOD.replace("[backend]", &format!("[backend]\n{extra}"))).unwrap();
            c.backend.shared_connections()
        };
        assert_eq!(shared(""), 1, "default: one of the 32");
        assert_eq!(
            shared("pool_size = 1"),
            0,
            "a pool of one keeps its connection"
        );
        assert_eq!(shared("pool_size = 8\npipeline_connections = 40"), 7);
        assert_eq!(shared("pipeline_connections = 0"), 0);
    }

    #[test]
    fn unknown_key_is_refused_with_line() {
        let bad = GOOD.replace("[backend]", "[backend]\npool = 3");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("unknown field `pool`"), "{e}");
        assert!(e.contains("line 7"), "{e}");
    }

    const SHARDED: &str = r#"
[[shards]]
name = "s1"
primary = "127.0.0.1:3321"

[sharding]
node_id = 1

[[tables]]
name = "shop.orders"
shard_key = "member_id"
algorithm = "consistent_hash"
gene_column = "id"

[[tables]]
name = "shop.order_items"
binding = "shop.orders"
binding_key = "order_id"
"#;

    #[test]
    fn shard_map_is_resolved() {
        let c = Config::parse(GOOD).unwrap();
        assert!(c.shard_map().is_empty());
        assert_eq!(c.shard_map().shards(), ["s0"]);
        let c = Config::parse(&format!("{GOOD}{SHARDED}")).unwrap();
        let map = c.shard_map();
        assert_eq!(map.node_id(), 1);
        assert_eq!(map.shards(), ["s0", "s1"]);
        let items = map.table(Some("shop"), "order_items").unwrap();
        assert!(matches!(
            items.kind(),
            peakgate_router::TableKind::Binding(_)
        ));
    }

    #[test]
    fn shard_map_errors_come_with_the_others() {
        let text = format!("{GOOD}{SHARDED}")
            .replace("node_id = 1", "node_id = 2000")
            .replace("binding = \"shop.orders\"", "binding = \"shop.order\"")
            .replace("*6BB4", "6BB4");
        let e = Config::parse(&text).unwrap_err().to_string();
        assert!(e.contains("users[0].password_sha1"), "{e}");
        assert!(
            e.contains("sharding.node_id: 2000 is out of range 0..=1023; give each proxy instance its own (line 27)"),
            "{e}"
        );
        assert!(
            e.contains("tables[1].binding: no [[tables]] entry for \"shop.order\"; a binding table follows a sharded table (line 37)"),
            "{e}"
        );
    }

    #[test]
    fn shard_map_keys_are_checked_by_serde() {
        let text = format!("{GOOD}{SHARDED}").replace("gene_column", "gene_col");
        let e = Config::parse(&text).unwrap_err().to_string();
        assert!(e.contains("unknown field `gene_col`"), "{e}");
        assert!(e.contains("line 33"), "{e}");
    }

    #[test]
    fn validation_names_key_and_line() {
        let bad = GOOD
            .replace("default_shard = \"s0\"", "default_shard = \"s9\"")
            .replace("*6BB4", "6BB4");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(
            e.contains(
                "routing.default_shard: shard \"s9\" is not defined in [[shards]] (line 15)"
            ),
            "{e}"
        );
        assert!(e.contains("users[0].password_sha1"), "{e}");
    }
}
