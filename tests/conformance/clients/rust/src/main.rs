//! Conformance suite for the Rust `etcd-client` crate, run by tests/conformance/run.
//!
//!     oxcd-conformance-rust --list                # scenario names, one a line
//!     oxcd-conformance-rust HOST:PORT SCENARIO    # the scenario's transcript on stdout
//!
//! One line per observable result; `run` diffs etcd's transcript against oxcd's after its
//! normalization of ids/terms (revisions are never normalized). When the server answers
//! gRPC Unimplemented the scenario stops with a last line `UNIMPLEMENTED <what>`, which `run`
//! records as "not yet supported". Each scenario uses its own key prefix `rs/<scenario>/`.

use etcd_client::{
    AlarmAction, AlarmType, Certificate, Client, CompactionOptions, Compare, CompareOp,
    ConnectOptions, DeleteOptions, Error, EventType, GetOptions, Identity, KeyValue,
    LeaseTimeToLiveOptions, Permission, PutOptions, ResponseHeader, SortOrder, SortTarget,
    TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use std::time::Duration;

const SCENARIOS: &[&str] = &[
    "kv_put_get",
    "kv_range_options",
    "kv_revisions",
    "kv_delete",
    "txn",
    "compaction",
    "errors",
    "cluster",
    "maintenance",
    "watch",
    "lease",
    "auth_user_password",
    "tls_client_cert",
];

/// Stops a scenario: the server answered Unimplemented (already printed).
struct Unimplemented;
type Step = std::result::Result<(), Unimplemented>;

fn s(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(b))
}

/// JSON-like, so that run's normalize() rewrites the ids and the raft term.
fn hdr(h: Option<&ResponseHeader>) -> String {
    match h {
        None => "no-header".into(),
        Some(h) => format!(
            "{{\"cluster_id\":{},\"member_id\":{},\"revision\":{},\"raft_term\":{}}}",
            h.cluster_id(),
            h.member_id(),
            h.revision(),
            h.raft_term()
        ),
    }
}

fn kv(k: &KeyValue) -> String {
    format!(
        "kv key={} value={} create={} mod={} version={} lease={}",
        s(k.key()),
        s(k.value()),
        k.create_revision(),
        k.mod_revision(),
        k.version(),
        k.lease()
    )
}

/// Print the result of one call; an error is part of the transcript, except
/// Unimplemented, which stops the scenario.
fn check<T>(
    label: &str,
    r: Result<T, Error>,
    show: impl FnOnce(&T),
) -> Result<Option<T>, Unimplemented> {
    match r {
        Ok(v) => {
            show(&v);
            Ok(Some(v))
        }
        Err(Error::GRpcStatus(st)) if st.code() == tonic_code_unimplemented() => {
            println!("UNIMPLEMENTED {label} ({})", st.message());
            Err(Unimplemented)
        }
        Err(Error::GRpcStatus(st)) => {
            println!(
                "{label} error code={:?} message={:?}",
                st.code(),
                st.message()
            );
            Ok(None)
        }
        Err(e) => {
            println!("{label} error {e}");
            Ok(None)
        }
    }
}

fn tonic_code_unimplemented() -> tonic::Code {
    tonic::Code::Unimplemented
}

fn show_get(label: &str) -> impl FnOnce(&etcd_client::GetResponse) + '_ {
    move |r| {
        println!(
            "{label} header {} count={} more={} n={}",
            hdr(r.header()),
            r.count(),
            r.more(),
            r.kvs().len()
        );
        for k in r.kvs() {
            println!("   {}", kv(k));
        }
    }
}

fn show_put(label: &str) -> impl FnOnce(&etcd_client::PutResponse) + '_ {
    move |r| {
        println!(
            "{label} header {} prev={}",
            hdr(r.header()),
            r.prev_key().map(kv).unwrap_or("none".into())
        );
    }
}

fn show_del(label: &str) -> impl FnOnce(&etcd_client::DeleteResponse) + '_ {
    move |r| {
        println!(
            "{label} header {} deleted={} prev_kvs={}",
            hdr(r.header()),
            r.deleted(),
            r.prev_kvs().len()
        );
        for k in r.prev_kvs() {
            println!("   prev {}", kv(k));
        }
    }
}

