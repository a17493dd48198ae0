//! Message framing: `tag (1 byte) | length (4 bytes, includes itself) | body`.
//!
//! The forwarding loop reads into a buffer, asks [`complete_len`] how many leading bytes form
//! whole messages, and writes that prefix on in one go: no per-message allocation, one write
//! per read. [`Frames`] walks the messages of such a prefix to look at their tags.

use super::ProtocolError;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Tag + length.
pub const HEADER_LEN: usize = 5;

/// Length of the message at the start of `buf` (header included), if it is all there.
#[inline]
pub fn frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, ProtocolError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(ProtocolError::BadLength(len));
    }
    let total = len as usize + 1;
    if total > max {
        return Err(ProtocolError::TooLarge { len: total, max });
    }
    Ok((buf.len() >= total).then_some(total))
}

/// Number of leading bytes of `buf` that are whole messages (0 if none).
#[inline]
pub fn complete_len(buf: &[u8], max: usize) -> Result<usize, ProtocolError> {
    match whole_before_fault(buf, max) {
        (len, None) => Ok(len),
        (_, Some(fault)) => Err(fault),
    }
}

/// Number of leading bytes of `buf` that are whole messages, and the fault of the
/// malformed message that follows them, if one does: what came before a fault was sent
/// whole, and counts.
#[inline]
pub fn whole_before_fault(buf: &[u8], max: usize) -> (usize, Option<ProtocolError>) {
    let mut at = 0;
    loop {
        match frame_len(&buf[at..], max) {
            Ok(Some(len)) => at += len,
            Ok(None) => return (at, None),
            Err(fault) => return (at, Some(fault)),
        }
    }
}

/// Iterates `(tag, whole message)` over a buffer of whole messages.
pub struct Frames<'a> {
    buf: &'a [u8],
}

impl<'a> Frames<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Frames { buf }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = (u8, &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let len =
            i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize + 1;
        let len = len.min(self.buf.len());
        let (msg, rest) = self.buf.split_at(len);
        self.buf = rest;
        Some((msg[0], msg))
    }
}

/// Body of a whole message (after the header).
#[inline]
pub fn body(msg: &[u8]) -> &[u8] {
    &msg[HEADER_LEN.min(msg.len())..]
}

/// Reads one whole message from `stream`, buffering through `buf`. Used outside the hot
/// path (authentication, resets), where messages are handled one at a time.
pub async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> Result<BytesMut, ProtocolError> {
    loop {
        if let Some(len) = frame_len(buf, max)? {
            return Ok(buf.split_to(len));
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(8192);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(ProtocolError::Eof);
        }
    }
}

/// A cursor over a message body for the few fields the proxy reads.
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    pub fn i32(&mut self) -> Result<i32, ProtocolError> {
        if self.buf.len() < 4 {
            return Err(ProtocolError::malformed(self.what, "truncated integer"));
        }
        Ok(self.buf.get_i32())
    }

    pub fn i16(&mut self) -> Result<i16, ProtocolError> {
        if self.buf.len() < 2 {
            return Err(ProtocolError::malformed(self.what, "truncated integer"));
        }
        Ok(self.buf.get_i16())
    }

    /// A NUL-terminated string.
    pub fn cstr(&mut self) -> Result<&'a str, ProtocolError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| ProtocolError::malformed(self.what, "unterminated string"))?;
        let s = std::str::from_utf8(&self.buf[..end])
            .map_err(|_| ProtocolError::malformed(self.what, "string is not UTF-8"))?;
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(ProtocolError::malformed(self.what, "truncated field"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// A NUL-terminated string at the start of `b` (without the NUL) and what follows it.
pub fn split_cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|&c| c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn complete_prefix_stops_at_partial_message() {
        let mut buf = msg(b'Q', b"select 1\0");
        buf.extend(msg(b'S', b""));
        let whole = buf.len();
        buf.extend_from_slice(&msg(b'Q', b"select 2\0")[..7]);
        assert_eq!(complete_len(&buf, 1 << 20).unwrap(), whole);
        let tags: Vec<u8> = Frames::new(&buf[..whole]).map(|(t, _)| t).collect();
        assert_eq!(tags, vec![b'Q', b'S']);
    }

    #[test]
    fn header_only_is_incomplete() {
        assert_eq!(frame_len(&[b'Q', 0, 0], 100).unwrap(), None);
    }

    #[test]
    fn bad_and_oversized_lengths_are_errors() {
        assert!(matches!(
            frame_len(&[b'Q', 0, 0, 0, 3], 100),
            Err(ProtocolError::BadLength(3))
        ));
        assert!(matches!(
            frame_len(&[b'Q', 0x7f, 0xff, 0xff, 0xff], 100),
            Err(ProtocolError::TooLarge { .. })
        ));
        assert!(matches!(
            frame_len(&[b'Q', 0xff, 0xff, 0xff, 0xff], 100),
            Err(ProtocolError::BadLength(-1))
        ));
    }

    #[test]
    fn reader_fields() {
        let body = b"abc\0\x00\x00\x00\x07\x00\x02";
        let mut r = Reader::new(body, "test");
        assert_eq!(r.cstr().unwrap(), "abc");
        assert_eq!(r.i32().unwrap(), 7);
        assert_eq!(r.i16().unwrap(), 2);
        assert!(r.is_empty());
        assert!(r.i16().is_err());
    }
}

/// The same properties as the `frames` fuzz target, on random inputs, in every test run.
#[cfg(test)]
mod random_inputs {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn never_panics_and_walks_exactly_the_complete_prefix() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let mut data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            // Bias towards plausible lengths so frames actually parse.
            if data.len() >= 5 && rng.gen_bool(0.7) {
                let l = rng.gen_range(4..12u32);
                data[1..5].copy_from_slice(&l.to_be_bytes());
            }
            if let Ok(n) = complete_len(&data, 1 << 20) {
                assert!(n <= data.len());
                let walked: usize = Frames::new(&data[..n]).map(|(_, m)| m.len()).sum();
                assert_eq!(walked, n);
            }
            let _ = crate::protocol::startup::parse(&data);
        }
    }
}
