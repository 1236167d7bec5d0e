//! HTTP connections on the io threads: the Syncano v1.1 Channels shim.
//!
//! `crate::http` knows the bytes and shapes (framing, routes, parameters,
//! JSON, error bodies); this module runs each request through the same
//! broker paths as the binary protocol: the caller's keys, the channel's
//! permissions, the writer's queue for publishes, the log for reads. A poll
//! with nothing to return parks in this thread's table until the channel's
//! head moves past it, its deadline passes (204) or its client hangs up.
//!
//! Requests on one connection are answered in order: while one waits (a
//! publish on its way to the log, a parked poll) the next is not read.

use std::sync::Arc;

mod channelstream;
mod cs_listen;
mod cs_ws;

pub use cs_ws::CsSocket;
mod messages;
mod parked;

pub use parked::Parked;

use serde_json::{Map, Value};

use super::conn::ConnKind;
use super::IoThread;
use crate::broker::{Caller, Channel, ChannelKind, ChannelSettings, HttpAuthError, Permission};
use crate::http::channel::{channel_params, ChannelWrite};
use crate::http::history::Links;
use crate::http::render::{self, ChannelFields, ChannelType};
use crate::http::request::{expects_continue, head_complete, CONTINUE_RESPONSE};
use crate::http::syncano::{self, JsonMap};
use crate::http::{
    parse_request, route, write_error, write_preflight, write_response, ApiError, Request,
    ResponseOptions, Route,
};
use crate::limits;
use crate::storage::record::RecordView;
use crate::storage::{LogReader, Order, View};
use crate::wire::{ErrorCode, WireError};

/// Unparsed bytes an HTTP connection may hold: one maximal request.
const HTTP_BUFFER_MAX: usize = limits::HTTP_HEAD_LEN_MAX + limits::HTTP_BODY_LEN_MAX;

/// An HTTP request whose answer is not written yet.
#[derive(Debug)]
pub struct HttpWait {
    /// How the answer is framed (version, keep-alive, `HEAD`).
    pub opts: ResponseOptions,
    /// What it waits for.
    pub what: Waiting,
}

/// What a waiting HTTP request waits for.
#[derive(Debug)]
pub enum Waiting {
    /// A publish is with the writer; its completion answers 201.
    Publish {
        /// The channel published to.
        channel: Arc<Channel>,
        /// The instance's name, for the message's links.
        instance: String,
    },
    /// Channelstream messages with the writer; the last completion
    /// answers with `body` (or 503 when one could not be stored).
    CsMessages {
        /// Writer requests not yet completed.
        remaining: usize,
        /// One of them could not be stored.
        failed: bool,
        /// The answer's body.
        body: Vec<u8>,
    },
    /// A Channelstream `/listen` parked in this thread's table.
    CsListen {
        /// When it is answered `[]`, µs on the broker's clock.
        deadline_us: u64,
        /// The JSONP callback, if any.
        callback: Option<String>,
    },
    /// A poll parked in this thread's table.
    Poll {
        /// The channel polled.
        channel_id: u64,
        /// When it is answered 204, µs on the broker's clock.
        deadline_us: u64,
    },
}

/// A handler's answer: now, or later (the request waits).
enum Reply {
    Now(u16, Vec<u8>),
    Later,
}