fn print_txn(indent: &str, r: &etcd_client::TxnResponse) {
    println!(
        "{indent}header {} succeeded={}",
        hdr(r.header()),
        r.succeeded()
    );
    for op in r.op_responses() {
        match op {
            TxnOpResponse::Put(p) => println!(
                "{indent}  put header {} prev={}",
                hdr(p.header()),
                p.prev_key().map(kv).unwrap_or("none".into())
            ),
            TxnOpResponse::Get(g) => {
                println!(
                    "{indent}  get header {} count={} more={}",
                    hdr(g.header()),
                    g.count(),
                    g.more()
                );
                for k in g.kvs() {
                    println!("{indent}    {}", kv(k));
                }
            }
            TxnOpResponse::Delete(d) => {
                println!(
                    "{indent}  delete header {} deleted={}",
                    hdr(d.header()),
                    d.deleted()
                );
                for k in d.prev_kvs() {
                    println!("{indent}    prev {}", kv(k));
                }
            }
            TxnOpResponse::Txn(t) => {
                println!("{indent}  txn:");
                print_txn(&format!("{indent}    "), &t);
            }
        }
    }
}

fn show_txn(label: &str) -> impl FnOnce(&etcd_client::TxnResponse) + '_ {
    move |r| {
        println!("{label}");
        print_txn("  ", r);
    }
}

// ------------------------------------------------------------------- scenarios

async fn kv_put_get(c: &mut Client, p: &str) -> Step {
    let k = |x: &str| format!("{p}{x}");
    check("put a", c.put(k("a"), "1", None).await, show_put("put a"))?;
    check(
        "put a prev_kv",
        c.put(k("a"), "2", Some(PutOptions::new().with_prev_key()))
            .await,
        show_put("put a prev_kv"),
    )?;
    check(
        "put b prev_kv (new)",
        c.put(k("b"), "bee", Some(PutOptions::new().with_prev_key()))
            .await,
        show_put("put b prev_kv (new)"),
    )?;
    check(
        "put c empty value",
        c.put(k("c"), "", None).await,
        show_put("put c empty value"),
    )?;
    check(
        "put a ignore_value",
        c.put(
            k("a"),
            "",
            Some(PutOptions::new().with_ignore_value().with_prev_key()),
        )
        .await,
        show_put("put a ignore_value"),
    )?;
    check("get a", c.get(k("a"), None).await, show_get("get a"))?;
    check(
        "get missing",
        c.get(k("missing"), None).await,
        show_get("get missing"),
    )?;
    check(
        "get serializable",
        c.get(k("a"), Some(GetOptions::new().with_serializable()))
            .await,
        show_get("get serializable"),
    )?;
    check(
        "get prefix",
        c.get(p, Some(GetOptions::new().with_prefix())).await,
        show_get("get prefix"),
    )?;
    check(
        "get prefix none",
        c.get(k("zz"), Some(GetOptions::new().with_prefix())).await,
        show_get("get prefix none"),
    )?;
    check(
        "get range a..c",
        c.get(k("a"), Some(GetOptions::new().with_range(k("c"))))
            .await,
        show_get("get range a..c"),
    )?;
    check(
        "get range a..a",
        c.get(k("a"), Some(GetOptions::new().with_range(k("a"))))
            .await,
        show_get("get range a..a"),
    )?;
    check(
        "get from_key b",
        c.get(
            k("b"),
            Some(GetOptions::new().with_from_key().with_limit(2)),
        )
        .await,
        show_get("get from_key b"),
    )?;
    Ok(())
}

