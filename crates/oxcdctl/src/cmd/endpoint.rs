//! `endpoint health|status|hashkv [--cluster]`.

use std::time::Instant;

use oxcd_proto::etcdserverpb::{HashKvRequest, MemberListRequest, RangeRequest, StatusRequest};

use super::{emit, emit_err, Ctx};
use crate::cli::EndpointCommand;
use crate::conn::{self, Connection};
use crate::error::{CtlError, ExitCode};
use crate::golog::go_duration;
use crate::output::{EpHashKv, EpHealth, EpStatus};

/// `endpoint ...`.
pub(super) async fn run(
    ctx: &Ctx,
    cluster: bool,
    command: EndpointCommand,
) -> Result<(), CtlError> {
    let endpoints = endpoints(ctx, cluster).await?;
    match command {
        EndpointCommand::Health => health(ctx, &endpoints).await,
        EndpointCommand::Status => status(ctx, &endpoints).await,
        EndpointCommand::Hashkv { rev } => hashkv(ctx, &endpoints, rev).await,
    }
}

/// `--endpoints`, or with `--cluster` the client URLs of every member.
pub(super) async fn endpoints(ctx: &Ctx, cluster: bool) -> Result<Vec<String>, CtlError> {
    if !cluster {
        return Ok(ctx.endpoints().to_vec());
    }
    let plain = Connection::new(crate::conn::ConnectionConfig {
        credentials: None,
        ..ctx.conn.config().clone()
    });
    let members = plain
        .unary(plain.command_timeout(), |s| async move {
            conn::cluster(&s)
                .member_list(s.request(MemberListRequest {
                    linearizable: false,
                }))
                .await
        })
        .await
        .map_err(|e| {
            CtlError::new(
                ExitCode::Error,
                format!("failed to fetch endpoints from etcd cluster member list: {e}"),
            )
        })?;
    Ok(members
        .members
        .into_iter()
        .flat_map(|m| m.client_ur_ls)
        .collect())
}

async fn health(ctx: &Ctx, endpoints: &[String]) -> Result<(), CtlError> {
    let probes = endpoints.iter().map(|ep| async move {
        let conn = ctx.conn.with_endpoints(vec![ep.clone()]);
        let start = Instant::now();
        let result = conn
            .unary(conn.command_timeout(), |s| async move {
                conn::kv(&s)
                    .range(s.request(RangeRequest {
                        key: b"health".to_vec(),
                        ..Default::default()
                    }))
                    .await
            })
            .await;
        let took = go_duration(start.elapsed());
        match result {
            Ok(_) => EpHealth {
                ep: ep.clone(),
                health: true,
                took,
                error: String::new(),
            },
            Err(e) if e.is_permission_denied() => EpHealth {
                ep: ep.clone(),
                health: true,
                took,
                error: String::new(),
            },
            Err(e) => EpHealth {
                ep: ep.clone(),
                health: false,
                took,
                error: e.to_string(),
            },
        }
    });
    let list = futures::future::join_all(probes).await;
    let (out, err) = ctx.printer.endpoint_health(&list)?;
    emit(&out)?;
    emit_err(&err);
    if list.iter().any(|h| !h.error.is_empty()) {
        return Err(CtlError::new(ExitCode::Error, "unhealthy cluster"));
    }
    Ok(())
}

async fn status(ctx: &Ctx, endpoints: &[String]) -> Result<(), CtlError> {
    let mut list = Vec::new();
    let mut failed = false;
    for ep in endpoints {
        let conn = ctx.conn.for_endpoint(ep);
        match conn
            .unary(conn.command_timeout(), |s| async move {
                conn::maintenance(&s)
                    .status(s.request(StatusRequest {}))
                    .await
            })
            .await
        {
            Ok(resp) => list.push(EpStatus {
                ep: ep.clone(),
                resp,
            }),
            Err(e) => {
                failed = true;
                emit_err(format!("Failed to get the status of endpoint {ep} ({e})\n").as_bytes());
            }
        }
    }
    emit(&ctx.printer.endpoint_status(&list)?)?;
    if failed {
        return Err(CtlError::silent(ExitCode::Error));
    }
    Ok(())
}

async fn hashkv(ctx: &Ctx, endpoints: &[String], revision: i64) -> Result<(), CtlError> {
    let mut list = Vec::new();
    let mut last_error = None;
    for ep in endpoints {
        let conn = ctx.conn.for_endpoint(ep);
        match conn
            .unary(conn.command_timeout(), |s| async move {
                conn::maintenance(&s)
                    .hash_kv(s.request(HashKvRequest { revision }))
                    .await
            })
            .await
        {
            Ok(resp) => list.push(EpHashKv {
                ep: ep.clone(),
                resp,
            }),
            Err(e) => {
                emit_err(format!("Failed to get the hash of endpoint {ep} ({e})\n").as_bytes());
                last_error = Some(e);
            }
        }
    }
    emit(&ctx.printer.endpoint_hashkv(&list)?)?;
    match last_error {
        Some(e) => Err(e.fail(ExitCode::Error)),
        None => Ok(()),
    }
}
