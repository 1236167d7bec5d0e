//! The blocking Rust client of the binary protocol, used by the CLI, the
//! bench and the integration tests.
//!
//! Owns: one `TcpStream` per [`Client`], its read and write buffers, request
//! ids, the pipelined-publish window and the queue of pushes that arrive
//! while a response is awaited. Never touches server internals; byte layouts
//! come from [`crate::wire`] and [`crate::storage::record`] only.
//!
//! I/O model: requests are appended to one write buffer that is flushed when
//! a response is awaited (or when it passes [`WRITE_FLUSH_BYTES`]); frames are
//! parsed in place from one read buffer. Pushes (`Deliver`, `Gap`,
//! `SubscriptionClosed`) and acknowledgements of pipelined publishes that
//! arrive while another response is awaited are queued, never dropped.
//!
//! ```no_run
//! use tidewire::client::{Client, OutgoingMessage};
//! use tidewire::wire::{AckMode, Start};
//! # fn main() -> Result<(), tidewire::client::ClientError> {
//! let mut c = Client::connect("127.0.0.1:7400", "admin-key")?;
//! let id = c.publish("news", &OutgoingMessage::text("hello"), AckMode::Append)?;
//! let sub = c.subscribe("news", None, Start::AfterId(id - 1))?;
//! for event in c.events().take(1) {
//!     println!("{:?} on {}", event?, sub.sub_id);
//! }
//! # Ok(())
//! # }
//! ```

mod error;
mod message;
pub use crate::time;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use error::{error_code_name, ClientError};
pub use message::{format_uuid, Message, OutgoingMessage};

use crate::limits;
use crate::storage::record;
use crate::wire::{
    decode_header, decode_response, encode_publish, encode_request, publish_frame_len, AckMode,
    ErrorCode, FrameHeader, Opcode, Request, Response, Start, FRAME_HEADER_LEN, PROTOCOL_VERSION,
};

/// Result of client calls.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Buffered request bytes at which a send flushes without being asked.
pub const WRITE_FLUSH_BYTES: usize = 64 * 1024;
/// Initial size of the read buffer; it grows to one maximal frame at most.
pub const READ_BUFFER_LEN: usize = 256 * 1024;
/// Default bound on pipelined publishes awaiting an acknowledgement.
///
/// Acknowledgements are about 30 bytes each, so this many stays well inside
/// the server's per-connection write buffer (`CONNECTION_WRITE_BUFFER_HIGH`):
/// the server never stops reading a client that is itself blocked writing.
pub const MAX_IN_FLIGHT_DEFAULT: usize = 4096;

/// How to connect and authenticate.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `host:port` of the binary protocol listener.
    pub addr: String,
    /// An admin or API key.
    pub key: String,
    /// A user key (empty: none).
    pub user_key: String,
    /// The instance to work in (empty: the key's own, or `default` for a
    /// server-wide admin key).
    pub instance: String,
    /// Bound on the TCP connect (None: the system's).
    pub connect_timeout: Option<Duration>,
    /// Bound on waiting for any response, and on a blocked write (None: wait forever).
    pub read_timeout: Option<Duration>,
    /// Most pipelined publishes awaiting an acknowledgement before a send
    /// waits for one (at least 1).
    pub max_in_flight: usize,
}

impl ConnectOptions {
    /// Options for `addr` and `key`, no user key, 10 s connect timeout,
    /// 30 s read timeout.
    pub fn new(addr: impl Into<String>, key: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            addr: addr.into(),
            key: key.into(),
            user_key: String::new(),
            instance: String::new(),
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(30)),
            max_in_flight: MAX_IN_FLIGHT_DEFAULT,
        }
    }
}

/// What the server said during the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// The negotiated protocol version.
    pub version: u16,
    /// The server's frame limit, in bytes after the length prefix.
    pub frame_len_max: u32,
    /// The server's name and version.
    pub server_name: String,
    /// 0 admin, 1 API key, 2 API key + user.
    pub identity_kind: u8,
    /// The key's id.
    pub identity_id: u64,
    /// The instance the connection works in (empty: none).
    pub instance: String,
}

/// The acknowledgement of one `Publish` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishAckInfo {
    /// The request id [`Client::send_publish`] returned.
    pub request_id: u32,
    /// Messages in the request.
    pub count: u32,
    /// Id of the first newly appended message (0 when none was new).
    pub first_id: u64,
    /// (index in the request, original id) of messages that were duplicates
    /// of an earlier publish with the same idempotency key.
    pub duplicates: Vec<(u32, u64)>,
}

impl PublishAckInfo {
    /// The id of every message of the request, in request order: duplicates
    /// get their original id, the others `first_id`, `first_id + 1`, ...
    pub fn ids(&self) -> Vec<u64> {
        let mut dups = self.duplicates.clone();
        dups.sort_unstable_by_key(|d| d.0);
        let mut dups = dups.into_iter().peekable();
        let mut next = self.first_id;
        let mut out = Vec::with_capacity(self.count as usize);
        for index in 0..self.count {
            match dups.next_if(|d| d.0 == index) {
                Some((_, original)) => out.push(original),
                None => {
                    out.push(next);
                    next = next.saturating_add(1);
                }
            }
        }
        out
    }

    /// Messages of the request that were newly appended.
    pub fn new_count(&self) -> u32 {
        let dups = u32::try_from(self.duplicates.len()).unwrap_or(u32::MAX);
        self.count.saturating_sub(dups)
    }
}

/// A subscription as the server registered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// The id this client chose; every event names it.
    pub sub_id: u32,
    /// The first id that can be delivered.
    pub next_id: u64,
    /// The channel's head id when it started.
    pub head_id: u64,
}