async fn kv_range_options(c: &mut Client, p: &str) -> Step {
    // No ties: KEY a b c d; CREATE c a d b; MODIFY a c d b; VERSION a1 c2 b3 d4; VALUE b d c a
    for (k, v) in [
        ("c", "mu"),
        ("a", "zeta"),
        ("d", "delta"),
        ("b", "alpha"),
        ("d", "delta2"),
        ("b", "alpha2"),
        ("d", "delta3"),
        ("c", "mu2"),
        ("d", "delta4"),
        ("b", "alpha3"),
    ] {
        c.put(format!("{p}{k}"), v, None)
            .await
            .map_err(|e| println!("setup error {e}"))
            .ok();
    }
    let pre = || GetOptions::new().with_prefix();
    for (tn, t) in [
        ("key", SortTarget::Key),
        ("create", SortTarget::Create),
        ("mod", SortTarget::Mod),
        ("version", SortTarget::Version),
        ("value", SortTarget::Value),
    ] {
        for (on, o) in [
            ("ascend", SortOrder::Ascend),
            ("descend", SortOrder::Descend),
            ("none", SortOrder::None),
        ] {
            let l = format!("sort {tn} {on}");
            check(
                &l,
                c.get(p, Some(pre().with_sort(t, o))).await,
                show_get(&l),
            )?;
        }
    }
    for n in [0, 1, 3, 4, 5] {
        let l = format!("limit {n}");
        check(&l, c.get(p, Some(pre().with_limit(n))).await, show_get(&l))?;
    }
    check(
        "limit 2 sort mod descend",
        c.get(
            p,
            Some(
                pre()
                    .with_limit(2)
                    .with_sort(SortTarget::Mod, SortOrder::Descend),
            ),
        )
        .await,
        show_get("limit 2 sort mod descend"),
    )?;
    check(
        "keys_only",
        c.get(p, Some(pre().with_keys_only())).await,
        show_get("keys_only"),
    )?;
    check(
        "count_only",
        c.get(p, Some(pre().with_count_only())).await,
        show_get("count_only"),
    )?;
    check(
        "count_only limit 1",
        c.get(p, Some(pre().with_count_only().with_limit(1))).await,
        show_get("count_only limit 1"),
    )?;
    check(
        "count_only none",
        c.get(format!("{p}none"), Some(pre().with_count_only()))
            .await,
        show_get("count_only none"),
    )?;
    let cmod = c
        .get(format!("{p}c"), None)
        .await
        .ok()
        .and_then(|r| r.kvs().first().map(|k| k.mod_revision()))
        .unwrap_or(0);
    check(
        "min_mod_revision",
        c.get(p, Some(pre().with_min_mod_revision(cmod))).await,
        show_get("min_mod_revision"),
    )?;
    check(
        "max_mod_revision",
        c.get(p, Some(pre().with_max_mod_revision(cmod))).await,
        show_get("max_mod_revision"),
    )?;
    check(
        "min_create_revision",
        c.get(p, Some(pre().with_min_create_revision(cmod - 5)))
            .await,
        show_get("min_create_revision"),
    )?;
    check(
        "max_create_revision",
        c.get(p, Some(pre().with_max_create_revision(cmod - 6)))
            .await,
        show_get("max_create_revision"),
    )?;
    Ok(())
}

async fn kv_revisions(c: &mut Client, p: &str) -> Step {
    let k = format!("{p}k");
    let base = c
        .get(format!("{p}probe"), None)
        .await
        .ok()
        .and_then(|r| r.header().map(|h| h.revision()))
        .unwrap_or(0);
    println!("base revision {base}");
    for v in ["v1", "v2", "v3"] {
        c.put(k.clone(), v, None).await.ok();
    }
    c.delete(k.clone(), None).await.ok();
    c.put(k.clone(), "v4", None).await.ok();
    for d in 0..6 {
        let l = format!("rev base+{d}");
        check(
            &l,
            c.get(k.clone(), Some(GetOptions::new().with_revision(base + d)))
                .await,
            show_get(&l),
        )?;
    }
    check(
        "prefix rev base+2",
        c.get(
            p,
            Some(GetOptions::new().with_prefix().with_revision(base + 2)),
        )
        .await,
        show_get("prefix rev base+2"),
    )?;
    Ok(())
}

async fn kv_delete(c: &mut Client, p: &str) -> Step {
    for x in ["a", "b", "c", "d", "e"] {
        c.put(format!("{p}{x}"), x.repeat(2), None).await.ok();
    }
    let outside = format!("{}x", &p[..p.len() - 1]);
    c.put(outside.clone(), "outside", None).await.ok();
    check(
        "delete a",
        c.delete(format!("{p}a"), None).await,
        show_del("delete a"),
    )?;
    check(
        "delete a again",
        c.delete(format!("{p}a"), None).await,
        show_del("delete a again"),
    )?;
    check(
        "delete b prev_kv",
        c.delete(format!("{p}b"), Some(DeleteOptions::new().with_prev_key()))
            .await,
        show_del("delete b prev_kv"),
    )?;
    check(
        "delete c..e prev_kv",
        c.delete(
            format!("{p}c"),
            Some(
                DeleteOptions::new()
                    .with_range(format!("{p}e"))
                    .with_prev_key(),
            ),
        )
        .await,
        show_del("delete c..e prev_kv"),
    )?;
    check(
        "delete prefix",
        c.delete(p, Some(DeleteOptions::new().with_prefix())).await,
        show_del("delete prefix"),
    )?;
    check(
        "get prefix after",
        c.get(p, Some(GetOptions::new().with_prefix())).await,
        show_get("get prefix after"),
    )?;
    check(
        "outside survives",
        c.get(outside, None).await,
        show_get("outside survives"),
    )?;
    Ok(())
}

