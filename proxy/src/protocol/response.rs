//! OK, ERR and EOF packets: encoding for answers the proxy makes itself, decoding of the server's
//! answers (status flags, insert id, warnings, session-state tracking).

use super::codec::{Reader, put_lenenc_int, put_lenenc_str};
use super::constants::{
    CLIENT_SESSION_TRACK, SERVER_SESSION_STATE_CHANGED, SESSION_TRACK_SCHEMA,
    SESSION_TRACK_SYSTEM_VARIABLES,
};
use super::{Error, Result};

/// A decoded OK packet (header 0x00, or 0xfe when it ends a result under `CLIENT_DEPRECATE_EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkPacket<'a> {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    pub info: &'a [u8],
    /// Raw session-state-change block, empty unless `SERVER_SESSION_STATE_CHANGED`.
    pub session_state: &'a [u8],
}

/// Decodes an OK packet as the server sent it under capabilities `caps`.
pub fn parse_ok(payload: &[u8], caps: u32) -> Result<OkPacket<'_>> {
    let mut r = Reader::new(payload);
    let header = r.u8()?;
    if header != 0x00 && header != 0xfe {
        return Err(Error::Malformed("not an OK packet"));
    }
    let affected_rows = r.lenenc_int()?;
    let last_insert_id = r.lenenc_int()?;
    let status = r.u16()?;
    let warnings = r.u16()?;
    let (info, session_state) = if caps & CLIENT_SESSION_TRACK != 0 {
        let info = if r.is_empty() {
            &[][..]
        } else {
            r.lenenc_str()?
        };
        let state = if status & SERVER_SESSION_STATE_CHANGED != 0 && !r.is_empty() {
            r.lenenc_str()?
        } else {
            &[][..]
        };
        (info, state)
    } else {
        // Servers send a length-encoded info here too (see `encode_ok`); a packet whose rest is
        // not exactly one length-encoded string is taken as a raw EOF string.
        let rest = r.rest();
        let mut l = Reader::new(rest);
        match l.lenenc_str() {
            Ok(info) if l.is_empty() => (info, &[][..]),
            _ => (rest, &[][..]),
        }
    };
    Ok(OkPacket {
        affected_rows,
        last_insert_id,
        status,
        warnings,
        info,
        session_state,
    })
}

/// Encodes an OK packet for a client with capabilities `caps`.
pub fn encode_ok(out: &mut Vec<u8>, header: u8, ok: &OkPacket<'_>, caps: u32) {
    out.push(header);
    put_lenenc_int(out, ok.affected_rows);
    put_lenenc_int(out, ok.last_insert_id);
    let mut status = ok.status;
    if caps & CLIENT_SESSION_TRACK == 0 {
        status &= !SERVER_SESSION_STATE_CHANGED;
    }
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&ok.warnings.to_le_bytes());
    if caps & CLIENT_SESSION_TRACK != 0 {
        if !ok.info.is_empty() || status & SERVER_SESSION_STATE_CHANGED != 0 {
            put_lenenc_str(out, ok.info);
        }
        if status & SERVER_SESSION_STATE_CHANGED != 0 {
            put_lenenc_str(out, ok.session_state);
        }
    } else if !ok.info.is_empty() {
        // The protocol documentation says `string<EOF>`, but servers send the info as
        // `string<lenenc>` (sql/protocol_classic.cc `net_send_ok`), and clients (mysql_common,
        // libmysqlclient) read it so: an EOF string makes them misread the whole packet.
        put_lenenc_str(out, ok.info);
    }
}

/// A plain OK with the given status flags.
pub fn simple_ok(status: u16, caps: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    let ok = OkPacket {
        affected_rows: 0,
        last_insert_id: 0,
        status,
        warnings: 0,
        info: &[],
        session_state: &[],
    };
    encode_ok(&mut out, 0x00, &ok, caps);
    out
}

/// An EOF packet (protocol 4.1).
pub fn encode_eof(warnings: u16, status: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(5);
    out.push(0xfe);
    out.extend_from_slice(&warnings.to_le_bytes());
    out.extend_from_slice(&status.to_le_bytes());
    out
}

/// Warnings and status of an EOF packet.
pub fn parse_eof(payload: &[u8]) -> Result<(u16, u16)> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0xfe {
        return Err(Error::Malformed("not an EOF packet"));
    }
    Ok((r.u16()?, r.u16()?))
}

