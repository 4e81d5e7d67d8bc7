//! The robustness run: seeded random traffic from several clients and watchers while random
//! faults strike one at a time; afterwards every fault is undone and the run is judged:
//!
//! - the history is linearizable against member 0's log ([`crate::linearizability`]);
//! - every watch saw every event exactly once, in order ([`crate::watch_check`]);
//! - every member holds the same log (all events from revision 1 up to a final sentinel
//!   write), the same range at that revision, and, where the server implements it, the same
//!   `HashKV` at that revision.

mod convert;
pub mod faults;
pub mod rng;
mod traffic;
mod watchers;

use std::fmt;
use std::time::Duration;

use oxcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_proto::etcdserverpb::{HashKvRequest, RangeRequest};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cluster::{channel_to, Cluster, MemberState};
use crate::history::{KeyRange, Kv, Log, Operation, Outcome, Request, Response, Rev};
use crate::model::same_changes;
pub use faults::{FaultKind, FaultRecord};
use rng::Rng;
use traffic::{TrafficPlan, PREFIX};

/// What a run does.
#[derive(Clone, Debug)]
pub struct RobustnessConfig {
    /// Seed of traffic and faults.
    pub seed: u64,
    /// How long traffic and faults last.
    pub duration: Duration,
    /// Concurrent traffic clients.
    pub clients: usize,
    /// Concurrent watchers (of the whole traffic prefix, starting at staggered revisions).
    pub watchers: usize,
    /// Number of distinct keys.
    pub keys: u64,
    /// Timeout of each request.
    pub request_timeout: Duration,
    /// Mean pause between faults.
    pub fault_interval: Duration,
    /// Shortest and longest time a fault is held.
    pub fault_hold: (Duration, Duration),
    /// Kinds to choose from (those needing peer links are skipped without a fault network).
    pub faults: Vec<FaultKind>,
    /// Send ranges as serializable: served from the member's own data, so not linearizable
    /// under faults. Only for showing that a run catches stale reads.
    pub serializable_reads: bool,
    /// Where to write the history and the log (`history.txt`, `log.txt`), if anywhere.
    pub dump_to: Option<std::path::PathBuf>,
}

impl RobustnessConfig {
    /// The short form CI runs: 15 s, 6 clients, 3 watchers, 10 keys, every fault kind.
    pub fn ci(seed: u64) -> RobustnessConfig {
        RobustnessConfig {
            seed,
            duration: Duration::from_secs(15),
            clients: 6,
            watchers: 3,
            keys: 10,
            request_timeout: Duration::from_secs(2),
            fault_interval: Duration::from_millis(1500),
            fault_hold: (Duration::from_millis(300), Duration::from_millis(2500)),
            faults: FaultKind::ALL.to_vec(),
            serializable_reads: false,
            dump_to: None,
        }
    }
}

/// Figures and verdicts of a run.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Members of the cluster.
    pub members: usize,
    /// Operations recorded (including the final sentinel write).
    pub operations: usize,
    /// Answered operations.
    pub acknowledged: usize,
    /// Operations refused (or reads that failed).
    pub failed: usize,
    /// Writes with a lost answer that happened / did not happen.
    pub indeterminate: (usize, usize),
    /// Revisions explained by lease expiry.
    pub lease_expiries: usize,
    /// The faults that struck.
    pub faults: Vec<FaultRecord>,
    /// The revision of the final sentinel write (every check runs up to it).
    pub final_revision: Rev,
    /// Watches and the events they delivered.
    pub watches: (usize, usize),
    /// How member states were compared.
    pub member_comparison: String,
    /// Everything that failed a check; empty when the run passed.
    pub problems: Vec<String>,
}

impl RunReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} on {} member(s): {}",
            self.seed,
            self.members,
            if self.passed() { "PASS" } else { "FAIL" }
        )?;
        writeln!(
            f,
            "operations {} (acknowledged {}, failed {}, lost answers {} applied / {} not), lease expiries {}, final revision {}",
            self.operations,
            self.acknowledged,
            self.failed,
            self.indeterminate.0,
            self.indeterminate.1,
            self.lease_expiries,
            self.final_revision
        )?;
        writeln!(
            f,
            "watches {} delivered {} events",
            self.watches.0, self.watches.1
        )?;
        let kinds: Vec<String> = self
            .faults
            .iter()
            .map(|r| format!("{}@m{}({}ms)", r.kind.name(), r.member, r.held.as_millis()))
            .collect();
        writeln!(f, "faults {}: {}", self.faults.len(), kinds.join(" "))?;
        writeln!(f, "members: {}", self.member_comparison)?;
        for p in &self.problems {
            writeln!(f, "PROBLEM: {p}")?;
        }
        Ok(())
    }
}

