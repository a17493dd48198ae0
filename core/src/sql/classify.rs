//! Statement classes: whether a statement reads, writes, or controls the transaction or the
//! session. The rules are listed in the [module doc](super#classification).

use std::iter::Peekable;

use super::lexer::{significant, Kind, Token};
use super::statements;

/// What running a statement may do. Ordered from the most to the least harmless to run on
/// a replica: a text of several statements has the greatest class of its statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Reads and changes nothing (as far as the text shows: see the module doc).
    Read,
    /// Transaction control: `BEGIN`, `COMMIT`, `SAVEPOINT`, `SET TRANSACTION`...
    Transaction,
    /// Changes only the session's state: `SET`, `RESET`, `DISCARD`, `LISTEN`...
    Session,
    /// Not recognised, or runs a statement defined elsewhere (`EXECUTE`): treat as a write.
    Unknown,
    /// Changes data, the schema or the server, or may lift the read-only guard.
    Write,
}

impl Class {
    /// Whether running it may change anything: a `Write`, or an `Unknown` taken as one.
    pub fn may_write(self) -> bool {
        self >= Class::Unknown
    }
}

/// The class of a simple Query's text: the greatest class of its [`statements`]; `Read`
/// for a text without any (the server only answers EmptyQueryResponse).
pub fn classify(text: &[u8]) -> Class {
    // A text that starts with a writing verb is a write whatever follows (`Write` is the
    // greatest class): no need to split it (the common `UPDATE ... WHERE ...`).
    let verb = significant(text).next().and_then(|t| t.keyword());
    if verb.is_some_and(|verb| WRITES.contains(&&*verb)) {
        return Class::Write;
    }
    statements(text).map(statement).max().unwrap_or(Class::Read)
}

/// Verbs of statements that change data, the schema or the server, or run server code.
const WRITES: &[&[u8]] = &[
    b"insert",
    b"update",
    b"delete",
    b"merge",
    b"create",
    b"alter",
    b"drop",
    b"truncate",
    b"grant",
    b"revoke",
    b"comment",
    b"security",
    b"refresh",
    b"vacuum",
    b"analyze",
    b"analyse",
    b"cluster",
    b"reindex",
    b"checkpoint",
    b"lock",
    b"call",
    b"do",
    b"notify",
    b"load",
    b"import",
    b"reassign",
];

/// Functions whose call changes something a query cannot show: sequences, settings (the
/// read-only guard among them) and notifications.
const WRITING_FUNCTIONS: &[&str] = &["nextval", "setval", "set_config", "pg_notify"];

/// Settings that hold the read-only guard.
const GUARDS: &[&[u8]] = &[b"default_transaction_read_only", b"transaction_read_only"];

/// The class of one statement (a text without a top-level `;`).
fn statement(text: &[u8]) -> Class {
    let mut tokens = significant(text);
    let Some(first) = tokens.next() else {
        return Class::Read;
    };
    if first.kind == Kind::OpenParen {
        return query(tokens);
    }
    let Some(verb) = first.keyword() else {
        return Class::Unknown;
    };
    match &*verb {
        b"select" | b"with" | b"values" | b"table" => query(tokens),
        b"show" | b"fetch" | b"move" | b"close" => Class::Read,
        b"explain" => explain(text, tokens),
        b"declare" => after_keyword(text, tokens, "for"),
        b"prepare" => prepare(text, tokens),
        b"copy" => copy(text, tokens),
        b"begin" | b"start" => unless_read_write(tokens, Class::Transaction),
        b"commit" | b"rollback" => match tokens.next() {
            Some(t) if t.is_keyword("prepared") => Class::Write,
            _ => Class::Transaction,
        },
        b"end" | b"abort" | b"savepoint" | b"release" => Class::Transaction,
        b"set" => set(tokens),
        b"reset" => tokens.next().map_or(Class::Unknown, |name| setting(&name)),
        b"discard" | b"deallocate" | b"listen" | b"unlisten" => Class::Session,
        verb if WRITES.contains(&verb) => Class::Write,
        _ => Class::Unknown,
    }
}

/// A query (`SELECT`, `WITH`, `VALUES`, `TABLE`, or one in parentheses): a read unless a
/// word shows it writes, at any depth: `INSERT`, `UPDATE`, `DELETE` or `MERGE` (a
/// data-modifying `WITH`, the statement after the `WITH`, `FOR [NO KEY] UPDATE`), `INTO`
/// (`SELECT INTO` creates a table), `SHARE` after `FOR` or `KEY` (`FOR [KEY] SHARE`), or a
/// call of one of [`WRITING_FUNCTIONS`]. A column of one of those names makes it a write
/// too: the mistake is on the safe side.
fn query<'a>(tokens: impl Iterator<Item = Token<'a>>) -> Class {
    let mut tokens = tokens.peekable();
    let mut locking = false;
    while let Some(t) = tokens.next() {
        let is = |keyword: &str| t.is_keyword(keyword);
        let writes = ["insert", "update", "delete", "merge", "into"]
            .into_iter()
            .any(is)
            || (locking && is("share"))
            || (WRITING_FUNCTIONS.iter().copied().any(is)
                && tokens.peek().is_some_and(|t| t.kind == Kind::OpenParen));
        if writes {
            return Class::Write;
        }
        locking = is("for") || is("key");
    }
    Class::Read
}

