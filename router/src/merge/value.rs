//! Text-protocol cells by column type: comparison, exact decimal arithmetic, and MariaDB-like
//! formatting of merged aggregates.
//!
//! A cell is the text the server sent (`Option<Vec<u8>>`, `None` = SQL NULL). Integers compare
//! as integers, decimals exactly (on their digits, never through `f64`), floats as `f64`, and
//! everything else byte-wise: that is the `binary` collation. Case- and accent-insensitive
//! collations (`utf8mb4_general_ci`, ...) are NOT emulated, so a merged `ORDER BY name` or
//! `GROUP BY name` over such a column can differ from a single server's in letter case order
//! and grouping.

use std::cmp::Ordering;

/// How to compare and add one column's text values (the caller maps the shards' column
/// metadata to this).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// Signed integer types (`TINYINT` .. `BIGINT`, `YEAR`).
    Int,
    /// `UNSIGNED` integer types and `BIT` rendered as a number.
    UInt,
    /// `DECIMAL` / `NUMERIC` (also what `SUM`/`AVG` of integers and decimals return).
    Decimal,
    /// `FLOAT`, `DOUBLE`.
    Float,
    /// Strings and binary strings, compared byte-wise.
    Bytes,
    /// `DATE`, `DATETIME`, `TIMESTAMP`: fixed-width text, compared byte-wise.
    Temporal,
    /// `TIME` (`[-]H+:MM:SS[.ffffff]`, hours of any width, may be negative): compared by value.
    Time,
}

/// One cell: the server's text, `None` for NULL.
pub type Cell = Option<Vec<u8>>;

/// Compares two non-NULL values of type `ty`. A value that does not parse as its type compares
/// byte-wise (never panics).
pub fn compare_values(ty: ColumnType, a: &[u8], b: &[u8]) -> Ordering {
    let typed = match ty {
        ColumnType::Int | ColumnType::UInt | ColumnType::Decimal => compare_decimal_text(a, b),
        ColumnType::Float => match (parse_f64(a), parse_f64(b)) {
            (Some(x), Some(y)) => Some(x.total_cmp(&y)),
            _ => None,
        },
        ColumnType::Time => match (time_micros(a), time_micros(b)) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => None,
        },
        ColumnType::Bytes | ColumnType::Temporal => None,
    };
    typed.unwrap_or_else(|| a.cmp(b))
}

/// A `TIME` value's text as signed microseconds.
fn time_micros(text: &[u8]) -> Option<i128> {
    let t = std::str::from_utf8(text).ok()?.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (hms, frac) = match t.split_once('.') {
        Some((a, f)) => (a, f),
        None => (t, ""),
    };
    let mut parts = hms.splitn(3, ':');
    let h: i128 = parts.next()?.parse().ok()?;
    let m: i128 = parts.next()?.parse().ok()?;
    let s: i128 = parts.next()?.parse().ok()?;
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let micro: i128 = format!("{frac:0<6}").parse().ok()?;
    let v = ((h * 60 + m) * 60 + s) * 1_000_000 + micro;
    Some(if negative { -v } else { v })
}

/// Compares two cells, NULL lowest (MySQL's order: NULLs first ascending, last descending).
pub fn compare_cells(ty: ColumnType, a: &Cell, b: &Cell) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => compare_values(ty, a, b),
    }
}

pub(crate) fn parse_f64(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text).ok()?.trim().parse().ok()
}

