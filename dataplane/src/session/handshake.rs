//! The start of a client connection: the untagged opening packets, then authentication.
//!
//! SSLRequest is answered `S` and the socket upgraded when client-facing TLS is configured, `N`
//! otherwise; GSSENCRequest is always `N`. A client that sends anything after an encryption request
//! before reading the answer is cut off, because those plaintext bytes would otherwise be taken as part
//! of the encrypted stream (the CVE-2021-23214 class of bug).

use bytes::Bytes;
use pgroute_protocol::backend;
use pgroute_protocol::frame::read_cstr;
use pgroute_protocol::frontend::PASSWORD;
use pgroute_protocol::startup::{parse_startup, StartupParams, StartupRequest};
use pgroute_protocol::ProtocolError;
use tokio::io::AsyncWriteExt;

use crate::tls::Acceptor;

use super::client::{ClientConn, ClientStream};
use super::SessionError;
use crate::auth::{Binding, Md5Challenge, ScramExchange, ScramKeys, Secret, Users};
use crate::config::AuthType;

pub(crate) enum Opening {
    Startup(StartupParams),
    Cancel { pid: u32, secret: u32 },
    Gone,
}

/// Reads opening packets until a StartupMessage or CancelRequest, upgrading to TLS when the client
/// asks and `tls` is configured.
pub(crate) async fn opening(
    client: &mut ClientConn,
    max_startup: usize,
    tls: Option<&Acceptor>,
) -> Result<Opening, SessionError> {
    loop {
        let packet = loop {
            if let Some(p) = client.reader.next_startup_packet(max_startup)? {
                break p;
            }
            if !client.fill().await? {
                return Ok(Opening::Gone);
            }
        };
        match parse_startup(&packet)? {
            StartupRequest::Ssl | StartupRequest::GssEnc => {
                // Bytes already here were sent in plaintext before the answer: taking them as part
                // of an encrypted stream is the CVE-2021-23214 bug, so they end the connection.
                if client.reader.buffered() > 0 {
                    return Err(ProtocolError::Malformed {
                        what: "data sent before the answer to an encryption request",
                    }
                    .into());
                }
                let acceptor = match (&client.stream, tls) {
                    (ClientStream::Plain(_), Some(a)) if is_ssl(&packet) => a.clone(),
                    _ => {
                        client
                            .stream
                            .write_all(b"N")
                            .await
                            .map_err(SessionError::ClientIo)?;
                        continue;
                    }
                };
                client
                    .stream
                    .write_all(b"S")
                    .await
                    .map_err(SessionError::ClientIo)?;
                upgrade(client, &acceptor).await?;
            }
            StartupRequest::Cancel { pid, secret } => return Ok(Opening::Cancel { pid, secret }),
            StartupRequest::Startup(p) => return Ok(Opening::Startup(p)),
        }
    }
}

fn is_ssl(packet: &[u8]) -> bool {
    matches!(parse_startup(packet), Ok(StartupRequest::Ssl))
}

/// Runs the TLS handshake on the client's socket and continues the session over it.
async fn upgrade(client: &mut ClientConn, acceptor: &Acceptor) -> Result<(), SessionError> {
    let ClientStream::Plain(tcp) = std::mem::replace(&mut client.stream, ClientStream::Closed)
    else {
        return Err(SessionError::ClientIo(
            std::io::ErrorKind::InvalidInput.into(),
        ));
    };
    let tls = acceptor
        .inner()
        .accept(tcp)
        .await
        .map_err(SessionError::TlsHandshake)?;
    client.stream = ClientStream::Tls(Box::new(tls));
    client.tls_end_point = acceptor.end_point().cloned();
    Ok(())
}

/// Runs the configured challenge against `secret` (`None`: unknown user, who goes through the same steps
/// and fails like a wrong password). On success nothing is sent yet: AuthenticationOk goes out with the
/// rest of the login answer, once a backend is known to accept this user and database. Returns the
/// client's SCRAM keys when it proved a SCRAM verifier.
///
/// As in PgBouncer, `md5` means "MD5, or SCRAM for users whose secret is a SCRAM verifier", since such
/// a secret cannot check an MD5 answer.
pub(crate) async fn authenticate(
    client: &mut ClientConn,
    user: &str,
    auth_type: AuthType,
    secret: Option<&Secret>,
    users: &Users,
) -> Result<Option<ScramKeys>, SessionError> {
    let failed = || SessionError::AuthFailed {
        user: user.to_owned(),
    };
    let scram = match auth_type {
        AuthType::Trust => return Ok(None),
        AuthType::Md5 => matches!(secret, Some(Secret::Scram(_))),
        AuthType::ScramSha256 => true,
    };
    if !scram {
        let challenge = Md5Challenge::new();
        backend::auth_md5(&mut client.out, challenge.salt);
        client.flush_out().await?;
        let answer = password_message(client).await?;
        let answer = answer.strip_suffix(&[0]).unwrap_or(&answer);
        return match secret {
            Some(secret) if challenge.verify(user, secret, answer) => Ok(None),
            _ => Err(failed()),
        };
    }
    let end_point = client.tls_end_point.clone();
    let binding = match &end_point {
        Some(data) => Binding::Offered(data),
        None => Binding::NotOffered,
    };
    if end_point.is_some() {
        backend::auth_sasl(
            &mut client.out,
            &[
                crate::auth::SCRAM_MECHANISM_PLUS,
                crate::auth::SCRAM_MECHANISM,
            ],
        );
    } else {
        backend::auth_sasl(&mut client.out, &[crate::auth::SCRAM_MECHANISM]);
    }
    client.flush_out().await?;
    let initial = password_message(client).await?;
    let (mechanism, client_first) = sasl_initial_response(&initial)?;
    let verifier = secret
        .and_then(|s| users.scram_verifier(user, s))
        .unwrap_or_else(|| users.mock_verifier(user));
    let exchange =
        ScramExchange::start(verifier, mechanism, client_first, binding).map_err(|e| {
            tracing::info!(user, error = %e, "SCRAM exchange refused");
            failed()
        })?;
    backend::auth_sasl_data(&mut client.out, 11, exchange.server_first().as_bytes());
    client.flush_out().await?;
    let client_final = password_message(client).await?;
    let success = exchange.finish(&client_final).map_err(|_| failed())?;
    backend::auth_sasl_data(&mut client.out, 12, success.server_final.as_bytes());
    Ok(Some(success.keys))
}

async fn password_message(client: &mut ClientConn) -> Result<Bytes, SessionError> {
    let frame = client.next_frame().await?.ok_or(SessionError::ClientIo(
        std::io::ErrorKind::UnexpectedEof.into(),
    ))?;
    if frame.tag != PASSWORD {
        return Err(ProtocolError::UnexpectedTag {
            tag: frame.tag as char,
            context: "expected a password message",
        }
        .into());
    }
    Ok(frame.bytes.slice(5..))
}

/// The mechanism and client-first message of a SASLInitialResponse (mechanism, length, data).
fn sasl_initial_response(body: &[u8]) -> Result<(&str, &[u8]), SessionError> {
    let malformed = || ProtocolError::Malformed {
        what: "SASLInitialResponse",
    };
    let mut b = body;
    let mechanism = read_cstr(&mut b, "SASLInitialResponse")?;
    if mechanism != crate::auth::SCRAM_MECHANISM && mechanism != crate::auth::SCRAM_MECHANISM_PLUS {
        return Err(malformed().into());
    }
    let (len, data) = b.split_at_checked(4).ok_or_else(malformed)?;
    let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    if len < 0 || len as usize != data.len() {
        return Err(malformed().into());
    }
    Ok((mechanism, data))
}
