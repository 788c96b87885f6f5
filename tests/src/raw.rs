//! A raw PostgreSQL protocol client for tests that need exact control of the messages on the wire
//! (named statements, pipelining, malformed input).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use pgroute_protocol::backend::{self, ErrorFields};
use pgroute_protocol::frame::{begin_message, finish_message, put_cstr};
use pgroute_protocol::{frontend, startup, FrameReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One backend message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub tag: u8,
    pub body: Bytes,
}

impl Msg {
    pub fn error(&self) -> Option<ErrorFields> {
        (self.tag == backend::ERROR_RESPONSE)
            .then(|| backend::error_fields(&self.body).ok())
            .flatten()
    }
}

pub struct RawClient {
    pub stream: TcpStream,
    reader: FrameReader,
    out: BytesMut,
}

impl RawClient {
    /// Connects and logs in as postgres/postgres (trust), reading up to the first ReadyForQuery.
    pub async fn login(addr: SocketAddr) -> anyhow::Result<RawClient> {
        let stream = TcpStream::connect(addr).await.context("connect")?;
        let mut c = RawClient {
            stream,
            reader: FrameReader::new(1 << 30),
            out: BytesMut::new(),
        };
        startup::startup_message(
            &mut c.out,
            &[("user", "postgres"), ("database", "postgres")],
        );
        c.flush().await?;
        c.until_ready().await?;
        Ok(c)
    }

    pub fn parse(&mut self, name: &str, sql: &str) -> &mut Self {
        let at = begin_message(&mut self.out, frontend::PARSE);
        put_cstr(&mut self.out, name);
        put_cstr(&mut self.out, sql);
        self.out.extend_from_slice(&[0, 0]);
        finish_message(&mut self.out, at);
        self
    }

    pub fn bind(&mut self, portal: &str, statement: &str) -> &mut Self {
        let at = begin_message(&mut self.out, frontend::BIND);
        put_cstr(&mut self.out, portal);
        put_cstr(&mut self.out, statement);
        self.out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        finish_message(&mut self.out, at);
        self
    }

    pub fn describe_statement(&mut self, name: &str) -> &mut Self {
        let at = begin_message(&mut self.out, frontend::DESCRIBE);
        self.out.extend_from_slice(b"S");
        put_cstr(&mut self.out, name);
        finish_message(&mut self.out, at);
        self
    }

    pub fn execute(&mut self, portal: &str) -> &mut Self {
        let at = begin_message(&mut self.out, frontend::EXECUTE);
        put_cstr(&mut self.out, portal);
        self.out.extend_from_slice(&[0, 0, 0, 0]);
        finish_message(&mut self.out, at);
        self
    }

    pub fn close_statement(&mut self, name: &str) -> &mut Self {
        let at = begin_message(&mut self.out, frontend::CLOSE);
        self.out.extend_from_slice(b"S");
        put_cstr(&mut self.out, name);
        finish_message(&mut self.out, at);
        self
    }

    pub fn sync(&mut self) -> &mut Self {
        self.out.extend_from_slice(&[frontend::SYNC, 0, 0, 0, 4]);
        self
    }

    pub fn query(&mut self, sql: &str) -> &mut Self {
        frontend::query(&mut self.out, sql);
        self
    }

    /// Queues raw bytes (for malformed input).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.extend_from_slice(bytes);
        self
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// Next message, within 10 s; `None` when the proxy closed the connection.
    pub async fn recv(&mut self) -> anyhow::Result<Option<Msg>> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(f) = self.reader.next_frame()? {
                    return Ok(Some(Msg {
                        tag: f.tag,
                        body: f.bytes.slice(5..),
                    }));
                }
                self.reader.reserve_for_next();
                if self.stream.read_buf(self.reader.buffer_mut()).await? == 0 {
                    return Ok(None);
                }
            }
        })
        .await
        .context("no answer within 10 s")?
    }

    /// Flushes, then collects messages through the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> anyhow::Result<Vec<Msg>> {
        self.flush().await?;
        let mut msgs = Vec::new();
        loop {
            let m = self
                .recv()
                .await?
                .context("connection closed before ReadyForQuery")?;
            let done = m.tag == backend::READY_FOR_QUERY;
            msgs.push(m);
            if done {
                return Ok(msgs);
            }
        }
    }
}

/// Just the tags, as a string, for compact assertions (`"12T D C Z"` style without spaces).
pub fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.tag as char).collect()
}
