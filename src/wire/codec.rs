//! Encoding and decoding of frames (sans-IO).
//!
//! The server, the client and the bench encode and decode every frame here.
//!
//! Every decoder reads peer bytes through [`Reader`], which bounds-checks each
//! field, so no input can make this module panic or allocate more than the
//! named limits allow. The body layouts are normative in `protocol.md`.
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::limits;
use crate::storage::record::{self, RecordView};
use crate::wire::{
    AckMode, ErrorCode, FrameHeader, Opcode, Request, Response, Start, WireError, FRAME_HEADER_LEN,
    PROTOCOL_VERSION,
};

/// Bytes of the `Deliver` body before its records: sub_id, count.
pub const DELIVER_HEADER_LEN: usize = 8;
/// Offset of the `count` field inside a frame begun by [`begin_deliver`].
const DELIVER_COUNT_OFFSET: usize = FRAME_HEADER_LEN + 4;
/// Largest whole frame (length prefix included), in bytes.
const FRAME_TOTAL_MAX: usize = limits::FRAME_LEN_MAX as usize + 4;

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

/// Decodes a client request from its header and body.
///
/// A `Publish` is checked up to its messages region (channel, ack mode,
/// count within `1..=PUBLISH_BATCH_MAX`, and a region large enough for
/// `count` length prefixes); the server then validates the region with
/// [`split_messages`] and each body with `record::check_body`.
///
/// # Errors
/// `UnknownOpcode`, `BadRequest` (fields out of range, bad UTF-8, trailing
/// bytes, limits exceeded, request id 0), with a message naming the field.
pub fn decode_request<'a>(header: &FrameHeader, body: &'a [u8]) -> Result<Request<'a>, WireError> {
    let bad = |m: String| WireError::new(ErrorCode::BadRequest, m);
    let op = Opcode::from_u8(header.opcode)
        .filter(|op| op.is_request())
        .ok_or_else(|| {
            WireError::new(
                ErrorCode::UnknownOpcode,
                format!("opcode {:#04x} is not a request", header.opcode),
            )
        })?;
    if header.request_id == 0 {
        return Err(bad("request_id 0 is reserved for server pushes".into()));
    }
    if body.len() != header.body_len {
        return Err(bad("body length does not match the frame header".into()));
    }
    let mut r = Reader::new(body, ErrorCode::BadRequest);
    let request = match op {
        Opcode::Hello => {
            let version_min = r.u16("version_min")?;
            let version_max = r.u16("version_max")?;
            let client_name = r.str(limits::CLIENT_NAME_LEN_MAX, "client_name")?;
            if version_min > version_max {
                return Err(bad("version_min is greater than version_max".into()));
            }
            Request::Hello {
                version_min,
                version_max,
                client_name,
            }
        }
        Opcode::Auth => Request::Auth {
            key: r.str(limits::KEY_LEN_MAX, "key")?,
            user_key: r.str(limits::KEY_LEN_MAX, "user_key")?,
            instance: r.str(limits::INSTANCE_NAME_LEN_MAX, "instance")?,
        },
        Opcode::Ping => Request::Ping {
            data: r.rest_max(limits::PING_DATA_LEN_MAX, "ping data")?,
        },
        Opcode::Publish => decode_publish(&mut r)?,
        Opcode::Subscribe => Request::Subscribe {
            sub_id: r.u32("sub_id")?,
            channel: r.str(limits::CHANNEL_NAME_LEN_MAX, "channel")?,
            room: r.str(limits::ROOM_LEN_MAX, "room")?,
            start: {
                let kind = r.u8("start_kind")?;
                let value = r.u64("start_value")?;
                start_from_parts(kind, value).ok_or_else(|| bad(format!("start_kind {kind}")))?
            },
        },
        Opcode::Unsubscribe => Request::Unsubscribe {
            sub_id: r.u32("sub_id")?,
        },
        Opcode::History => decode_history(&mut r)?,
        Opcode::Fetch => Request::Fetch {
            channel: r.str(limits::CHANNEL_NAME_LEN_MAX, "channel")?,
            id: r.u64("id")?,
        },
        Opcode::ChannelCreate => Request::ChannelCreate {
            json: r.json("channel json")?,
        },
        Opcode::ChannelGet => Request::ChannelGet {
            name: r.str(limits::CHANNEL_NAME_LEN_MAX, "name")?,
        },
        Opcode::ChannelList => Request::ChannelList,
        Opcode::ChannelUpdate => Request::ChannelUpdate {
            name: r.str(limits::CHANNEL_NAME_LEN_MAX, "name")?,
            json: r.json("channel json")?,
        },
        Opcode::ChannelDelete => Request::ChannelDelete {
            name: r.str(limits::CHANNEL_NAME_LEN_MAX, "name")?,
        },
        Opcode::Admin => Request::Admin {
            json: r.json("admin json")?,
        },
        _ => unreachable!("filtered by is_request"),
    };
    r.finish()?;
    Ok(request)
}

fn decode_publish<'a>(r: &mut Reader<'a>) -> Result<Request<'a>, WireError> {
    let channel = r.str(limits::CHANNEL_NAME_LEN_MAX, "channel")?;
    let ack_byte = r.u8("ack_mode")?;
    let ack = AckMode::from_u8(ack_byte).ok_or_else(|| r.err(format!("ack_mode {ack_byte}")))?;
    let count = r.u32("count")?;
    if count == 0 || count > limits::PUBLISH_BATCH_MAX {
        return Err(r.err(format!(
            "count {count} is not in 1..={}",
            limits::PUBLISH_BATCH_MAX
        )));
    }
    let messages_offset = r.pos;
    let region = r.rest();
    let min = usize::try_from(count)
        .ok()
        .and_then(|c| c.checked_mul(4 + record::BODY_HEADER_LEN));
    if !min.is_some_and(|min| region.len() >= min) {
        return Err(r.err(format!("messages region too short for {count} messages")));
    }
    Ok(Request::Publish {
        channel,
        ack,
        count,
        messages_offset,
    })
}

fn decode_history<'a>(r: &mut Reader<'a>) -> Result<Request<'a>, WireError> {
    let channel = r.str(limits::CHANNEL_NAME_LEN_MAX, "channel")?;
    let room = r.str(limits::ROOM_LEN_MAX, "room")?;
    let order = r.u8("order")?;
    let newest_first = match order {
        0 => true,
        1 => false,
        _ => return Err(r.err(format!("order {order}"))),
    };
    let after_id = r.u64("after_id")?;
    let before_id = r.u64("before_id")?;
    let limit = r.u32("limit")?;
    if limit > limits::HISTORY_PAGE_MAX {
        return Err(r.err(format!(
            "limit {limit} is over {}",
            limits::HISTORY_PAGE_MAX
        )));
    }
    Ok(Request::History {
        channel,
        room,
        newest_first,
        after_id,
        before_id,
        limit,
    })
}

