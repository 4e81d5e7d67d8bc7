//! Failover in a real three-member etcd 3.4 cluster (`etcd` on PATH or `ETCD_BIN`; ports
//! 24240-24245): the member the client uses dies, and reads, writes, a watch and a lease
//! keep-alive carry on through the others. Without etcd the test says so and passes.

// A test binary: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use futures::StreamExt;
use oxcd_client::{Client, GetOptions, KeeperState, PutOptions, WatchOptions, WatchStream};

use common::{etcd_binary, start_cluster, Member};

/// The keys of the next `n` events of `watch`.
async fn next_keys(watch: &mut WatchStream, n: usize) -> Vec<String> {
    let mut keys = Vec::new();
    while keys.len() < n {
        let response = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .unwrap_or_else(|_| panic!("no event after {keys:?}"))
            .expect("watch open")
            .expect("no watch error");
        for event in response.events {
            keys.push(String::from_utf8(event.kv.expect("kv").key).unwrap());
        }
    }
    keys
}

#[tokio::test]
async fn the_client_carries_on_when_its_member_dies() {
    let Some(bin) = etcd_binary() else {
        eprintln!("skipped: no etcd binary (set ETCD_BIN or put etcd 3.4 on PATH)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let members: Vec<Member> = (0..3)
        .map(|i| Member {
            name: format!("m{i}"),
            client_port: 24240 + 2 * i,
            peer_port: 24241 + 2 * i,
        })
        .collect();
    let mut cluster = start_cluster(&bin, dir.path(), &members);
    let endpoints: Vec<String> = cluster.iter().map(|e| e.endpoint.clone()).collect();
    let client = Client::connect(&endpoints).await.unwrap();
    let kv = client.kv();

    let mut watch = client
        .watch()
        .watch("f/", WatchOptions::new().with_prefix())
        .await
        .unwrap();
    let lease = client.lease().grant(3, 0).await.unwrap().id;
    let keeper = client.lease().keep_alive(lease).await.unwrap();
    for i in 0..3 {
        kv.put(format!("f/{i}"), "v", PutOptions::new())
            .await
            .unwrap();
    }
    let mut seen = next_keys(&mut watch, 3).await;

    // The first endpoint is the one in use; its member dies.
    drop(cluster.remove(0));
    kv.get("f/", GetOptions::new().with_prefix())
        .await
        .expect("a read fails over");
    for i in 3..6 {
        kv.put(format!("f/{i}"), "v", PutOptions::new())
            .await
            .expect("writes go to a live member");
    }
    seen.extend(next_keys(&mut watch, 3).await);
    let expected: Vec<String> = (0..6).map(|i| format!("f/{i}")).collect();
    assert_eq!(
        seen, expected,
        "the watch moved without losing or repeating events"
    );

    // Twice the TTL later the lease is still renewed, through another member.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(matches!(keeper.state(), KeeperState::Alive { .. }));
    let ttl = client.lease().time_to_live(lease, false).await.unwrap();
    assert!(ttl.ttl > 0, "lease expired: {ttl:?}");
}
