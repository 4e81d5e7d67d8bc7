//! The etcd `KV` service.

use std::sync::Arc;

use oxcd_proto::etcdserverpb::{
    kv_server::Kv, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use oxcd_proto::oxcdinternal::raft_request::Op;
use tonic::{Request, Response, Status};

use super::validate;
use crate::error::ServerError;
use crate::server::{ApplyResponse, EtcdServer};

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

fn unexpected(resp: ApplyResponse) -> Status {
    ServerError::Internal(format!("unexpected apply result {resp:?}")).into()
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let req = req.into_inner();
        validate::check_range(&req)?;
        if !req.serializable {
            self.server.linearizable_barrier().await?;
        }
        let mut resp = self.server.store.range(&req).map_err(ServerError::from)?;
        self.server.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let req = req.into_inner();
        validate::check_put(&req)?;
        match self.server.propose(Op::Put(req)).await? {
            ApplyResponse::Put(mut resp) => {
                self.server.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let req = req.into_inner();
        validate::check_delete(&req)?;
        match self.server.propose(Op::DeleteRange(req)).await? {
            ApplyResponse::DeleteRange(mut resp) => {
                self.server.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let req = req.into_inner();
        validate::check_txn(&req, self.server.cfg.max_txn_ops)?;
        let mut resp = if validate::txn_is_read_only(&req) {
            // Like etcd, a read-only txn is evaluated locally after the read barrier.
            if !validate::txn_is_serializable(&req) {
                self.server.linearizable_barrier().await?;
            }
            self.server
                .store
                .txn_read_only(&req)
                .map_err(ServerError::from)?
        } else {
            match self.server.propose(Op::Txn(req)).await? {
                ApplyResponse::Txn(resp) => resp,
                other => return Err(unexpected(other)),
            }
        };
        // Nested responses keep etcd's revision-only headers.
        self.server.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let req = req.into_inner();
        match self.server.propose(Op::Compaction(req)).await? {
            ApplyResponse::Compaction(mut resp) => {
                self.server.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }
}
