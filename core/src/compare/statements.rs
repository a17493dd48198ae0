//! Which statement a mirrored request runs, so its answer can be compared the right way
//! (in order or not) and counted under its fingerprint.
//!
//! A simple Query carries its text. An extended-protocol batch names a prepared
//! statement (Bind -> Parse seen earlier in the session, possibly in another request), so
//! each mirror session remembers the fingerprints of the statements and portals its
//! client prepared, exactly as the server does.
//!
//! A request that runs several statements (a simple Query of several, several Executes
//! before one Sync) is filed under its first data statement: transaction control
//! (`BEGIN`, `COMMIT`, `SAVEPOINT`, `RELEASE`, `ROLLBACK TO`, ...) never takes a data
//! statement's outcome, so pgjdbc's `BEGIN` sent with a transaction's first statement and
//! its `autosave` savepoints are not what the statement is counted under. When its data
//! statements differ, the request also lists every statement it executes, in order
//! ([`Run::each`]), so that each one's answer is compared under its own fingerprint
//! ([`super::split`]). Judged as a whole (when its answers cannot be split), it takes
//! what all its data statements say: non-deterministic if one of them is, compared in
//! order only if all of them are ordered.

use super::digest::MAX_PARTS;
use super::fingerprint::{fingerprint, Fingerprint};
use super::split::Executed;
use crate::protocol::frame::{split_cstr as cstr, Frames};
use crate::protocol::tag::client;
use crate::sql::{self, Class};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

/// Prepared statements and portals of one session, by name (`""` is the unnamed one).
#[derive(Default)]
pub struct Statements {
    statements: HashMap<Box<[u8]>, Known>,
    portals: HashMap<Box<[u8]>, Known>,
    /// The unnamed portal, bound by almost every Bind: kept apart so that binding it
    /// allocates nothing.
    unnamed_portal: Option<Known>,
    /// The statements of the request being followed, in order (reused).
    executed: Vec<Executed>,
}

/// What a request runs.
#[derive(Default)]
pub struct Run {
    /// What it is filed under: its first data statement (see the module docs).
    pub statement: Option<Arc<Fingerprint>>,
    /// Every statement it executes, in order, when it runs several different data
    /// statements (and at most [`MAX_PARTS`] statements in all).
    pub each: Option<Box<[Executed]>>,
}

/// A statement the session prepared: its fingerprint, and whether it is transaction
/// control.
#[derive(Clone)]
struct Known {
    fp: Arc<Fingerprint>,
    control: bool,
}

impl Known {
    fn of(text: &[u8]) -> Known {
        Known {
            fp: Arc::new(fingerprint(&lossy(text))),
            control: sql::classify(text) == Class::Transaction,
        }
    }
}

/// The statements a request runs, as they come: which one it is filed under.
#[derive(Default)]
struct Filed {
    /// The first data statement, else the first statement.
    first: Option<Known>,
    /// Data statements after the first one, when they differ from it.
    combined: Option<Fingerprint>,
}

impl Filed {
    fn executes(&mut self, k: Known, all: &mut Vec<Executed>) {
        if all.len() <= MAX_PARTS {
            all.push(Executed {
                fp: k.fp.clone(),
                control: k.control,
            });
        }
        match &mut self.first {
            None => self.first = Some(k),
            Some(first) if first.control && !k.control => *first = k,
            Some(_) if k.control => {}
            Some(first) if first.fp.id == k.fp.id && self.combined.is_none() => {}
            Some(first) => {
                let c = self.combined.get_or_insert_with(|| (*first.fp).clone());
                c.ordered &= k.fp.ordered;
                c.nondeterministic = c.nondeterministic.or(k.fp.nondeterministic);
            }
        }
    }

    fn statement(self) -> Option<Arc<Fingerprint>> {
        match self.combined {
            Some(c) => Some(Arc::new(c)),
            None => self.first.map(|k| k.fp),
        }
    }
}

/// Most named statements remembered per session (a client that prepares without end
/// must not grow the proxy without end; forgotten ones are simply not compared).
const MAX_STATEMENTS: usize = 10_000;

impl Statements {
    /// [`Statements::run`]'s statement alone.
    #[cfg(test)]
    fn request(&mut self, payload: &[Bytes]) -> Option<Arc<Fingerprint>> {
        self.run(payload).statement
    }

