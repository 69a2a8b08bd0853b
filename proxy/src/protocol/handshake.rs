//! Connection phase packets: the protocol-10 greeting, the client's handshake response (and SSL
//! request), auth switch, and COM_CHANGE_USER's payload.

use super::codec::{Reader, put_lenenc_str};
use super::constants::*;
use super::{Error, Result};

/// The server's greeting (Initial Handshake Packet, protocol 10).
#[derive(Debug, Clone)]
pub struct Greeting {
    pub server_version: String,
    pub connection_id: u32,
    pub scramble: Vec<u8>,
    pub capabilities: u32,
    pub collation: u8,
    pub status: u16,
    pub auth_plugin: String,
}

impl Greeting {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        out.push(10);
        out.extend_from_slice(self.server_version.as_bytes());
        out.push(0);
        out.extend_from_slice(&self.connection_id.to_le_bytes());
        out.extend_from_slice(&self.scramble[..8]);
        out.push(0);
        out.extend_from_slice(&(self.capabilities as u16).to_le_bytes());
        out.push(self.collation);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&((self.capabilities >> 16) as u16).to_le_bytes());
        out.push((self.scramble.len() + 1) as u8);
        out.extend_from_slice(&[0u8; 10]);
        out.extend_from_slice(&self.scramble[8..]);
        out.push(0);
        out.extend_from_slice(self.auth_plugin.as_bytes());
        out.push(0);
        out
    }

    pub fn parse(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload);
        let protocol = r.u8()?;
        if protocol == 0xff {
            return Err(Error::Malformed(
                "server refused the connection in its greeting",
            ));
        }
        if protocol != 10 {
            return Err(Error::Malformed("unsupported protocol version"));
        }
        let server_version = String::from_utf8_lossy(r.nul_str()?).into_owned();
        let connection_id = r.u32()?;
        let mut scramble = r.take(8)?.to_vec();
        r.u8()?;
        let caps_low = u32::from(r.u16()?);
        let collation = r.u8()?;
        let status = r.u16()?;
        let caps_high = u32::from(r.u16()?);
        let capabilities = caps_low | caps_high << 16;
        let data_len = usize::from(r.u8()?);
        r.take(10)?;
        if capabilities & CLIENT_SECURE_CONNECTION != 0 {
            let n = data_len.saturating_sub(8).max(13);
            let part2 = r.take(n.min(r.remaining()))?;
            scramble.extend_from_slice(part2.strip_suffix(&[0]).unwrap_or(part2));
        }
        let auth_plugin = if capabilities & CLIENT_PLUGIN_AUTH != 0 {
            String::from_utf8_lossy(r.nul_str_or_rest()).into_owned()
        } else {
            String::from(super::auth::NATIVE_PASSWORD)
        };
        Ok(Self {
            server_version,
            connection_id,
            scramble,
            capabilities,
            collation,
            status,
            auth_plugin,
        })
    }
}

/// The client's Handshake Response 41.
#[derive(Debug, Clone, Default)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    pub max_packet: u32,
    pub collation: u8,
    pub user: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Option<Vec<u8>>,
    pub auth_plugin: Option<String>,
}

/// Whether a handshake-phase payload is an SSL request (capabilities + max packet + charset + filler only).
pub fn is_ssl_request(payload: &[u8]) -> bool {
    payload.len() == 32 && {
        let caps = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
        caps & CLIENT_SSL != 0
    }
}

impl HandshakeResponse {
    pub fn parse(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload);
        let capabilities = r.u32()?;
        if capabilities & CLIENT_PROTOCOL_41 == 0 {
            return Err(Error::Malformed("client does not speak protocol 4.1"));
        }
        let max_packet = r.u32()?;
        let collation = r.u8()?;
        r.take(23)?;
        let user = r.nul_str()?.to_vec();
        let auth_response = if capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            r.lenenc_str()?.to_vec()
        } else if capabilities & CLIENT_SECURE_CONNECTION != 0 {
            let n = usize::from(r.u8()?);
            r.take(n)?.to_vec()
        } else {
            r.nul_str()?.to_vec()
        };
        let database = if capabilities & CLIENT_CONNECT_WITH_DB != 0 && !r.is_empty() {
            Some(r.nul_str_or_rest().to_vec()).filter(|d| !d.is_empty())
        } else {
            None
        };
        let auth_plugin = if capabilities & CLIENT_PLUGIN_AUTH != 0 && !r.is_empty() {
            Some(String::from_utf8_lossy(r.nul_str_or_rest()).into_owned())
        } else {
            None
        };
        Ok(Self {
            capabilities,
            max_packet,
            collation,
            user,
            auth_response,
            database,
            auth_plugin,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&self.capabilities.to_le_bytes());
        out.extend_from_slice(&self.max_packet.to_le_bytes());
        out.push(self.collation);
        out.extend_from_slice(&[0u8; 23]);
        out.extend_from_slice(&self.user);
        out.push(0);
        if self.capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            put_lenenc_str(&mut out, &self.auth_response);
        } else {
            out.push(self.auth_response.len() as u8);
            out.extend_from_slice(&self.auth_response);
        }
        if let Some(db) = &self.database {
            out.extend_from_slice(db);
            out.push(0);
        }
        if let Some(p) = &self.auth_plugin {
            out.extend_from_slice(p.as_bytes());
            out.push(0);
        }
        out
    }
}

