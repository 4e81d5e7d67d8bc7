//! `service register|list`: a service registry on etcd's `naming/endpoints` key layout
//! (`<name>/<address>` = `{"Addr":"<address>","Metadata":...}` under a kept-alive lease), so
//! Go's `endpoints.Manager` and gRPC resolver see what oxcdctl registers, and vice versa.

use std::time::Duration;

use oxcd_proto::etcdserverpb::{
    watch_request, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
    RangeRequest, WatchCreateRequest, WatchRequest,
};
use oxcd_proto::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::lease::KeepAlive;
use super::{emit, emit_err, Ctx};
use crate::cli::ServiceCommand;
use crate::conn;
use crate::error::{CtlError, ExitCode, RpcError};
use crate::golog::json_string;
use crate::output::prefix_range_end;

/// `service ...`.
pub(super) async fn run(ctx: &Ctx, command: ServiceCommand) -> Result<(), CtlError> {
    match command {
        ServiceCommand::Register {
            ttl,
            meta,
            name,
            address,
        } => register(ctx, ttl, &meta, &name, &address).await,
        ServiceCommand::List { watch, name } => list(ctx, watch, &name).await,
    }
}

/// The JSON value of an endpoint (`endpoints.Endpoint`).
pub(super) fn endpoint_value(address: &str, meta: &[(String, String)]) -> String {
    let metadata = if meta.is_empty() {
        "null".to_string()
    } else {
        let fields: Vec<String> = meta
            .iter()
            .map(|(k, v)| format!("{}:{}", json_string(k), json_string(v)))
            .collect();
        format!("{{{}}}", fields.join(","))
    };
    format!(
        "{{\"Addr\":{},\"Metadata\":{metadata}}}",
        json_string(address)
    )
}

fn parse_meta(meta: &[String]) -> Result<Vec<(String, String)>, CtlError> {
    meta.iter()
        .map(|m| match m.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(CtlError::bad_args(format!(
                "--meta expects key=value, got {m:?}"
            ))),
        })
        .collect()
}

async fn register_once(
    ctx: &Ctx,
    ttl: i64,
    key: &[u8],
    value: &[u8],
) -> Result<(i64, KeepAlive), RpcError> {
    let grant = ctx
        .conn
        .unary(ctx.conn.command_timeout(), |s| async move {
            conn::lease(&s)
                .lease_grant(s.request(LeaseGrantRequest { ttl, id: 0 }))
                .await
        })
        .await?;
    let put = PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        lease: grant.id,
        ..Default::default()
    };
    ctx.conn
        .unary(ctx.conn.command_timeout(), |s| async move {
            conn::kv(&s).put(s.request(put)).await
        })
        .await?;
    let keep = KeepAlive::open(ctx, grant.id).await?;
    Ok((grant.id, keep))
}

async fn register(
    ctx: &Ctx,
    ttl: i64,
    meta: &[String],
    name: &str,
    address: &str,
) -> Result<(), CtlError> {
    let meta = parse_meta(meta)?;
    let key = format!("{name}/{address}").into_bytes();
    let value = endpoint_value(address, &meta).into_bytes();
    let (mut lease, mut keep) = register_once(ctx, ttl, &key, &value)
        .await
        .map_err(|e| e.fail(ExitCode::Error))?;
    emit(
        format!(
            "registered {name}/{address} (lease {lease:016x}, TTL {ttl}s); Ctrl-C to deregister\n"
        )
        .as_bytes(),
    )?;
    loop {
        let renewed = tokio::select! {
            r = keep.renew() => r,
            _ = tokio::signal::ctrl_c() => break,
        };
        match renewed {
            Ok(Some(r)) if r.ttl > 0 => {
                let pause = Duration::from_millis((r.ttl as u64 * 1000 / 3).max(500));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
            _ => {
                emit_err(
                    format!("lease {lease:016x} lost; registering {name}/{address} again\n")
                        .as_bytes(),
                );
                loop {
                    match register_once(ctx, ttl, &key, &value).await {
                        Ok((l, k)) => {
                            (lease, keep) = (l, k);
                            break;
                        }
                        Err(e) => {
                            emit_err(format!("{e}; retrying in 1s\n").as_bytes());
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                _ = tokio::signal::ctrl_c() => return Ok(()),
                            }
                        }
                    }
                }
                emit(
                    format!("registered {name}/{address} again (lease {lease:016x})\n").as_bytes(),
                )?;
            }
        }
    }
    let t = ctx.conn.command_timeout();
    let del = DeleteRangeRequest {
        key: key.clone(),
        ..Default::default()
    };
    let _ = ctx
        .conn
        .unary(t, |s| async move {
            conn::kv(&s).delete_range(s.request(del)).await
        })
        .await;
    let _ = ctx
        .conn
        .unary(t, |s| async move {
            conn::lease(&s)
                .lease_revoke(s.request(LeaseRevokeRequest { id: lease }))
                .await
        })
        .await;
    emit(format!("deregistered {name}/{address}\n").as_bytes())
}

