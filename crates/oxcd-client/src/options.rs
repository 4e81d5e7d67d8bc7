//! How a [`Client`](crate::Client) connects: timeouts, credentials, keep-alive, member sync.

use std::time::Duration;

/// Options for [`Client::connect_with`](crate::Client::connect_with).
///
/// ```
/// use std::time::Duration;
/// use oxcd_client::ConnectOptions;
///
/// let options = ConnectOptions::new()
///     .with_user("root", "secret")
///     .with_timeout(Duration::from_secs(3))
///     .with_auto_sync(Duration::from_secs(30));
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// How long connecting to one endpoint may take.
    pub dial_timeout: Duration,
    /// The default timeout of each unary call, retries included; `None` = no timeout.
    pub timeout: Option<Duration>,
    /// User name and password; the client authenticates and re-authenticates by itself.
    pub credentials: Option<Credentials>,
    /// Send etcd's `hasleader` metadata on every call by default, so that a member
    /// without a leader fails the call ("etcdserver: no leader") instead of waiting.
    pub require_leader: bool,
    /// HTTP/2 keep-alive ping interval; a dead connection is noticed within about
    /// this interval plus `keep_alive_timeout`. `None` disables pings.
    pub keep_alive_interval: Option<Duration>,
    /// How long a keep-alive ping may stay unanswered before the connection is dropped.
    pub keep_alive_timeout: Duration,
    /// Refresh the endpoint list from the cluster's member list this often; `None` = never
    /// (call [`Client::sync_endpoints`](crate::Client::sync_endpoints) by hand).
    pub auto_sync_interval: Option<Duration>,
    /// TLS for `https://` endpoints; when set, endpoints without a scheme use TLS too.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::TlsOptions>,
}

/// A user name and password for etcd's auth.
#[derive(Clone)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            dial_timeout: Duration::from_secs(5),
            timeout: Some(Duration::from_secs(10)),
            credentials: None,
            require_leader: false,
            keep_alive_interval: Some(Duration::from_secs(10)),
            keep_alive_timeout: Duration::from_secs(5),
            auto_sync_interval: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl ConnectOptions {
    /// The defaults: 5 s dial timeout, 10 s call timeout, no auth, keep-alive pings every 10 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// Authenticate as `user` with `password`.
    pub fn with_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some(Credentials {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// The default timeout of each call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long connecting to one endpoint may take.
    pub fn with_dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// Require a leader for every call by default (etcd's `WithRequireLeader`).
    pub fn with_require_leader(mut self, require: bool) -> Self {
        self.require_leader = require;
        self
    }

    /// HTTP/2 keep-alive pings every `interval`, dropping the connection after `timeout`
    /// without an answer.
    pub fn with_keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive_interval = Some(interval);
        self.keep_alive_timeout = timeout;
        self
    }

    /// Secure the connections with TLS (cargo feature `tls`).
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, tls: crate::tls::TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Whether endpoints without a scheme use TLS.
    pub(crate) fn tls_by_default(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        return false;
    }

    /// Refresh the endpoint list from the member list every `interval`.
    pub fn with_auto_sync(mut self, interval: Duration) -> Self {
        self.auto_sync_interval = Some(interval);
        self
    }
}
