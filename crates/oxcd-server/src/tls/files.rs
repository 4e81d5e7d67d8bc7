//! Certificate and key files: loading them with a cause-and-fix error, and reloading them
//! when they change, as etcd does (it reads the pair again for every handshake, so a
//! rotated certificate is used without a restart). oxcd looks at the files' metadata at
//! each handshake and reads them again only when it changed; a pair that no longer loads
//! is logged and the last good one is kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Reads a file for `flag`.
pub(crate) fn read(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        format!(
            "cannot read {flag} {}: {e}; check the path and that oxcd may read the file",
            path.display()
        )
    })
}

/// The certificates of a PEM file (a chain, or a CA bundle).
pub(crate) fn certificates(
    flag: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(flag, path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "{flag} {} is not a valid PEM file ({e}); pass a PEM file of certificates",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----); pass a PEM file of certificates",
            path.display()
        ));
    }
    Ok(certs)
}

/// A private key from a PEM file (PKCS#8, PKCS#1 or SEC1).
fn private_key(flag: &str, path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read(flag, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        format!(
            "{flag} {} holds no usable PEM private key ({e}); pass the PEM key (PKCS#8, PKCS#1 or SEC1) of the certificate",
            path.display()
        )
    })
}

/// A CRL from a PEM or DER file.
pub(crate) fn crl(
    flag: &str,
    path: &Path,
) -> Result<CertificateRevocationListDer<'static>, String> {
    let bytes = read(flag, path)?;
    if bytes.starts_with(b"-----") || bytes.iter().take(64).all(|b| b.is_ascii()) {
        if let Ok(crl) = CertificateRevocationListDer::from_pem_slice(&bytes) {
            return Ok(crl);
        }
    }
    Ok(CertificateRevocationListDer::from(bytes))
}

/// A certificate and its key, checked to belong together.
pub(crate) fn certified_key(
    provider: &CryptoProvider,
    (cert_flag, cert): (&str, &Path),
    (key_flag, key): (&str, &Path),
) -> Result<CertifiedKey, String> {
    let chain = certificates(cert_flag, cert)?;
    let der = private_key(key_flag, key)?;
    let signing = provider.key_provider.load_private_key(der).map_err(|e| {
        format!(
            "{key_flag} {}: unsupported private key ({e}); use an RSA, ECDSA (P-256/P-384) or Ed25519 key",
            key.display()
        )
    })?;
    let pair = CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        Ok(()) => Ok(pair),
        Err(rustls::Error::InconsistentKeys(_)) => Err(format!(
            "{key_flag} {} does not match the certificate in {cert_flag} {} (private key does not match public key); pass the key the certificate was issued with",
            key.display(),
            cert.display()
        )),
        // The key type cannot say (rare): the handshake will tell.
        Err(_) => Ok(pair),
    }
}

/// What identifies a file's version: modification time, length and inode.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let ino = 0;
    Some((meta.modified().ok()?, meta.len(), ino))
}

/// A certificate/key pair that follows its files.
#[derive(Debug)]
pub(crate) struct ReloadingKey {
    provider: Arc<CryptoProvider>,
    cert_flag: &'static str,
    key_flag: &'static str,
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<(Stamp, Stamp, Arc<CertifiedKey>)>,
}

impl ReloadingKey {
    /// Loads the pair; the error is the one line for the operator.
    pub(crate) fn load(
        provider: Arc<CryptoProvider>,
        (cert_flag, cert): (&'static str, PathBuf),
        (key_flag, key): (&'static str, PathBuf),
    ) -> Result<ReloadingKey, String> {
        let stamps = (stamp(&cert), stamp(&key));
        let pair = certified_key(&provider, (cert_flag, &cert), (key_flag, &key))?;
        Ok(ReloadingKey {
            provider,
            cert_flag,
            key_flag,
            current: Mutex::new((stamps.0, stamps.1, Arc::new(pair))),
            cert,
            key,
        })
    }

    /// The pair to present now: reloaded first if a file changed.
    pub(crate) fn get(&self) -> Arc<CertifiedKey> {
        let stamps = (stamp(&self.cert), stamp(&self.key));
        let mut current = self.current.lock();
        if stamps.0 == current.0 && stamps.1 == current.1 {
            return current.2.clone();
        }
        match certified_key(
            &self.provider,
            (self.cert_flag, &self.cert),
            (self.key_flag, &self.key),
        ) {
            Ok(pair) => {
                tracing::info!(
                    cert_file = %self.cert.display(),
                    key_file = %self.key.display(),
                    "reloaded the TLS certificate: its files changed"
                );
                *current = (stamps.0, stamps.1, Arc::new(pair));
            }
            Err(e) => {
                // Half-written during a rotation, or wrong: keep serving the last good pair,
                // and try again when the files change again.
                tracing::warn!(error = %e, "cannot reload the TLS certificate; still using the previous one");
                current.0 = stamps.0;
                current.1 = stamps.1;
            }
        }
        current.2.clone()
    }
}

impl rustls::server::ResolvesServerCert for ReloadingKey {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl rustls::client::ResolvesClientCert for ReloadingKey {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
