//! Certificates made at test time with rcgen: a CA, a server certificate for `localhost`
//! and `127.0.0.1` signed by it, a client certificate (CN `certuser`) signed by it, and a
//! second CA that signed nothing (the "wrong CA"). More server certificates can be issued
//! by the same CA ([`Certs::issue`]), for rotation or for another name.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Certs {
    dir: TempDir,
    issuer: Issuer<'static, KeyPair>,
    /// The CA bundle (PEM) that signed the server and client certificates.
    pub ca: PathBuf,
    /// A CA bundle that signed nothing here.
    pub wrong_ca: PathBuf,
    /// For `localhost` and `127.0.0.1`.
    pub server: Pair,
    /// CN `certuser`.
    pub client: Pair,
}

impl Certs {
    pub fn generate() -> Result<Certs> {
        let dir = tempfile::Builder::new().prefix("pgdog-certs-").tempdir()?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let (ca_params, ca_key) = new_ca("pgdog test CA")?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = write(dir.path(), "ca.crt", &ca_cert.pem(), 0o644)?;
        let (wrong_params, wrong_key) = new_ca("somebody else's CA")?;
        let wrong_ca = write(
            dir.path(),
            "wrong-ca.crt",
            &wrong_params.self_signed(&wrong_key)?.pem(),
            0o644,
        )?;
        let mut certs = Certs {
            issuer: Issuer::new(ca_params, ca_key),
            dir,
            ca,
            wrong_ca,
            server: Pair {
                cert: PathBuf::new(),
                key: PathBuf::new(),
            },
            client: Pair {
                cert: PathBuf::new(),
                key: PathBuf::new(),
            },
        };
        certs.server = certs.issue("server", &["localhost", "127.0.0.1"], None)?;
        certs.client = certs.issue("client", &[], Some("certuser"))?;
        Ok(certs)
    }

    /// A certificate for `names` (DNS names or IP addresses) with common name `cn`,
    /// signed by the CA, written as `<stem>.crt` and `<stem>.key`.
    pub fn issue(&self, stem: &str, names: &[&str], cn: Option<&str>) -> Result<Pair> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names)?;
        if let Some(cn) = cn {
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, cn);
            params.distinguished_name = dn;
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Pair {
            cert: write(self.dir.path(), &format!("{stem}.crt"), &cert.pem(), 0o644)?,
            key: write(
                self.dir.path(),
                &format!("{stem}.key"),
                &key.serialize_pem(),
                0o600,
            )?,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn new_ca(name: &str) -> Result<(CertificateParams, KeyPair)> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    Ok((params, KeyPair::generate()?))
}

fn write(dir: &Path, name: &str, pem: &str, mode: u32) -> Result<PathBuf> {
    let path = dir.join(name);
    fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    Ok(path)
}
