//! The etcd `Maintenance` service: Status, Defragment and alarms for now.

use std::sync::Arc;

use oxcd_proto::etcdserverpb::{
    maintenance_server::Maintenance, AlarmRequest, AlarmResponse, DefragmentRequest,
    DefragmentResponse, StatusRequest, StatusResponse,
};
use tonic::{Request, Response, Status};

use crate::error::ServerError;
use crate::server::EtcdServer;
use crate::version::ETCD_SERVER_VERSION;

/// Serves Status, Defragment and Alarm; the other RPCs answer `Unimplemented` for now.
pub struct MaintenanceService {
    server: Arc<EtcdServer>,
}

impl MaintenanceService {
    /// A Maintenance service over `server`.
    pub fn new(server: Arc<EtcdServer>) -> MaintenanceService {
        MaintenanceService { server }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let s = &self.server;
        let raft = s.raft.status();
        let mut errors = Vec::new();
        if raft.leader_id == 0 {
            errors.push(ServerError::NoLeader.to_string());
        }
        Ok(Response::new(StatusResponse {
            header: Some(s.header(s.store.current_revision())),
            version: ETCD_SERVER_VERSION.to_string(),
            db_size: s.store.db_size() as i64,
            leader: raft.leader_id,
            raft_index: raft.commit_index,
            raft_term: raft.term,
            raft_applied_index: raft.applied_index,
            errors,
            db_size_in_use: s.store.db_size_in_use() as i64,
            is_learner: false,
            storage_version: String::new(),
            db_size_quota: s.cfg.quota_backend_bytes as i64,
            downgrade_info: None,
        }))
    }

    /// etcd's Defragment: this member only, not through raft. Writes wait while the backend
    /// is copied (reads do not); the response is empty, without a header, as etcd 3.4's.
    async fn defragment(
        &self,
        _req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        tracing::info!("starting defragment");
        let store = self.server.store.clone();
        let result = tokio::task::spawn_blocking(move || store.defrag())
            .await
            .map_err(|e| ServerError::Internal(format!("defragmentation task failed: {e}")))?;
        match result {
            Ok(_) => {
                tracing::info!("finished defragmenting the storage backend");
                Ok(Response::new(DefragmentResponse { header: None }))
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to defragment");
                Err(ServerError::from(e).into())
            }
        }
    }

    async fn alarm(&self, _req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        // No alarm can be raised yet (the quota alarm comes with the quota enforcement).
        // etcd 3.4 passes the applier's alarm response through without a header.
        Ok(Response::new(AlarmResponse {
            header: None,
            alarms: Vec::new(),
        }))
    }
}
