//! The Auth service and the service-layer half of auth (etcd's `v3_server.go` auth parts):
//! who a request is ([`Credentials`] -> [`AuthInfo`]), the checks made before a read, and
//! AuthEnable/Disable/Status, Authenticate and user and role management.
//!
//! Writes are checked when they are applied (`apply/chain.rs`'s `AuthGate`), against
//! the user and auth revision the proposal's header carries, so a permission revoked while
//! a write is in flight cannot be bypassed. Reads are checked here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcd_auth::{simple_token_index, AuthInfo, AuthStore, PermType, TokenProvider};
use oxcd_proto::etcdserverpb::{
    request_op, AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse,
    AuthRoleGetRequest, AuthRoleGetResponse, AuthRoleGrantPermissionRequest,
    AuthRoleGrantPermissionResponse, AuthRoleListRequest, AuthRoleListResponse,
    AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthStatusResponse,
    AuthUserAddRequest, AuthUserAddResponse, AuthUserChangePasswordRequest,
    AuthUserChangePasswordResponse, AuthUserDeleteRequest, AuthUserDeleteResponse,
    AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse,
    AuthUserListRequest, AuthUserListResponse, AuthUserRevokeRoleRequest,
    AuthUserRevokeRoleResponse, AuthenticateRequest, AuthenticateResponse, RequestOp, TxnRequest,
};
use oxcd_proto::oxcdinternal::{AuthenticateRequest as InternalAuthenticate, RequestHeader};
use parking_lot::Mutex;

use crate::error::ServerError;
use crate::server::EtcdServer;

/// What a request carries to say who sends it, as its adapter found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The token: gRPC metadata `token`, or the gateway's `Authorization` header.
    pub token: Option<String>,
    /// The common name of the client's verified TLS certificate: the user a request
    /// without a token acts as while auth is enabled.
    pub cert_common_name: Option<String>,
    /// The client's address (failed authentications are slowed down per address).
    pub client: Option<IpAddr>,
    /// The server's own request (lease expiry, health probes): acts as root.
    internal: bool,
}

impl Credentials {
    /// A client's credentials: its token, the common name of its verified client
    /// certificate, its address.
    pub fn new(
        token: Option<String>,
        cert_common_name: Option<String>,
        client: Option<IpAddr>,
    ) -> Credentials {
        Credentials {
            token,
            cert_common_name,
            client,
            internal: false,
        }
    }

    /// The server's own requests, which act as root (etcd's `WithRoot`).
    pub(crate) fn server() -> Credentials {
        Credentials {
            internal: true,
            ..Credentials::default()
        }
    }
}

