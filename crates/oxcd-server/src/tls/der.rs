//! Just enough DER to read what etcd reads from a peer's certificate: the subject's common
//! name (Go's `cert.Subject.CommonName`: the last CN attribute) and the serial number (for
//! the CRL check). The certificate was parsed and verified by rustls/webpki before; this
//! only walks its structure.

/// One TLV: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
/// 2.5.4.3, id-at-commonName.
const CN_OID: &[u8] = &[0x55, 0x04, 0x03];

/// The TBSCertificate's fields after the optional version: serial, signature, issuer,
/// validity, subject.
fn tbs_fields(cert: &[u8]) -> Option<&[u8]> {
    let (tag, cert, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    // [0] EXPLICIT version, optional.
    match tbs.first() {
        Some(0xa0) => tlv(tbs).map(|(_, _, rest)| rest),
        _ => Some(tbs),
    }
}

/// The serial number's INTEGER contents, as written (with a leading zero byte if any).
pub(crate) fn serial(cert: &[u8]) -> Option<&[u8]> {
    let (tag, serial, _) = tlv(tbs_fields(cert)?)?;
    (tag == INTEGER).then_some(serial)
}

/// The subject Name and what follows it.
fn subject(cert: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let fields = tbs_fields(cert)?;
    let (_, _, rest) = tlv(fields)?; // serial
    let (_, _, rest) = tlv(rest)?; // signature algorithm
    let (_, _, rest) = tlv(rest)?; // issuer
    let (_, _, rest) = tlv(rest)?; // validity
    tlv(rest)
}

/// 2.5.29.17, id-ce-subjectAltName.
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];

/// The DNS names and IP addresses of the subjectAltName extension.
pub(crate) fn subject_alt_names(cert: &[u8]) -> (Vec<String>, Vec<std::net::IpAddr>) {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    let found = (|| {
        let (_, _, rest) = subject(cert)?;
        let (_, _, mut rest) = tlv(rest)?; // subjectPublicKeyInfo
        while !rest.is_empty() {
            let (tag, content, next) = tlv(rest)?;
            rest = next;
            if tag != 0xa3 {
                continue; // issuer/subject unique IDs
            }
            let (_, mut exts, _) = tlv(content)?;
            while !exts.is_empty() {
                let (_, ext, next) = tlv(exts)?;
                exts = next;
                let (_, oid, mut fields) = tlv(ext)?;
                if oid != SAN_OID {
                    continue;
                }
                if fields.first() == Some(&0x01) {
                    fields = tlv(fields)?.2; // critical
                }
                let (_, octets, _) = tlv(fields)?;
                let (_, mut names, _) = tlv(octets)?;
                while !names.is_empty() {
                    let (tag, value, next) = tlv(names)?;
                    names = next;
                    match (tag, value.len()) {
                        (0x82, _) => dns.push(String::from_utf8_lossy(value).into_owned()),
                        (0x87, 4) => {
                            let b: [u8; 4] = value.try_into().ok()?;
                            ips.push(std::net::IpAddr::from(b));
                        }
                        (0x87, 16) => {
                            let b: [u8; 16] = value.try_into().ok()?;
                            ips.push(std::net::IpAddr::from(b));
                        }
                        _ => {}
                    }
                }
            }
        }
        Some(())
    })();
    let _ = found;
    (dns, ips)
}

/// The subject's common name, if it has one (the last, as Go takes it).
pub(crate) fn common_name(cert: &[u8]) -> Option<String> {
    let (tag, mut name, _) = subject(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut cn = None;
    while !name.is_empty() {
        let (tag, mut rdn, rest) = tlv(name)?;
        name = rest;
        if tag != SET {
            return None;
        }
        while !rdn.is_empty() {
            let (_, attr, rest) = tlv(rdn)?;
            rdn = rest;
            let (tag, oid, value) = tlv(attr)?;
            if tag == OID && oid == CN_OID {
                let (_, text, _) = tlv(value)?;
                cn = Some(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    cn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_common_name_and_serial_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "etcd");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0x02, 0x03]));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()).as_deref(), Some("alice"));
        assert_eq!(serial(cert.der()), Some(&[0x01, 0x02, 0x03][..]));
        assert_eq!(
            subject_alt_names(cert.der()),
            (vec!["localhost".to_string()], vec![])
        );
        let ip_params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "a.example".to_string()])
                .unwrap();
        let ip_cert = ip_params.self_signed(&key).unwrap();
        assert_eq!(
            subject_alt_names(ip_cert.der()),
            (
                vec!["a.example".to_string()],
                vec![std::net::IpAddr::from([127, 0, 0, 1])]
            )
        );
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()), None);
        assert_eq!(common_name(b"\x30\x03\x02\x01"), None);
    }
}
