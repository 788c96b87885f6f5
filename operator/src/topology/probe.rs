//! What each database instance says right now: in recovery or not, its WAL position, its replay lag.
//!
//! [`Prober`] keeps one connection per instance between rounds (a probe is one small query, not a
//! login), and probes every instance at once: each has its own connect and query timeout, so a hung
//! instance costs only its own timeout. A connection that fails or times out is dropped and made
//! again next round; connections to instances no longer listed are closed.
//!
//! Plain TCP for now (`NoTls`): queries and answers are not encrypted, and the password is as safe
//! as the server's auth method makes it (SCRAM never sends it; `password` sends it in clear). TLS to
//! the instances is to come with server TLS settings in the spec.

use std::collections::HashMap;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use super::{Instance, Login};
use crate::failover::Seen;

/// The whole probe, one round trip. The lag is 0 on the primary and on a replica that has replayed
/// everything it received: the usual `now() - pg_last_xact_replay_timestamp()` would otherwise report
/// an idle replica as ever further behind ("time since the last commit"). Clock skew between the
/// hosts can make that difference negative; it is clamped to 0.
pub const PROBE_SQL: &str = "SELECT pg_is_in_recovery(), \
    CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_flush_lsn() END, \
    CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
    ELSE greatest(0, (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint) END";

/// `application_name` of the probe's connections, to tell them apart in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "pgroute-operator";

/// One instance as one probe saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub address: String,
    /// The probe query answered.
    pub reachable: bool,
    /// `pg_is_in_recovery()`; `None` when unreachable.
    pub in_recovery: Option<bool>,
    /// primary: pg_current_wal_flush_lsn(); replica: pg_last_wal_replay_lsn()
    pub lsn: Option<u64>,
    /// Replay lag in milliseconds (0 on the primary and on a caught-up replica); `None` when
    /// unreachable, or when a replica behind its received WAL has replayed no transaction since it
    /// started (no timestamp to measure from).
    pub replay_lag_ms: Option<u64>,
    /// Why the instance is unreachable: connect error, query error or timeout.
    pub error: Option<String>,
}

impl Observation {
    /// What the failover decision reads.
    pub fn seen(&self) -> Seen {
        Seen {
            address: self.address.clone(),
            reachable: self.reachable,
            in_recovery: self.in_recovery,
            lsn: self.lsn,
        }
    }

    fn unreachable(address: String, error: String) -> Observation {
        Observation {
            address,
            reachable: false,
            in_recovery: None,
            lsn: None,
            replay_lag_ms: None,
            error: Some(error),
        }
    }
}

/// Probes instances over kept connections. Not `Clone`: one per DatabaseProxy, owned by its
/// reconcile loop.
#[derive(Debug)]
pub struct Prober {
    connect_timeout: Duration,
    query_timeout: Duration,
    connections: HashMap<String, Connection>,
}

/// A kept connection: the client, the login it was made with (a changed Secret means a new login),
/// and the task driving it.
#[derive(Debug)]
struct Connection {
    client: Client,
    login: Login,
    task: JoinHandle<()>,
}

impl Connection {
    /// Drops a connection that failed or hung: its task may be waiting on a server that will never
    /// answer, so it is aborted rather than left to finish.
    fn discard(self) {
        self.task.abort();
    }
}

impl Prober {
    /// `connect_timeout` bounds the TCP connect and the login; `query_timeout` the probe query.
    pub fn new(connect_timeout: Duration, query_timeout: Duration) -> Prober {
        Prober {
            connect_timeout,
            query_timeout,
            connections: HashMap::new(),
        }
    }

    /// Probes all `instances` at once, in their order. Connections of instances no longer listed are
    /// closed (a kept connection has no query in flight, so closing it is a clean `Terminate`).
    pub async fn probe(&mut self, login: &Login, instances: &[Instance]) -> Vec<Observation> {
        let mut kept = std::mem::take(&mut self.connections);
        let (connect_timeout, query_timeout) = (self.connect_timeout, self.query_timeout);
        let rounds = instances.iter().map(|instance| {
            // A changed login (the Secret was edited) means a new connection; the old one closes
            // cleanly when dropped here.
            let conn = kept
                .remove(&instance.address)
                .filter(|c| c.login == *login && !c.client.is_closed());
            probe_one(
                instance.address.clone(),
                conn,
                login,
                connect_timeout,
                query_timeout,
            )
        });
        let results = futures_util::future::join_all(rounds).await;
        drop(kept);
        results
            .into_iter()
            .map(|(observation, conn)| {
                if let Some(conn) = conn {
                    // An address listed twice keeps one connection; the other closes.
                    self.connections.insert(observation.address.clone(), conn);
                }
                observation
            })
            .collect()
    }

    /// Instances with a kept connection right now.
    pub fn connected(&self) -> usize {
        self.connections.len()
    }
}

