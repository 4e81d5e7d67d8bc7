//! The core's side of the peer transport: what `oxcd-peer` asks of a member (its ids and
//! members, stepping raft messages, backend snapshots, lease forwarding), and the
//! snapshot source raft asks when a follower is too far behind.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};

use futures::future::BoxFuture;
use oxcd_mvcc::Store;
use oxcd_peer::{MemberInfo, PeerError, PeerHandler, Versions};
use oxcd_proto::etcdserverpb::{LeaseTimeToLiveRequest, LeaseTimeToLiveResponse};
use oxcd_raft::eraftpb::Message;
use oxcd_raft::{RaftHandle, SnapshotSource, SnapshotUnavailable};
use parking_lot::RwLock;

use crate::error::ServerError;
use crate::membership::Membership;
use crate::server::EtcdServer;
use crate::version::{ETCD_CLUSTER_VERSION, ETCD_SERVER_VERSION};

/// What `GET /version` on the peer port reports, joining or not.
fn versions() -> Versions {
    Versions {
        server: ETCD_SERVER_VERSION.into(),
        cluster: ETCD_CLUSTER_VERSION.into(),
    }
}

/// The name a received backend snapshot is kept under until the applier installs it.
pub(crate) const RECEIVED_SNAPSHOT: &str = "db.received";

/// What the transport needs from this member. Raft and the server exist only after the
/// transport (raft is started with it), so they are set once they do.
pub(crate) struct PeerGlue {
    pub(crate) membership: Arc<RwLock<Membership>>,
    pub(crate) store: Arc<Store>,
    pub(crate) snap_dir: PathBuf,
    pub(crate) raft: OnceLock<RaftHandle>,
    pub(crate) server: OnceLock<Weak<EtcdServer>>,
    /// The per-peer counters, shared with the transport (both directions in one place).
    pub(crate) stats: Arc<oxcd_peer::PeerStats>,
}

impl PeerGlue {
    fn raft(&self) -> Result<&RaftHandle, PeerError> {
        self.raft
            .get()
            .ok_or_else(|| PeerError::Internal("raft is starting".into()))
    }

    fn server(&self) -> Result<Arc<EtcdServer>, PeerError> {
        self.server
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| PeerError::Internal("the server is starting or stopping".into()))
    }
}

fn peer_error(e: ServerError) -> PeerError {
    match e {
        ServerError::LeaseNotFound => PeerError::LeaseNotFound,
        ServerError::NotLeader => PeerError::NotLeader,
        ServerError::MemberNotFound => PeerError::MemberNotFound,
        ServerError::MemberNotLearner => PeerError::MemberNotLearner,
        ServerError::LearnerNotReady => PeerError::LearnerNotReady,
        other => PeerError::Internal(other.to_string()),
    }
}

impl PeerHandler for PeerGlue {
    fn peer_stats(&self) -> Option<Arc<oxcd_peer::PeerStats>> {
        Some(self.stats.clone())
    }

    fn cluster_id(&self) -> u64 {
        self.membership.read().cluster_id
    }

    fn member_id(&self) -> u64 {
        self.membership.read().local_id
    }

    fn step(&self, msg: Message) -> Result<(), PeerError> {
        self.raft()?
            .step(msg)
            .map_err(|e| PeerError::Internal(e.to_string()))
    }

    fn is_removed(&self, member_id: u64) -> bool {
        self.membership.read().removed.contains(&member_id)
    }

    fn members(&self) -> Vec<MemberInfo> {
        self.membership
            .read()
            .members
            .values()
            .map(|m| MemberInfo {
                id: m.id,
                peer_urls: m.peer_urls.clone(),
                is_learner: m.is_learner,
                name: m.name.clone(),
                client_urls: m.client_urls.clone(),
            })
            .collect()
    }

    fn versions(&self) -> Versions {
        versions()
    }

    fn snapshot_dir(&self) -> PathBuf {
        self.snap_dir.clone()
    }

    fn export_snapshot(&self, dest: &Path) -> Result<u64, PeerError> {
        let info = self
            .store
            .export_snapshot(dest)
            .map_err(|e| PeerError::Internal(e.to_string()))?;
        tracing::info!(
            bytes = info.size,
            revision = info.revision,
            consistent_index = info.consistent_index,
            "exported the backend for a follower's snapshot"
        );
        Ok(info.size)
    }

    fn receive_snapshot(&self, msg: Message, file: &Path) -> Result<(), PeerError> {
        // Kept under our own name, durably, before raft records the snapshot: the WAL
        // then refers to a file that is there after a crash.
        let kept = self.snap_dir.join(RECEIVED_SNAPSHOT);
        oxcd_fs::rename_durably(file, &kept)
            .map_err(|e| PeerError::Internal(format!("cannot keep the received snapshot: {e}")))?;
        tracing::info!(
            index = msg.get_snapshot().get_metadata().index,
            "received a backend snapshot from the leader"
        );
        self.step(msg)
    }

