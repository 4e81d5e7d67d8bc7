//! Round-trip and wire-layout checks for the generated types.

use prost::Message;

use crate::etcdserverpb::{
    compare, request_op, CompactionRequest, Compare, PutRequest, RangeRequest, RequestOp,
    ResponseHeader, TxnRequest,
};
use crate::mvccpb::KeyValue;
use crate::oxcdinternal::{raft_request, RaftRequest, RequestHeader};

#[test]
fn put_request_round_trip() {
    let put = PutRequest {
        key: b"foo".to_vec(),
        value: b"bar".to_vec(),
        lease: 42,
        prev_kv: true,
        ignore_value: false,
        ignore_lease: true,
    };
    let bytes = put.encode_to_vec();
    assert_eq!(PutRequest::decode(bytes.as_slice()).unwrap(), put);
}

#[test]
fn raft_request_round_trip() {
    let txn = TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Mod as i32,
            key: b"k".to_vec(),
            target_union: Some(compare::TargetUnion::ModRevision(7)),
            range_end: Vec::new(),
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })),
        }],
    };
    for op in [
        raft_request::Op::Txn(txn),
        raft_request::Op::Compaction(CompactionRequest {
            revision: 10,
            physical: true,
        }),
    ] {
        let req = RaftRequest {
            id: 0xdead_beef,
            header: Some(RequestHeader {
                username: "root".into(),
                auth_revision: 3,
            }),
            op: Some(op),
        };
        let bytes = req.encode_to_vec();
        assert_eq!(RaftRequest::decode(bytes.as_slice()).unwrap(), req);
    }
    // Entries written before the header existed decode with none.
    let old = RaftRequest {
        id: 1,
        header: None,
        op: None,
    };
    assert_eq!(
        RaftRequest::decode(old.encode_to_vec().as_slice())
            .unwrap()
            .header,
        None
    );
}

#[test]
fn field_numbers_match_etcd() {
    // Varint field tag byte = (field_number << 3) | 0.
    let only = |r: RangeRequest| r.encode_to_vec();
    assert_eq!(
        only(RangeRequest {
            keys_only: true,
            ..Default::default()
        }),
        [0x40, 0x01]
    );
    assert_eq!(
        only(RangeRequest {
            count_only: true,
            ..Default::default()
        }),
        [0x48, 0x01]
    );
    assert_eq!(
        only(RangeRequest {
            max_create_revision: 1,
            ..Default::default()
        }),
        [13 << 3, 0x01]
    );
    let hdr = ResponseHeader {
        raft_term: 3,
        ..Default::default()
    };
    assert_eq!(hdr.encode_to_vec(), [0x20, 0x03]);
    let kv = KeyValue {
        lease: 5,
        ..Default::default()
    };
    assert_eq!(kv.encode_to_vec(), [0x30, 0x05]);
    // Compare.range_end = 64, length-delimited: tag varint (64 << 3 | 2) = 0x82 0x04.
    let cmp = Compare {
        range_end: b"z".to_vec(),
        ..Default::default()
    };
    assert_eq!(cmp.encode_to_vec(), [0x82, 0x04, 0x01, b'z']);
}

#[test]
fn descriptor_set_is_embedded() {
    // mvccpb, authpb, etcdserverpb, v3electionpb, v3lockpb, oxcdinternal.
    assert_eq!(count_descriptor_files(crate::FILE_DESCRIPTOR_SET), 6);
}

/// Counts top-level `file` entries (field 1) in an encoded FileDescriptorSet
/// without depending on prost-types.
fn count_descriptor_files(mut buf: &[u8]) -> usize {
    use prost::encoding::{decode_key, decode_varint, WireType};
    let mut files = 0;
    while !buf.is_empty() {
        let (tag, wt) = decode_key(&mut buf).unwrap();
        assert_eq!((tag, wt), (1, WireType::LengthDelimited));
        let len = decode_varint(&mut buf).unwrap() as usize;
        buf = &buf[len..];
        files += 1;
    }
    files
}
