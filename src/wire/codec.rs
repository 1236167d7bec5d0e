//! Frame headers and frame building (sans-IO).
//!
//! The server, the client and the bench encode and decode every frame
//! through this module and its siblings: [`super::request`] (client
//! requests), [`super::response`] (server responses and pushes) and
//! [`super::reader`] (the bounds-checked cursor every decoder reads peer
//! bytes through, so no input can make a decoder panic or allocate more
//! than the named limits allow). The body layouts are normative in
//! `protocol.md`.
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use super::reader::Reader;
use crate::limits;
use crate::wire::{
    ErrorCode, FrameHeader, Opcode, Start, WireError, FRAME_HEADER_LEN, PROTOCOL_VERSION,
    PROTOCOL_VERSION_MIN,
};

/// Bytes of the `Deliver` body before its records: sub_id, count.
pub const DELIVER_HEADER_LEN: usize = 8;
/// Offset of the `count` field inside a frame begun by [`begin_deliver`].
const DELIVER_COUNT_OFFSET: usize = FRAME_HEADER_LEN + 4;
/// Largest whole frame (length prefix included), in bytes.
pub(super) const FRAME_TOTAL_MAX: usize = limits::FRAME_LEN_MAX as usize + 4;

/// Reads a frame header from the start of `buf`.
///
/// Returns `Ok(None)` when fewer than [`FRAME_HEADER_LEN`](super::FRAME_HEADER_LEN)
/// bytes are there. The length prefix is checked against `limits::FRAME_LEN_MAX`
/// here, before any body is buffered (as soon as its 4 bytes are there).
///
/// # Errors
/// `FrameTooLarge` for a length over the limit, `MalformedFrame` for a length
/// under 8 or non-zero flags/reserved bytes.
pub fn decode_header(buf: &[u8]) -> Result<Option<FrameHeader>, WireError> {
    let mut r = Reader::new(buf, ErrorCode::MalformedFrame);
    let Ok(len) = r.u32("length") else {
        return Ok(None);
    };
    if len > limits::FRAME_LEN_MAX {
        return Err(WireError::new(
            ErrorCode::FrameTooLarge,
            format!("frame length {len} is over {}", limits::FRAME_LEN_MAX),
        ));
    }
    let Some(body_len) = len.checked_sub(limits::FRAME_HEADER_REST_LEN) else {
        return Err(WireError::new(
            ErrorCode::MalformedFrame,
            format!(
                "frame length {len} is under {}",
                limits::FRAME_HEADER_REST_LEN
            ),
        ));
    };
    let (Ok(opcode), Ok(flags), Ok(reserved), Ok(request_id)) = (
        r.u8("opcode"),
        r.u8("flags"),
        r.u16("reserved"),
        r.u32("request_id"),
    ) else {
        return Ok(None);
    };
    if flags != 0 || reserved != 0 {
        return Err(WireError::new(
            ErrorCode::MalformedFrame,
            "flags and reserved header bytes must be 0",
        ));
    }
    let body_len = usize::try_from(body_len)
        .map_err(|_| WireError::new(ErrorCode::FrameTooLarge, "frame length"))?;
    Ok(Some(FrameHeader {
        opcode,
        request_id,
        body_len,
    }))
}

/// Starts a frame in `out` (header with a placeholder length) and returns its
/// start offset, for bodies written piecewise; finish with [`end_frame`].
pub fn begin_frame(out: &mut Vec<u8>, opcode: Opcode, request_id: u32) -> usize {
    let start = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    out.push(opcode as u8);
    out.push(0);
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&request_id.to_le_bytes());
    start
}

/// Patches the length prefix of the frame begun at `start`, which must be the
/// last frame in `out`.
///
/// # Panics
/// If the frame exceeds `limits::FRAME_LEN_MAX` (a caller bug: bodies are
/// bounded before they are written), or `start` is not a frame start.
pub fn end_frame(out: &mut [u8], start: usize) {
    let total = out
        .len()
        .checked_sub(start)
        .filter(|&t| t >= FRAME_HEADER_LEN)
        .expect("end_frame: start is not the start of a frame");
    let len = u32::try_from(total.saturating_sub(4)).unwrap_or(u32::MAX);
    assert!(
        len <= limits::FRAME_LEN_MAX,
        "frame of {len} bytes is over FRAME_LEN_MAX"
    );
    let prefix = out
        .get_mut(start..start.saturating_add(4))
        .expect("checked above");
    prefix.copy_from_slice(&len.to_le_bytes());
}

/// Bytes that can still be appended to the frame begun at `start` (the last
/// frame in `out`) before it reaches `limits::FRAME_LEN_MAX`.
pub fn frame_room(out: &[u8], start: usize) -> usize {
    FRAME_TOTAL_MAX.saturating_sub(out.len().saturating_sub(start))
}

/// Starts a `Deliver` push for `sub_id` (request_id 0) with a placeholder
/// count, and returns its start offset. Append whole records after it (check
/// [`frame_room`] first), then finish with [`end_deliver`].
pub fn begin_deliver(out: &mut Vec<u8>, sub_id: u32) -> usize {
    let start = begin_frame(out, Opcode::Deliver, 0);
    out.extend_from_slice(&sub_id.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    start
}

/// Finishes the `Deliver` begun at `start` with `count` records. With `count`
/// 0 the frame is removed from `out` instead: an empty `Deliver` is never sent.
///
/// # Panics
/// As [`end_frame`].
pub fn end_deliver(out: &mut Vec<u8>, start: usize, count: u32) {
    if count == 0 {
        out.truncate(start);
        return;
    }
    let at = start.saturating_add(DELIVER_COUNT_OFFSET);
    let slot = out
        .get_mut(at..at.saturating_add(4))
        .expect("end_deliver: start is not the start of a Deliver frame");
    slot.copy_from_slice(&count.to_le_bytes());
    end_frame(out, start);
}

/// The version this build agrees to for a client's
/// `version_min..=version_max`: the newest both speak, or `None`
/// (`UnsupportedVersion`).
pub fn negotiate_version(version_min: u16, version_max: u16) -> Option<u16> {
    let v = version_max.min(PROTOCOL_VERSION);
    (v >= version_min && v >= PROTOCOL_VERSION_MIN).then_some(v)
}

/// The (start_kind, start_value) wire fields of a subscription start.
pub fn start_parts(start: Start) -> (u8, u64) {
    match start {
        Start::New => (0, 0),
        Start::AfterId(id) => (1, id),
        Start::Earliest => (2, 0),
        Start::AtTime(us) => (3, us),
    }
}

/// The subscription start for wire fields (`start_value` is ignored for
/// kinds 0 and 2), or `None` for an unknown kind.
pub fn start_from_parts(kind: u8, value: u64) -> Option<Start> {
    Some(match kind {
        0 => Start::New,
        1 => Start::AfterId(value),
        2 => Start::Earliest,
        3 => Start::AtTime(value),
        _ => return None,
    })
}
