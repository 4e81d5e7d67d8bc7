//! The auth store (etcd's `auth/store.go`): the applied state and its checks.

use std::collections::{BTreeMap, HashMap};

use oxcd_mvcc::{MvccError, Store};
use oxcd_proto::authpb::{Permission, Role, User, UserAddOptions};
use oxcd_proto::etcdserverpb::{
    AuthRoleGetResponse, AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest,
    AuthUserAddRequest, AuthUserGetResponse,
};
use parking_lot::RwLock;
use prost::Message;

use crate::error::AuthError;
use crate::perms::UserPerms;
use crate::token::TokenProvider;
use crate::{AuthInfo, PermType};

/// etcd's `--bcrypt-cost` default.
pub const DEFAULT_BCRYPT_COST: u32 = 10;

const AUTH_TABLE: &str = "auth";
const USERS_TABLE: &str = "authUsers";
const ROLES_TABLE: &str = "authRoles";
const ENABLED_KEY: &[u8] = b"authEnabled";
const REVISION_KEY: &[u8] = b"authRevision";
const ROOT: &str = "root";

#[derive(Debug, Default)]
struct State {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    /// user -> merged permissions of its roles.
    perms: HashMap<String, UserPerms>,
}

impl State {
    fn refresh_perms(&mut self) {
        let roles = &self.roles;
        self.perms = self
            .users
            .iter()
            .map(|(name, u)| {
                let perms = u
                    .roles
                    .iter()
                    .filter_map(|r| roles.get(r))
                    .flat_map(|r| r.key_permission.iter());
                (name.clone(), UserPerms::merge(perms))
            })
            .collect();
    }
}

fn has_root_role(u: &User) -> bool {
    u.roles.binary_search_by(|r| r.as_str().cmp(ROOT)).is_ok()
}

fn corrupt(what: String) -> AuthError {
    AuthError::Backend(MvccError::Corrupt { what })
}

/// The auth state of this member, as applied from the log.
#[derive(Debug)]
pub struct AuthStore {
    state: RwLock<State>,
    tokens: TokenProvider,
    bcrypt_cost: u32,
}

impl AuthStore {
    /// The auth state `store` holds, with `tokens` and `bcrypt_cost` (etcd: outside 4..=31
    /// falls back to the default with a warning).
    pub fn load(
        store: &Store,
        tokens: TokenProvider,
        bcrypt_cost: u32,
    ) -> Result<AuthStore, AuthError> {
        let bcrypt_cost = if (4..=31).contains(&bcrypt_cost) {
            bcrypt_cost
        } else {
            tracing::warn!(
                given = bcrypt_cost,
                default = DEFAULT_BCRYPT_COST,
                "use default bcrypt cost instead of the invalid given cost"
            );
            DEFAULT_BCRYPT_COST
        };
        let s = AuthStore {
            state: RwLock::new(State::default()),
            tokens,
            bcrypt_cost,
        };
        s.reload(store)?;
        Ok(s)
    }

