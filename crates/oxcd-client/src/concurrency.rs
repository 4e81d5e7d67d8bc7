//! Locks and elections done by the client on leases and create revisions, as Go's
//! `clientv3/concurrency` package does them (same keys, so Go and Rust processes can share a
//! lock or an election).
//!
//! A [`Session`] is a kept-alive lease. A [`Mutex`] or [`Election`] candidate is a key
//! `<prefix>/<lease id in hex>` under that lease; the key with the lowest create revision
//! holds the lock (leads), and the others wait for the key just before theirs to go.

use futures::{Stream, StreamExt};
use oxcd_proto::etcdserverpb::response_op::Response as OpResponse;
use oxcd_proto::etcdserverpb::ResponseHeader;
use oxcd_proto::mvccpb::event::EventType;
use oxcd_proto::mvccpb::KeyValue;

use crate::client::Client;
use crate::error::{Error, ErrorKind, Result};
use crate::kv::{DeleteOptions, GetOptions, PutOptions, SortBy, SortOrderBy};
use crate::lease::{KeeperState, LeaseKeeper};
use crate::task::TaskGuard;
use crate::txn::{Compare, CompareOp, Txn, TxnOp};
use crate::watch::WatchOptions;

/// Go's default session TTL, in seconds.
pub const DEFAULT_SESSION_TTL: i64 = 60;

/// A lease kept alive for as long as the session lives: the keys of its locks and election
/// candidacies vanish when the process holding it dies.
#[derive(Debug)]
pub struct Session {
    client: Client,
    keeper: LeaseKeeper,
}

impl Session {
    /// Grants a lease of `ttl` seconds and keeps it alive.
    pub async fn new(client: &Client, ttl: i64) -> Result<Session> {
        let lease = client.lease();
        let id = lease.grant(ttl, 0).await?.id;
        let keeper = lease.keep_alive(id).await?;
        Ok(Session {
            client: client.clone(),
            keeper,
        })
    }

    /// The session's lease.
    pub fn lease_id(&self) -> i64 {
        self.keeper.id()
    }

    /// The client the session uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the lease is still known to be alive.
    pub fn is_alive(&self) -> bool {
        matches!(self.keeper.state(), KeeperState::Alive { .. })
    }

    /// Waits until the lease is lost (the session's locks and candidacies are then gone).
    pub async fn lost(&mut self) -> Error {
        self.keeper.lost().await
    }

