//! The v3lock `Lock` service: a thin adapter over [`EtcdServer::lock`] and
//! [`EtcdServer::unlock`].

use std::sync::Arc;

use oxcd_core::EtcdServer;
use oxcd_proto::v3lockpb::{
    lock_server::Lock, LockRequest, LockResponse, UnlockRequest, UnlockResponse,
};
use tonic::{Request, Response, Status};

use super::{credentials, status};

/// Serves Lock and Unlock.
pub struct LockService {
    server: Arc<EtcdServer>,
}

impl LockService {
    /// A Lock service over `server`.
    pub fn new(server: Arc<EtcdServer>) -> LockService {
        LockService { server }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let cred = credentials(&req);
        status(self.server.lock(&cred, req.into_inner()).await)
    }

    async fn unlock(
        &self,
        req: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let cred = credentials(&req);
        status(self.server.unlock(&cred, req.into_inner()).await)
    }
}
