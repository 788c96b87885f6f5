//! The untagged packets a client may open a connection with: StartupMessage, SSLRequest, GSSENCRequest
//! and CancelRequest. They share one shape (length, then a 32-bit code) and only this module tells them
//! apart.

use bytes::{BufMut, BytesMut};

use crate::frame::{put_cstr, read_cstr, read_i32};
use crate::ProtocolError;

const SSL_REQUEST: i32 = 80877103;
const GSSENC_REQUEST: i32 = 80877104;
const CANCEL_REQUEST: i32 = 80877102;

/// An SSLRequest, as pgroute sends it to backends.
pub const SSL_REQUEST_PACKET: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The protocol version pgroute speaks on both sides.
pub const PROTOCOL_3_0: i32 = 3 << 16;

/// What the first packet on a connection asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupRequest {
    Ssl,
    GssEnc,
    Cancel { pid: u32, secret: u32 },
    Startup(StartupParams),
}

/// Parameters of a StartupMessage, in the order the client sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupParams {
    /// The minor version the client asked for (3.minor); pgroute answers with NegotiateProtocolVersion
    /// when it is above 0.
    pub minor_version: u16,
    pub params: Vec<(String, String)>,
}

impl StartupParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Protocol options (`_pq_.*`) the client asked for; pgroute supports none and must say so.
    pub fn protocol_options(&self) -> impl Iterator<Item = &str> {
        self.params
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| k.starts_with("_pq_."))
    }
}

/// Parses a whole startup-phase packet (including its 4-byte length).
pub fn parse_startup(packet: &[u8]) -> Result<StartupRequest, ProtocolError> {
    let mut body = packet
        .get(4..)
        .ok_or(ProtocolError::Malformed { what: "startup" })?;
    let code = read_i32(&mut body, "startup")?;
    match code {
        SSL_REQUEST => Ok(StartupRequest::Ssl),
        GSSENC_REQUEST => Ok(StartupRequest::GssEnc),
        CANCEL_REQUEST => {
            let pid = read_i32(&mut body, "CancelRequest")? as u32;
            let secret = read_i32(&mut body, "CancelRequest")? as u32;
            Ok(StartupRequest::Cancel { pid, secret })
        }
        version => {
            let major = (version >> 16) as u16;
            let minor = (version & 0xffff) as u16;
            if major != 3 {
                return Err(ProtocolError::UnsupportedProtocol { major, minor });
            }
            let mut params = Vec::new();
            loop {
                let key = read_cstr(&mut body, "StartupMessage")?;
                if key.is_empty() {
                    break;
                }
                let value = read_cstr(&mut body, "StartupMessage")?;
                params.push((key.to_owned(), value.to_owned()));
            }
            Ok(StartupRequest::Startup(StartupParams {
                minor_version: minor,
                params,
            }))
        }
    }
}

/// Encodes a protocol 3.0 StartupMessage.
pub fn startup_message(out: &mut BytesMut, params: &[(&str, &str)]) {
    let start = out.len();
    out.put_i32(0);
    out.put_i32(PROTOCOL_3_0);
    for (k, v) in params {
        put_cstr(out, k);
        put_cstr(out, v);
    }
    out.put_u8(0);
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Encodes a CancelRequest for the given backend key.
pub fn cancel_request(pid: u32, secret: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[0..4].copy_from_slice(&16u32.to_be_bytes());
    out[4..8].copy_from_slice(&CANCEL_REQUEST.to_be_bytes());
    out[8..12].copy_from_slice(&pid.to_be_bytes());
    out[12..16].copy_from_slice(&secret.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_round_trip() {
        let mut out = BytesMut::new();
        startup_message(&mut out, &[("user", "alice"), ("database", "app")]);
        let StartupRequest::Startup(p) = parse_startup(&out).expect("parses") else {
            panic!("not a startup message")
        };
        assert_eq!(p.get("user"), Some("alice"));
        assert_eq!(p.get("database"), Some("app"));
        assert_eq!(p.minor_version, 0);
    }

    #[test]
    fn cancel_round_trip() {
        let c = cancel_request(42, 0xdead_beef);
        assert_eq!(
            parse_startup(&c),
            Ok(StartupRequest::Cancel {
                pid: 42,
                secret: 0xdead_beef
            })
        );
    }

    #[test]
    fn ssl_and_gss_requests() {
        let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        assert_eq!(parse_startup(&ssl), Ok(StartupRequest::Ssl));
        let gss = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
        assert_eq!(parse_startup(&gss), Ok(StartupRequest::GssEnc));
    }

    #[test]
    fn protocol_2_is_refused() {
        let v2 = [0, 0, 0, 8, 0, 2, 0, 0];
        assert_eq!(
            parse_startup(&v2),
            Err(ProtocolError::UnsupportedProtocol { major: 2, minor: 0 })
        );
    }

    #[test]
    fn unterminated_params_are_malformed() {
        let mut p = vec![0, 0, 0, 0, 0, 3, 0, 0];
        p.extend_from_slice(b"user\0bob");
        assert!(parse_startup(&p).is_err());
    }
}
