//! Named prepared statements under transaction pooling.
//!
//! A client's statement `s0` must work on whichever backend connection its next transaction lands on.
//! The proxy keeps each client's statements (the Parse it sent), names each one on the backends by a hash
//! of its SQL and parameter types (so clients preparing the same SQL share one backend statement), and
//! before a Bind or Describe that needs it on a connection that lacks it, slips in a Parse whose
//! ParseComplete the client never sees. A client Parse of a statement the connection already has
//! becomes a no-op Close whose CloseComplete is shown to the client as ParseComplete, so every answer
//! still arrives in the order the client expects without the proxy holding anything back.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use pgroute_protocol::frame::{begin_message, finish_message, put_cstr};
use pgroute_protocol::frontend as fe;
use pgroute_protocol::ProtocolError;

use super::sql_prepared::SqlStatement;

/// A statement a client prepared, ready to be prepared on any backend.
#[derive(Debug)]
pub(crate) struct Statement {
    /// The backend-side name, shared by every client preparing the same SQL and parameter types.
    pub(crate) server_name: String,
    /// The Parse message under `server_name`.
    pub(crate) parse: Bytes,
    /// Where executions of this statement go, classified at the first execution that needs it and then
    /// kept, so Binds never classify again.
    pub(crate) decision: std::sync::OnceLock<Option<crate::classify::Decision>>,
    /// Fingerprint of the SQL for per-query metrics, computed at the first execution metrics time.
    pub(crate) fingerprint: std::sync::OnceLock<u64>,
}

impl Statement {
    /// Builds the backend statement for a client Parse body (`name`, SQL, parameter types).
    pub(crate) fn from_parse_body(body: &[u8]) -> Result<Statement, ProtocolError> {
        let (name, _sql) = fe::parse_message(body)?;
        let rest = &body[name.len() + 1..]; // SQL, then the parameter types, as the client sent them
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        rest.hash(&mut hasher);
        let server_name = format!("pgroute_{:016x}_{}", hasher.finish(), rest.len());
        let mut parse = BytesMut::with_capacity(body.len() + server_name.len() + 8);
        let at = begin_message(&mut parse, fe::PARSE);
        put_cstr(&mut parse, &server_name);
        parse.extend_from_slice(rest);
        finish_message(&mut parse, at);
        Ok(Statement {
            server_name,
            parse: parse.freeze(),
            decision: std::sync::OnceLock::new(),
            fingerprint: std::sync::OnceLock::new(),
        })
    }

    /// The statement's SQL text.
    pub(crate) fn sql(&self) -> &str {
        self.parse
            .get(5..)
            .and_then(|body| fe::parse_message(body).ok())
            .map_or("", |(_, sql)| sql)
    }
}

/// A client's named statements: protocol-level (Parse) and SQL-level (PREPARE), which share one
/// namespace in PostgreSQL.
#[derive(Debug, Default)]
pub(crate) struct ClientStatements {
    map: HashMap<String, Arc<Statement>>,
    sql: HashMap<String, Arc<SqlStatement>>,
}

impl ClientStatements {
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Statement>> {
        self.map.get(name)
    }

    pub(crate) fn sql(&self, name: &str) -> Option<&Arc<SqlStatement>> {
        self.sql.get(name)
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name) || self.sql.contains_key(name)
    }

    pub(crate) fn insert(&mut self, name: &str, stmt: Arc<Statement>) {
        self.map.insert(name.to_owned(), stmt);
    }

    pub(crate) fn insert_sql(&mut self, name: &str, stmt: Arc<SqlStatement>) {
        self.sql.insert(name.to_owned(), stmt);
    }

    /// Removes the statement of this name, of either kind; whether there was one.
    pub(crate) fn remove(&mut self, name: &str) -> bool {
        self.map.remove(name).is_some() | self.sql.remove(name).is_some()
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.sql.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len() + self.sql.len()
    }
}

