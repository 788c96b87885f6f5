//! The pool and traffic reports, with PgBouncer's columns in PgBouncer's order (1.21 and later) so its
//! exporters and dashboards read them: `SHOW POOLS`, `STATS`, `DATABASES`, `LISTS`, `CONFIG`,
//! `VERSION`, `STATE`, and pgroute's `ROUTES`.
//!
//! pgroute's pools are per (backend, database, user); PgBouncer's per (database, user). Reports keep
//! PgBouncer's rows, one per (database, user), summed over the backends, so label sets stay unique for
//! exporters; what each backend holds is in `SHOW SERVERS` (one row per connection) and
//! `SHOW REPLICAS`. Columns pgroute does not track are always 0 (listed in the README).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::table::{int, text, Table, Type};
use crate::classify::{Reason, Route};
use crate::clients::{now_micros, ClientState};
use crate::config::PoolMode;
use crate::proxy::Proxy;

const VERSION: &str = concat!("pgroute ", env!("CARGO_PKG_VERSION"));

/// pool_mode as PgBouncer spells it; the console's own "pool" is `statement`, as PgBouncer reports it.
fn mode_name(mode: PoolMode) -> &'static str {
    match mode {
        PoolMode::Transaction => "transaction",
        PoolMode::Session => "session",
    }
}

/// `SHOW POOLS`: clients and server connections per (database, user).
pub fn pools(proxy: &Proxy) -> Table {
    #[derive(Default)]
    struct Row {
        cl_active: u64,
        cl_waiting: u64,
        sv_active: u64,
        sv_idle: u64,
        sv_login: u64,
        maxwait_us: u64,
        admin: bool,
    }
    let mut rows: BTreeMap<(String, String), Row> = BTreeMap::new();
    for pool in proxy.pools().all() {
        let key = pool.key();
        let row = rows
            .entry((key.database.clone(), key.user.clone()))
            .or_default();
        let stats = pool.stats();
        row.sv_active += u64::from(stats.active.load(Ordering::Relaxed));
        row.sv_idle += pool.idle_count() as u64;
        row.sv_login += u64::from(stats.connecting.load(Ordering::Relaxed));
    }
    let now = now_micros();
    for client in proxy.clients().all() {
        let login = &client.login;
        let row = rows
            .entry((login.database.clone(), login.user.clone()))
            .or_default();
        row.admin |= login.admin;
        match client.state() {
            ClientState::Waiting => {
                row.cl_waiting += 1;
                row.maxwait_us = row
                    .maxwait_us
                    .max(now.saturating_sub(client.request_time()));
            }
            ClientState::Idle | ClientState::Active => row.cl_active += 1,
        }
    }
    let mode = mode_name(proxy.config().pool.mode);
    let mut t = Table::new(&[
        ("database", Type::Text),
        ("user", Type::Text),
        ("cl_active", Type::Int),
        ("cl_waiting", Type::Int),
        ("cl_active_cancel_req", Type::Int),
        ("cl_waiting_cancel_req", Type::Int),
        ("sv_active", Type::Int),
        ("sv_active_cancel", Type::Int),
        ("sv_being_canceled", Type::Int),
        ("sv_idle", Type::Int),
        ("sv_used", Type::Int),
        ("sv_tested", Type::Int),
        ("sv_login", Type::Int),
        ("maxwait", Type::Int),
        ("maxwait_us", Type::Int),
        ("pool_mode", Type::Text),
    ]);
    for ((database, user), r) in rows {
        t.push(vec![
            text(database),
            text(user),
            int(r.cl_active),
            int(r.cl_waiting),
            int(0u8),
            int(0u8),
            int(r.sv_active),
            int(0u8),
            int(0u8),
            int(r.sv_idle),
            int(0u8),
            int(0u8),
            int(r.sv_login),
            int(r.maxwait_us / 1_000_000),
            int(r.maxwait_us % 1_000_000),
            text(if r.admin { "statement" } else { mode }),
        ]);
    }
    t
}

