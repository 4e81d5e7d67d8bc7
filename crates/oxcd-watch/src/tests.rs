//! Property test of the hub: random writes, compactions and watchers with random options
//! on tiny stream queues (so watchers park and catch up all the time); every watcher's
//! received events must equal the applied history filtered by its options.

use std::sync::Arc;

use oxcd_mvcc::Store;
use oxcd_proto::etcdserverpb::{
    watch_create_request::FilterType, DeleteRangeRequest, PutRequest, WatchCreateRequest,
};
use oxcd_proto::mvccpb::{event::EventType, Event};
use proptest::prelude::*;
use tokio::sync::mpsc;

use super::{Hub, Outgoing};

/// (type, key, value, mod revision, prev value) of a received event.
type Seen = (i32, Vec<u8>, Vec<u8>, i64, Option<Vec<u8>>);

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Del(u8, bool),
    Compact,
    Watch {
        key: u8,
        kind: u8,
        back: i64,
        filter: u8,
        prev_kv: bool,
    },
    Drain(usize),
    /// Stage the following writes without publishing them (until `Defer(false)` or a
    /// drain), as the applier publishes a batch of revisions after one backend commit.
    Defer(bool),
    /// A put the hub never sees, then `Hub::restore`: the backend moved ahead by a
    /// snapshot from the leader. Watchers must still get it, once.
    Unseen(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..6, any::<bool>()).prop_map(|(k, r)| Op::Del(k, r)),
        1 => Just(Op::Compact),
        2 => (0u8..6, 0u8..3, 0i64..8, 0u8..3, any::<bool>()).prop_map(
            |(key, kind, back, filter, prev_kv)| Op::Watch { key, kind, back, filter, prev_kv }
        ),
        3 => (0usize..4).prop_map(Op::Drain),
        2 => any::<bool>().prop_map(Op::Defer),
        1 => (0u8..6, any::<u8>()).prop_map(|(k, v)| Op::Unseen(k, v)),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

struct W {
    req: WatchCreateRequest,
    start: i64,
    stream: usize,
    id: i64,
    got: Vec<Event>,
    compacted: bool,
}

