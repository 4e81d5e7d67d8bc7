//! A TCP fault proxy: each accepted connection belongs to one directed peer link, and the
//! link's [`LinkMode`] decides what happens to its bytes (pass, blackhole, delay, drop).
//!
//! Two ways to tell which link a connection belongs to ([`Route`]):
//! - [`Route::Fixed`]: one listener per directed link A->B (oxcd: member A dials B's peer URL at
//!   this listener because of `OXCD_PEER_DIAL_OVERRIDE`).
//! - [`Route::BySender`]: one listener in front of member B's peer port; the sender is read from
//!   the `X-PeerURLs` header etcd's rafthttp puts on every peer request (stream GETs and
//!   pipeline POSTs), so per-link faults work for an unmodified etcd too. A connection carries
//!   the traffic of the member that opened it in both directions (etcd's stream readers receive
//!   over connections they dialled), so there a cut of A->B also silences B's messages flowing
//!   back over A's connections: a symmetric partition is exact, a one-way cut is approximate.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What a directed link does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMode {
    /// Forward everything at once.
    Pass,
    /// Accept connections and hold them open, forwarding nothing (bytes are read and thrown
    /// away, as a network that loses every packet would).
    Blackhole,
    /// Forward each chunk after `fixed` plus a random part of `jitter` (order is kept).
    Delay {
        /// Delay every chunk gets.
        fixed: Duration,
        /// Upper bound of the extra random delay.
        jitter: Duration,
    },
    /// Close open connections and refuse new ones (accepted, then closed at once).
    Drop,
}

/// The shared switch of one directed link; cheap to clone.
#[derive(Clone, Debug)]
pub struct LinkControl {
    mode: Arc<watch::Sender<LinkMode>>,
}

impl Default for LinkControl {
    fn default() -> Self {
        LinkControl {
            mode: Arc::new(watch::Sender::new(LinkMode::Pass)),
        }
    }
}

impl LinkControl {
    /// Switches the link; open connections follow at their next chunk (Drop: at once).
    pub fn set(&self, mode: LinkMode) {
        self.mode.send_replace(mode);
    }

    /// The link's current mode.
    pub fn mode(&self) -> LinkMode {
        *self.mode.borrow()
    }

    fn subscribe(&self) -> watch::Receiver<LinkMode> {
        self.mode.subscribe()
    }
}

/// How a proxy listener assigns an accepted connection to a link.
#[derive(Clone, Debug)]
pub enum Route {
    /// Every connection belongs to this link.
    Fixed(LinkControl),
    /// The link is chosen by the sender's peer URL in the first HTTP request's `X-PeerURLs`
    /// header; connections without a known sender (e.g. `/version` probes) pass untouched.
    BySender(Vec<(String, LinkControl)>),
}

/// Largest request head read while looking for `X-PeerURLs`.
const MAX_SNIFF: usize = 16 * 1024;
/// How long a connection may take to send its request head.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(5);
/// Size of one forwarded chunk.
const CHUNK: usize = 64 * 1024;

/// Binds a proxy listener on `listen` forwarding to `target`, served on `rt`.
///
/// The socket is bound before this returns, so a process can be pointed at it at once.
pub fn spawn_proxy(
    rt: &tokio::runtime::Handle,
    listen: SocketAddr,
    target: SocketAddr,
    route: Route,
) -> std::io::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(listen)?;
    std_listener.set_nonblocking(true)?;
    let bound = std_listener.local_addr()?;
    let _guard = rt.enter();
    let listener = TcpListener::from_std(std_listener)?;
    rt.spawn(accept_loop(listener, target, route));
    Ok(bound)
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, route: Route) {
    let seed = Arc::new(Mutex::new(0x5eed_u64));
    while let Ok((conn, _)) = listener.accept().await {
        let route = route.clone();
        let seed = seed.clone();
        tokio::spawn(async move {
            // Errors end this connection only: a proxy is as lossy as the network it models.
            let _ = serve_connection(conn, target, route, seed).await;
        });
    }
}

async fn serve_connection(
    mut inbound: TcpStream,
    target: SocketAddr,
    route: Route,
    seed: Arc<Mutex<u64>>,
) -> std::io::Result<()> {
    let (link, head) = match route {
        Route::Fixed(link) => (Some(link), Vec::new()),
        Route::BySender(peers) => {
            let head = tokio::time::timeout(SNIFF_TIMEOUT, read_head(&mut inbound))
                .await
                .map_err(|_| std::io::Error::other("no request head"))??;
            let sender = sender_urls(&head);
            let link = peers
                .iter()
                .find(|(url, _)| sender.iter().any(|s| s == url))
                .map(|(_, l)| l.clone());
            (link, head)
        }
    };
    let link = link.unwrap_or_default();
    if link.mode() == LinkMode::Drop {
        return Ok(());
    }
    let outbound = TcpStream::connect(target).await?;
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_r, in_w) = inbound.into_split();
    let (out_r, mut out_w) = outbound.into_split();
    if !head.is_empty() {
        forward_first(&link, &head, &mut out_w).await?;
    }
    tokio::select! {
        r = pipe(in_r, out_w, link.clone(), seed.clone()) => r,
        r = pipe(out_r, in_w, link, seed) => r,
    }
}

