//! The Cluster API over the wire on one member: membership changes with etcd's rules and
//! errors (a learner that never starts cannot be promoted; one learner at a time; removed
//! ids never come back), and the attributes a member publishes.

use oxcd_proto::etcdserverpb::cluster_client::ClusterClient;
use oxcd_proto::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest, PutRequest,
};
use tonic::Code;

use crate::harness::Server;

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
