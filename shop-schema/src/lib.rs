//! The reference shop on PeakGate: a realistic e-commerce back end (members, catalogue, orders,
//! payments, a flash sale) whose SQL all goes through the proxy, and a peak load generator.
//!
//! # Layout
//! - [`schema`]: the DDL in `sql/` and `migrate`; [`proxy_config`]: the shop's shard map merged
//!   into a proxy config;
//! - [`seed`]: realistic data (categories, CJK and Latin product titles, stock, members);
//! - [`db`]: the mysql_async pool and SQL literal helpers (text protocol where the proxy needs it);
//! - [`service`]: the axum HTTP service; start at [`service::router`]. [`cache`] is the Redis
//!   cache-aside with single-flight, [`metrics`] the business metrics on `/metrics`;
//! - [`load`]: the peak load generator and its oversell check;
//! - [`outbox`]: the relay of outbox rows to NATS JetStream; [`backoffice`]: the consumer that
//!   applies them, exactly once in effect, to a separate back-office database;
//! - [`search`]: product search on a tantivy index (CJK + Latin tokenizer, facets, highlighting),
//!   kept in sync by an index consumer of the same stream, and `reindex`.
//!
//! The service never knows shards or replicas: it names tables and shard keys, the proxy does
//! the rest. Where the proxy needs the text protocol (INSERTs whose ids it generates, reads over
//! several shards) the service sends text with literals escaped by [`db::lit`].

pub mod backoffice;
pub mod cache;
pub mod db;
pub mod load;
pub mod metrics;
pub mod money;
pub mod outbox;
pub mod proxy_config;
pub mod schema;
pub mod search;
pub mod seed;
pub mod service;
