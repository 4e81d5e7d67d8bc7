//! prost mirrors of the `eraftpb` messages (same field numbers and types, so
//! the same bytes on the wire) and their conversions to and from raft-rs's
//! types.

use bytes::Bytes;
use protobuf::ProtobufEnum;
use raft::eraftpb::{
    ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState, Entry,
    EntryType, Message, MessageType, Snapshot, SnapshotMetadata,
};

use super::WireError;

fn enum_value<E: ProtobufEnum>(kind: &'static str, value: i32) -> Result<E, WireError> {
    E::from_i32(value).ok_or(WireError::UnknownEnum { kind, value })
}

/// `eraftpb.Message`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct WireMessage {
    #[prost(int32, tag = "1")]
    pub(super) msg_type: i32,
    #[prost(uint64, tag = "2")]
    pub(super) to: u64,
    #[prost(uint64, tag = "3")]
    pub(super) from: u64,
    #[prost(uint64, tag = "4")]
    pub(super) term: u64,
    #[prost(uint64, tag = "5")]
    pub(super) log_term: u64,
    #[prost(uint64, tag = "6")]
    pub(super) index: u64,
    #[prost(message, repeated, tag = "7")]
    pub(super) entries: Vec<WireEntry>,
    #[prost(uint64, tag = "8")]
    pub(super) commit: u64,
    #[prost(message, optional, tag = "9")]
    pub(super) snapshot: Option<WireSnapshot>,
    #[prost(bool, tag = "10")]
    pub(super) reject: bool,
    #[prost(uint64, tag = "11")]
    pub(super) reject_hint: u64,
    #[prost(bytes = "bytes", tag = "12")]
    pub(super) context: Bytes,
    #[prost(uint64, tag = "13")]
    pub(super) request_snapshot: u64,
    #[prost(uint64, tag = "14")]
    pub(super) deprecated_priority: u64,
    #[prost(uint64, tag = "15")]
    pub(super) commit_term: u64,
    #[prost(int64, tag = "16")]
    pub(super) priority: i64,
}

/// `eraftpb.Entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct WireEntry {
    #[prost(int32, tag = "1")]
    pub(super) entry_type: i32,
    #[prost(uint64, tag = "2")]
    pub(super) term: u64,
    #[prost(uint64, tag = "3")]
    pub(super) index: u64,
    #[prost(bytes = "bytes", tag = "4")]
    pub(super) data: Bytes,
    #[prost(bool, tag = "5")]
    pub(super) sync_log: bool,
    #[prost(bytes = "bytes", tag = "6")]
    pub(super) context: Bytes,
}

/// `eraftpb.Snapshot`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct WireSnapshot {
    #[prost(bytes = "bytes", tag = "1")]
    pub(super) data: Bytes,
    #[prost(message, optional, tag = "2")]
    pub(super) metadata: Option<WireSnapshotMetadata>,
}

/// `eraftpb.SnapshotMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct WireSnapshotMetadata {
    #[prost(message, optional, tag = "1")]
    pub(super) conf_state: Option<WireConfState>,
    #[prost(uint64, tag = "2")]
    pub(super) index: u64,
    #[prost(uint64, tag = "3")]
    pub(super) term: u64,
}

/// `eraftpb.ConfState`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct WireConfState {
    #[prost(uint64, repeated, tag = "1")]
    pub(super) voters: Vec<u64>,
    #[prost(uint64, repeated, tag = "2")]
    pub(super) learners: Vec<u64>,
    #[prost(uint64, repeated, tag = "3")]
    pub(super) voters_outgoing: Vec<u64>,
    #[prost(uint64, repeated, tag = "4")]
    pub(super) learners_next: Vec<u64>,
    #[prost(bool, tag = "5")]
    pub(super) auto_leave: bool,
}

/// `eraftpb.ConfChange` (legacy form; raft-rs may still propose it).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct WireConfChange {
    #[prost(uint64, tag = "1")]
    pub(super) id: u64,
    #[prost(int32, tag = "2")]
    pub(super) change_type: i32,
    #[prost(uint64, tag = "3")]
    pub(super) node_id: u64,
    #[prost(bytes = "bytes", tag = "4")]
    pub(super) context: Bytes,
}

/// `eraftpb.ConfChangeSingle`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct WireConfChangeSingle {
    #[prost(int32, tag = "1")]
    pub(super) change_type: i32,
    #[prost(uint64, tag = "2")]
    pub(super) node_id: u64,
}

/// `eraftpb.ConfChangeV2`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct WireConfChangeV2 {
    #[prost(int32, tag = "1")]
    pub(super) transition: i32,
    #[prost(message, repeated, tag = "2")]
    pub(super) changes: Vec<WireConfChangeSingle>,
    #[prost(bytes = "bytes", tag = "3")]
    pub(super) context: Bytes,
}

