use super::*;

fn set(key: &str, stmt: &str) -> Effect {
    Effect::Set {
        key: key.into(),
        stmt: stmt.into(),
    }
}

#[test]
fn plain_queries_have_no_effect() {
    assert_eq!(
        classify("SELECT abalance FROM pgbench_accounts WHERE aid = 1"),
        Effect::None
    );
    assert_eq!(classify("select pg_advisory_xact_lock(1)"), Effect::None);
    assert_eq!(classify("SELECT pg_advisory_unlock_all()"), Effect::None);
}

#[test]
fn set_forms_are_tracked_by_guc_name() {
    assert_eq!(
        classify("SET search_path TO a, b"),
        set("search_path", "SET search_path TO a, b")
    );
    assert_eq!(
        classify("set Statement_Timeout=5"),
        set("statement_timeout", "set Statement_Timeout=5")
    );
    assert_eq!(
        classify(" /* c */ SET SESSION TIME ZONE 'UTC' "),
        set("timezone", "/* c */ SET SESSION TIME ZONE 'UTC'")
    );
    assert_eq!(
        classify("SET NAMES 'LATIN1'"),
        set("client_encoding", "SET NAMES 'LATIN1'")
    );
    assert_eq!(
        classify("SET myapp.tenant = '7'"),
        set("myapp.tenant", "SET myapp.tenant = '7'")
    );
    assert_eq!(classify("SET ROLE reader"), set("role", "SET ROLE reader"));
}

#[test]
fn transaction_scoped_sets_are_not_tracked() {
    assert_eq!(classify("SET LOCAL statement_timeout = 1"), Effect::None);
    assert_eq!(
        classify("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
        Effect::None
    );
}

#[test]
fn resets() {
    assert_eq!(classify("RESET ALL"), Effect::ResetAll);
    assert_eq!(classify("discard all"), Effect::DiscardAll);
    assert_eq!(classify("DEALLOCATE ALL"), Effect::Deallocate(None));
    assert_eq!(
        classify("deallocate prepare S_1"),
        Effect::Deallocate(Some("s_1".into()))
    );
    assert_eq!(
        classify("RESET search_path"),
        Effect::Reset {
            key: "search_path".into()
        }
    );
    assert_eq!(
        classify("RESET TIME ZONE"),
        Effect::Reset {
            key: "timezone".into()
        }
    );
}

#[test]
fn unreplayable_state_is_refused() {
    assert!(matches!(classify("LISTEN jobs"), Effect::Unsupported(_)));
    assert!(matches!(
        classify("PREPARE q AS SELECT 1"),
        Effect::Unsupported(_)
    ));
    assert_eq!(classify("PREPARE TRANSACTION 'x'"), Effect::None);
    assert!(matches!(
        classify("DECLARE c CURSOR WITH HOLD FOR SELECT 1"),
        Effect::Unsupported(_)
    ));
    assert!(matches!(
        classify("CREATE TEMP TABLE t (x int)"),
        Effect::Unsupported(_)
    ));
    assert_eq!(
        classify("CREATE TEMP TABLE t (x int) ON COMMIT DROP"),
        Effect::None
    );
    assert!(matches!(
        classify("SELECT pg_advisory_lock(42)"),
        Effect::Unsupported(_)
    ));
    assert!(matches!(
        classify("select pg_try_advisory_lock(1)"),
        Effect::Unsupported(_)
    ));
}

#[test]
fn splitting_respects_quotes_comments_and_dollar_bodies() {
    let sql = "SET a = 'x;y'; SELECT \"a;b\" -- ;\n; DO $f$ BEGIN PERFORM 1; END $f$; /* ; /* ; */ */ SELECT 2";
    let parts: Vec<_> = split_statements(sql).map(str::trim).collect();
    assert_eq!(
        parts,
        vec![
            "SET a = 'x;y'",
            "SELECT \"a;b\" -- ;",
            "DO $f$ BEGIN PERFORM 1; END $f$",
            "/* ; /* ; */ */ SELECT 2"
        ]
    );
}

#[test]
fn effects_of_a_multi_statement_query_in_order() {
    let mut got = vec![];
    effects("SET a = 1; SELECT 1; RESET a;", |e| got.push(e));
    assert_eq!(
        got,
        vec![set("a", "SET a = 1"), Effect::Reset { key: "a".into() }]
    );
}
