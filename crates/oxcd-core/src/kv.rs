//! The KV operations: Range, Put, DeleteRange, Txn, Compact.

use oxcd_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};

use crate::error::ServerError;
use crate::server::EtcdServer;
use crate::validate;

impl EtcdServer {
    /// Range: linearizable unless `serializable` (then served from this member at once).
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, ServerError> {
        if !req.serializable {
            self.refuse_on_learner()?;
        }
        validate::check_range(&req)?;
        if !req.serializable {
            self.linearizable_barrier().await?;
        }
        let mut resp = self.store.range(&req)?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// Put, through raft.
    pub async fn put(&self, req: PutRequest) -> Result<PutResponse, ServerError> {
        self.refuse_on_learner()?;
        validate::check_put(&req)?;
        self.check_quota(crate::quota::put_cost(&req)).await?;
        let mut resp = self.propose(req).await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// DeleteRange, through raft.
    pub async fn delete_range(
        &self,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, ServerError> {
        self.refuse_on_learner()?;
        validate::check_delete(&req)?;
        let mut resp = self.propose(req).await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// Txn: one that only reads is evaluated locally after the read barrier (as etcd
    /// does), never entering the log; any other goes through raft.
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, ServerError> {
        self.refuse_on_learner()?;
        validate::check_txn(&req, self.cfg.max_txn_ops)?;
        let mut resp = if validate::txn_is_read_only(&req) {
            if !validate::txn_is_serializable(&req) {
                self.linearizable_barrier().await?;
            }
            self.store.txn_read_only(&req)?
        } else {
            self.check_quota(crate::quota::txn_cost(&req)).await?;
            self.propose(req).await?
        };
        // Nested responses keep etcd's revision-only headers.
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// Compaction, through raft.
    pub async fn compact(&self, req: CompactionRequest) -> Result<CompactionResponse, ServerError> {
        self.refuse_on_learner()?;
        let mut resp = self.propose(req).await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }
}
