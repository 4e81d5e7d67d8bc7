//! Spawning a real etcd 3.4 for the tests that check compatibility with etcd itself.
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
    let client = format!("{scheme}://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{}", client_port + 1);
    let mut child = Command::new(bin)
        .arg("--name=test")
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=test={peer}"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn etcd");
    let stderr = child.stderr.take().expect("stderr");
    let etcd = Etcd {
        child,
        endpoint: if scheme == "http" {
            format!("127.0.0.1:{client_port}")
        } else {
            client.clone()
        },
    };
    let mut lines = BufReader::new(stderr).lines();
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
    // Keep draining the log so etcd never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    etcd
}
