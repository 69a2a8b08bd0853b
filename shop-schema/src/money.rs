//! Money as integer cents: DECIMAL(12,2) columns arrive as text and leave as text, never as f64.

use std::fmt;

/// An amount in cents (CNY fen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Money(pub i64);

impl Money {
    /// Parses a DECIMAL's text (`"12.3"`, `"-0.05"`, `"7"`); more than two decimals are refused.
    pub fn parse(s: &str) -> Option<Money> {
        let s = s.trim();
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() && frac.is_empty() || frac.len() > 2 {
            return None;
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let w: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let f: i64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().ok()? * 10,
            _ => frac.parse().ok()?,
        };
        let cents = w.checked_mul(100)?.checked_add(f)?;
        Some(Money(if neg { -cents } else { cents }))
    }

    /// `self * n`, `None` on overflow.
    pub fn times(self, n: i64) -> Option<Money> {
        self.0.checked_mul(n).map(Money)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", a / 100, a % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::Money;

    #[test]
    fn parses_and_prints_decimals() {
        for (text, cents, back) in [
            ("12.30", 1230, "12.30"),
            ("12.3", 1230, "12.30"),
            ("7", 700, "7.00"),
            ("-0.05", -5, "-0.05"),
            ("0.00", 0, "0.00"),
            (".5", 50, "0.50"),
        ] {
            let m = Money::parse(text).expect(text);
            assert_eq!(m.0, cents, "{text}");
            assert_eq!(m.to_string(), back);
        }
        for bad in ["", ".", "1.234", "1e3", "abc", "1.-2"] {
            assert_eq!(Money::parse(bad), None, "{bad}");
        }
    }
}