impl From<&Message> for WireMessage {
    fn from(m: &Message) -> Self {
        Self {
            msg_type: m.get_msg_type().value(),
            to: m.to,
            from: m.from,
            term: m.term,
            log_term: m.log_term,
            index: m.index,
            entries: m.entries.iter().map(WireEntry::from).collect(),
            commit: m.commit,
            snapshot: m.snapshot.as_ref().map(WireSnapshot::from),
            reject: m.reject,
            reject_hint: m.reject_hint,
            context: m.context.clone(),
            request_snapshot: m.request_snapshot,
            deprecated_priority: m.deprecated_priority,
            commit_term: m.commit_term,
            priority: m.priority,
        }
    }
}

impl TryFrom<WireMessage> for Message {
    type Error = WireError;

    fn try_from(w: WireMessage) -> Result<Self, WireError> {
        let mut m = Message::default();
        m.set_msg_type(enum_value::<MessageType>("MessageType", w.msg_type)?);
        m.to = w.to;
        m.from = w.from;
        m.term = w.term;
        m.log_term = w.log_term;
        m.index = w.index;
        let entries = w
            .entries
            .into_iter()
            .map(Entry::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        m.set_entries(entries.into());
        m.commit = w.commit;
        if let Some(s) = w.snapshot {
            m.set_snapshot(s.try_into()?);
        }
        m.reject = w.reject;
        m.reject_hint = w.reject_hint;
        m.context = w.context;
        m.request_snapshot = w.request_snapshot;
        m.deprecated_priority = w.deprecated_priority;
        m.commit_term = w.commit_term;
        m.priority = w.priority;
        Ok(m)
    }
}

impl From<&Entry> for WireEntry {
    fn from(e: &Entry) -> Self {
        Self {
            entry_type: e.get_entry_type().value(),
            term: e.term,
            index: e.index,
            data: e.data.clone(),
            sync_log: e.sync_log,
            context: e.context.clone(),
        }
    }
}

impl TryFrom<WireEntry> for Entry {
    type Error = WireError;

    fn try_from(w: WireEntry) -> Result<Self, WireError> {
        let mut e = Entry::default();
        e.set_entry_type(enum_value::<EntryType>("EntryType", w.entry_type)?);
        e.term = w.term;
        e.index = w.index;
        e.data = w.data;
        e.sync_log = w.sync_log;
        e.context = w.context;
        Ok(e)
    }
}

impl From<&Snapshot> for WireSnapshot {
    fn from(s: &Snapshot) -> Self {
        Self {
            data: s.data.clone(),
            metadata: s.metadata.as_ref().map(|m| WireSnapshotMetadata {
                conf_state: m.conf_state.as_ref().map(WireConfState::from),
                index: m.index,
                term: m.term,
            }),
        }
    }
}

impl TryFrom<WireSnapshot> for Snapshot {
    type Error = WireError;

    fn try_from(w: WireSnapshot) -> Result<Self, WireError> {
        let mut s = Snapshot {
            data: w.data,
            ..Snapshot::default()
        };
        if let Some(wm) = w.metadata {
            let mut m = SnapshotMetadata::default();
            if let Some(cs) = wm.conf_state {
                m.set_conf_state(cs.into());
            }
            m.index = wm.index;
            m.term = wm.term;
            s.set_metadata(m);
        }
        Ok(s)
    }
}

impl From<&ConfState> for WireConfState {
    fn from(cs: &ConfState) -> Self {
        Self {
            voters: cs.voters.clone(),
            learners: cs.learners.clone(),
            voters_outgoing: cs.voters_outgoing.clone(),
            learners_next: cs.learners_next.clone(),
            auto_leave: cs.auto_leave,
        }
    }
}

impl From<WireConfState> for ConfState {
    fn from(w: WireConfState) -> Self {
        ConfState {
            voters: w.voters,
            learners: w.learners,
            voters_outgoing: w.voters_outgoing,
            learners_next: w.learners_next,
            auto_leave: w.auto_leave,
            ..ConfState::default()
        }
    }
}

impl From<&ConfChangeV2> for WireConfChangeV2 {
    fn from(cc: &ConfChangeV2) -> Self {
        Self {
            transition: cc.get_transition().value(),
            changes: cc
                .changes
                .iter()
                .map(|c| WireConfChangeSingle {
                    change_type: c.get_change_type().value(),
                    node_id: c.node_id,
                })
                .collect(),
            context: cc.context.clone(),
        }
    }
}

impl TryFrom<WireConfChangeV2> for ConfChangeV2 {
    type Error = WireError;

    fn try_from(w: WireConfChangeV2) -> Result<Self, WireError> {
        let mut cc = ConfChangeV2::default();
        cc.set_transition(enum_value::<ConfChangeTransition>(
            "ConfChangeTransition",
            w.transition,
        )?);
        for c in w.changes {
            let mut single = ConfChangeSingle::default();
            single.set_change_type(enum_value::<ConfChangeType>(
                "ConfChangeType",
                c.change_type,
            )?);
            single.node_id = c.node_id;
            cc.changes.push(single);
        }
        cc.context = w.context;
        Ok(cc)
    }
}
