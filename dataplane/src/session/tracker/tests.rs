use super::*;
use crate::session::prepared::Statement;

fn client(t: &mut Tracker, tag: u8, body: &[u8]) -> ClientAction {
    t.on_client_frame(
        tag,
        body,
        &mut BackendStatements::default(),
        &PoolStats::default(),
    )
    .expect("valid")
}

fn rfq(t: &mut Tracker, status: u8, vars: &mut SessionVars) -> Option<Bytes> {
    match t
        .on_server_frame(
            backend::READY_FOR_QUERY,
            &[status],
            vars,
            &mut BackendStatements::default(),
        )
        .expect("valid")
    {
        ServerAction::InjectBefore(b) => Some(b),
        _ => None,
    }
}

#[test]
fn at_rest_only_after_every_sync_is_answered_idle() {
    let mut t = Tracker::new(true, 100);
    let mut vars = SessionVars::default();
    assert_eq!(
        client(&mut t, fe::PARSE, b"\0select 1\0\0\0"),
        ClientAction::Forward
    );
    assert!(!t.at_rest());
    client(&mut t, fe::SYNC, b"");
    client(&mut t, fe::QUERY, b"select 2\0");
    rfq(&mut t, b'I', &mut vars);
    assert!(!t.at_rest(), "second answer still owed");
    rfq(&mut t, b'I', &mut vars);
    assert!(t.at_rest());
}

#[test]
fn open_transaction_is_not_at_rest() {
    let mut t = Tracker::new(true, 100);
    let mut vars = SessionVars::default();
    client(&mut t, fe::QUERY, b"begin\0");
    rfq(&mut t, b'T', &mut vars);
    assert!(!t.at_rest());
}

#[test]
fn set_commits_only_when_the_transaction_does() {
    let mut t = Tracker::new(true, 100);
    let mut vars = SessionVars::default();
    client(&mut t, fe::QUERY, b"SET search_path = a\0");
    rfq(&mut t, b'I', &mut vars);
    assert_eq!(vars.get("search_path"), Some("SET search_path = a"));

    client(&mut t, fe::QUERY, b"SET work_mem = '1MB'; SELECT 1/0\0");
    t.on_server_frame(
        backend::ERROR_RESPONSE,
        b"",
        &mut vars,
        &mut BackendStatements::default(),
    )
    .expect("valid");
    rfq(&mut t, b'I', &mut vars);
    assert_eq!(
        vars.get("work_mem"),
        None,
        "rolled back with the failed query"
    );
}

#[test]
fn refused_query_injects_error_before_its_ready_for_query() {
    let mut t = Tracker::new(true, 100);
    let mut vars = SessionVars::default();
    assert_eq!(
        client(&mut t, fe::QUERY, b"LISTEN jobs\0"),
        ClientAction::Refuse
    );
    let inject = rfq(&mut t, b'I', &mut vars).expect("error injected");
    let fields = backend::error_fields(&inject[5..]).expect("error");
    assert_eq!(fields.code, "0A000");
    assert!(t.at_rest());
}

#[test]
fn refused_parse_drops_the_rest_of_its_batch() {
    let mut t = Tracker::new(true, 100);
    assert_eq!(
        client(&mut t, fe::PARSE, b"\0LISTEN x\0\0\0"),
        ClientAction::Refuse
    );
    assert_eq!(
        client(&mut t, fe::BIND, b"\0s1\0\0\0\0\0\0"),
        ClientAction::Drop
    );
    assert_eq!(client(&mut t, fe::SYNC, b""), ClientAction::Drop);
    assert_eq!(
        client(&mut t, fe::QUERY, b"select 1\0"),
        ClientAction::Forward
    );
}

#[test]
fn session_mode_refuses_nothing() {
    let mut t = Tracker::new(false, 100);
    assert_eq!(
        client(&mut t, fe::QUERY, b"LISTEN jobs\0"),
        ClientAction::Forward
    );
    assert_eq!(
        client(&mut t, fe::PARSE, b"s1\0select 1\0\0\0"),
        ClientAction::Forward
    );
}

