//! `member add|remove|update|list|promote`.

use oxcd_proto::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest,
};

use super::{emit, Ctx};
use crate::cli::MemberCommand;
use crate::conn;
use crate::error::{CtlError, ExitCode};
use crate::golog::go_quote;
use crate::output::Format;

/// `member ...`.
pub(super) async fn run(ctx: &Ctx, command: MemberCommand) -> Result<(), CtlError> {
    let timeout = ctx.conn.command_timeout();
    match command {
        MemberCommand::Add {
            peer_urls,
            learner,
            args,
        } => add(ctx, &peer_urls, learner, &args).await,
        MemberCommand::Remove { args } => {
            let id = member_id(&args)?;
            let r = ctx
                .conn
                .unary(timeout, |s| async move {
                    conn::cluster(&s)
                        .member_remove(s.request(MemberRemoveRequest { id }))
                        .await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            emit(&ctx.printer.member_remove(id, &r)?)
        }
        MemberCommand::Update { peer_urls, args } => {
            let id = member_id(&args)?;
            if peer_urls.is_empty() {
                return Err(CtlError::bad_args("member peer urls not provided"));
            }
            let peer_ur_ls = peer_urls.split(',').map(str::to_string).collect();
            let r = ctx
                .conn
                .unary(timeout, |s| async move {
                    conn::cluster(&s)
                        .member_update(s.request(MemberUpdateRequest { id, peer_ur_ls }))
                        .await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            emit(&ctx.printer.member_update(id, &r)?)
        }
        MemberCommand::List => {
            let r = ctx
                .conn
                .unary(timeout, |s| async move {
                    conn::cluster(&s)
                        .member_list(s.request(MemberListRequest {
                            linearizable: false,
                        }))
                        .await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            emit(&ctx.printer.member_list(&r)?)
        }
        MemberCommand::Promote { args } => {
            let id = member_id(&args)?;
            let r = ctx
                .conn
                .unary(timeout, |s| async move {
                    conn::cluster(&s)
                        .member_promote(s.request(MemberPromoteRequest { id }))
                        .await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            emit(&ctx.printer.member_promote(id, &r)?)
        }
    }
}

fn member_id(args: &[String]) -> Result<u64, CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("member ID is not provided"));
    }
    crate::gostr::parse_uint(&args[0], 16)
        .map_err(|e| CtlError::bad_args(format!("bad member ID arg ({e}), expecting ID in Hex")))
}

async fn add(ctx: &Ctx, peer_urls: &str, learner: bool, args: &[String]) -> Result<(), CtlError> {
    if args.is_empty() {
        return Err(CtlError::bad_args("member name not provided"));
    }
    if args.len() > 1 {
        let mut text = String::from("too many arguments");
        for a in args {
            if a.to_lowercase().starts_with("http") {
                text.push_str(&format!(", did you mean --peer-urls={a}"));
            }
        }
        return Err(CtlError::bad_args(text));
    }
    let name = &args[0];
    if peer_urls.is_empty() {
        return Err(CtlError::bad_args("member peer urls not provided"));
    }
    let peer_ur_ls: Vec<String> = peer_urls.split(',').map(str::to_string).collect();
    let r = ctx
        .conn
        .unary(ctx.conn.command_timeout(), |s| async move {
            conn::cluster(&s)
                .member_add(s.request(MemberAddRequest {
                    peer_ur_ls,
                    is_learner: learner,
                }))
                .await
        })
        .await
        .map_err(|e| e.fail(ExitCode::Error))?;
    emit(&ctx.printer.member_add(&r)?)?;
    if ctx.printer.format == Format::Simple {
        let new_id = r.member.as_ref().map(|m| m.id).unwrap_or_default();
        let mut conf = Vec::new();
        for m in &r.members {
            for u in &m.peer_ur_ls {
                let n = if m.id == new_id {
                    name.as_str()
                } else {
                    m.name.as_str()
                };
                conf.push(format!("{n}={u}"));
            }
        }
        emit(
            format!(
                "\nETCD_NAME={}\nETCD_INITIAL_CLUSTER={}\nETCD_INITIAL_ADVERTISE_PEER_URLS={}\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n",
                go_quote(name.as_bytes()),
                go_quote(conf.join(",").as_bytes()),
                go_quote(peer_urls.as_bytes())
            )
            .as_bytes(),
        )?;
    }
    Ok(())
}
