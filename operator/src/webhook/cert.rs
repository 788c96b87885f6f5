//! The webhook's serving certificate, reloaded when its files change.
//!
//! cert-manager renews the certificate in its Secret and the kubelet updates the mounted files in
//! place; a restart must not be needed for it. [`ReloadingCert`] is the rustls certificate resolver:
//! it hands out whatever [`CertifiedKey`] it currently holds (an `ArcSwap`, read on every handshake,
//! written by [`watch`]), so new handshakes get the new certificate while established connections
//! are untouched. A pair that does not load — half-written, garbage, a key that does not fit the
//! certificate — is logged and the current one kept; the next change is tried again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate/key pair could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid PEM: {source}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("the key in {key_file} is unusable or does not fit the certificate in {cert_file}: {source}")]
    Key {
        cert_file: PathBuf,
        key_file: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// Where the certificate chain and its key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The two files' contents, compared to tell whether anything changed since the last look. Content
/// rather than modification time: a Secret volume swaps a symlink, which a timestamp of the path
/// does not always show, and the files are small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemPair {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl CertFiles {
    /// Both files' current contents.
    pub fn read(&self) -> Result<PemPair, CertError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| CertError::Read {
                path: path.to_owned(),
                source,
            })
        };
        Ok(PemPair {
            cert: read(&self.cert_file)?,
            key: read(&self.key_file)?,
        })
    }

    /// `pem` as a certificate chain with its key, checked to belong together.
    pub fn parse(
        &self,
        pem: &PemPair,
        provider: &CryptoProvider,
    ) -> Result<CertifiedKey, CertError> {
        let pem_error = |path: &Path| {
            let path = path.to_owned();
            move |source| CertError::Pem { path, source }
        };
        let chain = CertificateDer::pem_slice_iter(&pem.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem_error(&self.cert_file))?;
        if chain.is_empty() {
            return Err(CertError::NoCertificate(self.cert_file.clone()));
        }
        let key = PrivateKeyDer::from_pem_slice(&pem.key).map_err(pem_error(&self.key_file))?;
        CertifiedKey::from_der(chain, key, provider).map_err(|source| CertError::Key {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            source,
        })
    }
}

/// The rustls certificate resolver that always answers with the current pair.
#[derive(Debug)]
pub struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
}

impl ReloadingCert {
    pub fn new(initial: CertifiedKey) -> Self {
        ReloadingCert {
            current: ArcSwap::from_pointee(initial),
        }
    }

    /// Serves `key` from the next handshake on.
    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Every `interval`, reads `files` again and, when they differ from `loaded` and make a valid pair,
/// swaps it into `resolver`. Runs until dropped.
pub async fn watch(
    files: CertFiles,
    mut loaded: PemPair,
    resolver: Arc<ReloadingCert>,
    provider: Arc<CryptoProvider>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let pem = match files.read() {
            Ok(pem) => pem,
            Err(e) => {
                tracing::warn!(error = %e, "webhook certificate: cannot read the files; still serving the previous certificate");
                continue;
            }
        };
        if pem == loaded {
            continue;
        }
        // Remembered even when it does not load: one warning per change, and the next change (the
        // other half of a pair written in two steps) is tried again.
        loaded = pem;
        match files.parse(&loaded, &provider) {
            Ok(key) => {
                resolver.replace(key);
                tracing::info!(cert_file = %files.cert_file.display(), "webhook certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhook certificate changed but does not load; still serving the previous certificate");
            }
        }
    }
}
