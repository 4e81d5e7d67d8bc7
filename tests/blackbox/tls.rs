//! TLS on the client port, with certificates made in the test (rcgen): server TLS, mutual
//! TLS, another CA, a CRL, cipher suites and versions, auto TLS, certificate rotation, and
//! bad files at start.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use oxcd_proto::etcdserverpb::kv_client::KvClient;
use oxcd_proto::etcdserverpb::{PutRequest, RangeRequest};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use crate::harness::{free_port, run_to_exit, Server};

/// A test CA.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, PEM.
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `cn` valid for `sans` (server and client use): (cert, key) PEM.
    pub fn leaf(&self, cn: &str, sans: &[&str], serial: u64) -> (String, String) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A CRL revoking `serials`, PEM.
    pub fn crl(&self, serials: &[u64]) -> String {
        let now = time::OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from(1),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - time::Duration::hours(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A rustls client trusting `ca` (none: trusting anything), presenting `identity`.
pub fn client_config(
    ca: Option<&str>,
    identity: Option<(&str, &str)>,
    alpn: &[u8],
) -> Arc<rustls::ClientConfig> {
    client_config_with(
        ca,
        identity,
        alpn,
        rustls::crypto::ring::default_provider(),
        None,
    )
}

fn client_config_with(
    ca: Option<&str>,
    identity: Option<(&str, &str)>,
    alpn: &[u8],
    provider: rustls::crypto::CryptoProvider,
    version: Option<&'static rustls::SupportedProtocolVersion>,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(provider);
    let versions = match version {
        Some(v) => vec![v],
        None => rustls::DEFAULT_VERSIONS.to_vec(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .unwrap();
    let builder = match ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            builder.with_root_certificates(roots)
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider))),
    };
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// Trusts any server (for auto TLS, as `--insecure-skip-tls-verify`).
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A raw TLS connection to the port.
pub async fn tls_connect(
    port: u16,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// A gRPC channel over TLS.
pub async fn tls_channel(
    port: u16,
    config: Arc<rustls::ClientConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let connector = tower::service_fn(move |_uri: tonic::codegen::http::Uri| {
        let config = config.clone();
        async move { tls_connect(port, config).await.map(TokioIo::new) }
    });
    Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(connector)
        .await
}

/// Puts and reads back a key over `config`; the error says why it failed.
pub async fn put_get(port: u16, config: Arc<rustls::ClientConfig>) -> Result<(), String> {
    let channel = tls_channel(port, config)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let mut kv = KvClient::new(channel);
    let call = async {
        kv.put(PutRequest {
            key: b"tls".to_vec(),
            value: b"yes".to_vec(),
            ..Default::default()
        })
        .await?;
        kv.range(RangeRequest {
            key: b"tls".to_vec(),
            ..Default::default()
        })
        .await
    };
    let resp = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| format!("rpc: {e:?}"))?;
    assert_eq!(resp.into_inner().kvs[0].value, b"yes");
    Ok(())
}

/// `GET path` over HTTP/1.1 on TLS: the whole answer.
pub async fn https_get(port: u16, config: Arc<rustls::ClientConfig>, path: &str) -> String {
    let mut tls = tls_connect(port, config).await.unwrap();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A server on an `https://` client URL with `flags`.
pub fn https_server(dir: &std::path::Path, flags: &[String]) -> Server {
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let mut args = vec![
        format!("--listen-client-urls={url}"),
        format!("--advertise-client-urls={url}"),
    ];
    args.extend(flags.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_with(dir, port, free_port(), &args)
}

/// Certificates in `dir`: the CA, the server's pair, a client's pair.
struct Files {
    ca: Ca,
    ca_file: String,
    cert_file: String,
    key_file: String,
    client: (String, String),
}

fn files(dir: &std::path::Path) -> Files {
    let ca = Ca::new("test-ca");
    let (cert, key) = ca.leaf("server", &["127.0.0.1", "localhost"], 10);
    let client = ca.leaf("alice", &[], 11);
    Files {
        ca_file: write(dir, "ca.pem", &ca.pem),
        cert_file: write(dir, "server.pem", &cert),
        key_file: write(dir, "server-key.pem", &key),
        ca,
        client,
    }
}

fn server_flags(f: &Files) -> Vec<String> {
    vec![
        format!("--cert-file={}", f.cert_file),
        format!("--key-file={}", f.key_file),
    ]
}

#[tokio::test]
async fn https_url_serves_grpc_and_http_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = tempfile::tempdir().unwrap();
    let f = files(pki.path());
    let s = https_server(dir.path(), &server_flags(&f));
    put_get(s.port, client_config(Some(&f.ca.pem), None, b"h2"))
        .await
        .unwrap();
    let health = https_get(
        s.port,
        client_config(Some(&f.ca.pem), None, b"http/1.1"),
        "/health",
    )
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"health\":\"true\""), "{health}");
    // Plain text on the TLS port gets nowhere, and a CA that did not sign the server's
    // certificate is refused by the client.
    let plain = KvClient::connect(format!("http://127.0.0.1:{}", s.port)).await;
    if let Ok(mut kv) = plain {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            kv.range(RangeRequest {
                key: b"tls".to_vec(),
                ..Default::default()
            }),
        )
        .await;
        assert!(!matches!(r, Ok(Ok(_))), "plain text answered on a TLS port");
    }
    let other = Ca::new("other-ca");
    assert!(
        put_get(s.port, client_config(Some(&other.pem), None, b"h2"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn client_cert_auth_requires_a_certificate_from_the_trusted_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = tempfile::tempdir().unwrap();
    let f = files(pki.path());
    let mut flags = server_flags(&f);
    flags.push(format!("--trusted-ca-file={}", f.ca_file));
    flags.push("--client-cert-auth".into());
    let s = https_server(dir.path(), &flags);
    let identity = Some((f.client.0.as_str(), f.client.1.as_str()));
    put_get(s.port, client_config(Some(&f.ca.pem), identity, b"h2"))
        .await
        .unwrap();
    // No certificate.
    let e = put_get(s.port, client_config(Some(&f.ca.pem), None, b"h2"))
        .await
        .unwrap_err();
    assert!(!e.is_empty());
    // A certificate of another CA.
    let other = Ca::new("other-ca");
    let stranger = other.leaf("mallory", &[], 12);
    assert!(put_get(
        s.port,
        client_config(Some(&f.ca.pem), Some((&stranger.0, &stranger.1)), b"h2")
    )
    .await
    .is_err());
    // Both refusals are logged and counted; the server still serves.
    let metrics = https_get(
        s.port,
        client_config(Some(&f.ca.pem), identity, b"http/1.1"),
        "/metrics",
    )
    .await;
    let failures: u64 = metrics
        .lines()
        .find(|l| l.starts_with("oxcd_tls_handshake_failures_total{listener=\"client\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no failure counter in:\n{metrics}"));
    assert!(failures >= 2, "{failures}");
    let mut rejected = 0;
    while let Ok(line) = s.log.recv_timeout(Duration::from_secs(5)) {
        if line.contains("rejected connection") {
            rejected += 1;
            if rejected == 2 {
                break;
            }
        }
    }
    assert_eq!(rejected, 2);
    put_get(s.port, client_config(Some(&f.ca.pem), identity, b"h2"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_revoked_client_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = tempfile::tempdir().unwrap();
    let f = files(pki.path());
    let revoked = f.ca.leaf("bob", &[], 99);
    let crl = write(pki.path(), "crl.pem", &f.ca.crl(&[99]));
    let mut flags = server_flags(&f);
    flags.push(format!("--trusted-ca-file={}", f.ca_file));
    flags.push("--client-cert-auth".into());
    flags.push(format!("--client-crl-file={crl}"));
    let s = https_server(dir.path(), &flags);
    let ok = Some((f.client.0.as_str(), f.client.1.as_str()));
    put_get(s.port, client_config(Some(&f.ca.pem), ok, b"h2"))
        .await
        .unwrap();
    assert!(put_get(
        s.port,
        client_config(Some(&f.ca.pem), Some((&revoked.0, &revoked.1)), b"h2")
    )
    .await
    .is_err());
    let mut seen = false;
    while let Ok(line) = s.log.recv_timeout(Duration::from_secs(5)) {
        if line.contains("rejected connection") {
            assert!(line.contains("certificate serial 63 revoked"), "{line}");
            seen = true;
            break;
        }
    }
    assert!(seen);
}

#[tokio::test]
async fn cipher_suites_and_versions_limit_what_clients_may_negotiate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = tempfile::tempdir().unwrap();
    let f = files(pki.path());
    let mut flags = server_flags(&f);
    flags.push("--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".into());
    flags.push("--tls-max-version=TLS1.2".into());
    let s = https_server(dir.path(), &flags);
    let suites = |names: &[rustls::SupportedCipherSuite]| {
        let mut p = rustls::crypto::ring::default_provider();
        p.cipher_suites = names.to_vec();
        p
    };
    use rustls::crypto::ring::cipher_suite as cs;
    let chosen = client_config_with(
        Some(&f.ca.pem),
        None,
        b"h2",
        suites(&[cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]),
        Some(&rustls::version::TLS12),
    );
    let tls = tls_connect(s.port, chosen.clone()).await.unwrap();
    assert_eq!(
        tls.get_ref().1.negotiated_cipher_suite(),
        Some(cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
    );
    put_get(s.port, chosen).await.unwrap();
    let other = client_config_with(
        Some(&f.ca.pem),
        None,
        b"h2",
        suites(&[cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]),
        Some(&rustls::version::TLS12),
    );
    assert!(tls_connect(s.port, other).await.is_err());
    let tls13 = client_config_with(
        Some(&f.ca.pem),
        None,
        b"h2",
        rustls::crypto::ring::default_provider(),
        Some(&rustls::version::TLS13),
    );
    assert!(tls_connect(s.port, tls13).await.is_err());
}

#[test]
fn unknown_or_unsupported_tls_settings_are_refused_at_start() {
    for (flag, expect) in [
        (
            "--cipher-suites=TLS_NOPE",
            "unexpected TLS cipher suite \"TLS_NOPE\"",
        ),
        (
            "--cipher-suites=TLS_RSA_WITH_AES_128_CBC_SHA",
            "TLS_RSA_WITH_AES_128_CBC_SHA is not supported by oxcd",
        ),
        (
            "--tls-min-version=TLS1.1",
            "unexpected TLS version \"TLS1.1\"",
        ),
    ] {
        let (code, text) = run_to_exit(&[flag]);
        assert_ne!(code, 0, "{flag}");
        assert!(text.contains(expect), "{flag}: {text}");
    }
    let (code, text) = run_to_exit(&[
        "--listen-client-urls=https://127.0.0.1:32799",
        "--advertise-client-urls=https://127.0.0.1:32799",
    ]);
    assert_ne!(code, 0);
    assert!(
        text.contains("TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:32799 with HTTPS scheme"),
        "{text}"
    );
}

#[test]
fn bad_certificate_files_stop_the_start_with_one_line() {
    let pki = tempfile::tempdir().unwrap();
    let f = files(pki.path());
    let (_, other_key) = f.ca.leaf("x", &["127.0.0.1"], 20);
    let other_key = write(pki.path(), "other-key.pem", &other_key);
    let missing = pki.path().join("missing.pem").display().to_string();
    for (flags, expect) in [
        (
            vec![
                format!("--cert-file={}", f.cert_file),
                format!("--key-file={other_key}"),
            ],
            "does not match the certificate in --cert-file",
        ),
        (
            vec![
                format!("--cert-file={missing}"),
                format!("--key-file={}", f.key_file),
            ],
            "cannot read --cert-file",
        ),
        (
            vec![
                format!("--cert-file={}", f.cert_file),
                format!("--key-file={}", f.key_file),
                "--client-cert-auth".to_string(),
            ],
            "--client-cert-auth needs --trusted-ca-file",
        ),
        (
            vec![
                format!("--cert-file={}", f.cert_file),
                format!("--key-file={}", f.key_file),
                format!("--trusted-ca-file={}", f.key_file),
            ],
            "--trusted-ca-file",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        let mut args = vec![
            format!("--listen-client-urls={url}"),
            format!("--advertise-client-urls={url}"),
        ];
        args.extend(flags);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let s = Server::spawn(dir.path(), port, free_port(), &args);
        let (status, log) = s.wait_exit();
        assert!(!status.success(), "{args:?}");
        assert!(log.contains(expect), "{args:?}: {log}");
        assert_eq!(
            log.lines().filter(|l| l.starts_with("oxcd:")).count(),
            1,
            "{log}"
        );
        assert!(!dir.path().join("member/wal").exists());
    }
}

#[tokio::test]
async fn auto_tls_makes_and_keeps_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let s = https_server(dir.path(), &["--auto-tls".to_string()]);
    let fixtures = dir.path().join("fixtures").join("client");
    assert!(fixtures.join("cert.pem").exists());
    assert!(fixtures.join("key.pem").exists());
    let first = std::fs::read(fixtures.join("cert.pem")).unwrap();
    put_get(s.port, client_config(None, None, b"h2"))
        .await
        .unwrap();
    // A CA-verifying client cannot trust it.
    let other = Ca::new("other-ca");
    assert!(
        put_get(s.port, client_config(Some(&other.pem), None, b"h2"))
            .await
            .is_err()
    );
    let port = s.port;
    drop(s);
    // Restarted, the same certificate is used again.
    let url = format!("https://127.0.0.1:{port}");
    let s = Server::start_with(
        dir.path(),
        port,
        free_port(),
        &[
            &format!("--listen-client-urls={url}"),
            &format!("--advertise-client-urls={url}"),
            "--auto-tls",
        ],
    );
    assert_eq!(std::fs::read(fixtures.join("cert.pem")).unwrap(), first);
    put_get(s.port, client_config(None, None, b"h2"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pki = tempfile::tempdir().unwrap();
    let f = files(pki.path());
    let s = https_server(dir.path(), &server_flags(&f));
    let served_cn = |tls: &tokio_rustls::client::TlsStream<TcpStream>| {
        let cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let text = String::from_utf8_lossy(cert.as_ref()).into_owned();
        text
    };
    let before = tls_connect(s.port, client_config(Some(&f.ca.pem), None, b"h2"))
        .await
        .unwrap();
    assert!(served_cn(&before).contains("server"));
    // Rotate: a new pair from a new CA, written over the old files.
    let ca2 = Ca::new("test-ca-2");
    let (cert, key) = ca2.leaf("rotated", &["127.0.0.1"], 30);
    std::fs::write(&f.key_file, key).unwrap();
    std::fs::write(&f.cert_file, cert).unwrap();
    let after = tls_connect(s.port, client_config(Some(&ca2.pem), None, b"h2"))
        .await
        .unwrap();
    assert!(served_cn(&after).contains("rotated"));
    put_get(s.port, client_config(Some(&ca2.pem), None, b"h2"))
        .await
        .unwrap();
    let mut logged = false;
    while let Ok(line) = s.log.recv_timeout(Duration::from_secs(5)) {
        if line.contains("reloaded the TLS certificate") {
            logged = true;
            break;
        }
    }
    assert!(logged);
    // A broken rewrite keeps the last good pair.
    std::fs::write(&f.cert_file, "garbage").unwrap();
    put_get(s.port, client_config(Some(&ca2.pem), None, b"h2"))
        .await
        .unwrap();
}

/// oxcd-client (feature `tls`) against oxcd with `--client-cert-auth`: a CA and a client
/// certificate, a bare `host:port`, a watch over TLS, no client certificate, a CA that did
/// not sign the server, a wrong server name, no verification; then auth over TLS (user and
/// password, a wrong password, permission denied).
#[tokio::test]
async fn oxcd_client_over_mutual_tls_with_user_and_password() {
    use futures::StreamExt;
    use oxcd_client::{
        Client, ConnectOptions, ErrorKind, GetOptions, Permission, PutOptions, TlsOptions,
        WatchOptions,
    };

    async fn connect(endpoint: &str, tls: TlsOptions) -> oxcd_client::Result<Client> {
        Client::connect_with([endpoint], ConnectOptions::new().with_tls(tls)).await
    }
    async fn put_get(endpoint: &str, tls: TlsOptions) -> oxcd_client::Result<()> {
        let client = connect(endpoint, tls).await?;
        client.kv().put("secure", "yes", PutOptions::new()).await?;
        let got = client.kv().get("secure", GetOptions::new()).await?;
        assert_eq!(got.kvs[0].value, b"yes");
        Ok(())
    }

    let dir = tempfile::tempdir().unwrap();
    let pki = tempfile::tempdir().unwrap();
    let f = files(pki.path());
    let mut flags = server_flags(&f);
    flags.push(format!("--trusted-ca-file={}", f.ca_file));
    flags.push("--client-cert-auth".into());
    let s = https_server(dir.path(), &flags);
    let endpoint = format!("https://127.0.0.1:{}", s.port);
    let client_cert = write(pki.path(), "client.pem", &f.client.0);
    let client_key = write(pki.path(), "client-key.pem", &f.client.1);
    let verified = TlsOptions::new()
        .with_ca_file(&f.ca_file)
        .unwrap()
        .with_identity_files(&client_cert, &client_key)
        .unwrap();

    put_get(&endpoint, verified.clone())
        .await
        .expect("verified TLS with a client certificate");
    // A bare host:port uses TLS when TLS options are given.
    put_get(&format!("127.0.0.1:{}", s.port), verified.clone())
        .await
        .expect("host:port with TLS options");

    // A watch stream over the same TLS connection sees a put.
    let client = connect(&endpoint, verified.clone()).await.unwrap();
    let mut events = client
        .watch()
        .watch("tls/w", WatchOptions::new())
        .await
        .unwrap();
    client
        .kv()
        .put("tls/w", "1", PutOptions::new())
        .await
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream is open")
        .unwrap();
    assert_eq!(response.events[0].kv.as_ref().unwrap().value, b"1");

    // Refused: no client certificate (as against etcd: Unavailable), a CA that did not sign
    // the server, a name the certificate does not carry.
    let anonymous = TlsOptions::new().with_ca_file(&f.ca_file).unwrap();
    let refused = put_get(&endpoint, anonymous).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Unavailable, "{refused}");
    let other = Ca::new("other-ca");
    let other_ca = write(pki.path(), "other-ca.pem", &other.pem);
    let unknown_ca = TlsOptions::new()
        .with_ca_file(&other_ca)
        .unwrap()
        .with_identity_files(&client_cert, &client_key)
        .unwrap();
    let untrusted = put_get(&endpoint, unknown_ca.clone()).await.unwrap_err();
    assert!(untrusted.to_string().contains("certificate"), "{untrusted}");
    let wrong_name = verified.clone().with_domain_name("not-the-server");
    let mismatch = put_get(&endpoint, wrong_name).await.unwrap_err();
    assert!(mismatch.to_string().contains("certificate"), "{mismatch}");
    // No verification (oxcd_client::danger::AcceptAnyServerCert): encrypted, still with
    // the client certificate.
    put_get(&endpoint, unknown_ca.with_insecure_skip_verify())
        .await
        .expect("unverified, yet encrypted and with a client certificate");

    // Auth over TLS: root, a user with readwrite on tls/, auth enable.
    let auth = client.auth();
    auth.user_add("root", Some("rootpw")).await.unwrap();
    auth.user_grant_role("root", "root").await.unwrap();
    auth.role_add("app").await.unwrap();
    auth.role_grant_permission("app", Permission::read_write("tls/").with_prefix())
        .await
        .unwrap();
    auth.user_add("alice", Some("alicepw")).await.unwrap();
    auth.user_grant_role("alice", "app").await.unwrap();
    auth.enable().await.unwrap();
    let login = |user: &str, password: &str| {
        Client::connect_with(
            [endpoint.as_str()],
            ConnectOptions::new()
                .with_tls(verified.clone())
                .with_user(user, password),
        )
    };
    let alice = login("alice", "alicepw").await.unwrap();
    alice
        .kv()
        .put("tls/a", "1", PutOptions::new())
        .await
        .unwrap();
    let denied = alice
        .kv()
        .put("elsewhere", "1", PutOptions::new())
        .await
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::PermissionDenied, "{denied}");
    assert_eq!(denied.to_string(), "etcdserver: permission denied");
    let wrong = login("alice", "wrong").await.unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::AuthFailed, "{wrong}");
    assert_eq!(
        wrong.to_string(),
        "etcdserver: authentication failed, invalid user ID or password"
    );
    // Without a token, with auth on, the certificate's CN (alice) is the user: etcd's
    // client-cert auth. Inside tls/ it may write, outside not.
    client
        .kv()
        .put("tls/cn", "1", PutOptions::new())
        .await
        .expect("the CN's user writes in its range");
    let by_cn = client
        .kv()
        .put("elsewhere", "1", PutOptions::new())
        .await
        .unwrap_err();
    assert_eq!(by_cn.kind(), ErrorKind::PermissionDenied, "{by_cn}");
}