/// Failed authentications this many times in a row from one address are slowed down.
const FREE_FAILURES: u32 = 5;
/// The delay per failure beyond the free ones, up to [`MAX_FAILURE_DELAY`].
const FAILURE_DELAY: Duration = Duration::from_millis(200);
/// The longest delay before an Authenticate is answered (well under clients' usual 5 s
/// deadline: a legitimate client behind a guesser's address still gets its answer).
const MAX_FAILURE_DELAY: Duration = Duration::from_secs(2);
/// A client's failures are forgotten after this long without one.
const FAILURE_MEMORY: Duration = Duration::from_secs(60);
/// Addresses remembered at most (the oldest are dropped first).
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// Failed authentications per client address: password guessing gets slower with each
/// failure (the answer is the same, only later).
#[derive(Debug, Default)]
pub(crate) struct FailureLimiter {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailureLimiter {
    /// How long an Authenticate from `client` waits before it is checked.
    pub(crate) fn delay(&self, client: Option<IpAddr>) -> Duration {
        let Some(ip) = client else {
            return Duration::ZERO;
        };
        let map = self.failures.lock();
        match map.get(&ip) {
            Some((n, at)) if at.elapsed() < FAILURE_MEMORY && *n > FREE_FAILURES => {
                (FAILURE_DELAY * (*n - FREE_FAILURES)).min(MAX_FAILURE_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    /// Records the outcome of an authentication from `client`.
    pub(crate) fn record(&self, client: Option<IpAddr>, failed: bool) {
        let Some(ip) = client else { return };
        let mut map = self.failures.lock();
        if !failed {
            map.remove(&ip);
            return;
        }
        if map.len() >= MAX_TRACKED_CLIENTS {
            map.retain(|_, (_, at)| at.elapsed() < FAILURE_MEMORY);
            if map.len() >= MAX_TRACKED_CLIENTS {
                if let Some(oldest) = map.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_MEMORY {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = Instant::now();
    }
}

/// Builds the auth store of a starting member.
pub(crate) fn open_auth_store(
    store: &oxcd_mvcc::Store,
    cfg: &crate::config::CoreConfig,
) -> Result<AuthStore, String> {
    let tokens = TokenProvider::from_options(&cfg.auth_token, cfg.auth_token_ttl)?;
    if let TokenProvider::Simple(_) = tokens {
        tracing::warn!("simple token is not cryptographically signed");
    }
    AuthStore::load(store, tokens, cfg.bcrypt_cost).map_err(|e| e.to_string())
}

/// Whether a txn's compares, reads and writes are all permitted (etcd's `checkTxnAuth`).
pub(crate) fn check_txn(
    auth: &AuthStore,
    info: &AuthInfo,
    t: &TxnRequest,
) -> Result<(), oxcd_auth::AuthError> {
    for c in &t.compare {
        auth.is_op_permitted(info, &c.key, &c.range_end, PermType::Read)?;
    }
    check_ops(auth, info, &t.success)?;
    check_ops(auth, info, &t.failure)
}

fn check_ops(
    auth: &AuthStore,
    info: &AuthInfo,
    ops: &[RequestOp],
) -> Result<(), oxcd_auth::AuthError> {
    for op in ops {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                auth.is_op_permitted(info, &r.key, &r.range_end, PermType::Read)?
            }
            Some(request_op::Request::RequestPut(r)) => {
                auth.is_op_permitted(info, &r.key, &[], PermType::Write)?
            }
            Some(request_op::Request::RequestDeleteRange(r)) => {
                if r.prev_kv {
                    auth.is_op_permitted(info, &r.key, &r.range_end, PermType::Read)?;
                }
                auth.is_op_permitted(info, &r.key, &r.range_end, PermType::Write)?
            }
            Some(request_op::Request::RequestTxn(t)) => check_txn(auth, info, t)?,
            None => {}
        }
    }
    Ok(())
}

impl EtcdServer {
    /// The auth store.
    pub fn auth_store(&self) -> &Arc<AuthStore> {
        &self.auth
    }

    /// Who `cred` is (etcd's `AuthInfoFromCtx`, then the TLS common name): `None` without
    /// credentials. A token that is unknown, expired or forged fails with "invalid auth
    /// token"; a simple token first waits until this member has applied the entry that
    /// created it, so a token from one member works on all.
    pub async fn auth_info(&self, cred: &Credentials) -> Result<Option<AuthInfo>, ServerError> {
        if cred.internal {
            return Ok(self.auth.is_enabled().then(|| AuthInfo {
                username: "root".into(),
                revision: self.auth.revision(),
            }));
        }
        if let Some(token) = &cred.token {
            if let TokenProvider::Simple(_) = self.auth.tokens() {
                let index = simple_token_index(token).ok_or(ServerError::InvalidAuthToken)?;
                tokio::time::timeout(self.request_timeout(), self.applied_to(index))
                    .await
                    .map_err(|_| ServerError::InvalidAuthToken)??;
            }
            return match self.auth.info_from_token(token) {
                Some(info) => Ok(Some(info)),
                None => {
                    tracing::warn!("invalid auth token");
                    Err(ServerError::InvalidAuthToken)
                }
            };
        }
        if let Some(cn) = &cred.cert_common_name {
            return Ok(Some(AuthInfo {
                username: cn.clone(),
                revision: self.auth.revision(),
            }));
        }
        Ok(None)
    }

    /// The request header a proposal made for `cred` carries.
    pub(crate) async fn request_header(
        &self,
        cred: &Credentials,
    ) -> Result<RequestHeader, ServerError> {
        if !self.auth.is_enabled() && cred.token.is_none() {
            return Ok(RequestHeader::default());
        }
        Ok(self
            .auth_info(cred)
            .await?
            .map(|i| RequestHeader {
                username: i.username,
                auth_revision: i.revision,
            })
            .unwrap_or_default())
    }

    /// etcd's `doSerialize` for a read: `check` against the caller (an empty one without
    /// credentials), `read`, then "auth revision is old" if the store changed meanwhile.
    pub(crate) async fn serialized_read<T>(
        &self,
        cred: &Credentials,
        check: impl FnOnce(&AuthStore, &AuthInfo) -> Result<(), oxcd_auth::AuthError>,
        read: impl FnOnce() -> Result<T, ServerError>,
    ) -> Result<T, ServerError> {
        if !self.auth.is_enabled() && cred.token.is_none() {
            return read();
        }
        let info = self.auth_info(cred).await?.unwrap_or_default();
        check(&self.auth, &info)?;
        let out = read()?;
        if info.revision != 0 && info.revision != self.auth.revision() {
            return Err(ServerError::AuthOldRevision);
        }
        Ok(out)
    }

    /// Whether `cred` may do what needs root (etcd's `IsAdminPermitted` after
    /// `AuthInfoFromCtx`): compaction, defragment, hash, alarms, member changes.
    pub async fn check_admin(&self, cred: &Credentials) -> Result<(), ServerError> {
        if !self.auth.is_enabled() && cred.token.is_none() {
            return Ok(());
        }
        let info = self.auth_info(cred).await?;
        Ok(self.auth.is_admin_permitted(info.as_ref())?)
    }

    /// Whether `cred` may watch `(key, range_end)` (checked when the watcher is created).
    pub async fn check_watch(
        &self,
        cred: &Credentials,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), ServerError> {
        if !self.auth.is_enabled() && cred.token.is_none() {
            return Ok(());
        }
        let info = self.auth_info(cred).await?.unwrap_or_default();
        Ok(self
            .auth
            .is_op_permitted(&info, key, range_end, PermType::Read)?)
    }

    /// AuthEnable (root only once enabled; needs user `root` with role `root`).
    pub async fn auth_enable(
        &self,
        cred: &Credentials,
        req: AuthEnableRequest,
    ) -> Result<AuthEnableResponse, ServerError> {
        let mut resp = self.propose_as(cred, req).await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// AuthDisable (root only).
    pub async fn auth_disable(
        &self,
        cred: &Credentials,
        req: AuthDisableRequest,
    ) -> Result<AuthDisableResponse, ServerError> {
        let mut resp = self.propose_as(cred, req).await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// AuthStatus: whether auth is enabled, and the auth revision.
    pub async fn auth_status(&self) -> Result<AuthStatusResponse, ServerError> {
        self.linearizable_barrier().await?;
        let mut resp = AuthStatusResponse {
            header: None,
            enabled: self.auth.is_enabled(),
            auth_revision: self.auth.revision(),
        };
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// Authenticate: checks the password here (bcrypt, off the async workers), then
    /// proposes the token's creation, so every member knows it (etcd's flow; the password
    /// never enters the log). Failures from one address are slowed down.
    pub async fn authenticate(
        &self,
        cred: &Credentials,
        req: AuthenticateRequest,
    ) -> Result<AuthenticateResponse, ServerError> {
        self.linearizable_barrier().await?;
        let delay = self.auth_failures.delay(cred.client);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        loop {
            let auth = self.auth.clone();
            let (name, password) = (req.name.clone(), req.password.clone());
            let checked =
                tokio::task::spawn_blocking(move || auth.check_password(&name, &password))
                    .await
                    .map_err(|e| ServerError::Internal(format!("password check failed: {e}")))?;
            let revision = match checked {
                Ok(r) => r,
                Err(e) => {
                    if e != oxcd_auth::AuthError::AuthNotEnabled {
                        tracing::warn!(user = %req.name, error = %e, "invalid authentication was requested");
                        self.auth_failures.record(cred.client, true);
                    }
                    return Err(e.into());
                }
            };
            self.auth_failures.record(cred.client, false);
            let simple_token = self.auth.tokens().gen_prefix()?;
            let internal = InternalAuthenticate {
                name: req.name.clone(),
                simple_token,
            };
            let mut resp = self.propose_as(&Credentials::default(), internal).await?;
            if revision == self.auth.revision() {
                self.fill_header(&mut resp.header);
                return Ok(resp);
            }
            tracing::info!("revision when password checked became stale; retrying");
        }
    }

    /// bcrypt-hashes a password off the async workers.
    async fn hash_password(&self, password: String) -> Result<String, ServerError> {
        let auth = self.auth.clone();
        Ok(
            tokio::task::spawn_blocking(move || auth.hash_password(&password))
                .await
                .map_err(|e| ServerError::Internal(format!("password hashing failed: {e}")))??,
        )
    }

    /// UserAdd (root only once enabled). The password is hashed here: only the hash goes
    /// through raft.
    pub async fn user_add(
        &self,
        cred: &Credentials,
        mut req: AuthUserAddRequest,
    ) -> Result<AuthUserAddResponse, ServerError> {
        let no_password = req.options.is_some_and(|o| o.no_password);
        if !no_password && req.hashed_password.is_empty() {
            req.hashed_password = self
                .hash_password(std::mem::take(&mut req.password))
                .await?;
        }
        req.password.clear();
        let mut resp = self.propose_as(cred, req).await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// UserChangePassword (root only once enabled); hashed here like [`EtcdServer::user_add`].
    pub async fn user_change_password(
        &self,
        cred: &Credentials,
        mut req: AuthUserChangePasswordRequest,
    ) -> Result<AuthUserChangePasswordResponse, ServerError> {
        if req.hashed_password.is_empty() {
            req.hashed_password = self
                .hash_password(std::mem::take(&mut req.password))
                .await?;
        }
        req.password.clear();
        let mut resp = self.propose_as(cred, req).await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }
}

/// The Auth methods that only propose and fill the header.
macro_rules! proposed {
    ($($(#[$doc:meta])* $name:ident: $req:ty => $resp:ty,)*) => {
        impl EtcdServer {
            $(
                $(#[$doc])*
                pub async fn $name(&self, cred: &Credentials, req: $req) -> Result<$resp, ServerError> {
                    let mut resp = self.propose_as(cred, req).await?;
                    self.fill_header(&mut resp.header);
                    Ok(resp)
                }
            )*
        }
    };
}

proposed! {
    /// UserGet (root, or the user itself).
    user_get: AuthUserGetRequest => AuthUserGetResponse,
    /// UserList (root only once enabled).
    user_list: AuthUserListRequest => AuthUserListResponse,
    /// UserDelete (root only once enabled; never `root` while enabled).
    user_delete: AuthUserDeleteRequest => AuthUserDeleteResponse,
    /// UserGrantRole (root only once enabled).
    user_grant_role: AuthUserGrantRoleRequest => AuthUserGrantRoleResponse,
    /// UserRevokeRole (root only once enabled).
    user_revoke_role: AuthUserRevokeRoleRequest => AuthUserRevokeRoleResponse,
    /// RoleAdd (root only once enabled).
    role_add: AuthRoleAddRequest => AuthRoleAddResponse,
    /// RoleGet (root, or a user holding the role).
    role_get: AuthRoleGetRequest => AuthRoleGetResponse,
    /// RoleList (root only once enabled).
    role_list: AuthRoleListRequest => AuthRoleListResponse,
    /// RoleDelete (root only once enabled).
    role_delete: AuthRoleDeleteRequest => AuthRoleDeleteResponse,
    /// RoleGrantPermission (root only once enabled).
    role_grant_permission: AuthRoleGrantPermissionRequest => AuthRoleGrantPermissionResponse,
    /// RoleRevokePermission (root only once enabled).
    role_revoke_permission: AuthRoleRevokePermissionRequest => AuthRoleRevokePermissionResponse,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_slow_down_only_their_client() {
        let l = FailureLimiter::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..FREE_FAILURES {
            l.record(Some(a), true);
        }
        assert_eq!(l.delay(Some(a)), Duration::ZERO);
        l.record(Some(a), true);
        assert_eq!(l.delay(Some(a)), FAILURE_DELAY);
        for _ in 0..100 {
            l.record(Some(a), true);
        }
        assert_eq!(l.delay(Some(a)), MAX_FAILURE_DELAY);
        assert_eq!(l.delay(Some(b)), Duration::ZERO);
        assert_eq!(l.delay(None), Duration::ZERO);
        l.record(Some(a), false);
        assert_eq!(l.delay(Some(a)), Duration::ZERO, "a success clears it");
    }
}
