//! What pgroute can log in to backends with, per user: a plain password, an MD5 hash, or the SCRAM keys
//! a client revealed when it logged in. The backend picks the method; the pool uses whichever of these
//! answers it, so the auth file never needs plain passwords for backends that use SCRAM or MD5.

use std::collections::HashMap;
use std::sync::RwLock;

use super::{ScramKeys, Secret};

/// Everything known about logging in to backends as one user. `Debug` is redacted.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct BackendLogin {
    /// Answers cleartext, MD5 and SCRAM.
    pub password: Option<String>,
    /// `md5…` hash: answers MD5 only.
    pub md5_hash: Option<String>,
    /// A client's proven keys: answer SCRAM from a backend holding the same verifier.
    pub scram: Option<ScramKeys>,
}

impl std::fmt::Debug for BackendLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendLogin")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("md5_hash", &self.md5_hash.as_ref().map(|_| "<redacted>"))
            .field("scram", &self.scram.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Backend logins by user, shared by every pool; filled from the auth file at load and from each
/// successful client login, so pools opened later (another database, a replica) can use them.
#[derive(Debug, Default)]
pub struct Keyring {
    logins: RwLock<HashMap<String, BackendLogin>>,
}

impl Keyring {
    /// How to log in as `user`, if anything is known.
    pub fn get(&self, user: &str) -> Option<BackendLogin> {
        let logins = self
            .logins
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        logins.get(user).cloned()
    }

    /// Records what `secret` (and, for SCRAM, the client's proven keys) allow. A newer secret replaces
    /// the older of the same kind; the others are kept, since each answers a different backend method.
    pub fn learn(&self, user: &str, secret: &Secret, keys: Option<ScramKeys>) {
        let mut logins = self
            .logins
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let login = logins.entry(user.to_owned()).or_default();
        match secret {
            Secret::Plain(p) => login.password = Some(p.clone()),
            Secret::Md5(h) => login.md5_hash = Some(h.clone()),
            Secret::Scram(_) => {}
        }
        if let Some(keys) = keys {
            login.scram = Some(keys);
        }
    }

    /// Forgets what an auth file said about users (before loading a new one); keys learned from clients
    /// stay, as they are checked against the backend's verifier on use.
    pub fn forget_file_secrets(&self) {
        let mut logins = self
            .logins
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for login in logins.values_mut() {
            login.password = None;
            login.md5_hash = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_of_different_kinds_accumulate_and_debug_hides_them() {
        let ring = Keyring::default();
        assert_eq!(ring.get("app"), None);
        ring.learn("app", &Secret::Plain("pw".into()), None);
        ring.learn("app", &Secret::Md5("md5abc".into()), None);
        let login = ring.get("app").expect("known");
        assert_eq!(login.password.as_deref(), Some("pw"));
        assert_eq!(login.md5_hash.as_deref(), Some("md5abc"));
        let shown = format!("{login:?}");
        assert!(
            !shown.contains("pw\"") && !shown.contains("md5abc"),
            "{shown}"
        );
        ring.forget_file_secrets();
        assert_eq!(ring.get("app"), Some(BackendLogin::default()));
    }
}
