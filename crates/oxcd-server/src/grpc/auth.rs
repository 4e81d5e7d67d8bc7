//! The etcd `Auth` service: a thin adapter over [`EtcdServer`].

use std::sync::Arc;

use oxcd_core::EtcdServer;
use oxcd_proto::etcdserverpb::{auth_server::Auth, *};
use tonic::{Request, Response, Status};

use super::{credentials, status};

/// Serves AuthEnable/Disable/Status, Authenticate, and user and role management.
pub struct AuthService {
    server: Arc<EtcdServer>,
}

impl AuthService {
    /// An Auth service over `server`.
    pub fn new(server: Arc<EtcdServer>) -> AuthService {
        AuthService { server }
    }
}

/// One adapter method per RPC: the caller's credentials and the request, to the core.
macro_rules! rpcs {
    ($($method:ident: $req:ty => $resp:ty,)*) => {
        #[tonic::async_trait]
        impl Auth for AuthService {
            async fn auth_status(
                &self,
                _req: Request<AuthStatusRequest>,
            ) -> Result<Response<AuthStatusResponse>, Status> {
                status(self.server.auth_status().await)
            }

            $(
                async fn $method(&self, req: Request<$req>) -> Result<Response<$resp>, Status> {
                    let cred = credentials(&req);
                    status(self.server.$method(&cred, req.into_inner()).await)
                }
            )*
        }
    };
}

rpcs! {
    auth_enable: AuthEnableRequest => AuthEnableResponse,
    auth_disable: AuthDisableRequest => AuthDisableResponse,
    authenticate: AuthenticateRequest => AuthenticateResponse,
    user_add: AuthUserAddRequest => AuthUserAddResponse,
    user_get: AuthUserGetRequest => AuthUserGetResponse,
    user_list: AuthUserListRequest => AuthUserListResponse,
    user_delete: AuthUserDeleteRequest => AuthUserDeleteResponse,
    user_change_password: AuthUserChangePasswordRequest => AuthUserChangePasswordResponse,
    user_grant_role: AuthUserGrantRoleRequest => AuthUserGrantRoleResponse,
    user_revoke_role: AuthUserRevokeRoleRequest => AuthUserRevokeRoleResponse,
    role_add: AuthRoleAddRequest => AuthRoleAddResponse,
    role_get: AuthRoleGetRequest => AuthRoleGetResponse,
    role_list: AuthRoleListRequest => AuthRoleListResponse,
    role_delete: AuthRoleDeleteRequest => AuthRoleDeleteResponse,
    role_grant_permission: AuthRoleGrantPermissionRequest => AuthRoleGrantPermissionResponse,
    role_revoke_permission: AuthRoleRevokePermissionRequest => AuthRoleRevokePermissionResponse,
}
