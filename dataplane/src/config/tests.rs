use super::*;

#[test]
fn example_file_parses_and_validates() {
    let text = include_str!("../../../pgroute.example.toml");
    let cfg = Config::parse(text).expect("example parses");
    cfg.validate().expect("example validates");
    assert_eq!(cfg.pool.mode, PoolMode::Transaction);
}

/// The example file is the configuration reference: it must show every key, each with the default
/// the code uses (only `backends.primary` has no default and shows an example value).
#[test]
fn example_documents_every_key_with_its_default() {
    let text = include_str!("../../../pgroute.example.toml");
    let mut example = Config::parse(text).expect("example parses");
    example.backends.primary = None;
    assert_eq!(
        example,
        Config::default(),
        "example values differ from the defaults"
    );

    let mut full = Config::default();
    full.backends.primary = Some("127.0.0.1:5432".parse().expect("addr"));
    full.server.metrics_listen = Some("127.0.0.1:9187".into());
    full.auth.file = Some("userlist.txt".into());
    full.auth.user = Some("pgroute_auth".into());
    full.auth.dbname = Some("postgres".into());
    full.timeouts.default.statement_timeout = Some(Duration::from_secs(30));
    full.timeouts.default.idle_transaction_timeout = Some(Duration::from_secs(60));
    full.tls.cert_file = Some("server.crt".into());
    full.tls.key_file = Some("server.key".into());
    full.tls.server_ca_file = Some("ca.crt".into());
    full.control.url = Some("http://operator:6500".into());
    full.control.ca_file = Some("ca.crt".into());
    full.control.namespace = Some("default".into());
    full.control.pod = Some("pod".into());
    full.control.proxy = Some("db".into());
    let table = toml::Table::try_from(&full).expect("serializes");
    for (section, value) in &table {
        assert!(
            text.contains(&format!("[{section}]")),
            "section [{section}] missing"
        );
        let Some(keys) = value.as_table() else {
            panic!("top-level key {section} is not a section");
        };
        for key in keys.keys() {
            let documented = text.lines().any(|l| {
                let l = l.trim_start_matches('#').trim_start();
                l.starts_with(&format!("{key} ")) || l.starts_with(&format!("{key}="))
            });
            assert!(documented, "{section}.{key} is not in pgroute.example.toml");
        }
    }
}

#[test]
fn empty_file_gives_documented_defaults() {
    let cfg = Config::parse("").expect("parses");
    assert_eq!(cfg.server.listen, "127.0.0.1:6432");
    assert_eq!(cfg.pool.pool_size.get(), 20);
    assert_eq!(cfg.pool.queue_timeout, Duration::from_secs(30));
    assert_eq!(cfg.server.max_startup_packet, 10_000);
}

#[test]
fn missing_primary_names_the_key() {
    let err = Config::parse("")
        .expect("parses")
        .validate()
        .expect_err("invalid");
    assert!(err.to_string().contains("backends.primary"), "{err}");
}

#[test]
fn unknown_keys_are_rejected() {
    let err = Config::parse("[pool]\npool_sise = 3\n").expect_err("unknown key");
    assert!(err.to_string().contains("pool_sise"), "{err}");
}

#[test]
fn bad_address_is_rejected_with_its_text() {
    let err = Config::parse("[backends]\nprimary = \"db\"\n").expect_err("no port");
    assert!(err.to_string().contains("HOST:PORT"), "{err}");
}

#[test]
fn pgbouncer_names_are_accepted() {
    let cfg = Config::parse("[pool]\ndefault_pool_size = 7\nquery_wait_timeout = \"2s\"\n")
        .expect("parses");
    assert_eq!(cfg.pool.pool_size.get(), 7);
    assert_eq!(cfg.pool.queue_timeout, Duration::from_secs(2));
}

#[test]
fn min_idle_over_pool_size_is_invalid() {
    let cfg = Config::parse(
        "[backends]\nprimary = \"127.0.0.1:5432\"\n[pool]\npool_size = 2\nmin_idle = 3\n",
    )
    .expect("parses");
    let err = cfg.validate().expect_err("invalid");
    assert!(err.to_string().contains("pool.min_idle"), "{err}");
}

#[test]
fn auth_file_required_for_md5() {
    let cfg = Config::parse("[backends]\nprimary = \"127.0.0.1:5432\"\n[auth]\ntype = \"md5\"\n")
        .expect("parses");
    let err = cfg.validate().expect_err("invalid");
    assert!(err.to_string().contains("auth.file"), "{err}");
}

#[test]
fn auth_query_settings_are_checked() {
    let base = "[backends]\nprimary = \"127.0.0.1:5432\"\n[auth]\n";
    let trust = Config::parse(&format!("{base}user = \"pgroute_auth\"\n")).expect("parses");
    let err = trust.validate().expect_err("auth_user with trust");
    assert!(err.to_string().contains("auth.user"), "{err}");

    let spliced = Config::parse(&format!(
        "{base}type = \"scram-sha-256\"\nuser = \"a\"\nquery = \"SELECT usename, passwd FROM pg_shadow\"\n"
    ))
    .expect("parses");
    let err = spliced.validate().expect_err("query without $1");
    assert!(err.to_string().contains("$1"), "{err}");

    // PgBouncer's key names are accepted, and auth_user alone (no file) is enough.
    let pgbouncer = Config::parse(&format!(
        "{base}auth_type = \"scram-sha-256\"\nauth_user = \"a\"\nauth_dbname = \"postgres\"\n"
    ))
    .expect("parses");
    pgbouncer.validate().expect("valid");
    assert_eq!(pgbouncer.auth.user.as_deref(), Some("a"));
    assert_eq!(pgbouncer.auth.query, DEFAULT_AUTH_QUERY);
}

