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

/// A stack whose proxy checks clients with `auth_type` against a new auth file `name` holding
/// `contents` (`tweak` sets the rest); returns the file too, for the caller to remove.
async fn stack_with_auth_file(
    name: &str,
    contents: &str,
    auth_type: AuthType,
    tweak: impl FnOnce(&mut pgroute::Config) + Send + 'static,
) -> anyhow::Result<(Stack, std::path::PathBuf)> {
    let path = auth_file(name, contents)?;
    let file = path.clone();
    let stack = Stack::start(0, move |c| {
        c.auth.auth_type = auth_type;
        c.auth.file = Some(file);
        tweak(c);
    })
    .await?;
    Ok((stack, path))
}

async fn login(
    stack: &Stack,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::Config::new()
        .host(stack.addr().ip().to_string())
        .port(stack.addr().port())
        .user(user)
        .password(password)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(10))
        .connect(tokio_postgres::NoTls)
        .await?;
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
        let (stack, path) = stack_with_auth_file(name, &contents, auth_type, |_| {}).await?;
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
    let (stack, path) = stack_with_auth_file(
        "backend",
        "\"app_scram\" \"s-pw\"\n\"app_md5\" \"m-pw\"\n\"postgres\" \"x\"\n",
        AuthType::ScramSha256,
        |_| {},
    )
    .await?;
    let direct = stack.connect_direct().await?;
    direct
        .batch_execute(
            "SET password_encryption = 'scram-sha-256'; CREATE ROLE app_scram LOGIN PASSWORD 's-pw';
             SET password_encryption = 'md5'; CREATE ROLE app_md5 LOGIN PASSWORD 'm-pw';",
        )
        .await?;
    stack
        .require_passwords(&[("app_scram", "scram-sha-256"), ("app_md5", "md5")])
        .await?;

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

/// The recommended `auth_query` setup (as PgBouncer documents it): a `SECURITY DEFINER` function that
/// only `pgroute_auth` may call, so pgroute never needs a superuser. This one also logs each call, so
/// tests can see when pgroute asked the database and when it used its cache.
const AUTH_FUNCTION: &str = "
    CREATE ROLE pgroute_auth LOGIN PASSWORD 'auth-pw';
    CREATE TABLE public.auth_calls (usename text NOT NULL);
    CREATE FUNCTION public.user_lookup(i_username text, OUT uname name, OUT phash text)
    RETURNS record LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    BEGIN
        INSERT INTO public.auth_calls VALUES (i_username);
        SELECT rolname, rolpassword FROM pg_authid
        WHERE rolname = i_username AND rolcanlogin INTO uname, phash;
    END $$;
    REVOKE ALL ON FUNCTION public.user_lookup(text) FROM public;
    GRANT EXECUTE ON FUNCTION public.user_lookup(text) TO pgroute_auth;
    SET password_encryption = 'scram-sha-256';
    CREATE ROLE db_only_scram LOGIN PASSWORD 'scram-pw';
    SET password_encryption = 'md5';
    CREATE ROLE db_only_md5 LOGIN PASSWORD 'md5-pw';
";

/// A proxy whose auth file holds only `pgroute_auth`; every other user is looked up with `auth_query`,
/// and the backend demands passwords (SCRAM or MD5) from all of them.
async fn auth_query_stack(
    name: &str,
    auth_type: AuthType,
) -> anyhow::Result<(Stack, std::path::PathBuf)> {
    let (stack, path) =
        stack_with_auth_file(name, "\"pgroute_auth\" \"auth-pw\"\n", auth_type, |c| {
            c.auth.user = Some("pgroute_auth".into());
            c.auth.query = "SELECT uname, phash FROM public.user_lookup($1)".into();
        })
        .await?;
    stack
        .connect_direct()
        .await?
        .batch_execute(AUTH_FUNCTION)
        .await?;
    stack
        .require_passwords(&[
            ("pgroute_auth", "scram-sha-256"),
            ("db_only_scram", "scram-sha-256"),
            ("db_only_md5", "md5"),
        ])
        .await?;
    Ok((stack, path))
}

async fn auth_calls(stack: &Stack, user: &str) -> anyhow::Result<i64> {
    let direct = stack.connect_direct().await?;
    Ok(direct
        .query_one(
            "SELECT count(*) FROM public.auth_calls WHERE usename = $1",
            &[&user],
        )
        .await?
        .get(0))
}

async fn current_user(client: &tokio_postgres::Client) -> anyhow::Result<String> {
    Ok(client
        .query_one("select current_user::text", &[])
        .await?
        .get(0))
}

