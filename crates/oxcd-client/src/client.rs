//! [`Client`]: the connection to a cluster, and how every unary call is sent, retried and
//! authenticated.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use oxcd_proto::etcdserverpb::auth_client::AuthClient;
use oxcd_proto::etcdserverpb::cluster_client::ClusterClient;
use oxcd_proto::etcdserverpb::{AuthenticateRequest, MemberListRequest};
use tokio::sync::RwLock;
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::endpoints::{endpoint_for, normalize_url, Endpoints};
use crate::error::{is_transport_failure, never_sent, Error, ErrorKind, Result};
use crate::options::ConnectOptions;

/// etcd's metadata key that makes a member refuse a call while it has no leader
/// (`rpctypes.MetadataRequireLeaderKey`), and its value.
const REQUIRE_LEADER_KEY: &str = "hasleader";
const REQUIRE_LEADER_VALUE: &str = "true";
/// etcd's metadata key carrying the auth token (`rpctypes.TokenFieldNameGRPC`).
const TOKEN_KEY: &str = "token";

/// First pause between two attempts of a retried call; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between two attempts of a retried call.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Attempts of a retried call that has no timeout.
const MAX_ATTEMPTS_WITHOUT_TIMEOUT: u32 = 20;
/// How long logging in may take when calls have no timeout.
const AUTHENTICATE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times one call may re-authenticate.
const MAX_REAUTHENTICATIONS: u32 = 2;

/// Sends one unary gRPC call through [`Client::unary`]:
/// `call!(client, Retry::Safe, request, AuthClient::user_get)`.
/// Responses may be as large as the server makes them (etcd's client allows 2 GiB); tonic's
/// own default is 4 MiB.
macro_rules! call {
    ($client:expr, $retry:expr, $request:expr, $grpc:ident :: $method:ident) => {
        $client
            .unary($retry, $request, |channel, request| async move {
                $grpc::new(channel)
                    .max_decoding_message_size(usize::MAX)
                    .$method(request)
                    .await
            })
            .await
    };
}
pub(crate) use call;

/// Whether a call may be sent again after a failure that may have happened after the
/// server received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads, lease keep-alives, revokes: sending twice does no harm.
    Safe,
    /// Writes: sent again only when the first attempt surely never left the client.
    OnlyIfNeverSent,
}

/// A connection to an etcd-compatible cluster (oxcd or etcd).
///
/// Cheap to clone: clones share the connections, the auth token and the endpoint list.
/// The service handles ([`kv`](Client::kv), [`lease`](Client::lease), [`watch`](Client::watch),
/// ...) borrow nothing and may be kept.
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
    call: CallOptions,
}

/// Per-call settings, changed with [`Client::with_timeout`] and [`Client::with_require_leader`].
#[derive(Debug, Clone, Copy)]
struct CallOptions {
    timeout: Option<Duration>,
    require_leader: bool,
}

/// What all clones of a [`Client`] share.
pub(crate) struct Shared {
    pub(crate) endpoints: Endpoints,
    /// Where logging in stands (only used with credentials).
    login: RwLock<Login>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.shared.endpoints.urls())
            .field("timeout", &self.call.timeout)
            .field("require_leader", &self.call.require_leader)
            .finish()
    }
}

