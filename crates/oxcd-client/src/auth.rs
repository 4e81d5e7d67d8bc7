//! The Auth service: enabling auth, users, roles and their permissions.

use oxcd_proto::authpb::permission::Type as PermissionType;
use oxcd_proto::authpb::{Permission as ProtoPermission, UserAddOptions};
use oxcd_proto::etcdserverpb::auth_client::AuthClient;
use oxcd_proto::etcdserverpb::*;

use crate::client::{call, Client, Retry};
use crate::error::Result;
use crate::kv::KeyRange;

/// What a role may do with a key range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    kind: PermissionType,
    key: Vec<u8>,
    range: KeyRange,
}

impl Permission {
    /// Read access to `key`.
    pub fn read(key: impl Into<Vec<u8>>) -> Self {
        Self::new(PermissionType::Read, key)
    }
    /// Write access to `key`.
    pub fn write(key: impl Into<Vec<u8>>) -> Self {
        Self::new(PermissionType::Write, key)
    }
    /// Read and write access to `key`.
    pub fn read_write(key: impl Into<Vec<u8>>) -> Self {
        Self::new(PermissionType::Readwrite, key)
    }
    fn new(kind: PermissionType, key: impl Into<Vec<u8>>) -> Self {
        Permission {
            kind,
            key: key.into(),
            range: KeyRange::Single,
        }
    }
    /// For every key with the key as prefix.
    pub fn with_prefix(mut self) -> Self {
        self.range = KeyRange::Prefix;
        self
    }
    /// For the key and every key after it.
    pub fn with_from_key(mut self) -> Self {
        self.range = KeyRange::FromKey;
        self
    }
    /// For keys from the key up to, not including, `end`.
    pub fn with_range(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.range = KeyRange::End(end.into());
        self
    }
    /// The wire form.
    pub fn into_proto(self) -> ProtoPermission {
        let (key, range_end) = self.range.bounds(self.key);
        ProtoPermission {
            perm_type: self.kind as i32,
            key,
            range_end,
        }
    }
}

/// The Auth service of a [`Client`].
#[derive(Debug, Clone)]
pub struct Auth {
    client: Client,
}

impl Client {
    /// The Auth service.
    pub fn auth(&self) -> Auth {
        Auth {
            client: self.clone(),
        }
    }
}

impl Auth {
    /// Turns auth on (needs a `root` user with the `root` role).
    pub async fn enable(&self) -> Result<AuthEnableResponse> {
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            AuthEnableRequest {},
            AuthClient::auth_enable
        )
    }
    /// Turns auth off.
    pub async fn disable(&self) -> Result<AuthDisableResponse> {
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            AuthDisableRequest {},
            AuthClient::auth_disable
        )
    }
    /// Whether auth is on, and the auth store's revision.
    pub async fn status(&self) -> Result<AuthStatusResponse> {
        call!(
            self.client,
            Retry::Safe,
            AuthStatusRequest {},
            AuthClient::auth_status
        )
    }
    /// Adds a user; `password` `None` makes a user that cannot log in with a password.
    pub async fn user_add(
        &self,
        name: &str,
        password: Option<&str>,
    ) -> Result<AuthUserAddResponse> {
        let request = AuthUserAddRequest {
            name: name.into(),
            password: password.unwrap_or_default().into(),
            options: Some(UserAddOptions {
                no_password: password.is_none(),
            }),
            hashed_password: String::new(),
        };
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            request,
            AuthClient::user_add
        )
    }
    /// A user's roles.
    pub async fn user_get(&self, name: &str) -> Result<AuthUserGetResponse> {
        let request = AuthUserGetRequest { name: name.into() };
        call!(self.client, Retry::Safe, request, AuthClient::user_get)
    }
    /// All user names.
    pub async fn user_list(&self) -> Result<AuthUserListResponse> {
        call!(
            self.client,
            Retry::Safe,
            AuthUserListRequest {},
            AuthClient::user_list
        )
    }
    /// Deletes a user.
    pub async fn user_delete(&self, name: &str) -> Result<AuthUserDeleteResponse> {
        let request = AuthUserDeleteRequest { name: name.into() };
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            request,
            AuthClient::user_delete
        )
    }
    /// Sets a user's password.
    pub async fn user_change_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<AuthUserChangePasswordResponse> {
        let request = AuthUserChangePasswordRequest {
            name: name.into(),
            password: password.into(),
            hashed_password: String::new(),
        };
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            request,
            AuthClient::user_change_password
        )
    }
    /// Grants `role` to user `name`.
    pub async fn user_grant_role(
        &self,
        name: &str,
        role: &str,
    ) -> Result<AuthUserGrantRoleResponse> {
        let request = AuthUserGrantRoleRequest {
            user: name.into(),
            role: role.into(),
        };
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            request,
            AuthClient::user_grant_role
        )
    }
    /// Revokes `role` from user `name`.
    pub async fn user_revoke_role(
        &self,
        name: &str,
        role: &str,
    ) -> Result<AuthUserRevokeRoleResponse> {
        let request = AuthUserRevokeRoleRequest {
            name: name.into(),
            role: role.into(),
        };
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            request,
            AuthClient::user_revoke_role
        )
    }
    /// Adds a role.
    pub async fn role_add(&self, name: &str) -> Result<AuthRoleAddResponse> {
        let request = AuthRoleAddRequest { name: name.into() };
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            request,
            AuthClient::role_add
        )
    }
    /// A role's permissions.
    pub async fn role_get(&self, name: &str) -> Result<AuthRoleGetResponse> {
        let request = AuthRoleGetRequest { role: name.into() };
        call!(self.client, Retry::Safe, request, AuthClient::role_get)
    }
    /// All role names.
    pub async fn role_list(&self) -> Result<AuthRoleListResponse> {
        call!(
            self.client,
            Retry::Safe,
            AuthRoleListRequest {},
            AuthClient::role_list
        )
    }
    /// Deletes a role.
    pub async fn role_delete(&self, name: &str) -> Result<AuthRoleDeleteResponse> {
        let request = AuthRoleDeleteRequest { role: name.into() };
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            request,
            AuthClient::role_delete
        )
    }
    /// Grants a permission to a role.
    pub async fn role_grant_permission(
        &self,
        name: &str,
        permission: Permission,
    ) -> Result<AuthRoleGrantPermissionResponse> {
        let request = AuthRoleGrantPermissionRequest {
            name: name.into(),
            perm: Some(permission.into_proto()),
        };
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            request,
            AuthClient::role_grant_permission
        )
    }
    /// Revokes a role's permission on `key` (with `range`, as granted).
    pub async fn role_revoke_permission(
        &self,
        name: &str,
        key: impl Into<Vec<u8>>,
        range: KeyRange,
    ) -> Result<AuthRoleRevokePermissionResponse> {
        let (key, range_end) = range.bounds(key.into());
        let request = AuthRoleRevokePermissionRequest {
            role: name.into(),
            key,
            range_end,
        };
        call!(
            self.client,
            Retry::OnlyIfNeverSent,
            request,
            AuthClient::role_revoke_permission
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_carry_their_range() {
        let p = Permission::read_write("a/").with_prefix().into_proto();
        assert_eq!(
            (p.perm_type, p.key, p.range_end),
            (2, b"a/".to_vec(), b"a0".to_vec())
        );
        let p = Permission::read("k").into_proto();
        assert_eq!((p.perm_type, p.range_end), (0, vec![]));
        let p = Permission::write("k").with_from_key().into_proto();
        assert_eq!((p.perm_type, p.range_end), (1, vec![0]));
    }
}
