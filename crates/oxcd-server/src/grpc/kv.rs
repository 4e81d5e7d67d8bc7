//! The etcd `KV` service: a thin adapter over [`EtcdServer`].

use std::sync::Arc;

use oxcd_core::EtcdServer;
use oxcd_proto::etcdserverpb::{
    kv_server::Kv, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use super::status;

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
        status(self.server.range(req.into_inner()).await)
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        status(self.server.put(req.into_inner()).await)
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        status(self.server.delete_range(req.into_inner()).await)
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        status(self.server.txn(req.into_inner()).await)
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        status(self.server.compact(req.into_inner()).await)
    }
}
