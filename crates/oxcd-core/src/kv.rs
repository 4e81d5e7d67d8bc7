//! The KV operations: Range, Put, DeleteRange, Txn, Compact.

use oxcd_auth::PermType;
use oxcd_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};

use crate::auth::{check_txn, Credentials};
use crate::error::ServerError;
use crate::server::EtcdServer;
use crate::validate;

impl EtcdServer {
    /// Range: linearizable unless `serializable` (then served from this member at once);
    /// with auth enabled the caller needs READ over the whole range.
    pub async fn range(
        &self,
        cred: &Credentials,
        req: RangeRequest,
    ) -> Result<RangeResponse, ServerError> {
        let started = std::time::Instant::now();
        let resp = self.range_inner(cred, req).await;
        crate::slow_apply::check(started, "read-only range ");
        resp
    }

    async fn range_inner(
        &self,
        cred: &Credentials,
        req: RangeRequest,
    ) -> Result<RangeResponse, ServerError> {
        if !req.serializable {
            self.refuse_on_learner()?;
        }
        validate::check_range(&req)?;
        if !req.serializable {
            self.linearizable_barrier().await?;
        }
        let mut resp = self
            .serialized_read(
                cred,
                |auth, info| auth.is_op_permitted(info, &req.key, &req.range_end, PermType::Read),
                || Ok(self.store.range(&req)?),
            )
            .await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// Put, through raft (permissions are checked when it is applied).
    pub async fn put(
        &self,
        cred: &Credentials,
        req: PutRequest,
    ) -> Result<PutResponse, ServerError> {
        self.refuse_on_learner()?;
        validate::check_put(&req)?;
        self.check_quota(crate::quota::put_cost(&req)).await?;
        let mut resp = self.propose_as(cred, req).await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// DeleteRange, through raft (permissions are checked when it is applied).
    pub async fn delete_range(
        &self,
        cred: &Credentials,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, ServerError> {
        self.refuse_on_learner()?;
        validate::check_delete(&req)?;
        let mut resp = self.propose_as(cred, req).await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// Txn: one that only reads is evaluated locally after the read barrier (as etcd
    /// does), never entering the log, its every compare and read checked here; any other
    /// goes through raft and is checked when applied.
    pub async fn txn(
        &self,
        cred: &Credentials,
        req: TxnRequest,
    ) -> Result<TxnResponse, ServerError> {
        self.refuse_on_learner()?;
        validate::check_txn(&req, self.cfg.max_txn_ops)?;
        let mut resp = if validate::txn_is_read_only(&req) {
            let started = std::time::Instant::now();
            let read = async {
                if !validate::txn_is_serializable(&req) {
                    self.linearizable_barrier().await?;
                }
                self.serialized_read(
                    cred,
                    |auth, info| check_txn(auth, info, &req),
                    || Ok(self.store.txn_read_only(&req)?),
                )
                .await
            };
            let resp = read.await;
            crate::slow_apply::check(started, "read-only txn ");
            resp?
        } else {
            self.check_quota(crate::quota::txn_cost(&req)).await?;
            self.propose_as(cred, req).await?
        };
        // Nested responses keep etcd's revision-only headers.
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// Compaction, through raft; needs root while auth is enabled.
    pub async fn compact(
        &self,
        cred: &Credentials,
        req: CompactionRequest,
    ) -> Result<CompactionResponse, ServerError> {
        self.refuse_on_learner()?;
        self.check_admin(cred).await?;
        let (rev, physical) = (req.revision, req.physical);
        let mut resp = self.propose_as(cred, req).await?;
        if physical {
            // etcd answers a physical compaction once its rows are gone from the backend
            // (of this member; the compactor deletes them in the background).
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.wait_compacted(rev))
                .await
                .map_err(|e| ServerError::Internal(format!("waiting for the compaction: {e}")))??;
        }
        self.fill_header(&mut resp.header);
        Ok(resp)
    }
}
