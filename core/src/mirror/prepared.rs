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
use std::sync::Mutex;
use xxhash_rust::xxh3::xxh3_64;

use crate::protocol::frame::{split_cstr as cstr, Frames};
use crate::protocol::messages;

/// Most statements, and bytes of their Parse messages, kept per client session. Past
/// either, new definitions are not kept and their statements are not repaired.
const MAX_DEFINITIONS: usize = 10_000;
const MAX_DEFINITION_BYTES: usize = 4 * 1024 * 1024;

/// The client's named statements, as it defined them on the primary. Written by the tap
/// (only on Parse and Close of a named statement), read by the mirror worker when a repair
/// is needed.
#[derive(Default)]
pub struct Definitions {
    inner: Mutex<DefinitionMap>,
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
        let Some((name, _)) = parse.get(5..).and_then(cstr) else {
            return;
        };
        if name.is_empty() {
            return; // The unnamed statement travels in the request that uses it.
        }
        let mut map = self.inner.lock().unwrap();
        if let Some(old) = map.by_name.remove(name) {
            map.bytes -= old.parse.len();
        }
        if map.by_name.len() >= MAX_DEFINITIONS || map.bytes + parse.len() > MAX_DEFINITION_BYTES {
            return;
        }
        map.bytes += parse.len();
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
        if let Some((b'S', rest)) = close_body.split_first().map(|(k, r)| (*k, r)) {
            if let Some((name, _)) = cstr(rest) {
                let mut map = self.inner.lock().unwrap();
                if let Some(old) = map.by_name.remove(name) {
                    map.bytes -= old.parse.len();
                }
            }
        }
    }

    /// The Parse message defining `name` for a request whose first ReadyForQuery has
    /// sequence number `seq`, unless its [`version`] is `known` (then `Ok(())`).
    fn get(&self, name: &[u8], seq: u64, known: Option<u64>) -> Option<Result<(), (Bytes, u64)>> {
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
}

/// The statements one mirror server connection has, as far as its answers confirm.
#[derive(Default)]
pub struct OnMirror {
    /// Statement name to the [`version`] the mirror's answers confirmed.
    confirmed: HashMap<Box<[u8]>, u64>,
    /// Raised when a request that closes statements is sent: definitions confirmed by
    /// answers to requests sent before it may no longer hold.
    epoch: u64,
}

impl OnMirror {
    /// Puts in front of `payload` the definitions it needs and the mirror may lack, and
    /// returns what the request will do to the mirror's statements. `seq` is the
    /// sequence number of the request's first ReadyForQuery.
    pub fn prepare(
        &mut self,
        payload: &mut SmallVec<[Bytes; 2]>,
        seq: u64,
        definitions: &Definitions,
    ) -> Effects {
        let mut effects = Effects::default();
        let mut repairs: SmallVec<[Bytes; 1]> = SmallVec::new();
        let mut closes = false;
        for part in payload.iter() {
            for (tag, msg) in Frames::new(part) {
                let body = msg.get(5..).unwrap_or(&[]);
                match tag {
                    b'P' => {
                        if let Some((name, _)) = cstr(body).filter(|(n, _)| !n.is_empty()) {
                            effects.defines.push((name.into(), version(msg)));
                        }
                    }
                    b'B' => {
                        let statement = cstr(body).and_then(|(_, rest)| cstr(rest));
                        if let Some((name, _)) = statement {
                            self.need(name, seq, definitions, &mut effects, &mut repairs);
                        }
                    }
                    b'D' if body.first() == Some(&b'S') => {
                        if let Some((name, _)) = cstr(&body[1..]) {
                            self.need(name, seq, definitions, &mut effects, &mut repairs);
                        }
                    }
                    b'C' if body.first() == Some(&b'S') => {
                        if let Some((name, _)) = cstr(&body[1..]) {
                            self.confirmed.remove(name);
                            effects.defines.retain(|(d, _)| **d != *name);
                            closes = true;
                        }
                    }
                    b'Q' if forgets_statements(body) => {
                        self.confirmed.clear();
                        closes = true;
                    }
                    _ => {}
                }
            }
        }
        if closes {
            self.epoch += 1;
        }
        effects.epoch = self.epoch;
        if !repairs.is_empty() {
            payload.insert(0, repair_messages(&repairs));
        }
        effects
    }

