//! Model-based proptest: the store against a naive model that keeps a full
//! snapshot of the key space per revision.

use std::collections::BTreeMap;

use oxcd_proto::etcdserverpb::{
    compare, request_op, response_op, Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest,
    TxnResponse,
};
use oxcd_proto::mvccpb::KeyValue;
use proptest::prelude::*;

use crate::{MvccError, Store};

type Map = BTreeMap<Vec<u8>, KeyValue>;

fn lease_ok(l: i64) -> bool {
    l != 2
}

fn hdr(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// Naive model: `snaps[r]` is the whole key space at revision `r` (index 0 unused).
struct Model {
    snaps: Vec<Map>,
    compact: i64,
}

fn in_range(k: &[u8], key: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        k == key
    } else if end == [0] {
        k >= key
    } else {
        k >= key && k < end
    }
}

impl Model {
    fn new() -> Self {
        Model {
            snaps: vec![Map::new(), Map::new()],
            compact: -1,
        }
    }

    fn cur(&self) -> i64 {
        self.snaps.len() as i64 - 1
    }

    fn range_in(
        &self,
        view: &Map,
        view_rev: i64,
        r: &RangeRequest,
    ) -> Result<RangeResponse, MvccError> {
        if r.revision > view_rev {
            return Err(MvccError::FutureRev);
        }
        let rev = if r.revision <= 0 {
            view_rev
        } else {
            r.revision
        };
        if rev < self.compact {
            return Err(MvccError::Compacted);
        }
        let map = if rev == view_rev {
            view
        } else {
            &self.snaps[rev as usize]
        };
        let mut kvs: Vec<KeyValue> = map
            .values()
            .filter(|kv| in_range(&kv.key, &r.key, &r.range_end))
            .cloned()
            .collect();
        let count = kvs.len() as i64;
        if r.count_only {
            kvs.clear();
        }
        kvs.retain(|kv| {
            (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
                && (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
                && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
                && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
        });
        // etcd fetches only limit + 1 keys, in key order, unless it sorts on request or
        // filters by revision; a sort that merely defaults to ascending for a target other
        // than the key (sort_order NONE) reorders just those (etcdserver/apply.go).
        let filtered = r.max_mod_revision != 0
            || r.min_mod_revision != 0
            || r.max_create_revision != 0
            || r.min_create_revision != 0;
        if r.sort_order == 0 && !filtered && r.limit > 0 {
            kvs.truncate(r.limit as usize + 1);
        }
        let mut order = r.sort_order;
        if r.sort_target != 0 && order == 0 {
            order = 1;
        }
        if order != 0 {
            let key = |kv: &KeyValue| -> (Vec<u8>, i64) {
                match r.sort_target {
                    0 => (kv.key.clone(), 0),
                    1 => (vec![], kv.version),
                    2 => (vec![], kv.create_revision),
                    3 => (vec![], kv.mod_revision),
                    _ => (kv.value.clone(), 0),
                }
            };
            if order == 1 {
                kvs.sort_by_key(key);
            } else {
                kvs.sort_by_key(|kv| std::cmp::Reverse(key(kv)));
            }
        }
        let mut more = false;
        if r.limit > 0 && kvs.len() as i64 > r.limit {
            kvs.truncate(r.limit as usize);
            more = true;
        }
        if r.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value.clear());
        }
        Ok(RangeResponse {
            header: hdr(view_rev),
            kvs,
            more,
            count,
        })
    }

    fn compare(&self, m: &Map, c: &Compare) -> bool {
        let kvs: Vec<&KeyValue> = m
            .values()
            .filter(|kv| in_range(&kv.key, &c.key, &c.range_end))
            .collect();
        let one = |kv: &KeyValue| {
            use compare::TargetUnion as U;
            let ord = match (c.target, &c.target_union) {
                (3, Some(U::Value(v))) => kv.value.cmp(v),
                (3, _) => kv.value.as_slice().cmp(&[][..]),
                (0, tu) => kv
                    .version
                    .cmp(&if let Some(U::Version(v)) = tu { *v } else { 0 }),
                (1, tu) => kv
                    .create_revision
                    .cmp(&if let Some(U::CreateRevision(v)) = tu {
                        *v
                    } else {
                        0
                    }),
                (2, tu) => kv.mod_revision.cmp(&if let Some(U::ModRevision(v)) = tu {
                    *v
                } else {
                    0
                }),
                (4, tu) => kv
                    .lease
                    .cmp(&if let Some(U::Lease(v)) = tu { *v } else { 0 }),
                _ => std::cmp::Ordering::Equal,
            };
            match c.result {
                0 => ord.is_eq(),
                1 => ord.is_gt(),
                2 => ord.is_lt(),
                _ => ord.is_ne(),
            }
        };
        if kvs.is_empty() {
            return c.target != 3 && one(&KeyValue::default());
        }
        kvs.into_iter().all(one)
    }