/// Something that happened to a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message, in id order.
    Message {
        /// The subscription.
        sub_id: u32,
        /// The message.
        message: Message,
    },
    /// The subscription's next id left retention; delivery continues at `oldest_id`.
    Gap {
        /// The subscription.
        sub_id: u32,
        /// The id the subscription needed next.
        wanted_id: u64,
        /// The oldest available id.
        oldest_id: u64,
    },
    /// The subscription resumed after an id a crash took back: records
    /// after `kept_id` that were seen before the crash are gone (no record
    /// will ever have their ids); delivery continues at `next_id`.
    Truncated {
        /// The subscription.
        sub_id: u32,
        /// The id the subscription resumed after.
        after_id: u64,
        /// The last id that survived the crash.
        kept_id: u64,
        /// Where delivery continues.
        next_id: u64,
    },
    /// The server ended the subscription; nothing more follows for it.
    Closed {
        /// The subscription.
        sub_id: u32,
        /// Why.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
}

impl Event {
    /// The subscription the event belongs to.
    pub fn sub_id(&self) -> u32 {
        match self {
            Event::Message { sub_id, .. }
            | Event::Gap { sub_id, .. }
            | Event::Truncated { sub_id, .. }
            | Event::Closed { sub_id, .. } => *sub_id,
        }
    }
}

/// What [`Client::next_raw`] handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawNext {
    /// This many records were passed to the callback (one `Deliver` push).
    Records(u32),
    /// A subscription's next id left retention; delivery continues at `oldest_id`.
    Gap {
        /// The subscription.
        sub_id: u32,
        /// The id the subscription needed next.
        wanted_id: u64,
        /// The oldest available id.
        oldest_id: u64,
    },
    /// A crash took back the position the subscription resumed after (see
    /// [`Event::Truncated`]).
    Truncated {
        /// The subscription.
        sub_id: u32,
        /// The id the subscription resumed after.
        after_id: u64,
        /// The last id that survived the crash.
        kept_id: u64,
        /// Where delivery continues.
        next_id: u64,
    },
    /// The server ended the subscription; nothing more follows for it.
    Closed {
        /// The subscription.
        sub_id: u32,
        /// Why.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
}

impl RawNext {
    /// The raw form of a queued event; `None` for a message.
    fn from_event(event: Event) -> Option<RawNext> {
        match event {
            Event::Message { .. } => None,
            Event::Gap {
                sub_id,
                wanted_id,
                oldest_id,
            } => Some(RawNext::Gap {
                sub_id,
                wanted_id,
                oldest_id,
            }),
            Event::Truncated {
                sub_id,
                after_id,
                kept_id,
                next_id,
            } => Some(RawNext::Truncated {
                sub_id,
                after_id,
                kept_id,
                next_id,
            }),
            Event::Closed {
                sub_id,
                code,
                message,
            } => Some(RawNext::Closed {
                sub_id,
                code,
                message,
            }),
        }
    }
}

/// A page of history to read. The default is the newest page of the
/// server's default size, all rooms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only this room (required on `separate_rooms` channels).
    pub room: Option<String>,
    /// Newest message first (otherwise oldest first).
    pub newest_first: bool,
    /// Only ids greater than this (0: no bound).
    pub after_id: u64,
    /// Only ids less than this (0: no bound).
    pub before_id: u64,
    /// Most messages (0: the server's default page size; at most
    /// `limits::HISTORY_PAGE_MAX`).
    pub limit: u32,
}

impl Default for HistoryQuery {
    fn default() -> HistoryQuery {
        HistoryQuery {
            room: None,
            newest_first: true,
            after_id: 0,
            before_id: 0,
            limit: 0,
        }
    }
}

/// A push queued while something else was awaited.
#[derive(Debug)]
enum Push {
    /// The records of a `Deliver`, already split and counted; `pos` is the
    /// next unread record.
    Deliver {
        sub_id: u32,
        records: Vec<u8>,
        pos: usize,
    },
    Event(Event),
}

/// How long a read may block.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// The connection's read timeout; expiry is [`ClientError::Timeout`].
    Default,
    /// Until this instant (None: forever); expiry is `Ok(None)`.
    Until(Option<Instant>),
}

/// A blocking connection to a tidewire server. See the module docs.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    scratch: Vec<u8>,
    next_request_id: u32,
    next_sub_id: u32,
    read_timeout: Option<Duration>,
    socket_timeout: Option<Duration>,
    max_in_flight: usize,
    /// Request ids of pipelined publishes whose acknowledgement has not arrived.
    inflight: VecDeque<u32>,
    /// Acknowledgements (or errors) of pipelined publishes, in arrival order.
    acks: VecDeque<Result<PublishAckInfo>>,
    pushes: VecDeque<Push>,
    info: ServerInfo,
}

fn check_name(name: &str, max: usize, what: &str) -> Result<()> {
    if name.is_empty() || name.len() > max {
        return Err(ClientError::Invalid(format!(
            "{what} must be 1..={max} bytes, not {}",
            name.len()
        )));
    }
    Ok(())
}

fn check_room(room: Option<&str>) -> Result<&str> {
    match room {
        Some(r) => check_name(r, limits::ROOM_LEN_MAX, "room").map(|()| r),
        None => Ok(""),
    }
}

fn unexpected(response: &Response<'_>) -> ClientError {
    let name = format!("{response:?}");
    let name = name.split([' ', '{', '(']).next().unwrap_or("?");
    ClientError::Protocol(format!("unexpected {name} response"))
}

