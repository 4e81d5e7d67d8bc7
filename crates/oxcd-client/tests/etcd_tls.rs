//! TLS against a real etcd 3.4 serving https with client-certificate auth (cargo feature
//! `tls`; `etcd` on PATH or `ETCD_BIN`, `openssl` on PATH; ports 24286-24287). Without
//! etcd or openssl the test says so and passes.

// A test binary: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "tls")]

mod common;

use std::path::Path;
use std::process::Command;

use oxcd_client::{Client, ConnectOptions, ErrorKind, GetOptions, PutOptions, TlsOptions};

use common::{etcd_binary, start_etcd_with_scheme};

const CLIENT_PORT: u16 = 24286;

/// Runs openssl with `args` in `dir`; false if openssl is missing or fails.
fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .is_ok_and(|out| out.status.success())
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`
/// (ca.pem, server.pem/server.key, client.pem/client.key); false without openssl.
fn make_certificates(dir: &Path) -> bool {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=oxcd-test-ca",
        ],
    ]
    .concat();
    if !openssl(dir, &ca) {
        return false;
    }
    for (name, usage, san) in [
        (
            "server",
            "serverAuth",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        ),
        ("client", "clientAuth", "subjectAltName=DNS:client\n"),
    ] {
        let ext = format!("{name}.ext");
        std::fs::write(dir.join(&ext), format!("{san}extendedKeyUsage={usage}\n")).unwrap();
        let (key, csr, pem, subject) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("/CN={name}"),
        );
        let request = [
            &["req"][..],
            &ec,
            &["-keyout", &key, "-out", &csr, "-subj", &subject],
        ]
        .concat();
        let sign = [
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "1",
            "-extfile",
            &ext,
        ];
        if !openssl(dir, &request) || !openssl(dir, &sign) {
            return false;
        }
    }
    true
}

async fn try_put(endpoint: &str, tls: TlsOptions) -> oxcd_client::Result<()> {
    let options = ConnectOptions::new().with_tls(tls);
    let client = Client::connect_with([endpoint], options).await?;
    client.kv().put("secure", "yes", PutOptions::new()).await?;
    let got = client.kv().get("secure", GetOptions::new()).await?;
    assert_eq!(got.kvs[0].value, b"yes");
    Ok(())
}

#[tokio::test]
async fn https_with_a_ca_and_a_client_certificate() {
    let Some(bin) = etcd_binary() else {
        eprintln!("skipped: no etcd binary (set ETCD_BIN or put etcd 3.4 on PATH)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path();
    if !make_certificates(certs) {
        eprintln!("skipped: openssl could not make test certificates");
        return;
    }
    let file = |name: &str| certs.join(name).display().to_string();
    let flags = [
        format!("--cert-file={}", file("server.pem")),
        format!("--key-file={}", file("server.key")),
        format!("--trusted-ca-file={}", file("ca.pem")),
        "--client-cert-auth".to_string(),
    ];
    let etcd = start_etcd_with_scheme(&bin, certs, "https", CLIENT_PORT, &flags);
    let verified = TlsOptions::new()
        .with_ca_file(certs.join("ca.pem"))
        .unwrap()
        .with_identity_files(certs.join("client.pem"), certs.join("client.key"))
        .unwrap();

    try_put(&etcd.endpoint, verified.clone())
        .await
        .expect("verified TLS with a client certificate");

    // A bare host:port uses TLS when TLS options are given.
    let bare = etcd.endpoint.trim_start_matches("https://").to_string();
    try_put(&bare, verified.clone())
        .await
        .expect("host:port with TLS options");

    let anonymous = TlsOptions::new()
        .with_ca_file(certs.join("ca.pem"))
        .unwrap();
    let refused = try_put(&etcd.endpoint, anonymous).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Unavailable, "{refused}");

    let unknown_ca = TlsOptions::new()
        .with_identity_files(certs.join("client.pem"), certs.join("client.key"))
        .unwrap();
    let untrusted = try_put(&etcd.endpoint, unknown_ca.clone())
        .await
        .unwrap_err();
    assert!(untrusted.to_string().contains("certificate"), "{untrusted}");

    let wrong_name = verified.clone().with_domain_name("not-the-server");
    let mismatch = try_put(&etcd.endpoint, wrong_name).await.unwrap_err();
    assert!(mismatch.to_string().contains("certificate"), "{mismatch}");

    try_put(&etcd.endpoint, unknown_ca.with_insecure_skip_verify())
        .await
        .expect("unverified, yet encrypted and with a client certificate");
}
