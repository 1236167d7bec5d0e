//! Fuzz target: arbitrary bytes as a stream of HTTP requests to the Syncano
//! shim, through framing, routing, bodies, credentials and parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidewire::http::fuzzing::http_request(data);
});
