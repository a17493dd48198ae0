//! Named prepared statements on the mirror: the client prepares a statement once and binds
//! it many times, so a mirror that missed the Parse (it was dropped with a full queue, sat
//! in a transaction the exposure left out, or was cancelled by `mirror_timeout_ms`) would
//! answer every later Bind with `26000 prepared statement does not exist`, forever. That
//! blames the new server for the proxy's own omission.
//!
//! So the client session's tap keeps the client's own definitions ([`Definitions`]: the
//! Parse message of each named statement, copied, whatever became of its request), and
//! the mirror connection keeps what its server has confirmed ([`OnMirror`]), by name and
//! definition: a client may close a statement and define its name again, and if the mirror
//! missed that, it still has the old one. A request that binds or describes a statement
//! the mirror has not confirmed in the client's current definition gets `Close` + `Parse`
//! of that statement put in front of it: closing a statement that does not exist is not an
//! error, so the pair is right whether or not the mirror had it. The two messages answer
//! CloseComplete and ParseComplete, which change nothing the mirror worker measures.

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use xxhash_rust::xxh3::xxh3_64;

use crate::protocol::frame::{split_cstr as cstr, Frames};
use crate::protocol::messages;
use crate::protocol::tag::client;
use crate::sql::{self, deallocation};

/// Most statements, and bytes of their Parse messages, kept per client session. Past
/// either, new definitions are not kept and their statements are not repaired.
const MAX_DEFINITIONS: usize = 10_000;
const MAX_DEFINITION_BYTES: usize = 4 * 1024 * 1024;

/// The client's named statements, as it defined them on the primary. Written by the tap
/// (only on Parse and Close of a named statement, and on `DEALLOCATE`/`DISCARD ALL`), read
/// by the mirror worker.
#[derive(Default)]
pub struct Definitions {
    inner: Mutex<DefinitionMap>,
    /// Raised on every change, so that the worker checks a statement it already found
    /// confirmed in the client's definition only when the definitions changed since.
    changes: AtomicU64,
}

#[derive(Default)]
struct DefinitionMap {
    by_name: HashMap<Box<[u8]>, Definition>,
    bytes: usize,
}

struct Definition {
    /// The whole Parse message.
    parse: Bytes,
    /// Its [`version`].
    version: u64,
    /// Sequence number of the first request that could bind it: requests before it
    /// refer to an earlier definition of the same name, which is gone.
    from_seq: u64,
}

impl Definitions {
    /// The client sent `parse` (a whole Parse message); `seq` is the sequence number its
    /// request's first ReadyForQuery gets.
    pub fn parsed(&self, parse: &[u8], seq: u64) {
        let Some((name, rest)) = parse.get(5..).and_then(cstr) else {
            return;
        };
        if name.is_empty() {
            // The unnamed statement travels in the request that uses it. It may deallocate
            // named ones: drivers of the extended protocol send `DEALLOCATE` that way.
            if let Some((text, _)) = cstr(rest) {
                self.query(text);
            }
            return;
        }
        let mut map = self.inner.lock().unwrap();
        if map.by_name.contains_key(name) {
            // Defined again without a Close seen here. The server refuses that (42P05) and
            // keeps the first, unless it had forgotten the first in a way not seen here
            // (DEALLOCATE inside a longer query, or a Parse it refused). Which definition
            // it has is not known, so neither is kept: the statement is no longer
            // repaired, and never repaired to the wrong text.
            self.forget_in(&mut map, Some(name));
            return;
        }
        if map.by_name.len() >= MAX_DEFINITIONS || map.bytes + parse.len() > MAX_DEFINITION_BYTES {
            return;
        }
        map.bytes += parse.len();
        self.changes.fetch_add(1, Ordering::Release);
        map.by_name.insert(
            name.into(),
            Definition {
                parse: Bytes::copy_from_slice(parse),
                version: version(parse),
                from_seq: seq,
            },
        );
    }

    /// The client closed statement `name` (the body of a Close message).
    pub fn closed(&self, close_body: &[u8]) {
        if let Some((&client::STATEMENT, rest)) = close_body.split_first() {
            if let Some((name, _)) = cstr(rest) {
                self.forget(Some(name));
            }
        }
    }

