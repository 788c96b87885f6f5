//! Arbitrary bytes through the frame reader, in two chunks: never a panic, never a partial frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgroute_protocol::FrameReader;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let mut reader = FrameReader::new(4096);
    for piece in [&data[..split], &data[split..]] {
        reader.buffer_mut().extend_from_slice(piece);
        while let Ok(Some(frame)) = reader.next_frame() {
            let len = u32::from_be_bytes([
                frame.bytes[1],
                frame.bytes[2],
                frame.bytes[3],
                frame.bytes[4],
            ]);
            assert_eq!(len as usize + 1, frame.bytes.len());
            let _ = pgroute_protocol::backend::error_fields(frame.body());
            let _ = pgroute_protocol::frontend::parse_message(frame.body());
            let _ = pgroute_protocol::frontend::bind_names(frame.body());
        }
    }
});
