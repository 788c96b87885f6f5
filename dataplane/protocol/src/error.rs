//! Protocol errors: what can be wrong with bytes a peer sent.

/// A violation of the wire protocol by the peer. Any of these means the stream can no longer be trusted
/// to be in sync, so the connection that produced it is closed after (at most) one ErrorResponse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("message length {len} is below the minimum of 4 bytes")]
    LengthTooSmall { len: u32 },
    #[error("message of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("startup packet of {len} bytes is not between 8 and {max} bytes")]
    BadStartupLength { len: usize, max: usize },
    #[error("unsupported frontend protocol {major}.{minor}: pgroute speaks 3.0")]
    UnsupportedProtocol { major: u16, minor: u16 },
    #[error("malformed {what} message")]
    Malformed { what: &'static str },
    #[error("unexpected message type {tag:?} ({context})")]
    UnexpectedTag { tag: char, context: &'static str },
}