/// A handler's failure: the error and, for 405, the `Allow` header.
type Failure = (ApiError, Option<&'static str>);

fn fail(e: ApiError) -> Failure {
    (e, None)
}

/// Maps a broker error to the shim's answer; `not_found` is what an unknown
/// channel is called on this route.
fn api_error(e: &WireError, not_found: ApiError) -> ApiError {
    match e.code {
        ErrorCode::ChannelNotFound | ErrorCode::MessageNotFound => not_found,
        ErrorCode::InstanceNotFound => ApiError::InstanceNotFound,
        ErrorCode::PermissionDenied => ApiError::PermissionDenied,
        ErrorCode::CustomPublishDisabled => ApiError::CustomPublishDisabled,
        ErrorCode::RoomRequired => ApiError::RoomRequired,
        ErrorCode::ChannelExists => ApiError::Validation(vec![(
            "name".into(),
            "channel with this name already exists.".into(),
        )]),
        ErrorCode::InvalidName => ApiError::Validation(vec![("name".into(), e.message.clone())]),
        ErrorCode::BadRequest => ApiError::Validation(vec![("detail".into(), e.message.clone())]),
        ErrorCode::LimitExceeded => {
            ApiError::Validation(vec![("detail".into(), e.message.clone())])
        }
        ErrorCode::StorageFull | ErrorCode::StorageFailed | ErrorCode::ShuttingDown => {
            ApiError::Unavailable(e.message.clone())
        }
        _ => ApiError::ServerError,
    }
}

fn auth_error(e: HttpAuthError) -> Failure {
    fail(match e {
        HttpAuthError::InstanceNotFound => ApiError::InstanceNotFound,
        HttpAuthError::NoSuchKey => ApiError::NoSuchApiKey,
        HttpAuthError::Anonymous => ApiError::PermissionDenied,
    })
}

fn channel_type(kind: ChannelKind) -> ChannelType {
    match kind {
        ChannelKind::Default => ChannelType::Default,
        ChannelKind::SeparateRooms => ChannelType::SeparateRooms,
    }
}

fn permission(p: Permission) -> render::Permission {
    match p {
        Permission::None => render::Permission::None,
        Permission::Subscribe => render::Permission::Subscribe,
        Permission::Publish => render::Permission::Publish,
    }
}

fn fields(s: &ChannelSettings) -> ChannelFields<'_> {
    ChannelFields {
        name: &s.name,
        description: &s.description,
        kind: channel_type(s.kind),
        group: s.group,
        group_permissions: permission(s.group_permissions),
        other_permissions: permission(s.other_permissions),
        custom_publish: s.custom_publish,
        created_at_us: s.created_at_us,
        updated_at_us: s.updated_at_us,
    }
}

fn channel_body(instance: &str, s: &ChannelSettings) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    render::write_channel(&mut out, instance, &fields(s));
    out
}

/// The broker's JSON fields for a channel create or update body.
fn channel_fields(body: &JsonMap, write: ChannelWrite) -> Result<Map<String, Value>, Failure> {
    let input = channel_params(body, write).map_err(fail)?;
    let mut m = Map::new();
    if let Some(n) = input.name {
        m.insert("name".into(), Value::String(n));
    }
    if let Some(d) = input.description {
        m.insert("description".into(), Value::String(d));
    }
    if let Some(k) = input.kind {
        m.insert("type".into(), Value::String(k.name().into()));
    }
    if let Some(g) = input.group {
        m.insert("group".into(), g.map_or(Value::Null, Value::from));
    }
    if let Some(p) = input.group_permissions {
        m.insert("group_permissions".into(), Value::String(p.name().into()));
    }
    if let Some(p) = input.other_permissions {
        m.insert("other_permissions".into(), Value::String(p.name().into()));
    }
    if let Some(c) = input.custom_publish {
        m.insert("custom_publish".into(), Value::Bool(c));
    }
    Ok(m)
}

/// The first committed record after `after` (in `room`): with
/// `Some(viewer)` the first that viewer may see, with `None` the first
/// whoever it is for. The HTTP shim serves only committed records (stored
/// under the durability policy): a legacy poller cannot be told that a crash
/// took back a record it saw.
fn first_after(
    reader: &LogReader,
    after: u64,
    room: Option<&[u8]>,
    viewer: Option<Option<&[u8]>>,
) -> Option<Vec<u8>> {
    let mut found = None;
    reader.page_upto(
        room,
        Some(after),
        None,
        Order::OldestFirst,
        1,
        View {
            viewer,
            current: false,
        },
        reader.committed_id(),
        &mut |raw| {
            found = Some(raw.to_vec());
            false
        },
    );
    found
}

/// The 200 body of a poll answered with record `raw` (no `links`).
fn poll_body(raw: &[u8]) -> Option<(u64, Vec<u8>)> {
    let view = RecordView::parse_trusted(raw).ok()?;
    let mut body = Vec::with_capacity(raw.len() + 160);
    render::write_message(&mut body, &view, None);
    Some((view.id(), body))
}

