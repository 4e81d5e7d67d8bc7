//! etcd's `etcd_network_*` families.
//!
//! * **Client traffic**: `etcd_network_client_grpc_received_bytes_total` and
//!   `etcd_network_client_grpc_sent_bytes_total` count what etcd's gRPC codec counts: the
//!   size of each protobuf message received from and sent to clients (gRPC's 5-byte
//!   length prefix, HTTP/2 framing, headers and TLS not included). For gRPC calls on the
//!   client URLs they are read from the length-prefixed framing of the request and
//!   response bodies as they pass ([`Counted`], wrapped around every client connection's
//!   bodies in `net::serve`, no allocation: messages compressed by the client count at their
//!   compressed size, where etcd counts them decompressed). For the JSON gateway they are
//!   the encoded size of the request and response messages (`prost::Message::encoded_len`)
//!   as etcd's gateway, which calls its server over a loopback gRPC connection, has them
//!   counted. Recording is one relaxed atomic add per data frame into process-wide counters
//!   ([`CLIENT_RECEIVED_BYTES`], [`CLIENT_SENT_BYTES`]), added to the Prometheus counters
//!   when scraped (as the `/health` counts are).
//! * **Peers**: [`PeerCollector`] exports oxcd-peer's per-peer atomics
//!   ([`oxcd_peer::PeerStats`], whose docs say what each counts) under etcd's rafthttp
//!   names, types, help texts, labels (`To`, `From`, `Local`, `Remote`: member ids in
//!   hex, as etcd's `types.ID` prints them) and buckets, read when scraped; with them the
//!   member's received snapshots' fsync and save durations (`etcd_snap_db_*`).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::HttpBody;
use bytes::Bytes;
use http_body::Frame;
use oxcd_peer::{HistogramSnapshot, PeerStats};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

use super::grpc::Frames;

/// Bytes of protobuf messages received from clients (gRPC and gateway), process-wide.
pub static CLIENT_RECEIVED_BYTES: AtomicU64 = AtomicU64::new(0);
/// Bytes of protobuf messages sent to clients (gRPC and gateway), process-wide.
pub static CLIENT_SENT_BYTES: AtomicU64 = AtomicU64::new(0);

/// Counts a gateway request message of `len` encoded bytes.
pub fn count_gateway_received(len: usize) {
    CLIENT_RECEIVED_BYTES.fetch_add(len as u64, Ordering::Relaxed);
}

/// Counts a gateway response message of `len` encoded bytes.
pub fn count_gateway_sent(len: usize) {
    CLIENT_SENT_BYTES.fetch_add(len as u64, Ordering::Relaxed);
}

/// Whether a request or response carries gRPC (its content type is `application/grpc*`).
pub fn is_grpc(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A body that adds the payload bytes of the gRPC messages passing through it to a
/// counter (or passes them through uncounted when it has none).
#[derive(Debug)]
pub struct Counted<B> {
    inner: B,
    counter: Option<&'static AtomicU64>,
    frames: Frames,
}

impl<B> Counted<B> {
    /// `inner`, its gRPC message bytes added to `counter`.
    pub fn new(inner: B, counter: Option<&'static AtomicU64>) -> Counted<B> {
        Counted {
            inner,
            counter,
            frames: Frames::default(),
        }
    }
}

impl<B> HttpBody for Counted<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(counter)) = (&polled, this.counter) {
            if let Some(data) = frame.data_ref() {
                let (_, payload) = this.frames.feed(data);
                if payload > 0 {
                    counter.fetch_add(payload, Ordering::Relaxed);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A family's description and its metrics, built when scraped.
fn family(desc: &Desc, kind: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut mf = MetricFamily::default();
    mf.set_name(desc.fq_name.clone());
    mf.set_help(desc.help.clone());
    mf.set_field_type(kind);
    mf.set_metric(metrics);
    mf
}

fn labels(pairs: &[(&str, &str)]) -> Vec<proto::LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut l = proto::LabelPair::default();
            l.set_name((*name).to_string());
            l.set_value((*value).to_string());
            l
        })
        .collect()
}

fn counter(pairs: &[(&str, &str)], value: u64) -> proto::Metric {
    let mut c = proto::Counter::default();
    c.set_value(value as f64);
    let mut m = proto::Metric::default();
    m.set_label(labels(pairs));
    m.set_counter(c);
    m
}

