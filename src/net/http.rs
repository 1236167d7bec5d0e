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

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::Arc;

use bytes::BytesMut;
use serde_json::{Map, Value};

use super::conn::ConnKind;
use super::IoThread;
use crate::broker::writer::{ConnRef, PublishReq, WriterMsg};
use crate::broker::{Caller, Channel, ChannelKind, ChannelSettings, HttpAuthError, Permission};
use crate::http::channel::{channel_params, ChannelWrite};
use crate::http::history::{history_params, HistoryPlan, Links};
use crate::http::render::{self, ChannelFields, ChannelType};
use crate::http::request::{expects_continue, CONTINUE_RESPONSE};
use crate::http::syncano::{self, JsonMap};
use crate::http::{
    parse_request, route, write_error, write_preflight, write_response, ApiError, ChannelPath,
    Request, ResponseOptions, Route,
};
use crate::limits;
use crate::storage::record::{self, ContentType, MessageFields, RecordView};
use crate::storage::{LogReader, Order};
use crate::wire::{AckMode, ErrorCode, WireError};

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
    /// A poll parked in this thread's table.
    Poll {
        /// The channel polled.
        channel_id: u64,
        /// When it is answered 204, µs on the broker's clock.
        deadline_us: u64,
    },
}

/// One parked poll.
#[derive(Debug)]
struct ParkedPoll {
    /// Answer with the first message with an id above this.
    after: u64,
    room: Option<Box<[u8]>>,
    caller: Caller,
}

/// The parked polls of one channel on this thread.
#[derive(Debug)]
struct ParkedChannel {
    channel: Arc<Channel>,
    /// The head the polls were last checked against.
    last_head: u64,
    /// By connection slab index.
    polls: HashMap<usize, ParkedPoll>,
}

/// Every poll parked on one io thread.
#[derive(Debug, Default)]
pub struct Parked {
    channels: HashMap<u64, ParkedChannel>,
    /// (deadline µs, slab index, generation), earliest first.
    deadlines: BTreeSet<(u64, usize, u64)>,
}

impl Parked {
    /// The earliest deadline, µs on the broker's clock.
    pub fn next_deadline_us(&self) -> Option<u64> {
        self.deadlines.first().map(|d| d.0)
    }
}

/// A parked poll that can be answered: (slab index, status, `X-Last-Id`, body).
type Ready = (usize, u16, Option<u64>, Arc<Vec<u8>>);

