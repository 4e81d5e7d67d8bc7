//! TLS on the client, peer and metrics listeners and on the peer dialer, as etcd's
//! `pkg/transport` does it, with rustls (ring).
//!
//! - A listener serves TLS when its URL is `https://` (plain for `http://`); `https://`
//!   without a certificate is refused at start with etcd's message.
//! - `--trusted-ca-file` or `--client-cert-auth` (and their `--peer-*` twins) require a
//!   client certificate signed by that CA (etcd's `RequireAndVerifyClientCert`); the allowed
//!   CN / hostname and the CRL (read again at every handshake, matched by serial number)
//!   are checked during the handshake, which fails with `bad_certificate` otherwise.
//! - The certificate and key are reloaded when their files change ([`files`]), so a
//!   rotation needs no restart; the CA is read once, as etcd reads it.
//! - Peer connections from a certificate with SANs must come from one of its addresses
//!   (etcd's `checkSAN`) unless `--experimental-peer-skip-client-san-verification`.
//! - With client-cert auth the verified certificate's common name goes into every request's
//!   extensions as [`ClientCertCommonName`](crate::tls_identity::ClientCertCommonName).
//! - Failed handshakes are logged ("rejected connection") and counted in
//!   `oxcd_tls_handshake_failures_total{listener}`; nothing else is affected.

mod auto;
mod der;
mod files;
pub mod suites;
mod verify;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, Opts};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub use suites::TlsVersion;

use crate::tls_identity::ClientCertCommonName;

/// One side's TLS flags (etcd's `transport.TLSInfo`): the client side (`--cert-file`, ...)
/// or the peer side (`--peer-cert-file`, ...). Empty paths are "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// `--cert-file`: the certificate this member presents.
    pub cert_file: String,
    /// `--key-file`: its key.
    pub key_file: String,
    /// `--client-cert-file` (3.5): the certificate presented when dialling (default: `cert_file`).
    pub client_cert_file: String,
    /// `--client-key-file` (3.5): its key.
    pub client_key_file: String,
    /// `--trusted-ca-file`: the CA that signs the other side's certificates.
    pub trusted_ca_file: String,
    /// `--client-cert-auth`: require a client certificate signed by the trusted CA.
    pub client_cert_auth: bool,
    /// `--client-crl-file`: revoked certificates, refused.
    pub crl_file: String,
    /// `--peer-cert-allowed-cn`: the common names a client certificate may carry.
    pub allowed_cn: Vec<String>,
    /// `--client-cert-allowed-hostname`: host names a client certificate must be valid for.
    pub allowed_hostname: Vec<String>,
    /// `--auto-tls`: generate a self-signed certificate when no files are given.
    pub auto_tls: bool,
    /// Set once the auto-TLS certificate is in use: the other side is then not verified
    /// when dialling (etcd's `selfCert`).
    pub self_signed: bool,
    /// `--experimental-peer-skip-client-san-verification`.
    pub skip_client_san_verify: bool,
}

impl TlsInfo {
    /// No certificate given (etcd's `TLSInfo.Empty`).
    pub fn is_empty(&self) -> bool {
        self.cert_file.is_empty() && self.key_file.is_empty()
    }
}

/// The flags both sides share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsCommon {
    /// `--cipher-suites`, Go's names (checked by [`suites::parse_cipher_suites`]).
    pub cipher_suites: Vec<String>,
    /// `--tls-min-version` (`None`: TLS 1.2).
    pub min_version: Option<TlsVersion>,
    /// `--tls-max-version` (`None`: TLS 1.3).
    pub max_version: Option<TlsVersion>,
    /// `--self-signed-cert-validity`, in years.
    pub self_signed_cert_validity: u64,
}

/// Which listener a TLS configuration is for (flag names in messages, metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `--listen-client-urls`.
    Client,
    /// `--listen-peer-urls`.
    Peer,
    /// `--listen-metrics-urls` (uses the client side's certificate).
    Metrics,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Peer => "peer",
            Side::Metrics => "metrics",
        }
    }

    /// The flag named `base` on this side (`cert-file` -> `--peer-cert-file`).
    fn flag(self, base: &str) -> &'static str {
        let peer = self == Side::Peer;
        match (base, peer) {
            ("cert-file", false) => "--cert-file",
            ("cert-file", true) => "--peer-cert-file",
            ("key-file", false) => "--key-file",
            ("key-file", true) => "--peer-key-file",
            ("client-cert-file", false) => "--client-cert-file",
            ("client-cert-file", true) => "--peer-client-cert-file",
            ("client-key-file", false) => "--client-key-file",
            ("client-key-file", true) => "--peer-client-key-file",
            ("trusted-ca-file", false) => "--trusted-ca-file",
            ("trusted-ca-file", true) => "--peer-trusted-ca-file",
            ("crl-file", false) => "--client-crl-file",
            ("crl-file", true) => "--peer-crl-file",
            ("client-cert-auth", false) => "--client-cert-auth",
            ("client-cert-auth", true) => "--peer-client-cert-auth",
            _ => "--tls",
        }
    }
}

