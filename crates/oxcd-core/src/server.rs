//! [`EtcdServer`]: the state every adapter shares, behind one method per operation.
//!
//! The methods live beside their service: `kv.rs`, `lease.rs`, `maintenance.rs`. This file
//! holds what they share: the two paths a request takes.
//!
//! * Writes are typed proposals ([`Proposal`]): wrapped in a [`RaftRequest`] envelope with
//!   a unique id and a request header, a waiter registered for the id, proposed to raft.
//!   The applier applies the entry once it is committed *and durable in the WAL*, then
//!   answers the waiter with the response of the proposal's own type.
//! * Linearizable reads ask raft for a ReadIndex, wait until the applier has reached it and
//!   read the local store; serializable reads read at once.

use std::sync::Arc;
use std::time::Duration;

use oxcd_lease::Lessor;
use oxcd_mvcc::Store;
use oxcd_proto::etcdserverpb::ResponseHeader;
use oxcd_proto::oxcdinternal::{RaftRequest, RequestHeader};
use oxcd_raft::{RaftHandle, RaftStatus};
use oxcd_watch::Hub;
use parking_lot::RwLock;
use prost::Message;
use tokio::sync::watch;

use crate::alarm::AlarmSet;
use crate::auth::{Credentials, FailureLimiter};
use crate::config::CoreConfig;
use crate::error::ServerError;
use crate::membership::Membership;
use crate::proposal::{IdGenerator, Proposal, ProposalStats, ReadIndexStats, Waiters};

/// The server: one method per etcd operation (see the crate documentation).
pub struct EtcdServer {
    pub(crate) cfg: CoreConfig,
    pub(crate) membership: Arc<RwLock<Membership>>,
    pub(crate) store: Arc<Store>,
    pub(crate) raft: RaftHandle,
    pub(crate) waiters: Arc<Waiters>,
    /// The index the applier has applied (and made visible to reads).
    pub(crate) applied: watch::Receiver<u64>,
    pub(crate) lessor: Arc<Lessor>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) alarms: Arc<AlarmSet>,
    pub(crate) ids: IdGenerator,
    /// Forwards lease renewals and TimeToLive to the leader over the peer port.
    pub(crate) peer_client: oxcd_peer::PeerClient,
    /// The peer transport (which links are down, for the probes).
    pub(crate) transport: oxcd_peer::PeerTransport,
    /// Pending and failed proposals, for the metrics.
    pub(crate) proposal_stats: Arc<ProposalStats>,
    /// Failed and slow ReadIndex rounds, for the metrics.
    pub(crate) read_index_stats: ReadIndexStats,
    /// Defragmentations running now (etcd's `etcd_disk_defrag_inflight`).
    pub(crate) defrags_running: Arc<std::sync::atomic::AtomicU64>,
    /// Users, roles, permissions and tokens.
    pub(crate) auth: Arc<oxcd_auth::AuthStore>,
    /// Failed authentications per client address.
    pub(crate) auth_failures: FailureLimiter,
}

impl EtcdServer {
    /// Pending and failed proposals (etcd's `proposals_pending` / `_failed_total`).
    pub fn proposal_stats(&self) -> &ProposalStats {
        &self.proposal_stats
    }

    /// The ranges, puts, deletes and txns the store ran (etcd's `etcd_mvcc_*_total`).
    pub fn mvcc_op_counts(&self) -> oxcd_mvcc::OpCounts {
        self.store.op_counts()
    }

    /// The read transactions open on the backend now (etcd's
    /// `etcd_mvcc_db_open_read_transactions`).
    pub fn open_read_transactions(&self) -> u64 {
        self.store.open_read_transactions()
    }

    /// Whether a defragmentation is running (etcd's `etcd_disk_defrag_inflight`).
    pub fn defragmenting(&self) -> bool {
        self.defrags_running
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    }

    /// Failed and slow ReadIndex rounds (etcd's `read_indexes_failed_total` /
    /// `slow_read_indexes_total`).
    pub fn read_index_stats(&self) -> &ReadIndexStats {
        &self.read_index_stats
    }

    /// The configuration the core runs with.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// The watch hub; the Watch stream adapter opens streams and watchers on it.
    pub fn watch_hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Raft's view of this member now (leader, term, indexes).
    pub fn raft_status(&self) -> RaftStatus {
        self.raft.status()
    }

    /// Whether raft knows a leader now.
    pub fn has_leader(&self) -> bool {
        self.raft.leadership().borrow().has_leader()
    }

    /// Raft's leadership, pushed as it changes (the Watch adapter cancels streams that
    /// require a leader when it is lost).
    pub fn leadership(&self) -> tokio::sync::watch::Receiver<oxcd_raft::Leadership> {
        self.raft.leadership()
    }

    /// etcd 3.4's rule: a learner serves only Status and serializable Range; every other
    /// request fails with "rpc not supported for learner".
    pub fn refuse_on_learner(&self) -> Result<(), ServerError> {
        if self.is_learner() {
            return Err(ServerError::NotSupportedForLearner);
        }
        Ok(())
    }

