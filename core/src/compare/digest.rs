//! A streaming digest of one answer (the server messages up to ReadyForQuery): what is
//! compared between primary and mirror, computed message by message with no buffering
//! of rows.
//!
//! * CommandComplete tags, as a hash of their sequence, plus the sum of their row counts;
//! * the column type OIDs of each RowDescription (user-defined types, OID >= 16384, differ
//!   between clusters restored from a dump, so they all hash as one "user type");
//! * the number of DataRows (and COPY-out data rows), and two digests of their bytes:
//!   order-insensitive (wrapping sum of per-row xxh3 hashes) and ordered (a running
//!   combination), so the comparison can pick either once it knows the statement;
//! * the first ErrorResponse's SQLSTATE.
//!
//! An answer to several statements (a simple Query of several, several Executes before
//! one Sync) is also digested statement by statement: each CommandComplete,
//! EmptyQueryResponse, PortalSuspended or ErrorResponse ends one statement's part, so each
//! statement's answer can be compared on its own ([`Digest::parts`]).

use crate::protocol::backend::sqlstate;
use crate::protocol::tag::server;
use pgdog_plugin_api::Differences;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// OIDs from here on are assigned per cluster (`FirstNormalObjectId`).
const FIRST_USER_OID: u32 = 16384;

/// The digest of one answer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResultDigest {
    pub tags: u64,
    pub tag_rows: u64,
    pub columns: u64,
    pub rows: u64,
    pub unordered: u64,
    pub ordered: u64,
    /// Zero bytes when no error.
    pub sqlstate: [u8; 5],
}

impl ResultDigest {
    pub fn failed(&self) -> bool {
        self.sqlstate != [0; 5]
    }

    /// Rows to show in a difference: DataRows, or the tag's count for commands.
    pub fn shown_rows(&self) -> u64 {
        if self.rows > 0 {
            self.rows
        } else {
            self.tag_rows
        }
    }
}

/// Most statements of one answer digested one by one. A longer answer (a batch of
/// thousands of statements) is compared as a whole.
pub const MAX_PARTS: usize = 256;

/// Accumulates a [`ResultDigest`] from server messages, and one per statement.
#[derive(Debug, Default, Clone)]
pub struct Digest {
    d: ResultDigest,
    /// The statement being answered.
    part: ResultDigest,
    /// The statements answered so far (emptied once past [`MAX_PARTS`]).
    parts: Vec<ResultDigest>,
    overflow: bool,
}

impl Digest {
    /// Feeds one whole server message (tag byte, length, body).
    #[inline]
    pub fn feed(&mut self, tag: u8, msg: &[u8]) {
        let body = msg.get(5..).unwrap_or(&[]);
        match tag {
            server::DATA_ROW | server::COPY_DATA => {
                let h = xxh3_64(body);
                self.d.add_row(h);
                self.part.add_row(h);
            }
            server::COMMAND_COMPLETE => {
                let text = body.strip_suffix(&[0]).unwrap_or(body);
                let rows = tag_rows(text);
                self.d.add_tag(text, rows);
                self.part.add_tag(text, rows);
                self.end_part();
            }
            server::EMPTY_QUERY_RESPONSE => {
                self.d.add_tag(b"EMPTY", 0);
                self.part.add_tag(b"EMPTY", 0);
                self.end_part();
            }
            server::PORTAL_SUSPENDED => self.end_part(),
            server::ROW_DESCRIPTION => {
                self.d.columns = fold_column_types(body, self.d.columns);
                self.part.columns = fold_column_types(body, self.part.columns);
            }
            server::ERROR_RESPONSE => {
                let code = sqlstate(msg).unwrap_or(*b"?????");
                if !self.d.failed() {
                    self.d.sqlstate = code;
                }
                self.part.sqlstate = code;
                self.end_part();
            }
            _ => {}
        }
    }

    fn end_part(&mut self) {
        let part = std::mem::take(&mut self.part);
        if self.overflow {
            return;
        }
        if self.parts.len() == MAX_PARTS {
            self.overflow = true;
            self.parts.clear();
            return;
        }
        self.parts.push(part);
    }

    /// The answer so far statement by statement: empty when it answered fewer than two
    /// statements or more than [`MAX_PARTS`] (then only the whole is compared).
    pub fn parts(&self) -> &[ResultDigest] {
        if self.parts.len() < 2 {
            return &[];
        }
        &self.parts
    }

