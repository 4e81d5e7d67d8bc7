//! `get`, `put` and `del`, and the requests they build (also used by `txn`).

use std::io::Read;

use oxcd_proto::etcdserverpb::{range_request, DeleteRangeRequest, PutRequest, RangeRequest};

use super::{emit, Ctx};
use crate::cli::{DelArgs, GetArgs, PutArgs};
use crate::conn;
use crate::error::{CtlError, ExitCode};
use crate::golog::go_quote;
use crate::output::{prefix_range_end, Format};

/// The range request of `get` (etcdctl's `getGetOp`).
pub(super) fn get_request(a: &GetArgs) -> Result<RangeRequest, CtlError> {
    if a.args.is_empty() {
        return Err(CtlError::bad_args(
            "get command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let mut r = RangeRequest::default();
    match a.consistency.as_str() {
        "s" => r.serializable = true,
        "l" => {}
        other => {
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!("unknown consistency flag {}", go_quote(other.as_bytes())),
            ))
        }
    }
    r.key = a.args[0].clone().into_bytes();
    if a.args.len() > 1 {
        if a.prefix || a.from_key {
            return Err(CtlError::bad_args(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            ));
        }
        r.range_end = a.args[1].clone().into_bytes();
    }
    r.limit = a.limit;
    if a.rev > 0 {
        r.revision = a.rev;
    }
    let order = match a.order.to_uppercase().as_str() {
        "ASCEND" => range_request::SortOrder::Ascend,
        "DESCEND" => range_request::SortOrder::Descend,
        "" => range_request::SortOrder::None,
        _ => {
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!("bad sort order {}", a.order),
            ))
        }
    };
    let target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => range_request::SortTarget::Create,
        "KEY" | "" => range_request::SortTarget::Key,
        "MODIFY" => range_request::SortTarget::Mod,
        "VALUE" => range_request::SortTarget::Value,
        "VERSION" => range_request::SortTarget::Version,
        _ => {
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!("bad sort target {}", a.sort_by),
            ))
        }
    };
    // clientv3's WithSort: keys come sorted ascending anyway.
    let order =
        if target == range_request::SortTarget::Key && order == range_request::SortOrder::Ascend {
            range_request::SortOrder::None
        } else {
            order
        };
    r.sort_order = order as i32;
    r.sort_target = target as i32;
    if a.prefix {
        if r.key.is_empty() {
            r.key = vec![0];
            r.range_end = vec![0];
        } else {
            r.range_end = prefix_range_end(&r.key);
        }
    }
    if a.from_key {
        if r.key.is_empty() {
            r.key = vec![0];
        }
        r.range_end = vec![0];
    }
    r.keys_only = a.keys_only;
    Ok(r)
}

/// The put request of `put` (etcdctl's `getPutOp`); the value may come from stdin.
pub(super) fn put_request(a: &PutArgs) -> Result<PutRequest, CtlError> {
    const NEEDS: &str = "put command needs 1 argument and input from stdin or 2 arguments";
    if a.args.is_empty() {
        return Err(CtlError::bad_args(NEEDS));
    }
    if a.ignore_value && a.args.len() > 1 {
        return Err(CtlError::bad_args(
            "put command needs only 1 argument when 'ignore-value' is set",
        ));
    }
    let mut value = Vec::new();
    if !a.ignore_value {
        value = match a.args.get(1) {
            Some(v) => v.clone().into_bytes(),
            None => {
                let mut buf = Vec::new();
                if std::io::stdin().read_to_end(&mut buf).is_err() || buf.is_empty() {
                    return Err(CtlError::bad_args(NEEDS));
                }
                buf
            }
        };
    }
    let lease = crate::gostr::parse_int(&a.lease, 16)
        .map_err(|e| CtlError::bad_args(format!("bad lease ID ({e}), expecting ID in Hex")))?;
    Ok(PutRequest {
        key: a.args[0].clone().into_bytes(),
        value,
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    })
}

