//! Turning decoded requests into broker calls and responses.

use std::sync::Arc;

use bytes::BytesMut;

use super::conn::{Coalesced, PendingAck, Sub};
use super::{ChannelSubs, IoThread};
use crate::broker::writer::{ConnRef, PublishReq, WriterMsg};
use crate::broker::{channel_name, check_room_name, Access, Caller, Channel, ChannelKind};
use crate::limits;
use crate::storage::record::{self, RecordError};
use crate::storage::{Order, View};
use crate::wire::{self, ErrorCode, FrameHeader, Opcode, Request, Response, Start, WireError};

/// What handling one frame asks of the loop.
pub(super) enum Next {
    /// Go on with the next frame.
    Continue,
    /// Stop parsing this connection for now (it is on the `again` list or
    /// waits for completions / writability).
    Pause,
    /// Send nothing more; close after the write buffer drains.
    Close,
}

/// The page a `History` request asks for (its fields but the channel).
struct PageAsk<'a> {
    room: &'a str,
    newest_first: bool,
    after_id: u64,
    before_id: u64,
    limit: u32,
    raw: bool,
}

fn bad(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::BadRequest, message)
}

impl IoThread {
    /// Handles complete frames in the read buffer, up to the per-wake budget,
    /// then hands the publish frames it gathered to the writer as one
    /// request. Returns true when the caller may read more from the socket.
    pub(super) fn handle_frames(&mut self, index: usize) -> bool {
        let more = self.handle_some_frames(index);
        self.submit_coalesced(index);
        more && self.conns.get(index).is_none_or(|c| c.stalled.is_none())
    }

