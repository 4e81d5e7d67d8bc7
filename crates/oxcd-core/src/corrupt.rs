//! Corruption checks between members (etcd's `corrupt.go`): every member that applied the
//! same log has the same HashKV at the same revision, so a member whose hash differs has
//! diverged (a flipped bit on disk, a bug).
//!
//! * `--experimental-initial-corrupt-check`: before serving clients, a member compares its
//!   own hash at its current revision with each peer's at that revision
//!   ([`EtcdServer::initial_corrupt_check`]) and refuses to start on a mismatch, so a
//!   corrupt member never serves (or spreads) its data.
//! * `--experimental-corrupt-check-time`: the leader compares its hash with every peer's at
//!   that interval ([`monitor`]); a divergent member gets the CORRUPT alarm, raised through
//!   raft, after which the cluster refuses writes (`AlarmGate`) until an operator acts.
//!
//! Peers' hashes come over the peer port (etcd's `POST /members/hashkv`). A peer that is
//! unreachable, behind (a future revision) or compacted past the revision is skipped with a
//! warning, as etcd does.

use std::sync::Arc;
use std::time::Duration;

use oxcd_mvcc::KvHash;
use oxcd_peer::{PeerError, PeerHashKv};
use oxcd_proto::etcdserverpb::alarm_request::AlarmAction;
use oxcd_proto::etcdserverpb::{AlarmRequest, AlarmType};
use tokio::sync::watch;

use crate::error::ServerError;
use crate::server::EtcdServer;

/// One peer's answer.
struct PeerHash {
    id: u64,
    answer: Result<PeerHashKv, PeerError>,
}

impl EtcdServer {
    /// This member's own hash at its current revision.
    fn own_hash(&self) -> Result<KvHash, ServerError> {
        Ok(crate::backend_observer::timed(
            crate::BackendOp::HashRev,
            || self.store.hash_kv(0),
        )?)
    }

    /// Every other member's hash up to `revision`, asked concurrently.
    async fn peer_hashes(&self, revision: i64) -> Vec<PeerHash> {
        let peers: Vec<(u64, Vec<String>)> = {
            let m = self.membership.read();
            m.members
                .values()
                .filter(|p| p.id != m.local_id && !p.peer_urls.is_empty())
                .map(|p| (p.id, p.peer_urls.clone()))
                .collect()
        };
        let timeout = self.request_timeout();
        let asks = peers.into_iter().map(|(id, urls)| async move {
            let ask = self.peer_client.hash_kv(&urls, revision);
            let answer = match tokio::time::timeout(timeout, ask).await {
                Ok(a) => a,
                Err(_) => Err(PeerError::Unreachable("timed out".into())),
            };
            if let Err(e) = &answer {
                tracing::warn!(
                    remote_peer_id = %format!("{id:x}"),
                    requested_revision = revision,
                    error = %e,
                    "failed hash kv request"
                );
            }
            PeerHash { id, answer }
        });
        futures::future::join_all(asks).await
    }

    /// `--experimental-initial-corrupt-check`: compares this member's hash with every
    /// peer's at this member's revision; on a mismatch (same compact revision, another
    /// hash) returns the error to stop with. Peers that cannot answer are skipped.
    pub async fn initial_corrupt_check(&self) -> Result<(), String> {
        let local = self.membership.read().local_id;
        tracing::info!(
            local_member_id = %format!("{local:x}"),
            timeout = ?self.request_timeout(),
            "starting initial corruption check"
        );
        let own = self
            .own_hash()
            .map_err(|e| format!("{local:x} failed to fetch hash ({e})"))?;
        let mut mismatches = Vec::new();
        for p in self.peer_hashes(own.hash_revision).await {
            let Ok(theirs) = p.answer else { continue };
            if theirs.hash == own.hash {
                continue;
            }
            if theirs.compact_revision == own.compact_revision {
                tracing::warn!(
                    local_member_id = %format!("{local:x}"),
                    local_member_revision = own.hash_revision,
                    local_member_compact_revision = own.compact_revision,
                    local_member_hash = own.hash,
                    remote_peer_id = %format!("{:x}", p.id),
                    remote_peer_revision = theirs.header.revision,
                    remote_peer_compact_revision = theirs.compact_revision,
                    remote_peer_hash = theirs.hash,
                    "found different hash values from remote peer"
                );
                mismatches.push(format!("{:x} has hash {}", p.id, theirs.hash));
            } else {
                tracing::warn!(
                    remote_peer_id = %format!("{:x}", p.id),
                    local_member_compact_revision = own.compact_revision,
                    remote_peer_compact_revision = theirs.compact_revision,
                    "found different compact revision values from remote peer"
                );
            }
        }
        if !mismatches.is_empty() {
            return Err(format!(
                "{local:x} found data inconsistency with peers: its hash at revision {} is {} \
                 but member {}; this member's data has diverged: remove it from the cluster \
                 (etcdctl member remove {local:x}), wipe its data dir and add it back \
                 (etcdctl member add)",
                own.hash_revision,
                own.hash,
                mismatches.join(", member ")
            ));
        }
        tracing::info!(
            local_member_id = %format!("{local:x}"),
            "initial corruption checking passed; no corruption"
        );
        Ok(())
    }

