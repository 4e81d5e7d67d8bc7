//! The lessor's background loop on each member: follow leadership, and on the leader revoke
//! expired leases (paced) and checkpoint remaining TTLs, all through raft.

use std::sync::Arc;
use std::time::Duration;

use oxcd_proto::etcdserverpb::{LeaseCheckpointRequest, LeaseRevokeRequest};
use tokio::sync::{watch, Semaphore};

use crate::error::ServerError;
use crate::server::EtcdServer;
use oxcd_lease::LEASE_REVOKE_RATE;

/// How often the leader's loop runs. Expired leases are found within one tick of their
/// deadline; leadership changes are acted on at once.
pub(crate) const TICK: Duration = Duration::from_millis(100);
/// Revokes in flight at once (etcd's `maxPendingRevokes`).
pub(crate) const MAX_PENDING_REVOKES: usize = 16;
/// Checkpoints per proposal (etcd's `maxLeaseCheckpointBatchSize`).
pub(crate) const MAX_CHECKPOINT_BATCH: usize = 1000;

/// Whether this member still leads in `term`, confirmed by a quorum: a ReadIndex round
/// (heartbeats the followers must answer) and leadership unchanged afterwards (etcd's
/// `ensureLeadership` before revoking expired leases).
async fn still_leads(server: &EtcdServer, term: u64) -> bool {
    match tokio::time::timeout(server.request_timeout(), server.raft.read_index()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "leadership not confirmed");
            return false;
        }
        Err(_) => {
            tracing::debug!("leadership not confirmed in time");
            return false;
        }
    }
    let now = *server.raft.leadership().borrow();
    now.is_leader() && now.term == term
}

/// Runs until `stop` turns true or raft stops. Only the raft leader's lessor is primary: the
/// loop promotes it (extending every lease by the election timeout) the moment raft says
/// this member leads, and demotes it the moment leadership is lost.
pub(crate) async fn run_lessor(server: Arc<EtcdServer>, mut stop: watch::Receiver<bool>) {
    let lessor = server.lessor.clone();
    let extend = server.cfg.election_timeout;
    let per_tick = (LEASE_REVOKE_RATE as u128 * TICK.as_millis() / 1000).max(1) as usize;
    let pending = Arc::new(Semaphore::new(MAX_PENDING_REVOKES));
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut leadership = server.raft.leadership();
    loop {
        let leader = leadership.borrow_and_update().is_leader();
        match (leader, lessor.is_primary()) {
            (true, false) => lessor.promote(extend),
            (false, true) => lessor.demote(),
            _ => {}
        }
        // A follower only waits for leadership to change; the leader also ticks, to pace
        // expiry and checkpoints.
        tokio::select! {
            _ = tick.tick(), if leader => {}
            changed = leadership.changed() => {
                if changed.is_err() {
                    break; // raft stopped
                }
                continue;
            }
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        let expired = lessor.take_expired(per_tick);
        if !expired.is_empty() {
            tracing::debug!(count = expired.len(), "revoking expired leases");
            let server = server.clone();
            let pending = pending.clone();
            let term = leadership.borrow().term;
            tokio::spawn(async move {
                // An old leader that was stuck (paused, a slow disk) still believes it leads
                // and finds every lease expired by its clock: it must not revoke them.
                if !still_leads(&server, term).await {
                    tracing::warn!(
                        count = expired.len(),
                        "not revoking expired leases: this member could not confirm it still \
                         leads (they are retried while it does)"
                    );
                    return;
                }
                for id in expired {
                    let Ok(permit) = pending.clone().acquire_owned().await else {
                        return;
                    };
                    let server = server.clone();
                    tokio::spawn(async move {
                        let r = server.propose_internal(LeaseRevokeRequest { id }).await;
                        match r {
                            Ok(_) | Err(ServerError::LeaseNotFound) => {}
                            Err(e) => {
                                tracing::warn!(lease = id, error = %e, "failed to revoke expired lease; will retry")
                            }
                        }
                        drop(permit);
                    });
                }
            });
        }
        let checkpoints = lessor.take_due_checkpoints(MAX_CHECKPOINT_BATCH);
        if !checkpoints.is_empty() {
            let server = server.clone();
            tokio::spawn(async move {
                let n = checkpoints.len();
                let r = server
                    .propose_internal(LeaseCheckpointRequest { checkpoints })
                    .await;
                if let Err(e) = r {
                    tracing::warn!(count = n, error = %e, "failed to checkpoint leases");
                }
            });
        }
    }
}