#[test]
fn unknown_client_tag_is_a_protocol_error() {
    let mut t = Tracker::new(true, 100);
    assert!(t
        .on_client_frame(
            b'?',
            b"",
            &mut BackendStatements::default(),
            &PoolStats::default()
        )
        .is_err());
}

fn parse_body(name: &str, sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(name.as_bytes());
    b.push(0);
    b.extend_from_slice(sql.as_bytes());
    b.extend_from_slice(&[0, 0, 0]);
    b
}

fn bind_body(stmt: &str) -> Vec<u8> {
    let mut b = vec![0];
    b.extend_from_slice(stmt.as_bytes());
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
    b
}

fn on_client(
    t: &mut Tracker,
    backend: &mut BackendStatements,
    tag: u8,
    body: &[u8],
) -> (ClientAction, Vec<u8>) {
    let action = t
        .on_client_frame(tag, body, backend, &PoolStats::default())
        .expect("valid");
    (action, t.take_replacement().to_vec())
}

fn on_server(
    t: &mut Tracker,
    backend: &mut BackendStatements,
    tag: u8,
    body: &[u8],
) -> ServerAction {
    t.on_server_frame(tag, body, &mut SessionVars::default(), backend)
        .expect("valid")
}

/// Tags of the frames in a replacement buffer.
fn frame_tags(mut bytes: &[u8]) -> String {
    let mut tags = String::new();
    while bytes.len() >= 5 {
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize + 1;
        tags.push(bytes[0] as char);
        bytes = &bytes[len..];
    }
    tags
}

#[test]
fn named_parse_is_renamed_and_bind_on_another_connection_reprepares() {
    let mut t = Tracker::new(true, 100);
    let mut first = BackendStatements::default();
    let (action, bytes) = on_client(&mut t, &mut first, fe::PARSE, &parse_body("s0", "select 1"));
    assert_eq!(action, ClientAction::Replace);
    assert_eq!(frame_tags(&bytes), "P");
    let (server_name, _) = fe::parse_message(&bytes[5..]).expect("parse");
    assert!(server_name.starts_with("pgroute_"));
    client(&mut t, fe::SYNC, b"");
    assert_eq!(
        on_server(&mut t, &mut first, backend::PARSE_COMPLETE, b""),
        ServerAction::Forward
    );
    on_server(&mut t, &mut first, backend::READY_FOR_QUERY, b"I");
    assert_eq!(first.len(), 1);

    // The next transaction lands on a connection that never saw the statement.
    let mut second = BackendStatements::default();
    let (action, bytes) = on_client(&mut t, &mut second, fe::BIND, &bind_body("s0"));
    assert_eq!(action, ClientAction::Replace);
    assert_eq!(frame_tags(&bytes), "PB");
    let bind_at = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize + 1;
    assert_eq!(fe::bind_names(&bytes[bind_at + 5..]), Ok(("", server_name)));
    client(&mut t, fe::EXECUTE, b"\0\0\0\0\0");
    client(&mut t, fe::SYNC, b"");
    // The ParseComplete of the added Parse is hidden from the client.
    assert_eq!(
        on_server(&mut t, &mut second, backend::PARSE_COMPLETE, b""),
        ServerAction::Drop
    );
    assert_eq!(
        on_server(&mut t, &mut second, b'2', b""),
        ServerAction::Forward
    );
    on_server(&mut t, &mut second, backend::READY_FOR_QUERY, b"I");
    assert!(t.at_rest());
}

#[test]
fn parse_of_a_statement_the_connection_has_becomes_a_noop_close() {
    let mut t = Tracker::new(true, 100);
    let mut backend = BackendStatements::default();
    let stmt = Statement::from_parse_body(&parse_body("x", "select 2")).expect("valid");
    backend.insert(&stmt.server_name);
    let (action, bytes) = on_client(
        &mut t,
        &mut backend,
        fe::PARSE,
        &parse_body("mine", "select 2"),
    );
    assert_eq!(action, ClientAction::Replace);
    assert_eq!(frame_tags(&bytes), "C");
    client(&mut t, fe::SYNC, b"");
    assert_eq!(
        on_server(&mut t, &mut backend, backend::CLOSE_COMPLETE, b""),
        ServerAction::AsParseComplete
    );
}

