//! Client-facing TLS: the rustls server configuration built from the configured PEM files.
//!
//! One crypto provider for the whole workspace (ring), passed explicitly rather than installed as the
//! process default, so nothing depends on which crate initialised rustls first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{TlsConfig, TlsMode};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {key} {path}: {source}")]
    Pem {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("tls.cert_file {0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("invalid TLS certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A configured TLS acceptor (opaque in logs: it holds the private key).
#[derive(Clone)]
pub struct Acceptor(TlsAcceptor);

impl Acceptor {
    pub fn inner(&self) -> &TlsAcceptor {
        &self.0
    }
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptor(<tls config>)")
    }
}

/// The acceptor for the configured mode, or `None` when TLS is disabled.
pub fn acceptor(config: &TlsConfig) -> Result<Option<Acceptor>, TlsError> {
    if config.mode == TlsMode::Disable {
        return Ok(None);
    }
    let (Some(cert_file), Some(key_file)) = (&config.cert_file, &config.key_file) else {
        return Ok(None); // validate() already refused this combination
    };
    let certs = certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|source| TlsError::Pem {
        key: "tls.key_file",
        path: key_file.clone(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Some(Acceptor(TlsAcceptor::from(Arc::new(server)))))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |source| TlsError::Pem {
        key: "tls.cert_file",
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}
