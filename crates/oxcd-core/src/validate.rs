//! Request checks done before anything is proposed, in etcd's order and with etcd's errors
//! (`v3rpc/key.go`): empty keys, `ignore_*` misuse, txn size and overlapping writes.

use oxcd_proto::etcdserverpb::{
    request_op::Request, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

use oxcd_mvcc::KeyRange;

use crate::error::ServerError;

/// Checks a Range.
pub fn check_range(r: &RangeRequest) -> Result<(), ServerError> {
    if r.key.is_empty() {
        return Err(ServerError::EmptyKey);
    }
    Ok(())
}

/// Checks a Put.
pub fn check_put(r: &PutRequest) -> Result<(), ServerError> {
    if r.key.is_empty() {
        return Err(ServerError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(ServerError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(ServerError::LeaseProvided);
    }
    Ok(())
}

/// Checks a DeleteRange.
pub fn check_delete(r: &DeleteRangeRequest) -> Result<(), ServerError> {
    if r.key.is_empty() {
        return Err(ServerError::EmptyKey);
    }
    Ok(())
}

/// Checks a Txn: op count (the larger of compares, success and failure, as etcd counts),
/// every nested request, then overlapping writes in each branch.
pub fn check_txn(r: &TxnRequest, max_txn_ops: u64) -> Result<(), ServerError> {
    check_txn_ops(r, max_txn_ops as i64)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn_ops(r: &TxnRequest, max_txn_ops: i64) -> Result<(), ServerError> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len()) as i64;
    if opc > max_txn_ops {
        return Err(ServerError::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(ServerError::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        check_request_op(op, max_txn_ops - opc)?;
    }
    Ok(())
}

fn check_request_op(op: &RequestOp, max_txn_ops: i64) -> Result<(), ServerError> {
    match &op.request {
        Some(Request::RequestRange(r)) => check_range(r),
        Some(Request::RequestPut(r)) => check_put(r),
        Some(Request::RequestDeleteRange(r)) => check_delete(r),
        Some(Request::RequestTxn(t)) => check_txn_ops(t, max_txn_ops),
        // etcd answers an empty RequestOp with "key not found".
        None => Err(ServerError::KeyNotFound),
    }
}

/// etcd's `checkIntervals`: within one branch no key may be put twice or be both put and
/// deleted; keys put in both arms of a nested txn are fine since only one arm runs.
/// Returns this level's puts and deletes for the caller's checks.
fn check_intervals(
    reqs: &[RequestOp],
) -> Result<(std::collections::HashSet<Vec<u8>>, Vec<KeyRange>), ServerError> {
    let mut dels: Vec<KeyRange> = reqs
        .iter()
        .filter_map(|r| match &r.request {
            Some(Request::RequestDeleteRange(d)) => KeyRange::from_request(&d.key, &d.range_end),
            _ => None,
        })
        .collect();
    let mut puts = std::collections::HashSet::new();
    let hits = |dels: &[KeyRange], k: &[u8]| dels.iter().any(|d| d.contains(k));
    for r in reqs {
        let Some(Request::RequestTxn(t)) = &r.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || hits(&dels, k) {
                return Err(ServerError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if puts.contains(k) && !puts_then.contains(k) {
                return Err(ServerError::DuplicateKey);
            }
            if hits(&dels, k) {
                return Err(ServerError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for r in reqs {
        let Some(Request::RequestPut(p)) = &r.request else {
            continue;
        };
        if puts.contains(&p.key) || hits(&dels, &p.key) {
            return Err(ServerError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

/// Whether a txn, in every branch and nested txn, only reads.
pub fn txn_is_read_only(r: &TxnRequest) -> bool {
    r.success
        .iter()
        .chain(&r.failure)
        .all(|op| match &op.request {
            Some(Request::RequestRange(_)) | None => true,
            Some(Request::RequestTxn(t)) => txn_is_read_only(t),
            _ => false,
        })
}

/// Whether every range in a read-only txn asks for a serializable read.
pub fn txn_is_serializable(r: &TxnRequest) -> bool {
    r.success
        .iter()
        .chain(&r.failure)
        .all(|op| match &op.request {
            Some(Request::RequestRange(rr)) => rr.serializable,
            Some(Request::RequestTxn(t)) => txn_is_serializable(t),
            _ => true,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: k.into(),
                ..Default::default()
            })),
        }
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }
    fn nested(t: TxnRequest) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestTxn(t)),
        }
    }

    #[test]
    fn duplicate_puts_rejected() {
        let t = txn(vec![put("a"), put("a")], vec![]);
        assert_eq!(check_txn(&t, 128), Err(ServerError::DuplicateKey));
    }

    #[test]
    fn put_inside_deleted_range_rejected() {
        let t = txn(vec![del("a", "c"), put("b")], vec![]);
        assert_eq!(check_txn(&t, 128), Err(ServerError::DuplicateKey));
        let t = txn(vec![del("a", "\0"), put("zzz")], vec![]);
        assert_eq!(check_txn(&t, 128), Err(ServerError::DuplicateKey));
        let t = txn(vec![del("a", "c"), put("c")], vec![]);
        assert_eq!(check_txn(&t, 128), Ok(()));
    }

    #[test]
    fn same_key_in_both_arms_of_nested_txn_is_fine() {
        let inner = txn(vec![put("a")], vec![put("a")]);
        assert_eq!(check_txn(&txn(vec![nested(inner)], vec![]), 128), Ok(()));
        let inner = txn(vec![put("a")], vec![]);
        assert_eq!(
            check_txn(&txn(vec![nested(inner), put("a")], vec![]), 128),
            Err(ServerError::DuplicateKey)
        );
    }

    #[test]
    fn success_and_failure_may_share_keys() {
        assert_eq!(check_txn(&txn(vec![put("a")], vec![put("a")]), 128), Ok(()));
    }

    #[test]
    fn too_many_ops() {
        let ops: Vec<RequestOp> = (0..129).map(|i| put(&format!("k{i}"))).collect();
        assert_eq!(
            check_txn(&txn(ops, vec![]), 128),
            Err(ServerError::TooManyOps)
        );
        let ops: Vec<RequestOp> = (0..128).map(|i| put(&format!("k{i}"))).collect();
        assert_eq!(check_txn(&txn(ops, vec![]), 128), Ok(()));
    }

    #[test]
    fn empty_request_op_is_key_not_found() {
        let t = txn(vec![RequestOp { request: None }], vec![]);
        assert_eq!(check_txn(&t, 128), Err(ServerError::KeyNotFound));
    }

    #[test]
    fn put_checks() {
        let mut p = PutRequest::default();
        assert_eq!(check_put(&p), Err(ServerError::EmptyKey));
        p.key = b"k".to_vec();
        p.ignore_value = true;
        p.value = b"v".to_vec();
        assert_eq!(check_put(&p), Err(ServerError::ValueProvided));
        p.value.clear();
        p.ignore_lease = true;
        p.lease = 5;
        assert_eq!(check_put(&p), Err(ServerError::LeaseProvided));
    }

    #[test]
    fn read_only_detection() {
        let r = RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key: b"a".to_vec(),
                ..Default::default()
            })),
        };
        assert!(txn_is_read_only(&txn(vec![r.clone()], vec![])));
        assert!(!txn_is_read_only(&txn(vec![r], vec![put("a")])));
    }
}
