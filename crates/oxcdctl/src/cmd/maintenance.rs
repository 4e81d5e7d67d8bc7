//! `compaction`, `alarm list|disarm`, `defrag` and `move-leader`.

use oxcd_proto::etcdserverpb::{
    alarm_request, AlarmRequest, AlarmType, CompactionRequest, DefragmentRequest,
    MoveLeaderRequest, StatusRequest,
};

use super::{emit, emit_err, Ctx};
use crate::cli::AlarmCommand;
use crate::conn;
use crate::error::{CtlError, ExitCode};

/// `compaction [--physical] <revision>`.
pub(super) async fn compaction(ctx: &Ctx, physical: bool, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("compaction command needs 1 argument"));
    }
    let revision =
        crate::gostr::parse_int(&args[0], 10).map_err(|e| CtlError::new(ExitCode::Error, e))?;
    ctx.conn
        .unary(ctx.conn.command_timeout(), |s| async move {
            conn::kv(&s)
                .compact(s.request(CompactionRequest { revision, physical }))
                .await
        })
        .await
        .map_err(|e| e.fail(ExitCode::Error))?;
    emit(format!("compacted revision {revision}\n").as_bytes())
}

/// `alarm list` / `alarm disarm`.
pub(super) async fn alarm(ctx: &Ctx, command: AlarmCommand) -> Result<(), CtlError> {
    let (request, args, name) = match command {
        AlarmCommand::List { args } => (
            AlarmRequest {
                action: alarm_request::AlarmAction::Get as i32,
                member_id: 0,
                alarm: AlarmType::None as i32,
            },
            args,
            "list",
        ),
        AlarmCommand::Disarm { args } => (
            AlarmRequest {
                action: alarm_request::AlarmAction::Deactivate as i32,
                member_id: 0,
                alarm: AlarmType::None as i32,
            },
            args,
            "disarm",
        ),
    };
    if !args.is_empty() {
        return Err(CtlError::bad_args(format!(
            "alarm {name} command accepts no arguments"
        )));
    }
    let response = ctx
        .conn
        .unary(ctx.conn.command_timeout(), |s| async move {
            conn::maintenance(&s).alarm(s.request(request)).await
        })
        .await
        .map_err(|e| e.fail(ExitCode::Error))?;
    if response.header.is_none() && ctx.printer.format == crate::output::Format::Fields {
        // etcdctl dereferences the missing header and panics.
        emit_err(b"panic: runtime error: invalid memory address or nil pointer dereference\n");
        return Err(CtlError::silent(ExitCode::BadConnection));
    }
    emit(&ctx.printer.alarm(&response)?)
}

/// `defrag [--cluster]`.
pub(super) async fn defrag(
    ctx: &Ctx,
    cluster: bool,
    data_dir: Option<String>,
) -> Result<(), CtlError> {
    if let Some(dir) = data_dir.filter(|d| !d.is_empty()) {
        emit_err(
            format!("Failed to defragment etcd data[{dir}] (offline defragmentation is not supported by oxcdctl)\n")
                .as_bytes(),
        );
        return Err(CtlError::silent(ExitCode::Error));
    }
    let mut failures = 0;
    for ep in super::endpoint::endpoints(ctx, cluster).await? {
        let conn = ctx.conn.for_endpoint(&ep);
        match conn
            .unary(conn.command_timeout(), |s| async move {
                conn::maintenance(&s)
                    .defragment(s.request(DefragmentRequest {}))
                    .await
            })
            .await
        {
            Ok(_) => emit(format!("Finished defragmenting etcd member[{ep}]\n").as_bytes())?,
            Err(e) => {
                emit_err(format!("Failed to defragment etcd member[{ep}] ({e})\n").as_bytes());
                failures += 1;
            }
        }
    }
    if failures != 0 {
        return Err(CtlError::silent(ExitCode::Error));
    }
    Ok(())
}

/// `move-leader <transferee-member-id>`.
pub(super) async fn move_leader(ctx: &Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("move-leader command needs 1 argument"));
    }
    let target = crate::gostr::parse_uint(&args[0], 16).map_err(CtlError::bad_args)?;
    let timeout = ctx.conn.command_timeout();
    for ep in ctx.endpoints() {
        let conn = ctx.conn.for_endpoint(ep);
        let status = conn
            .unary(timeout, |s| async move {
                conn::maintenance(&s)
                    .status(s.request(StatusRequest {}))
                    .await
            })
            .await
            .map_err(|e| e.fail(ExitCode::Error))?;
        let member = status
            .header
            .as_ref()
            .map(|h| h.member_id)
            .unwrap_or_default();
        if member == status.leader {
            let response = conn
                .unary(timeout, |s| async move {
                    conn::maintenance(&s)
                        .move_leader(s.request(MoveLeaderRequest { target_id: target }))
                        .await
                })
                .await
                .map_err(|e| e.fail(ExitCode::Error))?;
            return emit(&ctx.printer.move_leader(status.leader, target, &response)?);
        }
    }
    Err(CtlError::bad_args(format!(
        "no leader endpoint given at [{}]",
        ctx.endpoints().join(" ")
    )))
}
