//! Who may log in, and with which secret: the PgBouncer-format auth file, `auth_query`, the
//! client-facing challenge/response checks (MD5, SCRAM-SHA-256), and what pgroute logs in to backends
//! with (the [`Keyring`]).
//!
//! Secrets never reach logs: [`Secret`]'s `Debug` is redacted and errors name users, not passwords.

mod keyring;
mod lookup;
mod md5;
mod scram;
mod scram_client;
mod userlist;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

pub use keyring::{BackendLogin, Keyring};
pub use lookup::{AuthQuery, LookupError};
pub use md5::{answer_from_hash as md5_answer_from_hash, Md5Challenge};
pub use scram::{
    Binding, ScramError, ScramExchange, ScramKeys, ScramSuccess, ScramVerifier,
    MECHANISM as SCRAM_MECHANISM, MECHANISM_PLUS as SCRAM_MECHANISM_PLUS,
};
pub use scram_client::{KeyLogin, KeyLoginError};
pub use userlist::UserListError;

use crate::config::{AuthConfig, BackendAddr};
use crate::pool::Pools;

/// A stored credential, as the auth file gives it.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A plain password: usable for every method and for logging in to backends.
    Plain(String),
    /// `md5` + md5(password ‖ user): usable for MD5 client auth only.
    Md5(String),
    /// A SCRAM-SHA-256 verifier: usable for SCRAM client auth only.
    Scram(ScramVerifier),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Plain(_) => "Plain(<redacted>)",
            Secret::Md5(_) => "Md5(<redacted>)",
            Secret::Scram(_) => "Scram(<redacted>)",
        })
    }
}

/// The users pgroute knows, from the auth file (empty with `trust` and no file).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    users: HashMap<String, Secret>,
    /// SCRAM verifiers for every user whose secret allows SCRAM, derived once at load.
    verifiers: HashMap<String, ScramVerifier>,
}

impl Credentials {
    pub fn load(path: &Path) -> Result<Credentials, UserListError> {
        let text = std::fs::read_to_string(path).map_err(|source| UserListError::Read {
            path: path.to_owned(),
            source,
        })?;
        let users = userlist::parse(&text)?;
        let verifiers = users
            .iter()
            .filter_map(|(u, s)| ScramVerifier::for_secret(s).map(|v| (u.clone(), v)))
            .collect();
        Ok(Credentials { users, verifiers })
    }

    /// The SCRAM verifier for `user`, if its secret allows SCRAM.
    pub fn scram_verifier(&self, user: &str) -> Option<&ScramVerifier> {
        self.verifiers.get(user)
    }

    pub fn secret(&self, user: &str) -> Option<&Secret> {
        self.users.get(user)
    }
}

/// Where client secrets come from (the auth file, then `auth_query`) and where backend logins are kept.
#[derive(Debug)]
pub struct Users {
    file_path: Option<std::path::PathBuf>,
    /// Swapped whole by [`Users::reload`].
    file: RwLock<Arc<Credentials>>,
    query: Option<AuthQuery>,
    keyring: Arc<Keyring>,
    /// Seeds the stand-in SCRAM salts of unknown users: random per process, stable within it.
    mock_seed: [u8; 32],
}

impl Users {
    /// Reads the auth file (a bad one fails here, at start) and prepares `auth_query`.
    pub fn new(config: &AuthConfig) -> Result<Users, UserListError> {
        let file = match &config.file {
            Some(path) => Credentials::load(path)?,
            None => Credentials::default(),
        };
        let keyring = Arc::new(Keyring::default());
        for (user, secret) in &file.users {
            keyring.learn(user, secret, None);
        }
        Ok(Users {
            file_path: config.file.clone(),
            file: RwLock::new(Arc::new(file)),
            query: AuthQuery::new(config),
            keyring,
            mock_seed: rand::random(),
        })
    }

    /// Re-reads the auth file (SIGHUP). On error the old contents stay in use.
    pub fn reload(&self) -> Result<(), UserListError> {
        let Some(path) = &self.file_path else {
            return Ok(());
        };
        let fresh = Credentials::load(path)?;
        self.keyring.forget_file_secrets();
        for (user, secret) in &fresh.users {
            self.keyring.learn(user, secret, None);
        }
        let mut file = self
            .file
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *file = Arc::new(fresh);
        Ok(())
    }

    /// Backend logins, shared with the pools.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// The secret `user` must prove: from the auth file, else from `auth_query` (never for the
    /// `auth_user` itself). `Ok(None)`: unknown user.
    pub async fn secret(
        &self,
        user: &str,
        database: &str,
        pools: &Pools,
        primary: &BackendAddr,
    ) -> Result<Option<Secret>, LookupError> {
        let from_file = {
            let file = self
                .file
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            file.secret(user).cloned()
        };
        match (from_file, &self.query) {
            (Some(secret), _) => Ok(Some(secret)),
            (None, Some(q)) if q.auth_user() != user => {
                q.lookup(pools, primary, user, database).await
            }
            (None, _) => Ok(None),
        }
    }

    /// A user's secret from the auth file alone, never from `auth_query` (the admin console's logins).
    pub fn file_secret(&self, user: &str) -> Option<Secret> {
        let file = self
            .file
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.secret(user).cloned()
    }

    /// The SCRAM verifier for a secret, derived once for file users; for `auth_query` users the secret
    /// is already one (or a plain password, derived here).
    pub fn scram_verifier(&self, user: &str, secret: &Secret) -> Option<ScramVerifier> {
        if let Secret::Scram(v) = secret {
            return Some(v.clone());
        }
        let file = self
            .file
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match file.secret(user) {
            Some(s) if s == secret => file.scram_verifier(user).cloned(),
            _ => ScramVerifier::for_secret(secret),
        }
    }

    /// A stand-in verifier for an unknown user (see [`ScramVerifier::mock`]).
    pub fn mock_verifier(&self, user: &str) -> ScramVerifier {
        ScramVerifier::mock(user, &self.mock_seed)
    }

    /// A client proved `secret`: keep what it allows for logging in to backends as `user`.
    pub fn proven(&self, user: &str, secret: &Secret, keys: Option<ScramKeys>) {
        self.keyring.learn(user, secret, keys);
    }

    /// A client failed to prove a secret: a cached `auth_query` answer may be stale, so drop it.
    pub fn failed(&self, user: &str, database: &str) {
        if let Some(q) = &self.query {
            q.forget(user, database);
        }
    }
}
