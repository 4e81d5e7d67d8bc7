//! Registering a service instance under a lease that is kept alive, re-created when lost,
//! and revoked on deregistration or drop.

use std::collections::BTreeMap;

use tokio::sync::{oneshot, watch};

use super::layout::{instance_key, instance_value, KeyLayout};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::kv::PutOptions;
use crate::lease::LeaseKeeper;
use crate::task::Backoff;

/// go-zero's default registration TTL, in seconds.
pub const DEFAULT_REGISTRATION_TTL: i64 = 10;

/// What to register: a service name, where the instance listens, and how to store it.
///
/// ```
/// use oxcd_client::{KeyLayout, ServiceInstance};
/// let instance = ServiceInstance::new("greeter", "10.0.0.7:50051")
///     .with_metadata("zone", "eu-1")
///     .with_ttl(5);
/// let go_zero = ServiceInstance::new("user.rpc", "10.0.0.7:8080").with_layout(KeyLayout::GoZero);
/// # let _ = (instance, go_zero);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInstance {
    service: String,
    instance: String,
    address: String,
    metadata: BTreeMap<String, String>,
    ttl: i64,
    layout: KeyLayout,
}

impl ServiceInstance {
    /// `service` reachable at `address`; etcd's layout, key `<service>/<address>`, 10 s TTL.
    pub fn new(service: impl Into<String>, address: impl Into<String>) -> Self {
        ServiceInstance {
            service: service.into(),
            instance: String::new(),
            address: address.into(),
            metadata: BTreeMap::new(),
            ttl: DEFAULT_REGISTRATION_TTL,
            layout: KeyLayout::default(),
        }
    }
    /// Names the instance: the key becomes `<service>/<instance>` in either layout
    /// (default: the address in etcd's layout, the lease id in go-zero's).
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = instance.into();
        self
    }
    /// Adds a metadata entry (stored in etcd's layout only).
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
    /// The lease TTL in seconds: how long the instance stays listed after its process died.
    pub fn with_ttl(mut self, ttl: i64) -> Self {
        self.ttl = ttl;
        self
    }
    /// The key layout.
    pub fn with_layout(mut self, layout: KeyLayout) -> Self {
        self.layout = layout;
        self
    }

    fn key(&self, lease_id: i64) -> String {
        let instance = match (self.layout, self.instance.is_empty()) {
            (KeyLayout::EtcdEndpoints, true) => self.address.as_str(),
            _ => self.instance.as_str(),
        };
        instance_key(&self.service, self.layout, instance, lease_id)
    }

    fn validate(&self) -> Result<()> {
        if self.service.is_empty() || self.address.is_empty() {
            return Err(Error::InvalidArgument(
                "a registration needs a service name and an address".into(),
            ));
        }
        if self.ttl <= 0 {
            return Err(Error::InvalidArgument(format!(
                "registration TTL must be positive, not {}",
                self.ttl
            )));
        }
        Ok(())
    }
}

/// Where a registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationState {
    /// Listed under `key`, kept alive by lease `lease_id`.
    Registered {
        /// The instance's key.
        key: String,
        /// The lease the key lives under.
        lease_id: i64,
    },
    /// The lease was lost (expired while the cluster was unreachable, or revoked); the
    /// instance is being registered again.
    Reregistering,
    /// Deregistered; the key is gone.
    Deregistered,
}

/// A live registration. It keeps its lease alive, registers again by itself when the lease
/// is lost, and deregisters (revokes the lease, deleting the key) on
/// [`deregister`](Registration::deregister) or, in the background, on drop. A drop just
/// before the tokio runtime stops may not get to revoke: the key then lives out its TTL;
/// call `deregister().await` on the way out to be sure.
#[derive(Debug)]
pub struct Registration {
    state: watch::Receiver<RegistrationState>,
    shutdown: Option<oneshot::Sender<oneshot::Sender<Result<()>>>>,
}

