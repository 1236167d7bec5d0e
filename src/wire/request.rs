//! Client requests: decoding (server side) and encoding (client side).
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use super::codec::{begin_frame, end_frame, start_from_parts, start_parts};
use super::reader::{clip, put_str, put_u16, put_u32, put_u64, Reader};
use crate::limits;
use crate::storage::record;
use crate::wire::{
    AckMode, AmendTarget, ErrorCode, FrameHeader, Opcode, Request, WireError, FRAME_HEADER_LEN,
};

/// `Subscribe` option bit: deliver only committed records.
pub const SUBSCRIBE_COMMITTED: u8 = 0x01;
/// `History` and `Fetch` option bit: raw records rather than the current view.
pub const READ_RAW: u8 = 0x01;

/// Reads the optional trailing `options` byte of `History` and `Fetch`:
/// whether the raw view is asked for.
fn read_options(r: &mut Reader<'_>) -> Result<bool, WireError> {
    match r.remaining() {
        0 => Ok(false),
        _ => match r.u8("options")? {
            0 => Ok(false),
            READ_RAW => Ok(true),
            other => Err(r.err(format!("options {other:#04x}: unknown bits"))),
        },
    }
}

/// Decodes a client request from its header and body.
///
/// A `Publish` is checked up to its messages region (channel, ack mode,
/// count within `1..=PUBLISH_BATCH_MAX`, and a region large enough for
/// `count` length prefixes); the server then validates the region with
/// [`split_messages`] and each body with `record::check_body`.
///
/// # Errors
/// `UnknownOpcode`; `MalformedFrame` for request id 0 (a framing error that
/// ends the connection); `BadRequest` (fields out of range, bad UTF-8,
/// trailing bytes, limits exceeded), with a message naming the field.
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
        return Err(WireError::new(
            ErrorCode::MalformedFrame,
            "request_id 0 is reserved for pushes and connection-level errors",
        ));
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
        Opcode::Edit => decode_amend(&mut r, true)?,
        Opcode::Delete => decode_amend(&mut r, false)?,
        Opcode::Subscribe => Request::Subscribe {
            sub_id: r.u32("sub_id")?,
            channel: r.str(limits::CHANNEL_NAME_LEN_MAX, "channel")?,
            room: r.str(limits::ROOM_LEN_MAX, "room")?,
            start: {
                let kind = r.u8("start_kind")?;
                let value = r.u64("start_value")?;
                start_from_parts(kind, value).ok_or_else(|| bad(format!("start_kind {kind}")))?
            },
            // `options` is optional: a body may end after `start_value`.
            committed: match r.remaining() {
                0 => false,
                _ => match r.u8("options")? {
                    0 => false,
                    SUBSCRIBE_COMMITTED => true,
                    other => return Err(bad(format!("options {other:#04x}: unknown bits"))),
                },
            },
        },
        Opcode::Unsubscribe => Request::Unsubscribe {
            sub_id: r.u32("sub_id")?,
        },
        Opcode::History => decode_history(&mut r)?,
        Opcode::Fetch => Request::Fetch {
            channel: r.str(limits::CHANNEL_NAME_LEN_MAX, "channel")?,
            id: r.u64("id")?,
            raw: read_options(&mut r)?,
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
    if min.is_none_or(|min| region.len() < min) {
        return Err(r.err(format!("messages region too short for {count} messages")));
    }
    Ok(Request::Publish {
        channel,
        ack,
        count,
        messages_offset,
    })
}

fn decode_amend<'a>(r: &mut Reader<'a>, edit: bool) -> Result<Request<'a>, WireError> {
    let channel = r.str(limits::CHANNEL_NAME_LEN_MAX, "channel")?;
    let ack_byte = r.u8("ack_mode")?;
    let ack = AckMode::from_u8(ack_byte).ok_or_else(|| r.err(format!("ack_mode {ack_byte}")))?;
    let target = match r.u8("target_kind")? {
        0 => match r.u64("id")? {
            0 => return Err(r.err("id 0 names no message".into())),
            id => AmendTarget::Id(id),
        },
        1 => {
            let mut u = [0u8; 16];
            u.copy_from_slice(r.take(16, "uuid")?);
            AmendTarget::Uuid(u)
        }
        other => return Err(r.err(format!("target_kind {other}"))),
    };
    let edit = if edit {
        let ct = r.u8("content_type")?;
        if record::ContentType::from_u8(ct).is_none() {
            return Err(r.err(format!("content_type {ct}")));
        }
        Some((ct, r.rest_max(limits::PAYLOAD_LEN_MAX as usize, "payload")?))
    } else {
        None
    };
    Ok(Request::Amend {
        channel,
        ack,
        target,
        edit,
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
        raw: read_options(r)?,
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
    let mut ranges = Vec::new();
    for_each_message(region, count, &mut |start, end| ranges.push((start, end)))?;
    Ok(ranges)
}

/// [`split_messages`] without collecting: `f(start, end)` for each body, in
/// order, after its length prefix is checked (the whole region is checked
/// before the call returns `Ok`).
///
/// # Errors
/// As [`split_messages`].
pub fn for_each_message(
    region: &[u8],
    count: u32,
    f: &mut dyn FnMut(usize, usize),
) -> Result<(), WireError> {
    let mut r = Reader::new(region, ErrorCode::BadRequest);
    if count == 0 || count > limits::PUBLISH_BATCH_MAX {
        return Err(r.err(format!(
            "count {count} is not in 1..={}",
            limits::PUBLISH_BATCH_MAX
        )));
    }
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
        f(start, r.pos);
    }
    r.finish()
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
        Request::Amend {
            channel,
            ack,
            target,
            edit,
        } => {
            put_str(out, channel);
            out.push(*ack as u8);
            match target {
                AmendTarget::Id(id) => {
                    out.push(0);
                    put_u64(out, *id);
                }
                AmendTarget::Uuid(u) => {
                    out.push(1);
                    out.extend_from_slice(u);
                }
            }
            if let Some((ct, payload)) = edit {
                out.push(*ct);
                out.extend_from_slice(payload);
            }
        }
        Request::Subscribe {
            sub_id,
            channel,
            room,
            start,
            committed,
        } => {
            put_u32(out, *sub_id);
            put_str(out, channel);
            put_str(out, room);
            let (kind, value) = start_parts(*start);
            out.push(kind);
            put_u64(out, value);
            out.push(if *committed { SUBSCRIBE_COMMITTED } else { 0 });
        }
        Request::Unsubscribe { sub_id } => put_u32(out, *sub_id),
        Request::History {
            channel,
            room,
            newest_first,
            after_id,
            before_id,
            limit,
            raw,
        } => {
            put_str(out, channel);
            put_str(out, room);
            out.push(if *newest_first { 0 } else { 1 });
            put_u64(out, *after_id);
            put_u64(out, *before_id);
            put_u32(out, *limit);
            out.push(if *raw { READ_RAW } else { 0 });
        }
        Request::Fetch { channel, id, raw } => {
            put_str(out, channel);
            put_u64(out, *id);
            out.push(if *raw { READ_RAW } else { 0 });
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
        Request::Amend { edit: Some(_), .. } => Opcode::Edit,
        Request::Amend { edit: None, .. } => Opcode::Delete,
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
