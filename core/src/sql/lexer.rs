//! The tokenizer: PostgreSQL's lexical rules (`src/backend/parser/scan.l`) over raw bytes.
//!
//! Every byte of the text belongs to exactly one token, white space and comments included,
//! so the tokens' spans cover the text end to end. The text need not be valid UTF-8 (bytes
//! from 0x80 up are identifier characters, as in scan.l), and no input makes the lexer
//! panic: where the server would report a lexical error the lexer still makes one token:
//!
//! * an unterminated comment, string, quoted identifier or dollar-quoted string runs to
//!   the end of the text;
//! * a number or parameter followed by identifier characters (`123abc`, `$1x`, which
//!   PostgreSQL 15 and later reject as "trailing junk") is one token;
//! * a byte the grammar has no use for (`\`, `{`, a `$` that starts nothing) is a token of
//!   its own, of kind [`Kind::Other`].
//!
//! Strings are read with `standard_conforming_strings` on (the default since PostgreSQL
//! 9.1): a backslash escapes a quote only in an `E'...'` string. Two string constants
//! separated by a newline (`'a'` newline `'b'`), which the server joins into one, come out
//! as two [`Kind::String`] tokens.

use std::borrow::Cow;
use std::ops::Deref;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Spaces, tabs, newlines, carriage returns, form and line feeds (`\f`, `\v`).
    Space,
    /// `-- ...` up to (not including) the end of the line.
    LineComment,
    /// `/* ... */`; comments nest.
    BlockComment,
    /// An unquoted identifier or keyword: a letter, `_` or byte >= 0x80, then those,
    /// digits and `$`.
    Word,
    /// `"..."` (`""` stands for one quote) or `U&"..."`.
    QuotedIdent,
    /// A string constant: `'...'` (`''` stands for one quote), `E'...'` (backslash
    /// escapes too), `N'...'`, `U&'...'`, the bit strings `B'...'` and `X'...'`, or
    /// `$tag$...$tag$`.
    String,
    /// `42`, `1.5e3`, `.5`, `0x1F`, `1_000`.
    Number,
    /// A positional parameter: `$1`.
    Param,
    /// A run of operator characters (`+ - * / < > = ~ ! @ # % ^ & | ` ?`), cut as scan.l
    /// cuts it: before an embedded `/*` or `--`, and without a trailing `+` or `-` unless
    /// the operator holds one of `~ ! @ # % ^ & | ` ?` (so `=-1` is `=`, `-`, `1`).
    Operator,
    /// `;`
    Semicolon,
    /// `(`
    OpenParen,
    /// `)`
    CloseParen,
    /// `,`
    Comma,
    /// `.`, `..`, `[`, `]`, `:`, `::` or `:=`.
    Punct,
    /// One byte with no meaning to the grammar.
    Other,
}

/// A token: its kind and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: Kind,
    /// Byte offset of the token in the text.
    pub start: usize,
    /// The token's bytes, as written.
    pub text: &'a [u8],
}

impl<'a> Token<'a> {
    /// Byte offset just past the token.
    pub fn end(&self) -> usize {
        self.start + self.text.len()
    }

    /// White space or a comment: what the grammar skips.
    pub fn is_trivia(&self) -> bool {
        matches!(
            self.kind,
            Kind::Space | Kind::LineComment | Kind::BlockComment
        )
    }

    /// Whether this is the unquoted word `keyword` (given in lower case), in any case.
    pub fn is_keyword(&self, keyword: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(keyword.as_bytes())
    }

    /// This word folded to lower case, for matching against keywords; `None` for other
    /// tokens and for words longer than [`Keyword::MAX`] (no keyword is that long).
    pub fn keyword(&self) -> Option<Keyword> {
        if self.kind != Kind::Word || self.text.len() > Keyword::MAX {
            return None;
        }
        let mut bytes = [0; Keyword::MAX];
        for (to, from) in bytes.iter_mut().zip(self.text) {
            *to = from.to_ascii_lowercase();
        }
        Some(Keyword {
            bytes,
            len: self.text.len(),
        })
    }

