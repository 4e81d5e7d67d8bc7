//! Request-level semantics of etcd's applier (`etcdserver/apply.go`) on top of a
//! read view: Range (filters, sort, limit, count), Put, DeleteRange, Txn (compares,
//! nested txns, request checks).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use oxcd_proto::etcdserverpb::{
    compare, range_request, request_op, response_op, Compare, DeleteRangeRequest,
    DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use oxcd_proto::mvccpb::KeyValue;
use redb::ReadableTable;

use crate::key_index::TreeIndex;
use crate::key_range::key_bounds;
use crate::op_counts::Tally;
use crate::revision::Revision;
use crate::rows::{get_create_and_version, get_kv, ReadChunks};
use crate::MvccError;

/// Options of a low-level range (etcd's `mvcc.RangeOptions`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RangeOpts {
    /// Max kvs to fetch; `<= 0` is unlimited.
    pub limit: i64,
    /// Revision to read at; `<= 0` is the view's current revision.
    pub rev: i64,
    /// Only count.
    pub count: bool,
}

/// Result of a low-level range (etcd's `mvcc.RangeResult`).
#[derive(Debug, Clone, Default)]
pub(crate) struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// Number of keys in the range at the revision, independent of the limit.
    pub count: i64,
    /// The view's current revision.
    pub rev: i64,
}

/// A consistent view that can answer low-level ranges.
pub(crate) trait KvRead {
    /// Current revision of the view.
    fn rev(&self) -> i64;
    /// Etcd's `rangeKeys` on `[key, range_end)` (request encoding of the range).
    fn range_keys(
        &self,
        key: &[u8],
        range_end: &[u8],
        ro: RangeOpts,
    ) -> Result<RangeResult, MvccError>;
}

/// Resolves `ro.rev` against a view's current and compact revision (etcd's order:
/// future check, then default to current, then compacted check).
pub(crate) fn resolve_rev(ro_rev: i64, cur: i64, compact: i64) -> Result<i64, MvccError> {
    if ro_rev > cur {
        return Err(MvccError::FutureRev);
    }
    let rev = if ro_rev <= 0 { cur } else { ro_rev };
    if rev < compact {
        return Err(MvccError::Compacted);
    }
    Ok(rev)
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// Etcd's applier `Range`: fetch (all when sorting/filtering, else `limit + 1`),
/// filter by mod/create revision, sort, truncate to `limit` setting `more`.
/// `count` is the number of keys in the range before filtering and limiting.
pub(crate) fn range_request(
    view: &impl KvRead,
    r: &RangeRequest,
) -> Result<RangeResponse, MvccError> {
    use range_request::{SortOrder, SortTarget};
    let none = SortOrder::None as i32;
    let mut limit = r.limit;
    if r.sort_order != none
        || r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0
    {
        limit = 0;
    }
    if limit > 0 {
        limit = limit.saturating_add(1);
    }
    let rr = view.range_keys(
        &r.key,
        &r.range_end,
        RangeOpts {
            limit,
            rev: r.revision,
            count: r.count_only,
        },
    )?;
    let mut kvs = rr.kvs;
    if r.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= r.max_mod_revision);
    }
    if r.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= r.min_mod_revision);
    }
    if r.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= r.max_create_revision);
    }
    if r.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= r.min_create_revision);
    }

    let mut order = r.sort_order;
    if r.sort_target != SortTarget::Key as i32 && order == none {
        // Results come sorted by key ascending; other targets default to ascend.
        order = SortOrder::Ascend as i32;
    }
    if order == SortOrder::Ascend as i32 || order == SortOrder::Descend as i32 {
        let cmp: Option<fn(&KeyValue, &KeyValue) -> Ordering> = match r.sort_target {
            t if t == SortTarget::Key as i32 => Some(|a, b| a.key.cmp(&b.key)),
            t if t == SortTarget::Version as i32 => Some(|a, b| a.version.cmp(&b.version)),
            t if t == SortTarget::Create as i32 => {
                Some(|a, b| a.create_revision.cmp(&b.create_revision))
            }
            t if t == SortTarget::Mod as i32 => Some(|a, b| a.mod_revision.cmp(&b.mod_revision)),
            t if t == SortTarget::Value as i32 => Some(|a, b| a.value.cmp(&b.value)),
            // Invalid targets are rejected by the server's request validation.
            _ => None,
        };
        if let Some(cmp) = cmp {
            // Stable sort: ties stay in key order (Go's sort is only stable for
            // small inputs; etcd leaves the order of ties unspecified).
            if order == SortOrder::Ascend as i32 {
                kvs.sort_by(cmp);
            } else {
                kvs.sort_by(|a, b| cmp(b, a));
            }
        }
    }

    let mut more = false;
    if r.limit > 0 && kvs.len() as u64 > r.limit as u64 {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        for kv in &mut kvs {
            kv.value = Vec::new();
        }
    }
    Ok(RangeResponse {
        header: header(rr.rev),
        kvs,
        more,
        count: rr.count,
    })
}