/// Longest wait for the cluster to settle, the sentinel, or a member's log.
const SETTLE: Duration = Duration::from_secs(30);
/// At most this many violations of each checker are reported.
const SHOWN: usize = 10;

/// Runs traffic and faults against `cluster` and judges the outcome.
pub async fn run(cluster: &mut Cluster, cfg: &RobustnessConfig) -> RunReport {
    let endpoints = cluster.endpoints();
    let start = Instant::now();
    let mut report = RunReport {
        seed: cfg.seed,
        members: endpoints.len(),
        ..RunReport::default()
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let (target_tx, target_rx) = watch::channel(None);
    let plan = TrafficPlan {
        endpoints: endpoints.clone(),
        keys: cfg.keys.max(1),
        timeout: cfg.request_timeout,
        seed: cfg.seed,
        start,
        serializable_reads: cfg.serializable_reads,
    };
    let clients: Vec<_> = (0..cfg.clients)
        .map(|id| tokio::spawn(traffic::run_client(id, plan.clone(), stop_rx.clone())))
        .collect();
    let watchers: Vec<_> = (0..cfg.watchers)
        .map(|w| {
            let from = 1 + 5 * w as Rev;
            tokio::spawn(watchers::run_watcher(
                w,
                endpoints.clone(),
                KeyRange::prefix(PREFIX),
                from,
                target_rx.clone(),
            ))
        })
        .collect();

    report.faults = strike_faults(cluster, cfg, start).await;
    settle(cluster, &mut report).await;
    let _ = stop_tx.send(true);
    let mut history: Vec<Operation> = Vec::new();
    for c in clients {
        match c.await {
            Ok(ops) => history.extend(ops),
            Err(e) => report.problems.push(format!("traffic client failed: {e}")),
        }
    }
    let Some(sentinel) = write_sentinel(cluster, &plan, &mut history).await else {
        report
            .problems
            .push("the final sentinel write never succeeded".into());
        return report;
    };
    report.final_revision = sentinel;
    let _ = target_tx.send(Some(sentinel));
    let mut records = Vec::new();
    for w in watchers {
        match w.await {
            Ok(r) => records.push(r),
            Err(e) => report.problems.push(format!("watcher failed: {e}")),
        }
    }
    report.watches = (records.len(), records.iter().map(|r| r.events.len()).sum());

    let logs = compare_members(&endpoints, sentinel, &mut report).await;
    let Some(log) = logs else {
        return report;
    };
    match crate::linearizability::check(&history, &log) {
        Ok(r) => {
            report.operations = r.operations;
            report.acknowledged = r.acknowledged;
            report.failed = r.failed;
            report.indeterminate = (r.indeterminate_applied, r.indeterminate_not_applied);
            report.lease_expiries = r.lease_expiries;
        }
        Err(violations) => {
            report.operations = history.len();
            report.acknowledged = history
                .iter()
                .filter(|o| matches!(o.outcome, Outcome::Ok(_)))
                .count();
            report.problems.push(format!(
                "history NOT linearizable ({} violations)",
                violations.len()
            ));
            for v in violations.iter().take(SHOWN) {
                report.problems.push(v.to_string());
                for i in involved(v) {
                    if let Some(op) = history.get(i) {
                        report
                            .problems
                            .push(format!("  op {i}: {}", describe_op(op)));
                    }
                }
            }
        }
    }
    if let Some(dir) = &cfg.dump_to {
        if let Err(e) = dump(dir, &history, &log) {
            report
                .problems
                .push(format!("dump to {}: {e}", dir.display()));
        }
    }
    if let Err(violations) = crate::watch_check::check_watches(&records, &log) {
        report
            .problems
            .push(format!("watches wrong ({} violations)", violations.len()));
        report
            .problems
            .extend(violations.iter().take(SHOWN).map(|v| v.to_string()));
    }
    report
}

/// The history indexes a violation names.
fn involved(v: &crate::linearizability::Violation) -> Vec<usize> {
    use crate::linearizability::Violation as V;
    match v {
        V::WrongAnswer { op, .. } => vec![*op],
        V::DuplicateRevision { first, second, .. } => vec![*first, *second],
        V::RealTime { earlier, later, .. } => vec![*earlier, *later],
        V::BadLog(_) | V::Phantom { .. } => Vec::new(),
    }
}

/// One operation in a line: client, times, request and outcome, keys and values as text.
fn describe_op(op: &Operation) -> String {
    use crate::model::show;
    let request = match &op.request {
        Request::Put { key, value, lease } => {
            format!("put {}={} lease {lease:x}", show(key), show(value))
        }
        Request::Range(r) => format!("range {}..{}", show(&r.key), show(&r.range_end)),
        Request::Delete(r) => format!("delete {}..{}", show(&r.key), show(&r.range_end)),
        Request::Txn { compare, .. } => {
            let keys: Vec<String> = compare
                .iter()
                .map(|c| format!("{} {:?} {:?}", show(&c.key), c.op, c.target))
                .collect();
            format!("txn if {}", keys.join(" and "))
        }
        Request::LeaseGrant { ttl } => format!("lease grant ttl {ttl}"),
        Request::LeaseRevoke { id } => format!("lease revoke {id:x}"),
    };
    let outcome = match &op.outcome {
        Outcome::Ok(Response::Range { revision, kvs }) => {
            let kvs: Vec<String> = kvs
                .iter()
                .map(|kv| format!("{}={}@{}", show(&kv.key), show(&kv.value), kv.mod_revision))
                .collect();
            format!("ok at revision {revision}: [{}]", kvs.join(", "))
        }
        Outcome::Ok(resp) => format!("ok at revision {}", resp.revision()),
        Outcome::Failed(why) => format!("failed: {why}"),
        Outcome::Unknown(why) => format!("answer lost: {why}"),
    };
    format!(
        "client {} {:?}..{:?} {request} -> {outcome}",
        op.client, op.call, op.ret
    )
}

/// Writes the history and the log, one item a line, for a post-mortem.
fn dump(dir: &std::path::Path, history: &[Operation], log: &Log) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let mut h = std::io::BufWriter::new(std::fs::File::create(dir.join("history.txt"))?);
    for (i, op) in history.iter().enumerate() {
        writeln!(h, "{i} {op:?}")?;
    }
    let mut l = std::io::BufWriter::new(std::fs::File::create(dir.join("log.txt"))?);
    for (rev, events) in &log.revisions {
        writeln!(l, "{rev} {events:?}")?;
    }
    Ok(())
}

