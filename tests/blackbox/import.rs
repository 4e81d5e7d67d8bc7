//! Moving in from etcd: data written to a real etcd 3.4 (Debian's `etcd-server`), saved
//! with `etcdctl snapshot save` (or read from its stopped data dir), imported with
//! `oxcd import`, and compared through `etcdctl` against the same etcd (keys, leases and
//! history; users, roles, permissions and enabled auth); and `etcdctl make-mirror` /
//! `oxcdctl make-mirror` from a live etcd into oxcd. Skipped, saying so, when etcd is not
//! installed (CI installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{free_port, oxcd_bin, Server};

fn have(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn etcd_installed(test: &str) -> bool {
    let ok = have("etcd") && have("etcdctl");
    if !ok {
        eprintln!(
            "SKIP {test}: etcd/etcdctl not installed (apt-get install etcd-server etcd-client)"
        );
    }
    ok
}

/// A running etcd 3.4.
struct Etcd {
    child: Child,
    endpoint: String,
    data_dir: PathBuf,
}

impl Etcd {
    fn start(data_dir: &Path) -> Etcd {
        let (port, peer) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .arg("--name=e1")
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=e1={peer}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcd");
        let e = Etcd {
            child,
            endpoint: client,
            data_dir: data_dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ctl_try(&e.endpoint, &["endpoint", "health"]).is_err() {
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
        e
    }

    fn stop(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.data_dir.clone()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs etcdctl against `endpoint`; its stdout, or its stderr as the error.
fn ctl_try(endpoint: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .output()
        .expect("run etcdctl");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn ctl(endpoint: &str, args: &[&str]) -> String {
    ctl_try(endpoint, args).unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"))
}

/// `get "" --prefix -w json` (at `rev` if given) with the header's member-specific fields
/// (cluster and member ids, raft term) removed; revisions are kept.
fn dump(endpoint: &str, rev: Option<i64>) -> serde_json::Value {
    let mut args = vec!["get", "", "--prefix", "-w", "json"];
    let r;
    if let Some(rev) = rev {
        r = format!("--rev={rev}");
        args.push(&r);
    }
    let mut v: serde_json::Value = serde_json::from_str(&ctl(endpoint, &args)).unwrap();
    let header = v["header"].as_object_mut().unwrap();
    for k in ["cluster_id", "member_id", "raft_term"] {
        header.remove(k);
    }
    v
}

/// `lease list`, its lines sorted (etcd lists leases in map order).
fn leases(endpoint: &str) -> Vec<String> {
    let mut lines: Vec<String> = ctl(endpoint, &["lease", "list"])
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// The granted TTL of lease `id` (hex), from `lease timetolive -w json`.
fn granted_ttl(endpoint: &str, id: &str) -> i64 {
    let v: serde_json::Value =
        serde_json::from_str(&ctl(endpoint, &["lease", "timetolive", id, "-w", "json"])).unwrap();
    v["granted-ttl"].as_i64().unwrap()
}

fn lease_id(grant_output: &str) -> String {
    // "lease 694d7a6b1c2e0f01 granted with TTL(600s)"
    grant_output
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string()
}

fn oxcd_import(args: &[&str]) -> (bool, String) {
    let out = Command::new(oxcd_bin())
        .arg("import")
        .args(args)
        .output()
        .expect("run oxcd import");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// What the etcd side looked like, to compare the import against.
struct Reference {
    now: serde_json::Value,
    past: serde_json::Value,
    past_rev: i64,
    compacted: i64,
    leases: Vec<String>,
    long_lease: String,
}

/// Writes the scenario to `etcd` and records what etcdctl shows.
fn write_scenario(e: &Etcd) -> Reference {
    let ep = &e.endpoint;
    let long_lease = lease_id(&ctl(ep, &["lease", "grant", "3600"]));
    let short_lease = lease_id(&ctl(ep, &["lease", "grant", "600"]));
    let _empty_lease = lease_id(&ctl(ep, &["lease", "grant", "900"]));
    for i in 0..20 {
        ctl(ep, &["put", &format!("key/{i:02}"), &format!("v{i}")]);
    }
    ctl(
        ep,
        &["put", "leased/a", "la", &format!("--lease={long_lease}")],
    );
    ctl(
        ep,
        &["put", "leased/b", "lb", &format!("--lease={short_lease}")],
    );
    ctl(ep, &["put", "key/03", "overwritten"]);
    ctl(ep, &["put", "key/03", "twice"]);
    ctl(ep, &["del", "key/05"]);
    ctl(ep, &["del", "key/1", "--prefix"]);
    ctl(ep, &["put", "key/05", "recreated"]);
    let rev = |ep: &str| -> i64 {
        let v: serde_json::Value =
            serde_json::from_str(&ctl(ep, &["get", "nothing", "-w", "json"])).unwrap();
        v["header"]["revision"].as_i64().unwrap()
    };
    let compacted = rev(ep) - 3;
    ctl(ep, &["compact", &compacted.to_string()]);
    for i in 0..5 {
        ctl(ep, &["put", &format!("after/{i}"), &"x".repeat(5000)]);
    }
    let past_rev = rev(ep);
    ctl(ep, &["put", "key/00", "newest"]);
    ctl(ep, &["del", "after/4"]);
    // Users and roles (auth stays off, so both servers answer without credentials).
    ctl(ep, &["role", "add", "reader"]);
    ctl(
        ep,
        &[
            "role",
            "grant-permission",
            "reader",
            "read",
            "key/",
            "--prefix",
        ],
    );
    ctl(ep, &["user", "add", "alice:secret", "--interactive=false"]);
    ctl(ep, &["user", "grant-role", "alice", "reader"]);
    let now = dump(ep, None);
    // 10 keys left under key/, 2 leased, 4 after the compaction.
    assert_eq!(now["count"].as_i64(), Some(16), "{now}");
    assert!(now["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|kv| kv["lease"].as_i64() > Some(0)));
    Reference {
        now,
        past: dump(ep, Some(past_rev)),
        past_rev,
        compacted,
        leases: leases(ep),
        long_lease,
    }
}

/// Starts oxcd on the imported `dir` and checks it shows what etcd showed.
fn compare(dir: &Path, want: &Reference) {
    let oxcd = Server::start_with(dir, free_port(), free_port(), &[]);
    let ep = oxcd.endpoint();
    assert_eq!(
        dump(&ep, None),
        want.now,
        "current keys, revisions included"
    );
    assert_eq!(
        dump(&ep, Some(want.past_rev)),
        want.past,
        "history since the compaction"
    );
    let e = ctl_try(
        &ep,
        &["get", "key/00", &format!("--rev={}", want.compacted - 1)],
    )
    .unwrap_err();
    assert!(e.contains("required revision has been compacted"), "{e}");
    assert_eq!(leases(&ep), want.leases);
    assert_eq!(granted_ttl(&ep, &want.long_lease), 3600);
    // The imported data takes writes at the next revision.
    let next = want.now["header"]["revision"].as_i64().unwrap() + 1;
    let put: serde_json::Value =
        serde_json::from_str(&ctl(&ep, &["put", "new", "v", "-w", "json"])).unwrap();
    assert_eq!(put["header"]["revision"].as_i64(), Some(next));
}

#[test]
fn etcd_snapshot_and_data_dir_import_into_oxcd() {
    if !etcd_installed("etcd_snapshot_and_data_dir_import_into_oxcd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(&tmp.path().join("etcd"));
    let want = write_scenario(&etcd);
    let snap = tmp.path().join("snap.db");
    ctl(
        &etcd.endpoint,
        &["snapshot", "save", snap.to_str().unwrap()],
    );

    // A running etcd's data dir is refused (its backend is locked).
    let (ok, out) = oxcd_import(&[
        "--from-etcd-data-dir",
        etcd.data_dir.to_str().unwrap(),
        "--data-dir",
        tmp.path().join("locked").to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("locked by a running etcd"), "{out}");
    assert!(!tmp.path().join("locked").exists());
    let etcd_dir = etcd.stop();

    // From the snapshot.
    let from_snap = tmp.path().join("from-snap");
    let (ok, out) = oxcd_import(&[
        "--from-etcd-snapshot",
        snap.to_str().unwrap(),
        "--data-dir",
        from_snap.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    eprintln!("oxcd import: {out}");
    assert!(out.contains("3 leases"), "{out}");
    assert!(out.contains("1 users, 1 roles"), "{out}");
    compare(&from_snap, &want);

    // From the stopped etcd's data dir.
    let from_dir = tmp.path().join("from-dir");
    let (ok, out) = oxcd_import(&[
        "--from-etcd-data-dir",
        etcd_dir.to_str().unwrap(),
        "--data-dir",
        from_dir.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    compare(&from_dir, &want);

    // Into a data dir that has a member: refused, nothing touched.
    let (ok, out) = oxcd_import(&[
        "--from-etcd-snapshot",
        snap.to_str().unwrap(),
        "--data-dir",
        from_snap.to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("exists already"), "{out}");
}

#[test]
fn damaged_snapshots_are_refused_and_leave_nothing() {
    if !etcd_installed("damaged_snapshots_are_refused_and_leave_nothing") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(&tmp.path().join("etcd"));
    for i in 0..50 {
        ctl(&etcd.endpoint, &["put", &format!("k{i}"), "v"]);
    }
    let snap = tmp.path().join("snap.db");
    ctl(
        &etcd.endpoint,
        &["snapshot", "save", snap.to_str().unwrap()],
    );
    drop(etcd);
    let good = std::fs::read(&snap).unwrap();
    let target = tmp.path().join("target");
    let try_import = |bytes: &[u8], extra: &[&str]| {
        let f = tmp.path().join("bad.db");
        std::fs::write(&f, bytes).unwrap();
        let mut args = vec![
            "--from-etcd-snapshot",
            f.to_str().unwrap(),
            "--data-dir",
            target.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (ok, out) = oxcd_import(&args);
        (ok, out)
    };

    // A flipped byte in the middle: the sha256 trailer does not match.
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let (ok, out) = try_import(&flipped, &[]);
    assert!(!ok && out.contains("expected sha256"), "{out}");
    assert!(!target.exists(), "nothing half-imported");

    // Truncated: no trailer any more.
    let (ok, out) = try_import(&good[..good.len() - 4000], &[]);
    assert!(
        !ok && out.contains("snapshot missing hash but --skip-hash-check=false"),
        "{out}"
    );
    // ... and with the check skipped, the bbolt reader finds it truncated.
    let (ok, out) = try_import(&good[..good.len() - 32 - 8192], &["--skip-hash-check"]);
    assert!(!ok && out.contains("truncated"), "{out}");
    assert!(!target.exists());

    // Not a snapshot at all.
    let (ok, out) = try_import(&vec![7u8; 512 * 8 + 32], &["--skip-hash-check"]);
    assert!(!ok && out.contains("not a bbolt database"), "{out}");
    assert!(!target.exists());

    // The good one imports.
    let (ok, out) = try_import(&good, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("50 keys live"), "{out}");
}

#[test]
fn make_mirror_copies_a_live_etcd_into_oxcd() {
    if !etcd_installed("make_mirror_copies_a_live_etcd_into_oxcd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(&tmp.path().join("etcd"));
    let oxcd = Server::start(&tmp.path().join("oxcd"));
    for i in 0..30 {
        ctl(&etcd.endpoint, &["put", &format!("m/{i:02}"), "before"]);
    }
    let mut mirror = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoint))
        .args(["make-mirror", "--prefix=m/", &oxcd.endpoint()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn make-mirror");
    // Writes while the mirror runs: overwrites, deletes and new keys.
    for i in 0..10 {
        ctl(&etcd.endpoint, &["put", &format!("m/{i:02}"), "during"]);
    }
    ctl(&etcd.endpoint, &["del", "m/2", "--prefix"]);
    ctl(&etcd.endpoint, &["put", "m/new", "last"]);
    ctl(&etcd.endpoint, &["put", "other", "not mirrored"]);
    let want = pairs(&etcd.endpoint, "m/");
    assert_eq!(want.len(), 21);
    converge("etcdctl make-mirror", &want, || {
        pairs(&oxcd.endpoint(), "m/")
    });
    assert_eq!(ctl(&oxcd.endpoint(), &["get", "other"]), "");
    let _ = mirror.kill();
    let _ = mirror.wait();
}

/// Runs etcdctl as `user` (`name:password`, or none); its stdout, or the last line of its
/// stderr as the error (etcdctl 3.4 logs client retries as JSON lines with timestamps
/// before its `Error: ...` line).
fn ctl_as(endpoint: &str, user: Option<&str>, args: &[&str]) -> Result<String, String> {
    let mut all: Vec<String> = user.map(|u| format!("--user={u}")).into_iter().collect();
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    ctl_try(endpoint, &all).map_err(|e| e.lines().last().unwrap_or_default().to_string())
}

/// The commands whose answers must be the same on etcd and on the imported oxcd: the user
/// and role listings and records (as root), and what each user may and may not do.
const AUTH_CHECKS: &[(Option<&str>, &[&str])] = &[
    (Some("root:rootpw"), &["user", "list"]),
    (Some("root:rootpw"), &["role", "list"]),
    (Some("root:rootpw"), &["user", "get", "root"]),
    (Some("root:rootpw"), &["user", "get", "alice"]),
    (Some("root:rootpw"), &["user", "get", "bob"]),
    (Some("root:rootpw"), &["user", "get", "--detail", "bob"]),
    (Some("root:rootpw"), &["role", "get", "reader"]),
    (Some("root:rootpw"), &["role", "get", "writer"]),
    (Some("root:rootpw"), &["role", "get", "empty"]),
    (Some("root:rootpw"), &["get", "", "--prefix", "--keys-only"]),
    // Auth is on: no credentials, no answer.
    (None, &["get", "key/a"]),
    (None, &["user", "list"]),
    // alice reads key/ and nothing else, and writes nothing.
    (Some("alice:secret"), &["get", "key/", "--prefix"]),
    (Some("alice:secret"), &["get", "other"]),
    (Some("alice:secret"), &["put", "key/a", "x"]),
    (Some("alice:secret"), &["user", "list"]),
    (Some("alice:wrong"), &["get", "key/a"]),
    (Some("nobody:secret"), &["get", "key/a"]),
    // bob also writes `other` and everything from `w/` on, and reads none of the latter.
    (Some("bob:pw2"), &["get", "key/b"]),
    (Some("bob:pw2"), &["get", "other"]),
    (Some("bob:pw2"), &["get", "w/1"]),
    (Some("bob:pw2"), &["del", "key/a"]),
];

/// Writes keys, users, roles and permissions to `e`, enables auth, saves a snapshot into
/// `snap`, and records etcd's answers to [`AUTH_CHECKS`].
fn write_auth_scenario(e: &Etcd, snap: &Path) -> Vec<Result<String, String>> {
    let ep = &e.endpoint;
    for (k, v) in [("key/a", "1"), ("key/b", "2"), ("other", "3"), ("w/1", "4")] {
        ctl(ep, &["put", k, v]);
    }
    ctl(ep, &["role", "add", "reader"]);
    ctl(ep, &["role", "add", "writer"]);
    ctl(ep, &["role", "add", "empty"]);
    ctl(
        ep,
        &[
            "role",
            "grant-permission",
            "reader",
            "read",
            "key/",
            "--prefix",
        ],
    );
    ctl(
        ep,
        &["role", "grant-permission", "writer", "readwrite", "other"],
    );
    ctl(
        ep,
        &[
            "role",
            "grant-permission",
            "writer",
            "write",
            "w/",
            "--from-key",
        ],
    );
    ctl(ep, &["user", "add", "root:rootpw", "--interactive=false"]);
    ctl(ep, &["user", "grant-role", "root", "root"]);
    ctl(ep, &["user", "add", "alice:secret", "--interactive=false"]);
    ctl(ep, &["user", "grant-role", "alice", "reader"]);
    ctl(ep, &["user", "add", "bob:pw2", "--interactive=false"]);
    ctl(ep, &["user", "grant-role", "bob", "writer"]);
    ctl(ep, &["user", "grant-role", "bob", "reader"]);
    ctl(ep, &["user", "add", "carol:pw3", "--interactive=false"]);
    ctl(ep, &["auth", "enable"]);
    ctl_as(
        ep,
        Some("root:rootpw"),
        &["snapshot", "save", snap.to_str().unwrap()],
    )
    .unwrap();
    let answers: Vec<_> = AUTH_CHECKS
        .iter()
        .map(|(user, args)| ctl_as(ep, *user, args))
        .collect();
    // The scenario is what it means to be: alice is refused outside key/, bob inside w/.
    assert_eq!(
        answers[14],
        Err("Error: etcdserver: permission denied".to_string())
    );
    assert_eq!(
        answers[20],
        Err("Error: etcdserver: permission denied".to_string())
    );
    answers
}

/// Starts oxcd on the imported `dir`: it answers [`AUTH_CHECKS`] as etcd did, and the
/// imported users keep working (bob writes what he may).
fn compare_auth(dir: &Path, want: &[Result<String, String>]) {
    let oxcd = Server::start_with(dir, free_port(), free_port(), &[]);
    let ep = oxcd.endpoint();
    for ((user, args), want) in AUTH_CHECKS.iter().zip(want) {
        assert_eq!(
            &ctl_as(&ep, *user, args),
            want,
            "etcdctl --user={user:?} {args:?}"
        );
    }
    assert_eq!(
        ctl_as(&ep, Some("bob:pw2"), &["put", "w/2", "new"]),
        Ok("OK\n".to_string())
    );
    assert_eq!(
        ctl_as(
            &ep,
            Some("root:rootpw"),
            &["get", "w/2", "--print-value-only"]
        ),
        Ok("new\n".to_string())
    );
    // Root can turn auth off, after which anyone reads.
    ctl_as(&ep, Some("root:rootpw"), &["auth", "disable"]).unwrap();
    assert_eq!(
        ctl_as(&ep, None, &["get", "other", "--print-value-only"]),
        Ok("3\n".to_string())
    );
}

#[test]
fn etcd_users_roles_and_enabled_auth_import_into_oxcd() {
    if !etcd_installed("etcd_users_roles_and_enabled_auth_import_into_oxcd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(&tmp.path().join("etcd"));
    let snap = tmp.path().join("snap.db");
    let want = write_auth_scenario(&etcd, &snap);
    let etcd_dir = etcd.stop();

    let from_snap = tmp.path().join("from-snap");
    let (ok, out) = oxcd_import(&[
        "--from-etcd-snapshot",
        snap.to_str().unwrap(),
        "--data-dir",
        from_snap.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("4 users, 3 roles"), "{out}");
    assert!(out.contains("authentication was enabled in etcd"), "{out}");
    compare_auth(&from_snap, &want);

    let from_dir = tmp.path().join("from-dir");
    let (ok, out) = oxcd_import(&[
        "--from-etcd-data-dir",
        etcd_dir.to_str().unwrap(),
        "--data-dir",
        from_dir.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    compare_auth(&from_dir, &want);
}

/// Runs `etcdctl txn` (non-interactive) against `endpoint` with `script` on stdin.
fn ctl_txn(endpoint: &str, script: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("txn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl txn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `get <prefix> --prefix` as (key, value) pairs.
fn pairs(endpoint: &str, prefix: &str) -> Vec<(String, String)> {
    let out = ctl(endpoint, &["get", prefix, "--prefix"]);
    let lines: Vec<&str> = out.lines().collect();
    lines
        .chunks(2)
        .map(|c| (c[0].to_string(), c.get(1).unwrap_or(&"").to_string()))
        .collect()
}

/// Waits until `get(dest)` equals `want`.
fn converge(what: &str, want: &[(String, String)], get: impl Fn() -> Vec<(String, String)>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = get();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not converge: {got:?} != {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `oxcdctl make-mirror` as etcdctl 3.4's: a consistent copy of the prefix at one revision,
/// then every later change (one transaction per source revision, deletes included) under
/// `--dest-prefix` or at the root (`--no-dest-prefix`), and the count of keys mirrored
/// printed periodically (every second here, through the test knob).
#[test]
fn oxcdctl_make_mirror_copies_a_live_etcd_into_oxcd() {
    if !etcd_installed("oxcdctl_make_mirror_copies_a_live_etcd_into_oxcd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(&tmp.path().join("etcd"));
    let oxcd = Server::start(&tmp.path().join("oxcd"));
    let src = etcd.endpoint.clone();
    for i in 0..30 {
        ctl(&src, &["put", &format!("m/{i:02}"), "before"]);
    }
    ctl(&src, &["put", "other", "not mirrored"]);

    // The two prefix flags together: etcdctl's refusal, word for word.
    let both = [
        "make-mirror",
        "--dest-prefix=x/",
        "--no-dest-prefix",
        "--prefix=m/",
    ];
    let theirs = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={src}"))
        .args(both)
        .arg(oxcd.endpoint())
        .output()
        .unwrap();
    let ours = Command::new(crate::check::oxcdctl())
        .arg(format!("--endpoints={src}"))
        .args(both)
        .arg(oxcd.endpoint())
        .output()
        .unwrap();
    let last = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(theirs.status.code(), Some(128), "{theirs:?}");
    assert_eq!(ours.status.code(), theirs.status.code(), "{ours:?}");
    assert_eq!(last(&ours), last(&theirs));

    let spawn_mirror = |flags: &[&str]| {
        let mut child = Command::new(crate::check::oxcdctl())
            .env("OXCDCTL_MAKE_MIRROR_INTERVAL", "1")
            .arg(format!("--endpoints={src}"))
            .arg("make-mirror")
            .args(flags)
            .arg(oxcd.endpoint())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn oxcdctl make-mirror");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    };
    let (mut mirror, counts) = spawn_mirror(&["--prefix=m/", "--dest-prefix=copy/"]);
    // The writes below must come after the initial copy: one landing before it would be
    // copied instead of mirrored as an event, and the count would end one short.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match counts.recv_timeout(left) {
            Ok(line) if line == "30" => break,
            Ok(_) => {}
            Err(_) => panic!("make-mirror never printed its initial copy of 30 keys"),
        }
    }

    // Writes while the mirror runs: overwrites, a range delete (10 deletes at one revision),
    // a transaction of 3 puts, a new key, and a key outside the prefix.
    for i in 0..10 {
        ctl(&src, &["put", &format!("m/{i:02}"), "during"]);
    }
    ctl(&src, &["del", "m/2", "--prefix"]);
    ctl_txn(&src, "\nput m/t1 a\nput m/t2 b\nput m/t3 c\n\n\n");
    ctl(&src, &["put", "m/new", "last"]);
    ctl(&src, &["put", "other", "still not mirrored"]);
    let want: Vec<(String, String)> = pairs(&src, "m/")
        .into_iter()
        .map(|(k, v)| (k.replacen("m/", "copy/", 1), v))
        .collect();
    assert_eq!(want.len(), 24);
    converge("make-mirror --dest-prefix", &want, || {
        pairs(&oxcd.endpoint(), "copy/")
    });
    assert_eq!(
        ctl(&oxcd.endpoint(), &["get", "", "--prefix", "--keys-only"])
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("copy/"))
            .collect::<Vec<_>>(),
        Vec::<&str>::new()
    );
    // 30 copied, then 10 puts, 10 deletes, 3 + 1 puts mirrored: the periodic count gets there.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("54") {
        let left = deadline.saturating_duration_since(Instant::now());
        match counts.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("make-mirror never printed 54: {seen:?}"),
        }
    }
    assert!(seen.iter().all(|l| l.parse::<u64>().is_ok()), "{seen:?}");
    let _ = mirror.kill();
    let _ = mirror.wait();

    // --no-dest-prefix: the same keys at the destination's root.
    let (mut mirror, _counts) = spawn_mirror(&["--prefix=m/", "--no-dest-prefix"]);
    ctl(&src, &["put", "m/00", "after"]);
    let want: Vec<(String, String)> = pairs(&src, "m/")
        .into_iter()
        .map(|(k, v)| (k.replacen("m/", "", 1), v))
        .collect();
    converge("make-mirror --no-dest-prefix", &want, || {
        pairs(&oxcd.endpoint(), "")
            .into_iter()
            .filter(|(k, _)| !k.starts_with("copy/"))
            .collect()
    });
    let _ = mirror.kill();
    let _ = mirror.wait();
}
