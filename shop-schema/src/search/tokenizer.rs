//! The shop's tokenizer for mixed Chinese/Latin product text (tantivy has no CJK tokenizer).
//!
//! Text is cut into runs: a run of CJK characters (Han, kana, Hangul), or a run of other letters
//! and digits (a Latin word, lowercased). Everything else separates runs.
//!
//! - Latin words become one token each: `Running Shoes #12` -> `running`, `shoes`, `12`.
//! - A CJK run becomes its overlapping character **bigrams** (`蓝牙耳机` -> `蓝牙`, `牙耳`,
//!   `耳机`), the usual approach for Chinese without a dictionary: any two-character word is a
//!   bigram, and a longer word is the conjunction of its bigrams.
//! - At index time ([`Mode::Index`]) every CJK character is also emitted alone, so a one-character
//!   query (`茶`) finds every text with that character. At query time ([`Mode::Query`]) a CJK run
//!   of two or more characters gives only its bigrams, so `手机` does not match a text that merely
//!   has `手` and `机` apart; a lone character stays a unigram.
//!
//! Offsets are byte offsets into the text, so the highlighter can mark the matched characters.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Name under which the index registers [`ShopTokenizer`] (index mode).
pub const TOKENIZER_NAME: &str = "shop_cjk";

/// Which token set to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bigrams and unigrams of CJK runs (documents).
    Index,
    /// Bigrams of CJK runs, unigrams only for one-character runs (queries).
    Query,
}

/// CJK characters: the ranges product text in this market uses (Han, its extensions and
/// compatibility block, kana, Hangul). Fullwidth punctuation is not among them.
pub fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3040}'..='\u{30FF}'      // Hiragana, Katakana
        | '\u{3400}'..='\u{4DBF}'    // Han extension A
        | '\u{4E00}'..='\u{9FFF}'    // Han
        | '\u{AC00}'..='\u{D7AF}'    // Hangul syllables
        | '\u{F900}'..='\u{FAFF}'    // Han compatibility
        | '\u{20000}'..='\u{2FA1F}') // Han extensions B-F, compatibility supplement
}

/// The tokens of `text`, in order, with byte offsets.
pub fn tokens(text: &str, mode: Mode) -> Vec<Token> {
    let mut out = Vec::new();
    let push = |out: &mut Vec<Token>, from: usize, to: usize, text: String| {
        let position = out.len();
        out.push(Token {
            offset_from: from,
            offset_to: to,
            position,
            text,
            position_length: 1,
        });
    };
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if is_cjk(c) {
            let mut run: Vec<(usize, char)> = Vec::new();
            while let Some(&(i, c)) = chars.peek() {
                if !is_cjk(c) {
                    break;
                }
                run.push((i, c));
                chars.next();
            }
            let end_of = |k: usize| run[k].0 + run[k].1.len_utf8();
            if run.len() == 1 {
                push(&mut out, start, end_of(0), run[0].1.to_string());
                continue;
            }
            for k in 0..run.len() {
                if mode == Mode::Index {
                    push(&mut out, run[k].0, end_of(k), run[k].1.to_string());
                }
                if k + 1 < run.len() {
                    let bigram: String = [run[k].1, run[k + 1].1].iter().collect();
                    push(&mut out, run[k].0, end_of(k + 1), bigram);
                }
            }
        } else if c.is_alphanumeric() {
            let mut end = start;
            let mut word = String::new();
            while let Some(&(i, c)) = chars.peek() {
                if !c.is_alphanumeric() || is_cjk(c) {
                    break;
                }
                word.extend(c.to_lowercase());
                end = i + c.len_utf8();
                chars.next();
            }
            push(&mut out, start, end, word);
        } else {
            chars.next();
        }
    }
    out
}

/// The tokenizer registered with the index ([`Mode::Index`]).
#[derive(Clone, Default)]
pub struct ShopTokenizer;

/// The tokens of one text, handed out one by one.
pub struct ShopTokenStream {
    tokens: std::vec::IntoIter<Token>,
    current: Token,
}

impl Tokenizer for ShopTokenizer {
    type TokenStream<'a> = ShopTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> ShopTokenStream {
        ShopTokenStream {
            tokens: tokens(text, Mode::Index).into_iter(),
            current: Token::default(),
        }
    }
}

impl TokenStream for ShopTokenStream {
    fn advance(&mut self) -> bool {
        match self.tokens.next() {
            Some(t) => {
                self.current = t;
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        &self.current
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str, mode: Mode) -> Vec<String> {
        tokens(s, mode).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn latin_words_are_lowercased() {
        assert_eq!(
            texts("Li-Ning Running Shoes #12", Mode::Query),
            ["li", "ning", "running", "shoes", "12"]
        );
        assert_eq!(texts("  ,.!  ", Mode::Index), Vec::<String>::new());
        assert_eq!(texts("Café Ünïcode", Mode::Index), ["café", "ünïcode"]);
    }

    #[test]
    fn cjk_runs_become_bigrams() {
        assert_eq!(texts("蓝牙耳机", Mode::Query), ["蓝牙", "牙耳", "耳机"]);
        assert_eq!(
            texts("蓝牙耳机", Mode::Index),
            ["蓝", "蓝牙", "牙", "牙耳", "耳", "耳机", "机"]
        );
        // A lone character stays itself in both modes.
        assert_eq!(texts("茶", Mode::Query), ["茶"]);
        assert_eq!(texts("茶", Mode::Index), ["茶"]);
    }

    #[test]
    fn mixed_text_splits_at_script_changes() {
        assert_eq!(
            texts("小米 轻薄手机 12号，Xiaomi手机", Mode::Query),
            ["小米", "轻薄", "薄手", "手机", "12", "号", "xiaomi", "手机"]
        );
    }

    #[test]
    fn offsets_point_into_the_text() {
        let s = "Anker 蓝牙耳机";
        for t in tokens(s, Mode::Index) {
            let piece = &s[t.offset_from..t.offset_to];
            assert_eq!(piece.to_lowercase(), t.text, "{t:?}");
        }
    }

    #[test]
    fn kana_and_hangul_are_cjk() {
        assert!(is_cjk('の') && is_cjk('カ') && is_cjk('한') && is_cjk('龍'));
        assert!(!is_cjk('，') && !is_cjk('a') && !is_cjk('1'));
    }
}
