//! What a request runs, as `mirror_statements` needs to know it: the class of the
//! statements it executes ([`crate::sql::classify()`]) and, for a mirror that only
//! reads, their texts (the fingerprints of statements the mirror refused as writes are
//! remembered, see [`super::filter`]).
//!
//! A simple Query executes its text. An extended-protocol batch executes the statements
//! its Binds name: the unnamed one from the last Parse of it (in this request or an
//! earlier one), a named one from the client's [`Definitions`]. A FunctionCall may run
//! anything and counts as a write. Parse, Describe and Close alone execute nothing.
//!
//! The mirror worker classifies each request as it takes it from the queue, off the
//! client's path, in the order the client sent them.

use super::prepared::Definitions;
use crate::protocol::frame::{split_cstr as cstr, Frames};
use crate::protocol::tag::client;
use crate::sql::{classify, Class};
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

/// Most named statements whose class is cached (a cache miss costs a lookup in the
/// client's definitions and one lexer pass).
const MAX_CACHED: usize = 1_000;

/// One session's classifier: the statements it prepared, as far as classes go.
#[derive(Default)]
pub struct Classifier {
    /// The unnamed statement: its class and text.
    unnamed: Option<(Class, Bytes)>,
    /// Named statements by name: the version of the definition classified, its class and
    /// text.
    named: HashMap<Box<[u8]>, (u64, Class, Bytes)>,
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
                    client::QUERY => {
                        cstr(body).map(|(text, _)| (classify(text), part.slice_ref(text)))
                    }
                    client::PARSE => {
                        if let Some((b"", rest)) = cstr(body) {
                            if let Some((text, _)) = cstr(rest) {
                                self.unnamed = Some((classify(text), part.slice_ref(text)));
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

    /// The class and text of named statement `name` as the client defined it for request
    /// `seq`; `Unknown` when the definition is not known (never kept, or forgotten).
    fn named(&mut self, name: &[u8], seq: u64, definitions: &Definitions) -> (Class, Bytes) {
        let cached = self.named.get(name);
        match definitions.get(name, seq, cached.map(|c| c.0)) {
            Some(Ok(())) => {
                let (_, class, text) = cached.expect("known version");
                (*class, text.clone())
            }
            Some(Err((parse, version))) => {
                let text = parse
                    .get(5..)
                    .and_then(cstr)
                    .and_then(|(_, rest)| cstr(rest))
                    .map(|(text, _)| parse.slice_ref(text));
                let (class, text) = match text {
                    Some(text) => (classify(&text), text),
                    None => (Class::Unknown, Bytes::new()),
                };
                if self.named.len() >= MAX_CACHED {
                    self.named.clear();
                }
                self.named
                    .insert(name.into(), (version, class, text.clone()));
                (class, text)
            }
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
    fn texts_are_kept_only_when_asked() {
        let mut c = Classifier::new(false);
        let k = c.request(&[query("select 1")], 0, &Definitions::default());
        assert!(k.texts.is_empty());
    }
}
