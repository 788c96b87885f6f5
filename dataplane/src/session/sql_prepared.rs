//! SQL-level prepared statements (`PREPARE name AS …`, `EXECUTE name(…)`) under transaction pooling.
//!
//! They get the same treatment as protocol-level ones: the client's name maps to a backend name derived
//! from the definition (`pgroute_q_<hash>`), so clients preparing the same SQL share one backend
//! statement and a client's name never meets another client's on a shared connection. `EXECUTE q(1)` is
//! rewritten to `EXECUTE pgroute_q_…(1)`, preceded by the `PREPARE` in the same query when the backend
//! connection lacks it (the proxy hides that `PREPARE`'s CommandComplete). Only statements sent as a
//! query of their own are handled this way; inside a multi-statement query they are refused with a
//! clear error, since rewriting one statement of several would need a full parse.

use std::hash::{Hash, Hasher};

use crate::quoting::double_quoted;

/// A client's `PREPARE`, ready to be prepared on any backend connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SqlStatement {
    pub(crate) server_name: String,
    /// `PREPARE <server_name> [(types)] AS <query>`.
    pub(crate) prepare_sql: String,
    /// The statement being prepared (for routing).
    pub(crate) query: String,
}

/// `PREPARE name [(types)] AS query`, as the client wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prepare<'a> {
    /// The name as PostgreSQL sees it (unquoted names folded to lower case).
    pub(crate) name: String,
    /// `(int, text)` with its parentheses, or empty.
    pub(crate) types: &'a str,
    pub(crate) query: &'a str,
}

/// `EXECUTE name [(args)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Execute<'a> {
    pub(crate) name: String,
    /// Everything after the name (the argument list), trailing `;` removed.
    pub(crate) args: &'a str,
}

impl SqlStatement {
    pub(crate) fn new(p: &Prepare<'_>) -> SqlStatement {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (p.types, p.query).hash(&mut hasher);
        let server_name = format!("pgroute_q_{:016x}", hasher.finish());
        let prepare_sql = format!("PREPARE {server_name} {} AS {}", p.types, p.query);
        SqlStatement {
            server_name,
            prepare_sql,
            query: p.query.to_owned(),
        }
    }

    /// The client's `EXECUTE` aimed at the backend statement.
    pub(crate) fn execute_sql(&self, args: &str) -> String {
        format!("EXECUTE {}{args}", self.server_name)
    }
}

/// Reads a `PREPARE` statement (not `PREPARE TRANSACTION`); `None` for anything else.
pub(crate) fn parse_prepare(sql: &str) -> Option<Prepare<'_>> {
    let rest = keyword(sql.trim_start(), "PREPARE")?;
    if keyword(rest, "TRANSACTION").is_some() {
        return None;
    }
    let (name, rest) = name(rest)?;
    let rest = rest.trim_start();
    let (types, rest) = if rest.starts_with('(') {
        let end = matching_paren(rest)?;
        (&rest[..=end], rest[end + 1..].trim_start())
    } else {
        ("", rest)
    };
    let query = trim_end(keyword(rest, "AS")?);
    (!query.is_empty()).then_some(Prepare { name, types, query })
}

/// Reads an `EXECUTE` statement; `None` for anything else.
pub(crate) fn parse_execute(sql: &str) -> Option<Execute<'_>> {
    let rest = keyword(sql.trim_start(), "EXECUTE")?;
    let (name, rest) = name(rest)?;
    let args = trim_end(rest);
    (args.is_empty() || args.starts_with('(') || args.starts_with(char::is_whitespace))
        .then_some(Execute { name, args })
}

/// `rest` after `word` (case-insensitive) and at least one space, if `s` starts with it.
fn keyword<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let head = s.get(..word.len())?;
    let rest = &s[word.len()..];
    (head.eq_ignore_ascii_case(word) && rest.starts_with(char::is_whitespace))
        .then(|| rest.trim_start())
}

/// An identifier at the start of `s`: quoted as written, unquoted folded to lower case.
fn name(s: &str) -> Option<(String, &str)> {
    if s.starts_with('"') {
        return double_quoted(s).filter(|(name, _)| !name.is_empty());
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(s.len());
    let word = &s[..end];
    (!word.is_empty() && !word.starts_with(|c: char| c.is_ascii_digit() || c == '$'))
        .then(|| (word.to_lowercase(), &s[end..]))
}

/// Index of the `)` closing the `(` at the start of `s`, skipping quoted text.
fn matching_paren(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn trim_end(s: &str) -> &str {
    s.trim_end().trim_end_matches(';').trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_with_and_without_types() {
        let p = parse_prepare("PREPARE Q1 (int, numeric(10, 2)) AS SELECT $1 + $2;").expect("ok");
        assert_eq!(p.name, "q1");
        assert_eq!(p.types, "(int, numeric(10, 2))");
        assert_eq!(p.query, "SELECT $1 + $2");
        let p = parse_prepare("prepare \"Mixed\"\nas select 1").expect("ok");
        assert_eq!(
            (p.name.as_str(), p.types, p.query),
            ("Mixed", "", "select 1")
        );
        assert_eq!(parse_prepare("PREPARE TRANSACTION 'x'"), None);
        assert_eq!(parse_prepare("PREPARE q AS"), None);
        assert_eq!(parse_prepare("PREPAREq AS SELECT 1"), None);
        assert_eq!(parse_prepare("SELECT 1"), None);
    }

    #[test]
    fn execute_forms() {
        let e = parse_execute("EXECUTE q1(1, 'a)b');").expect("ok");
        assert_eq!((e.name.as_str(), e.args), ("q1", "(1, 'a)b')"));
        let e = parse_execute("execute Q").expect("ok");
        assert_eq!((e.name.as_str(), e.args), ("q", ""));
        assert_eq!(parse_execute("EXECUTE"), None);
        assert_eq!(parse_execute("EXECUTEq"), None);
    }

    #[test]
    fn same_definition_same_backend_name_and_rewrites() {
        let a = SqlStatement::new(&parse_prepare("PREPARE a (int) AS SELECT $1").expect("ok"));
        let b = SqlStatement::new(&parse_prepare("PREPARE b (int) AS SELECT $1").expect("ok"));
        let c = SqlStatement::new(&parse_prepare("PREPARE a (text) AS SELECT $1").expect("ok"));
        assert_eq!(a.server_name, b.server_name);
        assert_ne!(a.server_name, c.server_name);
        assert_eq!(
            a.prepare_sql,
            format!("PREPARE {} (int) AS SELECT $1", a.server_name)
        );
        assert_eq!(
            a.execute_sql("(7)"),
            format!("EXECUTE {}(7)", a.server_name)
        );
    }
}
