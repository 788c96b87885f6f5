//! Authentication: clients proving who they are to pgroute (trust, MD5, SCRAM-SHA-256 against a
//! PgBouncer-format auth file), and pgroute logging in to a backend that demands a password.

use std::time::Duration;

use pgroute::config::AuthType;
use pgroute_tests::Stack;
use tokio_postgres::error::SqlState;

fn auth_file(name: &str, contents: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = std::env::temp_dir().join(format!("pgroute-auth-{}-{name}.txt", std::process::id()));
    std::fs::write(&path, contents)?;
    Ok(path)
}

async fn login(
    stack: &Stack,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let conninfo = format!(
        "host={} port={} user={user} password={password} dbname=postgres connect_timeout=10",
        stack.addr().ip(),
        stack.addr().port()
    );
    let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

#[tokio::test]
async fn scram_and_md5_clients_are_checked_against_the_auth_file() -> anyhow::Result<()> {
    let verifier = postgres_protocol::password::scram_sha_256(b"scram-secret");
    let md5 = postgres_protocol::password::md5(b"md5-secret", "postgres");
    for (auth_type, name, contents, good) in [
        (
            AuthType::ScramSha256,
            "scram-plain",
            "\"postgres\" \"plain-secret\"\n".to_owned(),
            "plain-secret",
        ),
        (
            AuthType::ScramSha256,
            "scram-verifier",
            format!("\"postgres\" \"{verifier}\"\n"),
            "scram-secret",
        ),
        (
            AuthType::Md5,
            "md5-plain",
            "\"postgres\" \"plain-secret\"\n".to_owned(),
            "plain-secret",
        ),
        (
            AuthType::Md5,
            "md5-hash",
            format!("\"postgres\" \"{md5}\"\n"),
            "md5-secret",
        ),
    ] {
        let path = auth_file(name, &contents)?;
        let file = path.clone();
        let stack = Stack::start(0, move |c| {
            c.auth.auth_type = auth_type;
            c.auth.file = Some(file);
        })
        .await?;
        let client = login(&stack, "postgres", good).await?;
        assert_eq!(
            client.query_one("select 1", &[]).await?.get::<_, i32>(0),
            1,
            "{name}"
        );
        let err = login(&stack, "postgres", "wrong")
            .await
            .expect_err("wrong password refused");
        assert_eq!(
            err.code(),
            Some(&SqlState::INVALID_PASSWORD),
            "{name}: {err:?}"
        );
        let err = login(&stack, "nobody", good)
            .await
            .expect_err("unknown user refused");
        assert_eq!(
            err.code(),
            Some(&SqlState::INVALID_PASSWORD),
            "{name}: {err:?}"
        );
        std::fs::remove_file(&path)?;
    }
    Ok(())
}

/// The backend demands a password (SCRAM for one role, MD5 for another): pgroute logs in with the
/// plain password from the auth file, and clients never need to know the backend's method.
#[tokio::test]
async fn backend_password_auth_uses_the_auth_file() -> anyhow::Result<()> {
    let path = auth_file(
        "backend",
        "\"app_scram\" \"s-pw\"\n\"app_md5\" \"m-pw\"\n\"postgres\" \"x\"\n",
    )?;
    let file = path.clone();
    let stack = Stack::start(0, move |c| {
        c.auth.auth_type = AuthType::ScramSha256;
        c.auth.file = Some(file);
    })
    .await?;
    let direct = stack.connect_direct().await?;
    direct
        .batch_execute(
            "SET password_encryption = 'scram-sha-256'; CREATE ROLE app_scram LOGIN PASSWORD 's-pw';
             SET password_encryption = 'md5'; CREATE ROLE app_md5 LOGIN PASSWORD 'm-pw';",
        )
        .await?;
    // Require passwords from these roles on TCP, ahead of the kit's trust rule.
    let hba = stack.cluster.primary().data_dir.join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba)?;
    std::fs::write(
        &hba,
        format!("host all app_scram 127.0.0.1/32 scram-sha-256\nhost all app_md5 127.0.0.1/32 md5\n{old}"),
    )?;
    direct.batch_execute("SELECT pg_reload_conf()").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    for (user, pw) in [("app_scram", "s-pw"), ("app_md5", "m-pw")] {
        let client = login(&stack, user, pw).await?;
        let who: String = client
            .query_one("select current_user::text", &[])
            .await?
            .get(0);
        assert_eq!(who, user);
    }
    std::fs::remove_file(&path)?;
    Ok(())
}