    /// The client sent a simple query (the body of a Query message). `DEALLOCATE` and
    /// `DISCARD ALL` make the server forget statements; so do their definitions here.
    /// Returns whether it was one of those.
    pub fn query(&self, body: &[u8]) -> bool {
        match deallocation(body) {
            Some(gone) => {
                self.forget(gone.name());
                true
            }
            None => false,
        }
    }

    /// Forgets statement `name`, or all of them.
    fn forget(&self, name: Option<&[u8]>) {
        let mut map = self.inner.lock().unwrap();
        self.forget_in(&mut map, name);
    }

    /// [`Definitions::forget`], under the lock; raises `changes` when anything was there.
    fn forget_in(&self, map: &mut DefinitionMap, name: Option<&[u8]>) {
        let changed = match name {
            Some(name) => map
                .by_name
                .remove(name)
                .map(|old| map.bytes -= old.parse.len()),
            None => (!map.by_name.is_empty()).then(|| *map = DefinitionMap::default()),
        };
        if changed.is_some() {
            self.changes.fetch_add(1, Ordering::Release);
        }
    }

    /// The Parse message defining `name` for a request whose first ReadyForQuery has
    /// sequence number `seq`, unless its [`version`] is `known` (then `Ok(())`).
    pub(super) fn get(
        &self,
        name: &[u8],
        seq: u64,
        known: Option<u64>,
    ) -> Option<Result<(), (Bytes, u64)>> {
        let map = self.inner.lock().unwrap();
        let d = map.by_name.get(name).filter(|d| d.from_seq <= seq)?;
        Some(if known == Some(d.version) {
            Ok(())
        } else {
            Err((d.parse.clone(), d.version))
        })
    }
}

/// Tells two definitions of one statement name apart: a hash of the whole Parse message
/// (name, text and parameter types). Equal messages define the same statement.
fn version(parse: &[u8]) -> u64 {
    xxh3_64(parse)
}

/// What one request does to the mirror's statements, settled when it is answered.
#[derive(Default, Debug)]
pub struct Effects {
    /// Statements it (re)defines, repairs included, with the [`version`] of each.
    defines: SmallVec<[(Box<[u8]>, u64); 1]>,
    /// [`OnMirror::epoch`] when it was sent.
    epoch: u64,
    /// It prepares a statement in SQL (`PREPARE`): the session's statements now live on
    /// this connection alone, which it keeps from then on (see [`OnMirror::prepare`]).
    pub sql_prepare: bool,
}

/// A [`Confirmed`] version for a statement the server may have in an unknown definition
/// (a request that defined it failed, or statements were closed while it was on its way):
/// never a client's, so a use repairs it, and a client's Parse of the name closes it first
/// when it came with the connection.
const UNKNOWN: u64 = 0;

/// The statements one mirror server connection has, as far as its answers confirm.
///
/// In transaction mode mirror connections are pooled: a session has one only while it
/// replays a transaction, and the statements other sessions left on it come with it
/// ([`OnMirror::handed_over`]). Those are statements of other clients, under their names:
/// a Bind of the same name in another definition is repaired as any other, and a Parse of
/// a name the connection already has closes it first (the client has not defined it,
/// whatever the connection holds). Such a connection keeps at most
/// `max_prepared_statements`, least recently used first out, as the primary's do.
#[derive(Default)]
pub struct OnMirror {
    /// Statement name to what the mirror's answers confirmed.
    confirmed: HashMap<Box<[u8]>, Confirmed>,
    /// Raised when a request that closes statements is sent: definitions confirmed by
    /// answers to requests sent before it may no longer hold.
    epoch: u64,
    /// Most statements kept on a pooled connection; `None` for a session's own.
    limit: Option<usize>,
    /// Counts requests prepared, to find the least recently used statement.
    clock: u64,
}

/// A statement the mirror has.
struct Confirmed {
    /// The [`version`] its answers confirmed, or [`UNKNOWN`].
    version: u64,
    /// [`Definitions::changes`] when the version was last found to be the client's.
    checked: Option<u64>,
    /// The request (by [`OnMirror::clock`]) that last used or defined it.
    used: u64,
    /// Defined by another session before the connection came to this one.
    inherited: bool,
}

impl OnMirror {
    /// The statements of a connection pooled among sessions: at most `limit` of them.
    pub fn pooled(limit: usize) -> OnMirror {
        OnMirror {
            limit: Some(limit.max(1)),
            ..OnMirror::default()
        }
    }

