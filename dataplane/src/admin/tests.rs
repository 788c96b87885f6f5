//! Console commands against an in-process proxy with no backend: reports are read from what the
//! registries and pools hold, so none of this needs a network.

use std::sync::Arc;

use bytes::BytesMut;
use pgroute_protocol::backend as be;

use super::*;
use crate::clients::ClientLogin;
use crate::pool::PoolKey;

fn proxy() -> Arc<Proxy> {
    let mut config = crate::Config::default();
    config.backends.primary = Some("127.0.0.1:1".parse().expect("addr"));
    config.backends.replicas = vec!["127.0.0.1:2".parse::<BackendAddr>().expect("addr").into()];
    config.admin.users = vec!["admin".into()];
    config.admin.stats_users = vec!["watcher".into()];
    Proxy::new(config).expect("proxy")
}

/// The messages of an answer, as (tag, body).
fn messages(out: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut v = Vec::new();
    let mut rest = out;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        v.push((rest[0], rest[5..1 + len].to_vec()));
        rest = &rest[1 + len..];
    }
    v
}

fn column_names(body: &[u8]) -> Vec<String> {
    let n = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut names = Vec::new();
    let mut at = 2;
    for _ in 0..n {
        let end = at + body[at..].iter().position(|b| *b == 0).expect("nul");
        names.push(String::from_utf8(body[at..end].to_vec()).expect("utf8"));
        at = end + 1 + 18;
    }
    names
}

async fn run(console: &Console, sql: &str) -> Vec<(u8, Vec<u8>)> {
    let mut out = BytesMut::new();
    console.query(sql, &mut out).await;
    messages(&out)
}

fn error(msgs: &[(u8, Vec<u8>)]) -> be::ErrorFields {
    let (_, body) = msgs.iter().find(|m| m.0 == b'E').expect("an error");
    be::error_fields(body).expect("fields")
}

fn login(pid: u32, user: &str, database: &str) -> ClientLogin {
    ClientLogin {
        pid,
        user: user.into(),
        database: database.into(),
        application_name: "test".into(),
        addr: Some("127.0.0.1:40000".parse().expect("addr")),
        local_addr: None,
        tls: false,
        admin: false,
    }
}

#[tokio::test]
async fn show_pools_has_pgbouncer_columns_and_counts_clients() {
    let proxy = proxy();
    let _pool = proxy.pools().get(&PoolKey {
        backend: proxy.primary().address(),
        database: "app".into(),
        user: "u".into(),
    });
    let a = proxy.clients().register(login(1, "u", "app"));
    let b = proxy.clients().register(login(2, "u", "app"));
    let _waiting = b.waiting(false);
    let console = Console::new(proxy.clone(), "watcher".into(), Access::Stats);
    let msgs = run(&console, "show pools").await;
    let tags: Vec<u8> = msgs.iter().map(|m| m.0).collect();
    assert_eq!(tags, b"TDC");
    assert_eq!(
        column_names(&msgs[0].1),
        [
            "database",
            "user",
            "cl_active",
            "cl_waiting",
            "cl_active_cancel_req",
            "cl_waiting_cancel_req",
            "sv_active",
            "sv_active_cancel",
            "sv_being_canceled",
            "sv_idle",
            "sv_used",
            "sv_tested",
            "sv_login",
            "maxwait",
            "maxwait_us",
            "pool_mode"
        ]
    );
    let t = show::pools(&proxy);
    assert_eq!(t.rows().len(), 1);
    assert_eq!(t.get(0, "database"), Some("app"));
    assert_eq!(t.get(0, "cl_active"), Some("1"));
    assert_eq!(t.get(0, "cl_waiting"), Some("1"));
    assert_eq!(t.get(0, "pool_mode"), Some("transaction"));
    drop(a);
}

#[tokio::test]
async fn show_stats_and_servers_and_clients_have_pgbouncer_columns() {
    let proxy = proxy();
    let stats = show::stats(&proxy);
    let names: Vec<_> = stats.columns().collect();
    assert_eq!(names.len(), 23);
    assert_eq!(
        names[..4],
        [
            "database",
            "total_server_assignment_count",
            "total_xact_count",
            "total_query_count"
        ]
    );
    assert_eq!(names[8], "total_wait_time");
    assert_eq!(names[22], "avg_bind_count");
    let servers = sockets::servers(&proxy);
    let names: Vec<_> = servers.columns().collect();
    assert_eq!(
        names[..5],
        ["type", "user", "database", "replication", "state"]
    );
    assert_eq!(names[20], "id");
    assert_eq!(
        names[21], "backend",
        "pgroute's column comes after PgBouncer's"
    );
    let _c = proxy.clients().register(login(7, "u", "app"));
    let clients = sockets::clients(&proxy);
    assert_eq!(clients.columns().count(), 21);
    assert_eq!(clients.get(0, "state"), Some("idle"));
    assert_eq!(clients.get(0, "ptr"), Some("c7"));
    assert_eq!(clients.get(0, "addr"), Some("127.0.0.1"));
    assert_eq!(clients.get(0, "port"), Some("40000"));
    assert_eq!(clients.get(0, "application_name"), Some("test"));
    assert!(clients
        .get(0, "connect_time")
        .is_some_and(|t| t.ends_with("+00")));
}

