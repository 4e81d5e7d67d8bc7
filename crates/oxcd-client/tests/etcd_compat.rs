//! The client against a real etcd 3.4 (`etcd` on PATH or `ETCD_BIN`; ports 24288-24289):
//! the services oxcd does not serve yet (snapshot, hash), and option builders whose effect
//! etcd defines. Without etcd the test says so and passes.

// A test binary: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use futures::StreamExt;
use oxcd_client::{Client, GetOptions, PutOptions, SortBy, SortOrderBy, WatchOptions};

use common::{etcd_binary, start_etcd};

const CLIENT_PORT: u16 = 24288;

#[tokio::test]
async fn etcd_answers_as_the_builders_say() {
    let Some(bin) = etcd_binary() else {
        eprintln!("skipped: no etcd binary (set ETCD_BIN or put etcd 3.4 on PATH)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = start_etcd(&bin, dir.path(), CLIENT_PORT, &[]);
    let client = Client::connect([&etcd.endpoint]).await.unwrap();
    let kv = client.kv();

    let synced = client.sync_endpoints().await.unwrap();
    assert_eq!(synced, vec![format!("http://{}", etcd.endpoint)]);

    let lease = client.lease().grant(60, 0).await.unwrap().id;
    for (key, value) in [("s/b", "2"), ("s/a", "3"), ("s/c", "1")] {
        kv.put(key, value, PutOptions::new().with_lease(lease))
            .await
            .unwrap();
    }
    let sorted = kv
        .get(
            "s/",
            GetOptions::new()
                .with_prefix()
                .with_sort(SortBy::Value, SortOrderBy::Descend)
                .with_limit(2)
                .with_keys_only(),
        )
        .await
        .unwrap();
    let keys: Vec<&[u8]> = sorted.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, vec![&b"s/a"[..], &b"s/b"[..]]);
    assert!(sorted.more && sorted.kvs.iter().all(|kv| kv.value.is_empty()));

    // Keep-alive streams work with gRPC-Go servers, which answer the opening of a stream
    // only with the first response.
    let mut keeper = client.lease().keep_alive(lease).await.unwrap();
    assert_eq!(keeper.next_renewal().await.unwrap(), 60);

    let ttl = client.lease().time_to_live(lease, true).await.unwrap();
    assert_eq!(ttl.keys.len(), 3);
    assert_eq!(client.lease().leases().await.unwrap().leases.len(), 1);

    let mut watch = client
        .watch()
        .watch("s/a", WatchOptions::new().with_prev_kv())
        .await
        .unwrap();
    kv.put("s/a", "4", PutOptions::new().with_ignore_lease())
        .await
        .unwrap();
    let event = watch.next().await.unwrap().unwrap();
    assert_eq!(event.events[0].prev_kv.as_ref().unwrap().value, b"3");
    assert_eq!(event.events[0].kv.as_ref().unwrap().lease, lease);

    let maintenance = client.maintenance();
    let status = maintenance.status().await.unwrap();
    assert!(status.version.starts_with("3.4"), "{}", status.version);
    let hash = maintenance.hash_kv(0).await.unwrap();
    assert_ne!(hash.hash, 0);
    let mut snapshot = maintenance.snapshot().await.unwrap();
    let mut bytes = 0;
    let mut remaining = u64::MAX;
    while let Some(chunk) = snapshot.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.blob.len() as u64;
        remaining = chunk.remaining_bytes;
    }
    assert_eq!(remaining, 0);
    assert!(
        bytes as i64 >= status.db_size,
        "{bytes} bytes of a {} byte db",
        status.db_size
    );
}
