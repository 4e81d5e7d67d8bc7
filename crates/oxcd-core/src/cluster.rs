//! The Cluster operations: MemberList, MemberAdd, MemberRemove, MemberUpdate, MemberPromote,
//! and publishing this member's attributes, with etcd's rules and errors.
//!
//! Adding, removing and promoting are raft membership changes (`ConfChangeV2`, the member in
//! its context, as etcd does); every member applies them in log order and refuses the same
//! ones ([`crate::apply`]). A MemberUpdate and an attribute publish change no raft
//! membership, so they are ordinary requests in the log.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oxcd_peer::PeerError;
use oxcd_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse, ResponseHeader,
};
use oxcd_proto::oxcdinternal::{ConfChangeContext, MemberAttributes, MemberRecord};
use oxcd_raft::eraftpb::ConfChangeType;
use oxcd_raft::RaftError;
use prost::Message;

use crate::auth::Credentials;
use crate::error::ServerError;
use crate::membership::ChangeKind;
use crate::proposal::ApplyResponse;
use crate::server::EtcdServer;

/// etcd's `readyPercent`: a learner may be promoted once its log matches 90% of the leader's.
const LEARNER_READY_PERCENT: f64 = 0.9;
/// How often a membership change waits for the one before it to be applied.
const PENDING_CHANGE_POLL: Duration = Duration::from_millis(20);
/// How long a follower waits before forwarding a MemberPromote again after the leader could
/// not answer.
const PROMOTE_RETRY: Duration = Duration::from_millis(100);

/// A member as the leader's `/members/promote` answer lists it.
fn member_from_peer(m: oxcd_peer::MemberInfo) -> Member {
    Member {
        id: m.id,
        name: m.name,
        peer_ur_ls: m.peer_urls,
        client_ur_ls: m.client_urls,
        is_learner: m.is_learner,
    }
}

/// etcd's `NewMember` id: SHA-1 over the sorted peer URLs, the cluster name (empty for
/// MemberAdd) and the time in seconds, first 8 bytes.
fn new_member_id(peer_urls: &[String], now_secs: u64) -> u64 {
    crate::membership::member_id(peer_urls, &now_secs.to_string())
}

/// Peer URLs as etcd's `types.NewURLs` accepts them: absolute `http(s)://host:port` URLs
/// without a path; returned as given.
fn check_peer_urls(urls: &[String]) -> Result<(), ServerError> {
    if urls.is_empty() {
        return Err(ServerError::MemberBadUrls);
    }
    for u in urls {
        let rest = u
            .strip_prefix("http://")
            .or_else(|| u.strip_prefix("https://"))
            .ok_or(ServerError::MemberBadUrls)?;
        let (host, port) = rest.rsplit_once(':').ok_or(ServerError::MemberBadUrls)?;
        if host.is_empty() || port.parse::<u16>().is_err() || rest.contains('/') {
            return Err(ServerError::MemberBadUrls);
        }
    }
    Ok(())
}

impl EtcdServer {
    /// Whether this member is a learner.
    pub(crate) fn is_learner(&self) -> bool {
        let m = self.membership.read();
        m.members.get(&m.local_id).is_some_and(|me| me.is_learner)
    }

    /// Member-change headers carry no revision, as etcd's.
    fn cluster_header(&self) -> Option<ResponseHeader> {
        Some(self.header(0))
    }

    /// MemberList; `linearizable` waits for the read barrier first.
    pub async fn member_list(
        &self,
        req: MemberListRequest,
    ) -> Result<MemberListResponse, ServerError> {
        self.refuse_on_learner()?;
        if req.linearizable {
            self.linearizable_barrier().await?;
        }
        let members = self.membership.read().to_proto();
        Ok(MemberListResponse {
            header: self.cluster_header(),
            members,
        })
    }

    /// MemberAdd: a new voter (or learner) with an id derived from its peer URLs and the
    /// time, as etcd derives it.
    pub async fn member_add(
        &self,
        cred: &Credentials,
        req: MemberAddRequest,
    ) -> Result<MemberAddResponse, ServerError> {
        self.refuse_on_learner()?;
        self.check_admin(cred).await?;
        check_peer_urls(&req.peer_ur_ls)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut peer_urls = req.peer_ur_ls.clone();
        peer_urls.sort();
        let member = MemberRecord {
            id: new_member_id(&peer_urls, now),
            name: String::new(),
            peer_urls: peer_urls.clone(),
            client_urls: Vec::new(),
            is_learner: req.is_learner,
        };
        let kind = if req.is_learner {
            ChangeKind::AddLearner
        } else {
            ChangeKind::Add
        };
        if self.cfg.strict_reconfig_check
            && !req.is_learner
            && !self.membership.read().ready_to_add_voter()
        {
            return Err(ServerError::MemberNotEnoughStarted);
        }
        let members = self.change_membership(kind, member.clone()).await?;
        Ok(MemberAddResponse {
            header: self.cluster_header(),
            member: Some(Member {
                id: member.id,
                name: String::new(),
                peer_ur_ls: peer_urls,
                client_ur_ls: Vec::new(),
                is_learner: member.is_learner,
            }),
            members,
        })
    }

