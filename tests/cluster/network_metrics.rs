//! etcd's `etcd_network_*` families on a 3-member cluster, scraped from each member's
//! `/metrics`: every rafthttp family but the snapshot ones (no snapshot is sent) with etcd's
//! type, non-zero peer bytes on every link
//! raft uses, active links, round-trip times from the prober, and client gRPC bytes that
//! grow by exactly the messages' sizes (what etcd's codec counts); the server families
//! present from the start; and the heartbeats a paused leader sends late, counted in
//! `etcd_server_heartbeat_send_failures_total`.

use std::collections::BTreeMap;
use std::time::Duration;

use oxcd_proto::etcdserverpb::cluster_client::ClusterClient;
use oxcd_proto::etcdserverpb::{MemberListRequest, PutRequest};
use oxcd_testkit::{Cluster, ClusterConfig, Flavor};
use prost::Message;

/// A minimal HTTP/1.1 GET of `url` + `path` (`url` is `http://127.0.0.1:port`): the body.
async fn get(url: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    c.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "GET {url}{path}: {out}");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Every sample of a scrape: the series (name and labels as printed) and its value.
fn samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn value(s: &BTreeMap<String, f64>, series: &str) -> f64 {
    *s.get(series)
        .unwrap_or_else(|| panic!("no {series} in the scrape: {s:#?}"))
}

