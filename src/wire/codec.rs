//! Encoding and decoding of frames (sans-IO).
//!
//! CONTRACT: the function signatures here are used by the server, the client
//! and the bench; their bodies are the codec.

use crate::wire::{AckMode, ErrorCode, FrameHeader, Opcode, Request, Response, WireError};

/// Reads a frame header from the start of `buf`.
///
/// Returns `Ok(None)` when fewer than [`FRAME_HEADER_LEN`](super::FRAME_HEADER_LEN)
/// bytes are there. The length prefix is checked against `limits::FRAME_LEN_MAX`
/// here, before any body is buffered.
///
/// # Errors
/// `FrameTooLarge` for a length over the limit, `MalformedFrame` for a length
/// under 8 or non-zero flags/reserved bytes.
pub fn decode_header(buf: &[u8]) -> Result<Option<FrameHeader>, WireError> {
    let _ = buf;
    todo!()
}

/// Decodes a client request from its header and body.
///
/// # Errors
/// `UnknownOpcode`, `BadRequest` (fields out of range, bad UTF-8, trailing
/// bytes, limits exceeded), with a message naming the field.
pub fn decode_request<'a>(header: &FrameHeader, body: &'a [u8]) -> Result<Request<'a>, WireError> {
    let _ = (header, body);
    todo!()
}

/// Splits the messages region of a `Publish` into message bodies: yields the
/// `(start, end)` byte range of each body inside `region`.
///
/// # Errors
/// `BadRequest` when the region does not hold exactly `count` length-prefixed
/// bodies, or a body is empty or over the limits.
pub fn split_messages(region: &[u8], count: u32) -> Result<Vec<(usize, usize)>, WireError> {
    let _ = (region, count);
    todo!()
}

/// Starts a frame in `out` (header with a placeholder length) and returns its
/// start offset, for bodies written piecewise; finish with [`end_frame`].
pub fn begin_frame(out: &mut Vec<u8>, opcode: Opcode, request_id: u32) -> usize {
    let _ = (out, opcode, request_id);
    todo!()
}

/// Patches the length prefix of the frame begun at `start`.
///
/// # Panics
/// If the frame exceeds `limits::FRAME_LEN_MAX` (a caller bug: bodies are
/// bounded before they are written).
pub fn end_frame(out: &mut [u8], start: usize) {
    let _ = (out, start);
    todo!()
}

/// Appends one server frame (response or push) to `out`.
pub fn encode_response(out: &mut Vec<u8>, request_id: u32, response: &Response<'_>) {
    let _ = (out, request_id, response);
    todo!()
}

/// Appends an `Error` frame.
pub fn encode_error(out: &mut Vec<u8>, request_id: u32, code: ErrorCode, message: &str) {
    encode_response(out, request_id, &Response::Error { code, message });
}

/// Appends one client request to `out`. For `Publish` use [`encode_publish`].
///
/// # Panics
/// For `Request::Publish` (its messages are not part of the value).
pub fn encode_request(out: &mut Vec<u8>, request_id: u32, request: &Request<'_>) {
    let _ = (out, request_id, request);
    todo!()
}

/// Appends a `Publish` request carrying `bodies` (message bodies built with
/// `storage::record::encode_body`).
pub fn encode_publish(
    out: &mut Vec<u8>,
    request_id: u32,
    channel: &str,
    ack: AckMode,
    bodies: &[&[u8]],
) {
    let _ = (out, request_id, channel, ack, bodies);
    todo!()
}

/// Decodes a server frame from its header and body (client side).
///
/// # Errors
/// `MalformedFrame` when the body does not match the opcode's layout.
pub fn decode_response<'a>(
    header: &FrameHeader,
    body: &'a [u8],
) -> Result<Response<'a>, WireError> {
    let _ = (header, body);
    todo!()
}

impl Opcode {
    /// The opcode for a byte, if this build knows it.
    pub fn from_u8(v: u8) -> Option<Opcode> {
        let _ = v;
        todo!()
    }
    /// Every opcode, for the table check against `protocol.md`.
    pub const ALL: &'static [Opcode] = &[];
}

impl ErrorCode {
    /// The error code for a number, if this build knows it.
    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        let _ = v;
        todo!()
    }
    /// Every error code, for the table check against `protocol.md`.
    pub const ALL: &'static [ErrorCode] = &[];
}