    /// Ends the session, revoking its lease (releasing its locks at once).
    pub async fn close(self) -> Result<()> {
        let id = self.lease_id();
        drop(self.keeper);
        match self.client.lease().revoke(id).await {
            Err(e) if e.kind() != ErrorKind::LeaseNotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The candidate key of this session under `prefix` (Go's `pfx + fmt.Sprintf("%x", lease)`).
    fn key_under(&self, prefix: &[u8]) -> Vec<u8> {
        [prefix, format!("{:x}", self.lease_id()).as_bytes()].concat()
    }
}

/// A distributed lock under a key prefix (Go's `concurrency.Mutex`).
#[derive(Debug)]
pub struct Mutex {
    prefix: Vec<u8>,
    key: Vec<u8>,
    revision: i64,
    client: Client,
    lease_id: i64,
}

impl Mutex {
    /// A lock named `prefix`, taken through `session`.
    pub fn new(session: &Session, prefix: impl Into<Vec<u8>>) -> Mutex {
        let mut prefix = prefix.into();
        prefix.push(b'/');
        Mutex {
            key: session.key_under(&prefix),
            prefix,
            revision: 0,
            client: session.client.clone(),
            lease_id: session.lease_id(),
        }
    }

    /// Waits until this session holds the lock. If waiting fails, the candidacy is withdrawn.
    pub async fn lock(&mut self) -> Result<()> {
        let (revision, owner) =
            candidacy(&self.client, &self.prefix, &self.key, self.lease_id, b"").await?;
        self.revision = revision;
        if owner.is_some_and(|kv| kv.create_revision == revision) {
            return Ok(());
        }
        if let Err(e) = wait_for_predecessors(&self.client, &self.prefix, revision - 1).await {
            let _ = self.unlock().await;
            return Err(e);
        }
        // The session may have expired while waiting: then the key is gone.
        let mine = self
            .client
            .kv()
            .get(self.key.clone(), GetOptions::new())
            .await?;
        if mine.kvs.is_empty() {
            return Err(Error::LeaseLost {
                lease_id: self.lease_id,
            });
        }
        Ok(())
    }

    /// Releases the lock (or withdraws a waiting candidacy).
    pub async fn unlock(&mut self) -> Result<()> {
        self.client
            .kv()
            .delete(self.key.clone(), DeleteOptions::new())
            .await?;
        self.revision = 0;
        Ok(())
    }

    /// The key this session holds (or waits with).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The create revision of the key while locked (0 when not).
    pub fn revision(&self) -> i64 {
        self.revision
    }
}

/// Leader election under a key prefix (Go's `concurrency.Election`).
#[derive(Debug)]
pub struct Election {
    prefix: Vec<u8>,
    client: Client,
    lease_id: i64,
    key: Vec<u8>,
    /// The create revision of the leader key while leading; 0 when not.
    leader_revision: i64,
}

impl Election {
    /// An election named `prefix`, joined through `session`.
    pub fn new(session: &Session, prefix: impl Into<Vec<u8>>) -> Election {
        let mut prefix = prefix.into();
        prefix.push(b'/');
        Election {
            key: session.key_under(&prefix),
            prefix,
            client: session.client.clone(),
            lease_id: session.lease_id(),
            leader_revision: 0,
        }
    }

    /// Waits until this session leads, then announces `value`.
    pub async fn campaign(&mut self, value: impl Into<Vec<u8>>) -> Result<()> {
        let value = value.into();
        let (revision, existing) =
            candidacy(&self.client, &self.prefix, &self.key, self.lease_id, &value).await?;
        self.leader_revision = revision;
        // Campaigning again with the same session: keep the key, update its value.
        let mine = self
            .client
            .kv()
            .get(self.key.clone(), GetOptions::new())
            .await?;
        if mine.kvs.first().is_some_and(|kv| kv.value != value) {
            self.proclaim(value.clone()).await?;
        }
        if existing.is_some_and(|kv| kv.create_revision == revision) {
            return Ok(());
        }
        if let Err(e) = wait_for_predecessors(&self.client, &self.prefix, revision - 1).await {
            let _ = self.resign().await;
            return Err(e);
        }
        Ok(())
    }

    /// Announces a new value while leading; fails with [`ErrorKind::NotLeader`] when this
    /// session does not lead.
    pub async fn proclaim(&self, value: impl Into<Vec<u8>>) -> Result<()> {
        if self.leader_revision == 0 {
            return Err(not_leader());
        }
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.key.clone(),
                CompareOp::Equal,
                self.leader_revision,
            )])
            .and_then([TxnOp::put(
                self.key.clone(),
                value,
                PutOptions::new().with_lease(self.lease_id),
            )]);
        if !self.client.kv().txn(txn).await?.succeeded {
            return Err(not_leader());
        }
        Ok(())
    }