    /// The connection comes to another session: what it has was defined by other clients,
    /// and nothing was checked against this one's definitions.
    pub fn handed_over(mut self) -> OnMirror {
        for c in self.confirmed.values_mut() {
            c.inherited = true;
            c.checked = None;
        }
        self
    }

    /// Statements the connection has (or may have).
    pub fn len(&self) -> usize {
        self.confirmed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.confirmed.is_empty()
    }

    /// Puts in front of `payload` the definitions it needs and the mirror may lack, and
    /// returns what the request will do to the mirror's statements. `seq` is the
    /// sequence number of the request's first ReadyForQuery.
    pub fn prepare(
        &mut self,
        payload: &mut SmallVec<[Bytes; 2]>,
        seq: u64,
        definitions: &Definitions,
    ) -> Effects {
        self.clock += 1;
        let mut effects = Effects::default();
        let mut front = Front::default();
        let mut closes = false;
        for part in payload.iter() {
            for (tag, msg) in Frames::new(part) {
                let body = msg.get(5..).unwrap_or(&[]);
                match tag {
                    client::PARSE => match cstr(body) {
                        Some((name, _)) if !name.is_empty() => {
                            if self.confirmed.get(name).is_some_and(|c| c.inherited) {
                                front.closes.push(name.into());
                                self.confirmed.remove(name);
                                closes = true;
                            }
                            effects.defines.push((name.into(), version(msg)));
                        }
                        Some((_, rest)) => {
                            let text = cstr(rest).map_or(&[][..], |(text, _)| text);
                            closes |= self.reads_sql(text, &mut effects);
                        }
                        None => {}
                    },
                    client::BIND => {
                        let statement = cstr(body).and_then(|(_, rest)| cstr(rest));
                        if let Some((name, _)) = statement {
                            self.need(name, seq, definitions, &mut effects, &mut front);
                        }
                    }
                    client::DESCRIBE if body.first() == Some(&client::STATEMENT) => {
                        if let Some((name, _)) = cstr(&body[1..]) {
                            self.need(name, seq, definitions, &mut effects, &mut front);
                        }
                    }
                    client::CLOSE if body.first() == Some(&client::STATEMENT) => {
                        if let Some((name, _)) = cstr(&body[1..]) {
                            self.forget(Some(name), &mut effects);
                            closes = true;
                        }
                    }
                    client::QUERY => closes |= self.reads_sql(body, &mut effects),
                    _ => {}
                }
            }
        }
        closes |= self.make_room(&effects, &mut front);
        if closes {
            self.epoch += 1;
        }
        effects.epoch = self.epoch;
        if !front.is_empty() {
            payload.insert(0, front.messages());
        }
        effects
    }

    /// Looks at the SQL `text` of a request: what it deallocates is gone from the mirror
    /// once it runs (returns whether it deallocates anything), and a `PREPARE` is noted.
    fn reads_sql(&mut self, text: &[u8], effects: &mut Effects) -> bool {
        effects.sql_prepare |= prepares(text);
        deallocation(text)
            .map(|gone| self.forget(gone.name(), effects))
            .is_some()
    }

    /// Statement `name`, or all of them, will be gone from the mirror once the request
    /// with `effects` runs: neither confirmed nor defined by it.
    fn forget(&mut self, name: Option<&[u8]>, effects: &mut Effects) {
        match name {
            Some(name) => {
                self.confirmed.remove(name);
                effects.defines.retain(|(d, _)| **d != *name);
            }
            None => {
                self.confirmed.clear();
                effects.defines.clear();
            }
        }
    }