/// The delete request of `del` (etcdctl's `getDelOp`).
pub(super) fn del_request(a: &DelArgs) -> Result<DeleteRangeRequest, CtlError> {
    if a.args.is_empty() || a.args.len() > 2 {
        return Err(CtlError::bad_args(
            "del command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let mut r = DeleteRangeRequest {
        key: a.args[0].clone().into_bytes(),
        ..Default::default()
    };
    if a.args.len() > 1 {
        if a.prefix || a.from_key {
            return Err(CtlError::bad_args(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            ));
        }
        r.range_end = a.args[1].clone().into_bytes();
    }
    if a.prefix {
        if r.key.is_empty() {
            r.key = vec![0];
            r.range_end = vec![0];
        } else {
            r.range_end = prefix_range_end(&r.key);
        }
    }
    r.prev_kv = a.prev_kv;
    if a.from_key {
        if r.key.is_empty() {
            r.key = vec![0];
        }
        r.range_end = vec![0];
    }
    Ok(r)
}

/// `get`.
pub(super) async fn get(ctx: &Ctx, a: &GetArgs) -> Result<(), CtlError> {
    let request = get_request(a)?;
    let response = ctx
        .conn
        .unary(ctx.conn.command_timeout(), |s| async move {
            conn::kv(&s).range(s.request(request)).await
        })
        .await
        .map_err(|e| e.fail(ExitCode::Error))?;
    let mut printer = ctx.printer;
    if a.print_value_only {
        if printer.format != Format::Simple {
            return Err(CtlError::bad_args(
                "print-value-only is only for `--write-out=simple`",
            ));
        }
        printer.value_only = true;
    }
    emit(&printer.get(&response)?)
}

/// `put`.
pub(super) async fn put(ctx: &Ctx, a: &PutArgs) -> Result<(), CtlError> {
    let request = put_request(a)?;
    let response = ctx
        .conn
        .unary(ctx.conn.command_timeout(), |s| async move {
            conn::kv(&s).put(s.request(request)).await
        })
        .await
        .map_err(|e| e.fail(ExitCode::Error))?;
    emit(&ctx.printer.put(&response)?)
}

/// `del`.
pub(super) async fn del(ctx: &Ctx, a: &DelArgs) -> Result<(), CtlError> {
    let request = del_request(a)?;
    let response = ctx
        .conn
        .unary(ctx.conn.command_timeout(), |s| async move {
            conn::kv(&s).delete_range(s.request(request)).await
        })
        .await
        .map_err(|e| e.fail(ExitCode::Error))?;
    emit(&ctx.printer.del(&response)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get_args(args: &[&str]) -> GetArgs {
        GetArgs {
            consistency: "l".into(),
            order: String::new(),
            sort_by: String::new(),
            limit: 0,
            prefix: false,
            from_key: false,
            rev: 0,
            keys_only: false,
            print_value_only: false,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn prefix_ranges_as_clientv3() {
        let mut a = get_args(&["p/"]);
        a.prefix = true;
        let r = get_request(&a).unwrap();
        assert_eq!(r.range_end, b"p0");
        let mut a = get_args(&[""]);
        a.prefix = true;
        let r = get_request(&a).unwrap();
        assert_eq!((r.key, r.range_end), (vec![0], vec![0]));
    }

    #[test]
    fn key_ascend_sort_is_dropped_as_clientv3_does() {
        let mut a = get_args(&["k"]);
        a.order = "ascend".into();
        let r = get_request(&a).unwrap();
        assert_eq!(r.sort_order, range_request::SortOrder::None as i32);
        a.sort_by = "VALUE".into();
        let r = get_request(&a).unwrap();
        assert_eq!(r.sort_order, range_request::SortOrder::Ascend as i32);
    }

    #[test]
    fn bad_inputs_are_etcdctl_errors() {
        let mut a = get_args(&["k"]);
        a.consistency = "x".into();
        let e = get_request(&a).unwrap_err();
        assert_eq!(
            (e.code, e.message.unwrap()),
            (
                ExitCode::BadFeature,
                "unknown consistency flag \"x\"".into()
            )
        );
        let e = get_request(&get_args(&[])).unwrap_err();
        assert_eq!(e.code, ExitCode::BadArgs);
    }
}