/// `oxcd_tls_handshake_failures_total{listener}`: handshakes refused or broken off.
pub fn handshake_failures() -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(
        Opts::new(
            "oxcd_tls_handshake_failures_total",
            "TLS handshakes that failed (bad or missing client certificate, wrong CA, revoked, protocol), by listener.",
        ),
        &["listener"],
    )
}

/// Generates (or reuses) the auto-TLS certificate if asked and none is given, as etcd's
/// `ClientSelfCert` / `PeerSelfCert`; `hosts` are the listen URLs' hosts.
pub fn resolve_auto_tls(
    info: &mut TlsInfo,
    side: Side,
    data_dir: &Path,
    hosts: &[String],
    validity_years: u64,
) -> Result<(), String> {
    if !info.auto_tls {
        return Ok(());
    }
    let which = if side == Side::Peer { "peer" } else { "client" };
    if !info.is_empty() {
        tracing::warn!("ignoring {which} auto TLS since certs given");
        return Ok(());
    }
    let (cert, key) = auto::self_cert(
        &data_dir.join("fixtures").join(which),
        hosts,
        validity_years,
    )?;
    info.cert_file = cert.display().to_string();
    info.key_file = key.display().to_string();
    info.self_signed = true;
    Ok(())
}

fn provider(common: &TlsCommon) -> Result<Arc<rustls::crypto::CryptoProvider>, String> {
    let tls12 = suites::parse_cipher_suites(&common.cipher_suites)?;
    Ok(Arc::new(suites::provider(&tls12)))
}

fn roots(flag: &str, path: &str) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for cert in files::certificates(flag, Path::new(path))? {
        store.add(cert).map_err(|e| {
            format!("{flag} {path}: not a usable CA certificate ({e}); pass the PEM of the CA")
        })?;
    }
    Ok(store)
}

fn both_files(info: &TlsInfo, side: Side) -> Result<(PathBuf, PathBuf), String> {
    if info.cert_file.is_empty() || info.key_file.is_empty() {
        return Err(format!(
            "{} and {} must both be given (got cert {:?}, key {:?})",
            side.flag("cert-file"),
            side.flag("key-file"),
            info.cert_file,
            info.key_file
        ));
    }
    Ok((
        PathBuf::from(&info.cert_file),
        PathBuf::from(&info.key_file),
    ))
}

