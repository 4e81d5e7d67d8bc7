//! Discovering the instances of a service: the current ones, then a stream of changes that
//! survives reconnects (and re-lists when it fell behind a compaction).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use oxcd_proto::mvccpb::event::EventType;
use tokio::sync::mpsc;

use super::layout::{parse_instance, service_prefix, Instance};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::kv::GetOptions;
use crate::task::TaskGuard;
use crate::watch::WatchOptions;

/// How many changes a discovery buffers before it waits for its reader.
const CHANGE_BUFFER: usize = 64;

/// A change in the instances of a service.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceChange {
    /// An instance appeared or its address/metadata changed.
    Up(Instance),
    /// The instance with this key is gone.
    Down {
        /// The key of the instance that left.
        key: String,
    },
}

/// The instances of a service, kept current as the stream of changes is read.
///
/// ```no_run
/// # async fn demo(client: oxcd_client::Client) -> oxcd_client::Result<()> {
/// use futures::StreamExt;
/// let mut greeters = client.discover("greeter").await?;
/// for instance in greeters.instances() {
///     println!("{} at {}", instance.key, instance.address);
/// }
/// while let Some(change) = greeters.next().await {
///     println!("{:?}; now {} instances", change?, greeters.instances().count());
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Discovery {
    current: BTreeMap<String, Instance>,
    changes: mpsc::Receiver<Result<ServiceChange>>,
    _task: TaskGuard,
}

impl Client {
    /// The instances of `service` (either key layout), then their changes.
    pub async fn discover(&self, service: &str) -> Result<Discovery> {
        if service.is_empty() {
            return Err(Error::InvalidArgument("empty service name".into()));
        }
        let prefix = service_prefix(service);
        let (current, revision) = list(self, &prefix).await?;
        let (changes_tx, changes) = mpsc::channel(CHANGE_BUFFER);
        let task = TaskGuard::spawn(follow(
            self.clone(),
            prefix,
            current.clone(),
            revision,
            changes_tx,
        ));
        Ok(Discovery {
            current,
            changes,
            _task: task,
        })
    }
}

impl Discovery {
    /// The instances known now (as of the changes read so far), in key order.
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.current.values()
    }

    fn apply(&mut self, change: &ServiceChange) {
        match change {
            ServiceChange::Up(instance) => {
                self.current.insert(instance.key.clone(), instance.clone());
            }
            ServiceChange::Down { key } => {
                self.current.remove(key);
            }
        }
    }
}

impl Stream for Discovery {
    type Item = Result<ServiceChange>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.changes.poll_recv(cx);
        if let Poll::Ready(Some(Ok(change))) = &polled {
            self.apply(change);
        }
        polled
    }
}

/// The instances under `prefix` and the revision they were read at.
async fn list(client: &Client, prefix: &str) -> Result<(BTreeMap<String, Instance>, i64)> {
    let response = client
        .kv()
        .get(prefix, GetOptions::new().with_prefix())
        .await?;
    let revision = response.header.map_or(0, |h| h.revision);
    let instances = response
        .kvs
        .iter()
        .filter_map(|kv| parse_instance(&kv.key, &kv.value))
        .map(|instance| (instance.key.clone(), instance))
        .collect();
    Ok((instances, revision))
}

/// The changes that turn `before` into `after`.
fn diff(
    before: &BTreeMap<String, Instance>,
    after: &BTreeMap<String, Instance>,
) -> Vec<ServiceChange> {
    let gone = before
        .keys()
        .filter(|key| !after.contains_key(*key))
        .map(|key| ServiceChange::Down { key: key.clone() });
    let new = after
        .values()
        .filter(|instance| before.get(&instance.key) != Some(instance))
        .map(|instance| ServiceChange::Up(instance.clone()));
    gone.chain(new).collect()
}

/// Watches `prefix` after `revision`, sending each change; re-lists (sending the
/// difference) when the watch fell behind a compaction.
async fn follow(
    client: Client,
    prefix: String,
    mut known: BTreeMap<String, Instance>,
    mut revision: i64,
    out: mpsc::Sender<Result<ServiceChange>>,
) {
    loop {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut watch = match client.watch().watch(prefix.clone(), options).await {
            Ok(watch) => watch,
            Err(e) => {
                let _ = out.send(Err(e)).await;
                return;
            }
        };
        while let Some(response) = watch.next().await {
            let response = match response {
                Ok(response) => response,
                Err(Error::WatchCompacted { .. }) => break,
                Err(e) => {
                    let _ = out.send(Err(e)).await;
                    return;
                }
            };
            for event in response.events {
                let Some(kv) = event.kv else { continue };
                revision = revision.max(kv.mod_revision);
                let key = String::from_utf8_lossy(&kv.key).into_owned();
                let parsed = (event.r#type == EventType::Put as i32)
                    .then(|| parse_instance(&kv.key, &kv.value))
                    .flatten();
                let change = match parsed {
                    Some(instance) => {
                        known.insert(key, instance.clone());
                        ServiceChange::Up(instance)
                    }
                    None if known.remove(&key).is_some() => ServiceChange::Down { key },
                    None => continue,
                };
                if out.send(Ok(change)).await.is_err() {
                    return;
                }
            }
        }
        // Fell behind a compaction (or the watch ended): list again and send the difference.
        match list(&client, &prefix).await {
            Ok((now, at)) => {
                for change in diff(&known, &now) {
                    if out.send(Ok(change)).await.is_err() {
                        return;
                    }
                }
                known = now;
                revision = at;
            }
            Err(e) => {
                let _ = out.send(Err(e)).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::KeyLayout;

    fn instance(key: &str, address: &str) -> Instance {
        Instance {
            key: key.into(),
            address: address.into(),
            metadata: serde_json::Value::Null,
            layout: KeyLayout::GoZero,
        }
    }

    #[test]
    fn diff_reports_departures_arrivals_and_moves() {
        let before = BTreeMap::from([
            ("s/1".to_string(), instance("s/1", "a:1")),
            ("s/2".to_string(), instance("s/2", "a:2")),
        ]);
        let after = BTreeMap::from([
            ("s/2".to_string(), instance("s/2", "b:2")),
            ("s/3".to_string(), instance("s/3", "a:3")),
        ]);
        assert_eq!(
            diff(&before, &after),
            vec![
                ServiceChange::Down { key: "s/1".into() },
                ServiceChange::Up(instance("s/2", "b:2")),
                ServiceChange::Up(instance("s/3", "a:3")),
            ]
        );
        assert!(diff(&after, &after).is_empty());
    }
}