fn drain(rx: &mut mpsc::Receiver<Outgoing>, ws: &mut [W], stream: usize, max: usize) {
    for _ in 0..max {
        let Ok(o) = rx.try_recv() else { return };
        let w = ws
            .iter_mut()
            .find(|w| w.stream == stream && w.id == o.resp.watch_id)
            .expect("response for a known watcher");
        if o.resp.compact_revision != 0 {
            w.compacted = true;
        }
        // All events of one response share one revision at most once each.
        w.got.extend(o.resp.events);
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
    let hub = Hub::new(store.clone());
    let mut rxs = Vec::new();
    let mut sids = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = mpsc::channel(2);
        sids.push(hub.open_stream(tx));
        rxs.push(rx);
    }
    let mut history: Vec<Event> = Vec::new();
    let mut ws: Vec<W> = Vec::new();
    let mut index = 1u64;
    let mut last_compact = 0i64;
    let deferred = std::cell::Cell::new(false);
    let apply = |evs: Vec<Event>, history: &mut Vec<Event>| {
        store.commit(false).unwrap();
        // The applier's events carry no prev_kv; the model's do.
        let mut model = evs.clone();
        store.fill_prev_kvs(&mut model).unwrap();
        hub.stage(evs);
        if !deferred.get() {
            hub.publish();
        }
        history.extend(model);
    };
    for op in ops {
        index += 1;
        match op {
            Op::Put(k, v) => {
                let req = PutRequest {
                    key: key(k),
                    value: vec![v],
                    ..Default::default()
                };
                let (_, evs) = store.put(&req, index, &|_| false).unwrap();
                apply(evs, &mut history);
            }
            Op::Del(k, range) => {
                let req = DeleteRangeRequest {
                    key: key(k),
                    range_end: if range { key(k + 2) } else { Vec::new() },
                    ..Default::default()
                };
                let (_, evs) = store.delete_range(&req, index).unwrap();
                apply(evs, &mut history);
            }
            Op::Compact => {
                let rev = store.current_revision() - 2;
                if rev > last_compact {
                    store.compact(rev, index).unwrap();
                    last_compact = rev;
                }
            }
            Op::Watch {
                key: k,
                kind,
                back,
                filter,
                prev_kv,
            } => {
                let stream = ws.len() % 2;
                let req = WatchCreateRequest {
                    key: key(k),
                    range_end: match kind {
                        0 => Vec::new(),
                        1 => key(k + 2),
                        _ => vec![0],
                    },
                    start_revision: (store.current_revision() - back).max(0),
                    prev_kv,
                    filters: match filter {
                        1 => vec![FilterType::Noput as i32],
                        2 => vec![FilterType::Nodelete as i32],
                        _ => Vec::new(),
                    },
                    ..Default::default()
                };
                let (gid, id, rev) = hub.reserve(sids[stream], &req).unwrap();
                let start = if req.start_revision == 0 {
                    rev + 1
                } else {
                    req.start_revision
                };
                hub.activate(gid, start);
                ws.push(W {
                    req,
                    start,
                    stream,
                    id,
                    got: Vec::new(),
                    compacted: false,
                });
            }
            Op::Unseen(k, v) => {
                hub.publish();
                let req = PutRequest {
                    key: key(k),
                    value: vec![v],
                    ..Default::default()
                };
                let (_, mut evs) = store.put(&req, index, &|_| false).unwrap();
                store.commit(false).unwrap();
                store.fill_prev_kvs(&mut evs).unwrap();
                history.extend(evs);
                hub.restore();
            }
            Op::Defer(on) => {
                deferred.set(on);
                if !on {
                    hub.publish();
                }
            }
            Op::Drain(n) => {
                hub.publish();
                for (i, rx) in rxs.iter_mut().enumerate() {
                    drain(rx, &mut ws, i, n);
                }
                hub.sync_round();
            }
        }
    }
    // Quiesce: publish, then drain and sync until nothing moves.
    hub.publish();
    for _ in 0..10_000 {
        for (i, rx) in rxs.iter_mut().enumerate() {
            drain(rx, &mut ws, i, usize::MAX);
        }
        let (busy, _) = hub.sync_round();
        if !busy && rxs.iter().all(|r| r.is_empty()) {
            break;
        }
    }
    for w in &ws {
        let range = oxcd_mvcc::KeyRange {
            key: w.req.key.clone(),
            end: match w.req.range_end.as_slice() {
                [] => None,
                [0] => Some(Vec::new()),
                e => Some(e.to_vec()),
            },
        };
        let want: Vec<Event> = history
            .iter()
            .filter(|e| {
                let kv = e.kv.as_ref().unwrap();
                let put = e.r#type == EventType::Put as i32;
                kv.mod_revision >= w.start
                    && range.contains(&kv.key)
                    && !(put && w.req.filters.contains(&(FilterType::Noput as i32)))
                    && (put || !w.req.filters.contains(&(FilterType::Nodelete as i32)))
            })
            .cloned()
            .collect();
        let strip = |evs: &[Event], compact: i64| -> Vec<Seen> {
            evs.iter()
                .map(|e| {
                    let kv = e.kv.clone().unwrap();
                    // History reads cannot give a prev_kv older than the compaction.
                    let prev = if w.req.prev_kv && kv.mod_revision > compact {
                        e.prev_kv.as_ref().map(|p| p.value.clone())
                    } else {
                        None
                    };
                    (e.r#type, kv.key, kv.value, kv.mod_revision, prev)
                })
                .collect()
        };
        let got = strip(&w.got, last_compact);
        let want = strip(&want, last_compact);
        if w.compacted {
            assert!(want.starts_with(&got), "compacted watcher got a non-prefix");
        } else {
            assert_eq!(got, want, "watcher {:?} from {}", w.req, w.start);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn watchers_receive_exactly_their_filtered_history(ops in prop::collection::vec(op(), 1..120)) {
        run(ops);
    }
}
