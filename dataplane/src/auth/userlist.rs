//! PgBouncer's auth file format: one `"user" "secret"` per line, `""` escaping a quote, `;` comments.

use std::collections::HashMap;
use std::path::PathBuf;

use super::{ScramVerifier, Secret};
use crate::quoting::double_quoted;

#[derive(Debug, thiserror::Error)]
pub enum UserListError {
    #[error("cannot read auth file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("auth file line {line}: {problem}")]
    Syntax { line: usize, problem: &'static str },
}

pub(super) fn parse(text: &str) -> Result<HashMap<String, Secret>, UserListError> {
    let mut users = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        let err = |problem| UserListError::Syntax {
            line: i + 1,
            problem,
        };
        let (user, rest) = double_quoted(line).ok_or_else(|| err("expected \"user\""))?;
        let (secret, _) = double_quoted(rest.trim_start())
            .ok_or_else(|| err("expected \"password\" after the user"))?;
        users.insert(user, classify(&secret));
    }
    Ok(users)
}

/// What kind of secret a stored string is: a SCRAM verifier, an MD5 hash (`md5` + 32 hex digits), or
/// else a plain password. The same rules as PgBouncer and PostgreSQL's `pg_authid`.
pub(super) fn classify(secret: &str) -> Secret {
    if let Some(v) = ScramVerifier::parse(secret) {
        Secret::Scram(v)
    } else if secret.len() == 35
        && secret.starts_with("md5")
        && secret[3..].bytes().all(|b| b.is_ascii_hexdigit())
    {
        Secret::Md5(secret.to_owned())
    } else {
        Secret::Plain(secret.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_three_secret_kinds() {
        let verifier = postgres_protocol::password::scram_sha_256(b"pw");
        let text = format!(
            "; comment\n\"alice\" \"secret\"\n\"bob\" \"md5{}\"\n\"carol\" \"{verifier}\"\n\"q\"\"uote\" \"\"\n",
            "0".repeat(32)
        );
        let users = parse(&text).expect("parses");
        assert_eq!(users.get("alice"), Some(&Secret::Plain("secret".into())));
        assert!(matches!(users.get("bob"), Some(Secret::Md5(_))));
        assert!(matches!(users.get("carol"), Some(Secret::Scram(_))));
        assert_eq!(users.get("q\"uote"), Some(&Secret::Plain(String::new())));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse("\"a\" \"b\"\nalice secret\n").expect_err("bad");
        assert_eq!(err.to_string(), "auth file line 2: expected \"user\"");
    }

    #[test]
    fn debug_never_shows_secrets() {
        assert_eq!(
            format!("{:?}", Secret::Plain("hunter2".into())),
            "Plain(<redacted>)"
        );
    }
}
