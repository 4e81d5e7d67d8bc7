//! Starts N `oxcd` (or `etcd`) processes on loopback as one cluster and lets a test crash,
//! pause, restart, replace, starve (full disk) and cut them off (see [`FaultNet`]).
//!
//! Both flavours get the same flags (`--name`, `--initial-cluster`, ...), so a scenario can be
//! checked against real etcd before it judges oxcd. With `faults` on, every peer link goes
//! through a proxy: oxcd members dial peers through per-link proxies named in
//! `OXCD_PEER_DIAL_OVERRIDE`; etcd members advertise a proxy in front of their peer listener
//! that tells senders apart by their `X-PeerURLs` header (see [`crate::proxy`]).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxcd_proto::etcdserverpb::cluster_client::ClusterClient;
use oxcd_proto::etcdserverpb::kv_client::KvClient;
use oxcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_proto::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberRemoveRequest, StatusRequest,
};
use tonic::transport::{Channel, Endpoint};

use crate::net::FaultNet;
use crate::ports::PortSource;

/// Which server the processes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// oxcd: peer links are routed with `OXCD_PEER_DIAL_OVERRIDE`.
    Oxcd,
    /// etcd (3.4/3.5): peer links are routed by a sniffing proxy in front of each listener.
    Etcd,
}

/// Everything needed to start a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The server to run.
    pub flavor: Flavor,
    /// Path of its binary.
    pub bin: PathBuf,
    /// Number of members.
    pub size: usize,
    /// Route every peer link through a fault proxy.
    pub faults: bool,
    /// Flags added to every member's command line (e.g. `--heartbeat-interval=50`).
    pub extra_args: Vec<String>,
    /// Members whose data dir is a tmpfs of this many MiB (for full-disk faults).
    pub tmpfs_mb: Vec<(usize, u32)>,
    /// Where ports come from.
    pub ports: PortSource,
    /// How long start-up (and every `wait_ready`) may take.
    pub ready_timeout: Duration,
    /// `--initial-cluster-token`.
    pub token: String,
}

impl ClusterConfig {
    /// `size` members of `flavor` running `bin`, with fault proxies, short raft timeouts
    /// (heartbeat 50 ms, election 500 ms), OS-chosen ports.
    pub fn new(flavor: Flavor, bin: impl Into<PathBuf>, size: usize) -> ClusterConfig {
        ClusterConfig {
            flavor,
            bin: bin.into(),
            size,
            faults: true,
            extra_args: vec![
                "--heartbeat-interval=50".into(),
                "--election-timeout=500".into(),
            ],
            tmpfs_mb: Vec::new(),
            ports: PortSource::per_process(),
            ready_timeout: Duration::from_secs(30),
            token: "oxcd-testkit".into(),
        }
    }

    /// The etcd found on `PATH` (Debian's 3.4), or `None` if there is none.
    pub fn etcd_on_path(size: usize) -> Option<ClusterConfig> {
        let bin = which("etcd")?;
        Some(ClusterConfig::new(Flavor::Etcd, bin, size))
    }
}

/// Why a harness operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file, process or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The cluster did not reach the awaited state in time.
    #[error("cluster not ready after {waited:?}: {detail}")]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// What was last seen.
        detail: String,
    },
    /// A membership RPC failed.
    #[error("{what}: {status}")]
    Rpc {
        /// Which RPC.
        what: &'static str,
        /// The gRPC status.
        status: tonic::Status,
    },
    /// `mount`/`umount` failed.
    #[error("mount: {0}")]
    Mount(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// Lifecycle of one member's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Running.
    Running,
    /// Paused by SIGSTOP.
    Stopped,
    /// Not running (killed or never started).
    Down,
}

/// One member: its addresses, data dir, log file and process.
#[derive(Debug)]
pub struct Member {
    /// `--name`.
    pub name: String,
    /// The client URL (`http://127.0.0.1:port`).
    pub client_url: String,
    /// The URL its peer listener binds.
    pub listen_peer_url: String,
    /// The peer URL it advertises and others dial (a proxy for etcd with faults).
    pub peer_url: String,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// Where its stdout and stderr go (appended across restarts).
    pub log_path: PathBuf,
    /// Whether `data_dir` is a tmpfs mount of ours.
    pub on_tmpfs: bool,
    env: Vec<(String, String)>,
    initial_cluster: String,
    initial_state: &'static str,
    child: Option<Child>,
    state: MemberState,
}

