//! Typed proposals: what goes through raft, and how its answer comes back.
//!
//! A request that changes state is wrapped in a [`RaftRequest`] envelope with a unique id
//! and a request header; a [`Waiters`] entry for the id receives the applier's answer.
//! [`Proposal`] ties each request type to its response type, so
//! [`EtcdServer::propose`](crate::EtcdServer) returns a `PutResponse` for a `PutRequest`
//! by its type; the one place where the applier's [`ApplyResponse`] is matched against
//! the expected kind is [`Proposal::take`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use oxcd_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AuthDisableRequest, AuthDisableResponse, AuthEnableRequest,
    AuthEnableResponse, AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest,
    AuthRoleDeleteResponse, AuthRoleGetRequest, AuthRoleGetResponse,
    AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse, AuthRoleListRequest,
    AuthRoleListResponse, AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse,
    AuthUserAddRequest, AuthUserAddResponse, AuthUserChangePasswordRequest,
    AuthUserChangePasswordResponse, AuthUserDeleteRequest, AuthUserDeleteResponse,
    AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse,
    AuthUserListRequest, AuthUserListResponse, AuthUserRevokeRoleRequest,
    AuthUserRevokeRoleResponse, AuthenticateResponse, CompactionRequest, CompactionResponse,
    DeleteRangeRequest, DeleteRangeResponse, LeaseCheckpointRequest, LeaseCheckpointResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, Member,
    MemberUpdateRequest, PutRequest, PutResponse, TxnRequest, TxnResponse,
};
use oxcd_proto::oxcdinternal::{raft_request::Op, AuthenticateRequest, MemberAttributes};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::ServerError;

/// A request that goes through raft, and the response applying it yields.
pub trait Proposal: Sized {
    /// The response applying it yields.
    type Response;
    /// The envelope's operation.
    fn into_op(self) -> Op;
    /// This proposal's response out of the applier's answer; `None` if the applier
    /// answered with another kind (a bug, reported as an internal error).
    fn take(resp: ApplyResponse) -> Option<Self::Response>;
}

macro_rules! proposals {
    ($($variant:ident: $req:ty => $resp:ty,)*) => {
        /// What applying one committed entry produced: one variant per [`Proposal`], and
        /// the membership after a membership change (a raft conf change, not a request).
        #[derive(Debug, Clone)]
        pub enum ApplyResponse {
            $(
                #[doc = concat!("The response to a `", stringify!($variant), "`.")]
                $variant($resp),
            )*
            /// The members after an applied membership change.
            Members(Vec<Member>),
        }

        $(
            impl Proposal for $req {
                type Response = $resp;
                fn into_op(self) -> Op {
                    Op::$variant(self)
                }
                fn take(resp: ApplyResponse) -> Option<$resp> {
                    match resp {
                        ApplyResponse::$variant(r) => Some(r),
                        _ => None,
                    }
                }
            }
        )*
    };
}

proposals! {
    Put: PutRequest => PutResponse,
    DeleteRange: DeleteRangeRequest => DeleteRangeResponse,
    Txn: TxnRequest => TxnResponse,
    Compaction: CompactionRequest => CompactionResponse,
    LeaseGrant: LeaseGrantRequest => LeaseGrantResponse,
    LeaseRevoke: LeaseRevokeRequest => LeaseRevokeResponse,
    LeaseCheckpoint: LeaseCheckpointRequest => LeaseCheckpointResponse,
    Alarm: AlarmRequest => AlarmResponse,
    MemberUpdate: MemberUpdateRequest => Vec<Member>,
    MemberAttributes: MemberAttributes => (),
    AuthEnable: AuthEnableRequest => AuthEnableResponse,
    AuthDisable: AuthDisableRequest => AuthDisableResponse,
    Authenticate: AuthenticateRequest => AuthenticateResponse,
    AuthUserAdd: AuthUserAddRequest => AuthUserAddResponse,
    AuthUserDelete: AuthUserDeleteRequest => AuthUserDeleteResponse,
    AuthUserChangePassword: AuthUserChangePasswordRequest => AuthUserChangePasswordResponse,
    AuthUserGrantRole: AuthUserGrantRoleRequest => AuthUserGrantRoleResponse,
    AuthUserGet: AuthUserGetRequest => AuthUserGetResponse,
    AuthUserList: AuthUserListRequest => AuthUserListResponse,
    AuthUserRevokeRole: AuthUserRevokeRoleRequest => AuthUserRevokeRoleResponse,
    AuthRoleAdd: AuthRoleAddRequest => AuthRoleAddResponse,
    AuthRoleGet: AuthRoleGetRequest => AuthRoleGetResponse,
    AuthRoleList: AuthRoleListRequest => AuthRoleListResponse,
    AuthRoleDelete: AuthRoleDeleteRequest => AuthRoleDeleteResponse,
    AuthRoleGrantPermission: AuthRoleGrantPermissionRequest => AuthRoleGrantPermissionResponse,
    AuthRoleRevokePermission: AuthRoleRevokePermissionRequest => AuthRoleRevokePermissionResponse,
}

