//! Binary protocol result rows (the answer to COM_STMT_EXECUTE) made from text values: what the
//! proxy sends when it builds a prepared statement's result itself (a scatter read merged from
//! the shards' text rows).
//!
//! Row layout: `0x00`, a NULL bitmap of `(columns + 7 + 2) / 8` bytes whose bits start at offset
//! 2, then each non-NULL value in its type's encoding: integers little-endian in their width,
//! FLOAT/DOUBLE as IEEE 754, DATE/DATETIME/TIMESTAMP and TIME as length-prefixed structures,
//! everything else (DECIMAL, strings, BLOBs, JSON, ...) as a length-encoded string.

use super::codec::put_lenenc_str;

/// A text value that does not read as its column's type.
#[derive(Debug, thiserror::Error)]
#[error("column {column}: {value:?} is not a valid value of type 0x{ty:02x}")]
pub struct EncodeError {
    pub column: usize,
    pub ty: u8,
    pub value: String,
}

/// Appends the binary row of `cells` (text values, `None` for NULL) whose columns have the wire
/// types `types` (type byte, UNSIGNED flag).
pub fn encode(
    out: &mut Vec<u8>,
    cells: &[Option<Vec<u8>>],
    types: &[(u8, bool)],
) -> Result<(), EncodeError> {
    out.push(0x00);
    let bitmap_at = out.len();
    out.resize(bitmap_at + (cells.len() + 7 + 2) / 8, 0);
    for (i, cell) in cells.iter().enumerate() {
        let Some(v) = cell else {
            let bit = i + 2;
            out[bitmap_at + bit / 8] |= 1 << (bit % 8);
            continue;
        };
        let (ty, unsigned) = types.get(i).copied().unwrap_or((0xfd, false));
        let bad = || EncodeError {
            column: i,
            ty,
            value: String::from_utf8_lossy(v).into_owned(),
        };
        let text = std::str::from_utf8(v).map_err(|_| bad());
        match ty {
            // TINY, SHORT/YEAR, LONG/INT24, LONGLONG.
            0x01 | 0x02 | 0x0d | 0x03 | 0x09 | 0x08 => {
                let width = match ty {
                    0x01 => 1,
                    0x02 | 0x0d => 2,
                    0x03 | 0x09 => 4,
                    _ => 8,
                };
                let t = text?.trim();
                let bits = if unsigned {
                    t.parse::<u64>().map_err(|_| bad())?
                } else {
                    t.parse::<i64>().map_err(|_| bad())? as u64
                };
                out.extend_from_slice(&bits.to_le_bytes()[..width]);
            }
            0x04 => {
                let f: f32 = text?.trim().parse().map_err(|_| bad())?;
                out.extend_from_slice(&f.to_le_bytes());
            }
            0x05 => {
                let f: f64 = text?.trim().parse().map_err(|_| bad())?;
                out.extend_from_slice(&f.to_le_bytes());
            }
            0x0a | 0x07 | 0x0c | 0x11 | 0x12 => datetime(out, text?).ok_or_else(bad)?,
            0x0b | 0x13 => time(out, text?).ok_or_else(bad)?,
            _ => put_lenenc_str(out, v),
        }
    }
    Ok(())
}

/// `YYYY-MM-DD[ HH:MM:SS[.ffffff]]` as the binary DATE/DATETIME structure (shortest length).
fn datetime(out: &mut Vec<u8>, t: &str) -> Option<()> {
    let (date, clock) = match t.split_once(' ') {
        Some((d, c)) => (d, Some(c)),
        None => (t, None),
    };
    let mut d = date.splitn(3, '-');
    let year: u16 = d.next()?.parse().ok()?;
    let month: u8 = d.next()?.parse().ok()?;
    let day: u8 = d.next()?.parse().ok()?;
    let (h, m, s, micro) = match clock {
        Some(c) => clock_parts(c)?,
        None => (0, 0, 0, 0),
    };
    let h = u8::try_from(h).ok()?;
    if micro != 0 {
        out.push(11);
    } else if h != 0 || m != 0 || s != 0 {
        out.push(7);
    } else if year != 0 || month != 0 || day != 0 {
        out.push(4);
    } else {
        out.push(0);
        return Some(());
    }
    let len = out[out.len() - 1];
    out.extend_from_slice(&year.to_le_bytes());
    out.extend_from_slice(&[month, day]);
    if len >= 7 {
        out.extend_from_slice(&[h, m, s]);
    }
    if len == 11 {
        out.extend_from_slice(&micro.to_le_bytes());
    }
    Some(())
}

