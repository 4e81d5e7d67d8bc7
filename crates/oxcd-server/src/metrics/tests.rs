use prometheus::Registry;

use super::grpc::GrpcMetrics;
use super::*;

#[test]
fn grpc_series_are_pre_created_with_etcds_labels() {
    let registry = Registry::new();
    let _grpc = GrpcMetrics::new(&registry, Level::Basic).unwrap();
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(
        r#"grpc_server_handled_total{grpc_code="Unavailable",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 0"#
    ), "{text}");
    assert!(text.contains(
        r#"grpc_server_started_total{grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"} 0"#
    ));
    assert!(!text.contains("grpc_server_handling_seconds"));
    let registry = Registry::new();
    let _grpc = GrpcMetrics::new(&registry, Level::Extensive).unwrap();
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .unwrap();
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("grpc_server_handling_seconds_bucket"));
}

#[test]
fn cluster_version_label_is_major_minor() {
    assert_eq!(major_minor("3.5.0"), "3.5");
    assert_eq!(major_minor("3.5"), "3.5");
}

fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn peer_families_have_etcds_names_types_labels_and_buckets() {
    use std::sync::atomic::Ordering;

    let stats = oxcd_peer::PeerStats::new();
    let registry = Registry::new();
    registry
        .register(Box::new(
            network::PeerCollector::new(stats.clone(), 0xabc).unwrap(),
        ))
        .unwrap();
    // No peer yet: no peer family (etcd's vectors have no series either), only the
    // received snapshots' save histograms, at zero with etcd's buckets.
    let text = render(&registry);
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    assert_eq!(
        families,
        [
            "etcd_snap_db_fsync_duration_seconds histogram",
            "etcd_snap_db_save_total_duration_seconds histogram"
        ],
        "{text}"
    );
    for line in [
        "# HELP etcd_snap_db_fsync_duration_seconds The latency distributions of fsyncing .snap.db file",
        r#"etcd_snap_db_fsync_duration_seconds_bucket{le="0.001"} 0"#,
        r#"etcd_snap_db_fsync_duration_seconds_bucket{le="8.192"} 0"#,
        "etcd_snap_db_fsync_duration_seconds_count 0",
        "# HELP etcd_snap_db_save_total_duration_seconds The total latency distributions of v3 snapshot save",
        r#"etcd_snap_db_save_total_duration_seconds_bucket{le="0.1"} 0"#,
        r#"etcd_snap_db_save_total_duration_seconds_bucket{le="51.2"} 0"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert!(!text.contains(r#"le="16.384""#), "{text}");
    stats.snap_db_save_seconds.observe(0.3);
    assert!(render(&registry)
        .contains(r#"etcd_snap_db_save_total_duration_seconds_bucket{le="0.4"} 1"#));

    let link = stats.link(0x1f);
    link.sent_bytes.fetch_add(300, Ordering::Relaxed);
    link.received_bytes.fetch_add(200, Ordering::Relaxed);
    link.active.store(true, Ordering::Relaxed);
    link.rtt.observe(0.0003);
    let text = render(&registry);
    for line in [
        "# HELP etcd_network_peer_sent_bytes_total The total number of bytes sent to peers.",
        "# TYPE etcd_network_peer_sent_bytes_total counter",
        r#"etcd_network_peer_sent_bytes_total{To="1f"} 300"#,
        r#"etcd_network_peer_received_bytes_total{From="1f"} 200"#,
        "# TYPE etcd_network_active_peers gauge",
        r#"etcd_network_active_peers{Local="abc",Remote="1f"} 1"#,
        r#"etcd_network_disconnected_peers_total{Local="abc",Remote="1f"} 0"#,
        r#"etcd_network_peer_sent_failures_total{To="1f"} 0"#,
        r#"etcd_network_peer_received_failures_total{From="1f"} 0"#,
        "# TYPE etcd_network_peer_round_trip_time_seconds histogram",
        r#"etcd_network_peer_round_trip_time_seconds_bucket{To="1f",le="0.0002"} 0"#,
        r#"etcd_network_peer_round_trip_time_seconds_bucket{To="1f",le="0.0004"} 1"#,
        r#"etcd_network_peer_round_trip_time_seconds_bucket{To="1f",le="3.2768"} 1"#,
        r#"etcd_network_peer_round_trip_time_seconds_bucket{To="1f",le="+Inf"} 1"#,
        r#"etcd_network_peer_round_trip_time_seconds_count{To="1f"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    // The snapshot families appear with the first snapshot, each direction on its own (the
    // two `etcd_snap_db_*` families are there from the start).
    assert!(!text.contains("etcd_network_snapshot"), "{text}");
    assert_eq!(text.matches("# TYPE ").count(), 7 + 2, "{text}");
    link.snapshot_send_success.fetch_add(1, Ordering::Relaxed);
    link.snapshot_send_seconds.observe(3.0);
    let text = render(&registry);
    for line in [
        "# TYPE etcd_network_snapshot_send_inflights_total gauge",
        r#"etcd_network_snapshot_send_success{To="1f"} 1"#,
        r#"etcd_network_snapshot_send_failures{To="1f"} 0"#,
        r#"etcd_network_snapshot_send_inflights_total{To="1f"} 0"#,
        r#"etcd_network_snapshot_send_total_duration_seconds_bucket{To="1f",le="1.6"} 0"#,
        r#"etcd_network_snapshot_send_total_duration_seconds_bucket{To="1f",le="3.2"} 1"#,
        r#"etcd_network_snapshot_send_total_duration_seconds_bucket{To="1f",le="51.2"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    assert!(!text.contains("snapshot_receive"), "{text}");
    assert_eq!(text.matches("# TYPE ").count(), 11 + 2, "{text}");
    link.snapshot_receive_failures
        .fetch_add(1, Ordering::Relaxed);
    let text = render(&registry);
    assert!(text.lines().any(|l| l
        == r#"etcd_network_snapshot_receive_total_duration_seconds_bucket{From="1f",le="0.1"} 0"#));
    assert_eq!(text.matches("# TYPE ").count(), 15 + 2, "{text}");
}

#[tokio::test]
async fn counted_bodies_count_grpc_message_payloads_only() {
    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::body::{Body, HttpBody};

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // Two gRPC messages (5-byte prefix + payload) split across frames.
    let mut wire = vec![0, 0, 0, 0, 6];
    wire.extend_from_slice(b"abcdef");
    wire.extend_from_slice(&[0, 0, 0, 0, 2]);
    wire.extend_from_slice(b"xy");
    let chunks: Vec<Result<bytes::Bytes, std::convert::Infallible>> = wire
        .chunks(4)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let body = Body::from_stream(futures::stream::iter(chunks));
    let mut counted = network::Counted::new(body, Some(&COUNTER));
    let mut got = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut counted).poll_frame(cx)).await
    {
        got.extend_from_slice(frame.unwrap().data_ref().unwrap());
    }
    assert_eq!(got, wire, "the body passes through unchanged");
    assert_eq!(COUNTER.load(Ordering::Relaxed), 8);

    // Without a counter nothing is counted.
    let mut plain = network::Counted::new(Body::from(wire.clone()), None);
    while std::future::poll_fn(|cx| std::pin::Pin::new(&mut plain).poll_frame(cx))
        .await
        .is_some()
    {}
    assert_eq!(COUNTER.load(Ordering::Relaxed), 8);
}

#[test]
fn mvcc_op_counters_have_etcds_names_types_and_help() {
    let registry = Registry::new();
    let counters = mvcc_op_counters(&registry).unwrap();
    counters[1].inc_by(2);
    let text = render(&registry);
    for line in [
        "# HELP etcd_mvcc_range_total Total number of ranges seen by this member.",
        "# TYPE etcd_mvcc_range_total counter",
        "etcd_mvcc_range_total 0",
        "# HELP etcd_mvcc_put_total Total number of puts seen by this member.",
        "# TYPE etcd_mvcc_put_total counter",
        "etcd_mvcc_put_total 2",
        "# HELP etcd_mvcc_delete_total Total number of deletes seen by this member.",
        "# TYPE etcd_mvcc_delete_total counter",
        "etcd_mvcc_delete_total 0",
        "# HELP etcd_mvcc_txn_total Total number of txns seen by this member.",
        "# TYPE etcd_mvcc_txn_total counter",
        "etcd_mvcc_txn_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
}
