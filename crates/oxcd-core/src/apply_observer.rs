//! etcd 3.5's `etcd_server_apply_duration_seconds{version,op,success}`: how long each
//! applied request took, by etcd's operation name. A process-wide observer, set once by the
//! server's metrics; unset, observing costs one atomic load. The operation is a fixed enum,
//! so the observer can hold one pre-resolved series per operation and outcome (no lock, no
//! allocation when recording).

use std::sync::OnceLock;
use std::time::Duration;

use oxcd_proto::oxcdinternal::raft_request::Op;

/// An applied request's operation, with etcd's `op` label value ([`ApplyOp::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOp {
    /// `Put`.
    Put,
    /// `DeleteRange`.
    DeleteRange,
    /// `Txn`.
    Txn,
    /// `Compaction`.
    Compaction,
    /// `LeaseGrant`.
    LeaseGrant,
    /// `LeaseRevoke`.
    LeaseRevoke,
    /// `LeaseCheckpoint`.
    LeaseCheckpoint,
    /// `Alarm`.
    Alarm,
    /// A member publishing its name and client URLs (etcd 3.5's `ClusterMemberAttrSet`).
    ClusterMemberAttrSet,
    /// `Authenticate`.
    Authenticate,
    /// `AuthEnable`.
    AuthEnable,
    /// `AuthDisable`.
    AuthDisable,
    /// `AuthUserAdd`.
    AuthUserAdd,
    /// `AuthUserDelete`.
    AuthUserDelete,
    /// `AuthUserChangePassword`.
    AuthUserChangePassword,
    /// `AuthUserGrantRole`.
    AuthUserGrantRole,
    /// `AuthUserGet`.
    AuthUserGet,
    /// `AuthUserList`.
    AuthUserList,
    /// `AuthUserRevokeRole`.
    AuthUserRevokeRole,
    /// `AuthRoleAdd`.
    AuthRoleAdd,
    /// `AuthRoleGet`.
    AuthRoleGet,
    /// `AuthRoleList`.
    AuthRoleList,
    /// `AuthRoleDelete`.
    AuthRoleDelete,
    /// `AuthRoleGrantPermission`.
    AuthRoleGrantPermission,
    /// `AuthRoleRevokePermission`.
    AuthRoleRevokePermission,
}

/// How many [`ApplyOp`]s there are (their discriminants are `0..COUNT`).
pub const APPLY_OPS: usize = ApplyOp::AuthRoleRevokePermission as usize + 1;

/// Every [`ApplyOp`], in discriminant order.
pub const ALL_APPLY_OPS: [ApplyOp; APPLY_OPS] = {
    use ApplyOp::*;
    [
        Put,
        DeleteRange,
        Txn,
        Compaction,
        LeaseGrant,
        LeaseRevoke,
        LeaseCheckpoint,
        Alarm,
        ClusterMemberAttrSet,
        Authenticate,
        AuthEnable,
        AuthDisable,
        AuthUserAdd,
        AuthUserDelete,
        AuthUserChangePassword,
        AuthUserGrantRole,
        AuthUserGet,
        AuthUserList,
        AuthUserRevokeRole,
        AuthRoleAdd,
        AuthRoleGet,
        AuthRoleList,
        AuthRoleDelete,
        AuthRoleGrantPermission,
        AuthRoleRevokePermission,
    ]
};