    /// The name an identifier stands for, as the server keeps it: a word folded to ASCII
    /// lower case, a quoted identifier without its quotes and with `""` undone. `None` for
    /// other tokens, and for quoted identifiers the server would refuse (unterminated or
    /// empty) or that this does not decode (`U&"..."`).
    pub fn name(&self) -> Option<Cow<'a, [u8]>> {
        match self.kind {
            Kind::Word => Some(fold_lower(self.text)),
            Kind::QuotedIdent => unquote(self.text),
            _ => None,
        }
    }
}

/// A word folded to ASCII lower case and held inline, so that keyword matching needs no
/// allocation: `match token.keyword().as_deref() { Some(b"select") => ... }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyword {
    bytes: [u8; Keyword::MAX],
    len: usize,
}

impl Keyword {
    /// The longest word held; longer than any keyword or setting name matched here.
    pub const MAX: usize = 32;
}

impl Deref for Keyword {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// `word` with ASCII letters in lower case, as the server folds unquoted identifiers
/// (bytes from 0x80 up are kept: the server folds only ASCII in multi-byte encodings).
/// Borrowed when there is nothing to fold.
pub fn fold_lower(word: &[u8]) -> Cow<'_, [u8]> {
    if word.iter().any(u8::is_ascii_uppercase) {
        Cow::Owned(word.to_ascii_lowercase())
    } else {
        Cow::Borrowed(word)
    }
}

/// The identifier inside `"..."`, with `""` undone.
fn unquote(token: &[u8]) -> Option<Cow<'_, [u8]>> {
    let inner = token.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if inner.is_empty() {
        return None;
    }
    if !inner.contains(&b'"') {
        return Some(Cow::Borrowed(inner));
    }
    // Inside a whole token quotes come in pairs; a lone one means the token ended
    // unterminated on a doubled quote (`"a""`).
    let mut name = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        if b == b'"' && bytes.next() != Some(&b'"') {
            return None;
        }
        name.push(b);
    }
    Some(Cow::Owned(name))
}

/// The tokens of `text`, in order; white space and comments included.
pub fn tokens(text: &[u8]) -> Lexer<'_> {
    Lexer::new(text)
}

/// The tokens of `text` the grammar reads: without white space and comments.
pub fn significant(text: &[u8]) -> impl Iterator<Item = Token<'_>> {
    tokens(text).filter(|t| !t.is_trivia())
}

/// The first word of `text` (after white space and comments), if it starts with one.
pub fn first_keyword(text: &[u8]) -> Option<&[u8]> {
    significant(text)
        .next()
        .filter(|t| t.kind == Kind::Word)
        .map(|t| t.text)
}

/// An iterator over the tokens of a text.
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    /// The tokens of `text`, from its start.
    pub fn new(text: &'a [u8]) -> Self {
        Lexer { text, pos: 0 }
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let start = self.pos;
        if start >= self.text.len() {
            return None;
        }
        let (kind, end) = scan(self.text, start);
        self.pos = end;
        Some(Token {
            kind,
            start,
            text: &self.text[start..end],
        })
    }
}

