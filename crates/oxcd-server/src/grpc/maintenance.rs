//! The etcd `Maintenance` service: a thin adapter over [`EtcdServer`].

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use oxcd_core::EtcdServer;
use oxcd_proto::etcdserverpb::{
    maintenance_server::Maintenance, AlarmRequest, AlarmResponse, DefragmentRequest,
    DefragmentResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{credentials, status};

/// The messages of one Snapshot call.
pub type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

/// Snapshot as a stream of gRPC results (the gateway serves the same stream).
pub async fn snapshot(
    server: &Arc<EtcdServer>,
    cred: &oxcd_core::Credentials,
) -> Result<SnapshotStream, Status> {
    let rx = server.snapshot(cred).await.map_err(Status::from)?;
    Ok(Box::pin(
        ReceiverStream::new(rx).map(|r| r.map_err(Status::from)),
    ))
}

/// Serves Status, Alarm, Defragment, Hash, HashKV, MoveLeader and Snapshot.
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
    async fn snapshot(
        &self,
        req: Request<SnapshotRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        snapshot(&self.server, &credentials(&req))
            .await
            .map(Response::new)
    }

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

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        status(self.server.hash(&credentials(&req)).await)
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
        let cred = credentials(&req);
        status(self.server.move_leader(&cred, req.into_inner()).await)
    }
}
