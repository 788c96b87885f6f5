//! Scrape-time metrics: values other parts already keep as atomics, read when Prometheus asks instead
//! of being counted a second time on the query path.

use std::sync::atomic::Ordering;
use std::sync::Weak;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::classify::{Reason, Route};
use crate::health::{BreakerState, Role};
use crate::Proxy;

/// Reads pools, replicas, backends, routing counters and clients of a proxy at each scrape.
#[derive(Debug)]
pub struct StateCollector {
    proxy: Weak<Proxy>,
}

impl StateCollector {
    pub fn new(proxy: Weak<Proxy>) -> StateCollector {
        StateCollector { proxy }
    }
}

/// Breaker state as a number: 0 closed, 1 half-open, 2 open (so `max` over backends is the worst).
pub fn breaker_value(state: BreakerState) -> i64 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::HalfOpen => 1,
        BreakerState::Open => 2,
    }
}

/// One metric family whose samples are written as they are computed.
struct Writer<'e, 'a> {
    encoder: &'e mut DescriptorEncoder<'a>,
}

impl Writer<'_, '_> {
    fn gauges<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        samples: impl IntoIterator<Item = (L, f64)>,
    ) -> Result<(), std::fmt::Error> {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, unit, MetricType::Gauge)?;
        for (labels, value) in samples {
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn counters<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, u64)>,
    ) -> Result<(), std::fmt::Error> {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, value) in samples {
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(proxy) = self.proxy.upgrade() else {
            return Ok(());
        };
        proxy.metrics().inspect(|m| m.fingerprints().rebalance());
        let mut w = Writer {
            encoder: &mut encoder,
        };
        pools(&mut w, &proxy)?;
        clients(&mut w, &proxy)?;
        replicas(&mut w, &proxy)?;
        backends(&mut w, &proxy)?;
        control(&mut w, &proxy)?;
        routes(&mut w, &proxy)
    }
}

/// Managed mode only: whether the control-plane stream is up and the snapshot version in force.
fn control(w: &mut Writer<'_, '_>, proxy: &Proxy) -> Result<(), std::fmt::Error> {
    let state = proxy.control_status().state();
    if !state.managed {
        return Ok(());
    }
    let none: [(&str, String); 0] = [];
    w.gauges(
        "control_plane_connected",
        "1 while the control plane's Watch stream is open (0: serving the last good snapshot)",
        None,
        [(none.clone(), f64::from(u8::from(state.connected)))],
    )?;
    w.gauges(
        "control_plane_snapshot_version",
        "version of the topology snapshot in force (0: none yet)",
        None,
        [(none, state.applied_version.unwrap_or_default() as f64)],
    )
}

