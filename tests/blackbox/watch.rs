//! The Watch API over the wire: etcd's responses, history, compaction, slow consumers and
//! resuming across a restart.

use std::time::Duration;

use oxcd_proto::etcdserverpb::watch_client::WatchClient;
use oxcd_proto::etcdserverpb::{
    watch_create_request::FilterType, watch_request::RequestUnion, CompactionRequest,
    DeleteRangeRequest, PutRequest, WatchCancelRequest, WatchCreateRequest, WatchProgressRequest,
    WatchRequest, WatchResponse,
};
use oxcd_proto::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tonic::Streaming;

use crate::harness::Server;

/// One client watch stream.
struct Ws {
    tx: mpsc::Sender<WatchRequest>,
    rx: Streaming<WatchResponse>,
}

impl Ws {
    async fn open(s: &Server) -> Ws {
        let mut c = WatchClient::connect(s.endpoint()).await.expect("connect");
        let (tx, rx) = mpsc::channel(16);
        let rx = c
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("watch")
            .into_inner();
        Ws { tx, rx }
    }

    async fn send(&self, u: RequestUnion) {
        self.tx
            .send(WatchRequest {
                request_union: Some(u),
            })
            .await
            .expect("send");
    }

    async fn create(&self, c: WatchCreateRequest) {
        self.send(RequestUnion::CreateRequest(c)).await;
    }

    async fn next(&mut self) -> WatchResponse {
        tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("no watch response within 10s")
            .expect("stream error")
            .expect("stream ended")
    }

    async fn none_within(&mut self, d: Duration) {
        if let Ok(r) = tokio::time::timeout(d, self.rx.message()).await {
            panic!("unexpected response {r:?}");
        }
    }
}

fn watch(key: &str) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.into(),
        ..Default::default()
    }
}

