//! A throwaway certificate authority and server certificate, made at test time with rcgen, for TLS
//! tests (nothing is checked in, nothing expires between runs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;

/// PEM files in a temporary directory, removed on drop.
pub struct TestCerts {
    dir: PathBuf,
    pub ca_pem: String,
}

impl TestCerts {
    /// A CA, and a server certificate it signed for `localhost` and `127.0.0.1`.
    pub fn generate() -> anyhow::Result<TestCerts> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "pgroute test CA");
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate()?;
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_cert = server_params.signed_by(&server_key, &issuer)?;

        let dir = std::env::temp_dir().join(format!(
            "pgroute-certs-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).context("cert dir")?;
        let ca_pem = ca_cert.pem();
        std::fs::write(dir.join("ca.crt"), &ca_pem)?;
        std::fs::write(dir.join("server.crt"), server_cert.pem())?;
        std::fs::write(dir.join("server.key"), server_key.serialize_pem())?;
        Ok(TestCerts { dir, ca_pem })
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn cert_file(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the server key usable by a PostgreSQL server of the kit: owned by the user the servers
    /// run as (`postgres` when the tests run as root) and readable by it alone, as PostgreSQL demands.
    pub fn give_key_to_postgres(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let key = self.key_file();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        let euid = std::process::Command::new("id").arg("-u").output()?;
        if String::from_utf8_lossy(&euid.stdout).trim() == "0" {
            let uid = std::process::Command::new("id")
                .args(["-u", "postgres"])
                .output()?;
            let gid = std::process::Command::new("id")
                .args(["-g", "postgres"])
                .output()?;
            let uid: u32 = String::from_utf8_lossy(&uid.stdout).trim().parse()?;
            let gid: u32 = String::from_utf8_lossy(&gid.stdout).trim().parse()?;
            std::os::unix::fs::chown(&key, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    /// A tokio-postgres TLS connector that trusts only this CA (ring provider, as the proxy uses).
    pub fn connector(&self) -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