/// Walks `count` records laid back to back in `records`, calling `f` on each.
///
/// # Errors
/// [`ClientError::Protocol`] when the bytes are not exactly `count` records
/// (lengths only; CRCs are checked by whoever decodes the records).
pub fn split_records(records: &[u8], count: u32, mut f: impl FnMut(&[u8])) -> Result<()> {
    let mut rest = records;
    for _ in 0..count {
        let total = record::peek_record_len(rest)
            .map_err(|e| ClientError::Protocol(format!("bad record in push: {e}")))?
            .ok_or_else(|| ClientError::Protocol("truncated record in push".into()))?;
        let (one, tail) = rest
            .split_at_checked(total)
            .ok_or_else(|| ClientError::Protocol("truncated record in push".into()))?;
        f(one);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(ClientError::Protocol(
            "bytes after the records of a push".into(),
        ));
    }
    Ok(())
}

/// Parses a subscription start: `new`, `earliest`, an id (start at that
/// message, inclusive), an RFC 3339 time, or `@<unix-seconds>`.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_start(s: &str) -> Result<Start, String> {
    match s {
        "new" => return Ok(Start::New),
        "earliest" => return Ok(Start::Earliest),
        _ => {}
    }
    if let Some(secs) = s.strip_prefix('@') {
        let secs: u64 = secs
            .parse()
            .map_err(|_| format!("{s:?}: expected @<unix-seconds>"))?;
        let us = secs
            .checked_mul(1_000_000)
            .ok_or_else(|| format!("{s:?}: time out of range"))?;
        return Ok(Start::AtTime(us));
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let id: u64 = s.parse().map_err(|_| format!("{s:?}: id out of range"))?;
        return Ok(Start::AfterId(id.saturating_sub(1)));
    }
    time::parse_rfc3339_us(s).map(Start::AtTime).map_err(|e| {
        format!(
            "{e}; --from takes new, earliest, a message id, an RFC 3339 time or @<unix-seconds>"
        )
    })
}

impl Client {
    /// Connects to `addr` and authenticates with `key` (default options).
    ///
    /// # Errors
    /// [`ClientError::Io`] when the connection fails, [`ClientError::Server`]
    /// when the handshake or the key is refused.
    pub fn connect(addr: &str, key: &str) -> Result<Client> {
        Client::connect_with(&ConnectOptions::new(addr, key))
    }

