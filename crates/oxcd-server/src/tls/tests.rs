//! The listener end to end, in process: a verified client certificate's CN reaches the
//! request handlers as [`ClientCertCommonName`].

use std::sync::Arc;

use axum::routing::get;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::net::{serve, Http2Limits};

fn leaf(issuer: &Issuer<'_, KeyPair>, cn: &str, sans: &[&str]) -> (String, String) {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn the_verified_client_cn_reaches_the_handlers() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let (cert, key) = leaf(&issuer, "server", &["127.0.0.1"]);
    let (client_cert, client_key) = leaf(&issuer, "alice", &[]);
    let path = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let info = TlsInfo {
        cert_file: path("cert.pem", &cert),
        key_file: path("key.pem", &key),
        trusted_ca_file: path("ca.pem", &ca_pem),
        client_cert_auth: true,
        ..TlsInfo::default()
    };
    let config = server_config(&info, &TlsCommon::default(), Side::Client).unwrap();
    let failures = handshake_failures().unwrap();
    let acceptor = TlsAcceptor::new(config, Side::Client, &info, &failures);
    let app = axum::Router::new().route(
        "/cn",
        get(
            |cn: Option<axum::Extension<ClientCertCommonName>>| async move {
                cn.map(|c| c.0 .0).unwrap_or_else(|| "none".into())
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let limits = Http2Limits {
        keepalive_interval: None,
        keepalive_timeout: std::time::Duration::from_secs(20),
        max_concurrent_streams: 100,
    };
    let server = tokio::spawn(serve(
        listener,
        app,
        stop_rx,
        limits,
        Some(acceptor),
        crate::net::Traffic::Client,
        None,
    ));

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![CertificateDer::from_pem_slice(client_cert.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(client_key.as_bytes()).unwrap(),
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /cn HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.ends_with("alice"), "{out}");

    // Without a certificate: refused and counted.
    let anonymous = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates({
        let mut r = rustls::RootCertStore::empty();
        r.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
            .unwrap();
        r
    })
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    if let Ok(mut tls) = tokio_rustls::TlsConnector::from(Arc::new(anonymous))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
    {
        let _ = tls.write_all(b"GET /cn HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut out = Vec::new();
        assert!(tls.read_to_end(&mut out).await.is_err() || out.is_empty());
    }
    let counter = failures.with_label_values(&["client"]);
    for _ in 0..100 {
        if counter.get() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(counter.get(), 1);
    stop_tx.send(true).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn allowed_cn_hostname_and_peer_san_are_checked_as_etcd_does() {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let m1 = der(&leaf(&issuer, "m1", &["127.0.0.1", "a.example"]).0);
    let m2 = der(&leaf(&issuer, "m2", &[]).0);
    let cn = verify::ClientChecks {
        allowed_cn: vec!["m1".into(), "m3".into()],
        ..Default::default()
    };
    assert!(cn.check(&m1, &[]).is_ok());
    let e = cn.check(&m2, &[]).unwrap_err().to_string();
    assert!(
        e.contains("client certificate authentication failed"),
        "{e}"
    );
    let host = verify::ClientChecks {
        allowed_hostname: vec!["a.example".into()],
        ..Default::default()
    };
    assert!(host.check(&m1, &[]).is_ok());
    assert!(host.check(&m2, &[]).is_err());
    // SANs must name the remote address; no SANs: nothing to check.
    assert!(verify::check_peer_san(&m1, [127, 0, 0, 1].into())
        .await
        .is_ok());
    let e = verify::check_peer_san(&m1, [10, 0, 0, 9].into())
        .await
        .unwrap_err();
    assert!(e.contains("does not match any of DNSNames"), "{e}");
    assert!(verify::check_peer_san(&m2, [10, 0, 0, 9].into())
        .await
        .is_ok());
}
