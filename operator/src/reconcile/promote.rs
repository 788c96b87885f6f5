//! `pg_promote()` on the chosen replica: the one write the operator ever makes to a database.

use std::time::Duration;

use crate::topology::Login;

#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("`{0}` is not host:port")]
    Address(String),
    #[error("cannot connect")]
    Connect(#[source] tokio_postgres::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("pg_promote() failed")]
    Query(#[source] tokio_postgres::Error),
    #[error("pg_promote() returned false")]
    Refused,
}

/// Asks `address` to leave recovery without waiting for it (`wait => false`): the state machine sees
/// the result in the next probes and gives up after `failover::PROMOTE_TIMEOUT`.
pub async fn promote(login: &Login, address: &str, timeout: Duration) -> Result<(), PromoteError> {
    let (host, port) = crate::topology::split_address(address)
        .map_err(|_| PromoteError::Address(address.to_owned()))?;
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port)
        .user(&login.user)
        .password(&login.password)
        .dbname(&login.dbname)
        .application_name("pgroute-operator")
        .connect_timeout(timeout);
    let work = async {
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(PromoteError::Connect)?;
        let driver = tokio::spawn(connection);
        let row = client
            .query_one("SELECT pg_promote(wait => false)", &[])
            .await
            .map_err(PromoteError::Query);
        driver.abort();
        if row?.try_get::<_, bool>(0).map_err(PromoteError::Query)? {
            Ok(())
        } else {
            Err(PromoteError::Refused)
        }
    };
    tokio::time::timeout(timeout * 2, work)
        .await
        .map_err(|_| PromoteError::Timeout(timeout * 2))?
}