    /// MemberRemove.
    pub async fn member_remove(
        &self,
        cred: &Credentials,
        req: MemberRemoveRequest,
    ) -> Result<MemberRemoveResponse, ServerError> {
        self.refuse_on_learner()?;
        self.check_admin(cred).await?;
        if self.cfg.strict_reconfig_check {
            let m = self.membership.read();
            let is_learner = m.members.get(&req.id).is_some_and(|x| x.is_learner);
            if !is_learner && !m.ready_to_remove_voter(req.id) {
                return Err(ServerError::MemberNotEnoughStarted);
            }
        }
        let member = MemberRecord {
            id: req.id,
            ..Default::default()
        };
        let members = self.change_membership(ChangeKind::Remove, member).await?;
        Ok(MemberRemoveResponse {
            header: self.cluster_header(),
            members,
        })
    }

    /// MemberPromote: only the leader knows whether the learner has caught up (90% of the
    /// leader's log), so only the leader promotes; a follower forwards the request to the
    /// leader's `POST /members/promote/<id>` and retries (a new leader, a lost connection)
    /// until the request timeout, as etcd's `PromoteMember` does.
    pub async fn member_promote(
        &self,
        cred: &Credentials,
        req: MemberPromoteRequest,
    ) -> Result<MemberPromoteResponse, ServerError> {
        self.refuse_on_learner()?;
        self.check_admin(cred).await?;
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        let mut leadership = self.raft.leadership();
        let members = loop {
            let l = *leadership.borrow_and_update();
            if l.is_leader() {
                let promoted = self.promote_here(req.id).await;
                crate::member_events::count_promote(&promoted);
                match promoted {
                    Err(ServerError::NotLeader) => {}
                    other => break other?,
                }
            } else if l.has_leader() {
                let urls = self.peer_urls_of(l.leader_id);
                match self.peer_client.member_promote(&urls, req.id).await {
                    Ok(ms) => break ms.into_iter().map(member_from_peer).collect(),
                    Err(PeerError::MemberNotFound) => return Err(ServerError::MemberNotFound),
                    Err(PeerError::MemberNotLearner) => return Err(ServerError::MemberNotLearner),
                    Err(PeerError::LearnerNotReady) => return Err(ServerError::LearnerNotReady),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot forward MemberPromote to the leader");
                    }
                }
            }
            // No leader, or the leader could not answer: wait for a change or a while.
            let wait = tokio::time::Instant::now() + PROMOTE_RETRY;
            let next = if wait < deadline { wait } else { deadline };
            let _ = tokio::time::timeout_at(next, leadership.changed()).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(ServerError::Timeout);
            }
        };
        Ok(MemberPromoteResponse {
            header: self.cluster_header(),
            members,
        })
    }

    /// MemberPromote on the leader ([`ServerError::NotLeader`] elsewhere): the members
    /// afterwards. Also what a follower's forwarded request runs.
    pub(crate) async fn promote_here(&self, id: u64) -> Result<Vec<Member>, ServerError> {
        let matches = self
            .raft
            .match_indexes()
            .await?
            .ok_or(ServerError::NotLeader)?;
        if let Some(learner) = matches.get(&id) {
            let leader = matches
                .get(&self.membership.read().local_id)
                .copied()
                .unwrap_or(0);
            if (*learner as f64) < leader as f64 * LEARNER_READY_PERCENT {
                return Err(ServerError::LearnerNotReady);
            }
        }
        if self.cfg.strict_reconfig_check && !self.membership.read().ready_to_promote() {
            return Err(ServerError::MemberNotEnoughStarted);
        }
        let member = MemberRecord {
            id,
            ..Default::default()
        };
        self.change_membership(ChangeKind::Promote, member).await
    }

    /// MemberUpdate: new peer URLs for a member.
    pub async fn member_update(
        &self,
        cred: &Credentials,
        req: MemberUpdateRequest,
    ) -> Result<MemberUpdateResponse, ServerError> {
        self.refuse_on_learner()?;
        self.check_admin(cred).await?;
        check_peer_urls(&req.peer_ur_ls)?;
        self.membership
            .read()
            .check_update(req.id, &req.peer_ur_ls)?;
        let members = self.propose_as(cred, req).await?;
        Ok(MemberUpdateResponse {
            header: self.cluster_header(),
            members,
        })
    }

    /// Publishes this member's name and client URLs through raft, so every member's
    /// MemberList shows them (etcd's `publish`, done once the member serves).
    pub async fn publish_attributes(
        &self,
        name: String,
        client_urls: Vec<String>,
    ) -> Result<(), ServerError> {
        let member_id = self.membership.read().local_id;
        self.propose_internal(MemberAttributes {
            member_id,
            name,
            client_urls,
        })
        .await
    }

    /// Proposes a membership change and waits for it to be applied. etcd checks the
    /// change before proposing and every member checks it again when it applies.
    async fn change_membership(
        &self,
        kind: ChangeKind,
        member: MemberRecord,
    ) -> Result<Vec<Member>, ServerError> {
        self.membership.read().check_change(kind, &member)?;
        let change_type = match kind {
            ChangeKind::Add | ChangeKind::Promote => ConfChangeType::AddNode,
            ChangeKind::AddLearner => ConfChangeType::AddLearnerNode,
            ChangeKind::Remove => ConfChangeType::RemoveNode,
        };
        let id = self.next_id();
        let context = ConfChangeContext {
            request_id: id,
            is_promote: kind == ChangeKind::Promote,
            member: Some(member.clone()),
        };
        let cc = oxcd_raft::conf_change(&[(change_type, member.id)], context.encode_to_vec());
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        let rx = self.waiters.register(id);
        loop {
            match self.raft.propose_conf_change(cc.clone()).await {
                Ok(()) => break,
                // One membership change at a time: wait for the one before to apply.
                Err(RaftError::ConfChangePending) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(PENDING_CHANGE_POLL).await;
                }
                Err(e) => {
                    self.waiters.cancel(id);
                    return Err(match e {
                        RaftError::ConfChangePending => ServerError::Timeout,
                        e => e.into(),
                    });
                }
            }
        }
        let applied = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => return Err(ServerError::Stopped),
            Err(_) => {
                self.waiters.cancel(id);
                return Err(ServerError::Timeout);
            }
        };
        match applied {
            ApplyResponse::Members(members) => Ok(members),
            _ => Err(ServerError::Internal(
                "the applier answered a membership change with another kind of response".into(),
            )),
        }
    }
}