    /// A statement the request binds: fine when defined earlier in the request or
    /// confirmed on the mirror in the client's definition, else repaired when that
    /// definition is known. When it is not (never kept, or already replaced by a later
    /// one), whatever the mirror confirmed under the name is the best there is.
    fn need(
        &mut self,
        name: &[u8],
        seq: u64,
        definitions: &Definitions,
        effects: &mut Effects,
        front: &mut Front,
    ) {
        if name.is_empty() || effects.defines.iter().any(|(d, _)| **d == *name) {
            return;
        }
        // Read before the definitions: a change after this is seen at the next check.
        let changes = definitions.changes.load(Ordering::Acquire);
        let confirmed = self.confirmed.get_mut(name);
        let known = match confirmed {
            Some(Confirmed { checked, used, .. }) if *checked == Some(changes) => {
                *used = self.clock;
                return;
            }
            Some(ref c) => Some(c.version),
            None => None,
        };
        match definitions.get(name, seq, known) {
            Some(Ok(())) => {
                if let Some(c) = confirmed {
                    c.checked = Some(changes);
                    c.used = self.clock;
                }
            }
            Some(Err((parse, version))) => {
                effects.defines.push((name.into(), version));
                front.repairs.push(parse);
            }
            None => {
                if let Some(c) = confirmed {
                    c.used = self.clock;
                }
            }
        }
    }

    /// On a pooled connection at its limit: closes the least recently used statements
    /// this request does not use, to make room for what it defines. Returns whether it
    /// closes any.
    fn make_room(&mut self, effects: &Effects, front: &mut Front) -> bool {
        let Some(limit) = self.limit else {
            return false;
        };
        let new = effects
            .defines
            .iter()
            .filter(|(name, _)| !self.confirmed.contains_key(name))
            .count();
        let mut over = (self.confirmed.len() + new).saturating_sub(limit);
        if over == 0 {
            return false;
        }
        let mut oldest: Vec<(u64, Box<[u8]>)> = self
            .confirmed
            .iter()
            .filter(|(name, c)| {
                c.used < self.clock && !effects.defines.iter().any(|(d, _)| d == *name)
            })
            .map(|(name, c)| (c.used, name.clone()))
            .collect();
        oldest.sort_unstable();
        for (_, name) in oldest {
            if over == 0 {
                break;
            }
            self.confirmed.remove(&name);
            front.closes.push(name);
            over -= 1;
        }
        true
    }

    /// The request with `effects` was answered: without an error its definitions hold
    /// (unless statements were closed since it was sent); with one, which of them ran is
    /// unknown, so none is trusted, and the server may have each in some definition.
    pub fn answered(&mut self, effects: Effects, ok: bool) {
        for (name, version) in effects.defines {
            let version = if ok && effects.epoch == self.epoch {
                version
            } else {
                UNKNOWN
            };
            let confirmed = Confirmed {
                version,
                checked: None,
                used: self.clock,
                inherited: false,
            };
            self.confirmed.insert(name, confirmed);
        }
    }
}

/// What goes in front of a request: statements closed (inherited names the client defines
/// anew, least recently used ones making room), then the repairs.
#[derive(Default)]
struct Front {
    closes: SmallVec<[Box<[u8]>; 1]>,
    /// The client's Parse of each statement to repair.
    repairs: SmallVec<[Bytes; 1]>,
}

impl Front {
    fn is_empty(&self) -> bool {
        self.closes.is_empty() && self.repairs.is_empty()
    }

    /// `Close` (statement) of each name closed, then `Close` and the client's `Parse` of
    /// each statement to repair.
    fn messages(&self) -> Bytes {
        let mut out = BytesMut::new();
        for name in &self.closes {
            close_statement(&mut out, name);
        }
        for parse in &self.repairs {
            let name = parse
                .get(5..)
                .and_then(cstr)
                .map_or(&[][..], |(name, _)| name);
            close_statement(&mut out, name);
            out.put_slice(parse);
        }
        out.freeze()
    }
}

fn close_statement(out: &mut BytesMut, name: &[u8]) {
    messages::put(out, client::CLOSE, |b| {
        b.put_u8(client::STATEMENT);
        b.put_slice(name);
        b.put_u8(0);
    });
}

