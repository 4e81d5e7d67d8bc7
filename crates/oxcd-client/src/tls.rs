//! TLS for `https://` endpoints (cargo feature `tls`): a CA, a client certificate for
//! etcd's `--client-cert-auth`, the server name to verify, or no verification at all
//! (etcdctl's `--insecure-skip-tls-verify`).

use std::path::Path;
use std::sync::Arc;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::danger::AcceptAnyServerCert;
use crate::error::{Error, Result};

/// How to secure `https://` endpoints.
///
/// ```
/// use oxcd_client::{ConnectOptions, TlsOptions};
/// let tls = TlsOptions::new()
///     .with_ca_pem(b"-----BEGIN CERTIFICATE-----\n...".to_vec())
///     .with_domain_name("etcd.internal");
/// let options = ConnectOptions::new().with_tls(tls);
/// # let _ = options;
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsOptions {
    /// PEM of the CA(s) that signed the servers' certificates; `None` = the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM of the client certificate and its key, for servers that check clients.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// The name the server certificate must carry, when not the endpoint's host.
    pub domain_name: Option<String>,
    /// Accept any server certificate (encrypted, but not authenticated).
    pub insecure_skip_verify: bool,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| p.len()))
            .field(
                "identity_pem",
                &self.identity_pem.as_ref().map(|_| "<hidden>"),
            )
            .field("domain_name", &self.domain_name)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

impl TlsOptions {
    /// Verify servers against the system's roots.
    pub fn new() -> Self {
        Self::default()
    }
    /// Verify servers against this CA (PEM).
    pub fn with_ca_pem(mut self, pem: Vec<u8>) -> Self {
        self.ca_pem = Some(pem);
        self
    }
    /// Verify servers against the CA in this PEM file (etcdctl's `--cacert`).
    pub fn with_ca_file(self, path: impl AsRef<Path>) -> Result<Self> {
        Ok(self.with_ca_pem(read(path.as_ref())?))
    }
    /// Present this certificate and key (PEM) to the server.
    pub fn with_identity_pem(mut self, cert: Vec<u8>, key: Vec<u8>) -> Self {
        self.identity_pem = Some((cert, key));
        self
    }
    /// Present the certificate and key in these PEM files (etcdctl's `--cert`, `--key`).
    pub fn with_identity_files(
        self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self> {
        Ok(self.with_identity_pem(read(cert.as_ref())?, read(key.as_ref())?))
    }
    /// Expect this name in the server certificate.
    pub fn with_domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain_name = Some(name.into());
        self
    }
    /// Accept any server certificate.
    pub fn with_insecure_skip_verify(mut self) -> Self {
        self.insecure_skip_verify = true;
        self
    }

    /// `endpoint` secured with these options.
    pub(crate) fn apply(&self, endpoint: Endpoint) -> Result<Endpoint> {
        let mut config = ClientTlsConfig::new();
        if let Some(name) = &self.domain_name {
            config = config.domain_name(name.clone());
        }
        if let Some((cert, key)) = &self.identity_pem {
            config = config.identity(Identity::from_pem(cert, key));
        }
        let secured = if self.insecure_skip_verify {
            endpoint.tls_config_with_verifier(config, Arc::new(AcceptAnyServerCert::default()))
        } else {
            config = match &self.ca_pem {
                Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
                None => config.with_native_roots(),
            };
            endpoint.tls_config(config)
        };
        secured.map_err(|e| Error::InvalidArgument(format!("TLS configuration: {e}")))
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::InvalidArgument(format!("cannot read {}: {e}", path.display())))
}
