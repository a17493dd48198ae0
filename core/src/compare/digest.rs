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

/// Accumulates a [`ResultDigest`] from server messages.
#[derive(Debug, Default, Clone, Copy)]
pub struct Digest {
    d: ResultDigest,
}

impl Digest {
    /// Feeds one whole server message (tag byte, length, body).
    #[inline]
    pub fn feed(&mut self, tag: u8, msg: &[u8]) {
        let body = msg.get(5..).unwrap_or(&[]);
        match tag {
            server::DATA_ROW | server::COPY_DATA => {
                let h = xxh3_64(body);
                self.d.rows += 1;
                self.d.unordered = self.d.unordered.wrapping_add(h);
                self.d.ordered =
                    (self.d.ordered.rotate_left(5) ^ h).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            }
            server::COMMAND_COMPLETE => {
                let text = body.strip_suffix(&[0]).unwrap_or(body);
                self.d.tags = xxh3_64_with_seed(text, self.d.tags);
                self.d.tag_rows += tag_rows(text);
            }
            server::EMPTY_QUERY_RESPONSE => self.d.tags = xxh3_64_with_seed(b"EMPTY", self.d.tags),
            server::ROW_DESCRIPTION => self.d.columns = fold_column_types(body, self.d.columns),
            server::ERROR_RESPONSE if !self.d.failed() => {
                if let Some(code) = sqlstate(msg) {
                    self.d.sqlstate = code;
                }
            }
            _ => {}
        }
    }

    /// The digest so far, and a fresh start for the next answer.
    pub fn take(&mut self) -> ResultDigest {
        std::mem::take(&mut self.d)
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
}
