//! etcd's Lock and Election services (v3lock, v3election), built the way etcd builds them
//! server-side with clientv3's `concurrency` package, from this server's KV, lease and
//! watch hub:
//!
//! * a lock or a candidacy is the key `<name>/<lease in hex>`, attached to the caller's lease
//!   (lease 0: a new 60 s lease, as a `concurrency.Session` would grant);
//! * the holder (leader) is the key of the prefix with the lowest create revision; a
//!   waiter watches the key created just before its own until it is deleted, then looks
//!   again (no thundering herd);
//! * a call given up by its client (the future dropped) removes its key, as etcd's
//!   `Mutex.Lock` and `Election.Campaign` do when their context ends.

use std::sync::Arc;

use oxcd_proto::etcdserverpb::{
    compare, request_op, response_op, Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest,
    RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest, TxnResponse,
    WatchCreateRequest, WatchResponse,
};
use oxcd_proto::mvccpb::{event::EventType, KeyValue};
use oxcd_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use oxcd_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use oxcd_watch::{Hub, Outgoing, STREAM_QUEUE};
use tokio::sync::mpsc;

use crate::auth::Credentials;
use crate::error::ServerError;
use crate::server::EtcdServer;

/// The TTL of the lease a Lock or Campaign without one gets (`concurrency`'s default).
const DEFAULT_SESSION_TTL: i64 = 60;

/// `CompareTarget::Create`, `CompareResult::Equal`, `SortTarget::Create`, `SortOrder::*`.
const TARGET_CREATE: i32 = 1;
const RESULT_EQUAL: i32 = 0;
const SORT_BY_CREATE: i32 = 2;
const ASCEND: i32 = 1;
const DESCEND: i32 = 2;

impl EtcdServer {
    /// v3lock Lock: waits until `name` is held under `lease`, returns the lock's key.
    pub async fn lock(
        self: &Arc<Self>,
        cred: &Credentials,
        req: LockRequest,
    ) -> Result<LockResponse, ServerError> {
        let lease = self.session_lease(cred, req.lease).await?;
        let prefix = [req.name.as_slice(), b"/"].concat();
        let key = own_key(&prefix, lease);
        let resp = self
            .txn(
                cred,
                TxnRequest {
                    compare: vec![created_at(&key, 0)],
                    success: vec![put_op(&key, b"", lease), first_created_op(&prefix)],
                    failure: vec![get_op(&key), first_created_op(&prefix)],
                },
            )
            .await?;
        let my_rev = own_create_revision(&resp)?;
        let mut give_up = Release::new(self.clone(), cred, key.clone(), None);
        let header = match range_kvs(&resp, 1).first() {
            Some(owner) if owner.create_revision != my_rev => {
                self.wait_deletes(cred, &prefix, my_rev - 1).await?
            }
            _ => resp.header,
        };
        give_up.disarm();
        Ok(LockResponse { header, key })
    }

    /// v3lock Unlock: deletes the lock's key.
    pub async fn unlock(
        &self,
        cred: &Credentials,
        req: UnlockRequest,
    ) -> Result<UnlockResponse, ServerError> {
        let resp = self
            .delete_range(
                cred,
                DeleteRangeRequest {
                    key: req.key,
                    ..Default::default()
                },
            )
            .await?;
        Ok(UnlockResponse {
            header: resp.header,
        })
    }

    /// v3election Campaign: waits until this candidate leads `name`.
    pub async fn campaign(
        self: &Arc<Self>,
        cred: &Credentials,
        req: CampaignRequest,
    ) -> Result<CampaignResponse, ServerError> {
        let lease = self.session_lease(cred, req.lease).await?;
        let prefix = [req.name.as_slice(), b"/"].concat();
        let key = own_key(&prefix, lease);
        let resp = self
            .txn(
                cred,
                TxnRequest {
                    compare: vec![created_at(&key, 0)],
                    success: vec![put_op(&key, &req.value, lease)],
                    failure: vec![get_op(&key)],
                },
            )
            .await?;
        let rev = own_create_revision(&resp)?;
        let mut give_up = Release::new(self.clone(), cred, key.clone(), Some(rev));
        let leader = LeaderKey {
            name: req.name,
            key,
            rev,
            lease,
        };
        if !resp.succeeded && range_kvs(&resp, 0).first().map(|kv| &kv.value) != Some(&req.value) {
            self.proclaim(
                cred,
                ProclaimRequest {
                    leader: Some(leader.clone()),
                    value: req.value,
                },
            )
            .await?;
        }
        self.wait_deletes(cred, &prefix, rev - 1).await?;
        give_up.disarm();
        Ok(CampaignResponse {
            header: resp.header,
            leader: Some(leader),
        })
    }