    /// Connects and authenticates with `options`.
    ///
    /// # Errors
    /// As [`Client::connect`]; [`ClientError::Invalid`] for a key over its limit.
    pub fn connect_with(options: &ConnectOptions) -> Result<Client> {
        if options.key.len() > limits::KEY_LEN_MAX || options.user_key.len() > limits::KEY_LEN_MAX {
            return Err(ClientError::Invalid(format!(
                "keys are at most {} bytes",
                limits::KEY_LEN_MAX
            )));
        }
        let stream = open_stream(&options.addr, options.connect_timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(options.read_timeout)?;
        stream.set_write_timeout(options.read_timeout)?;
        let mut client = Client {
            stream,
            wbuf: Vec::with_capacity(WRITE_FLUSH_BYTES * 2),
            rbuf: vec![0; READ_BUFFER_LEN],
            rpos: 0,
            rend: 0,
            scratch: Vec::new(),
            next_request_id: 1,
            next_sub_id: 1,
            read_timeout: options.read_timeout,
            socket_timeout: options.read_timeout,
            max_in_flight: options.max_in_flight.max(1),
            inflight: VecDeque::new(),
            acks: VecDeque::new(),
            pushes: VecDeque::new(),
            info: ServerInfo {
                version: 0,
                frame_len_max: limits::FRAME_LEN_MAX,
                server_name: String::new(),
                identity_kind: 0,
                identity_id: 0,
                instance: String::new(),
            },
        };
        client.handshake(options)?;
        Ok(client)
    }

    fn handshake(&mut self, options: &ConnectOptions) -> Result<()> {
        let client_name = concat!("tidewire-rust/", env!("CARGO_PKG_VERSION"));
        let rid = self.send(&Request::Hello {
            version_min: 1,
            version_max: PROTOCOL_VERSION,
            client_name,
        });
        let (version, frame_len_max, server_name) = self.await_reply(rid, |r| match r {
            Response::HelloOk {
                version,
                frame_len_max,
                server_name,
            } => Ok((version, frame_len_max, server_name.to_owned())),
            other => Err(unexpected(&other)),
        })?;
        self.info.version = version;
        self.info.frame_len_max = frame_len_max.min(limits::FRAME_LEN_MAX);
        self.info.server_name = server_name;
        let rid = self.send(&Request::Auth {
            key: &options.key,
            user_key: &options.user_key,
            instance: &options.instance,
        });
        let (kind, id, instance) = self.await_reply(rid, |r| match r {
            Response::AuthOk {
                identity_kind,
                identity_id,
                instance,
            } => Ok((identity_kind, identity_id, instance.to_owned())),
            other => Err(unexpected(&other)),
        })?;
        self.info.identity_kind = kind;
        self.info.identity_id = id;
        self.info.instance = instance;
        Ok(())
    }

    /// What the server said during the handshake.
    pub fn server_info(&self) -> &ServerInfo {
        &self.info
    }

    // ----- plumbing -------------------------------------------------------

    fn next_rid(&mut self) -> u32 {
        let rid = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        rid
    }

    /// Appends a request to the write buffer and returns its request id.
    fn send(&mut self, request: &Request<'_>) -> u32 {
        let rid = self.next_rid();
        encode_request(&mut self.wbuf, rid, request);
        rid
    }

    /// Writes every buffered request to the socket.
    ///
    /// # Errors
    /// [`ClientError::Io`], [`ClientError::Closed`], or
    /// [`ClientError::Timeout`] when a write blocks past the read timeout.
    pub fn flush(&mut self) -> Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.wbuf);
        self.wbuf.clear();
        result.map_err(ClientError::from)
    }

    fn flush_if_full(&mut self) -> Result<()> {
        if self.wbuf.len() >= WRITE_FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn set_socket_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        if self.socket_timeout != timeout {
            self.stream.set_read_timeout(timeout)?;
            self.socket_timeout = timeout;
        }
        Ok(())
    }

    /// Reads once into the read buffer. `Ok(false)`: the `Wait::Until`
    /// deadline passed.
    fn read_more(&mut self, wait: Wait) -> Result<bool> {
        if self.rpos == self.rend {
            self.rpos = 0;
            self.rend = 0;
        } else if self.rend == self.rbuf.len() {
            self.compact();
        }
        let timeout = match wait {
            Wait::Default => self.read_timeout,
            Wait::Until(None) => None,
            Wait::Until(Some(deadline)) => {
                let now = Instant::now();
                if now >= deadline {
                    return self.read_ready();
                }
                Some(deadline - now)
            }
        };
        self.set_socket_timeout(timeout)?;
        loop {
            match self.stream.read(&mut self.rbuf[self.rend..]) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => {
                    self.rend += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return match wait {
                        Wait::Default => Err(ClientError::Timeout),
                        Wait::Until(_) => Ok(false),
                    };
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads what the socket holds without waiting (a zero or expired
    /// timeout polls rather than skipping the socket). `Ok(false)`: nothing.
    fn read_ready(&mut self) -> Result<bool> {
        self.stream.set_nonblocking(true)?;
        let result = loop {
            match self.stream.read(&mut self.rbuf[self.rend..]) {
                Ok(0) => break Err(ClientError::Closed),
                Ok(n) => {
                    self.rend += n;
                    break Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) => break Err(e.into()),
            }
        };
        self.stream.set_nonblocking(false)?;
        result
    }

    fn compact(&mut self) {
        self.rbuf.copy_within(self.rpos..self.rend, 0);
        self.rend -= self.rpos;
        self.rpos = 0;
    }

    /// Makes room for a frame of `total` bytes starting at `rpos`.
    fn reserve(&mut self, total: usize) {
        if self.rbuf.len() - self.rpos < total {
            self.compact();
            if self.rbuf.len() < total {
                self.rbuf.resize(total, 0);
            }
        }
    }

    /// The next whole frame: its header and the offset of its body in
    /// `rbuf` (valid until the next read). `Ok(None)` when a `Wait::Until`
    /// deadline passes first.
    fn read_frame(&mut self, wait: Wait) -> Result<Option<(FrameHeader, usize)>> {
        loop {
            let avail = &self.rbuf[self.rpos..self.rend];
            match decode_header(avail)? {
                Some(h) => {
                    let total = FRAME_HEADER_LEN + h.body_len;
                    if avail.len() >= total {
                        let start = self.rpos + FRAME_HEADER_LEN;
                        self.rpos += total;
                        return Ok(Some((h, start)));
                    }
                    self.reserve(total);
                }
                None => self.reserve(FRAME_HEADER_LEN),
            }
            if !self.read_more(wait)? {
                return Ok(None);
            }
        }
    }

    /// Flushes, then reads frames until the response to `rid` arrives and
    /// hands it to `f`; everything else that arrives meanwhile is queued.
    fn await_reply<T>(&mut self, rid: u32, f: impl FnOnce(Response<'_>) -> Result<T>) -> Result<T> {
        self.flush()?;
        loop {
            let Some((h, start)) = self.read_frame(Wait::Default)? else {
                return Err(ClientError::Timeout);
            };
            if h.request_id != rid {
                self.queue_unsolicited(&h, start)?;
                continue;
            }
            let body = &self.rbuf[start..start + h.body_len];
            return match decode_response(&h, body)? {
                Response::Error { code, message } => Err(ClientError::Server {
                    code,
                    message: message.to_owned(),
                }),
                other => f(other),
            };
        }
    }

    /// Queues a frame that is not the awaited response: a push, or the
    /// acknowledgement or error of a pipelined publish.
    fn queue_unsolicited(&mut self, h: &FrameHeader, start: usize) -> Result<()> {
        let body = &self.rbuf[start..start + h.body_len];
        let rid = h.request_id;
        match decode_response(h, body)? {
            Response::Deliver {
                sub_id,
                count,
                records,
            } => {
                split_records(records, count, |_| {})?;
                if count == 0 {
                    return Ok(());
                }
                self.pushes.push_back(Push::Deliver {
                    sub_id,
                    records: records.to_vec(),
                    pos: 0,
                });
            }
            Response::Gap {
                sub_id,
                wanted_id,
                oldest_id,
            } => self.pushes.push_back(Push::Event(Event::Gap {
                sub_id,
                wanted_id,
                oldest_id,
            })),
            Response::Truncated {
                sub_id,
                after_id,
                kept_id,
                next_id,
            } => self.pushes.push_back(Push::Event(Event::Truncated {
                sub_id,
                after_id,
                kept_id,
                next_id,
            })),
            Response::SubscriptionClosed {
                sub_id,
                code,
                message,
            } => self.pushes.push_back(Push::Event(Event::Closed {
                sub_id,
                code,
                message: message.to_owned(),
            })),
            Response::Error { code, message } if rid == 0 => {
                return Err(ClientError::Server {
                    code,
                    message: message.to_owned(),
                });
            }
            Response::Error { code, message } => {
                let message = message.to_owned();
                // An error for a publish sent with AckMode::None is not in
                // `inflight`; it is queued all the same, so it is not lost.
                remove_inflight(&mut self.inflight, rid);
                self.acks
                    .push_back(Err(ClientError::Server { code, message }));
            }
            Response::PublishAck {
                count,
                first_id,
                duplicates,
            } => {
                if !remove_inflight(&mut self.inflight, rid) {
                    return Err(ClientError::Protocol(format!(
                        "acknowledgement for unknown request {rid}"
                    )));
                }
                self.acks.push_back(Ok(PublishAckInfo {
                    request_id: rid,
                    count,
                    first_id,
                    duplicates,
                }));
            }
            other => return Err(unexpected(&other)),
        }
        Ok(())
    }

    // ----- publishing -----------------------------------------------------

    /// Checks a publish against the protocol's limits before anything is
    /// written, so a bad batch never poisons the write buffer.
    fn check_publish(&self, channel: &str, bodies: &[&[u8]]) -> Result<()> {
        check_name(channel, limits::CHANNEL_NAME_LEN_MAX, "channel name")?;
        let count = bodies.len();
        if count == 0 || count > limits::PUBLISH_BATCH_MAX as usize {
            return Err(ClientError::Invalid(format!(
                "a publish carries 1..={} messages, not {count}",
                limits::PUBLISH_BATCH_MAX
            )));
        }
        let body_max = limits::MESSAGE_BODY_LEN_MAX as usize;
        if let Some(bad) = bodies
            .iter()
            .find(|b| b.len() < record::BODY_HEADER_LEN || b.len() > body_max)
        {
            return Err(ClientError::Invalid(format!(
                "a message body must be {}..={body_max} bytes, not {}",
                record::BODY_HEADER_LEN,
                bad.len()
            )));
        }
        let frame_len = publish_frame_len(channel, bodies.iter().map(|b| b.len()));
        if frame_len > self.info.frame_len_max as usize + 4 {
            return Err(ClientError::Invalid(format!(
                "a publish of {frame_len} bytes is over the frame limit of {}; split the batch",
                self.info.frame_len_max
            )));
        }
        Ok(())
    }

    /// Appends a publish of pre-encoded bodies; `pipelined` publishes with an
    /// ack are tracked in the in-flight window.
    fn append_publish(
        &mut self,
        channel: &str,
        bodies: &[&[u8]],
        ack: AckMode,
        pipelined: bool,
    ) -> Result<u32> {
        self.check_publish(channel, bodies)?;
        let rid = self.next_rid();
        encode_publish(&mut self.wbuf, rid, channel, ack, bodies);
        if pipelined && ack != AckMode::None {
            self.inflight.push_back(rid);
        }
        self.flush_if_full()?;
        if self.inflight.len() >= self.max_in_flight {
            self.flush()?;
            while self.inflight.len() >= self.max_in_flight {
                let Some((h, start)) = self.read_frame(Wait::Default)? else {
                    return Err(ClientError::Timeout);
                };
                self.queue_unsolicited(&h, start)?;
            }
        }
        Ok(rid)
    }

    /// Encodes `messages` into the scratch buffer and appends one publish.
    fn publish_messages(
        &mut self,
        channel: &str,
        messages: &[OutgoingMessage<'_>],
        ack: AckMode,
        pipelined: bool,
    ) -> Result<u32> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let result = match messages {
            // The pipelined hot path: one body in the reused scratch buffer,
            // nothing allocated.
            [one] => one.encode_body(&mut scratch).and_then(|()| {
                let body: &[u8] = &scratch;
                self.append_publish(channel, std::slice::from_ref(&body), ack, pipelined)
            }),
            _ => {
                let mut ends = Vec::with_capacity(messages.len());
                let mut encoded = Ok(());
                for m in messages {
                    encoded = m.encode_body(&mut scratch);
                    if encoded.is_err() {
                        break;
                    }
                    ends.push(scratch.len());
                }
                encoded.and_then(|()| {
                    let mut bodies: Vec<&[u8]> = Vec::with_capacity(ends.len());
                    let mut start = 0;
                    for &end in &ends {
                        bodies.push(&scratch[start..end]);
                        start = end;
                    }
                    self.append_publish(channel, &bodies, ack, pipelined)
                })
            }
        };
        self.scratch = scratch;
        result
    }

    /// Publishes one message and returns its id (the original id when the
    /// idempotency key repeats an earlier publish). With [`AckMode::None`]
    /// the message is sent and 0 returned without waiting.
    ///
    /// # Errors
    /// [`ClientError::Server`] when the server refuses it; the others as
    /// for any request.
    pub fn publish(
        &mut self,
        channel: &str,
        message: &OutgoingMessage<'_>,
        ack: AckMode,
    ) -> Result<u64> {
        let rid = self.publish_messages(channel, std::slice::from_ref(message), ack, false)?;
        if ack == AckMode::None {
            self.flush()?;
            return Ok(0);
        }
        let info = self.await_ack(rid)?;
        info.ids()
            .first()
            .copied()
            .ok_or_else(|| ClientError::Protocol("acknowledgement without ids".into()))
    }

    /// Publishes `messages` in one frame and returns their ids in order
    /// (empty with [`AckMode::None`]).
    ///
    /// # Errors
    /// [`ClientError::Invalid`] for an empty batch or one over the frame
    /// limit; otherwise as [`Client::publish`].
    pub fn publish_batch(
        &mut self,
        channel: &str,
        messages: &[OutgoingMessage<'_>],
        ack: AckMode,
    ) -> Result<Vec<u64>> {
        let rid = self.publish_messages(channel, messages, ack, false)?;
        if ack == AckMode::None {
            self.flush()?;
            return Ok(Vec::new());
        }
        let info = self.await_ack(rid)?;
        if info.count as usize != messages.len() {
            return Err(ClientError::Protocol(format!(
                "acknowledgement counts {} messages, {} were sent",
                info.count,
                messages.len()
            )));
        }
        Ok(info.ids())
    }

    fn await_ack(&mut self, rid: u32) -> Result<PublishAckInfo> {
        self.await_reply(rid, |r| match r {
            Response::PublishAck {
                count,
                first_id,
                duplicates,
            } => Ok(PublishAckInfo {
                request_id: rid,
                count,
                first_id,
                duplicates,
            }),
            other => Err(unexpected(&other)),
        })
    }

    /// Pipelining: appends a publish of one message to the write buffer and
    /// returns its request id without waiting. Collect the acknowledgement
    /// with [`Client::recv_ack`] (unless `ack` is [`AckMode::None`]).
    ///
    /// The buffer is flushed past [`WRITE_FLUSH_BYTES`]; when
    /// [`ConnectOptions::max_in_flight`] acknowledgements are outstanding,
    /// this waits for one and queues it.
    ///
    /// # Errors
    /// [`ClientError::Invalid`] for fields over their limits; I/O errors.
    pub fn send_publish(
        &mut self,
        channel: &str,
        message: &OutgoingMessage<'_>,
        ack: AckMode,
    ) -> Result<u32> {
        self.publish_messages(channel, std::slice::from_ref(message), ack, true)
    }

    /// Pipelining: as [`Client::send_publish`] for a batch in one frame.
    ///
    /// # Errors
    /// As [`Client::publish_batch`].
    pub fn send_publish_batch(
        &mut self,
        channel: &str,
        messages: &[OutgoingMessage<'_>],
        ack: AckMode,
    ) -> Result<u32> {
        self.publish_messages(channel, messages, ack, true)
    }

    /// Pipelining fast path: one `Publish` frame of message bodies encoded
    /// beforehand with [`OutgoingMessage::encode_body`]; nothing is allocated.
    ///
    /// # Errors
    /// [`ClientError::Invalid`] for an empty batch, one over the frame limit
    /// or a body shorter than its header; I/O errors.
    pub fn send_publish_bodies(
        &mut self,
        channel: &str,
        bodies: &[&[u8]],
        ack: AckMode,
    ) -> Result<u32> {
        self.append_publish(channel, bodies, ack, true)
    }

    /// Pipelined publishes whose acknowledgement has not been returned by
    /// [`Client::recv_ack`] yet.
    pub fn acks_pending(&self) -> usize {
        self.inflight.len() + self.acks.len()
    }

    /// The next acknowledgement of a pipelined publish, in arrival order
    /// (which is send order), flushing first. Pushes that arrive meanwhile
    /// are queued for [`Client::next_event`].
    ///
    /// # Errors
    /// [`ClientError::Server`] when that publish failed (its error takes the
    /// acknowledgement's place; this includes errors of publishes sent with
    /// [`AckMode::None`]); [`ClientError::Invalid`] when nothing is pending.
    pub fn recv_ack(&mut self) -> Result<PublishAckInfo> {
        loop {
            if let Some(ack) = self.acks.pop_front() {
                return ack;
            }
            if self.inflight.is_empty() {
                return Err(ClientError::Invalid(
                    "no publish is awaiting an acknowledgement".into(),
                ));
            }
            self.flush()?;
            let Some((h, start)) = self.read_frame(Wait::Default)? else {
                return Err(ClientError::Timeout);
            };
            self.queue_unsolicited(&h, start)?;
        }
    }

    /// Collects the next `n` acknowledgements in order.
    ///
    /// # Errors
    /// The first failed publish, as [`Client::recv_ack`]; the
    /// acknowledgements after it stay pending.
    pub fn wait_acks(&mut self, n: usize) -> Result<Vec<PublishAckInfo>> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.recv_ack()?);
        }
        Ok(out)
    }

    // ----- subscriptions --------------------------------------------------

    /// Starts a subscription to `channel` (only `room` when given) at
    /// `start`; its events come from [`Client::next_event`].
    ///
    /// # Errors
    /// [`ClientError::Server`] (unknown channel, room required, limit
    /// reached, ...), [`ClientError::Invalid`] for names over their limits.
    pub fn subscribe(
        &mut self,
        channel: &str,
        room: Option<&str>,
        start: Start,
    ) -> Result<SubscriptionInfo> {
        self.subscribe_with(channel, room, start, false)
    }

    /// Starts a subscription that sees only committed records: those stored
    /// under the server's durability policy (under `batch`, after their
    /// sync), so never one a crash could take back.
    ///
    /// # Errors
    /// As [`Client::subscribe`].
    pub fn subscribe_committed(
        &mut self,
        channel: &str,
        room: Option<&str>,
        start: Start,
    ) -> Result<SubscriptionInfo> {
        self.subscribe_with(channel, room, start, true)
    }

    fn subscribe_with(
        &mut self,
        channel: &str,
        room: Option<&str>,
        start: Start,
        committed: bool,
    ) -> Result<SubscriptionInfo> {
        check_name(channel, limits::CHANNEL_NAME_LEN_MAX, "channel name")?;
        let room = check_room(room)?;
        let sub_id = self.next_sub_id;
        self.next_sub_id = self.next_sub_id.wrapping_add(1).max(1);
        let rid = self.send(&Request::Subscribe {
            sub_id,
            channel,
            room,
            start,
            committed,
        });
        self.await_reply(rid, |r| match r {
            Response::Subscribed {
                sub_id: got,
                next_id,
                head_id,
            } if got == sub_id => Ok(SubscriptionInfo {
                sub_id,
                next_id,
                head_id,
            }),
            other => Err(unexpected(&other)),
        })
    }

    /// Ends a subscription; events of it still queued are dropped.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `UnknownSubscription` for an id not in use.
    pub fn unsubscribe(&mut self, sub_id: u32) -> Result<()> {
        let rid = self.send(&Request::Unsubscribe { sub_id });
        self.await_reply(rid, |r| match r {
            Response::Unsubscribed { sub_id: got } if got == sub_id => Ok(()),
            other => Err(unexpected(&other)),
        })?;
        self.pushes.retain(|p| match p {
            Push::Deliver { sub_id: s, .. } => *s != sub_id,
            Push::Event(e) => e.sub_id() != sub_id,
        });
        Ok(())
    }

    /// The next queued event, decoding one record of a queued delivery.
    fn pop_event(&mut self) -> Result<Option<Event>> {
        let Some(front) = self.pushes.front_mut() else {
            return Ok(None);
        };
        let event = match front {
            Push::Event(_) => match self.pushes.pop_front() {
                Some(Push::Event(e)) => e,
                _ => unreachable!("the front was an event"),
            },
            Push::Deliver {
                sub_id,
                records,
                pos,
            } => {
                let rest = &records[*pos..];
                // `split_records` checked the lengths when the push was queued.
                let total = record::peek_record_len(rest)
                    .ok()
                    .flatten()
                    .ok_or_else(|| ClientError::Protocol("bad record in push".into()))?;
                let message = Message::from_record(&rest[..total])?;
                *pos += total;
                let event = Event::Message {
                    sub_id: *sub_id,
                    message,
                };
                if *pos == records.len() {
                    self.pushes.pop_front();
                }
                event
            }
        };
        Ok(Some(event))
    }

    /// The next subscription event, waiting at most `timeout` (None: until
    /// one arrives; `Some(Duration::ZERO)` polls without waiting).
    /// `Ok(None)` when the timeout passes first. Records are
    /// CRC-checked and decoded one at a time.
    ///
    /// # Errors
    /// [`ClientError::Closed`] when the server hangs up; a corrupt record
    /// is [`ClientError::Protocol`].
    pub fn next_event(&mut self, timeout: Option<Duration>) -> Result<Option<Event>> {
        self.flush()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(event) = self.pop_event()? {
                return Ok(Some(event));
            }
            let Some((h, start)) = self.read_frame(Wait::Until(deadline))? else {
                return Ok(None);
            };
            self.queue_unsolicited(&h, start)?;
        }
    }

    /// Events as a blocking iterator; it ends after the first error.
    pub fn events(&mut self) -> Events<'_> {
        Events {
            client: self,
            done: false,
        }
    }

    /// Zero-copy delivery for counting and timing: passes each record of the
    /// next `Deliver` push to `f` as `(sub_id, record bytes)` straight from
    /// the read buffer, without decoding or CRC check (use
    /// [`record::RecordView`] for fields). Gaps and closed subscriptions come
    /// back as [`RawNext::Gap`] and [`RawNext::Closed`]. `Ok(None)` when `timeout` passes first.
    ///
    /// # Errors
    /// As [`Client::next_event`].
    pub fn next_raw(
        &mut self,
        timeout: Option<Duration>,
        mut f: impl FnMut(u32, &[u8]),
    ) -> Result<Option<RawNext>> {
        self.flush()?;
        if let Some(push) = self.pushes.pop_front() {
            return match push {
                Push::Event(e) => Ok(RawNext::from_event(e)),
                Push::Deliver {
                    sub_id,
                    records,
                    pos,
                } => {
                    let mut n = 0u32;
                    // Lengths were checked when the push was queued.
                    split_records_unbounded(&records[pos..], |r| {
                        n += 1;
                        f(sub_id, r);
                    })?;
                    Ok(Some(RawNext::Records(n)))
                }
            };
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let Some((h, start)) = self.read_frame(Wait::Until(deadline))? else {
                return Ok(None);
            };
            if h.opcode == Opcode::Deliver as u8 {
                let body = &self.rbuf[start..start + h.body_len];
                if let Response::Deliver {
                    sub_id,
                    count,
                    records,
                } = decode_response(&h, body)?
                {
                    split_records(records, count, |r| f(sub_id, r))?;
                    return Ok(Some(RawNext::Records(count)));
                }
            }
            self.queue_unsolicited(&h, start)?;
            if let Some(Push::Event(_)) = self.pushes.front() {
                if let Some(Push::Event(e)) = self.pushes.pop_front() {
                    return Ok(RawNext::from_event(e));
                }
            }
        }
    }

    // ----- history, fetch, admin, ping ------------------------------------

    /// A page of history.
    ///
    /// # Errors
    /// [`ClientError::Server`] (unknown channel, room required, ...).
    pub fn history(&mut self, channel: &str, query: &HistoryQuery) -> Result<Vec<Message>> {
        check_name(channel, limits::CHANNEL_NAME_LEN_MAX, "channel name")?;
        let room = check_room(query.room.as_deref())?;
        let rid = self.send(&Request::History {
            channel,
            room,
            newest_first: query.newest_first,
            after_id: query.after_id,
            before_id: query.before_id,
            limit: query.limit.min(limits::HISTORY_PAGE_MAX),
        });
        self.await_reply(rid, |r| match r {
            Response::HistoryPage { count, records } => {
                let mut out = Vec::with_capacity(count.min(limits::HISTORY_PAGE_MAX) as usize);
                let mut bad = None;
                split_records(records, count, |raw| match Message::from_record(raw) {
                    Ok(m) => out.push(m),
                    Err(e) => bad = bad.take().or(Some(e)),
                })?;
                bad.map_or(Ok(out), Err)
            }
            other => Err(unexpected(&other)),
        })
    }

    /// One message by id.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `MessageNotFound` when it is not retained.
    pub fn fetch(&mut self, channel: &str, id: u64) -> Result<Message> {
        check_name(channel, limits::CHANNEL_NAME_LEN_MAX, "channel name")?;
        let rid = self.send(&Request::Fetch { channel, id });
        self.await_reply(rid, |r| match r {
            Response::Message { record } => Message::from_record(record),
            other => Err(unexpected(&other)),
        })
    }

    fn json_reply(&mut self, rid: u32) -> Result<Value> {
        self.await_reply(rid, |r| match r {
            Response::Channel { json }
            | Response::Channels { json }
            | Response::AdminResult { json } => serde_json::from_slice(json)
                .map_err(|e| ClientError::Protocol(format!("bad JSON from the server: {e}"))),
            other => Err(unexpected(&other)),
        })
    }

    fn json_body(fields: &Value) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(fields)
            .map_err(|e| ClientError::Invalid(format!("request fields: {e}")))?;
        if json.len() > limits::ADMIN_JSON_LEN_MAX {
            return Err(ClientError::Invalid(format!(
                "request fields are over {} bytes",
                limits::ADMIN_JSON_LEN_MAX
            )));
        }
        Ok(json)
    }

    /// Creates a channel from a JSON object (`name`, `type`, `description`,
    /// permissions, `custom_publish`, ...) and returns it as stored.
    ///
    /// # Errors
    /// [`ClientError::Server`] (`ChannelExists`, `InvalidName`, `BadRequest`).
    pub fn channel_create(&mut self, fields: &Value) -> Result<Value> {
        let json = Client::json_body(fields)?;
        let rid = self.send(&Request::ChannelCreate { json: &json });
        self.json_reply(rid)
    }

    /// One channel's settings.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `ChannelNotFound`.
    pub fn channel_get(&mut self, name: &str) -> Result<Value> {
        check_name(name, limits::CHANNEL_NAME_LEN_MAX, "channel name")?;
        let rid = self.send(&Request::ChannelGet { name });
        self.json_reply(rid)
    }

    /// Every channel the key may see.
    ///
    /// # Errors
    /// [`ClientError::Protocol`] when the server's answer is not a JSON array.
    pub fn channel_list(&mut self) -> Result<Vec<Value>> {
        let rid = self.send(&Request::ChannelList);
        match self.json_reply(rid)? {
            Value::Array(list) => Ok(list),
            _ => Err(ClientError::Protocol(
                "channel list is not a JSON array".into(),
            )),
        }
    }

    /// Changes the given fields of a channel and returns it as stored.
    ///
    /// # Errors
    /// [`ClientError::Server`] (`ChannelNotFound`, `BadRequest`).
    pub fn channel_update(&mut self, name: &str, fields: &Value) -> Result<Value> {
        check_name(name, limits::CHANNEL_NAME_LEN_MAX, "channel name")?;
        let json = Client::json_body(fields)?;
        let rid = self.send(&Request::ChannelUpdate { name, json: &json });
        self.json_reply(rid)
    }

    /// Deletes a channel and its log; its subscriptions are closed.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `ChannelNotFound`.
    pub fn channel_delete(&mut self, name: &str) -> Result<()> {
        check_name(name, limits::CHANNEL_NAME_LEN_MAX, "channel name")?;
        let rid = self.send(&Request::ChannelDelete { name });
        self.await_reply(rid, |r| match r {
            Response::Ok => Ok(()),
            other => Err(unexpected(&other)),
        })
    }

    /// Runs an administrative command: a JSON object with an `op`
    /// (`instance.create`, `key.create`, `user.create`, `group.add_member`,
    /// ...; `protocol.md`, section "Admin") and its fields.
    ///
    /// # Errors
    /// [`ClientError::Server`] (`PermissionDenied`, `IdentityNotFound`, ...).
    pub fn admin(&mut self, command: &Value) -> Result<Value> {
        let json = Client::json_body(command)?;
        let rid = self.send(&Request::Admin { json: &json });
        self.json_reply(rid)
    }

    /// Round trip of a `Ping`.
    ///
    /// # Errors
    /// [`ClientError::Protocol`] when the echo differs.
    pub fn ping(&mut self) -> Result<Duration> {
        let started = Instant::now();
        let token = u64::from(self.next_request_id).to_le_bytes();
        let rid = self.send(&Request::Ping { data: &token });
        self.await_reply(rid, |r| match r {
            Response::Pong { data } if data == token => Ok(()),
            Response::Pong { .. } => Err(ClientError::Protocol("pong echoes other bytes".into())),
            other => Err(unexpected(&other)),
        })?;
        Ok(started.elapsed())
    }
}

