//! MySQL client/server protocol: framing, handshake, auth and response packets. Knows nothing of routing.
//!
//! Layout: `packet` (framing, split packets, sequence ids), `codec` (length-encoded ints and strings),
//! `constants` (capability, status and command numbers), `handshake` (greeting, handshake response,
//! auth switch), `auth` (password scrambles), `response` (OK / ERR / EOF encode and decode, session-state
//! tracking), `stmt` (prepared-statement packets).

pub mod auth;
pub mod binary_row;
pub mod codec;
pub mod constants;
pub mod handshake;
pub mod packet;
pub mod response;
pub mod stmt;
pub mod tls;

pub use packet::Framed;

/// Protocol-level failures. A failure here costs the one client (or backend connection) its connection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed by peer")]
    Closed,
    #[error("packet of {got} bytes exceeds max_allowed_packet ({max})")]
    PacketTooLarge { got: usize, max: usize },
    #[error("packets out of order: expected sequence id {expected}, got {got}")]
    OutOfOrder { expected: u8, got: u8 },
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}

pub type Result<T> = std::result::Result<T, Error>;
