//! Arbitrary client-first and client-final messages against the SCRAM server: refused or accepted,
//! never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pgroute::auth::{
    Binding, ScramExchange, ScramVerifier, Secret, SCRAM_MECHANISM, SCRAM_MECHANISM_PLUS,
};

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
    // The second byte picks the mechanism and whether binding was offered, as a server would see them.
    let choice = data.get(1).copied().unwrap_or(0);
    let mechanism = if choice & 1 == 0 {
        SCRAM_MECHANISM
    } else {
        SCRAM_MECHANISM_PLUS
    };
    let binding = if choice & 2 == 0 {
        Binding::NotOffered
    } else {
        Binding::Offered(b"end-point-hash")
    };
    if let Ok(exchange) = ScramExchange::start(verifier, mechanism, first, binding) {
        let _ = exchange.finish(last);
    }
});
