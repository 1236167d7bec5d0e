//! The Channelstream server API on the HTTP listener: its paths, its
//! request signatures and address list, and its answers; the operations
//! run on the broker's Channelstream state (`channelstream`).

use bytes::Bytes;
use serde_json::{json, Value};

use super::super::IoThread;
use super::{HttpWait, Waiting};
use crate::broker::writer::{AmendReq, ConnRef, PublishReq, WriterMsg};
use std::sync::Arc;

use crate::broker::{Channel, ChannelstreamSettings, Instance, USER_STREAM_CHANNEL};
use crate::channelstream::state::Mark;
use crate::channelstream::{self as cs, message, sign, Answer};
use crate::http::request::{Method, Request};
use crate::http::response::{write_response, ResponseOptions};
use crate::storage::record::{self, Author, ContentType, MessageFields};
use crate::storage::AmendTarget;
use crate::wire::AckMode;

/// The Channelstream paths this build serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CsRoute {
    Connect,
    Subscribe,
    Unsubscribe,
    UserState,
    ChannelConfig,
    Info,
    Disconnect,
    Message,
    Listen,
    Ws,
}

fn cs_route(path: &str) -> Option<CsRoute> {
    Some(match path {
        "/connect" => CsRoute::Connect,
        "/subscribe" => CsRoute::Subscribe,
        "/unsubscribe" => CsRoute::Unsubscribe,
        "/user_state" => CsRoute::UserState,
        "/channel_config" => CsRoute::ChannelConfig,
        "/info" => CsRoute::Info,
        "/disconnect" => CsRoute::Disconnect,
        "/message" => CsRoute::Message,
        "/listen" => CsRoute::Listen,
        "/ws" => CsRoute::Ws,
        _ => return None,
    })
}

/// The CORS headers Channelstream adds to its successful answers (with
/// `Access-Control-Allow-Origin: *`, which every answer of this listener has).
const CS_CORS: [(&str, &str); 4] = [
    ("XDomainRequestAllowed", "1"),
    ("Access-Control-Allow-Methods", "GET, POST, OPTIONS, PUT, DELETE, PATCH"),
    (
        "Access-Control-Allow-Headers",
        "Content-Type, Depth, User-Agent, X-File-Size, X-Requested-With, If-Modified-Since, X-File-Name, Cache-Control, Pragma, Origin, Connection, Referer, Cookie",
    ),
    ("Access-Control-Max-Age", "86400"),
];

/// Token ages Channelstream accepts, in seconds.
const TOKEN_MAX_AGE_SECS: u64 = 60;

/// Why a signed request is refused.
enum Refused {
    /// No token, or a peer not on the address list: 403.
    Forbidden,
    /// A token that does not verify: 401.
    BadSignature,
}

