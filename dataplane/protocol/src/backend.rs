//! Typed views and builders of backend (server → client) messages.
//!
//! The proxy parses only what drives its state (ReadyForQuery, ParameterStatus, BackendKeyData,
//! authentication requests, ErrorResponse fields) and builds only what it says itself (its own
//! BackendKeyData, errors, the startup answer it replays from a pooled connection).

use bytes::{BufMut, BytesMut};

use crate::frame::{begin_message, finish_message, put_cstr, read_cstr, read_i32};
use crate::ProtocolError;

pub const AUTHENTICATION: u8 = b'R';
pub const PARAMETER_STATUS: u8 = b'S';
pub const BACKEND_KEY_DATA: u8 = b'K';
pub const READY_FOR_QUERY: u8 = b'Z';
pub const ERROR_RESPONSE: u8 = b'E';
pub const NOTICE_RESPONSE: u8 = b'N';
pub const NOTIFICATION_RESPONSE: u8 = b'A';
pub const COPY_IN_RESPONSE: u8 = b'G';
pub const COPY_OUT_RESPONSE: u8 = b'H';
pub const COPY_BOTH_RESPONSE: u8 = b'W';
pub const COMMAND_COMPLETE: u8 = b'C';
pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
pub const PARSE_COMPLETE: u8 = b'1';
pub const CLOSE_COMPLETE: u8 = b'3';
pub const DATA_ROW: u8 = b'D';
pub const ROW_DESCRIPTION: u8 = b'T';
pub const EMPTY_QUERY_RESPONSE: u8 = b'I';

/// Transaction status carried by ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Idle,
    InTransaction,
    Failed,
}

impl TxStatus {
    pub fn as_byte(self) -> u8 {
        match self {
            TxStatus::Idle => b'I',
            TxStatus::InTransaction => b'T',
            TxStatus::Failed => b'E',
        }
    }
}

/// Status of a ReadyForQuery body.
pub fn ready_for_query_status(body: &[u8]) -> Result<TxStatus, ProtocolError> {
    match body {
        [b'I'] => Ok(TxStatus::Idle),
        [b'T'] => Ok(TxStatus::InTransaction),
        [b'E'] => Ok(TxStatus::Failed),
        _ => Err(ProtocolError::Malformed {
            what: "ReadyForQuery",
        }),
    }
}

/// Name and value of a ParameterStatus body.
pub fn parameter_status_fields(body: &[u8]) -> Result<(&str, &str), ProtocolError> {
    let mut b = body;
    let name = read_cstr(&mut b, "ParameterStatus")?;
    let value = read_cstr(&mut b, "ParameterStatus")?;
    Ok((name, value))
}

/// Process id and secret of a BackendKeyData body.
pub fn backend_key_data_fields(body: &[u8]) -> Result<(u32, u32), ProtocolError> {
    let mut b = body;
    let pid = read_i32(&mut b, "BackendKeyData")? as u32;
    let secret = read_i32(&mut b, "BackendKeyData")? as u32;
    Ok((pid, secret))
}

/// An authentication request from a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest<'a> {
    Ok,
    CleartextPassword,
    Md5Password { salt: [u8; 4] },
    Sasl { mechanisms: Vec<&'a str> },
    SaslContinue { data: &'a [u8] },
    SaslFinal { data: &'a [u8] },
    Unsupported { code: i32 },
}

/// Parses an Authentication* body.
pub fn auth_request(body: &[u8]) -> Result<AuthRequest<'_>, ProtocolError> {
    let mut b = body;
    let code = read_i32(&mut b, "Authentication")?;
    Ok(match code {
        0 => AuthRequest::Ok,
        3 => AuthRequest::CleartextPassword,
        5 => {
            let salt: [u8; 4] = b.try_into().map_err(|_| ProtocolError::Malformed {
                what: "AuthenticationMD5Password",
            })?;
            AuthRequest::Md5Password { salt }
        }
        10 => {
            let mut mechanisms = Vec::new();
            loop {
                let m = read_cstr(&mut b, "AuthenticationSASL")?;
                if m.is_empty() {
                    break;
                }
                mechanisms.push(m);
            }
            AuthRequest::Sasl { mechanisms }
        }
        11 => AuthRequest::SaslContinue { data: b },
        12 => AuthRequest::SaslFinal { data: b },
        code => AuthRequest::Unsupported { code },
    })
}

/// The column values of a DataRow (`None` for SQL NULL), as sent (text or binary per the Bind).
pub fn data_row_values(body: &[u8]) -> Result<Vec<Option<&[u8]>>, ProtocolError> {
    let what = "DataRow";
    let mut b = body;
    let (count, rest) = b
        .split_at_checked(2)
        .ok_or(ProtocolError::Malformed { what })?;
    b = rest;
    let count = i16::from_be_bytes([count[0], count[1]]);
    let mut values = Vec::with_capacity(count.max(0) as usize);
    for _ in 0..count {
        let len = read_i32(&mut b, what)?;
        if len < 0 {
            values.push(None);
            continue;
        }
        let (value, rest) = b
            .split_at_checked(len as usize)
            .ok_or(ProtocolError::Malformed { what })?;
        values.push(Some(value));
        b = rest;
    }
    Ok(values)
}

/// The fields of an ErrorResponse or NoticeResponse that people and the proxy care about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: String,
    pub code: String,
    pub message: String,
}