impl Client {
    /// Connects to the first reachable endpoint of `endpoints` (`host:port` or `http://host:port`)
    /// with the default [`ConnectOptions`].
    pub async fn connect<E, S>(endpoints: E) -> Result<Client>
    where
        E: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::connect_with(endpoints, ConnectOptions::default()).await
    }

    /// Connects to the first reachable endpoint of `endpoints` with `options`; fails with
    /// [`Error::Unreachable`] when none answers within the dial timeout.
    pub async fn connect_with<E, S>(endpoints: E, options: ConnectOptions) -> Result<Client>
    where
        E: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let urls: Vec<String> = endpoints
            .into_iter()
            .map(|e| normalize_url(e.as_ref(), options.tls_by_default()))
            .collect();
        let endpoints = Endpoints::new(urls.clone(), options.clone())?;
        let mut last_failure = None;
        for url in &urls {
            match endpoint_for(url, &options)?.connect().await {
                Ok(channel) => {
                    endpoints.set_current(url, channel);
                    last_failure = None;
                    break;
                }
                Err(e) => last_failure = Some((url.clone(), error_chain(&e))),
            }
        }
        if let Some((endpoint, cause)) = last_failure {
            return Err(Error::Unreachable { endpoint, cause });
        }
        let client = Client {
            shared: Arc::new(Shared {
                endpoints,
                login: RwLock::new(Login::Unknown),
            }),
            call: CallOptions {
                timeout: options.timeout,
                require_leader: options.require_leader,
            },
        };
        if options.credentials.is_some() {
            client.authenticate().await?;
        }
        if let Some(interval) = options.auto_sync_interval {
            client.sync_endpoints().await?;
            tokio::spawn(auto_sync(Arc::downgrade(&client.shared), interval));
        }
        Ok(client)
    }

    /// A client that has not connected anywhere, for unit tests of request building.
    #[cfg(test)]
    pub(crate) fn lazy_for_tests() -> Client {
        let options = ConnectOptions::default();
        let endpoints = Endpoints::new(vec!["http://127.0.0.1:1".into()], options.clone())
            .expect("a valid endpoint");
        Client {
            shared: Arc::new(Shared {
                endpoints,
                login: RwLock::new(Login::Unknown),
            }),
            call: CallOptions {
                timeout: options.timeout,
                require_leader: false,
            },
        }
    }

    /// A client for `endpoint` alone, with this client's options (credentials, TLS,
    /// timeouts), for calls about one member (status, defragment, hash). It connects on
    /// first use.
    pub fn pinned_to(&self, endpoint: &str) -> Result<Client> {
        let options = self.shared.endpoints.options().clone();
        let url = normalize_url(endpoint, options.tls_by_default());
        Ok(Client {
            shared: Arc::new(Shared {
                endpoints: Endpoints::new(vec![url], options)?,
                login: RwLock::new(Login::Unknown),
            }),
            call: self.call,
        })
    }

    /// This client with another timeout for each call (retries included).
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            shared: self.shared.clone(),
            call: CallOptions {
                timeout: Some(timeout),
                ..self.call
            },
        }
    }

    /// This client with or without etcd's `hasleader` requirement on each call: with it, a
    /// member that has no leader fails the call with [`ErrorKind::NoLeader`].
    pub fn with_require_leader(&self, require: bool) -> Client {
        Client {
            shared: self.shared.clone(),
            call: CallOptions {
                require_leader: require,
                ..self.call
            },
        }
    }

    /// The endpoints this client may use, in failover order.
    pub fn endpoints(&self) -> Vec<String> {
        self.shared.endpoints.urls()
    }

    /// Replaces the endpoint list with the client URLs of the cluster's members (learners
    /// and URLs this client cannot use left out), as etcd's `Client.Sync`; returns the
    /// members' URLs.
    pub async fn sync_endpoints(&self) -> Result<Vec<String>> {
        let request = MemberListRequest {
            linearizable: false,
        };
        let members = call!(self, Retry::Safe, request, ClusterClient::member_list)?;
        let urls: Vec<String> = members
            .members
            .iter()
            .filter(|m| !m.is_learner)
            .flat_map(|m| m.client_ur_ls.iter().cloned())
            .collect();
        self.shared.endpoints.replace(urls.clone());
        Ok(urls)
    }

    /// The channel to the current endpoint and a request carrying `message` with this
    /// client's metadata (auth token, `hasleader`), logging in first if needed: for gRPC
    /// calls the typed services do not cover, sent by the caller without retries.
    ///
    /// ```no_run
    /// # async fn demo(client: oxcd_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use oxcd_client::proto::etcdserverpb::{kv_client::KvClient, RangeRequest};
    /// let (channel, request) = client.raw_request(RangeRequest { key: b"k".to_vec(), ..Default::default() }).await?;
    /// let response = KvClient::new(channel).range(request).await?;
    /// # let _ = response; Ok(())
    /// # }
    /// ```
    pub async fn raw_request<M>(&self, message: M) -> Result<(Channel, Request<M>)> {
        let (_, channel) = self.shared.endpoints.current()?;
        let mut request = self.request(message).await?;
        if let Some(timeout) = self.call.timeout {
            request.set_timeout(timeout);
        }
        Ok((channel, request))
    }

    /// The connection to the current endpoint, for generated stubs the typed services do not
    /// shape (`oxcd-bench` multiplexes a thousand watchers over a few raw Watch streams).
    /// Calls on it carry no auth token and are not retried.
    pub fn raw_channel(&self) -> Result<Channel> {
        Ok(self.shared.endpoints.current()?.1)
    }

    /// Sends one unary call, retrying as `retry` allows, authenticating when needed.
    pub(crate) async fn unary<M, R, F, Fut>(&self, retry: Retry, message: M, call: F) -> Result<R>
    where
        M: Clone,
        F: Fn(Channel, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let deadline = self.call.timeout.map(|t| Instant::now() + t);
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0;
        let mut reauthentications = 0;
        loop {
            attempts += 1;
            let (endpoint, channel) = self.shared.endpoints.current()?;
            let mut request = self.request(message.clone()).await?;
            let token_used = token_of(&request);
            if let Some(deadline) = deadline {
                request.set_timeout(deadline.saturating_duration_since(Instant::now()));
            }
            let outcome = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, call(channel, request))
                    .await
                {
                    Ok(outcome) => outcome,
                    Err(_) => return Err(Error::Timeout(self.call.timeout.unwrap_or_default())),
                },
                None => call(channel, request).await,
            };
            let status = match outcome {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => status,
            };
            let kind = ErrorKind::from_status(&status);
            if self.needs_reauthentication(kind) && reauthentications < MAX_REAUTHENTICATIONS {
                reauthentications += 1;
                self.forget_token(token_used.as_deref()).await;
                continue;
            }
            if is_transport_failure(&status) {
                self.shared.endpoints.failed(&endpoint);
            }
            let retriable = match retry {
                Retry::Safe => {
                    status.code() == tonic::Code::Unavailable || is_transport_failure(&status)
                }
                Retry::OnlyIfNeverSent => never_sent(&status),
            };
            let time_left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()) > backoff,
                None => attempts < MAX_ATTEMPTS_WITHOUT_TIMEOUT,
            };
            if !retriable || !time_left {
                return Err(Error::from_status(status, &endpoint));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// A request carrying `message` and this client's metadata (auth token, `hasleader`),
    /// authenticating first if the client has credentials but no token.
    pub(crate) async fn request<M>(&self, message: M) -> Result<Request<M>> {
        let token = self.token().await?;
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        if self.call.require_leader {
            metadata.insert(
                REQUIRE_LEADER_KEY,
                MetadataValue::from_static(REQUIRE_LEADER_VALUE),
            );
        }
        if let Some(token) = token {
            let value = MetadataValue::try_from(token.as_str())
                .map_err(|_| Error::InvalidArgument("auth token is not valid metadata".into()))?;
            metadata.insert(TOKEN_KEY, value);
        }
        Ok(request)
    }

    /// The timeout of each call, if any.
    pub(crate) fn call_timeout(&self) -> Option<Duration> {
        self.call.timeout
    }

    /// The current endpoint and its channel, for streams that reconnect by themselves.
    pub(crate) fn channel(&self) -> Result<(String, Channel)> {
        self.shared.endpoints.current()
    }

    /// Tells the endpoint set that `endpoint` failed at the transport level.
    pub(crate) fn endpoint_failed(&self, endpoint: &str) {
        self.shared.endpoints.failed(endpoint);
    }

    /// Whether a failure of `kind` is cured by a new token.
    fn needs_reauthentication(&self, kind: ErrorKind) -> bool {
        self.shared.endpoints.options().credentials.is_some()
            && matches!(
                kind,
                ErrorKind::InvalidAuthToken | ErrorKind::AuthOldRevision | ErrorKind::UserEmpty
            )
    }

    /// Forgets `token_used` after a stream failed with `kind`, if a new token would help;
    /// the next request authenticates again.
    pub(crate) async fn reauthenticate_if_needed(&self, kind: ErrorKind, token_used: Option<&str>) {
        if self.needs_reauthentication(kind) {
            self.forget_token(token_used).await;
        }
    }

    /// Forgets the login a refused call used, so that the next call logs in again (unless
    /// another call has logged in anew meanwhile: its token stays).
    async fn forget_token(&self, token_used: Option<&str>) {
        let mut login = self.shared.login.write().await;
        if login.token().as_deref() == token_used {
            *login = Login::Unknown;
        }
    }

    /// The auth token to send, logging in first when needed.
    async fn token(&self) -> Result<Option<String>> {
        if self.shared.endpoints.options().credentials.is_none() {
            return Ok(None);
        }
        match &*self.shared.login.read().await {
            Login::Token(token) => return Ok(Some(token.clone())),
            Login::AuthDisabled => return Ok(None),
            Login::Unknown => {}
        }
        self.authenticate().await
    }

    /// Logs in with the client's credentials, trying each endpoint once. Auth being off on
    /// the server is not an error: calls then go without a token.
    async fn authenticate(&self) -> Result<Option<String>> {
        let Some(credentials) = self.shared.endpoints.options().credentials.clone() else {
            return Ok(None);
        };
        let mut login = self.shared.login.write().await;
        if *login != Login::Unknown {
            return Ok(login.token());
        }
        let request = AuthenticateRequest {
            name: credentials.user,
            password: credentials.password,
        };
        let limit = self.call.timeout.unwrap_or(AUTHENTICATE_TIMEOUT);
        let mut last_error = Error::Closed;
        for _ in 0..self.shared.endpoints.urls().len() {
            let (endpoint, channel) = self.shared.endpoints.current()?;
            let mut call = Request::new(request.clone());
            call.set_timeout(limit);
            let answer = tokio::time::timeout(limit, AuthClient::new(channel).authenticate(call))
                .await
                .map_err(|_| Error::Timeout(limit))?;
            match answer {
                Ok(response) => {
                    *login = Login::Token(response.into_inner().token);
                    return Ok(login.token());
                }
                Err(status) if ErrorKind::from_status(&status) == ErrorKind::AuthNotEnabled => {
                    *login = Login::AuthDisabled;
                    return Ok(None);
                }
                Err(status) if is_transport_failure(&status) => {
                    self.shared.endpoints.failed(&endpoint);
                    last_error = Error::from_status(status, &endpoint);
                }
                Err(status) => return Err(Error::from_status(status, &endpoint)),
            }
        }
        Err(last_error)
    }
}

/// The auth token a request carries.
pub(crate) fn token_of<M>(request: &Request<M>) -> Option<String> {
    request
        .metadata()
        .get(TOKEN_KEY)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

/// Where a client with credentials stands with the server's auth.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Login {
    /// Not logged in yet, or the last token was refused.
    Unknown,
    /// Logged in; calls carry this token.
    Token(String),
    /// The server said auth is not enabled: calls go without a token until one is refused
    /// for lack of a user ("user name is empty").
    AuthDisabled,
}

impl Login {
    fn token(&self) -> Option<String> {
        match self {
            Login::Token(token) => Some(token.clone()),
            Login::Unknown | Login::AuthDisabled => None,
        }
    }
}

/// Syncs the endpoint list every `interval` while the client lives.
async fn auto_sync(shared: Weak<Shared>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let timeout = shared.endpoints.options().timeout;
        let client = Client {
            shared,
            call: CallOptions {
                timeout,
                require_leader: false,
            },
        };
        // A failed sync keeps the old list; the next round tries again.
        let _ = client.sync_endpoints().await;
    }
}

/// An error and its causes on one line, each text once.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}
