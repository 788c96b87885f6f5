//! PostgreSQL's MD5 challenge: the client answers `md5` + md5(md5(password ‖ user) ‖ salt).

use md5::{Digest, Md5};

use super::Secret;

/// One MD5 challenge with its random salt.
#[derive(Debug, Clone, Copy)]
pub struct Md5Challenge {
    pub salt: [u8; 4],
}

impl Md5Challenge {
    pub fn new() -> Md5Challenge {
        Md5Challenge {
            salt: rand::random(),
        }
    }

    /// Checks the client's answer (without its trailing NUL) against a stored secret. SCRAM verifiers
    /// cannot answer MD5 challenges, so they always fail.
    pub fn verify(&self, user: &str, secret: &Secret, answer: &[u8]) -> bool {
        let stored = match secret {
            Secret::Plain(p) => {
                format!(
                    "md5{}",
                    hex(&Md5::digest([p.as_bytes(), user.as_bytes()].concat()))
                )
            }
            Secret::Md5(h) => h.clone(),
            Secret::Scram(_) => return false,
        };
        constant_time_eq(answer_from_hash(&stored, self.salt).as_bytes(), answer)
    }
}

/// The answer to an MD5 challenge from the stored hash alone (`md5` + md5(password ‖ user)): what lets
/// pgroute log in to an MD5 backend with the hash `auth_query` or the auth file gave it, as PgBouncer
/// does. Returns an empty string (which no server accepts) if `stored` is not an MD5 hash.
pub fn answer_from_hash(stored: &str, salt: [u8; 4]) -> String {
    let Some(inner) = stored.strip_prefix("md5") else {
        return String::new();
    };
    format!(
        "md5{}",
        hex(&Md5::digest([inner.as_bytes(), &salt[..]].concat()))
    )
}

impl Default for Md5Challenge {
    fn default() -> Self {
        Md5Challenge::new()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Comparison whose time does not depend on where the inputs differ.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_libpq_hash() {
        let c = Md5Challenge { salt: [1, 2, 3, 4] };
        let answer = postgres_protocol::authentication::md5_hash(b"alice", b"pw", c.salt);
        assert!(c.verify("alice", &Secret::Plain("pw".into()), answer.as_bytes()));
        let stored = postgres_protocol::password::md5(b"pw", "alice");
        assert!(c.verify("alice", &Secret::Md5(stored.clone()), answer.as_bytes()));
        assert!(!c.verify("alice", &Secret::Plain("other".into()), answer.as_bytes()));
        assert_eq!(answer_from_hash(&stored, c.salt), answer);
    }
}
