//! The one place where a failure becomes a MySQL ERR packet (code, SQLSTATE, message).

use crate::backend;
use crate::protocol;

/// An answer-able failure: what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: u16,
    pub sqlstate: &'static str,
    pub message: String,
}

impl ClientError {
    pub fn new(code: u16, sqlstate: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            sqlstate,
            message: message.into(),
        }
    }
}

/// Maps a backend failure to what the client sees. The server's own errors pass unchanged.
pub fn from_backend(e: &backend::Error) -> (u16, String, String) {
    match e {
        backend::Error::Server { err, .. } => (err.code, err.sqlstate.clone(), err.message.clone()),
        backend::Error::Connect { addr, reason } => (
            2003,
            "HY000".into(),
            format!("Can't connect to MySQL server on '{addr}' ({reason}) [PeakGate backend]"),
        ),
        backend::Error::Login { addr, message } => (
            2003,
            "HY000".into(),
            format!(
                "PeakGate cannot log in to backend '{addr}': {message}; check [backend] user/password"
            ),
        ),
        backend::Error::Protocol { addr, source } => (
            2013,
            "HY000".into(),
            format!(
                "Lost connection to backend '{addr}' during query ({source}); the statement may not have run"
            ),
        ),
        backend::Error::PoolTimeout { addr, ms } => (
            1040,
            "08004".into(),
            format!(
                "Too many connections: no backend connection to '{addr}' became free within {ms} ms; retry later"
            ),
        ),
    }
}

/// Maps a client-side protocol failure (malformed input) to the ERR sent before closing.
pub fn from_protocol(e: &protocol::Error) -> ClientError {
    match e {
        protocol::Error::PacketTooLarge { .. } => ClientError::new(
            1153,
            "08S01",
            "Got a packet bigger than 'max_allowed_packet' bytes",
        ),
        protocol::Error::OutOfOrder { .. } => {
            ClientError::new(1156, "08S01", "Got packets out of order")
        }
        protocol::Error::Malformed(what) => ClientError::new(
            1835,
            "HY000",
            format!("Malformed communication packet: {what}"),
        ),
        protocol::Error::Io(_) | protocol::Error::Closed => {
            ClientError::new(1158, "08S01", "Got an error reading communication packets")
        }
    }
}
