//! Session errors and the one place that turns them into what the client sees.
//!
//! Every failure a client can meet is mapped here to a PostgreSQL ErrorResponse with a SQLSTATE that
//! drivers understand, and a severity: `ERROR` leaves the client connected (its batch failed), `FATAL`
//! closes it.

use std::time::Duration;

use pgroute_protocol::ProtocolError;

use crate::auth::LookupError;
use crate::pool::{ConnectError, PoolError};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("invalid message from client: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("client connection I/O failed")]
    ClientIo(#[source] std::io::Error),
    #[error("client closed the connection while waiting for a backend")]
    ClientGone,
    #[error("TLS handshake with the client failed")]
    TlsHandshake(#[source] std::io::Error),
    #[error("pgroute requires TLS (tls.mode = require); connect with sslmode=require or stronger")]
    TlsRequired,
    #[error("sorry, too many clients already: max_client_conn ({max}) reached")]
    TooManyClients { max: u32 },
    #[error("too many connections for {what} \"{name}\": {key} ({max}) reached")]
    TooManyForName {
        what: &'static str,
        name: String,
        key: &'static str,
        max: u32,
    },
    #[error("no PostgreSQL user name specified in startup packet")]
    NoUser,
    #[error("{0}")]
    StartupParameter(String),
    #[error(
        "replication connections are not supported through pgroute; connect to the server directly"
    )]
    Replication,
    #[error("password authentication failed for user \"{user}\"")]
    AuthFailed { user: String },
    #[error("pgroute could not check the password of user \"{user}\": auth_query failed")]
    AuthLookup {
        user: String,
        #[source]
        source: Box<crate::auth::LookupError>,
    },
    #[error("login did not complete within client_login_timeout ({0:?})")]
    LoginTimeout(Duration),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("server connection to {backend} was lost: {reason}; the transaction in progress was rolled back, or its outcome is unknown if it was committing")]
    ServerLost { backend: String, reason: String },
    #[error("pgroute: {what} is not supported in transaction pooling mode, because the session state it creates would leak to other clients; connect with pool mode session for this workload")]
    Unsupported { what: &'static str },
    #[error("prepared statement \"{name}\" already exists")]
    DuplicateStatement { name: String },
    #[error("pgroute: no replica can serve this read: {}; consistency.fallback = error", if *.read_your_writes { "none has replayed this client's last write yet" } else { "every replica is further behind than consistency.max_replica_lag" })]
    NoFreshReplica { read_your_writes: bool },
    #[error("pgroute: this client already has {max} prepared statements (pool.max_client_prepared_statements); deallocate some before preparing more")]
    TooManyStatements { max: usize },
    #[error("pgroute: no primary to run this transaction: waited {waited:?} (failover.timeout) for the primary to come back or for a new one; last problem: {last}")]
    NoPrimary { waited: Duration, last: String },
    #[error("pgroute: no primary to run this transaction, and {max} clients already wait for one (failover.max_waiting)")]
    NoPrimaryQueueFull { max: u32 },
    #[error(
        "could not restore this client's session settings on the server connection: {message}"
    )]
    StateReplay { code: String, message: String },
    #[error(transparent)]
    ShuttingDown(#[from] crate::ops::ShuttingDown),
    #[error("user \"{user}\" is not allowed to use the pgroute admin console (database \"{database}\"): it is in neither admin.users nor admin.stats_users")]
    NotAdmin { user: String, database: String },
    #[error(
        "pgroute is waiting for the control plane: no topology received yet; try again shortly"
    )]
    AwaitingControlPlane,
}

