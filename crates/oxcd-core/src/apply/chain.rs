//! The applier chain: each committed request passes through layers, outermost first, as
//! in etcd's `apply` package: [`AuthGate`] (permissions of the user in the request header
//! [`EntryContext::header`]), [`AlarmGate`] (quota and corruption), [`BackendApplier`].

use std::sync::Arc;

use oxcd_auth::{AuthInfo, AuthStore, PermType};
use oxcd_lease::Lessor;
use oxcd_mvcc::Store;
use oxcd_proto::etcdserverpb::{request_op, AlarmType, RequestOp, TxnRequest};
use oxcd_proto::mvccpb::Event;
use oxcd_proto::oxcdinternal::{raft_request::Op, RequestHeader};

use parking_lot::RwLock;

use crate::alarm::AlarmSet;
use crate::error::ServerError;
use crate::membership::Membership;
use crate::proposal::ApplyResponse;

/// What a layer knows of the entry it applies.
#[derive(Debug)]
pub struct EntryContext<'a> {
    /// The entry's raft index (the consistent index it sets).
    pub index: u64,
    /// Who proposed it (empty for the server's own requests and old entries).
    pub header: &'a RequestHeader,
}

/// An applied request's response and the events it produced (one revision).
pub type Applied = (ApplyResponse, Vec<Event>);

/// One layer of the chain. On error nothing was changed; the applier still records the
/// entry's index as applied.
pub trait ApplyLayer: Send + Sync {
    /// Applies `op` or refuses it.
    fn apply(&self, ctx: &EntryContext<'_>, op: Op) -> Result<Applied, ServerError>;
}

/// etcd's auth applier: checks each write against the user and auth revision its
/// proposer put in the header, so a permission revoked (or an auth revision bumped) while
/// the request was in flight is honoured. Put needs WRITE on its key (and READ with
/// `prev_kv`), DeleteRange WRITE over its range, a Txn every compare, read and write,
/// LeaseRevoke (and a Put under a lease) WRITE on every key attached to the lease; auth
/// changes and user and role listings need root; UserGet the user itself or root, RoleGet
/// a holder of the role or root.
pub struct AuthGate<N> {
    auth: Arc<AuthStore>,
    lessor: Arc<Lessor>,
    next: N,
}

impl<N: ApplyLayer> AuthGate<N> {
    /// A gate in front of `next`.
    pub fn new(auth: Arc<AuthStore>, lessor: Arc<Lessor>, next: N) -> AuthGate<N> {
        AuthGate { auth, lessor, next }
    }

    fn check_lease_keys(&self, info: &AuthInfo, lease: i64) -> Result<(), ServerError> {
        if lease == 0 {
            return Ok(());
        }
        for key in self.lessor.keys(lease).unwrap_or_default() {
            self.auth
                .is_op_permitted(info, &key, &[], PermType::Write)?;
        }
        Ok(())
    }