/// A user that exists only in the database logs in with SCRAM: pgroute reads its verifier with
/// `auth_query`, checks the client's proof, and logs in to the SCRAM-only backend with the client's keys,
/// never holding the password. Secrets are cached; a failed login drops the cached one.
#[tokio::test]
async fn auth_query_user_logs_in_with_scram_and_pgroute_never_holds_the_password(
) -> anyhow::Result<()> {
    let (stack, path) = auth_query_stack("aq-scram", AuthType::ScramSha256).await?;

    let client = login(&stack, "db_only_scram", "scram-pw").await?;
    assert_eq!(current_user(&client).await?, "db_only_scram");
    let again = login(&stack, "db_only_scram", "scram-pw").await?;
    assert_eq!(current_user(&again).await?, "db_only_scram");
    assert_eq!(
        auth_calls(&stack, "db_only_scram").await?,
        1,
        "the second login used the cached verifier"
    );

    let wrong = login(&stack, "db_only_scram", "guess")
        .await
        .expect_err("wrong password refused");
    assert_eq!(wrong.code(), Some(&SqlState::INVALID_PASSWORD), "{wrong:?}");
    let unknown = login(&stack, "no_such_role", "guess")
        .await
        .expect_err("unknown user refused");
    assert_eq!(
        unknown.code(),
        Some(&SqlState::INVALID_PASSWORD),
        "{unknown:?}"
    );
    let message = |e: &tokio_postgres::Error| {
        e.as_db_error()
            .map(|d| d.message().replace("no_such_role", "db_only_scram"))
    };
    assert_eq!(
        message(&unknown),
        message(&wrong),
        "an unknown user reads exactly like a wrong password"
    );

    // The failed login dropped the cached verifier: the next login asks the database again.
    let client = login(&stack, "db_only_scram", "scram-pw").await?;
    assert_eq!(current_user(&client).await?, "db_only_scram");
    assert_eq!(auth_calls(&stack, "db_only_scram").await?, 2);

    // libpq (psql) logs in the same way.
    let out = tokio::process::Command::new(stack.cluster.bin_dir().join("psql"))
        .args(["-X", "-A", "-t", "-d"])
        .arg(format!(
            "host=127.0.0.1 port={} user=db_only_scram password=scram-pw dbname=postgres",
            stack.addr().port()
        ))
        .args(["-c", "select current_user"])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "db_only_scram");

    // The user name is a bound parameter: quotes in it are data, not SQL.
    let injected = "x' OR rolname = 'db_only_scram";
    let err = login(&stack, injected, "scram-pw")
        .await
        .expect_err("injection refused");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err:?}");
    assert_eq!(auth_calls(&stack, injected).await?, 1);
    std::fs::remove_file(&path)?;
    Ok(())
}

/// With `auth.type = md5`, an MD5 user found by `auth_query` logs in to an MD5 backend with the stored
/// hash alone, and a user whose secret is a SCRAM verifier is asked for SCRAM instead (as PgBouncer does).
#[tokio::test]
async fn auth_query_md5_user_logs_in_with_the_hash_alone() -> anyhow::Result<()> {
    let (stack, path) = auth_query_stack("aq-md5", AuthType::Md5).await?;
    for (user, password) in [("db_only_md5", "md5-pw"), ("db_only_scram", "scram-pw")] {
        let client = login(&stack, user, password).await?;
        assert_eq!(current_user(&client).await?, user);
        let err = login(&stack, user, "guess")
            .await
            .expect_err("wrong password");
        assert_eq!(
            err.code(),
            Some(&SqlState::INVALID_PASSWORD),
            "{user}: {err:?}"
        );
    }

    // A broken auth_query (here: a function that does not exist) fails the login with a clear error
    // that does not show the unauthenticated client the backend's answer.
    let file = path.clone();
    let broken = pgroute_tests::start_proxy(stack.cluster.primary().addr(), move |c| {
        c.auth.auth_type = AuthType::Md5;
        c.auth.file = Some(file);
        c.auth.user = Some("pgroute_auth".into());
        c.auth.query = "SELECT uname, phash FROM public.no_such_function($1)".into();
    })
    .await?;
    let Err(err) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(broken.addr.port())
        .user("db_only_md5")
        .password("md5-pw")
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
    else {
        panic!("login with a broken auth_query succeeded");
    };
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{err:?}"
    );
    let message = err.as_db_error().map(|d| d.message().to_owned());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("auth_query failed") && !m.contains("no_such_function")),
        "{message:?}"
    );
    std::fs::remove_file(&path)?;
    Ok(())
}

/// An auth file with only a SCRAM verifier (copied from `pg_authid`): the first client's proof gives
/// pgroute the keys to log in to the SCRAM backend, so no plain password is stored anywhere.
#[tokio::test]
async fn auth_file_scram_verifier_is_enough_to_log_in_to_the_backend() -> anyhow::Result<()> {
    let (stack, path) =
        stack_with_auth_file("verifier-only", "", AuthType::ScramSha256, |_| {}).await?;
    let direct = stack.connect_direct().await?;
    direct
        .batch_execute(
            "SET password_encryption = 'scram-sha-256'; CREATE ROLE app LOGIN PASSWORD 'app-pw';",
        )
        .await?;
    let verifier: String = direct
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'",
            &[],
        )
        .await?
        .get(0);
    std::fs::write(&path, format!("\"app\" \"{verifier}\"\n"))?;
    stack.proxy.proxy.reload_users()?;
    stack.require_passwords(&[("app", "scram-sha-256")]).await?;

    let client = login(&stack, "app", "app-pw").await?;
    assert_eq!(current_user(&client).await?, "app");
    std::fs::remove_file(&path)?;
    Ok(())
}
