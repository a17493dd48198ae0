//! Query fingerprints: a statement's text normalised so that executions differing only in
//! their values share one fingerprint.
//!
//! One pass over the tokens of the SQL lexer ([`crate::sql::lexer`]), no parser: comments
//! are removed, whitespace folded, words lower-cased (quoted identifiers kept as written),
//! string, numeric, dollar-quoted and bit-string literals and `$n` parameters become `?`,
//! and a parenthesised list of nothing but placeholders (`IN (?, ?, ?)`, a `VALUES` row)
//! becomes `(...)`, consecutive such rows one. The same pass notes what the comparison
//! needs to know about the statement: whether it has a top-level `ORDER BY` (compare rows
//! in order), and whether its answer is non-deterministic as written (`now()`, `random()`,
//! `nextval(...)`, `LIMIT` without `ORDER BY`, ...), in which case a different answer on
//! the mirror proves nothing.

use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

use crate::sql::lexer::{tokens, Kind, Token};

/// Longest normalised text kept for display (the fingerprint covers the whole text).
pub const MAX_TEXT: usize = 200;

/// A normalised statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub id: u64,
    /// Normalised text, at most [`MAX_TEXT`] bytes (cut at a character boundary).
    pub text: Arc<str>,
    /// A top-level ORDER BY: rows are compared in order.
    pub ordered: bool,
    /// Why the statement's answer may legitimately differ between servers, if it may.
    pub nondeterministic: Option<&'static str>,
}

/// `volatile(word)`: the function or keyword name `word`, if its value differs from one
/// execution to the next. (A `match`, which compiles to comparisons of fixed length: every
/// word of every statement is looked up.)
macro_rules! volatile {
    ($($name:literal),* $(,)?) => {
        fn volatile(word: &str) -> Option<&'static str> {
            match word {
                $($name => Some($name),)*
                _ => None,
            }
        }
    };
}

volatile![
    "clock_timestamp",
    "ctid",
    "current_date",
    "current_time",
    "current_timestamp",
    "currval",
    "gen_random_uuid",
    "inet_server_addr",
    "inet_server_port",
    "lastval",
    "localtime",
    "localtimestamp",
    "nextval",
    "now",
    "pg_backend_pid",
    "pg_current_xact_id",
    "pg_postmaster_start_time",
    "random",
    "random_normal",
    "setval",
    "statement_timestamp",
    "tablesample",
    "timeofday",
    "transaction_timestamp",
    "txid_current",
    "uuid_generate_v1",
    "uuid_generate_v4",
    "xmax",
    "xmin",
];

/// Normalises `sql` into its fingerprint.
pub fn fingerprint(sql: &str) -> Fingerprint {
    let mut n = Normaliser::default();
    n.run(sql.as_bytes());
    let out = n.out;
    let id = xxh3_64(out.as_bytes());
    let mut cut = out.len().min(MAX_TEXT);
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    let nondeterministic = n
        .volatile
        .or_else(|| (n.limit && !n.ordered).then_some("LIMIT without ORDER BY"));
    Fingerprint {
        id,
        text: Arc::from(&out[..cut]),
        ordered: n.ordered,
        nondeterministic,
    }
}

#[derive(Default)]
struct Normaliser {
    out: String,
    /// Parenthesis depth.
    depth: u32,
    /// Output offset of each open parenthesis, and whether only placeholders followed.
    open: Vec<(usize, bool)>,
    /// Where the previous token is in `out`, when it is a word: `ORDER BY`, and the
    /// keywords after which `(` and `-` are written apart, look back at it. (`out` only
    /// shrinks in `close`, which clears this first.)
    last_word: Option<(usize, usize)>,
    ordered: bool,
    limit: bool,
    volatile: Option<&'static str>,
    /// The span of the piece of punctuation read but not yet written (see `punctuation`).
    pending: Option<(usize, usize)>,
}

/// Operator characters that join the piece of punctuation before them.
const GLUED: &[u8] = b"<>=!~*+-/%^&|#@:";

impl Normaliser {
    fn run(&mut self, s: &[u8]) {
        for t in tokens(s) {
            if is_punctuation(&t) {
                self.punctuation(s, &t);
                continue;
            }
            self.flush(s, t.text.first().copied());
            match t.kind {
                Kind::String | Kind::Number | Kind::Param => self.placeholder(),
                Kind::Word => self.word(t.text),
                Kind::QuotedIdent => {
                    self.token(&String::from_utf8_lossy(t.text));
                    self.last_word = None;
                }
                Kind::OpenParen => {
                    self.token("(");
                    self.open.push((self.out.len() - 1, true));
                    self.depth += 1;
                }
                Kind::CloseParen => self.close(),
                Kind::Comma => {
                    self.token(",");
                    self.last_word = None;
                }
                // A `$` that starts no string or parameter (other bytes are punctuation).
                Kind::Other => self.token("$"),
                // White space and comments.
                _ => {}
            }
        }
        self.flush(s, None);
        // Statement separators and trailing semicolons do not change the fingerprint.
        while self.out.ends_with(';') || self.out.ends_with(' ') {
            self.out.pop();
        }
    }

