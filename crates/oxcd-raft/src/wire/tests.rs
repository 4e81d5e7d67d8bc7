//! The mirrors read what raft-rs's codec writes and vice versa; hostile
//! bytes are refused before `protobuf` 2.28 sees them.

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType,
    Snapshot,
};

use super::*;
use crate::conf_change;

fn entry(index: u64, ty: EntryType, data: Vec<u8>) -> Entry {
    let mut e = Entry::default();
    e.set_entry_type(ty);
    e.term = 3;
    e.index = index;
    e.data = data.into();
    e.context = b"ectx".to_vec().into();
    e.sync_log = true;
    e
}

fn v2() -> ConfChangeV2 {
    conf_change(
        &[
            (ConfChangeType::AddLearnerNode, 2),
            (ConfChangeType::AddNode, 3),
        ],
        b"member attributes".to_vec(),
    )
}

/// A message with every field set to a non-default value.
fn full_message() -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgAppend);
    m.to = 2;
    m.from = 1;
    m.term = 3;
    m.log_term = 2;
    m.index = 9;
    m.commit = 8;
    m.commit_term = 2;
    m.request_snapshot = 4;
    m.reject = true;
    m.reject_hint = 7;
    m.context = b"mctx".to_vec().into();
    m.deprecated_priority = 5;
    m.priority = -6;
    m.set_entries(
        vec![
            entry(10, EntryType::EntryNormal, b"put".to_vec()),
            entry(
                11,
                EntryType::EntryConfChangeV2,
                v2().write_to_bytes().unwrap(),
            ),
            entry(12, EntryType::EntryConfChangeV2, Vec::new()),
        ]
        .into(),
    );
    let mut snap = Snapshot {
        data: b"backend descriptor".to_vec().into(),
        ..Snapshot::default()
    };
    let meta = snap.mut_metadata();
    meta.index = 7;
    meta.term = 2;
    let mut cs = ConfState::from((vec![1, 3], vec![2]));
    cs.voters_outgoing = vec![1];
    cs.learners_next = vec![3];
    cs.auto_leave = true;
    meta.set_conf_state(cs);
    m.set_snapshot(snap);
    m
}

#[test]
fn reads_what_raft_rs_writes_and_the_reverse() {
    let m = full_message();
    let from_protobuf = decode_message(&m.write_to_bytes().unwrap()[..]).unwrap();
    assert_eq!(from_protobuf, m);
    let ours = encode_message(&m);
    assert_eq!(Message::parse_from_bytes(&ours).unwrap(), m);
    assert_eq!(decode_message(bytes::Bytes::from(ours)).unwrap(), m);
    // An empty message (a default heartbeat-like one) survives too.
    assert_eq!(
        decode_message(&encode_message(&Message::default())[..]).unwrap(),
        Message::default()
    );
}

#[test]
fn conf_changes_round_trip_in_both_codecs() {
    let cc = v2();
    assert_eq!(decode_conf_change(&encode_conf_change(&cc)).unwrap(), cc);
    assert_eq!(
        decode_conf_change(&cc.write_to_bytes().unwrap()).unwrap(),
        cc
    );
    assert_eq!(decode_conf_change(&[]).unwrap(), ConfChangeV2::default());

    let mut v1 = ConfChange::default();
    v1.set_change_type(ConfChangeType::RemoveNode);
    v1.node_id = 9;
    v1.id = 77;
    v1.context = b"why".to_vec().into();
    let as_v2 = conf_change_v1_as_v2(&v1.write_to_bytes().unwrap()).unwrap();
    assert_eq!(
        decode_conf_change(&as_v2).unwrap(),
        conf_change(&[(ConfChangeType::RemoveNode, 9)], b"why".to_vec())
    );
}

/// `depth` nested groups of an unknown field 100 (start-group tag 0x323 =
/// 100 << 3 | 3, end-group 0x324), after a valid field.
fn nested_groups(depth: usize) -> Vec<u8> {
    let mut b = vec![0x08, 0x03]; // msg_type = MsgAppend
    for _ in 0..depth {
        b.extend_from_slice(&[0xa3, 0x06]);
    }
    for _ in 0..depth {
        b.extend_from_slice(&[0xa4, 0x06]);
    }
    b
}

#[test]
fn deeply_nested_input_is_refused_without_recursing() {
    // Shallow unknown groups are skipped like any unknown field.
    assert_eq!(
        decode_message(&nested_groups(3)[..])
            .unwrap()
            .get_msg_type(),
        MessageType::MsgAppend
    );
    // A million levels would overflow any stack in a recursive parser.
    let deep = nested_groups(1_000_000);
    let err = decode_message(&deep[..]).unwrap_err();
    assert!(matches!(err, WireError::Decode(_)), "{err}");
    // protobuf 2.28 refuses it too (it does not recurse into groups), which
    // the module docs rely on for nothing but report.
    assert!(Message::parse_from_bytes(&deep).is_err());
}

fn propose_with_conf_change(ty: EntryType, data: Vec<u8>) -> Vec<u8> {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgPropose);
    m.set_entries(vec![entry(0, ty, data)].into());
    encode_message(&m)
}

#[test]
fn conf_change_data_must_be_canonical() {
    // What raft-rs's own encoder produces passes, v2 and legacy v1 alike.
    let ok = propose_with_conf_change(EntryType::EntryConfChangeV2, v2().write_to_bytes().unwrap());
    assert!(decode_message(&ok[..]).is_ok());
    let mut v1 = ConfChange::default();
    v1.set_change_type(ConfChangeType::AddNode);
    v1.node_id = 4;
    v1.id = 1;
    let ok = propose_with_conf_change(EntryType::EntryConfChange, v1.write_to_bytes().unwrap());
    assert!(decode_message(&ok[..]).is_ok());

    // An unknown field (here a nested group, which protobuf 2.28 would recurse
    // into), a scalar field given twice, an over-long varint: all refused.
    let mut with_group = v2().write_to_bytes().unwrap();
    with_group.extend_from_slice(&[0xa3, 0x06, 0xa4, 0x06]);
    let mut repeated = v2().write_to_bytes().unwrap();
    repeated.extend_from_slice(&[0x08, 0x01, 0x08, 0x01]); // transition twice
    let overlong = vec![0x08, 0x81, 0x00];
    for bad in [with_group, repeated, overlong] {
        let m = propose_with_conf_change(EntryType::EntryConfChangeV2, bad);
        assert!(
            matches!(
                decode_message(&m[..]),
                Err(WireError::NonCanonicalConfChange { index: 0 })
            ),
            "accepted a non-canonical conf change"
        );
    }
    // Normal entries are opaque: anything goes.
    let m = propose_with_conf_change(EntryType::EntryNormal, vec![0xa3, 0x06]);
    assert!(decode_message(&m[..]).is_ok());
}

#[test]
fn unknown_enum_values_are_refused() {
    let bad_type = [0x08, 0x63]; // msg_type = 99
    assert!(matches!(
        decode_message(&bad_type[..]),
        Err(WireError::UnknownEnum {
            kind: "MessageType",
            value: 99
        })
    ));
}
