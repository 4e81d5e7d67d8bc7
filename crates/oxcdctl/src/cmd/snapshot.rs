//! `snapshot save` (the server's backend snapshot, streamed to a file); `status` and
//! `restore` read etcd's bbolt files, which oxcdctl cannot do yet.

use std::io::Write;

use oxcd_proto::etcdserverpb::SnapshotRequest;
use tokio_stream::StreamExt;

use super::{emit, Ctx};
use crate::cli::SnapshotCommand;
use crate::conn;
use crate::error::{CtlError, ExitCode, RpcError};
use crate::output::Printer;

/// `snapshot save|restore`.
pub async fn run(ctx: &Ctx, command: SnapshotCommand) -> Result<(), CtlError> {
    match command {
        SnapshotCommand::Save { args } => save(ctx, &args).await,
        SnapshotCommand::Restore { args, .. } => {
            if args.len() != 1 {
                return Err(CtlError::bad_args(
                    "snapshot restore requires exactly one argument",
                ));
            }
            Err(CtlError::new(
                ExitCode::Error,
                "snapshot restore is not supported by oxcdctl yet; use etcdctl or etcdutl",
            ))
        }
        SnapshotCommand::Status { args } => status(ctx.printer, &args),
    }
}

/// `snapshot status <file>`.
pub fn status(_printer: Printer, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args(
            "snapshot status requires exactly one argument",
        ));
    }
    Err(CtlError::new(
        ExitCode::Error,
        "snapshot status is not supported by oxcdctl yet",
    ))
}

async fn save(ctx: &Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("snapshot save expects one argument"));
    }
    let path = &args[0];
    let partial = format!("{path}.part");
    let timeout = if ctx.command_timeout_set {
        Some(ctx.command_timeout)
    } else {
        None
    };
    let work = async {
        let session = ctx.conn.session().await?;
        let mut stream = conn::maintenance(&session)
            .snapshot(session.request(SnapshotRequest {}))
            .await
            .map_err(|s| RpcError::from_status(&s))?
            .into_inner();
        let mut file = std::fs::File::create(&partial).map_err(|e| RpcError::Status {
            code: tonic::Code::Unknown,
            message: e.to_string(),
        })?;
        while let Some(item) = stream.next().await {
            let chunk = item.map_err(|s| RpcError::from_status(&s))?;
            file.write_all(&chunk.blob).map_err(|e| RpcError::Status {
                code: tonic::Code::Unknown,
                message: e.to_string(),
            })?;
        }
        file.sync_all().map_err(|e| RpcError::Status {
            code: tonic::Code::Unknown,
            message: e.to_string(),
        })?;
        Ok::<(), RpcError>(())
    };
    let result = match timeout {
        Some(t) => tokio::time::timeout(t, work)
            .await
            .unwrap_or(Err(RpcError::DeadlineExceeded)),
        None => work.await,
    };
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e.fail(ExitCode::Interrupted));
    }
    std::fs::rename(&partial, path).map_err(|e| CtlError::new(ExitCode::Interrupted, e))?;
    emit(format!("Snapshot saved at {path}\n").as_bytes())
}
