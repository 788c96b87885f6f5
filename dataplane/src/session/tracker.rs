//! The protocol state of one client's conversation with a backend, kept in step by looking at message
//! tags as they pass: how many answers are still owed, whether an extended-protocol batch is open, the
//! transaction status, and the session-variable changes waiting for their transaction to commit.
//!
//! It decides the two things the relay needs: when the backend connection can go back to the pool
//! (nothing owed, no open batch, status idle) and what to do with each client message (forward it, or
//! refuse it in place with an error that arrives exactly where PostgreSQL would have sent one).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pgroute_protocol::backend::{self, TxStatus};
use pgroute_protocol::frontend as fe;
use pgroute_protocol::ProtocolError;

use super::prepared::{self, BackendStatements, ClientStatements, Statement, NOOP_STATEMENT};
use super::sql_prepared::{self, SqlStatement};
use super::statement::{self, Effect};
use super::vars::SessionVars;
use super::SessionError;
use crate::pool::PoolStats;

/// What to do with one client message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientAction {
    Forward,
    /// Not sent (part of a refused extended-protocol batch).
    Drop,
    /// Refused: a Sync goes to the backend in its place, and the error is sent to the client just before
    /// the ReadyForQuery that answers that Sync, so ordering matches a real server error.
    Refuse,
    /// Sent as the bytes [`Tracker::take_replacement`] returns (renamed statements, re-prepares).
    Replace,
    /// The client said goodbye; not forwarded (the backend connection outlives the client).
    Terminate,
}

/// What to do with one backend message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ServerAction {
    Forward,
    /// Send these bytes to the client first (an injected error).
    InjectBefore(Bytes),
    /// Answer to a message the proxy added: the client must not see it.
    Drop,
    /// A CloseComplete standing in for the ParseComplete of a Parse the backend did not need.
    AsParseComplete,
}

/// Backend answers the proxy must adjust, oldest first, with the sync point they belong to. An entry
/// whose answer never comes (the backend skipped it after an error) is dropped at that sync point's
/// ReadyForQuery.
#[derive(Debug)]
struct Expected<T> {
    group: u64,
    what: T,
}

#[derive(Debug)]
struct ParseExpect {
    swallow: bool,
    /// Backend statement this Parse creates; forgotten again if the Parse never completes.
    server_name: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum CloseExpect {
    Pass,
    Swallow,
    AsParseComplete,
}

#[derive(Debug)]
pub(crate) struct Tracker {
    /// One entry per sync point sent (Query, Sync, FunctionCall), oldest first; `Some` carries the error
    /// to inject before the matching ReadyForQuery.
    syncs: VecDeque<Option<Bytes>>,
    sent_groups: u64,
    done_groups: u64,
    parses: VecDeque<Expected<ParseExpect>>,
    closes: VecDeque<Expected<CloseExpect>>,
    /// Extended-protocol messages sent since the last Sync.
    unsynced: bool,
    /// After a refused Parse, client messages are dropped up to and including its Sync.
    skipping_to_sync: bool,
    status: TxStatus,
    /// Session-variable changes not yet committed.
    staged: Vec<Effect>,
    /// An ErrorResponse arrived since the transaction began: staged changes will be rolled back.
    failed: bool,
    /// Transaction mode: track session state and statements, refuse what cannot be replayed.
    track: bool,
    statements: ClientStatements,
    /// Most statements kept prepared per backend connection.
    max_prepared: usize,
    replacement: BytesMut,
    /// Backend statements whose Parse completed since the pool last heard (see
    /// [`Tracker::take_confirmed`]).
    confirmed: Vec<String>,
    /// The backend sent a FATAL error: it is about to close, and the client has been told why.
    server_fatal: bool,
    /// Most named statements one client may hold (both kinds together).
    max_client_statements: usize,
    /// Sync points whose first CommandComplete answers a `PREPARE` the proxy slipped in front of the
    /// client's `EXECUTE`: the client must not see it.
    hidden_completes: VecDeque<u64>,
    /// SQL-level `PREPARE`s the proxy sent, oldest first. Each is the first statement of its query, so
    /// the first CommandComplete of that sync point confirms it; one that never got it (an error came
    /// first) created nothing and is forgotten at the ReadyForQuery. (Prepared statements are not
    /// transactional: one that completed survives an error later in the same query.)
    sql_prepares: VecDeque<Expected<SqlPrepareExpect>>,
}

#[derive(Debug)]
struct SqlPrepareExpect {
    /// The client's name, when it was the client's own `PREPARE`.
    client_name: Option<String>,
    server_name: String,
    completed: bool,
}

/// Default of [`Tracker::with_client_limit`].
const DEFAULT_MAX_CLIENT_STATEMENTS: usize = 10_000;

impl Tracker {
    pub(crate) fn new(track: bool, max_prepared: usize) -> Tracker {
        Tracker {
            syncs: VecDeque::new(),
            sent_groups: 0,
            done_groups: 0,
            parses: VecDeque::new(),
            closes: VecDeque::new(),
            unsynced: false,
            skipping_to_sync: false,
            status: TxStatus::Idle,
            staged: Vec::new(),
            failed: false,
            track,
            statements: ClientStatements::default(),
            max_prepared,
            replacement: BytesMut::new(),
            confirmed: Vec::new(),
            server_fatal: false,
            max_client_statements: DEFAULT_MAX_CLIENT_STATEMENTS,
            hidden_completes: VecDeque::new(),
            sql_prepares: VecDeque::new(),
        }
    }

