//! TLS as etcdctl 3.4 sets it up (`newClientCfg` and clientv3's `processCreds`):
//!
//! - `--cert`, `--key`, `--cacert` (or `ETCDCTL_CERT`, `ETCDCTL_KEY`, `ETCDCTL_CACERT`)
//!   make a TLS configuration; a certificate needs its key and the other way round
//!   ("KeyFile and CertFile must both be present[key: .., cert: ..]"); files that cannot be
//!   read or do not match stop etcdctl with exit code 128, as here.
//! - `--insecure-transport=false` without those flags: TLS against the system's roots.
//! - `--insecure-skip-tls-verify`: no verification, but only of a configuration made by
//!   the flags above (etcdctl applies it to nothing else).
//! - Per endpoint: `http://` is always plain text; `https://` uses that configuration, or
//!   the system's roots when there is none; a bare `host:port` uses it if there is one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use oxcd_client::danger::AcceptAnyServerCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;

/// The TLS flags.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsFlags {
    /// `--cert`.
    pub cert: Option<String>,
    /// `--key`.
    pub key: Option<String>,
    /// `--cacert`.
    pub cacert: Option<String>,
    /// `--insecure-transport`.
    pub insecure_transport: bool,
    /// `--insecure-skip-tls-verify`.
    pub insecure_skip_verify: bool,
}

/// etcdctl's `cfg.TLS`: `None` when no flag asks for TLS. The error is etcdctl's text.
pub(crate) fn client_config(flags: &TlsFlags) -> Result<Option<Arc<ClientConfig>>, String> {
    let cert = flags.cert.as_deref().filter(|s| !s.is_empty());
    let key = flags.key.as_deref().filter(|s| !s.is_empty());
    let cacert = flags.cacert.as_deref().filter(|s| !s.is_empty());
    let any = cert.is_some() || key.is_some() || cacert.is_some();
    if !any && flags.insecure_transport {
        return Ok(None);
    }
    // etcd's order: the pair first (baseConfig), then the CA.
    let identity = match (cert, key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    format!("tls: failed to find any PEM data in certificate input ({e})")
                })?;
            if chain.is_empty() {
                return Err("tls: failed to find any PEM data in certificate input".into());
            }
            let der = PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(|_| "tls: failed to find any PEM data in key input".to_string())?;
            Some((chain, der))
        }
        (cert, key) => {
            return Err(format!(
                "KeyFile and CertFile must both be present[key: {}, cert: {}]",
                key.unwrap_or_default(),
                cert.unwrap_or_default()
            ))
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let roots = match cacert {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let pem = read(path)?;
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| format!("{path}: {e}"))?;
                roots.add(c).map_err(|e| format!("{path}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("{path}: no certificate in the CA bundle"));
            }
            roots
        }
        None => system_roots(),
    };
    let builder = if flags.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::new(provider)))
    } else {
        builder.with_root_certificates(roots)
    };
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, der)) => builder
            .with_client_auth_cert(chain, der)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => {
                    "tls: private key does not match public key".to_string()
                }
                e => format!("tls: {e}"),
            })?,
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// What an `https://` endpoint uses when no flag made a configuration: the system's roots.
pub(crate) fn default_https_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        match ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
            Ok(b) => b,
            // The ring provider supports the default versions; keep rustls' own defaults.
            Err(_) => ClientConfig::builder(),
        };
    let mut config = builder
        .with_root_certificates(system_roots())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots
}

/// Go's `os.ReadFile` error text.
fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        let text = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => {
                let t = e.to_string();
                match t.find(" (os error") {
                    Some(i) => t[..i].to_lowercase(),
                    None => t,
                }
            }
        };
        format!("open {path}: {text}")
    })
}

/// TCP then TLS, for tonic's connections to `https://` endpoints.
#[derive(Clone)]
pub(crate) struct TlsConnector {
    /// The configuration.
    pub config: Arc<ClientConfig>,
    /// The name the server's certificate must carry (the endpoint's host).
    pub name: ServerName<'static>,
}

type TlsIo = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tower::Service<tonic::codegen::http::Uri> for TlsConnector {
    type Response = TlsIo;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<TlsIo>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: tonic::codegen::http::Uri) -> Self::Future {
        let config = self.config.clone();
        let name = self.name.clone();
        Box::pin(async move {
            let authority = uri
                .authority()
                .map(|a| a.to_string())
                .ok_or_else(|| std::io::Error::other(format!("{uri} has no host")))?;
            let tcp = TcpStream::connect(authority).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(TokioIo::new(tls))
        })
    }
}

/// The host of `host:port` (brackets of an IPv6 address removed) as a TLS server name.
pub(crate) fn server_name(host_port: &str) -> Result<ServerName<'static>, String> {
    let host = match host_port.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host_port,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_make_etcdctls_configuration_and_errors() {
        assert!(client_config(&TlsFlags {
            insecure_transport: true,
            ..TlsFlags::default()
        })
        .unwrap()
        .is_none());
        assert!(client_config(&TlsFlags::default()).unwrap().is_some());
        let e = client_config(&TlsFlags {
            cert: Some("/c.pem".into()),
            insecure_transport: true,
            ..TlsFlags::default()
        })
        .unwrap_err();
        assert_eq!(
            e,
            "KeyFile and CertFile must both be present[key: , cert: /c.pem]"
        );
        let e = client_config(&TlsFlags {
            cacert: Some("/nonexistent/ca.pem".into()),
            insecure_transport: true,
            ..TlsFlags::default()
        })
        .unwrap_err();
        assert_eq!(e, "open /nonexistent/ca.pem: no such file or directory");
        assert!(server_name("[::1]:2379").is_ok());
        assert!(server_name("localhost:2379").is_ok());
    }
}