    /// v3election Proclaim: the leader sets a new value, keeping its place.
    pub async fn proclaim(
        &self,
        cred: &Credentials,
        req: ProclaimRequest,
    ) -> Result<ProclaimResponse, ServerError> {
        let leader = req.leader.ok_or(ServerError::MissingLeaderKey)?;
        let mut put = put_op(&leader.key, &req.value, 0);
        if let Some(request_op::Request::RequestPut(p)) = &mut put.request {
            p.ignore_lease = true;
        }
        let resp = self
            .txn(
                cred,
                TxnRequest {
                    compare: vec![created_at(&leader.key, leader.rev)],
                    success: vec![put],
                    failure: vec![],
                },
            )
            .await?;
        if !resp.succeeded {
            return Err(ServerError::ElectionNotLeader);
        }
        Ok(ProclaimResponse {
            header: resp.header,
        })
    }

    /// v3election Resign: the leader steps down (its key is deleted if still its own).
    pub async fn resign(
        &self,
        cred: &Credentials,
        req: ResignRequest,
    ) -> Result<ResignResponse, ServerError> {
        let leader = req.leader.ok_or(ServerError::MissingLeaderKey)?;
        let resp = self
            .txn(
                cred,
                TxnRequest {
                    compare: vec![created_at(&leader.key, leader.rev)],
                    success: vec![delete_op(&leader.key)],
                    failure: vec![],
                },
            )
            .await?;
        Ok(ResignResponse {
            header: resp.header,
        })
    }

    /// v3election Leader: the current leader's key and value.
    pub async fn election_leader(
        &self,
        cred: &Credentials,
        req: LeaderRequest,
    ) -> Result<LeaderResponse, ServerError> {
        let prefix = [req.name.as_slice(), b"/"].concat();
        let resp = self.range(cred, first_created(&prefix)).await?;
        let kv = resp
            .kvs
            .into_iter()
            .next()
            .ok_or(ServerError::ElectionNoLeader)?;
        Ok(LeaderResponse {
            header: resp.header,
            kv: Some(kv),
        })
    }

    /// v3election Observe: every leader of `name` and each value it proclaims, as they
    /// happen, into the returned channel (closed on an error, which is sent first).
    pub fn observe(
        self: &Arc<Self>,
        cred: &Credentials,
        req: LeaderRequest,
    ) -> mpsc::Receiver<Result<LeaderResponse, ServerError>> {
        let (tx, rx) = mpsc::channel(16);
        let server = self.clone();
        let cred = cred.clone();
        tokio::spawn(async move {
            let prefix = [req.name.as_slice(), b"/"].concat();
            let run = server.observe_into(&cred, &prefix, &tx);
            tokio::select! {
                result = run => {
                    if let Err(e) = result {
                        let _ = tx.send(Err(e)).await;
                    }
                }
                _ = tx.closed() => {}
            }
        });
        rx
    }

    async fn observe_into(
        &self,
        cred: &Credentials,
        prefix: &[u8],
        tx: &mpsc::Sender<Result<LeaderResponse, ServerError>>,
    ) -> Result<(), ServerError> {
        loop {
            let resp = self.range(cred, first_created(prefix)).await?;
            let revision = resp.header.as_ref().map_or(0, |h| h.revision);
            let (revision, kv) = match resp.kvs.into_iter().next() {
                Some(kv) => (revision, kv),
                None => self.first_put(prefix, revision).await?,
            };
            let first = LeaderResponse {
                header: Some(self.header(revision)),
                kv: Some(kv.clone()),
            };
            if tx.send(Ok(first)).await.is_err() {
                return Ok(());
            }
            let mut watch = KeyWatch::open(self.watch_hub(), &kv.key, &[], revision + 1)?;
            'leader: loop {
                let resp = watch.next().await?;
                let revision = resp.header.as_ref().map_or(0, |h| h.revision);
                for ev in resp.events {
                    if ev.r#type == EventType::Delete as i32 {
                        break 'leader;
                    }
                    let next = LeaderResponse {
                        header: Some(self.header(revision)),
                        kv: ev.kv,
                    };
                    if tx.send(Ok(next)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The first key put under `prefix` from `revision` on, and its revision.
    async fn first_put(
        &self,
        prefix: &[u8],
        revision: i64,
    ) -> Result<(i64, KeyValue), ServerError> {
        let mut watch = KeyWatch::open(self.watch_hub(), prefix, &prefix_end(prefix), revision)?;
        loop {
            let resp = watch.next().await?;
            for ev in resp.events {
                if ev.r#type == EventType::Put as i32 {
                    if let Some(kv) = ev.kv {
                        return Ok((kv.mod_revision, kv));
                    }
                }
            }
        }
    }

    /// The lease a lock or candidacy goes under: the caller's, or a new default one.
    async fn session_lease(&self, cred: &Credentials, lease: i64) -> Result<i64, ServerError> {
        if lease != 0 {
            return Ok(lease);
        }
        let granted = self
            .lease_grant(
                cred,
                LeaseGrantRequest {
                    ttl: DEFAULT_SESSION_TTL,
                    id: 0,
                },
            )
            .await?;
        Ok(granted.id)
    }

    /// `concurrency.waitDeletes`: waits until no key under `prefix` created at or before
    /// `max_create_revision` is left; returns the header of the last look.
    async fn wait_deletes(
        &self,
        cred: &Credentials,
        prefix: &[u8],
        max_create_revision: i64,
    ) -> Result<Option<ResponseHeader>, ServerError> {
        loop {
            let resp = self
                .range(
                    cred,
                    RangeRequest {
                        max_create_revision,
                        sort_order: DESCEND,
                        ..first_created(prefix)
                    },
                )
                .await?;
            let Some(last) = resp.kvs.first() else {
                return Ok(resp.header);
            };
            let revision = resp.header.as_ref().map_or(0, |h| h.revision);
            let mut watch = KeyWatch::open(self.watch_hub(), &last.key, &[], revision)?;
            'wait: loop {
                let resp = watch.next().await?;
                if resp
                    .events
                    .iter()
                    .any(|ev| ev.r#type == EventType::Delete as i32)
                {
                    break 'wait;
                }
            }
        }
    }
}

/// Deletes a lock's or candidate's key when its call is given up before it succeeded.
struct Release {
    server: Arc<EtcdServer>,
    /// The caller's credentials, which the removal uses.
    cred: Credentials,
    key: Vec<u8>,
    /// For a candidate: delete only while the key is still the one created then.
    create_revision: Option<i64>,
    armed: bool,
}

impl Release {
    fn new(
        server: Arc<EtcdServer>,
        cred: &Credentials,
        key: Vec<u8>,
        create_revision: Option<i64>,
    ) -> Release {
        Release {
            server,
            cred: cred.clone(),
            key,
            create_revision,
            armed: true,
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let server = self.server.clone();
        let cred = self.cred.clone();
        let key = std::mem::take(&mut self.key);
        let compare = self
            .create_revision
            .map(|rev| created_at(&key, rev))
            .into_iter()
            .collect();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let req = TxnRequest {
                    compare,
                    success: vec![delete_op(&key)],
                    failure: vec![],
                };
                if let Err(e) = server.txn(&cred, req).await {
                    tracing::debug!(error = %e, "cannot remove an abandoned lock or candidate key");
                }
            });
        }
    }
}

