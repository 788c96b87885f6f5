//! A session's side of the metrics: the handles it bound for each pool it uses, and the clock that
//! times each query from the moment the relay passes it to the backend to its ReadyForQuery.
//!
//! Built at login only when metrics are on. Per transaction: [`SessionMetrics::begin`] picks the bound
//! handles (a pointer comparison over the session's few pools), the relay feeds
//! [`SessionMetrics::client_frame`] / [`SessionMetrics::server_frame`], and [`SessionMetrics::end`]
//! counts the transaction and returns its [`TxObservation`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgroute_protocol::{backend as be, frontend as fe};

use super::fingerprints::SlotCache;
use super::{BackendHandles, ErrorSource, Metrics, QueryType, Role, TxObservation};
use crate::classify::{fingerprint_sql, Decision};
use crate::pool::Pool;

/// Queries in flight timed at once; a client pipelining more has the excess go untimed (and uncounted
/// here; `PoolStats.queries` still counts them).
const MAX_IN_FLIGHT: usize = 64;
/// Pools a session keeps handles for (its primary and replicas); more (after many failovers) start over.
const MAX_BOUND: usize = 8;

#[derive(Debug)]
pub struct SessionMetrics {
    metrics: Arc<Metrics>,
    bound: Vec<(Arc<Pool>, Role, Arc<BackendHandles>)>,
    current: Option<Arc<BackendHandles>>,
    kind: QueryType,
    /// Sent and not yet answered: when, and the fingerprint of the statement.
    sent: VecDeque<(Instant, Option<u64>)>,
    /// Fingerprint of the first statement since the last sync point.
    pending: Option<u64>,
    first: Option<u64>,
    slots: SlotCache,
    queries: u64,
    ready_at: Option<Instant>,
}

impl SessionMetrics {
    pub fn new(metrics: Arc<Metrics>) -> SessionMetrics {
        SessionMetrics {
            metrics,
            bound: Vec::new(),
            current: None,
            kind: QueryType::Unclassified,
            sent: VecDeque::with_capacity(4),
            pending: None,
            first: None,
            slots: SlotCache::default(),
            queries: 0,
            ready_at: None,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A transaction got its connection on `pool` after waiting `wait`.
    pub fn begin(&mut self, pool: &Arc<Pool>, role: Role, kind: QueryType, wait: Duration) {
        let handles = match self
            .bound
            .iter()
            .find(|(p, r, _)| *r == role && Arc::ptr_eq(p, pool))
        {
            Some((_, _, h)) => h.clone(),
            None => {
                if self.bound.len() >= MAX_BOUND {
                    self.bound.clear();
                }
                let h = self.metrics.bind(&pool.key().backend, role);
                self.bound.push((pool.clone(), role, h.clone()));
                h
            }
        };
        handles.pool_wait.observe(wait);
        self.current = Some(handles);
        self.kind = kind;
        self.sent.clear();
        self.pending = None;
        self.first = None;
        self.queries = 0;
        self.ready_at = Some(Instant::now());
    }

    /// A client frame the relay is about to pass on. `statement_sql` finds a named statement's text.
    pub fn client_frame(
        &mut self,
        tag: u8,
        body: &[u8],
        statement_sql: impl FnOnce(&str) -> Option<u64>,
        now: Instant,
    ) {
        match tag {
            fe::QUERY => {
                let fp = fe::query_text(body).ok().map(fingerprint_sql);
                self.first = self.first.or(fp);
                self.push(now, fp);
            }
            fe::PARSE if self.pending.is_none() => {
                self.pending = fe::parse_message(body)
                    .ok()
                    .map(|(_, sql)| fingerprint_sql(sql));
            }
            fe::BIND if self.pending.is_none() => {
                self.pending = fe::bind_names(body)
                    .ok()
                    .and_then(|(_, name)| statement_sql(name));
            }
            fe::SYNC => {
                let fp = self.pending.take();
                self.first = self.first.or(fp);
                self.push(now, fp);
            }
            _ => {}
        }
    }

    fn push(&mut self, now: Instant, fingerprint: Option<u64>) {
        if self.sent.len() < MAX_IN_FLIGHT {
            self.sent.push_back((now, fingerprint));
        }
    }

    /// A backend frame the relay passes to the client.
    pub fn server_frame(&mut self, tag: u8, body: &[u8], now: Instant) {
        match tag {
            be::READY_FOR_QUERY => {
                let (Some((at, fp)), Some(h)) = (self.sent.pop_front(), &self.current) else {
                    return;
                };
                let took = now.saturating_duration_since(at);
                let k = self.kind as usize;
                h.queries[k].inc();
                h.query_duration[k].observe(took);
                self.slots.observe(self.metrics.fingerprints(), fp, took);
                self.queries += 1;
            }
            be::ERROR_RESPONSE => {
                if let Some(code) = super::sqlstate::code_of(body) {
                    self.metrics.error(ErrorSource::Backend, code);
                }
            }
            _ => {}
        }
    }

    /// The transaction is over: counts it and returns what was seen, for logs and traces.
    pub fn end<'a>(
        &mut self,
        decision: Decision,
        pool: &'a Pool,
        role: Role,
        pool_wait: Duration,
    ) -> TxObservation<'a> {
        if let Some(h) = &self.current {
            h.transactions[self.kind as usize].inc();
        }
        self.sent.clear();
        TxObservation {
            route: decision.route,
            reason: decision.reason,
            kind: self.kind,
            backend: &pool.key().backend,
            role,
            pool_wait,
            backend_time: self.ready_at.take().map_or(Duration::ZERO, |t| t.elapsed()),
            queries: self.queries,
            fingerprint: self.first,
        }
    }
}
