//! Opening a backend connection: TCP, StartupMessage, authentication (trust, cleartext, MD5,
//! SCRAM-SHA-256), then ParameterStatus and BackendKeyData up to the first ReadyForQuery.
//!
//! The client side of SCRAM and the MD5 hash come from `postgres-protocol` (the tokio-postgres project's
//! implementation), not hand-written crypto.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pgroute_protocol::backend::{self, AuthRequest, ErrorFields};
use pgroute_protocol::frame::Frame;
use pgroute_protocol::{frontend, startup, FrameReader, ProtocolError};
use postgres_protocol::authentication::{md5_hash, sasl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use rustls::pki_types::ServerName;

use super::{BackendKey, PoolKey, ServerConn, ServerStream};
use crate::auth::{md5_answer_from_hash, BackendLogin, KeyLogin, KeyLoginError, Keyring};
use crate::config::{KeepaliveConfig, ServerTlsMode};
use crate::tls::BackendTls;

/// What a pool needs to log in besides its key.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Passwords, hashes and SCRAM keys by user, read at each login (a client may have taught it new
    /// keys since the pool was made).
    pub keyring: Arc<Keyring>,
    pub max_message_size: usize,
    /// TLS towards the backend (`None`: plaintext).
    pub tls: Option<BackendTls>,
    /// TCP keepalive probes on the backend socket (`pool.server_tcp_keepalive`).
    pub keepalive: KeepaliveConfig,
    /// `application_name` at login: set for pgroute's own connections (health checks, lag monitor)
    /// so operators can tell them apart in `pg_stat_activity`; pool connections take the client's.
    pub application_name: Option<&'static str>,
}

/// Why a backend connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve {host}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{host} resolved to no address")]
    NoAddress { host: String },
    #[error("TCP connect failed")]
    Tcp(#[source] std::io::Error),
    #[error("connection lost during login")]
    Io(#[from] std::io::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("backend rejected login: {} ({})", .0.message, .0.code)]
    Rejected(ErrorFields),
    #[error("backend asked for {method} authentication, and pgroute holds nothing that answers it for this user (a plain password in auth.file{hint})")]
    NoPassword {
        method: &'static str,
        hint: &'static str,
    },
    #[error("backend asked for unsupported authentication ({0})")]
    UnsupportedAuth(String),
    #[error("SCRAM exchange with backend failed")]
    Scram(#[source] std::io::Error),
    #[error("SCRAM exchange with backend failed")]
    ScramKeys(#[source] KeyLoginError),
    #[error("protocol error during login")]
    Protocol(#[from] ProtocolError),
    #[error("backend closed the connection during login")]
    Closed,
    #[error("backend does not accept TLS, and tls.server_mode is {0:?}")]
    TlsRefused(ServerTlsMode),
    #[error("TLS handshake with backend failed")]
    TlsHandshake(#[source] std::io::Error),
    #[error("invalid backend host name for TLS: {0}")]
    TlsName(String),
}

impl ConnectError {
    /// Whether the failure says the backend cannot serve (unreachable, hanging, shutting down, starting
    /// up, out of connections): what its circuit breaker and health checks count. A refused login
    /// (password, unknown database) or a TLS setup problem says nothing about the server's health.
    pub fn backend_unavailable(&self) -> bool {
        match self {
            ConnectError::Resolve { .. }
            | ConnectError::NoAddress { .. }
            | ConnectError::Tcp(_)
            | ConnectError::Io(_)
            | ConnectError::Timeout(_)
            | ConnectError::Closed
            | ConnectError::Protocol(_) => true,
            ConnectError::Rejected(fields) => {
                fields.code.starts_with("57P") || fields.code == "53300"
            }
            _ => false,
        }
    }
}

/// Opens and logs in one backend connection within `timeout`.
pub async fn connect(
    key: &PoolKey,
    opts: &ConnectOptions,
    timeout: Duration,
) -> Result<ServerConn, ConnectError> {
    tokio::time::timeout(timeout, connect_inner(key, opts))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
}

async fn connect_inner(key: &PoolKey, opts: &ConnectOptions) -> Result<ServerConn, ConnectError> {
    let host = key.backend.host();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, key.backend.port()))
        .await
        .map_err(|source| ConnectError::Resolve {
            host: host.to_owned(),
            source,
        })?
        .collect();
    let mut last = ConnectError::NoAddress {
        host: host.to_owned(),
    };
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                tcp.set_nodelay(true).map_err(ConnectError::Tcp)?;
                if let Err(e) = crate::keepalive::apply(&tcp, &opts.keepalive) {
                    // Keepalives only speed up noticing a dead peer: the connection is usable without.
                    tracing::warn!(%addr, error = %e, "cannot set TCP keepalive on backend socket");
                }
                let stream = match &opts.tls {
                    Some(tls) => negotiate_tls(tcp, tls, host).await?,
                    None => ServerStream::Plain(tcp),
                };
                return login(stream, addr, key, opts).await;
            }
            Err(e) => last = ConnectError::Tcp(e),
        }
    }
    Err(last)
}

