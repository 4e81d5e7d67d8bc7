//! A test member (raft node, applier, handler, peer server) and a cuttable TCP proxy.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use oxcd_proto::etcdserverpb::LeaseTimeToLiveResponse;
use oxcd_raft::eraftpb::Message;
use oxcd_raft::{
    wire, CommittedEntry, EntryKind, RaftConfig, RaftHandle, RaftNode, SnapshotSource,
    SnapshotUnavailable, StartOptions,
};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

use crate::{
    DialOptions, MemberInfo, PeerError, PeerHandler, PeerTransport, TransportOptions, Versions,
};

pub(super) const WAIT: Duration = Duration::from_secs(30);

pub(super) fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Waits until `f` holds, polling (the state lives behind locks that have no event).
pub(super) async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The application: payloads applied in order, and the index applied.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct AppState {
    pub(super) applied: u64,
    pub(super) payloads: Vec<Vec<u8>>,
}

impl AppState {
    /// Length-prefixed, then `padding` zero bytes (to make a snapshot of many chunks).
    fn encode(&self, padding: usize) -> Vec<u8> {
        let mut body = self.applied.to_le_bytes().to_vec();
        for p in &self.payloads {
            body.extend_from_slice(&(p.len() as u32).to_le_bytes());
            body.extend_from_slice(p);
        }
        let mut b = (body.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(&body);
        b.resize(b.len() + padding, 0);
        b
    }

    fn decode(b: &[u8]) -> AppState {
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        let b = &b[8..8 + n];
        let applied = u64::from_le_bytes(b[..8].try_into().unwrap());
        let (mut payloads, mut rest) = (Vec::new(), &b[8..]);
        while !rest.is_empty() {
            let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            payloads.push(rest[4..4 + n].to_vec());
            rest = &rest[4 + n..];
        }
        AppState { applied, payloads }
    }
}

/// The member's side of the transport.
pub(super) struct TestHandler {
    pub(super) cluster_id: u64,
    pub(super) member_id: u64,
    pub(super) raft: Mutex<Option<RaftHandle>>,
    pub(super) removed: Mutex<HashSet<u64>>,
    pub(super) snap_dir: PathBuf,
    pub(super) state: Arc<Mutex<AppState>>,
    /// A received snapshot's state, until the applier installs it.
    pub(super) pending: Mutex<Option<AppState>>,
    /// Files handed to `receive_snapshot`, with their sizes.
    pub(super) received_files: Mutex<Vec<(PathBuf, u64)>>,
    /// Zero bytes added to exported snapshots.
    pub(super) snapshot_padding: usize,
    /// How long an export takes at least (a large backend).
    pub(super) export_delay: Duration,
    /// Messages stepped.
    pub(super) stepped: std::sync::atomic::AtomicU64,
    /// What the peer router counts of what it receives.
    pub(super) stats: Arc<crate::PeerStats>,
}

impl TestHandler {
    pub(super) fn new(cluster_id: u64, member_id: u64, dir: &Path) -> Arc<TestHandler> {
        Self::with_snapshots(cluster_id, member_id, dir, 3 << 20, Duration::ZERO)
    }

    pub(super) fn with_snapshots(
        cluster_id: u64,
        member_id: u64,
        dir: &Path,
        snapshot_padding: usize,
        export_delay: Duration,
    ) -> Arc<TestHandler> {
        Arc::new(TestHandler {
            cluster_id,
            member_id,
            raft: Mutex::new(None),
            removed: Mutex::default(),
            snap_dir: dir.join(format!("m{member_id}/snap")),
            state: Arc::default(),
            pending: Mutex::new(None),
            received_files: Mutex::default(),
            snapshot_padding,
            export_delay,
            stepped: 0.into(),
            stats: crate::PeerStats::new(),
        })
    }
}

impl PeerHandler for TestHandler {
    fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    fn member_id(&self) -> u64 {
        self.member_id
    }

    fn step(&self, msg: Message) -> Result<(), PeerError> {
        self.stepped.fetch_add(1, Ordering::Relaxed);
        match &*self.raft.lock() {
            Some(r) => r.step(msg).map_err(|e| PeerError::Internal(e.to_string())),
            // A handler without a raft node only counts.
            None => Ok(()),
        }
    }

    fn is_removed(&self, member_id: u64) -> bool {
        self.removed.lock().contains(&member_id)
    }

    fn members(&self) -> Vec<MemberInfo> {
        vec![
            MemberInfo {
                id: 0x8e9e05c52164694d,
                peer_urls: vec!["http://127.0.0.1:2380".into()],
                is_learner: false,
                name: "infra1".into(),
                client_urls: vec!["http://127.0.0.1:2379".into()],
            },
            MemberInfo {
                id: 2,
                peer_urls: vec!["http://127.0.0.1:22380".into()],
                is_learner: true,
                name: String::new(),
                client_urls: vec![],
            },
        ]
    }

