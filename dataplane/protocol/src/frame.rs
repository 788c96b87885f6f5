//! Finding frame boundaries in a byte stream.
//!
//! Decoding is two steps, as in mini-redis: is a whole frame here, and if so, split it off. A partial frame
//! is `Ok(None)` (read more), never an error. A length over the configured maximum is an error before any
//! of the body is buffered, so a hostile length field cannot make the proxy allocate a gigabyte.

use bytes::{Buf, Bytes, BytesMut};

use crate::ProtocolError;

/// Size limits applied while framing. Defaults follow the issue: 1 GiB for ordinary messages (PostgreSQL's
/// own limit for a datum), 10 kB for startup packets (PgBouncer's limit is similar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_message_size: usize,
    pub max_startup_packet: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 1 << 30,
            max_startup_packet: 10_000,
        }
    }
}

/// One tagged frame: the tag byte and the full frame bytes (tag, length and body), ready to forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub tag: u8,
    pub bytes: Bytes,
}

impl Frame {
    /// The body after the 5-byte header.
    pub fn body(&self) -> &[u8] {
        &self.bytes[5..]
    }
}

/// Length of the whole tagged frame at the start of `buf` if it is complete, `None` if more bytes are
/// needed.
pub fn tagged_frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, ProtocolError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(ProtocolError::LengthTooSmall { len });
    }
    let total = len as usize + 1;
    if total > max {
        return Err(ProtocolError::TooLarge { len: total, max });
    }
    Ok((buf.len() >= total).then_some(total))
}

/// Length of the untagged startup-phase packet at the start of `buf` if complete.
pub fn startup_packet_len(buf: &[u8], max: usize) -> Result<Option<usize>, ProtocolError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(8..=max).contains(&len) {
        return Err(ProtocolError::BadStartupLength { len, max });
    }
    Ok((buf.len() >= len).then_some(len))
}

/// A read buffer that hands out whole frames, reusing one allocation across messages.
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    max: usize,
    chunk: usize,
}

impl FrameReader {
    /// A reader with no buffer allocated yet: one is reserved on the first read.
    pub fn new(max_message_size: usize) -> Self {
        FrameReader {
            buf: BytesMut::new(),
            max: max_message_size,
            chunk: 8 * 1024,
        }
    }

    /// The least a read makes room for. Small for client sockets (requests are small and there are
    /// thousands of clients), larger for backends (result rows stream back).
    pub fn with_read_chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk.max(64);
        self
    }

    /// Frees the buffer when nothing is buffered, so an idle connection holds no read memory (thousands
    /// of idle clients are the normal case for a pooler).
    pub fn release_if_empty(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }

    /// The buffer to read socket bytes into.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes buffered but not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Makes room for the rest of a partially buffered frame so one read can complete it. Reserving the
    /// declared length up front keeps large DataRows from growing the buffer a few KiB at a time.
    pub fn reserve_for_next(&mut self) {
        let want = match tagged_frame_len(&self.buf, self.max) {
            Ok(None) if self.buf.len() >= 5 => {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                (len as usize + 1).saturating_sub(self.buf.len())
            }
            _ => 0,
        };
        self.buf.reserve(want.max(self.chunk));
    }

    /// Splits off the next whole frame, if there is one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        match tagged_frame_len(&self.buf, self.max)? {
            Some(len) => {
                let tag = self.buf[0];
                Ok(Some(Frame {
                    tag,
                    bytes: self.buf.split_to(len).freeze(),
                }))
            }
            None => Ok(None),
        }
    }

    /// Splits off the untagged startup packet (length-prefixed, no tag), if whole.
    pub fn next_startup_packet(&mut self, max: usize) -> Result<Option<Bytes>, ProtocolError> {
        match startup_packet_len(&self.buf, max)? {
            Some(len) => Ok(Some(self.buf.split_to(len).freeze())),
            None => Ok(None),
        }
    }

    /// Splits off every whole frame buffered so far as one contiguous chunk, calling `inspect` on each
    /// frame's tag and body. Forwarding the chunk in one write instead of frame by frame is what keeps the
    /// relay to one read and one write per batch.
    pub fn take_batch(
        &mut self,
        mut inspect: impl FnMut(u8, &[u8]),
    ) -> Result<Option<Bytes>, ProtocolError> {
        let mut end = 0;
        while let Some(len) = tagged_frame_len(&self.buf[end..], self.max)? {
            inspect(self.buf[end], &self.buf[end + 5..end + len]);
            end += len;
        }
        if end == 0 {
            return Ok(None);
        }
        Ok(Some(self.buf.split_to(end).freeze()))
    }

    /// The buffered bytes, for callers that walk frames in place with [`tagged_frame_len`].
    pub fn buffer(&self) -> &[u8] {
        &self.buf
    }

    /// The maximum message size this reader enforces.
    pub fn max_message_size(&self) -> usize {
        self.max
    }

    /// Splits off the first `n` buffered bytes without copying.
    pub fn split(&mut self, n: usize) -> Bytes {
        self.buf.split_to(n.min(self.buf.len())).freeze()
    }

    /// Drops `n` buffered bytes (used after a frame was consumed in place).
    pub fn discard(&mut self, n: usize) {
        self.buf.advance(n.min(self.buf.len()));
    }
}

