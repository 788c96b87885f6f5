//! The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL runs it.
//!
//! Plain passwords from the auth file are turned into verifiers when the file is loaded (4096 HMAC
//! rounds each, paid once, not per login), so the exchange only ever works with verifiers, the same as
//! PostgreSQL does with `pg_authid`. Channel binding (`SCRAM-SHA-256-PLUS`, `tls-server-end-point`) is
//! offered on TLS connections.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::md5::constant_time_eq;
use super::Secret;

pub const MECHANISM: &str = "SCRAM-SHA-256";
/// PostgreSQL's default `scram_iterations`.
const DEFAULT_ITERATIONS: u32 = 4096;
/// SCRAM with channel binding (`tls-server-end-point`), offered on TLS connections.
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// Channel binding on this connection, as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding<'a> {
    /// Not offered (plaintext, or a certificate whose end-point hash is not defined).
    NotOffered,
    /// Offered: the `tls-server-end-point` data of the server certificate.
    Offered(&'a [u8]),
}

/// A stored SCRAM-SHA-256 verifier: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ScramVerifier(iterations={}, <redacted>)",
            self.iterations
        )
    }
}

impl ScramVerifier {
    /// Parses PostgreSQL's verifier text; `None` if it is not one.
    pub fn parse(s: &str) -> Option<ScramVerifier> {
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iterations, salt) = iter_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        Some(ScramVerifier {
            iterations: iterations.parse().ok()?,
            salt: STANDARD.decode(salt).ok()?,
            stored_key: STANDARD.decode(stored).ok()?,
            server_key: STANDARD.decode(server).ok()?,
        })
    }

    /// A stand-in verifier for a user pgroute does not know, so the exchange runs to the end and fails
    /// like a wrong password: same messages, same salt for the same name every time (as PostgreSQL's
    /// `scram_mock_salt`), so neither the answer nor the salt tells a prober which users exist.
    pub fn mock(user: &str, seed: &[u8; 32]) -> ScramVerifier {
        let salt = hmac(seed, format!("salt:{user}").as_bytes());
        ScramVerifier {
            iterations: DEFAULT_ITERATIONS,
            salt: salt[..16].to_vec(),
            stored_key: hmac(seed, format!("stored:{user}").as_bytes()),
            server_key: hmac(seed, format!("server:{user}").as_bytes()),
        }
    }

    pub(crate) fn iterations(&self) -> u32 {
        self.iterations
    }

    pub(crate) fn salt(&self) -> &[u8] {
        &self.salt
    }

    pub(crate) fn stored_key(&self) -> &[u8] {
        &self.stored_key
    }

    pub(crate) fn server_key(&self) -> &[u8] {
        &self.server_key
    }

    /// The verifier for a secret, if the secret can do SCRAM.
    pub fn for_secret(secret: &Secret) -> Option<ScramVerifier> {
        match secret {
            Secret::Scram(v) => Some(v.clone()),
            Secret::Plain(p) => {
                ScramVerifier::parse(&postgres_protocol::password::scram_sha_256(p.as_bytes()))
            }
            Secret::Md5(_) => None,
        }
    }
}

/// What a successful exchange proves: the client's `ClientKey` (recovered from its proof), which with the
/// verifier is enough to log in to a backend holding the same verifier, without the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub(crate) client_key: Vec<u8>,
    pub(crate) verifier: ScramVerifier,
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramKeys(<redacted>)")
    }
}

/// The end of a successful exchange.
#[derive(Debug)]
pub struct ScramSuccess {
    /// The server-final message (`v=` signature) to send.
    pub server_final: String,
    pub keys: ScramKeys,
}

/// Why a SCRAM exchange failed. Every variant ends the login with SQLSTATE 28P01 or 08P01.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("client requires channel binding, which needs TLS")]
    ChannelBindingUnsupported,
    #[error(
        "client says the server does not support channel binding, but it was offered (downgrade?)"
    )]
    BindingDowngrade,
    #[error("channel binding data does not match this connection")]
    BindingMismatch,
    #[error("wrong password")]
    WrongProof,
}

/// One exchange: created with the client's first message, finished with its final message.
#[derive(Debug)]
pub struct ScramExchange {
    verifier: ScramVerifier,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    /// The `c=` attribute the client-final message must carry: base64 of the gs2 header and, with
    /// channel binding, the binding data.
    expected_binding: String,
}

