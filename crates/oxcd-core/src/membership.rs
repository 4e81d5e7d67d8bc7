//! Cluster membership: member and cluster IDs computed exactly as etcd computes them, so a
//! member bootstrapped with the same flags gets the same IDs under oxcd as under etcd.
//!
//! The membership is stored in the backend (auxiliary table [`MEMBERS_TABLE`]: one JSON
//! record per member keyed by its id, plus the cluster id and this member's id under
//! [`CLUSTER_KEY`]), written in the same transaction as the consistent index, so a crash
//! never leaves membership and data out of step. A restart ignores `--initial-cluster`,
//! as etcd does once a data dir exists. Data dirs from oxcd before the membership moved
//! into the backend kept it in `member/cluster.json`: it is migrated on open.

use std::collections::{BTreeMap, BTreeSet};

use oxcd_mvcc::{MvccError, Store};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use oxcd_proto::etcdserverpb as pb;
use oxcd_proto::oxcdinternal::MemberRecord;

use crate::config::ClusterSpec;
use crate::data_dir::DataDir;
use crate::error::ServerError;

/// The backend's auxiliary table holding the membership.
pub(crate) const MEMBERS_TABLE: &str = "members";
/// The key of the cluster record in [`MEMBERS_TABLE`] (member keys are 8 bytes).
pub(crate) const CLUSTER_KEY: &[u8] = b"cluster";

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Member (and raft) ID.
    pub id: u64,
    /// Human-readable name (empty until the member has started, in etcd).
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs.
    pub client_urls: Vec<String>,
    /// Whether it is a non-voting learner.
    pub is_learner: bool,
}

/// The membership this server knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Cluster ID.
    pub cluster_id: u64,
    /// This member's ID.
    pub local_id: u64,
    /// All members by ID.
    pub members: BTreeMap<u64, Member>,
    /// Members removed from the cluster: their ids may never come back (etcd's rule).
    #[serde(default)]
    pub removed: BTreeSet<u64>,
}

/// etcd's member ID: the first 8 bytes (big-endian) of SHA-1 over the sorted peer URLs and the
/// cluster token.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut h = Sha1::new();
    for u in &urls {
        h.update(u.as_bytes());
    }
    h.update(token.as_bytes());
    first_u64(&h.finalize())
}

/// etcd's cluster ID: SHA-1 over the sorted member IDs, each 8 bytes big-endian.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    first_u64(&h.finalize())
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(b)
}

/// The cluster record stored under [`CLUSTER_KEY`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClusterRecord {
    cluster_id: u64,
    local_id: u64,
    #[serde(default)]
    removed: BTreeSet<u64>,
}

impl Membership {
    /// The membership of a new cluster as `--initial-cluster` describes it.
    pub fn bootstrap(name: &str, spec: &ClusterSpec) -> Membership {
        let mut members = BTreeMap::new();
        for (member_name, peer_urls) in &spec.initial_cluster {
            let id = member_id(peer_urls, &spec.initial_cluster_token);
            let client_urls = if member_name == name {
                spec.advertise_client_urls.clone()
            } else {
                Vec::new()
            };
            members.insert(
                id,
                Member {
                    id,
                    name: member_name.clone(),
                    peer_urls: peer_urls.clone(),
                    client_urls,
                    is_learner: false,
                },
            );
        }
        let local_id = member_id(
            &spec.initial_advertise_peer_urls,
            &spec.initial_cluster_token,
        );
        let ids: Vec<u64> = members.keys().copied().collect();
        Membership {
            cluster_id: cluster_id(&ids),
            local_id,
            members,
            removed: BTreeSet::new(),
        }
    }

    /// The membership of a member joining a running cluster (`--initial-cluster-state
    /// existing`), as its peers list it: this member must be among them (added with
    /// MemberAdd first), found by its advertised peer URLs.
    pub fn joined(
        cluster_id: u64,
        members: Vec<Member>,
        spec: &ClusterSpec,
    ) -> Result<Membership, String> {
        let mut mine = spec.initial_advertise_peer_urls.clone();
        mine.sort();
        let local = members.iter().find(|m| {
            let mut urls = m.peer_urls.clone();
            urls.sort();
            urls == mine
        });
        let Some(local) = local else {
            return Err(format!(
                "this member's peer URLs {mine:?} are not in the cluster's member list; add it \
                 first (etcdctl member add <name> --peer-urls={}) and start it with the \
                 --initial-cluster that command prints",
                mine.join(",")
            ));
        };
        Ok(Membership {
            cluster_id,
            local_id: local.id,
            members: members.iter().map(|m| (m.id, m.clone())).collect(),
            removed: BTreeSet::new(),
        })
    }