/// Splits the messages region of a `Publish` into message bodies: yields the
/// `(start, end)` byte range of each body inside `region`.
///
/// Each body is `u32 body_len` then `body_len` bytes, with `body_len` in
/// `4..=MESSAGE_BODY_LEN_MAX`; the region holds exactly `count` of them.
///
/// # Errors
/// `BadRequest` when the region does not hold exactly `count` length-prefixed
/// bodies, or a body is empty or over the limits.
pub fn split_messages(region: &[u8], count: u32) -> Result<Vec<(usize, usize)>, WireError> {
    let mut r = Reader::new(region, ErrorCode::BadRequest);
    if count == 0 || count > limits::PUBLISH_BATCH_MAX {
        return Err(r.err(format!(
            "count {count} is not in 1..={}",
            limits::PUBLISH_BATCH_MAX
        )));
    }
    // Each message takes at least 8 bytes, so this bounds the allocation by
    // the region the peer actually sent as well as by the batch limit.
    let cap = usize::try_from(count)
        .unwrap_or(0)
        .min(region.len().checked_div(8).unwrap_or(0));
    let mut ranges = Vec::with_capacity(cap);
    for i in 0..count {
        let len = r.u32("body_len")?;
        if !(4..=limits::MESSAGE_BODY_LEN_MAX).contains(&len) {
            return Err(r.err(format!(
                "message {i}: body_len {len} is not in 4..={}",
                limits::MESSAGE_BODY_LEN_MAX
            )));
        }
        let len = usize::try_from(len).map_err(|_| r.err("body_len".into()))?;
        let start = r.pos;
        r.take(len, "message body")?;
        ranges.push((start, r.pos));
    }
    r.finish()?;
    Ok(ranges)
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

/// Appends one server frame (response or push) to `out`.
///
/// Push frames (`Deliver`, `Gap`, `SubscriptionClosed`) are written with
/// request_id 0 whatever `request_id` says. Error and server-name texts longer
/// than their limits are cut at a character boundary.
///
/// # Panics
/// If the frame exceeds `limits::FRAME_LEN_MAX` (see [`end_frame`]) or a
/// count does not fit a u32; callers bound both.
pub fn encode_response(out: &mut Vec<u8>, request_id: u32, response: &Response<'_>) {
    let op = response_opcode(response);
    let request_id = if op.is_push() { 0 } else { request_id };
    let start = begin_frame(out, op, request_id);
    match response {
        Response::HelloOk {
            version,
            frame_len_max,
            server_name,
        } => {
            put_u16(out, *version);
            put_u32(out, *frame_len_max);
            put_str(out, clip(server_name, limits::SERVER_NAME_LEN_MAX));
        }
        Response::AuthOk {
            identity_kind,
            identity_id,
            instance,
        } => {
            out.push(*identity_kind);
            put_u64(out, *identity_id);
            put_str(out, instance);
        }
        Response::Pong { data } => out.extend_from_slice(data),
        Response::Ok => {}
        Response::PublishAck {
            count,
            first_id,
            duplicates,
        } => {
            put_u32(out, *count);
            put_u64(out, *first_id);
            put_u32(
                out,
                u32::try_from(duplicates.len()).expect("bounded by count"),
            );
            for (index, id) in duplicates {
                put_u32(out, *index);
                put_u64(out, *id);
            }
        }
        Response::Subscribed {
            sub_id,
            next_id,
            head_id,
        } => {
            put_u32(out, *sub_id);
            put_u64(out, *next_id);
            put_u64(out, *head_id);
        }
        Response::Unsubscribed { sub_id } => put_u32(out, *sub_id),
        Response::HistoryPage { count, records } => {
            put_u32(out, *count);
            out.extend_from_slice(records);
        }
        Response::Message { record } => out.extend_from_slice(record),
        Response::Channel { json }
        | Response::Channels { json }
        | Response::AdminResult { json } => out.extend_from_slice(json),
        Response::Deliver {
            sub_id,
            count,
            records,
        } => {
            put_u32(out, *sub_id);
            put_u32(out, *count);
            out.extend_from_slice(records);
        }
        Response::Gap {
            sub_id,
            wanted_id,
            oldest_id,
        } => {
            put_u32(out, *sub_id);
            put_u64(out, *wanted_id);
            put_u64(out, *oldest_id);
        }
        Response::SubscriptionClosed {
            sub_id,
            code,
            message,
        } => {
            put_u32(out, *sub_id);
            put_u16(out, *code as u16);
            put_str(out, clip(message, limits::ERROR_MESSAGE_LEN_MAX));
        }
        Response::Error { code, message } => {
            put_u16(out, *code as u16);
            put_str(out, clip(message, limits::ERROR_MESSAGE_LEN_MAX));
        }
    }
    end_frame(out, start);
}

fn response_opcode(response: &Response<'_>) -> Opcode {
    match response {
        Response::HelloOk { .. } => Opcode::HelloOk,
        Response::AuthOk { .. } => Opcode::AuthOk,
        Response::Pong { .. } => Opcode::Pong,
        Response::Ok => Opcode::Ok,
        Response::PublishAck { .. } => Opcode::PublishAck,
        Response::Subscribed { .. } => Opcode::Subscribed,
        Response::Unsubscribed { .. } => Opcode::Unsubscribed,
        Response::HistoryPage { .. } => Opcode::HistoryPage,
        Response::Message { .. } => Opcode::Message,
        Response::Channel { .. } => Opcode::Channel,
        Response::Channels { .. } => Opcode::Channels,
        Response::AdminResult { .. } => Opcode::AdminResult,
        Response::Deliver { .. } => Opcode::Deliver,
        Response::Gap { .. } => Opcode::Gap,
        Response::SubscriptionClosed { .. } => Opcode::SubscriptionClosed,
        Response::Error { .. } => Opcode::Error,
    }
}

/// Appends an `Error` frame.
pub fn encode_error(out: &mut Vec<u8>, request_id: u32, code: ErrorCode, message: &str) {
    encode_response(out, request_id, &Response::Error { code, message });
}

/// Appends one client request to `out`. For `Publish` use [`encode_publish`].
///
/// Strings are written as given (the server rejects those over their limits),
/// except that a string over 65,535 bytes, which no limit allows, is cut to
/// fit its u16 length and is then rejected by the server just the same.
///
/// # Panics
/// For `Request::Publish` (its messages are not part of the value), and if
/// the frame exceeds `limits::FRAME_LEN_MAX` (see [`end_frame`]).
pub fn encode_request(out: &mut Vec<u8>, request_id: u32, request: &Request<'_>) {
    let op = request_opcode(request);
    let start = begin_frame(out, op, request_id);
    match request {
        Request::Hello {
            version_min,
            version_max,
            client_name,
        } => {
            put_u16(out, *version_min);
            put_u16(out, *version_max);
            put_str(out, clip(client_name, limits::CLIENT_NAME_LEN_MAX));
        }
        Request::Auth {
            key,
            user_key,
            instance,
        } => {
            put_str(out, key);
            put_str(out, user_key);
            put_str(out, instance);
        }
        Request::Ping { data } => out.extend_from_slice(data),
        Request::Publish { .. } => panic!("encode_request: use encode_publish for Publish"),
        Request::Subscribe {
            sub_id,
            channel,
            room,
            start,
        } => {
            put_u32(out, *sub_id);
            put_str(out, channel);
            put_str(out, room);
            let (kind, value) = start_parts(*start);
            out.push(kind);
            put_u64(out, value);
        }
        Request::Unsubscribe { sub_id } => put_u32(out, *sub_id),
        Request::History {
            channel,
            room,
            newest_first,
            after_id,
            before_id,
            limit,
        } => {
            put_str(out, channel);
            put_str(out, room);
            out.push(if *newest_first { 0 } else { 1 });
            put_u64(out, *after_id);
            put_u64(out, *before_id);
            put_u32(out, *limit);
        }
        Request::Fetch { channel, id } => {
            put_str(out, channel);
            put_u64(out, *id);
        }
        Request::ChannelCreate { json } => out.extend_from_slice(json),
        Request::ChannelGet { name } | Request::ChannelDelete { name } => put_str(out, name),
        Request::ChannelList => {}
        Request::Admin { json } => out.extend_from_slice(json),
        Request::ChannelUpdate { name, json } => {
            put_str(out, name);
            out.extend_from_slice(json);
        }
    }
    end_frame(out, start);
}

fn request_opcode(request: &Request<'_>) -> Opcode {
    match request {
        Request::Hello { .. } => Opcode::Hello,
        Request::Auth { .. } => Opcode::Auth,
        Request::Ping { .. } => Opcode::Ping,
        Request::Publish { .. } => Opcode::Publish,
        Request::Subscribe { .. } => Opcode::Subscribe,
        Request::Unsubscribe { .. } => Opcode::Unsubscribe,
        Request::History { .. } => Opcode::History,
        Request::Fetch { .. } => Opcode::Fetch,
        Request::ChannelCreate { .. } => Opcode::ChannelCreate,
        Request::ChannelGet { .. } => Opcode::ChannelGet,
        Request::ChannelList => Opcode::ChannelList,
        Request::ChannelUpdate { .. } => Opcode::ChannelUpdate,
        Request::ChannelDelete { .. } => Opcode::ChannelDelete,
        Request::Admin { .. } => Opcode::Admin,
    }
}

/// Appends a `Publish` request carrying `bodies` (message bodies built with
/// `storage::record::encode_body`).
///
/// # Panics
/// If the frame exceeds `limits::FRAME_LEN_MAX`: check [`publish_frame_len`]
/// first when batching.
pub fn encode_publish(
    out: &mut Vec<u8>,
    request_id: u32,
    channel: &str,
    ack: AckMode,
    bodies: &[&[u8]],
) {
    let start = begin_frame(out, Opcode::Publish, request_id);
    put_str(out, channel);
    out.push(ack as u8);
    put_u32(out, u32::try_from(bodies.len()).unwrap_or(u32::MAX));
    for body in bodies {
        put_u32(out, u32::try_from(body.len()).unwrap_or(u32::MAX));
        out.extend_from_slice(body);
    }
    end_frame(out, start);
}

/// Bytes of the whole `Publish` frame (length prefix included) that
/// [`encode_publish`] would write for `channel` and bodies of `body_lens`:
/// a client compares it with the server's `frame_len_max` + 4 when batching.
pub fn publish_frame_len(channel: &str, body_lens: impl IntoIterator<Item = usize>) -> usize {
    let fixed = FRAME_HEADER_LEN
        .saturating_add(2)
        .saturating_add(channel.len())
        .saturating_add(1 + 4);
    body_lens
        .into_iter()
        .fold(fixed, |acc, len| acc.saturating_add(4).saturating_add(len))
}

/// Decodes a server frame from its header and body (client side).
///
/// Record regions (`Deliver`, `HistoryPage`, `Message`) are checked to hold
/// exactly the announced number of length-prefixed records; each record's
/// CRC is checked when it is read with [`records`].
///
/// # Errors
/// `MalformedFrame` when the body does not match the opcode's layout, the
/// opcode is not a server frame, or a push carries a non-zero request id.
pub fn decode_response<'a>(
    header: &FrameHeader,
    body: &'a [u8],
) -> Result<Response<'a>, WireError> {
    let bad = |m: String| WireError::new(ErrorCode::MalformedFrame, m);
    let op = Opcode::from_u8(header.opcode)
        .filter(|op| !op.is_request())
        .ok_or_else(|| {
            bad(format!(
                "opcode {:#04x} is not a server frame",
                header.opcode
            ))
        })?;
    if body.len() != header.body_len {
        return Err(bad("body length does not match the frame header".into()));
    }
    match (op.is_push(), header.request_id) {
        (true, 0) => {}
        (true, _) => return Err(bad(format!("push {op:?} with a non-zero request_id"))),
        (false, 0) if op != Opcode::Error => {
            return Err(bad(format!("response {op:?} with request_id 0")))
        }
        (false, _) => {}
    }
    let mut r = Reader::new(body, ErrorCode::MalformedFrame);
    let response = match op {
        Opcode::HelloOk => Response::HelloOk {
            version: r.u16("version")?,
            frame_len_max: r.u32("frame_len_max")?,
            server_name: r.str(limits::SERVER_NAME_LEN_MAX, "server_name")?,
        },
        Opcode::AuthOk => {
            let identity_kind = r.u8("identity_kind")?;
            if identity_kind > 2 {
                return Err(bad(format!("identity_kind {identity_kind}")));
            }
            Response::AuthOk {
                identity_kind,
                identity_id: r.u64("identity_id")?,
                instance: r.str(limits::INSTANCE_NAME_LEN_MAX, "instance")?,
            }
        }
        Opcode::Pong => Response::Pong {
            data: r.rest_max(limits::PING_DATA_LEN_MAX, "pong data")?,
        },
        Opcode::Ok => Response::Ok,
        Opcode::PublishAck => decode_publish_ack(&mut r)?,
        Opcode::Subscribed => Response::Subscribed {
            sub_id: r.u32("sub_id")?,
            next_id: r.u64("next_id")?,
            head_id: r.u64("head_id")?,
        },
        Opcode::Unsubscribed => Response::Unsubscribed {
            sub_id: r.u32("sub_id")?,
        },
        Opcode::HistoryPage => {
            let count = r.u32("count")?;
            if count > limits::HISTORY_PAGE_MAX {
                return Err(bad(format!("history count {count}")));
            }
            let records = r.rest();
            check_records(records, count, "history records")?;
            Response::HistoryPage { count, records }
        }
        Opcode::Message => {
            let record = r.rest();
            check_records(record, 1, "message record")?;
            Response::Message { record }
        }
        Opcode::Channel => Response::Channel { json: r.rest() },
        Opcode::Channels => Response::Channels { json: r.rest() },
        Opcode::AdminResult => Response::AdminResult { json: r.rest() },
        Opcode::Deliver => {
            let sub_id = r.u32("sub_id")?;
            let count = r.u32("count")?;
            if count == 0 {
                return Err(bad("deliver count 0".into()));
            }
            let records = r.rest();
            check_records(records, count, "delivered records")?;
            Response::Deliver {
                sub_id,
                count,
                records,
            }
        }
        Opcode::Gap => {
            let sub_id = r.u32("sub_id")?;
            let wanted_id = r.u64("wanted_id")?;
            let oldest_id = r.u64("oldest_id")?;
            if oldest_id <= wanted_id {
                return Err(bad("gap oldest_id is not after wanted_id".into()));
            }
            Response::Gap {
                sub_id,
                wanted_id,
                oldest_id,
            }
        }
        Opcode::SubscriptionClosed => Response::SubscriptionClosed {
            sub_id: r.u32("sub_id")?,
            code: r.error_code()?,
            message: r.str(limits::ERROR_MESSAGE_LEN_MAX, "message")?,
        },
        Opcode::Error => Response::Error {
            code: r.error_code()?,
            message: r.str(limits::ERROR_MESSAGE_LEN_MAX, "message")?,
        },
        _ => unreachable!("filtered by is_request"),
    };
    r.finish()?;
    Ok(response)
}