/// The token that starts at `at` (within `s`): its kind and end.
fn scan(s: &[u8], at: usize) -> (Kind, usize) {
    let next = s.get(at + 1).copied();
    match s[at] {
        b if is_space(b) => (Kind::Space, run(s, at, is_space)),
        b'-' if next == Some(b'-') => (Kind::LineComment, run(s, at, |b| !is_newline(b))),
        b'/' if next == Some(b'*') => (Kind::BlockComment, block_comment(s, at)),
        b'\'' => (Kind::String, quoted(s, at + 1, b'\'', false)),
        b'"' => (Kind::QuotedIdent, quoted(s, at + 1, b'"', false)),
        b'$' => dollar(s, at),
        b'0'..=b'9' => (Kind::Number, number(s, at)),
        b'.' if next.is_some_and(|b| b.is_ascii_digit()) => (Kind::Number, number(s, at)),
        b if is_ident_start(b) => word_or_prefixed(s, at),
        b';' => (Kind::Semicolon, at + 1),
        b'(' => (Kind::OpenParen, at + 1),
        b')' => (Kind::CloseParen, at + 1),
        b',' => (Kind::Comma, at + 1),
        b':' if matches!(next, Some(b':' | b'=')) => (Kind::Punct, at + 2),
        b'.' if next == Some(b'.') => (Kind::Punct, at + 2),
        b'.' | b':' | b'[' | b']' => (Kind::Punct, at + 1),
        b if is_op_char(b) => (Kind::Operator, operator(s, at)),
        _ => (Kind::Other, at + 1),
    }
}

/// scan.l's character classes, one bit each (a table, as the lexer asks for every byte).
const SPACE: u8 = 1;
const IDENT_START: u8 = 2;
const IDENT_CONT: u8 = 4;
const OP_CHAR: u8 = 8;

/// The classes of each byte.
static CLASSES: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut table = [0; 256];
    mark(&mut table, b" \t\n\r\x0c\x0b", SPACE);
    mark(&mut table, b"+-*/<>=~!@#%^&|`?", OP_CHAR);
    mark(&mut table, b"0123456789$", IDENT_CONT);
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            table[b] |= IDENT_START | IDENT_CONT;
        }
        b += 1;
    }
    table
}

const fn mark(table: &mut [u8; 256], bytes: &[u8], class: u8) {
    let mut i = 0;
    while i < bytes.len() {
        table[bytes[i] as usize] |= class;
        i += 1;
    }
}

fn is_space(b: u8) -> bool {
    CLASSES[usize::from(b)] & SPACE != 0
}

fn is_newline(b: u8) -> bool {
    matches!(b, b'\n' | b'\r')
}

fn is_ident_start(b: u8) -> bool {
    CLASSES[usize::from(b)] & IDENT_START != 0
}

fn is_ident_cont(b: u8) -> bool {
    CLASSES[usize::from(b)] & IDENT_CONT != 0
}

fn is_op_char(b: u8) -> bool {
    CLASSES[usize::from(b)] & OP_CHAR != 0
}

/// Past the run of bytes matching `pred` from `at`.
fn run(s: &[u8], at: usize, pred: impl Fn(u8) -> bool) -> usize {
    s[at..]
        .iter()
        .position(|&b| !pred(b))
        .map_or(s.len(), |n| at + n)
}

