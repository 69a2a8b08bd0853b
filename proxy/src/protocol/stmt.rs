//! Prepared-statement packets: the PREPARE answer, and EXECUTE rewriting (statement id, parameter types).

use std::collections::BTreeMap;

use super::codec::Reader;
use super::{Error, Result};

/// The first packet of a COM_STMT_PREPARE answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareOk {
    pub stmt_id: u32,
    pub num_columns: u16,
    pub num_params: u16,
    pub warnings: u16,
}

pub fn parse_prepare_ok(payload: &[u8]) -> Result<PrepareOk> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0 {
        return Err(Error::Malformed("not a prepare OK"));
    }
    let stmt_id = r.u32()?;
    let num_columns = r.u16()?;
    let num_params = r.u16()?;
    let warnings = if r.remaining() >= 3 {
        r.u8()?;
        r.u16()?
    } else {
        0
    };
    Ok(PrepareOk {
        stmt_id,
        num_columns,
        num_params,
        warnings,
    })
}

/// Reads the statement id of a COM_STMT_* command payload (command byte included).
pub fn command_stmt_id(payload: &[u8]) -> Result<u32> {
    let mut r = Reader::new(payload);
    r.u8()?;
    r.u32()
}

/// Overwrites the 4-byte statement id at `at` (1 for commands and for the prepare OK).
pub fn set_stmt_id(payload: &mut [u8], at: usize, id: u32) {
    if payload.len() >= at + 4 {
        payload[at..at + 4].copy_from_slice(&id.to_le_bytes());
    }
}

/// The parts of a COM_STMT_EXECUTE the proxy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execute {
    pub stmt_id: u32,
    pub flags: u8,
    /// Parameter types the client sent with this execute (2 bytes per parameter), if it sent them.
    pub types: Option<Vec<u8>>,
}

/// Decodes COM_STMT_EXECUTE (command byte included), checking every length against `num_params`.
pub fn parse_execute(payload: &[u8], num_params: u16) -> Result<Execute> {
    let mut r = Reader::new(payload);
    r.u8()?;
    let stmt_id = r.u32()?;
    let flags = r.u8()?;
    r.u32()?;
    let n = usize::from(num_params);
    let mut types = None;
    if n > 0 {
        r.take(n.div_ceil(8))?;
        if r.u8()? == 1 {
            types = Some(r.take(2 * n)?.to_vec());
        }
    }
    Ok(Execute {
        stmt_id,
        flags,
        types,
    })
}

/// Builds the EXECUTE to send to a backend: the backend's statement id, and the parameter types
/// always present (a backend connection may never have seen the types the client bound earlier).
pub fn rewrite_execute(
    payload: &[u8],
    num_params: u16,
    backend_id: u32,
    types: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let n = usize::from(num_params);
    let mut out = Vec::with_capacity(payload.len() + 2 * n + 1);
    if n == 0 {
        out.extend_from_slice(payload);
        set_stmt_id(&mut out, 1, backend_id);
        return Ok(out);
    }
    let head = 1 + 4 + 1 + 4 + n.div_ceil(8);
    if payload.len() < head + 1 {
        return Err(Error::Malformed(
            "execute packet shorter than its parameter header",
        ));
    }
    out.extend_from_slice(&payload[..head]);
    set_stmt_id(&mut out, 1, backend_id);
    if payload[head] == 1 {
        if payload.len() < head + 1 + 2 * n {
            return Err(Error::Malformed(
                "execute packet shorter than its parameter types",
            ));
        }
        out.extend_from_slice(&payload[head..]);
    } else {
        let types = types.ok_or(Error::Malformed(
            "execute without parameter types, none bound before",
        ))?;
        if types.len() != 2 * n {
            return Err(Error::Malformed(
                "stored parameter types do not match the statement",
            ));
        }
        out.push(1);
        out.extend_from_slice(types);
        out.extend_from_slice(&payload[head + 1..]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn execute(id: u32, n: u16, bound: bool) -> Vec<u8> {
        let mut p = vec![0x17];
        p.extend_from_slice(&id.to_le_bytes());
        p.push(0);
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend(std::iter::repeat_n(0u8, usize::from(n).div_ceil(8)));
        p.push(u8::from(bound));
        if bound {
            for _ in 0..n {
                p.extend_from_slice(&[8, 0]);
            }
        }
        for _ in 0..n {
            p.extend_from_slice(&5u64.to_le_bytes());
        }
        p
    }

    #[test]
    fn execute_gets_types_inserted() {
        let first = execute(1, 2, true);
        let parsed = parse_execute(&first, 2).unwrap();
        assert_eq!(parsed.types.as_deref(), Some(&[8, 0, 8, 0][..]));
        let later = execute(1, 2, false);
        let out = rewrite_execute(&later, 2, 99, parsed.types.as_deref()).unwrap();
        assert_eq!(out, {
            let mut e = execute(99, 2, true);
            e.truncate(e.len());
            e
        });
    }

    #[test]
    fn lying_execute_is_malformed() {
        assert!(parse_execute(&[0x17, 1, 0], 1).is_err());
        assert!(rewrite_execute(&[0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0], 3, 5, None).is_err());
        assert!(rewrite_execute(&execute(1, 2, false), 2, 5, None).is_err());
    }

    proptest! {
        #[test]
        fn execute_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), n in 0u16..20) {
            let _ = parse_execute(&bytes, n);
            let _ = rewrite_execute(&bytes, n, 7, Some(&[0u8; 40][..(2 * n as usize).min(40)]));
            let _ = parse_prepare_ok(&bytes);
            let _ = command_stmt_id(&bytes);
        }
    }
}

