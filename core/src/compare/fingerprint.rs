//! Query fingerprints: a statement's text normalised so that executions differing only in
//! their values share one fingerprint.
//!
//! One pass over the text, no SQL parser: comments are removed, whitespace folded, words
//! lower-cased (quoted identifiers kept as written), string, numeric, dollar-quoted and
//! bit-string literals and `$n` parameters become `?`, and a parenthesised list of nothing
//! but placeholders (`IN (?, ?, ?)`, a `VALUES` row) becomes `(...)`, consecutive such
//! rows one. The same pass notes what the comparison needs to know about the statement:
//! whether it has a top-level `ORDER BY` (compare rows in order), and whether its answer
//! is non-deterministic as written (`now()`, `random()`, `nextval(...)`, `LIMIT` without
//! `ORDER BY`, ...), in which case a different answer on the mirror proves nothing.

use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

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

/// Function and keyword names whose value differs from one execution to the next.
const VOLATILE: &[&str] = &[
    "now",
    "current_timestamp",
    "current_time",
    "current_date",
    "localtime",
    "localtimestamp",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timeofday",
    "random",
    "random_normal",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v4",
    "nextval",
    "currval",
    "lastval",
    "setval",
    "pg_backend_pid",
    "txid_current",
    "pg_current_xact_id",
    "inet_server_addr",
    "inet_server_port",
    "pg_postmaster_start_time",
    "ctid",
    "xmin",
    "xmax",
    "tablesample",
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
    /// The previous word, for `ORDER BY`.
    last_word: String,
    ordered: bool,
    limit: bool,
    volatile: Option<&'static str>,
}

impl Normaliser {
    fn run(&mut self, s: &[u8]) {
        let mut i = 0;
        while i < s.len() {
            let c = s[i];
            match c {
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => i += 1,
                b'-' if s.get(i + 1) == Some(&b'-') => {
                    i = s[i..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(s.len(), |p| i + p);
                }
                b'/' if s.get(i + 1) == Some(&b'*') => i = skip_block_comment(s, i),
                b'\'' => {
                    i = skip_quoted(s, i, b'\'');
                    self.placeholder();
                }
                b'"' => {
                    let end = skip_quoted(s, i, b'"');
                    self.token(&String::from_utf8_lossy(&s[i..end]));
                    self.last_word.clear();
                    i = end;
                }
                b'$' => {
                    if s.get(i + 1).is_some_and(u8::is_ascii_digit) {
                        i += 1;
                        while s.get(i).is_some_and(u8::is_ascii_digit) {
                            i += 1;
                        }
                        self.placeholder();
                    } else if let Some(end) = skip_dollar_quoted(s, i) {
                        i = end;
                        self.placeholder();
                    } else {
                        self.token("$");
                        i += 1;
                    }
                }
                b'0'..=b'9' => {
                    i = skip_number(s, i);
                    self.placeholder();
                }
                b'.' if s.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                    i = skip_number(s, i);
                    self.placeholder();
                }
                c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                    let start = i;
                    while s.get(i).is_some_and(|&b| {
                        b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
                    }) {
                        i += 1;
                    }
                    let word = String::from_utf8_lossy(&s[start..i]).to_lowercase();
                    // E'...', B'...', X'...', U&'...': a prefixed string literal.
                    if s.get(i) == Some(&b'\'') && matches!(word.as_str(), "e" | "b" | "x" | "n") {
                        i = skip_quoted(s, i, b'\'');
                        self.placeholder();
                        continue;
                    }
                    self.word(word);
                }
                b'(' => {
                    self.token("(");
                    self.open.push((self.out.len() - 1, true));
                    self.depth += 1;
                    i += 1;
                }
                b')' => {
                    self.close();
                    i += 1;
                }
                b',' => {
                    self.token(",");
                    self.last_word.clear();
                    i += 1;
                }
                _ => {
                    let start = i;
                    i += 1;
                    // Multi-byte operators stay one token (`<=`, `::`, `->>`).
                    while s.get(i).is_some_and(|b| b"<>=!~*+-/%^&|#@:".contains(b)) {
                        i += 1;
                    }
                    // A unary minus is part of the number it signs (`+ -5` is `+ ?`).
                    let number_follows = s.get(i).is_some_and(|b| b.is_ascii_digit() || *b == b'.');
                    if &s[start..i] == b"-" && number_follows && self.expects_operand() {
                        continue;
                    }
                    self.token(&String::from_utf8_lossy(&s[start..i]));
                    self.not_only_placeholders();
                    self.last_word.clear();
                }
            }
        }
        // Statement separators and trailing semicolons do not change the fingerprint.
        while self.out.ends_with(';') || self.out.ends_with(' ') {
            self.out.pop();
        }
    }

    /// Appends a token with one space before it, except: at the start, after `(`, `.` or
    /// `::`, before `)`, `,`, `.` or `::`, and before the `(` of a call or column list.
    fn token(&mut self, t: &str) {
        let prev = self.out.as_bytes().last().copied();
        let glued_after =
            prev.is_none() || matches!(prev, Some(b'(' | b'.')) || self.out.ends_with("::");
        let glued_before = matches!(t, ")" | "," | "." | "::")
            || (t == "("
                && prev.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'"')
                && !SPACED_BEFORE_PAREN.contains(&self.last_word.as_str()));
        if !glued_after && !glued_before {
            self.out.push(' ');
        }
        self.out.push_str(t);
    }

    fn word(&mut self, word: String) {
        if self.volatile.is_none() {
            self.volatile = VOLATILE.iter().copied().find(|v| *v == word);
        }
        if self.depth == 0 {
            if word == "by" && self.last_word == "order" {
                self.ordered = true;
            }
            if word == "limit" || word == "fetch" {
                self.limit = true;
            }
        }
        self.token(&word);
        self.not_only_placeholders();
        self.last_word = word;
    }

    /// Whether the next token is an operand: at the start, after `(`, `,`, an operator or
    /// a keyword (`select -1`, `then -1`), not after an identifier, `)` or `?`.
    fn expects_operand(&self) -> bool {
        match self.out.as_bytes().last() {
            None => true,
            Some(b'(' | b',') => true,
            Some(b) if b"<>=!~*+-/%^&|#@:".contains(b) => true,
            Some(_) => SPACED_BEFORE_PAREN.contains(&self.last_word.as_str()),
        }
    }

    fn placeholder(&mut self) {
        // `?, ?` inside an IN list or VALUES row stays a candidate for `(...)`.
        self.token("?");
        self.last_word.clear();
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
        self.last_word.clear();
    }
}