    /// Operators and punctuation are written in pieces: a piece starts at any of their
    /// bytes and takes in the [`GLUED`] bytes right after it, across token boundaries
    /// (`t.*` is written `t .*`, `a=-1` as `a =- ?`). This spelling is part of the
    /// fingerprint ids that metrics export and `mirror_compare_ignore` lists.
    fn punctuation(&mut self, s: &[u8], t: &Token) {
        // A pending piece ends where this token starts: every other token flushes it.
        for (at, &b) in (t.start..).zip(t.text) {
            match self.pending {
                Some((start, _)) if GLUED.contains(&b) => self.pending = Some((start, at + 1)),
                _ => {
                    self.flush(s, Some(b));
                    self.pending = Some((at, at + 1));
                }
            }
        }
    }

    /// Writes the pending piece of punctuation; `next` is the byte right after it.
    fn flush(&mut self, s: &[u8], next: Option<u8>) {
        let Some((start, end)) = self.pending.take() else {
            return;
        };
        let piece = &s[start..end];
        // A unary minus is part of the number it signs (`+ -5` is `+ ?`).
        let number_follows = next.is_some_and(|b| b.is_ascii_digit() || b == b'.');
        if piece == b"-" && number_follows && self.expects_operand() {
            return;
        }
        self.token(&String::from_utf8_lossy(piece));
        self.not_only_placeholders();
        self.last_word = None;
    }

    /// Appends a token with one space before it, except: at the start, after `(`, `.` or
    /// `::`, before `)`, `,`, `.` or `::`, and before the `(` of a call or column list.
    fn token(&mut self, t: &str) {
        let prev = self.out.as_bytes().last().copied();
        let glued_before = matches!(t, ")" | "," | "." | "::")
            || (t == "("
                && prev.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'"')
                && !self.after_spaced_keyword());
        self.space(glued_before);
        self.out.push_str(t);
    }

    /// Writes the space before a token, unless it is glued to what precedes it.
    fn space(&mut self, glued_before: bool) {
        let prev = self.out.as_bytes().last().copied();
        let glued_after =
            prev.is_none() || matches!(prev, Some(b'(' | b'.')) || self.out.ends_with("::");
        if !glued_after && !glued_before {
            self.out.push(' ');
        }
    }

    /// Writes a word in lower case, and notes what it says about the statement.
    fn word(&mut self, text: &[u8]) {
        self.space(false);
        let start = self.out.len();
        if text.is_ascii() {
            self.out
                .extend(text.iter().map(|b| char::from(b.to_ascii_lowercase())));
        } else {
            self.out
                .push_str(&String::from_utf8_lossy(text).to_lowercase());
        }
        let word = &self.out[start..];
        if self.volatile.is_none() {
            self.volatile = volatile(word);
        }
        if self.depth == 0 {
            if word == "by" && self.last_word() == Some("order") {
                self.ordered = true;
            }
            if word == "limit" || word == "fetch" {
                self.limit = true;
            }
        }
        self.not_only_placeholders();
        self.last_word = Some((start, self.out.len()));
    }

    /// Whether the next token is an operand: at the start, after `(`, `,`, an operator or
    /// a keyword (`select -1`, `then -1`), not after an identifier, `)` or `?`.
    fn expects_operand(&self) -> bool {
        match self.out.as_bytes().last() {
            None => true,
            Some(b'(' | b',') => true,
            Some(b) if GLUED.contains(b) => true,
            Some(_) => self.after_spaced_keyword(),
        }
    }

    /// Whether the previous token is a keyword after which `(` opens a list or a subquery
    /// and `-` is a sign.
    fn after_spaced_keyword(&self) -> bool {
        self.last_word().is_some_and(spaced_before_paren)
    }

    fn last_word(&self) -> Option<&str> {
        let (start, end) = self.last_word?;
        self.out.get(start..end)
    }

    fn placeholder(&mut self) {
        // `?, ?` inside an IN list or VALUES row stays a candidate for `(...)`.
        self.token("?");
        self.last_word = None;
    }

    fn not_only_placeholders(&mut self) {
        if let Some(top) = self.open.last_mut() {
            top.1 = false;
        }
    }

    fn close(&mut self) {
        let Some((at, only)) = self.open.pop() else {
            self.token(")");
            return;
        };
        self.depth = self.depth.saturating_sub(1);
        let inner = self.out[at + 1..].trim();
        if only && !inner.is_empty() {
            // Only placeholders since `(`: no word to look back at.
            self.last_word = None;
            self.out.truncate(at);
            let kept = self.out.trim_end().len();
            // `(...), (...)` (multi-row VALUES) folds into one.
            if self.out[..kept].ends_with("(...),") {
                self.out.truncate(kept - 1);
                return;
            }
            self.out.push_str("(...)");
        } else {
            self.out.push(')');
            self.not_only_placeholders();
        }
        self.last_word = None;
    }
}