/// A parameter value of COM_STMT_EXECUTE, as far as routing needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Null,
    Int(i64),
    UInt(u64),
    Bytes(Vec<u8>),
    /// FLOAT or DOUBLE.
    Double(f64),
    /// DATE, DATETIME, TIMESTAMP or TIME, as MariaDB's text form (`2026-11-26 10:00:00.5`).
    Temporal(String),
}

impl ParamValue {
    /// The value as an SQL literal; `None` for a non-finite float.
    pub fn literal(&self) -> Option<String> {
        Some(match self {
            ParamValue::Null => "NULL".to_string(),
            ParamValue::Int(v) => v.to_string(),
            ParamValue::UInt(v) => v.to_string(),
            // Text as a quoted string (so the column's collation compares it), anything else,
            // or text with a backslash (NO_BACKSLASH_ESCAPES would read it differently), in hex.
            ParamValue::Bytes(b) if std::str::from_utf8(b).is_ok() && !b.contains(&b'\\') => {
                crate::session_state::quote_str(b)
            }
            ParamValue::Bytes(b) => crate::session_state::hex_literal(b),
            ParamValue::Double(v) if v.is_finite() => format!("{v:e}"),
            ParamValue::Double(_) => return None,
            ParamValue::Temporal(t) => format!("'{t}'"),
        })
    }
}

/// `sql` with each `?` placeholder replaced by its parameter's literal (`None` when a parameter
/// cannot be written as one, or the counts differ).
pub fn interpolate(sql: &str, params: &[ParamValue]) -> Option<String> {
    use peakgate_router::lexer::{TokenKind, tokenize};
    let mut out = String::with_capacity(sql.len() + params.len() * 8);
    let mut at = 0;
    let mut next = params.iter();
    for t in tokenize(sql.as_bytes()) {
        if t.kind == TokenKind::Placeholder {
            out.push_str(sql.get(at..t.start)?);
            out.push_str(&next.next()?.literal()?);
            at = t.end;
        }
    }
    if next.next().is_some() {
        return None;
    }
    out.push_str(sql.get(at..)?);
    Some(out)
}