fn decode_publish_ack<'a>(r: &mut Reader<'a>) -> Result<Response<'a>, WireError> {
    let count = r.u32("count")?;
    let first_id = r.u64("first_id")?;
    let dup_count = r.u32("dup_count")?;
    if count == 0 || count > limits::PUBLISH_BATCH_MAX || dup_count > count {
        return Err(r.err(format!("count {count} / dup_count {dup_count}")));
    }
    let dups = usize::try_from(dup_count).map_err(|_| r.err("dup_count".into()))?;
    // The exact size is known, so it is checked before allocating.
    if Some(r.remaining()) != dups.checked_mul(12) {
        return Err(r.err("duplicates region does not match dup_count".into()));
    }
    let mut duplicates = Vec::with_capacity(dups);
    for _ in 0..dups {
        let index = r.u32("duplicate index")?;
        if index >= count {
            return Err(r.err(format!("duplicate index {index} is not under {count}")));
        }
        duplicates.push((index, r.u64("duplicate id")?));
    }
    Ok(Response::PublishAck {
        count,
        first_id,
        duplicates,
    })
}

/// Checks that `buf` holds exactly `count` length-prefixed records (lengths
/// only; CRCs are checked by [`records`]).
fn check_records(buf: &[u8], count: u32, what: &str) -> Result<(), WireError> {
    let bad = |m: String| WireError::new(ErrorCode::MalformedFrame, m);
    let mut rest = buf;
    let mut seen = 0u32;
    while !rest.is_empty() {
        let total = match record::peek_record_len(rest) {
            Ok(Some(total)) => total,
            Ok(None) => return Err(bad(format!("{what}: truncated record length"))),
            Err(e) => return Err(bad(format!("{what}: {e}"))),
        };
        rest = rest
            .get(total..)
            .ok_or_else(|| bad(format!("{what}: record runs past the frame")))?;
        seen = seen.saturating_add(1);
    }
    if seen != count {
        return Err(bad(format!("{what}: {seen} records, count says {count}")));
    }
    Ok(())
}