    /// Follows the request's Parse/Bind/Close messages and returns what it runs.
    pub fn run(&mut self, payload: &[Bytes]) -> Run {
        let mut all = std::mem::take(&mut self.executed);
        all.clear();
        let statement = self.follow(payload, &mut all);
        let several = all
            .iter()
            .filter(|e| !e.control)
            .any(|e| Some(e.fp.id) != statement.as_ref().map(|s| s.id));
        let each = (several && all.len() <= MAX_PARTS).then(|| all.as_slice().into());
        if all.capacity() > 64 {
            all = Vec::new();
        }
        self.executed = all;
        Run { statement, each }
    }

    fn follow(&mut self, payload: &[Bytes], all: &mut Vec<Executed>) -> Option<Arc<Fingerprint>> {
        let mut executed = Filed::default();
        let mut parsed = None;
        for part in payload {
            for (tag, msg) in Frames::new(part) {
                let body = msg.get(5..).unwrap_or(&[]);
                match tag {
                    client::QUERY => {
                        let (text, _) = cstr(body)?;
                        for statement in sql::statements(text) {
                            executed.executes(Known::of(statement), all);
                        }
                    }
                    client::PARSE => {
                        let (name, rest) = cstr(body)?;
                        let (text, _) = cstr(rest)?;
                        let known = Known::of(text);
                        if name.is_empty() || self.statements.len() < MAX_STATEMENTS {
                            self.statements.insert(name.into(), known.clone());
                        }
                        parsed = Some(known.fp);
                    }
                    client::BIND => {
                        let (portal, rest) = cstr(body)?;
                        let (statement, _) = cstr(rest)?;
                        let fp = self.statements.get(statement).cloned();
                        match (portal.is_empty(), fp) {
                            (true, fp) => self.unnamed_portal = fp,
                            (false, Some(fp)) => {
                                self.portals.insert(portal.into(), fp);
                            }
                            (false, None) => {
                                self.portals.remove(portal);
                            }
                        }
                    }
                    client::EXECUTE => {
                        let (portal, _) = cstr(body)?;
                        let known = if portal.is_empty() {
                            self.unnamed_portal.clone()
                        } else {
                            self.portals.get(portal).cloned()
                        };
                        if let Some(k) = known {
                            executed.executes(k, all);
                        }
                    }
                    client::CLOSE => {
                        let (&kind, rest) = body.split_first()?;
                        let (name, _) = cstr(rest)?;
                        match (kind, name.is_empty()) {
                            (client::STATEMENT, _) => drop(self.statements.remove(name)),
                            (_, true) => self.unnamed_portal = None,
                            (_, false) => drop(self.portals.remove(name)),
                        }
                    }
                    _ => {}
                }
            }
        }
        executed.statement().or(parsed)
    }
}

fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn msg(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
        let body: Vec<u8> = parts.concat();
        let mut m = vec![tag];
        m.put_u32(body.len() as u32 + 4);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn follows_prepared_statements_across_requests() {
        let mut s = Statements::default();
        let q = Bytes::from(msg(b'Q', &[b"select 1\0"]));
        assert_eq!(&*s.request(&[q]).unwrap().text, "select ?");

        // Parse + Sync alone (a driver preparing): the parsed statement.
        let prepare = [
            msg(
                b'P',
                &[b"s1\0select * from t where id = $1 order by id\0", &[0, 0]],
            ),
            msg(b'S', &[]),
        ]
        .concat();
        let fp = s.request(&[Bytes::from(prepare)]).unwrap();
        assert!(fp.ordered);
        // A later Bind/Execute of "s1" runs that statement.
        let run = [
            msg(b'B', &[b"\0s1\0", &[0, 0, 0, 0, 0, 0]]),
            msg(b'E', &[b"\0", &[0, 0, 0, 0]]),
            msg(b'S', &[]),
        ]
        .concat();
        assert_eq!(s.request(&[Bytes::from(run.clone())]).unwrap().id, fp.id);
        // Closed: no longer known.
        let close = [msg(b'C', &[b"Ss1\0"]), msg(b'S', &[])].concat();
        assert!(s.request(&[Bytes::from(close)]).is_none());
        assert!(s.request(&[Bytes::from(run)]).is_none());
    }

    fn query(sql: &str) -> Bytes {
        Bytes::from(msg(b'Q', &[sql.as_bytes(), b"\0"]))
    }

    /// Parse (unnamed) + Bind + Execute of `sql`, as pgjdbc sends each statement of a batch.
    fn run_unnamed(sql: &str) -> Vec<u8> {
        [
            msg(b'P', &[b"\0", sql.as_bytes(), b"\0", &[0, 0]]),
            msg(b'B', &[b"\0\0", &[0, 0, 0, 0, 0, 0]]),
            msg(b'E', &[b"\0", &[0, 0, 0, 0]]),
        ]
        .concat()
    }

    #[test]
    fn transaction_control_is_never_what_a_request_is_filed_under() {
        let mut s = Statements::default();
        // A multi-statement simple query: its data statement.
        let fp = s
            .request(&[query("BEGIN; select clock_timestamp(); COMMIT")])
            .unwrap();
        assert_eq!(&*fp.text, "select clock_timestamp()");
        assert!(fp.nondeterministic.is_some(), "judged as the statement is");

        // pgjdbc with autocommit off: BEGIN in the same batch as the first statement.
        let batch = [
            run_unnamed("BEGIN"),
            run_unnamed("update t set v = $1 where id = $2"),
            msg(b'S', &[]),
        ]
        .concat();
        let fp = s.request(&[Bytes::from(batch)]).unwrap();
        assert_eq!(&*fp.text, "update t set v = ? where id = ?");

        // autosave=always: a savepoint before each statement.
        let batch = [
            run_unnamed("SAVEPOINT PGJDBC_AUTOSAVE"),
            run_unnamed("select * from t order by id"),
            msg(b'S', &[]),
        ]
        .concat();
        let fp = s.request(&[Bytes::from(batch)]).unwrap();
        assert_eq!(&*fp.text, "select * from t order by id");
        assert!(fp.ordered);

        // Only transaction control: filed under it.
        assert_eq!(&*s.request(&[query("COMMIT")]).unwrap().text, "commit");
        let release = [run_unnamed("RELEASE SAVEPOINT a"), msg(b'S', &[])].concat();
        assert_eq!(
            &*s.request(&[Bytes::from(release)]).unwrap().text,
            "release savepoint a"
        );
    }

    #[test]
    fn several_data_statements_are_judged_together() {
        let mut s = Statements::default();
        // Filed under the first; non-deterministic if any is, ordered only if all are.
        let fp = s
            .request(&[query("select 1 order by 1; select now(); ROLLBACK")])
            .unwrap();
        assert_eq!(&*fp.text, "select ? order by ?");
        assert_eq!(fp.nondeterministic, Some("now"));
        assert!(!fp.ordered);
        // An executeBatch: the same statement several times is that statement.
        let one = run_unnamed("insert into t values ($1)");
        let batch = [one.clone(), one.clone(), one, msg(b'S', &[])].concat();
        let fp = s.request(&[Bytes::from(batch.clone())]).unwrap();
        assert_eq!(&*fp.text, "insert into t values (...)");
        assert!(fp.nondeterministic.is_none());
        assert!(s.run(&[Bytes::from(batch)]).each.is_none(), "one statement");
    }

    #[test]
    fn several_different_statements_are_listed_one_by_one() {
        let mut s = Statements::default();
        let run = s.run(&[query("BEGIN; select 1; update t set v = 2; COMMIT")]);
        assert_eq!(&*run.statement.unwrap().text, "select ?");
        let each: Vec<_> = run
            .each
            .expect("listed")
            .iter()
            .map(|e| (e.fp.text.to_string(), e.control))
            .collect();
        assert_eq!(
            each,
            [
                ("begin".to_string(), true),
                ("select ?".to_string(), false),
                ("update t set v = ?".to_string(), false),
                ("commit".to_string(), true),
            ]
        );
        // BEGIN with one statement: nothing to split.
        assert!(s.run(&[query("BEGIN; select 1")]).each.is_none());
        // Past MAX_PARTS statements: compared whole.
        let long = vec!["select 1; select a from t"; MAX_PARTS].join(";");
        assert!(s.run(&[query(&long)]).each.is_none());
    }
}