/// Asks the backend for TLS (SSLRequest) and upgrades when it agrees; `prefer` falls back to
/// plaintext when it does not, stricter modes fail.
async fn negotiate_tls(
    mut tcp: TcpStream,
    tls: &BackendTls,
    host: &str,
) -> Result<ServerStream, ConnectError> {
    tcp.write_all(&startup::SSL_REQUEST_PACKET).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    match answer[0] {
        b'S' => {
            let name = ServerName::try_from(host.to_owned())
                .map_err(|_| ConnectError::TlsName(host.to_owned()))?;
            let stream = tls
                .connector
                .connect(name, tcp)
                .await
                .map_err(ConnectError::TlsHandshake)?;
            Ok(ServerStream::Tls(Box::new(stream)))
        }
        b'N' if tls.mode == ServerTlsMode::Prefer => Ok(ServerStream::Plain(tcp)),
        b'N' => Err(ConnectError::TlsRefused(tls.mode)),
        other => Err(ProtocolError::UnexpectedTag {
            tag: other as char,
            context: "answer to SSLRequest",
        }
        .into()),
    }
}

async fn login(
    mut stream: ServerStream,
    addr: SocketAddr,
    key: &PoolKey,
    opts: &ConnectOptions,
) -> Result<ServerConn, ConnectError> {
    let mut out = BytesMut::with_capacity(256);
    let mut params = vec![
        ("user", key.user.as_str()),
        ("database", key.database.as_str()),
        ("client_encoding", "UTF8"),
    ];
    if let Some(name) = opts.application_name {
        params.push(("application_name", name));
    }
    startup::startup_message(&mut out, &params);
    stream.write_all(&out).await?;
    stream.flush().await?;
    let mut reader = FrameReader::new(opts.max_message_size).with_read_chunk(16 * 1024);
    let mut scram = Scram::None;
    let login = opts.keyring.get(&key.user).unwrap_or_default();
    let mut params = Vec::new();
    let mut backend_key = BackendKey { pid: 0, secret: 0 };
    loop {
        let frame = read_frame(&mut stream, &mut reader).await?;
        out.clear();
        match frame.tag {
            backend::AUTHENTICATION => {
                authenticate(frame.body(), &login, &key.user, &mut scram, &mut out)?;
                if !out.is_empty() {
                    stream.write_all(&out).await?;
                    stream.flush().await?;
                }
            }
            backend::PARAMETER_STATUS => {
                let (name, value) = backend::parameter_status_fields(frame.body())?;
                params.push((name.to_owned(), value.to_owned()));
            }
            backend::BACKEND_KEY_DATA => {
                let (pid, secret) = backend::backend_key_data_fields(frame.body())?;
                backend_key = BackendKey { pid, secret };
            }
            backend::ERROR_RESPONSE => {
                return Err(ConnectError::Rejected(backend::error_fields(frame.body())?))
            }
            backend::NOTICE_RESPONSE | backend::NEGOTIATE_PROTOCOL_VERSION => {}
            backend::READY_FOR_QUERY => {
                return Ok(ServerConn::new(stream, reader, addr, backend_key, params));
            }
            tag => {
                return Err(ProtocolError::UnexpectedTag {
                    tag: tag as char,
                    context: "backend login",
                }
                .into())
            }
        }
    }
}

/// A SCRAM exchange in progress: with the password (postgres-protocol's client) or with a client's keys.
enum Scram {
    None,
    Password(sasl::ScramSha256),
    Keys(KeyLogin),
}

