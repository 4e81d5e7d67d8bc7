//! Spawns real `oxcd` processes on free loopback ports in temporary data dirs.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use oxcd_proto::etcdserverpb::kv_client::KvClient;
use oxcd_proto::etcdserverpb::lease_client::LeaseClient;
use oxcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use tonic::transport::Channel;

/// Path of the `oxcd` binary under test.
pub fn oxcd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_oxcd")
}

/// A port nobody listens on right now, from this test binary's block below the
/// kernel's ephemeral range (see `PortSource::per_process`).
pub fn free_port() -> u16 {
    oxcd_testkit::PortSource::per_process()
        .next()
        .map(|a| a.port())
        .expect("no free port")
}

/// A running `oxcd` process.
pub struct Server {
    /// The child process.
    pub child: Child,
    /// Client port.
    pub port: u16,
    /// Peer port.
    pub peer_port: u16,
    /// Lines the server logged (stderr), collected in the background.
    pub log: mpsc::Receiver<String>,
}

/// How long a server may take to become ready before a test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

impl Server {
    /// Starts oxcd in `data_dir` on fresh ports and waits for its "ready" log line.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, free_port(), free_port(), &[])
    }

    /// Starts oxcd with explicit ports and extra flags, waiting until it is ready.
    pub fn start_with(data_dir: &Path, port: u16, peer_port: u16, extra: &[&str]) -> Server {
        let mut s = Self::spawn(data_dir, port, peer_port, extra);
        s.wait_ready();
        s
    }

    /// Spawns oxcd without waiting.
    pub fn spawn(data_dir: &Path, port: u16, peer_port: u16, extra: &[&str]) -> Server {
        Self::spawn_env(data_dir, port, peer_port, extra, &[])
    }

    /// Starts oxcd with extra flags and environment variables (test knobs), waiting until
    /// it is ready.
    pub fn start_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut s = Self::spawn_env(data_dir, free_port(), free_port(), extra, env);
        s.wait_ready();
        s
    }

    /// Spawns oxcd with extra flags and environment variables, without waiting.
    pub fn spawn_env(
        data_dir: &Path,
        port: u16,
        peer_port: u16,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let client = format!("http://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut cmd = Command::new(oxcd_bin());
        cmd.arg("--name=t1")
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=t1={peer}"))
            .args(extra)
            .env_remove("OXCD_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn oxcd");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Server {
            child,
            port,
            peer_port,
            log: rx,
        }
    }

    /// Blocks until the server logs that it serves clients; panics with its log otherwise.
    pub fn wait_ready(&mut self) {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    assert!(
                        !line.contains("built without --cfg tokio_unstable"),
                        "the oxcd under test lacks the runtime setting of .cargo/config.toml: {line}"
                    );
                    let ready = line.contains("ready to serve client requests");
                    seen.push(line);
                    if ready {
                        return;
                    }
                }
                Err(_) => panic!("oxcd did not become ready; log:\n{}", seen.join("\n")),
            }
        }
    }

    /// Waits for the process to exit and returns its status and everything it logged.
    pub fn wait_exit(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().expect("wait");
        let log: Vec<String> = self.log.iter().collect();
        (status, log.join("\n"))
    }

    /// Waits up to `limit` for the process to exit; `None` if it is still running.
    pub fn wait_exit_within(
        mut self,
        limit: Duration,
    ) -> Option<(std::process::ExitStatus, String)> {
        let mut child = std::mem::replace(&mut self.child, Command::new("true").spawn().ok()?);
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send((status, child));
        });
        match rx.recv_timeout(limit) {
            Ok((status, _)) => {
                let log: Vec<String> = self.log.try_iter().collect();
                Some((status.ok()?, log.join("\n")))
            }
            Err(_) => {
                // Still running: the child moved into the waiting thread, so Drop cannot
                // reach it; kill it here or it outlives the test.
                // SAFETY: sending a signal to our own child process id.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
                None
            }
        }
    }

    /// The gRPC endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A connected KV client.
    pub async fn kv(&self) -> KvClient<Channel> {
        KvClient::connect(self.endpoint()).await.expect("connect")
    }

    /// A connected Lease client.
    pub async fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::connect(self.endpoint())
            .await
            .expect("connect")
    }

    /// A connected Maintenance client.
    pub async fn maintenance(&self) -> MaintenanceClient<Channel> {
        MaintenanceClient::connect(self.endpoint())
            .await
            .expect("connect")
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: sending a signal to our own child process id.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().expect("wait")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the oxcd binary with `args` to completion (for start-up errors).
pub fn run_to_exit(args: &[&str]) -> (i32, String) {
    let out = Command::new(oxcd_bin())
        .args(args)
        .output()
        .expect("run oxcd");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text)
}