async fn put(s: &Server, k: &str, v: &str) -> i64 {
    s.kv()
        .await
        .put(PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision
}

/// (type, key, value, mod_revision) of each event.
fn evs(r: &WatchResponse) -> Vec<(i32, String, String, i64)> {
    r.events
        .iter()
        .map(|e| {
            let kv = e.kv.clone().unwrap();
            (
                e.r#type,
                String::from_utf8_lossy(&kv.key).into(),
                String::from_utf8_lossy(&kv.value).into(),
                kv.mod_revision,
            )
        })
        .collect()
}

const PUT: i32 = EventType::Put as i32;
const DEL: i32 = EventType::Delete as i32;

#[tokio::test]
async fn watch_key_prefix_created_cancel_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let mut ws = Ws::open(&s).await;
    ws.create(watch("k")).await;
    let r = ws.next().await;
    assert!(r.created && !r.canceled);
    assert_eq!(r.watch_id, 0, "ids start at 0 per stream");
    let h = r.header.unwrap();
    assert_eq!(h.revision, 1);
    assert_ne!(h.cluster_id, 0);
    assert_ne!(h.member_id, 0);
    ws.create(WatchCreateRequest {
        key: "p/".into(),
        range_end: "p0".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(ws.next().await.watch_id, 1);

    put(&s, "k", "v1").await;
    let r = ws.next().await;
    assert_eq!(r.watch_id, 0);
    assert_eq!(evs(&r), vec![(PUT, "k".into(), "v1".into(), 2)]);
    assert_eq!(r.header.unwrap().revision, 2);
    put(&s, "p/a", "x").await;
    let r = ws.next().await;
    assert_eq!(
        (r.watch_id, evs(&r)),
        (1, vec![(PUT, "p/a".into(), "x".into(), 3)])
    );

    // A txn-like multi-key delete: all events of the revision in one response.
    put(&s, "p/b", "y").await;
    assert_eq!(ws.next().await.events.len(), 1);
    s.kv()
        .await
        .delete_range(DeleteRangeRequest {
            key: "p/".into(),
            range_end: "p0".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = ws.next().await;
    assert_eq!(
        evs(&r),
        vec![
            (DEL, "p/a".into(), "".into(), 5),
            (DEL, "p/b".into(), "".into(), 5)
        ]
    );

    // Duplicate client-chosen id and an empty range: etcd's errors.
    ws.create(WatchCreateRequest {
        key: "x".into(),
        watch_id: 1,
        ..Default::default()
    })
    .await;
    let r = ws.next().await;
    assert!(r.created && r.canceled);
    assert_eq!(r.watch_id, -1);
    assert_eq!(
        r.cancel_reason,
        "mvcc: duplicate watch ID provided on the WatchStream"
    );
    ws.create(WatchCreateRequest {
        key: "b".into(),
        range_end: "a".into(),
        ..Default::default()
    })
    .await;
    let r = ws.next().await;
    assert_eq!(r.cancel_reason, "mvcc: watcher range is empty");

    ws.send(RequestUnion::CancelRequest(WatchCancelRequest {
        watch_id: 0,
    }))
    .await;
    let r = ws.next().await;
    assert!(r.canceled && !r.created);
    assert_eq!(r.watch_id, 0);
    put(&s, "k", "v2").await;
    ws.none_within(Duration::from_millis(300)).await;

    ws.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
        .await;
    let r = ws.next().await;
    assert_eq!(r.watch_id, -1);
    assert!(r.events.is_empty());
    assert_eq!(r.header.unwrap().revision, 6);
}

#[tokio::test]
async fn watch_history_filters_prev_kv_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    put(&s, "a", "1").await; // 2
    put(&s, "a", "2").await; // 3
    s.kv()
        .await
        .delete_range(DeleteRangeRequest {
            key: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap(); // 4
    put(&s, "a", "3").await; // 5

    let mut ws = Ws::open(&s).await;
    ws.create(WatchCreateRequest {
        key: "a".into(),
        start_revision: 2,
        prev_kv: true,
        ..Default::default()
    })
    .await;
    assert!(ws.next().await.created);
    let mut got = Vec::new();
    while got.len() < 4 {
        let r = ws.next().await;
        for e in &r.events {
            got.push((
                e.r#type,
                e.kv.as_ref().unwrap().mod_revision,
                e.prev_kv.as_ref().map(|p| p.value.clone()),
            ));
        }
    }
    assert_eq!(
        got,
        vec![
            (PUT, 2, None),
            (PUT, 3, Some(b"1".to_vec())),
            (DEL, 4, Some(b"2".to_vec())),
            (PUT, 5, None)
        ]
    );

    // NODELETE from history and live; NOPUT filters a put to nothing (nothing sent).
    ws.create(WatchCreateRequest {
        key: "a".into(),
        start_revision: 2,
        filters: vec![FilterType::Nodelete as i32],
        ..Default::default()
    })
    .await;
    assert!(ws.next().await.created);
    let r = ws.next().await;
    assert_eq!(
        r.events.iter().map(|e| e.r#type).collect::<Vec<_>>(),
        vec![PUT, PUT, PUT]
    );
    assert!(r.events.iter().all(|e| e.prev_kv.is_none()));
    ws.create(WatchCreateRequest {
        key: "a".into(),
        filters: vec![FilterType::Noput as i32],
        ..Default::default()
    })
    .await;
    assert!(ws.next().await.created);
    put(&s, "a", "4").await; // 6: watchers 0 and 1 get it, 2 does not
    let mut ids = vec![ws.next().await.watch_id, ws.next().await.watch_id];
    ids.sort();
    assert_eq!(ids, vec![0, 1]);
    ws.none_within(Duration::from_millis(300)).await;

    // A future start revision waits.
    ws.create(WatchCreateRequest {
        key: "a".into(),
        start_revision: 8,
        ..Default::default()
    })
    .await;
    assert_eq!(ws.next().await.watch_id, 3);
    put(&s, "a", "5").await; // 7
    put(&s, "a", "6").await; // 8
    let mut seen = Vec::new();
    for _ in 0..5 {
        let r = ws.next().await;
        seen.push((r.watch_id, r.events[0].kv.as_ref().unwrap().mod_revision));
    }
    seen.sort();
    assert_eq!(seen, vec![(0, 7), (0, 8), (1, 7), (1, 8), (3, 8)]);

    // Compaction: a watch starting below the compact revision is cancelled with it.
    s.kv()
        .await
        .compact(CompactionRequest {
            revision: 6,
            physical: false,
        })
        .await
        .unwrap();
    let mut ws2 = Ws::open(&s).await;
    ws2.create(WatchCreateRequest {
        key: "a".into(),
        start_revision: 3,
        ..Default::default()
    })
    .await;
    assert!(ws2.next().await.created);
    let r = ws2.next().await;
    assert!(r.canceled);
    assert_eq!(r.compact_revision, 6);
    ws2.create(WatchCreateRequest {
        key: "a".into(),
        start_revision: 6,
        ..Default::default()
    })
    .await;
    assert!(ws2.next().await.created);
    let r = ws2.next().await;
    assert_eq!(r.compact_revision, 0);
    assert_eq!(r.events[0].kv.as_ref().unwrap().mod_revision, 6);
}

#[tokio::test]
async fn watch_slow_consumer_never_stalls_others_and_gets_everything() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    // The slow stream never reads while the writes happen; 64 KiB values fill its
    // HTTP/2 window and its queue quickly.
    let mut slow = Ws::open(&s).await;
    slow.create(watch("big")).await;
    let mut fast = Ws::open(&s).await;
    fast.create(watch("big")).await;
    assert!(fast.next().await.created);
    let value = "v".repeat(64 * 1024);
    const N: i64 = 400;
    let first = put(&s, "big", &value).await;
    for _ in 1..N {
        put(&s, "big", &value).await;
    }
    let mut fast_revs = Vec::new();
    while fast_revs.len() < N as usize {
        let r = fast.next().await;
        fast_revs.extend(r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
    }
    assert_eq!(fast_revs, (first..first + N).collect::<Vec<_>>());

    // Now the slow client reads: every event, in order, exactly once.
    assert!(slow.next().await.created);
    let mut revs = Vec::new();
    while revs.len() < N as usize {
        let r = slow.next().await;
        assert!(!r.canceled, "{r:?}");
        revs.extend(r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
    }
    assert_eq!(revs, (first..first + N).collect::<Vec<_>>());
}

#[tokio::test]
async fn watch_resumes_from_last_seen_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let mut ws = Ws::open(&s).await;
    ws.create(WatchCreateRequest {
        key: "r/".into(),
        range_end: "r0".into(),
        ..Default::default()
    })
    .await;
    assert!(ws.next().await.created);
    for i in 0..5 {
        put(&s, &format!("r/{i}"), "x").await;
    }
    let mut last = 0;
    for _ in 0..5 {
        last = ws.next().await.events[0].kv.as_ref().unwrap().mod_revision;
    }
    drop(ws);
    // Missed while disconnected, then a restart.
    for i in 5..8 {
        put(&s, &format!("r/{i}"), "x").await;
    }
    let port = s.port;
    let peer = s.peer_port;
    assert!(s.terminate().success());
    let s = Server::start_with(dir.path(), port, peer, &[]);
    let mut ws = Ws::open(&s).await;
    ws.create(WatchCreateRequest {
        key: "r/".into(),
        range_end: "r0".into(),
        start_revision: last + 1,
        ..Default::default()
    })
    .await;
    assert!(ws.next().await.created);
    let r = ws.next().await;
    let keys: Vec<String> = evs(&r).into_iter().map(|e| e.1).collect();
    assert_eq!(keys, vec!["r/5", "r/6", "r/7"]);
    assert_eq!(r.events[0].kv.as_ref().unwrap().mod_revision, last + 1);
}
