//! SCRAM channel binding `tls-server-end-point` (RFC 5929): a hash of the server's
//! certificate, with the hash function of the certificate's signature algorithm (SHA-256
//! for MD5 and SHA-1), as PostgreSQL computes it.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// The binding data of the DER certificate `cert`, `None` when its signature algorithm is
/// not one PostgreSQL can bind with (Ed25519, RSASSA-PSS) or the certificate is malformed.
pub fn tls_server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    let hash: fn(&[u8]) -> Vec<u8> = match signature_algorithm(cert)? {
        // md5WithRSAEncryption, sha1WithRSAEncryption, sha256WithRSAEncryption,
        // sha224WithRSAEncryption, ecdsa-with-SHA1, ecdsa-with-SHA224, ecdsa-with-SHA256,
        // dsa-with-sha1, dsa-with-sha256
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04 | 0x05 | 0x0b | 0x0e]
        | [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01]
        | [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x01 | 0x02]
        | [0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x03]
        | [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x02] => |c| Sha256::digest(c).to_vec(),
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c]
        | [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03] => |c| Sha384::digest(c).to_vec(),
        // sha512WithRSAEncryption, ecdsa-with-SHA512
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d]
        | [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04] => |c| Sha512::digest(c).to_vec(),
        _ => return None,
    };
    Some(hash(cert))
}

/// The OID (content bytes) of `Certificate.signatureAlgorithm`:
/// `SEQUENCE { tbsCertificate, SEQUENCE { algorithm OID, ... }, signature }`.
fn signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    let (tag, certificate, _) = element(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, rest) = element(certificate)?; // tbsCertificate
    let (tag, algorithm, _) = element(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, oid, _) = element(algorithm)?;
    (tag == 0x06).then_some(oid)
}

/// One DER element at the start of `der`: its tag, its contents and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ecdsa_sha256_certificate_binds_with_sha256() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der();
        assert_eq!(
            tls_server_end_point(der),
            Some(Sha256::digest(der).to_vec())
        );
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(
            tls_server_end_point(cert.der()),
            Some(Sha384::digest(cert.der()).to_vec())
        );
    }

    #[test]
    fn malformed_certificates_bind_with_nothing() {
        for bad in [&[][..], &[0x30], &[0x30, 0x82, 0xff], &[0x02, 0x01, 0x00]] {
            assert_eq!(tls_server_end_point(bad), None);
        }
    }
}
