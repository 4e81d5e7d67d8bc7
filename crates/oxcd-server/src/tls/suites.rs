//! `--cipher-suites`, `--tls-min-version` and `--tls-max-version`: etcd's (Go's) names mapped
//! to rustls.
//!
//! Go applies `--cipher-suites` to TLS 1.2 only (TLS 1.3's suites are not configurable and
//! always on); so does oxcd. rustls implements only AEAD suites with forward secrecy, so the
//! CBC, RC4, 3DES and RSA-key-exchange suites Go still knows are refused with a message that
//! says so. TLS 1.0 and 1.1 are refused by etcd 3.5 as well as by rustls.

use rustls::crypto::ring::cipher_suite as ring_suites;
use rustls::SupportedCipherSuite;

/// A TLS protocol version oxcd can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsVersion {
    /// Parses etcd's spelling (`TLS1.2`, `TLS1.3`); `""` is `None` (the default).
    pub fn parse(flag: &str, text: &str) -> Result<Option<TlsVersion>, String> {
        match text {
            "" => Ok(None),
            "TLS1.2" => Ok(Some(TlsVersion::Tls12)),
            "TLS1.3" => Ok(Some(TlsVersion::Tls13)),
            "TLS1.0" | "TLS1.1" => Err(format!(
                "--{flag}: unexpected TLS version {text:?} (must be one of: TLS1.2, TLS1.3); TLS 1.0 and 1.1 are insecure and neither etcd 3.5 nor oxcd (rustls) serves them"
            )),
            _ => Err(format!(
                "--{flag}: unexpected TLS version {text:?} (must be one of: TLS1.2, TLS1.3)"
            )),
        }
    }

    /// etcd's spelling.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLS1.2",
            TlsVersion::Tls13 => "TLS1.3",
        }
    }
}

/// The TLS 1.2 suites rustls (ring) has, under Go's names (and etcd's two aliases).
fn tls12_suite(name: &str) -> Option<SupportedCipherSuite> {
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
            ring_suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => {
            ring_suites::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        }
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
            ring_suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        }
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => {
            ring_suites::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            ring_suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            ring_suites::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

/// Go's TLS 1.3 suite names: accepted by etcd, and without effect in Go as in oxcd.
const TLS13_NAMES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Suites Go knows (so etcd accepts them) that rustls does not implement.
const GO_ONLY: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// The names oxcd accepts, for messages.
const SUPPORTED: &str = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256";

/// Checks `--cipher-suites` as etcd does and maps it to rustls: the TLS 1.2 suites, in the
/// order given. An empty list means rustls' defaults.
pub fn parse_cipher_suites(names: &[String]) -> Result<Vec<SupportedCipherSuite>, String> {
    let mut out = Vec::new();
    for name in names {
        if let Some(suite) = tls12_suite(name) {
            if !out.contains(&suite) {
                out.push(suite);
            }
        } else if TLS13_NAMES.contains(&name.as_str()) {
            // Go ignores configured TLS 1.3 suites; they are always enabled.
        } else if GO_ONLY.contains(&name.as_str()) {
            return Err(format!(
                "--cipher-suites: {name} is not supported by oxcd: rustls implements only AEAD suites with forward secrecy (no CBC, RC4, 3DES or RSA key exchange); use some of {SUPPORTED}"
            ));
        } else {
            return Err(format!(
                "--cipher-suites: unexpected TLS cipher suite {name:?}; use Go's names, some of {SUPPORTED}"
            ));
        }
    }
    Ok(out)
}

/// The crypto provider for these settings: every TLS 1.3 suite, then the chosen TLS 1.2
/// suites (all of rustls' when none was chosen).
pub fn provider(tls12: &[SupportedCipherSuite]) -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    if !tls12.is_empty() {
        let mut suites: Vec<SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
            .collect();
        suites.extend_from_slice(tls12);
        provider.cipher_suites = suites;
    }
    provider
}

/// The protocol versions between `min` (default TLS 1.2) and `max` (default TLS 1.3).
pub fn versions(
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let min = min.unwrap_or(TlsVersion::Tls12);
    let max = max.unwrap_or(TlsVersion::Tls13);
    let mut out = Vec::new();
    if min <= TlsVersion::Tls12 && TlsVersion::Tls12 <= max {
        out.push(&rustls::version::TLS12);
    }
    if min <= TlsVersion::Tls13 && TlsVersion::Tls13 <= max {
        out.push(&rustls::version::TLS13);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_names_map_to_rustls_suites_and_the_rest_is_refused_clearly() {
        let ok = parse_cipher_suites(&[
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".into(),
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305".into(),
            "TLS_AES_128_GCM_SHA256".into(),
        ])
        .unwrap();
        assert_eq!(
            ok,
            vec![
                ring_suites::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                ring_suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            ]
        );
        let e = parse_cipher_suites(&["TLS_RSA_WITH_AES_128_CBC_SHA".into()]).unwrap_err();
        assert!(e.contains("not supported by oxcd"), "{e}");
        let e = parse_cipher_suites(&["nope".into()]).unwrap_err();
        assert!(e.contains("unexpected TLS cipher suite \"nope\""), "{e}");
        let p = provider(&ok);
        assert_eq!(p.cipher_suites.len(), 3 + 2);
    }

    #[test]
    fn versions_follow_min_and_max() {
        assert_eq!(TlsVersion::parse("tls-min-version", "").unwrap(), None);
        assert!(TlsVersion::parse("tls-min-version", "TLS1.1").is_err());
        assert_eq!(versions(None, None).len(), 2);
        assert_eq!(
            versions(Some(TlsVersion::Tls13), None),
            vec![&rustls::version::TLS13]
        );
        assert_eq!(
            versions(None, Some(TlsVersion::Tls12)),
            vec![&rustls::version::TLS12]
        );
    }
}
