//! Connecting to a peer URL: [`DialOptions`], the test-only address override and the
//! (future) TLS seam.

use std::collections::HashMap;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::PeerError;

/// Environment variable mapping peer URLs to the address actually dialled, **for tests
/// only**: `<peer-url>=<host:port>,...` (e.g.
/// `http://127.0.0.1:2380=127.0.0.1:9001,http://127.0.0.1:2381=127.0.0.1:9002`). A fault
/// harness gives each member process its own map, routing every directed link through a
/// proxy it controls. A warning is logged when it is set.
pub const DIAL_OVERRIDE_ENV: &str = "OXCD_PEER_DIAL_OVERRIDE";

/// How peer connections are secured. Only plain HTTP/2 today: peer TLS (`--peer-cert-file`
/// and friends) plugs in here as another variant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerTls {
    /// No TLS (`http://` peer URLs).
    #[default]
    Plain,
}

/// How to reach peers.
#[derive(Debug, Clone)]
pub struct DialOptions {
    /// Gives up connecting after this long (etcd's peer dial timeout is 1 s).
    pub connect_timeout: Duration,
    /// HTTP/2 ping interval on idle and busy connections: a peer cut off without a
    /// reset (a black hole) is noticed after this plus [`DialOptions::keepalive_timeout`].
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered.
    pub keepalive_timeout: Duration,
    /// Deadline of a single request (a forwarded lease call).
    pub request_timeout: Duration,
    /// Connection security.
    pub tls: PeerTls,
    /// Peer URL -> address dialled instead (see [`DIAL_OVERRIDE_ENV`]).
    pub dial_override: HashMap<String, String>,
}

impl Default for DialOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            keepalive_interval: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            tls: PeerTls::Plain,
            dial_override: HashMap::new(),
        }
    }
}

impl DialOptions {
    /// The defaults, with the override map read from [`DIAL_OVERRIDE_ENV`] if set.
    pub fn from_env() -> Result<Self, PeerError> {
        let mut opts = Self::default();
        if let Ok(spec) = std::env::var(DIAL_OVERRIDE_ENV) {
            opts.dial_override = parse_override(&spec)?;
            tracing::warn!(
                variable = DIAL_OVERRIDE_ENV,
                links = opts.dial_override.len(),
                "peer addresses are overridden: for tests only, never in production"
            );
        }
        Ok(opts)
    }

    /// The URL actually dialled for peer URL `url` (the override applied).
    pub(crate) fn dial_url(&self, url: &str) -> Result<String, PeerError> {
        let key = url.trim_end_matches('/');
        match self.dial_override.get(key) {
            Some(addr) => Ok(format!("http://{addr}")),
            None if key.starts_with("http://") => Ok(key.to_string()),
            None if key.starts_with("https://") => Err(PeerError::Config(format!(
                "peer URL {url}: peer TLS is not supported yet"
            ))),
            None => Err(PeerError::Config(format!(
                "peer URL {url} must start with http://"
            ))),
        }
    }

    /// An endpoint for `url`, with the override applied.
    pub(crate) fn endpoint(&self, url: &str) -> Result<Endpoint, PeerError> {
        let ep = Endpoint::from_shared(self.dial_url(url)?)
            .map_err(|e| PeerError::Config(format!("peer URL {url}: {e}")))?;
        Ok(ep
            .connect_timeout(self.connect_timeout)
            .http2_keep_alive_interval(self.keepalive_interval)
            .keep_alive_timeout(self.keepalive_timeout)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true))
    }

    /// Connects to the first of `urls` that answers.
    pub(crate) async fn connect(&self, urls: &[String]) -> Result<Channel, PeerError> {
        let mut last = PeerError::Unreachable("no peer URL known".into());
        for url in urls {
            match self.endpoint(url)?.connect().await {
                Ok(ch) => return Ok(ch),
                Err(e) => {
                    last = PeerError::Unreachable(format!("{url}: {}", error_chain(&e)));
                }
            }
        }
        Err(last)
    }
}

/// An error with its sources, `a: b: c` (tonic's transport errors say little at the top).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Parses `<peer-url>=<host:port>,...`.
fn parse_override(spec: &str) -> Result<HashMap<String, String>, PeerError> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (url, addr) = pair.rsplit_once('=').ok_or_else(|| {
                PeerError::Config(format!(
                    "{DIAL_OVERRIDE_ENV}: {pair:?} is not <peer-url>=<host:port>"
                ))
            })?;
            if !url.starts_with("http") || addr.is_empty() || addr.contains('/') {
                return Err(PeerError::Config(format!(
                    "{DIAL_OVERRIDE_ENV}: {pair:?} is not <peer-url>=<host:port>"
                )));
            }
            Ok((url.trim_end_matches('/').to_string(), addr.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_override_is_read_from_the_environment() {
        // No other test reads this variable.
        std::env::set_var(DIAL_OVERRIDE_ENV, "http://10.0.0.1:2380=127.0.0.1:9009");
        let opts = DialOptions::from_env();
        std::env::set_var(DIAL_OVERRIDE_ENV, "nonsense");
        let bad = DialOptions::from_env();
        std::env::remove_var(DIAL_OVERRIDE_ENV);
        assert_eq!(
            opts.unwrap().dial_override["http://10.0.0.1:2380"],
            "127.0.0.1:9009"
        );
        assert!(matches!(bad, Err(PeerError::Config(_))));
        assert!(DialOptions::from_env().unwrap().dial_override.is_empty());
    }

    #[test]
    fn the_override_maps_peer_urls_to_proxy_addresses() {
        let map = parse_override(
            "http://127.0.0.1:2380/=127.0.0.1:9001, http://10.0.0.2:2380=127.0.0.1:9002",
        )
        .unwrap();
        assert_eq!(map["http://127.0.0.1:2380"], "127.0.0.1:9001");
        assert_eq!(map["http://10.0.0.2:2380"], "127.0.0.1:9002");
        let opts = DialOptions {
            dial_override: map,
            ..DialOptions::default()
        };
        assert_eq!(
            opts.endpoint("http://127.0.0.1:2380").unwrap().uri(),
            "http://127.0.0.1:9001/"
        );
        assert_eq!(
            opts.endpoint("http://127.0.0.1:2390").unwrap().uri(),
            "http://127.0.0.1:2390/"
        );
        assert!(parse_override("http://a:1").is_err());
        assert!(parse_override("http://a:1=h:1/x").is_err());
        assert!(parse_override("a=b").is_err());
        assert!(matches!(
            opts.endpoint("https://127.0.0.1:2380"),
            Err(PeerError::Config(_))
        ));
    }
}