impl SessionError {
    /// Severity and SQLSTATE for the client, or `None` when the client cannot be told (it is gone).
    pub fn response(&self) -> Option<(&'static str, String)> {
        let (severity, code) = match self {
            SessionError::ClientIo(_)
            | SessionError::ClientGone
            | SessionError::TlsHandshake(_) => return None,
            SessionError::TlsRequired | SessionError::NotAdmin { .. } => ("FATAL", "28000"),
            SessionError::Protocol(_) => ("FATAL", "08P01"),
            SessionError::TooManyClients { .. } | SessionError::TooManyForName { .. } => {
                ("FATAL", "53300")
            }
            SessionError::NoUser => ("FATAL", "28000"),
            SessionError::StartupParameter(_) => ("FATAL", "08P01"),
            SessionError::Replication => ("FATAL", "0A000"),
            SessionError::AuthFailed { .. } => ("FATAL", "28P01"),
            SessionError::LoginTimeout(_) => ("FATAL", "08P01"),
            SessionError::AuthLookup { source, .. } => match &**source {
                LookupError::Pool(PoolError::QueueTimeout { .. } | PoolError::Rejected { .. }) => {
                    ("FATAL", "53300")
                }
                LookupError::Pool(_) => ("FATAL", "08001"),
                LookupError::Query(_) => ("FATAL", "28000"),
            },
            SessionError::Pool(PoolError::QueueTimeout { .. } | PoolError::Rejected { .. }) => {
                ("ERROR", "53300")
            }
            SessionError::Pool(PoolError::Connect {
                source: ConnectError::Rejected(fields),
                ..
            }) => return Some(("ERROR", fields.code.clone())),
            SessionError::Pool(_) => ("ERROR", "08001"),
            SessionError::ServerLost { .. } => ("FATAL", "08006"),
            SessionError::Unsupported { .. } => ("ERROR", "0A000"),
            SessionError::DuplicateStatement { .. } => ("ERROR", "42P05"),
            SessionError::TooManyStatements { .. } => ("ERROR", "53400"),
            SessionError::NoFreshReplica { .. } => ("ERROR", "55000"),
            SessionError::NoPrimary { .. } | SessionError::NoPrimaryQueueFull { .. } => {
                ("ERROR", "57P03")
            }
            SessionError::StateReplay { code, .. } => return Some(("ERROR", code.clone())),
            SessionError::ShuttingDown(_) => ("FATAL", "57P01"),
            SessionError::AwaitingControlPlane => ("FATAL", "57P03"),
        };
        Some((severity, code.to_owned()))
    }

    /// The message for the client: the error and its causes, so "cannot connect" says why.
    pub fn client_message(&self) -> String {
        if let SessionError::Pool(PoolError::Connect {
            source: ConnectError::Rejected(fields),
            ..
        }) = self
        {
            return fields.message.clone();
        }
        if let SessionError::AuthLookup { .. } = self {
            // The cause (a backend error about pgroute's auth_user) is for the operator's log, not
            // for a client that has not proven who it is.
            return format!("{self} (the reason is in pgroute's log)");
        }
        let mut msg = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_timeout_is_a_recoverable_53300_naming_the_limit() {
        let e = SessionError::Pool(PoolError::QueueTimeout {
            key: "db".into(),
            size: 5,
            waited: Duration::from_secs(2),
        });
        assert_eq!(e.response(), Some(("ERROR", "53300".to_owned())));
        assert!(e.client_message().contains("queue_timeout"));
    }

    #[test]
    fn rejection_is_a_recoverable_53300_naming_pool_and_setting() {
        let cases = [
            (
                crate::pool::Rejection::FailFast {
                    size: 3,
                    reserve: 0,
                },
                "pool.queue_mode is fail-fast",
            ),
            (
                crate::pool::Rejection::QueueFull { size: 3, max: 10 },
                "pool.max_waiting",
            ),
            (
                crate::pool::Rejection::Shed {
                    waiting: 4,
                    depth: 2,
                },
                "low-priority",
            ),
        ];
        for (why, setting) in cases {
            let e = SessionError::Pool(PoolError::Rejected {
                key: "127.0.0.1:5432 (database app, user app)".into(),
                why,
            });
            assert_eq!(e.response(), Some(("ERROR", "53300".to_owned())));
            let msg = e.client_message();
            assert!(msg.contains("database app, user app"), "{msg}");
            assert!(msg.contains(setting), "{msg}");
        }
    }

    #[test]
    fn backend_rejection_passes_its_sqlstate_through() {
        let e = SessionError::Pool(PoolError::Connect {
            backend: "127.0.0.1:5432".parse().expect("addr"),
            source: ConnectError::Rejected(pgroute_protocol::backend::ErrorFields {
                severity: "FATAL".into(),
                code: "3D000".into(),
                message: "database \"nope\" does not exist".into(),
            }),
        });
        assert_eq!(e.response(), Some(("ERROR", "3D000".to_owned())));
        assert_eq!(e.client_message(), "database \"nope\" does not exist");
    }

    #[test]
    fn connect_failure_message_carries_the_cause() {
        let e = SessionError::Pool(PoolError::Connect {
            backend: "127.0.0.1:1".parse().expect("addr"),
            source: ConnectError::Timeout(Duration::from_secs(5)),
        });
        assert_eq!(
            e.client_message(),
            "cannot connect to backend 127.0.0.1:1: timed out after 5s"
        );
    }
}
