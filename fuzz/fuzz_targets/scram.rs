//! Arbitrary client-first and client-final messages against the SCRAM server: refused or accepted,
//! never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pgroute::auth::{ScramExchange, ScramVerifier, Secret};

/// Deriving a verifier takes 4096 HMAC rounds: once per fuzzing process, not per input.
static VERIFIER: OnceLock<Option<ScramVerifier>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some(verifier) = VERIFIER
        .get_or_init(|| ScramVerifier::for_secret(&Secret::Plain("pw".into())))
        .clone()
    else {
        return;
    };
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let (first, last) = data.split_at(split);
    if let Ok(exchange) = ScramExchange::start(verifier, first) {
        let _ = exchange.finish(last);
    }
});
