//! Spawning a real etcd 3.4 for the tests that check compatibility with etcd itself.

// Test helpers: a panic is a failed test, and they are not an API.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]
// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running etcd, killed on drop.
pub struct Etcd {
    child: Child,
    /// The client endpoint (`127.0.0.1:PORT`).
    pub endpoint: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The etcd binary: `ETCD_BIN`, else `etcd` on PATH; `None` when there is none.
pub fn etcd_binary() -> Option<String> {
    if let Ok(bin) = std::env::var("ETCD_BIN") {
        return Some(bin);
    }
    let found = Command::new("etcd").arg("--version").output().ok()?;
    found.status.success().then(|| "etcd".to_string())
}

/// Starts etcd in `dir` on `client_port` and `client_port + 1` with `extra` flags, and waits
/// for its "ready" log line.
pub fn start_etcd(bin: &str, dir: &Path, client_port: u16, extra: &[String]) -> Etcd {
    start_etcd_with_scheme(bin, dir, "http", client_port, extra)
}

/// [`start_etcd`] with clients served over `scheme` (`http` or `https`).
pub fn start_etcd_with_scheme(
    bin: &str,
    dir: &Path,
    scheme: &str,
    client_port: u16,
    extra: &[String],
) -> Etcd {
    let member = Member {
        name: "test".into(),
        client_port,
        peer_port: client_port + 1,
    };
    let cluster = member.initial_cluster_entry();
    let (etcd, log) = spawn_member(bin, dir, scheme, &member, &cluster, extra);
    wait_ready(log);
    etcd
}

/// One member of a test cluster.
pub struct Member {
    /// `--name`.
    pub name: String,
    /// Client port.
    pub client_port: u16,
    /// Peer port.
    pub peer_port: u16,
}

impl Member {
    fn initial_cluster_entry(&self) -> String {
        format!("{}=http://127.0.0.1:{}", self.name, self.peer_port)
    }
}

/// Starts a cluster of `members` (data under `dir/<name>`) and waits until every member is
/// ready.
pub fn start_cluster(bin: &str, dir: &Path, members: &[Member]) -> Vec<Etcd> {
    let cluster: Vec<String> = members.iter().map(Member::initial_cluster_entry).collect();
    let cluster = cluster.join(",");
    let started: Vec<(Etcd, LogLines)> = members
        .iter()
        .map(|m| spawn_member(bin, &dir.join(&m.name), "http", m, &cluster, &[]))
        .collect();
    started
        .into_iter()
        .map(|(etcd, log)| {
            wait_ready(log);
            etcd
        })
        .collect()
}

type LogLines = std::io::Lines<BufReader<std::process::ChildStderr>>;

fn spawn_member(
    bin: &str,
    dir: &Path,
    scheme: &str,
    member: &Member,
    initial_cluster: &str,
    extra: &[String],
) -> (Etcd, LogLines) {
    let client = format!("{scheme}://127.0.0.1:{}", member.client_port);
    let peer = format!("http://127.0.0.1:{}", member.peer_port);
    let mut child = Command::new(bin)
        .arg(format!("--name={}", member.name))
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster={initial_cluster}"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn etcd");
    let stderr = child.stderr.take().expect("stderr");
    let etcd = Etcd {
        child,
        endpoint: if scheme == "http" {
            format!("127.0.0.1:{}", member.client_port)
        } else {
            client.clone()
        },
    };
    (etcd, BufReader::new(stderr).lines())
}

/// Reads `log` up to etcd's "ready" line, then drains it in the background so etcd never
/// blocks on a full pipe.
fn wait_ready(mut lines: LogLines) {
    let mut seen = Vec::new();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("etcd exited; log:\n{}", seen.join("\n")))
            .expect("read etcd log");
        if line.contains("ready to serve client requests") {
            break;
        }
        seen.push(line);
    }
    std::thread::spawn(move || for _ in lines.by_ref() {});
}