/// `[-]H+:MM:SS[.ffffff]` as the binary TIME structure.
fn time(out: &mut Vec<u8>, t: &str) -> Option<()> {
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (hours, m, s, micro) = clock_parts(t)?;
    if hours == 0 && m == 0 && s == 0 && micro == 0 {
        out.push(0);
        return Some(());
    }
    out.push(if micro != 0 { 12 } else { 8 });
    out.push(u8::from(neg));
    out.extend_from_slice(&(hours / 24).to_le_bytes());
    out.extend_from_slice(&[u8::try_from(hours % 24).ok()?, m, s]);
    if micro != 0 {
        out.extend_from_slice(&micro.to_le_bytes());
    }
    Some(())
}

/// `H+:MM:SS[.f{1,6}]` -> (hours, minutes, seconds, microseconds).
fn clock_parts(c: &str) -> Option<(u32, u8, u8, u32)> {
    let (hms, frac) = match c.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (c, None),
    };
    let mut p = hms.splitn(3, ':');
    let h: u32 = p.next()?.parse().ok()?;
    let m: u8 = p.next()?.parse().ok()?;
    let s: u8 = p.next()?.parse().ok()?;
    let micro = match frac {
        Some(f) if !f.is_empty() && f.len() <= 6 && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<u32>().ok()? * 10u32.pow(6 - f.len() as u32)
        }
        Some(_) => return None,
        None => 0,
    };
    Some((h, m, s, micro))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[Option<&str>], types: &[(u8, bool)]) -> Vec<u8> {
        let cells: Vec<Option<Vec<u8>>> = cells
            .iter()
            .map(|c| c.map(|s| s.as_bytes().to_vec()))
            .collect();
        let mut out = Vec::new();
        encode(&mut out, &cells, types).expect("encodes");
        out
    }

    #[test]
    fn integers_take_their_width_and_nulls_their_bit() {
        let out = row(
            &[Some("-2"), None, Some("300"), Some("18446744073709551615")],
            &[(0x01, false), (0x03, false), (0x02, false), (0x08, true)],
        );
        // header, bitmap (4 columns + 2 = 1 byte; column 1 is bit 3), -2 as one byte, 300 as two,
        // u64::MAX as eight.
        let mut want = vec![0x00, 0b0000_1000, 0xfe, 0x2c, 0x01];
        want.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(out, want);
    }

    #[test]
    fn floats_decimals_and_strings() {
        let out = row(
            &[Some("1.5"), Some("12.50"), Some("héllo")],
            &[(0x05, false), (0xf6, false), (0xfd, false)],
        );
        let mut want = vec![0x00, 0x00];
        want.extend_from_slice(&1.5f64.to_le_bytes());
        want.extend_from_slice(&[5, b'1', b'2', b'.', b'5', b'0']);
        want.push(6);
        want.extend_from_slice("héllo".as_bytes());
        assert_eq!(out, want);
    }

    #[test]
    fn temporal_values_use_the_shortest_structure() {
        let out = row(
            &[
                Some("2026-11-26"),
                Some("2026-11-26 10:20:30"),
                Some("2026-11-26 10:20:30.5"),
                Some("0000-00-00 00:00:00"),
                Some("-26:00:01.000002"),
            ],
            &[
                (0x0a, false),
                (0x0c, false),
                (0x07, false),
                (0x0c, false),
                (0x0b, false),
            ],
        );
        let mut want = vec![0x00, 0x00];
        want.extend_from_slice(&[4, 0xea, 0x07, 11, 26]);
        want.extend_from_slice(&[7, 0xea, 0x07, 11, 26, 10, 20, 30]);
        want.extend_from_slice(&[11, 0xea, 0x07, 11, 26, 10, 20, 30]);
        want.extend_from_slice(&500_000u32.to_le_bytes());
        want.push(0);
        want.extend_from_slice(&[12, 1, 1, 0, 0, 0, 2, 0, 1]);
        want.extend_from_slice(&2u32.to_le_bytes());
        assert_eq!(out, want);
    }

    #[test]
    fn a_value_that_is_not_its_type_is_an_error() {
        let cells = vec![Some(b"abc".to_vec())];
        let mut out = Vec::new();
        let e = encode(&mut out, &cells, &[(0x03, false)]).expect_err("not an int");
        assert_eq!(e.column, 0);
        assert!(e.to_string().contains("\"abc\""), "{e}");
    }
}