/// Iterates the records of a `Deliver`, `HistoryPage` or `Message` body,
/// checking each record's CRC and fields.
pub fn records(buf: &[u8]) -> Records<'_> {
    Records { rest: buf }
}

/// Iterator returned by [`records`]: yields each record, or one error and
/// then stops.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, WireError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.rest);
        let bad = |m: String| WireError::new(ErrorCode::MalformedFrame, m);
        Some(match RecordView::decode(rest) {
            Ok(Some((view, used))) => {
                self.rest = rest.get(used..).unwrap_or_default();
                Ok(view)
            }
            Ok(None) => Err(bad("truncated record".into())),
            Err(e) => Err(bad(format!("record: {e}"))),
        })
    }
}

/// The version a server speaking only [`PROTOCOL_VERSION`] agrees to for a
/// client's `version_min..=version_max`, or `None` (`UnsupportedVersion`).
pub fn negotiate_version(version_min: u16, version_max: u16) -> Option<u16> {
    (version_min..=version_max)
        .contains(&PROTOCOL_VERSION)
        .then_some(PROTOCOL_VERSION)
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

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Writes a `str` (u16 length, UTF-8 bytes), cut to fit the u16 length.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let s = clip(s, usize::from(u16::MAX));
    put_u16(out, u16::try_from(s.len()).unwrap_or(u16::MAX));
    out.extend_from_slice(s.as_bytes());
}

/// `s` cut to at most `max` bytes at a character boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let end = (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    s.get(..end).unwrap_or_default()
}

/// A bounds-checked cursor over peer bytes; every error names the field and
/// carries the code of the direction being decoded.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    code: ErrorCode,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], code: ErrorCode) -> Reader<'a> {
        Reader { buf, pos: 0, code }
    }

    fn err(&self, message: String) -> WireError {
        WireError::new(self.code, message)
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], WireError> {
        let bytes = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or_else(|| self.err(format!("body ends inside {field}")))?;
        self.pos = self.pos.saturating_add(n);
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], WireError> {
        let bytes = self.take(N, field)?;
        <[u8; N]>::try_from(bytes).map_err(|_| self.err(format!("body ends inside {field}")))
    }

    fn u8(&mut self, field: &str) -> Result<u8, WireError> {
        Ok(u8::from_le_bytes(self.array(field)?))
    }

    fn u16(&mut self, field: &str) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A `str`: u16 length (checked against `max` before the bytes are
    /// touched), then that many bytes of UTF-8.
    fn str(&mut self, max: usize, field: &str) -> Result<&'a str, WireError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(self.err(format!("{field} is {len} bytes, over {max}")));
        }
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes).map_err(|_| self.err(format!("{field} is not UTF-8")))
    }

    fn error_code(&mut self) -> Result<ErrorCode, WireError> {
        let code = self.u16("code")?;
        ErrorCode::from_u16(code).ok_or_else(|| self.err(format!("unknown error code {code}")))
    }

    /// Everything left in the body.
    fn rest(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        rest
    }

    fn rest_max(&mut self, max: usize, field: &str) -> Result<&'a [u8], WireError> {
        if self.remaining() > max {
            return Err(self.err(format!("{field} is over {max} bytes")));
        }
        Ok(self.rest())
    }

    /// A JSON object filling the rest of the body (1..=ADMIN_JSON_LEN_MAX
    /// bytes); the broker parses it.
    fn json(&mut self, field: &str) -> Result<&'a [u8], WireError> {
        if self.remaining() == 0 {
            return Err(self.err(format!("{field} is empty")));
        }
        self.rest_max(limits::ADMIN_JSON_LEN_MAX, field)
    }

    fn finish(&self) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.err(format!("{n} trailing bytes after the last field"))),
        }
    }
}

impl Opcode {
    /// The opcode for a byte, if this build knows it.
    pub fn from_u8(v: u8) -> Option<Opcode> {
        Opcode::ALL.iter().copied().find(|op| *op as u8 == v)
    }

    /// True for opcodes a client sends (below 0x80).
    pub fn is_request(self) -> bool {
        (self as u8) < 0x80
    }

    /// True for server pushes, which always carry request_id 0.
    pub fn is_push(self) -> bool {
        matches!(
            self,
            Opcode::Deliver | Opcode::Gap | Opcode::SubscriptionClosed
        )
    }