    /// Caps the named statements this client may hold (`pool.max_client_prepared_statements`).
    pub(crate) fn with_client_limit(mut self, max: usize) -> Tracker {
        self.max_client_statements = max.max(1);
        self
    }

    /// The client's SQL-level statement of this name.
    pub(crate) fn sql_statement(&self, name: &str) -> Option<&Arc<SqlStatement>> {
        self.statements.sql(name)
    }

    /// Nothing owed, no open batch, and no transaction: the backend connection may be reused.
    pub(crate) fn at_rest(&self) -> bool {
        self.syncs.is_empty()
            && !self.unsynced
            && !self.skipping_to_sync
            && self.status == TxStatus::Idle
    }

    /// No implicit (unsynced) or explicit transaction open: the next client message starts a new
    /// transaction, although answers to earlier ones may still be on their way.
    pub(crate) fn between_batches(&self) -> bool {
        !self.unsynced && !self.skipping_to_sync && self.status == TxStatus::Idle
    }

    pub(crate) fn status(&self) -> TxStatus {
        self.status
    }

    /// Whether the backend announced its own end with a FATAL error (forwarded to the client).
    pub(crate) fn server_sent_fatal(&self) -> bool {
        self.server_fatal
    }

    /// Backend statements confirmed prepared since the last call.
    pub(crate) fn take_confirmed(&mut self) -> impl Iterator<Item = String> + '_ {
        self.confirmed.drain(..)
    }

    pub(crate) fn has_confirmed(&self) -> bool {
        !self.confirmed.is_empty()
    }

    /// Whether the client already has a statement of this name.
    pub(crate) fn has_statement(&self, name: &str) -> bool {
        self.statements.contains(name)
    }

    /// The client's statement of this name.
    pub(crate) fn statement(&self, name: &str) -> Option<&Arc<Statement>> {
        self.statements.get(name)
    }

    /// Forgets a client statement (a Close the proxy answered itself).
    pub(crate) fn remove_statement(&mut self, name: &str) {
        self.statements.remove(name);
    }

    /// Registers a statement whose Parse the proxy answered itself.
    pub(crate) fn add_statement(&mut self, name: &str, stmt: Arc<Statement>) {
        self.statements.insert(name, stmt);
    }

    /// The bytes to send for the last [`ClientAction::Replace`]; the buffer is reused.
    pub(crate) fn take_replacement(&mut self) -> &[u8] {
        &self.replacement
    }

