//! The etcd `Maintenance` service: a thin adapter over [`EtcdServer`].

use std::sync::Arc;

use oxcd_core::EtcdServer;
use oxcd_proto::etcdserverpb::{
    maintenance_server::Maintenance, AlarmRequest, AlarmResponse, DefragmentRequest,
    DefragmentResponse, HashKvRequest, HashKvResponse, MoveLeaderRequest, MoveLeaderResponse,
    StatusRequest, StatusResponse,
};
use tonic::{Request, Response, Status};

use super::{credentials, status};

/// Serves Status, Alarm, Defragment, HashKV and MoveLeader.
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
        Ok(Response::new(self.server.status()))
    }

    async fn defragment(
        &self,
        req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        status(self.server.defragment(&credentials(&req)).await)
    }

    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let cred = credentials(&req);
        status(self.server.alarm(&cred, req.into_inner()).await)
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let cred = credentials(&req);
        status(self.server.hash_kv(&cred, req.into_inner()).await)
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        status(self.server.move_leader(req.into_inner()).await)
    }
}
