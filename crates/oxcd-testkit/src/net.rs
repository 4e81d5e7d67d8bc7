//! The fault network of a cluster: one [`LinkControl`] per directed peer link, served by
//! proxies on a runtime of its own (so a test blocking its own runtime cannot stall them).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tokio::sync::oneshot;

use crate::proxy::{spawn_proxy, LinkControl, LinkMode, Route};

/// Per-link switches plus the runtime serving the proxies; dropping it closes every proxy.
pub struct FaultNet {
    links: BTreeMap<(usize, usize), LinkControl>,
    handle: tokio::runtime::Handle,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultNet {
    /// Starts the proxy runtime for a cluster of `size` members, every link passing.
    pub fn new(size: usize) -> std::io::Result<FaultNet> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fault-proxy")
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (shutdown, stop) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fault-net".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stop.await;
                });
                rt.shutdown_background();
            })?;
        let mut links = BTreeMap::new();
        for from in 0..size {
            for to in 0..size {
                if from != to {
                    links.insert((from, to), LinkControl::default());
                }
            }
        }
        Ok(FaultNet {
            links,
            handle,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// Binds a proxy for the single link `from -> to` that forwards to `target`.
    pub fn proxy_link(
        &self,
        from: usize,
        to: usize,
        target: SocketAddr,
    ) -> std::io::Result<SocketAddr> {
        let link = self.link(from, to).clone();
        spawn_proxy(&self.handle, loopback_any(), target, Route::Fixed(link))
    }

    /// Binds a proxy in front of member `to`'s peer listener (`target`), assigning each
    /// connection to the link `sender -> to` by the sender's advertised peer URL.
    pub fn proxy_front(
        &self,
        listen: SocketAddr,
        to: usize,
        target: SocketAddr,
        sender_urls: &[(usize, String)],
    ) -> std::io::Result<SocketAddr> {
        let peers = sender_urls
            .iter()
            .filter(|(from, _)| *from != to)
            .map(|(from, url)| (url.clone(), self.link(*from, to).clone()))
            .collect();
        spawn_proxy(&self.handle, listen, target, Route::BySender(peers))
    }

    /// The switch of link `from -> to`.
    ///
    /// # Panics
    /// If `from == to` or either is not a member index (a bug in the calling test).
    pub fn link(&self, from: usize, to: usize) -> &LinkControl {
        match self.links.get(&(from, to)) {
            Some(l) => l,
            None => panic!("no peer link {from} -> {to}"),
        }
    }

    /// Sets both directions between `a` and `b`.
    pub fn set_pair(&self, a: usize, b: usize, mode: LinkMode) {
        self.link(a, b).set(mode);
        self.link(b, a).set(mode);
    }

    /// Cuts `member` off from every other member in both directions with `mode`
    /// (usually [`LinkMode::Blackhole`] or [`LinkMode::Drop`]).
    pub fn isolate(&self, member: usize, mode: LinkMode) {
        for (&(from, to), link) in &self.links {
            if from == member || to == member {
                link.set(mode);
            }
        }
    }

    /// Every link back to [`LinkMode::Pass`].
    pub fn heal(&self) {
        for link in self.links.values() {
            link.set(LinkMode::Pass);
        }
    }
}

impl Drop for FaultNet {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn loopback_any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
