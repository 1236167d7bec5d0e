//! Entry points of the fuzz targets (`fuzz/fuzz_targets/frame_decode.rs` and
//! `request_parse.rs`), kept in the crate so that unit tests run the very same
//! code over pseudo-random inputs in CI.
//!
//! Each function feeds arbitrary bytes to the sans-IO decoders and returns
//! nothing: the property under test is that no input panics, loops forever
//! or allocates beyond the limits.

use crate::storage::record;
use crate::wire::{
    decode_header, decode_request, decode_response, split_messages, Opcode, Request,
    FRAME_HEADER_LEN,
};

/// Decodes `data` as a stream of frames, as a connection's read loop would:
/// header, then body as a request and as a response, until more bytes are
/// needed or an error would close the connection.
pub fn frame_decode(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some(header)) = decode_header(rest) {
        let end = FRAME_HEADER_LEN.saturating_add(header.body_len);
        let Some(body) = rest.get(FRAME_HEADER_LEN..end) else {
            return;
        };
        // Either outcome is fine; only a panic is a finding.
        let _ = decode_request(&header, body);
        if let Ok(crate::wire::Response::Deliver { records, .. }) = decode_response(&header, body) {
            for r in crate::wire::records(records) {
                if r.is_err() {
                    break;
                }
            }
        }
        rest = rest.get(end..).unwrap_or_default();
    }
}

/// Decodes `data` as the body of every request opcode (request id 1); for a
/// `Publish` that decodes, splits its messages and checks each body as the
/// server does.
pub fn request_parse(data: &[u8]) {
    for op in Opcode::ALL.iter().filter(|op| op.is_request()) {
        let header = crate::wire::FrameHeader {
            opcode: *op as u8,
            request_id: 1,
            body_len: data.len(),
        };
        let Ok(Request::Publish {
            count,
            messages_offset,
            ..
        }) = decode_request(&header, data)
        else {
            continue;
        };
        let region = data.get(messages_offset..).unwrap_or_default();
        let Ok(ranges) = split_messages(region, count) else {
            continue;
        };
        for (start, end) in ranges {
            if let Some(body) = region.get(start..end) {
                // The server checks a private copy it may lower-case.
                let _ = record::check_body(&mut body.to_vec());
            }
        }
    }
}
