//! A statement's text next to its sqlparser AST: guarded parsing, sqlparser locations turned into
//! byte offsets, and `?` placeholders numbered in text order.
//!
//! sqlparser reports positions as 1-based (line, column) pairs whose column counts characters, and
//! not every node carries a span (a `COUNT(*)` call's span ends before its parentheses). So only
//! the *starts* of tokens are taken from sqlparser; where an end matters, callers find it with the
//! crate's own lexer.

use sqlparser::ast;
use sqlparser::tokenizer::{Location, Span};

use crate::lexer::{Lexer, Token, TokenKind};

/// Parses `sql` as exactly one statement, behind the classifier's guards. The error is a
/// human-readable message (the parser's own, or why the parser was not asked).
pub(crate) fn parse_one(sql: &str) -> Result<ast::Statement, ParseFailure> {
    let mut statements = crate::classify::parse_guarded(sql.as_bytes()).map_err(|e| match e {
        crate::Error::Parse(message) => ParseFailure::Parser(message),
        other => ParseFailure::Parser(other.to_string()),
    })?;
    match statements.len() {
        0 => Err(ParseFailure::Empty),
        1 => Ok(statements.remove(0)),
        n => Err(ParseFailure::Multi(n)),
    }
}

/// Why [`parse_one`] gave no statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseFailure {
    /// sqlparser rejected the text, or the guards kept it from sqlparser.
    Parser(String),
    /// No statement at all (empty or comments only).
    Empty,
    /// More than one statement.
    Multi(usize),
}

/// Byte positions in one statement text.
#[derive(Debug)]
pub(crate) struct Source<'a> {
    text: &'a str,
    /// Byte offset of the start of each line (line 1 first).
    line_starts: Vec<usize>,
    /// Byte offset of each `?` placeholder, in text order.
    placeholders: Vec<usize>,
    tokens: Vec<Token>,
}

impl<'a> Source<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        let tokens: Vec<Token> = Lexer::new(text.as_bytes())
            .filter(|t| !t.kind.is_trivia())
            .collect();
        let placeholders = tokens
            .iter()
            .filter(|t| t.kind == TokenKind::Placeholder)
            .map(|t| t.start)
            .collect();
        Source {
            text,
            line_starts,
            placeholders,
            tokens,
        }
    }

    /// The code tokens of the text (comments and executable-comment markers left out).
    pub(crate) fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// The byte offset of a sqlparser location, `None` for an empty (unknown) location.
    pub(crate) fn offset(&self, location: Location) -> Option<usize> {
        let line = usize::try_from(location.line).ok()?.checked_sub(1)?;
        let column = usize::try_from(location.column).ok()?.checked_sub(1)?;
        let start = *self.line_starts.get(line)?;
        let rest = self.text.get(start..)?;
        match rest.char_indices().nth(column) {
            Some((i, _)) => Some(start + i),
            // One past the last character of the text.
            None if rest.chars().count() == column => Some(self.text.len()),
            None => None,
        }
    }

    /// The 0-based position among the text's placeholders of the `?` that starts `span`.
    pub(crate) fn placeholder_index(&self, span: Span) -> Option<usize> {
        let at = self.offset(span.start)?;
        self.placeholders.binary_search(&at).ok()
    }

    /// Index of the first token that starts at or after byte `at`.
    pub(crate) fn token_at(&self, at: usize) -> usize {
        self.tokens.partition_point(|t| t.start < at)
    }

    /// Whether token `i` is the word `word` (ASCII case-insensitive).
    pub(crate) fn is_word(&self, i: usize, word: &str) -> bool {
        self.tokens.get(i).is_some_and(|t| {
            t.kind == TokenKind::Word
                && t.text(self.text.as_bytes())
                    .eq_ignore_ascii_case(word.as_bytes())
        })
    }

    /// Whether token `i` is the punctuation `p`.
    pub(crate) fn is_punct(&self, i: usize, p: &str) -> bool {
        self.tokens
            .get(i)
            .is_some_and(|t| t.is_punct(self.text.as_bytes(), p.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_count_characters_and_lines() {
        let text = "SELECT 'é'\n  , ? FROM t WHERE a = ?";
        let src = Source::new(text);
        assert_eq!(src.offset(Location::new(1, 1)), Some(0));
        assert_eq!(src.offset(Location::new(1, 11)), Some(11));
        assert_eq!(src.offset(Location::new(2, 5)), Some(16));
        assert_eq!(src.offset(Location::new(0, 0)), None);
        assert_eq!(src.offset(Location::new(9, 1)), None);
        let second = text.rfind('?').unwrap_or_default();
        assert_eq!(&text[16..17], "?");
        assert_eq!(src.placeholders, vec![16, second]);
    }

    #[test]
    fn parse_one_reports_each_failure() {
        assert!(parse_one("SELECT 1").is_ok());
        assert_eq!(parse_one("  -- nothing\n").err(), Some(ParseFailure::Empty));
        assert_eq!(
            parse_one("SELECT 1; SELECT 2").err(),
            Some(ParseFailure::Multi(2))
        );
        assert!(matches!(parse_one("SELEC 1"), Err(ParseFailure::Parser(_))));
        let deep = format!("SELECT {}1{}", "(".repeat(60), ")".repeat(60));
        assert!(matches!(parse_one(&deep), Err(ParseFailure::Parser(m)) if m.contains("deep")));
    }
}