/// `SHOW STATS`: totals per database since start. Averages (per second over PgBouncer's
/// `stats_period`) and the times pgroute does not measure are 0; use `rate()` over the totals.
pub fn stats(proxy: &Proxy) -> Table {
    #[derive(Default)]
    struct Row {
        assignments: u64,
        queries: u64,
        wait_us: u64,
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for pool in proxy.pools().all() {
        let stats = pool.stats();
        let row = rows.entry(pool.key().database.clone()).or_default();
        row.assignments += stats.checkouts.load(Ordering::Relaxed);
        row.queries += stats.queries.load(Ordering::Relaxed);
        row.wait_us += stats.wait_us.load(Ordering::Relaxed);
    }
    let mut t = Table::new(&[
        ("database", Type::Text),
        ("total_server_assignment_count", Type::Int),
        ("total_xact_count", Type::Int),
        ("total_query_count", Type::Int),
        ("total_received", Type::Int),
        ("total_sent", Type::Int),
        ("total_xact_time", Type::Int),
        ("total_query_time", Type::Int),
        ("total_wait_time", Type::Int),
        ("total_client_parse_count", Type::Int),
        ("total_server_parse_count", Type::Int),
        ("total_bind_count", Type::Int),
        ("avg_server_assignment_count", Type::Int),
        ("avg_xact_count", Type::Int),
        ("avg_query_count", Type::Int),
        ("avg_recv", Type::Int),
        ("avg_sent", Type::Int),
        ("avg_xact_time", Type::Int),
        ("avg_query_time", Type::Int),
        ("avg_wait_time", Type::Int),
        ("avg_client_parse_count", Type::Int),
        ("avg_server_parse_count", Type::Int),
        ("avg_bind_count", Type::Int),
    ]);
    for (database, r) in rows {
        let mut row = vec![
            text(database),
            int(r.assignments),
            // A transaction is one server assignment in transaction mode (a session in session mode).
            int(r.assignments),
            int(r.queries),
            int(0u8),
            int(0u8),
            int(0u8),
            int(0u8),
            int(r.wait_us),
        ];
        row.resize(23, int(0u8));
        t.push(row);
    }
    t
}

/// `SHOW DATABASES`: one row per database a pool exists for (pgroute has no `[databases]` list:
/// every database clients name is served by the configured primary and replicas), plus the console.
pub fn databases(proxy: &Proxy) -> Table {
    let config = proxy.config();
    let pool = &config.pool;
    let primary = proxy.primary().address();
    let mut connections: BTreeMap<String, u64> = BTreeMap::new();
    for p in proxy.pools().all() {
        *connections.entry(p.key().database.clone()).or_default() +=
            u64::from(p.stats().open.load(Ordering::Relaxed));
    }
    let mut clients: BTreeMap<String, u64> = BTreeMap::new();
    for c in proxy.clients().all() {
        *clients.entry(c.login.database.clone()).or_default() += 1;
    }
    let admin_db = config.admin.database.clone();
    connections.entry(admin_db.clone()).or_default();
    let paused = proxy.gate().phase() == crate::ops::Phase::Paused;
    let mut t = Table::new(&[
        ("name", Type::Text),
        ("host", Type::Text),
        ("port", Type::Int),
        ("database", Type::Text),
        ("force_user", Type::Text),
        ("pool_size", Type::Int),
        ("min_pool_size", Type::Int),
        ("reserve_pool_size", Type::Int),
        ("server_lifetime", Type::Int),
        ("pool_mode", Type::Text),
        ("load_balance_hosts", Type::Text),
        ("max_connections", Type::Int),
        ("current_connections", Type::Int),
        ("max_client_connections", Type::Int),
        ("current_client_connections", Type::Int),
        ("paused", Type::Int),
        ("disabled", Type::Int),
    ]);
    for (name, open) in connections {
        let console = name == admin_db;
        let (host, port) = match console {
            true => (None, None),
            false => (text(primary.host()), int(primary.port())),
        };
        t.push(vec![
            text(name.clone()),
            host,
            port,
            text(name.clone()),
            None,
            int(if console { 2 } else { pool.pool_size.get() }),
            int(if console { 0 } else { pool.min_idle }),
            int(if console { 0 } else { pool.reserve_pool_size }),
            int(pool.server_lifetime.as_secs()),
            text(if console {
                "statement"
            } else {
                mode_name(pool.mode)
            }),
            None,
            int(0u8),
            int(open),
            int(config.server.max_db_client_connections),
            int(clients.get(&name).copied().unwrap_or(0)),
            int(u8::from(paused && !console)),
            int(0u8),
        ]);
    }
    t
}

/// `SHOW LISTS`: how many of each thing pgroute holds, PgBouncer's rows (its allocator and DNS rows
/// are 0).
pub fn lists(proxy: &Proxy) -> Table {
    let pools = proxy.pools().all();
    let clients = proxy.clients().len() as u64;
    let mut databases: Vec<&str> = pools.iter().map(|p| p.key().database.as_str()).collect();
    databases.sort_unstable();
    databases.dedup();
    let mut users: Vec<&str> = pools.iter().map(|p| p.key().user.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    let servers: u64 = pools
        .iter()
        .map(|p| u64::from(p.stats().open.load(Ordering::Relaxed)))
        .sum();
    let logging_in = u64::from(proxy.client_count()).saturating_sub(clients);
    let mut t = Table::new(&[("list", Type::Text), ("items", Type::Int)]);
    for (name, n) in [
        ("databases", databases.len() as u64),
        ("users", users.len() as u64),
        ("peers", 0),
        ("pools", pools.len() as u64),
        ("peer_pools", 0),
        ("free_clients", 0),
        ("used_clients", clients),
        ("login_clients", logging_in),
        ("free_servers", 0),
        ("used_servers", servers),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ] {
        t.push(vec![text(name), int(n)]);
    }
    t
}

/// `SHOW CONFIG`: every key as `section.key`, its value, its default, and whether RELOAD applies it.
pub fn config(proxy: &Proxy) -> Table {
    let current = flatten(&proxy.config());
    let defaults = flatten(&crate::Config::default());
    let mut t = Table::new(&[
        ("key", Type::Text),
        ("value", Type::Text),
        ("default", Type::Text),
        ("changeable", Type::Text),
    ]);
    for (key, value) in current {
        let changeable = !crate::ops::RESTART_ONLY.contains(&key.as_str());
        let default = defaults.get(&key).cloned();
        t.push(vec![
            text(key),
            text(value),
            default,
            text(if changeable { "yes" } else { "no" }),
        ]);
    }
    t
}

/// The configuration as `section.key` → value text, sorted; unset optional keys are left out.
fn flatten(config: &crate::Config) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(tree) = toml::Table::try_from(config) else {
        return out;
    };
    for (section, value) in tree {
        match value {
            toml::Value::Table(keys) => {
                for (key, v) in keys {
                    out.insert(format!("{section}.{key}"), value_text(&v));
                }
            }
            other => {
                out.insert(section, value_text(&other));
            }
        }
    }
    out
}

/// A TOML value as the example file would write it (strings bare at the top level).
fn value_text(v: &toml::Value) -> String {
    fn nested(v: &toml::Value) -> String {
        match v {
            toml::Value::String(s) => format!("{s:?}"),
            other => value_text(other),
        }
    }
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(nested).collect();
            format!("[{}]", items.join(", "))
        }
        toml::Value::Table(t) => {
            let items: Vec<String> = t
                .iter()
                .map(|(k, v)| format!("{k} = {}", nested(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// `SHOW VERSION`.
pub fn version() -> Table {
    let mut t = Table::new(&[("version", Type::Text)]);
    t.push(vec![text(VERSION)]);
    t
}

/// `SHOW STATE`: PgBouncer's rows (pgroute never suspends), plus whether shutdown has begun.
pub fn state(proxy: &Proxy) -> Table {
    use crate::ops::Phase;
    let phase = proxy.gate().phase();
    let yes_no = |b: bool| text(if b { "yes" } else { "no" });
    let mut t = Table::new(&[("key", Type::Text), ("value", Type::Text)]);
    t.push(vec![text("active"), yes_no(phase == Phase::Serving)]);
    t.push(vec![text("paused"), yes_no(phase == Phase::Paused)]);
    t.push(vec![text("suspended"), yes_no(false)]);
    t.push(vec![
        text("shutting_down"),
        yes_no(phase == Phase::ShuttingDown),
    ]);
    t
}

/// `SHOW ROUTES`: transactions routed since start, by destination and reason (every pair, zeros
/// included, so the rows are stable for scrapers).
pub fn routes(proxy: &Proxy) -> Table {
    let counters = proxy.router().counters();
    let mut t = Table::new(&[
        ("route", Type::Text),
        ("reason", Type::Text),
        ("transactions", Type::Int),
    ]);
    for (route, name) in [(Route::Primary, "primary"), (Route::Replica, "replica")] {
        for reason in Reason::ALL {
            t.push(vec![
                text(name),
                text(reason.as_str()),
                int(counters.get(route, reason)),
            ]);
        }
    }
    t
}

/// `SHOW HELP`'s notice text.
pub const HELP: &str = "\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|VERSION\n\
\tSHOW LISTS|STATE|STATS\n\
\tSHOW REPLICAS|ROUTES\n\
\tPAUSE\n\
\tRESUME\n\
\tRELOAD\n\
\tDRAIN <host:port>\n\
\tUNDRAIN <host:port>\n\
\tSHUTDOWN";