/// Validation that etcd's gRPC layer does on every put of a request (including both
/// branches of nested txns): `ignore_value` with a value, `ignore_lease` with a lease.
pub(crate) fn check_put_flags(p: &PutRequest) -> Result<(), MvccError> {
    if p.ignore_value && !p.value.is_empty() {
        return Err(MvccError::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(MvccError::LeaseProvided);
    }
    Ok(())
}

/// [`check_put_flags`] over every put of a txn, recursively, both branches.
pub(crate) fn check_txn_flags(t: &TxnRequest) -> Result<(), MvccError> {
    for op in t.success.iter().chain(t.failure.iter()) {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) => check_put_flags(p)?,
            Some(request_op::Request::RequestTxn(t)) => check_txn_flags(t)?,
            _ => {}
        }
    }
    Ok(())
}

/// One change of a write request, in order (its index is the sub revision).
#[derive(Debug, Clone)]
pub(crate) struct Change {
    /// For a put the new kv; for a delete `{key, mod_revision}` (etcd's event kv).
    pub kv: KeyValue,
    pub tombstone: bool,
}

enum Src {
    Base(Revision),
    Over(KeyValue),
}

/// Execution context of one write request: the store as of `base_rev` (the applied
/// state, read through the write transaction) plus an overlay of this request's
/// own changes, so later ops of a txn see earlier ones. Nothing is written until
/// the request succeeded as a whole.
///
/// A put reads only the `create_revision` and `version` of the value it replaces, never
/// the value itself: the watch events' `prev_kv` is filled later, and only for watchers
/// that asked for it ([`crate::Store::fill_prev_kvs`]), as etcd's watch server does.
pub(crate) struct WriteCtx<'a, T> {
    index: &'a TreeIndex,
    table: &'a T,
    chunks: &'a dyn ReadChunks,
    base_rev: i64,
    compact_rev: i64,
    /// Key -> its latest change in `changes` (a put or a tombstone).
    overlay: BTreeMap<Vec<u8>, usize>,
    pre: HashMap<Vec<u8>, Option<KeyValue>>,
    changes: Vec<Change>,
    /// The operations run, as etcd's metrics count them.
    pub(crate) tally: Tally,
}

