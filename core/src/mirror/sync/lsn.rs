//! WAL positions (`pg_lsn`) as the server prints them, and the one rule needed to compare
//! a position where the primary would insert its next record with one where a replica
//! stopped applying.

use std::fmt;

/// A WAL position: a byte offset into the WAL stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

/// The longest page header a WAL page starts with (`SizeOfXLogLongPHD`, on the first
/// page of a segment; other pages have a 24-byte one).
const LONGEST_PAGE_HEADER: u64 = 40;

impl Lsn {
    /// Parses `X/Y` (two hexadecimal halves), as `pg_lsn`'s text form prints it.
    pub fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        let hi = u32::from_str_radix(hi, 16).ok()?;
        let lo = u32::from_str_radix(lo, 16).ok()?;
        Some(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }

    /// The position every record that ends before `self` ends at or before.
    ///
    /// `pg_current_wal_insert_lsn()` never points into a page header: at a page boundary
    /// it points just after the header, where the next record will start. A replica that
    /// applied everything up to there reports the end of the last record, the boundary
    /// itself (`pg_last_wal_replay_lsn()`, a subscription's position). No record ends
    /// inside a header, so a position within the first [`LONGEST_PAGE_HEADER`] bytes of
    /// a page is as good as the page's start; without this, an idle primary would stay
    /// 24 or 40 bytes ahead of its replica for ever.
    pub fn record_boundary(self, page_size: u64) -> Lsn {
        let page_size = page_size.max(LONGEST_PAGE_HEADER + 1);
        let offset = self.0 % page_size;
        if offset <= LONGEST_PAGE_HEADER {
            Lsn(self.0 - offset)
        } else {
            self
        }
    }

    /// Bytes from `other` up to `self` (0 when `other` is ahead).
    pub fn bytes_after(self, other: Lsn) -> u64 {
        self.0.saturating_sub(other.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_servers_form() {
        let lsn = Lsn::parse("16/B374D848").unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(Lsn::parse("0/0"), Some(Lsn(0)));
        for bad in ["", "16", "x/1", "1/2/3", "100000000/0"] {
            assert_eq!(Lsn::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_position_in_a_page_header_is_the_pages_start() {
        let page = 8192;
        // Just after a short header, and just after the long one of a segment's first page.
        assert_eq!(Lsn(3 * page + 24).record_boundary(page), Lsn(3 * page));
        assert_eq!(Lsn(16 << 20 | 40).record_boundary(page), Lsn(16 << 20));
        // Anywhere else: as it is.
        assert_eq!(Lsn(3 * page + 41).record_boundary(page), Lsn(3 * page + 41));
        assert_eq!(Lsn(3 * page - 8).record_boundary(page), Lsn(3 * page - 8));
        assert_eq!(Lsn(100).bytes_after(Lsn(40)), 60);
        assert_eq!(Lsn(40).bytes_after(Lsn(100)), 0);
    }
}