    fn versions(&self) -> Versions {
        Versions {
            server: "3.5.0".into(),
            cluster: "3.5.0".into(),
        }
    }

    fn snapshot_dir(&self) -> PathBuf {
        self.snap_dir.clone()
    }

    fn peer_stats(&self) -> Option<Arc<crate::PeerStats>> {
        Some(self.stats.clone())
    }

    fn export_snapshot(&self, dest: &Path) -> Result<u64, PeerError> {
        std::thread::sleep(self.export_delay);
        let bytes = self.state.lock().encode(self.snapshot_padding);
        std::fs::write(dest, &bytes).map_err(|e| PeerError::Internal(e.to_string()))?;
        Ok(bytes.len() as u64)
    }

    fn receive_snapshot(&self, msg: Message, file: &Path) -> Result<(), PeerError> {
        let bytes = std::fs::read(file).map_err(|e| PeerError::Internal(e.to_string()))?;
        assert!(file.starts_with(&self.snap_dir), "{}", file.display());
        self.received_files
            .lock()
            .push((file.to_path_buf(), bytes.len() as u64));
        *self.pending.lock() = Some(AppState::decode(&bytes));
        std::fs::remove_file(file).map_err(|e| PeerError::Internal(e.to_string()))?;
        self.step(msg)
    }

    fn lease_renew(&self, id: i64) -> BoxFuture<'_, Result<i64, PeerError>> {
        Box::pin(async move {
            match id {
                7 => Ok(42),
                8 => Err(PeerError::NotLeader),
                _ => Err(PeerError::LeaseNotFound),
            }
        })
    }

    fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> BoxFuture<'_, Result<LeaseTimeToLiveResponse, PeerError>> {
        Box::pin(async move {
            match id {
                7 => Ok(LeaseTimeToLiveResponse {
                    id,
                    ttl: 40,
                    granted_ttl: 60,
                    keys: if keys { vec![b"k".to_vec()] } else { vec![] },
                    header: None,
                }),
                _ => Err(PeerError::LeaseNotFound),
            }
        })
    }
}

/// Snapshot data: the index only (the state travels in the file).
struct Descriptor;

impl SnapshotSource for Descriptor {
    fn snapshot_data(&self, index: u64, _to: u64) -> Result<Vec<u8>, SnapshotUnavailable> {
        Ok(index.to_le_bytes().to_vec())
    }
}

/// Serves `router(handler)` on `port` until the task is aborted.
pub(super) async fn serve(handler: Arc<dyn PeerHandler>, port: u16) -> JoinHandle<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        axum::serve(listener, crate::router(handler)).await.unwrap();
    })
}

/// A member: handler, transport, raft node, applier, server.
pub(super) struct Member {
    pub(super) id: u64,
    pub(super) handler: Arc<TestHandler>,
    pub(super) transport: PeerTransport,
    pub(super) raft: RaftHandle,
    /// `(kind, index)` of every entry delivered, in order.
    pub(super) delivered: Arc<Mutex<Vec<(EntryKind, u64)>>>,
    server: JoinHandle<()>,
}

/// How to start a member.
pub(super) struct MemberSpec<'a> {
    pub(super) dir: &'a Path,
    pub(super) cluster_id: u64,
    pub(super) id: u64,
    /// Voters of a new cluster; empty to join.
    pub(super) voters: Vec<u64>,
    /// This member's listening port.
    pub(super) port: u16,
    /// `(id, port)` of the peers (the port dialled: a proxy's or the member's).
    pub(super) peers: Vec<(u64, u16)>,
    pub(super) snapshot_count: u64,
    /// Zero bytes added to the snapshots this member exports.
    pub(super) snapshot_padding: usize,
    /// How long its exports take at least.
    pub(super) export_delay: Duration,
    /// Size of the chunks it sends snapshots in.
    pub(super) snapshot_chunk_bytes: usize,
}

impl<'a> MemberSpec<'a> {
    /// Member `id` of cluster `cluster_id` listening on `port`, joining (no voters), no
    /// log compaction, 3 MiB snapshots exported at once.
    pub(super) fn new(dir: &'a Path, cluster_id: u64, id: u64, port: u16) -> Self {
        Self {
            dir,
            cluster_id,
            id,
            voters: vec![],
            port,
            peers: vec![],
            snapshot_count: 0,
            snapshot_padding: 3 << 20,
            export_delay: Duration::ZERO,
            snapshot_chunk_bytes: TransportOptions::default().snapshot_chunk_bytes,
        }
    }
}

