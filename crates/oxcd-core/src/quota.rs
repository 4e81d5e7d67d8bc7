//! The backend quota (`--quota-backend-bytes`), checked before proposing as etcd's
//! `quotaKVServer`/`quotaLeaseServer` do: a request that would grow the database (a put, a
//! txn with puts, a lease grant) is refused with "database space exceeded" when the backend
//! file plus the request's cost reaches the quota, and the NOSPACE alarm is raised for this
//! member through raft, so every member's applier refuses such requests from then on
//! (`apply::chain::AlarmGate`) until `alarm disarm`. Reads, deletes, compaction and defrag
//! go on.
//!
//! etcd also checks the quota again when applying, against each member's own file size;
//! oxcd does not, so that members whose files differ in size never apply the same entry
//! differently: the alarm, an entry in the log, is what refuses growth everywhere.

use oxcd_proto::etcdserverpb::{
    alarm_request::AlarmAction, request_op, AlarmRequest, AlarmType, PutRequest, RequestOp,
    TxnRequest,
};

use crate::error::ServerError;
use crate::server::EtcdServer;

/// etcd's estimate of a lease's cost (`leaseOverhead`).
pub(crate) const LEASE_COST: u64 = 64;
/// etcd's estimate of a key's metadata (`kvOverhead`).
const KV_OVERHEAD: u64 = 256;

/// etcd's `costPut`.
pub(crate) fn put_cost(r: &PutRequest) -> u64 {
    KV_OVERHEAD + r.key.len() as u64 + r.value.len() as u64
}

/// etcd's `costTxn`: the costlier branch's puts.
pub(crate) fn txn_cost(r: &TxnRequest) -> u64 {
    let branch = |ops: &[RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(request_op::Request::RequestPut(p)) => put_cost(p),
                _ => 0,
            })
            .sum()
    };
    branch(&r.success).max(branch(&r.failure))
}

impl EtcdServer {
    /// Refuses a request costing `cost` bytes if it does not fit in the quota, raising the
    /// NOSPACE alarm (etcd's `quotaAlarmer.check`). A request that costs nothing passes.
    pub(crate) async fn check_quota(&self, cost: u64) -> Result<(), ServerError> {
        let Ok(quota) = u64::try_from(self.cfg.quota_backend_bytes) else {
            return Ok(()); // a negative quota disables it, as in etcd
        };
        if cost == 0 || self.store.db_size().saturating_add(cost) < quota {
            return Ok(());
        }
        let member_id = self.membership.read().local_id;
        tracing::warn!(
            db_size = self.store.db_size(),
            cost,
            quota,
            "request exceeds the backend quota; raising the NOSPACE alarm"
        );
        // As etcd, the alarm's own outcome does not change the answer.
        if let Err(e) = self
            .propose_internal(AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id,
                alarm: AlarmType::Nospace as i32,
            })
            .await
        {
            tracing::warn!(error = %e, "cannot raise the NOSPACE alarm");
        }
        Err(ServerError::NoSpace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: k.into(),
                value: v.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn costs_are_etcds() {
        assert_eq!(
            put_cost(&PutRequest {
                key: b"ab".to_vec(),
                value: b"cde".to_vec(),
                ..Default::default()
            }),
            261
        );
        let t = TxnRequest {
            success: vec![put("a", "b")],
            failure: vec![put("a", "b"), put("c", "dd")],
            ..Default::default()
        };
        assert_eq!(txn_cost(&t), 258 + 259);
        assert_eq!(txn_cost(&TxnRequest::default()), 0);
    }
}
