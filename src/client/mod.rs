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
mod publish;
mod reads;
mod subscribe;
mod types;
pub use crate::time;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use crate::wire::{format_uuid, parse_uuid};
pub use error::{error_code_name, ClientError};
pub use message::{Message, OutgoingMessage};
pub use types::*;

use crate::limits;
use crate::storage::record;
use crate::wire::{
    decode_header, decode_response, encode_publish, encode_request, publish_frame_len, AckMode,
    AmendTarget, ErrorCode, FrameHeader, Opcode, Request, Response, Start, FRAME_HEADER_LEN,
    PROTOCOL_VERSION,
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

/// A channel name of a message request: at most `CHANNEL_NAME_LEN_MAX`
/// bytes; the empty name is the instance's user stream ([`USER_STREAM`]).
fn check_channel(name: &str) -> Result<()> {
    if name.len() > limits::CHANNEL_NAME_LEN_MAX {
        return Err(ClientError::Invalid(format!(
            "channel name must be at most {} bytes, not {}",
            limits::CHANNEL_NAME_LEN_MAX,
            name.len()
        )));
    }
    Ok(())
}

/// The channel name that stands for the instance's user stream in message
/// requests: publishing there sends user-directed messages (each names
/// `pm_users`; keys without a user), subscribing follows the caller's own
/// (a user key).
pub const USER_STREAM: &str = "";

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
            Response::Live { sub_id, record } => {
                let message = Message::from_record(record)?;
                self.pushes
                    .push_back(Push::Event(Event::Live { sub_id, message }));
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
                uuids,
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
                    uuids,
                }));
            }
            other => return Err(unexpected(&other)),
        }
        Ok(())
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