impl Member {
    pub(super) async fn start(spec: MemberSpec<'_>) -> Member {
        let handler = TestHandler::with_snapshots(
            spec.cluster_id,
            spec.id,
            spec.dir,
            spec.snapshot_padding,
            spec.export_delay,
        );
        let server = serve(handler.clone(), spec.port).await;
        let opts = TransportOptions {
            dial: DialOptions::default(),
            snapshot_chunk_bytes: spec.snapshot_chunk_bytes,
            ..TransportOptions::default()
        };
        let transport = PeerTransport::new(handler.clone(), opts).unwrap();
        for (id, port) in &spec.peers {
            transport.set_peer_urls(*id, vec![url(*port)]);
        }
        let cfg = RaftConfig {
            tick: Duration::from_millis(20),
            // Elections after 0.5-1 s: two cores shared with other builds can starve a
            // member of a few hundred milliseconds, and the tests count on a stable leader.
            election_ticks: 25,
            snapshot_count: spec.snapshot_count,
            ..RaftConfig::new(
                spec.id,
                spec.voters,
                spec.dir.join(format!("m{}/wal", spec.id)),
            )
        };
        let start = StartOptions {
            snapshot_source: Some(Box::new(Descriptor)),
            catch_up_entries: 50,
            ..StartOptions::default()
        };
        let (raft, rx) = RaftNode::start_with(cfg, transport.clone(), start).unwrap();
        transport.set_raft(raft.clone());
        *handler.raft.lock() = Some(raft.clone());
        let delivered = Arc::default();
        spawn_applier(handler.clone(), raft.clone(), rx, Arc::clone(&delivered));
        Member {
            id: spec.id,
            handler,
            transport,
            raft,
            delivered,
            server,
        }
    }

    pub(super) fn payloads(&self) -> usize {
        self.handler.state.lock().payloads.len()
    }

    pub(super) fn state(&self) -> AppState {
        self.handler.state.lock().clone()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.transport.shutdown();
        self.raft.shutdown();
        self.server.abort();
    }
}

/// Applies entries: a snapshot installs the received state, entries the state holds are
/// skipped, membership changes go to raft.
fn spawn_applier(
    handler: Arc<TestHandler>,
    raft: RaftHandle,
    mut rx: UnboundedReceiver<Vec<CommittedEntry>>,
    delivered: Arc<Mutex<Vec<(EntryKind, u64)>>>,
) {
    tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            for e in batch {
                delivered.lock().push((e.kind, e.index));
                match e.kind {
                    EntryKind::Snapshot => {
                        let s = handler.pending.lock().take().expect("no snapshot received");
                        assert!(s.applied >= e.index, "snapshot state behind its index");
                        *handler.state.lock() = s;
                    }
                    EntryKind::ConfChange => {
                        let cc = wire::decode_conf_change(&e.data).unwrap();
                        raft.apply_conf_change(e.index, cc).await.unwrap();
                    }
                    EntryKind::Normal => {}
                }
                let mut s = handler.state.lock();
                if e.index > s.applied {
                    if e.kind == EntryKind::Normal && !e.data.is_empty() {
                        s.payloads.push(e.data.clone());
                    }
                    s.applied = e.index;
                }
            }
            let applied = handler.state.lock().applied;
            raft.set_applied(applied);
            raft.set_durable_applied(applied);
        }
    });
}

/// A TCP proxy for one directed link that the test can cut (existing connections are
/// reset, new ones refused) and restore.
pub(super) struct Proxy {
    cut: Arc<AtomicBool>,
    /// Bytes are read and thrown away, connections stay open.
    blackhole: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub(super) async fn start(port: u16, target: u16) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let blackhole = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (cut2, conns2, hole) = (cut.clone(), conns.clone(), blackhole.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if cut2.load(Ordering::Acquire) {
                    drop(inbound);
                    continue;
                }
                let hole = hole.clone();
                let task = tokio::spawn(async move {
                    if let Ok(out) = TcpStream::connect(("127.0.0.1", target)).await {
                        let (in_r, in_w) = inbound.into_split();
                        let (out_r, out_w) = out.into_split();
                        tokio::join!(pipe(in_r, out_w, hole.clone()), pipe(out_r, in_w, hole));
                    }
                });
                conns2.lock().push(task);
            }
        });
        Proxy {
            cut,
            blackhole,
            conns,
            accept,
        }
    }

    /// Swallows every byte from now on, without closing anything.
    pub(super) fn blackhole(&self, on: bool) {
        self.blackhole.store(on, Ordering::Release);
    }

    /// Breaks the link: open connections are dropped, new ones refused.
    pub(super) fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        for t in self.conns.lock().drain(..) {
            t.abort();
        }
    }

    pub(super) fn restore(&self) {
        self.cut.store(false, Ordering::Release);
    }
}

/// Copies `from` to `to`, discarding while `hole` is set.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    hole: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !hole.load(Ordering::Acquire) && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