    /// Every opcode, for the table check against `protocol.md`.
    pub const ALL: &'static [Opcode] = &[
        Opcode::Hello,
        Opcode::Auth,
        Opcode::Ping,
        Opcode::Publish,
        Opcode::Subscribe,
        Opcode::Unsubscribe,
        Opcode::History,
        Opcode::Fetch,
        Opcode::ChannelCreate,
        Opcode::ChannelGet,
        Opcode::ChannelList,
        Opcode::ChannelUpdate,
        Opcode::ChannelDelete,
        Opcode::Admin,
        Opcode::HelloOk,
        Opcode::AuthOk,
        Opcode::Pong,
        Opcode::Ok,
        Opcode::PublishAck,
        Opcode::Subscribed,
        Opcode::Unsubscribed,
        Opcode::HistoryPage,
        Opcode::Message,
        Opcode::Channel,
        Opcode::Channels,
        Opcode::AdminResult,
        Opcode::Deliver,
        Opcode::Gap,
        Opcode::SubscriptionClosed,
        Opcode::Error,
    ];
}

impl ErrorCode {
    /// The error code for a number, if this build knows it.
    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| *c as u16 == v)
    }

    /// True when the server closes the connection after sending this code.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            ErrorCode::MalformedFrame
                | ErrorCode::FrameTooLarge
                | ErrorCode::UnsupportedVersion
                | ErrorCode::HelloRequired
                | ErrorCode::ShuttingDown
        )
    }

    /// Every error code, for the table check against `protocol.md`.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::HelloRequired,
        ErrorCode::UnknownOpcode,
        ErrorCode::BadRequest,
        ErrorCode::AuthRequired,
        ErrorCode::AuthFailed,
        ErrorCode::PermissionDenied,
        ErrorCode::ChannelNotFound,
        ErrorCode::ChannelExists,
        ErrorCode::RoomRequired,
        ErrorCode::CustomPublishDisabled,
        ErrorCode::MessageNotFound,
        ErrorCode::InvalidName,
        ErrorCode::InstanceNotFound,
        ErrorCode::InstanceExists,
        ErrorCode::IdentityNotFound,
        ErrorCode::IdentityExists,
        ErrorCode::LimitExceeded,
        ErrorCode::SubscriptionExists,
        ErrorCode::UnknownSubscription,
        ErrorCode::StorageFull,
        ErrorCode::StorageFailed,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
    ];
}

