//! Typed views of the frontend (client → server) messages the proxy must look inside.
//!
//! Everything else is forwarded as opaque bytes; only tags are needed to keep the session state machine
//! in step (which messages end a batch, which start COPY data, which close the connection).

use bytes::BytesMut;

use crate::frame::{begin_message, finish_message, put_cstr, read_cstr};
use crate::ProtocolError;

pub const QUERY: u8 = b'Q';
pub const PARSE: u8 = b'P';
pub const BIND: u8 = b'B';
pub const DESCRIBE: u8 = b'D';
pub const EXECUTE: u8 = b'E';
pub const CLOSE: u8 = b'C';
pub const SYNC: u8 = b'S';
pub const FLUSH: u8 = b'H';
pub const TERMINATE: u8 = b'X';
pub const COPY_DATA: u8 = b'd';
pub const COPY_DONE: u8 = b'c';
pub const COPY_FAIL: u8 = b'f';
pub const FUNCTION_CALL: u8 = b'F';
pub const PASSWORD: u8 = b'p';

/// Is `tag` a message a client may send after startup?
pub fn is_known_tag(tag: u8) -> bool {
    matches!(
        tag,
        QUERY
            | PARSE
            | BIND
            | DESCRIBE
            | EXECUTE
            | CLOSE
            | SYNC
            | FLUSH
            | TERMINATE
            | COPY_DATA
            | COPY_DONE
            | COPY_FAIL
            | FUNCTION_CALL
    )
}

/// The SQL text of a simple Query message body.
pub fn query_text(body: &[u8]) -> Result<&str, ProtocolError> {
    let mut b = body;
    read_cstr(&mut b, "Query")
}

/// Statement name and SQL text of a Parse message body.
pub fn parse_message(body: &[u8]) -> Result<(&str, &str), ProtocolError> {
    let mut b = body;
    let name = read_cstr(&mut b, "Parse")?;
    let sql = read_cstr(&mut b, "Parse")?;
    Ok((name, sql))
}

/// Portal and statement names of a Bind message body.
pub fn bind_names(body: &[u8]) -> Result<(&str, &str), ProtocolError> {
    let mut b = body;
    let portal = read_cstr(&mut b, "Bind")?;
    let stmt = read_cstr(&mut b, "Bind")?;
    Ok((portal, stmt))
}

/// Kind (`'S'` statement or `'P'` portal) and name of a Describe or Close body.
pub fn target_name<'a>(body: &'a [u8], what: &'static str) -> Result<(u8, &'a str), ProtocolError> {
    let (&kind, mut rest) = body
        .split_first()
        .ok_or(ProtocolError::Malformed { what })?;
    if kind != b'S' && kind != b'P' {
        return Err(ProtocolError::Malformed { what });
    }
    Ok((kind, read_cstr(&mut rest, what)?))
}

/// Encodes a simple Query message.
pub fn query(out: &mut BytesMut, sql: &str) {
    let at = begin_message(out, QUERY);
    put_cstr(out, sql);
    finish_message(out, at);
}

/// Encodes a Parse message with unspecified parameter types (the server infers them).
pub fn parse(out: &mut BytesMut, name: &str, sql: &str) {
    let at = begin_message(out, PARSE);
    put_cstr(out, name);
    put_cstr(out, sql);
    out.extend_from_slice(&0i16.to_be_bytes());
    finish_message(out, at);
}

/// Encodes a Bind message whose parameters are all text (`None` is SQL NULL) and whose results are
/// all text.
pub fn bind_text(out: &mut BytesMut, portal: &str, statement: &str, params: &[Option<&str>]) {
    let at = begin_message(out, BIND);
    put_cstr(out, portal);
    put_cstr(out, statement);
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                out.extend_from_slice(v.as_bytes());
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    out.extend_from_slice(&0i16.to_be_bytes());
    finish_message(out, at);
}

/// Encodes an Execute message (`max_rows` 0: all rows).
pub fn execute(out: &mut BytesMut, portal: &str, max_rows: i32) {
    let at = begin_message(out, EXECUTE);
    put_cstr(out, portal);
    out.extend_from_slice(&max_rows.to_be_bytes());
    finish_message(out, at);
}

/// Encodes a Sync message.
pub fn sync(out: &mut BytesMut) {
    out.extend_from_slice(&[SYNC, 0, 0, 0, 4]);
}

/// Encodes a Terminate message.
pub fn terminate(out: &mut BytesMut) {
    out.extend_from_slice(&[TERMINATE, 0, 0, 0, 4]);
}

/// Encodes a PasswordMessage (also used for SASL responses, which are raw bytes).
pub fn password_message(out: &mut BytesMut, payload: &[u8]) {
    let at = begin_message(out, PASSWORD);
    out.extend_from_slice(payload);
    finish_message(out, at);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trip() {
        let mut out = BytesMut::new();
        query(&mut out, "select 1");
        assert_eq!(out[0], QUERY);
        assert_eq!(query_text(&out[5..]), Ok("select 1"));
    }

    #[test]
    fn built_extended_messages_read_back() {
        let mut out = BytesMut::new();
        parse(&mut out, "s1", "select $1");
        assert_eq!(out[0], PARSE);
        assert_eq!(parse_message(&out[5..]), Ok(("s1", "select $1")));
        out.clear();
        bind_text(&mut out, "", "s1", &[Some("alice"), None]);
        assert_eq!(out[0], BIND);
        assert_eq!(bind_names(&out[5..]), Ok(("", "s1")));
        let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        assert_eq!(len + 1, out.len());
    }

    #[test]
    fn parse_and_bind_names() {
        assert_eq!(
            parse_message(b"s1\0select $1\0\0\0"),
            Ok(("s1", "select $1"))
        );
        assert_eq!(bind_names(b"\0s1\0\0\0"), Ok(("", "s1")));
        assert_eq!(target_name(b"Sst\0", "Describe"), Ok((b'S', "st")));
        assert!(target_name(b"Xst\0", "Describe").is_err());
    }
}