/// `EXPLAIN` runs the statement it explains only with `ANALYZE`: then it has that
/// statement's class, else it is a read.
fn explain<'a>(text: &'a [u8], tokens: impl Iterator<Item = Token<'a>>) -> Class {
    let mut tokens = tokens.peekable();
    let analyze = if tokens.next_if(|t| t.kind == Kind::OpenParen).is_some() {
        analyze_option(&mut tokens)
    } else {
        let mut analyze = false;
        while let Some(t) = tokens.next_if(|t| {
            t.is_keyword("analyze") || t.is_keyword("analyse") || t.is_keyword("verbose")
        }) {
            analyze |= !t.is_keyword("verbose");
        }
        analyze
    };
    match tokens.next() {
        Some(explained) if analyze => statement(&text[explained.start..]),
        _ => Class::Read,
    }
}

/// Reads `EXPLAIN`'s option list up to its `)`: whether `ANALYZE` is on (`ANALYZE`,
/// `ANALYZE true`, anything but `false`, `off` or `0` after it).
fn analyze_option<'a>(tokens: &mut Peekable<impl Iterator<Item = Token<'a>>>) -> bool {
    let mut analyze = false;
    let mut depth = 1;
    let mut names_option = true;
    while let Some(t) = tokens.next() {
        depth = nest(depth, &t);
        if depth == 0 {
            break;
        }
        if names_option && (t.is_keyword("analyze") || t.is_keyword("analyse")) {
            analyze = !tokens.peek().is_some_and(|value| {
                value.is_keyword("false") || value.is_keyword("off") || value.text == b"0"
            });
        }
        names_option = depth == 1 && t.kind == Kind::Comma;
    }
    analyze
}

/// `PREPARE name [(types)] AS statement` has the class of its statement;
/// `PREPARE TRANSACTION` writes (a two-phase commit's state).
fn prepare<'a>(text: &'a [u8], tokens: impl Iterator<Item = Token<'a>>) -> Class {
    let mut tokens = tokens.peekable();
    if tokens.next_if(|t| t.is_keyword("transaction")).is_some() {
        return Class::Write;
    }
    after_keyword(text, tokens, "as")
}

/// The class of the statement after the first `keyword` outside parentheses (`DECLARE
/// ... CURSOR FOR query`, `PREPARE ... AS statement`); `Unknown` without one.
fn after_keyword<'a>(
    text: &'a [u8],
    mut tokens: impl Iterator<Item = Token<'a>>,
    keyword: &str,
) -> Class {
    let mut depth = 0;
    while let Some(t) = tokens.next() {
        depth = nest(depth, &t);
        if depth == 0 && t.is_keyword(keyword) {
            return tokens
                .next()
                .map_or(Class::Unknown, |inner| statement(&text[inner.start..]));
        }
    }
    Class::Unknown
}

/// `COPY ... FROM` writes; so does `COPY ... TO` a file or a program (on the server's
/// machine). `COPY table TO STDOUT` reads; `COPY (query) TO STDOUT` has its query's class
/// (the query may be an `INSERT`, `UPDATE`, `DELETE` or `MERGE` with `RETURNING`).
fn copy<'a>(text: &'a [u8], tokens: impl Iterator<Item = Token<'a>>) -> Class {
    let mut tokens = tokens.peekable();
    let mut source = Class::Read;
    if let Some(open) = tokens.next_if(|t| t.kind == Kind::OpenParen) {
        let mut depth = 1;
        let close = tokens.by_ref().find(|t| {
            depth = nest(depth, t);
            depth == 0
        });
        let end = close.map_or(text.len(), |t| t.start);
        source = statement(&text[open.end()..end]);
    }
    let mut depth = 0;
    while let Some(t) = tokens.next() {
        depth = nest(depth, &t);
        if depth > 0 {
            continue;
        }
        if t.is_keyword("from") {
            return Class::Write;
        }
        if t.is_keyword("to") {
            let stdout = tokens.next().is_some_and(|t| t.is_keyword("stdout"));
            return if stdout { source } else { Class::Write };
        }
    }
    Class::Unknown
}

/// `SET TRANSACTION` and `SET CONSTRAINTS` are transaction control; `SET [SESSION |
/// LOCAL] setting` and `SET SESSION CHARACTERISTICS` change the session.
fn set<'a>(mut tokens: impl Iterator<Item = Token<'a>>) -> Class {
    let Some(first) = tokens.next() else {
        return Class::Unknown;
    };
    match first.keyword().as_deref() {
        Some(b"transaction") => unless_read_write(tokens, Class::Transaction),
        Some(b"constraints") => Class::Transaction,
        Some(b"session" | b"local") => match tokens.next() {
            Some(t) if first.is_keyword("session") && t.is_keyword("characteristics") => {
                unless_read_write(tokens, Class::Session)
            }
            Some(name) => setting(&name),
            None => Class::Unknown,
        },
        _ => setting(&first),
    }
}

/// Changing a setting (`SET`, `RESET`) changes the session, unless the setting is one of
/// the read-only guard's ([`GUARDS`]).
fn setting(name: &Token) -> Class {
    match name.name() {
        Some(name) if GUARDS.contains(&&*name) => Class::Write,
        _ => Class::Session,
    }
}

/// `class`, or `Write` when the statement asks for `READ WRITE`, which lifts the
/// read-only guard for a transaction or for the session.
fn unless_read_write<'a>(tokens: impl Iterator<Item = Token<'a>>, class: Class) -> Class {
    let mut read = false;
    for t in tokens {
        if read && t.is_keyword("write") {
            return Class::Write;
        }
        read = t.is_keyword("read");
    }
    class
}

/// The parenthesis depth after `token`.
fn nest(depth: usize, token: &Token) -> usize {
    match token.kind {
        Kind::OpenParen => depth + 1,
        Kind::CloseParen => depth.saturating_sub(1),
        _ => depth,
    }
}

#[cfg(test)]
mod tests;
