//! `snapshot save` (the server's backend snapshot, streamed to a file); `status` and
//! `restore` read etcd's bbolt files, which oxcdctl cannot do yet.

use std::io::Write;

use oxcd_proto::etcdserverpb::SnapshotRequest;
use tokio_stream::StreamExt;

use super::{emit, Ctx};
use crate::bolt::{BoltError, Crc32c, Db};
use crate::cli::SnapshotCommand;
use crate::conn;
use crate::error::{CtlError, ExitCode, RpcError};
use crate::golog::{self, json_string};
use crate::output::{DbStatus, Printer};

/// `snapshot save|restore`.
pub(super) async fn run(ctx: &Ctx, command: SnapshotCommand) -> Result<(), CtlError> {
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

/// `snapshot status <file>`: hash (CRC-32C over bucket names, keys and values), revision,
/// number of keys and size of an etcd (bbolt) snapshot, as etcd's `snapshot.Status`.
pub(super) fn status(printer: Printer, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args(
            "snapshot status requires exactly one argument",
        ));
    }
    let data = std::fs::read(&args[0]).map_err(|e| {
        let text = e.to_string();
        let cause = text
            .split(" (os error")
            .next()
            .unwrap_or(&text)
            .to_lowercase();
        CtlError::new(ExitCode::Error, format!("stat {}: {cause}", args[0]))
    })?;
    let status = db_status(&data).map_err(|e| CtlError::new(ExitCode::Error, e))?;
    emit(&printer.db_status(&status)?)
}

/// The status of a bbolt file's contents.
pub(super) fn db_status(data: &[u8]) -> Result<DbStatus, BoltError> {
    let db = Db::open(data)?;
    let mut hash = Crc32c::default();
    let mut status = DbStatus {
        total_size: db.high_water * db.page_size() as u64,
        ..Default::default()
    };
    db.for_each_bucket(|name, each| {
        hash.write(name);
        let is_key_bucket = name == b"key";
        each(&mut |k, v| {
            hash.write(k);
            hash.write(v);
            if is_key_bucket && k.len() >= 8 {
                let mut main = [0u8; 8];
                main.copy_from_slice(&k[..8]);
                status.revision = i64::from_be_bytes(main);
            }
            status.total_key += 1;
            Ok(())
        })
    })?;
    status.hash = hash.sum();
    Ok(status)
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
    let endpoint = ctx.endpoints().first().cloned().unwrap_or_default();
    let started = std::time::Instant::now();
    let mut size = 0u64;
    let work = async {
        let mut file = std::fs::File::create(&partial).map_err(|e| RpcError::Status {
            code: tonic::Code::Unknown,
            message: e.to_string(),
        })?;
        // etcdctl's (zap) progress lines, on stderr.
        golog::info(
            true,
            "snapshot/v3_snapshot.go:119",
            "created temporary db file",
            &[("path", json_string(&partial))],
        );
        let session = ctx.conn.session().await?;
        let opened = conn::maintenance(&session)
            .snapshot(session.request(SnapshotRequest {}))
            .await;
        golog::info(
            false,
            "clientv3/maintenance.go:200",
            "opened snapshot stream; downloading",
            &[],
        );
        golog::info(
            true,
            "snapshot/v3_snapshot.go:127",
            "fetching snapshot",
            &[("endpoint", json_string(&endpoint))],
        );
        let receive_failed = |status: &tonic::Status| {
            let error = RpcError::from_status(status);
            golog::warn(
                "clientv3/maintenance.go:210",
                "failed to receive from snapshot stream; closing",
                &[("error", json_string(&error.grpc_text()))],
            );
            error
        };
        let mut stream = opened.map_err(|s| receive_failed(&s))?.into_inner();
        while let Some(item) = stream.next().await {
            let chunk = item.map_err(|s| receive_failed(&s))?;
            size += chunk.blob.len() as u64;
            file.write_all(&chunk.blob).map_err(|e| RpcError::Status {
                code: tonic::Code::Unknown,
                message: e.to_string(),
            })?;
        }
        golog::info(
            false,
            "clientv3/maintenance.go:208",
            "completed snapshot read; closing",
            &[],
        );
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
    golog::info(
        true,
        "snapshot/v3_snapshot.go:142",
        "fetched snapshot",
        &[
            ("endpoint", json_string(&endpoint)),
            ("size", json_string(&golog::humanize_bytes(size))),
            ("took", format!("{}", started.elapsed().as_secs_f64())),
        ],
    );
    std::fs::rename(&partial, path).map_err(|e| CtlError::new(ExitCode::Interrupted, e))?;
    golog::info(
        true,
        "snapshot/v3_snapshot.go:152",
        "saved",
        &[("path", json_string(path))],
    );
    emit(format!("Snapshot saved at {path}\n").as_bytes())
}
