//! Moving bytes between a client and its backend connection while one is attached.
//!
//! Full duplex in one task: each direction holds at most one batch of whole frames in flight, and a
//! direction only reads again once its batch is written, so a slow reader on either side applies
//! backpressure to the other instead of growing buffers. Batches are zero-copy slices of the read buffers
//! and are written as they were read; only a refused message forces a copy.

use bytes::{Buf, Bytes, BytesMut};
use pgroute_protocol::frame::tagged_frame_len;
use pgroute_protocol::frontend::SYNC;
use pgroute_protocol::{FrameReader, ProtocolError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::client::{ClientConn, ClientStream};
use super::prepared::BackendStatements;
use super::route::RouteGate;
use super::tracker::{ClientAction, ServerAction, Tracker};
use super::vars::SessionVars;
use crate::metrics::SessionMetrics;
use crate::pool::{PoolStats, ServerConn, ServerStream};

/// How an attached period ended.
#[derive(Debug)]
pub(crate) enum RelayEnd {
    /// Transaction mode: the backend is at rest and can be returned. `tail` still goes to the client.
    AtRest { tail: Option<Bytes> },
    /// The client left (Terminate or end of stream). `clean`: the backend is at rest.
    ClientGone { clean: bool },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    #[error("client I/O failed")]
    Client(#[source] std::io::Error),
    #[error("client protocol violation")]
    ClientProtocol(#[source] ProtocolError),
    #[error("{0}")]
    Server(String),
}

const SYNC_MESSAGE: [u8; 5] = [SYNC, 0, 0, 0, 4];
const PARSE_COMPLETE_MESSAGE: [u8; 5] = [pgroute_protocol::backend::PARSE_COMPLETE, 0, 0, 0, 4];

/// What an attached period works on besides the sockets.
struct Ctx<'a> {
    client_reader: &'a mut FrameReader,
    server_reader: &'a mut FrameReader,
    backend: &'a mut BackendStatements,
    tracker: &'a mut Tracker,
    vars: &'a mut SessionVars,
    stats: &'a PoolStats,
    release_at_rest: bool,
    gate: Option<RouteGate<'a>>,
    /// Times queries and counts backend errors when metrics are on.
    metrics: Option<&'a mut SessionMetrics>,
}

/// What an attached period runs with besides the sockets and the client's protocol state.
pub(crate) struct Attached<'a> {
    pub(crate) stats: &'a PoolStats,
    /// Transaction mode: end at rest so the connection can go back.
    pub(crate) release_at_rest: bool,
    pub(crate) gate: Option<RouteGate<'a>>,
    pub(crate) metrics: Option<&'a mut SessionMetrics>,
}

/// Relays until the backend is at rest (transaction mode) or the client leaves.
pub(crate) async fn run(
    client: &mut ClientConn,
    server: &mut ServerConn,
    tracker: &mut Tracker,
    vars: &mut SessionVars,
    attached: Attached<'_>,
) -> Result<RelayEnd, RelayError> {
    let Attached {
        stats,
        release_at_rest,
        gate,
        metrics,
    } = attached;
    let ctx = Ctx {
        metrics,
        client_reader: &mut client.reader,
        server_reader: &mut server.reader,
        backend: &mut server.prepared,
        tracker,
        vars,
        stats,
        release_at_rest,
        gate,
    };
    // Plain TCP keeps its zero-cost borrowed split; TLS goes through tokio's locked split.
    match (&mut client.stream, &mut server.stream) {
        (ClientStream::Plain(c), ServerStream::Plain(s)) => {
            let ((cr, cw), (sr, sw)) = (c.split(), s.split());
            relay(cr, cw, sr, sw, ctx).await
        }
        (ClientStream::Plain(c), ServerStream::Tls(s)) => {
            let ((cr, cw), (sr, sw)) = (c.split(), tokio::io::split(s.as_mut()));
            relay(cr, cw, sr, sw, ctx).await
        }
        (ClientStream::Tls(c), ServerStream::Plain(s)) => {
            let ((cr, cw), (sr, sw)) = (tokio::io::split(c.as_mut()), s.split());
            relay(cr, cw, sr, sw, ctx).await
        }
        (ClientStream::Tls(c), ServerStream::Tls(s)) => {
            let ((cr, cw), (sr, sw)) = (tokio::io::split(c.as_mut()), tokio::io::split(s.as_mut()));
            relay(cr, cw, sr, sw, ctx).await
        }
        (ClientStream::Closed, _) => {
            Err(RelayError::Client(std::io::ErrorKind::NotConnected.into()))
        }
        (_, ServerStream::Closed) => Err(RelayError::Server("no backend socket".into())),
    }
}

async fn relay<CR, CW, SR, SW>(
    mut cr: CR,
    mut cw: CW,
    mut sr: SR,
    mut sw: SW,
    ctx: Ctx<'_>,
) -> Result<RelayEnd, RelayError>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    SR: AsyncRead + Unpin,
    SW: AsyncWrite + Unpin,
{
    let Ctx {
        client_reader,
        server_reader,
        backend,
        tracker,
        vars,
        stats,
        release_at_rest,
        gate,
        mut metrics,
    } = ctx;
    // Client input held back for a new route (see `RouteGate`): stop reading until at rest.
    let mut held_back = false;
    let mut to_server_scratch = BytesMut::new();
    let mut to_client_scratch = BytesMut::new();
    let (mut to_server, terminated) = client_batch(
        client_reader,
        tracker,
        backend,
        stats,
        &mut to_server_scratch,
        metrics.as_deref_mut(),
    )
    .map_err(RelayError::ClientProtocol)?;
    if terminated {
        return Ok(RelayEnd::ClientGone {
            clean: to_server.is_none() && tracker.at_rest(),
        });
    }
    let mut to_client: Option<Bytes> = None;
    loop {
        if to_client.is_none() {
            server_reader.reserve_for_next();
        }
        if to_server.is_none() {
            client_reader.reserve_for_next();
        }
        tokio::select! {
            biased;
            r = sw.write(to_server.as_deref().unwrap_or_default()), if to_server.is_some() => {
                let n = r.map_err(|e| RelayError::Server(format!("write failed: {e}")))?;
                advance(&mut to_server, n);
                if to_server.is_none() {
                    sw.flush().await.map_err(|e| RelayError::Server(format!("write failed: {e}")))?;
                }
            }
            r = cw.write(to_client.as_deref().unwrap_or_default()), if to_client.is_some() => {
                let n = r.map_err(RelayError::Client)?;
                advance(&mut to_client, n);
                if to_client.is_none() {
                    // TLS may hold the end of the batch until flushed; TCP's flush does nothing.
                    cw.flush().await.map_err(RelayError::Client)?;
                    if held_back && release_at_rest && to_server.is_none() && tracker.at_rest() {
                        return Ok(RelayEnd::AtRest { tail: None });
                    }
                }
            }
            r = sr.read_buf(server_reader.buffer_mut()), if to_client.is_none() => {
                let n = r.map_err(|e| RelayError::Server(format!("read failed: {e}")))?;
                if n == 0 {
                    return Err(RelayError::Server("the server closed the connection".into()));
                }
                to_client = server_batch(server_reader, tracker, vars, backend, &mut to_client_scratch, metrics.as_deref_mut())
                    .map_err(|e| RelayError::Server(format!("protocol error: {e}")))?;
                if release_at_rest && tracker.at_rest() && to_server.is_none() {
                    return Ok(RelayEnd::AtRest { tail: to_client });
                }
            }
            r = cr.read_buf(client_reader.buffer_mut()), if to_server.is_none() && !held_back => {
                if r.map_err(RelayError::Client)? == 0 {
                    return Ok(RelayEnd::ClientGone { clean: tracker.at_rest() });
                }
                if let Some(g) = &gate {
                    if g.holds_back(client_reader.buffer(), client_reader.max_message_size(), tracker) {
                        held_back = true;
                        if release_at_rest && to_client.is_none() && tracker.at_rest() {
                            return Ok(RelayEnd::AtRest { tail: None });
                        }
                        continue;
                    }
                }
                let (batch, terminated) =
                    client_batch(client_reader, tracker, backend, stats, &mut to_server_scratch, metrics.as_deref_mut())
                    .map_err(RelayError::ClientProtocol)?;
                if terminated {
                    return Ok(RelayEnd::ClientGone { clean: batch.is_none() && tracker.at_rest() });
                }
                to_server = batch;
                // A batch wholly dropped (the rest of a refused one) can leave the backend at rest.
                if release_at_rest && to_server.is_none() && to_client.is_none() && tracker.at_rest() {
                    return Ok(RelayEnd::AtRest { tail: None });
                }
            }
        }
    }
}

fn advance(pending: &mut Option<Bytes>, n: usize) {
    if let Some(b) = pending {
        b.advance(n);
        if b.is_empty() {
            *pending = None;
        }
    }
}

/// A batch being rewritten into a scratch buffer that lives for the whole attached period: after the
/// first rewrite, later ones reuse its allocation (the previous batch has been written and dropped by
/// then), so renaming every Bind of a prepared-statement workload allocates nothing per message.
struct Rebuild<'a> {
    scratch: &'a mut BytesMut,
    active: bool,
}