/// The first message after some id in some room: (record, id, 200 body).
type FirstFound = Option<(Vec<u8>, u64, Arc<Vec<u8>>)>;

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
        viewer,
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
                    self.http_request(index, &req);
                    self.mark_dirty(index);
                }
            }
        }
        self.push_again(index);
        false
    }

    fn http_request(&mut self, index: usize, req: &Request) {
        let mut opts = ResponseOptions::for_request(req);
        opts.date_us = Some(self.broker.clock().now_us());
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

    fn http_channel(
        &self,
        caller: &Caller,
        name: &str,
        not_found: ApiError,
    ) -> Result<Arc<Channel>, Failure> {
        self.broker
            .channel(caller, name)
            .map_err(|e| fail(api_error(&e, not_found)))
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
    /// ignored on default ones, lower-cased.
    fn http_room(ch: &Channel, room: Option<&str>) -> Result<Option<Box<[u8]>>, Failure> {
        let room = syncano::channel_room(channel_type(ch.kind()), room).map_err(fail)?;
        Ok(room.map(|r| r.to_lowercase().into_bytes().into_boxed_slice()))
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

    fn park(
        &mut self,
        index: usize,
        ch: Arc<Channel>,
        head: u64,
        after: u64,
        room: Option<Box<[u8]>>,
        caller: Caller,
    ) -> Result<Reply, Failure> {
        let max = self.broker.http.parked_polls_max;
        if self
            .broker
            .parked_polls
            .fetch_add(1, AtomicOrdering::AcqRel)
            >= max
        {
            self.broker
                .parked_polls
                .fetch_sub(1, AtomicOrdering::AcqRel);
            return Err(fail(ApiError::TooManyPolls {
                retry_after_secs: limits::HTTP_RETRY_AFTER_SECS,
            }));
        }
        let deadline_us = self
            .broker
            .clock()
            .now_us()
            .saturating_add(self.broker.http.poll_timeout_us);
        let Some(conn) = self.conns.get_mut(index) else {
            self.broker
                .parked_polls
                .fetch_sub(1, AtomicOrdering::AcqRel);
            return Err(fail(ApiError::ServerError));
        };
        let generation = conn.generation;
        conn.http_wait = Some(Box::new(HttpWait {
            opts: ResponseOptions::closing(),
            what: Waiting::Poll {
                channel_id: ch.id,
                deadline_us,
            },
        }));
        conn.release_buffers();
        self.parked
            .deadlines
            .insert((deadline_us, index, generation));
        let slot = self
            .parked
            .channels
            .entry(ch.id)
            .or_insert_with(|| ParkedChannel {
                channel: ch.clone(),
                last_head: head,
                polls: HashMap::new(),
            });
        slot.last_head = slot.last_head.min(head);
        slot.polls.insert(
            index,
            ParkedPoll {
                after,
                room,
                caller,
            },
        );
        Ok(Reply::Later)
    }

    /// Takes the poll of connection `index` out of the table (answered,
    /// expired, or its client hung up).
    pub(super) fn unpark(&mut self, index: usize) -> Option<ResponseOptions> {
        let conn = self.conns.get_mut(index)?;
        let Waiting::Poll {
            channel_id,
            deadline_us,
        } = conn.http_wait.as_ref()?.what
        else {
            return None;
        };
        let wait = conn.http_wait.take()?;
        let generation = conn.generation;
        self.parked
            .deadlines
            .remove(&(deadline_us, index, generation));
        if let Some(pc) = self.parked.channels.get_mut(&channel_id) {
            pc.polls.remove(&index);
            if pc.polls.is_empty() {
                self.parked.channels.remove(&channel_id);
            }
        }
        self.broker
            .parked_polls
            .fetch_sub(1, AtomicOrdering::AcqRel);
        Some(wait.opts)
    }

    /// Answers a waiting request and lets the connection go on with the
    /// next one.
    fn answer(&mut self, index: usize, opts: &ResponseOptions, status: u16, body: &[u8]) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        write_response(&mut conn.wbuf, status, &[], body, opts);
        if !opts.keep_alive {
            conn.closing = true;
        }
        self.resume_http(index);
    }

    /// After an answer: flush it, and go on with requests already buffered.
    /// Without buffered input there is nothing to do until the socket is
    /// readable again (input that came while the request waited was read up
    /// to `WouldBlock`, so a new readable event will come).
    fn resume_http(&mut self, index: usize) {
        self.mark_dirty(index);
        if self.conns.get(index).is_some_and(|c| c.rend > c.rstart) {
            self.push_again(index);
        }
    }

    fn answer_error(&mut self, index: usize, opts: &ResponseOptions, e: &ApiError) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        write_error(&mut conn.wbuf, e, &[], opts);
        if !opts.keep_alive {
            conn.closing = true;
        }
        self.resume_http(index);
    }

    /// Answers the parked polls of every channel whose head moved, and
    /// those of deleted channels (404).
    pub(super) fn wake_parked(&mut self) {
        let mut ready: Vec<Ready> = Vec::new();
        for pc in self.parked.channels.values_mut() {
            if pc.channel.is_deleted() {
                let body = Arc::new(ApiError::NotFound.body());
                ready.extend(pc.polls.keys().map(|&i| (i, 404, None, body.clone())));
                continue;
            }
            let reader = pc.channel.reader();
            let head = reader.committed_id();
            if head == pc.last_head {
                continue;
            }
            pc.last_head = head;
            // Polls waiting on the same id and room get the same answer:
            // one log read per distinct (after, room), whatever the count.
            let mut memo: HashMap<(u64, Option<&[u8]>), FirstFound> = HashMap::new();
            for (&i, p) in &pc.polls {
                let first = memo.entry((p.after, p.room.as_deref())).or_insert_with(|| {
                    let raw = first_after(reader, p.after, p.room.as_deref(), None)?;
                    let (id, body) = poll_body(&raw)?;
                    Some((raw, id, Arc::new(body)))
                });
                let hit = match first {
                    Some((raw, id, body)) if record::visible(raw, p.caller.viewer()) => {
                        Some((*id, body.clone()))
                    }
                    // The first new message is not for this caller: look
                    // further for one that is.
                    Some(_) => {
                        first_after(reader, p.after, p.room.as_deref(), Some(p.caller.viewer()))
                            .and_then(|raw| poll_body(&raw))
                            .map(|(id, b)| (id, Arc::new(b)))
                    }
                    None => None,
                };
                if let Some((id, body)) = hit {
                    ready.push((i, 200, Some(id), body));
                }
            }
        }
        for (index, status, last_id, body) in ready {
            if let Some(mut opts) = self.unpark(index) {
                opts.last_id = last_id;
                opts.date_us = Some(self.broker.clock().now_us());
                if status == 200 {
                    self.answer(index, &opts, 200, &body);
                } else {
                    self.answer_error(index, &opts, &ApiError::NotFound);
                }
            }
        }
    }

    /// Answers 204 to every parked poll whose deadline has passed.
    pub(super) fn expire_parked(&mut self) {
        if self.parked.deadlines.is_empty() {
            return;
        }
        let now = self.broker.clock().now_us();
        while let Some(&(deadline, index, generation)) = self.parked.deadlines.first() {
            if deadline > now {
                break;
            }
            let live = self
                .conns
                .get(index)
                .is_some_and(|c| c.generation == generation);
            if !live {
                self.parked.deadlines.remove(&(deadline, index, generation));
                continue;
            }
            match self.unpark(index) {
                Some(mut opts) => {
                    opts.date_us = Some(now);
                    self.answer(index, &opts, 204, &[]);
                }
                None => {
                    self.parked.deadlines.remove(&(deadline, index, generation));
                }
            }
        }
    }

    /// Re-checks parked polls after the access epoch moved: a poll whose key
    /// is gone gets 403 "No such API Key.", one that lost read access 403.
    pub(super) fn revalidate_parked(&mut self) {
        let mut denied: Vec<(usize, ApiError)> = Vec::new();
        for pc in self.parked.channels.values_mut() {
            for (&i, p) in pc.polls.iter_mut() {
                match self.broker.refresh(&p.caller) {
                    None => denied.push((i, ApiError::NoSuchApiKey)),
                    Some(c) => {
                        if !self.broker.access(&c, &pc.channel).read {
                            denied.push((i, ApiError::PermissionDenied));
                        }
                        p.caller = c;
                    }
                }
            }
        }
        for (index, e) in denied {
            if let Some(opts) = self.unpark(index) {
                self.answer_error(index, &opts, &e);
            }
        }
    }

    fn http_publish(
        &mut self,
        index: usize,
        req: &Request,
        instance: &str,
        channel: &str,
    ) -> Result<Reply, Failure> {
        let (caller, body) = self.http_write(instance, req)?;
        let ch = self.http_channel(&caller, channel, ApiError::NotFound)?;
        if ch.is_eventlog() {
            return Err(fail(ApiError::PermissionDenied));
        }
        self.broker
            .access(&caller, &ch)
            .check_publish()
            .map_err(|e| fail(api_error(&e, ApiError::NotFound)))?;
        let params = syncano::publish_params(req, &body).map_err(fail)?;
        let room =
            syncano::channel_room(channel_type(ch.kind()), params.room.as_deref()).map_err(fail)?;
        let fields = MessageFields {
            content_type: Some(ContentType::Json),
            room,
            ..MessageFields::default()
        };
        let mut data = Vec::with_capacity(params.payload.len() + 160);
        data.extend_from_slice(&[0; 4]);
        record::encode_body(&mut data, &fields, &params.payload);
        let len = u32::try_from(data.len() - 4).map_err(|_| fail(ApiError::PayloadTooLarge))?;
        data[..4].copy_from_slice(&len.to_le_bytes());
        record::check_body(&mut data[4..]).map_err(|_| fail(ApiError::PayloadInvalidFormat))?;
        let Some(conn) = self.conns.get_mut(index) else {
            return Err(fail(ApiError::ServerError));
        };
        let bytes = data.len();
        let msg = WriterMsg::Publish(PublishReq {
            channel_id: ch.id,
            author: caller.author(),
            data: BytesMut::from(&data[..]).freeze(),
            count: 1,
            frames: 1,
            ack: AckMode::Durable,
            conn: ConnRef {
                thread: self.id,
                index,
                generation: conn.generation,
            },
            seq: 0,
        });
        conn.inflight += 1;
        conn.http_wait = Some(Box::new(HttpWait {
            opts: ResponseOptions::closing(),
            what: Waiting::Publish {
                channel: ch,
                instance: instance.to_string(),
            },
        }));
        if let Err(back) = self.broker.try_append(msg, bytes) {
            conn.stalled = Some(back);
            conn.stalled_bytes = bytes;
            self.push_again(index);
        }
        Ok(Reply::Later)
    }

    /// Answers an HTTP publish once the writer reported on it.
    pub(super) fn http_published(&mut self, index: usize, outcome: Result<u64, ApiError>) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        let Some(wait) = conn.http_wait.take() else {
            return;
        };
        let Waiting::Publish { channel, instance } = wait.what else {
            conn.http_wait = Some(wait);
            return;
        };
        let mut opts = wait.opts;
        opts.date_us = Some(self.broker.clock().now_us());
        let path = ChannelPath {
            instance: &instance,
            channel: channel.name(),
        };
        let body = outcome.and_then(|id| {
            channel
                .reader()
                .get(id, |raw| {
                    let view = RecordView::parse_trusted(raw).ok()?;
                    let mut out = Vec::with_capacity(raw.len() + 256);
                    render::write_message(&mut out, &view, Some(&path));
                    Some(out)
                })
                .flatten()
                .ok_or(ApiError::ServerError)
        });
        match body {
            Ok(b) => self.answer(index, &opts, 201, &b),
            Err(e) => self.answer_error(index, &opts, &e),
        }
    }

    fn http_history(
        &mut self,
        req: &Request,
        instance: &str,
        channel: &str,
    ) -> Result<Reply, Failure> {
        let (caller, ch) = self.http_readable(instance, req, channel, ApiError::ChannelNotFound)?;
        let params = history_params(req).map_err(fail)?;
        let room = Self::http_room(&ch, params.room.as_deref())?;
        let plan = HistoryPlan::new(&params);
        let order = if plan.newest_first {
            Order::NewestFirst
        } else {
            Order::OldestFirst
        };
        let mut scratch: Vec<u8> = Vec::new();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut cut = false;
        let reader = ch.reader();
        reader.page_upto(
            room.as_deref(),
            plan.after_id,
            plan.before_id,
            order,
            plan.limit as usize,
            Some(caller.viewer()),
            reader.committed_id(),
            &mut |raw| {
                if !spans.is_empty() && scratch.len() + raw.len() > limits::HTTP_HISTORY_BYTES_MAX {
                    cut = true;
                    return false;
                }
                spans.push((scratch.len(), scratch.len() + raw.len()));
                scratch.extend_from_slice(raw);
                true
            },
        );
        let mut page = plan.page(spans);
        page.more |= cut;
        let views: Vec<RecordView<'_>> = page
            .items
            .iter()
            .filter_map(|&(s, e)| RecordView::parse_trusted(&scratch[s..e]).ok())
            .collect();
        let first_last = views
            .first()
            .zip(views.last())
            .map(|(f, l)| (f.id(), l.id()));
        let path = ChannelPath {
            instance,
            channel: ch.name(),
        };
        let links = plan.links(&path, first_last, page.more);
        let mut out = Vec::with_capacity(scratch.len() * 2 + 128);
        render::write_history_page(&mut out, &links, views, &path);
        Ok(Reply::Now(200, out))
    }

    fn http_history_item(
        &mut self,
        req: &Request,
        instance: &str,
        channel: &str,
        id: u64,
    ) -> Result<Reply, Failure> {
        let (caller, ch) = self.http_readable(instance, req, channel, ApiError::ChannelNotFound)?;
        let path = ChannelPath {
            instance,
            channel: ch.name(),
        };
        let viewer = caller.viewer();
        let reader = ch.reader();
        let committed = reader.committed_id();
        let body = reader
            .get(id, |raw| {
                if id > committed || !record::visible(raw, viewer) {
                    return None;
                }
                let view = RecordView::parse_trusted(raw).ok()?;
                let mut out = Vec::with_capacity(raw.len() + 256);
                render::write_message(&mut out, &view, Some(&path));
                Some(out)
            })
            .flatten()
            .ok_or_else(|| fail(ApiError::NotFound))?;
        Ok(Reply::Now(200, body))
    }

    /// A connection's kind.
    pub(super) fn is_http(&self, index: usize) -> bool {
        self.conns
            .get(index)
            .is_some_and(|c| c.kind == ConnKind::Http)
    }
}