/// Sends the sniffed request head through the link's current mode.
async fn forward_first(
    link: &LinkControl,
    head: &[u8],
    out: &mut OwnedWriteHalf,
) -> std::io::Result<()> {
    match link.mode() {
        LinkMode::Pass => out.write_all(head).await,
        LinkMode::Delay { fixed, .. } => {
            tokio::time::sleep(fixed).await;
            out.write_all(head).await
        }
        LinkMode::Blackhole => Ok(()),
        LinkMode::Drop => Err(std::io::Error::other("link dropped")),
    }
}

/// Reads until the end of the first HTTP request head (or [`MAX_SNIFF`] bytes or EOF).
async fn read_head(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while head.len() < MAX_SNIFF && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

/// The peer URLs in an HTTP request head's `X-PeerURLs` header.
fn sender_urls(head: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(head);
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("x-peerurls"))
        .flat_map(|(_, v)| v.split(',').map(|u| u.trim().to_string()))
        .collect()
}

/// Copies one direction until EOF, an error, or the link switching to [`LinkMode::Drop`].
async fn pipe(
    mut from: OwnedReadHalf,
    to: OwnedWriteHalf,
    link: LinkControl,
    seed: Arc<Mutex<u64>>,
) -> std::io::Result<()> {
    let mut modes = link.subscribe();
    let (delayed_tx, delayed_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(write_delayed(delayed_rx, to));
    let mut last_due = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    let result = loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) => break Err(e),
            },
            changed = modes.changed() => {
                if changed.is_err() || *modes.borrow() == LinkMode::Drop {
                    break Err(std::io::Error::other("link dropped"));
                }
                continue;
            }
        };
        let mode = *modes.borrow();
        let due = match mode {
            LinkMode::Pass => Instant::now(),
            LinkMode::Delay { fixed, jitter } => {
                Instant::now() + fixed + jitter.mul_f64(next_unit(&seed))
            }
            LinkMode::Blackhole => continue,
            LinkMode::Drop => break Err(std::io::Error::other("link dropped")),
        };
        // Never deliver a chunk before the one read earlier: TCP keeps order.
        last_due = last_due.max(due);
        if delayed_tx.send((last_due, buf[..n].to_vec())).is_err() {
            break Ok(());
        }
    };
    drop(delayed_tx);
    if result.is_err() {
        writer.abort();
    } else {
        let _ = writer.await;
    }
    result
}

/// Writes chunks when they are due; ends when the sending side closes.
async fn write_delayed(
    mut chunks: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
    mut to: OwnedWriteHalf,
) {
    while let Some((due, chunk)) = chunks.recv().await {
        tokio::time::sleep_until(due).await;
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

/// A number in `[0, 1)` from a shared splitmix64 state.
fn next_unit(seed: &Mutex<u64>) -> f64 {
    let mut s = seed.lock().unwrap_or_else(|p| p.into_inner());
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on a free port.
    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = c.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn roundtrip(conn: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        conn.write_all(msg).await?;
        let mut got = vec![0u8; msg.len()];
        conn.read_exact(&mut got).await?;
        Ok(got)
    }

    fn proxy(target: SocketAddr, route: Route) -> SocketAddr {
        spawn_proxy(
            &tokio::runtime::Handle::current(),
            "127.0.0.1:0".parse().unwrap(),
            target,
            route,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn pass_blackhole_delay_drop() {
        let echo = echo_server().await;
        let link = LinkControl::default();
        let addr = proxy(echo, Route::Fixed(link.clone()));
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert_eq!(roundtrip(&mut c, b"hello").await.unwrap(), b"hello");

        link.set(LinkMode::Blackhole);
        c.write_all(b"lost").await.unwrap();
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await;
        assert!(read.is_err(), "blackholed bytes came back: {read:?}");

        link.set(LinkMode::Delay {
            fixed: Duration::from_millis(200),
            jitter: Duration::from_millis(50),
        });
        let start = std::time::Instant::now();
        assert_eq!(roundtrip(&mut c, b"slow").await.unwrap(), b"slow");
        // Both directions are delayed.
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "{:?}",
            start.elapsed()
        );

        link.set(LinkMode::Drop);
        let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
            .await
            .unwrap();
        assert!(
            matches!(n, Ok(0) | Err(_)),
            "dropped link still open: {n:?}"
        );
        let mut refused = TcpStream::connect(addr).await.unwrap();
        assert!(roundtrip(&mut refused, b"x").await.is_err());

        link.set(LinkMode::Pass);
        let mut again = TcpStream::connect(addr).await.unwrap();
        assert_eq!(roundtrip(&mut again, b"back").await.unwrap(), b"back");
    }

    #[tokio::test]
    async fn by_sender_routes_on_peer_urls_header() {
        let echo = echo_server().await;
        let from_a = LinkControl::default();
        let from_b = LinkControl::default();
        let addr = proxy(
            echo,
            Route::BySender(vec![
                ("http://a:1".into(), from_a.clone()),
                ("http://b:2".into(), from_b.clone()),
            ]),
        );
        from_a.set(LinkMode::Drop);
        let req_a = b"GET /raft/stream HTTP/1.1\r\nX-PeerURLs: http://a:1\r\n\r\n";
        let req_b = b"GET /raft/stream HTTP/1.1\r\nx-peerurls: http://b:2\r\n\r\n";
        let mut a = TcpStream::connect(addr).await.unwrap();
        assert!(roundtrip(&mut a, req_a).await.is_err());
        let mut b = TcpStream::connect(addr).await.unwrap();
        assert_eq!(roundtrip(&mut b, req_b).await.unwrap(), req_b);
    }
}
