//! PeakGate: a MySQL wire-protocol proxy. This crate does all the I/O; routing decisions live in
//! `peakgate-router`.
//!
//! # Layout
//! - `protocol/`: packets, handshake, auth, OK/ERR/EOF, prepared-statement packets (no routing).
//! - `frontend/`: one client session (login, command loop, prepared statements, pinning).
//! - `backend/`: raw-protocol backend connections and their bb8 pools.
//! - `execute`: relays one command's answer from a backend to the client; `execute::scatter` runs
//!   one statement on several shards (merged reads, summed writes).
//! - `hotrow`: the hot-row queue and group commit for flash-sale SKUs.
//! - `session_state`: the session state replayed on pooled connections.
//! - `digests`: per-digest statement statistics in bounded memory (top-N for `/status/digests`).
//! - `limits`: peak-protection rules (rate and concurrency limits, feature switches, route, delay)
//!   and the decision they take per statement.
//! - `xa`: cross-shard transactions as MariaDB XA (ids, commit decision record, recovery).
//! - `sampler`: the per-second QPS / p99 / clients series behind the admin status page.
//! - `config`, `metrics`, `admin`, `errors`, `server` (listeners and shared state).
//!
//! Start reading at `server::Proxy::serve`, then `frontend::serve_client`.

pub mod admin;
pub mod backend;
pub mod config;
pub mod digests;
pub mod errors;
pub mod execute;
pub mod frontend;
pub mod hotmove;
pub mod hotrow;
pub mod limits;
pub mod metrics;
pub mod protocol;
pub mod sampler;
pub mod server;
pub mod session_state;
pub mod xa;

pub use config::Config;
pub use server::Proxy;