fn gauge(pairs: &[(&str, &str)], value: f64) -> proto::Metric {
    let mut g = proto::Gauge::default();
    g.set_value(value);
    let mut m = proto::Metric::default();
    m.set_label(labels(pairs));
    m.set_gauge(g);
    m
}

fn histogram(pairs: &[(&str, &str)], h: &HistogramSnapshot) -> proto::Metric {
    let mut out = proto::Histogram::default();
    out.set_sample_count(h.count);
    out.set_sample_sum(h.sum);
    out.set_bucket(
        h.buckets
            .iter()
            .map(|(bound, count)| {
                let mut b = proto::Bucket::default();
                b.set_upper_bound(*bound);
                b.set_cumulative_count(*count);
                b
            })
            .collect(),
    );
    let mut m = proto::Metric::default();
    m.set_label(labels(pairs));
    m.set_histogram(out);
    m
}

/// Where the snapshot-send families are in [`PEER_FAMILIES`].
const SNAPSHOT_SEND_FIRST: usize = 6;
const SNAPSHOT_SEND_LAST: usize = 9;
/// Where the snapshot-receive families are in [`PEER_FAMILIES`].
const SNAPSHOT_RECEIVE_FIRST: usize = 10;
const SNAPSHOT_RECEIVE_LAST: usize = 13;

/// The families of etcd's rafthttp, in registration order, with their kind and labels.
const PEER_FAMILIES: [(&str, &str, MetricType, &[&str]); 15] = [
    (
        "etcd_network_active_peers",
        "The current number of active peer connections.",
        MetricType::GAUGE,
        &["Local", "Remote"],
    ),
    (
        "etcd_network_disconnected_peers_total",
        "The total number of disconnected peers.",
        MetricType::COUNTER,
        &["Local", "Remote"],
    ),
    (
        "etcd_network_peer_sent_bytes_total",
        "The total number of bytes sent to peers.",
        MetricType::COUNTER,
        &["To"],
    ),
    (
        "etcd_network_peer_received_bytes_total",
        "The total number of bytes received from peers.",
        MetricType::COUNTER,
        &["From"],
    ),
    (
        "etcd_network_peer_sent_failures_total",
        "The total number of send failures from peers.",
        MetricType::COUNTER,
        &["To"],
    ),
    (
        "etcd_network_peer_received_failures_total",
        "The total number of receive failures from peers.",
        MetricType::COUNTER,
        &["From"],
    ),
    (
        "etcd_network_snapshot_send_success",
        "Total number of successful snapshot sends",
        MetricType::COUNTER,
        &["To"],
    ),
    (
        "etcd_network_snapshot_send_inflights_total",
        "Total number of inflight snapshot sends",
        MetricType::GAUGE,
        &["To"],
    ),
    (
        "etcd_network_snapshot_send_failures",
        "Total number of snapshot send failures",
        MetricType::COUNTER,
        &["To"],
    ),
    (
        "etcd_network_snapshot_send_total_duration_seconds",
        "Total latency distributions of v3 snapshot sends",
        MetricType::HISTOGRAM,
        &["To"],
    ),
    (
        "etcd_network_snapshot_receive_success",
        "Total number of successful snapshot receives",
        MetricType::COUNTER,
        &["From"],
    ),
    (
        "etcd_network_snapshot_receive_inflights_total",
        "Total number of inflight snapshot receives",
        MetricType::GAUGE,
        &["From"],
    ),
    (
        "etcd_network_snapshot_receive_failures",
        "Total number of snapshot receive failures",
        MetricType::COUNTER,
        &["From"],
    ),
    (
        "etcd_network_snapshot_receive_total_duration_seconds",
        "Total latency distributions of v3 snapshot receives",
        MetricType::HISTOGRAM,
        &["From"],
    ),
    (
        "etcd_network_peer_round_trip_time_seconds",
        "Round-Trip-Time histogram between peers",
        MetricType::HISTOGRAM,
        &["To"],
    ),
];

/// etcd's snap families: how the snapshots this member received were saved (no labels;
/// present from the start, as etcd's).
const SNAP_DB_FAMILIES: [(&str, &str); 2] = [
    (
        "etcd_snap_db_fsync_duration_seconds",
        "The latency distributions of fsyncing .snap.db file",
    ),
    (
        "etcd_snap_db_save_total_duration_seconds",
        "The total latency distributions of v3 snapshot save",
    ),
];