    /// Reads the membership from the backend; `None` in a new data dir.
    pub fn load(store: &Store) -> Result<Option<Membership>, MvccError> {
        let mut cluster = None;
        let mut members = BTreeMap::new();
        for (key, value) in store.aux_scan(MEMBERS_TABLE)? {
            if key == CLUSTER_KEY {
                cluster = Some(decode::<ClusterRecord>(&value)?);
            } else {
                let m = decode::<Member>(&value)?;
                members.insert(m.id, m);
            }
        }
        Ok(cluster.map(|c| Membership {
            cluster_id: c.cluster_id,
            local_id: c.local_id,
            members,
            removed: c.removed,
        }))
    }

    /// Writes the whole membership into the backend's current write batch (it becomes
    /// durable with the batch, together with the consistent index).
    pub fn save(&self, store: &Store) -> Result<(), MvccError> {
        let stored = Membership::load(store)?;
        if let Some(old) = &stored {
            for id in old
                .members
                .keys()
                .filter(|id| !self.members.contains_key(id))
            {
                store.aux_delete(MEMBERS_TABLE, &id.to_be_bytes())?;
            }
        }
        let record = ClusterRecord {
            cluster_id: self.cluster_id,
            local_id: self.local_id,
            removed: self.removed.clone(),
        };
        store.aux_put(MEMBERS_TABLE, CLUSTER_KEY, &encode(&record)?)?;
        for m in self.members.values() {
            store.aux_put(MEMBERS_TABLE, &m.id.to_be_bytes(), &encode(m)?)?;
        }
        Ok(())
    }

    /// The stored membership, or — in a new data dir — the bootstrapped one, saved and
    /// durably committed before raft starts. A `member/cluster.json` left by an older oxcd
    /// is migrated, then removed. This member's name and client URLs as the flags now say
    /// are published through raft once it serves (membership is replicated state: it only
    /// changes through the log), as etcd publishes them.
    pub fn open(
        store: &Store,
        dir: &DataDir,
        fresh: impl FnOnce() -> Membership,
    ) -> Result<Membership, MembershipError> {
        let legacy = dir.legacy_membership();
        let m = match Membership::load(store)? {
            Some(m) => m,
            None => match std::fs::read(&legacy) {
                Ok(bytes) => {
                    tracing::info!(file = %legacy.display(), "migrating the membership into the backend");
                    serde_json::from_slice::<Membership>(&bytes).map_err(|e| {
                        MembershipError::Legacy(format!(
                            "{} is not valid membership JSON: {e}",
                            legacy.display()
                        ))
                    })?
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => fresh(),
                Err(e) => {
                    return Err(MembershipError::Legacy(format!(
                        "cannot read {}: {e}",
                        legacy.display()
                    )))
                }
            },
        };
        m.save(store)?;
        store.commit(true)?;
        oxcd_fs::remove_durably(&legacy).map_err(|e| {
            MembershipError::Legacy(format!("cannot remove {}: {e}", legacy.display()))
        })?;
        Ok(m)
    }

    /// All voter ids.
    pub fn voter_ids(&self) -> Vec<u64> {
        self.members
            .values()
            .filter(|m| !m.is_learner)
            .map(|m| m.id)
            .collect()
    }
}

/// A majority of `n` voters.
fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// etcd 3.4 allows one learner at a time (`maxLearners`).
pub(crate) const MAX_LEARNERS: usize = 1;

/// A membership change as oxcd proposes it: one member, one kind (etcd's ConfChange types
/// plus its promote flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    /// A new voter.
    Add,
    /// A new learner.
    AddLearner,
    /// A learner becomes a voter.
    Promote,
    /// A member leaves for good.
    Remove,
}

impl From<&MemberRecord> for Member {
    fn from(r: &MemberRecord) -> Member {
        Member {
            id: r.id,
            name: r.name.clone(),
            peer_urls: r.peer_urls.clone(),
            client_urls: r.client_urls.clone(),
            is_learner: r.is_learner,
        }
    }
}

impl Membership {
    /// Members as the Cluster service reports them, by id.
    pub fn to_proto(&self) -> Vec<pb::Member> {
        self.members
            .values()
            .map(|m| pb::Member {
                id: m.id,
                name: m.name.clone(),
                peer_ur_ls: m.peer_urls.clone(),
                client_ur_ls: m.client_urls.clone(),
                is_learner: m.is_learner,
            })
            .collect()
    }

