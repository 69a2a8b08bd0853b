//! Where the outer `SELECT`'s select list and clauses are in the text, found with the crate's
//! lexer at paren depth 0, and the text edits that turn the client's SQL into the shard SQL.

use std::ops::Range;

use sqlparser::ast;

use super::unsupported;
use crate::merge::MergeError;
use crate::source::Source;

/// Select modifiers that may stand between `SELECT` and the first item.
const MODIFIERS: [&str; 11] = [
    "ALL",
    "DISTINCT",
    "DISTINCTROW",
    "HIGH_PRIORITY",
    "STRAIGHT_JOIN",
    "SQL_SMALL_RESULT",
    "SQL_BIG_RESULT",
    "SQL_BUFFER_RESULT",
    "SQL_CACHE",
    "SQL_NO_CACHE",
    "SQL_CALC_FOUND_ROWS",
];

/// Where the outer `SELECT`'s pieces are in the text.
#[derive(Debug)]
pub(super) struct Layout {
    /// Byte range of each select item.
    pub(super) items: Vec<Range<usize>>,
    /// End of the last select item: hidden columns go here.
    pub(super) items_end: usize,
    pub(super) having: Option<Range<usize>>,
    pub(super) order: Option<Range<usize>>,
    pub(super) limit: Option<Range<usize>>,
}

impl Layout {
    pub(super) fn find(src: &Source<'_>, select: &ast::Select) -> Result<Layout, MergeError> {
        let lost = || unsupported("the select list could not be located in the text");
        let start = src
            .offset(select.select_token.0.span.start)
            .ok_or_else(lost)?;
        let mut i = src.token_at(start);
        if !src.is_word(i, "SELECT") {
            return Err(lost());
        }
        i += 1;
        while MODIFIERS.iter().any(|m| src.is_word(i, m)) {
            i += 1;
        }
        let tokens = src.tokens();
        let ends_items = |i: usize| {
            [
                "FROM",
                "INTO",
                "WHERE",
                "GROUP",
                "HAVING",
                "WINDOW",
                "ORDER",
                "LIMIT",
                "FOR",
                "LOCK",
                "PROCEDURE",
                "UNION",
            ]
            .iter()
            .any(|w| src.is_word(i, w))
                || src.is_punct(i, ";")
        };
        let mut items = Vec::new();
        let mut depth = 0usize;
        let mut piece: Option<Range<usize>> = None;
        while let Some(token) = tokens.get(i) {
            if depth == 0 && (ends_items(i) || src.is_punct(i, ",")) {
                items.extend(piece.take());
                if !src.is_punct(i, ",") {
                    break;
                }
            } else {
                if src.is_punct(i, "(") {
                    depth += 1;
                } else if src.is_punct(i, ")") {
                    depth = depth.checked_sub(1).ok_or_else(lost)?;
                }
                piece = Some(piece.map_or(token.start..token.end, |p| p.start..token.end));
            }
            i += 1;
        }
        items.extend(piece);
        if items.len() != select.projection.len() {
            return Err(lost());
        }
        let items_end = items.last().map(|r| r.end).ok_or_else(lost)?;

        // Clause keywords at depth 0 after the select list.
        let (mut having, mut window, mut order, mut limit, mut end) =
            (None, None, None, None, None);
        let mut depth = 0usize;
        while let Some(token) = tokens.get(i) {
            if src.is_punct(i, "(") {
                depth += 1;
            } else if src.is_punct(i, ")") {
                depth = depth.saturating_sub(1);
            } else if depth == 0 {
                if src.is_word(i, "HAVING") {
                    having = Some(token.start);
                } else if src.is_word(i, "WINDOW") {
                    window = Some(token.start);
                } else if src.is_word(i, "ORDER") && src.is_word(i + 1, "BY") {
                    order = Some(token.start);
                } else if src.is_word(i, "LIMIT") {
                    limit = Some(token.start);
                } else if ["FOR", "LOCK", "INTO", "PROCEDURE"]
                    .iter()
                    .any(|w| src.is_word(i, w))
                    || src.is_punct(i, ";")
                {
                    end = Some(token.start);
                    break;
                }
            }
            i += 1;
        }
        let end = end.unwrap_or(src_len(src));
        let first = |candidates: &[Option<usize>]| {
            candidates.iter().flatten().copied().min().unwrap_or(end)
        };
        Ok(Layout {
            items,
            items_end,
            having: having.map(|h| h..first(&[window, order, limit])),
            order: order.map(|o| o..first(&[limit])),
            limit: limit.map(|l| l..end),
        })
    }
}

fn src_len(src: &Source<'_>) -> usize {
    src.tokens().last().map_or(0, |t| t.end)
}

/// Applies non-overlapping edits to `sql`.
pub(super) fn apply_edits(
    sql: &str,
    mut edits: Vec<(Range<usize>, String)>,
) -> Result<String, MergeError> {
    edits.sort_by_key(|(range, _)| (range.start, range.end));
    let mut out = String::with_capacity(sql.len() + 64);
    let mut at = 0;
    for (range, text) in edits {
        let kept = sql
            .get(at..range.start)
            .ok_or_else(|| unsupported("overlapping rewrites of the statement"))?;
        out.push_str(kept);
        out.push_str(&text);
        at = range.end.max(at);
    }
    out.push_str(sql.get(at..).unwrap_or_default());
    Ok(out.trim_end().to_owned())
}
