//! What a request runs, as `mirror_statements` needs to know it: the class of the
//! statements it executes ([`crate::sql::classify()`]) and, for a mirror that only
//! reads, their texts (the fingerprints of statements the mirror refused as writes are
//! remembered, see [`super::filter`]).
//!
//! A simple Query executes its text. An extended-protocol batch executes the statements
//! its Binds name: the unnamed one from the last Parse of it, a named one from the Parse
//! that defined it, followed in the order the worker takes requests (the client's
//! [`Definitions`] run ahead of the worker: a later request's Close may have removed a
//! name there already), or from the client's definitions when the worker never saw its
//! Parse (a request the exposure left out). A FunctionCall may run anything and counts
//! as a write. Parse, Describe and Close alone execute nothing.
//!
//! The mirror worker classifies each request as it takes it from the queue, off the
//! client's path, in the order the client sent them.

use super::prepared::Definitions;
use crate::protocol::frame::{split_cstr as cstr, Frames};
use crate::protocol::tag::client;
use crate::sql::{classify, deallocation, Class};
use bytes::Bytes;
use smallvec::SmallVec;
use std::collections::HashMap;

/// What one request executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    /// The greatest class of its statements; `Read` when it executes none.
    pub class: Class,
    /// The texts of the statements it executes (kept only when asked for).
    pub texts: SmallVec<[Bytes; 1]>,
}

impl Kind {
    /// A request that executes nothing: a batch that only prepares or describes.
    pub fn nothing() -> Kind {
        Kind {
            class: Class::Read,
            texts: SmallVec::new(),
        }
    }

    /// The fingerprints of its statements.
    pub fn fingerprints(&self) -> impl Iterator<Item = u64> + '_ {
        self.texts
            .iter()
            .map(|t| crate::compare::fingerprint(&String::from_utf8_lossy(t)).id)
    }
}

/// Most named statements followed per session (past it, new names are looked up in the
/// client's definitions).
const MAX_NAMED: usize = 10_000;

/// One session's classifier: the statements it prepared, as far as classes go.
#[derive(Default)]
pub struct Classifier {
    /// The unnamed statement: its class and text.
    unnamed: Option<(Class, Bytes)>,
    /// Named statements by name: class and text.
    named: HashMap<Box<[u8]>, (Class, Bytes)>,
    /// Keep the texts of the statements executed ([`Kind::texts`]).
    keep_texts: bool,
}

impl Classifier {
    pub fn new(keep_texts: bool) -> Classifier {
        Classifier {
            keep_texts,
            ..Classifier::default()
        }
    }

    /// What `payload` executes; `seq` is the sequence number of its first ReadyForQuery
    /// (which of the client's definitions of a name it binds).
    pub fn request(&mut self, payload: &[Bytes], seq: u64, definitions: &Definitions) -> Kind {
        let mut kind = Kind::nothing();
        for part in payload {
            for (tag, msg) in Frames::new(part) {
                let body = msg.get(5..).unwrap_or(&[]);
                let executed = match tag {
                    client::QUERY => cstr(body).map(|(text, _)| {
                        if let Some(gone) = deallocation(text) {
                            match gone.name() {
                                Some(name) => drop(self.named.remove(name)),
                                None => self.named.clear(),
                            }
                        }
                        (classify(text), part.slice_ref(text))
                    }),
                    client::PARSE => {
                        self.parsed(part, body);
                        None
                    }
                    client::CLOSE => {
                        if let Some((&client::STATEMENT, rest)) = body.split_first() {
                            if let Some((name, _)) = cstr(rest) {
                                self.named.remove(name);
                            }
                        }
                        None
                    }
                    client::BIND => match cstr(body).and_then(|(_, rest)| cstr(rest)) {
                        Some((b"", _)) => self.unnamed.clone(),
                        Some((name, _)) => Some(self.named(name, seq, definitions)),
                        // A Bind the server will refuse runs nothing.
                        None => None,
                    },
                    client::FUNCTION_CALL => Some((Class::Write, Bytes::new())),
                    _ => None,
                };
                if let Some((class, text)) = executed {
                    kind.class = kind.class.max(class);
                    if self.keep_texts && !text.is_empty() {
                        kind.texts.push(text);
                    }
                }
            }
        }
        kind
    }

    /// A Parse (its body) in `part`: the statement it defines.
    fn parsed(&mut self, part: &Bytes, body: &[u8]) {
        let Some((name, rest)) = cstr(body) else {
            return;
        };
        let Some((text, _)) = cstr(rest) else {
            return;
        };
        let statement = (classify(text), part.slice_ref(text));
        if name.is_empty() {
            self.unnamed = Some(statement);
        } else if self.named.len() < MAX_NAMED || self.named.contains_key(name) {
            self.named.insert(name.into(), statement);
        }
    }

