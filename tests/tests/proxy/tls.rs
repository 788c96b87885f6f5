//! Client-facing TLS: real clients (tokio-postgres with rustls, psql) with sslmode=require and
//! verify-full against a CA made at test time; plaintext refused under `require`; bytes sent before the
//! TLS answer are never taken as part of the encrypted stream.

use pgroute::config::TlsMode;
use pgroute_tests::certs::TestCerts;
use pgroute_tests::raw::RawClient;
use pgroute_tests::Stack;
use tokio_postgres::error::SqlState;

async fn stack_with_tls(certs: &TestCerts, mode: TlsMode) -> anyhow::Result<Stack> {
    let (cert, key) = (certs.cert_file(), certs.key_file());
    Stack::start(0, move |c| {
        c.tls.mode = mode;
        c.tls.cert_file = Some(cert);
        c.tls.key_file = Some(key);
    })
    .await
}

async fn tls_client(
    stack: &Stack,
    certs: &TestCerts,
    sslmode: &str,
) -> anyhow::Result<tokio_postgres::Client> {
    let conninfo = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=postgres dbname=postgres sslmode={sslmode}",
        stack.addr().port()
    );
    let (client, conn) = tokio_postgres::connect(&conninfo, certs.connector()?).await?;
    tokio::spawn(conn);
    Ok(client)
}

