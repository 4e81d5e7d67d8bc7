//! Maintenance operations: Status, Alarm, Defragment, and the health probe behind
//! `/health`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use oxcd_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, DefragmentResponse, HashKvRequest, HashKvResponse,
    HashResponse, MoveLeaderRequest, MoveLeaderResponse, StatusResponse,
};

use crate::auth::Credentials;
use crate::backend_observer::{timed, BackendOp};
use crate::error::ServerError;
use crate::server::EtcdServer;
use crate::version::ETCD_SERVER_VERSION;

impl EtcdServer {
    /// Status of this member.
    pub fn status(&self) -> StatusResponse {
        let raft = self.raft.status();
        let mut errors = Vec::new();
        if raft.leader_id == 0 {
            errors.push(ServerError::NoLeader.to_string());
        }
        // etcd lists each active alarm in its protobuf text form.
        for a in self.alarms.list(AlarmType::None) {
            let name = AlarmType::try_from(a.alarm).map_or("UNKNOWN", |t| t.as_str_name());
            errors.push(format!("memberID:{} alarm:{} ", a.member_id, name));
        }
        StatusResponse {
            header: Some(self.header(self.store.current_revision())),
            version: ETCD_SERVER_VERSION.to_string(),
            db_size: self.store.db_size() as i64,
            leader: raft.leader_id,
            raft_index: raft.commit_index,
            raft_term: raft.term,
            raft_applied_index: raft.applied_index,
            errors,
            db_size_in_use: self.store.db_size_in_use() as i64,
            is_learner: self.is_learner(),
            storage_version: String::new(),
            db_size_quota: self.cfg.quota_backend_bytes,
            downgrade_info: None,
        }
    }

    /// Alarm: every action goes through raft, as in etcd, so a GET sees every alarm
    /// raised before it. Like etcd's, the response carries no header.
    pub async fn alarm(
        &self,
        cred: &Credentials,
        req: AlarmRequest,
    ) -> Result<AlarmResponse, ServerError> {
        self.refuse_on_learner()?;
        self.check_admin(cred).await?;
        self.propose_as(cred, req).await
    }

    /// Defragment this member's backend: writes wait only for the short catch-up after the
    /// copy (`Store::defrag`), reads never.
    pub async fn defragment(&self, cred: &Credentials) -> Result<DefragmentResponse, ServerError> {
        self.refuse_on_learner()?;
        self.check_admin(cred).await?;
        tracing::info!("starting defragment");
        let store = self.store.clone();
        let running = self.defrags_running.clone();
        // Counted in the blocking task: it goes on even if the caller goes away.
        let result = tokio::task::spawn_blocking(move || {
            running.fetch_add(1, Ordering::Relaxed);
            let r = store.defrag();
            running.fetch_sub(1, Ordering::Relaxed);
            r
        })
        .await
        .map_err(|e| ServerError::Internal(format!("defragmentation task failed: {e}")))?;
        match result {
            Ok(stats) => {
                crate::backend_observer::observe(BackendOp::Defrag, stats.took);
                tracing::info!(?stats, "finished defragmenting the storage backend");
                // etcd answers with an empty response, header included.
                Ok(DefragmentResponse { header: None })
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to defragment");
                Err(e.into())
            }
        }
    }

    /// HashKV: the hash of the key space up to `revision` (0: now), to compare members.
    pub async fn hash_kv(
        &self,
        cred: &Credentials,
        req: HashKvRequest,
    ) -> Result<HashKvResponse, ServerError> {
        self.refuse_on_learner()?;
        self.check_admin(cred).await?;
        let h = timed(BackendOp::HashRev, || self.store.hash_kv(req.revision))?;
        Ok(HashKvResponse {
            header: Some(self.header(self.store.current_revision())),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: h.hash_revision,
        })
    }

    /// Hash: a hash of this member's key space at the current revision, every revision kept
    /// included (HashKV's hash at revision 0). etcd's Hash covers its whole bolt backend,
    /// whose layout oxcd does not share: like etcd's, the value only means something
    /// compared with another member's at the same revision.
    pub async fn hash(&self, cred: &Credentials) -> Result<HashResponse, ServerError> {
        self.refuse_on_learner()?;
        self.check_admin(cred).await?;
        let h = timed(BackendOp::Hash, || self.store.hash_kv(0))?;
        Ok(HashResponse {
            header: Some(self.header(h.hash_revision)),
            hash: h.hash,
        })
    }

    /// MoveLeader: the leader hands leadership to `target_id` (a voter) and waits until it
    /// leads, as etcd's `MoveLeader`.
    pub async fn move_leader(
        &self,
        cred: &Credentials,
        req: MoveLeaderRequest,
    ) -> Result<MoveLeaderResponse, ServerError> {
        self.refuse_on_learner()?;
        self.check_admin(cred).await?;
        let mut leadership = self.raft.leadership();
        if !leadership.borrow().is_leader() {
            return Err(ServerError::NotLeader);
        }
        let voter = self
            .membership
            .read()
            .members
            .get(&req.target_id)
            .is_some_and(|m| !m.is_learner);
        if !voter {
            return Err(ServerError::BadLeaderTransferee);
        }
        self.transfer_leadership_to(req.target_id, &mut leadership, self.request_timeout())
            .await?;
        Ok(MoveLeaderResponse { header: None })
    }

    /// Asks raft to hand leadership to `to` and waits until `to` leads.
    pub(crate) async fn transfer_leadership_to(
        &self,
        to: u64,
        leadership: &mut tokio::sync::watch::Receiver<oxcd_raft::Leadership>,
        within: Duration,
    ) -> Result<(), ServerError> {
        tracing::info!(transferee = %format!("{to:x}"), "transferring leadership");
        self.raft.transfer_leadership(to)?;
        match tokio::time::timeout(within, leadership.wait_for(|l| l.leader_id == to)).await {
            Ok(Ok(_)) => {
                tracing::info!(leader = %format!("{to:x}"), "leadership transferred");
                Ok(())
            }
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => Err(ServerError::TimeoutLeaderTransfer),
        }
    }

    /// On a graceful stop, a leader with other voters hands leadership to the one whose log
    /// is longest first, so the cluster need not wait an election timeout (etcd's
    /// `TransferLeadership` on stop). Best effort: failures are logged.
    pub async fn hand_over_leadership(&self) {
        let mut leadership = self.raft.leadership();
        if !leadership.borrow().is_leader() {
            return;
        }
        let me = self.membership.read().local_id;
        let voters: Vec<u64> = self.membership.read().voter_ids();
        let Ok(Some(matches)) = self.raft.match_indexes().await else {
            return;
        };
        let best = voters
            .into_iter()
            .filter(|id| *id != me)
            .max_by_key(|id| matches.get(id).copied().unwrap_or(0));
        if let Some(to) = best {
            if let Err(e) = self
                .transfer_leadership_to(to, &mut leadership, self.request_timeout())
                .await
            {
                tracing::warn!(error = %e, "could not hand leadership over before stopping");
            }
        }
    }
}