    /// One periodic check on the leader (etcd's `checkHashKV`): its hash before and after a
    /// read barrier (a change at the same revision means its own data changed under it),
    /// then each peer's at the same revision; the first divergent member found gets the
    /// CORRUPT alarm.
    async fn check_hash_kv(&self) -> Result<(), ServerError> {
        let local = self.membership.read().local_id;
        let first = self.own_hash()?;
        let peers = self.peer_hashes(first.hash_revision).await;
        self.linearizable_barrier().await?;
        let second = self.own_hash()?;
        let mut corrupt = None;
        if second.hash != first.hash
            && second.hash_revision == first.hash_revision
            && second.compact_revision == first.compact_revision
        {
            tracing::warn!(
                revision = first.hash_revision,
                hash_1 = first.hash,
                hash_2 = second.hash,
                "found hash mismatch"
            );
            corrupt = Some(local);
        }
        let mut checked = 0;
        for p in peers {
            let Ok(theirs) = p.answer else { continue };
            checked += 1;
            let peer = format!("{:x}", p.id);
            if theirs.header.revision > second.hash_revision {
                tracing::warn!(
                    leader_revision = second.hash_revision,
                    follower_revision = theirs.header.revision,
                    follower_peer_id = %peer,
                    "revision from follower must be less than or equal to leader's"
                );
                corrupt.get_or_insert(p.id);
            }
            if theirs.compact_revision > second.compact_revision {
                tracing::warn!(
                    leader_compact_revision = second.compact_revision,
                    follower_compact_revision = theirs.compact_revision,
                    follower_peer_id = %peer,
                    "compact revision from follower must be less than or equal to leader's"
                );
                corrupt.get_or_insert(p.id);
            }
            if theirs.compact_revision == first.compact_revision && theirs.hash != first.hash {
                tracing::warn!(
                    revision = first.hash_revision,
                    leader_hash = first.hash,
                    follower_hash = theirs.hash,
                    follower_peer_id = %peer,
                    "same compact revision then hashes must match"
                );
                corrupt.get_or_insert(p.id);
            }
        }
        tracing::debug!(
            number_of_peers_checked = checked,
            "finished peer corruption check"
        );
        if let Some(member_id) = corrupt {
            tracing::error!(
                member_id = %format!("{member_id:x}"),
                "raising the CORRUPT alarm: the member's data has diverged; the cluster \
                 refuses writes until it is replaced and the alarm disarmed"
            );
            self.alarm(
                &crate::auth::Credentials::server(),
                AlarmRequest {
                    action: AlarmAction::Activate as i32,
                    member_id,
                    alarm: AlarmType::Corrupt as i32,
                },
            )
            .await?;
        }
        Ok(())
    }
}

/// `--experimental-corrupt-check-time`: every `interval`, while this member leads, compares
/// the members' hashes; runs until `stop` turns true.
pub(crate) async fn monitor(
    server: Arc<EtcdServer>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    tracing::info!(
        local_member_id = %format!("{:x}", server.membership.read().local_id),
        ?interval,
        "enabled corruption checking"
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        if !server.raft.leadership().borrow().is_leader() {
            continue;
        }
        if server.alarms.is_active(AlarmType::Corrupt) {
            continue; // already raised: nothing more to tell
        }
        if let Err(e) = server.check_hash_kv().await {
            tracing::warn!(error = %e, "failed to check hash KV");
        }
    }
}
