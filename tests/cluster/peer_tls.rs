//! A 3-member cluster whose peer URLs are `https://`: mutual TLS between members with
//! certificates made here (rcgen), `--peer-client-cert-auth` and `--peer-cert-allowed-cn`;
//! a write on one member is read on another.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oxcd_proto::etcdserverpb::kv_client::KvClient;
use oxcd_proto::etcdserverpb::{PutRequest, RangeRequest};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

fn free_port() -> u16 {
    oxcd_testkit::PortSource::per_process()
        .next()
        .unwrap()
        .port()
}

struct Member {
    child: Child,
    log: mpsc::Receiver<String>,
    client: String,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(m: &Member, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        match m
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(line) if line.contains("ready to serve client requests") => return,
            Ok(line) => seen.push(line),
            Err(_) => panic!("{name} not ready; log:\n{}", seen.join("\n")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_with_mutual_peer_tls() {
    three_members(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_with_peer_auto_tls() {
    three_members(true).await;
}

/// Three members on `https://` peer URLs: with CA-signed certificates and mutual TLS, or
/// with `--peer-auto-tls` (self-signed, not verified, as etcd).
async fn three_members(auto: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    std::fs::write(
        dir.path().join("ca.pem"),
        ca.self_signed(&ca_key).unwrap().pem(),
    )
    .unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let names = ["m0", "m1", "m2"];
    let ports: Vec<(u16, u16)> = names.iter().map(|_| (free_port(), free_port())).collect();
    let initial = names
        .iter()
        .zip(&ports)
        .map(|(n, (_, p))| format!("{n}=https://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut members = Vec::new();
    for (name, (client, peer)) in names.iter().zip(&ports) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, *name);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let cert_file = dir.path().join(format!("{name}.pem"));
        let key_file = dir.path().join(format!("{name}-key.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("https://127.0.0.1:{peer}");
        let tls_flags: Vec<String> = if auto {
            vec!["--peer-auto-tls".into()]
        } else {
            vec![
                format!("--peer-cert-file={}", cert_file.display()),
                format!("--peer-key-file={}", key_file.display()),
                format!(
                    "--peer-trusted-ca-file={}",
                    dir.path().join("ca.pem").display()
                ),
                "--peer-client-cert-auth".into(),
                "--peer-cert-allowed-cn=m0,m1,m2".into(),
            ]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_oxcd"))
            .arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", dir.path().join(name).display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={initial}"))
            .args(&tls_flags)
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .env_remove("OXCD_LOG")
            .env_remove("OXCD_PEER_DIAL_OVERRIDE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        members.push(Member {
            child,
            log: rx,
            client: client_url,
        });
    }
    for (m, name) in members.iter().zip(names) {
        wait_ready(m, name);
    }
    if auto {
        for name in names {
            assert!(dir
                .path()
                .join(name)
                .join("fixtures/peer/cert.pem")
                .exists());
        }
    }
    let mut kv0 = KvClient::connect(members[0].client.clone()).await.unwrap();
    kv0.put(PutRequest {
        key: b"over".to_vec(),
        value: b"tls".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut kv2 = KvClient::connect(members[2].client.clone()).await.unwrap();
    let got = kv2
        .range(RangeRequest {
            key: b"over".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.kvs[0].value, b"tls");
}