    fn sync_point(&mut self, inject: Option<Bytes>) {
        self.syncs.push_back(inject);
        self.sent_groups += 1;
    }

    pub(crate) fn on_client_frame(
        &mut self,
        tag: u8,
        body: &[u8],
        backend: &mut BackendStatements,
        stats: &PoolStats,
    ) -> Result<ClientAction, ProtocolError> {
        self.replacement.clear();
        if self.skipping_to_sync {
            if tag == fe::SYNC {
                self.skipping_to_sync = false;
            }
            return Ok(if tag == fe::TERMINATE {
                ClientAction::Terminate
            } else {
                ClientAction::Drop
            });
        }
        match tag {
            fe::QUERY => {
                stats.queries.fetch_add(1, Ordering::Relaxed);
                if self.track {
                    return self.on_query(body, backend);
                }
                self.sync_point(None);
            }
            fe::PARSE if self.track => return self.on_parse(body, backend),
            fe::PARSE => {
                self.unsynced = true;
                self.expect_parse(false, None);
            }
            fe::BIND if self.track => {
                self.unsynced = true;
                let (portal, name) = fe::bind_names(body)?;
                if let Some(stmt) = self.known(name) {
                    self.ensure_prepared(&stmt, backend);
                    prepared::rename_bind(&mut self.replacement, body, portal, &stmt.server_name);
                    return Ok(ClientAction::Replace);
                }
            }
            fe::DESCRIBE if self.track => {
                self.unsynced = true;
                let (kind, name) = fe::target_name(body, "Describe")?;
                if let Some(stmt) = self.known(name).filter(|_| kind == b'S') {
                    self.ensure_prepared(&stmt, backend);
                    prepared::statement_target(
                        &mut self.replacement,
                        fe::DESCRIBE,
                        &stmt.server_name,
                    );
                    return Ok(ClientAction::Replace);
                }
            }
            fe::CLOSE => {
                self.unsynced = true;
                self.expect_close(CloseExpect::Pass);
                if self.track {
                    let (kind, name) = fe::target_name(body, "Close")?;
                    if kind == b'S' && !name.is_empty() {
                        // The backend statement stays cached for other clients and later re-use.
                        self.statements.remove(name);
                        prepared::statement_target(
                            &mut self.replacement,
                            fe::CLOSE,
                            NOOP_STATEMENT,
                        );
                        return Ok(ClientAction::Replace);
                    }
                }
            }
            fe::SYNC => {
                stats.queries.fetch_add(1, Ordering::Relaxed);
                self.unsynced = false;
                self.sync_point(None);
            }
            fe::FUNCTION_CALL => self.sync_point(None),
            fe::BIND | fe::DESCRIBE | fe::EXECUTE | fe::FLUSH => self.unsynced = true,
            fe::COPY_DATA | fe::COPY_DONE | fe::COPY_FAIL => {}
            fe::TERMINATE => return Ok(ClientAction::Terminate),
            other => {
                return Err(ProtocolError::UnexpectedTag {
                    tag: other as char,
                    context: "client message",
                })
            }
        }
        Ok(ClientAction::Forward)
    }

    fn known(&self, name: &str) -> Option<Arc<Statement>> {
        if name.is_empty() {
            return None;
        }
        self.statements.get(name).cloned()
    }