    fn peer_url_taken(&self, urls: &[String], except: Option<u64>) -> bool {
        self.members
            .values()
            .filter(|m| Some(m.id) != except)
            .any(|m| m.peer_urls.iter().any(|u| urls.contains(u)))
    }

    /// etcd's `ValidateConfigurationChange`, checked by every member when it applies the
    /// change (so all refuse the same ones) and by the proposer before proposing.
    pub(crate) fn check_change(
        &self,
        kind: ChangeKind,
        m: &MemberRecord,
    ) -> Result<(), ServerError> {
        if self.removed.contains(&m.id) {
            return Err(ServerError::MemberNotFound);
        }
        let existing = self.members.get(&m.id);
        match kind {
            ChangeKind::Promote => match existing {
                None => Err(ServerError::MemberNotFound),
                Some(e) if !e.is_learner => Err(ServerError::MemberNotLearner),
                Some(_) => Ok(()),
            },
            ChangeKind::Add | ChangeKind::AddLearner => {
                if existing.is_some() {
                    return Err(ServerError::MemberExist);
                }
                if self.peer_url_taken(&m.peer_urls, None) {
                    return Err(ServerError::PeerUrlExist);
                }
                let learners = self.members.values().filter(|m| m.is_learner).count();
                if kind == ChangeKind::AddLearner && learners + 1 > MAX_LEARNERS {
                    return Err(ServerError::TooManyLearners);
                }
                Ok(())
            }
            ChangeKind::Remove => existing.map(|_| ()).ok_or(ServerError::MemberNotFound),
        }
    }

    /// Applies a change [`Membership::check_change`] accepted.
    pub(crate) fn apply_change(&mut self, kind: ChangeKind, m: &MemberRecord) {
        match kind {
            ChangeKind::Add | ChangeKind::AddLearner => {
                let mut member = Member::from(m);
                member.is_learner = kind == ChangeKind::AddLearner;
                self.members.insert(m.id, member);
            }
            ChangeKind::Promote => {
                if let Some(e) = self.members.get_mut(&m.id) {
                    e.is_learner = false;
                }
            }
            ChangeKind::Remove => {
                self.members.remove(&m.id);
                self.removed.insert(m.id);
            }
        }
    }

    /// etcd's check of a MemberUpdate: the member exists and no other member has its new
    /// peer URLs.
    pub(crate) fn check_update(&self, id: u64, peer_urls: &[String]) -> Result<(), ServerError> {
        if !self.members.contains_key(&id) || self.removed.contains(&id) {
            return Err(ServerError::MemberNotFound);
        }
        if self.peer_url_taken(peer_urls, Some(id)) {
            return Err(ServerError::PeerUrlExist);
        }
        Ok(())
    }

    fn voters(&self) -> impl Iterator<Item = &Member> {
        self.members.values().filter(|m| !m.is_learner)
    }

    /// etcd's `IsReadyToAddVotingMember`: a started-member quorum remains (a member is
    /// started once it has published its name).
    pub(crate) fn ready_to_add_voter(&self) -> bool {
        let members = self.voters().count() + 1;
        let started = self.voters().filter(|m| !m.name.is_empty()).count();
        if started == 1 && members == 2 {
            return true;
        }
        started >= quorum(members)
    }

    /// etcd's `IsReadyToRemoveVotingMember`.
    pub(crate) fn ready_to_remove_voter(&self, id: u64) -> bool {
        let rest = || self.voters().filter(|m| m.id != id);
        rest().filter(|m| !m.name.is_empty()).count() >= quorum(rest().count())
    }

    /// etcd's `IsReadyToPromoteMember` (the learner counts as started).
    pub(crate) fn ready_to_promote(&self) -> bool {
        let members = self.voters().count() + 1;
        let started = self.voters().filter(|m| !m.name.is_empty()).count() + 1;
        started >= quorum(members)
    }
}