/// A watcher on the hub for one key or range, from a revision; removed when dropped.
struct KeyWatch {
    hub: Arc<Hub>,
    stream: u64,
    rx: mpsc::Receiver<Outgoing>,
}

impl KeyWatch {
    fn open(
        hub: &Arc<Hub>,
        key: &[u8],
        range_end: &[u8],
        start_revision: i64,
    ) -> Result<KeyWatch, ServerError> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let stream = hub.open_stream(tx);
        let watch = KeyWatch {
            hub: hub.clone(),
            stream,
            rx,
        };
        let create = WatchCreateRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            ..Default::default()
        };
        let (gid, _, _) = hub
            .reserve(stream, &create)
            .map_err(|(e, _)| ServerError::Internal(e.to_string()))?;
        hub.activate(gid, start_revision);
        Ok(watch)
    }

    /// The next response with events (progress and other empty responses are skipped).
    async fn next(&mut self) -> Result<WatchResponse, ServerError> {
        loop {
            let out = self.rx.recv().await.ok_or(ServerError::Stopped)?;
            if out.resp.canceled {
                return Err(if out.resp.compact_revision > 0 {
                    ServerError::Compacted
                } else {
                    ServerError::Stopped
                });
            }
            if !out.resp.events.is_empty() {
                return Ok(out.resp);
            }
        }
    }
}

impl Drop for KeyWatch {
    fn drop(&mut self) {
        self.hub.close_stream(self.stream);
    }
}

/// `<prefix><lease in hex>`, as `concurrency` names a session's key.
fn own_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    [prefix, format!("{lease:x}").as_bytes()].concat()
}

/// The create revision of our key after the create-if-absent txn.
fn own_create_revision(resp: &TxnResponse) -> Result<i64, ServerError> {
    if resp.succeeded {
        return Ok(resp.header.as_ref().map_or(0, |h| h.revision));
    }
    range_kvs(resp, 0)
        .first()
        .map(|kv| kv.create_revision)
        .ok_or_else(|| ServerError::Internal("lock key vanished during its txn".into()))
}

/// The kvs of the `i`th response of a txn, if it is a range.
fn range_kvs(resp: &TxnResponse, i: usize) -> &[KeyValue] {
    match resp.responses.get(i).and_then(|r| r.response.as_ref()) {
        Some(response_op::Response::ResponseRange(RangeResponse { kvs, .. })) => kvs,
        _ => &[],
    }
}

/// `Compare(CreateRevision(key), "=", rev)`.
fn created_at(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: RESULT_EQUAL,
        target: TARGET_CREATE,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::CreateRevision(rev)),
        ..Default::default()
    }
}

fn put_op(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

fn get_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

fn delete_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            },
        )),
    }
}

fn first_created_op(prefix: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(first_created(prefix))),
    }
}

/// `Get(prefix, WithFirstCreate())`: the key under `prefix` with the lowest create revision.
fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: ASCEND,
        sort_target: SORT_BY_CREATE,
        ..Default::default()
    }
}

/// The end of the range of keys starting with `prefix` (clientv3's `GetPrefixRangeEnd`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_ranges_follow_clientv3() {
        assert_eq!(own_key(b"l/", 0x694d_1a2b), b"l/694d1a2b");
        assert_eq!(prefix_end(b"l/"), b"l0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }
}
