//! The framing of a raft stream: after the HTTP/1.1 upgrade ([`crate::server`] accepts it,
//! [`crate::transport`] asks for it), both directions carry frames
//!
//! ```text
//! kind: u8 | length: u32 LE | crc32 (IEEE) of kind, length and payload: u32 LE | payload
//! ```
//!
//! The sender sends [`FrameKind::Message`] frames (one encoded raft message each) and,
//! every keep-alive interval, a [`FrameKind::Ping`]; the receiver answers each ping with a
//! [`FrameKind::Pong`] and sends nothing else.
//!
//! **Why a checksum on a TCP stream.** TCP never loses bytes in the middle of a stream,
//! but a fault proxy that blackholes a link for a while does; a frame read from the wrong
//! offset must be refused (and the connection dropped) rather than decoded into a message
//! that was never sent. A corrupt length cannot stall the stream either: the receiver
//! stops answering pings while it waits, so the sender drops the connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use oxcd_raft::eraftpb::Message;

/// Bytes before a frame's payload.
pub(crate) const HEADER_LEN: usize = 9;

/// Largest payload accepted: one raft message (its entries may be large).
pub(crate) const MAX_PAYLOAD: usize = 256 << 20;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// One raft message, encoded by [`oxcd_raft::wire`].
    Message = 1,
    /// The sender asks for a [`FrameKind::Pong`] (no payload).
    Ping = 2,
    /// The receiver's answer to a ping (no payload).
    Pong = 3,
}

impl FrameKind {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Message),
            2 => Some(Self::Ping),
            3 => Some(Self::Pong),
            _ => None,
        }
    }
}

/// A stream that does not follow the framing: the connection must be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// The kind byte is none of [`FrameKind`]'s.
    #[error("unknown raft stream frame kind {0}")]
    UnknownKind(u8),
    /// The length is larger than [`MAX_PAYLOAD`].
    #[error("raft stream frame of {0} bytes is larger than the {MAX_PAYLOAD} allowed")]
    TooLarge(u32),
    /// The checksum does not match: bytes were lost or changed.
    #[error("raft stream frame fails its checksum")]
    Checksum,
}

/// Appends a frame of `kind` with `payload` to `out`.
fn put_frame(out: &mut Vec<u8>, kind: FrameKind, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.put_bytes(0, HEADER_LEN);
    payload(out);
    let len = (out.len() - start - HEADER_LEN) as u32;
    out[start] = kind as u8;
    out[start + 1..start + 5].copy_from_slice(&len.to_le_bytes());
    let crc = checksum(&out[start..start + 5], &out[start + HEADER_LEN..]);
    out[start + 5..start + HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// Appends `msg` as a [`FrameKind::Message`] frame to `out`; returns the frame's size.
pub(crate) fn put_message(out: &mut Vec<u8>, msg: &Message) -> usize {
    let before = out.len();
    put_frame(out, FrameKind::Message, |buf| {
        oxcd_raft::wire::encode_message_to(msg, buf)
    });
    out.len() - before
}

/// Appends an empty frame of `kind` (a ping or a pong) to `out`.
pub(crate) fn put_control(out: &mut Vec<u8>, kind: FrameKind) {
    put_frame(out, kind, |_| {});
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header);
    h.update(payload);
    h.finalize()
}

/// Takes the next complete frame off the front of `buf`: `None` while more bytes are
/// needed (then `buf` has room reserved for the rest of the frame).
pub(crate) fn take_frame(buf: &mut BytesMut) -> Result<Option<(FrameKind, Bytes)>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let kind = FrameKind::from_byte(buf[0]).ok_or(FrameError::UnknownKind(buf[0]))?;
    let len = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len as usize > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(len));
    }
    let total = HEADER_LEN + len as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let crc = u32::from_le_bytes([buf[5], buf[6], buf[7], buf[8]]);
    if checksum(&buf[..5], &buf[HEADER_LEN..total]) != crc {
        return Err(FrameError::Checksum);
    }
    let mut frame = buf.split_to(total);
    frame.advance(HEADER_LEN);
    Ok(Some((kind, frame.freeze())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_raft::eraftpb::{Entry, MessageType};

    fn append(index: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.from = 1;
        m.to = 2;
        m.index = index;
        let e = Entry {
            index: index + 1,
            data: vec![7u8; 300].into(),
            ..Default::default()
        };
        m.entries = vec![e].into();
        m
    }

    #[test]
    fn frames_read_back_in_order_whatever_the_read_sizes() {
        let mut out = Vec::new();
        put_message(&mut out, &append(1));
        put_control(&mut out, FrameKind::Ping);
        put_message(&mut out, &append(2));
        // Feed the bytes one read of 7 at a time.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in out.chunks(7) {
            buf.extend_from_slice(piece);
            while let Some((kind, payload)) = take_frame(&mut buf).unwrap() {
                got.push((kind, payload));
            }
        }
        assert!(buf.is_empty());
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], (FrameKind::Ping, Bytes::new()));
        let first = oxcd_raft::wire::decode_message(got[0].1.clone()).unwrap();
        let third = oxcd_raft::wire::decode_message(got[2].1.clone()).unwrap();
        assert_eq!((first.index, third.index), (1, 2));
        assert_eq!(first.entries[0].data.len(), 300);
    }

    #[test]
    fn a_frame_read_from_the_wrong_offset_is_refused() {
        let mut out = Vec::new();
        put_message(&mut out, &append(1));
        put_message(&mut out, &append(2));
        // A blackhole swallowed the first bytes of the stream.
        for skip in 1..HEADER_LEN + 40 {
            let mut buf = BytesMut::from(&out[skip..]);
            let r = take_frame(&mut buf);
            assert!(
                matches!(r, Err(_) | Ok(None)),
                "skip {skip}: {r:?} decoded from the middle of a frame"
            );
        }
        // A changed payload byte.
        let mut bad = out.clone();
        bad[HEADER_LEN + 20] ^= 1;
        let mut buf = BytesMut::from(&bad[..]);
        assert_eq!(take_frame(&mut buf), Err(FrameError::Checksum));
        // A changed length.
        let mut bad = out.clone();
        bad[1] ^= 1;
        let mut buf = BytesMut::from(&bad[..]);
        assert!(take_frame(&mut buf).is_err());
    }

    #[test]
    fn bad_kinds_and_oversized_lengths_are_refused_before_waiting_for_the_payload() {
        let mut buf = BytesMut::from(&[9u8, 0, 0, 0, 0, 0, 0, 0, 0][..]);
        assert_eq!(take_frame(&mut buf), Err(FrameError::UnknownKind(9)));
        let mut header = vec![1u8];
        header.extend_from_slice(&u32::MAX.to_le_bytes());
        header.extend_from_slice(&[0; 4]);
        let mut buf = BytesMut::from(&header[..]);
        assert_eq!(take_frame(&mut buf), Err(FrameError::TooLarge(u32::MAX)));
    }
}
