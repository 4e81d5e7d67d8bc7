//! Maintenance operations: Status, Alarm, Defragment, and the health probe behind
//! `/health`.

use std::time::Duration;

use oxcd_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, DefragmentResponse, RangeRequest, StatusResponse,
};

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
            db_size_quota: self.cfg.quota_backend_bytes as i64,
            downgrade_info: None,
        }
    }

    /// Alarm: every action goes through raft, as in etcd, so a GET sees every alarm
    /// raised before it. Like etcd's, the response carries no header.
    pub async fn alarm(&self, req: AlarmRequest) -> Result<AlarmResponse, ServerError> {
        self.propose(req).await
    }

    /// Defragment this member's backend (writes wait for the copy; reads do not).
    pub async fn defragment(&self) -> Result<DefragmentResponse, ServerError> {
        tracing::info!("starting defragment");
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || store.defrag())
            .await
            .map_err(|e| ServerError::Internal(format!("defragmentation task failed: {e}")))?;
        match result {
            Ok(stats) => {
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

    /// etcd's `/health` check: a leader is known, and a linearizable read succeeds within
    /// one second. Returns why not.
    pub async fn health(&self) -> Result<(), String> {
        if self.raft.status().leader_id == 0 {
            return Err(ServerError::NoLeader.to_string());
        }
        let read = async {
            self.linearizable_barrier().await?;
            self.store.range(&RangeRequest {
                key: b"health".to_vec(),
                ..Default::default()
            })?;
            Ok::<(), ServerError>(())
        };
        match tokio::time::timeout(Duration::from_secs(1), read).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(ServerError::Timeout.to_string()),
        }
    }
}