/// Strikes faults one at a time until the run's duration is over.
async fn strike_faults(
    cluster: &mut Cluster,
    cfg: &RobustnessConfig,
    start: Instant,
) -> Vec<FaultRecord> {
    let mut rng = Rng::new(cfg.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xFA17);
    let size = cluster.members().len();
    let kinds: Vec<FaultKind> = cfg
        .faults
        .iter()
        .copied()
        .filter(|k| !k.needs_links() || (cluster.net().is_some() && size > 1))
        .collect();
    let mut records = Vec::new();
    loop {
        let pause = cfg.fault_interval.mul_f64(0.5 + rng.unit());
        if start.elapsed() + pause >= cfg.duration || kinds.is_empty() {
            tokio::time::sleep(cfg.duration.saturating_sub(start.elapsed())).await;
            return records;
        }
        tokio::time::sleep(pause).await;
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        let random_member = rng.below(size as u64) as usize;
        let member = if kind.targets_leader() {
            cluster.leader().await.unwrap_or(random_member)
        } else {
            random_member
        };
        let (lo, hi) = cfg.fault_hold;
        let hold = if kind == FaultKind::Restart {
            Duration::ZERO
        } else {
            lo + (hi.saturating_sub(lo)).mul_f64(rng.unit())
        };
        let at = start.elapsed();
        faults::strike(cluster, kind, member, rng.unit());
        tokio::time::sleep(hold).await;
        if let Err(e) = faults::undo(cluster, kind, member) {
            eprintln!("robustness: undoing {} on m{member}: {e}", kind.name());
        }
        records.push(FaultRecord {
            at,
            kind,
            member,
            held: hold,
        });
        // One fault at a time: let the cluster recover before the next.
        let _ = cluster.wait_ready_within(Duration::from_secs(10)).await;
    }
}

/// Undoes anything left and waits for a leader everyone agrees on.
async fn settle(cluster: &mut Cluster, report: &mut RunReport) {
    if let Some(net) = cluster.net() {
        net.heal();
    }
    for i in 0..cluster.members().len() {
        match cluster.members()[i].state() {
            MemberState::Stopped => cluster.resume(i),
            MemberState::Down => {
                if let Err(e) = cluster.start_member(i) {
                    report.problems.push(format!("restarting m{i}: {e}"));
                }
            }
            MemberState::Running => {}
        }
    }
    if let Err(e) = cluster.wait_ready_within(SETTLE).await {
        report
            .problems
            .push(format!("cluster did not settle after the faults: {e}"));
    }
}