    fn check(&self, info: &AuthInfo, op: &Op) -> Result<(), ServerError> {
        let auth = &*self.auth;
        match op {
            Op::AuthEnable(_)
            | Op::AuthDisable(_)
            | Op::AuthUserAdd(_)
            | Op::AuthUserDelete(_)
            | Op::AuthUserChangePassword(_)
            | Op::AuthUserGrantRole(_)
            | Op::AuthUserRevokeRole(_)
            | Op::AuthRoleAdd(_)
            | Op::AuthRoleGrantPermission(_)
            | Op::AuthRoleRevokePermission(_)
            | Op::AuthRoleDelete(_)
            | Op::AuthUserList(_)
            | Op::AuthRoleList(_) => auth.is_admin_permitted(Some(info))?,
            Op::AuthUserGet(r) => {
                if let Err(e) = auth.is_admin_permitted(Some(info)) {
                    if r.name != info.username {
                        return Err(e.into());
                    }
                }
            }
            Op::AuthRoleGet(r) => {
                if let Err(e) = auth.is_admin_permitted(Some(info)) {
                    if !auth.has_role(&info.username, &r.role) {
                        return Err(e.into());
                    }
                }
            }
            Op::Put(r) => {
                auth.is_op_permitted(info, &r.key, &[], PermType::Write)?;
                self.check_lease_keys(info, r.lease)?;
                if r.prev_kv {
                    auth.is_op_permitted(info, &r.key, &[], PermType::Read)?;
                }
            }
            Op::DeleteRange(r) => {
                auth.is_op_permitted(info, &r.key, &r.range_end, PermType::Write)?;
                if r.prev_kv {
                    auth.is_op_permitted(info, &r.key, &r.range_end, PermType::Read)?;
                }
            }
            Op::Txn(t) => crate::auth::check_txn(auth, info, t)?,
            Op::LeaseRevoke(r) => self.check_lease_keys(info, r.id)?,
            _ => {}
        }
        Ok(())
    }
}

impl<N: ApplyLayer> ApplyLayer for AuthGate<N> {
    fn apply(&self, ctx: &EntryContext<'_>, op: Op) -> Result<Applied, ServerError> {
        if self.auth.is_enabled() {
            let info = AuthInfo {
                username: ctx.header.username.clone(),
                revision: ctx.header.auth_revision,
            };
            self.check(&info, &op)?;
        }
        self.next.apply(ctx, op)
    }
}

/// etcd's capped and corrupt appliers: while a NOSPACE alarm is active, requests that
/// would grow the database fail with "database space exceeded" (reads, deletes,
/// compaction and alarm changes still work); while a CORRUPT alarm is active, everything
/// but alarm changes fails with "corrupt cluster".
pub struct AlarmGate<N> {
    alarms: Arc<AlarmSet>,
    next: N,
}

impl<N: ApplyLayer> AlarmGate<N> {
    /// A gate in front of `next`.
    pub fn new(alarms: Arc<AlarmSet>, next: N) -> AlarmGate<N> {
        AlarmGate { alarms, next }
    }
}

/// Whether a txn may put a key in any branch (etcd's quota cost of a txn is its puts).
fn txn_puts(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op: &RequestOp| match &op.request {
            Some(request_op::Request::RequestPut(_)) => true,
            Some(request_op::Request::RequestTxn(t)) => txn_puts(t),
            _ => false,
        })
}

impl<N: ApplyLayer> ApplyLayer for AlarmGate<N> {
    fn apply(&self, ctx: &EntryContext<'_>, op: Op) -> Result<Applied, ServerError> {
        // Alarm and membership requests are not KV or lease writes: no alarm stops them.
        // Alarm, membership and auth requests are not KV or lease writes.
        let gated = matches!(
            op,
            Op::Put(_)
                | Op::DeleteRange(_)
                | Op::Txn(_)
                | Op::Compaction(_)
                | Op::LeaseGrant(_)
                | Op::LeaseRevoke(_)
                | Op::LeaseCheckpoint(_)
        );
        if gated {
            if self.alarms.is_active(AlarmType::Corrupt) {
                return Err(ServerError::Corrupt);
            }
            if self.alarms.is_active(AlarmType::Nospace) {
                let grows = match &op {
                    Op::Put(_) | Op::LeaseGrant(_) => true,
                    Op::Txn(t) => txn_puts(t),
                    _ => false,
                };
                if grows {
                    return Err(ServerError::NoSpace);
                }
            }
        }
        self.next.apply(ctx, op)
    }
}

/// The last layer: the request's effect on the backend, the lessor, the alarms and the
/// membership.
pub struct BackendApplier {
    /// The key space.
    pub store: Arc<Store>,
    /// Leases (grants, revokes, checkpoints; a put checks its lease exists).
    pub lessor: Arc<Lessor>,
    /// Active alarms.
    pub alarms: Arc<AlarmSet>,
    /// The cluster's members.
    pub membership: Arc<RwLock<Membership>>,
    /// Users, roles and permissions.
    pub auth: Arc<AuthStore>,
}

/// Fills the header-less response of an auth change.
macro_rules! auth_done {
    ($store:expr, $index:expr, $variant:ident, $resp:expr) => {{
        $store.set_consistent_index($index);
        (ApplyResponse::$variant($resp), Vec::new())
    }};
}

