//! `SHOW CLIENTS` and `SHOW SERVERS`: one row per connection, with PgBouncer's socket columns.
//!
//! Clients come from the proxy's client registry, servers from each pool's list of open connections.
//! PgBouncer's `ptr` is a memory address; here it is `c<pid>` for a client (its pgroute cancel pid,
//! also its `id`) and `s<pid>` for a server (the backend's pid, also its `id` and `remote_pid`), and
//! `link` names the other end of a client linked to a server. `SHOW SERVERS` adds one column after
//! PgBouncer's: `backend`, the configured address of the server (PgBouncer's `addr` is the resolved
//! one).

use std::collections::HashMap;
use std::net::SocketAddr;

use super::table::{int, text, timestamp, Cell, Table, Type};
use crate::clients::{now_micros, ClientState};
use crate::proxy::Proxy;

const COLUMNS: &[(&str, Type)] = &[
    ("type", Type::Text),
    ("user", Type::Text),
    ("database", Type::Text),
    ("replication", Type::Text),
    ("state", Type::Text),
    ("addr", Type::Text),
    ("port", Type::Int),
    ("local_addr", Type::Text),
    ("local_port", Type::Int),
    ("connect_time", Type::Timestamp),
    ("request_time", Type::Timestamp),
    ("wait", Type::Int),
    ("wait_us", Type::Int),
    ("close_needed", Type::Int),
    ("ptr", Type::Text),
    ("link", Type::Text),
    ("remote_pid", Type::Int),
    ("tls", Type::Text),
    ("application_name", Type::Text),
    ("prepared_statements", Type::Int),
    ("id", Type::Int),
];

fn ip(addr: Option<SocketAddr>) -> Cell {
    addr.map(|a| a.ip().to_string())
}

fn port(addr: Option<SocketAddr>) -> Cell {
    addr.map(|a| a.port().to_string())
}

fn tls(on: bool) -> Cell {
    text(if on { "TLS" } else { "" })
}

/// `SHOW CLIENTS`.
pub fn clients(proxy: &Proxy) -> Table {
    let now = now_micros();
    let mut t = Table::new(COLUMNS);
    for c in proxy.clients().all() {
        let l = &c.login;
        let state = c.state();
        let wait = match state {
            ClientState::Waiting => now.saturating_sub(c.request_time()),
            _ => 0,
        };
        t.push(vec![
            text("C"),
            text(l.user.clone()),
            text(l.database.clone()),
            text("none"),
            text(state.as_str()),
            ip(l.addr),
            port(l.addr),
            ip(l.local_addr),
            port(l.local_addr),
            timestamp(c.connect_time),
            timestamp(c.request_time()),
            int(wait / 1_000_000),
            int(wait % 1_000_000),
            int(0u8),
            text(format!("c{}", l.pid)),
            c.server_pid().map(|p| format!("s{p}")),
            int(0u8),
            tls(l.tls),
            text(l.application_name.clone()),
            int(0u8),
            int(l.pid),
        ]);
    }
    t
}

/// `SHOW SERVERS`.
pub fn servers(proxy: &Proxy) -> Table {
    let links: HashMap<u32, u32> = proxy
        .clients()
        .all()
        .iter()
        .filter(|c| c.state() == ClientState::Active)
        .filter_map(|c| Some((c.server_pid()?, c.login.pid)))
        .collect();
    let mut columns = COLUMNS.to_vec();
    columns.push(("backend", Type::Text));
    let mut t = Table::new(&columns);
    for pool in proxy.pools().all() {
        let key = pool.key();
        for s in pool.servers().all() {
            let active = s.is_active();
            let link = match active {
                true => links.get(&s.pid).map(|c| format!("c{c}")),
                false => None,
            };
            t.push(vec![
                text("S"),
                text(key.user.clone()),
                text(key.database.clone()),
                text("none"),
                text(if active { "active" } else { "idle" }),
                ip(Some(s.addr)),
                port(Some(s.addr)),
                ip(s.local_addr),
                port(s.local_addr),
                timestamp(s.connect_time),
                timestamp(s.request_time()),
                int(0u8),
                int(0u8),
                int(0u8),
                text(format!("s{}", s.pid)),
                link,
                int(s.pid),
                tls(s.tls),
                text(""),
                int(0u8),
                int(s.pid),
                text(key.backend.to_string()),
            ]);
        }
    }
    t
}
