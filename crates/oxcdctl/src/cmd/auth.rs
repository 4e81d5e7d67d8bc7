//! `auth enable|disable`, `user ...` and `role ...`.

use oxcd_proto::authpb::{permission, Permission, UserAddOptions};
use oxcd_proto::etcdserverpb::*;

use super::{emit, Ctx};
use crate::cli::{AuthCommand, RoleCommand, UserCommand};
use crate::conn;
use crate::error::{CtlError, ExitCode};
use crate::output::prefix_range_end;

/// `auth enable|disable`.
pub(super) async fn auth(ctx: &Ctx, command: AuthCommand) -> Result<(), CtlError> {
    let t = ctx.conn.command_timeout();
    match command {
        AuthCommand::Enable { args } => {
            if !args.is_empty() {
                return Err(CtlError::bad_args(
                    "auth enable command does not accept any arguments",
                ));
            }
            loop {
                let r = ctx
                    .conn
                    .unary(t, |s| async move {
                        conn::auth(&s)
                            .auth_enable(s.request(AuthEnableRequest {}))
                            .await
                    })
                    .await;
                match r {
                    Ok(_) => break,
                    Err(e) if e.to_string() == "etcdserver: root user does not have root role" => {
                        // etcdctl creates the root role and grants it to root, then retries.
                        ctx.conn
                            .unary(t, |s| async move {
                                conn::auth(&s)
                                    .role_add(s.request(AuthRoleAddRequest {
                                        name: "root".into(),
                                    }))
                                    .await
                            })
                            .await
                            .map_err(|e| e.fail(ExitCode::Error))?;
                        ctx.conn
                            .unary(t, |s| async move {
                                conn::auth(&s)
                                    .user_grant_role(s.request(AuthUserGrantRoleRequest {
                                        user: "root".into(),
                                        role: "root".into(),
                                    }))
                                    .await
                            })
                            .await
                            .map_err(|e| e.fail(ExitCode::Error))?;
                    }
                    Err(e) => return Err(e.fail(ExitCode::Error)),
                }
            }
            emit(b"Authentication Enabled\n")
        }
        AuthCommand::Disable { args } => {
            if !args.is_empty() {
                return Err(CtlError::bad_args(
                    "auth disable command does not accept any arguments",
                ));
            }
            ctx.conn
                .unary(t, |s| async move {
                    conn::auth(&s)
                        .auth_disable(s.request(AuthDisableRequest {}))
                        .await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            emit(b"Authentication Disabled\n")
        }
    }
}

fn one_name<'a>(args: &'a [String], message: &str) -> Result<&'a str, CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args(message));
    }
    Ok(&args[0])
}

/// etcdctl's interactive password: asked twice, must match and not be empty.
fn read_password_interactive(name: &str) -> Result<String, CtlError> {
    let ask = |p: String| {
        crate::prompt::ask_password(&p)
            .map_err(|e| CtlError::bad_args(format!("failed to ask password: {e}")))
    };
    let first = ask(format!("Password of {name}: "))?;
    if first.is_empty() {
        return Err(CtlError::bad_args("empty password"));
    }
    let second = ask(format!("Type password of {name} again for confirmation: "))?;
    if first != second {
        return Err(CtlError::bad_args("given passwords are different"));
    }
    Ok(first)
}