/// The address of an instance: `Addr` of its JSON value, else the key after `<name>/`.
fn address_of(key: &[u8], value: &[u8], prefix: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    if let Some(start) = text.find("\"Addr\":\"") {
        let rest = &text[start + 8..];
        if let Some(end) = rest.find('"') {
            return rest[..end].to_string();
        }
    }
    if let Ok(s) = std::str::from_utf8(value) {
        if !s.is_empty() && !s.starts_with('{') {
            return s.to_string();
        }
    }
    String::from_utf8_lossy(key.strip_prefix(prefix).unwrap_or(key)).into_owned()
}

async fn list(ctx: &Ctx, follow: bool, name: &str) -> Result<(), CtlError> {
    let prefix = format!("{name}/").into_bytes();
    let end = prefix_range_end(&prefix);
    let request = RangeRequest {
        key: prefix.clone(),
        range_end: end.clone(),
        ..Default::default()
    };
    let r = ctx
        .conn
        .unary(ctx.conn.command_timeout(), |s| async move {
            conn::kv(&s).range(s.request(request)).await
        })
        .await
        .map_err(|e| e.fail(ExitCode::Error))?;
    let mut out = String::new();
    for kv in &r.kvs {
        out.push_str(&address_of(&kv.key, &kv.value, &prefix));
        out.push('\n');
    }
    emit(out.as_bytes())?;
    if !follow {
        return Ok(());
    }
    let from = r.header.as_ref().map(|h| h.revision).unwrap_or_default() + 1;
    let session = ctx
        .conn
        .session()
        .await
        .map_err(|e| e.fail(ExitCode::Error))?;
    let (tx, rx) = mpsc::channel(4);
    let create = WatchCreateRequest {
        key: prefix.clone(),
        range_end: end,
        start_revision: from,
        prev_kv: true,
        ..Default::default()
    };
    let _ = tx
        .send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
        })
        .await;
    let mut stream = conn::watch(&session)
        .watch(session.request(ReceiverStream::new(rx)))
        .await
        .map_err(|s| CtlError::new(ExitCode::Error, RpcError::from_status(&s)))?
        .into_inner();
    while let Some(item) = stream.next().await {
        let r =
            item.map_err(|s| CtlError::new(ExitCode::BadConnection, RpcError::from_status(&s)))?;
        for e in &r.events {
            let kv = e.kv.clone().unwrap_or_default();
            let line = if e.r#type == EventType::Delete as i32 {
                let prev = e.prev_kv.clone().unwrap_or_default();
                format!("- {}\n", address_of(&kv.key, &prev.value, &prefix))
            } else {
                format!("+ {}\n", address_of(&kv.key, &kv.value, &prefix))
            };
            emit(line.as_bytes())?;
        }
    }
    drop(tx);
    Err(CtlError::new(
        ExitCode::Interrupted,
        "watch is canceled by the server",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_values_are_go_endpoints_json() {
        assert_eq!(
            endpoint_value("10.0.0.1:80", &[]),
            "{\"Addr\":\"10.0.0.1:80\",\"Metadata\":null}"
        );
        assert_eq!(
            endpoint_value("h:1", &[("zone".into(), "a".into())]),
            "{\"Addr\":\"h:1\",\"Metadata\":{\"zone\":\"a\"}}"
        );
    }

    #[test]
    fn addresses_come_from_the_value_or_the_key() {
        assert_eq!(
            address_of(b"svc/h:1", b"{\"Addr\":\"h:1\",\"Metadata\":null}", b"svc/"),
            "h:1"
        );
        assert_eq!(address_of(b"svc/123", b"10.0.0.2:9", b"svc/"), "10.0.0.2:9");
        assert_eq!(address_of(b"svc/h:2", b"", b"svc/"), "h:2");
    }
}
