//! The lease operations. Grants and revokes go through raft; renewals and TimeToLive are
//! served from the leader's lessor, which must first have applied everything committed.

use oxcd_lease::{RenewError, MAX_LEASE_TTL};
use oxcd_proto::etcdserverpb::{
    LeaseCheckpoint, LeaseCheckpointRequest, LeaseGrantRequest, LeaseGrantResponse,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};

use crate::auth::Credentials;
use crate::error::ServerError;
use crate::server::EtcdServer;

/// Which member's lessor serves renewals and TimeToLive.
enum Primary {
    /// This member's.
    Here,
    /// The leader's, with this id.
    At(u64),
}

impl EtcdServer {
    /// LeaseGrant: a TTL above etcd's maximum fails at once; id 0 asks the server to
    /// choose one (drawn before proposing, so every member applies the same id).
    pub async fn lease_grant(
        &self,
        cred: &Credentials,
        mut req: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, ServerError> {
        self.refuse_on_learner()?;
        if req.ttl > MAX_LEASE_TTL {
            return Err(ServerError::LeaseTtlTooLarge);
        }
        while req.id == 0 {
            req.id = (self.next_id() & (i64::MAX as u64)) as i64;
        }
        self.check_quota(crate::quota::LEASE_COST).await?;
        let mut resp = self.propose_as(cred, req).await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// LeaseRevoke: deletes the lease's keys in one revision, through raft.
    pub async fn lease_revoke(
        &self,
        cred: &Credentials,
        req: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, ServerError> {
        self.refuse_on_learner()?;
        let mut resp = self.propose_as(cred, req).await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// Renews lease `id` (a keep-alive) and returns its TTL. Served from the leader's memory,
    /// never through the raft log — except that clearing a checkpointed remaining TTL goes
    /// through raft first, as in etcd. On a member that is not the leader the renewal goes to
    /// [`EtcdServer::forward_lease_renew`]; on a fresh leader whose lessor is not promoted
    /// yet it waits (briefly) for the promotion.
    pub async fn lease_renew(&self, id: i64) -> Result<i64, ServerError> {
        self.refuse_on_learner()?;
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        loop {
            match self.lease_primary(deadline).await? {
                Primary::Here => {}
                Primary::At(leader) => return self.forward_lease_renew(leader, id).await,
            }
            self.wait_applied_index().await?;
            if self.lessor.is_primary() && self.lessor.needs_checkpoint_clear(id) {
                self.propose_internal(LeaseCheckpointRequest {
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
                // Demoted meanwhile: ask again who serves it.
                Err(RenewError::NotPrimary) => {}
            }
        }
    }

    /// Where leases are served: here once this member leads and its lessor is promoted, or
    /// at the leader. Waits (for events, until `deadline`) while there is no leader or the
    /// promotion is pending.
    async fn lease_primary(&self, deadline: tokio::time::Instant) -> Result<Primary, ServerError> {
        let mut leadership = self.raft.leadership();
        let mut primary = self.lessor.subscribe_primary();
        loop {
            let l = *leadership.borrow_and_update();
            if l.is_leader() && *primary.borrow_and_update() {
                return Ok(Primary::Here);
            }
            if !l.is_leader() && l.has_leader() {
                return Ok(Primary::At(l.leader_id));
            }
            let changed = async {
                tokio::select! {
                    r = leadership.changed() => r.is_ok(),
                    r = primary.changed() => r.is_ok(),
                }
            };
            match tokio::time::timeout_at(deadline, changed).await {
                Ok(true) => {}
                Ok(false) => return Err(ServerError::Stopped),
                Err(_) => return Err(ServerError::Timeout),
            }
        }
    }

    /// A follower sends the renewal of `id` to `leader` over the peer port (etcd forwards to
    /// the leader's `/leases` endpoint) and returns the leader's answer.
    async fn forward_lease_renew(&self, leader: u64, id: i64) -> Result<i64, ServerError> {
        let urls = self.peer_urls_of(leader);
        self.peer_client
            .lease_renew(&urls, id)
            .await
            .map_err(crate::peer::from_peer_error)
    }

    /// LeaseTimeToLive from the leader's lessor; an unknown lease answers TTL -1, as etcd.
    pub async fn lease_time_to_live(
        &self,
        req: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, ServerError> {
        self.refuse_on_learner()?;
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        let status = match self.lease_primary(deadline).await? {
            Primary::Here => {
                self.wait_applied_index().await?;
                self.lessor.time_to_live(req.id, req.keys)
            }
            // A follower asks the leader over the peer port, like renewals.
            Primary::At(leader) => {
                let urls = self.peer_urls_of(leader);
                let mut resp = self
                    .peer_client
                    .lease_time_to_live(&urls, req.id, req.keys)
                    .await
                    .map_err(crate::peer::from_peer_error)?;
                self.fill_header(&mut resp.header);
                return Ok(resp);
            }
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
    pub fn lease_leases(&self) -> Result<LeaseLeasesResponse, ServerError> {
        self.refuse_on_learner()?;
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
        Ok(resp)
    }
}
