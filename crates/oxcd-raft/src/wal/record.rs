//! On-disk record framing.
//!
//! Every record is `[len u32 LE][type u8][crc u32 LE][payload; len]`.
//! The crc is CRC32 (IEEE, via `crc32fast`) seeded with the *previous*
//! record's crc and computed over `type ‖ payload`. Chaining makes a record
//! valid only in its exact position: records cannot be reordered, dropped or
//! spliced in from another log without breaking the chain.
//!
//! Type `0` is deliberately invalid so that zero-filled space (preallocated
//! or never-written blocks after a crash) never parses as a record.

/// Size of the fixed record header (`len` + `type` + `crc`).
pub(crate) const HEADER_LEN: usize = 4 + 1 + 4;

/// Upper bound on one record's payload; a larger `len` is treated as damage
/// rather than an allocation request.
pub(crate) const MAX_PAYLOAD: u32 = 256 * 1024 * 1024;

/// Kinds of records stored in the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RecordType {
    /// First record of every segment: payload is the previous segment's
    /// last crc (u32 LE), so the chain spans segments.
    CrcSeed = 1,
    /// A raft-rs `eraftpb::Entry`, protobuf-encoded.
    Entry = 2,
    /// A raft-rs `eraftpb::HardState`, protobuf-encoded.
    HardState = 3,
    /// Snapshot marker: `index u64 LE ‖ term u64 LE ‖ ConfState protobuf`.
    Snapshot = 4,
    /// A raft-rs `eraftpb::ConfState`, protobuf-encoded: the initial membership
    /// (in effect from index 0 on).
    ConfState = 5,
    /// Membership as of applying entry `index`: `index u64 LE ‖ ConfState protobuf`.
    ConfStateAt = 6,
    /// Application data of the snapshot marker just before it (a snapshot received
    /// from the leader): `index u64 LE ‖ data`.
    SnapshotData = 7,
    /// Raft discarded its log from `index` on (a received snapshot replaced it):
    /// `index u64 LE`.
    Truncate = 8,
}

impl RecordType {
    /// Maps a type byte back to a record type; `None` for unknown bytes.
    pub(crate) fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::CrcSeed,
            2 => Self::Entry,
            3 => Self::HardState,
            4 => Self::Snapshot,
            5 => Self::ConfState,
            6 => Self::ConfStateAt,
            7 => Self::SnapshotData,
            8 => Self::Truncate,
            _ => return None,
        })
    }
}

/// Computes the chained crc of a record.
pub(crate) fn record_crc(prev_crc: u32, ty: u8, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(prev_crc);
    h.update(&[ty]);
    h.update(payload);
    h.finalize()
}

/// Appends one framed record to `buf` and returns its crc (the next seed).
pub(crate) fn encode(buf: &mut Vec<u8>, prev_crc: u32, ty: RecordType, payload: &[u8]) -> u32 {
    let crc = record_crc(prev_crc, ty as u8, payload);
    // Payloads come from raft entries bounded far below 4 GiB; MAX_PAYLOAD is
    // enforced by the writer before calling this.
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.push(ty as u8);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(payload);
    crc
}

/// A record decoded from a byte buffer.
#[derive(Debug)]
pub(crate) struct Decoded<'a> {
    pub ty: RecordType,
    pub crc: u32,
    pub payload: &'a [u8],
    /// Total bytes the record occupies (header + payload).
    pub len: usize,
}

/// Why a record at some offset could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Fewer bytes remain than the header or the declared payload needs.
    Truncated,
    /// The declared length exceeds [`MAX_PAYLOAD`].
    BadLength,
    /// Unknown type byte (includes zero fill).
    BadType,
    /// The chained crc does not match.
    BadCrc,
}

impl DecodeError {
    /// Short human-readable reason used in corruption messages.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Truncated => "record truncated",
            Self::BadLength => "implausible record length",
            Self::BadType => "unknown record type",
            Self::BadCrc => "crc mismatch",
        }
    }
}

/// Reads the raw header fields without validating anything.
fn header(buf: &[u8]) -> Option<(u32, u8, u32)> {
    let h = buf.get(..HEADER_LEN)?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let crc = u32::from_le_bytes([h[5], h[6], h[7], h[8]]);
    Some((len, h[4], crc))
}

/// Decodes the record at the start of `buf`, verifying its crc against
/// `prev_crc`. A `CrcSeed` record is verified against the seed it carries
/// when `prev_crc` is `None` (the first record of the oldest segment, whose
/// predecessor has been released).
pub(crate) fn decode(buf: &[u8], prev_crc: Option<u32>) -> Result<Decoded<'_>, DecodeError> {
    let (len, ty_byte, crc) = header(buf).ok_or(DecodeError::Truncated)?;
    if len > MAX_PAYLOAD {
        return Err(DecodeError::BadLength);
    }
    let total = HEADER_LEN + len as usize;
    let payload = buf.get(HEADER_LEN..total).ok_or(DecodeError::Truncated)?;
    let ty = RecordType::from_u8(ty_byte).ok_or(DecodeError::BadType)?;
    let seed = match prev_crc {
        Some(c) => c,
        None => seed_value(ty, payload).ok_or(DecodeError::BadCrc)?,
    };
    if record_crc(seed, ty_byte, payload) != crc {
        return Err(DecodeError::BadCrc);
    }
    Ok(Decoded {
        ty,
        crc,
        payload,
        len: total,
    })
}

/// The seed carried by a `CrcSeed` record's payload.
pub(crate) fn seed_value(ty: RecordType, payload: &[u8]) -> Option<u32> {
    if ty != RecordType::CrcSeed {
        return None;
    }
    let b: [u8; 4] = payload.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_and_chain() {
        let mut buf = Vec::new();
        let c1 = encode(&mut buf, 7, RecordType::Entry, b"hello");
        let c2 = encode(&mut buf, c1, RecordType::HardState, b"");
        let r1 = decode(&buf, Some(7)).unwrap();
        assert_eq!(
            (r1.ty, r1.payload, r1.crc),
            (RecordType::Entry, &b"hello"[..], c1)
        );
        let r2 = decode(&buf[r1.len..], Some(c1)).unwrap();
        assert_eq!(r2.crc, c2);
        // Wrong predecessor breaks the chain.
        assert_eq!(
            decode(&buf[r1.len..], Some(c1 ^ 1)).unwrap_err(),
            DecodeError::BadCrc
        );
        // Zero fill is never a record.
        assert_eq!(
            decode(&[0u8; 32], Some(0)).unwrap_err(),
            DecodeError::BadType
        );
        assert_eq!(
            decode(&buf[..3], Some(7)).unwrap_err(),
            DecodeError::Truncated
        );
    }
}