    fn lease_renew(&self, id: i64) -> BoxFuture<'_, Result<i64, PeerError>> {
        Box::pin(async move { self.server()?.lease_renew(id).await.map_err(peer_error) })
    }

    fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> BoxFuture<'_, Result<LeaseTimeToLiveResponse, PeerError>> {
        Box::pin(async move {
            self.server()?
                .lease_time_to_live(LeaseTimeToLiveRequest { id, keys })
                .await
                .map_err(peer_error)
        })
    }

    fn hash_kv(&self, revision: i64) -> Result<oxcd_peer::PeerHashKv, PeerError> {
        let h = crate::backend_observer::timed(crate::BackendOp::HashRev, || {
            self.store.hash_kv(revision)
        })
        .map_err(|e| PeerError::InvalidRequest(e.to_string()))?;
        Ok(oxcd_peer::PeerHashKv {
            header: oxcd_peer::PeerHashHeader {
                member_id: self.membership.read().local_id,
                revision: self.store.current_revision(),
            },
            hash: h.hash,
            compact_revision: h.compact_revision,
        })
    }

    fn member_promote(&self, id: u64) -> BoxFuture<'_, Result<Vec<MemberInfo>, PeerError>> {
        Box::pin(async move {
            let promoted = self.server()?.promote_here(id).await;
            crate::member_events::count_promote(&promoted);
            let members = promoted.map_err(peer_error)?;
            Ok(members
                .into_iter()
                .map(|m| MemberInfo {
                    id: m.id,
                    peer_urls: m.peer_ur_ls,
                    is_learner: m.is_learner,
                    name: m.name,
                    client_urls: m.client_ur_ls,
                })
                .collect())
        })
    }
}

/// Raft's snapshot data for oxcd: a marker only. The backend itself is exported and
/// streamed by the transport beside the raft message (it may be gigabytes).
pub(crate) struct BackendSnapshots;

/// The marker a backend snapshot's raft data carries.
pub(crate) const BACKEND_SNAPSHOT_MARKER: &[u8] = b"oxcd-backend-snapshot";

impl SnapshotSource for BackendSnapshots {
    fn snapshot_data(&self, _index: u64, _to: u64) -> Result<Vec<u8>, SnapshotUnavailable> {
        Ok(BACKEND_SNAPSHOT_MARKER.to_vec())
    }
}

/// Keeps the transport's peer list in step with the membership.
pub(crate) struct PeerObserver {
    transport: oxcd_peer::PeerTransport,
    local_id: u64,
    known: parking_lot::Mutex<std::collections::BTreeMap<u64, Vec<String>>>,
}

impl PeerObserver {
    pub(crate) fn new(transport: oxcd_peer::PeerTransport, local_id: u64) -> PeerObserver {
        PeerObserver {
            transport,
            local_id,
            known: parking_lot::Mutex::new(std::collections::BTreeMap::new()),
        }
    }
}

impl crate::apply::ApplyObserver for PeerObserver {
    fn on_applied(&self, _events: &Arc<Vec<oxcd_proto::mvccpb::Event>>) {}

    fn on_membership(&self, membership: &Membership) {
        let mut known = self.known.lock();
        let gone: Vec<u64> = known
            .keys()
            .filter(|id| !membership.members.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            known.remove(&id);
            self.transport.remove_peer(id);
        }
        for m in membership.members.values() {
            if m.id == self.local_id || known.get(&m.id) == Some(&m.peer_urls) {
                continue;
            }
            known.insert(m.id, m.peer_urls.clone());
            self.transport.set_peer_urls(m.id, m.peer_urls.clone());
        }
    }
}

/// The identity a member presents while it learns the cluster it joins: none yet (cluster
/// id 0 is not checked by peers). It serves nothing.
pub(crate) struct Joining;

impl PeerHandler for Joining {
    fn cluster_id(&self) -> u64 {
        0
    }
    fn member_id(&self) -> u64 {
        0
    }
    fn step(&self, _msg: Message) -> Result<(), PeerError> {
        Err(PeerError::Internal("joining".into()))
    }
    fn is_removed(&self, _member_id: u64) -> bool {
        false
    }
    fn members(&self) -> Vec<MemberInfo> {
        Vec::new()
    }
    fn versions(&self) -> Versions {
        versions()
    }
    fn snapshot_dir(&self) -> PathBuf {
        std::env::temp_dir()
    }
    fn export_snapshot(&self, _dest: &Path) -> Result<u64, PeerError> {
        Err(PeerError::Internal("joining".into()))
    }
    fn receive_snapshot(&self, _msg: Message, _file: &Path) -> Result<(), PeerError> {
        Err(PeerError::Internal("joining".into()))
    }
    fn lease_renew(&self, _id: i64) -> BoxFuture<'_, Result<i64, PeerError>> {
        Box::pin(async { Err(PeerError::NotLeader) })
    }
    fn lease_time_to_live(
        &self,
        _id: i64,
        _keys: bool,
    ) -> BoxFuture<'_, Result<LeaseTimeToLiveResponse, PeerError>> {
        Box::pin(async { Err(PeerError::NotLeader) })
    }
}

impl EtcdServer {
    /// The leader's peer URLs, to forward to.
    pub(crate) fn peer_urls_of(&self, id: u64) -> Vec<String> {
        self.membership
            .read()
            .members
            .get(&id)
            .map(|m| m.peer_urls.clone())
            .unwrap_or_default()
    }
}

/// A forwarded call's error as the client sees it.
pub(crate) fn from_peer_error(e: PeerError) -> ServerError {
    match e {
        PeerError::LeaseNotFound => ServerError::LeaseNotFound,
        PeerError::NotLeader => ServerError::NotLeader,
        PeerError::MemberNotFound => ServerError::MemberNotFound,
        PeerError::MemberNotLearner => ServerError::MemberNotLearner,
        PeerError::LearnerNotReady => ServerError::LearnerNotReady,
        PeerError::Unreachable(_) => ServerError::Timeout,
        other => ServerError::Internal(other.to_string()),
    }
}