    /// Steps down (deleting this session's candidate key).
    pub async fn resign(&mut self) -> Result<()> {
        if self.leader_revision == 0 {
            return Ok(());
        }
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.key.clone(),
                CompareOp::Equal,
                self.leader_revision,
            )])
            .and_then([TxnOp::delete(self.key.clone(), DeleteOptions::new())]);
        self.client.kv().txn(txn).await?;
        self.leader_revision = 0;
        Ok(())
    }

    /// The current leader's key-value; [`ErrorKind::KeyNotFound`] without a leader.
    pub async fn leader(&self) -> Result<KeyValue> {
        first_created(&self.client, &self.prefix)
            .await?
            .1
            .ok_or_else(no_leader)
    }

    /// The leader's key-value now and after every change (new leader or new value), until
    /// the returned stream is dropped.
    pub fn observe(&self) -> Observation {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let client = self.client.clone();
        let prefix = self.prefix.clone();
        let task = TaskGuard::spawn(async move {
            if let Err(e) = observe_loop(&client, &prefix, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Observation {
            leaders: rx,
            _task: task,
        }
    }

    /// This session's candidate key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

/// The leaders of an election as they change; see [`Election::observe`].
#[derive(Debug)]
pub struct Observation {
    leaders: tokio::sync::mpsc::Receiver<Result<KeyValue>>,
    _task: TaskGuard,
}

impl Stream for Observation {
    type Item = Result<KeyValue>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.leaders.poll_recv(cx)
    }
}

fn not_leader() -> Error {
    Error::Server {
        kind: ErrorKind::NotLeader,
        code: tonic::Code::FailedPrecondition,
        message: "election: not leader".into(),
    }
}

fn no_leader() -> Error {
    Error::Server {
        kind: ErrorKind::KeyNotFound,
        code: tonic::Code::NotFound,
        message: "election: no leader".into(),
    }
}

/// Puts `key` under the lease unless it exists; returns its create revision and the
/// first-created key under `prefix` (Go's Mutex.Lock / Election.Campaign txn).
async fn candidacy(
    client: &Client,
    prefix: &[u8],
    key: &[u8],
    lease_id: i64,
    value: &[u8],
) -> Result<(i64, Option<KeyValue>)> {
    let first = GetOptions::new()
        .with_prefix()
        .with_sort(SortBy::CreateRevision, SortOrderBy::Ascend)
        .with_limit(1);
    let txn = Txn::new()
        .when([Compare::create_revision(key.to_vec(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(
                key.to_vec(),
                value.to_vec(),
                PutOptions::new().with_lease(lease_id),
            ),
            TxnOp::get(prefix.to_vec(), first.clone()),
        ])
        .or_else([
            TxnOp::get(key.to_vec(), GetOptions::new()),
            TxnOp::get(prefix.to_vec(), first),
        ]);
    let response = client.kv().txn(txn).await?;
    let mut ops = response.responses.into_iter().map(|op| op.response);
    let revision = match ops.next().flatten() {
        Some(OpResponse::ResponsePut(_)) => response.header.map_or(0, |h| h.revision),
        Some(OpResponse::ResponseRange(mine)) => {
            mine.kvs.first().map_or(0, |kv| kv.create_revision)
        }
        _ => 0,
    };
    let owner = match ops.next().flatten() {
        Some(OpResponse::ResponseRange(owner)) => owner.kvs.into_iter().next(),
        _ => None,
    };
    Ok((revision, owner))
}

/// The header and the first-created key under `prefix`.
async fn first_created(
    client: &Client,
    prefix: &[u8],
) -> Result<(Option<ResponseHeader>, Option<KeyValue>)> {
    let options = GetOptions::new()
        .with_prefix()
        .with_sort(SortBy::CreateRevision, SortOrderBy::Ascend)
        .with_limit(1);
    let response = client.kv().get(prefix.to_vec(), options).await?;
    Ok((response.header, response.kvs.into_iter().next()))
}

/// Waits until no key under `prefix` created at or before `max_create_revision` is left
/// (Go's `waitDeletes`): waits for the latest such key to go, then looks again.
async fn wait_for_predecessors(
    client: &Client,
    prefix: &[u8],
    max_create_revision: i64,
) -> Result<()> {
    loop {
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortBy::CreateRevision, SortOrderBy::Descend)
            .with_max_create_revision(max_create_revision)
            .with_limit(1);
        let response = client.kv().get(prefix.to_vec(), options).await?;
        let Some(last) = response.kvs.into_iter().next() else {
            return Ok(());
        };
        let revision = response.header.map_or(0, |h| h.revision);
        wait_for_delete(client, last.key, revision).await?;
    }
}

/// Waits for a delete of `key` at or after `revision`.
async fn wait_for_delete(client: &Client, key: Vec<u8>, revision: i64) -> Result<()> {
    let options = WatchOptions::new()
        .with_start_revision(revision)
        .with_no_put();
    let mut events = client.watch().watch(key, options).await?;
    while let Some(response) = events.next().await {
        if response?
            .events
            .iter()
            .any(|e| e.r#type == EventType::Delete as i32)
        {
            return Ok(());
        }
    }
    Err(Error::Closed)
}

/// Sends the leader now and after every change, until the receiver is gone.
async fn observe_loop(
    client: &Client,
    prefix: &[u8],
    out: &tokio::sync::mpsc::Sender<Result<KeyValue>>,
) -> Result<()> {
    loop {
        let (header, first) = first_created(client, prefix).await?;
        let revision = header.map_or(0, |h| h.revision);
        let leader = match first {
            Some(leader) => leader,
            None => {
                // No leader: wait for the first candidate to appear.
                let options = WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1)
                    .with_no_delete();
                let mut puts = client.watch().watch(prefix.to_vec(), options).await?;
                let mut found = None;
                while let Some(response) = puts.next().await {
                    if let Some(kv) = response?.events.into_iter().find_map(|e| e.kv) {
                        found = Some(kv);
                        break;
                    }
                }
                found.ok_or(Error::Closed)?
            }
        };
        if out.send(Ok(leader.clone())).await.is_err() {
            return Ok(());
        }
        // Follow this leader's key until it goes.
        let options = WatchOptions::new().with_start_revision(leader.mod_revision + 1);
        let mut changes = client.watch().watch(leader.key.clone(), options).await?;
        'leader: while let Some(response) = changes.next().await {
            for event in response?.events {
                if event.r#type == EventType::Delete as i32 {
                    break 'leader;
                }
                if let Some(kv) = event.kv {
                    if out.send(Ok(kv)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}
