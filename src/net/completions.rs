//! Answers to publishes: completions from the writer and the commit thread
//! turned into `PublishAck` and `Error` frames, in the order the frames came.
//!
//! One writer request may carry several publish frames of a connection (see
//! `handle.rs`), and a request acknowledged after a sync may finish after
//! a later one that was not: each binary connection keeps its publish frames
//! in order ([`PendingAck`]) and sends an answer only when every earlier
//! frame's has gone.

use super::conn::{AckOutcome, ConnKind};
use super::IoThread;
use crate::broker::uuids::UuidKey;
use crate::broker::writer::{Completion, ConnRef};
use crate::limits;
use crate::wire::{self, AckMode, ErrorCode, Response};

impl IoThread {
    /// Takes every completion the writer and the commit thread queued for
    /// this thread.
    pub(super) fn drain_completions(&mut self) {
        while let Some(c) = self.link.completions.pop() {
            let ConnRef {
                index, generation, ..
            } = c.conn();
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            if conn.generation != generation {
                continue;
            }
            if conn.kind == ConnKind::Http {
                conn.inflight = conn.inflight.saturating_sub(1);
                let outcome = match c {
                    Completion::Published { first_id, .. } => Ok(first_id),
                    Completion::Failed { code, message, .. } => {
                        Err(http_publish_error(code, message))
                    }
                };
                self.http_published(index, outcome);
                continue;
            }
            self.record_outcome(index, c);
            self.settle_acks(index);
        }
    }

    /// Stores the outcome of each frame a completion covers.
    fn record_outcome(&mut self, index: usize, c: Completion) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        let (seq, frames) = match &c {
            Completion::Published { seq, frames, .. } | Completion::Failed { seq, frames, .. } => {
                (*seq, *frames)
            }
        };
        let Some(start) = seq
            .checked_sub(conn.ack_seq)
            .and_then(|d| usize::try_from(d).ok())
        else {
            return;
        };
        match c {
            Completion::Published {
                first_id,
                duplicates,
                uuids,
                ..
            } => {
                // Ids of non-duplicate messages are consecutive across the
                // whole request; duplicates name their original id.
                let mut next_id = first_id;
                let mut msg = 0u32;
                let mut dups = duplicates.into_iter().peekable();
                let mut uuids = uuids.into_iter().peekable();
                for slot in conn.acks.iter_mut().skip(start).take(frames as usize) {
                    let end = msg + slot.count;
                    let own = take_frame(&mut dups, msg, end);
                    let own_uuids = take_frame(&mut uuids, msg, end);
                    let new = u64::from(slot.count) - own.len() as u64;
                    let first = if new > 0 { next_id } else { 0 };
                    next_id += new;
                    slot.outcome = Some(AckOutcome::Stored {
                        first_id: first,
                        duplicates: own,
                        uuids: own_uuids,
                    });
                    msg = end;
                }
            }
            Completion::Failed { code, message, .. } => {
                for slot in conn.acks.iter_mut().skip(start).take(frames as usize) {
                    slot.outcome = Some(AckOutcome::Failed {
                        code,
                        message: message.clone(),
                    });
                }
            }
        }
    }

    /// Sends the answers of the leading frames whose outcome is known.
    fn settle_acks(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        let before = conn.inflight;
        let key = self.broker.uuid_key;
        let with_uuids = conn.version >= 2;
        while conn.acks.front().is_some_and(|a| a.outcome.is_some()) {
            let Some(a) = conn.acks.pop_front() else {
                break;
            };
            conn.ack_seq += 1;
            conn.inflight = conn.inflight.saturating_sub(1);
            match a.outcome {
                Some(AckOutcome::Stored {
                    first_id,
                    duplicates,
                    uuids,
                }) if a.ack != AckMode::None => {
                    let uuids = if with_uuids {
                        frame_uuids(&key, a.channel, a.count, first_id, &duplicates, &uuids)
                    } else {
                        Vec::new()
                    };
                    // Live-only messages (no id) are not duplicates.
                    let mut duplicates = duplicates;
                    duplicates.retain(|d| d.1 != 0);
                    wire::encode_response(
                        &mut conn.wbuf,
                        a.request_id,
                        &Response::PublishAck {
                            count: a.count,
                            first_id,
                            duplicates,
                            uuids,
                        },
                    )
                }
                Some(AckOutcome::Failed { code, message }) => {
                    wire::encode_error(&mut conn.wbuf, a.request_id, code, &message);
                }
                Some(AckOutcome::Encoded(frame)) => conn.wbuf.extend_from_slice(&frame),
                _ => {}
            }
        }
        let after = conn.inflight;
        if after == before {
            return;
        }
        // Reading resumes when nothing is left in flight (requests other
        // than publishes wait for that) or the limit is no longer reached.
        if after == 0 || before >= limits::CONNECTION_INFLIGHT_REQUESTS_MAX {
            self.push_again(index);
        }
        self.mark_dirty(index);
    }
}

/// The entries of `(message index, value)` (ascending) that fall in the
/// frame of messages `msg..end`, re-indexed from the frame's start.
fn take_frame<T: Copy>(
    it: &mut std::iter::Peekable<impl Iterator<Item = (u32, T)>>,
    msg: u32,
    end: u32,
) -> Vec<(u32, T)> {
    let mut own = Vec::new();
    while let Some(&(i, v)) = it.peek() {
        if i >= end {
            break;
        }
        own.push((i - msg, v));
        it.next();
    }
    own
}

/// The uuid of every message of a stored frame, in order: the one its
/// publisher gave (or the amended message's), else the one the server
/// assigns to its id.
fn frame_uuids(
    key: &UuidKey,
    channel: u64,
    count: u32,
    first_id: u64,
    duplicates: &[(u32, u64)],
    given: &[(u32, [u8; 16])],
) -> Vec<[u8; 16]> {
    // Both lists are in message order: walk them beside the messages.
    let mut dups = duplicates.iter().peekable();
    let mut given = given.iter().peekable();
    let mut out = Vec::with_capacity(count as usize);
    let mut next_id = first_id;
    for i in 0..count {
        let id = match dups.next_if(|d| d.0 == i) {
            Some(&(_, id)) => id,
            None => {
                next_id += 1;
                next_id - 1
            }
        };
        let u = given
            .next_if(|g| g.0 == i)
            .map(|g| g.1)
            .or_else(|| key.assign(channel, id))
            .unwrap_or_default();
        out.push(u);
    }
    out
}

/// What an HTTP publish's failure is answered with.
fn http_publish_error(code: ErrorCode, message: String) -> crate::http::ApiError {
    use crate::http::ApiError;
    match code {
        ErrorCode::ChannelNotFound => ApiError::NotFound,
        ErrorCode::StorageFull | ErrorCode::StorageFailed | ErrorCode::ShuttingDown => {
            ApiError::Unavailable(message)
        }
        _ => ApiError::ServerError,
    }
}