impl ApplyLayer for BackendApplier {
    fn apply(&self, ctx: &EntryContext<'_>, op: Op) -> Result<Applied, ServerError> {
        let store = &*self.store;
        let lessor = &*self.lessor;
        let index = ctx.index;
        let lease_ok = |lease: i64| lessor.exists(lease);
        Ok(match op {
            Op::Put(r) => {
                let (resp, ev) = store.put(&r, index, &lease_ok)?;
                (ApplyResponse::Put(resp), ev)
            }
            Op::DeleteRange(r) => {
                let (resp, ev) = store.delete_range(&r, index)?;
                (ApplyResponse::DeleteRange(resp), ev)
            }
            Op::Txn(r) => {
                let (resp, ev) = store.txn(&r, index, &lease_ok)?;
                (ApplyResponse::Txn(resp), ev)
            }
            Op::Compaction(r) => {
                let resp = store.compact(r.revision, index)?;
                (ApplyResponse::Compaction(resp), Vec::new())
            }
            Op::LeaseGrant(r) => {
                let resp = oxcd_lease::apply_grant(store, lessor, &r, index)?;
                (ApplyResponse::LeaseGrant(resp), Vec::new())
            }
            Op::LeaseRevoke(r) => {
                let (resp, ev) = oxcd_lease::apply_revoke(store, lessor, &r, index)?;
                (ApplyResponse::LeaseRevoke(resp), ev)
            }
            Op::LeaseCheckpoint(r) => {
                let resp = oxcd_lease::apply_checkpoint(store, lessor, &r, index)?;
                (ApplyResponse::LeaseCheckpoint(resp), Vec::new())
            }
            Op::Alarm(r) => {
                let resp = self.alarms.apply(store, &r)?;
                store.set_consistent_index(index);
                (ApplyResponse::Alarm(resp), Vec::new())
            }
            Op::MemberUpdate(r) => {
                let mut m = self.membership.write();
                m.check_update(r.id, &r.peer_ur_ls)?;
                if let Some(member) = m.members.get_mut(&r.id) {
                    member.peer_urls = r.peer_ur_ls.clone();
                }
                m.save(store)?;
                store.set_consistent_index(index);
                (ApplyResponse::MemberUpdate(m.to_proto()), Vec::new())
            }
            Op::MemberAttributes(a) => {
                let mut m = self.membership.write();
                // A member removed meanwhile publishes nothing.
                if let Some(member) = m.members.get_mut(&a.member_id) {
                    member.name = a.name.clone();
                    member.client_urls = a.client_urls.clone();
                    m.save(store)?;
                }
                store.set_consistent_index(index);
                (ApplyResponse::MemberAttributes(()), Vec::new())
            }
            op => self.apply_auth(store, index, op)?,
        })
    }
}

