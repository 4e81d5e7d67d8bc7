//! The etcd `KV` service: a thin adapter over [`EtcdServer`].

use std::sync::Arc;

use oxcd_core::EtcdServer;
use oxcd_proto::etcdserverpb::{
    kv_server::Kv, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use super::{credentials, status};

/// Serves Range, Put, DeleteRange, Txn and Compact.
pub struct KvService {
    server: Arc<EtcdServer>,
}

impl KvService {
    /// A KV service over `server`.
    pub fn new(server: Arc<EtcdServer>) -> KvService {
        KvService { server }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let cred = credentials(&req);
        status(self.server.range(&cred, req.into_inner()).await)
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let cred = credentials(&req);
        status(self.server.put(&cred, req.into_inner()).await)
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let cred = credentials(&req);
        status(self.server.delete_range(&cred, req.into_inner()).await)
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let cred = credentials(&req);
        status(self.server.txn(&cred, req.into_inner()).await)
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let cred = credentials(&req);
        status(self.server.compact(&cred, req.into_inner()).await)
    }
}