/// The statements prepared on one backend connection, with a use counter for least-recently-used
/// eviction so long-lived connections do not accumulate statements without bound.
#[derive(Debug, Default)]
pub struct BackendStatements {
    names: HashMap<String, u64>,
    tick: u64,
}

impl BackendStatements {
    /// Marks `name` used; returns whether it was already prepared.
    pub(crate) fn touch(&mut self, name: &str) -> bool {
        self.tick += 1;
        match self.names.get_mut(name) {
            Some(t) => {
                *t = self.tick;
                true
            }
            None => false,
        }
    }

    pub(crate) fn insert(&mut self, name: &str) {
        self.tick += 1;
        self.names.insert(name.to_owned(), self.tick);
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.names.remove(name);
    }

    pub(crate) fn clear(&mut self) {
        self.names.clear();
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The least recently used statement other than `keep`, when over `cap`.
    pub(crate) fn evict_candidate(&self, cap: usize, keep: &str) -> Option<String> {
        if self.names.len() <= cap {
            return None;
        }
        self.names
            .iter()
            .filter(|(n, _)| n.as_str() != keep)
            .min_by_key(|(_, t)| **t)
            .map(|(n, _)| n.clone())
    }
}

/// A backend-bound message with its statement name replaced: Bind (portal, name, rest) or
/// Describe/Close (kind, name).
pub(crate) fn rename_bind(out: &mut BytesMut, body: &[u8], portal: &str, server_name: &str) {
    let rest = &body[portal.len() + 1..];
    let old_len = rest
        .iter()
        .position(|&b| b == 0)
        .map_or(rest.len(), |p| p + 1);
    let at = begin_message(out, fe::BIND);
    put_cstr(out, portal);
    put_cstr(out, server_name);
    out.extend_from_slice(&rest[old_len..]);
    finish_message(out, at);
}

/// Describe or Close of statement `server_name`.
pub(crate) fn statement_target(out: &mut BytesMut, tag: u8, server_name: &str) {
    let at = begin_message(out, tag);
    out.put_u8(b'S');
    put_cstr(out, server_name);
    finish_message(out, at);
}

/// The name a no-op Close targets: never prepared by anyone (closing a missing statement is not an
/// error in PostgreSQL).
pub(crate) const NOOP_STATEMENT: &str = "pgroute_noop";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_body(name: &str, sql: &str) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        b.extend_from_slice(sql.as_bytes());
        b.extend_from_slice(&[0, 0, 1, 0, 0, 0, 23]);
        b
    }

    #[test]
    fn same_sql_shares_a_backend_name_whatever_the_client_name() {
        let a = Statement::from_parse_body(&parse_body("s0", "select $1")).expect("valid");
        let b = Statement::from_parse_body(&parse_body("P0_1", "select $1")).expect("valid");
        let c = Statement::from_parse_body(&parse_body("s0", "select $1 + 1")).expect("valid");
        assert_eq!(a.server_name, b.server_name);
        assert_ne!(a.server_name, c.server_name);
        let (name, sql) = fe::parse_message(&a.parse[5..]).expect("parse");
        assert_eq!(name, a.server_name);
        assert_eq!(sql, "select $1");
        assert_eq!(&a.parse[a.parse.len() - 6..], &[0, 1, 0, 0, 0, 23]);
    }

    #[test]
    fn bind_rename_keeps_parameters() {
        let body = b"portal\0s0\0\0\0\0\x01\0\0\0\x011\0\0";
        let mut out = BytesMut::new();
        rename_bind(&mut out, body, "portal", "pgroute_x");
        assert_eq!(fe::bind_names(&out[5..]), Ok(("portal", "pgroute_x")));
        assert!(out.ends_with(b"\0\0\0\x01\0\0\0\x011\0\0"));
    }

    #[test]
    fn eviction_picks_least_recently_used() {
        let mut s = BackendStatements::default();
        s.insert("a");
        s.insert("b");
        s.insert("c");
        s.touch("a");
        assert_eq!(s.evict_candidate(3, "c"), None);
        assert_eq!(s.evict_candidate(2, "c").as_deref(), Some("b"));
    }
}