impl IoThread {
    /// Handles complete HTTP requests in the read buffer, up to the
    /// per-wake budget. Returns true when the caller may read more.
    pub(super) fn handle_http(&mut self, index: usize) -> bool {
        if self.conns.get(index).is_some_and(|c| c.cs_socket.is_some()) {
            return self.handle_ws(index);
        }
        for _ in 0..limits::FRAMES_PER_WAKE_MAX {
            let Some(conn) = self.conns.get_mut(index) else {
                return false;
            };
            if conn.closing || conn.http_wait.is_some() || conn.stalled.is_some() {
                return false;
            }
            if conn.out_full() {
                return false;
            }
            let input = &conn.rbuf[conn.rstart..conn.rend];
            let parsed = parse_request(input);
            let wants_continue = matches!(parsed, Ok(None)) && expects_continue(input);
            let arriving = matches!(parsed, Ok(None)) && !input.is_empty();
            let head_done = arriving && head_complete(input);
            match parsed {
                Ok(None) => {
                    let send_continue = wants_continue && !conn.continue_sent;
                    if send_continue {
                        conn.wbuf.extend_from_slice(CONTINUE_RESPONSE);
                        conn.continue_sent = true;
                    }
                    // An idle connection keeps no buffer: `read_some` makes
                    // one when bytes arrive.
                    if conn.rend > conn.rstart {
                        let want = (conn.rend - conn.rstart + 4096).min(HTTP_BUFFER_MAX);
                        conn.reserve_frame(want);
                    }
                    if send_continue {
                        self.mark_dirty(index);
                    }
                    if arriving {
                        self.arm_http_timer(index, head_done);
                    }
                    return true;
                }
                Err(e) => {
                    write_error(
                        &mut conn.wbuf,
                        &e.to_api_error(),
                        &[],
                        &ResponseOptions::closing(),
                    );
                    conn.closing = true;
                    conn.linger = true;
                    self.mark_dirty(index);
                    return false;
                }
                Ok(Some((req, used))) => {
                    conn.rstart += used;
                    conn.continue_sent = false;
                    self.clear_timer(index);
                    self.http_request(index, &req);
                    self.mark_dirty(index);
                    if self.conns.get(index).is_some_and(|c| c.cs_socket.is_some()) {
                        // Upgraded: what follows is WebSocket frames.
                        return self.handle_ws(index);
                    }
                }
            }
        }
        self.push_again(index);
        false
    }

    fn http_request(&mut self, index: usize, req: &Request) {
        let mut opts = ResponseOptions::for_request(req);
        opts.date_us = Some(self.broker.clock().now_us());
        if self.channelstream(index, req, &opts) {
            return;
        }
        let r = route(&req.method, &req.path);
        let answer = match r {
            Route::Preflight => {
                if let Some(conn) = self.conns.get_mut(index) {
                    write_preflight(
                        &mut conn.wbuf,
                        req.header("access-control-request-headers"),
                        &opts,
                    );
                }
                Ok(Reply::Now(0, Vec::new()))
            }
            Route::NotFound => Err(fail(ApiError::NotFound)),
            Route::MethodNotAllowed { allow } => Err((
                ApiError::MethodNotAllowed(req.method.as_str().into()),
                Some(allow),
            )),
            other => self.http_route(index, req, other, &mut opts),
        };
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        match answer {
            Ok(Reply::Now(0, _)) => {}
            Ok(Reply::Now(status, body)) => {
                write_response(&mut conn.wbuf, status, &[], &body, &opts);
            }
            Ok(Reply::Later) => {
                if let Some(w) = conn.http_wait.as_mut() {
                    w.opts = opts;
                }
                return;
            }
            Err((e, allow)) => {
                opts.retry_after_secs = e.retry_after_secs();
                let headers: Vec<(&str, &str)> = allow.map(|a| ("Allow", a)).into_iter().collect();
                write_error(&mut conn.wbuf, &e, &headers, &opts);
            }
        }
        if !opts.keep_alive {
            conn.closing = true;
        }
    }