type PoolLabels = [(&'static str, String); 3];

fn pools(w: &mut Writer<'_, '_>, proxy: &Proxy) -> Result<(), std::fmt::Error> {
    let pools = proxy.pools().all();
    let labels = |p: &crate::pool::Pool| -> PoolLabels {
        let k = p.key();
        [
            ("backend", k.backend.to_string()),
            ("database", k.database.clone()),
            ("user", k.user.clone()),
        ]
    };
    let stat = |f: fn(&crate::pool::Pool) -> f64| pools.iter().map(move |p| (labels(p), f(p)));
    w.gauges(
        "pool_active_connections",
        "Backend connections checked out right now",
        None,
        stat(|p| f64::from(p.stats().active.load(Ordering::Relaxed))),
    )?;
    w.gauges(
        "pool_idle_connections",
        "Backend connections idle in the pool",
        None,
        stat(|p| p.idle_count() as f64),
    )?;
    w.gauges(
        "pool_waiting_clients",
        "Clients queued for a connection of this pool",
        None,
        stat(|p| f64::from(p.stats().waiting.load(Ordering::Relaxed))),
    )?;
    w.gauges(
        "pool_max_connections",
        "Pool size (pool.pool_size), without the reserve",
        None,
        stat(|p| f64::from(p.size())),
    )?;
    w.gauges(
        "pool_utilization_ratio",
        "Checked-out connections over pool size (above 1 while reserve connections are in use)",
        None,
        stat(|p| f64::from(p.stats().active.load(Ordering::Relaxed)) / f64::from(p.size().max(1))),
    )?;
    let count = |f: fn(&crate::pool::Pool) -> u64| pools.iter().map(move |p| (labels(p), f(p)));
    w.counters(
        "pool_checkouts",
        "Connections handed out since start",
        count(|p| p.stats().checkouts.load(Ordering::Relaxed)),
    )?;
    w.counters(
        "pool_connects",
        "Backend connections opened since start",
        count(|p| p.stats().connects.load(Ordering::Relaxed)),
    )?;
    w.counters(
        "pool_rejected",
        "Clients turned away at once (queue_mode fail-fast, max_waiting, shedding) since start",
        count(|p| {
            p.stats().rejected.load(Ordering::Relaxed) + p.stats().shed.load(Ordering::Relaxed)
        }),
    )
}

fn clients(w: &mut Writer<'_, '_>, proxy: &Proxy) -> Result<(), std::fmt::Error> {
    let total = u64::from(proxy.client_count());
    let in_flight = proxy.gate().in_flight() as u64;
    let waiting: u64 = proxy
        .pools()
        .all()
        .iter()
        .map(|p| u64::from(p.stats().waiting.load(Ordering::Relaxed)))
        .sum::<u64>()
        + u64::from(proxy.primary().waiting());
    let waiting = waiting.min(in_flight);
    let samples = [
        ("active", in_flight - waiting),
        ("waiting", waiting),
        ("idle", total.saturating_sub(in_flight)),
    ]
    .map(|(state, n)| ([("state", state)], n as f64));
    w.gauges(
        "client_connections",
        "Logged-in clients: active (in a transaction), waiting (for a backend connection or a primary), idle",
        None,
        samples,
    )
}

fn replicas(w: &mut Writer<'_, '_>, proxy: &Proxy) -> Result<(), std::fmt::Error> {
    let replicas = proxy.replicas();
    let each = |f: fn(&crate::topology::ReplicaState) -> f64| {
        replicas
            .iter()
            .map(move |r| ([("backend", r.address.to_string())], f(r)))
    };
    w.gauges(
        "replica_lag",
        "Replication lag (replay delay) last measured by the lag monitor",
        Some(&Unit::Seconds),
        each(|r| r.lag().1.as_secs_f64()),
    )?;
    w.gauges(
        "replica_lag",
        "WAL bytes the replica is behind the primary, last measured",
        Some(&Unit::Bytes),
        each(|r| r.lag().0 as f64),
    )?;
    w.gauges(
        "replica_eligible",
        "1 when the replica takes reads (within lag limits, after hysteresis)",
        None,
        each(|r| f64::from(u8::from(r.eligible()))),
    )
}

fn backends(w: &mut Writer<'_, '_>, proxy: &Proxy) -> Result<(), std::fmt::Error> {
    let all = proxy.backends().all();
    let each = |f: fn(&crate::health::BackendHealth) -> f64| {
        all.iter()
            .map(move |b| ([("backend", b.address.to_string())], f(b)))
    };
    w.gauges(
        "backend_up",
        "1 while health checks consider the backend up",
        None,
        each(|b| f64::from(u8::from(b.is_up()))),
    )?;
    w.gauges(
        "backend_breaker_state",
        "Circuit breaker: 0 closed, 1 half-open, 2 open",
        None,
        each(|b| breaker_value(b.breaker_state()) as f64),
    )?;
    w.gauges(
        "backend_drained",
        "1 while the backend is drained (DRAIN)",
        None,
        each(|b| f64::from(u8::from(b.is_drained()))),
    )?;
    w.counters(
        "backend_breaker_opens",
        "Times the backend's circuit breaker opened since start",
        all.iter()
            .map(|b| ([("backend", b.address.to_string())], b.breaker_opened())),
    )?;
    let roles = all.iter().flat_map(|b| {
        let current = b.role();
        [Role::Primary, Role::Replica, Role::Unknown].map(|role| {
            (
                [
                    ("backend", b.address.to_string()),
                    ("role", role.as_str().to_owned()),
                ],
                f64::from(u8::from(role == current)),
            )
        })
    });
    w.gauges(
        "backend_role",
        "1 for the role the backend reported in its last check (primary, replica, unknown)",
        None,
        roles,
    )?;
    let primary = proxy.primary();
    let addr = primary.address().to_string();
    w.gauges(
        "primary_available",
        "1 while the current primary takes writes",
        None,
        [(
            [("backend", addr)],
            f64::from(u8::from(primary.available())),
        )],
    )
}

fn routes(w: &mut Writer<'_, '_>, proxy: &Proxy) -> Result<(), std::fmt::Error> {
    let counters = proxy.router().counters();
    let samples = [Route::Primary, Route::Replica]
        .into_iter()
        .flat_map(|route| {
            Reason::ALL.into_iter().map(move |reason| {
                (
                    [("route", route.as_str()), ("reason", reason.as_str())],
                    counters.get(route, reason),
                )
            })
        });
    w.counters(
        "routing_decisions",
        "Transactions routed, by destination kind and reason",
        samples,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::pool::PoolKey;

    fn scrape(proxy: &Arc<Proxy>) -> String {
        let registry = proxy
            .metrics()
            .expect("metrics on")
            .registry(Arc::downgrade(proxy));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        text
    }

    #[tokio::test]
    async fn state_is_read_at_scrape_time() {
        let mut config = crate::Config::default();
        config.backends.primary = "127.0.0.1:1".parse().ok();
        config.backends.replicas = vec!["127.0.0.1:2"
            .parse::<crate::config::BackendAddr>()
            .expect("addr")
            .into()];
        config.server.metrics_listen = Some("127.0.0.1:0".into());
        let proxy = Proxy::new(config).expect("proxy");
        let pool = proxy.pools().get(&PoolKey {
            backend: "127.0.0.1:1".parse().expect("addr"),
            database: "db".into(),
            user: "u".into(),
        });
        pool.stats().active.store(5, Ordering::Relaxed);
        proxy
            .router()
            .counters()
            .record(Route::Replica, Reason::ReadOnly);
        let text = scrape(&proxy);
        for line in [
            "pgroute_pool_active_connections{backend=\"127.0.0.1:1\",database=\"db\",user=\"u\"} 5",
            "pgroute_pool_max_connections{backend=\"127.0.0.1:1\",database=\"db\",user=\"u\"} 20",
            "pgroute_pool_utilization_ratio{backend=\"127.0.0.1:1\",database=\"db\",user=\"u\"} 0.25",
            "pgroute_routing_decisions_total{route=\"replica\",reason=\"read_only\"} 1",
            "pgroute_replica_eligible{backend=\"127.0.0.1:2\"} 0",
            "pgroute_replica_lag_seconds{backend=\"127.0.0.1:2\"} 0.0",
            "pgroute_replica_lag_bytes{backend=\"127.0.0.1:2\"} 0",
            "pgroute_backend_breaker_state{backend=\"127.0.0.1:1\"} 0",
            "pgroute_backend_up{backend=\"127.0.0.1:2\"} 1",
            "pgroute_client_connections{state=\"idle\"} 0",
            "pgroute_errors_total{source=\"backend\",class=\"42\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        // Values are read, not copied: a change shows at the next scrape.
        pool.stats().active.store(0, Ordering::Relaxed);
        assert!(scrape(&proxy).contains(
            "pgroute_pool_active_connections{backend=\"127.0.0.1:1\",database=\"db\",user=\"u\"} 0"
        ));
    }
}
