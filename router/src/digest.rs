//! Statement digests: the normalised fingerprint text and its FNV-1a 64 hash.
//!
//! The digest identifies a statement's *shape*: two statements that differ only in literal values,
//! whitespace, comments, letter case outside quotes or the length of a literal `IN` list share one
//! digest. Per-digest caches (sqlparser's verdict, later plan templates) rely on that.
//!
//! Normalisation, token by token (comments dropped, executable comments' markers dropped):
//! - words are lowercased (ASCII only); backtick identifiers and quoted user variables are kept
//!   verbatim; system variables are lowercased;
//! - literals (strings, numbers, hex, bit, a sign folded into a number) and placeholders become `?`;
//! - tokens are joined by one space, except: none before `,` `)` `.` `;`, none after `(` `.`, and
//!   none between a function-like word and its `(` (`count(*)`, but `in (`, `values (`, `and (`);
//! - `IN (?, ?, ?)` of only literals and placeholders becomes `IN (...)`;
//! - in `INSERT`/`REPLACE ... VALUES`, rows that normalise to the same text as the first row are
//!   dropped after a single `, ...` (`values (?, ?), ...`), so bulk inserts of any size share a digest;
//! - a trailing `;` is dropped; `;` between statements is kept.
//!
//! The hash is FNV-1a 64 over the UTF-8 bytes of the digest text (invalid UTF-8 in identifiers is
//! replaced by U+FFFD first). It is part of the contract: stable across versions and platforms,
//! unlike `std::hash`, and pinned by test vectors.

use crate::keyword::Kw;