/// A waiter's answer: the response, or the error the apply step ended in.
pub type ApplyResult = Result<ApplyResponse, ServerError>;

/// Proposal ids -> the handler waiting for that proposal to be applied.
#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<u64, oneshot::Sender<ApplyResult>>>,
}

impl Waiters {
    pub(crate) fn register(&self, id: u64) -> oneshot::Receiver<ApplyResult> {
        let (tx, rx) = oneshot::channel();
        self.map.lock().insert(id, tx);
        rx
    }

    pub(crate) fn cancel(&self, id: u64) {
        self.map.lock().remove(&id);
    }

    /// Answers the waiter for `id`, if this member proposed it and it still waits.
    pub fn trigger(&self, id: u64, result: ApplyResult) {
        if let Some(tx) = self.map.lock().remove(&id) {
            let _ = tx.send(result);
        }
    }

    /// Fails every waiter (shutdown).
    pub fn fail_all(&self, err: ServerError) {
        for (_, tx) in self.map.lock().drain() {
            let _ = tx.send(Err(err.clone()));
        }
    }
}

/// etcd's proposal counters (`etcd_server_proposals_pending` and
/// `etcd_server_proposals_failed_total`), kept with atomics so counting costs a proposal
/// nothing measurable; the metrics read them when scraped.
#[derive(Debug, Default)]
pub struct ProposalStats {
    pending: AtomicI64,
    failed: AtomicU64,
}

impl ProposalStats {
    /// Proposals proposed and not yet answered (applied, failed or given up on).
    pub fn pending(&self) -> i64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Proposals raft did not take, or that were not applied in time, since start.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Counts one more failed proposal.
    pub(crate) fn fail(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a proposal as pending until the guard is dropped.
    pub(crate) fn pending_guard(&self) -> PendingGuard<'_> {
        self.pending.fetch_add(1, Ordering::Relaxed);
        PendingGuard(self)
    }
}

/// Linearizable reads' ReadIndex rounds that failed or were slow (etcd's
/// `etcd_server_read_indexes_failed_total` and `etcd_server_slow_read_indexes_total`).
#[derive(Debug, Default)]
pub struct ReadIndexStats {
    slow: AtomicU64,
    failed: AtomicU64,
}

impl ReadIndexStats {
    /// ReadIndex rounds that timed out, since start.
    pub fn slow(&self) -> u64 {
        self.slow.load(Ordering::Relaxed)
    }

    /// ReadIndex rounds raft refused (no leader, leader changed), since start.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    pub(crate) fn count_slow(&self) {
        self.slow.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A pending proposal; no longer pending when dropped (answered, or its caller gone).
pub(crate) struct PendingGuard<'a>(&'a ProposalStats);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Generates proposal ids unique across restarts of this member, like etcd's idutil: the
/// member id's low 16 bits, then a millisecond timestamp, then a counter.
pub struct IdGenerator {
    prefix: u64,
    next: AtomicU64,
}

impl IdGenerator {
    /// Starts a generator for `member_id` at the current time.
    pub fn new(member_id: u64) -> IdGenerator {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        IdGenerator {
            prefix: (member_id & 0xffff) << 48,
            next: AtomicU64::new((ms & 0xff_ffff_ffff) << 8),
        }
    }

    /// The next id.
    pub fn next(&self) -> u64 {
        let suffix = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.prefix | (suffix & 0xffff_ffff_ffff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_carry_member_prefix() {
        let g = IdGenerator::new(0xabcd_1234);
        let a = g.next();
        let b = g.next();
        assert_ne!(a, b);
        assert_eq!(a >> 48, 0x1234);
    }

    #[tokio::test]
    async fn waiter_gets_its_result_once() {
        let w = Waiters::default();
        let rx = w.register(7);
        w.trigger(7, Err(ServerError::NoLeader));
        w.trigger(7, Err(ServerError::Timeout));
        assert_eq!(rx.await.unwrap().unwrap_err(), ServerError::NoLeader);
    }

    #[test]
    fn a_proposal_takes_only_its_own_response() {
        let put = ApplyResponse::Put(PutResponse::default());
        assert!(<PutRequest as Proposal>::take(put.clone()).is_some());
        assert!(<TxnRequest as Proposal>::take(put).is_none());
        assert!(matches!(PutRequest::default().into_op(), Op::Put(_)));
    }
}
