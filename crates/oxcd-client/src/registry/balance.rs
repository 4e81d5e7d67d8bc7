//! A tonic [`Channel`] that balances over the discovered instances of a service and follows
//! them as they come and go.

use futures::StreamExt;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};

use super::discover::{Discovery, ServiceChange};
use super::layout::Instance;
use crate::client::Client;
use crate::error::{Error, Result};

/// How many endpoint changes may wait for the balancer.
const CHANGE_BUFFER: usize = 64;

impl Client {
    /// A channel to `service` that spreads calls over its live instances (`http://<address>`),
    /// for any tonic client: `GreeterClient::new(client.balanced_channel("greeter").await?)`.
    pub async fn balanced_channel(&self, service: &str) -> Result<Channel> {
        let discovery = self.discover(service).await?;
        balance(discovery, |instance| {
            Endpoint::from_shared(format!("http://{}", instance.address)).ok()
        })
    }
}

/// A channel over the instances of `discovery`, each reached through the endpoint `endpoint`
/// makes for it (`None` leaves an instance out, e.g. to add TLS or timeouts, or to filter).
///
/// The channel follows the discovery in a background task that ends when every clone of
/// the channel is dropped. While the service has no instance, calls wait for one (bound
/// them with a timeout).
pub fn balance<F>(mut discovery: Discovery, endpoint: F) -> Result<Channel>
where
    F: Fn(&Instance) -> Option<Endpoint> + Send + 'static,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::InvalidArgument(
            "balance needs a tokio runtime".into(),
        ));
    }
    let (channel, changes) = Channel::balance_channel::<String>(CHANGE_BUFFER);
    let initial: Vec<Instance> = discovery.instances().cloned().collect();
    tokio::spawn(async move {
        for instance in &initial {
            if let Some(e) = endpoint(instance) {
                if changes
                    .send(Change::Insert(instance.key.clone(), e))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        while let Some(change) = discovery.next().await {
            let change = match change {
                Ok(ServiceChange::Up(instance)) => match endpoint(&instance) {
                    Some(e) => Change::Insert(instance.key, e),
                    None => Change::Remove(instance.key),
                },
                Ok(ServiceChange::Down { key }) => Change::Remove(key),
                // The discovery ended; the channel keeps the instances it has.
                Err(_) => return,
            };
            if changes.send(change).await.is_err() {
                return;
            }
        }
    });
    Ok(channel)
}