/// An ERR packet (protocol 4.1, with SQLSTATE).
pub fn encode_err(code: u16, sqlstate: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + message.len());
    out.push(0xff);
    out.extend_from_slice(&code.to_le_bytes());
    out.push(b'#');
    let state = sqlstate.as_bytes();
    let mut five = [b'H', b'Y', b'0', b'0', b'0'];
    for (d, s) in five.iter_mut().zip(state.iter()) {
        *d = *s;
    }
    out.extend_from_slice(&five);
    out.extend_from_slice(message.as_bytes());
    out
}

/// A decoded ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    pub code: u16,
    pub sqlstate: String,
    pub message: String,
}

pub fn parse_err(payload: &[u8]) -> Result<ErrPacket> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0xff {
        return Err(Error::Malformed("not an ERR packet"));
    }
    let code = r.u16()?;
    let mut sqlstate = String::from("HY000");
    if r.remaining() >= 6 && payload[3] == b'#' {
        r.take(1)?;
        sqlstate = String::from_utf8_lossy(r.take(5)?).into_owned();
    }
    let message = String::from_utf8_lossy(r.rest()).into_owned();
    Ok(ErrPacket {
        code,
        sqlstate,
        message,
    })
}

/// One session-state change reported by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange<'a> {
    SystemVariable { name: &'a [u8], value: &'a [u8] },
    Schema(&'a [u8]),
    Other(u8),
}

/// Decodes the session-state-change block of an OK packet.
pub fn state_changes(block: &[u8]) -> Result<Vec<StateChange<'_>>> {
    let mut r = Reader::new(block);
    let mut out = Vec::new();
    while !r.is_empty() {
        let kind = r.u8()?;
        let data = r.lenenc_str()?;
        let mut d = Reader::new(data);
        match kind {
            SESSION_TRACK_SYSTEM_VARIABLES => {
                let name = d.lenenc_str()?;
                let value = d.lenenc_str()?;
                out.push(StateChange::SystemVariable { name, value });
            }
            SESSION_TRACK_SCHEMA => out.push(StateChange::Schema(d.lenenc_str()?)),
            other => out.push(StateChange::Other(other)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::constants::SERVER_STATUS_AUTOCOMMIT;

    #[test]
    fn ok_round_trips_with_session_state() {
        let mut state = Vec::new();
        let mut var = Vec::new();
        put_lenenc_str(&mut var, b"sql_mode");
        put_lenenc_str(&mut var, b"ANSI");
        state.push(SESSION_TRACK_SYSTEM_VARIABLES);
        put_lenenc_str(&mut state, &var);
        let mut schema = Vec::new();
        put_lenenc_str(&mut schema, b"shop");
        state.push(SESSION_TRACK_SCHEMA);
        put_lenenc_str(&mut state, &schema);
        let ok = OkPacket {
            affected_rows: 3,
            last_insert_id: 77,
            status: SERVER_STATUS_AUTOCOMMIT | SERVER_SESSION_STATE_CHANGED,
            warnings: 1,
            info: b"",
            session_state: &state,
        };
        let mut out = Vec::new();
        encode_ok(&mut out, 0, &ok, CLIENT_SESSION_TRACK);
        let back = parse_ok(&out, CLIENT_SESSION_TRACK).unwrap();
        assert_eq!(back, ok);
        let changes = state_changes(back.session_state).unwrap();
        assert_eq!(
            changes,
            vec![
                StateChange::SystemVariable {
                    name: b"sql_mode",
                    value: b"ANSI"
                },
                StateChange::Schema(b"shop")
            ]
        );
        // Without the capability the state block is dropped and the flag cleared.
        let mut plain = Vec::new();
        encode_ok(&mut plain, 0, &back, 0);
        let p = parse_ok(&plain, 0).unwrap();
        assert_eq!(p.status, SERVER_STATUS_AUTOCOMMIT);
        assert!(p.session_state.is_empty());
    }

    #[test]
    fn err_round_trips() {
        let e = encode_err(1045, "28000", "Access denied");
        let p = parse_err(&e).unwrap();
        assert_eq!(
            (p.code, p.sqlstate.as_str(), p.message.as_str()),
            (1045, "28000", "Access denied")
        );
    }

    #[test]
    fn truncated_ok_is_malformed() {
        assert!(parse_ok(&[0, 1], 0).is_err());
        assert!(state_changes(&[0, 5, 1]).is_err());
    }
}