async fn txn(c: &mut Client, p: &str) -> Step {
    let k = |x: &str| format!("{p}{x}");
    c.put(k("k"), "v", None).await.ok();
    let t = Txn::new()
        .when([
            Compare::value(k("k"), CompareOp::Equal, "v"),
            Compare::version(k("k"), CompareOp::Equal, 1),
            Compare::create_revision(k("none"), CompareOp::Equal, 0),
            Compare::mod_revision(k("k"), CompareOp::Greater, 0),
            Compare::value(k("k"), CompareOp::NotEqual, "w"),
            Compare::version(k("k"), CompareOp::Less, 5),
        ])
        .and_then([
            TxnOp::put(k("ok"), "yes", None),
            TxnOp::get(k("k"), None),
            TxnOp::delete(k("nothing"), None),
        ])
        .or_else([TxnOp::put(k("fail"), "no", None)]);
    check(
        "txn all compares true",
        c.txn(t).await,
        show_txn("txn all compares true"),
    )?;
    let t = Txn::new()
        .when([Compare::value(k("k"), CompareOp::Equal, "other")])
        .and_then([TxnOp::put(k("ok2"), "yes", None)])
        .or_else([
            TxnOp::put(k("fail"), "no", Some(PutOptions::new().with_prev_key())),
            TxnOp::get(p, Some(GetOptions::new().with_prefix())),
        ]);
    check(
        "txn value mismatch",
        c.txn(t).await,
        show_txn("txn value mismatch"),
    )?;
    let t = Txn::new()
        .when([Compare::create_revision(k("k"), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(k("x"), "1", None)]);
    check(
        "txn create mismatch, empty else",
        c.txn(t).await,
        show_txn("txn create mismatch, empty else"),
    )?;
    let t = Txn::new()
        .when([Compare::mod_revision(k("k"), CompareOp::Greater, 1_000_000)])
        .or_else([TxnOp::delete(
            k("fail"),
            Some(DeleteOptions::new().with_prev_key()),
        )]);
    check(
        "txn mod greater",
        c.txn(t).await,
        show_txn("txn mod greater"),
    )?;
    let t = Txn::new()
        .when([Compare::value(p, CompareOp::Greater, "").with_prefix()])
        .and_then([TxnOp::get(k("ok"), None)]);
    check(
        "txn compare over prefix",
        c.txn(t).await,
        show_txn("txn compare over prefix"),
    )?;
    let inner = Txn::new()
        .when([Compare::value(k("ok"), CompareOp::Equal, "yes")])
        .and_then([
            TxnOp::put(k("nested"), "in", None),
            TxnOp::get(k("ok"), None),
        ])
        .or_else([TxnOp::put(k("nested"), "out", None)]);
    let t = Txn::new()
        .when([Compare::version(k("k"), CompareOp::Greater, 0)])
        .and_then([TxnOp::txn(inner), TxnOp::get(k("nested"), None)]);
    check("txn nested", c.txn(t).await, show_txn("txn nested"))?;
    let t = Txn::new().and_then([
        TxnOp::put(k("dup"), "1", None),
        TxnOp::put(k("dup"), "2", None),
    ]);
    check(
        "txn duplicate key",
        c.txn(t).await,
        show_txn("txn duplicate key"),
    )?;
    let t = Txn::new().and_then([
        TxnOp::put(k("dup"), "1", None),
        TxnOp::delete(p, Some(DeleteOptions::new().with_prefix())),
    ]);
    check(
        "txn put inside deleted range",
        c.txn(t).await,
        show_txn("txn put inside deleted range"),
    )?;
    check(
        "get prefix",
        c.get(p, Some(GetOptions::new().with_prefix())).await,
        show_get("get prefix"),
    )?;
    Ok(())
}

async fn compaction(c: &mut Client, p: &str) -> Step {
    let k = format!("{p}k");
    c.put(k.clone(), "v1", None).await.ok();
    c.put(k.clone(), "v2", None).await.ok();
    let r = c
        .put(k.clone(), "v3", None)
        .await
        .ok()
        .and_then(|r| r.header().map(|h| h.revision()))
        .unwrap_or(0);
    check("compact r-1", c.compact(r - 1, None).await, |x| {
        println!("compact r-1 header {}", hdr(x.header()))
    })?;
    check(
        "get rev r-2",
        c.get(k.clone(), Some(GetOptions::new().with_revision(r - 2)))
            .await,
        show_get("get rev r-2"),
    )?;
    check(
        "get rev r-1",
        c.get(k.clone(), Some(GetOptions::new().with_revision(r - 1)))
            .await,
        show_get("get rev r-1"),
    )?;
    check(
        "get rev future",
        c.get(k.clone(), Some(GetOptions::new().with_revision(r + 1000)))
            .await,
        show_get("get rev future"),
    )?;
    check("compact r-2 again", c.compact(r - 2, None).await, |x| {
        println!("compact r-2 header {}", hdr(x.header()))
    })?;
    check("compact future", c.compact(r + 1000, None).await, |x| {
        println!("compact future header {}", hdr(x.header()))
    })?;
    check(
        "compact r physical",
        c.compact(r, Some(CompactionOptions::new().with_physical()))
            .await,
        |x| println!("compact r physical header {}", hdr(x.header())),
    )?;
    let t = Txn::new().and_then([TxnOp::get(
        k.clone(),
        Some(GetOptions::new().with_revision(r - 1)),
    )]);
    check(
        "txn get compacted rev",
        c.txn(t).await,
        show_txn("txn get compacted rev"),
    )?;
    check("get current", c.get(k, None).await, show_get("get current"))?;
    Ok(())
}

async fn errors(c: &mut Client, p: &str) -> Step {
    check(
        "put empty key",
        c.put("", "v", None).await,
        show_put("put empty key"),
    )?;
    check(
        "get empty key",
        c.get("", None).await,
        show_get("get empty key"),
    )?;
    check(
        "delete empty key",
        c.delete("", None).await,
        show_del("delete empty key"),
    )?;
    check(
        "put missing lease",
        c.put(
            format!("{p}k"),
            "v",
            Some(PutOptions::new().with_lease(1234)),
        )
        .await,
        show_put("put missing lease"),
    )?;
    check(
        "put ignore_value on missing key",
        c.put(
            format!("{p}k"),
            "",
            Some(PutOptions::new().with_ignore_value()),
        )
        .await,
        show_put("put ignore_value on missing key"),
    )?;
    check(
        "put ignore_value with a value",
        c.put(
            format!("{p}k"),
            "v",
            Some(PutOptions::new().with_ignore_value()),
        )
        .await,
        show_put("put ignore_value with a value"),
    )?;
    check(
        "txn empty key",
        c.txn(Txn::new().and_then([TxnOp::put("", "v", None)]))
            .await,
        show_txn("txn empty key"),
    )?;
    check(
        "get after",
        c.get(p, Some(GetOptions::new().with_prefix())).await,
        show_get("get after"),
    )?;
    Ok(())
}

async fn cluster(c: &mut Client, _p: &str) -> Step {
    check("member_list", c.member_list().await, |r| {
        println!(
            "member_list header {} members={}",
            hdr(r.header()),
            r.members().len()
        );
        for m in r.members() {
            println!(
                "   member id={} name={:?} peer_urls={:?} client_urls={:?} learner={}",
                m.id(),
                m.name(),
                m.peer_urls(),
                m.client_urls(),
                m.is_learner()
            );
        }
    })?;
    Ok(())
}

async fn maintenance(c: &mut Client, _p: &str) -> Step {
    // version, db sizes and raft index/term are normalized (DIFFERENCES.md): print only
    // what is compared -- whether the leader is this member, errors, learner flag.
    let me = c
        .member_list()
        .await
        .ok()
        .and_then(|r| r.members().first().map(|m| m.id()))
        .unwrap_or(0);
    check("status", c.status().await, |r| {
        println!(
            "status header {} version_nonempty={} db_size_positive={} db_size_in_use_le_db_size={} leader_is_self={} raft_index_positive={} applied_le_index={} errors={:?} learner={}",
            hdr(r.header()),
            !r.version().is_empty(),
            r.db_size() > 0,
            r.raft_used_db_size() <= r.db_size(),
            r.leader() == me,
            r.raft_index() > 0,
            r.raft_applied_index() <= r.raft_index(),
            r.errors(),
            r.is_learner()
        );
    })?;
    check(
        "alarm get",
        c.alarm(AlarmAction::Get, AlarmType::None, None).await,
        |r| {
            println!(
                "alarm get header {} alarms={}",
                hdr(r.header()),
                r.alarms().len()
            );
        },
    )?;
    Ok(())
}

async fn watch(c: &mut Client, p: &str) -> Step {
    let mut ws = match check(
        "watch create",
        c.watch(p, Some(WatchOptions::new().with_prefix().with_prev_key()))
            .await,
        |_| (),
    )? {
        Some(ws) => ws,
        None => return Ok(()),
    };
    let mut events = Vec::new();
    let mut created = false;
    let mut kv2 = c.kv_client();
    let outside = format!("{}-outside", &p[..p.len() - 1]);
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.message()).await;
        let m = match m {
            Err(_) => {
                println!("watch timed out");
                break;
            }
            Ok(m) => m,
        };
        let resp = match check("watch message", m, |_| ())? {
            Some(Some(r)) => r,
            _ => break,
        };
        if resp.created() && !created {
            created = true;
            println!(
                "watch created canceled={} compact_revision={}",
                resp.canceled(),
                resp.compact_revision()
            );
            kv2.put(format!("{p}a"), "1", None).await.ok();
            kv2.put(format!("{p}a"), "2", None).await.ok();
            kv2.put(outside.clone(), "x", None).await.ok();
            kv2.delete(format!("{p}a"), None).await.ok();
            kv2.put(format!("{p}b"), "3", None).await.ok();
        }
        for e in resp.events() {
            events.push(format!(
                "event {:?} {} prev={}",
                e.event_type(),
                e.kv().map(kv).unwrap_or_default(),
                e.prev_kv().map(kv).unwrap_or("none".into())
            ));
        }
        if events.len() >= 4 {
            break;
        }
    }
    for e in &events {
        println!("{e}");
    }
    // Replay from a past revision.
    let b_rev = kv2
        .get(format!("{p}b"), None)
        .await
        .ok()
        .and_then(|r| r.kvs().first().map(|k| k.mod_revision()))
        .unwrap_or(0);
    let mut ws2 = match check(
        "watch replay",
        c.watch(
            p,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(b_rev - 1),
            ),
        )
        .await,
        |_| (),
    )? {
        Some(ws) => ws,
        None => return Ok(()),
    };
    let mut n = 0;
    while n < 2 {
        match tokio::time::timeout(Duration::from_secs(10), ws2.message()).await {
            Ok(Ok(Some(r))) => {
                for e in r.events() {
                    n += 1;
                    println!(
                        "replay {:?} {}",
                        e.event_type() == EventType::Put,
                        e.kv().map(kv).unwrap_or_default()
                    );
                }
            }
            other => {
                println!(
                    "replay ended: {}",
                    if other.is_err() {
                        "timeout".to_string()
                    } else {
                        "stream closed".to_string()
                    }
                );
                break;
            }
        }
    }
    Ok(())
}