#[test]
fn a_parse_skipped_after_an_error_leaves_no_statement_behind() {
    let mut t = Tracker::new(true, 100);
    let mut backend = BackendStatements::default();
    client(&mut t, fe::QUERY, b"select 1/0\0"); // the batch before fails
    let (_, bytes) = on_client(
        &mut t,
        &mut backend,
        fe::PARSE,
        &parse_body("s", "select 3"),
    );
    assert_eq!(frame_tags(&bytes), "P");
    client(&mut t, fe::SYNC, b"");
    assert_eq!(backend.len(), 1, "recorded optimistically");
    on_server(
        &mut t,
        &mut backend,
        backend::ERROR_RESPONSE,
        b"SERROR\0C22012\0Mdivision by zero\0\0",
    );
    on_server(&mut t, &mut backend, backend::READY_FOR_QUERY, b"I");
    // The Parse's own batch: the server skips nothing here, but say it failed too.
    on_server(
        &mut t,
        &mut backend,
        backend::ERROR_RESPONSE,
        b"SERROR\0C42601\0Msyntax\0\0",
    );
    on_server(&mut t, &mut backend, backend::READY_FOR_QUERY, b"I");
    assert!(
        backend.is_empty(),
        "a statement that never prepared is forgotten"
    );
}

#[test]
fn eviction_closes_the_least_recently_used_statement_quietly() {
    let mut t = Tracker::new(true, 2);
    let mut backend = BackendStatements::default();
    for (i, sql) in ["select 1", "select 2", "select 3"].iter().enumerate() {
        let (_, bytes) = on_client(
            &mut t,
            &mut backend,
            fe::PARSE,
            &parse_body(&format!("s{i}"), sql),
        );
        if i == 2 {
            assert_eq!(frame_tags(&bytes), "CP", "evicts before preparing");
        }
    }
    assert_eq!(backend.len(), 2);
    client(&mut t, fe::SYNC, b"");
    assert_eq!(
        on_server(&mut t, &mut backend, backend::PARSE_COMPLETE, b""),
        ServerAction::Forward
    );
    assert_eq!(
        on_server(&mut t, &mut backend, backend::PARSE_COMPLETE, b""),
        ServerAction::Forward
    );
    assert_eq!(
        on_server(&mut t, &mut backend, backend::CLOSE_COMPLETE, b""),
        ServerAction::Drop
    );
}

fn query_body(sql: &str) -> Vec<u8> {
    let mut b = sql.as_bytes().to_vec();
    b.push(0);
    b
}

/// The SQL text of the single Query in a replacement buffer.
fn replaced_sql(bytes: &[u8]) -> String {
    assert_eq!(frame_tags(bytes), "Q", "one Query");
    String::from_utf8_lossy(&bytes[5..bytes.len() - 1]).into_owned()
}

#[test]
fn sql_prepare_and_execute_use_the_shared_backend_name() {
    let mut t = Tracker::new(true, 100);
    let mut backend = BackendStatements::default();
    let (action, bytes) = on_client(
        &mut t,
        &mut backend,
        fe::QUERY,
        &query_body("PREPARE q (int) AS SELECT $1"),
    );
    assert_eq!(action, ClientAction::Replace);
    let prepare = replaced_sql(&bytes);
    assert!(prepare.starts_with("PREPARE pgroute_q_"), "{prepare}");
    let server_name = prepare
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    on_server(
        &mut t,
        &mut backend,
        backend::COMMAND_COMPLETE,
        b"PREPARE\0",
    );
    on_server(&mut t, &mut backend, backend::READY_FOR_QUERY, b"I");

    // The connection has it: EXECUTE is only renamed.
    let (_, bytes) = on_client(&mut t, &mut backend, fe::QUERY, &query_body("EXECUTE q(1)"));
    assert_eq!(replaced_sql(&bytes), format!("EXECUTE {server_name}(1)"));
    on_server(
        &mut t,
        &mut backend,
        backend::COMMAND_COMPLETE,
        b"SELECT 1\0",
    );
    on_server(&mut t, &mut backend, backend::READY_FOR_QUERY, b"I");

    // Another connection lacks it: PREPARE first, its CommandComplete hidden, the EXECUTE's shown.
    let mut other = BackendStatements::default();
    let (_, bytes) = on_client(&mut t, &mut other, fe::QUERY, &query_body("EXECUTE q(2)"));
    assert_eq!(
        replaced_sql(&bytes),
        format!("PREPARE {server_name} (int) AS SELECT $1; EXECUTE {server_name}(2)")
    );
    assert_eq!(
        on_server(&mut t, &mut other, backend::COMMAND_COMPLETE, b"PREPARE\0"),
        ServerAction::Drop
    );
    assert_eq!(
        on_server(&mut t, &mut other, backend::COMMAND_COMPLETE, b"SELECT 1\0"),
        ServerAction::Forward
    );
    on_server(&mut t, &mut other, backend::READY_FOR_QUERY, b"I");
    assert_eq!(other.len(), 1);
}

