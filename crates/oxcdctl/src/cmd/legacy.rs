//! Habits from etcdctl v2 tutorials: `set` and `ls`, with a hint of the v3 command.

use super::{emit_err, kv, Ctx};
use crate::cli::{GetArgs, PutArgs};
use crate::error::CtlError;

/// `set <key> <value>` = `put <key> <value>`.
pub(super) async fn set(ctx: &Ctx, args: &[String]) -> Result<(), CtlError> {
    emit_err(b"hint: `set` is etcdctl v2; the v3 command is `oxcdctl put <key> <value>`\n");
    let put = PutArgs {
        lease: "0".into(),
        prev_kv: false,
        ignore_value: false,
        ignore_lease: false,
        args: args.to_vec(),
    };
    kv::put(ctx, &put).await
}

/// `ls [prefix]` = `get --prefix --keys-only <prefix>` (every key without a prefix).
pub(super) async fn ls(ctx: &Ctx, args: &[String]) -> Result<(), CtlError> {
    emit_err(b"hint: `ls` is etcdctl v2; the v3 command is `oxcdctl get --prefix --keys-only <prefix>`\n");
    let prefix = args.first().cloned().unwrap_or_default();
    let get = GetArgs {
        consistency: "l".into(),
        order: String::new(),
        sort_by: String::new(),
        limit: 0,
        prefix: true,
        from_key: false,
        rev: 0,
        keys_only: true,
        print_value_only: false,
        args: vec![prefix],
    };
    kv::get(ctx, &get).await
}
