//! TLS with rustls: the server configuration clients meet, and the client configuration pgroute uses
//! towards backends, built from the configured PEM files.
//!
//! One crypto provider for the whole workspace (ring), passed explicitly rather than installed as the
//! process default, so nothing depends on which crate initialised rustls first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{ServerTlsMode, TlsConfig, TlsMode};

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

/// A configured TLS acceptor (opaque in logs: it holds the private key), with the certificate's
/// `tls-server-end-point` channel-binding data.
#[derive(Clone)]
pub struct Acceptor {
    acceptor: TlsAcceptor,
    end_point: Option<Arc<[u8]>>,
}

impl Acceptor {
    pub fn inner(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// RFC 5929 `tls-server-end-point` data for SCRAM-SHA-256-PLUS, when the certificate's signature
    /// algorithm defines one.
    pub fn end_point(&self) -> Option<&Arc<[u8]>> {
        self.end_point.as_ref()
    }
}

/// The certificate hashed with its signature's hash function (SHA-256 for MD5 and SHA-1, per
/// RFC 5929), as PostgreSQL computes it. `None` for algorithms without a defined hash (Ed25519,
/// RSA-PSS): SCRAM-SHA-256-PLUS is then not offered.
fn end_point_hash(cert: &[u8]) -> Option<Arc<[u8]>> {
    use sha2::Digest;
    const RSA: [u8; 8] = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01];
    const ECDSA: [u8; 6] = [0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04];
    let has = |oid: &[u8]| cert.windows(oid.len()).any(|w| w == oid);
    let rsa = |last: u8| has(&[&RSA[..], &[last]].concat());
    let ecdsa = |tail: &[u8]| has(&[&ECDSA[..], tail].concat());
    if rsa(0x0C) || ecdsa(&[0x03, 0x03]) {
        Some(Arc::from(&sha2::Sha384::digest(cert)[..]))
    } else if rsa(0x0D) || ecdsa(&[0x03, 0x04]) {
        Some(Arc::from(&sha2::Sha512::digest(cert)[..]))
    } else if rsa(0x0B) || rsa(0x05) || rsa(0x04) || ecdsa(&[0x03, 0x02]) || ecdsa(&[0x01]) {
        Some(Arc::from(&sha2::Sha256::digest(cert)[..]))
    } else {
        None
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
    let end_point = certs.first().and_then(|c| end_point_hash(c));
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
    Ok(Some(Acceptor {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        end_point,
    }))
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

/// TLS towards backends: the mode and a connector built for it.
#[derive(Clone)]
pub struct BackendTls {
    pub mode: ServerTlsMode,
    pub connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackendTls({:?})", self.mode)
    }
}

/// The connector for `tls.server_mode`, or `None` when it is `disable`.
pub fn backend(config: &TlsConfig) -> Result<Option<BackendTls>, TlsError> {
    let mode = config.server_mode;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let client = match mode {
        ServerTlsMode::Disable => return Ok(None),
        ServerTlsMode::Prefer | ServerTlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verify::AnyCertificate { provider }))
            .with_no_client_auth(),
        ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull => {
            let Some(ca_file) = &config.server_ca_file else {
                return Ok(None); // validate() already refused this combination
            };
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates_for(ca_file, "tls.server_ca_file")? {
                roots.add(cert)?;
            }
            let roots = Arc::new(roots);
            if mode == ServerTlsMode::VerifyFull {
                builder.with_root_certificates(roots).with_no_client_auth()
            } else {
                let inner =
                    rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                        .build()
                        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verify::SignedByCa { inner }))
                    .with_no_client_auth()
            }
        }
    };
    Ok(Some(BackendTls {
        mode,
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
    }))
}

fn certificates_for(
    path: &Path,
    key: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |source| TlsError::Pem {
        key,
        path: path.to_owned(),
        source,
    };
    CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)
}

/// Certificate checks for libpq's weaker modes: `prefer`/`require` encrypt without checking who is on
/// the other end (the handshake signature is still verified), `verify-ca` checks the chain but not
/// the name.
mod verify {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};

    #[derive(Debug)]
    pub(super) struct AnyCertificate {
        pub(super) provider: Arc<CryptoProvider>,
    }

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    #[derive(Debug)]
    pub(super) struct SignedByCa {
        pub(super) inner: Arc<rustls::client::WebPkiServerVerifier>,
    }

    impl ServerCertVerifier for SignedByCa {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            match self
                .inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            {
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    }
}