#[test]
fn a_failed_sql_prepare_is_forgotten_by_client_and_backend() {
    let mut t = Tracker::new(true, 100);
    let mut backend = BackendStatements::default();
    on_client(
        &mut t,
        &mut backend,
        fe::QUERY,
        &query_body("PREPARE bad AS SELECT nonsense"),
    );
    on_server(
        &mut t,
        &mut backend,
        backend::ERROR_RESPONSE,
        b"SERROR\0C42703\0Mx\0\0",
    );
    on_server(&mut t, &mut backend, backend::READY_FOR_QUERY, b"I");
    assert!(backend.is_empty());
    // The name is free again, as in PostgreSQL.
    let (action, _) = on_client(
        &mut t,
        &mut backend,
        fe::QUERY,
        &query_body("PREPARE bad AS SELECT 1"),
    );
    assert_eq!(action, ClientAction::Replace);
}

#[test]
fn deallocate_and_duplicates_are_answered_in_place() {
    let mut t = Tracker::new(true, 100).with_client_limit(2);
    let mut backend = BackendStatements::default();
    let mut vars = SessionVars::default();
    on_client(
        &mut t,
        &mut backend,
        fe::QUERY,
        &query_body("PREPARE a AS SELECT 1"),
    );
    on_server(
        &mut t,
        &mut backend,
        backend::COMMAND_COMPLETE,
        b"PREPARE\0",
    );
    rfq(&mut t, b'I', &mut vars);
    let (action, bytes) = on_client(
        &mut t,
        &mut backend,
        fe::QUERY,
        &query_body("PREPARE a AS SELECT 2"),
    );
    assert_eq!(
        (action, frame_tags(&bytes)),
        (ClientAction::Refuse, String::new())
    );
    let injected = rfq(&mut t, b'I', &mut vars).expect("42P05 injected");
    assert!(String::from_utf8_lossy(&injected).contains("42P05"));

    let (action, _) = on_client(&mut t, &mut backend, fe::QUERY, &query_body("DEALLOCATE a"));
    assert_eq!(action, ClientAction::Refuse);
    let injected = rfq(&mut t, b'I', &mut vars).expect("CommandComplete injected");
    assert_eq!(injected[0], backend::COMMAND_COMPLETE);
    assert_eq!(backend.len(), 1, "the backend copy stays for other clients");

    // The per-client limit counts both kinds.
    on_client(
        &mut t,
        &mut backend,
        fe::PARSE,
        &parse_body("p1", "select 1"),
    );
    on_client(&mut t, &mut backend, fe::SYNC, b"");
    on_server(&mut t, &mut backend, backend::PARSE_COMPLETE, b"");
    rfq(&mut t, b'I', &mut vars);
    on_client(
        &mut t,
        &mut backend,
        fe::QUERY,
        &query_body("PREPARE b AS SELECT 3"),
    );
    on_server(
        &mut t,
        &mut backend,
        backend::COMMAND_COMPLETE,
        b"PREPARE\0",
    );
    rfq(&mut t, b'I', &mut vars);
    let (action, _) = on_client(
        &mut t,
        &mut backend,
        fe::QUERY,
        &query_body("PREPARE c AS SELECT 4"),
    );
    assert_eq!(action, ClientAction::Refuse);
    let injected = rfq(&mut t, b'I', &mut vars).expect("53400 injected");
    assert!(String::from_utf8_lossy(&injected).contains("53400"));
}