#[test]
fn replicas_take_an_address_or_an_address_and_weight() {
    let cfg = Config::parse(
        "[backends]\nprimary = \"p:5432\"\nreplicas = [\"a:5432\", { address = \"b:5432\", weight = 3 }]\n\
         [routing]\nload_balancing = \"round-robin\"\nusers = { reporting = \"replica\" }\n\
         rules = [{ pattern = \"^select\", route = \"primary\" }]\n",
    )
    .expect("parses");
    cfg.validate().expect("valid");
    let weights: Vec<u32> = cfg.backends.replicas.iter().map(|r| r.weight).collect();
    assert_eq!(weights, vec![1, 3]);
    assert_eq!(cfg.routing.load_balancing, LoadBalancing::RoundRobin);
    assert_eq!(
        cfg.routing.users.get("reporting"),
        Some(&DefaultRoute::Replica)
    );

    let bad = Config::parse(
        "[backends]\nprimary = \"p:5432\"\n[routing]\nrules = [{ pattern = \"(\", route = \"primary\" }]\n",
    )
    .expect("parses");
    let err = bad.validate().expect_err("bad regex");
    assert!(err.to_string().contains("routing.rules[0]"), "{err}");
}

#[test]
fn session_timeouts_layer_user_over_database_over_default() {
    let cfg = Config::parse(
        "[timeouts]\nstatement_timeout = \"30s\"\nusers = { reporting = { statement_timeout = \"5m\" } }\n\
         databases = { billing = { statement_timeout = \"2s\", idle_transaction_timeout = \"10s\" } }\n",
    )
    .expect("parses");
    let t = |u, d| cfg.timeouts.for_session(u, d);
    assert_eq!(
        t("app", "app").statement_timeout,
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        t("app", "billing").statement_timeout,
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        t("reporting", "billing").statement_timeout,
        Some(Duration::from_secs(300))
    );
    assert_eq!(
        t("reporting", "billing").idle_transaction_timeout,
        Some(Duration::from_secs(10))
    );
    assert_eq!(t("app", "app").idle_transaction_timeout, None);
}

#[test]
fn query_wait_timeout_is_pgbouncers_name_for_queue_timeout() {
    let cfg = Config::parse("[pool]\nquery_wait_timeout = \"7s\"\n").expect("parses");
    assert_eq!(cfg.pool.queue_timeout, Duration::from_secs(7));
}

#[test]
fn limits_and_keepalives_parse() {
    let cfg = Config::parse(
        "[server]\ntcp_keepalive = { idle = \"30s\" }\n\
         [pool]\nqueue_mode = \"fail-fast\"\nreserve_pool_size = 2\nmax_waiting = 50\n\
         low_priority_users = [\"reporting\"]\nserver_tcp_keepalive = { enabled = false }\n",
    )
    .expect("parses");
    assert_eq!(cfg.pool.queue_mode, QueueMode::FailFast);
    assert_eq!(cfg.pool.reserve_pool_size, 2);
    assert_eq!(cfg.pool.max_waiting, 50);
    assert_eq!(cfg.pool.low_priority_users, ["reporting"]);
    assert_eq!(cfg.server.tcp_keepalive.idle, Duration::from_secs(30));
    assert_eq!(
        cfg.server.tcp_keepalive.count, 6,
        "unset parts keep defaults"
    );
    assert!(!cfg.pool.server_tcp_keepalive.enabled);
}

#[test]
fn reserve_that_no_client_could_reach_is_refused() {
    let mut cfg = Config::parse("[backends]\nprimary = \"127.0.0.1:5432\"\n").expect("parses");
    cfg.pool.reserve_pool_size = 2;
    cfg.pool.reserve_pool_timeout = cfg.pool.queue_timeout;
    let err = cfg.validate().expect_err("unreachable reserve");
    assert!(
        err.to_string().contains("pool.reserve_pool_timeout"),
        "{err}"
    );
    cfg.pool.queue_mode = QueueMode::FailFast;
    cfg.validate().expect("fail-fast takes the reserve at once");
}

#[test]
fn keepalive_timers_below_a_second_are_refused_with_their_key() {
    let mut cfg = Config::parse("[backends]\nprimary = \"127.0.0.1:5432\"\n").expect("parses");
    cfg.pool.server_tcp_keepalive.interval = Duration::from_millis(500);
    let err = cfg.validate().expect_err("sub-second interval");
    assert!(
        err.to_string().contains("pool.server_tcp_keepalive"),
        "{err}"
    );
    assert!(err.to_string().contains("interval"), "{err}");
    cfg.pool.server_tcp_keepalive.enabled = false;
    cfg.validate().expect("ignored when disabled");
}

#[test]
fn managed_mode_needs_no_primary_but_an_identity() {
    let mut cfg = Config::default();
    assert!(cfg.validate().is_err(), "standalone needs a primary");
    cfg.control.url = Some("http://127.0.0.1:6500".into());
    let err = cfg.validate().expect_err("no identity").to_string();
    assert!(err.contains("control.namespace"), "{err}");
    cfg.control.namespace = Some("ns".into());
    cfg.control.pod = Some("pod".into());
    cfg.control.proxy = Some("db".into());
    cfg.validate().expect("managed mode without a primary");
    cfg.control.url = Some("grpc://x".into());
    assert!(cfg.validate().is_err());
}
