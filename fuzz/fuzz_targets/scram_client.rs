//! Arbitrary server-first and server-final messages against the SCRAM client that logs in to backends
//! with a client's keys: refused or accepted, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pgroute::auth::{Binding, KeyLogin, ScramExchange, ScramKeys, ScramVerifier, Secret, SCRAM_MECHANISM};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

/// Keys as a real client reveals them (one login, once per fuzzing process).
static KEYS: OnceLock<Option<ScramKeys>> = OnceLock::new();

fn keys() -> Option<ScramKeys> {
    let verifier = ScramVerifier::for_secret(&Secret::Plain("pw".into()))?;
    let mut client = ScramSha256::new(b"pw", ChannelBinding::unsupported());
    let exchange =
        ScramExchange::start(verifier, SCRAM_MECHANISM, client.message(), Binding::NotOffered).ok()?;
    client.update(exchange.server_first().as_bytes()).ok()?;
    Some(exchange.finish(client.message()).ok()?.keys)
}

fuzz_target!(|data: &[u8]| {
    let Some(keys) = KEYS.get_or_init(keys).clone() else {
        return;
    };
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let (first, last) = data.split_at(split);
    let mut login = KeyLogin::new(keys);
    if login.client_final(first).is_ok() {
        let _ = login.verify_server_final(last);
    }
});
