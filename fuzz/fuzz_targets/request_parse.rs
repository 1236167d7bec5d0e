//! Fuzz target: arbitrary bytes as the body of every request opcode; publish
//! bodies go on through `split_messages` and `record::check_body`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidewire::wire::fuzzing::request_parse(data);
});