/// Exports a member's [`PeerStats`] as etcd's rafthttp families: one series per peer the
/// member has had a link with (created at zero when the peer is added, kept after it is
/// removed, so counters never go back); the `etcd_network_snapshot_*` series of a peer
/// appear once a snapshot went to or came from it, as etcd's do.
pub struct PeerCollector {
    stats: Arc<PeerStats>,
    local: String,
    descs: Vec<Desc>,
}

impl PeerCollector {
    /// The collector for the member `local_id`'s `stats`.
    pub fn new(stats: Arc<PeerStats>, local_id: u64) -> Result<PeerCollector, prometheus::Error> {
        let descs = PEER_FAMILIES
            .iter()
            .map(|(name, help, _, labels)| (*name, *help, *labels))
            .chain(
                SNAP_DB_FAMILIES
                    .iter()
                    .map(|(name, help)| (*name, *help, &[][..])),
            )
            .map(|(name, help, labels)| {
                Desc::new(
                    name.to_string(),
                    help.to_string(),
                    labels.iter().map(|l| (*l).to_string()).collect(),
                    Default::default(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PeerCollector {
            stats,
            local: format!("{local_id:x}"),
            descs,
        })
    }
}

impl Collector for PeerCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let links = self.stats.links();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut families: Vec<Vec<proto::Metric>> = vec![Vec::new(); PEER_FAMILIES.len()];
        for (id, l) in &links {
            let peer = format!("{id:x}");
            let pair = [("Local", self.local.as_str()), ("Remote", peer.as_str())];
            let to = [("To", peer.as_str())];
            let from = [("From", peer.as_str())];
            let active = if l.active.load(Ordering::Relaxed) {
                1.0
            } else {
                0.0
            };
            let series = [
                gauge(&pair, active),
                counter(&pair, load(&l.disconnects)),
                counter(&to, load(&l.sent_bytes)),
                counter(&from, load(&l.received_bytes)),
                counter(&to, load(&l.sent_failures)),
                counter(&from, load(&l.received_failures)),
                counter(&to, load(&l.snapshot_send_success)),
                gauge(
                    &to,
                    l.snapshot_send_inflight.load(Ordering::Relaxed).max(0) as f64,
                ),
                counter(&to, load(&l.snapshot_send_failures)),
                histogram(&to, &l.snapshot_send_seconds.snapshot()),
                counter(&from, load(&l.snapshot_receive_success)),
                gauge(
                    &from,
                    l.snapshot_receive_inflight.load(Ordering::Relaxed).max(0) as f64,
                ),
                counter(&from, load(&l.snapshot_receive_failures)),
                histogram(&from, &l.snapshot_receive_seconds.snapshot()),
                histogram(&to, &l.rtt.snapshot()),
            ];
            // The snapshot families get a peer's series once a snapshot went to (or came
            // from) it, as etcd's: the rest are there from the start, at zero.
            let sent_snapshot = load(&l.snapshot_send_success) > 0
                || load(&l.snapshot_send_failures) > 0
                || l.snapshot_send_inflight.load(Ordering::Relaxed) != 0;
            let received_snapshot = load(&l.snapshot_receive_success) > 0
                || load(&l.snapshot_receive_failures) > 0
                || l.snapshot_receive_inflight.load(Ordering::Relaxed) != 0;
            for (i, (family, m)) in families.iter_mut().zip(series).enumerate() {
                let shown = match i {
                    SNAPSHOT_SEND_FIRST..=SNAPSHOT_SEND_LAST => sent_snapshot,
                    SNAPSHOT_RECEIVE_FIRST..=SNAPSHOT_RECEIVE_LAST => received_snapshot,
                    _ => true,
                };
                if shown {
                    family.push(m);
                }
            }
        }
        let snap_db = [
            &self.stats.snap_db_fsync_seconds,
            &self.stats.snap_db_save_seconds,
        ]
        .map(|h| vec![histogram(&[], &h.snapshot())]);
        PEER_FAMILIES
            .iter()
            .map(|(_, _, kind, _)| *kind)
            .chain([MetricType::HISTOGRAM; 2])
            .zip(&self.descs)
            .zip(families.into_iter().chain(snap_db))
            .map(|((kind, desc), metrics)| family(desc, kind, metrics))
            .collect()
    }
}
