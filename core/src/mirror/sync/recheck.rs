//! The rules of looking twice at a gated read whose answers differed, without I/O: which
//! requests may be asked again, how many a second, and what the second look decides.
//!
//! # Why a gated read can still differ, and why a second look settles it
//! The gate sends a read to the mirror once the mirror has applied a position read after
//! the primary's answer ([`super::positions`]). The mirror then has everything the read
//! saw, and possibly more: a row another client committed after the primary's snapshot,
//! before the mirror ran the read, is already new there. Such a comparison differs
//! though neither server is wrong. Under TPC-B writes with reads of the same rows that
//! is a few reads in a thousand (`docs/benchmarks.md`).
//!
//! Setting aside every mismatch during which the primary's position moved would hide a
//! real divergence whenever writes never stop: the position always moves. Instead the
//! read is asked again, once: the primary answers it anew (on the gate's own connection,
//! read-only, never a client's), the gate waits until the mirror has applied what the
//! primary had then, and the mirror's session runs it again. A comparison that differed
//! only because a row changed in between needs a second change of the same rows inside
//! the second window, as short as the first: the chance of the first mismatch, squared.
//! A row that differs on the mirror differs both times. So:
//! - equal the second time: the first comparison is set aside (`rechecked`);
//! - different again, or no second look possible (the budget is spent, the primary failed
//!   or took too long, the mirror lagged past `mirror_max_lag_ms`, the session ended):
//!   the mismatch stands as it was.
//!
//! Only a request that is safe to run again on another connection is asked again: one
//! autocommit statement classified as a read, in the simple protocol or as one Execute
//! of the extended protocol ([`rerun`]; a named statement is defined unnamed there). The gate's connection runs it with
//! `default_transaction_read_only` on, and discards whatever session state it left.

use crate::protocol::frame::{split_cstr as cstr, Frames};
use crate::protocol::tag::client;
use bytes::{BufMut, Bytes, BytesMut};
use std::time::{Duration, Instant};

/// Second looks a mirror target asks of the primary per second, at most (and at once).
pub const RECHECKS_PER_SECOND: u32 = 20;

/// A request to run again: what the gate's connection sends the primary, and what the
/// session's mirror connection sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rerun {
    pub primary: Bytes,
    pub mirror: Bytes,
}

/// How `payload` (a request's frames) runs again, if it can: one simple query, or one
/// extended-protocol statement (Parse, Bind, Describe, Execute of the unnamed portal)
/// ended by one Sync. A named statement lives on the client's connection: the primary's
/// copy defines it unnamed, from its Parse in the request or from `parse_of` (the
/// client's definition of that name, a whole Parse message); the mirror's session has it
/// already (its first run succeeded there), so its copy leaves the Parse out. Anything
/// else (COPY data, function calls, several Executes or Syncs, a named portal) is not one
/// read.
pub fn rerun(payload: &[Bytes], parse_of: impl FnOnce(&[u8]) -> Option<Bytes>) -> Option<Rerun> {
    let mut frames: Vec<(u8, &[u8])> = Vec::new();
    for slice in payload {
        frames.extend(Frames::new(slice));
    }
    if let [(client::QUERY, msg)] = frames[..] {
        let whole = Bytes::copy_from_slice(msg);
        return Some(Rerun {
            primary: whole.clone(),
            mirror: whole,
        });
    }
    // Parse? Bind Describe? Execute Sync, and nothing else.
    let (parse, rest) = match frames.split_first()? {
        ((client::PARSE, msg), rest) => (Some(*msg), rest),
        _ => (None, &frames[..]),
    };
    let [(client::BIND, bind), middle @ .., (client::EXECUTE, execute), (client::SYNC, sync)] =
        rest
    else {
        return None;
    };
    let describe = match middle {
        [] => None,
        [(client::DESCRIBE, d)] => Some(*d),
        _ => return None,
    };
    let (portal, after_portal) = cstr(body(bind))?;
    let (statement, bind_rest) = cstr(after_portal)?;
    let (executed, _) = cstr(body(execute))?;
    if !portal.is_empty() || !executed.is_empty() {
        return None;
    }
    let parsed_name = match parse {
        Some(p) => Some(cstr(body(p))?.0),
        None => None,
    };
    if statement.is_empty() {
        // The unnamed statement must be defined in the request itself.
        if parsed_name != Some(&b""[..]) {
            return None;
        }
        let whole = gather(frames.iter().map(|(_, m)| *m));
        return Some(Rerun {
            primary: whole.clone(),
            mirror: whole,
        });
    }
    let definition = match (parse, parsed_name) {
        (Some(p), Some(name)) if name == statement => Bytes::copy_from_slice(p),
        // A Parse of another statement beside it: not one read.
        (Some(_), _) => return None,
        (None, _) => parse_of(statement)?,
    };
    let (_, definition_rest) = cstr(body(&definition))?;
    let mut primary = BytesMut::new();
    message(&mut primary, client::PARSE, &[b"\0", definition_rest]);
    message(&mut primary, client::BIND, &[b"\0\0", bind_rest]);
    if let Some(d) = describe {
        match body(d).split_first() {
            Some((&client::STATEMENT, _)) => message(
                &mut primary,
                client::DESCRIBE,
                &[&[client::STATEMENT, 0][..]],
            ),
            _ => primary.extend_from_slice(d),
        }
    }
    primary.extend_from_slice(execute);
    primary.extend_from_slice(sync);
    let mirror = gather(
        frames
            .iter()
            .filter(|(tag, _)| *tag != client::PARSE)
            .map(|(_, m)| *m),
    );
    Some(Rerun {
        primary: primary.freeze(),
        mirror,
    })
}