impl ApplyOp {
    /// etcd's `op` label value.
    pub fn name(self) -> &'static str {
        use ApplyOp::*;
        match self {
            Put => "Put",
            DeleteRange => "DeleteRange",
            Txn => "Txn",
            Compaction => "Compaction",
            LeaseGrant => "LeaseGrant",
            LeaseRevoke => "LeaseRevoke",
            LeaseCheckpoint => "LeaseCheckpoint",
            Alarm => "Alarm",
            ClusterMemberAttrSet => "ClusterMemberAttrSet",
            Authenticate => "Authenticate",
            AuthEnable => "AuthEnable",
            AuthDisable => "AuthDisable",
            AuthUserAdd => "AuthUserAdd",
            AuthUserDelete => "AuthUserDelete",
            AuthUserChangePassword => "AuthUserChangePassword",
            AuthUserGrantRole => "AuthUserGrantRole",
            AuthUserGet => "AuthUserGet",
            AuthUserList => "AuthUserList",
            AuthUserRevokeRole => "AuthUserRevokeRole",
            AuthRoleAdd => "AuthRoleAdd",
            AuthRoleGet => "AuthRoleGet",
            AuthRoleList => "AuthRoleList",
            AuthRoleDelete => "AuthRoleDelete",
            AuthRoleGrantPermission => "AuthRoleGrantPermission",
            AuthRoleRevokePermission => "AuthRoleRevokePermission",
        }
    }

    /// The operation of an applied request, if etcd observes it: a member's new peer URLs
    /// are a raft membership change in etcd, not an applied request.
    pub(crate) fn of(op: &Op) -> Option<ApplyOp> {
        use ApplyOp::*;
        Some(match op {
            Op::Put(_) => Put,
            Op::DeleteRange(_) => DeleteRange,
            Op::Txn(_) => Txn,
            Op::Compaction(_) => Compaction,
            Op::LeaseGrant(_) => LeaseGrant,
            Op::LeaseRevoke(_) => LeaseRevoke,
            Op::LeaseCheckpoint(_) => LeaseCheckpoint,
            Op::Alarm(_) => Alarm,
            Op::MemberUpdate(_) => return None,
            Op::MemberAttributes(_) => ClusterMemberAttrSet,
            Op::Authenticate(_) => Authenticate,
            Op::AuthEnable(_) => AuthEnable,
            Op::AuthDisable(_) => AuthDisable,
            Op::AuthUserAdd(_) => AuthUserAdd,
            Op::AuthUserDelete(_) => AuthUserDelete,
            Op::AuthUserChangePassword(_) => AuthUserChangePassword,
            Op::AuthUserGrantRole(_) => AuthUserGrantRole,
            Op::AuthUserGet(_) => AuthUserGet,
            Op::AuthUserList(_) => AuthUserList,
            Op::AuthUserRevokeRole(_) => AuthUserRevokeRole,
            Op::AuthRoleAdd(_) => AuthRoleAdd,
            Op::AuthRoleGet(_) => AuthRoleGet,
            Op::AuthRoleList(_) => AuthRoleList,
            Op::AuthRoleDelete(_) => AuthRoleDelete,
            Op::AuthRoleGrantPermission(_) => AuthRoleGrantPermission,
            Op::AuthRoleRevokePermission(_) => AuthRoleRevokePermission,
        })
    }
}

/// Records one applied request: its operation, whether it succeeded (etcd: no error, or
/// the compacted-revision error), and how long it took.
pub type ApplyObserverFn = Box<dyn Fn(ApplyOp, bool, Duration) + Send + Sync>;

static OBSERVER: OnceLock<ApplyObserverFn> = OnceLock::new();

/// Sets the observer of every applied request's duration; false if one was set already.
pub fn set_apply_observer(observer: ApplyObserverFn) -> bool {
    OBSERVER.set(observer).is_ok()
}

/// Reports one applied request to the observer, if any.
pub(crate) fn observe(op: ApplyOp, success: bool, took: Duration) {
    if let Some(observer) = OBSERVER.get() {
        observer(op, success, took);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_is_listed_once_in_discriminant_order_with_etcds_name() {
        for (i, op) in ALL_APPLY_OPS.iter().enumerate() {
            assert_eq!(*op as usize, i);
            assert_eq!(format!("{op:?}"), op.name());
        }
        assert_eq!(
            ApplyOp::of(&Op::Put(Default::default())),
            Some(ApplyOp::Put)
        );
        assert_eq!(ApplyOp::of(&Op::MemberUpdate(Default::default())), None);
        assert_eq!(
            ApplyOp::of(&Op::MemberAttributes(Default::default())),
            Some(ApplyOp::ClusterMemberAttrSet)
        );
    }
}