/// Writes the sentinel key (recorded in the history) until it is acknowledged.
async fn write_sentinel(
    cluster: &mut Cluster,
    plan: &TrafficPlan,
    history: &mut Vec<Operation>,
) -> Option<Rev> {
    let key = format!("{PREFIX}~sentinel").into_bytes();
    let deadline = Instant::now() + SETTLE;
    let client = history.iter().map(|o| o.client + 1).max().unwrap_or(0);
    let mut attempt = 0;
    while Instant::now() < deadline {
        attempt += 1;
        let target = cluster
            .leader()
            .await
            .unwrap_or(attempt % plan.endpoints.len());
        let request = Request::Put {
            key: key.clone(),
            value: format!("sentinel-{attempt}").into_bytes(),
            lease: 0,
        };
        let call = plan.start.elapsed();
        let mut req = tonic::Request::new(convert::put(
            &key,
            format!("sentinel-{attempt}").as_bytes(),
            0,
        ));
        req.set_timeout(plan.timeout);
        let result = cluster.kv(target).put(req).await;
        let ret = plan.start.elapsed();
        match result {
            Ok(resp) => {
                let revision = resp.into_inner().header.map(|h| h.revision).unwrap_or(0);
                history.push(Operation {
                    client,
                    call,
                    ret,
                    request,
                    outcome: Outcome::Ok(Response::Put { revision }),
                });
                return Some(revision);
            }
            Err(status) => {
                history.push(Operation {
                    client,
                    call,
                    ret,
                    request,
                    outcome: Outcome::Unknown(status.message().to_string()),
                });
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    None
}

/// Fetches every member's log up to `until`, compares logs, ranges and HashKV across
/// members, and returns member 0's log.
async fn compare_members(endpoints: &[String], until: Rev, report: &mut RunReport) -> Option<Log> {
    let mut logs = Vec::new();
    for (i, e) in endpoints.iter().enumerate() {
        match watchers::member_events(e, until, SETTLE).await {
            Ok(events) => logs.push(Log::from_events(events)),
            Err(why) => {
                report.problems.push(format!("log of m{i}: {why}"));
                return None;
            }
        }
    }
    let first = logs.first()?.clone();
    for (i, log) in logs.iter().enumerate().skip(1) {
        if let Some(rev) = first_difference(&first, log) {
            report
                .problems
                .push(format!("m{i}'s log differs from m0's at revision {rev}"));
        }
    }
    let mut ranges: Vec<Vec<Kv>> = Vec::new();
    let mut hashes: Vec<Result<u32, tonic::Status>> = Vec::new();
    for e in endpoints {
        ranges.push(range_at(e, until).await.unwrap_or_default());
        let mut m = MaintenanceClient::new(channel_to(e));
        hashes.push(
            m.hash_kv(HashKvRequest { revision: until })
                .await
                .map(|r| r.into_inner().hash),
        );
    }
    if ranges.iter().any(|r| r != &ranges[0]) {
        report
            .problems
            .push(format!("members' keys at revision {until} differ"));
    }
    let hash_note = if hashes.iter().all(Result::is_ok) {
        let values: Vec<u32> = hashes
            .iter()
            .filter_map(|h| h.as_ref().ok().copied())
            .collect();
        if values.iter().any(|h| *h != values[0]) {
            report
                .problems
                .push(format!("HashKV at revision {until} differs: {values:08x?}"));
        }
        format!("HashKV at revision {until} {values:08x?}")
    } else {
        let why = hashes
            .iter()
            .find_map(|h| h.as_ref().err())
            .map(|s| format!("{:?}", s.code()))
            .unwrap_or_default();
        format!("HashKV unavailable ({why}); compared full ranges at the revision instead")
    };
    report.member_comparison = format!(
        "{} logs through revision {until} {}, {} keys each; {hash_note}",
        logs.len(),
        if report.problems.is_empty() {
            "equal"
        } else {
            "compared"
        },
        ranges[0].len()
    );
    Some(first)
}

/// The first revision at which two logs differ.
fn first_difference(a: &Log, b: &Log) -> Option<Rev> {
    let revs: std::collections::BTreeSet<Rev> = a
        .revisions
        .keys()
        .chain(b.revisions.keys())
        .copied()
        .collect();
    revs.into_iter()
        .find(|r| match (a.revisions.get(r), b.revisions.get(r)) {
            (Some(x), Some(y)) => !same_changes(x, y),
            _ => true,
        })
}

/// Every key at `rev`, from the member's own data (serializable).
async fn range_at(endpoint: &str, rev: Rev) -> Result<Vec<Kv>, tonic::Status> {
    let mut kv = oxcd_proto::etcdserverpb::kv_client::KvClient::new(channel_to(endpoint));
    let req = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision: rev,
        serializable: true,
        ..Default::default()
    };
    Ok(kv
        .range(req)
        .await?
        .into_inner()
        .kvs
        .into_iter()
        .map(convert::kv)
        .collect())
}