impl Client {
    /// Registers `instance` and keeps it registered until the returned handle is
    /// deregistered or dropped. Fails if the first registration fails.
    pub async fn register(&self, instance: ServiceInstance) -> Result<Registration> {
        instance.validate()?;
        let (lease_id, keeper, key) = register_once(self, &instance).await?;
        let (state_tx, state) = watch::channel(RegistrationState::Registered { key, lease_id });
        let (shutdown, shutdown_rx) = oneshot::channel();
        tokio::spawn(keep_registered(
            self.clone(),
            instance,
            keeper,
            state_tx,
            shutdown_rx,
        ));
        Ok(Registration {
            state,
            shutdown: Some(shutdown),
        })
    }
}

impl Registration {
    /// Where the registration stands now.
    pub fn state(&self) -> RegistrationState {
        self.state.borrow().clone()
    }

    /// The instance's key while registered.
    pub fn key(&self) -> Option<String> {
        match &*self.state.borrow() {
            RegistrationState::Registered { key, .. } => Some(key.clone()),
            _ => None,
        }
    }

    /// Waits for the next change of state and returns it.
    pub async fn changed(&mut self) -> RegistrationState {
        // The sender lives until the task ends, after its last change.
        let _ = self.state.changed().await;
        self.state()
    }

    /// Removes the instance (revokes its lease) and stops keeping it alive.
    pub async fn deregister(mut self) -> Result<()> {
        let Some(shutdown) = self.shutdown.take() else {
            return Ok(());
        };
        let (done, done_rx) = oneshot::channel();
        if shutdown.send(done).is_err() {
            return Err(Error::Closed);
        }
        done_rx.await.unwrap_or(Err(Error::Closed))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The task revokes the lease on its own; nobody waits for the outcome.
            let (done, _) = oneshot::channel();
            let _ = shutdown.send(done);
        }
    }
}

/// Grants a lease, writes the instance's key under it and starts its keep-alive.
async fn register_once(
    client: &Client,
    instance: &ServiceInstance,
) -> Result<(i64, LeaseKeeper, String)> {
    let lease = client.lease();
    let lease_id = lease.grant(instance.ttl, 0).await?.id;
    let key = instance.key(lease_id);
    let value = instance_value(instance.layout, &instance.address, &instance.metadata);
    let written = async {
        client
            .kv()
            .put(key.clone(), value, PutOptions::new().with_lease(lease_id))
            .await?;
        lease.keep_alive(lease_id).await
    }
    .await;
    match written {
        Ok(keeper) => Ok((lease_id, keeper, key)),
        Err(e) => {
            // Do not leave a half-made registration behind.
            let _ = lease.revoke(lease_id).await;
            Err(e)
        }
    }
}

/// Keeps the registration alive until shutdown, registering again whenever the lease is lost.
async fn keep_registered(
    client: Client,
    instance: ServiceInstance,
    mut keeper: LeaseKeeper,
    state: watch::Sender<RegistrationState>,
    mut shutdown: oneshot::Receiver<oneshot::Sender<Result<()>>>,
) {
    let mut backoff = Backoff::new();
    loop {
        tokio::select! {
            _ = keeper.lost() => {}
            request = &mut shutdown => {
                let lease_id = keeper.id();
                drop(keeper);
                let outcome = client.lease().revoke(lease_id).await.map(|_| ());
                let outcome = match outcome {
                    Err(e) if e.kind() == crate::ErrorKind::LeaseNotFound => Ok(()),
                    other => other,
                };
                state.send_replace(RegistrationState::Deregistered);
                if let Ok(done) = request {
                    let _ = done.send(outcome);
                }
                return;
            }
        }
        state.send_replace(RegistrationState::Reregistering);
        // A registration attempt runs to its end (its calls have timeouts), so that a
        // shutdown never leaves a fresh lease behind without revoking it.
        loop {
            match register_once(&client, &instance).await {
                Ok((lease_id, new_keeper, key)) => {
                    keeper = new_keeper;
                    backoff.reset();
                    state.send_replace(RegistrationState::Registered { key, lease_id });
                    break;
                }
                Err(_) => {
                    tokio::select! {
                        _ = backoff.wait() => {}
                        request = &mut shutdown => {
                            state.send_replace(RegistrationState::Deregistered);
                            if let Ok(done) = request {
                                let _ = done.send(Ok(()));
                            }
                            return;
                        }
                    }
                }
            }
        }
    }
}