    fn handle_some_frames(&mut self, index: usize) -> bool {
        for _ in 0..limits::FRAMES_PER_WAKE_MAX {
            if self.paused(index) {
                return false;
            }
            let Some(conn) = self.conns.get_mut(index) else {
                return false;
            };
            if conn.closing {
                return false;
            }
            let header = match wire::decode_header(&conn.rbuf[conn.rstart..conn.rend]) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    // An idle connection keeps no buffer: `read_some` makes
                    // one when bytes arrive.
                    if conn.rend > conn.rstart {
                        conn.reserve_frame(wire::FRAME_HEADER_LEN);
                    }
                    return true;
                }
                Err(e) => {
                    self.fail_and_close(index, 0, &e);
                    return false;
                }
            };
            if let Err(e) = super::handshake::check_frame_len(conn, &header) {
                self.fail_and_close(index, 0, &e);
                return false;
            }
            let total = wire::FRAME_HEADER_LEN + header.body_len;
            if conn.rend - conn.rstart < total {
                conn.reserve_frame(total);
                return true;
            }
            // Requests after outstanding publishes wait for their acks, so
            // responses leave in request order.
            if header.opcode != Opcode::Publish as u8
                && (conn.inflight > 0 || conn.coalesced.is_some())
            {
                return false;
            }
            let body_start = conn.rstart + wire::FRAME_HEADER_LEN;
            let rbuf = std::mem::take(&mut conn.rbuf);
            let next = self.handle_frame(
                index,
                &header,
                &rbuf[body_start..body_start + header.body_len],
            );
            let Some(conn) = self.conns.get_mut(index) else {
                return false;
            };
            conn.rbuf = rbuf;
            conn.rstart += total;
            self.mark_dirty(index);
            match next {
                Next::Continue => {}
                Next::Pause => return false,
                Next::Close => {
                    if let Some(conn) = self.conns.get_mut(index) {
                        conn.closing = true;
                    }
                    return false;
                }
            }
        }
        self.push_again(index);
        false
    }

    fn fail_and_close(&mut self, index: usize, request_id: u32, e: &WireError) {
        if let Some(conn) = self.conns.get_mut(index) {
            wire::encode_error(&mut conn.wbuf, request_id, e.code, &e.message);
            conn.closing = true;
            self.mark_dirty(index);
        }
    }

    pub(super) fn respond(&mut self, index: usize, request_id: u32, r: &Response<'_>) {
        if let Some(conn) = self.conns.get_mut(index) {
            wire::encode_response(&mut conn.wbuf, request_id, r);
        }
    }

    fn handle_frame(&mut self, index: usize, header: &FrameHeader, body: &[u8]) -> Next {
        let id = header.request_id;
        // The frame header was valid, so the stream stays in sync: a body
        // that does not parse fails this request only, unless its code is
        // one that ends the connection (protocol.md, "Error codes").
        let outcome = self
            .check_hello_first(index, header)
            .and_then(|()| wire::decode_request(header, body))
            .and_then(|r| self.dispatch(index, id, r, body));
        match outcome {
            Ok(next) => next,
            Err(e) => {
                let Some(conn) = self.conns.get_mut(index) else {
                    return Next::Close;
                };
                if e.code.closes_connection() {
                    wire::encode_error(&mut conn.wbuf, id, e.code, &e.message);
                    return Next::Close;
                }
                // A refused publish may follow publishes still with the
                // writer: its error leaves after their answers.
                let mut frame = Vec::new();
                wire::encode_error(&mut frame, id, e.code, &e.message);
                conn.answer_in_order(frame);
                Next::Continue
            }
        }
    }

    fn dispatch(
        &mut self,
        index: usize,
        id: u32,
        request: Request<'_>,
        body: &[u8],
    ) -> Result<Next, WireError> {
        self.check_phase(index, &request)?;
        match request {
            Request::Hello {
                version_min,
                version_max,
                ..
            } => self.hello(index, id, version_min, version_max)?,
            Request::Auth {
                key,
                user_key,
                instance,
            } => self.auth(index, id, key, user_key, instance)?,
            Request::Ping { data } => self.respond(index, id, &Response::Pong { data }),
            Request::Publish {
                channel,
                ack,
                count,
                messages_offset,
            } => return self.publish(index, id, channel, ack, count, &body[messages_offset..]),
            Request::Amend {
                channel,
                ack,
                target,
                edit,
            } => return self.amend(index, id, channel, ack, target, edit),
            Request::Subscribe {
                sub_id,
                channel,
                room,
                start,
                committed,
            } => self.subscribe(index, id, sub_id, channel, room, (start, committed))?,
            Request::Unsubscribe { sub_id } => self.unsubscribe(index, id, sub_id)?,
            Request::History {
                channel,
                room,
                newest_first,
                after_id,
                before_id,
                limit,
                raw,
            } => {
                let page = PageAsk {
                    room,
                    newest_first,
                    after_id,
                    before_id,
                    limit,
                    raw,
                };
                self.history(index, id, channel, &page)?;
            }
            Request::Fetch {
                channel,
                id: msg_id,
                raw,
            } => self.fetch(index, id, channel, msg_id, raw)?,
            Request::ChannelCreate { json } => {
                let ch = self.broker.create_channel(self.caller(index)?, json)?;
                self.respond_channel(index, id, &ch);
            }
            Request::ChannelGet { name } => {
                let ch = self.lookup(index, name)?;
                self.access(index, &ch)?.check_read()?;
                self.respond_channel(index, id, &ch);
            }
            Request::ChannelList => {
                let list: Vec<serde_json::Value> = self
                    .broker
                    .visible_channels(self.caller(index)?)?
                    .iter()
                    .map(|c| c.to_json())
                    .collect();
                let json = serde_json::to_vec(&list)
                    .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
                self.respond(index, id, &Response::Channels { json: &json });
            }
            Request::ChannelUpdate { name, json } => {
                let ch = self
                    .broker
                    .update_channel(self.caller(index)?, name, json)?;
                self.respond_channel(index, id, &ch);
            }
            Request::ChannelDelete { name } => {
                self.broker.delete_channel(self.caller(index)?, name)?;
                self.respond(index, id, &Response::Ok);
            }
            Request::Admin { json } => {
                let out = self.broker.admin(self.caller(index)?, json)?;
                let json = serde_json::to_vec(&out)
                    .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
                self.respond(index, id, &Response::AdminResult { json: &json });
            }
        }
        Ok(Next::Continue)
    }

    fn unsubscribe(&mut self, index: usize, id: u32, sub_id: u32) -> Result<(), WireError> {
        let conn = self.conns.get_mut(index).ok_or_else(|| bad("gone"))?;
        let generation = conn.generation;
        let sub = conn.subs.remove(&sub_id).ok_or_else(|| {
            WireError::new(
                ErrorCode::UnknownSubscription,
                format!("no subscription {sub_id}"),
            )
        })?;
        self.forget_member(sub.channel.id, index, generation, sub_id);
        self.respond(index, id, &Response::Unsubscribed { sub_id });
        Ok(())
    }

    fn fetch(
        &mut self,
        index: usize,
        id: u32,
        channel: &str,
        msg_id: u64,
        raw: bool,
    ) -> Result<(), WireError> {
        let ch = self.message_channel(index, channel)?;
        self.access(index, &ch)?.check_read()?;
        let viewer = self.viewer(index);
        let conn = self.conns.get_mut(index).ok_or_else(|| bad("gone"))?;
        let wbuf = &mut conn.wbuf;
        let answer = |raw: &[u8]| {
            let shown = record::visible(raw, viewer.as_deref());
            if shown {
                wire::encode_response(wbuf, id, &Response::Message { record: raw });
            }
            shown
        };
        let reader = ch.reader();
        let found = if raw {
            reader.get(msg_id, answer)
        } else {
            reader.get_current(msg_id, u64::MAX, answer)
        };
        if found != Some(true) {
            return Err(WireError::new(
                ErrorCode::MessageNotFound,
                format!("no message {msg_id}"),
            ));
        }
        Ok(())
    }

    /// Writes the `HistoryPage` answering request `id`: records of `channel`
    /// as `page` asks, as many as fit one frame.
    fn history(
        &mut self,
        index: usize,
        id: u32,
        channel: &str,
        page: &PageAsk<'_>,
    ) -> Result<(), WireError> {
        let ch = self.message_channel(index, channel)?;
        self.access(index, &ch)?.check_read()?;
        // Admins and `ignore_acl` keys may read every room at once.
        let every_room = page.room.is_empty() && self.caller(index)?.reads_every_room();
        let room = if every_room {
            None
        } else {
            check_room(&ch, page.room)?
        };
        if page.after_id > 0 {
            // Above a crash hole is fine; beyond the head is not.
            ch.check_after(page.after_id)?;
        }
        let viewer = self.viewer(index);
        let order = if page.newest_first {
            Order::NewestFirst
        } else {
            Order::OldestFirst
        };
        let limit = if page.limit == 0 {
            limits::HISTORY_PAGE_DEFAULT
        } else {
            page.limit.min(limits::HISTORY_PAGE_MAX)
        };
        let conn = self.conns.get_mut(index).ok_or_else(|| bad("gone"))?;
        let start = wire::begin_frame(&mut conn.wbuf, Opcode::HistoryPage, id);
        let count_at = conn.wbuf.len();
        conn.wbuf.extend_from_slice(&[0; 4]);
        let mut count = 0u32;
        let wbuf = &mut conn.wbuf;
        let budget = limits::FRAME_LEN_MAX as usize;
        ch.reader().page_as(
            room.as_deref(),
            (page.after_id > 0).then_some(page.after_id),
            (page.before_id > 0).then_some(page.before_id),
            order,
            limit as usize,
            View {
                viewer: Some(viewer.as_deref()),
                current: !page.raw,
            },
            &mut |raw| {
                if wbuf.len() - start + raw.len() > budget {
                    return false;
                }
                wbuf.extend_from_slice(raw);
                count += 1;
                true
            },
        );
        conn.wbuf[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
        wire::end_frame(&mut conn.wbuf, start);
        Ok(())
    }

    /// The connection's (checked) caller.
    pub(super) fn caller(&self, index: usize) -> Result<&Caller, WireError> {
        self.conns
            .get(index)
            .and_then(|c| c.caller.as_ref())
            .ok_or_else(|| WireError::new(ErrorCode::AuthRequired, "send Auth first"))
    }

    /// The user name message targeting is evaluated for.
    fn viewer(&self, index: usize) -> Option<Box<[u8]>> {
        self.caller(index)
            .ok()
            .and_then(|c| c.viewer())
            .map(Box::from)
    }

    /// What the connection's caller may do on `ch`, from the one-entry
    /// cache while the access epoch stands still.
    pub(super) fn access(&mut self, index: usize, ch: &Channel) -> Result<Access, WireError> {
        let epoch = self.broker.epoch();
        let conn = self.conns.get_mut(index).ok_or_else(|| bad("gone"))?;
        if let Some((cid, e, a)) = conn.access_cache {
            if cid == ch.id && e == epoch {
                return Ok(a);
            }
        }
        let caller = conn
            .caller
            .as_ref()
            .ok_or_else(|| WireError::new(ErrorCode::AuthRequired, "send Auth first"))?;
        let a = self.broker.access(caller, ch);
        conn.access_cache = Some((ch.id, epoch, a));
        Ok(a)
    }

    fn respond_channel(&mut self, index: usize, id: u32, ch: &Channel) {
        let json = ch.to_json().to_string();
        self.respond(
            index,
            id,
            &Response::Channel {
                json: json.as_bytes(),
            },
        );
    }

    /// The channel a message request names: `name`, or with the empty name
    /// the instance's user stream (user-directed messages).
    pub(super) fn message_channel(
        &mut self,
        index: usize,
        name: &str,
    ) -> Result<Arc<Channel>, WireError> {
        if !name.is_empty() {
            return self.lookup(index, name);
        }
        let caller = self.caller(index)?;
        self.broker.user_stream(caller)
    }

    /// The channel `name` of the caller's instance, through this thread's
    /// cache (keyed by the name as [`channel_name`] reads it).
    pub(super) fn lookup(&mut self, index: usize, name: &str) -> Result<Arc<Channel>, WireError> {
        let name = channel_name(name)?;
        let name = name.as_ref();
        // The channel this connection used last, without hashing its name.
        if let Some(conn) = self.conns.get(index) {
            if let Some(ch) = &conn.last_channel {
                if ch.name() == name && !ch.is_deleted() && conn.caller_epoch == self.broker.epoch()
                {
                    return Ok(ch.clone());
                }
            }
        }
        let ch = self.lookup_cached(index, name)?;
        if let Some(conn) = self.conns.get_mut(index) {
            conn.last_channel = Some(ch.clone());
        }
        Ok(ch)
    }

    /// [`lookup`](Self::lookup) of a normalised name through the thread's cache.
    fn lookup_cached(&mut self, index: usize, name: &str) -> Result<Arc<Channel>, WireError> {
        let caller = self.caller(index)?;
        let instance = caller.instance()?.id();
        if let Some(ch) = self.channel_cache.get(&instance).and_then(|m| m.get(name)) {
            if !ch.is_deleted() {
                return Ok(ch.clone());
            }
        }
        let ch = self.broker.channel(caller, name)?;
        if self.channel_cache_len >= limits::CHANNELS_MAX {
            self.channel_cache.clear();
            self.channel_cache_len = 0;
        }
        let slot = self.channel_cache.entry(instance).or_default();
        if slot.insert(name.to_string(), ch.clone()).is_none() {
            self.channel_cache_len += 1;
        }
        Ok(ch)
    }

    /// Checks a publish frame and adds it to the connection's gathered
    /// publishes (handing the gathered ones over first when this one cannot
    /// join them).
    fn publish(
        &mut self,
        index: usize,
        id: u32,
        channel: &str,
        ack: wire::AckMode,
        count: u32,
        region: &[u8],
    ) -> Result<Next, WireError> {
        let ch = self.message_channel(index, channel)?;
        if ch.is_eventlog() {
            return Err(WireError::new(
                ErrorCode::PermissionDenied,
                "nothing may be published to the eventlog channel",
            ));
        }
        self.access(index, &ch)?.check_publish()?;
        let author = self.caller(index)?.author();
        let mut ranges = std::mem::take(&mut self.ranges_scratch);
        ranges.clear();
        wire::for_each_message(region, count, &mut |s, e| ranges.push((s, e)))?;
        let conn = self.conns.get_mut(index).ok_or_else(|| bad("gone"))?;
        let joins = conn.coalesced.as_ref().is_none_or(|c| {
            c.channel_id == ch.id
                && c.ack == ack
                && c.author == author
                && c.data.len() + region.len() <= limits::COALESCE_BYTES_MAX
                && c.count + count <= limits::PUBLISH_BATCH_MAX
        });
        if !joins {
            self.submit_coalesced(index);
        }
        let conn = self.conns.get_mut(index).ok_or_else(|| bad("gone"))?;
        let seq = conn.ack_seq + conn.acks.len() as u64;
        let c = conn.coalesced.get_or_insert_with(|| Coalesced {
            channel_id: ch.id,
            author,
            ack,
            data: BytesMut::with_capacity(region.len().max(4096)),
            count: 0,
            frames: 0,
            seq,
        });
        let base = c.data.len();
        c.data.extend_from_slice(region);
        let checked = check_bodies(&ch, &mut c.data[base..], &ranges);
        self.ranges_scratch = ranges;
        let conn = self.conns.get_mut(index).ok_or_else(|| bad("gone"))?;
        let Some(c) = conn.coalesced.as_mut() else {
            return Err(bad("gone"));
        };
        if let Err(e) = checked {
            c.data.truncate(base);
            if c.frames == 0 {
                conn.coalesced = None;
            }
            return Err(e);
        }
        c.count += count;
        c.frames += 1;
        conn.inflight += 1;
        conn.acks.push_back(PendingAck {
            request_id: id,
            count,
            ack,
            channel: ch.id,
            outcome: None,
        });
        if conn.coalesced.is_some() && conn.stalled.is_some() {
            return Ok(Next::Pause);
        }
        Ok(Next::Continue)
    }

    /// Hands the connection's gathered publish frames to the writer as one
    /// request; when the append queue is full it waits as the stalled request.
    pub(super) fn submit_coalesced(&mut self, index: usize) {
        let thread = self.id;
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if conn.stalled.is_some() {
            return; // handed over once the stalled request is queued
        }
        let Some(c) = conn.coalesced.take() else {
            return;
        };
        let bytes = c.data.len();
        let msg = WriterMsg::Publish(PublishReq {
            channel_id: c.channel_id,
            author: c.author,
            data: c.data.freeze(),
            count: c.count,
            frames: c.frames,
            ack: c.ack,
            conn: ConnRef {
                thread,
                index,
                generation: conn.generation,
            },
            seq: c.seq,
        });
        if let Err(back) = self.broker.try_append(msg, bytes) {
            conn.stalled = Some(back);
            conn.stalled_bytes = bytes;
            self.push_again(index);
        }
    }

    fn subscribe(
        &mut self,
        index: usize,
        id: u32,
        sub_id: u32,
        channel: &str,
        room: &str,
        (start, committed): (Start, bool),
    ) -> Result<(), WireError> {
        let ch = self.message_channel(index, channel)?;
        self.access(index, &ch)?.check_read()?;
        let room = check_room(&ch, room)?;
        // After an id a crash took back: `Truncated` follows `Subscribed`.
        let taken_back = match start {
            Start::AfterId(n) => ch.check_after(n)?,
            _ => None,
        };
        let viewer = self.viewer(index);
        let conn = self.conns.get_mut(index).ok_or_else(|| bad("gone"))?;
        if conn.subs.contains_key(&sub_id) {
            return Err(WireError::new(
                ErrorCode::SubscriptionExists,
                format!("subscription {sub_id} exists on this connection"),
            ));
        }
        if conn.subs.len() >= limits::SUBSCRIPTIONS_PER_CONNECTION_MAX {
            return Err(WireError::new(
                ErrorCode::LimitExceeded,
                "too many subscriptions on this connection (SUBSCRIPTIONS_PER_CONNECTION_MAX)",
            ));
        }
        let reader = ch.reader().clone();
        let head_id = reader.head_id();
        let (after, not_before) = match start {
            Start::New => (head_id, 0),
            Start::AfterId(n) => (n, 0),
            Start::Earliest => (reader.oldest_id().saturating_sub(1), 0),
            // A time no record has reached yet starts after the head, and
            // records created before it are never delivered.
            Start::AtTime(t) => (reader.first_id_at_or_after(t).saturating_sub(1), t),
        };
        let cursor = reader
            .cursor(after, room.as_deref())
            .viewing_as(viewer.as_deref())
            .not_before(not_before);
        let next_id = cursor.next_id();
        let generation = conn.generation;
        // Live-only messages published from now on.
        let live_seq = reader.live_next_seq();
        conn.subs.insert(
            sub_id,
            Sub {
                channel: ch.clone(),
                cursor,
                committed,
                live_seq,
            },
        );
        wire::encode_response(
            &mut conn.wbuf,
            id,
            &Response::Subscribed {
                sub_id,
                next_id,
                head_id,
            },
        );
        if let Some(hole) = taken_back {
            wire::encode_response(
                &mut conn.wbuf,
                0,
                &Response::Truncated {
                    sub_id,
                    after_id: after,
                    kept_id: hole.kept_id,
                    next_id: hole.next_id,
                },
            );
        }
        let committed_id = reader.committed_id();
        self.channel_subs
            .entry(ch.id)
            .or_insert_with(|| ChannelSubs {
                channel: ch.clone(),
                reader,
                last_head: head_id,
                last_committed: committed_id,
                last_live: live_seq,
                members: Vec::new(),
            })
            .members
            .push((index, generation, sub_id));
        self.pump(index, sub_id);
        Ok(())
    }
}