/// A decimal number's text split into sign, integer digits (no leading zeros) and fraction
/// digits (no trailing zeros). `None` when it is not `[+-]digits[.digits]`.
fn decimal_parts(text: &[u8]) -> Option<(bool, &[u8], &[u8])> {
    let text = text.trim_ascii();
    let (negative, rest) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let (int, frac) = match rest.iter().position(|&b| b == b'.') {
        Some(dot) => (&rest[..dot], &rest[dot + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    if (int.is_empty() && frac.is_empty()) || !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    let int_start = int.iter().position(|&b| b != b'0').unwrap_or(int.len());
    let frac_end = frac.iter().rposition(|&b| b != b'0').map_or(0, |i| i + 1);
    let (int, frac) = (&int[int_start..], &frac[..frac_end]);
    // -0 and -0.00 are zero.
    let negative = negative && !(int.is_empty() && frac.is_empty());
    Some((negative, int, frac))
}

/// Exact comparison of two decimal texts (any length); `None` if either is not a decimal.
pub(crate) fn compare_decimal_text(a: &[u8], b: &[u8]) -> Option<Ordering> {
    let (a_neg, a_int, a_frac) = decimal_parts(a)?;
    let (b_neg, b_int, b_frac) = decimal_parts(b)?;
    let magnitude = a_int
        .len()
        .cmp(&b_int.len())
        .then_with(|| a_int.cmp(b_int))
        .then_with(|| a_frac.cmp(b_frac));
    Some(match (a_neg, b_neg) {
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    })
}

/// An exact decimal: `mantissa / 10^scale`, within `i128` (38 digits; MySQL allows 65, and a sum
/// that needs more is an overflow error rather than a wrong answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decimal {
    pub(crate) mantissa: i128,
    pub(crate) scale: u32,
}

/// Most fraction digits a decimal may carry (MySQL's maximum scale is 38 too).
const MAX_SCALE: u32 = 38;

impl Decimal {
    /// Parses `[+-]digits[.digits]`; `None` when it is not one or does not fit.
    pub(crate) fn parse(text: &[u8]) -> Option<Decimal> {
        let text = text.trim_ascii();
        let (negative, rest) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            Some((b'+', rest)) => (false, rest),
            _ => (false, text),
        };
        let mut mantissa: i128 = 0;
        let mut scale = 0u32;
        let mut seen_dot = false;
        let mut digits = 0;
        for &b in rest {
            match b {
                b'0'..=b'9' => {
                    mantissa = mantissa
                        .checked_mul(10)?
                        .checked_add(i128::from(b - b'0'))?;
                    digits += 1;
                    if seen_dot {
                        scale += 1;
                    }
                }
                b'.' if !seen_dot => seen_dot = true,
                _ => return None,
            }
        }
        if digits == 0 || scale > MAX_SCALE {
            return None;
        }
        Some(Decimal {
            mantissa: if negative { -mantissa } else { mantissa },
            scale,
        })
    }

    /// `self` with `scale` fraction digits (`scale >= self.scale`).
    fn rescale(self, scale: u32) -> Option<Decimal> {
        let factor = 10i128.checked_pow(scale.checked_sub(self.scale)?)?;
        Some(Decimal {
            mantissa: self.mantissa.checked_mul(factor)?,
            scale,
        })
    }

    /// Exact sum, at the larger scale of the two.
    pub(crate) fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.rescale(scale)?, other.rescale(scale)?);
        Some(Decimal {
            mantissa: a.mantissa.checked_add(b.mantissa)?,
            scale,
        })
    }

    /// `self / divisor` with `scale` fraction digits, rounded half away from zero (MySQL's
    /// decimal division). `None` on a zero divisor or overflow.
    pub(crate) fn checked_div(self, divisor: i128, scale: u32) -> Option<Decimal> {
        if divisor == 0 || scale < self.scale || scale > MAX_SCALE {
            return None;
        }
        let numerator = self.rescale(scale)?.mantissa;
        let negative = (numerator < 0) != (divisor < 0);
        let (n, d) = (numerator.unsigned_abs(), divisor.unsigned_abs());
        let quotient = n / d;
        let remainder = n % d;
        let rounded = if remainder.checked_mul(2)? >= d {
            quotient + 1
        } else {
            quotient
        };
        let magnitude = i128::try_from(rounded).ok()?;
        Some(Decimal {
            mantissa: if negative { -magnitude } else { magnitude },
            scale,
        })
    }

    /// The text MySQL sends: `-12.50`, `0.05`, `7`.
    pub(crate) fn to_text(self) -> Vec<u8> {
        let digits = self.mantissa.unsigned_abs().to_string();
        let scale = self.scale as usize;
        let mut out = String::with_capacity(digits.len() + scale + 3);
        if self.mantissa < 0 {
            out.push('-');
        }
        if scale == 0 {
            out.push_str(&digits);
        } else if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', scale - digits.len()));
            out.push_str(&digits);
        }
        out.into_bytes()
    }
}

