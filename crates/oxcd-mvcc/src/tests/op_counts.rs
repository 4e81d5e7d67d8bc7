//! The store's operation counts follow etcd's `metricsTxnWrite`.

use oxcd_proto::etcdserverpb::{
    compare, request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};

use super::semantics::open;
use crate::OpCounts;

fn counts(ranges: u64, puts: u64, deletes: u64, txns: u64) -> OpCounts {
    OpCounts {
        ranges,
        puts,
        deletes,
        txns,
    }
}

fn put_req(k: &str, prev_kv: bool) -> PutRequest {
    PutRequest {
        key: k.into(),
        value: b"v".to_vec(),
        prev_kv,
        ..Default::default()
    }
}

fn op(request: request_op::Request) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

#[test]
fn single_requests_count_one_op_and_prev_kv_a_range_and_a_txn() {
    let (_d, s) = open();
    let yes = |_: i64| true;
    s.put(&put_req("a", false), 1, &yes).unwrap();
    assert_eq!(s.op_counts(), counts(0, 1, 0, 0));
    s.range(&RangeRequest {
        key: b"a".to_vec(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.op_counts(), counts(1, 1, 0, 0));
    // etcd reads the previous value with a range on the same mvcc txn: two ops, one txn.
    s.put(&put_req("a", true), 2, &yes).unwrap();
    assert_eq!(s.op_counts(), counts(2, 2, 0, 1));
    let del = DeleteRangeRequest {
        key: b"a".to_vec(),
        ..Default::default()
    };
    s.delete_range(&del, 3).unwrap();
    assert_eq!(s.op_counts(), counts(2, 2, 1, 1));
    // A put whose lease does not exist runs nothing.
    let mut leased = put_req("b", false);
    leased.lease = 7;
    assert!(s.put(&leased, 4, &|_| false).is_err());
    assert_eq!(s.op_counts(), counts(2, 2, 1, 1));
    // ignore_value on a missing key: the range ran, the put did not.
    let ignore = PutRequest {
        key: b"missing".to_vec(),
        ignore_value: true,
        ..Default::default()
    };
    assert!(s.put(&ignore, 5, &yes).is_err());
    assert_eq!(s.op_counts(), counts(3, 2, 1, 1));
    s.compact(1, 6).unwrap();
    assert_eq!(s.op_counts(), counts(4, 2, 1, 1));
    assert!(s.range_uncounted(&RangeRequest::default()).is_ok());
    assert_eq!(s.op_counts(), counts(4, 2, 1, 1));
}

#[test]
fn a_write_txn_counts_its_compares_and_its_ops_as_two_mvcc_txns() {
    let (_d, s) = open();
    let cmp = Compare {
        key: b"k".to_vec(),
        target: compare::CompareTarget::Version as i32,
        result: compare::CompareResult::Equal as i32,
        ..Default::default()
    };
    let txn = TxnRequest {
        compare: vec![cmp.clone(), cmp.clone()],
        success: vec![
            op(request_op::Request::RequestPut(put_req("k", false))),
            op(request_op::Request::RequestRange(RangeRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })),
        ],
        failure: vec![],
    };
    s.txn(&txn, 1, &|_| true).unwrap();
    // Read txn: 2 compares (a txn); write txn: a put and a range (a txn).
    assert_eq!(s.op_counts(), counts(3, 1, 0, 2));
    // One compare, then one delete: two mvcc txns of one op each.
    let txn = TxnRequest {
        compare: vec![cmp],
        success: vec![],
        failure: vec![op(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: b"k".to_vec(),
                ..Default::default()
            },
        ))],
    };
    s.txn(&txn, 2, &|_| true).unwrap();
    assert_eq!(s.op_counts(), counts(4, 1, 1, 2));
    // A read-only txn runs its compare and its range on one mvcc txn.
    let read = TxnRequest {
        compare: vec![Compare {
            key: b"k".to_vec(),
            ..Default::default()
        }],
        success: vec![op(request_op::Request::RequestRange(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        }))],
        failure: vec![op(request_op::Request::RequestRange(
            RangeRequest::default(),
        ))],
    };
    s.txn_read_only(&read).unwrap();
    assert_eq!(s.op_counts(), counts(6, 1, 1, 3));
}

#[test]
fn open_read_transactions_count_live_read_snapshots() {
    let (_d, s) = open();
    let yes = |_: i64| true;
    s.put(&put_req("a", false), 1, &yes).unwrap();
    s.commit(false).unwrap();
    assert_eq!(s.open_read_transactions(), 0);
    let first = s.begin_read().unwrap();
    let second = s.begin_read().unwrap();
    assert_eq!(s.open_read_transactions(), 2);
    drop(first);
    assert_eq!(s.open_read_transactions(), 1);
    drop(second);
    // A range opens and closes its own.
    s.range(&RangeRequest {
        key: b"a".to_vec(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.open_read_transactions(), 0);
}