/// Parses the fields of an ErrorResponse/NoticeResponse body.
pub fn error_fields(body: &[u8]) -> Result<ErrorFields, ProtocolError> {
    let mut b = body;
    let mut out = ErrorFields::default();
    while let Some((&kind, rest)) = b.split_first() {
        if kind == 0 {
            break;
        }
        b = rest;
        let value = read_cstr(&mut b, "ErrorResponse")?;
        match kind {
            b'S' => out.severity = value.to_owned(),
            b'C' => out.code = value.to_owned(),
            b'M' => out.message = value.to_owned(),
            _ => {}
        }
    }
    Ok(out)
}

/// Appends an ErrorResponse (severity `ERROR` or `FATAL`).
pub fn error_response(out: &mut BytesMut, severity: &str, code: &str, message: &str) {
    error_like(out, ERROR_RESPONSE, severity, code, message);
}

/// Appends a NoticeResponse.
pub fn notice_response(out: &mut BytesMut, severity: &str, code: &str, message: &str) {
    error_like(out, NOTICE_RESPONSE, severity, code, message);
}

fn error_like(out: &mut BytesMut, tag: u8, severity: &str, code: &str, message: &str) {
    let at = begin_message(out, tag);
    for (kind, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        out.put_u8(kind);
        put_cstr(out, value);
    }
    out.put_u8(0);
    finish_message(out, at);
}

/// Appends AuthenticationOk.
pub fn auth_ok(out: &mut BytesMut) {
    out.extend_from_slice(&[AUTHENTICATION, 0, 0, 0, 8, 0, 0, 0, 0]);
}

/// Appends AuthenticationCleartextPassword.
pub fn auth_cleartext(out: &mut BytesMut) {
    out.extend_from_slice(&[AUTHENTICATION, 0, 0, 0, 8, 0, 0, 0, 3]);
}

/// Appends AuthenticationMD5Password with `salt`.
pub fn auth_md5(out: &mut BytesMut, salt: [u8; 4]) {
    out.extend_from_slice(&[AUTHENTICATION, 0, 0, 0, 12, 0, 0, 0, 5]);
    out.extend_from_slice(&salt);
}

/// Appends AuthenticationSASL offering `mechanisms`.
pub fn auth_sasl(out: &mut BytesMut, mechanisms: &[&str]) {
    let at = begin_message(out, AUTHENTICATION);
    out.put_i32(10);
    for m in mechanisms {
        put_cstr(out, m);
    }
    out.put_u8(0);
    finish_message(out, at);
}

/// Appends AuthenticationSASLContinue (code 11) or AuthenticationSASLFinal (code 12).
pub fn auth_sasl_data(out: &mut BytesMut, code: i32, data: &[u8]) {
    let at = begin_message(out, AUTHENTICATION);
    out.put_i32(code);
    out.extend_from_slice(data);
    finish_message(out, at);
}

/// Appends ParameterStatus.
pub fn parameter_status(out: &mut BytesMut, name: &str, value: &str) {
    let at = begin_message(out, PARAMETER_STATUS);
    put_cstr(out, name);
    put_cstr(out, value);
    finish_message(out, at);
}

/// Appends BackendKeyData.
pub fn backend_key_data(out: &mut BytesMut, pid: u32, secret: u32) {
    out.extend_from_slice(&[BACKEND_KEY_DATA, 0, 0, 0, 12]);
    out.put_u32(pid);
    out.put_u32(secret);
}

/// Appends CommandComplete with a command tag such as `PREPARE`.
pub fn command_complete(out: &mut BytesMut, tag: &str) {
    let at = begin_message(out, COMMAND_COMPLETE);
    put_cstr(out, tag);
    finish_message(out, at);
}

/// Appends RowDescription for a result in text format: each column's name and type OID (no table,
/// size -1, modifier -1), which is all a client needs to read the values of the DataRows that follow.
pub fn row_description(out: &mut BytesMut, columns: &[(&str, u32)]) {
    let at = begin_message(out, ROW_DESCRIPTION);
    out.put_i16(columns.len() as i16);
    for (name, type_oid) in columns {
        put_cstr(out, name);
        out.put_i32(0); // table OID
        out.put_i16(0); // column number
        out.put_u32(*type_oid);
        out.put_i16(-1); // type size
        out.put_i32(-1); // type modifier
        out.put_i16(0); // text format
    }
    finish_message(out, at);
}