impl BackendApplier {
    /// The auth operations (etcd's `applierV3backend` auth methods).
    fn apply_auth(&self, store: &Store, index: u64, op: Op) -> Result<Applied, ServerError> {
        use oxcd_proto::etcdserverpb as pb;
        let auth = &*self.auth;
        Ok(match op {
            Op::AuthEnable(_) => {
                auth.enable(store)?;
                auth_done!(store, index, AuthEnable, pb::AuthEnableResponse::default())
            }
            Op::AuthDisable(_) => {
                auth.disable(store)?;
                auth_done!(
                    store,
                    index,
                    AuthDisable,
                    pb::AuthDisableResponse::default()
                )
            }
            Op::Authenticate(r) => {
                let token = auth.authenticate(&r.name, &r.simple_token, index)?;
                let resp = pb::AuthenticateResponse {
                    header: None,
                    token,
                };
                auth_done!(store, index, Authenticate, resp)
            }
            Op::AuthUserAdd(r) => {
                auth.user_add(store, &r)?;
                auth_done!(
                    store,
                    index,
                    AuthUserAdd,
                    pb::AuthUserAddResponse::default()
                )
            }
            Op::AuthUserDelete(r) => {
                auth.user_delete(store, &r.name)?;
                auth_done!(
                    store,
                    index,
                    AuthUserDelete,
                    pb::AuthUserDeleteResponse::default()
                )
            }
            Op::AuthUserChangePassword(r) => {
                auth.user_change_password(store, &r.name, &r.hashed_password)?;
                let resp = pb::AuthUserChangePasswordResponse::default();
                auth_done!(store, index, AuthUserChangePassword, resp)
            }
            Op::AuthUserGrantRole(r) => {
                auth.user_grant_role(store, &r.user, &r.role)?;
                let resp = pb::AuthUserGrantRoleResponse::default();
                auth_done!(store, index, AuthUserGrantRole, resp)
            }
            Op::AuthUserGet(r) => {
                let resp = auth.user_get(&r.name)?;
                auth_done!(store, index, AuthUserGet, resp)
            }
            Op::AuthUserList(_) => {
                let resp = pb::AuthUserListResponse {
                    header: None,
                    users: auth.user_list(),
                };
                auth_done!(store, index, AuthUserList, resp)
            }
            Op::AuthUserRevokeRole(r) => {
                auth.user_revoke_role(store, &r.name, &r.role)?;
                let resp = pb::AuthUserRevokeRoleResponse::default();
                auth_done!(store, index, AuthUserRevokeRole, resp)
            }
            Op::AuthRoleAdd(r) => {
                auth.role_add(store, &r.name)?;
                auth_done!(
                    store,
                    index,
                    AuthRoleAdd,
                    pb::AuthRoleAddResponse::default()
                )
            }
            Op::AuthRoleGet(r) => {
                let resp = auth.role_get(&r.role)?;
                auth_done!(store, index, AuthRoleGet, resp)
            }
            Op::AuthRoleList(_) => {
                let resp = pb::AuthRoleListResponse {
                    header: None,
                    roles: auth.role_list(),
                };
                auth_done!(store, index, AuthRoleList, resp)
            }
            Op::AuthRoleDelete(r) => {
                auth.role_delete(store, &r.role)?;
                auth_done!(
                    store,
                    index,
                    AuthRoleDelete,
                    pb::AuthRoleDeleteResponse::default()
                )
            }
            Op::AuthRoleGrantPermission(r) => {
                auth.role_grant_permission(store, &r)?;
                let resp = pb::AuthRoleGrantPermissionResponse::default();
                auth_done!(store, index, AuthRoleGrantPermission, resp)
            }
            Op::AuthRoleRevokePermission(r) => {
                auth.role_revoke_permission(store, &r)?;
                let resp = pb::AuthRoleRevokePermissionResponse::default();
                auth_done!(store, index, AuthRoleRevokePermission, resp)
            }
            other => {
                return Err(ServerError::Internal(format!(
                    "the backend applier has no case for {other:?}"
                )))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_proto::etcdserverpb::{
        alarm_request::AlarmAction, AlarmRequest, DeleteRangeRequest, PutRequest,
    };
    use std::time::Duration;

    fn chain(dir: &std::path::Path) -> (AlarmGate<BackendApplier>, Arc<Store>) {
        let store = Arc::new(Store::open(&dir.join("db")).unwrap());
        let alarms = Arc::new(AlarmSet::default());
        let backend = BackendApplier {
            store: store.clone(),
            lessor: Arc::new(Lessor::new(2, std::time::Duration::from_secs(300))),
            alarms: alarms.clone(),
            membership: Arc::new(RwLock::new(Membership::bootstrap(
                "default",
                &crate::config::ClusterSpec::default(),
            ))),
            auth: Arc::new(
                AuthStore::load(
                    &store,
                    oxcd_auth::TokenProvider::from_options("simple", Duration::from_secs(60))
                        .unwrap(),
                    4,
                )
                .unwrap(),
            ),
        };
        (AlarmGate::new(alarms, backend), store)
    }

    fn put(key: &str) -> Op {
        Op::Put(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            ..Default::default()
        })
    }

    fn alarm(action: AlarmAction, alarm: AlarmType) -> Op {
        Op::Alarm(AlarmRequest {
            action: action as i32,
            member_id: 1,
            alarm: alarm as i32,
        })
    }

    #[test]
    fn nospace_caps_growth_and_corrupt_stops_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let (chain, store) = chain(tmp.path());
        let header = RequestHeader::default();
        let mut index = 0;
        let mut apply = |op: Op| {
            index += 1;
            chain.apply(
                &EntryContext {
                    index,
                    header: &header,
                },
                op,
            )
        };
        assert!(apply(put("a")).is_ok());
        apply(alarm(AlarmAction::Activate, AlarmType::Nospace)).unwrap();
        assert_eq!(apply(put("b")).unwrap_err(), ServerError::NoSpace);
        let del = Op::DeleteRange(DeleteRangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        });
        assert!(apply(del).is_ok(), "deletes free space, so they pass");
        apply(alarm(AlarmAction::Deactivate, AlarmType::Nospace)).unwrap();
        assert!(apply(put("c")).is_ok());
        apply(alarm(AlarmAction::Activate, AlarmType::Corrupt)).unwrap();
        let del = Op::DeleteRange(DeleteRangeRequest {
            key: b"c".to_vec(),
            ..Default::default()
        });
        assert_eq!(apply(del).unwrap_err(), ServerError::Corrupt);
        assert_eq!(store.current_revision(), 4);
    }

    #[test]
    fn auth_gate_checks_the_header_user_and_revision() {
        use oxcd_proto::authpb::Permission;
        use oxcd_proto::etcdserverpb::{
            AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest,
            AuthUserAddRequest, AuthUserGrantRoleRequest, AuthUserListRequest,
        };
        let tmp = tempfile::tempdir().unwrap();
        let (inner, store) = chain(tmp.path());
        let auth = inner.next.auth.clone();
        let gate = AuthGate::new(auth.clone(), inner.next.lessor.clone(), inner);
        let mut index = 0;
        let mut apply = |user: &str, revision: u64, op: Op| {
            index += 1;
            let header = RequestHeader {
                username: user.into(),
                auth_revision: revision,
            };
            gate.apply(
                &EntryContext {
                    index,
                    header: &header,
                },
                op,
            )
        };
        let user = |name: &str| {
            Op::AuthUserAdd(AuthUserAddRequest {
                name: name.into(),
                hashed_password: auth.hash_password("pw").unwrap(),
                ..Default::default()
            })
        };
        let grant = |user: &str, role: &str| {
            Op::AuthUserGrantRole(AuthUserGrantRoleRequest {
                user: user.into(),
                role: role.into(),
            })
        };
        apply("", 0, user("root")).unwrap();
        apply("", 0, grant("root", "root")).unwrap();
        apply(
            "",
            0,
            Op::AuthRoleAdd(AuthRoleAddRequest { name: "w".into() }),
        )
        .unwrap();
        apply(
            "",
            0,
            Op::AuthRoleGrantPermission(AuthRoleGrantPermissionRequest {
                name: "w".into(),
                perm: Some(Permission {
                    perm_type: PermType::Write as i32,
                    key: b"a".to_vec(),
                    range_end: b"b".to_vec(),
                }),
            }),
        )
        .unwrap();
        apply("", 0, user("u")).unwrap();
        apply("", 0, grant("u", "w")).unwrap();
        apply("", 0, Op::AuthEnable(AuthEnableRequest {})).unwrap();
        let rev = auth.revision();
        assert_eq!(apply("", 0, put("a1")).unwrap_err(), ServerError::UserEmpty);
        apply("u", rev, put("a1")).unwrap();
        assert_eq!(
            apply("u", rev, put("c")).unwrap_err(),
            ServerError::PermissionDenied
        );
        assert_eq!(
            apply("u", rev, Op::AuthUserList(AuthUserListRequest {})).unwrap_err(),
            ServerError::PermissionDenied
        );
        // A change applied while u's put was in flight: the put carries the old revision.
        apply(
            "root",
            rev,
            Op::AuthRoleAdd(AuthRoleAddRequest { name: "x".into() }),
        )
        .unwrap();
        assert_eq!(
            apply("u", rev, put("a2")).unwrap_err(),
            ServerError::AuthOldRevision
        );
        apply("u", auth.revision(), put("a2")).unwrap();
        assert_eq!(store.current_revision(), 3);
    }
}
