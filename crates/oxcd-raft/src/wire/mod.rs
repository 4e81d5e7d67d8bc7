//! Encoding of raft messages between members, and of membership changes.
//!
//! **Why not raft-rs's own codec.** raft-rs 0.7 encodes its `eraftpb` types
//! with the `protobuf` 2.28 crate, which RUSTSEC-2024-0437 flags (every
//! version before 3.7.2: uncontrolled recursion on deeply nested input, a
//! crash from one message of a peer or of anything reaching the peer port).
//! 2.28 itself looks safe on reading (its `skip_group` refuses a group nested
//! in a group instead of recursing, and nested messages stop at depth 100;
//! the tests check a million nested groups is refused), but it is
//! unmaintained and no fixed 2.x exists, so we do not rely on it for input we
//! do not control. raft-rs's alternative `prost-codec` costs more than it
//! removes: `raft` and `raft-proto` depend on `protobuf` 2 either way (the
//! advisory stays), it adds prost 0.11 beside the workspace's prost 0.14, and
//! its build script runs prost-build 0.11, which needs a `protoc` binary (a
//! machine with only Rust cannot build it). So bytes from the network are
//! decoded here with prost (which refuses nesting deeper than 100) into the
//! mirror types of the `mirror` module, which carry the field numbers of
//! `eraftpb.proto` (the same protobuf encoding on the wire), then converted to
//! `eraftpb`. raft-rs itself parses one thing with `protobuf`, the data of
//! conf-change entries in proposals; [`decode_message`] lets through only
//! conf-change data whose every byte belongs to a known field (no unknown
//! field, hence no group). The WAL keeps using `protobuf` 2.28 for records
//! this member wrote itself, checked by crc, so the on-disk format is
//! unchanged.

mod mirror;
#[cfg(test)]
mod tests;

use bytes::Buf;
use prost::Message as _;
use protobuf::ProtobufEnum;
use raft::eraftpb::{ConfChangeTransition, ConfChangeV2, EntryType, Message};

use mirror::{WireConfChange, WireConfChangeSingle, WireConfChangeV2, WireEntry, WireMessage};

/// Bytes from a peer that are not a raft message this member accepts.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not valid protobuf for the expected message (or nested too deeply).
    #[error("malformed raft message: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A field holds a value its enum does not define.
    #[error("unknown {kind} value {value}")]
    UnknownEnum {
        /// The enum (`MessageType`, `EntryType`, ...).
        kind: &'static str,
        /// The value received.
        value: i32,
    },
    /// A membership change encoded with fields this member does not know,
    /// repeated, or in a longer form than necessary.
    #[error("membership change in entry {index} is not in canonical form")]
    NonCanonicalConfChange {
        /// Raft index of the entry carrying it.
        index: u64,
    },
}

/// Encodes `msg` for a peer ([`decode_message`] reads it back).
pub fn encode_message(msg: &Message) -> Vec<u8> {
    WireMessage::from(msg).encode_to_vec()
}

/// Appends `msg`, encoded as [`encode_message`] does, to `out` (a frame being built).
pub fn encode_message_to(msg: &Message, out: &mut Vec<u8>) {
    let wire = WireMessage::from(msg);
    out.reserve(wire.encoded_len());
    // Encoding into a growable buffer cannot run out of room.
    let _ = wire.encode(out);
}

/// Decodes a message from a peer without letting its bytes reach `protobuf`
/// 2.28 (see the module docs). `buf` may be a [`bytes::Bytes`], whose payloads are
/// then shared instead of copied.
pub fn decode_message(buf: impl Buf) -> Result<Message, WireError> {
    let wire = WireMessage::decode(buf)?;
    for e in &wire.entries {
        check_conf_change_entry(e)?;
    }
    wire.try_into()
}

/// Decodes the data of a committed [`crate::EntryKind::ConfChange`] entry (an
/// encoded `ConfChangeV2`; empty data is raft's own "leave the joint
/// configuration").
pub fn decode_conf_change(data: &[u8]) -> Result<ConfChangeV2, WireError> {
    WireConfChangeV2::decode(data)?.try_into()
}

/// Encodes a membership change as [`decode_conf_change`] reads it.
pub fn encode_conf_change(cc: &ConfChangeV2) -> Vec<u8> {
    WireConfChangeV2::from(cc).encode_to_vec()
}

/// Re-encodes a legacy `ConfChange` entry's data as a `ConfChangeV2`, so every
/// committed conf-change entry carries one form. `None` if it does not decode.
pub(crate) fn conf_change_v1_as_v2(data: &[u8]) -> Option<Vec<u8>> {
    let v1 = WireConfChange::decode(data).ok()?;
    let v2 = WireConfChangeV2 {
        transition: ConfChangeTransition::Auto as i32,
        changes: vec![WireConfChangeSingle {
            change_type: v1.change_type,
            node_id: v1.node_id,
        }],
        context: v1.context,
    };
    Some(v2.encode_to_vec())
}

/// Refuses conf-change data that raft-rs would parse with `protobuf` 2.28
/// unless every byte of it belongs to a known field: decoded by prost and
/// re-encoded, it must keep its length. Unknown fields (the only way to nest
/// groups), a scalar given twice and over-long varints all make the
/// re-encoding shorter; nothing makes it longer.
fn check_conf_change_entry(e: &WireEntry) -> Result<(), WireError> {
    let canonical_len = match EntryType::from_i32(e.entry_type) {
        Some(EntryType::EntryConfChange) => WireConfChange::decode(e.data.clone())
            .ok()
            .map(|cc| cc.encoded_len()),
        Some(EntryType::EntryConfChangeV2) => WireConfChangeV2::decode(e.data.clone())
            .ok()
            .map(|cc| cc.encoded_len()),
        _ => return Ok(()),
    };
    if canonical_len == Some(e.data.len()) {
        Ok(())
    } else {
        Err(WireError::NonCanonicalConfChange { index: e.index })
    }
}
