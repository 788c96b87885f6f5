//! The test kit's one raw PostgreSQL protocol client, for tests that need exact control of the bytes on
//! the wire: named statements, pipelines, malformed or partial input, clients that stall or vanish, and
//! checking exactly which messages (and which FATAL errors) the proxy sends before it closes a socket.
//!
//! Drivers hide all of this, which is why it lives here once rather than as a hand-written client per
//! test file. Messages are queued by builder methods ([`RawClient::parse`], [`RawClient::query`],
//! [`RawClient::raw`], ...) and written by [`RawClient::flush`]; replies are read one at a time by
//! [`RawClient::recv`], which tells a closed socket (`None`) from a hang (an error after [`HANG`]) and from a
//! socket closed mid-message (an error too).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use pgroute_protocol::backend::{self, ErrorFields};
use pgroute_protocol::frame::{begin_message, finish_message, put_cstr};
use pgroute_protocol::{frontend, startup, FrameReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long [`RawClient::recv`] waits for the proxy to send something or close before calling it a hang.
pub const HANG: Duration = Duration::from_secs(5);

/// One backend message as received: its tag and its body (after the 5-byte header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub tag: u8,
    pub body: Bytes,
}

impl Msg {
    /// The fields of an ErrorResponse, `None` for any other message (or an unparsable one).
    pub fn error(&self) -> Option<ErrorFields> {
        (self.tag == backend::ERROR_RESPONSE)
            .then(|| backend::error_fields(&self.body).ok())
            .flatten()
    }
}

/// A client speaking the wire protocol message by message (or byte by byte), so it can say things no
/// driver would.
pub struct RawClient {
    stream: TcpStream,
    reader: FrameReader,
    out: BytesMut,
}