impl AckMode {
    /// The ack mode for a wire byte.
    pub fn from_u8(v: u8) -> Option<AckMode> {
        Some(match v {
            0 => AckMode::None,
            1 => AckMode::Append,
            2 => AckMode::Durable,
            _ => return None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::storage::record::{encode_body, write_record, Author, MessageFields};
    use proptest::prelude::*;

    /// Splits one whole frame into its header and body, asserting it is whole.
    fn split(frame: &[u8]) -> (FrameHeader, &[u8]) {
        let h = decode_header(frame).unwrap().expect("whole header");
        assert_eq!(
            frame.len(),
            FRAME_HEADER_LEN + h.body_len,
            "one whole frame"
        );
        (h, &frame[FRAME_HEADER_LEN..])
    }

    fn req_frame(id: u32, req: &Request<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_request(&mut out, id, req);
        out
    }

    fn resp_frame(id: u32, resp: &Response<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_response(&mut out, id, resp);
        out
    }

    fn a_record(id: u64, payload: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        encode_body(&mut body, &MessageFields::default(), payload);
        let mut dst = vec![0u8; record::record_len(Author::Admin(1), body.len())];
        write_record(&mut dst, id, 1_700_000_000_000_000, Author::Admin(1), &body);
        dst
    }

    fn every_request() -> Vec<Request<'static>> {
        vec![
            Request::Hello {
                version_min: 1,
                version_max: 3,
                client_name: "tidewire-py/0.1",
            },
            Request::Auth {
                key: "k".repeat(limits::KEY_LEN_MAX).leak(),
                user_key: "",
                instance: "",
            },
            Request::Auth {
                key: "k",
                user_key: "u",
                instance: "acme",
            },
            Request::Ping { data: b"abc" },
            Request::Ping { data: b"" },
            Request::Subscribe {
                sub_id: 7,
                channel: "news",
                room: "lobby",
                start: Start::AfterId(41),
            },
            Request::Subscribe {
                sub_id: 0,
                channel: "news",
                room: "",
                start: Start::New,
            },
            Request::Subscribe {
                sub_id: u32::MAX,
                channel: "n",
                room: "",
                start: Start::Earliest,
            },
            Request::Subscribe {
                sub_id: 1,
                channel: "n",
                room: "",
                start: Start::AtTime(1_700_000_000_000_000),
            },
            Request::Unsubscribe { sub_id: 9 },
            Request::History {
                channel: "news",
                room: "",
                newest_first: true,
                after_id: 0,
                before_id: 100,
                limit: limits::HISTORY_PAGE_MAX,
            },
            Request::History {
                channel: "news",
                room: "r",
                newest_first: false,
                after_id: 5,
                before_id: 0,
                limit: 0,
            },
            Request::Fetch {
                channel: "news",
                id: 12,
            },
            Request::ChannelCreate {
                json: br#"{"name":"news"}"#,
            },
            Request::ChannelGet { name: "news" },
            Request::ChannelList,
            Request::ChannelUpdate {
                name: "news",
                json: br#"{"description":"x"}"#,
            },
            Request::ChannelDelete { name: "news" },
            Request::Admin {
                json: br#"{"op":"instance.list"}"#,
            },
        ]
    }

    fn every_response(records: &'static [u8]) -> Vec<(u32, Response<'static>)> {
        vec![
            (
                1,
                Response::HelloOk {
                    version: 1,
                    frame_len_max: limits::FRAME_LEN_MAX,
                    server_name: "tidewire 0.1.0",
                },
            ),
            (
                2,
                Response::AuthOk {
                    identity_kind: 0,
                    identity_id: 1,
                    instance: "default",
                },
            ),
            (3, Response::Pong { data: b"abc" }),
            (4, Response::Ok),
            (
                5,
                Response::PublishAck {
                    count: 3,
                    first_id: 10,
                    duplicates: vec![(1, 4)],
                },
            ),
            (
                5,
                Response::PublishAck {
                    count: 1,
                    first_id: 0,
                    duplicates: vec![(0, 4)],
                },
            ),
            (
                6,
                Response::Subscribed {
                    sub_id: 7,
                    next_id: 1,
                    head_id: 0,
                },
            ),
            (7, Response::Unsubscribed { sub_id: 7 }),
            (8, Response::HistoryPage { count: 2, records }),
            (
                8,
                Response::HistoryPage {
                    count: 0,
                    records: b"",
                },
            ),
            (
                9,
                Response::Message {
                    record: &records[..a_record(1, b"one").len()],
                },
            ),
            (10, Response::Channel { json: b"{}" }),
            (11, Response::Channels { json: b"[]" }),
            (11, Response::AdminResult { json: b"{}" }),
            (
                0,
                Response::Deliver {
                    sub_id: 7,
                    count: 2,
                    records,
                },
            ),
            (
                0,
                Response::Gap {
                    sub_id: 7,
                    wanted_id: 3,
                    oldest_id: 90,
                },
            ),
            (
                0,
                Response::SubscriptionClosed {
                    sub_id: 7,
                    code: ErrorCode::ChannelNotFound,
                    message: "channel deleted",
                },
            ),
            (
                12,
                Response::Error {
                    code: ErrorCode::BadRequest,
                    message: "no",
                },
            ),
            (
                0,
                Response::Error {
                    code: ErrorCode::MalformedFrame,
                    message: "",
                },
            ),
        ]
    }

    fn two_records() -> &'static [u8] {
        let mut v = a_record(1, b"one");
        v.extend(a_record(2, b"two"));
        v.leak()
    }

    #[test]
    fn every_request_round_trips() {
        for (i, req) in every_request().into_iter().enumerate() {
            let frame = req_frame(i as u32 + 1, &req);
            let (h, body) = split(&frame);
            assert_eq!(h.request_id, i as u32 + 1);
            assert_eq!(decode_request(&h, body).unwrap(), req);
        }
    }

    #[test]
    fn every_response_round_trips() {
        for (id, resp) in every_response(two_records()) {
            let frame = resp_frame(id, &resp);
            let (h, body) = split(&frame);
            assert_eq!(h.request_id, id);
            assert_eq!(decode_response(&h, body).unwrap(), resp, "{resp:?}");
        }
    }

    #[test]
    fn publish_round_trips_through_split_messages_and_check_body() {
        let mut b1 = Vec::new();
        let fields = MessageFields {
            room: Some("Lobby"),
            idempotency_key: Some(b"key-1"),
            ..MessageFields::default()
        };
        encode_body(&mut b1, &fields, b"hello");
        let mut b2 = Vec::new();
        encode_body(&mut b2, &MessageFields::default(), b"");
        let mut out = Vec::new();
        encode_publish(&mut out, 3, "news", AckMode::Durable, &[&b1, &b2]);
        assert_eq!(out.len(), publish_frame_len("news", [b1.len(), b2.len()]));
        let (h, body) = split(&out);
        let Request::Publish {
            channel,
            ack,
            count,
            messages_offset,
        } = decode_request(&h, body).unwrap()
        else {
            panic!("not a publish");
        };
        assert_eq!((channel, ack, count), ("news", AckMode::Durable, 2));
        let region = &body[messages_offset..];
        let ranges = split_messages(region, count).unwrap();
        assert_eq!(ranges.len(), 2);
        let mut first = region[ranges[0].0..ranges[0].1].to_vec();
        assert_eq!(first, b1);
        let info = record::check_body(&mut first).unwrap();
        assert_eq!(info.payload_len, 5);
        assert_eq!(&region[ranges[1].0..ranges[1].1], &b2[..]);
    }

    #[test]
    fn deliver_built_piecewise_equals_encode_response() {
        let recs = two_records();
        let mut out = Vec::new();
        let start = begin_deliver(&mut out, 7);
        out.extend_from_slice(recs);
        assert!(frame_room(&out, start) < FRAME_TOTAL_MAX);
        end_deliver(&mut out, start, 2);
        let expected = resp_frame(
            0,
            &Response::Deliver {
                sub_id: 7,
                count: 2,
                records: recs,
            },
        );
        assert_eq!(out, expected);
        let (h, body) = split(&out);
        let Response::Deliver { records: r, .. } = decode_response(&h, body).unwrap() else {
            panic!("not a deliver");
        };
        let ids: Vec<u64> = records(r).map(|v| v.unwrap().id()).collect();
        assert_eq!(ids, vec![1, 2]);
    }

    #[test]
    fn an_empty_deliver_is_removed_not_sent() {
        let mut out = vec![9u8];
        let start = begin_deliver(&mut out, 7);
        end_deliver(&mut out, start, 0);
        assert_eq!(out, vec![9u8]);
    }

    #[test]
    fn pushes_always_carry_request_id_zero() {
        let frame = resp_frame(
            55,
            &Response::Gap {
                sub_id: 1,
                wanted_id: 1,
                oldest_id: 2,
            },
        );
        assert_eq!(split(&frame).0.request_id, 0);
    }

    #[test]
    fn long_error_messages_are_cut_at_a_char_boundary() {
        let long = "é".repeat(limits::ERROR_MESSAGE_LEN_MAX);
        let frame = resp_frame(
            1,
            &Response::Error {
                code: ErrorCode::Internal,
                message: &long,
            },
        );
        let (h, body) = split(&frame);
        let Response::Error { message, .. } = decode_response(&h, body).unwrap() else {
            panic!("not an error");
        };
        assert_eq!(message.len(), limits::ERROR_MESSAGE_LEN_MAX);
    }

    #[test]
    fn headers_are_checked_before_the_body_arrives() {
        assert_eq!(decode_header(&[]), Ok(None));
        let too_big = (limits::FRAME_LEN_MAX + 1).to_le_bytes();
        assert_eq!(
            decode_header(&too_big).unwrap_err().code,
            ErrorCode::FrameTooLarge
        );
        assert_eq!(
            decode_header(&7u32.to_le_bytes()).unwrap_err().code,
            ErrorCode::MalformedFrame
        );
        let mut flags = req_frame(1, &Request::ChannelList);
        flags[5] = 1;
        assert_eq!(
            decode_header(&flags).unwrap_err().code,
            ErrorCode::MalformedFrame
        );
        let mut reserved = req_frame(1, &Request::ChannelList);
        reserved[7] = 1;
        assert_eq!(
            decode_header(&reserved).unwrap_err().code,
            ErrorCode::MalformedFrame
        );
        let max = limits::FRAME_LEN_MAX.to_le_bytes();
        let mut ok = max.to_vec();
        ok.extend([0x03, 0, 0, 0, 1, 0, 0, 0]);
        let h = decode_header(&ok).unwrap().unwrap();
        assert_eq!(h.body_len, limits::FRAME_LEN_MAX as usize - 8);
    }

    fn str_field(s: &[u8]) -> Vec<u8> {
        let mut v = (s.len() as u16).to_le_bytes().to_vec();
        v.extend_from_slice(s);
        v
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn bad_requests_are_rejected_with_a_field_name() {
        let long_channel = str_field(&[b'a'; limits::CHANNEL_NAME_LEN_MAX + 1]);
        let news = str_field(b"news");
        let empty = str_field(b"");
        let one = 1u32.to_le_bytes();
        let zero8 = 0u64.to_le_bytes();
        let cases: Vec<(u8, Vec<u8>, ErrorCode, &str)> = vec![
            (0x00, vec![], ErrorCode::UnknownOpcode, "opcode"),
            (0x7f, vec![], ErrorCode::UnknownOpcode, "opcode"),
            (0x81, vec![], ErrorCode::UnknownOpcode, "opcode"),
            (0x01, vec![1, 0], ErrorCode::BadRequest, "version_max"),
            (
                0x01,
                cat(&[&[2, 0, 1, 0], &empty]),
                ErrorCode::BadRequest,
                "version_min",
            ),
            (
                0x01,
                cat(&[&[1, 0, 1, 0], &empty, &[0]]),
                ErrorCode::BadRequest,
                "trailing",
            ),
            (
                0x01,
                cat(&[&[1, 0, 1, 0], &str_field(&[0xff])]),
                ErrorCode::BadRequest,
                "UTF-8",
            ),
            (
                0x02,
                cat(&[&str_field(&[b'k'; limits::KEY_LEN_MAX + 1]), &empty]),
                ErrorCode::BadRequest,
                "key",
            ),
            (0x02, news.clone(), ErrorCode::BadRequest, "user_key"),
            (
                0x03,
                vec![0; limits::PING_DATA_LEN_MAX + 1],
                ErrorCode::BadRequest,
                "ping",
            ),
            (
                0x10,
                cat(&[&long_channel, &[1], &one, &[4, 0, 0, 0, 0, 0, 0, 0]]),
                ErrorCode::BadRequest,
                "channel",
            ),
            (
                0x10,
                cat(&[&news, &[3], &one, &[4, 0, 0, 0, 0, 0, 0, 0]]),
                ErrorCode::BadRequest,
                "ack_mode",
            ),
            (
                0x10,
                cat(&[&news, &[1], &0u32.to_le_bytes()]),
                ErrorCode::BadRequest,
                "count",
            ),
            (
                0x10,
                cat(&[&news, &[1], &(limits::PUBLISH_BATCH_MAX + 1).to_le_bytes()]),
                ErrorCode::BadRequest,
                "count",
            ),
            (
                0x10,
                cat(&[&news, &[1], &2u32.to_le_bytes(), &[4, 0, 0, 0, 0, 0, 0, 0]]),
                ErrorCode::BadRequest,
                "too short",
            ),
            (
                0x20,
                cat(&[&one, &news, &empty, &[4], &zero8]),
                ErrorCode::BadRequest,
                "start_kind",
            ),
            (
                0x20,
                cat(&[&one, &news, &empty, &[0]]),
                ErrorCode::BadRequest,
                "start_value",
            ),
            (
                0x20,
                cat(&[
                    &one,
                    &news,
                    &str_field(&[b'r'; limits::ROOM_LEN_MAX + 1]),
                    &[0],
                    &zero8,
                ]),
                ErrorCode::BadRequest,
                "room",
            ),
            (0x21, vec![1, 0, 0], ErrorCode::BadRequest, "sub_id"),
            (
                0x30,
                cat(&[&news, &empty, &[2], &zero8, &zero8, &one]),
                ErrorCode::BadRequest,
                "order",
            ),
            (
                0x30,
                cat(&[
                    &news,
                    &empty,
                    &[0],
                    &zero8,
                    &zero8,
                    &(limits::HISTORY_PAGE_MAX + 1).to_le_bytes(),
                ]),
                ErrorCode::BadRequest,
                "limit",
            ),
            (0x31, cat(&[&news, &[1, 2, 3]]), ErrorCode::BadRequest, "id"),
            (0x40, vec![], ErrorCode::BadRequest, "empty"),
            (
                0x40,
                vec![b' '; limits::ADMIN_JSON_LEN_MAX + 1],
                ErrorCode::BadRequest,
                "over",
            ),
            (0x41, cat(&[&news, &[0]]), ErrorCode::BadRequest, "trailing"),
            (0x42, vec![0], ErrorCode::BadRequest, "trailing"),
            (0x43, news.clone(), ErrorCode::BadRequest, "empty"),
            (0x44, vec![5, 0, b'a'], ErrorCode::BadRequest, "name"),
        ];
        for (op, body, code, needle) in cases {
            let h = FrameHeader {
                opcode: op,
                request_id: 1,
                body_len: body.len(),
            };
            let err = decode_request(&h, &body).expect_err(&format!("{op:#x} {body:?}"));
            assert_eq!(err.code, code, "{op:#x}: {err}");
            assert!(
                err.message.contains(needle),
                "{op:#x}: {err} lacks {needle}"
            );
        }
        let h = FrameHeader {
            opcode: 0x42,
            request_id: 0,
            body_len: 0,
        };
        assert!(decode_request(&h, &[])
            .unwrap_err()
            .message
            .contains("request_id"));
    }

    #[test]
    fn bad_message_regions_are_rejected() {
        let ok = cat(&[&4u32.to_le_bytes(), &[0, 0, 0, 0]]);
        assert_eq!(split_messages(&ok, 1).unwrap(), vec![(4, 8)]);
        let cases: Vec<(Vec<u8>, u32, &str)> = vec![
            (ok.clone(), 2, "body_len"),
            (cat(&[&ok, &[0]]), 1, "trailing"),
            (cat(&[&3u32.to_le_bytes(), &[0, 0, 0]]), 1, "body_len 3"),
            (
                cat(&[&8u32.to_le_bytes(), &[0, 0, 0, 0]]),
                1,
                "message body",
            ),
            (
                (limits::MESSAGE_BODY_LEN_MAX + 1).to_le_bytes().to_vec(),
                1,
                "body_len",
            ),
            (ok.clone(), 0, "count"),
        ];
        for (region, count, needle) in cases {
            let err = split_messages(&region, count).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest);
            assert!(err.message.contains(needle), "{err} lacks {needle}");
        }
    }

    #[test]
    fn bad_responses_are_malformed() {
        let rec = a_record(1, b"x");
        let mut bad_crc = rec.clone();
        *bad_crc.last_mut().unwrap() ^= 1;
        let cases: Vec<(u8, u32, Vec<u8>, &str)> = vec![
            (0x01, 1, vec![], "not a server frame"),
            (0x99, 1, vec![], "not a server frame"),
            (0x84, 0, vec![], "request_id 0"),
            (0x84, 1, vec![0], "trailing"),
            (0xE1, 1, vec![0; 20], "non-zero request_id"),
            (
                0xE1,
                0,
                cat(&[&[0; 4], &5u64.to_le_bytes(), &5u64.to_le_bytes()]),
                "oldest_id",
            ),
            (0x82, 1, cat(&[&[3], &[0; 8], &[0, 0]]), "identity_kind"),
            (
                0xFF,
                1,
                cat(&[&999u16.to_le_bytes(), &[0, 0]]),
                "error code",
            ),
            (
                0x90,
                1,
                cat(&[&1u32.to_le_bytes(), &[0; 8], &2u32.to_le_bytes()]),
                "dup_count",
            ),
            (
                0x90,
                1,
                cat(&[&2u32.to_le_bytes(), &[0; 8], &1u32.to_le_bytes()]),
                "duplicates region",
            ),
            (
                0x90,
                1,
                cat(&[
                    &2u32.to_le_bytes(),
                    &[0; 8],
                    &1u32.to_le_bytes(),
                    &2u32.to_le_bytes(),
                    &[0; 8],
                ]),
                "index",
            ),
            (0xE0, 0, cat(&[&[0; 4], &0u32.to_le_bytes()]), "count 0"),
            (
                0xE0,
                0,
                cat(&[&[0; 4], &2u32.to_le_bytes(), &rec]),
                "1 records",
            ),
            (
                0xE0,
                0,
                cat(&[&[0; 4], &1u32.to_le_bytes(), &rec[..rec.len() - 1]]),
                "past the frame",
            ),
            (0xB1, 1, cat(&[&rec, &[0, 0]]), "truncated"),
            (
                0xB0,
                1,
                (limits::HISTORY_PAGE_MAX + 1).to_le_bytes().to_vec(),
                "count",
            ),
            (0x83, 1, vec![0; limits::PING_DATA_LEN_MAX + 1], "pong"),
        ];
        for (op, id, body, needle) in cases {
            let h = FrameHeader {
                opcode: op,
                request_id: id,
                body_len: body.len(),
            };
            let err = decode_response(&h, &body).expect_err(&format!("{op:#x}"));
            assert_eq!(err.code, ErrorCode::MalformedFrame, "{op:#x}: {err}");
            assert!(
                err.message.contains(needle),
                "{op:#x}: {err} lacks {needle}"
            );
        }
        // A flipped payload bit passes the length walk but fails the CRC.
        let got: Vec<_> = records(&bad_crc).collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].as_ref().unwrap_err().message.contains("CRC"));
    }

    #[test]
    fn opcodes_and_error_codes_are_unique_and_invertible() {
        for op in Opcode::ALL {
            assert_eq!(Opcode::from_u8(*op as u8), Some(*op));
        }
        let n = (0..=255u8).filter_map(Opcode::from_u8).count();
        assert_eq!(n, Opcode::ALL.len());
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u16(*c as u16), Some(*c));
        }
        let n = (0..=u16::MAX).filter_map(ErrorCode::from_u16).count();
        assert_eq!(n, ErrorCode::ALL.len());
    }

    #[test]
    fn version_negotiation_picks_the_only_version_or_none() {
        assert_eq!(negotiate_version(1, 1), Some(1));
        assert_eq!(negotiate_version(0, 9), Some(1));
        assert_eq!(negotiate_version(2, 9), None);
    }

    /// Decodes the first frame of `buf` as a sans-IO caller would.
    fn decode_prefix(buf: &[u8], request: bool) -> Result<Option<()>, WireError> {
        let Some(h) = decode_header(buf)? else {
            return Ok(None);
        };
        let Some(body) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + h.body_len) else {
            return Ok(None);
        };
        if request {
            decode_request(&h, body).map(|_| Some(()))
        } else {
            decode_response(&h, body).map(|_| Some(()))
        }
    }

    #[test]
    fn every_truncation_needs_more_bytes_and_never_panics() {
        let mut frames: Vec<(Vec<u8>, bool)> = every_request()
            .iter()
            .map(|r| (req_frame(1, r), true))
            .collect();
        let mut publish = Vec::new();
        encode_publish(
            &mut publish,
            1,
            "c",
            AckMode::Append,
            &[&[0, 0, 0, 0, b'x']],
        );
        frames.push((publish, true));
        for (id, resp) in every_response(two_records()) {
            frames.push((resp_frame(id, &resp), false));
        }
        for (frame, request) in frames {
            assert_eq!(decode_prefix(&frame, request), Ok(Some(())));
            for cut in 0..frame.len() {
                assert_eq!(decode_prefix(&frame[..cut], request), Ok(None), "cut {cut}");
                // The same cut body presented as complete: an error or a
                // shorter valid value, never a panic.
                if cut >= FRAME_HEADER_LEN {
                    let h = FrameHeader {
                        body_len: cut - FRAME_HEADER_LEN,
                        ..decode_header(&frame).unwrap().unwrap()
                    };
                    let body = &frame[FRAME_HEADER_LEN..cut];
                    if request {
                        let _ = decode_request(&h, body);
                    } else {
                        let _ = decode_response(&h, body);
                    }
                }
            }
        }
    }

    #[test]
    fn pseudo_random_inputs_never_panic_the_decoders() {
        let mut seeds: Vec<Vec<u8>> = every_request().iter().map(|r| req_frame(1, r)).collect();
        for (id, resp) in every_response(two_records()) {
            seeds.push(resp_frame(id, &resp));
        }
        let mut publish = Vec::new();
        let mut body = Vec::new();
        let fields = MessageFields {
            room: Some("Lobby"),
            uuid: Some([1; 16]),
            ..MessageFields::default()
        };
        encode_body(&mut body, &fields, b"payload");
        encode_publish(&mut publish, 1, "c", AckMode::Append, &[&body, &body]);
        seeds.push(publish);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..4000 {
            let mut input = seeds[i % seeds.len()].clone();
            for _ in 0..(next() % 4) {
                if input.is_empty() {
                    break;
                }
                let at = (next() as usize) % input.len();
                input[at] = next() as u8;
            }
            if next() % 3 == 0 {
                let len = (next() as usize) % 64;
                input = (0..len).map(|_| next() as u8).collect();
            }
            crate::wire::fuzzing::frame_decode(&input);
            crate::wire::fuzzing::request_parse(&input);
            crate::wire::fuzzing::request_parse(input.get(FRAME_HEADER_LEN..).unwrap_or(&[]));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn subscribe_and_history_round_trip(
            sub_id: u32,
            channel in "[a-z0-9_-]{0,64}",
            room in "\\PC{0,32}",
            kind in 0u8..4,
            value: u64,
            newest_first: bool,
            after_id: u64,
            before_id: u64,
            limit in 0..=limits::HISTORY_PAGE_MAX,
            id in 1u32..,
        ) {
            let start = start_from_parts(kind, value).unwrap();
            let reqs = [
                Request::Subscribe { sub_id, channel: &channel, room: &room, start },
                Request::History { channel: &channel, room: &room, newest_first, after_id, before_id, limit },
                Request::Fetch { channel: &channel, id: value },
            ];
            for req in reqs {
                let frame = req_frame(id, &req);
                let (h, body) = split(&frame);
                prop_assert_eq!(decode_request(&h, body).unwrap(), req);
            }
        }

        #[test]
        fn publish_round_trips(
            channel in "[a-z]{1,64}",
            ack in 0u8..3,
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..20),
        ) {
            let bodies: Vec<Vec<u8>> = payloads.iter().map(|p| {
                let mut b = Vec::new();
                encode_body(&mut b, &MessageFields::default(), p);
                b
            }).collect();
            let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            let mut out = Vec::new();
            encode_publish(&mut out, 9, &channel, AckMode::from_u8(ack).unwrap(), &refs);
            let (h, body) = split(&out);
            let Request::Publish { count, messages_offset, .. } = decode_request(&h, body).unwrap() else {
                panic!("not a publish");
            };
            let region = &body[messages_offset..];
            let got: Vec<&[u8]> = split_messages(region, count).unwrap().into_iter().map(|(s, e)| &region[s..e]).collect();
            prop_assert_eq!(got, refs);
        }

        #[test]
        fn publish_ack_and_errors_round_trip(
            count in 1u32..1000,
            first_id: u64,
            dups in proptest::collection::btree_map(0u32..1000, any::<u64>(), 0..10),
            code_index in 0..ErrorCode::ALL.len(),
            message in "\\PC{0,200}",
            id in 1u32..,
        ) {
            let duplicates: Vec<(u32, u64)> = dups.into_iter().filter(|(i, _)| *i < count).collect();
            let code = ErrorCode::ALL[code_index];
            let resps = [
                Response::PublishAck { count, first_id, duplicates },
                Response::Error { code, message: &message },
                Response::SubscriptionClosed { sub_id: id, code, message: &message },
            ];
            for resp in resps {
                let frame = resp_frame(id, &resp);
                let (h, body) = split(&frame);
                prop_assert_eq!(decode_response(&h, body).unwrap(), resp);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            crate::wire::fuzzing::frame_decode(&data);
            crate::wire::fuzzing::request_parse(&data);
        }
    }
}
