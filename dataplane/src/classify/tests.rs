use super::*;

fn classifier() -> Classifier {
    Classifier::new(&RoutingConfig::default()).expect("default config")
}

fn route(sql: &str) -> Option<Route> {
    classifier().classify(sql).map(|d| d.route)
}

fn reason(sql: &str) -> Option<Reason> {
    classifier().classify(sql).map(|d| d.reason)
}

#[test]
fn plain_reads_take_the_fast_path_to_replicas() {
    for sql in [
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
        "select * from t where name = 'for update'",
        "TABLE t",
        "SHOW work_mem",
        "SELECT \"for\" FROM t;",
    ] {
        assert_eq!(route(sql), Some(Route::Replica), "{sql}");
    }
}

#[test]
fn writes_and_locks_stay_on_the_primary_with_a_reason() {
    assert_eq!(reason("UPDATE t SET a = 1"), Some(Reason::Write));
    assert_eq!(
        reason("select * from t for update"),
        Some(Reason::LockClause)
    );
    assert_eq!(
        reason("SELECT * FROM t WHERE id IN (SELECT id FROM u FOR SHARE)"),
        Some(Reason::LockClause)
    );
    assert_eq!(reason("SELECT * INTO t2 FROM t"), Some(Reason::SelectInto));
    assert_eq!(
        reason("WITH x AS (DELETE FROM t RETURNING *) SELECT count(*) FROM x"),
        Some(Reason::WritingCte)
    );
    assert_eq!(reason("SELECT nextval('s')"), Some(Reason::WriteFunction));
    assert_eq!(
        reason("SELECT * FROM generate_series(1, 3) g, LATERAL pg_catalog.NEXTVAL('s') n"),
        Some(Reason::WriteFunction)
    );
    assert_eq!(
        reason("SELECT 1 FROM t FOR NO KEY UPDATE"),
        Some(Reason::ParseFailure)
    );
    assert_eq!(
        reason("SHOW transaction_read_only"),
        Some(Reason::PrimaryOnlySetting)
    );
    assert_eq!(
        reason("SELECT 1; INSERT INTO t VALUES (1)"),
        Some(Reason::Write)
    );
    assert_eq!(reason("BEGIN"), Some(Reason::Transaction));
}

#[test]
fn read_only_transactions_and_neutral_statements() {
    assert_eq!(
        reason("START TRANSACTION READ ONLY"),
        Some(Reason::ReadOnlyTransaction)
    );
    assert_eq!(
        route("BEGIN READ ONLY; SELECT 1; COMMIT"),
        Some(Route::Replica)
    );
    assert_eq!(route("COMMIT"), None);
    assert_eq!(route(""), None);
    assert_eq!(route("EXPLAIN SELECT * FROM t"), Some(Route::Replica));
    assert_eq!(route("EXPLAIN ANALYZE DELETE FROM t"), Some(Route::Primary));
    assert_eq!(route("COPY t TO STDOUT"), Some(Route::Replica));
    assert_eq!(route("COPY t FROM STDIN"), Some(Route::Primary));
}

#[test]
fn hints_beat_everything_and_rules_beat_the_parser() {
    assert_eq!(
        classifier().classify("/* pgroute: route=primary */ SELECT 1"),
        Some(Decision::primary(Reason::Hint))
    );
    assert_eq!(
        classifier().classify("/* pgroute: route=replica */ SELECT nextval('s')"),
        Some(Decision::replica(Reason::Hint))
    );
    let config = RoutingConfig {
        rules: vec![RuleMatch {
            pattern: Some("^select .* from audit\\.".into()),
            fingerprint: None,
            route: Route::Primary,
        }],
        ..RoutingConfig::default()
    };
    let c = Classifier::new(&config).expect("rules compile");
    assert_eq!(
        c.classify("SELECT * FROM audit.log WHERE id = 7"),
        Some(Decision::primary(Reason::Rule))
    );
    assert_eq!(
        c.classify("SELECT * FROM app.log").map(|d| d.route),
        Some(Route::Replica)
    );
}

#[test]
fn configured_write_functions_and_unknown_function_policy() {
    let config = RoutingConfig {
        write_functions: vec!["audit_touch".into()],
        ..RoutingConfig::default()
    };
    let c = Classifier::new(&config).expect("config");
    assert_eq!(
        c.classify("SELECT audit_touch(1)").map(|d| d.route),
        Some(Route::Primary)
    );
    assert_eq!(
        c.classify("SELECT my_report(1)").map(|d| d.route),
        Some(Route::Replica)
    );
    let strict = Classifier::new(&RoutingConfig {
        unknown_functions_are_writes: true,
        ..RoutingConfig::default()
    })
    .expect("config");
    assert_eq!(
        strict.classify("SELECT my_report(1)").map(|d| d.route),
        Some(Route::Primary)
    );
    assert_eq!(
        strict.classify("SELECT count(*) FROM t").map(|d| d.route),
        Some(Route::Replica)
    );
}

#[test]
fn decisions_are_cached_by_text() {
    let c = classifier();
    assert_eq!(c.cached(), 0);
    c.classify("SELECT * FROM t WHERE a IN (1, 2)");
    c.classify("SELECT * FROM t WHERE a IN (1, 2)");
    assert_eq!(c.cached(), 1);
}

#[test]
fn reason_index_is_its_place_in_all() {
    for (i, r) in Reason::ALL.iter().enumerate() {
        assert_eq!(r.index(), i, "{r:?}");
    }
}