/// FNV-1a 64 offset basis.
pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// One token as the digest writer sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Piece<'a> {
    /// A bare word, with its keyword (lowercased on output).
    Word(&'a [u8], Kw),
    /// Written verbatim: backtick identifiers, quoted user variables.
    Verbatim(&'a [u8]),
    /// Written lowercased: bare user variables, system variables.
    Lowercase(&'a [u8]),
    /// A literal or a placeholder: written `?`.
    Value,
    /// Operator or punctuation, verbatim.
    Punct(&'a [u8]),
}

/// What was written last, for spacing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Last {
    Nothing,
    Word(Kw),
    Ident,
    Value,
    Open,
    Close,
    Dot,
    Other,
}

/// An `IN (` list being written, collapsed at its `)` when it held only values.
#[derive(Clone, Copy, Debug)]
struct InList {
    /// Where the `(` was written.
    open_at: usize,
    /// Paren depth inside the list.
    depth: u32,
    expect_value: bool,
}

/// The rows of an `INSERT ... VALUES` being written.
#[derive(Clone, Debug)]
struct Rows {
    /// Paren depth of the `VALUES` keyword; rows open at `depth + 1`.
    depth: u32,
    first: Option<std::ops::Range<usize>>,
    row_open_at: usize,
    /// Where the `,` before the current row was written.
    comma_at: Option<usize>,
    collapsed: bool,
}

/// Writes the normalised digest text, one piece at a time.
#[derive(Debug)]
pub(crate) struct DigestWriter {
    out: Vec<u8>,
    last: Last,
    depth: u32,
    in_list: Option<InList>,
    rows: Option<Rows>,
}

impl DigestWriter {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        DigestWriter {
            out: Vec::with_capacity(capacity),
            last: Last::Nothing,
            depth: 0,
            in_list: None,
            rows: None,
        }
    }

    /// Starts collapsing the rows that follow a `VALUES` keyword just written.
    pub(crate) fn start_rows(&mut self) {
        self.rows = Some(Rows {
            depth: self.depth,
            first: None,
            row_open_at: 0,
            comma_at: None,
            collapsed: false,
        });
    }

    /// Writes the `;` between two statements and forgets the previous statement's structure.
    pub(crate) fn statement_break(&mut self) {
        self.out.push(b';');
        self.last = Last::Other;
        self.depth = 0;
        self.in_list = None;
        self.rows = None;
    }

    fn needs_space(&self, piece: &Piece<'_>) -> bool {
        match (self.last, piece) {
            (Last::Nothing | Last::Open | Last::Dot, _) => false,
            (_, Piece::Punct(b"," | b")" | b"." | b";")) => false,
            (Last::Word(kw), Piece::Punct(b"(")) => kw.spaces_paren(),
            (Last::Ident, Piece::Punct(b"(")) => false,
            _ => true,
        }
    }

    pub(crate) fn push(&mut self, piece: Piece<'_>) {
        self.track_in_list(&piece);
        if let Some(rows) = &self.rows
            && self.depth == rows.depth
            && !matches!(piece, Piece::Punct(b"," | b"("))
        {
            self.rows = None;
        }
        if self.needs_space(&piece) {
            self.out.push(b' ');
        }
        let at = self.out.len();
        match piece {
            Piece::Word(text, kw) => {
                self.out.extend_from_slice(text);
                self.out[at..].make_ascii_lowercase();
                self.last = Last::Word(kw);
            }
            Piece::Verbatim(text) => {
                self.out.extend_from_slice(text);
                self.last = Last::Ident;
            }
            Piece::Lowercase(text) => {
                self.out.extend_from_slice(text);
                self.out[at..].make_ascii_lowercase();
                self.last = Last::Ident;
            }
            Piece::Value => {
                self.out.push(b'?');
                self.last = Last::Value;
            }
            Piece::Punct(b"(") => {
                let after_in = self.last == Last::Word(Kw::In);
                self.out.push(b'(');
                self.last = Last::Open;
                self.depth += 1;
                if after_in {
                    self.in_list = Some(InList {
                        open_at: at,
                        depth: self.depth,
                        expect_value: true,
                    });
                }
                if let Some(rows) = &mut self.rows
                    && self.depth == rows.depth + 1
                {
                    rows.row_open_at = at;
                }
            }
            Piece::Punct(b")") => {
                self.out.push(b')');
                self.last = Last::Close;
                self.close_in_list();
                self.depth = self.depth.saturating_sub(1);
                self.close_row();
            }
            Piece::Punct(text) => {
                if text == b","
                    && let Some(rows) = &mut self.rows
                    && self.depth == rows.depth
                {
                    rows.comma_at = Some(at);
                }
                self.out.extend_from_slice(text);
                self.last = if text == b"." { Last::Dot } else { Last::Other };
            }
        }
    }

    /// Keeps `in_list` only while the list holds nothing but values separated by commas.
    fn track_in_list(&mut self, piece: &Piece<'_>) {
        let Some(list) = &mut self.in_list else {
            return;
        };
        let keep = self.depth == list.depth
            && match piece {
                Piece::Value if list.expect_value => {
                    list.expect_value = false;
                    true
                }
                Piece::Punct(b",") if !list.expect_value => {
                    list.expect_value = true;
                    true
                }
                Piece::Punct(b")") => !list.expect_value,
                _ => false,
            };
        if !keep {
            self.in_list = None;
        }
    }

    fn close_in_list(&mut self) {
        if let Some(list) = self.in_list.take() {
            self.out.truncate(list.open_at);
            self.out.extend_from_slice(b"(...)");
        }
    }

    /// At a row's `)`: drop the row if it reads like the first one; stop at the first that differs.
    fn close_row(&mut self) {
        let Some(rows) = &mut self.rows else {
            return;
        };
        if self.depth != rows.depth {
            return;
        }
        let row = rows.row_open_at..self.out.len();
        let keep_collapsing = match (&rows.first, rows.comma_at.take()) {
            (None, _) => {
                rows.first = Some(row);
                true
            }
            (Some(first), Some(comma_at)) if self.out[first.clone()] == self.out[row] => {
                self.out.truncate(comma_at);
                if !rows.collapsed {
                    self.out.extend_from_slice(b", ...");
                    rows.collapsed = true;
                }
                true
            }
            _ => false,
        };
        if !keep_collapsing {
            self.rows = None;
        }
    }

    /// The digest text and its hash.
    pub(crate) fn finish(self) -> (String, u64) {
        let text = match String::from_utf8(self.out) {
            Ok(text) => text,
            Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        };
        let hash = fnv1a64(text.as_bytes());
        (text, hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    fn write(pieces: &[Piece<'_>]) -> String {
        let mut w = DigestWriter::with_capacity(64);
        for &p in pieces {
            w.push(p);
        }
        w.finish().0
    }

    #[test]
    fn in_list_collapses_only_values() {
        use Piece::*;
        let in_values = [
            Word(b"a", Kw::Other),
            Word(b"IN", Kw::In),
            Punct(b"("),
            Value,
            Punct(b","),
            Value,
            Punct(b")"),
        ];
        assert_eq!(write(&in_values), "a in (...)");
        let in_columns = [
            Word(b"a", Kw::Other),
            Word(b"in", Kw::In),
            Punct(b"("),
            Value,
            Punct(b","),
            Word(b"b", Kw::Other),
            Punct(b")"),
        ];
        assert_eq!(write(&in_columns), "a in (?, b)");
        let empty = [Word(b"in", Kw::In), Punct(b"("), Punct(b")")];
        assert_eq!(write(&empty), "in ()");
    }
}