    fn http_caller(
        &self,
        instance: &str,
        req: &Request,
        body: Option<&JsonMap>,
    ) -> Result<Caller, Failure> {
        let creds = syncano::credentials(req, body);
        self.broker
            .authenticate_http(
                instance,
                creds.api_key.as_deref(),
                creds.user_key.as_deref(),
            )
            .map_err(auth_error)
    }

    /// The caller and the parsed body of a write, in Syncano's order: the
    /// instance (404), then the keys (403) when the headers or the query
    /// carry them, then the body (400, 415); keys carried only in the body
    /// (`_api_key`, `_user_key`) are read after it.
    fn http_write(&self, instance: &str, req: &Request) -> Result<(Caller, JsonMap), Failure> {
        if self.broker.instance(instance).is_none() {
            return Err(fail(ApiError::InstanceNotFound));
        }
        let outside = syncano::credentials(req, None);
        if outside.api_key.is_some() && outside.user_key.is_some() {
            let caller = self.http_caller(instance, req, None)?;
            let body = syncano::parse_body(req).map_err(fail)?;
            return Ok((caller, body));
        }
        if outside.api_key.is_some() {
            // A bad key is refused before the body is looked at; a good one
            // may still pair with a `_user_key` in the body.
            self.http_caller(instance, req, None)?;
        }
        let body = syncano::parse_body(req).map_err(fail)?;
        let caller = self.http_caller(instance, req, Some(&body))?;
        Ok((caller, body))
    }

    fn http_route(
        &mut self,
        index: usize,
        req: &Request,
        r: Route,
        opts: &mut ResponseOptions,
    ) -> Result<Reply, Failure> {
        match r {
            Route::Poll { instance, channel } => {
                self.http_poll(index, req, &instance, &channel, opts)
            }
            Route::Publish { instance, channel } => {
                self.http_publish(index, req, &instance, &channel)
            }
            Route::History { instance, channel } => self.http_history(req, &instance, &channel),
            Route::HistoryItem {
                instance,
                channel,
                id,
            } => self.http_history_item(req, &instance, &channel, id),
            Route::ChannelList { instance } => {
                let caller = self.http_caller(&instance, req, None)?;
                let list = self
                    .broker
                    .visible_channels(&caller)
                    .map_err(|e| fail(api_error(&e, ApiError::NotFound)))?;
                let settings: Vec<ChannelSettings> = list.iter().map(|c| c.settings()).collect();
                let fields: Vec<ChannelFields<'_>> = settings.iter().map(fields).collect();
                let mut out = Vec::with_capacity(256 + 512 * fields.len());
                render::write_channel_list(&mut out, &instance, &Links::default(), &fields);
                Ok(Reply::Now(200, out))
            }
            Route::ChannelCreate { instance } => {
                let (caller, body) = self.http_write(&instance, req)?;
                caller
                    .require_admin()
                    .map_err(|e| fail(api_error(&e, ApiError::NotFound)))?;
                let fields = channel_fields(&body, ChannelWrite::Create)?;
                let ch = self
                    .broker
                    .create_channel_from(&caller, &fields, false)
                    .map_err(|e| fail(api_error(&e, ApiError::NotFound)))?;
                Ok(Reply::Now(201, channel_body(&instance, &ch.settings())))
            }
            Route::ChannelGet { instance, channel } => {
                let (_, ch) = self.http_readable(&instance, req, &channel, ApiError::NotFound)?;
                Ok(Reply::Now(200, channel_body(&instance, &ch.settings())))
            }
            Route::ChannelUpdate {
                instance, channel, ..
            } => {
                let (caller, body) = self.http_write(&instance, req)?;
                self.http_channel(&caller, &channel, ApiError::NotFound)?;
                caller
                    .require_admin()
                    .map_err(|e| fail(api_error(&e, ApiError::NotFound)))?;
                let fields = channel_fields(&body, ChannelWrite::Update)?;
                let ch = self
                    .broker
                    .update_channel_from(&caller, &channel, &fields)
                    .map_err(|e| fail(api_error(&e, ApiError::NotFound)))?;
                Ok(Reply::Now(200, channel_body(&instance, &ch.settings())))
            }
            Route::ChannelDelete { instance, channel } => {
                let caller = self.http_caller(&instance, req, None)?;
                self.http_channel(&caller, &channel, ApiError::NotFound)?;
                self.broker
                    .delete_channel(&caller, &channel)
                    .map_err(|e| fail(api_error(&e, ApiError::NotFound)))?;
                Ok(Reply::Now(204, Vec::new()))
            }
            Route::Preflight | Route::NotFound | Route::MethodNotAllowed { .. } => {
                Err(fail(ApiError::NotFound))
            }
        }
    }

