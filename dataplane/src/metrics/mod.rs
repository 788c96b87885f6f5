//! Prometheus metrics, the `/metrics`, `/healthz` and `/readyz` endpoints, and the per-transaction
//! observation that later tracing can hang spans on.
//!
//! Two kinds of numbers, kept apart on purpose:
//! - what only the query path sees (queries and transactions by type and destination, query and pool
//!   wait latency, per-fingerprint latency, errors by SQLSTATE class) lives here as pre-bound handles:
//!   a session resolves its label sets once per pool ([`SessionMetrics`]) and then pays an atomic add
//!   per query and per transaction, no label hashing and no allocation;
//! - what other parts already keep as atomics (`PoolStats`, `ReplicaState`, `BackendHealth`,
//!   `RouteCounters`, the client count) is read at scrape time by [`collector::StateCollector`], not
//!   counted twice.
//!
//! Without `server.metrics_listen` there is no [`Metrics`] at all: sessions hold `None` and each hook
//! is one branch per transaction (and per batch in the relay).

mod collector;
mod fingerprints;
mod histogram;
mod server;
mod session;
mod sqlstate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use crate::classify::{Decision, Reason, Route};
use crate::config::BackendAddr;

pub use fingerprints::Fingerprints;
pub use histogram::Histogram;
pub use server::{readiness, serve, MetricsServer, ServeError};
pub use session::SessionMetrics;

/// Labels of the per-destination series.
type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Whether a transaction read or wrote, as far as routing knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryType {
    Read,
    Write,
    /// Not classified: without replicas (or with `read_write_split` off) pgroute routes everything to
    /// the primary without reading the SQL, and does not start reading it for metrics.
    Unclassified,
}

impl QueryType {
    const ALL: [QueryType; 3] = [QueryType::Read, QueryType::Write, QueryType::Unclassified];

    pub fn as_str(self) -> &'static str {
        match self {
            QueryType::Read => "read",
            QueryType::Write => "write",
            QueryType::Unclassified => "unclassified",
        }
    }

    /// A read is what routing would have sent to a replica: a read that went to the primary (no fresh
    /// replica, the primary's share of reads) is still a read.
    pub fn of(decision: Decision) -> QueryType {
        match (decision.route, decision.reason) {
            (Route::Replica, _) => QueryType::Read,
            (
                Route::Primary,
                Reason::NoReplica
                | Reason::PrimaryShare
                | Reason::ReadYourWrites
                | Reason::ReplicaLagging,
            ) => QueryType::Read,
            (Route::Primary, _) => QueryType::Write,
        }
    }
}

/// Which part the destination played for this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// One transaction (one attached period: a transaction in transaction mode, the whole session in
/// session mode) as the session saw it. Metrics count it; it is also the hook for per-transaction
/// tracing (an OpenTelemetry span carries the same fields), built in `Session::step` after the relay.
#[derive(Debug, Clone, Copy)]
pub struct TxObservation<'a> {
    pub route: Route,
    pub reason: Reason,
    pub kind: QueryType,
    pub backend: &'a BackendAddr,
    pub role: Role,
    /// From asking the pool for a connection to having one ready (variables synced).
    pub pool_wait: Duration,
    /// From the connection being ready to the transaction at rest.
    pub backend_time: Duration,
    /// Queries answered (Query messages and Syncs).
    pub queries: u64,
    /// Fingerprint of the first statement, when it had text.
    pub fingerprint: Option<u64>,
}

/// The handles of one (backend, role): per query type, resolved once.
#[derive(Debug)]
pub struct BackendHandles {
    queries: [Counter; 3],
    transactions: [Counter; 3],
    query_duration: [Histogram; 3],
    pool_wait: Histogram,
}

/// Where errors sent to clients came from.
#[derive(Debug, Clone, Copy)]
pub enum ErrorSource {
    /// pgroute's own ErrorResponses (pool full, no primary, refused statements…).
    Proxy,
    /// A backend's ErrorResponse, relayed.
    Backend,
}

/// The query-path metrics of one proxy.
#[derive(Debug)]
pub struct Metrics {
    queries: Family<Labels, Counter>,
    transactions: Family<Labels, Counter>,
    query_duration: HistogramFamily,
    pool_wait: HistogramFamily,
    errors: Family<Labels, Counter>,
    /// `[source][class]`, bound at start.
    error_handles: [Vec<Counter>; 2],
    fingerprints: Fingerprints,
    bound: Mutex<HashMap<(BackendAddr, Role), Arc<BackendHandles>>>,
}

fn query_histogram() -> Histogram {
    Histogram::new(histogram::QUERY_BUCKETS_US)
}

fn wait_histogram() -> Histogram {
    Histogram::new(histogram::WAIT_BUCKETS_US)
}