    /// Chosen branch of each (nested) txn, evaluated on the pre-txn state.
    fn check(&self, pre: &Map, t: &TxnRequest, base: i64, puts: bool) -> Result<(), MvccError> {
        let ok = t.compare.iter().all(|c| self.compare(pre, c));
        for op in if ok { &t.success } else { &t.failure } {
            match &op.request {
                Some(request_op::Request::RequestTxn(n)) => self.check(pre, n, base, puts)?,
                Some(request_op::Request::RequestPut(p)) if puts => {
                    if (p.ignore_value || p.ignore_lease) && !pre.contains_key(&p.key) {
                        return Err(MvccError::KeyNotFound);
                    }
                    if p.lease != 0 && !lease_ok(p.lease) {
                        return Err(MvccError::LeaseNotFound);
                    }
                }
                Some(request_op::Request::RequestRange(r)) if !puts && r.revision != 0 => {
                    if r.revision > base {
                        return Err(MvccError::FutureRev);
                    }
                    if r.revision < self.compact {
                        return Err(MvccError::Compacted);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn flags(t: &TxnRequest) -> Result<(), MvccError> {
        for op in t.success.iter().chain(&t.failure) {
            match &op.request {
                Some(request_op::Request::RequestPut(p)) => {
                    if p.ignore_value && !p.value.is_empty() {
                        return Err(MvccError::ValueProvided);
                    }
                    if p.ignore_lease && p.lease != 0 {
                        return Err(MvccError::LeaseProvided);
                    }
                }
                Some(request_op::Request::RequestTxn(n)) => Self::flags(n)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn apply(
        &self,
        pre: &Map,
        w: &mut Map,
        changed: &mut bool,
        base: i64,
        t: &TxnRequest,
    ) -> Result<TxnResponse, MvccError> {
        let ok = t.compare.iter().all(|c| self.compare(pre, c));
        let mut responses = vec![];
        let rev = base + 1;
        for op in if ok { &t.success } else { &t.failure } {
            let response = match &op.request {
                None => None,
                Some(request_op::Request::RequestRange(r)) => {
                    let view_rev = if *changed { rev } else { base };
                    Some(response_op::Response::ResponseRange(
                        self.range_in(w, view_rev, r)?,
                    ))
                }
                Some(request_op::Request::RequestPut(p)) => {
                    let prev = w.get(&p.key).cloned();
                    if (p.ignore_lease || p.ignore_value) && prev.is_none() {
                        return Err(MvccError::KeyNotFound);
                    }
                    let value = if p.ignore_value {
                        prev.as_ref().map(|k| k.value.clone()).unwrap_or_default()
                    } else {
                        p.value.clone()
                    };
                    let lease = if p.ignore_lease {
                        prev.as_ref().map(|k| k.lease).unwrap_or(0)
                    } else {
                        p.lease
                    };
                    let kv = KeyValue {
                        key: p.key.clone(),
                        create_revision: prev.as_ref().map_or(rev, |k| k.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |k| k.version + 1),
                        value,
                        lease,
                    };
                    w.insert(p.key.clone(), kv);
                    *changed = true;
                    Some(response_op::Response::ResponsePut(PutResponse {
                        header: hdr(rev),
                        prev_kv: if p.prev_kv { prev } else { None },
                    }))
                }
                Some(request_op::Request::RequestDeleteRange(d)) => {
                    let ks: Vec<Vec<u8>> = w
                        .keys()
                        .filter(|k| in_range(k, &d.key, &d.range_end))
                        .cloned()
                        .collect();
                    let mut prev_kvs = vec![];
                    for k in &ks {
                        let kv = w.remove(k).unwrap();
                        if d.prev_kv {
                            prev_kvs.push(kv);
                        }
                    }
                    *changed |= !ks.is_empty();
                    Some(response_op::Response::ResponseDeleteRange(
                        DeleteRangeResponse {
                            header: hdr(if *changed { rev } else { base }),
                            deleted: ks.len() as i64,
                            prev_kvs,
                        },
                    ))
                }
                Some(request_op::Request::RequestTxn(n)) => {
                    let mut r = self.apply(pre, w, changed, base, n)?;
                    r.header = Some(ResponseHeader::default());
                    Some(response_op::Response::ResponseTxn(r))
                }
            };
            responses.push(ResponseOp { response });
        }
        Ok(TxnResponse {
            header: None,
            succeeded: ok,
            responses,
        })
    }

    fn txn(&mut self, t: &TxnRequest) -> Result<TxnResponse, MvccError> {
        Self::flags(t)?;
        let base = self.cur();
        let pre = self.snaps[base as usize].clone();
        self.check(&pre, t, base, true)?;
        self.check(&pre, t, base, false)?;
        let mut w = pre.clone();
        let mut changed = false;
        let mut r = self.apply(&pre, &mut w, &mut changed, base, t)?;
        if changed {
            self.snaps.push(w);
        }
        r.header = hdr(self.cur());
        Ok(r)
    }
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"a".to_vec()),
        Just(b"b".to_vec()),
        Just(b"c".to_vec()),
        Just(b"d".to_vec())
    ]
}

fn range_end() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![3 => Just(vec![]), 1 => Just(vec![0]), 1 => Just(b"c".to_vec()), 1 => Just(b"e".to_vec())]
}

fn put_req() -> impl Strategy<Value = PutRequest> {
    (
        key(),
        // A large value is stored in chunks (the `rows` module).
        prop_oneof![
            Just(vec![]),
            Just(b"x".to_vec()),
            Just(b"y".to_vec()),
            Just(vec![b'z'; 2500])
        ],
        0i64..3,
        any::<bool>(),
        0u8..8,
    )
        .prop_map(|(key, value, lease, prev_kv, flags)| PutRequest {
            key,
            value,
            lease,
            prev_kv,
            ignore_value: flags == 1 || flags == 3,
            ignore_lease: flags == 2 || flags == 3,
        })
}

fn del_req() -> impl Strategy<Value = DeleteRangeRequest> {
    (key(), range_end(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

fn range_req() -> impl Strategy<Value = RangeRequest> {
    (
        (key(), range_end(), -1i64..4, -2i64..40),
        (
            prop_oneof![3 => Just(0i32), 1 => 1i32..3],
            prop_oneof![3 => Just(0i32), 1 => 1i32..5],
            any::<bool>(),
            any::<bool>(),
        ),
        prop_oneof![3 => Just((0i64, 0i64, 0i64, 0i64)), 1 => (0i64..3, 0i64..3, 0i64..2, 0i64..2)],
    )
        .prop_map(
            |(
                (key, range_end, limit, revision),
                (so, st, keys_only, count_only),
                (minm, maxm, minc, maxc),
            )| RangeRequest {
                key,
                range_end,
                limit,
                revision,
                sort_order: so,
                sort_target: st,
                serializable: false,
                keys_only,
                count_only: count_only && limit == 3,
                min_mod_revision: minm * 5,
                max_mod_revision: maxm * 9,
                min_create_revision: minc * 4,
                max_create_revision: maxc * 7,
            },
        )
}

fn compare_strat() -> impl Strategy<Value = Compare> {
    use compare::TargetUnion as U;
    (
        0i32..4,
        0i32..5,
        key(),
        prop_oneof![3 => Just(vec![]), 1 => Just(vec![0]), 1 => Just(b"c".to_vec())],
        0i64..6,
        0u8..6,
    )
        .prop_map(|(result, target, key, range_end, n, tu)| Compare {
            result,
            target,
            key,
            range_end,
            target_union: match tu {
                0 => Some(U::Version(n % 3)),
                1 => Some(U::CreateRevision(n * 3)),
                2 => Some(U::ModRevision(n * 4)),
                3 => Some(U::Value(if n % 2 == 0 {
                    b"x".to_vec()
                } else {
                    b"y".to_vec()
                })),
                4 => Some(U::Lease(n % 2)),
                _ => None,
            },
        })
}

fn op_strat(depth: u32) -> BoxedStrategy<RequestOp> {
    let leaf = prop_oneof![
        put_req().prop_map(|p| Some(request_op::Request::RequestPut(p))),
        del_req().prop_map(|d| Some(request_op::Request::RequestDeleteRange(d))),
        range_req().prop_map(|r| Some(request_op::Request::RequestRange(RangeRequest {
            revision: r.revision.min(3),
            ..r
        }))),
    ];
    if depth == 0 {
        leaf.prop_map(|request| RequestOp { request }).boxed()
    } else {
        prop_oneof![
            4 => leaf,
            1 => txn_strat(depth - 1).prop_map(|t| Some(request_op::Request::RequestTxn(t))),
        ]
        .prop_map(|request| RequestOp { request })
        .boxed()
    }
}

fn txn_strat(depth: u32) -> BoxedStrategy<TxnRequest> {
    (
        prop::collection::vec(compare_strat(), 0..3),
        prop::collection::vec(op_strat(depth), 0..4),
        prop::collection::vec(op_strat(depth), 0..3),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
        .boxed()
}

#[derive(Debug, Clone)]
enum Op {
    Put(PutRequest),
    Del(DeleteRangeRequest),
    Txn(TxnRequest),
    Range(RangeRequest),
    Compact(i64),
    Reopen,
    Defrag,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => put_req().prop_map(Op::Put),
        2 => del_req().prop_map(Op::Del),
        4 => txn_strat(2).prop_map(Op::Txn),
        6 => range_req().prop_map(Op::Range),
        1 => (0i64..40).prop_map(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Defrag),
    ]
}

fn put_as_txn(p: &PutRequest) -> TxnRequest {
    TxnRequest {
        compare: vec![],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(p.clone())),
        }],
        failure: vec![],
    }
}

fn del_as_txn(d: &DeleteRangeRequest) -> TxnRequest {
    TxnRequest {
        compare: vec![],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(d.clone())),
        }],
        failure: vec![],
    }
}

fn unwrap_first(r: TxnResponse) -> Option<response_op::Response> {
    r.responses.into_iter().next().and_then(|o| o.response)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut s = Store::open(&path).unwrap();
        let mut m = Model::new();
        let mut last_idx = 0u64;
        for (i, op) in ops.iter().enumerate() {
            let idx = i as u64 + 1;
            match op {
                Op::Put(p) => {
                    let got = s.put(p, idx, &lease_ok).map(|(r, _)| r);
                    // A lone put checks the lease before the key.
                    let want = if Model::flags(&put_as_txn(p)).is_err() {
                        Model::flags(&put_as_txn(p)).map(|_| unreachable!())
                    } else if p.lease != 0 && !lease_ok(p.lease) {
                        Err(MvccError::LeaseNotFound)
                    } else {
                        m.txn(&put_as_txn(p)).map(|r| match unwrap_first(r) {
                            Some(response_op::Response::ResponsePut(p)) => p,
                            o => panic!("{o:?}"),
                        })
                    };
                    prop_assert_eq!(got, want);
                }
                Op::Del(d) => {
                    let got = s.delete_range(d, idx).map(|(r, _)| r);
                    let want = m.txn(&del_as_txn(d)).map(|r| match unwrap_first(r) {
                        Some(response_op::Response::ResponseDeleteRange(d)) => d,
                        o => panic!("{o:?}"),
                    });
                    prop_assert_eq!(got, want);
                }
                Op::Txn(t) => {
                    let got = s.txn(t, idx, &lease_ok);
                    let want = m.txn(t);
                    if let (Ok((_, events)), Ok(w)) = (&got, &want) {
                        prop_assert!(events.is_empty() || w.header.as_ref().unwrap().revision == s.current_revision());
                    }
                    prop_assert_eq!(got.map(|(r, _)| r), want);
                }
                Op::Range(r) => {
                    let got = s.range(r);
                    let cur = m.cur();
                    let want = m.range_in(&m.snaps[cur as usize].clone(), cur, r);
                    prop_assert_eq!(got, want);
                }
                Op::Compact(rev) => {
                    let got = s.compact(*rev, idx).map(|_| ());
                    let want = if *rev <= m.compact {
                        Err(MvccError::Compacted)
                    } else if *rev > m.cur() {
                        Err(MvccError::FutureRev)
                    } else {
                        m.compact = *rev;
                        Ok(())
                    };
                    prop_assert_eq!(got, want);
                }
                Op::Reopen => {
                    s.commit(true).unwrap();
                    drop(s);
                    s = Store::open(&path).unwrap();
                    prop_assert_eq!(s.consistent_index(), last_idx);
                }
                Op::Defrag => {
                    // Whatever is pending is committed durably and stays readable.
                    s.defrag().unwrap();
                    prop_assert_eq!(s.committed_revision(), m.cur());
                }
            }
            s.commit(i % 3 == 0).unwrap();
            prop_assert_eq!(s.current_revision(), m.cur());
            prop_assert_eq!(s.compact_revision(), m.compact);
            if !matches!(op, Op::Range(_) | Op::Reopen | Op::Defrag) {
                last_idx = idx;
            }
            prop_assert_eq!(s.consistent_index(), last_idx);
        }
        // No chunk outlives its row, none is missing.
        super::layout::check_chunks(&s);
        // Every readable revision matches the model at the end.
        let from = m.compact.max(1);
        for rev in from..=m.cur() {
            let r = RangeRequest { key: vec![0], range_end: vec![0], revision: rev, ..Default::default() };
            prop_assert_eq!(s.range(&r), m.range_in(&m.snaps[m.cur() as usize].clone(), m.cur(), &r));
        }
    }
}