    /// The channel `name` of the URL (read as on every path: ASCII letters
    /// lower-cased); a name no channel can have is not found like any other.
    fn http_channel(
        &self,
        caller: &Caller,
        name: &str,
        not_found: ApiError,
    ) -> Result<Arc<Channel>, Failure> {
        self.broker.channel(caller, name).map_err(|e| match e.code {
            ErrorCode::InvalidName | ErrorCode::BadRequest => fail(not_found),
            _ => fail(api_error(&e, not_found)),
        })
    }

    /// The caller of a read request and the channel it reads, in Syncano's
    /// order: keys, then the channel (`not_found` names an unknown one on
    /// this route), then read permission.
    fn http_readable(
        &self,
        instance: &str,
        req: &Request,
        channel: &str,
        not_found: ApiError,
    ) -> Result<(Caller, Arc<Channel>), Failure> {
        let caller = self.http_caller(instance, req, None)?;
        let ch = self.http_channel(&caller, channel, not_found.clone())?;
        self.broker
            .access(&caller, &ch)
            .check_read()
            .map_err(|e| fail(api_error(&e, not_found)))?;
        Ok((caller, ch))
    }

    /// The room of a request on `ch`: required on separate-rooms channels,
    /// ignored on default ones, ASCII letters lower-cased (as a publish
    /// stores them).
    fn http_room(ch: &Channel, room: Option<&str>) -> Result<Option<Box<[u8]>>, Failure> {
        let room = syncano::channel_room(channel_type(ch.kind()), room).map_err(fail)?;
        Ok(room.map(|r| r.to_ascii_lowercase().into_bytes().into_boxed_slice()))
    }

    fn http_poll(
        &mut self,
        index: usize,
        req: &Request,
        instance: &str,
        channel: &str,
        opts: &mut ResponseOptions,
    ) -> Result<Reply, Failure> {
        let caller = self.http_caller(instance, req, None)?;
        self.broker.take_poll(&caller).map_err(|secs| {
            fail(ApiError::Throttled {
                retry_after_secs: secs,
            })
        })?;
        let ch = self.http_channel(&caller, channel, ApiError::NotFound)?;
        self.broker
            .access(&caller, &ch)
            .check_read()
            .map_err(|e| fail(api_error(&e, ApiError::NotFound)))?;
        let params = syncano::poll_params(req).map_err(fail)?;
        if let Some(last_id) = params.last_id {
            // Ids never go backwards, so a `last_id` beyond the head comes
            // from a confused client: it is told the head at once instead of
            // waiting until new ids pass it and then skipping those below.
            // One inside a crash hole reads on above it.
            ch.check_after(last_id).map_err(|e| {
                fail(ApiError::Validation(vec![(
                    "last_id".into(),
                    format!("Ensure this value is less than or equal to {}.", e.head_id),
                )]))
            })?;
        }
        let room = Self::http_room(&ch, params.room.as_deref())?;
        let reader = ch.reader();
        let committed = reader.committed_id();
        let after = params.last_id.unwrap_or_else(|| reader.head_id());
        if let Some(raw) = first_after(reader, after, room.as_deref(), Some(caller.viewer())) {
            let (id, body) = poll_body(&raw).ok_or_else(|| fail(ApiError::ServerError))?;
            opts.last_id = Some(id);
            return Ok(Reply::Now(200, body));
        }
        self.park(index, ch, committed, after, room, caller)
    }

    /// A connection's kind.
    pub(super) fn is_http(&self, index: usize) -> bool {
        self.conns
            .get(index)
            .is_some_and(|c| c.kind == ConnKind::Http)
    }
}