async fn lease(c: &mut Client, p: &str) -> Step {
    let g = match check("lease grant", c.lease_grant(60, None).await, |r| {
        println!(
            "lease grant header {} ttl={} id_nonzero={} error={:?}",
            hdr(r.header()),
            r.ttl(),
            r.id() != 0,
            r.error()
        )
    })? {
        Some(g) => g,
        None => return Ok(()),
    };
    let id = g.id();
    check(
        "put with lease",
        c.put(format!("{p}k"), "v", Some(PutOptions::new().with_lease(id)))
            .await,
        show_put("put with lease"),
    )?;
    check("get key lease", c.get(format!("{p}k"), None).await, |r| {
        println!(
            "key lease matches {}",
            r.kvs().first().map(|k| k.lease() == id).unwrap_or(false)
        )
    })?;
    check(
        "time_to_live",
        c.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await,
        |r| {
            println!(
                "time_to_live granted={} ttl_ok={} keys={:?}",
                r.granted_ttl(),
                r.ttl() > 0 && r.ttl() <= 60,
                r.keys()
                    .iter()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect::<Vec<_>>()
            )
        },
    )?;
    check("leases", c.leases().await, |r| {
        println!(
            "leases contains granted {}",
            r.leases().iter().any(|l| l.id() == id)
        )
    })?;
    if let Some((mut keeper, mut stream)) =
        check("keep_alive", c.lease_keep_alive(id).await, |_| ())?
    {
        check("keep_alive send", keeper.keep_alive().await, |_| ())?;
        let m = stream.message().await;
        check("keep_alive recv", m, |r| {
            println!(
                "keep_alive ttl={}",
                r.as_ref().map(|r| r.ttl()).unwrap_or(-99)
            )
        })?;
    }
    check("revoke", c.lease_revoke(id).await, |r| {
        println!("revoke header {}", hdr(r.header()))
    })?;
    check(
        "get after revoke",
        c.get(p, Some(GetOptions::new().with_prefix())).await,
        show_get("get after revoke"),
    )?;
    check("revoke again", c.lease_revoke(id).await, |r| {
        println!("revoke again header {}", hdr(r.header()))
    })?;
    check(
        "time_to_live after revoke",
        c.lease_time_to_live(id, None).await,
        |r| {
            println!(
                "time_to_live after revoke ttl={} granted={}",
                r.ttl(),
                r.granted_ttl()
            )
        },
    )?;
    Ok(())
}