impl IoThread {
    /// Answers `req` when it is a Channelstream API request and the API is
    /// on; false otherwise (the Syncano routes answer it).
    pub(super) fn channelstream(
        &mut self,
        index: usize,
        req: &Request,
        opts: &ResponseOptions,
    ) -> bool {
        let Some(settings) = self.broker.channelstream.clone() else {
            return false;
        };
        let Some(route) = cs_route(&req.path) else {
            return false;
        };
        if req.method == Method::Options {
            // Channelstream answers every preflight 200, empty.
            if let Some(conn) = self.conns.get_mut(index) {
                write_response(&mut conn.wbuf, 200, &CS_CORS, b"", opts);
            }
            return true;
        }
        let post_only = !matches!(
            route,
            CsRoute::Info | CsRoute::Disconnect | CsRoute::Message | CsRoute::Listen | CsRoute::Ws
        );
        let message_kind = match req.method {
            Method::Post => Some(message::Kind::Send),
            Method::Patch => Some(message::Kind::Edit),
            Method::Delete => Some(message::Kind::Delete),
            _ => None,
        };
        let wrong_method = (post_only && req.method != Method::Post)
            || (route == CsRoute::Message && message_kind.is_none())
            || (matches!(route, CsRoute::Listen | CsRoute::Ws) && req.method != Method::Get);
        let answer = if wrong_method {
            (
                404,
                json!({"message": "The resource could not be found.", "code": "404 Not Found", "title": "Not Found"}),
            )
        } else {
            let unsigned = matches!(route, CsRoute::Disconnect | CsRoute::Listen | CsRoute::Ws);
            match self.cs_check(index, req, &settings, unsigned) {
                Err(Refused::Forbidden) => (
                    403,
                    json!({"message": "Access was denied to this resource.", "code": "403 Forbidden", "title": "Forbidden"}),
                ),
                Err(Refused::BadSignature) => (401, json!({"request": "Bad Signature"})),
                Ok(()) => match (route, message_kind) {
                    (CsRoute::Message, Some(kind)) => {
                        match self.cs_messages(index, req, &settings, kind, opts) {
                            Some(answer) => answer,
                            None => return true, // answered when the writer is done
                        }
                    }
                    (CsRoute::Ws, _) => match self.cs_ws_upgrade(index, req, &settings) {
                        Ok(()) => return true,
                        Err(answer) => answer,
                    },
                    (CsRoute::Listen, _) => match self.cs_listen(index, req, &settings, opts) {
                        Some(answer) => answer,
                        None => return true, // parked
                    },
                    _ => self.cs_run(route, req, &settings),
                },
            }
        };
        if let Some(conn) = self.conns.get_mut(index) {
            let (status, body) = answer;
            let headers: &[(&str, &str)] = if status == 200 { &CS_CORS } else { &[] };
            write_response(
                &mut conn.wbuf,
                status,
                headers,
                &cs::json::to_vec(&body),
                opts,
            );
            if !opts.keep_alive {
                conn.closing = true;
            }
        }
        true
    }

