//! [`PeerHandler`]: what the transport needs from the member it serves (oxcd-core
//! implements it), and the values it passes.

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use oxcd_proto::etcdserverpb::LeaseTimeToLiveResponse;
use oxcd_raft::eraftpb::Message;
use serde::{Deserialize, Serialize};

use crate::{PeerError, PeerStats};

/// A member as etcd's peer endpoint `GET /members` shows it (etcd's `membership.Member`
/// JSON: the id as a number, `isLearner`, `name` and `clientURLs` left out when empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemberInfo {
    /// Member id.
    pub id: u64,
    /// Peer URLs.
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    /// Whether it is a learner.
    #[serde(rename = "isLearner", skip_serializing_if = "std::ops::Not::not")]
    pub is_learner: bool,
    /// Name (empty until the member has published it).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Client URLs (empty until published).
    #[serde(rename = "clientURLs", skip_serializing_if = "Vec::is_empty")]
    pub client_urls: Vec<String>,
}

/// Versions for `GET /version` (etcd's `{"etcdserver":..,"etcdcluster":..}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    /// The etcd server version this member answers as.
    #[serde(rename = "etcdserver")]
    pub server: String,
    /// The cluster version (`"not_decided"` until known).
    #[serde(rename = "etcdcluster")]
    pub cluster: String,
}

/// A member's hash of its key space, as etcd's peer endpoint `POST /members/hashkv` answers
/// it (etcd's `HashKVResponse` in JSON: `{"header":{"member_id","revision"},"hash",
/// "compact_revision"}`), for the corruption checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerHashKv {
    /// Who answered, and its current revision.
    pub header: PeerHashHeader,
    /// The hash of every revision up to the one asked for.
    pub hash: u32,
    /// The answering member's compact revision.
    pub compact_revision: i64,
}

/// The part of a response header the corruption checks read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerHashHeader {
    /// The member's id.
    pub member_id: u64,
    /// The member's current revision.
    pub revision: i64,
}

/// What the peer transport needs from its member, on both sides of a connection.
///
/// Called from tokio tasks: methods returning plainly must not block for long (the
/// snapshot methods are run on blocking threads by the transport).
pub trait PeerHandler: Send + Sync + 'static {
    /// This member's cluster id (0 while it does not know it yet: a joining member before
    /// it has learned the cluster; its connections are then not checked).
    fn cluster_id(&self) -> u64;

    /// This member's id.
    fn member_id(&self) -> u64;

    /// Feeds a raft message from a peer into the local raft node
    /// (`RaftHandle::step`).
    fn step(&self, msg: Message) -> Result<(), PeerError>;

    /// Whether `member_id` was removed from the cluster (its connections are refused
    /// with [`crate::MEMBER_REMOVED`]).
    fn is_removed(&self, member_id: u64) -> bool;

    /// The members, for `GET /members`.
    fn members(&self) -> Vec<MemberInfo>;

    /// Versions, for `GET /version`.
    fn versions(&self) -> Versions;

    /// Directory for snapshot files being sent or received (etcd's `member/snap`); on the
    /// file system of the backend, so a received file can be renamed into place.
    fn snapshot_dir(&self) -> PathBuf;

    /// Writes a consistent copy of the backend to `dest` (the leader's side of a
    /// snapshot; `oxcd_mvcc::Store::export_snapshot`). It must hold the state at the
    /// snapshot's index or later. Runs on a blocking thread.
    fn export_snapshot(&self, dest: &Path) -> Result<u64, PeerError>;

    /// A snapshot arrived: `file` (in [`PeerHandler::snapshot_dir`], fsynced) holds the
    /// sender's backend and `msg` is the `MsgSnapshot` describing it. On success the file
    /// is the handler's: it must **rename** it (durably) to a name of its own where its
    /// applier will find it (the snapshot's data names it), since files under the
    /// transport's names are removed by [`crate::remove_partial_snapshots`], then step
    /// `msg`. On error the transport removes the file and the sender reports the snapshot
    /// failed. Runs on a blocking thread.
    fn receive_snapshot(&self, msg: Message, file: &Path) -> Result<(), PeerError>;

    /// Where the receiving side counts bytes and failures per sender (share it with the
    /// transport's [`crate::TransportOptions::stats`]); `None`: not counted.
    fn peer_stats(&self) -> Option<std::sync::Arc<PeerStats>> {
        None
    }

    /// A follower forwarded a lease keep-alive: renew lease `id` if this member leads and
    /// return its TTL in seconds ([`PeerError::LeaseNotFound`], [`PeerError::NotLeader`]).
    fn lease_renew(&self, id: i64) -> BoxFuture<'_, Result<i64, PeerError>>;

    /// A follower forwarded a TimeToLive request (`keys`: list the attached keys).
    fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> BoxFuture<'_, Result<LeaseTimeToLiveResponse, PeerError>>;

    /// A follower forwarded a MemberPromote (etcd's `POST /members/promote/<id>`): promote
    /// learner `id` if this member leads and return the members afterwards
    /// ([`PeerError::MemberNotFound`], [`PeerError::MemberNotLearner`],
    /// [`PeerError::LearnerNotReady`], [`PeerError::NotLeader`]). A member that does not
    /// serve it (one still joining) answers [`PeerError::NotLeader`].
    fn member_promote(&self, id: u64) -> BoxFuture<'_, Result<Vec<MemberInfo>, PeerError>> {
        let _ = id;
        Box::pin(async { Err(PeerError::NotLeader) })
    }

    /// A peer's corruption check asks for this member's hash of every revision up to
    /// `revision` (etcd's `POST /members/hashkv`): [`PeerError::InvalidRequest`] carrying
    /// etcd's text for a compacted or future revision. Runs on a blocking thread. A member
    /// that does not serve it (one still joining) answers [`PeerError::Internal`].
    fn hash_kv(&self, revision: i64) -> Result<PeerHashKv, PeerError> {
        let _ = revision;
        Err(PeerError::Internal(
            "this member does not serve hashes yet".into(),
        ))
    }
}
