//! Backend side: raw-protocol connections to MariaDB/MySQL servers and bb8 pools of them.
//!
//! Start at `pool::Pools::get`, which hands out a `conn::BackendConn` for an instance; the frontend
//! replays the client's session state on it (`BackendConn::sync_to`) and streams a command through it.
//! `topology` holds every shard's instances with their live state; `monitor` keeps that state
//! (heartbeat lag, replication threads, health) for the router.

pub mod conn;
pub mod monitor;
pub mod pipeline;
pub mod pool;
pub mod stream;
pub mod topology;

pub use conn::BackendConn;
pub use pool::{PooledConn, Pools};

use crate::protocol::response::ErrPacket;

/// Backend failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Can't connect to MySQL server on '{addr}' ({reason})")]
    Connect { addr: String, reason: String },
    #[error("login to backend '{addr}' failed: {message}")]
    Login { addr: String, message: String },
    #[error("backend '{addr}': {source}")]
    Protocol {
        addr: String,
        source: crate::protocol::Error,
    },
    #[error("backend '{addr}' answered {code}: {message}", code = .err.code, message = .err.message)]
    Server { addr: String, err: ErrPacket },
    #[error("no backend connection to '{addr}' became free within {ms} ms")]
    PoolTimeout { addr: String, ms: u64 },
}