/// Past the block comment opening at `at`, counting nested `/*` and `*/`.
fn block_comment(s: &[u8], at: usize) -> usize {
    let mut depth = 0usize;
    let mut i = at;
    while i + 1 < s.len() {
        match (s[i], s[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    s.len()
}

/// Past the closing `quote` of a quoted token whose body starts at `from`. A doubled quote
/// stands for one; with `backslash`, a backslash escapes the byte after it.
fn quoted(s: &[u8], from: usize, quote: u8, backslash: bool) -> usize {
    let mut i = from;
    while i < s.len() {
        let b = s[i];
        if b == quote {
            if s.get(i + 1) != Some(&quote) {
                return i + 1;
            }
            i += 2;
        } else if backslash && b == b'\\' {
            i += 2;
        } else {
            i += 1;
        }
    }
    s.len()
}

/// An identifier, or a string constant or quoted identifier behind its one-letter prefix:
/// `E'`, `B'`, `X'`, `N'`, `U&'`, `U&"`.
fn word_or_prefixed(s: &[u8], at: usize) -> (Kind, usize) {
    let rest = &s[at..];
    match rest {
        [b'e' | b'E', b'\'', ..] => (Kind::String, quoted(s, at + 2, b'\'', true)),
        [b'n' | b'N', b'\'', ..] => (Kind::String, quoted(s, at + 2, b'\'', false)),
        // Bit strings end at the first quote: `''` is not an escape in them.
        [b'b' | b'B' | b'x' | b'X', b'\'', ..] => (Kind::String, past(s, at + 2, b'\'')),
        [b'u' | b'U', b'&', b'\'', ..] => (Kind::String, quoted(s, at + 3, b'\'', false)),
        [b'u' | b'U', b'&', b'"', ..] => (Kind::QuotedIdent, quoted(s, at + 3, b'"', false)),
        _ => (Kind::Word, run(s, at, is_ident_cont)),
    }
}

/// Past the first `byte` from `from`, or the end of the text.
fn past(s: &[u8], from: usize, byte: u8) -> usize {
    s[from..]
        .iter()
        .position(|&b| b == byte)
        .map_or(s.len(), |n| from + n + 1)
}

/// `$1` (a parameter), `$tag$...$tag$` or `$$...$$` (a string), else a lone `$`.
fn dollar(s: &[u8], at: usize) -> (Kind, usize) {
    if s.get(at + 1).is_some_and(u8::is_ascii_digit) {
        let digits = run(s, at + 1, |b| b.is_ascii_digit() || b == b'_');
        return (Kind::Param, junk(s, digits));
    }
    // The tag is an identifier without `$`: a letter, `_` or byte >= 0x80, then those and
    // digits. (A `$` after identifier characters never gets here: it is part of the word.)
    let tag_end = match s.get(at + 1) {
        Some(&b) if is_ident_start(b) => run(s, at + 1, |b| is_ident_cont(b) && b != b'$'),
        _ => at + 1,
    };
    if s.get(tag_end) != Some(&b'$') {
        return (Kind::Other, at + 1);
    }
    let delimiter = &s[at..=tag_end];
    let body = tag_end + 1;
    let end = find(&s[body..], delimiter).map_or(s.len(), |n| body + n + delimiter.len());
    (Kind::String, end)
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Past the number starting at `at`: digits (with `_` separators), a fraction unless `..`
/// follows (`1..2` is a range in PL/pgSQL), an exponent when digits follow it; then any
/// identifier characters after it (`0x1F`, `0o17` and `0b101` end up here, as does junk).
fn number(s: &[u8], at: usize) -> usize {
    let digits = |i| run(s, i, |b| b.is_ascii_digit() || b == b'_');
    let mut i = digits(at);
    if s.get(i) == Some(&b'.') && s.get(i + 1) != Some(&b'.') {
        i = digits(i + 1);
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(s.get(i + 1), Some(b'+' | b'-')));
        if s.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
            i = digits(i + 1 + sign);
        }
    }
    junk(s, i)
}

/// Past the identifier characters glued to the end of a number or parameter at `at`.
fn junk(s: &[u8], at: usize) -> usize {
    match s.get(at) {
        Some(&b) if is_ident_start(b) => run(s, at, is_ident_cont),
        _ => at,
    }
}

/// Past the operator starting at `at`.
fn operator(s: &[u8], at: usize) -> usize {
    let mut end = at + 1;
    while end < s.len() && is_op_char(s[end]) {
        // A comment starts inside the run: the operator stops before it.
        if matches!(&s[end..], [b'/', b'*', ..] | [b'-', b'-', ..]) {
            break;
        }
        end += 1;
    }
    // SQL reads `=-1` as `=` and `-1`: a trailing `+` or `-` is not part of a longer
    // operator unless a character only PostgreSQL operators use makes it one (`@-`).
    let own = |b: &u8| b"~!@#%^&|`?".contains(b);
    while end - at > 1 && matches!(s[end - 1], b'+' | b'-') && !s[at..end - 1].iter().any(own) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests;