    fn on_query(
        &mut self,
        body: &[u8],
        backend: &mut BackendStatements,
    ) -> Result<ClientAction, ProtocolError> {
        let sql = fe::query_text(body)?;
        // SQL-level prepared statements, sent as a query of their own (in a failed transaction the
        // backend gives PostgreSQL's own 25P02, so they are forwarded then).
        if self.status != TxStatus::Failed
            && statement::split_statements(sql)
                .filter(|s| !s.trim().is_empty())
                .count()
                == 1
        {
            if let Some(p) = sql_prepared::parse_prepare(sql) {
                return Ok(self.on_sql_prepare(&p, backend));
            }
            if let Some(e) = sql_prepared::parse_execute(sql) {
                if let Some(stmt) = self.statements.sql(&e.name).cloned() {
                    return Ok(self.on_sql_execute(&stmt, e.args, backend));
                }
            }
            match statement::classify(sql) {
                // The backend copies are a cache shared with other clients: only the client's names go.
                Effect::Deallocate(Some(name)) if self.statements.remove(&name) => {
                    return Ok(self.answer_in_place("DEALLOCATE"));
                }
                Effect::Deallocate(None) => {
                    self.statements.clear();
                    return Ok(self.answer_in_place("DEALLOCATE ALL"));
                }
                _ => {}
            }
        }
        if let Some(refusal) = self.inspect_sql(sql, backend) {
            self.refuse(refusal);
            return Ok(ClientAction::Refuse);
        }
        self.sync_point(None);
        Ok(ClientAction::Forward)
    }

    /// `PREPARE name AS …`: recorded for the client, prepared on the backend under its shared name
    /// unless this connection already has it (then answered in place).
    fn on_sql_prepare(
        &mut self,
        p: &sql_prepared::Prepare<'_>,
        backend: &mut BackendStatements,
    ) -> ClientAction {
        if self.statements.contains(&p.name) {
            self.refuse(SessionError::DuplicateStatement {
                name: p.name.clone(),
            });
            return ClientAction::Refuse;
        }
        if self.statements.len() >= self.max_client_statements {
            self.refuse(SessionError::TooManyStatements {
                max: self.max_client_statements,
            });
            return ClientAction::Refuse;
        }
        let stmt = Arc::new(SqlStatement::new(p));
        self.statements.insert_sql(&p.name, stmt.clone());
        if backend.touch(&stmt.server_name) {
            return self.answer_in_place("PREPARE");
        }
        self.evict_for(&stmt.server_name, backend);
        backend.insert(&stmt.server_name);
        self.sql_prepares.push_back(Expected {
            group: self.sent_groups,
            what: SqlPrepareExpect {
                client_name: Some(p.name.clone()),
                server_name: stmt.server_name.clone(),
                completed: false,
            },
        });
        fe::query(&mut self.replacement, &stmt.prepare_sql);
        self.sync_point(None);
        ClientAction::Replace
    }

    /// `EXECUTE name(…)` of a client statement: aimed at the backend name, with the `PREPARE` in front
    /// (its CommandComplete hidden) when this connection lacks it.
    fn on_sql_execute(
        &mut self,
        stmt: &SqlStatement,
        args: &str,
        backend: &mut BackendStatements,
    ) -> ClientAction {
        let execute = stmt.execute_sql(args);
        if backend.touch(&stmt.server_name) {
            fe::query(&mut self.replacement, &execute);
        } else {
            self.evict_for(&stmt.server_name, backend);
            backend.insert(&stmt.server_name);
            self.sql_prepares.push_back(Expected {
                group: self.sent_groups,
                what: SqlPrepareExpect {
                    client_name: None,
                    server_name: stmt.server_name.clone(),
                    completed: false,
                },
            });
            self.hidden_completes.push_back(self.sent_groups);
            fe::query(
                &mut self.replacement,
                &format!("{}; {execute}", stmt.prepare_sql),
            );
        }
        self.sync_point(None);
        ClientAction::Replace
    }

    /// Answers a simple query in place: a Sync goes to the backend (keeping the transaction status),
    /// and the client gets `tag`'s CommandComplete before the ReadyForQuery.
    fn answer_in_place(&mut self, tag: &str) -> ClientAction {
        let mut out = BytesMut::new();
        backend::command_complete(&mut out, tag);
        self.sync_point(Some(out.freeze()));
        ClientAction::Refuse
    }