    /// A statement the request binds: fine when defined earlier in the request or
    /// confirmed on the mirror in the client's definition, else repaired when that
    /// definition is known. When it is not (never kept, or already replaced by a later
    /// one), whatever the mirror confirmed under the name is the best there is.
    fn need(
        &self,
        name: &[u8],
        seq: u64,
        definitions: &Definitions,
        effects: &mut Effects,
        repairs: &mut SmallVec<[Bytes; 1]>,
    ) {
        if name.is_empty() || effects.defines.iter().any(|(d, _)| **d == *name) {
            return;
        }
        let confirmed = self.confirmed.get(name).copied();
        if let Some(Err((parse, version))) = definitions.get(name, seq, confirmed) {
            effects.defines.push((name.into(), version));
            repairs.push(parse);
        }
    }

    /// The request with `effects` was answered: without an error its definitions hold
    /// (unless statements were closed since it was sent); with one, which of them ran is
    /// unknown, so none is trusted.
    pub fn answered(&mut self, effects: Effects, ok: bool) {
        for (name, version) in effects.defines {
            if ok && effects.epoch == self.epoch {
                self.confirmed.insert(name, version);
            } else {
                self.confirmed.remove(&name);
            }
        }
    }
}

/// `Close` (statement) then the client's `Parse`, for each statement to repair.
fn repair_messages(parses: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    for parse in parses {
        let name = parse
            .get(5..)
            .and_then(cstr)
            .map_or(&[][..], |(name, _)| name);
        messages::put(&mut out, b'C', |b| {
            b.put_u8(b'S');
            b.put_slice(name);
            b.put_u8(0);
        });
        out.put_slice(parse);
    }
    out.freeze()
}

/// A simple query that makes the server forget prepared statements (`DISCARD ALL`,
/// `DEALLOCATE ...`).
fn forgets_statements(body: &[u8]) -> bool {
    let text = body.trim_ascii_start();
    let starts =
        |word: &[u8]| text.len() >= word.len() && text[..word.len()].eq_ignore_ascii_case(word);
    starts(b"discard") || starts(b"deallocate")
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
        defs.parsed(&parse("s1", "insert into a values (1)"), 1);
        let mut p = payload(&[parse("s1", "insert into a values (1)"), bind_execute("s1")]);
        let e = on.prepare(&mut p, 1, &defs);
        on.answered(e, true);
        // The client closes s1 and defines it again, in a request the mirror never gets.
        defs.closed(b"Ss1\0");
        defs.parsed(&parse("s1", "update b set x = 2"), 2);
        // Its next Bind of s1 must not run the old statement on the mirror.
        let mut p = payload(&[bind_execute("s1")]);
        let e = on.prepare(&mut p, 3, &defs);
        assert_eq!(tags(&p), "CPBES");
        assert!(p[0].windows(18).any(|w| w == b"update b set x = 2"));
        on.answered(e, true);
        // Confirmed in the new definition: left alone from then on.
        let mut p = payload(&[bind_execute("s1")]);
        on.prepare(&mut p, 4, &defs);
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
    fn unnamed_statements_and_limits() {
        let defs = Definitions::default();
        defs.parsed(&parse("", "select 1"), 1);
        assert!(defs.inner.lock().unwrap().by_name.is_empty());
        let big = "x".repeat(MAX_DEFINITION_BYTES);
        defs.parsed(&parse("huge", &big), 1);
        assert!(defs.get(b"huge", 1, None).is_none());
        defs.parsed(&parse("s", "select 1"), 1);
        defs.parsed(&parse("s", "select 22"), 2);
        let map = defs.inner.lock().unwrap();
        assert_eq!(map.by_name.len(), 1);
        assert_eq!(map.bytes, parse("s", "select 22").len());
    }
}
