//! Server responses and pushes: encoding (server side) and decoding
//! (client side), and walking the records they carry.
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use super::codec::{begin_frame, end_frame};
use super::reader::{clip, put_str, put_u16, put_u32, put_u64, Reader};
use crate::limits;
use crate::storage::record::{self, RecordView};
use crate::wire::{ErrorCode, FrameHeader, Opcode, Response, WireError};

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
            uuids,
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
            for u in uuids {
                out.extend_from_slice(u);
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
        Response::Truncated {
            sub_id,
            after_id,
            kept_id,
            next_id,
        } => {
            put_u32(out, *sub_id);
            put_u64(out, *after_id);
            put_u64(out, *kept_id);
            put_u64(out, *next_id);
        }
        Response::Live { sub_id, record } => {
            put_u32(out, *sub_id);
            out.extend_from_slice(record);
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
        Response::Truncated { .. } => Opcode::Truncated,
        Response::Live { .. } => Opcode::Live,
        Response::SubscriptionClosed { .. } => Opcode::SubscriptionClosed,
        Response::Error { .. } => Opcode::Error,
    }
}

/// Appends an `Error` frame.
pub fn encode_error(out: &mut Vec<u8>, request_id: u32, code: ErrorCode, message: &str) {
    encode_response(out, request_id, &Response::Error { code, message });
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
        Opcode::Truncated => {
            let sub_id = r.u32("sub_id")?;
            let after_id = r.u64("after_id")?;
            let kept_id = r.u64("kept_id")?;
            let next_id = r.u64("next_id")?;
            if !(kept_id < after_id && after_id < next_id) {
                return Err(bad("truncated ids out of order".into()));
            }
            Response::Truncated {
                sub_id,
                after_id,
                kept_id,
                next_id,
            }
        }
        Opcode::Live => {
            let sub_id = r.u32("sub_id")?;
            let record = r.rest();
            check_records(record, 1, "live record")?;
            if record.get(8..16) != Some(&[0u8; 8][..]) {
                return Err(bad("a live-only record has id 0".into()));
            }
            Response::Live { sub_id, record }
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
    // The exact size is known, so it is checked before allocating: the
    // duplicates, then under version 2 one uuid per message.
    let n = usize::try_from(count).map_err(|_| r.err("count".into()))?;
    let dup_bytes = dups.checked_mul(12);
    let with_uuids = dup_bytes.and_then(|d| n.checked_mul(16).and_then(|u| u.checked_add(d)));
    let has_uuids = match Some(r.remaining()) {
        x if x == dup_bytes => false,
        x if x == with_uuids => true,
        _ => return Err(r.err("duplicates region does not match dup_count".into())),
    };
    let mut duplicates = Vec::with_capacity(dups);
    for _ in 0..dups {
        let index = r.u32("duplicate index")?;
        if index >= count {
            return Err(r.err(format!("duplicate index {index} is not under {count}")));
        }
        duplicates.push((index, r.u64("duplicate id")?));
    }
    let mut uuids = Vec::with_capacity(if has_uuids { n } else { 0 });
    while has_uuids && r.remaining() > 0 {
        let bytes = r.take(16, "uuid")?;
        let mut u = [0u8; 16];
        u.copy_from_slice(bytes);
        uuids.push(u);
    }
    Ok(Response::PublishAck {
        count,
        first_id,
        duplicates,
        uuids,
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
