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
