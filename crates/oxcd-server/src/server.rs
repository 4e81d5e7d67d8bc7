//! `EtcdServer`: the state every gRPC/HTTP handler shares, and the two paths a request takes.
//!
//! * Writes are wrapped in an [`RaftRequest`] envelope with a unique id, a waiter is
//!   registered for the id, and the envelope is proposed to raft. The applier
//!   ([`crate::apply`]) applies it once it is committed *and durable in the WAL*, then
//!   answers the waiter.
//! * Linearizable reads ask raft for a ReadIndex, wait until the applier has reached it and
//!   read the local store; serializable reads read at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oxcd_mvcc::Store;
use oxcd_proto::etcdserverpb::{
    CompactionResponse, DeleteRangeResponse, LeaseCheckpointResponse, LeaseGrantResponse,
    LeaseRevokeResponse, PutResponse, ResponseHeader, TxnResponse,
};
use oxcd_proto::mvccpb::Event;
use oxcd_proto::oxcdinternal::{raft_request, RaftRequest};
use oxcd_raft::RaftHandle;
use parking_lot::{Mutex, RwLock};
use prost::Message;
use tokio::sync::{oneshot, watch};

use crate::cluster::Membership;
use crate::config::Config;
use crate::error::ServerError;
use crate::lease::Lessor;

/// What applying one committed request produced.
#[derive(Debug, Clone)]
pub enum ApplyResponse {
    /// Result of a Put.
    Put(PutResponse),
    /// Result of a DeleteRange.
    DeleteRange(DeleteRangeResponse),
    /// Result of a Txn.
    Txn(TxnResponse),
    /// Result of a Compaction.
    Compaction(CompactionResponse),
    /// Result of a LeaseGrant.
    LeaseGrant(LeaseGrantResponse),
    /// Result of a LeaseRevoke.
    LeaseRevoke(LeaseRevokeResponse),
    /// Result of a LeaseCheckpoint.
    LeaseCheckpoint(LeaseCheckpointResponse),
}

/// A waiter's answer: the response, or the error the apply step ended in.
pub type ApplyResult = Result<ApplyResponse, ServerError>;

/// Proposal ids -> the handler waiting for that proposal to be applied.
#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<u64, oneshot::Sender<ApplyResult>>>,
}

impl Waiters {
    fn register(&self, id: u64) -> oneshot::Receiver<ApplyResult> {
        let (tx, rx) = oneshot::channel();
        self.map.lock().insert(id, tx);
        rx
    }

    fn cancel(&self, id: u64) {
        self.map.lock().remove(&id);
    }

    /// Answers the waiter for `id`, if this member proposed it and it still waits.
    pub fn trigger(&self, id: u64, result: ApplyResult) {
        if let Some(tx) = self.map.lock().remove(&id) {
            let _ = tx.send(result);
        }
    }

    /// Fails every waiter (shutdown).
    pub fn fail_all(&self, err: ServerError) {
        for (_, tx) in self.map.lock().drain() {
            let _ = tx.send(Err(err.clone()));
        }
    }
}

/// Generates proposal ids unique across restarts of this member, like etcd's idutil: the
/// member id's low 16 bits, then a millisecond timestamp, then a counter.
pub struct IdGenerator {
    prefix: u64,
    next: AtomicU64,
}

impl IdGenerator {
    /// Starts a generator for `member_id` at the current time.
    pub fn new(member_id: u64) -> IdGenerator {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        IdGenerator {
            prefix: (member_id & 0xffff) << 48,
            next: AtomicU64::new((ms & 0xff_ffff_ffff) << 8),
        }
    }

    /// The next id.
    pub fn next(&self) -> u64 {
        let suffix = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.prefix | (suffix & 0xffff_ffff_ffff)
    }
}

/// Receives the events of every applied revision (the watch hub subscribes here).
pub type EventSink = Box<dyn Fn(Vec<Event>) + Send + Sync>;

/// State shared by all request handlers.
pub struct EtcdServer {
    /// The configuration the server runs with.
    pub cfg: Arc<Config>,
    /// Known members.
    pub membership: RwLock<Membership>,
    /// The revisioned key space.
    pub store: Arc<Store>,
    /// The raft node.
    pub raft: RaftHandle,
    /// Handlers waiting for their proposals.
    pub waiters: Arc<Waiters>,
    /// The index the applier has applied (and made visible to reads).
    pub applied: watch::Receiver<u64>,
    /// Leases (shared with the applier).
    pub lessor: Arc<Lessor>,
    ids: IdGenerator,
}

