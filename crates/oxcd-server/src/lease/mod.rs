//! Leases: TTLs, keep-alives and automatic expiry, with etcd's semantics.
//!
//! * [`Lessor`] (`lessor.rs`) holds every lease, its attached keys, and on the primary (the
//!   raft leader) the expiry and checkpoint queues.
//! * [`apply_lease_op`] applies the replicated lease operations (grant, revoke, checkpoint)
//!   for the applier; a revoke deletes every attached key in one revision.
//! * [`run_lessor`] (`run.rs`) is the primary's background loop: it follows leadership
//!   (promote/demote), proposes revokes of expired leases at a paced rate and proposes
//!   remaining-TTL checkpoints.
//! * The `impl EtcdServer` block below serves renewals and TimeToLive on the leader, with
//!   [`EtcdServer::forward_lease_renew`] as the hook where a follower will forward them.
//!
//! # Restart rule
//!
//! Expiry times are not persisted (they are instants of the primary's clock). When a member
//! becomes primary — after a restart too, since a restarted single member is elected anew —
//! every lease expires at `now + extend + R`, where `extend` is the election timeout and `R`
//! is the lease's last checkpointed remaining TTL, or its full TTL if it was never
//! checkpointed (or was renewed since). This is etcd's `Promote(electionTimeout)`. Leases
//! longer than `--experimental-lease-checkpoint-interval` (5 min) get their remaining TTL
//! checkpointed through raft at that interval, so a long-lived lease that is not renewed does
//! not start over at its full TTL on every restart; a renewal clears the checkpoint first.

mod lessor;
mod run;

use oxcd_mvcc::Store;
use oxcd_proto::etcdserverpb::{
    request_op, DeleteRangeRequest, LeaseCheckpoint, LeaseCheckpointRequest,
    LeaseCheckpointResponse, LeaseGrantResponse, LeaseRevokeResponse, RequestOp, ResponseHeader,
    TxnRequest,
};
use oxcd_proto::mvccpb::Event;
use oxcd_proto::oxcdinternal::raft_request::Op;

pub use lessor::{
    LeaseStatus, Lessor, RenewError, EXPIRED_RETRY_INTERVAL, LEASE_REVOKE_RATE, LEASE_TABLE,
    MAX_LEASE_TTL,
};
pub use run::run_lessor;

use crate::error::ServerError;
use crate::server::{ApplyResponse, EtcdServer};

fn header(store: &Store) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision: store.current_revision(),
        ..Default::default()
    })
}

/// Applies a replicated lease operation at raft index `index` (the applier calls this for
/// `LeaseGrant`, `LeaseRevoke` and `LeaseCheckpoint`; any other op is an internal error).
/// Returns the response and the events (DELETEs of a revoked lease's keys, all in one
/// revision). On error nothing is changed; the caller records the index as applied.
pub fn apply_lease_op(
    store: &Store,
    lessor: &Lessor,
    op: Op,
    index: u64,
) -> Result<(ApplyResponse, Vec<Event>), ServerError> {
    match op {
        Op::LeaseGrant(r) => {
            let ttl = lessor.grant(store, r.id, r.ttl)?;
            store.set_consistent_index(index);
            Ok((
                ApplyResponse::LeaseGrant(LeaseGrantResponse {
                    header: header(store),
                    id: r.id,
                    ttl,
                    error: String::new(),
                }),
                Vec::new(),
            ))
        }
        Op::LeaseRevoke(r) => {
            let keys = lessor.keys(r.id).ok_or(ServerError::LeaseNotFound)?;
            let txn = TxnRequest {
                success: keys
                    .into_iter()
                    .map(|key| RequestOp {
                        request: Some(request_op::Request::RequestDeleteRange(
                            DeleteRangeRequest {
                                key,
                                ..Default::default()
                            },
                        )),
                    })
                    .collect(),
                ..Default::default()
            };
            // One revision for all keys; the txn records `index` even if it deletes nothing.
            let (_, events) = store.txn(&txn, index, &|_| false)?;
            lessor.on_events(&events);
            lessor.remove(store, r.id)?;
            Ok((
                ApplyResponse::LeaseRevoke(LeaseRevokeResponse {
                    header: header(store),
                }),
                events,
            ))
        }
        Op::LeaseCheckpoint(r) => {
            lessor.checkpoint(store, &r.checkpoints)?;
            store.set_consistent_index(index);
            Ok((
                ApplyResponse::LeaseCheckpoint(LeaseCheckpointResponse {
                    header: header(store),
                }),
                Vec::new(),
            ))
        }
        other => Err(ServerError::Internal(format!(
            "not a lease operation: {other:?}"
        ))),
    }
}

impl EtcdServer {
    /// Renews lease `id` (a keep-alive) and returns its TTL. Served from the leader's memory,
    /// never through the raft log — except that clearing a checkpointed remaining TTL goes
    /// through raft first, as in etcd. On a member that is not the leader the renewal goes to
    /// [`EtcdServer::forward_lease_renew`]; on a fresh leader whose lessor is not promoted
    /// yet it waits (briefly) for the promotion.
    pub async fn lease_renew(&self, id: i64) -> Result<i64, ServerError> {
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        loop {
            let status = self.raft.status();
            if status.is_leader {
                self.wait_applied_index().await?;
                if self.lessor.is_primary() && self.lessor.needs_checkpoint_clear(id) {
                    self.propose(Op::LeaseCheckpoint(LeaseCheckpointRequest {
                        checkpoints: vec![LeaseCheckpoint {
                            id,
                            remaining_ttl: 0,
                        }],
                    }))
                    .await?;
                }
                match self.lessor.renew(id) {
                    Ok(ttl) => return Ok(ttl),
                    Err(RenewError::NotFound) => return Err(ServerError::LeaseNotFound),
                    Err(RenewError::NotPrimary) => {} // promotion pending: retry below
                }
            } else if status.leader_id != 0 {
                return self.forward_lease_renew(status.leader_id, id).await;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ServerError::Timeout);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Hook for multi-member clusters: a follower sends the renewal of `id` to `leader`
    /// (etcd forwards over the peer port's `/leases` endpoint) and returns the leader's
    /// answer. With one member this member is always the leader, so it is never reached
    /// with a live leader; the cluster issue implements the forwarding.
    pub async fn forward_lease_renew(&self, leader: u64, id: i64) -> Result<i64, ServerError> {
        tracing::debug!(leader = %format!("{leader:x}"), lease = id, "lease renewal needs forwarding to the leader");
        Err(ServerError::NotLeader)
    }

    /// TimeToLive of lease `id` from the leader's lessor (`None`: no such lease). Like
    /// renewals, it would be forwarded by a follower ([`EtcdServer::forward_lease_renew`]'s
    /// sibling, not needed with one member).
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<Option<LeaseStatus>, ServerError> {
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        loop {
            let status = self.raft.status();
            if status.is_leader && self.lessor.is_primary() {
                self.wait_applied_index().await?;
                return Ok(self.lessor.time_to_live(id, keys));
            }
            if !status.is_leader && status.leader_id != 0 {
                return Err(ServerError::NotLeader);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ServerError::Timeout);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests;