    /// Makes room on the backend connection for one more statement: a SQL-level statement is dropped
    /// by the same LRU as protocol-level ones, with a Close whose answer the client never sees.
    fn evict_for(&mut self, keep: &str, backend: &mut BackendStatements) {
        if let Some(victim) = backend.evict_candidate(self.max_prepared.saturating_sub(1), keep) {
            prepared::statement_target(&mut self.replacement, fe::CLOSE, &victim);
            self.expect_close(CloseExpect::Swallow);
            backend.remove(&victim);
        }
    }

    fn on_parse(
        &mut self,
        body: &[u8],
        backend: &mut BackendStatements,
    ) -> Result<ClientAction, ProtocolError> {
        let (name, sql) = fe::parse_message(body)?;
        let refusal = if !name.is_empty() && self.statements.contains(name) {
            Some(SessionError::DuplicateStatement {
                name: name.to_owned(),
            })
        } else if !name.is_empty() && self.statements.len() >= self.max_client_statements {
            Some(SessionError::TooManyStatements {
                max: self.max_client_statements,
            })
        } else {
            self.inspect_sql(sql, backend)
        };
        if let Some(refusal) = refusal {
            self.refuse(refusal);
            self.unsynced = false;
            self.skipping_to_sync = true;
            return Ok(ClientAction::Refuse);
        }
        self.unsynced = true;
        if name.is_empty() {
            self.expect_parse(false, None);
            return Ok(ClientAction::Forward);
        }
        let stmt = Arc::new(Statement::from_parse_body(body)?);
        self.statements.insert(name, stmt.clone());
        if backend.touch(&stmt.server_name) {
            prepared::statement_target(&mut self.replacement, fe::CLOSE, NOOP_STATEMENT);
            self.expect_close(CloseExpect::AsParseComplete);
        } else {
            self.prepare_on_backend(&stmt, backend, false);
        }
        Ok(ClientAction::Replace)
    }

    /// Adds a Parse for `stmt` to the replacement unless the backend already has it.
    fn ensure_prepared(&mut self, stmt: &Statement, backend: &mut BackendStatements) {
        if !backend.touch(&stmt.server_name) {
            self.prepare_on_backend(stmt, backend, true);
        }
    }

    fn prepare_on_backend(
        &mut self,
        stmt: &Statement,
        backend: &mut BackendStatements,
        swallow: bool,
    ) {
        self.evict_for(&stmt.server_name, backend);
        self.replacement.extend_from_slice(&stmt.parse);
        backend.insert(&stmt.server_name);
        self.expect_parse(swallow, Some(stmt.server_name.clone()));
    }

    fn expect_parse(&mut self, swallow: bool, server_name: Option<String>) {
        self.parses.push_back(Expected {
            group: self.sent_groups,
            what: ParseExpect {
                swallow,
                server_name,
            },
        });
    }

    fn expect_close(&mut self, what: CloseExpect) {
        self.closes.push_back(Expected {
            group: self.sent_groups,
            what,
        });
    }

    /// Stages tracked SETs and applies statement drops; returns the refusal for state that cannot be
    /// replayed.
    fn inspect_sql(&mut self, sql: &str, backend: &mut BackendStatements) -> Option<SessionError> {
        let mut refusal = None;
        let mut drop_statements = false;
        statement::effects(sql, |e| match e {
            Effect::Unsupported(what) => {
                refusal.get_or_insert(SessionError::Unsupported { what });
            }
            Effect::Deallocate(name) => match name {
                Some(name) => {
                    self.statements.remove(&name);
                }
                None => drop_statements = true,
            },
            Effect::DiscardAll => {
                drop_statements = true;
                self.staged.push(Effect::DiscardAll);
            }
            e => self.staged.push(e),
        });
        if refusal.is_some() {
            self.staged.clear();
        } else if drop_statements {
            self.statements.clear();
            backend.clear();
        }
        refusal
    }

    fn refuse(&mut self, err: SessionError) {
        let mut out = BytesMut::new();
        if let Some((severity, code)) = err.response() {
            backend::error_response(&mut out, severity, &code, &err.client_message());
        }
        self.sync_point(Some(out.freeze()));
    }

