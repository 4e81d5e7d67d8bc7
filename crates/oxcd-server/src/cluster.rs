//! Cluster membership: member and cluster IDs computed exactly as etcd computes them, so a
//! member bootstrapped with the same flags gets the same IDs under oxcd as under etcd.
//!
//! Until membership changes go through raft (the cluster issue), the membership decided at
//! bootstrap is stored in `<data-dir>/member/cluster.json` and reloaded on restart; a restart
//! ignores `--initial-cluster`, as etcd does once a data dir exists.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use crate::config::{url_text, Config};

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

impl Membership {
    /// The membership of a new cluster as `--initial-cluster` describes it.
    pub fn bootstrap(cfg: &Config) -> Membership {
        let mut members = BTreeMap::new();
        for (name, urls) in &cfg.initial_cluster {
            let peer_urls: Vec<String> = urls.iter().map(url_text).collect();
            let id = member_id(&peer_urls, &cfg.initial_cluster_token);
            let client_urls = if *name == cfg.name {
                cfg.advertise_client_urls.iter().map(url_text).collect()
            } else {
                Vec::new()
            };
            members.insert(
                id,
                Member {
                    id,
                    name: name.clone(),
                    peer_urls,
                    client_urls,
                    is_learner: false,
                },
            );
        }
        let local_peer: Vec<String> = cfg
            .initial_advertise_peer_urls
            .iter()
            .map(url_text)
            .collect();
        let local_id = member_id(&local_peer, &cfg.initial_cluster_token);
        let ids: Vec<u64> = members.keys().copied().collect();
        Membership {
            cluster_id: cluster_id(&ids),
            local_id,
            members,
        }
    }

    /// Loads the stored membership, or bootstraps and stores it on first start. The local
    /// member's name and client URLs follow the current flags, as etcd republishes them.
    pub fn load_or_bootstrap(cfg: &Config, member_dir: &Path) -> std::io::Result<Membership> {
        let path = member_dir.join("cluster.json");
        let mut m = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Membership>(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not valid membership JSON: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Membership::bootstrap(cfg),
            Err(e) => return Err(e),
        };
        if let Some(me) = m.members.get_mut(&m.local_id) {
            me.name = cfg.name.clone();
            me.client_urls = cfg.advertise_client_urls.iter().map(url_text).collect();
        }
        let bytes = serde_json::to_vec_pretty(&m).map_err(std::io::Error::other)?;
        write_atomically(&path, &bytes)?;
        Ok(m)
    }

    /// All member IDs (raft voters).
    pub fn voter_ids(&self) -> Vec<u64> {
        self.members
            .values()
            .filter(|m| !m.is_learner)
            .map(|m| m.id)
            .collect()
    }
}

/// Writes `bytes` to `path` via a synced temporary file and rename, so a crash leaves either
/// the old or the new file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
