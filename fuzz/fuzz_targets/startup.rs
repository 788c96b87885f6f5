//! Arbitrary startup-phase packets: parsed or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(len)) = pgroute_protocol::frame::startup_packet_len(data, 10_000) {
        let _ = pgroute_protocol::startup::parse_startup(&data[..len]);
    }
    let _ = pgroute_protocol::startup::parse_startup(data);
});
