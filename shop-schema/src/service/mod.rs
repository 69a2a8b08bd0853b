//! The shop's HTTP service (axum, JSON). Start at [`router`]: every route, the state it shares
//! ([`Shop`]) and the middleware that times each request per route pattern.
//!
//! One file per concern: [`auth`] (members, sessions), [`catalog`] (products, cache-aside),
//! [`orders`] (checkout with idempotency, payment, history), [`flash`] (flash-sale buy, stock),
//! [`search`] (`GET /search` on the search index, no SQL), [`product_events`] (the catalogue
//! events that keep search indexes in sync).
//!
//! Errors are [`ApiError`]s, answered as `{"error": kind, "message": ...}` with a 4xx or 5xx
//! status; database and Redis details are logged, not sent.

pub mod auth;
pub mod catalog;
pub mod flash;
pub mod orders;
pub mod product_events;
pub mod search;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use redis::aio::ConnectionManager;
use serde_json::json;

use crate::cache::Cache;
use crate::metrics::Metrics;
use crate::search::SearchIndex;
use crate::search::sync::SearchStats;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Settings of the service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Prefix of every Redis key (lets several shops, or tests, share one Redis).
    pub redis_prefix: String,
    /// Base TTL of cached catalogue reads (jittered ±20%).
    pub cache_ttl: Duration,
    /// After a member's write, their own reads go to the primary for this long: a pooled
    /// connection is a different proxy session, and the proxy's read-your-writes is per session.
    pub ryw_window: Duration,
    /// Write an outbox row in each order's and payment's transaction. Needs `outbox` on the
    /// member's shard (the shop's shard map).
    pub outbox: bool,
    /// Lifetime of a login session.
    pub session_ttl: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            redis_prefix: "shop".into(),
            cache_ttl: Duration::from_secs(60),
            ryw_window: Duration::from_secs(5),
            outbox: true,
            session_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// What every handler shares.
pub struct Shop {
    pub db: mysql_async::Pool,
    pub redis: ConnectionManager,
    pub cache: Cache,
    pub metrics: Metrics,
    pub cfg: ServiceConfig,
    /// This instance's search index replica (`GET /search`), if it has one.
    pub search: Option<Arc<SearchIndex>>,
    /// Its index consumer's counters and lag, shown on `/metrics`.
    pub search_stats: Arc<SearchStats>,
}

impl Shop {
    pub fn new(db: mysql_async::Pool, redis: ConnectionManager, cfg: ServiceConfig) -> Self {
        let cache = Cache::new(redis.clone(), &cfg.redis_prefix, cfg.cache_ttl);
        Self {
            db,
            redis,
            cache,
            metrics: Metrics::default(),
            cfg,
            search: None,
            search_stats: Arc::default(),
        }
    }

    /// Serves `GET /search` from `index`; `stats` are its consumer's.
    pub fn with_search(mut self, index: Arc<SearchIndex>, stats: Arc<SearchStats>) -> Self {
        self.search = Some(index);
        self.search_stats = stats;
        self
    }

    /// A Redis key under the service's prefix.
    pub fn key(&self, what: &str) -> String {
        format!("{}:{what}", self.cfg.redis_prefix)
    }
}

pub type AppState = Arc<Shop>;

/// Every route of the service.
pub fn router(shop: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/members", post(auth::register))
        .route("/sessions", post(auth::login))
        .route("/products", get(catalog::list))
        .route("/search", get(search::search))
        .route("/products/{id}", get(catalog::detail))
        .route("/admin/products/{id}/price", put(catalog::set_price))
        .route("/orders", post(orders::place).get(orders::history))
        .route("/orders/{id}", get(orders::one))
        .route("/orders/{id}/pay", post(orders::pay))
        .route("/flash/{sku}/buy", post(flash::buy))
        .route("/skus/{sku}/stock", get(flash::stock))
        .route("/admin/skus/{sku}/stock", put(flash::restock))
        .route("/admin/skus/{sku}/sales", get(flash::sales))
        .layer(middleware::from_fn_with_state(shop.clone(), timed))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shop)
}

async fn health() -> &'static str {
    "ok\n"
}

async fn metrics_text(State(shop): State<AppState>) -> Response {
    let uv = auth::unique_visitors(&shop).await;
    let mut text = shop.metrics.render(uv);
    if let Some(index) = &shop.search {
        text.push_str(&shop.search_stats.render(index.num_docs()));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Times every request and counts it under its route pattern (`/products/{id}`, not the id).
async fn timed(State(shop): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let endpoint = format!("{} {endpoint}", req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    shop.metrics
        .observe(&endpoint, resp.status().as_u16(), start.elapsed());
    resp
}

/// A request that failed, and how the client hears of it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("log in first: send Authorization: Bearer <token> from POST /sessions")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("sold out")]
    SoldOut,
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("the request body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("database: {0}")]
    Db(#[from] mysql_async::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::SoldOut => (StatusCode::CONFLICT, "sold_out"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            // The server (or the proxy) answered with an error: a bug or a schema problem here.
            ApiError::Db(mysql_async::Error::Server(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "database_error")
            }
            ApiError::Db(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            ApiError::Redis(_) => (StatusCode::SERVICE_UNAVAILABLE, "cache_unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        let message = match &self {
            ApiError::Db(e) => {
                tracing::warn!(error = %e, "database error");
                "the database failed this request; retry with the same Idempotency-Key".to_string()
            }
            ApiError::Redis(e) => {
                tracing::warn!(error = %e, "redis error");
                "the session store did not answer; retry".to_string()
            }
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        (
            status,
            axum::Json(json!({ "error": kind, "message": message })),
        )
            .into_response()
    }
}

/// A JSON body, with a JSON 400 when it is missing or malformed (axum's own rejection is text).
pub struct JsonBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::TooLarge),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}