    /// The class and text of named statement `name` for request `seq`: as its Parse
    /// defined it, else as the client's definitions have it; `Unknown` when neither does.
    fn named(&mut self, name: &[u8], seq: u64, definitions: &Definitions) -> (Class, Bytes) {
        if let Some(known) = self.named.get(name) {
            return known.clone();
        }
        let Some(Err((parse, _))) = definitions.get(name, seq, None) else {
            return (Class::Unknown, Bytes::new());
        };
        let text = parse
            .get(5..)
            .and_then(cstr)
            .and_then(|(_, rest)| cstr(rest))
            .map(|(text, _)| parse.slice_ref(text));
        match text {
            Some(text) => (classify(&text), text),
            None => (Class::Unknown, Bytes::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages;
    use bytes::BytesMut;

    fn query(sql: &str) -> Bytes {
        let mut m = BytesMut::new();
        messages::query(&mut m, sql);
        m.freeze()
    }

    fn parse(name: &str, sql: &str) -> BytesMut {
        let mut m = BytesMut::new();
        messages::parse(&mut m, name, sql);
        m
    }

    /// Parse (if any), Bind of statement `bound` to the unnamed portal, Execute, Sync.
    fn batch(parsed: Option<(&str, &str)>, bound: &str) -> Bytes {
        let mut m = BytesMut::new();
        if let Some((name, sql)) = parsed {
            m.extend_from_slice(&parse(name, sql));
        }
        messages::put(&mut m, client::BIND, |b| {
            messages::put_cstr(b, "");
            messages::put_cstr(b, bound);
            b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        });
        messages::execute(&mut m);
        messages::sync(&mut m);
        m.freeze()
    }

    #[test]
    fn simple_queries_have_their_texts_class() {
        let mut c = Classifier::new(true);
        let d = Definitions::default();
        let k = c.request(&[query("select 1")], 0, &d);
        assert_eq!(k.class, Class::Read);
        assert_eq!(&k.texts[0][..], b"select 1");
        assert_eq!(
            c.request(&[query("begin; update t set a = 1")], 1, &d)
                .class,
            Class::Write
        );
        assert_eq!(
            c.request(&[query("SET x = 1")], 2, &d).class,
            Class::Session
        );
    }

    #[test]
    fn binds_run_the_unnamed_or_the_named_statement() {
        let mut c = Classifier::new(true);
        let d = Definitions::default();
        let write = batch(Some(("", "insert into t values ($1)")), "");
        assert_eq!(c.request(&[write], 0, &d).class, Class::Write);
        // Prepared in one request, bound in the next.
        let prepare = {
            let mut m = parse("", "select * from t");
            messages::sync(&mut m);
            m.freeze()
        };
        assert_eq!(
            c.request(&[prepare], 1, &d).class,
            Class::Read,
            "nothing runs"
        );
        assert_eq!(c.request(&[batch(None, "")], 2, &d).class, Class::Read);
        // A named statement, from the client's definitions.
        d.parsed(&parse("s1", "delete from t"), 3);
        let k = c.request(&[batch(None, "s1")], 3, &d);
        assert_eq!(
            (k.class, &k.texts[0][..]),
            (Class::Write, &b"delete from t"[..])
        );
        // Defined again: the new text counts, not the cached class.
        d.closed(b"Ss1\0");
        d.parsed(&parse("s1", "select 2"), 4);
        assert_eq!(c.request(&[batch(None, "s1")], 4, &d).class, Class::Read);
        // Unknown name: taken as a write.
        assert_eq!(
            c.request(&[batch(None, "nope")], 5, &d).class,
            Class::Unknown
        );
    }

    #[test]
    fn named_statements_follow_the_requests_in_order() {
        // The client's definitions are ahead of the worker (empty here: the client has
        // closed everything since); the Parses and Closes the worker sees decide.
        let mut c = Classifier::new(false);
        let d = Definitions::default();
        let define = |name: &str, sql: &str| {
            let mut m = parse(name, sql);
            messages::sync(&mut m);
            m.freeze()
        };
        let read = define("s1", "select * from t");
        assert_eq!(c.request(&[read], 0, &d).class, Class::Read);
        assert_eq!(c.request(&[batch(None, "s1")], 1, &d).class, Class::Read);
        let mut close = BytesMut::new();
        messages::put(&mut close, client::CLOSE, |b| {
            b.extend_from_slice(&[client::STATEMENT]);
            messages::put_cstr(b, "s1");
        });
        messages::sync(&mut close);
        c.request(&[close.freeze()], 2, &d);
        assert_eq!(
            c.request(&[batch(None, "s1")], 3, &d).class,
            Class::Unknown,
            "closed: no longer known"
        );
        let write = define("s1", "update t set a = 1");
        c.request(&[write], 4, &d);
        assert_eq!(c.request(&[batch(None, "s1")], 5, &d).class, Class::Write);
        // SQL DEALLOCATE forgets it too.
        c.request(&[query("DEALLOCATE s1")], 6, &d);
        assert_eq!(c.request(&[batch(None, "s1")], 7, &d).class, Class::Unknown);
    }

    #[test]
    fn texts_are_kept_only_when_asked() {
        let mut c = Classifier::new(false);
        let k = c.request(&[query("select 1")], 0, &Definitions::default());
        assert!(k.texts.is_empty());
    }
}