/// Walks records back to back until the bytes end (lengths already checked).
fn split_records_unbounded(mut rest: &[u8], mut f: impl FnMut(&[u8])) -> Result<()> {
    while !rest.is_empty() {
        let total = record::peek_record_len(rest)
            .ok()
            .flatten()
            .filter(|&t| t <= rest.len())
            .ok_or_else(|| ClientError::Protocol("bad record in push".into()))?;
        let (one, tail) = rest.split_at(total);
        f(one);
        rest = tail;
    }
    Ok(())
}

fn remove_inflight(inflight: &mut VecDeque<u32>, rid: u32) -> bool {
    if inflight.front() == Some(&rid) {
        inflight.pop_front();
        return true;
    }
    match inflight.iter().position(|&r| r == rid) {
        Some(i) => {
            inflight.remove(i);
            true
        }
        None => false,
    }
}

fn open_stream(addr: &str, timeout: Option<Duration>) -> Result<TcpStream> {
    let Some(timeout) = timeout else {
        return Ok(TcpStream::connect(addr)?);
    };
    let mut last = None;
    for sa in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&sa, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(ClientError::Io(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{addr} resolves to no address"),
        )
    })))
}

/// The blocking iterator of [`Client::events`].
#[derive(Debug)]
pub struct Events<'a> {
    client: &'a mut Client,
    done: bool,
}

impl Iterator for Events<'_> {
    type Item = Result<Event>;
    fn next(&mut self) -> Option<Result<Event>> {
        if self.done {
            return None;
        }
        match self.client.next_event(None) {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod wire_tests;
