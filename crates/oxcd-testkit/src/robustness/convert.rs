//! Between the history's types and etcd's protobuf messages.

use oxcd_proto::etcdserverpb::{
    compare, request_op, response_op, Compare as PbCompare, DeleteRangeRequest, PutRequest,
    RangeRequest, RequestOp, ResponseOp, TxnRequest, TxnResponse,
};
use oxcd_proto::mvccpb::{self, KeyValue};

use crate::history::{
    Compare, CompareOp, CompareTarget, Event, EventKind, KeyRange, Kv, Response, TxnOp, TxnOpResult,
};

/// A history key-value from etcd's.
pub(crate) fn kv(kv: KeyValue) -> Kv {
    Kv {
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

/// A history event from a watch event (`None` if it carries no key-value).
pub(crate) fn event(e: mvccpb::Event) -> Option<Event> {
    let kind = if e.r#type == mvccpb::event::EventType::Delete as i32 {
        EventKind::Delete
    } else {
        EventKind::Put
    };
    let mut kv = kv(e.kv?);
    if kind == EventKind::Delete {
        // etcd's delete events carry the key and revision only.
        kv = Kv {
            key: kv.key,
            mod_revision: kv.mod_revision,
            ..Kv::default()
        };
    }
    Some(Event { kind, kv })
}

/// A put request.
pub(crate) fn put(key: &[u8], value: &[u8], lease: i64) -> PutRequest {
    PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        lease,
        ..Default::default()
    }
}

/// A range request (linearizable unless `serializable`).
pub(crate) fn range(r: &KeyRange, serializable: bool) -> RangeRequest {
    RangeRequest {
        key: r.key.clone(),
        range_end: r.range_end.clone(),
        serializable,
        ..Default::default()
    }
}

/// A delete request.
pub(crate) fn delete(r: &KeyRange) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: r.key.clone(),
        range_end: r.range_end.clone(),
        ..Default::default()
    }
}

/// A txn request.
pub(crate) fn txn(cmp: &[Compare], success: &[TxnOp], failure: &[TxnOp]) -> TxnRequest {
    TxnRequest {
        compare: cmp.iter().map(compare).collect(),
        success: success.iter().map(request_op).collect(),
        failure: failure.iter().map(request_op).collect(),
    }
}

fn compare(c: &Compare) -> PbCompare {
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let result = match c.op {
        CompareOp::Equal => R::Equal,
        CompareOp::NotEqual => R::NotEqual,
        CompareOp::Less => R::Less,
        CompareOp::Greater => R::Greater,
    };
    let (target, union) = match &c.target {
        CompareTarget::Value(v) => (T::Value, U::Value(v.clone())),
        CompareTarget::Version(v) => (T::Version, U::Version(*v)),
        CompareTarget::CreateRevision(v) => (T::Create, U::CreateRevision(*v)),
        CompareTarget::ModRevision(v) => (T::Mod, U::ModRevision(*v)),
        CompareTarget::Lease(v) => (T::Lease, U::Lease(*v)),
    };
    PbCompare {
        result: result as i32,
        target: target as i32,
        key: c.key.clone(),
        range_end: Vec::new(),
        target_union: Some(union),
    }
}

fn request_op(op: &TxnOp) -> RequestOp {
    let request = match op {
        TxnOp::Put { key, value, lease } => {
            request_op::Request::RequestPut(put(key, value, *lease))
        }
        TxnOp::Get(r) => request_op::Request::RequestRange(range(r, false)),
        TxnOp::Delete(r) => request_op::Request::RequestDeleteRange(delete(r)),
    };
    RequestOp {
        request: Some(request),
    }
}

/// The history form of a txn response.
pub(crate) fn txn_response(resp: TxnResponse) -> Response {
    let results = resp
        .responses
        .into_iter()
        .filter_map(|ResponseOp { response }| response)
        .map(|r| match r {
            response_op::Response::ResponsePut(_) | response_op::Response::ResponseTxn(_) => {
                TxnOpResult::Put
            }
            response_op::Response::ResponseRange(r) => {
                TxnOpResult::Get(r.kvs.into_iter().map(kv).collect())
            }
            response_op::Response::ResponseDeleteRange(d) => TxnOpResult::Delete(d.deleted),
        })
        .collect();
    Response::Txn {
        revision: resp.header.map(|h| h.revision).unwrap_or(0),
        succeeded: resp.succeeded,
        results,
    }
}
