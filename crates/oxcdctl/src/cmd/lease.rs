//! `lease grant|revoke|timetolive|list|keep-alive`.

use std::time::Duration;

use oxcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::{emit, Ctx};
use crate::cli::LeaseCommand;
use crate::conn;
use crate::error::{CtlError, ExitCode, RpcError};
use crate::output::Format;

/// `lease ...`.
pub(super) async fn run(ctx: &Ctx, command: LeaseCommand) -> Result<(), CtlError> {
    match command {
        LeaseCommand::Grant { args } => grant(ctx, &args).await,
        LeaseCommand::Revoke { args } => revoke(ctx, &args).await,
        LeaseCommand::Timetolive { keys, args } => time_to_live(ctx, keys, &args).await,
        LeaseCommand::List => list(ctx).await,
        LeaseCommand::KeepAlive { once, args } => keep_alive(ctx, once, &args).await,
    }
}

/// A lease id given in hex.
pub(super) fn lease_id(arg: &str) -> Result<i64, CtlError> {
    crate::gostr::parse_int(arg, 16)
        .map_err(|e| CtlError::bad_args(format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

async fn grant(ctx: &Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("lease grant command needs TTL argument"));
    }
    let ttl = crate::gostr::parse_int(&args[0], 10)
        .map_err(|e| CtlError::bad_args(format!("bad TTL ({e})")))?;
    let response = ctx
        .conn
        .unary(ctx.conn.command_timeout(), |s| async move {
            conn::lease(&s)
                .lease_grant(s.request(LeaseGrantRequest { ttl, id: 0 }))
                .await
        })
        .await
        .map_err(|e| {
            CtlError::new(
                e.exit_code(ExitCode::Error),
                format!("failed to grant lease ({e})"),
            )
        })?;
    emit(&ctx.printer.grant(&response)?)
}

async fn revoke(ctx: &Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("lease revoke command needs 1 argument"));
    }
    let id = lease_id(&args[0])?;
    let response = ctx
        .conn
        .unary(ctx.conn.command_timeout(), |s| async move {
            conn::lease(&s)
                .lease_revoke(s.request(LeaseRevokeRequest { id }))
                .await
        })
        .await
        .map_err(|e| {
            CtlError::new(
                e.exit_code(ExitCode::Error),
                format!("failed to revoke lease ({e})"),
            )
        })?;
    emit(&ctx.printer.revoke(id, &response)?)
}

async fn time_to_live(ctx: &Ctx, keys: bool, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args(
            "lease timetolive command needs lease ID as argument",
        ));
    }
    let id = lease_id(&args[0])?;
    let response = ctx
        .conn
        .unary(None, |s| async move {
            conn::lease(&s)
                .lease_time_to_live(s.request(LeaseTimeToLiveRequest { id, keys }))
                .await
        })
        .await
        .map_err(|e| e.fail(ExitCode::BadConnection))?;
    emit(&ctx.printer.time_to_live(&response, keys)?)
}

async fn list(ctx: &Ctx) -> Result<(), CtlError> {
    let response = ctx
        .conn
        .unary(None, |s| async move {
            conn::lease(&s)
                .lease_leases(s.request(LeaseLeasesRequest {}))
                .await
        })
        .await
        .map_err(|e| e.fail(ExitCode::BadConnection))?;
    emit(&ctx.printer.leases(&response)?)
}

/// A keep-alive stream of one lease.
pub(super) struct KeepAlive {
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
    responses: tonic::Streaming<oxcd_proto::etcdserverpb::LeaseKeepAliveResponse>,
    id: i64,
    first_sent: bool,
}

impl KeepAlive {
    /// Opens the stream.
    pub(super) async fn open(ctx: &Ctx, id: i64) -> Result<KeepAlive, RpcError> {
        let session = ctx.conn.session().await?;
        let (tx, rx) = mpsc::channel(4);
        // The first request goes with the call: the server answers the call once it has one.
        let _ = tx.send(LeaseKeepAliveRequest { id }).await;
        let responses = conn::lease(&session)
            .lease_keep_alive(session.request(ReceiverStream::new(rx)))
            .await
            .map_err(|s| RpcError::from_status(&s))?
            .into_inner();
        Ok(KeepAlive {
            tx,
            responses,
            id,
            first_sent: true,
        })
    }

    /// One renewal: the answer, or `None` if the stream ended.
    pub(super) async fn renew(
        &mut self,
    ) -> Result<Option<oxcd_proto::etcdserverpb::LeaseKeepAliveResponse>, RpcError> {
        if self.first_sent {
            self.first_sent = false;
        } else if self
            .tx
            .send(LeaseKeepAliveRequest { id: self.id })
            .await
            .is_err()
        {
            return Ok(None);
        }
        match self.responses.next().await {
            Some(Ok(r)) => Ok(Some(r)),
            Some(Err(s)) => Err(RpcError::from_status(&s)),
            None => Ok(None),
        }
    }
}

async fn keep_alive(ctx: &Ctx, once: bool, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args(
            "lease keep-alive command needs lease ID as argument",
        ));
    }
    let id = lease_id(&args[0])?;
    let mut stream = KeepAlive::open(ctx, id)
        .await
        .map_err(|e| e.fail(ExitCode::BadConnection))?;
    if once {
        let response = stream
            .renew()
            .await
            .map_err(|e| e.fail(ExitCode::BadConnection))?;
        match response {
            Some(r) if r.ttl > 0 => return emit(&ctx.printer.keep_alive(&r)?),
            _ => {
                return Err(CtlError::new(
                    ExitCode::BadConnection,
                    "etcdserver: requested lease not found",
                ))
            }
        }
    }
    loop {
        match stream.renew().await {
            Ok(Some(r)) if r.ttl > 0 => {
                emit(&ctx.printer.keep_alive(&r)?)?;
                tokio::time::sleep(Duration::from_millis((r.ttl as u64 * 1000 / 3).max(500))).await;
            }
            _ => break,
        }
    }
    if ctx.printer.format == Format::Simple {
        emit(format!("lease {id:016x} expired or revoked.\n").as_bytes())?;
    }
    Ok(())
}