    /// The digest so far, and a fresh start for the next answer (statements included).
    pub fn take(&mut self) -> ResultDigest {
        self.part = ResultDigest::default();
        self.overflow = false;
        if self.parts.capacity() > 16 {
            // A long batch's parts are not kept for the session's lifetime.
            self.parts = Vec::new();
        } else {
            self.parts.clear();
        }
        std::mem::take(&mut self.d)
    }
}

impl ResultDigest {
    #[inline]
    fn add_row(&mut self, h: u64) {
        self.rows += 1;
        self.unordered = self.unordered.wrapping_add(h);
        self.ordered = (self.ordered.rotate_left(5) ^ h).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    #[inline]
    fn add_tag(&mut self, text: &[u8], rows: u64) {
        self.tags = xxh3_64_with_seed(text, self.tags);
        self.tag_rows += rows;
    }
}

/// The row count at the end of a CommandComplete tag (`INSERT 0 5`, `SELECT 3`).
fn tag_rows(text: &[u8]) -> u64 {
    let digits = text
        .rsplit(|&b| b == b' ')
        .next()
        .filter(|w| !w.is_empty() && w.iter().all(u8::is_ascii_digit));
    digits
        .and_then(|w| std::str::from_utf8(w).ok()?.parse().ok())
        .unwrap_or(0)
}

/// Folds the type OIDs of a RowDescription body into `seed`, user types as one value.
/// No allocation: this runs on the primary's forwarding path for every row-returning query.
fn fold_column_types(body: &[u8], seed: u64) -> u64 {
    let Some(count) = body.get(..2) else {
        return seed;
    };
    // The column count first, so that one description of [a, b] differs from two of [a]
    // and [b].
    let mut h = xxh3_64_with_seed(count, seed);
    let count = u16::from_be_bytes([count[0], count[1]]);
    let mut at = 2;
    for _ in 0..count {
        // name\0, table oid (4), attnum (2), type oid (4), typlen (2), typmod (4), format (2)
        let Some(nul) = body[at.min(body.len())..].iter().position(|&b| b == 0) else {
            break;
        };
        at += nul + 1 + 6;
        let Some(oid) = body.get(at..at + 4) else {
            break;
        };
        let oid = u32::from_be_bytes([oid[0], oid[1], oid[2], oid[3]]).min(FIRST_USER_OID);
        h = xxh3_64_with_seed(&oid.to_be_bytes(), h);
        at += 4 + 2 + 4 + 2;
    }
    h
}

/// What differs between the primary's answer and the mirror's. `ordered` compares the
/// rows in order (the statement has a top-level ORDER BY).
pub fn compare(primary: &ResultDigest, mirror: &ResultDigest, ordered: bool) -> Differences {
    let mut d = Differences::default();
    if primary.sqlstate != mirror.sqlstate {
        d |= Differences::ERROR;
        return d;
    }
    if primary.failed() {
        // The same error on both sides: what came before it is not compared.
        return d;
    }
    if primary.columns != mirror.columns {
        d |= Differences::COLUMNS;
    }
    if primary.rows != mirror.rows {
        d |= Differences::ROW_COUNT;
    }
    if primary.tags != mirror.tags || primary.tag_rows != mirror.tag_rows {
        d |= Differences::TAG;
    }
    let rows_differ = if ordered {
        primary.ordered != mirror.ordered
    } else {
        primary.unordered != mirror.unordered
    };
    if d.is_empty() && rows_differ {
        d |= Differences::ROWS;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages;
    use bytes::BytesMut;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn data_row(values: &[&str]) -> Vec<u8> {
        let mut b = (values.len() as u16).to_be_bytes().to_vec();
        for v in values {
            b.extend_from_slice(&(v.len() as i32).to_be_bytes());
            b.extend_from_slice(v.as_bytes());
        }
        msg(b'D', &b)
    }

    fn row_description(oids: &[u32]) -> Vec<u8> {
        let mut b = (oids.len() as u16).to_be_bytes().to_vec();
        for (i, oid) in oids.iter().enumerate() {
            b.extend_from_slice(format!("c{i}\0").as_bytes());
            b.extend_from_slice(&0u32.to_be_bytes());
            b.extend_from_slice(&0u16.to_be_bytes());
            b.extend_from_slice(&oid.to_be_bytes());
            b.extend_from_slice(&[0; 8]);
        }
        msg(b'T', &b)
    }

    fn digest(rows: &[&[&str]], oids: &[u32], tag: &str) -> ResultDigest {
        let mut d = Digest::default();
        let m = row_description(oids);
        d.feed(b'T', &m);
        for r in rows {
            let m = data_row(r);
            d.feed(b'D', &m);
        }
        let m = msg(b'C', format!("{tag}\0").as_bytes());
        d.feed(b'C', &m);
        d.take()
    }

    #[test]
    fn unordered_equal_ordered_not() {
        let a = digest(&[&["1", "a"], &["2", "b"]], &[23, 25], "SELECT 2");
        let b = digest(&[&["2", "b"], &["1", "a"]], &[23, 25], "SELECT 2");
        assert_eq!(a.unordered, b.unordered);
        assert_ne!(a.ordered, b.ordered);
        assert!(compare(&a, &b, false).is_empty());
        assert_eq!(compare(&a, &b, true), Differences::ROWS);
        assert_eq!(a.rows, 2);
        assert_eq!(a.tag_rows, 2);
    }

    #[test]
    fn each_difference_is_named() {
        let base = digest(&[&["1"], &["2"]], &[23], "SELECT 2");
        let other_value = digest(&[&["1"], &["3"]], &[23], "SELECT 2");
        assert_eq!(compare(&base, &other_value, false), Differences::ROWS);
        let fewer = digest(&[&["1"]], &[23], "SELECT 1");
        let d = compare(&base, &fewer, false);
        assert!(d.contains(Differences::ROW_COUNT) && d.contains(Differences::TAG));
        let other_type = digest(&[&["1"], &["2"]], &[20], "SELECT 2");
        assert_eq!(compare(&base, &other_type, false), Differences::COLUMNS);
        // User types differ in OID between clusters: not a difference.
        let u1 = digest(&[&["x"]], &[16500], "SELECT 1");
        let u2 = digest(&[&["x"]], &[24000], "SELECT 1");
        assert!(compare(&u1, &u2, false).is_empty());
        // Commands: the affected-row count.
        let upd1 = digest(&[], &[], "UPDATE 1");
        let upd0 = digest(&[], &[], "UPDATE 0");
        assert_eq!(compare(&upd1, &upd0, false), Differences::TAG);
        assert_eq!((upd1.shown_rows(), upd0.shown_rows()), (1, 0));
    }

    #[test]
    fn errors_on_one_or_both_sides() {
        let mut e = BytesMut::new();
        messages::error_response(&mut e, messages::Severity::Error, "42P01", "missing");
        let mut failed = Digest::default();
        failed.feed(b'E', &e);
        let failed = failed.take();
        assert_eq!(&failed.sqlstate, b"42P01");
        let ok = digest(&[&["1"]], &[23], "SELECT 1");
        assert_eq!(compare(&ok, &failed, false), Differences::ERROR);
        assert!(compare(&failed, &failed.clone(), false).is_empty());
    }

    #[test]
    fn each_statement_has_its_part() {
        let mut d = Digest::default();
        for m in [
            row_description(&[23]),
            data_row(&["1"]),
            msg(b'C', b"SELECT 1\0"),
        ] {
            d.feed(m[0], &m);
        }
        assert!(d.parts().is_empty(), "one statement: only the whole");
        let m = msg(b'C', b"UPDATE 2\0");
        d.feed(b'C', &m);
        let mut e = BytesMut::new();
        messages::error_response(&mut e, messages::Severity::Error, "23505", "dup");
        d.feed(b'E', &e);
        let parts = d.parts().to_vec();
        assert_eq!(parts.len(), 3);
        assert_eq!((parts[0].rows, parts[0].tag_rows), (1, 1));
        assert_eq!((parts[1].rows, parts[1].tag_rows), (0, 2));
        assert_eq!(&parts[2].sqlstate, b"23505");
        // The same first statement alone digests as its part does.
        assert_eq!(parts[0], digest(&[&["1"]], &[23], "SELECT 1"));
        let whole = d.take();
        assert_eq!(
            (whole.rows, whole.tag_rows, &whole.sqlstate),
            (1, 3, b"23505")
        );
        assert!(d.parts().is_empty(), "taken with the whole");

        // Past MAX_PARTS: compared as a whole only.
        let m = msg(b'C', b"INSERT 0 1\0");
        for _ in 0..=MAX_PARTS {
            d.feed(b'C', &m);
        }
        assert!(d.parts().is_empty());
        assert_eq!(d.take().tag_rows, MAX_PARTS as u64 + 1);
    }
}