/// Auth Switch Request: tells the client to answer `scramble` with `plugin`.
pub fn encode_auth_switch(plugin: &str, scramble: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + plugin.len() + scramble.len() + 1);
    out.push(0xfe);
    out.extend_from_slice(plugin.as_bytes());
    out.push(0);
    out.extend_from_slice(scramble);
    out.push(0);
    out
}

/// Parses an Auth Switch Request from a server: plugin name and its data.
pub fn parse_auth_switch(payload: &[u8]) -> Result<(String, Vec<u8>)> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0xfe {
        return Err(Error::Malformed("not an auth switch request"));
    }
    let plugin = String::from_utf8_lossy(r.nul_str_or_rest()).into_owned();
    let data = r.rest();
    Ok((plugin, data.strip_suffix(&[0]).unwrap_or(data).to_vec()))
}

/// COM_CHANGE_USER's payload (after the command byte).
#[derive(Debug, Clone)]
pub struct ChangeUser {
    pub user: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Option<Vec<u8>>,
    pub collation: Option<u8>,
    pub auth_plugin: Option<String>,
}

impl ChangeUser {
    pub fn parse(body: &[u8], caps: u32) -> Result<Self> {
        let mut r = Reader::new(body);
        let user = r.nul_str()?.to_vec();
        let auth_response = if caps & CLIENT_SECURE_CONNECTION != 0 {
            let n = usize::from(r.u8()?);
            r.take(n)?.to_vec()
        } else {
            r.nul_str()?.to_vec()
        };
        let database = Some(r.nul_str_or_rest().to_vec()).filter(|d| !d.is_empty());
        let collation = if r.remaining() >= 2 {
            Some(r.u16()? as u8)
        } else {
            None
        };
        let auth_plugin = if caps & CLIENT_PLUGIN_AUTH != 0 && !r.is_empty() {
            Some(String::from_utf8_lossy(r.nul_str_or_rest()).into_owned())
        } else {
            None
        };
        Ok(Self {
            user,
            auth_response,
            database,
            collation,
            auth_plugin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn greeting_round_trips() {
        let g = Greeting {
            server_version: "5.5.5-10.11.19-MariaDB-PeakGate".into(),
            connection_id: 42,
            scramble: (1..=20).collect(),
            capabilities: PROXY_CAPABILITIES,
            collation: DEFAULT_COLLATION,
            status: SERVER_STATUS_AUTOCOMMIT,
            auth_plugin: "mysql_native_password".into(),
        };
        let back = Greeting::parse(&g.encode()).unwrap();
        assert_eq!(back.scramble, g.scramble);
        assert_eq!(back.capabilities, g.capabilities);
        assert_eq!(back.connection_id, 42);
        assert_eq!(back.auth_plugin, "mysql_native_password");
    }

    #[test]
    fn handshake_response_round_trips() {
        let h = HandshakeResponse {
            capabilities: PROXY_CAPABILITIES,
            max_packet: 1 << 24,
            collation: 45,
            user: b"shop".to_vec(),
            auth_response: vec![9; 20],
            database: Some(b"shop".to_vec()),
            auth_plugin: Some("mysql_native_password".into()),
        };
        let back = HandshakeResponse::parse(&h.encode()).unwrap();
        assert_eq!(back.user, h.user);
        assert_eq!(back.auth_response, h.auth_response);
        assert_eq!(back.database, h.database);
        assert_eq!(back.auth_plugin, h.auth_plugin);
    }

    proptest! {
        #[test]
        fn handshake_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = HandshakeResponse::parse(&bytes);
            let _ = Greeting::parse(&bytes);
            let _ = ChangeUser::parse(&bytes, PROXY_CAPABILITIES);
            let _ = parse_auth_switch(&bytes);
            let _ = is_ssl_request(&bytes);
        }
    }
}