/// Keywords after which `(` starts a list or subquery, written with a space.
const SPACED_BEFORE_PAREN: &[&str] = &[
    "in",
    "values",
    "and",
    "or",
    "not",
    "exists",
    "select",
    "from",
    "where",
    "on",
    "as",
    "any",
    "all",
    "some",
    "using",
    "when",
    "then",
    "else",
    "over",
    "join",
    "union",
    "by",
    "into",
    "set",
    "returning",
    "having",
    "with",
    "table",
    "array",
    "is",
    "like",
    "between",
    "case",
];

fn skip_block_comment(s: &[u8], mut i: usize) -> usize {
    // Block comments nest in PostgreSQL.
    let mut depth = 0;
    while i < s.len() {
        if s[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if s[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    s.len()
}

/// Past a `quote`-delimited token starting at `i` (doubled quotes escape; backslashes
/// too, which only matters for E'' strings and errs on the side of the longer token).
fn skip_quoted(s: &[u8], i: usize, quote: u8) -> usize {
    let mut j = i + 1;
    while j < s.len() {
        if s[j] == quote {
            if s.get(j + 1) == Some(&quote) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        if s[j] == b'\\' && quote == b'\'' {
            j += 2;
            continue;
        }
        j += 1;
    }
    s.len()
}

/// Past `$tag$ ... $tag$` starting at `i`, if it is one.
fn skip_dollar_quoted(s: &[u8], i: usize) -> Option<usize> {
    let close = s[i + 1..].iter().position(|&b| b == b'$')? + i + 1;
    let tag = &s[i..=close];
    if !tag[1..tag.len() - 1]
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return None;
    }
    let body = close + 1;
    let end = s[body..].windows(tag.len()).position(|w| w == tag)?;
    Some(body + end + tag.len())
}

fn skip_number(s: &[u8], mut i: usize) -> usize {
    while i < s.len() {
        match s[i] {
            b'0'..=b'9' | b'.' | b'_' => i += 1,
            b'e' | b'E' => {
                i += 1;
                if matches!(s.get(i), Some(b'+' | b'-')) {
                    i += 1;
                }
            }
            b'x' | b'X' | b'o' | b'O' | b'a'..=b'd' | b'f' | b'A'..=b'D' | b'F' => i += 1,
            _ => break,
        }
    }
    i
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
}
