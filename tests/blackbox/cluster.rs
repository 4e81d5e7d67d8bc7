//! The Cluster API over the wire on one member: membership changes with etcd's rules and
//! errors (a learner that never starts cannot be promoted; one learner at a time; removed
//! ids never come back), and the attributes a member publishes.

use oxcd_proto::etcdserverpb::cluster_client::ClusterClient;
use oxcd_proto::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest, PutRequest,
};
use tonic::Code;

use crate::harness::{free_port, oxcd_bin, Server};

async fn cluster(s: &Server) -> ClusterClient<tonic::transport::Channel> {
    ClusterClient::connect(s.endpoint()).await.unwrap()
}

#[tokio::test]
async fn learner_add_promote_remove_follow_etcds_rules() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let mut c = cluster(&s).await;

    let added = c
        .member_add(MemberAddRequest {
            peer_ur_ls: vec!["http://127.0.0.1:1".into()],
            is_learner: true,
        })
        .await
        .unwrap()
        .into_inner();
    let learner = added.member.unwrap();
    assert!(learner.is_learner);
    assert_eq!(learner.name, "", "a member is unnamed until it starts");
    assert_eq!(added.members.len(), 2);
    assert_eq!(
        added.header.unwrap().revision,
        0,
        "etcd's member headers carry no revision"
    );

    let second = c
        .member_add(MemberAddRequest {
            peer_ur_ls: vec!["http://127.0.0.1:2".into()],
            is_learner: true,
        })
        .await
        .unwrap_err();
    assert_eq!(second.code(), Code::FailedPrecondition);
    assert_eq!(
        second.message(),
        "etcdserver: too many learner members in cluster"
    );

    // Another URL set (so another id) that includes the learner's URL.
    let dup_url = c
        .member_add(MemberAddRequest {
            peer_ur_ls: vec!["http://127.0.0.1:1".into(), "http://127.0.0.1:3".into()],
            is_learner: false,
        })
        .await
        .unwrap_err();
    assert_eq!(dup_url.message(), "etcdserver: Peer URLs already exists");

    let bad = c
        .member_add(MemberAddRequest {
            peer_ur_ls: vec!["127.0.0.1:1".into()],
            is_learner: true,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(bad.message(), "etcdserver: given member URLs are invalid");

    // The learner never started: it has matched nothing of the leader's log.
    let not_ready = c
        .member_promote(MemberPromoteRequest { id: learner.id })
        .await
        .unwrap_err();
    assert_eq!(
        not_ready.message(),
        "etcdserver: can only promote a learner member which is in sync with leader"
    );

    let me = s
        .maintenance()
        .await
        .status(oxcd_proto::etcdserverpb::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .member_id;
    let voter = c
        .member_promote(MemberPromoteRequest { id: me })
        .await
        .unwrap_err();
    assert_eq!(
        voter.message(),
        "etcdserver: can only promote a learner member"
    );

    // Both refusals were promotions run by this member as leader: etcd counts them by
    // reason (its error's text); none succeeded.
    let (_, body) = crate::gateway::http(s.port, "GET", "/metrics", "").await;
    for (series, want) in [
        (
            r#"etcd_server_learner_promote_failures{Reason="etcdserver: can only promote a learner member which is in sync with leader"}"#,
            Some("1"),
        ),
        (
            r#"etcd_server_learner_promote_failures{Reason="etcdserver: can only promote a learner member"}"#,
            Some("1"),
        ),
        ("etcd_server_learner_promote_successes", Some("0")),
    ] {
        assert_eq!(
            crate::gateway::sample(&body, series).as_deref(),
            want,
            "{series}:\n{body}"
        );
    }
    assert!(body.contains("# TYPE etcd_server_learner_promote_failures counter"));

    let removed = c
        .member_remove(MemberRemoveRequest { id: learner.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.members.len(), 1);
    let again = c
        .member_remove(MemberRemoveRequest { id: learner.id })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    assert_eq!(again.message(), "etcdserver: member not found");

    // The cluster still writes (the learner never counted towards the quorum).
    s.kv()
        .await
        .put(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn member_update_and_published_attributes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let mut c = cluster(&s).await;
    let list = c
        .member_list(MemberListRequest { linearizable: true })
        .await
        .unwrap()
        .into_inner();
    let me = list.members[0].clone();
    assert_eq!(me.client_ur_ls, vec![s.endpoint()], "published client URLs");
    assert!(!me.name.is_empty());

    let unknown = c
        .member_update(MemberUpdateRequest {
            id: me.id ^ 1,
            peer_ur_ls: vec!["http://127.0.0.1:9".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.message(), "etcdserver: member not found");
    let updated = c
        .member_update(MemberUpdateRequest {
            id: me.id,
            peer_ur_ls: vec!["http://127.0.0.1:9".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.members[0].peer_ur_ls, vec!["http://127.0.0.1:9"]);
    drop(c);

    // Stored in the backend: a restart keeps it, whatever the flags say.
    s.terminate();
    let s = Server::start(dir.path());
    let mut c = cluster(&s).await;
    let list = c
        .member_list(MemberListRequest { linearizable: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.members.len(), 1);
    assert_eq!(list.members[0].id, me.id);
    assert_eq!(list.members[0].peer_ur_ls, vec!["http://127.0.0.1:9"]);
}

/// Runs oxcd as member `name` (fresh client port, peer port `peer_port`) in `dir` with
/// `initial_cluster` and `extra` flags, and waits (up to 20 s) for it to exit: its exit
/// status and what it printed. A member that keeps running fails the test.
fn run_member(
    dir: &std::path::Path,
    name: &str,
    peer_port: u16,
    initial_cluster: &str,
    extra: &[&str],
) -> (std::process::ExitStatus, String) {
    let client = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{peer_port}");
    let mut child = std::process::Command::new(oxcd_bin())
        .arg(format!("--name={name}"))
        .arg(format!("--data-dir={}", dir.display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster={initial_cluster}"))
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("member {name} did not stop on a bad configuration");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut text).unwrap();
    (status, text)
}

/// The last line a failed start printed: the cause and the fix.
fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or_default()
}

#[test]
fn a_member_whose_flags_do_not_match_the_running_cluster_stops_before_writing() {
    let running_dir = tempfile::tempdir().unwrap();
    let running = Server::start(running_dir.path());
    let theirs = format!("t1=http://127.0.0.1:{}", running.peer_port);

    // A new member bootstrapping with `new` (another token, or a cluster list that is not
    // the running cluster's): its cluster id differs from the running member's.
    for token in ["etcd-cluster", "another-token"] {
        let dir = tempfile::tempdir().unwrap();
        let peer = free_port();
        let token_flag = format!("--initial-cluster-token={token}");
        let (status, text) = run_member(
            dir.path(),
            "b",
            peer,
            &format!("{theirs},b=http://127.0.0.1:{peer}"),
            &[&token_flag],
        );
        assert!(!status.success(), "{text}");
        let line = last_line(&text);
        assert!(
            line.contains(&format!(
                "peer http://127.0.0.1:{} belongs to cluster",
                running.peer_port
            )),
            "{text}"
        );
        assert!(line.contains("--initial-cluster-token"), "{text}");
        assert!(line.contains("--initial-cluster-state existing"), "{text}");
        assert!(
            !dir.path().join("member/snap/db").exists(),
            "backend written"
        );
        assert!(!dir.path().join("member/wal").exists(), "WAL written");
    }

    // A member started with `existing` that the cluster does not know (never added).
    let dir = tempfile::tempdir().unwrap();
    let peer = free_port();
    let (status, text) = run_member(
        dir.path(),
        "b",
        peer,
        &format!("{theirs},b=http://127.0.0.1:{peer}"),
        &["--initial-cluster-state=existing"],
    );
    assert!(!status.success(), "{text}");
    let line = last_line(&text);
    assert!(
        line.contains("are not in the cluster's member list"),
        "{text}"
    );
    assert!(line.contains("etcdctl member add"), "{text}");
    assert!(
        !dir.path().join("member/snap/db").exists(),
        "backend written"
    );
    assert!(!dir.path().join("member/wal").exists(), "WAL written");
}

#[test]
fn a_data_dir_of_another_cluster_is_refused() {
    let running_dir = tempfile::tempdir().unwrap();
    let running = Server::start(running_dir.path());

    // A data dir that belongs to a one-member cluster of its own.
    let other = tempfile::tempdir().unwrap();
    let other_peer = free_port();
    let s = Server::start_with(other.path(), free_port(), other_peer, &[]);
    assert!(s.terminate().success());

    // Started again with the running cluster's member in --initial-cluster.
    let (status, text) = run_member(
        other.path(),
        "t1",
        other_peer,
        &format!(
            "t1=http://127.0.0.1:{other_peer},a=http://127.0.0.1:{}",
            running.peer_port
        ),
        &[],
    );
    assert!(!status.success(), "{text}");
    let line = last_line(&text);
    assert!(
        line.contains(&format!(
            "data dir {} belongs to cluster",
            other.path().display()
        )),
        "{text}"
    );
    assert!(
        line.contains(&format!(
            "but peer http://127.0.0.1:{} belongs to cluster",
            running.peer_port
        )),
        "{text}"
    );
}

/// A minimal HTTP/1.1 GET on 127.0.0.1:`port`, returning the raw response ("" when the
/// port does not answer yet).
async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut c) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if c.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = c.read_to_string(&mut out).await;
    out
}

#[tokio::test]
async fn a_member_whose_peers_are_unreachable_says_which_and_keeps_trying() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer, metrics) = (free_port(), free_port(), free_port());
    let (b, c) = (free_port(), free_port());
    let mut child = std::process::Command::new(oxcd_bin())
        .arg("--name=a")
        .arg(format!("--data-dir={}", dir.path().display()))
        .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"))
        .arg(format!(
            "--initial-cluster=a=http://127.0.0.1:{peer},b=http://127.0.0.1:{b},c=http://127.0.0.1:{c}"
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // /health on the metrics URL answers while the member waits for its peers, naming them.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let body = loop {
        let body = http_get(metrics, "/health").await;
        if body.contains(&format!("http://127.0.0.1:{b}"))
            && body.contains(&format!("http://127.0.0.1:{c}"))
        {
            break body;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("/health never named the unreachable peers: {body}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(body.contains("503"), "{body}");
    assert!(
        body.contains("RAFT NO LEADER; peers unreachable: "),
        "{body}"
    );
    // Still running, still trying.
    assert!(child.try_wait().unwrap().is_none(), "the member gave up");
    child.kill().unwrap();
    child.wait().unwrap();
}
