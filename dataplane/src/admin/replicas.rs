//! `SHOW REPLICAS`: pgroute's own report of every backend, the primary first, then the replicas in
//! configuration order: what health checks, the circuit breaker, the lag monitor and DRAIN decided.
//! PgBouncer has no equivalent; the names follow the metrics' (`lag_bytes`, `breaker_state`).

use super::table::{int, text, Table, Type};
use crate::proxy::Proxy;
use crate::topology::Ineligible;

fn reason(why: Ineligible) -> &'static str {
    match why {
        Ineligible::Unknown => "not measured (or unreachable)",
        Ineligible::Lagging => "lagging",
        Ineligible::Recovering => "recovering (hysteresis)",
    }
}

fn yes_no(b: bool) -> Option<String> {
    text(if b { "yes" } else { "no" })
}

/// One row per backend. The primary's lag columns are NULL and it is always "eligible" for writes.
pub fn replicas(proxy: &Proxy) -> Table {
    let mut t = Table::new(&[
        ("address", Type::Text),
        ("configured_as", Type::Text),
        ("role", Type::Text),
        ("up", Type::Text),
        ("lag_bytes", Type::Int),
        ("lag_ms", Type::Int),
        ("eligible", Type::Text),
        ("ineligible_reason", Type::Text),
        ("breaker_state", Type::Text),
        ("breaker_opened", Type::Int),
        ("drained", Type::Text),
        ("weight", Type::Int),
        ("last_error", Type::Text),
    ]);
    let backends = proxy.backends();
    let primary = proxy.primary().address();
    let health = backends.get(&primary);
    t.push(vec![
        text(primary.to_string()),
        text("primary"),
        text(health.role().as_str()),
        yes_no(health.is_up()),
        None,
        None,
        yes_no(true),
        None,
        text(health.breaker_state().as_str()),
        int(health.breaker_opened()),
        yes_no(health.is_drained()),
        None,
        health.last_error(),
    ]);
    for replica in proxy.replicas().iter() {
        let health = backends.get(&replica.address);
        let (bytes, time) = replica.lag();
        let why = replica.ineligible();
        t.push(vec![
            text(replica.address.to_string()),
            text("replica"),
            text(health.role().as_str()),
            yes_no(health.is_up()),
            int(bytes),
            int(time.as_millis() as u64),
            yes_no(replica.eligible()),
            why.map(|w| reason(w).to_owned()),
            text(health.breaker_state().as_str()),
            int(health.breaker_opened()),
            yes_no(health.is_drained()),
            int(replica.weight),
            health.last_error(),
        ]);
    }
    t
}