    /// Replaces the state with what `store` holds (at start, or after a snapshot from the
    /// leader replaced the backend).
    pub fn reload(&self, store: &Store) -> Result<(), AuthError> {
        let mut st = State::default();
        for (k, v) in store.aux_scan(AUTH_TABLE)? {
            if k == ENABLED_KEY {
                st.enabled = v == [1];
            } else if k == REVISION_KEY {
                let b: [u8; 8] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt(format!("auth revision of {} bytes", v.len())))?;
                st.revision = u64::from_be_bytes(b);
            }
        }
        // etcd starts a fresh store at revision 1.
        st.revision = st.revision.max(1);
        for (k, v) in store.aux_scan(USERS_TABLE)? {
            let u = User::decode(v.as_slice())
                .map_err(|e| corrupt(format!("auth user record: {e}")))?;
            st.users.insert(String::from_utf8_lossy(&k).into_owned(), u);
        }
        for (k, v) in store.aux_scan(ROLES_TABLE)? {
            let r = Role::decode(v.as_slice())
                .map_err(|e| corrupt(format!("auth role record: {e}")))?;
            st.roles.insert(String::from_utf8_lossy(&k).into_owned(), r);
        }
        st.refresh_perms();
        if st.enabled {
            self.tokens.enable();
        } else {
            self.tokens.disable();
        }
        *self.state.write() = st;
        Ok(())
    }

    /// Whether auth is enabled.
    pub fn is_enabled(&self) -> bool {
        self.state.read().enabled
    }

    /// The auth revision (bumped by every change of users, roles or permissions).
    pub fn revision(&self) -> u64 {
        self.state.read().revision
    }

    /// The token provider.
    pub fn tokens(&self) -> &TokenProvider {
        &self.tokens
    }

    /// bcrypt-hashes `password` at `--bcrypt-cost` in etcd's `$2a$` form. Slow by design:
    /// call it off the async workers.
    pub fn hash_password(&self, password: &str) -> Result<String, AuthError> {
        bcrypt::hash_with_result(password, self.bcrypt_cost)
            .map(|h| h.format_for_version(bcrypt::Version::TwoA))
            .map_err(|e| AuthError::Hash(e.to_string()))
    }

    /// etcd's `CheckPassword`: the auth revision if `password` is `name`'s. Slow by design
    /// (bcrypt): call it off the async workers.
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64, AuthError> {
        let (hash, revision) = {
            let st = self.state.read();
            if !st.enabled {
                return Err(AuthError::AuthNotEnabled);
            }
            let user = st.users.get(name).ok_or(AuthError::AuthFailed)?;
            if user.options.as_ref().is_some_and(|o| o.no_password) {
                return Err(AuthError::NoPasswordUser);
            }
            (user.password.clone(), st.revision)
        };
        let ok = std::str::from_utf8(&hash)
            .ok()
            .and_then(|h| bcrypt::verify(password, h).ok())
            .unwrap_or(false);
        if !ok {
            tracing::info!(user = %name, "invalid password");
            return Err(AuthError::AuthFailed);
        }
        Ok(revision)
    }

    /// Who `token` belongs to (simple tokens: the member must have applied the token's
    /// index first).
    pub fn info_from_token(&self, token: &str) -> Option<AuthInfo> {
        self.tokens.info(token, self.revision())
    }

    fn commit_revision(st: &mut State, store: &Store) -> Result<(), AuthError> {
        st.revision += 1;
        store.aux_put(AUTH_TABLE, REVISION_KEY, &st.revision.to_be_bytes())?;
        Ok(())
    }

    fn put_user(store: &Store, u: &User) -> Result<(), AuthError> {
        Ok(store.aux_put(USERS_TABLE, &u.name, &u.encode_to_vec())?)
    }

    fn put_role(store: &Store, r: &Role) -> Result<(), AuthError> {
        Ok(store.aux_put(ROLES_TABLE, &r.name, &r.encode_to_vec())?)
    }

    /// AuthEnable: needs user `root` holding role `root`.
    pub fn enable(&self, store: &Store) -> Result<(), AuthError> {
        let mut st = self.state.write();
        if st.enabled {
            tracing::info!("authentication is already enabled; ignored auth enable request");
            return Ok(());
        }
        let root = st.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
        if !has_root_role(root) {
            return Err(AuthError::RootRoleNotExist);
        }
        store.aux_put(AUTH_TABLE, ENABLED_KEY, &[1])?;
        st.enabled = true;
        self.tokens.enable();
        st.refresh_perms();
        tracing::info!("enabled authentication");
        Ok(())
    }

    /// AuthDisable (bumps the revision).
    pub fn disable(&self, store: &Store) -> Result<(), AuthError> {
        let mut st = self.state.write();
        if !st.enabled {
            return Ok(());
        }
        store.aux_put(AUTH_TABLE, ENABLED_KEY, &[0])?;
        Self::commit_revision(&mut st, store)?;
        st.enabled = false;
        self.tokens.disable();
        tracing::info!("disabled authentication");
        Ok(())
    }

    /// The applied Authenticate: a token for `name`, whose password the proposer checked.
    /// `prefix` is the proposer's simple-token prefix and `index` the entry's raft index.
    pub fn authenticate(&self, name: &str, prefix: &str, index: u64) -> Result<String, AuthError> {
        let st = self.state.read();
        if !st.enabled {
            return Err(AuthError::AuthNotEnabled);
        }
        let user = st.users.get(name).ok_or(AuthError::AuthFailed)?;
        if user.options.as_ref().is_some_and(|o| o.no_password) {
            return Err(AuthError::AuthFailed);
        }
        self.tokens.assign(name, st.revision, prefix, index)
    }

    /// UserAdd; `r.hashed_password` holds the hash the proposer computed (the plain
    /// password never enters the log).
    pub fn user_add(&self, store: &Store, r: &AuthUserAddRequest) -> Result<(), AuthError> {
        if r.name.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        let mut st = self.state.write();
        if st.users.contains_key(&r.name) {
            return Err(AuthError::UserAlreadyExist);
        }
        let options = r.options.unwrap_or(UserAddOptions { no_password: false });
        let password = if options.no_password {
            Vec::new()
        } else {
            r.hashed_password.as_bytes().to_vec()
        };
        let user = User {
            name: r.name.as_bytes().to_vec(),
            password,
            roles: Vec::new(),
            options: Some(options),
        };
        Self::put_user(store, &user)?;
        Self::commit_revision(&mut st, store)?;
        st.users.insert(r.name.clone(), user);
        st.refresh_perms();
        tracing::info!(user = %r.name, "added a user");
        Ok(())
    }

    /// UserDelete (not `root` while auth is enabled).
    pub fn user_delete(&self, store: &Store, name: &str) -> Result<(), AuthError> {
        let mut st = self.state.write();
        if st.enabled && name == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        if !st.users.contains_key(name) {
            return Err(AuthError::UserNotFound);
        }
        store.aux_delete(USERS_TABLE, name.as_bytes())?;
        Self::commit_revision(&mut st, store)?;
        st.users.remove(name);
        st.refresh_perms();
        self.tokens.invalidate_user(name);
        tracing::info!(user = %name, "deleted a user");
        Ok(())
    }

    /// UserChangePassword with the proposer's hash.
    pub fn user_change_password(
        &self,
        store: &Store,
        name: &str,
        hashed: &str,
    ) -> Result<(), AuthError> {
        let mut st = self.state.write();
        let mut user = st.users.get(name).cloned().ok_or(AuthError::UserNotFound)?;
        user.password = hashed.as_bytes().to_vec();
        Self::put_user(store, &user)?;
        Self::commit_revision(&mut st, store)?;
        st.users.insert(name.to_string(), user);
        self.tokens.invalidate_user(name);
        tracing::info!(user = %name, "changed a password of a user");
        Ok(())
    }

    /// UserGrantRole (role `root` need not exist as a role).
    pub fn user_grant_role(&self, store: &Store, name: &str, role: &str) -> Result<(), AuthError> {
        let mut st = self.state.write();
        let mut user = st.users.get(name).cloned().ok_or(AuthError::UserNotFound)?;
        if role != ROOT && !st.roles.contains_key(role) {
            return Err(AuthError::RoleNotFound);
        }
        let Err(at) = user.roles.binary_search_by(|r| r.as_str().cmp(role)) else {
            tracing::warn!(user = %name, role = %role, "ignored grant role request to a user");
            return Ok(());
        };
        user.roles.insert(at, role.to_string());
        Self::put_user(store, &user)?;
        Self::commit_revision(&mut st, store)?;
        st.users.insert(name.to_string(), user);
        st.refresh_perms();
        tracing::info!(user = %name, role = %role, "granted a role to a user");
        Ok(())
    }

    /// UserGet: the user's roles.
    pub fn user_get(&self, name: &str) -> Result<AuthUserGetResponse, AuthError> {
        let st = self.state.read();
        let user = st.users.get(name).ok_or(AuthError::UserNotFound)?;
        Ok(AuthUserGetResponse {
            header: None,
            roles: user.roles.clone(),
        })
    }

    /// UserList: every user name, sorted.
    pub fn user_list(&self) -> Vec<String> {
        self.state.read().users.keys().cloned().collect()
    }

    /// UserRevokeRole (not role `root` from user `root` while auth is enabled).
    pub fn user_revoke_role(&self, store: &Store, name: &str, role: &str) -> Result<(), AuthError> {
        let mut st = self.state.write();
        if st.enabled && name == ROOT && role == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        let mut user = st.users.get(name).cloned().ok_or(AuthError::UserNotFound)?;
        let before = user.roles.len();
        user.roles.retain(|r| r != role);
        if user.roles.len() == before {
            return Err(AuthError::RoleNotGranted);
        }
        Self::put_user(store, &user)?;
        Self::commit_revision(&mut st, store)?;
        st.users.insert(name.to_string(), user);
        st.refresh_perms();
        tracing::info!(user = %name, role = %role, "revoked a role from a user");
        Ok(())
    }

    /// RoleAdd.
    pub fn role_add(&self, store: &Store, name: &str) -> Result<(), AuthError> {
        if name.is_empty() {
            return Err(AuthError::RoleEmpty);
        }
        let mut st = self.state.write();
        if st.roles.contains_key(name) {
            return Err(AuthError::RoleAlreadyExist);
        }
        let role = Role {
            name: name.as_bytes().to_vec(),
            key_permission: Vec::new(),
        };
        Self::put_role(store, &role)?;
        Self::commit_revision(&mut st, store)?;
        st.roles.insert(name.to_string(), role);
        st.refresh_perms();
        tracing::info!(role = %name, "created a role");
        Ok(())
    }

    /// RoleGet: the role's permissions, sorted by key.
    pub fn role_get(&self, name: &str) -> Result<AuthRoleGetResponse, AuthError> {
        let st = self.state.read();
        let role = st.roles.get(name).ok_or(AuthError::RoleNotFound)?;
        Ok(AuthRoleGetResponse {
            header: None,
            perm: role.key_permission.clone(),
        })
    }

    /// RoleList: every role name, sorted.
    pub fn role_list(&self) -> Vec<String> {
        self.state.read().roles.keys().cloned().collect()
    }

    /// RoleDelete (not `root` while auth is enabled); users lose the role.
    pub fn role_delete(&self, store: &Store, name: &str) -> Result<(), AuthError> {
        let mut st = self.state.write();
        if st.enabled && name == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        if !st.roles.contains_key(name) {
            return Err(AuthError::RoleNotFound);
        }
        store.aux_delete(ROLES_TABLE, name.as_bytes())?;
        let mut changed = Vec::new();
        for u in st.users.values() {
            if u.roles.iter().any(|r| r == name) {
                let mut u = u.clone();
                u.roles.retain(|r| r != name);
                Self::put_user(store, &u)?;
                changed.push(u);
            }
        }
        Self::commit_revision(&mut st, store)?;
        st.roles.remove(name);
        for u in changed {
            st.users
                .insert(String::from_utf8_lossy(&u.name).into_owned(), u);
        }
        st.refresh_perms();
        tracing::info!(role = %name, "deleted a role");
        Ok(())
    }

    /// RoleGrantPermission: replaces the type of a permission on the same range, or adds it
    /// (kept sorted by key).
    pub fn role_grant_permission(
        &self,
        store: &Store,
        r: &AuthRoleGrantPermissionRequest,
    ) -> Result<(), AuthError> {
        let mut st = self.state.write();
        let mut role = st
            .roles
            .get(&r.name)
            .cloned()
            .ok_or(AuthError::RoleNotFound)?;
        let perm = r.perm.clone().unwrap_or_default();
        let at = role.key_permission.partition_point(|p| p.key < perm.key);
        match role.key_permission.get_mut(at) {
            Some(p) if p.key == perm.key && p.range_end == perm.range_end => {
                p.perm_type = perm.perm_type;
            }
            _ => {
                let after = role.key_permission.partition_point(|p| p.key <= perm.key);
                role.key_permission.insert(
                    after,
                    Permission {
                        perm_type: perm.perm_type,
                        key: perm.key.clone(),
                        range_end: perm.range_end.clone(),
                    },
                );
            }
        }
        Self::put_role(store, &role)?;
        Self::commit_revision(&mut st, store)?;
        st.roles.insert(r.name.clone(), role);
        st.refresh_perms();
        tracing::info!(role = %r.name, "granted/updated a permission to a role");
        Ok(())
    }

    /// RoleRevokePermission of the permission on exactly `(key, range_end)`.
    pub fn role_revoke_permission(
        &self,
        store: &Store,
        r: &AuthRoleRevokePermissionRequest,
    ) -> Result<(), AuthError> {
        let mut st = self.state.write();
        let mut role = st
            .roles
            .get(&r.role)
            .cloned()
            .ok_or(AuthError::RoleNotFound)?;
        let before = role.key_permission.len();
        role.key_permission
            .retain(|p| p.key != r.key || p.range_end != r.range_end);
        if role.key_permission.len() == before {
            return Err(AuthError::PermissionNotGranted);
        }
        Self::put_role(store, &role)?;
        Self::commit_revision(&mut st, store)?;
        st.roles.insert(r.role.clone(), role);
        st.refresh_perms();
        tracing::info!(role = %r.role, "revoked a permission on range");
        Ok(())
    }

    /// Whether `info` may do `typ` over `(key, range_end)` (etcd's `isOpPermitted`): always
    /// while auth is disabled; otherwise the request needs a user, a revision not older
    /// than the store's, and root or a covering permission.
    pub fn is_op_permitted(
        &self,
        info: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
        typ: PermType,
    ) -> Result<(), AuthError> {
        let st = self.state.read();
        if !st.enabled {
            return Ok(());
        }
        if info.revision == 0 {
            return Err(AuthError::UserEmpty);
        }
        if info.revision < st.revision {
            tracing::warn!(
                current = st.revision,
                request = info.revision,
                "request auth revision is less than current node auth revision"
            );
            return Err(AuthError::AuthOldRevision);
        }
        let user = st
            .users
            .get(&info.username)
            .ok_or(AuthError::PermissionDenied)?;
        if has_root_role(user) {
            return Ok(());
        }
        match st.perms.get(&info.username) {
            Some(p) if p.permits(typ, key, range_end) => Ok(()),
            _ => Err(AuthError::PermissionDenied),
        }
    }

    /// Whether `info` may do what needs root (etcd's `IsAdminPermitted`).
    pub fn is_admin_permitted(&self, info: Option<&AuthInfo>) -> Result<(), AuthError> {
        let st = self.state.read();
        if !st.enabled {
            return Ok(());
        }
        let info = info
            .filter(|i| !i.username.is_empty())
            .ok_or(AuthError::UserEmpty)?;
        let user = st
            .users
            .get(&info.username)
            .ok_or(AuthError::UserNotFound)?;
        if !has_root_role(user) {
            return Err(AuthError::PermissionDenied);
        }
        Ok(())
    }

    /// Whether user `user` has role `role`.
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.state
            .read()
            .users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }
}

#[cfg(test)]
mod tests;