    /// The store's current revision.
    pub fn current_revision(&self) -> i64 {
        self.store.current_revision()
    }

    /// etcd's request timeout: 5 s plus two election timeouts.
    pub fn request_timeout(&self) -> Duration {
        self.cfg.request_timeout()
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

    /// Fills `header` in place, keeping the revision the apply step put there (the
    /// current revision if none).
    pub(crate) fn fill_header(&self, header: &mut Option<ResponseHeader>) {
        let revision = header
            .as_ref()
            .map(|h| h.revision)
            .filter(|r| *r != 0)
            .unwrap_or_else(|| self.store.current_revision());
        *header = Some(self.header(revision));
    }

    /// A fresh id from the request id generator (unique across members and restarts); a
    /// server-chosen lease id is this, masked positive, as in etcd.
    pub(crate) fn next_id(&self) -> u64 {
        self.ids.next()
    }

    /// Proposes the server's own request `p` (lease expiry and checkpoints, attribute
    /// publishing): it acts as root, like etcd's `WithRoot`.
    pub(crate) async fn propose_internal<P: Proposal>(
        &self,
        p: P,
    ) -> Result<P::Response, ServerError> {
        self.propose_as(&Credentials::server(), p).await
    }

    /// Proposes a client's request `p` through raft, its header naming the user `cred`
    /// authenticates (checked by the applier's auth layer), and waits until it has been
    /// applied.
    pub(crate) async fn propose_as<P: Proposal>(
        &self,
        cred: &Credentials,
        p: P,
    ) -> Result<P::Response, ServerError> {
        let header = self.request_header(cred).await?;
        self.propose_with_header(header, p).await
    }

    async fn propose_with_header<P: Proposal>(
        &self,
        header: RequestHeader,
        p: P,
    ) -> Result<P::Response, ServerError> {
        let id = self.ids.next();
        let req = RaftRequest {
            id,
            header: Some(header),
            op: Some(p.into_op()),
        };
        let data = req.encode_to_vec();
        if data.len() as u64 > self.cfg.max_request_bytes {
            return Err(ServerError::RequestTooLarge);
        }
        // As etcd's: pending from the proposal until its answer, failed when raft does not
        // take it or it is not applied within the request timeout.
        let _pending = self.proposal_stats.pending_guard();
        let rx = self.waiters.register(id);
        let waiters = self.waiters.clone();
        let stats = self.proposal_stats.clone();
        let queued = self.raft.propose_or_else(data, move |e| {
            stats.fail();
            waiters.trigger(id, Err(e.into()))
        });
        if let Err(e) = queued {
            self.proposal_stats.fail();
            self.waiters.cancel(id);
            return Err(e.into());
        }
        let applied = match tokio::time::timeout(self.request_timeout(), rx).await {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => return Err(ServerError::Stopped),
            Err(_) => {
                self.proposal_stats.fail();
                self.waiters.cancel(id);
                return Err(ServerError::Timeout);
            }
        };
        P::take(applied).ok_or_else(|| {
            ServerError::Internal("the applier answered with another kind of response".into())
        })
    }

    /// Waits until the applier has caught up with the commit index known now, at most one
    /// second (etcd's `waitAppliedIndex`). The leader's lessor must not answer before
    /// then: after a restart it would not yet know the leases and key attachments that
    /// committed entries still being replayed bring back.
    pub(crate) async fn wait_applied_index(&self) -> Result<(), ServerError> {
        let commit = self.raft.status().commit_index;
        tokio::time::timeout(Duration::from_secs(1), self.applied_to(commit))
            .await
            .map_err(|_| ServerError::TimeoutWaitAppliedIndex)?
    }

    /// Waits until this member has applied everything committed before the call: the
    /// barrier a linearizable read needs.
    pub async fn linearizable_barrier(&self) -> Result<(), ServerError> {
        let read = std::sync::atomic::AtomicBool::new(false);
        let fut = async {
            let index = match self.raft.read_index().await {
                Ok(index) => index,
                Err(e) => {
                    // etcd counts a timed-out round as slow and a refused one (no
                    // leader, leader changed) as failed; a stopping server as neither.
                    match e {
                        oxcd_raft::RaftError::Timeout => self.read_index_stats.count_slow(),
                        oxcd_raft::RaftError::Stopped => {}
                        _ => self.read_index_stats.count_failed(),
                    }
                    return Err(e.into());
                }
            };
            read.store(true, std::sync::atomic::Ordering::Relaxed);
            self.applied_to(index).await
        };
        tokio::time::timeout(self.request_timeout(), fut)
            .await
            .map_err(|_| {
                if !read.load(std::sync::atomic::Ordering::Relaxed) {
                    self.read_index_stats.count_slow();
                }
                ServerError::Timeout
            })?
    }

    /// Waits (without limit) until the applier has applied `index`; at once if it has.
    pub(crate) async fn applied_to(&self, index: u64) -> Result<(), ServerError> {
        let mut applied = self.applied.clone();
        applied
            .wait_for(|a| *a >= index)
            .await
            .map(|_| ())
            .map_err(|_| ServerError::Stopped)
    }
}
