//! The client side of a session: its socket, its read buffer, and a reusable buffer for what the proxy
//! itself says to it.

use bytes::BytesMut;
use pgroute_protocol::frame::Frame;
use pgroute_protocol::{backend, FrameReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::SessionError;
pub(crate) use crate::stream::ClientStream;

#[derive(Debug)]
pub(crate) struct ClientConn {
    pub(crate) stream: ClientStream,
    /// The server certificate's channel-binding data, once this connection uses TLS.
    pub(crate) tls_end_point: Option<std::sync::Arc<[u8]>>,
    pub(crate) reader: FrameReader,
    pub(crate) out: BytesMut,
}

impl ClientConn {
    pub(crate) fn new(stream: TcpStream, max_message_size: usize) -> ClientConn {
        ClientConn {
            stream: ClientStream::Plain(stream),
            tls_end_point: None,
            reader: FrameReader::new(max_message_size).with_read_chunk(2048),
            out: BytesMut::new(),
        }
    }

    /// Reads more bytes; `false` on a clean end of stream.
    pub(crate) async fn fill(&mut self) -> Result<bool, SessionError> {
        self.reader.reserve_for_next();
        let n = self
            .stream
            .read_buf(self.reader.buffer_mut())
            .await
            .map_err(SessionError::ClientIo)?;
        Ok(n > 0)
    }

    /// The next whole frame, or `None` at end of stream.
    pub(crate) async fn next_frame(&mut self) -> Result<Option<Frame>, SessionError> {
        loop {
            if let Some(f) = self.reader.next_frame()? {
                return Ok(Some(f));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Frees the read and write buffers when nothing is buffered, so an idle client holds no buffer
    /// memory.
    pub(crate) fn release_buffers(&mut self) {
        self.reader.release_if_empty();
        if self.out.is_empty() && self.out.capacity() > 0 {
            self.out = BytesMut::new();
        }
    }

    /// Waits until a whole frame is buffered and returns its tag without consuming it.
    pub(crate) async fn peek_tag(&mut self) -> Result<Option<u8>, SessionError> {
        loop {
            let max = self.reader.max_message_size();
            if pgroute_protocol::frame::tagged_frame_len(self.reader.buffer(), max)?.is_some() {
                return Ok(self.reader.buffer().first().copied());
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Writes bytes at once (flushed, for TLS).
    pub(crate) async fn write_now(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(SessionError::ClientIo)?;
        self.stream.flush().await.map_err(SessionError::ClientIo)
    }

    /// Sends and clears `out`.
    pub(crate) async fn flush_out(&mut self) -> Result<(), SessionError> {
        if !self.out.is_empty() {
            self.stream
                .write_all(&self.out)
                .await
                .map_err(SessionError::ClientIo)?;
            // TLS may hold the last record until flushed; plain TCP's flush does nothing.
            self.stream.flush().await.map_err(SessionError::ClientIo)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Queues an ErrorResponse for `err` (if the client can still be told).
    pub(crate) fn queue_error(&mut self, err: &SessionError) {
        if let Some((severity, code)) = err.response() {
            backend::error_response(&mut self.out, severity, &code, &err.client_message());
        }
    }
}