impl<'a, T> WriteCtx<'a, T>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    pub(crate) fn new(
        index: &'a TreeIndex,
        table: &'a T,
        chunks: &'a dyn ReadChunks,
        base_rev: i64,
        compact_rev: i64,
    ) -> Self {
        WriteCtx {
            index,
            table,
            chunks,
            base_rev,
            compact_rev,
            overlay: BTreeMap::new(),
            pre: HashMap::new(),
            changes: Vec::new(),
            tally: Tally::default(),
        }
    }

    pub(crate) fn into_changes(self) -> Vec<Change> {
        self.changes
    }

    fn new_rev(&self) -> i64 {
        self.base_rev + 1
    }

    /// The key's value before this request.
    fn base_get(&mut self, key: &[u8]) -> Result<Option<KeyValue>, MvccError> {
        if let Some(v) = self.pre.get(key) {
            return Ok(v.clone());
        }
        let v = match self.index.get(key, self.base_rev) {
            Some(at) => Some(get_kv(self.table, self.chunks, at)?),
            None => None,
        };
        self.pre.insert(key.to_vec(), v.clone());
        Ok(v)
    }

    /// The key's value as seen by the next op of this request.
    fn current_get(&mut self, key: &[u8]) -> Result<Option<KeyValue>, MvccError> {
        if let Some(c) = self.overlay_get(key) {
            return Ok(c.cloned());
        }
        self.base_get(key)
    }

    /// The key's latest change in this request: `Some(None)` if it deleted the key.
    fn overlay_get(&self, key: &[u8]) -> Option<Option<&KeyValue>> {
        let c = &self.changes[*self.overlay.get(key)?];
        Some((!c.tombstone).then_some(&c.kv))
    }

    /// The key's `(create_revision, version)` as seen by the next op of this request,
    /// without reading its value.
    fn current_create_and_version(&self, key: &[u8]) -> Result<Option<(i64, i64)>, MvccError> {
        let head = |kv: &KeyValue| (kv.create_revision, kv.version);
        if let Some(c) = self.overlay_get(key) {
            return Ok(c.map(head));
        }
        if let Some(v) = self.pre.get(key) {
            return Ok(v.as_ref().map(head));
        }
        match self.index.get(key, self.base_rev) {
            Some(at) => Ok(Some(get_create_and_version(self.table, self.chunks, at)?)),
            None => Ok(None),
        }
    }

    /// Keys of the range in the current (overlay-merged) view, in key order.
    fn current_items(&self, key: &[u8], range_end: &[u8]) -> Vec<(Vec<u8>, Src)> {
        let mut base: Vec<(&[u8], Revision)> = Vec::new();
        self.index
            .visit(key, range_end, self.base_rev, |k, at| base.push((k, at)));
        let over: Vec<(&Vec<u8>, Option<&KeyValue>)> = match key_bounds(key, range_end) {
            Some((start, end)) if !self.overlay.is_empty() => self
                .overlay
                .range::<[u8], _>((Bound::Included(start), end))
                .map(|(k, &i)| {
                    let c = &self.changes[i];
                    (k, (!c.tombstone).then_some(&c.kv))
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut out = Vec::with_capacity(base.len() + over.len());
        let (mut i, mut j) = (0, 0);
        while i < base.len() || j < over.len() {
            let take_over = match (base.get(i), over.get(j)) {
                (Some((bk, _)), Some((ok, _))) => match (*bk).cmp(ok.as_slice()) {
                    Ordering::Less => false,
                    Ordering::Equal => {
                        i += 1; // overlay shadows the base entry
                        true
                    }
                    Ordering::Greater => true,
                },
                (Some(_), None) => false,
                _ => true,
            };
            if take_over {
                let (k, v) = over[j];
                j += 1;
                if let Some(kv) = v {
                    out.push((k.clone(), Src::Over(kv.clone())));
                }
            } else {
                let (k, rev) = base[i];
                i += 1;
                out.push((k.to_vec(), Src::Base(rev)));
            }
        }
        out
    }

    fn materialize(&self, src: Src) -> Result<KeyValue, MvccError> {
        match src {
            Src::Base(rev) => get_kv(self.table, self.chunks, rev),
            Src::Over(kv) => Ok(kv),
        }
    }

    fn record(&mut self, kv: KeyValue, tombstone: bool) {
        self.overlay.insert(kv.key.clone(), self.changes.len());
        self.changes.push(Change { kv, tombstone });
    }

    /// Etcd's `storeTxnWrite.put`.
    fn put_kv(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> Result<(), MvccError> {
        let rev = self.new_rev();
        let (create_revision, version) = match self.current_create_and_version(key)? {
            Some((create, version)) => (create, version + 1),
            None => (rev, 1),
        };
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision: rev,
            version,
            value,
            lease,
        };
        self.record(kv, false);
        Ok(())
    }

    /// Etcd's applier `Put` given a txn (lease existence is checked by the caller).
    pub(crate) fn put(&mut self, p: &PutRequest) -> Result<PutResponse, MvccError> {
        let mut prev = None;
        if p.ignore_value || p.ignore_lease || p.prev_kv {
            self.tally.range();
            prev = self.current_get(&p.key)?;
        }
        let (mut value, mut lease) = (None, p.lease);
        if p.ignore_value || p.ignore_lease {
            let Some(cur) = &prev else {
                return Err(MvccError::KeyNotFound);
            };
            if p.ignore_value {
                value = Some(cur.value.clone());
            }
            if p.ignore_lease {
                lease = cur.lease;
            }
        }
        let value = value.unwrap_or_else(|| p.value.clone());
        self.tally.put();
        self.put_kv(&p.key, value, lease)?;
        Ok(PutResponse {
            header: header(self.new_rev()),
            prev_kv: if p.prev_kv { prev } else { None },
        })
    }

    /// Etcd's applier `DeleteRange` given a txn.
    pub(crate) fn delete_range(
        &mut self,
        d: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, MvccError> {
        if d.prev_kv {
            self.tally.range();
        }
        self.tally.delete();
        let items = self.current_items(&d.key, &d.range_end);
        let mut prev_kvs = Vec::new();
        let mut keys = Vec::with_capacity(items.len());
        for (k, src) in items {
            if d.prev_kv {
                prev_kvs.push(self.materialize(src)?);
            }
            keys.push(k);
        }
        let deleted = keys.len() as i64;
        let rev = self.new_rev();
        for key in keys {
            let kv = KeyValue {
                key,
                mod_revision: rev,
                ..Default::default()
            };
            self.record(kv, true);
        }
        let revision = if self.changes.is_empty() {
            self.base_rev
        } else {
            rev
        };
        Ok(DeleteRangeResponse {
            header: header(revision),
            deleted,
            prev_kvs,
        })
    }

    /// Etcd's `applyCompare` (a failed read counts as a failed compare).
    fn compare(&self, c: &Compare) -> bool {
        self.tally.range();
        let Ok(rr) = self.range_keys(&c.key, &c.range_end, RangeOpts::default()) else {
            return false;
        };
        if rr.kvs.is_empty() {
            if c.target == compare::CompareTarget::Value as i32 {
                // No way to represent a missing value: always fails.
                return false;
            }
            return compare_kv(c, &KeyValue::default());
        }
        rr.kvs.iter().all(|kv| compare_kv(c, kv))
    }

    fn compare_to_path(&self, t: &TxnRequest) -> TxnPath {
        let ok = t.compare.iter().all(|c| self.compare(c));
        let ops = if ok { &t.success } else { &t.failure };
        let children = ops
            .iter()
            .filter_map(|op| match &op.request {
                Some(request_op::Request::RequestTxn(nt)) => Some(self.compare_to_path(nt)),
                _ => None,
            })
            .collect();
        TxnPath { ok, children }
    }

    /// Etcd's `checkRequests` with `checkRequestPut`.
    fn check_puts(
        &mut self,
        t: &TxnRequest,
        path: &TxnPath,
        lease_ok: &dyn Fn(i64) -> bool,
    ) -> Result<(), MvccError> {
        let mut children = path.children.iter();
        for op in path.ops(t) {
            match &op.request {
                Some(request_op::Request::RequestTxn(nt)) => {
                    let child = children.next().ok_or_else(path_mismatch)?;
                    self.check_puts(nt, child, lease_ok)?;
                }
                Some(request_op::Request::RequestPut(p)) => {
                    if p.ignore_value || p.ignore_lease {
                        self.tally.range();
                        if self.current_get(&p.key)?.is_none() {
                            return Err(MvccError::KeyNotFound);
                        }
                    }
                    if p.lease != 0 && !lease_ok(p.lease) {
                        return Err(MvccError::LeaseNotFound);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Etcd's `checkRequests` with `checkRequestRange`.
    fn check_ranges(&self, t: &TxnRequest, path: &TxnPath) -> Result<(), MvccError> {
        let mut children = path.children.iter();
        for op in path.ops(t) {
            match &op.request {
                Some(request_op::Request::RequestTxn(nt)) => {
                    let child = children.next().ok_or_else(path_mismatch)?;
                    self.check_ranges(nt, child)?;
                }
                Some(request_op::Request::RequestRange(r)) => {
                    if r.revision == 0 {
                        continue;
                    }
                    if r.revision > self.base_rev {
                        return Err(MvccError::FutureRev);
                    }
                    if r.revision < self.compact_rev {
                        return Err(MvccError::Compacted);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Etcd's applier `Txn`: evaluates every compare of the chosen path against the
    /// state before the txn, checks the chosen ops, then applies them in order.
    pub(crate) fn txn(
        &mut self,
        t: &TxnRequest,
        lease_ok: &dyn Fn(i64) -> bool,
    ) -> Result<TxnResponse, MvccError> {
        let path = self.compare_to_path(t);
        self.check_puts(t, &path, lease_ok)?;
        self.check_ranges(t, &path)?;
        if !etcd_txn_read_only(t) {
            // etcd reads the compares on a read transaction, then writes on another.
            self.tally.end();
        }
        let mut resp = self.apply_txn(t, &path)?;
        let rev = if self.changes.is_empty() {
            self.base_rev
        } else {
            self.new_rev()
        };
        resp.header = header(rev);
        Ok(resp)
    }

    fn apply_txn(&mut self, t: &TxnRequest, path: &TxnPath) -> Result<TxnResponse, MvccError> {
        let mut children = path.children.iter();
        let mut responses = Vec::new();
        for op in path.ops(t) {
            let response = match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    self.tally.range();
                    Some(response_op::Response::ResponseRange(range_request(
                        self, r,
                    )?))
                }
                Some(request_op::Request::RequestPut(p)) => {
                    Some(response_op::Response::ResponsePut(self.put(p)?))
                }
                Some(request_op::Request::RequestDeleteRange(d)) => Some(
                    response_op::Response::ResponseDeleteRange(self.delete_range(d)?),
                ),
                Some(request_op::Request::RequestTxn(nt)) => {
                    let child = children.next().ok_or_else(path_mismatch)?;
                    let mut r = self.apply_txn(nt, child)?;
                    // etcd leaves nested txn headers empty.
                    r.header = Some(ResponseHeader::default());
                    Some(response_op::Response::ResponseTxn(r))
                }
                None => None,
            };
            responses.push(ResponseOp { response });
        }
        Ok(TxnResponse {
            header: None,
            succeeded: path.ok,
            responses,
        })
    }
}

/// etcd's `isTxnReadonly`: only ranges in both branches (a nested txn counts as a write).
fn etcd_txn_read_only(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| matches!(op.request, Some(request_op::Request::RequestRange(_))))
}

fn path_mismatch() -> MvccError {
    MvccError::corrupt("internal: txn path does not match request")
}

/// Outcome of the compares of a txn and of its nested txns on the chosen branch.
struct TxnPath {
    ok: bool,
    children: Vec<TxnPath>,
}

impl TxnPath {
    fn ops<'t>(&self, t: &'t TxnRequest) -> std::slice::Iter<'t, RequestOp> {
        if self.ok {
            t.success.iter()
        } else {
            t.failure.iter()
        }
    }
}

/// Etcd's `compareKV`.
fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let tu = c.target_union.as_ref();
    let int = |v: i64, want: Option<i64>| v.cmp(&want.unwrap_or(0));
    let result = match c.target {
        t if t == CompareTarget::Value as i32 => {
            let want: &[u8] = match tu {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        t if t == CompareTarget::Create as i32 => int(
            kv.create_revision,
            match tu {
                Some(TargetUnion::CreateRevision(v)) => Some(*v),
                _ => None,
            },
        ),
        t if t == CompareTarget::Mod as i32 => int(
            kv.mod_revision,
            match tu {
                Some(TargetUnion::ModRevision(v)) => Some(*v),
                _ => None,
            },
        ),
        t if t == CompareTarget::Version as i32 => int(
            kv.version,
            match tu {
                Some(TargetUnion::Version(v)) => Some(*v),
                _ => None,
            },
        ),
        t if t == CompareTarget::Lease as i32 => int(
            kv.lease,
            match tu {
                Some(TargetUnion::Lease(v)) => Some(*v),
                _ => None,
            },
        ),
        _ => Ordering::Equal,
    };
    match c.result {
        r if r == CompareResult::Equal as i32 => result == Ordering::Equal,
        r if r == CompareResult::NotEqual as i32 => result != Ordering::Equal,
        r if r == CompareResult::Greater as i32 => result == Ordering::Greater,
        r if r == CompareResult::Less as i32 => result == Ordering::Less,
        _ => true,
    }
}

impl<T> KvRead for WriteCtx<'_, T>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    fn rev(&self) -> i64 {
        if self.changes.is_empty() {
            self.base_rev
        } else {
            self.new_rev()
        }
    }

    fn range_keys(
        &self,
        key: &[u8],
        range_end: &[u8],
        ro: RangeOpts,
    ) -> Result<RangeResult, MvccError> {
        let cur = self.rev();
        let rev = resolve_rev(ro.rev, cur, self.compact_rev)?;
        let limit = if ro.limit <= 0 {
            usize::MAX
        } else {
            ro.limit as usize
        };
        if rev > self.base_rev {
            // Reading this request's own writes.
            let items = self.current_items(key, range_end);
            let count = items.len() as i64;
            let mut kvs = Vec::new();
            if !ro.count {
                for (_, src) in items.into_iter().take(limit) {
                    kvs.push(self.materialize(src)?);
                }
            }
            return Ok(RangeResult {
                kvs,
                count,
                rev: cur,
            });
        }
        let (revs, count) = collect_revs(self.index, key, range_end, rev, limit, ro.count);
        let kvs = revs
            .into_iter()
            .map(|r| get_kv(self.table, self.chunks, r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RangeResult {
            kvs,
            count,
            rev: cur,
        })
    }
}

/// Counts the keys of a range at `rev` and collects the revisions of the first
/// `limit` of them (none if `count_only`).
pub(crate) fn collect_revs(
    index: &TreeIndex,
    key: &[u8],
    range_end: &[u8],
    rev: i64,
    limit: usize,
    count_only: bool,
) -> (Vec<Revision>, i64) {
    let mut revs = Vec::new();
    let mut count = 0i64;
    index.visit(key, range_end, rev, |_, at| {
        count += 1;
        if !count_only && revs.len() < limit {
            revs.push(at);
        }
    });
    (revs, count)
}