/// Checks (and normalises in place) the message bodies of one publish frame:
/// each body, its payload against its content type, its room.
fn check_bodies(ch: &Channel, data: &mut [u8], ranges: &[(usize, usize)]) -> Result<(), WireError> {
    let live = ranges
        .iter()
        .filter(|&&(s, e)| record::body_is_live(&data[s..e]))
        .count();
    if live > 0 && live < ranges.len() {
        return Err(bad(
            "a Publish holds live-only messages only, or none (send the others in a frame of their own)",
        ));
    }
    for (i, &(s, e)) in ranges.iter().enumerate() {
        let body = &mut data[s..e];
        let info = record::check_body(body).map_err(|e| match e {
            RecordError::Malformed(why) => bad(format!("message {i}: {why}")),
            other => bad(format!("message {i}: {other}")),
        })?;
        wire::check_payload(body, info.payload_len)
            .map_err(|e| bad(format!("message {i}: {}", e.message)))?;
        if let Some(room) = info.room.and_then(|(s, e)| body.get(s..e)) {
            // `check_body` checked that the room is UTF-8.
            let room = std::str::from_utf8(room).unwrap_or_default();
            check_room_name(room)
                .map_err(|e| WireError::new(e.code, format!("message {i}: {}", e.message)))?;
        }
        if ch.is_user_stream() && !record::body_is_targeted(body) {
            return Err(bad(format!(
                "message {i}: a user-directed message (no channel) names its users in pm_users"
            )));
        }
        if ch.kind() == ChannelKind::SeparateRooms && info.room.is_none() {
            return Err(WireError::new(
                ErrorCode::RoomRequired,
                format!(
                    "message {i}: channel {:?} has separate rooms; name a room",
                    ch.name()
                ),
            ));
        }
    }
    Ok(())
}

/// The room a request names (`ROOM_LEN_MAX` was checked by the codec),
/// ASCII letters lower-cased; required on separate-rooms channels.
fn check_room(ch: &Channel, room: &str) -> Result<Option<Vec<u8>>, WireError> {
    if room.is_empty() {
        if ch.kind() == ChannelKind::SeparateRooms {
            return Err(WireError::new(
                ErrorCode::RoomRequired,
                format!("channel {:?} has separate rooms; name a room", ch.name()),
            ));
        }
        return Ok(None);
    }
    check_room_name(room)?;
    Ok(Some(room.to_ascii_lowercase().into_bytes()))
}