/// Why the membership could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] MvccError),
    /// The legacy `member/cluster.json` could not be migrated.
    #[error("{0}")]
    Legacy(String),
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, MvccError> {
    serde_json::to_vec(v).map_err(|e| MvccError::Corrupt {
        what: format!("cannot encode membership: {e}"),
    })
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, MvccError> {
    serde_json::from_slice(bytes).map_err(|e| MvccError::Corrupt {
        what: format!("membership record: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(token: &str) -> ClusterSpec {
        let urls = vec!["http://localhost:2380".to_string()];
        ClusterSpec {
            initial_cluster: [("default".to_string(), urls.clone())].into(),
            initial_cluster_token: token.into(),
            initial_advertise_peer_urls: urls,
            advertise_client_urls: vec!["http://localhost:2379".into()],
            join_existing: false,
        }
    }

    #[test]
    fn stored_in_the_backend_and_legacy_json_migrated() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path(), None);
        dir.create().unwrap();
        // A data dir from before: membership in cluster.json, bootstrapped with token "old".
        let old = Membership::bootstrap("default", &spec("old"));
        std::fs::write(dir.legacy_membership(), serde_json::to_vec(&old).unwrap()).unwrap();
        let store = Store::open(&dir.backend()).unwrap();
        let m = Membership::open(&store, &dir, || {
            Membership::bootstrap("renamed", &spec("new"))
        })
        .unwrap();
        assert_eq!(
            m.cluster_id, old.cluster_id,
            "the stored cluster wins over the flags"
        );
        assert_eq!(m, old, "only raft changes a stored membership");
        assert!(!dir.legacy_membership().exists());
        drop(store);
        // Reopened: read back from the backend, flags ignored.
        let store = Store::open(&dir.backend()).unwrap();
        assert_eq!(Membership::load(&store).unwrap().unwrap(), m);
        let again =
            Membership::open(&store, &dir, || Membership::bootstrap("x", &spec("other"))).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn default_member_id_matches_etcd() {
        // etcd started with no flags reports member 8e9e05c52164694d in cluster
        // cdf818194e3a8c32 (a well-known pair from etcd's own docs and logs).
        let id = member_id(&["http://localhost:2380".to_string()], "etcd-cluster");
        assert_eq!(format!("{id:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[id])), "cdf818194e3a8c32");
    }

    #[test]
    fn url_order_does_not_matter() {
        let a = member_id(&["http://a:1".into(), "http://b:1".into()], "t");
        let b = member_id(&["http://b:1".into(), "http://a:1".into()], "t");
        assert_eq!(a, b);
    }

    fn record(id: u64, url: &str) -> MemberRecord {
        MemberRecord {
            id,
            peer_urls: vec![url.to_string()],
            ..Default::default()
        }
    }

    #[test]
    fn membership_changes_follow_etcds_rules() {
        let mut m = Membership::bootstrap("default", &spec("t"));
        let me = m.local_id;
        let taken = m.members[&me].peer_urls[0].clone();
        // A new member may not reuse an id or a peer URL.
        assert_eq!(
            m.check_change(ChangeKind::Add, &record(me, "http://x:1")),
            Err(ServerError::MemberExist)
        );
        assert_eq!(
            m.check_change(ChangeKind::AddLearner, &record(2, &taken)),
            Err(ServerError::PeerUrlExist)
        );
        // One learner at a time (etcd 3.4).
        m.check_change(ChangeKind::AddLearner, &record(2, "http://l:1"))
            .unwrap();
        m.apply_change(ChangeKind::AddLearner, &record(2, "http://l:1"));
        assert!(m.members[&2].is_learner);
        assert_eq!(
            m.check_change(ChangeKind::AddLearner, &record(3, "http://l:2")),
            Err(ServerError::TooManyLearners)
        );
        // Only learners are promoted.
        assert_eq!(
            m.check_change(ChangeKind::Promote, &record(me, "")),
            Err(ServerError::MemberNotLearner)
        );
        m.apply_change(ChangeKind::Promote, &record(2, ""));
        assert!(!m.members[&2].is_learner);
        // A removed id never comes back.
        m.apply_change(ChangeKind::Remove, &record(2, ""));
        assert!(!m.members.contains_key(&2));
        assert_eq!(
            m.check_change(ChangeKind::Add, &record(2, "http://n:1")),
            Err(ServerError::MemberNotFound)
        );
        assert_eq!(
            m.check_change(ChangeKind::Remove, &record(2, "")),
            Err(ServerError::MemberNotFound)
        );
        assert_eq!(
            m.check_update(2, &["http://n:1".into()]),
            Err(ServerError::MemberNotFound)
        );
        assert_eq!(
            m.check_update(me, &[taken]),
            Ok(()),
            "a member keeps its own URLs"
        );
    }

    #[test]
    fn strict_reconfig_counts_started_members() {
        let mut m = Membership::bootstrap("default", &spec("t"));
        // One started voter: adding a second is allowed (etcd's restore case).
        assert!(m.ready_to_add_voter());
        m.apply_change(ChangeKind::Add, &record(2, "http://b:1"));
        // Two voters, one started: a third would need two started.
        assert!(!m.ready_to_add_voter());
        assert!(
            !m.ready_to_remove_voter(m.local_id),
            "the unstarted one would be alone"
        );
        assert!(m.ready_to_remove_voter(2));
        m.members.get_mut(&2).unwrap().name = "b".into();
        assert!(m.ready_to_add_voter());
    }
}