impl Member {
    /// The member's process state.
    pub fn state(&self) -> MemberState {
        self.state
    }

    /// Process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The `--initial-cluster` it starts with.
    pub fn initial_cluster(&self) -> &str {
        &self.initial_cluster
    }
}

/// A running cluster; dropping it kills every member, unmounts tmpfs data dirs and, if the
/// thread is panicking, prints the tail of every member's log.
pub struct Cluster {
    cfg: ClusterConfig,
    members: Vec<Member>,
    net: Option<FaultNet>,
    dir: tempfile::TempDir,
}

/// Lines of each log shown when a test fails.
const LOG_TAIL_LINES: usize = 40;

impl Cluster {
    /// Starts every member and waits until all agree on a leader.
    pub async fn start(cfg: ClusterConfig) -> Result<Cluster, HarnessError> {
        let mut c = Cluster::spawn(cfg)?;
        c.wait_ready().await?;
        Ok(c)
    }

    /// Starts every member without waiting.
    pub fn spawn(cfg: ClusterConfig) -> Result<Cluster, HarnessError> {
        let mut c = Cluster::prepare(cfg)?;
        for i in 0..c.members.len() {
            c.start_member(i)?;
        }
        Ok(c)
    }

    /// Lays the cluster out (ports, proxies, empty data dirs) without starting any member:
    /// the caller may fill the data dirs (e.g. restore a snapshot into each) and then
    /// [`Cluster::start_member`] each.
    pub fn prepare(cfg: ClusterConfig) -> Result<Cluster, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("oxcd-cluster-")
            .tempdir()
            .map_err(io("temp dir"))?;
        let net = if cfg.faults {
            Some(FaultNet::new(cfg.size).map_err(io("fault net"))?)
        } else {
            None
        };
        let mut members = Vec::new();
        let mut listen_peer = Vec::new();
        for i in 0..cfg.size {
            let name = format!("m{i}");
            let client = cfg.ports.next().map_err(io("port"))?;
            let peer = cfg.ports.next().map_err(io("port"))?;
            let data_dir = dir.path().join(&name);
            std::fs::create_dir_all(&data_dir).map_err(io("data dir"))?;
            let on_tmpfs = match cfg.tmpfs_mb.iter().find(|(m, _)| *m == i) {
                Some((_, mb)) => {
                    mount_tmpfs(&data_dir, *mb)?;
                    true
                }
                None => false,
            };
            let log_path = dir.path().join(format!("{name}.log"));
            listen_peer.push(peer);
            members.push(Member {
                name,
                client_url: format!("http://{client}"),
                listen_peer_url: format!("http://{peer}"),
                peer_url: format!("http://{peer}"),
                data_dir,
                log_path,
                on_tmpfs,
                env: Vec::new(),
                initial_cluster: String::new(),
                initial_state: "new",
                child: None,
                state: MemberState::Down,
            });
        }
        if let Some(net) = &net {
            route_peers(net, &cfg, &mut members, &listen_peer)?;
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.initial_cluster = initial_cluster.clone();
        }
        Ok(Cluster {
            cfg,
            members,
            net,
            dir,
        })
    }

    /// The members, by index.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The fault network (`None` when the cluster runs without proxies).
    pub fn net(&self) -> Option<&FaultNet> {
        self.net.as_ref()
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// The temp dir holding data dirs and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// A lazily connecting channel to member `i` (connect timeout 1 s).
    pub fn channel(&self, i: usize) -> Channel {
        channel_to(&self.members[i].client_url)
    }

    /// A KV client of member `i`.
    pub fn kv(&self, i: usize) -> KvClient<Channel> {
        KvClient::new(self.channel(i))
    }

    /// (Re)starts member `i`'s process on its data dir.
    pub fn start_member(&mut self, i: usize) -> Result<(), HarnessError> {
        let cfg = &self.cfg;
        let m = &mut self.members[i];
        if m.child.is_some() {
            return Ok(());
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(&m.log_path)
            .map_err(io("log file"))?;
        let log_err = log.try_clone().map_err(io("log file"))?;
        let mut cmd = Command::new(&cfg.bin);
        cmd.arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", m.data_dir.display()))
            .arg(format!("--listen-client-urls={}", m.client_url))
            .arg(format!("--advertise-client-urls={}", m.client_url))
            .arg(format!("--listen-peer-urls={}", m.listen_peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", m.peer_url))
            .arg(format!("--initial-cluster={}", m.initial_cluster))
            .arg(format!("--initial-cluster-state={}", m.initial_state))
            .arg(format!("--initial-cluster-token={}", cfg.token))
            .args(&cfg.extra_args)
            .envs(m.env.iter().map(|(k, v)| (k, v)))
            .env_remove("OXCD_LOG")
            .env_remove("ETCD_UNSUPPORTED_ARCH")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .map_err(io(format!("spawn {}", cfg.bin.display())))?;
        m.child = Some(child);
        m.state = MemberState::Running;
        Ok(())
    }

    /// Sets an environment variable for member `i`'s next start (an `ETCD_*` setting for
    /// this member alone).
    pub fn set_env(&mut self, i: usize, key: &str, value: &str) {
        let env = &mut self.members[i].env;
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value.to_string()));
    }

    /// Waits up to `limit` for member `i`'s process to exit by itself: its exit status
    /// (`None` if it still runs or was not running).
    pub async fn wait_exit(
        &mut self,
        i: usize,
        limit: Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let m = &mut self.members[i];
            let status = m.child.as_mut()?.try_wait().ok()?;
            if let Some(status) = status {
                m.child = None;
                m.state = MemberState::Down;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL member `i` (a crash) and reap it.
    pub fn kill(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(mut child) = m.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        m.state = MemberState::Down;
    }

    /// SIGTERM member `i` and wait for it to exit.
    pub fn terminate(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let m = &mut self.members[i];
        let mut child = m.child.take()?;
        if m.state == MemberState::Stopped {
            signal(&child, libc::SIGCONT);
        }
        signal(&child, libc::SIGTERM);
        m.state = MemberState::Down;
        child.wait().ok()
    }

    /// SIGSTOP member `i` (a paused process: it keeps its sockets, answers nothing).
    pub fn pause(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let (Some(child), MemberState::Running) = (&m.child, m.state) {
            signal(child, libc::SIGSTOP);
            m.state = MemberState::Stopped;
        }
    }

    /// SIGCONT member `i`.
    pub fn resume(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let (Some(child), MemberState::Stopped) = (&m.child, m.state) {
            signal(child, libc::SIGCONT);
            m.state = MemberState::Running;
        }
    }

    /// SIGKILL then start again on the same data dir (without waiting for readiness).
    pub fn restart(&mut self, i: usize) -> Result<(), HarnessError> {
        self.kill(i);
        self.start_member(i)
    }

    /// Replaces member `i` by a fresh one on the same name and URLs: kills it, wipes its data
    /// dir, removes it from the cluster and adds it back (MemberRemove/MemberAdd through a
    /// running member), then starts it with `--initial-cluster-state existing`.
    pub async fn replace(&mut self, i: usize) -> Result<(), HarnessError> {
        self.kill(i);
        wipe_dir(&self.members[i].data_dir)?;
        let via = (0..self.members.len())
            .find(|&j| j != i && self.members[j].state == MemberState::Running)
            .ok_or_else(|| HarnessError::NotReady {
                waited: Duration::ZERO,
                detail: "no running member to change membership through".into(),
            })?;
        let mut cluster = ClusterClient::new(self.channel(via));
        let list = cluster
            .member_list(MemberListRequest::default())
            .await
            .map_err(|status| HarnessError::Rpc {
                what: "MemberList",
                status,
            })?
            .into_inner();
        let peer_url = self.members[i].peer_url.clone();
        if let Some(old) = list
            .members
            .iter()
            .find(|m| m.peer_ur_ls.contains(&peer_url))
        {
            cluster
                .member_remove(MemberRemoveRequest { id: old.id })
                .await
                .map_err(|status| HarnessError::Rpc {
                    what: "MemberRemove",
                    status,
                })?;
        }
        // etcd refuses MemberAdd ("unhealthy cluster") until the members have been connected
        // to a quorum for a while (5 s); keep asking until the ready timeout.
        let start = Instant::now();
        loop {
            let add = MemberAddRequest {
                peer_ur_ls: vec![peer_url.clone()],
                is_learner: false,
            };
            match cluster.member_add(add).await {
                Ok(_) => break,
                Err(status)
                    if status.code() == tonic::Code::Unavailable
                        && start.elapsed() < self.cfg.ready_timeout =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(status) => {
                    return Err(HarnessError::Rpc {
                        what: "MemberAdd",
                        status,
                    })
                }
            }
        }
        let m = &mut self.members[i];
        m.initial_state = "existing";
        self.start_member(i)
    }

    /// Writes a ballast file into member `i`'s data dir until the disk is full (meant for a
    /// tmpfs data dir; see [`ClusterConfig::tmpfs_mb`]). Returns the bytes written.
    pub fn fill_disk(&self, i: usize) -> Result<u64, HarnessError> {
        use std::io::Write;
        let path = self.members[i].data_dir.join("ballast");
        let mut f = File::create(&path).map_err(io("ballast"))?;
        let block = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            match f.write(&block) {
                Ok(0) => return Ok(written),
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(written),
                Err(e) => return Err(io("ballast")(e)),
            }
        }
    }

    /// Removes the ballast of [`Cluster::fill_disk`].
    pub fn free_disk(&self, i: usize) -> Result<(), HarnessError> {
        std::fs::remove_file(self.members[i].data_dir.join("ballast")).map_err(io("ballast"))
    }

    /// Waits until every running member answers Status with the same non-zero leader;
    /// returns the leader's member index.
    pub async fn wait_ready(&mut self) -> Result<usize, HarnessError> {
        let timeout = self.cfg.ready_timeout;
        self.wait_ready_within(timeout).await
    }

    /// [`Cluster::wait_ready`] with an explicit limit.
    pub async fn wait_ready_within(&mut self, timeout: Duration) -> Result<usize, HarnessError> {
        let all: Vec<usize> = (0..self.members.len()).collect();
        self.wait_leader_among(&all, timeout).await
    }

    /// Waits until the running members among `members` answer Status naming one leader
    /// that is itself one of them (e.g. the majority side of a partition).
    pub async fn wait_leader_among(
        &mut self,
        members: &[usize],
        timeout: Duration,
    ) -> Result<usize, HarnessError> {
        let start = Instant::now();
        loop {
            self.reap_exited();
            let detail = match self.poll_leader(members).await {
                Ok(leader) => return Ok(leader),
                Err(d) => d,
            };
            if start.elapsed() > timeout {
                return Err(HarnessError::NotReady {
                    waited: start.elapsed(),
                    detail,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The current leader's index if every running member names the same one.
    pub async fn leader(&mut self) -> Option<usize> {
        let all: Vec<usize> = (0..self.members.len()).collect();
        self.poll_leader(&all).await.ok()
    }

    async fn poll_leader(&self, among: &[usize]) -> Result<usize, String> {
        let mut leader_id = None;
        let mut leader_index = None;
        let mut any = false;
        for &i in among {
            let m = &self.members[i];
            if m.state != MemberState::Running {
                continue;
            }
            any = true;
            let mut client = MaintenanceClient::new(channel_to(&m.client_url));
            let mut req = tonic::Request::new(StatusRequest {});
            req.set_timeout(Duration::from_millis(500));
            let status = match client.status(req).await {
                Ok(s) => s.into_inner(),
                Err(e) => return Err(format!("{}: {}", m.name, e.message())),
            };
            if status.leader == 0 {
                return Err(format!("{}: no leader", m.name));
            }
            if *leader_id.get_or_insert(status.leader) != status.leader {
                return Err(format!("{}: leader {:x} differs", m.name, status.leader));
            }
            if status.header.map(|h| h.member_id) == Some(status.leader) {
                leader_index = Some(i);
            }
        }
        if !any {
            return Err("no member running".into());
        }
        leader_index.ok_or_else(|| "the leader is not among the running members asked".into())
    }

    /// Marks members whose process has exited as down (their log says why).
    fn reap_exited(&mut self) {
        for m in &mut self.members {
            if let Some(child) = &mut m.child {
                if let Ok(Some(_)) = child.try_wait() {
                    m.child = None;
                    m.state = MemberState::Down;
                }
            }
        }
    }

    /// The last `n` lines of member `i`'s log.
    pub fn log_tail(&self, i: usize, n: usize) -> String {
        tail(&self.members[i].log_path, n)
    }

    /// The tails of every member's log, headed by member names.
    pub fn logs(&self, n: usize) -> String {
        let mut out = String::new();
        for (i, m) in self.members.iter().enumerate() {
            out.push_str(&format!(
                "----- {} ({:?}) {} -----\n",
                m.name,
                m.state,
                m.log_path.display()
            ));
            out.push_str(&self.log_tail(i, n));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs(LOG_TAIL_LINES));
        }
        for m in &self.members {
            if m.on_tmpfs {
                let _ = Command::new("umount").arg("-l").arg(&m.data_dir).status();
            }
        }
    }
}

/// Sets up peer proxies: per-link dial overrides for oxcd, sniffing front proxies for etcd.
fn route_peers(
    net: &FaultNet,
    cfg: &ClusterConfig,
    members: &mut [Member],
    listen_peer: &[SocketAddr],
) -> Result<(), HarnessError> {
    match cfg.flavor {
        Flavor::Oxcd => {
            for from in 0..members.len() {
                let mut overrides = Vec::new();
                for (to, target) in listen_peer.iter().enumerate() {
                    if to != from {
                        let proxy = net.proxy_link(from, to, *target).map_err(io("proxy"))?;
                        overrides.push(format!("{}={proxy}", members[to].peer_url));
                    }
                }
                if !overrides.is_empty() {
                    members[from]
                        .env
                        .push(("OXCD_PEER_DIAL_OVERRIDE".into(), overrides.join(",")));
                }
            }
        }
        Flavor::Etcd => {
            let fronts = (0..members.len())
                .map(|_| cfg.ports.next())
                .collect::<Result<Vec<_>, _>>()
                .map_err(io("port"))?;
            let advertised: Vec<(usize, String)> = fronts
                .iter()
                .enumerate()
                .map(|(i, a)| (i, format!("http://{a}")))
                .collect();
            for (to, m) in members.iter_mut().enumerate() {
                net.proxy_front(fronts[to], to, listen_peer[to], &advertised)
                    .map_err(io("proxy"))?;
                m.peer_url = advertised[to].1.clone();
            }
        }
    }
    Ok(())
}

/// A lazily connecting channel to `url` (connect timeout 1 s).
pub(crate) fn channel_to(url: &str) -> Channel {
    match Endpoint::from_shared(url.to_string()) {
        Ok(e) => e.connect_timeout(Duration::from_secs(1)).connect_lazy(),
        // Our own URLs always parse; a lazy channel to nowhere reports errors per request.
        Err(_) => Endpoint::from_static("http://127.0.0.1:1").connect_lazy(),
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on the id of a child we have not reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

fn mount_tmpfs(dir: &Path, mb: u32) -> Result<(), HarnessError> {
    let out = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={mb}m,mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .output()
        .map_err(io("mount"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HarnessError::Mount(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Empties `dir` but keeps it (it may be a mount point).
fn wipe_dir(dir: &Path) -> Result<(), HarnessError> {
    for entry in std::fs::read_dir(dir).map_err(io("wipe data dir"))? {
        let path = entry.map_err(io("wipe data dir"))?.path();
        let r = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        r.map_err(io(format!("wipe {}", path.display())))?;
    }
    Ok(())
}

fn tail(path: &Path, n: usize) -> String {
    let Ok(f) = File::open(path) else {
        return String::from("(no log)\n");
    };
    let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
    let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
    out.push('\n');
    out
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}