/// Whether SQL `text` starts with `PREPARE` (a statement prepared in SQL).
fn prepares(text: &[u8]) -> bool {
    sql::first_keyword(sql::query_text(text)).is_some_and(|w| w.eq_ignore_ascii_case(b"prepare"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.put_u32(body.len() as u32 + 4);
        m.extend_from_slice(body);
        m
    }

    fn parse(name: &str, sql: &str) -> Vec<u8> {
        msg(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
    }

    fn bind_execute(name: &str) -> Vec<u8> {
        let mut body = format!("\0{name}\0").into_bytes();
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        [
            msg(b'B', &body),
            msg(b'E', &[0, 0, 0, 0, 0]),
            msg(b'S', &[]),
        ]
        .concat()
    }

    fn payload(parts: &[Vec<u8>]) -> SmallVec<[Bytes; 2]> {
        SmallVec::from_iter([Bytes::from(parts.concat())])
    }

    /// The client defines `name` as `sql` in request `seq`, and the mirror confirms it.
    fn define_and_confirm(defs: &Definitions, on: &mut OnMirror, name: &str, sql: &str, seq: u64) {
        defs.parsed(&parse(name, sql), seq);
        let mut p = payload(&[parse(name, sql), bind_execute(name)]);
        let e = on.prepare(&mut p, seq, defs);
        on.answered(e, true);
    }

    fn tags(payload: &SmallVec<[Bytes; 2]>) -> String {
        payload
            .iter()
            .flat_map(|p| Frames::new(p).map(|(t, _)| t as char).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn a_bind_of_a_statement_the_mirror_never_saw_is_repaired() {
        let defs = Definitions::default();
        // The client prepared s1 in request 1 (that request never reached the mirror).
        defs.parsed(&parse("s1", "select $1"), 1);
        let mut on = OnMirror::default();
        let mut p = payload(&[bind_execute("s1")]);
        let effects = on.prepare(&mut p, 2, &defs);
        assert_eq!(tags(&p), "CPBES");
        // The repair's Close names the statement.
        let close = &p[0][..];
        assert_eq!(&close[5..9], b"Ss1\0");
        // Answered: confirmed, so the next Bind goes out as it is.
        on.answered(effects, true);
        let mut p = payload(&[bind_execute("s1")]);
        on.prepare(&mut p, 3, &defs);
        assert_eq!(tags(&p), "BES");
    }

    #[test]
    fn a_failed_definition_is_not_trusted() {
        let defs = Definitions::default();
        let mut on = OnMirror::default();
        let mut p = payload(&[parse("s1", "select 1"), bind_execute("s1")]);
        defs.parsed(&parse("s1", "select 1"), 1);
        let effects = on.prepare(&mut p, 1, &defs);
        assert_eq!(
            tags(&p),
            "PBES",
            "a request that defines what it binds is left alone"
        );
        // Cancelled by the timeout: the next use repairs.
        on.answered(effects, false);
        let mut p = payload(&[bind_execute("s1")]);
        let effects = on.prepare(&mut p, 2, &defs);
        assert_eq!(tags(&p), "CPBES");
        on.answered(effects, true);
    }

    #[test]
    fn requests_sent_while_the_definition_is_unanswered_repair_too() {
        let defs = Definitions::default();
        defs.parsed(&parse("s1", "select 1"), 1);
        let mut on = OnMirror::default();
        let mut first = payload(&[parse("s1", "select 1"), bind_execute("s1")]);
        let e1 = on.prepare(&mut first, 1, &defs);
        // Pipelined behind it, before its answer: repaired, whatever becomes of the first.
        let mut second = payload(&[bind_execute("s1")]);
        let e2 = on.prepare(&mut second, 2, &defs);
        assert_eq!(tags(&second), "CPBES");
        on.answered(e1, true);
        on.answered(e2, true);
        let mut third = payload(&[bind_execute("s1")]);
        on.prepare(&mut third, 3, &defs);
        assert_eq!(tags(&third), "BES");
    }

    #[test]
    fn a_name_redefined_in_a_request_the_mirror_missed_is_repaired_with_the_new_definition() {
        let defs = Definitions::default();
        let mut on = OnMirror::default();
        // s1 defined and confirmed on the mirror.
        define_and_confirm(&defs, &mut on, "s1", "insert into a values (1)", 1);
        // Used again: found to be the client's definition, and left alone.
        let mut p = payload(&[bind_execute("s1")]);
        on.prepare(&mut p, 2, &defs);
        assert_eq!(tags(&p), "BES");
        // The client closes s1 and defines it again, in a request the mirror never gets.
        defs.closed(b"Ss1\0");
        defs.parsed(&parse("s1", "update b set x = 2"), 3);
        // Its next Bind of s1 must not run the old statement on the mirror.
        let mut p = payload(&[bind_execute("s1")]);
        let e = on.prepare(&mut p, 4, &defs);
        assert_eq!(tags(&p), "CPBES");
        assert!(p[0].windows(18).any(|w| w == b"update b set x = 2"));
        on.answered(e, true);
        // Confirmed in the new definition: left alone from then on.
        let mut p = payload(&[bind_execute("s1")]);
        on.prepare(&mut p, 5, &defs);
        assert_eq!(tags(&p), "BES");
    }

    #[test]
    fn a_newer_definition_is_not_used_for_an_older_request() {
        let defs = Definitions::default();
        // s1 was redefined by the client at request 10; the mirror is at request 5.
        defs.parsed(&parse("s1", "select 2"), 10);
        let mut on = OnMirror::default();
        let mut p = payload(&[bind_execute("s1")]);
        on.prepare(&mut p, 5, &defs);
        assert_eq!(tags(&p), "BES");
    }

    #[test]
    fn closes_and_discards_unconfirm() {
        let defs = Definitions::default();
        defs.parsed(&parse("s1", "select 1"), 1);
        let mut on = OnMirror::default();
        let mut p = payload(&[bind_execute("s1")]);
        let e = on.prepare(&mut p, 2, &defs);
        on.answered(e, true);
        // DISCARD ALL sent: the answer of a definition sent before it does not confirm.
        let mut early = payload(&[parse("s1", "select 1"), bind_execute("s1")]);
        let stale = on.prepare(&mut early, 3, &defs);
        let mut discard = payload(&[msg(b'Q', b"DISCARD ALL\0")]);
        on.prepare(&mut discard, 4, &defs);
        on.answered(stale, true);
        let mut p = payload(&[bind_execute("s1")]);
        on.prepare(&mut p, 5, &defs);
        assert_eq!(tags(&p), "CPBES");

        // The client closes s1: its definition is gone and nothing is repaired.
        defs.closed(b"Ss1\0");
        let mut p = payload(&[bind_execute("s1")]);
        on.prepare(&mut p, 6, &defs);
        assert_eq!(tags(&p), "BES");
    }

    #[test]
    fn a_name_defined_twice_without_a_close_is_no_longer_repaired() {
        let defs = Definitions::default();
        let mut on = OnMirror::default();
        defs.parsed(&parse("s1", "select 1"), 1);
        // Without a Close: the server refused this (42P05), or had lost the first in a way
        // the proxy did not see. Neither text is safe to repair with.
        defs.parsed(&parse("s1", "select 2"), 2);
        assert!(defs.get(b"s1", 3, None).is_none());
        let mut p = payload(&[bind_execute("s1")]);
        on.prepare(&mut p, 3, &defs);
        assert_eq!(tags(&p), "BES");
        // After a DEALLOCATE the proxy sees, the name is followed again.
        defs.query(b"/* app */ DEALLOCATE s1\0");
        defs.parsed(&parse("s1", "select 3"), 4);
        let (now, _) = defs.get(b"s1", 5, None).unwrap().unwrap_err();
        assert_eq!(&now[..], &parse("s1", "select 3")[..]);
        defs.query(b"discard all\0");
        assert!(defs.get(b"s1", 5, None).is_none());
    }

    #[test]
    fn a_deallocate_through_the_extended_protocol_is_followed_too() {
        let defs = Definitions::default();
        let mut on = OnMirror::default();
        define_and_confirm(&defs, &mut on, "s1", "select 1", 1);
        // As an unnamed statement, the way extended-protocol drivers send any SQL.
        defs.parsed(&parse("", "DEALLOCATE s1"), 2);
        let mut p = payload(&[parse("", "DEALLOCATE s1"), bind_execute("")]);
        let e = on.prepare(&mut p, 2, &defs);
        on.answered(e, true);
        assert!(on.confirmed.is_empty(), "no longer on the mirror");
        // The name is defined again, in a request the mirror misses: the repair uses it.
        defs.parsed(&parse("s1", "select 2"), 3);
        let mut p = payload(&[bind_execute("s1")]);
        on.prepare(&mut p, 4, &defs);
        assert_eq!(tags(&p), "CPBES");
        assert!(p[0].windows(8).any(|w| w == b"select 2"));
    }

    #[test]
    fn unnamed_statements_and_limits() {
        let defs = Definitions::default();
        defs.parsed(&parse("", "select 1"), 1);
        assert!(defs.inner.lock().unwrap().by_name.is_empty());
        let big = "x".repeat(MAX_DEFINITION_BYTES);
        defs.parsed(&parse("huge", &big), 1);
        assert!(defs.get(b"huge", 1, None).is_none());
        defs.parsed(&parse("s", "select 1"), 1);
        defs.closed(b"Ss\0");
        defs.parsed(&parse("s", "select 22"), 2);
        let map = defs.inner.lock().unwrap();
        assert_eq!(map.by_name.len(), 1);
        assert_eq!(map.bytes, parse("s", "select 22").len());
    }

    /// A pooled connection comes to another session with statements of other clients:
    /// a name the client defines is closed first, a name it binds is checked against its
    /// own definition.
    #[test]
    fn a_handed_over_connection_has_other_clients_statements() {
        let (a, b) = (Definitions::default(), Definitions::default());
        let mut on = OnMirror::pooled(10);
        define_and_confirm(&a, &mut on, "s1", "select 1", 1);
        define_and_confirm(&a, &mut on, "s2", "select 2", 2);
        let mut on = on.handed_over();
        // b defines s1 itself: the inherited one is closed in front of its Parse.
        b.parsed(&parse("s1", "select 100"), 1);
        let mut p = payload(&[parse("s1", "select 100"), bind_execute("s1")]);
        let e = on.prepare(&mut p, 1, &b);
        assert_eq!(tags(&p), "CPBES");
        on.answered(e, true);
        // Its own now: a Parse of it again would be the client's own mistake, passed on.
        let mut p = payload(&[bind_execute("s1")]);
        on.prepare(&mut p, 2, &b);
        assert_eq!(tags(&p), "BES");
        // s2 the same text as b's: checked, left alone; another text: repaired.
        b.parsed(&parse("s2", "select 2"), 3);
        let mut p = payload(&[bind_execute("s2")]);
        on.prepare(&mut p, 3, &b);
        assert_eq!(tags(&p), "BES");
        let c = Definitions::default();
        c.parsed(&parse("s2", "select 3"), 1);
        let mut on = on.handed_over();
        let mut p = payload(&[bind_execute("s2")]);
        on.prepare(&mut p, 1, &c);
        assert_eq!(tags(&p), "CPBES");
    }

    /// A pooled connection keeps at most its limit: the least recently used statement not
    /// needed by the request is closed in front of it.
    #[test]
    fn a_pooled_connection_closes_its_least_recently_used_statement() {
        let defs = Definitions::default();
        let mut on = OnMirror::pooled(2);
        define_and_confirm(&defs, &mut on, "s1", "select 1", 1);
        define_and_confirm(&defs, &mut on, "s2", "select 2", 2);
        // s1 used again: s2 is now the least recently used.
        let mut p = payload(&[bind_execute("s1")]);
        let e = on.prepare(&mut p, 3, &defs);
        on.answered(e, true);
        defs.parsed(&parse("s3", "select 3"), 4);
        let mut p = payload(&[parse("s3", "select 3"), bind_execute("s3")]);
        let e = on.prepare(&mut p, 4, &defs);
        assert_eq!(tags(&p), "CPBES");
        assert_eq!(&p[0][5..9], b"Ss2\0", "s2 closed");
        on.answered(e, true);
        assert_eq!(on.len(), 2);
        // s2 is repaired when bound again, making room in turn.
        let mut p = payload(&[bind_execute("s2")]);
        on.prepare(&mut p, 5, &defs);
        assert_eq!(tags(&p), "CCPBES");
        // A session's own connection (session mode) is not bounded.
        let mut own = OnMirror::default();
        for i in 0..5 {
            define_and_confirm(&defs, &mut own, &format!("t{i}"), "select 1", 10 + i);
        }
        assert_eq!(own.len(), 5);
    }

    #[test]
    fn sql_prepare_is_noticed() {
        let defs = Definitions::default();
        let mut on = OnMirror::pooled(2);
        for (sql, prepares) in [
            ("prepare q as select 1", true),
            ("  -- x\n PREPARE q(int) AS select $1", true),
            ("select 'prepare'", false),
            ("execute q", false),
        ] {
            let mut p = payload(&[msg(b'Q', format!("{sql}\0").as_bytes())]);
            assert_eq!(on.prepare(&mut p, 1, &defs).sql_prepare, prepares, "{sql}");
        }
    }
}
