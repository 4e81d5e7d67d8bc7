//! Where a cluster's ports come from: the OS, or a range reserved for one test session.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

/// A source of free loopback ports.
#[derive(Clone, Debug, Default)]
pub enum PortSource {
    /// Ports the OS picks (bound to port 0, then released).
    #[default]
    Os,
    /// Ports taken in order from `next` up to `end` (exclusive), skipping busy ones.
    Range {
        /// The next port to try.
        next: Arc<AtomicU16>,
        /// One past the last usable port.
        end: u16,
    },
}

impl PortSource {
    /// Ports `start..end`.
    pub fn range(start: u16, end: u16) -> PortSource {
        PortSource::Range {
            next: Arc::new(AtomicU16::new(start)),
            end,
        }
    }

    /// This process's block of 1,000 ports below the kernel's ephemeral range (which
    /// starts at 32768 by default), chosen by pid (12000–19999), shared by every caller
    /// in the process. A port the OS picks comes from the ephemeral range, where any
    /// process's outgoing connection can take it between the pick and the server's
    /// bind ("Address already in use"); these ports are taken only by a bind.
    pub fn per_process() -> PortSource {
        static SHARED: std::sync::OnceLock<PortSource> = std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| {
                let start = 12_000 + (std::process::id() % 8) as u16 * 1_000;
                PortSource::range(start, start + 1_000)
            })
            .clone()
    }

    /// A loopback address nobody listens on right now.
    pub fn next(&self) -> std::io::Result<SocketAddr> {
        match self {
            PortSource::Os => TcpListener::bind("127.0.0.1:0")?.local_addr(),
            PortSource::Range { next, end } => loop {
                let port = next.fetch_add(1, Ordering::Relaxed);
                if port >= *end {
                    return Err(std::io::Error::other("port range exhausted"));
                }
                if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                    return l.local_addr();
                }
            },
        }
    }
}