impl Metrics {
    /// `top_fingerprints`: fingerprints with their own latency series (`metrics.top_fingerprints`).
    pub fn new(top_fingerprints: usize) -> Arc<Metrics> {
        let errors = Family::<Labels, Counter>::default();
        let bind = |source: &'static str| {
            (0..=sqlstate::CLASSES.len())
                .map(|i| {
                    errors.get_or_create_owned(&vec![
                        ("source", source.to_owned()),
                        ("class", sqlstate::label(i).to_owned()),
                    ])
                })
                .collect()
        };
        let error_handles = [bind("proxy"), bind("backend")];
        Arc::new(Metrics {
            queries: Family::default(),
            transactions: Family::default(),
            query_duration: HistogramFamily::new_with_constructor(query_histogram),
            pool_wait: HistogramFamily::new_with_constructor(wait_histogram),
            errors,
            error_handles,
            fingerprints: Fingerprints::new(top_fingerprints),
            bound: Mutex::new(HashMap::new()),
        })
    }

    /// The handles for `backend` in `role`, created on first use (once per session and pool).
    pub fn bind(&self, backend: &BackendAddr, role: Role) -> Arc<BackendHandles> {
        let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        bound
            .entry((backend.clone(), role))
            .or_insert_with(|| {
                let labels = |kind: Option<QueryType>| {
                    let mut l = vec![
                        ("backend", backend.to_string()),
                        ("role", role.as_str().to_owned()),
                    ];
                    if let Some(k) = kind {
                        l.push(("type", k.as_str().to_owned()));
                    }
                    l
                };
                let per_type =
                    |f: &dyn Fn(&Labels) -> Counter| QueryType::ALL.map(|k| f(&labels(Some(k))));
                Arc::new(BackendHandles {
                    queries: per_type(&|l| self.queries.get_or_create_owned(l)),
                    transactions: per_type(&|l| self.transactions.get_or_create_owned(l)),
                    query_duration: QueryType::ALL
                        .map(|k| self.query_duration.get_or_create_owned(&labels(Some(k)))),
                    pool_wait: self.pool_wait.get_or_create_owned(&labels(None)),
                })
            })
            .clone()
    }

    /// An ErrorResponse sent to a client, by its SQLSTATE.
    pub fn error(&self, source: ErrorSource, code: &str) {
        let table = &self.error_handles[source as usize];
        if let Some(c) = table.get(sqlstate::class_index(code)) {
            c.inc();
        }
    }

    pub fn fingerprints(&self) -> &Fingerprints {
        &self.fingerprints
    }

    /// A registry with these metrics and the scrape-time collector over `proxy`.
    pub fn registry(&self, proxy: std::sync::Weak<crate::Proxy>) -> Registry {
        let mut r = Registry::with_prefix("pgroute");
        r.register(
            "queries",
            "Queries answered (simple Query messages and extended-protocol Syncs), by destination backend, its role for the session and read/write type",
            self.queries.clone(),
        );
        r.register(
            "transactions",
            "Transactions served (attached periods: transactions in transaction mode, sessions in session mode), by destination and type",
            self.transactions.clone(),
        );
        r.register_with_unit(
            "query_duration",
            "Time from a query (or Sync) reaching pgroute to its ReadyForQuery, by destination and type",
            Unit::Seconds,
            self.query_duration.clone(),
        );
        r.register_with_unit(
            "pool_wait_duration",
            "Time a transaction waited for a backend connection (queue, connect, session variables)",
            Unit::Seconds,
            self.pool_wait.clone(),
        );
        r.register_with_unit(
            "query_fingerprint_duration",
            "Query time per normalised-query fingerprint, for the busiest metrics.top_fingerprints only; the rest are fingerprint=\"other\"",
            Unit::Seconds,
            self.fingerprints.family().clone(),
        );
        r.register(
            "errors",
            "ErrorResponses sent to clients, by SQLSTATE class and source (proxy or backend)",
            self.errors.clone(),
        );
        r.register_collector(Box::new(collector::StateCollector::new(proxy)));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sent_to_the_primary_are_still_reads() {
        assert_eq!(
            QueryType::of(Decision::primary(Reason::ReadYourWrites)),
            QueryType::Read
        );
        assert_eq!(
            QueryType::of(Decision::replica(Reason::ReadOnly)),
            QueryType::Read
        );
        assert_eq!(
            QueryType::of(Decision::primary(Reason::Write)),
            QueryType::Write
        );
    }

    #[test]
    fn handles_are_bound_once_per_backend_and_role() {
        let m = Metrics::new(4);
        let b: BackendAddr = "127.0.0.1:5432".parse().expect("addr");
        let a = m.bind(&b, Role::Primary);
        assert!(Arc::ptr_eq(&a, &m.bind(&b, Role::Primary)));
        assert!(!Arc::ptr_eq(&a, &m.bind(&b, Role::Replica)));
        a.queries[0].inc();
        assert_eq!(m.bind(&b, Role::Primary).queries[0].get(), 1);
    }
}