impl EtcdServer {
    /// Assembles the server state.
    pub fn new(
        cfg: Arc<Config>,
        membership: Membership,
        store: Arc<Store>,
        raft: RaftHandle,
        waiters: Arc<Waiters>,
        applied: watch::Receiver<u64>,
        lessor: Arc<Lessor>,
    ) -> EtcdServer {
        let ids = IdGenerator::new(membership.local_id);
        EtcdServer {
            cfg,
            membership: RwLock::new(membership),
            store,
            raft,
            waiters,
            applied,
            lessor,
            ids,
        }
    }

    /// A fresh id from the request id generator (unique across members and restarts); a
    /// server-chosen lease id is this, masked positive, as in etcd.
    pub fn next_id(&self) -> u64 {
        self.ids.next()
    }

    /// etcd's request timeout: 5 s plus two election timeouts.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + 2 * self.cfg.election_timeout
    }

    /// A response header at `revision`.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        let m = self.membership.read();
        ResponseHeader {
            cluster_id: m.cluster_id,
            member_id: m.local_id,
            revision,
            raft_term: self.raft.status().term,
        }
    }

    /// Fills `header` in place (keeping the revision the apply step put there).
    pub fn fill_header(&self, header: &mut Option<ResponseHeader>) {
        let revision = header
            .as_ref()
            .map(|h| h.revision)
            .filter(|r| *r != 0)
            .unwrap_or_else(|| self.store.current_revision());
        *header = Some(self.header(revision));
    }

    /// Proposes `op` through raft and waits until it has been applied.
    pub async fn propose(&self, op: raft_request::Op) -> ApplyResult {
        let id = self.ids.next();
        let req = RaftRequest { id, op: Some(op) };
        let data = req.encode_to_vec();
        if data.len() as u64 > self.cfg.max_request_bytes {
            return Err(ServerError::RequestTooLarge);
        }
        let rx = self.waiters.register(id);
        let waiters = self.waiters.clone();
        let queued = self
            .raft
            .propose_or_else(data, move |e| waiters.trigger(id, Err(e.into())));
        if let Err(e) = queued {
            self.waiters.cancel(id);
            return Err(e.into());
        }
        match tokio::time::timeout(self.request_timeout(), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => {
                self.waiters.cancel(id);
                Err(ServerError::Timeout)
            }
        }
    }

    /// Waits until the applier has caught up with the commit index known now, at most one
    /// second (etcd's `waitAppliedIndex`). The leader's lessor must not answer before
    /// then: after a restart it would not yet know the leases and key attachments that
    /// committed entries still being replayed bring back.
    pub async fn wait_applied_index(&self) -> Result<(), ServerError> {
        let commit = self.raft.status().commit_index;
        tokio::time::timeout(Duration::from_secs(1), self.applied_to(commit))
            .await
            .map_err(|_| ServerError::TimeoutWaitAppliedIndex)?
    }

    /// Waits until this member has applied everything committed before the call: the
    /// barrier a linearizable read needs.
    pub async fn linearizable_barrier(&self) -> Result<(), ServerError> {
        let fut = async {
            let index = self.raft.read_index().await?;
            self.applied_to(index).await
        };
        tokio::time::timeout(self.request_timeout(), fut)
            .await
            .map_err(|_| ServerError::Timeout)?
    }

    /// Waits (without limit) until the applier has applied `index`; at once if it has.
    async fn applied_to(&self, index: u64) -> Result<(), ServerError> {
        let mut applied = self.applied.clone();
        applied
            .wait_for(|a| *a >= index)
            .await
            .map(|_| ())
            .map_err(|_| ServerError::Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_carry_member_prefix() {
        let g = IdGenerator::new(0xabcd_1234);
        let a = g.next();
        let b = g.next();
        assert_ne!(a, b);
        assert_eq!(a >> 48, 0x1234);
    }

    #[tokio::test]
    async fn waiter_gets_its_result_once() {
        let w = Waiters::default();
        let rx = w.register(7);
        w.trigger(7, Err(ServerError::NoLeader));
        w.trigger(7, Err(ServerError::Timeout));
        assert_eq!(rx.await.unwrap().unwrap_err(), ServerError::NoLeader);
    }
}
