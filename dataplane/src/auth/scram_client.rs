//! The client side of SCRAM-SHA-256 towards a backend, from a client's keys instead of a password.
//!
//! A SCRAM proof is `ClientKey XOR HMAC(StoredKey, AuthMessage)`, so whoever holds the `ClientKey` a
//! client revealed while logging in to pgroute can log in to a backend that holds the same verifier
//! (same salt and iteration count), without ever knowing the password. This is what PgBouncer does
//! for `auth_query` users and SCRAM verifiers in its auth file. Channel binding is not used towards
//! backends (`n,,`): the proxy terminates the client's TLS, so there is no binding to pass on.

use super::md5::constant_time_eq;
use super::scram::{hmac, ScramKeys};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Why logging in to a backend with SCRAM keys failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyLoginError {
    #[error("malformed SCRAM message from backend: {0}")]
    Malformed(&'static str),
    #[error("the backend's SCRAM salt or iteration count differs from the verifier pgroute holds (was the password changed?)")]
    VerifierChanged,
    #[error(
        "the backend's SCRAM signature does not match the verifier (not the expected server?)"
    )]
    ServerSignature,
}

/// One login to a backend with a client's keys.
#[derive(Debug)]
pub struct KeyLogin {
    keys: ScramKeys,
    client_first_bare: String,
    client_nonce: String,
    /// Set once the client-final message is built; the server-final signature covers it.
    auth_message: Option<String>,
}

impl KeyLogin {
    pub fn new(keys: ScramKeys) -> KeyLogin {
        let client_nonce = STANDARD.encode(rand::random::<[u8; 18]>());
        KeyLogin {
            keys,
            // PostgreSQL ignores the SCRAM user name (it uses the startup packet's); libpq sends it
            // empty.
            client_first_bare: format!("n=,r={client_nonce}"),
            client_nonce,
            auth_message: None,
        }
    }

    /// The client-first message, with the gs2 header `n,,` (no channel binding).
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Answers the server-first message with the client-final message carrying the proof.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<String, KeyLoginError> {
        let text =
            std::str::from_utf8(server_first).map_err(|_| KeyLoginError::Malformed("utf-8"))?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in text.split(',') {
            match attr.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v),
                Some(("s=", v)) => salt = Some(v),
                Some(("i=", v)) => iterations = Some(v),
                Some(("m=", _)) => return Err(KeyLoginError::Malformed("mandatory extension")),
                _ => {}
            }
        }
        let nonce = nonce
            .filter(|n| n.starts_with(&self.client_nonce) && n.len() > self.client_nonce.len())
            .ok_or(KeyLoginError::Malformed("server nonce"))?;
        let salt = STANDARD
            .decode(salt.ok_or(KeyLoginError::Malformed("salt"))?)
            .map_err(|_| KeyLoginError::Malformed("salt"))?;
        let iterations: u32 = iterations
            .and_then(|i| i.parse().ok())
            .ok_or(KeyLoginError::Malformed("iteration count"))?;
        let verifier = &self.keys.verifier;
        if salt != verifier.salt() || iterations != verifier.iterations() {
            return Err(KeyLoginError::VerifierChanged);
        }
        // `biws` is base64 of the gs2 header `n,,`.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = hmac(verifier.stored_key(), auth_message.as_bytes());
        let proof: Vec<u8> = self
            .keys
            .client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        self.auth_message = Some(auth_message);
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)))
    }

    /// Checks the server-final message: the backend must prove it holds the same verifier.
    pub fn verify_server_final(self, server_final: &[u8]) -> Result<(), KeyLoginError> {
        let text =
            std::str::from_utf8(server_final).map_err(|_| KeyLoginError::Malformed("utf-8"))?;
        let signature = text
            .split(',')
            .find_map(|a| a.strip_prefix("v="))
            .and_then(|v| STANDARD.decode(v).ok())
            .ok_or(KeyLoginError::Malformed("server signature"))?;
        let auth_message = self
            .auth_message
            .ok_or(KeyLoginError::Malformed("server-final before server-first"))?;
        let expected = hmac(self.keys.verifier.server_key(), auth_message.as_bytes());
        if constant_time_eq(&expected, &signature) {
            Ok(())
        } else {
            Err(KeyLoginError::ServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::auth::{Binding, ScramExchange, ScramVerifier, Secret, SCRAM_MECHANISM};

    /// Keys as a real client reveals them: postgres-protocol's client against the server side.
    fn keys_from_login(verifier: &ScramVerifier, password: &str) -> ScramKeys {
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let exchange = ScramExchange::start(
            verifier.clone(),
            SCRAM_MECHANISM,
            client.message(),
            Binding::NotOffered,
        )
        .expect("start");
        client
            .update(exchange.server_first().as_bytes())
            .expect("server-first");
        exchange.finish(client.message()).expect("login").keys
    }

    /// A second exchange, with pgroute's key client in place of a password client.
    fn log_in_again(keys: ScramKeys, server: &ScramVerifier) -> Result<(), KeyLoginError> {
        let mut login = KeyLogin::new(keys);
        let exchange = ScramExchange::start(
            server.clone(),
            SCRAM_MECHANISM,
            login.client_first().as_bytes(),
            Binding::NotOffered,
        )
        .map_err(|_| KeyLoginError::Malformed("start"))?;
        let client_final = login.client_final(exchange.server_first().as_bytes())?;
        let success = exchange
            .finish(client_final.as_bytes())
            .map_err(|_| KeyLoginError::ServerSignature)?;
        login.verify_server_final(success.server_final.as_bytes())
    }

    #[test]
    fn keys_from_one_login_log_in_to_a_server_with_the_same_verifier() {
        let v = ScramVerifier::for_secret(&Secret::Plain("pw".into())).expect("verifier");
        let keys = keys_from_login(&v, "pw");
        assert_eq!(&Sha256::digest(&keys.client_key)[..], v.stored_key());
        assert_eq!(log_in_again(keys, &v), Ok(()));
    }

    #[test]
    fn a_changed_password_is_detected_before_sending_a_proof() {
        let old = ScramVerifier::for_secret(&Secret::Plain("old".into())).expect("verifier");
        let new = ScramVerifier::for_secret(&Secret::Plain("new".into())).expect("verifier");
        let keys = keys_from_login(&old, "old");
        assert_eq!(
            log_in_again(keys, &new),
            Err(KeyLoginError::VerifierChanged)
        );
    }

    #[test]
    fn server_first_without_our_nonce_is_refused() {
        let v = ScramVerifier::for_secret(&Secret::Plain("pw".into())).expect("verifier");
        let mut login = KeyLogin::new(keys_from_login(&v, "pw"));
        assert_eq!(
            login.client_final(b"r=someoneelse,s=c2FsdA==,i=4096"),
            Err(KeyLoginError::Malformed("server nonce"))
        );
    }

    #[test]
    fn a_forged_server_signature_is_refused() {
        let v = ScramVerifier::for_secret(&Secret::Plain("pw".into())).expect("verifier");
        let mut login = KeyLogin::new(keys_from_login(&v, "pw"));
        let exchange = ScramExchange::start(
            v.clone(),
            SCRAM_MECHANISM,
            login.client_first().as_bytes(),
            Binding::NotOffered,
        )
        .expect("start");
        login
            .client_final(exchange.server_first().as_bytes())
            .expect("client-final");
        assert_eq!(
            login.verify_server_final(b"v=AAAA"),
            Err(KeyLoginError::ServerSignature)
        );
    }
}