/// A client of `ep` logged in as `user` (etcd-client's `with_user`: Authenticate on
/// connect, then the token on every call).
async fn login(ep: &str, user: &str, password: &str) -> Result<Client, Error> {
    let options = ConnectOptions::new()
        .with_user(user, password)
        .with_timeout(Duration::from_secs(10));
    Client::connect([ep], Some(options)).await
}

/// Prints `LABEL ok` for a call whose answer shows nothing else.
fn ok<T>(label: &str) -> impl FnOnce(&T) + '_ {
    move |_| println!("{label} ok")
}

/// Users, a role with a prefix permission, auth enable; clients with user and password.
async fn auth_user_password(c: &mut Client, p: &str, ep: &str) -> Step {
    let conf = format!("{}-conf", &p[..p.len() - 1]);
    check(
        "enable without root",
        c.auth_enable().await,
        ok("enable without root"),
    )?;
    check(
        "user add root",
        c.user_add("root", "rootpw", None).await,
        ok("user add root"),
    )?;
    check(
        "grant root",
        c.user_grant_role("root", "root").await,
        ok("grant root"),
    )?;
    check("role add", c.role_add("rsrole").await, ok("role add"))?;
    check(
        "grant prefix",
        c.role_grant_permission("rsrole", Permission::read_write(p).with_prefix())
            .await,
        ok("grant prefix"),
    )?;
    check(
        "grant read key",
        c.role_grant_permission("rsrole", Permission::read(conf.as_str()))
            .await,
        ok("grant read key"),
    )?;
    check("role get", c.role_get("rsrole").await, |r| {
        for perm in r.permissions() {
            println!(
                "role get perm type={:?} key={} range_end={}",
                perm.get_type(),
                s(perm.key()),
                s(perm.range_end())
            );
        }
    })?;
    check(
        "user add",
        c.user_add("rsuser", "rspw", None).await,
        ok("user add"),
    )?;
    check(
        "grant role",
        c.user_grant_role("rsuser", "rsrole").await,
        ok("grant role"),
    )?;
    check("enable", c.auth_enable().await, ok("enable"))?;
    check("wrong password", login(ep, "rsuser", "wrong").await, |_| {
        println!("wrong password accepted")
    })?;
    check("unknown user", login(ep, "nobody", "pw").await, |_| {
        println!("unknown user accepted")
    })?;
    if let Some(mut u) = check("login", login(ep, "rsuser", "rspw").await, ok("login"))? {
        let inside = format!("{p}k");
        check(
            "put own prefix",
            u.put(inside.as_str(), "v", None).await,
            show_put("put own prefix"),
        )?;
        check(
            "get own prefix",
            u.get(p, Some(GetOptions::new().with_prefix())).await,
            show_get("get own prefix"),
        )?;
        check(
            "put outside",
            u.put("rs/elsewhere", "v", None).await,
            show_put("put outside"),
        )?;
        check(
            "get outside",
            u.get("rs/elsewhere", None).await,
            show_get("get outside"),
        )?;
        check(
            "get read-only key",
            u.get(conf.as_str(), None).await,
            show_get("get read-only key"),
        )?;
        check(
            "put read-only key",
            u.put(conf.as_str(), "x", None).await,
            show_put("put read-only key"),
        )?;
        check(
            "delete prefix wider than own",
            u.delete("rs/", Some(DeleteOptions::new().with_prefix()))
                .await,
            show_del("delete prefix wider than own"),
        )?;
        let txn = Txn::new()
            .when([Compare::value(inside.as_str(), CompareOp::Equal, "v")])
            .and_then([TxnOp::get("rs/elsewhere", None)]);
        check("txn reading outside", u.txn(txn).await, |r| {
            println!("txn reading outside");
            print_txn("  ", r)
        })?;
        check("user list as user", u.user_list().await, |r| {
            println!("user list {:?}", r.users())
        })?;
    }
    check(
        "anonymous put",
        c.put(format!("{p}anon"), "v", None).await,
        show_put("anonymous put"),
    )?;
    if let Some(mut root) = check(
        "root login",
        login(ep, "root", "rootpw").await,
        ok("root login"),
    )? {
        check("user list as root", root.user_list().await, |r| {
            println!("user list {:?}", r.users())
        })?;
        check(
            "delete root while enabled",
            root.user_delete("root").await,
            ok("delete root while enabled"),
        )?;
        check("disable", root.auth_disable().await, ok("disable"))?;
    }
    check(
        "delete keys",
        c.delete(p, Some(DeleteOptions::new().with_prefix())).await,
        show_del("delete keys"),
    )?;
    check(
        "user delete",
        c.user_delete("rsuser").await,
        ok("user delete"),
    )?;
    check(
        "root delete",
        c.user_delete("root").await,
        ok("root delete"),
    )?;
    check(
        "role delete",
        c.role_delete("rsrole").await,
        ok("role delete"),
    )?;
    check(
        "root role delete",
        c.role_delete("root").await,
        ok("root role delete"),
    )?;
    Ok(())
}

