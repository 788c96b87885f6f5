//! Who may log in, and with which secret: the PgBouncer-format auth file and the client-facing
//! challenge/response checks (MD5, SCRAM-SHA-256).
//!
//! Secrets never reach logs: [`Secret`]'s `Debug` is redacted and errors name users, not passwords.

mod md5;
mod scram;
mod userlist;

use std::collections::HashMap;
use std::path::Path;

pub use md5::Md5Challenge;
pub use scram::{
    Binding, ScramError, ScramExchange, ScramVerifier, MECHANISM as SCRAM_MECHANISM,
    MECHANISM_PLUS as SCRAM_MECHANISM_PLUS,
};
pub use userlist::UserListError;

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

    /// The password to log in to a backend as `user`, when the auth file holds it in plain text.
    pub fn backend_password(&self, user: &str) -> Option<String> {
        match self.users.get(user) {
            Some(Secret::Plain(p)) => Some(p.clone()),
            _ => None,
        }
    }
}
