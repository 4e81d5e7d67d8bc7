//! oxcd-lease: the lessor. Leases' TTLs, keep-alives, key attachments and expiry, with
//! etcd's semantics, persisted in an auxiliary table of the MVCC backend.
//!
//! * [`Lessor`] (`lessor.rs`) holds every lease, its attached keys, and on the primary (the
//!   raft leader) the expiry and checkpoint queues.
//! * [`apply_grant`], [`apply_revoke`] and [`apply_checkpoint`] apply the replicated lease
//!   operations for the server's applier, in log order; a revoke deletes every attached key
//!   in one revision.
//! * The server (oxcd-core) drives the primary: it promotes and demotes the lessor as
//!   leadership changes, proposes revokes of expired leases ([`Lessor::take_expired`]) and
//!   remaining-TTL checkpoints ([`Lessor::take_due_checkpoints`]), and serves renewals.
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

use oxcd_mvcc::{MvccError, Store};
use oxcd_proto::etcdserverpb::{
    request_op, DeleteRangeRequest, LeaseCheckpointRequest, LeaseCheckpointResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, RequestOp,
    ResponseHeader, TxnRequest,
};
use oxcd_proto::mvccpb::Event;

pub use lessor::{
    LeaseStatus, Lessor, RenewError, EXPIRED_RETRY_INTERVAL, LEASE_REVOKE_RATE, LEASE_TABLE,
    MAX_LEASE_TTL,
};

/// Why a replicated lease operation failed. Nothing was changed when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// No such lease (or the reserved id 0).
    #[error("lease not found")]
    NotFound,
    /// A grant named an id that is already granted.
    #[error("lease already exists")]
    Exists,
    /// A grant asked for more than [`MAX_LEASE_TTL`] seconds.
    #[error("too large lease TTL")]
    TtlTooLarge,
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] MvccError),
}

fn header(store: &Store) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision: store.current_revision(),
        ..Default::default()
    })
}

/// Applies a replicated LeaseGrant at raft index `index`.
pub fn apply_grant(
    store: &Store,
    lessor: &Lessor,
    r: &LeaseGrantRequest,
    index: u64,
) -> Result<LeaseGrantResponse, LeaseError> {
    let ttl = lessor.grant(store, r.id, r.ttl)?;
    store.set_consistent_index(index);
    Ok(LeaseGrantResponse {
        header: header(store),
        id: r.id,
        ttl,
        error: String::new(),
    })
}

/// Applies a replicated LeaseRevoke at raft index `index`: every attached key is deleted in
/// one revision (the returned DELETE events), then the lease is forgotten.
pub fn apply_revoke(
    store: &Store,
    lessor: &Lessor,
    r: &LeaseRevokeRequest,
    index: u64,
) -> Result<(LeaseRevokeResponse, Vec<Event>), LeaseError> {
    let keys = lessor.keys(r.id).ok_or(LeaseError::NotFound)?;
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
        LeaseRevokeResponse {
            header: header(store),
        },
        events,
    ))
}

/// Applies replicated remaining-TTL checkpoints at raft index `index`.
pub fn apply_checkpoint(
    store: &Store,
    lessor: &Lessor,
    r: &LeaseCheckpointRequest,
    index: u64,
) -> Result<LeaseCheckpointResponse, LeaseError> {
    lessor.checkpoint(store, &r.checkpoints)?;
    store.set_consistent_index(index);
    Ok(LeaseCheckpointResponse {
        header: header(store),
    })
}

#[cfg(test)]
mod tests;