/// Publishes this member's attributes once a leader is known, retrying until it is
/// applied or `stop` turns true (etcd's `publish`: every member does it on each start).
pub(crate) async fn publish_loop(
    server: std::sync::Arc<EtcdServer>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    published: tokio::sync::watch::Sender<bool>,
) {
    let name = server.cfg.name.clone();
    let client_urls = server.cfg.cluster.advertise_client_urls.clone();
    let mut leadership = server.raft.leadership();
    loop {
        let attempt = async {
            leadership
                .wait_for(|l| l.has_leader())
                .await
                .map_err(|_| ServerError::Stopped)?;
            server
                .publish_attributes(name.clone(), client_urls.clone())
                .await
        };
        let result = tokio::select! {
            r = attempt => r,
            _ = stop.changed() => return,
        };
        match result {
            Ok(()) => {
                tracing::info!(%name, ?client_urls, "published local member attributes to the cluster");
                published.send_replace(true);
                return;
            }
            Err(ServerError::Stopped) => return,
            Err(e) => {
                tracing::warn!(error = %e, "failed to publish local member attributes; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_checked_as_etcd_parses_them() {
        assert!(check_peer_urls(&["http://10.0.0.1:2380".into()]).is_ok());
        assert!(check_peer_urls(&["https://h:1".into()]).is_ok());
        for bad in [
            "10.0.0.1:2380",
            "http://h",
            "http://h:x",
            "http://h:1/p",
            "unix://s:1",
        ] {
            assert_eq!(
                check_peer_urls(&[bad.into()]),
                Err(ServerError::MemberBadUrls),
                "{bad}"
            );
        }
        assert_eq!(check_peer_urls(&[]), Err(ServerError::MemberBadUrls));
    }

    #[test]
    fn member_ids_follow_urls_and_time() {
        let urls = vec!["http://a:2380".to_string()];
        assert_ne!(new_member_id(&urls, 1), new_member_id(&urls, 2));
        assert_eq!(new_member_id(&urls, 7), new_member_id(&urls, 7));
    }
}