/// A client of `https://ep` with `ca` and, if given, a client certificate (PEM file names in
/// `$CONFORMANCE_PKI`).
async fn tls_client(ep: &str, ca: &str, identity: Option<(&str, &str)>) -> Result<Client, String> {
    let pki = std::env::var("CONFORMANCE_PKI").map_err(|_| "CONFORMANCE_PKI is not set")?;
    let read = |name: &str| {
        std::fs::read(format!("{pki}/{name}")).map_err(|e| format!("{pki}/{name}: {e}"))
    };
    let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca)?));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    let options = ConnectOptions::new()
        .with_tls(tls)
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(5));
    Client::connect([format!("https://{ep}")], Some(options))
        .await
        .map_err(|e| e.to_string())
}

/// TLS (run with `CONFORMANCE_PKI` set, against servers with --client-cert-auth): a CA and a
/// client certificate; then no client certificate, another CA's client certificate, a CA that
/// did not sign the server: each must fail (connecting or on the first call). The TLS alert
/// texts are the TLS libraries', so a refusal prints only that it was refused.
async fn tls_client_cert(p: &str, ep: &str) -> Step {
    let mut good = match tls_client(ep, "ca.pem", Some(("client.pem", "client-key.pem"))).await {
        Ok(c) => c,
        Err(e) => {
            println!("connect error {e}");
            return Ok(());
        }
    };
    let key = format!("{p}k");
    check(
        "put",
        good.put(key.as_str(), "v1", None).await,
        show_put("put"),
    )?;
    check("get", good.get(key.as_str(), None).await, show_get("get"))?;
    for (label, ca, identity) in [
        ("no client certificate", "ca.pem", None),
        (
            "other CA client certificate",
            "ca.pem",
            Some(("other.pem", "other-key.pem")),
        ),
        (
            "CA that did not sign the server",
            "other-ca.pem",
            Some(("client.pem", "client-key.pem")),
        ),
    ] {
        let answer = match tls_client(ep, ca, identity).await {
            Err(_) => "refused".to_string(),
            Ok(mut c) => match c.get(key.as_str(), None).await {
                Ok(_) => "answered".to_string(),
                Err(_) => "refused".to_string(),
            },
        };
        println!("{label} {answer}");
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        for s in SCENARIOS {
            println!("{s}");
        }
        return;
    }
    let (ep, name) = (&args[0], args[1].as_str());
    let p = format!("rs/{name}/");
    if name == "tls_client_cert" {
        let _ = tls_client_cert(&p, ep).await;
        return;
    }
    let mut c = match Client::connect([ep.as_str()], None).await {
        Ok(c) => c,
        Err(e) => {
            println!("connect error {e}");
            std::process::exit(1);
        }
    };
    let _ = match name {
        "kv_put_get" => kv_put_get(&mut c, &p).await,
        "kv_range_options" => kv_range_options(&mut c, &p).await,
        "kv_revisions" => kv_revisions(&mut c, &p).await,
        "kv_delete" => kv_delete(&mut c, &p).await,
        "txn" => txn(&mut c, &p).await,
        "compaction" => compaction(&mut c, &p).await,
        "errors" => errors(&mut c, &p).await,
        "cluster" => cluster(&mut c, &p).await,
        "maintenance" => maintenance(&mut c, &p).await,
        "watch" => watch(&mut c, &p).await,
        "lease" => lease(&mut c, &p).await,
        "auth_user_password" => auth_user_password(&mut c, &p, ep).await,
        other => {
            eprintln!("unknown scenario {other}");
            std::process::exit(2);
        }
    };
}