/// The server side of `info`: loads and checks every file now, so a bad one stops the start
/// with one line naming the flag, the file and the fix.
pub fn server_config(
    info: &TlsInfo,
    common: &TlsCommon,
    side: Side,
) -> Result<Arc<ServerConfig>, String> {
    let provider = provider(common)?;
    let (cert, key) = both_files(info, side)?;
    let key = files::ReloadingKey::load(
        provider.clone(),
        (side.flag("cert-file"), cert),
        (side.flag("key-file"), key),
    )?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&suites::versions(common.min_version, common.max_version))
        .map_err(|e| format!("--cipher-suites/--tls-min-version/--tls-max-version: {e}; enable at least one cipher suite of the allowed TLS versions"))?;
    let builder = if !info.trusted_ca_file.is_empty() || info.client_cert_auth {
        if info.trusted_ca_file.is_empty() {
            return Err(format!(
                "{} needs {}: without the CA that signs client certificates no client could connect; pass the CA's PEM file",
                side.flag("client-cert-auth"),
                side.flag("trusted-ca-file")
            ));
        }
        let roots = roots(side.flag("trusted-ca-file"), &info.trusted_ca_file)?;
        let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| {
                format!(
                    "{} {}: {e}",
                    side.flag("trusted-ca-file"),
                    info.trusted_ca_file
                )
            })?;
        let crl_file = (!info.crl_file.is_empty()).then(|| PathBuf::from(&info.crl_file));
        if let Some(path) = &crl_file {
            let crl = files::crl(side.flag("crl-file"), path)?;
            webpki::BorrowedCertRevocationList::from_der(crl.as_ref()).map_err(|e| {
                format!(
                    "{} {}: not a usable CRL ({e:?}); pass a PEM or DER X.509 v2 CRL",
                    side.flag("crl-file"),
                    path.display()
                )
            })?;
        }
        if !info.allowed_cn.is_empty() && !info.allowed_hostname.is_empty() {
            return Err(format!(
                "AllowedCN and AllowedHostname are mutually exclusive (cn={:?}, hostname={:?}); give only one of --peer-cert-allowed-cn and --peer-cert-allowed-hostname",
                info.allowed_cn.join(","),
                info.allowed_hostname.join(",")
            ));
        }
        builder.with_client_cert_verifier(Arc::new(verify::CheckedClientVerifier {
            inner,
            checks: verify::ClientChecks {
                allowed_cn: info.allowed_cn.clone(),
                allowed_hostname: info.allowed_hostname.clone(),
                crl_file,
            },
        }))
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_cert_resolver(Arc::new(key));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How this member dials its peers' `https://` URLs: their certificates verified against
/// `--peer-trusted-ca-file` (not at all for `--peer-auto-tls`, as etcd), this member's
/// `--peer-client-cert-file` (else `--peer-cert-file`) presented.
pub fn peer_client_config(info: &TlsInfo, common: &TlsCommon) -> Result<Arc<ClientConfig>, String> {
    let side = Side::Peer;
    let provider = provider(common)?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&suites::versions(common.min_version, common.max_version))
        .map_err(|e| format!("--cipher-suites/--tls-min-version/--tls-max-version: {e}"))?;
    let builder = if info.self_signed {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(
                oxcd_client::danger::AcceptAnyServerCert::new(provider.clone()),
            ))
    } else if info.trusted_ca_file.is_empty() {
        return Err(
            "peer TLS needs --peer-trusted-ca-file to verify the other members' certificates; pass the CA's PEM file, or use --peer-auto-tls".into(),
        );
    } else {
        builder.with_root_certificates(roots(side.flag("trusted-ca-file"), &info.trusted_ca_file)?)
    };
    let (cert, key) = if !info.client_cert_file.is_empty() || !info.client_key_file.is_empty() {
        (
            (
                side.flag("client-cert-file"),
                PathBuf::from(&info.client_cert_file),
            ),
            (
                side.flag("client-key-file"),
                PathBuf::from(&info.client_key_file),
            ),
        )
    } else {
        let (c, k) = both_files(info, side)?;
        ((side.flag("cert-file"), c), (side.flag("key-file"), k))
    };
    let key = files::ReloadingKey::load(provider, cert, key)?;
    let mut config = builder.with_client_cert_resolver(Arc::new(key));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Checks `--client-cert-file`/`--client-key-file` (etcd 3.5 presents them when its gateway
/// dials the server; oxcd's gateway needs no connection, so they are only checked).
pub fn check_client_pair(info: &TlsInfo, common: &TlsCommon) -> Result<(), String> {
    if info.client_cert_file.is_empty() && info.client_key_file.is_empty() {
        return Ok(());
    }
    let provider = provider(common)?;
    files::certified_key(
        &provider,
        ("--client-cert-file", Path::new(&info.client_cert_file)),
        ("--client-key-file", Path::new(&info.client_key_file)),
    )
    .map(|_| ())
}

/// TLS on one listener: the handshake, etcd's post-handshake checks, the client's CN.
#[derive(Clone)]
pub struct TlsAcceptor {
    acceptor: tokio_rustls::TlsAcceptor,
    side: Side,
    check_san: bool,
    failures: IntCounter,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("side", &self.side)
            .finish_non_exhaustive()
    }
}

/// A handshake that takes longer than this is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsAcceptor {
    /// An acceptor with `config`, counting failures in `failures`.
    pub fn new(
        config: Arc<ServerConfig>,
        side: Side,
        info: &TlsInfo,
        failures: &IntCounterVec,
    ) -> TlsAcceptor {
        TlsAcceptor {
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            side,
            check_san: side == Side::Peer && !info.skip_client_san_verify,
            failures: failures.with_label_values(&[side.label()]),
        }
    }

    /// The TLS stream and the verified client certificate's common name (if any), or `None`
    /// after logging and counting why the handshake failed.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        remote: SocketAddr,
    ) -> Option<(TlsStream<TcpStream>, Option<ClientCertCommonName>)> {
        let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp)).await;
        let stream = match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return self.failed(remote, &e),
            Err(_) => return self.failed(remote, &"handshake timed out"),
        };
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .cloned();
        let Some(leaf) = leaf else {
            return Some((stream, None));
        };
        if self.check_san {
            if let Err(e) = verify::check_peer_san(&leaf, remote.ip()).await {
                return self.failed(remote, &e);
            }
        }
        let cn = der::common_name(leaf.as_ref())
            .filter(|cn| !cn.is_empty())
            .map(ClientCertCommonName);
        Some((stream, cn))
    }

    fn failed<T>(&self, remote: SocketAddr, e: &dyn std::fmt::Display) -> Option<T> {
        self.failures.inc();
        tracing::warn!(
            listener = self.side.label(),
            remote_addr = %remote,
            error = %e,
            "rejected connection"
        );
        None
    }
}