/// Answers one authentication request from what `login` holds: the password answers every method; an
/// MD5 hash answers MD5; SCRAM keys answer SCRAM.
fn authenticate(
    body: &[u8],
    login: &BackendLogin,
    user: &str,
    scram: &mut Scram,
    out: &mut BytesMut,
) -> Result<(), ConnectError> {
    let missing = |method, hint| ConnectError::NoPassword { method, hint };
    match backend::auth_request(body)? {
        AuthRequest::Ok => {}
        AuthRequest::CleartextPassword => {
            let password = login
                .password
                .as_deref()
                .ok_or(missing("cleartext password", ""))?;
            let mut p = password.as_bytes().to_vec();
            p.push(0);
            frontend::password_message(out, &p);
        }
        AuthRequest::Md5Password { salt } => {
            let answer = match (&login.password, &login.md5_hash) {
                (Some(password), _) => md5_hash(user.as_bytes(), password.as_bytes(), salt),
                (None, Some(hash)) => md5_answer_from_hash(hash, salt),
                (None, None) => return Err(missing("MD5", ", or its md5 hash")),
            };
            let mut p = answer.into_bytes();
            p.push(0);
            frontend::password_message(out, &p);
        }
        AuthRequest::Sasl { mechanisms } => {
            if !mechanisms.contains(&sasl::SCRAM_SHA_256) {
                return Err(ConnectError::UnsupportedAuth(mechanisms.join(", ")));
            }
            let first: Vec<u8> = match (&login.password, &login.scram) {
                (Some(password), _) => {
                    let s = sasl::ScramSha256::new(
                        password.as_bytes(),
                        sasl::ChannelBinding::unsupported(),
                    );
                    let first = s.message().to_vec();
                    *scram = Scram::Password(s);
                    first
                }
                (None, Some(keys)) => {
                    let k = KeyLogin::new(keys.clone());
                    let first = k.client_first().into_bytes();
                    *scram = Scram::Keys(k);
                    first
                }
                (None, None) => {
                    return Err(missing(
                        "SCRAM-SHA-256",
                        ", or a client of this user logging in with SCRAM first",
                    ))
                }
            };
            // SASLInitialResponse: mechanism, then the length-prefixed client-first message.
            let mut payload = Vec::with_capacity(first.len() + 32);
            payload.extend_from_slice(sasl::SCRAM_SHA_256.as_bytes());
            payload.push(0);
            payload.extend_from_slice(&(first.len() as i32).to_be_bytes());
            payload.extend_from_slice(&first);
            frontend::password_message(out, &payload);
        }
        AuthRequest::SaslContinue { data } => match scram {
            Scram::Password(s) => {
                s.update(data).map_err(ConnectError::Scram)?;
                frontend::password_message(out, s.message());
            }
            Scram::Keys(k) => {
                let client_final = k.client_final(data).map_err(ConnectError::ScramKeys)?;
                frontend::password_message(out, client_final.as_bytes());
            }
            Scram::None => {
                return Err(ConnectError::UnsupportedAuth(
                    "SASLContinue before SASL".into(),
                ))
            }
        },
        AuthRequest::SaslFinal { data } => match std::mem::replace(scram, Scram::None) {
            Scram::Password(mut s) => s.finish(data).map_err(ConnectError::Scram)?,
            Scram::Keys(k) => k
                .verify_server_final(data)
                .map_err(ConnectError::ScramKeys)?,
            Scram::None => {
                return Err(ConnectError::UnsupportedAuth(
                    "SASLFinal before SASL".into(),
                ))
            }
        },
        AuthRequest::Unsupported { code } => {
            return Err(ConnectError::UnsupportedAuth(format!("code {code}")))
        }
    }
    Ok(())
}

/// Reads one whole frame, buffering as needed.
pub(crate) async fn read_frame(
    stream: &mut ServerStream,
    reader: &mut FrameReader,
) -> Result<Frame, ConnectError> {
    loop {
        if let Some(frame) = reader.next_frame()? {
            return Ok(frame);
        }
        reader.reserve_for_next();
        if stream.read_buf(reader.buffer_mut()).await? == 0 {
            return Err(ConnectError::Closed);
        }
    }
}
