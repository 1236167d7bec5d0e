//! Fuzz target: arbitrary bytes as a stream of frames through the header,
//! request and response decoders (the read loop of a connection).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidewire::wire::fuzzing::frame_decode(data);
});
