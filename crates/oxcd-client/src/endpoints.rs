//! The endpoint set: one lazily (re)connecting channel per endpoint, and which one is in use.
//!
//! Calls go to the current endpoint; a transport failure moves the current endpoint to the
//! next one in the list (failover), and the failed channel reconnects by itself when it is
//! used again. `https://` endpoints get TLS in [`endpoint_for`] (cargo feature `tls`).

use std::collections::HashMap;
use std::sync::Mutex;

use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};
use crate::options::ConnectOptions;

/// The endpoints of one client and a channel for each.
pub(crate) struct Endpoints {
    state: Mutex<State>,
    options: ConnectOptions,
}

struct State {
    /// Endpoint URLs, in failover order.
    urls: Vec<String>,
    /// Index into `urls` of the endpoint calls go to.
    current: usize,
    /// A channel per URL, created on first use.
    channels: HashMap<String, Channel>,
}

/// `host:port` becomes `http://host:port` (`https://` if `tls`); URLs with a scheme stay
/// as they are.
pub(crate) fn normalize_url(url: &str, tls: bool) -> String {
    match (url.contains("://"), tls) {
        (true, _) => url.to_string(),
        (false, false) => format!("http://{url}"),
        (false, true) => format!("https://{url}"),
    }
}

/// The tonic endpoint for `url` with the client's connection options.
pub(crate) fn endpoint_for(url: &str, options: &ConnectOptions) -> Result<Endpoint> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| Error::InvalidArgument(format!("invalid endpoint {url:?}: {e}")))?
        .connect_timeout(options.dial_timeout)
        .tcp_nodelay(true);
    let endpoint = if url.starts_with("https://") {
        secure(url, endpoint, options)?
    } else {
        endpoint
    };
    Ok(match options.keep_alive_interval {
        Some(interval) => endpoint
            .http2_keep_alive_interval(interval)
            .keep_alive_timeout(options.keep_alive_timeout)
            .keep_alive_while_idle(true),
        None => endpoint,
    })
}

#[cfg(feature = "tls")]
fn secure(_url: &str, endpoint: Endpoint, options: &ConnectOptions) -> Result<Endpoint> {
    options.tls.clone().unwrap_or_default().apply(endpoint)
}

#[cfg(not(feature = "tls"))]
fn secure(url: &str, _endpoint: Endpoint, _options: &ConnectOptions) -> Result<Endpoint> {
    Err(Error::InvalidArgument(format!(
        "{url}: TLS needs oxcd-client's cargo feature \"tls\""
    )))
}

impl Endpoints {
    /// An endpoint set over `urls` (at least one, each valid).
    pub(crate) fn new(urls: Vec<String>, options: ConnectOptions) -> Result<Endpoints> {
        if urls.is_empty() {
            return Err(Error::InvalidArgument("no endpoints given".into()));
        }
        for url in &urls {
            endpoint_for(url, &options)?;
        }
        Ok(Endpoints {
            state: Mutex::new(State {
                urls,
                current: 0,
                channels: HashMap::new(),
            }),
            options,
        })
    }

    /// The options the channels were made with.
    pub(crate) fn options(&self) -> &ConnectOptions {
        &self.options
    }

    /// The endpoint URLs, current one included.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.lock().urls.clone()
    }

    /// The current endpoint and its channel.
    pub(crate) fn current(&self) -> Result<(String, Channel)> {
        let mut state = self.lock();
        let url = state.urls[state.current].clone();
        let channel = match state.channels.get(&url) {
            Some(channel) => channel.clone(),
            None => {
                let channel = endpoint_for(&url, &self.options)?.connect_lazy();
                state.channels.insert(url.clone(), channel.clone());
                channel
            }
        };
        Ok((url, channel))
    }

    /// Makes `url` the current endpoint, with an already connected `channel`.
    pub(crate) fn set_current(&self, url: &str, channel: Channel) {
        let mut state = self.lock();
        if let Some(index) = state.urls.iter().position(|u| u == url) {
            state.current = index;
            state.channels.insert(url.to_string(), channel);
        }
    }

    /// `url` failed at the transport level: the next endpoint becomes current.
    pub(crate) fn failed(&self, url: &str) {
        let mut state = self.lock();
        if state.urls[state.current] == url {
            state.current = (state.current + 1) % state.urls.len();
        }
    }

    /// Replaces the endpoint list (member list sync), keeping the current endpoint and the
    /// channels of endpoints that stay. URLs this client cannot use (`https://` without the
    /// `tls` feature, malformed ones) are left out; a list left empty is ignored.
    pub(crate) fn replace(&self, urls: Vec<String>) {
        let urls: Vec<String> = urls
            .into_iter()
            .filter(|url| endpoint_for(url, &self.options).is_ok())
            .collect();
        if urls.is_empty() {
            return;
        }
        let mut state = self.lock();
        let current = state.urls[state.current].clone();
        state.channels.retain(|url, _| urls.contains(url));
        state.current = urls.iter().position(|u| *u == current).unwrap_or(0);
        state.urls = urls;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave `State` inconsistent (every change
        // is a single assignment), so a poisoned lock is still good to use.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(urls: &[&str]) -> Endpoints {
        let urls = urls.iter().map(|u| normalize_url(u, false)).collect();
        Endpoints::new(urls, ConnectOptions::default()).unwrap()
    }

    #[tokio::test]
    async fn failure_moves_to_the_next_endpoint_and_wraps() {
        let e = endpoints(&["a:1", "b:2"]);
        assert_eq!(e.current().unwrap().0, "http://a:1");
        e.failed("http://a:1");
        assert_eq!(e.current().unwrap().0, "http://b:2");
        // A late failure report of an endpoint no longer current changes nothing.
        e.failed("http://a:1");
        assert_eq!(e.current().unwrap().0, "http://b:2");
        e.failed("http://b:2");
        assert_eq!(e.current().unwrap().0, "http://a:1");
    }

    #[tokio::test]
    async fn replace_keeps_the_current_endpoint() {
        let e = endpoints(&["a:1", "b:2"]);
        e.failed("http://a:1");
        e.replace(vec!["http://c:3".into(), "http://b:2".into()]);
        assert_eq!(e.current().unwrap().0, "http://b:2");
        e.replace(vec![]);
        assert_eq!(e.urls(), vec!["http://c:3", "http://b:2"]);
        e.replace(vec!["http://d:4".into(), "http://bad url".into()]);
        assert_eq!(e.urls(), vec!["http://d:4"]);
        assert_eq!(e.current().unwrap().0, "http://d:4");
    }

    #[test]
    fn bad_urls_and_empty_lists_are_rejected() {
        assert!(Endpoints::new(vec![], ConnectOptions::default()).is_err());
        let bad = Endpoints::new(vec!["http://a b".into()], ConnectOptions::default());
        assert!(matches!(bad, Err(Error::InvalidArgument(_))));
        assert_eq!(
            normalize_url("127.0.0.1:2379", false),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            normalize_url("127.0.0.1:2379", true),
            "https://127.0.0.1:2379"
        );
        assert_eq!(normalize_url("http://x:1", true), "http://x:1");
    }
}
