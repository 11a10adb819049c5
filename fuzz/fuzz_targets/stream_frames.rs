//! The CRI streaming server's parsers of what a client sends: SPDY/3.1
//! frames (header blocks through zlib with the spec's dictionary; every
//! frame decoded must encode and decode to itself), WebSocket channel
//! messages in every Kubernetes framing, resize messages and port-forward
//! query strings. No panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((b, rest)) if b % 2 == 0 => cri_streaming::fuzzing::spdy(rest),
        Some((_, rest)) => cri_streaming::fuzzing::channel_message(rest),
        None => {}
    }
});