/// Tokens written as pieces of punctuation (see `Normaliser::punctuation`): operators,
/// punctuation, and bytes with no meaning to the grammar, except a lone `$`.
fn is_punctuation(t: &Token) -> bool {
    match t.kind {
        Kind::Operator | Kind::Punct | Kind::Semicolon => true,
        Kind::Other => t.text != b"$",
        _ => false,
    }
}

/// Keywords after which `(` starts a list or subquery, written with a space.
fn spaced_before_paren(word: &str) -> bool {
    matches!(
        word,
        "in" | "values"
            | "and"
            | "or"
            | "not"
            | "exists"
            | "select"
            | "from"
            | "where"
            | "on"
            | "as"
            | "any"
            | "all"
            | "some"
            | "using"
            | "when"
            | "then"
            | "else"
            | "over"
            | "join"
            | "union"
            | "by"
            | "into"
            | "set"
            | "returning"
            | "having"
            | "with"
            | "table"
            | "array"
            | "is"
            | "like"
            | "between"
            | "case"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(sql: &str) -> String {
        fingerprint(sql).text.to_string()
    }

    #[test]
    fn literals_and_parameters_become_placeholders() {
        assert_eq!(
            text("SELECT * FROM t WHERE id = 42 AND name = 'O''Brien'"),
            "select * from t where id = ? and name = ?"
        );
        assert_eq!(text("select $1::int + $2"), "select ?::int + ?");
        // A negative literal is a literal; a subtraction stays one.
        assert_eq!(
            fingerprint("update t set b = b + -5 where id = 1").id,
            fingerprint("update t set b = b + 7 where id = 2").id
        );
        assert_eq!(
            text("select -1, a - 2, (-3), f(-4) from t"),
            "select ?, a - ?, (...), f(...) from t"
        );
        assert_eq!(
            text("select 1.5e-3, .5, E'a\\'b', $$x$$, $q$y$q$"),
            "select ?, ?, ?, ?, ?"
        );
        assert_eq!(
            fingerprint("select  *\n from t -- hi\n where id=1;").id,
            fingerprint("SELECT * /* c /* nested */ */ FROM t WHERE id = 2").id
        );
    }

    #[test]
    fn lists_collapse() {
        assert_eq!(
            text("SELECT * FROM t WHERE id IN (1, 2, 3)"),
            "select * from t where id in (...)"
        );
        assert_eq!(
            fingerprint("select * from t where id in (1)").id,
            fingerprint("select * from t where id in (1,2,3,4,5)").id
        );
        assert_eq!(
            text("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')"),
            "insert into t(a, b) values (...)"
        );
        assert_eq!(
            fingerprint("insert into t values (1, 2)").id,
            fingerprint("insert into t values (3, 4), (5, 6), (7, 8)").id
        );
        // Function calls and identifiers are not lists of values.
        assert_eq!(text("select count(*) from t1"), "select count(*) from t1");
        assert_eq!(text("select f(a, 1)"), "select f(a, ?)");
    }

    #[test]
    fn identifiers_are_kept() {
        assert_eq!(
            text(r#"select "Col" from "My Table""#),
            r#"select "Col" from "My Table""#
        );
        assert_ne!(
            fingerprint("select a from t").id,
            fingerprint("select b from t").id
        );
        assert_ne!(
            fingerprint("select a from t1").id,
            fingerprint("select a from t2").id
        );
    }

    #[test]
    fn order_and_determinism() {
        assert!(fingerprint("select a from t order by a").ordered);
        assert!(!fingerprint("select * from (select a from t order by a) s").ordered);
        assert!(!fingerprint("select array_agg(a order by a) from t").ordered);
        assert_eq!(fingerprint("select now()").nondeterministic, Some("now"));
        assert_eq!(
            fingerprint("insert into t values (nextval('s'))").nondeterministic,
            Some("nextval")
        );
        assert_eq!(
            fingerprint("select * from t limit 5").nondeterministic,
            Some("LIMIT without ORDER BY")
        );
        assert_eq!(
            fingerprint("select * from t order by id limit 5").nondeterministic,
            None
        );
        assert_eq!(
            fingerprint("select * from t where id = 1").nondeterministic,
            None
        );
        // A column that merely contains the word is fine.
        assert_eq!(fingerprint("select nowhere from t").nondeterministic, None);
    }

    #[test]
    fn long_text_is_cut_but_fully_fingerprinted() {
        let a = format!("select {} from t", "x, ".repeat(200));
        let b = format!("select {} from u", "x, ".repeat(200));
        let (fa, fb) = (fingerprint(&a), fingerprint(&b));
        assert!(fa.text.len() <= MAX_TEXT);
        assert_ne!(fa.id, fb.id);
        // Never panics on arbitrary bytes, including unbalanced quotes and parentheses.
        for s in [
            "'",
            "(",
            ")",
            "$",
            "$a",
            "\"",
            "/*",
            "1e",
            "é'",
            "select ((1)",
            "))((",
        ] {
            let _ = fingerprint(s);
        }
    }

    /// Text is read as the server reads it, in the cases a simpler scanner gets wrong: a
    /// comment right after an operator, a backslash in a standard string, `U&''` strings,
    /// a carriage return ending a line comment, `\v` as white space, a dollar quote left
    /// open, a bit string ending at its first quote, `1..2` as a range.
    #[test]
    fn text_is_read_as_the_server_reads_it() {
        for (sql, normalised) in [
            ("select a+/*c*/b", "select a + b"),
            ("select a=--c\n1", "select a = ?"),
            (
                "select * from t where a = 'x\\' or b = 'y'",
                "select * from t where a = ? or b = ?",
            ),
            ("select U&'d\\0061t', U&\"c\"", "select ?, U&\"c\""),
            ("select 1 -- c\rfrom t", "select ? from t"),
            ("select\x0b1", "select ?"),
            ("select $$x; select 1", "select ?"),
            ("select B'1''0'", "select ? ?"),
            ("select 1..2", "select ?..?"),
        ] {
            assert_eq!(text(sql), normalised, "{sql:?}");
        }
    }

    /// Random text built from SQL's meaningful characters (a quick stand-in for the
    /// `fingerprint` fuzz target in `core/fuzz`): never panics, text bounded, stable.
    #[test]
    fn random_text_is_handled() {
        use rand::{Rng, SeedableRng};
        let alphabet: Vec<char> = "sel ct'\"$1(),.;-*/\n\t0e9E_xé:<=>!?".chars().collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..80);
            let text: String = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let a = fingerprint(&text);
            assert!(a.text.len() <= MAX_TEXT);
            assert_eq!(a, fingerprint(&text), "{text:?}");
        }
        // Literal values do not change the fingerprint, whatever surrounds them.
        for _ in 0..1_000 {
            let n: u32 = rng.gen();
            let a = fingerprint(&format!("select * from t where a = {n} and b = 'x{n}'"));
            let b = fingerprint("select * from t where a = 1 and b = 'y'");
            assert_eq!(a.id, b.id);
        }
    }

    mod properties {
        //! The fingerprint over the lexer's property-test strategies.
        use super::super::*;
        use crate::sql::proptests::{join, literal, piece, text};
        use crate::sql::Kind;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn fingerprints_are_bounded_and_stable(text in text()) {
            let text = String::from_utf8_lossy(&text);
            let a = fingerprint(&text);
            prop_assert!(a.text.len() <= MAX_TEXT);
            prop_assert_eq!(&a, &fingerprint(&text));
        }

        /// White space and comments between tokens, and the values of literals, do not change
        /// a fingerprint.
        #[test]
        fn fingerprints_ignore_layout_and_values(
            pieces in prop::collection::vec(piece(), 1..12),
            values in prop::collection::vec(literal(), 12),
        ) {
            let code: Vec<_> = pieces
                .into_iter()
                .filter(|(_, kind)| !matches!(kind, Kind::LineComment | Kind::BlockComment))
                .collect();
            let plain = fingerprint(&join(&code, " "));
            prop_assert_eq!(&plain, &fingerprint(&join(&code, " /* c /* d */ */ -- e\n\t")));
            let other_values: Vec<_> = code
                .iter()
                .zip(&values)
                .map(|((text, kind), value)| match kind {
                    Kind::String | Kind::Number | Kind::Param => (value.clone(), *kind),
                    _ => (text.clone(), *kind),
                })
                .collect();
            prop_assert_eq!(plain.id, fingerprint(&join(&other_values, " ")).id);
        }
        }
    }
}
