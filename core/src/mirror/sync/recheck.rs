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
//! autocommit statement, in the simple protocol or as an unnamed extended-protocol
//! statement, classified as a read. The gate's connection runs it with
//! `default_transaction_read_only` on, and discards whatever session state it left.

use crate::protocol::frame::Frames;
use crate::protocol::tag::client;
use bytes::Bytes;
use std::time::{Duration, Instant};

/// Second looks a mirror target asks of the primary per second, at most (and at once).
pub const RECHECKS_PER_SECOND: u32 = 20;

/// Whether `payload` (a request's frames) can run again on another connection as it is:
/// one simple query, or one unnamed extended-protocol statement (Parse, Bind, Describe,
/// Execute) ended by one Sync. A named statement or portal lives on the client's
/// connection only; anything else (COPY data, function calls, several Syncs) is not a
/// single read.
pub fn rerunnable(payload: &[Bytes]) -> bool {
    let mut queries = 0;
    let mut syncs = 0;
    let mut executes = 0;
    let mut parsed = false;
    for slice in payload {
        for (tag, msg) in Frames::new(slice) {
            let body = msg.get(5..).unwrap_or(&[]);
            match tag {
                client::QUERY => queries += 1,
                // An unnamed statement: its name, an empty string, comes first.
                client::PARSE if body.first() == Some(&0) => parsed = true,
                // Unnamed portal, unnamed statement, parsed in this request.
                client::BIND if body.starts_with(&[0, 0]) && parsed => {}
                client::DESCRIBE => {}
                client::EXECUTE => executes += 1,
                client::SYNC => syncs += 1,
                _ => return false,
            }
            if syncs > 0 && tag != client::SYNC {
                return false;
            }
        }
    }
    match (queries, syncs) {
        (1, 0) => !parsed && executes == 0,
        (0, 1) => parsed && executes == 1,
        _ => false,
    }
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

    #[test]
    fn one_simple_query_or_one_unnamed_statement_can_run_again() {
        assert!(rerunnable(&frames(|b| messages::query(b, "select 1"))));
        assert!(rerunnable(&frames(|b| {
            messages::parse(b, "", "select $1");
            messages::bind_text(b, &["1"]);
            messages::execute(b);
            messages::sync(b);
        })));
        // Split over two slices as a client's reads may be.
        let mut two = frames(|b| messages::parse(b, "", "select 1"));
        two.extend(frames(|b| {
            messages::bind_text(b, &[]);
            messages::execute(b);
            messages::sync(b);
        }));
        assert!(rerunnable(&two));
    }

    #[test]
    fn named_statements_batches_and_copies_are_not_run_again() {
        // A statement prepared earlier on the client's connection.
        assert!(!rerunnable(&frames(|b| {
            messages::parse(b, "s1", "select 1");
            messages::bind_text(b, &[]);
            messages::execute(b);
            messages::sync(b);
        })));
        assert!(!rerunnable(&frames(|b| {
            messages::bind_text(b, &[]);
            messages::execute(b);
            messages::sync(b);
        })));
        // Two requests' worth.
        assert!(!rerunnable(&frames(|b| {
            messages::query(b, "select 1");
            messages::query(b, "select 2");
        })));
        assert!(!rerunnable(&frames(|b| {
            messages::parse(b, "", "select 1");
            messages::bind_text(b, &[]);
            messages::execute(b);
            messages::sync(b);
            messages::execute(b);
            messages::sync(b);
        })));
        assert!(!rerunnable(&frames(|b| {
            messages::query(b, "copy t from stdin");
            messages::copy_fail(b, "x");
        })));
        assert!(!rerunnable(&[]));
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
