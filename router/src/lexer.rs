//! One-pass MySQL lexer over raw statement bytes: tokens with byte spans, no allocation, no panics.
//!
//! The lexer works on `&[u8]` because a COM_QUERY payload need not be valid UTF-8 (binary strings,
//! latin1 clients). Every byte at or above 0x80 counts as an identifier byte, which is what MySQL
//! does for multi-byte character sets, so invalid UTF-8 can only ever end up inside a token.
//!
//! What it knows about MySQL's lexical rules (default `sql_mode`):
//! - `'...'` and `"..."` are strings (no `ANSI_QUOTES`), with backslash escapes and doubled quotes;
//!   `` `...` `` is a quoted identifier with doubled backticks.
//! - Literal prefixes: `X'1F'`, `0x1F` (hex), `b'01'`, `0b01` (bit), `N'x'` and charset introducers
//!   such as `_utf8mb4'x'` (strings). The prefix belongs to the literal's span.
//! - Numbers: `1`, `1.5`, `.5`, `1.`, `1e10`, `1.5E-3`; digits followed by letters are an identifier
//!   (`1abc`), as in MySQL.
//! - Comments: `-- ` (only when followed by a space, a control byte or the end), `#`, `/* */`
//!   (unterminated: the rest of the text). Executable comments `/*! */`, `/*!50100 */`, `/*M! */`,
//!   `/*M!100101 */` are *code*: the lexer yields [`TokenKind::ExecOpen`] / [`TokenKind::ExecClose`]
//!   markers and lexes what is between them as ordinary tokens.
//! - Variables: `@x`, `` @`x` ``, `@'x'`, `@"x"` (user), `@@x`, `@@session.x` (system). An `@` right
//!   after a string, quoted identifier or word (`'u'@'host'`, `root@localhost`) is an account name's
//!   separator, so it is a [`TokenKind::Punct`].
//!
//! Every step consumes at least one byte and no step looks back more than one byte, so lexing is
//! linear in the input length.

/// What a token is. Whitespace is never a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Bare identifier or keyword: `SELECT`, `sbtest1`, `1abc`, `$x`.
    Word,
    /// Backtick-quoted identifier, quotes included.
    QuotedIdent,
    /// String literal, quotes and any `N` / `_charset` prefix included.
    String,
    /// Decimal number: `1`, `1.5`, `.5`, `1e10`.
    Number,
    /// Hexadecimal literal: `0x1F`, `X'1F'`.
    Hex,
    /// Bit literal: `0b01`, `b'01'`.
    Bit,
    /// Prepared-statement placeholder `?`.
    Placeholder,
    /// User variable: `@x`, `` @`x` ``, `@'x'`, `@"x"`.
    UserVar,
    /// System variable: `@@x`, `@@session.x`.
    SysVar,
    /// Operator or punctuation, one to three bytes: `(`, `,`, `=`, `:=`, `<=>`, `->>`.
    Punct,
    /// Comment, delimiters included: `/* */`, `-- ...`, `# ...`.
    Comment,
    /// Start of an executable comment: `/*!`, `/*!50100`, `/*M!`, `/*M!100101`.
    ExecOpen,
    /// The `*/` that ends an executable comment.
    ExecClose,
}

impl TokenKind {
    /// Literal values that a digest replaces with `?` (not placeholders: those are already `?`).
    pub fn is_literal(self) -> bool {
        matches!(
            self,
            TokenKind::String | TokenKind::Number | TokenKind::Hex | TokenKind::Bit
        )
    }

    /// Tokens that carry no code: comments and executable-comment markers.
    pub fn is_trivia(self) -> bool {
        matches!(
            self,
            TokenKind::Comment | TokenKind::ExecOpen | TokenKind::ExecClose
        )
    }
}

/// One token: its kind and its byte span `start..end` in the lexed text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    /// What the token is.
    pub kind: TokenKind,
    /// First byte of the token.
    pub start: usize,
    /// One past the last byte of the token.
    pub end: usize,
}

impl Token {
    /// The token's bytes in `src` (the text it was lexed from).
    pub fn text<'a>(&self, src: &'a [u8]) -> &'a [u8] {
        src.get(self.start..self.end).unwrap_or_default()
    }

    /// Whether this is the punctuation `p`.
    pub fn is_punct(&self, src: &[u8], p: &[u8]) -> bool {
        self.kind == TokenKind::Punct && self.text(src) == p
    }
}

/// Iterator over the tokens of one statement text (or several, `;` is just a [`TokenKind::Punct`]).
#[derive(Clone, Debug)]
pub struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    /// Executable comments open around `pos`; a `*/` closes one only while this is non-zero.
    exec_depth: u32,
}