/// A message's body (after its tag and length).
fn body(msg: &[u8]) -> &[u8] {
    msg.get(5..).unwrap_or(&[])
}

/// Appends a message of `tag` whose body is `parts`, one after the other.
fn message(out: &mut BytesMut, tag: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + 4;
    out.put_u8(tag);
    out.put_u32(len as u32);
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// The messages, one after the other, in one buffer.
fn gather<'a>(messages: impl Iterator<Item = &'a [u8]>) -> Bytes {
    let mut out = BytesMut::new();
    for m in messages {
        out.extend_from_slice(m);
    }
    out.freeze()
}

/// How many second looks may start: up to [`RECHECKS_PER_SECOND`], refilled over time.
#[derive(Debug)]
pub struct Budget {
    per_second: u32,
    tokens: f64,
    at: Option<Instant>,
}

impl Budget {
    pub fn new(per_second: u32) -> Budget {
        Budget {
            per_second,
            tokens: f64::from(per_second),
            at: None,
        }
    }

    /// Takes one second look at `now`, if one is left.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let refill =
                now.saturating_duration_since(at).as_secs_f64() * f64::from(self.per_second);
            self.tokens = (self.tokens + refill).min(f64::from(self.per_second));
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The longest the primary may take to answer a second look; past it the mismatch stands.
pub const PRIMARY_TIMEOUT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages;
    use bytes::BytesMut;

    fn frames(build: impl Fn(&mut BytesMut)) -> Vec<Bytes> {
        let mut b = BytesMut::new();
        build(&mut b);
        vec![b.freeze()]
    }

    /// A Bind of statement `name` to the unnamed portal, one text parameter.
    fn bind_named(b: &mut BytesMut, name: &str, param: &str) {
        let mut body = BytesMut::new();
        body.put_u8(0);
        body.put_slice(name.as_bytes());
        body.put_u8(0);
        body.put_i16(0);
        body.put_i16(1);
        body.put_i32(param.len() as i32);
        body.put_slice(param.as_bytes());
        body.put_i16(0);
        message(b, client::BIND, &[&body]);
    }

    fn describe(b: &mut BytesMut, kind: u8, name: &str) {
        message(b, client::DESCRIBE, &[&[kind], name.as_bytes(), &[0]]);
    }

    fn none(_: &[u8]) -> Option<Bytes> {
        None
    }

    /// The tags and the first C string of each message's body.
    fn shape(b: &Bytes) -> Vec<(char, String)> {
        Frames::new(b)
            .map(|(tag, msg)| {
                let first = cstr(body(msg)).map_or(Vec::new(), |(s, _)| s.to_vec());
                (tag as char, String::from_utf8_lossy(&first).into_owned())
            })
            .collect()
    }

    #[test]
    fn one_simple_query_or_one_unnamed_statement_runs_again_as_it_was() {
        let query = frames(|b| messages::query(b, "select 1"));
        let r = rerun(&query, none).expect("a simple query");
        assert_eq!((&r.primary, &r.mirror), (&query[0], &query[0]));
        // Split over two slices as a client's reads may be.
        let mut two = frames(|b| messages::parse(b, "", "select $1"));
        two.extend(frames(|b| {
            messages::bind_text(b, &["1"]);
            describe(b, client::PORTAL, "");
            messages::execute(b);
            messages::sync(b);
        }));
        let r = rerun(&two, none).expect("an unnamed statement");
        assert_eq!(r.primary, r.mirror);
        assert_eq!(r.primary.len(), two[0].len() + two[1].len());
    }