impl ScramExchange {
    /// Takes the mechanism the client chose and its client-first message; returns the exchange
    /// (whose server-first message is to be sent next).
    pub fn start(
        verifier: ScramVerifier,
        mechanism: &str,
        client_first: &[u8],
        binding: Binding<'_>,
    ) -> Result<ScramExchange, ScramError> {
        let text = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("utf-8"))?;
        let mut parts = text.splitn(3, ',');
        let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ScramError::Malformed("gs2 header"));
        };
        let header = &text[..flag.len() + authzid.len() + 2];
        let plus = mechanism == MECHANISM_PLUS;
        let binding_data: &[u8] = match (flag, plus, binding) {
            ("p=tls-server-end-point", true, Binding::Offered(data)) => data,
            (f, _, _) if f.starts_with("p=") => return Err(ScramError::ChannelBindingUnsupported),
            ("y", false, Binding::Offered(_)) => return Err(ScramError::BindingDowngrade),
            ("n" | "y", false, _) => &[],
            _ => return Err(ScramError::Malformed("gs2 header")),
        };
        let mut cbind_input = header.as_bytes().to_vec();
        cbind_input.extend_from_slice(binding_data);
        let expected_binding = STANDARD.encode(cbind_input);
        let client_nonce = bare
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty())
            .ok_or(ScramError::Malformed("client nonce"))?;
        let server_nonce = STANDARD.encode(rand::random::<[u8; 18]>());
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&verifier.salt),
            verifier.iterations
        );
        Ok(ScramExchange {
            verifier,
            client_first_bare: bare.to_owned(),
            server_first,
            nonce,
            expected_binding,
        })
    }

    pub fn server_first(&self) -> &str {
        &self.server_first
    }

    /// Checks the client-final message; on success returns the server-final message to send and the
    /// client's keys.
    pub fn finish(self, client_final: &[u8]) -> Result<ScramSuccess, ScramError> {
        let text = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("utf-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("client proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(c) = attr.strip_prefix("c=") {
                binding = Some(c);
            } else if let Some(r) = attr.strip_prefix("r=") {
                nonce = Some(r);
            }
        }
        if binding != Some(self.expected_binding.as_str()) {
            return Err(ScramError::BindingMismatch);
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::Malformed("nonce mismatch"));
        }
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| ScramError::Malformed("client proof"))?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::WrongProof);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let stored = Sha256::digest(&client_key);
        if !constant_time_eq(&stored, &self.verifier.stored_key) {
            return Err(ScramError::WrongProof);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(ScramSuccess {
            server_final: format!("v={}", STANDARD.encode(server_signature)),
            keys: ScramKeys {
                client_key,
                verifier: self.verifier,
            },
        })
    }
}

pub(super) fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail; fall back to an impossible MAC if it did.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    use super::*;

    /// A full exchange between postgres-protocol's SCRAM client and the server side here.
    fn exchange(
        stored_password: &str,
        client_password: &str,
        client_binding: ChannelBinding,
        mechanism: &str,
        server_binding: Binding<'_>,
    ) -> Result<(), ScramError> {
        let verifier =
            ScramVerifier::for_secret(&Secret::Plain(stored_password.into())).expect("verifier");
        let mut client = ScramSha256::new(client_password.as_bytes(), client_binding);
        let exchange = ScramExchange::start(verifier, mechanism, client.message(), server_binding)?;
        client
            .update(exchange.server_first().as_bytes())
            .expect("client accepts server-first");
        let success = exchange.finish(client.message())?;
        client
            .finish(success.server_final.as_bytes())
            .expect("client verifies the server");
        Ok(())
    }

    fn run(stored_password: &str, client_password: &str) -> Result<(), ScramError> {
        exchange(
            stored_password,
            client_password,
            ChannelBinding::unsupported(),
            MECHANISM,
            Binding::NotOffered,
        )
    }

    fn run_plus(client_hash: &[u8], server_hash: &[u8]) -> Result<(), ScramError> {
        exchange(
            "pw",
            "pw",
            ChannelBinding::tls_server_end_point(client_hash.to_vec()),
            MECHANISM_PLUS,
            Binding::Offered(server_hash),
        )
    }

    #[test]
    fn channel_binding_succeeds_only_with_the_same_certificate_hash() {
        assert_eq!(run_plus(b"hash-of-our-cert", b"hash-of-our-cert"), Ok(()));
        assert_eq!(
            run_plus(b"hash-the-client-saw", b"hash-of-our-cert"),
            Err(ScramError::BindingMismatch)
        );
    }

    #[test]
    fn client_claiming_no_server_binding_support_is_refused_when_it_was_offered() {
        let v = ScramVerifier::for_secret(&Secret::Plain("x".into())).expect("verifier");
        assert_eq!(
            ScramExchange::start(v, MECHANISM, b"y,,n=,r=abc", Binding::Offered(b"h")).map(|_| ()),
            Err(ScramError::BindingDowngrade)
        );
    }

    #[test]
    fn real_client_logs_in_with_the_right_password() {
        assert_eq!(run("s3cret", "s3cret"), Ok(()));
    }

    #[test]
    fn unknown_users_get_a_stable_salt_and_fail_like_a_wrong_password() {
        let seed = [7u8; 32];
        let a = ScramVerifier::mock("nobody", &seed);
        assert_eq!(a, ScramVerifier::mock("nobody", &seed));
        assert_ne!(a.salt, ScramVerifier::mock("somebody", &seed).salt);
        let mut client = ScramSha256::new(b"guess", ChannelBinding::unsupported());
        let exchange = ScramExchange::start(a, MECHANISM, client.message(), Binding::NotOffered)
            .expect("start");
        client
            .update(exchange.server_first().as_bytes())
            .expect("client accepts server-first");
        assert_eq!(
            exchange.finish(client.message()).map(|_| ()),
            Err(ScramError::WrongProof)
        );
    }

    #[test]
    fn wrong_password_is_refused() {
        assert_eq!(run("s3cret", "guess"), Err(ScramError::WrongProof));
    }

    #[test]
    fn channel_binding_request_is_refused_without_tls() {
        let v = ScramVerifier::for_secret(&Secret::Plain("x".into())).expect("verifier");
        assert_eq!(
            ScramExchange::start(
                v,
                MECHANISM,
                b"p=tls-server-end-point,,n=,r=abc",
                Binding::NotOffered
            )
            .map(|_| ()),
            Err(ScramError::ChannelBindingUnsupported)
        );
    }
}
