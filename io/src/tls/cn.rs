//! The subject Common Name of an X.509 certificate (RFC 5280 section 4.1), read with a minimal DER walker: the
//! path to it is fixed (Certificate, TBSCertificate, subject Name), so a full ASN.1 parser would be dead weight.
//! rustls has already verified the certificate's signature chain before anyone asks for its name.

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// `[0] EXPLICIT Version`, present in v2/v3 certificates.
const VERSION_TAG: u8 = 0xA0;
/// id-at-commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

const UTF8_STRING: u8 = 0x0C;
const PRINTABLE_STRING: u8 = 0x13;
const TELETEX_STRING: u8 = 0x14;
const IA5_STRING: u8 = 0x16;
const BMP_STRING: u8 = 0x1E;

/// The first Common Name in the certificate's subject, or `None` if there is none or the DER is malformed.
pub fn subject_common_name(der: &[u8]) -> Option<String> {
    let (certificate, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(certificate, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION_TAG) {
        rest = tlv(rest)?.2;
    }
    // serialNumber, signature, issuer, validity: skipped; subject comes next.
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (mut subject, _) = expect(rest, SEQUENCE)?;
    while !subject.is_empty() {
        let (mut rdn, after) = expect(subject, SET)?;
        subject = after;
        while !rdn.is_empty() {
            let (attribute, after) = expect(rdn, SEQUENCE)?;
            rdn = after;
            let (oid, value) = expect(attribute, OID)?;
            if oid == COMMON_NAME {
                let (tag, content, _) = tlv(value)?;
                return decode_string(tag, content);
            }
        }
    }
    None
}

/// One TLV: its tag, its content and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits count the length bytes; four is plenty for any certificate.
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        (bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b)), rest)
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

/// A TLV with the given tag: its content and what follows it.
fn expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    match tlv(input)? {
        (tag, content, rest) if tag == want => Some((content, rest)),
        _ => None,
    }
}

fn decode_string(tag: u8, content: &[u8]) -> Option<String> {
    match tag {
        UTF8_STRING | PRINTABLE_STRING | IA5_STRING | TELETEX_STRING => String::from_utf8(content.to_vec()).ok(),
        BMP_STRING => {
            let pairs = content.chunks_exact(2);
            if !pairs.remainder().is_empty() {
                return None;
            }
            let units: Vec<u16> = pairs.map(|pair| u16::from_be_bytes([pair[0], pair[1]])).collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(params: rcgen::CertificateParams) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key pair");
        params.self_signed(&key).expect("self-signed").der().to_vec()
    }

    #[test]
    fn common_name_is_read_among_other_subject_attributes() {
        let mut params = rcgen::CertificateParams::new(vec!["device.example".into()]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example Org");
        params.distinguished_name.push(rcgen::DnType::CommonName, "sensor-17");
        params.distinguished_name.push(rcgen::DnType::CountryName, "DE");
        assert_eq!(subject_common_name(&cert_with(params)).as_deref(), Some("sensor-17"));
    }

    #[test]
    fn a_certificate_without_common_name_has_none() {
        let mut params = rcgen::CertificateParams::new(vec!["device.example".into()]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example Org");
        assert_eq!(subject_common_name(&cert_with(params)), None);
    }

    #[test]
    fn truncated_or_garbage_der_gives_none_without_panicking() {
        let mut params = rcgen::CertificateParams::new(vec!["x".into()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, "alice");
        let der = cert_with(params);
        for len in 0..der.len() {
            let _ = subject_common_name(&der[..len]);
        }
        assert_eq!(subject_common_name(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]), None);
        assert_eq!(subject_common_name(b"not a certificate"), None);
    }
}