#[tokio::test]
async fn replicas_and_routes_and_config_report_pgroute_state() {
    let proxy = proxy();
    let t = replicas::replicas(&proxy);
    assert_eq!(t.rows().len(), 2);
    assert_eq!(t.get(0, "configured_as"), Some("primary"));
    assert_eq!(t.get(1, "address"), Some("127.0.0.1:2"));
    assert_eq!(t.get(1, "eligible"), Some("no"), "never measured");
    assert_eq!(t.get(1, "breaker_state"), Some("closed"));
    let routes = show::routes(&proxy);
    assert_eq!(routes.rows().len(), 2 * crate::classify::Reason::ALL.len());
    let config = show::config(&proxy);
    let row = |key: &str| {
        (0..config.rows().len())
            .find(|i| config.get(*i, "key") == Some(key))
            .expect(key)
    };
    let r = row("admin.database");
    assert_eq!(config.get(r, "value"), Some("pgroute"));
    assert_eq!(config.get(r, "changeable"), Some("yes"));
    assert_eq!(config.get(row("server.listen"), "changeable"), Some("no"));
    assert_eq!(config.get(row("admin.users"), "value"), Some("[\"admin\"]"));
    let lists = show::lists(&proxy);
    assert_eq!(lists.get(0, "list"), Some("databases"));
}

#[tokio::test]
async fn errors_name_the_problem_and_end_the_query() {
    let proxy = proxy();
    let stats = Console::new(proxy.clone(), "watcher".into(), Access::Stats);
    let msgs = run(&stats, "SHOW VERSION; PAUSE; SHOW LISTS").await;
    let tags: Vec<u8> = msgs.iter().map(|m| m.0).collect();
    assert_eq!(
        tags, b"TDCE",
        "the version, then PAUSE refused, then nothing"
    );
    assert_eq!(error(&msgs).code, "42501");

    let admin = Console::new(proxy.clone(), "admin".into(), Access::Admin);
    let e = error(&run(&admin, "SHOW FOO").await);
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("42601", "invalid command 'SHOW FOO', use SHOW HELP;")
    );
    let e = error(&run(&admin, "RELOAD").await);
    assert_eq!(e.code, "F0000");
    assert!(
        e.message.contains("without a configuration source"),
        "{}",
        e.message
    );
    let e = error(&run(&admin, "RESUME").await);
    assert_eq!(e.code, "55000");
    let e = error(&run(&admin, "DRAIN 127.0.0.1:1").await);
    assert!(e.message.contains("is the primary"), "{}", e.message);
    let e = error(&run(&admin, "DRAIN nonsense").await);
    assert_eq!(e.code, "22023");
    assert_eq!(run(&admin, "").await[0].0, b'I');
}

#[tokio::test]
async fn admin_commands_act_on_the_proxy() {
    let proxy = proxy();
    let admin = Console::new(proxy.clone(), "admin".into(), Access::Admin);
    let replica: BackendAddr = "127.0.0.1:2".parse().expect("addr");
    let msgs = run(&admin, "drain 127.0.0.1:2").await;
    assert_eq!(msgs[0].1, b"DRAIN\0");
    assert!(proxy.backends().get(&replica).is_drained());
    run(&admin, "UNDRAIN 127.0.0.1:2").await;
    assert!(!proxy.backends().get(&replica).is_drained());

    let msgs = run(&admin, "PAUSE; SHOW STATE").await;
    assert_eq!(msgs[0].1, b"PAUSE\0");
    assert_eq!(error(&run(&admin, "PAUSE").await).message, "already paused");
    let msgs = run(&admin, "RESUME").await;
    assert_eq!(msgs[0].1, b"RESUME\0");

    proxy.set_config_source(crate::ops::ConfigSource::new({
        let config = (*proxy.config()).clone();
        move || Ok(config.clone())
    }));
    let msgs = run(&admin, "RELOAD").await;
    assert_eq!(msgs.last().map(|m| m.1.clone()), Some(b"RELOAD\0".to_vec()));

    let requested = tokio::spawn({
        let proxy = proxy.clone();
        async move { proxy.shutdown_requested().await }
    });
    let msgs = run(&admin, "shutdown").await;
    assert_eq!(msgs[0].1, b"SHUTDOWN\0");
    tokio::time::timeout(std::time::Duration::from_secs(5), requested)
        .await
        .expect("the request is heard")
        .expect("task");
}
