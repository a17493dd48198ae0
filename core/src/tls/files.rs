//! Reading certificates, keys and CA bundles from PEM files, with errors that name the
//! configuration key and the file.

use super::TlsError;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;

/// The certificates of `path` (a certificate and its chain), for config key `key`.
pub fn certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::file(key, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::File {
            key,
            path: path.to_path_buf(),
            reason: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

/// The private key of `path`, for config key `key`.
pub fn private_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::file(key, path, e))
}

/// A CA bundle: the certificates of `path` as trust anchors.
pub fn roots(key: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(key, path)? {
        store.add(cert).map_err(|e| TlsError::File {
            key,
            path: path.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(store)
}

/// The operating system's trust anchors (Debian's `ca-certificates`).
pub fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or("none found".to_string(), |e| e.to_string());
        return Err(TlsError::SystemRoots(why));
    }
    Ok(store)
}

/// A hash of the files' contents, so that a RELOAD can tell a rotated certificate from an
/// unchanged one at the same path.
pub fn contents_hash<'a>(paths: impl IntoIterator<Item = &'a Path>) -> u64 {
    let mut all = Vec::new();
    for path in paths {
        all.extend_from_slice(path.as_os_str().as_encoded_bytes());
        all.push(0);
        all.extend_from_slice(&std::fs::read(path).unwrap_or_default());
        all.push(0);
    }
    xxhash_rust::xxh3::xxh3_64(&all)
}
