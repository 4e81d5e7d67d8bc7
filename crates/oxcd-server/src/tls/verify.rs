//! Certificate checks beyond the chain: etcd's allowed CN / hostname, its CRL check by serial
//! number, its peer SAN check against the remote address. (Self-signed `--peer-auto-tls`
//! peers, which etcd does not verify either, are dialed with oxcd-client's
//! [`AcceptAnyServerCert`](oxcd_client::danger::AcceptAnyServerCert).)

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::{der, files};

/// A rejection that names its cause in the log and sends `bad_certificate`.
#[derive(Debug)]
struct Rejected(String);

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Rejected {}

fn reject(text: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(Rejected(text)),
    )))
}

/// What a verified client certificate must also satisfy.
#[derive(Debug, Default, Clone)]
pub(crate) struct ClientChecks {
    /// `--peer-cert-allowed-cn`: one of these common names.
    pub allowed_cn: Vec<String>,
    /// `--client-cert-allowed-hostname` / `--peer-cert-allowed-hostname`.
    pub allowed_hostname: Vec<String>,
    /// `--client-crl-file` / `--peer-crl-file`, read again at each handshake as etcd does.
    pub crl_file: Option<PathBuf>,
}

impl ClientChecks {
    /// etcd's checks, in its order and with its texts.
    pub(crate) fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        if !self.allowed_cn.is_empty() {
            let cn = der::common_name(end_entity).unwrap_or_default();
            if !self.allowed_cn.contains(&cn) {
                return Err(reject(format!(
                    "client certificate authentication failed: CN {cn:?} is not among the allowed {:?}",
                    self.allowed_cn
                )));
            }
        }
        if !self.allowed_hostname.is_empty() {
            let ok = webpki::EndEntityCert::try_from(end_entity).is_ok_and(|cert| {
                self.allowed_hostname.iter().any(|h| {
                    ServerName::try_from(h.as_str())
                        .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
                })
            });
            if !ok {
                return Err(reject(format!(
                    "client certificate authentication failed: valid for none of the allowed host names {:?}",
                    self.allowed_hostname
                )));
            }
        }
        if let Some(path) = &self.crl_file {
            let crl = files::crl("--crl-file", path).map_err(reject)?;
            let crl = webpki::CertRevocationList::from(
                webpki::BorrowedCertRevocationList::from_der(crl.as_ref())
                    .map_err(|e| reject(format!("{}: not a CRL: {e:?}", path.display())))?,
            );
            for cert in std::iter::once(end_entity).chain(intermediates) {
                let Some(serial) = der::serial(cert) else {
                    continue;
                };
                if matches!(crl.find_serial(serial), Ok(Some(_))) {
                    let hex: String = serial
                        .iter()
                        .skip_while(|b| **b == 0)
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    return Err(reject(format!(
                        "transport: certificate serial {hex} revoked"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The chain verifier (webpki against `--trusted-ca-file`) followed by [`ClientChecks`].
#[derive(Debug)]
pub(crate) struct CheckedClientVerifier {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub checks: ClientChecks,
}

impl ClientCertVerifier for CheckedClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.checks.check(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// etcd's `checkSAN` on peer connections: a peer certificate with IP or DNS SANs must name
/// the address the connection comes from (a DNS name by resolving it), with etcd's texts.
pub(crate) async fn check_peer_san(
    cert: &CertificateDer<'_>,
    remote: IpAddr,
) -> Result<(), String> {
    let (dns, ips) = der::subject_alt_names(cert.as_ref());
    if dns.is_empty() && ips.is_empty() {
        return Ok(());
    }
    if !ips.is_empty() {
        if ips.contains(&remote) {
            return Ok(());
        }
        if dns.is_empty() {
            return Err(format!(
                "x509: certificate is valid for {}, not {remote}",
                ips.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    for name in dns.iter().filter(|n| !n.starts_with("*.")) {
        if let Ok(addrs) = tokio::net::lookup_host((name.as_str(), 0)).await {
            if addrs.into_iter().any(|a| a.ip() == remote) {
                return Ok(());
            }
        }
    }
    Err(format!(
        "tls: {:?} does not match any of DNSNames {dns:?}",
        remote.to_string()
    ))
}
