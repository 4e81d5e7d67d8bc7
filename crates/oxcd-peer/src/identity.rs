//! Who is calling: the sender's cluster and member ids, carried in every call's metadata,
//! and the receiver's check of them.

use tonic::metadata::{MetadataMap, MetadataValue};

use crate::{PeerError, PeerHandler};

/// Metadata key of the sender's cluster id (lower-case hex).
pub const CLUSTER_ID_KEY: &str = "oxcd-cluster-id";
/// Metadata key of the sender's member id (lower-case hex).
pub const MEMBER_ID_KEY: &str = "oxcd-member-id";

/// Adds this member's identity to an outgoing call.
pub(crate) fn stamp(meta: &mut MetadataMap, cluster_id: u64, member_id: u64) {
    for (key, id) in [(CLUSTER_ID_KEY, cluster_id), (MEMBER_ID_KEY, member_id)] {
        // Hex digits are always valid metadata.
        if let Ok(v) = MetadataValue::try_from(format!("{id:x}")) {
            meta.insert(key, v);
        }
    }
}

fn read_id(meta: &MetadataMap, key: &str) -> Result<u64, PeerError> {
    let v = meta
        .get(key)
        .ok_or_else(|| PeerError::InvalidRequest(format!("missing {key}")))?;
    v.to_str()
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or_else(|| PeerError::InvalidRequest(format!("malformed {key}")))
}

/// Checks the identity of an incoming call; returns the sender's member id. Refuses a
/// sender of another cluster (unless either side does not know its cluster id yet) and a
/// removed member.
pub(crate) fn check(meta: &MetadataMap, handler: &dyn PeerHandler) -> Result<u64, PeerError> {
    let remote_cluster = read_id(meta, CLUSTER_ID_KEY)?;
    let remote_member = read_id(meta, MEMBER_ID_KEY)?;
    let local_cluster = handler.cluster_id();
    if local_cluster != 0 && remote_cluster != 0 && local_cluster != remote_cluster {
        let e = PeerError::ClusterIdMismatch {
            local_cluster,
            remote_cluster,
            remote_member,
        };
        tracing::warn!(
            local_member = %format!("{:x}", handler.member_id()),
            error = %e,
            "refused a peer of another cluster"
        );
        return Err(e);
    }
    if handler.is_removed(remote_member) {
        tracing::warn!(
            remote_member = %format!("{remote_member:x}"),
            "refused a removed member"
        );
        return Err(PeerError::MemberRemoved);
    }
    Ok(remote_member)
}