/// The text form of a binary DATE/DATETIME/TIMESTAMP (`time = false`) or TIME value.
fn temporal_text(b: &[u8], time: bool) -> String {
    let u32_at = |i: usize| {
        b.get(i..i + 4)
            .map_or(0, |x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
    };
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    if time {
        let (neg, days) = (at(0) == 1, u32_at(1));
        let hours = u64::from(days) * 24 + u64::from(at(5));
        let mut t = format!(
            "{}{hours:02}:{:02}:{:02}",
            if neg { "-" } else { "" },
            at(6),
            at(7)
        );
        if b.len() >= 12 {
            t.push_str(&format!(".{:06}", u32_at(8)));
        }
        return t;
    }
    let year = b.get(0..2).map_or(0, |x| u16::from_le_bytes([x[0], x[1]]));
    let mut t = format!("{year:04}-{:02}-{:02}", at(2), at(3));
    if b.len() >= 7 {
        t.push_str(&format!(" {:02}:{:02}:{:02}", at(4), at(5), at(6)));
    }
    if b.len() >= 11 {
        t.push_str(&format!(".{:06}", u32_at(7)));
    }
    t
}

/// Decodes the parameter values of COM_STMT_EXECUTE (command byte included) with `types` (2
/// bytes per parameter: type, and 0x80 for unsigned), the ones the client sent now or earlier.
/// A parameter in `long_data` (sent with COM_STMT_SEND_LONG_DATA) has no value in the packet,
/// whatever its NULL bit says (the server reads it so too): it is that data, as bytes.
pub fn param_values(
    payload: &[u8],
    num_params: u16,
    types: &[u8],
    long_data: &BTreeMap<u16, Vec<u8>>,
) -> Result<Vec<ParamValue>> {
    let n = usize::from(num_params);
    let mut r = Reader::new(payload);
    r.take(10)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let nulls = r.take(n.div_ceil(8))?.to_vec();
    if r.u8()? == 1 {
        r.take(2 * n)?;
    }
    if types.len() < 2 * n {
        return Err(Error::Malformed("parameter types missing"));
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if let Some(data) = u16::try_from(i).ok().and_then(|i| long_data.get(&i)) {
            out.push(ParamValue::Bytes(data.clone()));
            continue;
        }
        if nulls[i / 8] & (1 << (i % 8)) != 0 {
            out.push(ParamValue::Null);
            continue;
        }
        let unsigned = types[2 * i + 1] & 0x80 != 0;
        let int = |v: i64, u: u64| {
            if unsigned {
                ParamValue::UInt(u)
            } else {
                ParamValue::Int(v)
            }
        };
        let v = match types[2 * i] {
            0x01 => {
                let b = r.u8()?;
                int(i64::from(b as i8), u64::from(b))
            }
            0x02 | 0x0d => {
                let b = r.u16()?;
                int(i64::from(b as i16), u64::from(b))
            }
            0x03 | 0x09 => {
                let b = r.u32()?;
                int(i64::from(b as i32), u64::from(b))
            }
            0x08 => {
                let b = r.take(8)?;
                let u = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                int(u as i64, u)
            }
            0x04 => {
                let b = r.take(4)?;
                ParamValue::Double(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            0x05 => {
                let b = r.take(8)?;
                ParamValue::Double(f64::from_le_bytes([
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                ]))
            }
            t @ (0x07 | 0x0a | 0x0b | 0x0c) => {
                let len = usize::from(r.u8()?);
                ParamValue::Temporal(temporal_text(r.take(len)?, t == 0x0b))
            }
            0x06 => ParamValue::Null,
            _ => ParamValue::Bytes(r.lenenc_str()?.to_vec()),
        };
        out.push(v);
    }
    Ok(out)
}

#[cfg(test)]
mod interpolate_tests {
    use super::*;

    #[test]
    fn placeholders_outside_strings_and_comments_take_the_literals() {
        let sql = "SELECT '?', `?` FROM t /* ? */ WHERE a = ? AND b IN (?, ?) AND c = ? AND d = ?";
        let params = [
            ParamValue::Int(-3),
            ParamValue::Bytes(b"it's".to_vec()),
            ParamValue::Bytes(vec![0xff, 0x00]),
            ParamValue::Double(0.25),
            ParamValue::Temporal("2026-11-26 10:00:00".into()),
        ];
        assert_eq!(
            interpolate(sql, &params).as_deref(),
            Some(
                "SELECT '?', `?` FROM t /* ? */ WHERE a = -3 AND b IN ('it''s', X'ff00') \
                 AND c = 2.5e-1 AND d = '2026-11-26 10:00:00'"
            )
        );
        // Too few or too many parameters, non-finite floats: no text.
        assert_eq!(interpolate(sql, &params[..4]), None);
        assert_eq!(interpolate("SELECT 1", &params[..1]), None);
        assert_eq!(
            interpolate("SELECT ?", &[ParamValue::Double(f64::NAN)]),
            None
        );
        assert_eq!(
            interpolate("SELECT ?", &[ParamValue::Bytes(b"a\\b".to_vec())]).as_deref(),
            Some("SELECT X'615c62'")
        );
    }

    #[test]
    fn long_data_parameters_have_no_bytes_in_the_execute_packet() {
        // Three parameters: a LONGLONG, a string sent as long data, a LONGLONG; the packet holds
        // only the first and the third (after header, NULL bitmap, types).
        let types = [0x08, 0, 0xfe, 0, 0x08, 0];
        let packet = |nulls: u8| {
            let mut p = vec![0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, nulls, 1];
            p.extend_from_slice(&types);
            p.extend_from_slice(&7i64.to_le_bytes());
            p.extend_from_slice(&42i64.to_le_bytes());
            p
        };
        let long = BTreeMap::from([(1u16, b"long text".to_vec())]);
        let want = vec![
            ParamValue::Int(7),
            ParamValue::Bytes(b"long text".to_vec()),
            ParamValue::Int(42),
        ];
        assert_eq!(param_values(&packet(0), 3, &types, &long).unwrap(), want);
        // The long data counts even with the parameter's NULL bit set (as on the server).
        assert_eq!(
            param_values(&packet(0b010), 3, &types, &long).unwrap(),
            want
        );
        // Read without knowing about the long data, the string would take the third value's
        // bytes (and here run past the packet).
        assert!(param_values(&packet(0), 3, &types, &BTreeMap::new()).is_err());
    }

    #[test]
    fn binary_temporal_parameters_read_as_text() {
        assert_eq!(temporal_text(&[0xea, 0x07, 11, 26], false), "2026-11-26");
        assert_eq!(
            temporal_text(&[0xea, 0x07, 11, 26, 1, 2, 3, 5, 0, 0, 0], false),
            "2026-11-26 01:02:03.000005"
        );
        assert_eq!(temporal_text(&[1, 2, 0, 0, 0, 3, 4, 5], true), "-51:04:05");
    }
}