/// An `f64` as text: Rust's shortest round-trip form. MySQL prints large and small magnitudes
/// in exponent form (`1e20`); this prints them in full.
pub(crate) fn float_text(value: f64) -> Vec<u8> {
    value.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        Decimal::parse(text.as_bytes()).expect("a decimal")
    }

    fn text(d: Decimal) -> String {
        String::from_utf8(d.to_text()).expect("ascii")
    }

    #[test]
    fn decimals_compare_exactly_by_their_digits() {
        let cmp =
            |a: &str, b: &str| compare_values(ColumnType::Decimal, a.as_bytes(), b.as_bytes());
        assert_eq!(cmp("10.5", "9.99"), Ordering::Greater);
        assert_eq!(cmp("-10.5", "-9.99"), Ordering::Less);
        assert_eq!(cmp("1.50", "1.5"), Ordering::Equal);
        assert_eq!(cmp("-0.00", "0"), Ordering::Equal);
        assert_eq!(cmp("0.1", "-0.2"), Ordering::Greater);
        assert_eq!(cmp("007", "7.000"), Ordering::Equal);
        let big = "123456789012345678901234567890123456789012345678901234567890.1";
        assert_eq!(
            cmp(
                big,
                "123456789012345678901234567890123456789012345678901234567890.09"
            ),
            Ordering::Greater
        );
        // Integers are decimals without a point.
        let int = |a: &str, b: &str| compare_values(ColumnType::Int, a.as_bytes(), b.as_bytes());
        assert_eq!(int("-3", "2"), Ordering::Less);
        assert_eq!(int("10", "9"), Ordering::Greater);
        let uint = |a: &str, b: &str| compare_values(ColumnType::UInt, a.as_bytes(), b.as_bytes());
        assert_eq!(
            uint("18446744073709551615", "9223372036854775808"),
            Ordering::Greater
        );
    }

    #[test]
    fn other_types_compare_as_their_kind() {
        let float =
            |a: &str, b: &str| compare_values(ColumnType::Float, a.as_bytes(), b.as_bytes());
        assert_eq!(float("1e3", "999.5"), Ordering::Greater);
        assert_eq!(float("-0.5", "0.25"), Ordering::Less);
        let bytes =
            |a: &str, b: &str| compare_values(ColumnType::Bytes, a.as_bytes(), b.as_bytes());
        assert_eq!(
            bytes("B", "a"),
            Ordering::Less,
            "binary collation: uppercase first"
        );
        assert_eq!(bytes("10", "9"), Ordering::Less);
        let when =
            |a: &str, b: &str| compare_values(ColumnType::Temporal, a.as_bytes(), b.as_bytes());
        assert_eq!(
            when("2024-01-02 00:00:00", "2023-12-31 23:59:59"),
            Ordering::Greater
        );
        let time = |a: &str, b: &str| compare_values(ColumnType::Time, a.as_bytes(), b.as_bytes());
        assert_eq!(time("-40:05:00.5", "-39:05:09.5"), Ordering::Less);
        assert_eq!(time("100:00:00", "99:59:59.999999"), Ordering::Greater);
        assert_eq!(time("-00:00:01", "00:00:00"), Ordering::Less);
        assert_eq!(time("10:00:00.5", "10:00:00.500000"), Ordering::Equal);
        // Garbage in a numeric column falls back to bytes instead of panicking.
        assert_eq!(
            compare_values(ColumnType::Int, b"x", b"1"),
            Ordering::Greater
        );
        assert_eq!(
            compare_cells(ColumnType::Int, &None, &Some(b"1".to_vec())),
            Ordering::Less
        );
    }

    #[test]
    fn decimal_arithmetic_is_exact() {
        assert_eq!(
            text(dec("0.1").checked_add(dec("0.2")).expect("fits")),
            "0.3"
        );
        assert_eq!(
            text(dec("12.50").checked_add(dec("-13")).expect("fits")),
            "-0.50"
        );
        assert_eq!(text(dec("5").checked_div(2, 4).expect("fits")), "2.5000");
        assert_eq!(text(dec("2").checked_div(3, 4).expect("fits")), "0.6667");
        assert_eq!(text(dec("-2").checked_div(3, 4).expect("fits")), "-0.6667");
        assert_eq!(
            text(dec("1").checked_div(8, 2).expect("fits")),
            "0.13",
            "half away from zero"
        );
        assert_eq!(text(dec("-1").checked_div(8, 2).expect("fits")), "-0.13");
        assert_eq!(text(dec("0.05")), "0.05");
        assert_eq!(dec("1").checked_div(0, 4), None);
        let max = "170141183460469231731687303715884105727"; // i128::MAX
        assert_eq!(dec(max).checked_add(dec("1")), None, "overflow is reported");
        assert_eq!(Decimal::parse(b"1.2.3"), None);
        assert_eq!(Decimal::parse(b"-"), None);
        assert_eq!(Decimal::parse(b"1e5"), None);
    }
}