/// One instance: connect if needed, run [`PROBE_SQL`], and hand back the connection if it is still
/// good.
async fn probe_one(
    address: String,
    conn: Option<Connection>,
    login: &Login,
    connect_timeout: Duration,
    query_timeout: Duration,
) -> (Observation, Option<Connection>) {
    let conn = match conn {
        Some(c) => c,
        None => match connect(&address, login, connect_timeout).await {
            Ok(c) => c,
            Err(error) => return (Observation::unreachable(address, error), None),
        },
    };
    let answer = tokio::time::timeout(query_timeout, conn.client.simple_query(PROBE_SQL)).await;
    let messages = match answer {
        Ok(Ok(messages)) => messages,
        Ok(Err(e)) => {
            conn.discard();
            return (
                Observation::unreachable(address, format!("probe query failed: {e}")),
                None,
            );
        }
        Err(_) => {
            conn.discard();
            return (
                Observation::unreachable(
                    address,
                    format!("probe query got no answer within {query_timeout:?}"),
                ),
                None,
            );
        }
    };
    match parse_answer(&messages) {
        Ok((in_recovery, lsn, lag)) => (
            Observation {
                address,
                reachable: true,
                in_recovery: Some(in_recovery),
                lsn,
                replay_lag_ms: lag,
                error: None,
            },
            Some(conn),
        ),
        Err(problem) => {
            conn.discard();
            (
                Observation::unreachable(address, format!("unexpected probe answer: {problem}")),
                None,
            )
        }
    }
}

async fn connect(address: &str, login: &Login, timeout: Duration) -> Result<Connection, String> {
    let (host, port) = split_address(address)?;
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port)
        .user(&login.user)
        .password(&login.password)
        .dbname(&login.dbname)
        .application_name(APPLICATION_NAME)
        .connect_timeout(timeout);
    // `connect_timeout` covers the TCP connect only; a server that accepts and then never answers
    // the startup (stopped process, full backlog) is bounded here.
    let (client, connection) = match tokio::time::timeout(timeout, config.connect(NoTls)).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(format!("cannot connect: {e}")),
        Err(_) => return Err(format!("cannot connect: no answer within {timeout:?}")),
    };
    let address = address.to_owned();
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            // The next probe sees the closed client and reconnects.
            tracing::debug!(%address, error = %e, "probe connection ended");
        }
    });
    Ok(Connection {
        client,
        login: login.clone(),
        task,
    })
}

/// `host:port` or `[v6]:port` into its parts.
pub fn split_address(address: &str) -> Result<(&str, u16), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("address `{address}` is not HOST:PORT"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("address `{address}` has no valid port"))?;
    if host.is_empty() {
        return Err(format!("address `{address}` has no host"));
    }
    Ok((host, port))
}

/// The probe's one row: `(in_recovery, lsn, replay_lag_ms)`, all as text (simple query protocol).
fn parse_answer(
    messages: &[SimpleQueryMessage],
) -> Result<(bool, Option<u64>, Option<u64>), String> {
    let row = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .ok_or("no row")?;
    let column = |i: usize| row.try_get(i).map_err(|e| format!("column {i}: {e}"));
    let in_recovery = match column(0)? {
        Some("t") => true,
        Some("f") => false,
        other => return Err(format!("pg_is_in_recovery() = {other:?}")),
    };
    let lsn = match column(1)? {
        None => None,
        Some(text) => Some(parse_lsn(text).ok_or_else(|| format!("WAL position `{text}`"))?),
    };
    let lag = match column(2)? {
        None => None,
        Some(text) => Some(
            text.parse::<u64>()
                .map_err(|_| format!("replay lag `{text}`"))?,
        ),
    };
    Ok((in_recovery, lsn, lag))
}

/// Parses PostgreSQL's `X/Y` text form of an LSN (two hexadecimal halves of a 64-bit position), as
/// the sidecar does (`pgroute::topology::parse_lsn`).
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_as_positions_that_compare() {
        assert_eq!(parse_lsn("0/3000060"), Some(0x0300_0060));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert_eq!(parse_lsn("FFFFFFFF/FFFFFFFF"), Some(u64::MAX));
        assert!(parse_lsn("1/0") > parse_lsn("0/FFFFFFFF"));
        assert_eq!(parse_lsn("nonsense"), None);
        assert_eq!(parse_lsn("1/"), None);
        assert_eq!(parse_lsn("1FFFFFFFF/0"), None, "a half is 32 bits");
        assert_eq!(parse_lsn("-1/0"), None);
    }

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(split_address("10.0.0.7:5432"), Ok(("10.0.0.7", 5432)));
        assert_eq!(split_address("pg-0.db:5433"), Ok(("pg-0.db", 5433)));
        assert_eq!(split_address("[fd00::7]:5432"), Ok(("fd00::7", 5432)));
        assert!(split_address("pg-0").is_err());
        assert!(split_address("pg-0:0").is_err());
        assert!(split_address(":5432").is_err());
    }

    #[test]
    fn an_observation_is_what_failover_sees() {
        let o = Observation {
            address: "pg-1:5432".into(),
            reachable: true,
            in_recovery: Some(true),
            lsn: Some(42),
            replay_lag_ms: Some(7),
            error: None,
        };
        assert_eq!(
            o.seen(),
            Seen {
                address: "pg-1:5432".into(),
                reachable: true,
                in_recovery: Some(true),
                lsn: Some(42),
            }
        );
    }
}
