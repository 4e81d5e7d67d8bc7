//! `--auto-tls` / `--peer-auto-tls`: a self-signed certificate in
//! `<data-dir>/fixtures/{client,peer}`, as etcd's `transport.SelfCert`: organisation "etcd",
//! the listen URLs' hosts as SANs, server (and client) authentication, valid
//! `--self-signed-cert-validity` years; files already there are reused. etcd uses a P-521
//! key, which rustls (ring) cannot sign with; oxcd uses P-256.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Where the pair is, existing or created: (cert.pem, key.pem).
pub(crate) fn self_cert(
    dir: &Path,
    hosts: &[String],
    validity_years: u64,
) -> Result<(PathBuf, PathBuf), String> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        format!(
            "--auto-tls: cannot {what} in {}: {e}; check that the data directory is writable",
            dir.display()
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("create the certificate directory", &e))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "etcd");
    params.distinguished_name = name;
    params.not_before = time::OffsetDateTime::now_utc();
    let days = i64::try_from(validity_years.max(1).saturating_mul(365)).unwrap_or(365);
    params.not_after = params.not_before + time::Duration::days(days);
    params.key_usages = vec![
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.is_ca = IsCa::ExplicitNoCa;
    for host in hosts {
        let san = match host.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.clone()
                    .try_into()
                    .map_err(|e| fail("name the certificate's host", &e))?,
            ),
        };
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    let key = KeyPair::generate().map_err(|e| fail("generate a key", &e))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| fail("create a certificate", &e))?;
    write_file(&cert_path, cert.pem().as_bytes(), 0o644).map_err(|e| fail("write cert.pem", &e))?;
    tracing::info!(path = %cert_path.display(), "created cert file");
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)
        .map_err(|e| fail("write key.pem", &e))?;
    tracing::info!(path = %key_path.display(), "created key file");
    Ok((cert_path, key_path))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