#[tokio::test]
async fn tokio_postgres_over_tls_and_plaintext_refused_under_require() -> anyhow::Result<()> {
    let certs = TestCerts::generate()?;
    let stack = stack_with_tls(&certs, TlsMode::Require).await?;
    let client = tls_client(&stack, &certs, "require").await?;
    // Simple, extended and named statements work over TLS.
    assert_eq!(
        client
            .query_one("select $1::int + 1", &[&41i32])
            .await?
            .get::<_, i32>(0),
        42
    );
    let big: String = client
        .query_one("select repeat('x', 200000)", &[])
        .await?
        .get(0);
    assert_eq!(big.len(), 200_000);

    let err = pgroute_tests::connect(stack.addr())
        .await
        .expect_err("plaintext refused");
    assert_eq!(
        pgroute_tests::sqlstate(&err),
        Some(SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{err:#}"
    );
    Ok(())
}

#[tokio::test]
async fn allow_serves_both_and_disable_answers_n() -> anyhow::Result<()> {
    let certs = TestCerts::generate()?;
    let stack = stack_with_tls(&certs, TlsMode::Allow).await?;
    let tls = tls_client(&stack, &certs, "require").await?;
    let plain = stack.connect().await?;
    assert_eq!(tls.query_one("select 1", &[]).await?.get::<_, i32>(0), 1);
    assert_eq!(plain.query_one("select 2", &[]).await?.get::<_, i32>(0), 2);

    let off = Stack::start(0, |_| {}).await?;
    let err = tls_client(&off, &certs, "require")
        .await
        .expect_err("TLS disabled: the server says N");
    assert!(
        format!("{err:#}").to_lowercase().contains("tls") || format!("{err:#}").contains("SSL"),
        "{err:#}"
    );
    Ok(())
}

#[tokio::test]
async fn psql_verify_full_against_the_test_ca() -> anyhow::Result<()> {
    let certs = TestCerts::generate()?;
    let stack = stack_with_tls(&certs, TlsMode::Require).await?;
    let conninfo = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
        stack.addr().port(),
        certs.ca_file().display()
    );
    let out = tokio::process::Command::new(stack.cluster.bin_dir().join("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-d",
            &conninfo,
            "-c",
            "select 'over tls'",
            "-c",
            "\\conninfo",
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("over tls"), "{stdout}");
    assert!(stdout.contains("SSL connection"), "{stdout}");
    Ok(())
}

/// CVE-2021-23214 class: a client (or a man in the middle) that sends plaintext right behind its
/// SSLRequest must not have those bytes read as if they came through TLS.
#[tokio::test]
async fn bytes_before_the_tls_answer_end_the_connection() -> anyhow::Result<()> {
    let certs = TestCerts::generate()?;
    let stack = stack_with_tls(&certs, TlsMode::Allow).await?;
    let mut raw = RawClient::connect(stack.addr()).await?;
    raw.raw(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    raw.startup(&[("user", "postgres"), ("database", "postgres")]);
    raw.flush().await?;
    let msg = raw.expect_fatal("08P01").await?;
    assert!(msg.contains("before the answer"), "{msg}");
    // Honest TLS clients are unaffected.
    let ok = tls_client(&stack, &certs, "require").await?;
    assert_eq!(ok.query_one("select 1", &[]).await?.get::<_, i32>(0), 1);
    Ok(())
}

/// A new certificate is picked up on reload (what SIGHUP runs) without dropping TLS clients that are
/// already connected; a broken file leaves the old certificate in use.
#[tokio::test]
async fn certificate_reload_keeps_connected_clients() -> anyhow::Result<()> {
    let old = TestCerts::generate()?;
    let stack = stack_with_tls(&old, TlsMode::Require).await?;
    let connected = tls_client(&stack, &old, "require").await?;

    let new = TestCerts::generate()?;
    std::fs::copy(new.cert_file(), old.cert_file())?;
    std::fs::copy(new.key_file(), old.key_file())?;
    stack.proxy.proxy.reload_tls()?;

    assert_eq!(
        connected.query_one("select 1", &[]).await?.get::<_, i32>(0),
        1
    );
    let fresh = tls_client(&stack, &new, "require").await?;
    assert_eq!(fresh.query_one("select 2", &[]).await?.get::<_, i32>(0), 2);
    tls_client(&stack, &old, "require")
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("the old CA must no longer verify"))?;

    std::fs::write(old.key_file(), "not a key")?;
    assert!(stack.proxy.proxy.reload_tls().is_err());
    let still = tls_client(&stack, &new, "require").await?;
    assert_eq!(still.query_one("select 3", &[]).await?.get::<_, i32>(0), 3);
    Ok(())
}

/// Whether the backend connection serving `proxy` is encrypted, after checking that named
/// statements and a large result travel over it intact.
async fn backend_ssl(proxy: std::net::SocketAddr) -> anyhow::Result<bool> {
    let c = pgroute_tests::connect(proxy).await?;
    let big: String = c
        .query_one("select repeat('y', $1)", &[&300_000i32])
        .await?
        .get(0);
    anyhow::ensure!(big.len() == 300_000, "truncated result");
    Ok(c.query_one(
        "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        &[],
    )
    .await?
    .get(0))
}

/// TLS towards the backend, in libpq's modes, against a PostgreSQL server with `ssl = on`.
#[tokio::test]
async fn backend_connections_use_tls_as_configured() -> anyhow::Result<()> {
    use pgroute::config::ServerTlsMode;
    let certs = TestCerts::generate()?;
    certs.give_key_to_postgres()?;
    let settings = vec![
        ("ssl".to_owned(), "on".to_owned()),
        (
            "ssl_cert_file".to_owned(),
            certs.cert_file().display().to_string(),
        ),
        (
            "ssl_key_file".to_owned(),
            certs.key_file().display().to_string(),
        ),
    ];
    let cluster = tokio::task::spawn_blocking(move || {
        pgroute_tests::Cluster::start(pgroute_tests::ClusterOptions {
            replicas: 0,
            settings,
            ..Default::default()
        })
    })
    .await??;
    let primary = cluster.primary().addr();
    for mode in [
        ServerTlsMode::Prefer,
        ServerTlsMode::Require,
        ServerTlsMode::VerifyCa,
        ServerTlsMode::VerifyFull,
    ] {
        let ca = certs.ca_file();
        let proxy = pgroute_tests::start_proxy(primary, move |c| {
            c.tls.server_mode = mode;
            c.tls.server_ca_file = Some(ca);
        })
        .await?;
        assert!(
            backend_ssl(proxy.addr).await?,
            "{mode:?}: backend connection not encrypted"
        );
    }
    let plain =
        pgroute_tests::start_proxy(primary, |c| c.tls.server_mode = ServerTlsMode::Disable).await?;
    assert!(!backend_ssl(plain.addr).await?);

    // A CA that did not sign the server's certificate: verify-ca refuses, with 08001 and the cause.
    let other = TestCerts::generate()?;
    let other_ca = other.ca_file();
    let strict = pgroute_tests::start_proxy(primary, move |c| {
        c.tls.server_mode = ServerTlsMode::VerifyCa;
        c.tls.server_ca_file = Some(other_ca);
    })
    .await?;
    let err = pgroute_tests::connect(strict.addr)
        .await
        .expect_err("untrusted backend certificate");
    assert_eq!(
        pgroute_tests::sqlstate(&err),
        Some(SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
        "{err:#}"
    );
    Ok(())
}

/// `require` towards a backend that answers N fails clearly instead of falling back to plaintext.
#[tokio::test]
async fn require_towards_a_plaintext_backend_fails_clearly() -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| {
        c.tls.server_mode = pgroute::config::ServerTlsMode::Require
    })
    .await?;
    let err = stack.connect().await.expect_err("backend has ssl=off");
    assert!(
        format!("{err:#}").contains("does not accept TLS"),
        "{err:#}"
    );
    Ok(())
}

/// SCRAM-SHA-256-PLUS: over TLS the proxy offers channel binding (`tls-server-end-point`), and clients
/// that require it log in; a wrong password still fails.
#[tokio::test]
async fn scram_channel_binding_over_tls() -> anyhow::Result<()> {
    let certs = TestCerts::generate()?;
    let auth_file = certs.dir().join("userlist.txt");
    std::fs::write(&auth_file, "\"postgres\" \"bound-secret\"\n")?;
    let (cert, key) = (certs.cert_file(), certs.key_file());
    let stack = Stack::start(0, move |c| {
        c.tls.mode = TlsMode::Require;
        c.tls.cert_file = Some(cert);
        c.tls.key_file = Some(key);
        c.auth.auth_type = pgroute::config::AuthType::ScramSha256;
        c.auth.file = Some(auth_file);
    })
    .await?;
    let conninfo = |password: &str| {
        format!(
            "host=localhost hostaddr=127.0.0.1 port={} user=postgres dbname=postgres sslmode=require channel_binding=require password={password}",
            stack.addr().port()
        )
    };
    let (client, conn) =
        tokio_postgres::connect(&conninfo("bound-secret"), certs.connector()?).await?;
    tokio::spawn(conn);
    assert_eq!(client.query_one("select 1", &[]).await?.get::<_, i32>(0), 1);
    let err = tokio_postgres::connect(&conninfo("wrong"), certs.connector()?)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("wrong password accepted"))?;
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err:?}");

    // libpq (psql) with channel_binding=require agrees on the binding data.
    let out = tokio::process::Command::new(stack.cluster.bin_dir().join("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-d",
            &conninfo("bound-secret"),
            "-c",
            "select 'bound'",
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "bound");
    Ok(())
}