/// Reads a NUL-terminated string from the front of `buf`, advancing past it.
pub fn read_cstr<'a>(buf: &mut &'a [u8], what: &'static str) -> Result<&'a str, ProtocolError> {
    let nul = buf
        .iter()
        .position(|&b| b == 0)
        .ok_or(ProtocolError::Malformed { what })?;
    let s = std::str::from_utf8(&buf[..nul]).map_err(|_| ProtocolError::Malformed { what })?;
    *buf = &buf[nul + 1..];
    Ok(s)
}

/// Reads a big-endian i32 from the front of `buf`, advancing past it.
pub fn read_i32(buf: &mut &[u8], what: &'static str) -> Result<i32, ProtocolError> {
    if buf.len() < 4 {
        return Err(ProtocolError::Malformed { what });
    }
    let v = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    *buf = &buf[4..];
    Ok(v)
}

/// Starts a tagged message in `out`, returning the offset of its length field for [`finish_message`].
pub fn begin_message(out: &mut BytesMut, tag: u8) -> usize {
    out.extend_from_slice(&[tag, 0, 0, 0, 0]);
    out.len() - 4
}

/// Patches the length field written by [`begin_message`].
pub fn finish_message(out: &mut BytesMut, len_at: usize) {
    let len = (out.len() - len_at) as u32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a NUL-terminated string.
pub fn put_cstr(out: &mut BytesMut, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(&[0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn partial_frame_is_none_then_whole() {
        let f = frame(b'Q', b"select 1\0");
        let mut r = FrameReader::new(1024);
        r.buffer_mut().extend_from_slice(&f[..3]);
        assert_eq!(r.next_frame(), Ok(None));
        r.buffer_mut().extend_from_slice(&f[3..]);
        let got = r.next_frame().expect("valid").expect("whole");
        assert_eq!(got.tag, b'Q');
        assert_eq!(got.body(), b"select 1\0");
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn oversized_length_is_rejected_before_buffering() {
        let mut r = FrameReader::new(100);
        r.buffer_mut()
            .extend_from_slice(&[b'd', 0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(
            r.next_frame(),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn length_below_four_is_rejected() {
        assert_eq!(
            tagged_frame_len(&[b'Q', 0, 0, 0, 3], 100),
            Err(ProtocolError::LengthTooSmall { len: 3 })
        );
    }

    #[test]
    fn batch_takes_only_whole_frames_and_sees_each_tag() {
        let mut bytes = frame(b'D', b"row");
        bytes.extend(frame(b'C', b"SELECT 1\0"));
        let z = frame(b'Z', b"I");
        bytes.extend_from_slice(&z[..2]);
        let mut r = FrameReader::new(1024);
        r.buffer_mut().extend_from_slice(&bytes);
        let mut tags = vec![];
        let batch = r
            .take_batch(|t, _| tags.push(t))
            .expect("valid")
            .expect("some");
        assert_eq!(tags, vec![b'D', b'C']);
        assert_eq!(batch.len(), 8 + 14);
        assert_eq!(r.buffered(), 2);
    }

    #[test]
    fn startup_length_bounds() {
        assert!(startup_packet_len(&[0, 0, 0, 4], 100).is_err());
        assert!(startup_packet_len(&[0, 1, 0, 0], 100).is_err());
        assert_eq!(startup_packet_len(&[0, 0, 0, 8, 1, 2], 100), Ok(None));
    }

    #[test]
    fn cstr_requires_terminator() {
        let mut b: &[u8] = b"abc";
        assert!(read_cstr(&mut b, "x").is_err());
        let mut b: &[u8] = b"abc\0rest";
        assert_eq!(read_cstr(&mut b, "x"), Ok("abc"));
        assert_eq!(b, b"rest");
    }
}
