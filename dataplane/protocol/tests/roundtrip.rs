//! Property tests: every message the proxy builds frames and parses back to what was built, and no
//! byte sequence makes the framing panic or hand out a frame that is not whole.

use bytes::BytesMut;
use pgroute_protocol::backend::{self, TxStatus};
use pgroute_protocol::frame::{startup_packet_len, tagged_frame_len};
use pgroute_protocol::startup::{self, StartupRequest};
use pgroute_protocol::{frontend, FrameReader};
use proptest::prelude::*;

/// Strings PostgreSQL can carry in a C string: no NUL.
fn cstr() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,40}"
}

proptest! {
    #[test]
    fn query_round_trips(sql in cstr()) {
        let mut out = BytesMut::new();
        frontend::query(&mut out, &sql);
        let mut r = FrameReader::new(1 << 20);
        r.buffer_mut().extend_from_slice(&out);
        let f = r.next_frame().expect("valid").expect("whole");
        prop_assert_eq!(f.tag, frontend::QUERY);
        prop_assert_eq!(frontend::query_text(f.body()).expect("text"), sql.as_str());
        prop_assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn error_response_round_trips(code in "[0-9A-Z]{5}", message in cstr()) {
        let mut out = BytesMut::new();
        backend::error_response(&mut out, "ERROR", &code, &message);
        let f = backend::error_fields(&out[5..]).expect("fields");
        prop_assert_eq!(f.code, code);
        prop_assert_eq!(f.message, message);
    }

    #[test]
    fn parameter_status_round_trips(name in cstr(), value in cstr()) {
        let mut out = BytesMut::new();
        backend::parameter_status(&mut out, &name, &value);
        let (n, v) = backend::parameter_status_fields(&out[5..]).expect("fields");
        prop_assert_eq!((n, v), (name.as_str(), value.as_str()));
    }

    #[test]
    fn startup_round_trips(params in proptest::collection::vec(("[a-z_]{1,20}", cstr()), 0..8)) {
        let refs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut out = BytesMut::new();
        startup::startup_message(&mut out, &refs);
        prop_assert_eq!(startup_packet_len(&out, 1 << 20).expect("valid"), Some(out.len()));
        let StartupRequest::Startup(p) = startup::parse_startup(&out).expect("parses") else {
            panic!("not a startup message");
        };
        prop_assert_eq!(p.params, params);
    }

    #[test]
    fn ready_for_query_round_trips(status in prop_oneof![
        Just(TxStatus::Idle), Just(TxStatus::InTransaction), Just(TxStatus::Failed)
    ]) {
        let mut out = BytesMut::new();
        backend::ready_for_query(&mut out, status);
        prop_assert_eq!(backend::ready_for_query_status(&out[5..]), Ok(status));
    }

    /// Arbitrary bytes fed in arbitrary chunks: framing never panics, only hands out whole frames
    /// whose declared length matches, and never buffers past a bad length.
    #[test]
    fn arbitrary_input_never_yields_a_partial_frame(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        chunk in 1usize..64,
    ) {
        let mut r = FrameReader::new(256);
        for piece in data.chunks(chunk) {
            r.buffer_mut().extend_from_slice(piece);
            loop {
                match r.next_frame() {
                    Ok(Some(f)) => {
                        let declared = u32::from_be_bytes([f.bytes[1], f.bytes[2], f.bytes[3], f.bytes[4]]);
                        prop_assert_eq!(declared as usize + 1, f.bytes.len());
                        prop_assert!(f.bytes.len() <= 256);
                    }
                    Ok(None) => break,
                    Err(_) => return Ok(()), // the connection would be closed here
                }
            }
        }
        let _ = tagged_frame_len(r.buffer(), 256);
        let _ = startup::parse_startup(&data);
    }
}