/// etcd's rafthttp families and their types.
const FAMILIES: [(&str, &str); 15] = [
    ("etcd_network_active_peers", "gauge"),
    ("etcd_network_disconnected_peers_total", "counter"),
    ("etcd_network_peer_sent_bytes_total", "counter"),
    ("etcd_network_peer_received_bytes_total", "counter"),
    ("etcd_network_peer_sent_failures_total", "counter"),
    ("etcd_network_peer_received_failures_total", "counter"),
    ("etcd_network_snapshot_send_success", "counter"),
    ("etcd_network_snapshot_send_inflights_total", "gauge"),
    ("etcd_network_snapshot_send_failures", "counter"),
    (
        "etcd_network_snapshot_send_total_duration_seconds",
        "histogram",
    ),
    ("etcd_network_snapshot_receive_success", "counter"),
    ("etcd_network_snapshot_receive_inflights_total", "gauge"),
    ("etcd_network_snapshot_receive_failures", "counter"),
    (
        "etcd_network_snapshot_receive_total_duration_seconds",
        "histogram",
    ),
    ("etcd_network_peer_round_trip_time_seconds", "histogram"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_export_etcds_network_metrics() {
    let mut cfg = ClusterConfig::new(Flavor::Oxcd, env!("CARGO_BIN_EXE_oxcd"), 3);
    cfg.faults = false;
    let mut c = Cluster::start(cfg).await.unwrap();
    let leader = c.wait_ready().await.unwrap();
    let url = |c: &Cluster, i: usize| c.members()[i].client_url.clone();

    // Member ids in hex, as etcd's labels print them, by member index (names are m<i>).
    let members = ClusterClient::new(c.channel(leader))
        .member_list(MemberListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .members;
    let id_of = |i: usize| {
        let name = &c.members()[i].name;
        let m = members.iter().find(|m| &m.name == name).unwrap();
        format!("{:x}", m.id)
    };
    let ids: Vec<String> = (0..3).map(id_of).collect();

    // Client bytes: one Put grows them by exactly its request's and response's sizes.
    let received = "etcd_network_client_grpc_received_bytes_total";
    let sent = "etcd_network_client_grpc_sent_bytes_total";
    let before = samples(&get(&url(&c, leader), "/metrics").await);
    let put = PutRequest {
        key: b"network/metrics".to_vec(),
        value: vec![b'v'; 100],
        ..Default::default()
    };
    let resp = c.kv(leader).put(put.clone()).await.unwrap().into_inner();
    let after = samples(&get(&url(&c, leader), "/metrics").await);
    assert_eq!(
        value(&after, received) - value(&before, received),
        put.encoded_len() as f64
    );
    assert_eq!(
        value(&after, sent) - value(&before, sent),
        resp.encoded_len() as f64
    );
    for i in 0..20 {
        c.kv(leader)
            .put(PutRequest {
                key: format!("network/{i}").into_bytes(),
                value: b"v".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    // Every member: the families with etcd's types; raft's links carry bytes both ways and
    // are active; the prober's RTT is observed for every peer (first after 5 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for i in 0..3 {
        let links: Vec<usize> = if i == leader {
            (0..3).filter(|&j| j != i).collect()
        } else {
            vec![leader] // followers talk to the leader only
        };
        let (body, s) = loop {
            let body = get(&url(&c, i), "/metrics").await;
            let s = samples(&body);
            let observed = (0..3).filter(|&j| j != i).all(|j| {
                let series = format!(
                    "etcd_network_peer_round_trip_time_seconds_count{{To=\"{}\"}}",
                    ids[j]
                );
                s.get(&series).is_some_and(|v| *v >= 1.0)
            });
            if observed {
                break (body, s);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "member {i}: no round-trip time observed for its peers:\n{body}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        // The snapshot families appear with a first snapshot (none here), as etcd's.
        for (family, kind) in FAMILIES
            .iter()
            .filter(|(f, _)| !f.starts_with("etcd_network_snapshot_"))
        {
            assert!(
                body.contains(&format!("# TYPE {family} {kind}\n")),
                "member {i}: {family} is not a {kind}:\n{body}"
            );
        }
        // Present from the start on every member, as etcd's: nothing is being installed and
        // no snapshot was received.
        for line in [
            "# TYPE etcd_server_heartbeat_send_failures_total counter\n",
            "# TYPE etcd_server_snapshot_apply_in_progress_total gauge\n",
            "etcd_server_snapshot_apply_in_progress_total 0\n",
            "etcd_snap_db_fsync_duration_seconds_count 0\n",
            "etcd_snap_db_save_total_duration_seconds_count 0\n",
        ] {
            assert!(body.contains(line), "member {i}: no {line:?} in\n{body}");
        }
        for j in links {
            let (me, peer) = (&ids[i], &ids[j]);
            let to = format!("{{To=\"{peer}\"}}");
            let from = format!("{{From=\"{peer}\"}}");
            for series in [
                format!("etcd_network_peer_sent_bytes_total{to}"),
                format!("etcd_network_peer_received_bytes_total{from}"),
            ] {
                assert!(value(&s, &series) > 0.0, "member {i}: {series} is 0");
            }
            let pair = format!("{{Local=\"{me}\",Remote=\"{peer}\"}}");
            assert_eq!(value(&s, &format!("etcd_network_active_peers{pair}")), 1.0);
            assert_eq!(
                value(&s, &format!("etcd_network_disconnected_peers_total{pair}")),
                0.0
            );
            assert!(s.contains_key(&format!(
                "etcd_network_peer_round_trip_time_seconds_bucket{{To=\"{peer}\",le=\"0.0001\"}}"
            )));
        }
    }

    // A leader stopped for longer than two heartbeat intervals (the testkit's 50 ms) but
    // less than an election timeout (500 ms) sends its next heartbeats late: etcd counts
    // each and warns.
    let failures = "etcd_server_heartbeat_send_failures_total";
    let before = value(&samples(&get(&url(&c, leader), "/metrics").await), failures);
    c.pause(leader);
    tokio::time::sleep(Duration::from_millis(250)).await;
    c.resume(leader);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = value(&samples(&get(&url(&c, leader), "/metrics").await), failures);
        if now > before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no late heartbeat counted:\n{}",
            c.log_tail(leader, 20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        c.log_tail(leader, 200)
            .contains("leader failed to send out heartbeat on time"),
        "{}",
        c.log_tail(leader, 20)
    );

    // etcd's probing endpoint on the peer port.
    let probing = get(&c.members()[0].listen_peer_url, "/raft/probing").await;
    assert!(probing.starts_with("{\"OK\":true,\"Now\":\""), "{probing}");
}
