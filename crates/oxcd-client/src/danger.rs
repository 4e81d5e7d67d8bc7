//! A rustls verifier that skips the server certificate check (cargo feature `danger`, implied
//! by `tls`): etcdctl's `--insecure-skip-tls-verify`, and how etcd dials peers whose
//! certificates they made themselves (`--peer-auto-tls`). One copy for the client's
//! [`TlsOptions::with_insecure_skip_verify`](crate::TlsOptions::with_insecure_skip_verify),
//! oxcdctl and the server's peer dialer.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Trusts every server certificate (no chain, name or validity check) but still checks the
/// handshake's signatures with the provider's algorithms, so the connection is encrypted
/// to whoever holds the presented certificate's key — not authenticated.
///
/// ```
/// use std::sync::Arc;
/// use oxcd_client::danger::AcceptAnyServerCert;
/// let config = rustls::ClientConfig::builder_with_provider(Arc::new(
///     rustls::crypto::ring::default_provider(),
/// ))
/// .with_safe_default_protocol_versions()
/// .unwrap()
/// .dangerous()
/// .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::default()))
/// .with_no_client_auth();
/// # let _ = config;
/// ```
#[derive(Debug)]
pub struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl AcceptAnyServerCert {
    /// Checks handshake signatures with `provider`'s algorithms (the provider the
    /// connection's configuration uses).
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        AcceptAnyServerCert(provider)
    }
}

impl Default for AcceptAnyServerCert {
    /// With rustls' ring provider.
    fn default() -> Self {
        AcceptAnyServerCert(Arc::new(rustls::crypto::ring::default_provider()))
    }
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