    #[test]
    fn a_named_statement_is_defined_unnamed_for_the_primary_and_kept_on_the_mirror() {
        // Its first run: the Parse is in the request.
        let first = frames(|b| {
            messages::parse(b, "P_0", "select $1");
            bind_named(b, "P_0", "7");
            describe(b, client::STATEMENT, "P_0");
            messages::execute(b);
            messages::sync(b);
        });
        let r = rerun(&first, none).expect("named, parsed here");
        let s = |t: &str| t.to_string();
        assert_eq!(
            shape(&r.primary),
            [
                ('P', s("")),
                ('B', s("")),
                ('D', s("S")),
                ('E', s("")),
                ('S', s(""))
            ]
        );
        // The unnamed Parse keeps the text; the Bind keeps the parameter.
        assert!(r.primary.windows(9).any(|w| w == b"select $1"));
        assert!(r.primary.ends_with(&{
            let mut tail = BytesMut::new();
            messages::execute(&mut tail);
            messages::sync(&mut tail);
            tail
        }));
        assert_eq!(
            shape(&r.mirror),
            [('B', s("")), ('D', s("SP_0")), ('E', s("")), ('S', s(""))],
            "the mirror has P_0 already: no Parse"
        );
        // A later run: the definition comes from the client's.
        let later = frames(|b| {
            bind_named(b, "P_0", "8");
            messages::execute(b);
            messages::sync(b);
        });
        let mut parse = BytesMut::new();
        messages::parse(&mut parse, "P_0", "select $1");
        let parse = parse.freeze();
        let asked = std::cell::Cell::new(false);
        let r = rerun(&later, |name| {
            asked.set(name == b"P_0");
            Some(parse.clone())
        })
        .expect("named, defined earlier");
        assert!(asked.get());
        assert_eq!(
            shape(&r.primary),
            [('P', s("")), ('B', s("")), ('E', s("")), ('S', s(""))]
        );
        assert_eq!(r.mirror, later[0]);
        // Unknown to the client's definitions: not run again.
        assert_eq!(rerun(&later, none), None);
    }

    /// The request `build` writes is not run again, whatever the client's definitions.
    fn not_run_again(build: impl Fn(&mut BytesMut)) {
        let mut parse = BytesMut::new();
        messages::parse(&mut parse, "P_0", "select 1");
        let parse = parse.freeze();
        assert_eq!(rerun(&frames(build), |_| Some(parse.clone())), None);
    }

    #[test]
    fn batches_portals_copies_and_unknown_statements_are_not_run_again() {
        // The unnamed statement from an earlier request.
        not_run_again(|b| {
            messages::bind_text(b, &[]);
            messages::execute(b);
            messages::sync(b);
        });
        // A Parse of another statement beside the one executed.
        not_run_again(|b| {
            messages::parse(b, "other", "select 2");
            bind_named(b, "P_0", "1");
            messages::execute(b);
            messages::sync(b);
        });
        // Two requests' worth.
        not_run_again(|b| {
            messages::query(b, "select 1");
            messages::query(b, "select 2");
        });
        not_run_again(|b| {
            messages::parse(b, "", "select 1");
            messages::bind_text(b, &[]);
            messages::execute(b);
            messages::sync(b);
            messages::execute(b);
            messages::sync(b);
        });
        not_run_again(|b| {
            messages::query(b, "copy t from stdin");
            messages::copy_fail(b, "x");
        });
        assert_eq!(rerun(&[], none), None);
    }

    #[test]
    fn the_budget_allows_a_burst_then_refills_over_time() {
        let t0 = Instant::now();
        let mut b = Budget::new(4);
        assert!((0..4).all(|_| b.take(t0)));
        assert!(!b.take(t0), "spent");
        assert!(!b.take(t0 + Duration::from_millis(200)), "0.8 of one");
        assert!(b.take(t0 + Duration::from_millis(260)));
        assert!(!b.take(t0 + Duration::from_millis(270)));
        // Never more than a second's worth saved up.
        let later = t0 + Duration::from_secs(60);
        assert!((0..4).all(|_| b.take(later)));
        assert!(!b.take(later));
    }
}
