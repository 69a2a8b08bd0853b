//! Routing hints that clients put in comments: `/* peakgate: route=reporting shard=s1 */`.
//!
//! A hint comment is any comment (`/* */`, `-- `, `#`) whose text starts with `peakgate:` (any case,
//! spaces allowed around it), followed by `key=value` pairs separated by spaces or commas:
//! - `route=primary|replica|reporting` sets [`Hints::route`];
//! - `shard=NAME` sets [`Hints::shard`] (surrounding quotes are stripped; a value has no spaces).
//!
//! Unknown keys and unknown route values are ignored, so an old proxy reading a newer client's hint
//! routes as if the hint were absent. When several hint comments set the same key, the last wins.
//! Executable comments (`/*! */`) are code, never hints; a hint inside a string literal is text.

use crate::lexer::{Lexer, TokenKind};

/// Where a hint asks the statement to go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteHint {
    /// The shard's primary.
    Primary,
    /// Any healthy replica within the lag limit.
    Replica,
    /// A reporting instance (long analytical reads, kept off the serving replicas).
    Reporting,
}

impl RouteHint {
    /// Parses a `route=` value (any case).
    pub fn parse(value: &[u8]) -> Option<RouteHint> {
        if value.eq_ignore_ascii_case(b"primary") {
            Some(RouteHint::Primary)
        } else if value.eq_ignore_ascii_case(b"replica") {
            Some(RouteHint::Replica)
        } else if value.eq_ignore_ascii_case(b"reporting") {
            Some(RouteHint::Reporting)
        } else {
            None
        }
    }

    /// The hint's name as written in a comment.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteHint::Primary => "primary",
            RouteHint::Replica => "replica",
            RouteHint::Reporting => "reporting",
        }
    }
}

/// The hints found in one statement's comments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hints {
    /// `route=`: where to send the statement, overriding the kind-based choice.
    pub route: Option<RouteHint>,
    /// `shard=`: the shard to send the statement to, overriding the shard key.
    pub shard: Option<String>,
}

impl Hints {
    /// Whether no hint was given.
    pub fn is_empty(&self) -> bool {
        self.route.is_none() && self.shard.is_none()
    }
}

const PREFIX: &[u8] = b"peakgate:";

/// Reads the hints in every comment of `sql`.
pub fn parse_hints(sql: &[u8]) -> Hints {
    let mut hints = Hints::default();
    for token in Lexer::new(sql) {
        if token.kind == TokenKind::Comment {
            apply_comment(&mut hints, token.text(sql));
        }
    }
    hints
}

/// Applies one comment token (delimiters included) to `hints`; comments without the
/// `peakgate:` prefix cost a few byte compares.
pub(crate) fn apply_comment(hints: &mut Hints, comment: &[u8]) {
    let body = comment_body(comment).trim_ascii_start();
    if body.len() < PREFIX.len() || !body[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return;
    }
    let pairs = body[PREFIX.len()..]
        .split(|&b| b.is_ascii_whitespace() || b == b',')
        .filter(|p| !p.is_empty());
    for pair in pairs {
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, value) = (&pair[..eq], unquote(&pair[eq + 1..]));
        if key.eq_ignore_ascii_case(b"route") {
            if let Some(route) = RouteHint::parse(value) {
                hints.route = Some(route);
            }
        } else if key.eq_ignore_ascii_case(b"shard") && !value.is_empty() {
            hints.shard = Some(String::from_utf8_lossy(value).into_owned());
        }
    }
}

/// The text between a comment's delimiters.
fn comment_body(comment: &[u8]) -> &[u8] {
    if let Some(rest) = comment.strip_prefix(b"/*") {
        rest.strip_suffix(b"*/").unwrap_or(rest)
    } else if let Some(rest) = comment.strip_prefix(b"--") {
        rest
    } else {
        comment.strip_prefix(b"#").unwrap_or(comment)
    }
}

fn unquote(value: &[u8]) -> &[u8] {
    match value {
        [q @ (b'\'' | b'"' | b'`'), inner @ .., last] if last == q => inner,
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(route: Option<RouteHint>, shard: Option<&str>) -> Hints {
        Hints {
            route,
            shard: shard.map(str::to_owned),
        }
    }

    #[test]
    fn block_comment_hint() {
        assert_eq!(
            parse_hints(b"/* peakgate: route=reporting shard=s1 */ SELECT 1"),
            hints(Some(RouteHint::Reporting), Some("s1"))
        );
    }

    #[test]
    fn hints_anywhere_in_any_comment_style() {
        assert_eq!(
            parse_hints(b"SELECT 1 /*PEAKGATE:route=Replica*/"),
            hints(Some(RouteHint::Replica), None)
        );
        assert_eq!(
            parse_hints(b"SELECT 1 -- peakgate: shard='s2'\n"),
            hints(None, Some("s2"))
        );
        assert_eq!(
            parse_hints(b"SELECT 1 # peakgate: route=primary,shard=\"s2\""),
            hints(Some(RouteHint::Primary), Some("s2"))
        );
    }

    #[test]
    fn last_hint_wins_and_unknown_is_ignored() {
        assert_eq!(
            parse_hints(
                b"/* peakgate: route=replica */ SELECT /* peakgate: route=primary x=1 y */ 1"
            ),
            hints(Some(RouteHint::Primary), None)
        );
        assert_eq!(
            parse_hints(b"/* peakgate: route=nowhere shard= */ SELECT 1"),
            Hints::default()
        );
    }

    #[test]
    fn no_hints_in_strings_executable_comments_or_other_comments() {
        assert!(parse_hints(b"SELECT '/* peakgate: route=replica */'").is_empty());
        assert!(parse_hints(b"/*! peakgate: route=replica */ SELECT 1").is_empty());
        assert!(parse_hints(b"/* mysql-connector-java-8.0.33 */ SELECT 1").is_empty());
        assert!(parse_hints(b"/* route=replica */ SELECT 1").is_empty());
        assert!(parse_hints(b"/* peakgate: route=replica").route.is_some());
    }
}