impl RawClient {
    /// Connects without sending anything (not even a startup packet).
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<RawClient> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            reader: FrameReader::new(1 << 30),
            out: BytesMut::new(),
        })
    }

    /// Connects and logs in as postgres/postgres (trust), reading up to the first ReadyForQuery; an
    /// ErrorResponse or a close on the way fails with what was said.
    pub async fn login(addr: SocketAddr) -> anyhow::Result<RawClient> {
        let mut c = RawClient::connect(addr).await?;
        c.startup(&[("user", "postgres"), ("database", "postgres")]);
        c.flush().await?;
        loop {
            match c.recv().await?.context("closed during login")? {
                Msg {
                    tag: backend::READY_FOR_QUERY,
                    ..
                } => return Ok(c),
                Msg {
                    tag: backend::ERROR_RESPONSE,
                    body,
                } => bail!("login refused: {:?}", backend::error_fields(&body)),
                _ => {}
            }
        }
    }

    /// Queues a protocol 3.0 StartupMessage with these parameters.
    pub fn startup(&mut self, params: &[(&str, &str)]) -> &mut Self {
        startup::startup_message(&mut self.out, params);
        self
    }

    /// Queues a Parse of `sql` as statement `name`, with no parameter types given.
    pub fn parse(&mut self, name: &str, sql: &str) -> &mut Self {
        let at = begin_message(&mut self.out, frontend::PARSE);
        put_cstr(&mut self.out, name);
        put_cstr(&mut self.out, sql);
        self.out.extend_from_slice(&[0, 0]);
        finish_message(&mut self.out, at);
        self
    }

    /// Queues a Bind of `statement` to `portal`, without parameters, all results in text.
    pub fn bind(&mut self, portal: &str, statement: &str) -> &mut Self {
        let at = begin_message(&mut self.out, frontend::BIND);
        put_cstr(&mut self.out, portal);
        put_cstr(&mut self.out, statement);
        self.out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        finish_message(&mut self.out, at);
        self
    }

    /// Queues a Describe of statement `name`.
    pub fn describe_statement(&mut self, name: &str) -> &mut Self {
        let at = begin_message(&mut self.out, frontend::DESCRIBE);
        self.out.extend_from_slice(b"S");
        put_cstr(&mut self.out, name);
        finish_message(&mut self.out, at);
        self
    }

    /// Queues an Execute of `portal`, all rows.
    pub fn execute(&mut self, portal: &str) -> &mut Self {
        let at = begin_message(&mut self.out, frontend::EXECUTE);
        put_cstr(&mut self.out, portal);
        self.out.extend_from_slice(&[0, 0, 0, 0]);
        finish_message(&mut self.out, at);
        self
    }

    /// Queues a Close of statement `name`.
    pub fn close_statement(&mut self, name: &str) -> &mut Self {
        let at = begin_message(&mut self.out, frontend::CLOSE);
        self.out.extend_from_slice(b"S");
        put_cstr(&mut self.out, name);
        finish_message(&mut self.out, at);
        self
    }

    /// Queues a Sync.
    pub fn sync(&mut self) -> &mut Self {
        self.out.extend_from_slice(&[frontend::SYNC, 0, 0, 0, 4]);
        self
    }

    /// Queues a simple Query.
    pub fn query(&mut self, sql: &str) -> &mut Self {
        frontend::query(&mut self.out, sql);
        self
    }

    /// Queues raw bytes (for malformed or partial input).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.extend_from_slice(bytes);
        self
    }

    /// Writes everything queued. A proxy that already closed may make this fail; tests that expect it to
    /// have closed usually ignore that and look at [`RawClient::recv`] instead.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        let written = self.stream.write_all(&self.out).await;
        self.out.clear();
        written.context("writing to the proxy")
    }

    /// The next backend message, or `None` once the proxy closed the socket (end of stream or reset).
    /// Fails when nothing arrives within [`HANG`], on a malformed frame, and when the socket closes in
    /// the middle of a message.
    pub async fn recv(&mut self) -> anyhow::Result<Option<Msg>> {
        tokio::time::timeout(HANG, async {
            loop {
                if let Some(f) = self
                    .reader
                    .next_frame()
                    .context("bad frame from the proxy")?
                {
                    return Ok(Some(Msg {
                        tag: f.tag,
                        body: f.bytes.slice(5..),
                    }));
                }
                self.reader.reserve_for_next();
                match self.stream.read_buf(self.reader.buffer_mut()).await {
                    Ok(0) | Err(_) if self.reader.buffered() == 0 => return Ok(None),
                    Ok(0) | Err(_) => {
                        bail!("closed mid-message: {:?}", self.reader.buffer())
                    }
                    Ok(_) => {}
                }
            }
        })
        .await
        .with_context(|| format!("no answer and no close from the proxy within {HANG:?}"))?
    }

    /// Flushes, then collects messages through the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> anyhow::Result<Vec<Msg>> {
        self.flush().await?;
        let mut msgs = Vec::new();
        loop {
            let m = self
                .recv()
                .await?
                .with_context(|| format!("closed before ReadyForQuery, after {}", tags(&msgs)))?;
            let done = m.tag == backend::READY_FOR_QUERY;
            msgs.push(m);
            if done {
                return Ok(msgs);
            }
        }
    }

    /// Reads until the proxy closes the socket and returns the errors it sent on the way (other messages
    /// are skipped; an unparsable ErrorResponse fails).
    pub async fn errors_until_closed(&mut self) -> anyhow::Result<Vec<ErrorFields>> {
        let mut errors = Vec::new();
        while let Some(m) = self.recv().await? {
            if m.tag == backend::ERROR_RESPONSE {
                errors.push(backend::error_fields(&m.body)?);
            }
        }
        Ok(errors)
    }

    /// Expects exactly one FATAL ErrorResponse with `code`, then a closed socket; returns its message.
    pub async fn expect_fatal(&mut self, code: &str) -> anyhow::Result<String> {
        let errors = self.errors_until_closed().await?;
        match errors.as_slice() {
            [e] if e.severity == "FATAL" && e.code == code => Ok(e.message.clone()),
            other => bail!("expected one FATAL {code} then close, got {other:?}"),
        }
    }
}

/// Just the tags, as a string, for compact assertions (`"12DCZ"`: ParseComplete, BindComplete, DataRow,
/// CommandComplete, ReadyForQuery).
pub fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.tag as char).collect()
}