    /// Looks at one backend message.
    pub(crate) fn on_server_frame(
        &mut self,
        tag: u8,
        body: &[u8],
        vars: &mut SessionVars,
        backend: &mut BackendStatements,
    ) -> Result<ServerAction, ProtocolError> {
        match tag {
            backend::PARSE_COMPLETE => {
                if let Some(e) = self.parses.pop_front() {
                    if let Some(name) = e.what.server_name {
                        self.confirmed.push(name);
                    }
                    if e.what.swallow {
                        return Ok(ServerAction::Drop);
                    }
                }
            }
            backend::CLOSE_COMPLETE => match self.closes.pop_front().map(|e| e.what) {
                Some(CloseExpect::Swallow) => return Ok(ServerAction::Drop),
                Some(CloseExpect::AsParseComplete) => return Ok(ServerAction::AsParseComplete),
                _ => {}
            },
            backend::COMMAND_COMPLETE => {
                if let Some(e) = self.sql_prepares.front_mut() {
                    if e.group == self.done_groups && !e.what.completed {
                        e.what.completed = true;
                        if self.hidden_completes.front() == Some(&self.done_groups) {
                            self.hidden_completes.pop_front();
                            return Ok(ServerAction::Drop);
                        }
                    }
                }
            }
            backend::READY_FOR_QUERY => {
                let status = backend::ready_for_query_status(body)?;
                let inject = self.syncs.pop_front().flatten();
                self.finish_sql_prepares(backend);
                self.done_groups += 1;
                self.forget_skipped(backend);
                self.status = status;
                if status == TxStatus::Idle {
                    if self.failed {
                        self.staged.clear();
                    } else {
                        for e in self.staged.drain(..) {
                            vars.apply(e);
                        }
                    }
                    self.failed = false;
                }
                if let Some(bytes) = inject {
                    return Ok(ServerAction::InjectBefore(bytes));
                }
            }
            backend::ERROR_RESPONSE => {
                self.failed = true;
                // A FATAL from the server (e.g. pg_terminate_backend) is the client's explanation of
                // the close that follows; the proxy then need not add one of its own.
                if backend::error_fields(body)
                    .is_ok_and(|f| f.severity == "FATAL" || f.severity == "PANIC")
                {
                    self.server_fatal = true;
                }
            }
            _ => {}
        }
        Ok(ServerAction::Forward)
    }

    /// At the end of a sync point: a `PREPARE` the proxy sent in it that did not complete created
    /// nothing, so neither the backend nor (for the client's own `PREPARE`) the client has it.
    fn finish_sql_prepares(&mut self, backend: &mut BackendStatements) {
        while self
            .sql_prepares
            .front()
            .is_some_and(|e| e.group <= self.done_groups)
        {
            let Some(Expected { what, .. }) = self.sql_prepares.pop_front() else {
                break;
            };
            if !what.completed {
                backend.remove(&what.server_name);
                if let Some(name) = what.client_name {
                    self.statements.remove(&name);
                }
            }
        }
        while self
            .hidden_completes
            .front()
            .is_some_and(|g| *g <= self.done_groups)
        {
            self.hidden_completes.pop_front();
        }
    }

    /// Answers still expected for finished sync points were skipped after an error: a Parse that never
    /// completed created no backend statement.
    fn forget_skipped(&mut self, backend: &mut BackendStatements) {
        while self
            .parses
            .front()
            .is_some_and(|e| e.group < self.done_groups)
        {
            if let Some(Expected {
                what:
                    ParseExpect {
                        server_name: Some(name),
                        ..
                    },
                ..
            }) = self.parses.pop_front()
            {
                backend.remove(&name);
            }
        }
        while self
            .closes
            .front()
            .is_some_and(|e| e.group < self.done_groups)
        {
            self.closes.pop_front();
        }
    }
}

#[cfg(test)]
mod tests;