/// Go's `fmt.Scanf("%s")`: the first word of stdin.
fn scan_word() -> String {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    line.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `user ...`.
pub(super) async fn user(ctx: &Ctx, command: UserCommand) -> Result<(), CtlError> {
    let p = ctx.printer;
    match command {
        UserCommand::Add {
            interactive,
            new_user_password,
            no_password,
            args,
        } => {
            let arg = one_name(&args, "user add command requires user name as its argument")?;
            let (name, password) = if no_password {
                (arg.to_string(), String::new())
            } else if !new_user_password.is_empty() {
                (arg.to_string(), new_user_password)
            } else if let Some((u, pw)) = arg.split_once(':') {
                if u.is_empty() {
                    return Err(CtlError::bad_args("empty user name is not allowed"));
                }
                (u.to_string(), pw.to_string())
            } else if !interactive {
                (arg.to_string(), scan_word())
            } else {
                (arg.to_string(), read_password_interactive(arg)?)
            };
            let request = AuthUserAddRequest {
                name: name.clone(),
                password,
                options: Some(UserAddOptions { no_password }),
                hashed_password: String::new(),
            };
            let r = ctx
                .conn
                .unary(None, |s| async move {
                    conn::auth(&s).user_add(s.request(request)).await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            emit(&p.auth_header(&format!("User {name} created"), r.header.as_ref(), true)?)
        }
        UserCommand::Delete { args } => {
            let name = one_name(
                &args,
                "user delete command requires user name as its argument",
            )?
            .to_string();
            let n = name.clone();
            let r = ctx
                .conn
                .unary(None, |s| async move {
                    conn::auth(&s)
                        .user_delete(s.request(AuthUserDeleteRequest { name: n }))
                        .await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            emit(&p.auth_header(&format!("User {name} deleted"), r.header.as_ref(), true)?)
        }
        UserCommand::Get { detail, args } => {
            let name =
                one_name(&args, "user get command requires user name as its argument")?.to_string();
            let n = name.clone();
            let r = ctx
                .conn
                .unary(None, |s| async move {
                    conn::auth(&s)
                        .user_get(s.request(AuthUserGetRequest { name: n }))
                        .await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            if !detail {
                return emit(&p.user_get(&name, &r)?);
            }
            emit(format!("User: {name}\n").as_bytes())?;
            for role in &r.roles {
                emit(b"\n")?;
                let rr = role_get_call(ctx, role).await?;
                emit(&p.role_get(role, &rr)?)?;
            }
            Ok(())
        }
        UserCommand::List { args } => {
            if !args.is_empty() {
                return Err(CtlError::bad_args(
                    "user list command requires no arguments",
                ));
            }
            let r = ctx
                .conn
                .unary(None, |s| async move {
                    conn::auth(&s)
                        .user_list(s.request(AuthUserListRequest {}))
                        .await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            emit(&p.user_list(&r)?)
        }
        UserCommand::Passwd { interactive, args } => {
            let name = one_name(
                &args,
                "user passwd command requires user name as its argument",
            )?
            .to_string();
            let password = if interactive {
                read_password_interactive(&name)?
            } else {
                scan_word()
            };
            let request = AuthUserChangePasswordRequest {
                name,
                password,
                hashed_password: String::new(),
            };
            let r = ctx
                .conn
                .unary(None, |s| async move {
                    conn::auth(&s)
                        .user_change_password(s.request(request))
                        .await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            emit(&p.auth_header("Password updated", r.header.as_ref(), true)?)
        }
        UserCommand::GrantRole { args } => {
            if args.len() != 2 {
                return Err(CtlError::bad_args(
                    "user grant command requires user name and role name as its argument",
                ));
            }
            let request = AuthUserGrantRoleRequest {
                user: args[0].clone(),
                role: args[1].clone(),
            };
            let r = ctx
                .conn
                .unary(None, |s| async move {
                    conn::auth(&s).user_grant_role(s.request(request)).await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            emit(&p.auth_header(
                &format!("Role {} is granted to user {}", args[1], args[0]),
                r.header.as_ref(),
                true,
            )?)
        }
        UserCommand::RevokeRole { args } => {
            if args.len() != 2 {
                return Err(CtlError::bad_args(
                    "user revoke-role requires user name and role name as its argument",
                ));
            }
            let request = AuthUserRevokeRoleRequest {
                name: args[0].clone(),
                role: args[1].clone(),
            };
            let r = ctx
                .conn
                .unary(None, |s| async move {
                    conn::auth(&s).user_revoke_role(s.request(request)).await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            emit(&p.auth_header(
                &format!("Role {} is revoked from user {}", args[1], args[0]),
                r.header.as_ref(),
                true,
            )?)
        }
    }
}

async fn role_get_call(ctx: &Ctx, role: &str) -> Result<AuthRoleGetResponse, CtlError> {
    let role = role.to_string();
    ctx.conn
        .unary(None, |s| async move {
            conn::auth(&s)
                .role_get(s.request(AuthRoleGetRequest { role }))
                .await
        })
        .await
        .map_err(|e| e.fail(ExitCode::Error))
}

/// The key range of a permission (etcdctl's `permRange`).
fn perm_range(
    args: &[String],
    prefix: bool,
    from_key: bool,
) -> Result<(Vec<u8>, Vec<u8>), CtlError> {
    let key = args[0].as_bytes().to_vec();
    if key.is_empty() {
        if prefix && from_key {
            return Err(CtlError::bad_args(
                "--from-key and --prefix flags are mutually exclusive",
            ));
        }
        let end = if prefix || from_key {
            vec![0]
        } else {
            Vec::new()
        };
        return Ok((vec![0], end));
    }
    if args.len() == 1 {
        if prefix {
            if from_key {
                return Err(CtlError::bad_args(
                    "--from-key and --prefix flags are mutually exclusive",
                ));
            }
            return Ok((key.clone(), prefix_range_end(&key)));
        }
        if from_key {
            return Ok((key, vec![0]));
        }
        return Ok((key, Vec::new()));
    }
    if prefix {
        return Err(CtlError::bad_args(
            "unexpected endkey argument with --prefix flag",
        ));
    }
    if from_key {
        return Err(CtlError::bad_args(
            "unexpected endkey argument with --from-key flag",
        ));
    }
    Ok((key, args[1].as_bytes().to_vec()))
}

/// `role ...`.
pub(super) async fn role(ctx: &Ctx, command: RoleCommand) -> Result<(), CtlError> {
    let p = ctx.printer;
    match command {
        RoleCommand::Add { args } => {
            let name =
                one_name(&args, "role add command requires role name as its argument")?.to_string();
            let n = name.clone();
            let r = ctx
                .conn
                .unary(None, |s| async move {
                    conn::auth(&s)
                        .role_add(s.request(AuthRoleAddRequest { name: n }))
                        .await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            emit(&p.auth_header(&format!("Role {name} created"), r.header.as_ref(), true)?)
        }
        RoleCommand::Delete { args } => {
            let role = one_name(
                &args,
                "role delete command requires role name as its argument",
            )?
            .to_string();
            let n = role.clone();
            let r = ctx
                .conn
                .unary(None, |s| async move {
                    conn::auth(&s)
                        .role_delete(s.request(AuthRoleDeleteRequest { role: n }))
                        .await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            emit(&p.auth_header(&format!("Role {role} deleted"), r.header.as_ref(), true)?)
        }
        RoleCommand::Get { args } => {
            let role =
                one_name(&args, "role get command requires role name as its argument")?.to_string();
            let r = role_get_call(ctx, &role).await?;
            emit(&p.role_get(&role, &r)?)
        }
        RoleCommand::List { args } => {
            if !args.is_empty() {
                return Err(CtlError::bad_args(
                    "role list command requires no arguments",
                ));
            }
            let r = ctx
                .conn
                .unary(None, |s| async move {
                    conn::auth(&s)
                        .role_list(s.request(AuthRoleListRequest {}))
                        .await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            emit(&p.role_list(&r)?)
        }
        RoleCommand::GrantPermission {
            prefix,
            from_key,
            args,
        } => {
            if args.len() < 3 {
                return Err(CtlError::bad_args(
                    "role grant command requires role name, permission type, and key [endkey] as its argument",
                ));
            }
            let perm_type = match args[1].to_lowercase().as_str() {
                "read" => permission::Type::Read,
                "write" => permission::Type::Write,
                "readwrite" => permission::Type::Readwrite,
                _ => {
                    return Err(CtlError::bad_args(format!(
                        "invalid permission type: {}",
                        args[1]
                    )))
                }
            };
            let (key, range_end) = perm_range(&args[2..], prefix, from_key)?;
            let request = AuthRoleGrantPermissionRequest {
                name: args[0].clone(),
                perm: Some(Permission {
                    perm_type: perm_type as i32,
                    key,
                    range_end,
                }),
            };
            let r = ctx
                .conn
                .unary(None, |s| async move {
                    conn::auth(&s)
                        .role_grant_permission(s.request(request))
                        .await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            emit(&p.auth_header(
                &format!("Role {} updated", args[0]),
                r.header.as_ref(),
                true,
            )?)
        }
        RoleCommand::RevokePermission {
            prefix,
            from_key,
            args,
        } => {
            if args.len() < 2 {
                return Err(CtlError::bad_args(
                    "role revoke-permission command requires role name and key [endkey] as its argument",
                ));
            }
            let (key, range_end) = perm_range(&args[1..], prefix, from_key)?;
            let end = String::from_utf8_lossy(&range_end).into_owned();
            let request = AuthRoleRevokePermissionRequest {
                role: args[0].clone(),
                key,
                range_end,
            };
            let r = ctx
                .conn
                .unary(None, |s| async move {
                    conn::auth(&s)
                        .role_revoke_permission(s.request(request))
                        .await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            let line = if end.is_empty() {
                format!(
                    "Permission of key {} is revoked from role {}",
                    args[1], args[0]
                )
            } else if end != "\0" {
                format!(
                    "Permission of range [{}, {end}) is revoked from role {}",
                    args[1], args[0]
                )
            } else {
                format!(
                    "Permission of range [{}, <open ended> is revoked from role {}",
                    args[1], args[0]
                )
            };
            emit(&p.auth_header(&line, r.header.as_ref(), true)?)
        }
    }
}
