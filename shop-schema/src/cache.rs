//! Cache-aside in Redis for catalogue reads (product detail, listing pages).
//!
//! - A read tries Redis; on a miss one request per key and process loads from the database
//!   (single-flight: the others wait for its result instead of querying too), stores it with a
//!   TTL of `base ± 20%` (jitter, so keys written together do not expire together) and returns it.
//! - A product that does not exist is cached as `null` for a short time, so probing unknown ids
//!   does not reach the database every time.
//! - Writes invalidate: a price change deletes the product's key and bumps the catalogue version
//!   that every listing key contains, so all listing pages are re-read.
//! - Redis failing is not the shop failing: reads go to the database and `cache_errors` counts.
//!
//! Stock is never cached: purchase decisions are guarded UPDATEs in the database.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

/// How long a Redis answer may take. The client's default (500 ms) turned peak load on a busy
/// machine into 503s for requests whose session lookup queued behind a thousand others on the
/// one multiplexed connection; Redis answering late is still better than failing the request.
pub const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The shop's Redis connection manager (`url`, e.g. `redis://127.0.0.1:6379/`).
pub async fn redis_manager(url: &str) -> redis::RedisResult<ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT));
    redis::Client::open(url)?
        .get_connection_manager_with_config(config)
        .await
}

use crate::metrics::Metrics;

/// How long a "does not exist" answer is cached.
const NEGATIVE_TTL_S: u64 = 10;
/// What a cached "does not exist" looks like.
const NULL: &str = "null";

/// How a cached read was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// From Redis.
    Hit,
    /// This request loaded it from the database.
    Loaded,
    /// Another request's load answered this one (single-flight).
    Coalesced,
}

/// The cache. Keys are `{prefix}:{what}`.
pub struct Cache {
    redis: ConnectionManager,
    prefix: String,
    base_ttl: Duration,
    flights: Mutex<HashMap<String, Arc<OnceCell<Option<String>>>>>,
}

impl Cache {
    pub fn new(redis: ConnectionManager, prefix: &str, base_ttl: Duration) -> Self {
        Self {
            redis,
            prefix: prefix.to_string(),
            base_ttl,
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// The full key of `what`.
    pub fn key(&self, what: &str) -> String {
        format!("{}:{what}", self.prefix)
    }

    /// The base TTL with ±20% jitter, at least one second.
    pub fn jittered_ttl(&self) -> u64 {
        let base = self.base_ttl.as_millis() as f64;
        let factor = rand::rng().random_range(0.8..=1.2);
        ((base * factor / 1000.0).round() as u64).max(1)
    }

    /// The cached value of `what`, or `load()`'s (stored before it is returned). `Ok(None)`: the
    /// thing does not exist.
    pub async fn get_or_load<E, F, Fut>(
        &self,
        metrics: &Metrics,
        what: &str,
        load: F,
    ) -> Result<(Option<String>, Lookup), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<String>, E>>,
    {
        let key = self.key(what);
        let mut conn = self.redis.clone();
        match conn.get::<_, Option<String>>(&key).await {
            Ok(Some(v)) => {
                metrics.cache_hits.fetch_add(1, Relaxed);
                return Ok((if v == NULL { None } else { Some(v) }, Lookup::Hit));
            }
            Ok(None) => {}
            Err(_) => {
                metrics.cache_errors.fetch_add(1, Relaxed);
            }
        }
        metrics.cache_misses.fetch_add(1, Relaxed);
        let cell = {
            let mut f = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            f.entry(key.clone()).or_default().clone()
        };
        let leader = AtomicBool::new(false);
        let result = cell
            .get_or_try_init(|| async {
                leader.store(true, Relaxed);
                metrics.cache_loads.fetch_add(1, Relaxed);
                let v = load().await?;
                let (text, ttl) = match &v {
                    Some(s) => (s.as_str(), self.jittered_ttl()),
                    None => (NULL, NEGATIVE_TTL_S),
                };
                if conn.set_ex::<_, _, ()>(&key, text, ttl).await.is_err() {
                    metrics.cache_errors.fetch_add(1, Relaxed);
                }
                Ok(v)
            })
            .await
            .cloned();
        {
            let mut f = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            if f.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                f.remove(&key);
            }
        }
        let how = if leader.load(Relaxed) {
            Lookup::Loaded
        } else {
            metrics.cache_coalesced.fetch_add(1, Relaxed);
            Lookup::Coalesced
        };
        result.map(|v| (v, how))
    }

    /// Deletes the keys of `whats`.
    pub async fn invalidate(&self, metrics: &Metrics, whats: &[String]) {
        let keys: Vec<String> = whats.iter().map(|w| self.key(w)).collect();
        let mut conn = self.redis.clone();
        if conn.del::<_, ()>(keys).await.is_err() {
            metrics.cache_errors.fetch_add(1, Relaxed);
        }
    }

    /// The catalogue version (part of every listing key); 0 when Redis has none or fails.
    pub async fn catalog_version(&self, metrics: &Metrics) -> i64 {
        let mut conn = self.redis.clone();
        match conn
            .get::<_, Option<i64>>(self.key("catalog_version"))
            .await
        {
            Ok(v) => v.unwrap_or(0),
            Err(_) => {
                metrics.cache_errors.fetch_add(1, Relaxed);
                0
            }
        }
    }

    /// Makes every listing key stale.
    pub async fn bump_catalog_version(&self, metrics: &Metrics) {
        let mut conn = self.redis.clone();
        if conn
            .incr::<_, _, i64>(self.key("catalog_version"), 1)
            .await
            .is_err()
        {
            metrics.cache_errors.fetch_add(1, Relaxed);
        }
    }
}