impl<'a> Rebuild<'a> {
    fn new(scratch: &'a mut BytesMut) -> Rebuild<'a> {
        scratch.clear();
        Rebuild {
            scratch,
            active: false,
        }
    }

    /// Starts rewriting (copying the untouched prefix once) and returns the buffer to append to.
    fn start(&mut self, prefix: &[u8]) -> &mut BytesMut {
        if !self.active {
            self.active = true;
            self.scratch.extend_from_slice(prefix);
        }
        self.scratch
    }

    fn push(&mut self, frame: &[u8]) {
        if self.active {
            self.scratch.extend_from_slice(frame);
        }
    }

    /// The rewritten batch, or `taken` when nothing was rewritten.
    fn finish(self, taken: Bytes) -> Bytes {
        if self.active {
            self.scratch.split().freeze()
        } else {
            taken
        }
    }
}

/// Takes every whole client frame buffered, applying the tracker's decisions. Returns the bytes for the
/// backend and whether the client sent Terminate.
fn client_batch(
    reader: &mut FrameReader,
    tracker: &mut Tracker,
    backend: &mut BackendStatements,
    stats: &PoolStats,
    scratch: &mut BytesMut,
    mut metrics: Option<&mut SessionMetrics>,
) -> Result<(Option<Bytes>, bool), ProtocolError> {
    let max = reader.max_message_size();
    let buf = reader.buffer();
    let mut end = 0;
    let mut out = Rebuild::new(scratch);
    let mut terminated = false;
    let now = metrics.as_ref().map(|_| std::time::Instant::now());
    while let Some(len) = tagged_frame_len(&buf[end..], max)? {
        let frame = &buf[end..end + len];
        if let (Some(m), Some(now)) = (metrics.as_deref_mut(), now) {
            let statement = |name: &str| {
                tracker.statement(name).map(|s| {
                    *s.fingerprint
                        .get_or_init(|| crate::classify::fingerprint_sql(s.sql()))
                })
            };
            m.client_frame(frame[0], &frame[5..], statement, now);
        }
        match tracker.on_client_frame(frame[0], &frame[5..], backend, stats)? {
            ClientAction::Forward => out.push(frame),
            ClientAction::Replace => {
                out.start(&buf[..end])
                    .extend_from_slice(tracker.take_replacement());
            }
            ClientAction::Drop => {
                out.start(&buf[..end]);
            }
            ClientAction::Refuse => {
                out.start(&buf[..end]).extend_from_slice(&SYNC_MESSAGE);
            }
            ClientAction::Terminate => {
                out.start(&buf[..end]);
                end += len;
                terminated = true;
                break;
            }
        }
        end += len;
    }
    let taken = reader.split(end);
    let batch = out.finish(taken);
    Ok(((!batch.is_empty()).then_some(batch), terminated))
}

/// Takes every whole backend frame buffered, injecting refusal errors where the tracker says.
fn server_batch(
    reader: &mut FrameReader,
    tracker: &mut Tracker,
    vars: &mut SessionVars,
    backend: &mut BackendStatements,
    scratch: &mut BytesMut,
    mut metrics: Option<&mut SessionMetrics>,
) -> Result<Option<Bytes>, ProtocolError> {
    let max = reader.max_message_size();
    let buf = reader.buffer();
    let mut end = 0;
    let mut out = Rebuild::new(scratch);
    let now = metrics.as_ref().map(|_| std::time::Instant::now());
    while let Some(len) = tagged_frame_len(&buf[end..], max)? {
        let frame = &buf[end..end + len];
        let action = tracker.on_server_frame(frame[0], &frame[5..], vars, backend)?;
        // What the client sees is what is counted: answers to pgroute's own messages are dropped.
        if let (Some(m), Some(now)) = (metrics.as_deref_mut(), now) {
            if matches!(
                action,
                ServerAction::Forward | ServerAction::InjectBefore(_)
            ) {
                m.server_frame(frame[0], &frame[5..], now);
            }
        }
        match action {
            ServerAction::Forward => out.push(frame),
            ServerAction::InjectBefore(extra) => {
                let r = out.start(&buf[..end]);
                r.extend_from_slice(&extra);
                r.extend_from_slice(frame);
            }
            ServerAction::Drop => {
                out.start(&buf[..end]);
            }
            ServerAction::AsParseComplete => {
                out.start(&buf[..end])
                    .extend_from_slice(&PARSE_COMPLETE_MESSAGE);
            }
        }
        end += len;
    }
    if end == 0 {
        return Ok(None);
    }
    let taken = reader.split(end);
    let batch = out.finish(taken);
    Ok((!batch.is_empty()).then_some(batch))
}

/// Runs one simple query on an otherwise idle backend and discards its answers (session-variable sync,
/// reset queries). Returns the first error the server reported.
pub(crate) async fn run_internal(
    server: &mut ServerConn,
    sql: &str,
) -> Result<Option<pgroute_protocol::backend::ErrorFields>, RelayError> {
    let mut out = BytesMut::with_capacity(sql.len() + 6);
    pgroute_protocol::frontend::query(&mut out, sql);
    let write_failed = |e: std::io::Error| RelayError::Server(format!("write failed: {e}"));
    server.stream.write_all(&out).await.map_err(write_failed)?;
    server.stream.flush().await.map_err(write_failed)?;
    let mut error = None;
    loop {
        let frame = crate::pool::read_frame(&mut server.stream, &mut server.reader)
            .await
            .map_err(|e| RelayError::Server(e.to_string()))?;
        match frame.tag {
            pgroute_protocol::backend::ERROR_RESPONSE if error.is_none() => {
                error = pgroute_protocol::backend::error_fields(frame.body()).ok();
            }
            pgroute_protocol::backend::READY_FOR_QUERY => {
                let status = pgroute_protocol::backend::ready_for_query_status(frame.body())
                    .map_err(|e| RelayError::Server(e.to_string()))?;
                if status != pgroute_protocol::backend::TxStatus::Idle {
                    return Err(RelayError::Server(
                        "server left a transaction open after an internal query".into(),
                    ));
                }
                return Ok(error);
            }
            _ => {}
        }
    }
}