/// Bytes that may appear in an unquoted identifier (MySQL: `[0-9a-zA-Z$_]` and any non-ASCII byte).
pub fn is_ident_byte(b: u8) -> bool {
    IDENT_BYTES[usize::from(b)]
}

/// [`is_ident_byte`] as a table: the lexer asks for every byte of every word.
static IDENT_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' || byte >= 0x80;
        b += 1;
    }
    table
};

/// Bytes MySQL skips between tokens. Every control byte counts, which also keeps `--` comments simple.
fn is_space(b: u8) -> bool {
    b <= b' '
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `src`.
    pub fn new(src: &'a [u8]) -> Self {
        Lexer {
            src,
            pos: 0,
            exec_depth: 0,
        }
    }

    fn at(&self, i: usize) -> u8 {
        self.src.get(i).copied().unwrap_or(0)
    }

    fn has(&self, i: usize) -> bool {
        i < self.src.len()
    }

    /// End of a quoted run that starts with `quote` at `open`: doubled quotes continue it, and so do
    /// backslash escapes when `escapes`. Unterminated: the end of the text.
    fn quoted_end(&self, open: usize, quote: u8, escapes: bool) -> usize {
        let mut i = open + 1;
        while let Some(&b) = self.src.get(i) {
            if b == quote {
                if self.at(i + 1) == quote && self.has(i + 1) {
                    i += 2;
                    continue;
                }
                return i + 1;
            }
            if escapes && b == b'\\' {
                i += 2;
                continue;
            }
            i += 1;
        }
        self.src.len()
    }

    fn ident_end(&self, mut i: usize) -> usize {
        while self.has(i) && is_ident_byte(self.at(i)) {
            i += 1;
        }
        i
    }

    fn digits_end(&self, mut i: usize) -> usize {
        while self.at(i).is_ascii_digit() {
            i += 1;
        }
        i
    }

    /// `0x1F` / `0b01`: hex or bit digits after the two-byte prefix, then no identifier byte.
    fn radix_number(&self, start: usize) -> Option<(TokenKind, usize)> {
        let (kind, is_digit): (TokenKind, fn(u8) -> bool) = match self.at(start + 1) {
            b'x' => (TokenKind::Hex, |b: u8| b.is_ascii_hexdigit()),
            b'b' => (TokenKind::Bit, |b: u8| b == b'0' || b == b'1'),
            _ => return None,
        };
        let mut i = start + 2;
        while self.has(i) && is_digit(self.at(i)) {
            i += 1;
        }
        if i == start + 2 || is_ident_byte(self.at(i)) && self.has(i) {
            return None;
        }
        Some((kind, i))
    }

    /// A decimal number starting at `start` (a digit, or a `.` followed by a digit).
    fn number(&self, start: usize) -> (TokenKind, usize) {
        if self.at(start) == b'0'
            && let Some(radix) = self.radix_number(start)
        {
            return radix;
        }
        let mut i = self.digits_end(start);
        let mut fraction = false;
        if self.at(i) == b'.' && self.has(i) {
            fraction = true;
            i = self.digits_end(i + 1);
        }
        if matches!(self.at(i), b'e' | b'E') {
            let sign = usize::from(matches!(self.at(i + 1), b'+' | b'-'));
            if self.at(i + 1 + sign).is_ascii_digit() {
                i = self.digits_end(i + 1 + sign);
            }
        }
        if !fraction && self.has(i) && is_ident_byte(self.at(i)) {
            // `1abc`, `1e5x`, `0x1G`: an identifier that starts with digits.
            return (TokenKind::Word, self.ident_end(i));
        }
        (TokenKind::Number, i)
    }

    /// A word starting at `start`, or a prefixed literal (`X'..'`, `b'..'`, `N'..'`, `_utf8mb4'..'`).
    fn word(&self, start: usize) -> (TokenKind, usize) {
        let end = self.ident_end(start);
        let next = self.at(end);
        if !self.has(end) || !matches!(next, b'\'' | b'"') {
            return (TokenKind::Word, end);
        }
        let word = &self.src[start..end];
        let kind = match word {
            [b'x' | b'X'] if next == b'\'' => TokenKind::Hex,
            [b'b' | b'B'] if next == b'\'' => TokenKind::Bit,
            [b'n' | b'N'] if next == b'\'' => TokenKind::String,
            [b'_', _, ..] => TokenKind::String,
            _ => return (TokenKind::Word, end),
        };
        (kind, self.quoted_end(end, next, kind == TokenKind::String))
    }

    /// `@...` at `start`: a user or system variable, or an account name's `@`.
    fn variable(&self, start: usize) -> (TokenKind, usize) {
        if self.at(start + 1) == b'@' && self.has(start + 1) {
            // @@x, @@session.x, @@`x`: words, dots and quoted parts.
            let mut i = start + 2;
            loop {
                match self.at(i) {
                    b'`' if self.has(i) => i = self.quoted_end(i, b'`', false),
                    b'.' if self.has(i) => i += 1,
                    b if self.has(i) && is_ident_byte(b) => i = self.ident_end(i),
                    _ => break,
                }
            }
            return (TokenKind::SysVar, i);
        }
        if start > 0 {
            let before = self.at(start - 1);
            if matches!(before, b'\'' | b'"' | b'`') || is_ident_byte(before) {
                return (TokenKind::Punct, start + 1);
            }
        }
        match self.at(start + 1) {
            q @ (b'`' | b'\'' | b'"') if self.has(start + 1) => {
                (TokenKind::UserVar, self.quoted_end(start + 1, q, q != b'`'))
            }
            b if self.has(start + 1) && (is_ident_byte(b) || b == b'.') => {
                let mut i = start + 1;
                while self.has(i) && (is_ident_byte(self.at(i)) || self.at(i) == b'.') {
                    i += 1;
                }
                (TokenKind::UserVar, i)
            }
            _ => (TokenKind::Punct, start + 1),
        }
    }

    /// `/*` at `start`: an executable-comment opener or a whole comment.
    fn block_comment(&mut self, start: usize) -> (TokenKind, usize) {
        let bang = match (self.at(start + 2), self.at(start + 3)) {
            (b'!', _) => Some(start + 3),
            (b'M', b'!') => Some(start + 4),
            _ => None,
        };
        if let Some(after) = bang {
            // An optional 5- or 6-digit version follows directly.
            let version_end = self.digits_end(after).min(after + 6);
            self.exec_depth = self.exec_depth.saturating_add(1);
            return (TokenKind::ExecOpen, version_end);
        }
        let body = &self.src[start + 2..];
        let end = body
            .windows(2)
            .position(|w| w == b"*/")
            .map_or(self.src.len(), |i| start + 2 + i + 2);
        (TokenKind::Comment, end)
    }

    fn line_comment_end(&self, start: usize) -> usize {
        self.src[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.src.len(), |i| start + i)
    }

    fn punct_end(&self, start: usize) -> usize {
        let rest = &self.src[start..];
        const THREE: [&[u8]; 2] = [b"<=>", b"->>"];
        const TWO: [&[u8]; 10] = [
            b"<=", b">=", b"<>", b"!=", b":=", b"<<", b">>", b"&&", b"||", b"->",
        ];
        if THREE.iter().any(|op| rest.starts_with(op)) {
            start + 3
        } else if TWO.iter().any(|op| rest.starts_with(op)) {
            start + 2
        } else {
            start + 1
        }
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        while self.has(self.pos) && is_space(self.at(self.pos)) {
            self.pos += 1;
        }
        if !self.has(self.pos) {
            return None;
        }
        let start = self.pos;
        let b = self.at(start);
        let next = self.at(start + 1);
        let has_next = self.has(start + 1);
        let (kind, end) = match b {
            b'\'' | b'"' => (TokenKind::String, self.quoted_end(start, b, true)),
            b'`' => (TokenKind::QuotedIdent, self.quoted_end(start, b'`', false)),
            b'0'..=b'9' => self.number(start),
            b'.' if next.is_ascii_digit()
                && has_next
                && !(start > 0 && {
                    let before = self.at(start - 1);
                    is_ident_byte(before) || before == b'`' || before == b')'
                }) =>
            {
                self.number(start)
            }
            b'?' => (TokenKind::Placeholder, start + 1),
            b'@' => self.variable(start),
            b'#' => (TokenKind::Comment, self.line_comment_end(start)),
            b'-' if next == b'-'
                && has_next
                && (!self.has(start + 2) || is_space(self.at(start + 2))) =>
            {
                (TokenKind::Comment, self.line_comment_end(start))
            }
            b'/' if next == b'*' && has_next => self.block_comment(start),
            b'*' if next == b'/' && has_next && self.exec_depth > 0 => {
                self.exec_depth -= 1;
                (TokenKind::ExecClose, start + 2)
            }
            b if is_ident_byte(b) => self.word(start),
            _ => (TokenKind::Punct, self.punct_end(start)),
        };
        // Defensive: a token always consumes at least one byte and never runs past the end.
        let end = end.clamp(start + 1, self.src.len());
        self.pos = end;
        Some(Token { kind, start, end })
    }
}

/// All tokens of `src`, trivia included (convenience for tests and tools; the hot path iterates).
pub fn tokenize(src: &[u8]) -> Vec<Token> {
    Lexer::new(src).collect()
}

#[cfg(test)]
mod tests;