/// Appends DataRow with text values (`None` is SQL NULL).
pub fn data_row(out: &mut BytesMut, values: &[Option<&str>]) {
    let at = begin_message(out, DATA_ROW);
    out.put_i16(values.len() as i16);
    for v in values {
        match v {
            Some(v) => {
                out.put_i32(v.len() as i32);
                out.extend_from_slice(v.as_bytes());
            }
            None => out.put_i32(-1),
        }
    }
    finish_message(out, at);
}

/// Appends EmptyQueryResponse (the answer to a query string with no statement in it).
pub fn empty_query_response(out: &mut BytesMut) {
    out.extend_from_slice(&[EMPTY_QUERY_RESPONSE, 0, 0, 0, 4]);
}

/// Appends ReadyForQuery.
pub fn ready_for_query(out: &mut BytesMut, status: TxStatus) {
    out.extend_from_slice(&[READY_FOR_QUERY, 0, 0, 0, 5, status.as_byte()]);
}

/// Appends NegotiateProtocolVersion: the newest minor version supported and the options not recognised.
pub fn negotiate_protocol_version(out: &mut BytesMut, minor: u16, unrecognized: &[&str]) {
    let at = begin_message(out, NEGOTIATE_PROTOCOL_VERSION);
    out.put_i32((3 << 16) | i32::from(minor));
    out.put_i32(unrecognized.len() as i32);
    for o in unrecognized {
        put_cstr(out, o);
    }
    finish_message(out, at);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_round_trip() {
        let mut out = BytesMut::new();
        error_response(&mut out, "FATAL", "53300", "too many clients");
        assert_eq!(out[0], ERROR_RESPONSE);
        let f = error_fields(&out[5..]).expect("parses");
        assert_eq!(f.severity, "FATAL");
        assert_eq!(f.code, "53300");
        assert_eq!(f.message, "too many clients");
    }

    #[test]
    fn data_row_values_with_null_and_truncation() {
        let body = [0, 2, 0, 0, 0, 2, b'h', b'i', 0xff, 0xff, 0xff, 0xff];
        assert_eq!(data_row_values(&body), Ok(vec![Some(&b"hi"[..]), None]));
        assert!(data_row_values(&body[..7]).is_err());
        assert!(data_row_values(&[0]).is_err());
    }

    #[test]
    fn row_description_and_data_row_round_trip() {
        let mut out = BytesMut::new();
        row_description(&mut out, &[("database", 25), ("cl_active", 20)]);
        assert_eq!(out[0], ROW_DESCRIPTION);
        let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        assert_eq!(len + 1, out.len());
        assert_eq!(&out[5..7], &[0, 2]);
        assert_eq!(&out[7..16], b"database\0");
        let mut out = BytesMut::new();
        data_row(&mut out, &[Some("app"), None, Some("")]);
        assert_eq!(out[0], DATA_ROW);
        assert_eq!(
            data_row_values(&out[5..]),
            Ok(vec![Some(&b"app"[..]), None, Some(&b""[..])])
        );
        let mut out = BytesMut::new();
        empty_query_response(&mut out);
        assert_eq!(&out[..], &[b'I', 0, 0, 0, 4]);
    }

    #[test]
    fn ready_for_query_round_trip() {
        let mut out = BytesMut::new();
        ready_for_query(&mut out, TxStatus::InTransaction);
        assert_eq!(
            ready_for_query_status(&out[5..]),
            Ok(TxStatus::InTransaction)
        );
        assert!(ready_for_query_status(b"X").is_err());
    }

    #[test]
    fn parameter_status_and_key_data_round_trip() {
        let mut out = BytesMut::new();
        parameter_status(&mut out, "application_name", "app");
        assert_eq!(
            parameter_status_fields(&out[5..]),
            Ok(("application_name", "app"))
        );
        let mut out = BytesMut::new();
        backend_key_data(&mut out, 7, 9);
        assert_eq!(backend_key_data_fields(&out[5..]), Ok((7, 9)));
    }

    #[test]
    fn auth_requests_parse() {
        let mut out = BytesMut::new();
        auth_md5(&mut out, [1, 2, 3, 4]);
        assert_eq!(
            auth_request(&out[5..]),
            Ok(AuthRequest::Md5Password { salt: [1, 2, 3, 4] })
        );
        let mut out = BytesMut::new();
        auth_sasl(&mut out, &["SCRAM-SHA-256"]);
        assert_eq!(
            auth_request(&out[5..]),
            Ok(AuthRequest::Sasl {
                mechanisms: vec!["SCRAM-SHA-256"]
            })
        );
    }
}