    /// Channelstream's checks: the peer's address, then the signature (a
    /// bad token is refused even on the unsigned `/disconnect`).
    fn cs_check(
        &self,
        index: usize,
        req: &Request,
        settings: &ChannelstreamSettings,
        unsigned: bool,
    ) -> Result<(), Refused> {
        let peer = self
            .conns
            .get(index)
            .and_then(|c| c.stream.peer_addr().ok())
            .map(|a| a.ip().to_string());
        let allowed = settings
            .allow_posting_from
            .iter()
            .any(|a| a == "0.0.0.0" || peer.as_deref() == Some(a.as_str()));
        if !allowed {
            return if unsigned {
                Ok(())
            } else {
                Err(Refused::Forbidden)
            };
        }
        let token = req
            .header("x-channelstream-secret")
            .or_else(|| req.query_raw("secret"));
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return if unsigned {
                Ok(())
            } else {
                Err(Refused::Forbidden)
            };
        };
        let now_secs = self.broker.clock().now_us() / 1_000_000;
        sign::verify(
            &settings.secret,
            token.as_bytes(),
            now_secs,
            Some(TOKEN_MAX_AGE_SECS),
        )
        .map_err(|_| Refused::BadSignature)
    }

    /// Runs one operation on the broker's Channelstream state.
    fn cs_run(
        &mut self,
        route: CsRoute,
        req: &Request,
        settings: &ChannelstreamSettings,
    ) -> (u16, serde_json::Value) {
        let now = self.broker.clock().now_us();
        let mut new_uuid = || record::random_uuid().unwrap_or_default();
        let mut st = self
            .broker
            .cs_state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // (Idle connections are collected once a second on io thread 0.)
        let mut events = Vec::new();
        let inst = self.broker.instance(&settings.instance);
        let history = |name: &str, config: cs::schema::ChannelConfig| match &inst {
            Some(inst) => self.cs_history(inst, name, config),
            None => Vec::new(),
        };
        let body = &req.body;
        let query_conn = req.query_raw("conn_id");
        let (answer, op_events) = match route {
            CsRoute::Connect => cs::connect(&mut st, body, now, &mut new_uuid, &history),
            CsRoute::Subscribe => cs::subscription(
                &mut st,
                body,
                query_conn,
                true,
                now,
                &mut new_uuid,
                &history,
            ),
            CsRoute::Unsubscribe => cs::subscription(
                &mut st,
                body,
                query_conn,
                false,
                now,
                &mut new_uuid,
                &history,
            ),
            CsRoute::UserState => cs::user_state(&mut st, body, now),
            CsRoute::ChannelConfig => cs::channel_config(&mut st, body, now, &mut new_uuid),
            CsRoute::Info => (cs::info(&st, body, &history), Vec::new()),
            CsRoute::Disconnect => {
                let post = (req.method == Method::Post).then_some(body.as_slice());
                cs::disconnect(&mut st, post, query_conn, now)
            }
            CsRoute::Message | CsRoute::Listen | CsRoute::Ws => (Answer::Internal, Vec::new()),
        };
        events.extend(op_events);
        self.cs_after_op(&mut st, settings, inst.as_ref());
        drop(st);
        if let Some(inst) = &inst {
            for e in events {
                self.cs_store_event(inst, e);
            }
        }
        match answer {
            Answer::Ok(v) => (200, v),
            Answer::Invalid(v) => (422, v),
            Answer::Internal => (500, json!({"message": "Internal Server Error"})),
        }
    }

    /// After an operation: saves the channels when they changed, and sets
    /// the positions of connections that joined channels to the logs' heads.
    fn cs_after_op(
        &self,
        st: &mut cs::state::State,
        settings: &ChannelstreamSettings,
        inst: Option<&Arc<Instance>>,
    ) {
        if let Some(snap) = st.take_snapshot(&settings.instance) {
            if let Err(e) = self.broker.save_channelstream(&snap) {
                tracing::error!(error = %e, "could not save the Channelstream channels' configurations");
            }
        }
        if let Some(inst) = inst {
            st.fill_positions(&mut |name| {
                self.cs_log(inst, name).map_or(Mark::default(), |c| Mark {
                    after: c.reader().committed_id(),
                    live_seq: c.reader().live_next_seq(),
                })
            });
        }
    }

    /// `POST|PATCH|DELETE /message`: each item becomes a publish, an edit
    /// or a deletion in the log of its channel (or of the user stream); the
    /// answer, the validated items, leaves once every one is stored (`None`
    /// then), or at once when none goes to the log.
    fn cs_messages(
        &mut self,
        index: usize,
        req: &Request,
        settings: &ChannelstreamSettings,
        kind: message::Kind,
        opts: &ResponseOptions,
    ) -> Option<(u16, Value)> {
        let now = self.broker.clock().now_us();
        let mut new_uuid = || record::random_uuid().unwrap_or_default();
        let items = match message::parse(&req.body, kind, now, &mut new_uuid) {
            Ok(items) => items,
            Err(None) => return Some((500, json!({"message": "Internal Server Error"}))),
            Err(Some(e)) => return Some((422, e)),
        };
        let items: Vec<message::Item> = match kind {
            // Sends that name neither a channel nor users are dropped.
            message::Kind::Send => items.into_iter().filter(message::Item::routable).collect(),
            _ => items,
        };
        let echo = Value::Array(items.iter().map(|i| i.echo(kind)).collect());
        let Some(inst) = self.broker.instance(&settings.instance) else {
            return Some((
                500,
                json!({"message": format!("no instance {:?}", settings.instance)}),
            ));
        };
        let known: Vec<bool> = {
            let st = self
                .broker
                .cs_state
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            items
                .iter()
                .map(|i| {
                    i.channel
                        .as_ref()
                        .is_none_or(|c| st.channel_config_of(c).is_some())
                })
                .collect()
        };
        let mut msgs = Vec::new();
        for (item, known) in items.iter().zip(known) {
            // A channel nobody created drops the message, as in Channelstream.
            let target = match &item.channel {
                Some(c) if known => self.broker.internal_channel(
                    &inst,
                    &cs::tidewire_channel(c),
                    &format!("channelstream channel {c}"),
                ),
                Some(_) => continue,
                None if item.pm_users.is_empty() => continue,
                None => self.broker.internal_channel(
                    &inst,
                    USER_STREAM_CHANNEL,
                    "user-directed messages",
                ),
            };
            let Ok(ch) = target else {
                return Some((500, json!({"message": "the channel could not be made"})));
            };
            msgs.push(self.cs_writer_msg(index, ch.id, item, kind));
        }
        if msgs.is_empty() {
            return Some((200, echo));
        }
        self.cs_submit(index, msgs, echo, opts)
    }

    /// Queues the writer requests of a message request; its answer leaves
    /// once they are all done (`None`), or at once when none could be queued.
    fn cs_submit(
        &mut self,
        index: usize,
        msgs: Vec<(WriterMsg, usize)>,
        echo: Value,
        opts: &ResponseOptions,
    ) -> Option<(u16, Value)> {
        let conn = self.conns.get_mut(index)?;
        let mut submitted = 0usize;
        let mut failed = false;
        for (msg, bytes) in msgs {
            match self.broker.try_append(msg, bytes) {
                Ok(()) => submitted += 1,
                Err(_) => failed = true,
            }
        }
        if submitted == 0 {
            return Some((503, json!({"message": "the server is busy; retry"})));
        }
        conn.inflight += submitted;
        conn.http_wait = Some(Box::new(HttpWait {
            opts: *opts,
            what: Waiting::CsMessages {
                remaining: submitted,
                failed,
                body: cs::json::to_vec(&echo),
            },
        }));
        None
    }

    /// The writer request of one message item (and its bytes).
    fn cs_writer_msg(
        &self,
        index: usize,
        channel_id: u64,
        item: &message::Item,
        kind: message::Kind,
    ) -> (WriterMsg, usize) {
        let generation = self.conns.get(index).map_or(0, |c| c.generation);
        let conn = ConnRef {
            thread: self.id,
            index,
            generation,
        };
        let payload = item.payload();
        match kind {
            message::Kind::Send => {
                let pm: Vec<&str> = item.pm_users.iter().map(String::as_str).collect();
                // Channelstream ignores exclude_users in messages to users.
                let ex: Vec<&str> = match item.channel {
                    Some(_) => item.exclude_users.iter().map(String::as_str).collect(),
                    None => Vec::new(),
                };
                let fields = MessageFields {
                    content_type: Some(ContentType::Json),
                    pm_users: &pm,
                    exclude_users: &ex,
                    uuid: Some(item.uuid),
                    live: item.no_history,
                    ..MessageFields::default()
                };
                let mut data = vec![0u8; 4];
                record::encode_body(&mut data, &fields, &payload);
                let len = u32::try_from(data.len() - 4).unwrap_or(u32::MAX);
                data[..4].copy_from_slice(&len.to_le_bytes());
                let bytes = data.len();
                let msg = WriterMsg::Publish(PublishReq {
                    channel_id,
                    author: Author::None,
                    data: Bytes::from(data),
                    count: 1,
                    frames: 1,
                    ack: AckMode::Durable,
                    conn,
                    seq: 0,
                });
                (msg, bytes)
            }
            message::Kind::Edit | message::Kind::Delete => {
                let edit = (kind == message::Kind::Edit)
                    .then(|| (ContentType::Json, Bytes::from(payload)));
                let bytes = edit.as_ref().map_or(0, |(_, p)| p.len());
                let msg = WriterMsg::Amend(AmendReq {
                    channel_id,
                    author: Author::None,
                    target: AmendTarget::Uuid(item.uuid),
                    edit,
                    any_author: true,
                    ack: AckMode::Durable,
                    conn,
                    seq: 0,
                });
                (msg, bytes)
            }
        }
    }

    /// The tidewire channel of a Channelstream channel (`None`: the user
    /// stream), made when missing.
    pub(super) fn cs_log(
        &self,
        inst: &Arc<Instance>,
        channel: Option<&str>,
    ) -> Option<Arc<Channel>> {
        let made = match channel {
            Some(c) => self.broker.internal_channel(
                inst,
                &cs::tidewire_channel(c),
                &format!("channelstream channel {c}"),
            ),
            None => {
                self.broker
                    .internal_channel(inst, USER_STREAM_CHANNEL, "user-directed messages")
            }
        };
        made.ok()
    }

    /// Stores a presence or state event in its channel's log (not waited
    /// for: Channelstream sends them as it goes).
    pub(super) fn cs_store_event(&mut self, inst: &Arc<Instance>, e: cs::state::Event) {
        let Some(ch) = self.cs_log(inst, Some(&e.channel)) else {
            return;
        };
        let mut body = e.body;
        body["uuid"] = json!(cs::state::uuid_text(
            &record::random_uuid().unwrap_or_default()
        ));
        if let Some(m) = body.as_object_mut() {
            m.remove("catchup");
        }
        let payload = serde_json::to_vec(&body).unwrap_or_default();
        let ex: Vec<&str> = e.exclude_users.iter().map(String::as_str).collect();
        let fields = MessageFields {
            content_type: Some(ContentType::Json),
            exclude_users: &ex,
            ..MessageFields::default()
        };
        let mut data = vec![0u8; 4];
        record::encode_body(&mut data, &fields, &payload);
        let len = u32::try_from(data.len() - 4).unwrap_or(u32::MAX);
        data[..4].copy_from_slice(&len.to_le_bytes());
        let bytes = data.len();
        let msg = WriterMsg::Publish(PublishReq {
            channel_id: ch.id,
            author: Author::None,
            data: Bytes::from(data),
            count: 1,
            frames: 1,
            ack: AckMode::None,
            // No connection waits for it.
            conn: ConnRef {
                thread: self.id,
                index: usize::MAX,
                generation: 0,
            },
            seq: 0,
        });
        if self.broker.try_append(msg, bytes).is_err() {
            tracing::warn!(channel = %e.channel, "append queue full: a Channelstream event was not stored");
        }
    }

    /// The history `/info` shows of a channel that stores history: its
    /// latest `history_size` messages (all with 0, up to
    /// [`HISTORY_MAX`]) in their current version, oldest first, as
    /// Channelstream keeps them.
    fn cs_history(
        &self,
        inst: &Arc<Instance>,
        name: &str,
        config: cs::schema::ChannelConfig,
    ) -> Vec<Value> {
        if !config.store_history {
            return Vec::new();
        }
        let Some(ch) = inst.channel(&cs::tidewire_channel(name)) else {
            return Vec::new();
        };
        let want = match config.history_size {
            0 => HISTORY_MAX,
            n => usize::try_from(n).unwrap_or(HISTORY_MAX).min(HISTORY_MAX),
        };
        let reader = ch.reader();
        let key = self.broker.uuid_key;
        let view = crate::storage::View {
            viewer: None,
            current: true,
        };
        let mut out = Vec::new();
        let mut before = None;
        loop {
            let mut seen = 0usize;
            let mut oldest = None;
            reader.page_upto(
                None,
                None,
                before,
                crate::storage::Order::NewestFirst,
                200,
                view,
                reader.committed_id(),
                &mut |raw| {
                    seen += 1;
                    let Ok(v) = record::RecordView::parse_trusted(raw) else {
                        return true;
                    };
                    oldest = Some(v.id());
                    if let Some(m) = cs::render::stored(
                        &v,
                        name,
                        reader,
                        v.uuid()
                            .or_else(|| key.assign(ch.id, v.id()))
                            .unwrap_or_default(),
                    ) {
                        out.push(m);
                    }
                    out.len() < want
                },
            );
            match oldest {
                Some(id) if seen == 200 && out.len() < want => before = Some(id),
                _ => break,
            }
        }
        out.reverse();
        out
    }

    /// Collects Channelstream connections idle for 15 s (and users idle for
    /// a day) once a second, on io thread 0, storing the `parted` events.
    pub(in crate::net) fn cs_collect_idle(&mut self) {
        if self.id != 0 {
            return;
        }
        let Some(settings) = self.broker.channelstream.clone() else {
            return;
        };
        let now = self.broker.clock().now_us();
        if now.saturating_sub(self.cs_collected_us) < 1_000_000 {
            return;
        }
        self.cs_collected_us = now;
        let events = self
            .broker
            .cs_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .collect(now);
        if events.is_empty() {
            return;
        }
        if let Some(inst) = self.broker.instance(&settings.instance) {
            for e in events {
                self.cs_store_event(&inst, e);
            }
        }
    }
}

/// Most messages `/info` shows of one channel.
const HISTORY_MAX: usize = 1000;
