//! The lease operations. Grants and revokes go through raft; renewals and TimeToLive are
//! served from the leader's lessor, which must first have applied everything committed.

use oxcd_lease::{RenewError, MAX_LEASE_TTL};
use oxcd_proto::etcdserverpb::{
    LeaseCheckpoint, LeaseCheckpointRequest, LeaseGrantRequest, LeaseGrantResponse,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};

use crate::error::ServerError;
use crate::server::EtcdServer;

/// How often a renewal or TimeToLive waiting for a fresh leader's lessor looks again.
const PROMOTION_POLL: std::time::Duration = std::time::Duration::from_millis(20);

impl EtcdServer {
    /// LeaseGrant: a TTL above etcd's maximum fails at once; id 0 asks the server to
    /// choose one (drawn before proposing, so every member applies the same id).
    pub async fn lease_grant(
        &self,
        mut req: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, ServerError> {
        if req.ttl > MAX_LEASE_TTL {
            return Err(ServerError::LeaseTtlTooLarge);
        }
        while req.id == 0 {
            req.id = (self.next_id() & (i64::MAX as u64)) as i64;
        }
        let mut resp = self.propose(req).await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// LeaseRevoke: deletes the lease's keys in one revision, through raft.
    pub async fn lease_revoke(
        &self,
        req: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, ServerError> {
        let mut resp = self.propose(req).await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

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
                    self.propose(LeaseCheckpointRequest {
                        checkpoints: vec![LeaseCheckpoint {
                            id,
                            remaining_ttl: 0,
                        }],
                    })
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
            tokio::time::sleep(PROMOTION_POLL).await;
        }
    }

    /// Hook for multi-member clusters: a follower sends the renewal of `id` to `leader`
    /// (etcd forwards over the peer port's `/leases` endpoint) and returns the leader's
    /// answer. With one member this member is always the leader, so it is never reached
    /// with a live leader; the cluster issue implements the forwarding.
    async fn forward_lease_renew(&self, leader: u64, id: i64) -> Result<i64, ServerError> {
        tracing::debug!(leader = %format!("{leader:x}"), lease = id, "lease renewal needs forwarding to the leader");
        Err(ServerError::NotLeader)
    }

    /// LeaseTimeToLive from the leader's lessor; an unknown lease answers TTL -1, as etcd.
    pub async fn lease_time_to_live(
        &self,
        req: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, ServerError> {
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        let status = loop {
            let status = self.raft.status();
            if status.is_leader && self.lessor.is_primary() {
                self.wait_applied_index().await?;
                break self.lessor.time_to_live(req.id, req.keys);
            }
            if !status.is_leader && status.leader_id != 0 {
                return Err(ServerError::NotLeader);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ServerError::Timeout);
            }
            tokio::time::sleep(PROMOTION_POLL).await;
        };
        let mut resp = match status {
            Some(st) => LeaseTimeToLiveResponse {
                header: None,
                id: req.id,
                ttl: st.remaining,
                granted_ttl: st.granted,
                keys: st.keys,
            },
            None => LeaseTimeToLiveResponse {
                header: None,
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        };
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// LeaseLeases: every lease this member knows.
    pub fn lease_leases(&self) -> LeaseLeasesResponse {
        let mut resp = LeaseLeasesResponse {
            header: None,
            leases: self
                .lessor
                .leases()
                .into_iter()
                .map(|id| LeaseStatus { id })
                .collect(),
        };
        self.fill_header(&mut resp.header);
        resp
    }
}
