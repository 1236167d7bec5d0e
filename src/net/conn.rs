//! One client connection: socket, bounded buffers, protocol state and its
//! subscriptions.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;

use crate::broker::{Access, Caller, Channel};
use crate::limits;
use crate::storage::Cursor;

/// Which protocol a connection speaks (fixed by the listener it came from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKind {
    /// The binary protocol.
    Binary,
    /// HTTP/1.1 (the legacy API shim).
    Http,
}

/// Where a connection is in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for `Hello`.
    Hello,
    /// Waiting for `Auth`.
    Auth,
    /// Authenticated.
    Ready,
}

/// One subscription of a connection.
#[derive(Debug)]
pub struct Sub {
    /// The channel.
    pub channel: Arc<Channel>,
    /// Its position in the channel's log.
    pub cursor: Cursor,
}

/// What reading from the socket found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Bytes arrived (or the buffer is full and frames must be handled first).
    Progress,
    /// Nothing more to read now.
    WouldBlock,
    /// The peer closed its side or the socket failed.
    Closed,
}

/// A client connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Binary or HTTP.
    pub kind: ConnKind,
    /// An HTTP request whose answer waits (a publish on its way to the log,
    /// or a parked poll); later requests on the connection wait behind it.
    pub http_wait: Option<Box<super::http::HttpWait>>,
    /// `100 Continue` was sent for the request being received.
    pub continue_sent: bool,
    /// Linger before closing (the client may still be sending a request
    /// that was refused).
    pub linger: bool,
    /// The write side is shut; input is read and dropped until the close.
    pub lingering: bool,
    /// Bytes dropped while lingering.
    pub discarded: usize,
    /// On the io thread's `again` list.
    pub queued_again: bool,
    /// On the io thread's `dirty` list.
    pub queued_dirty: bool,
    /// Slot generation; completions carry it.
    pub generation: u64,
    /// Read buffer: bytes `[rstart, rend)` are unparsed.
    pub rbuf: Vec<u8>,
    /// Start of unparsed bytes.
    pub rstart: usize,
    /// End of received bytes.
    pub rend: usize,
    /// Outbound bytes: `[wpos, len)` are not yet written.
    pub wbuf: Vec<u8>,
    /// Bytes of `wbuf` already written.
    pub wpos: usize,
    /// Handshake phase.
    pub phase: Phase,
    /// Who the connection authenticated as.
    pub caller: Option<Caller>,
    /// The broker's access epoch `caller` was last checked at.
    pub caller_epoch: u64,
    /// Set when the caller's key was revoked: the next request fails with
    /// `AuthFailed` and the connection may authenticate again.
    pub revoked: bool,
    /// The access to the channel used last: (channel id, epoch, access).
    pub access_cache: Option<(u64, u64, Access)>,
    /// Subscriptions by client-chosen id.
    pub subs: HashMap<u32, Sub>,
    /// Publish requests queued for the writer and not yet completed.
    pub inflight: usize,
    /// Publish completions received so far (counts every one, ack or not).
    pub completed: u64,
    /// Error frames of publishes refused on the io thread while earlier
    /// publishes were in flight: (value of `completed` at which to send,
    /// frame). They leave after those publishes' answers, in request order.
    pub deferred: VecDeque<(u64, Vec<u8>)>,
    /// Set when a delivery stopped because the write buffer was full.
    pub deliveries_blocked: bool,
    /// Close once the write buffer is flushed; read nothing more.
    pub closing: bool,
    /// A publish that did not fit the append queue; retried on wake-ups.
    pub stalled: Option<crate::broker::writer::WriterMsg>,
    /// Bytes of the stalled publish.
    pub stalled_bytes: usize,
}

/// Read buffer size of a connection once it has sent something; small, so an
/// idle connection costs little.
const RBUF_INITIAL: usize = 8 * 1024;
/// Write buffers up to this capacity are given back once flushed empty.
const WBUF_IDLE_KEEP_MAX: usize = 16 * 1024;
/// Read buffer size a busy connection grows to (larger frames grow it further,
/// up to one maximal frame).
const RBUF_BUSY: usize = 256 * 1024;

impl Conn {
    /// A new connection (binary ones start in the `Hello` phase).
    pub fn new(stream: TcpStream, kind: ConnKind, generation: u64) -> Conn {
        Conn {
            stream,
            kind,
            http_wait: None,
            continue_sent: false,
            linger: false,
            lingering: false,
            discarded: 0,
            queued_again: false,
            queued_dirty: false,
            generation,
            rbuf: Vec::new(),
            rstart: 0,
            rend: 0,
            wbuf: Vec::new(),
            wpos: 0,
            phase: Phase::Hello,
            caller: None,
            caller_epoch: 0,
            revoked: false,
            access_cache: None,
            subs: HashMap::new(),
            inflight: 0,
            completed: 0,
            deferred: VecDeque::new(),
            deliveries_blocked: false,
            closing: false,
            stalled: None,
            stalled_bytes: 0,
        }
    }

    /// Bytes waiting to be written.
    pub fn pending_out(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Requests waiting for the writer, or for it before their answer leaves.
    pub fn awaiting(&self) -> usize {
        self.inflight + self.deferred.len()
    }

    /// Answers `frame` in request order: now, or after the publishes in
    /// flight have been answered.
    pub fn answer_in_order(&mut self, frame: Vec<u8>) {
        if self.inflight == 0 {
            self.wbuf.extend_from_slice(&frame);
        } else {
            let at = self.completed + self.inflight as u64;
            self.deferred.push_back((at, frame));
        }
    }

    /// Counts one publish completion (its answer already written) and sends
    /// the deferred answers that were waiting for it.
    pub fn complete_one(&mut self) {
        self.inflight = self.inflight.saturating_sub(1);
        self.completed += 1;
        while self.deferred.front().is_some_and(|d| d.0 <= self.completed) {
            if let Some((_, frame)) = self.deferred.pop_front() {
                self.wbuf.extend_from_slice(&frame);
            }
        }
    }

    /// True when the write buffer is over its high-water mark.
    pub fn out_full(&self) -> bool {
        self.pending_out() >= limits::CONNECTION_WRITE_BUFFER_HIGH
    }

    /// Gives back the buffers of an idle connection (a parked poll) so that
    /// it costs little memory while it waits.
    pub fn release_buffers(&mut self) {
        if self.rstart == self.rend {
            self.rbuf = Vec::new();
            self.rstart = 0;
            self.rend = 0;
        }
        if self.pending_out() == 0 {
            self.wbuf = Vec::new();
            self.wpos = 0;
        }
    }

    /// True when the read buffer is full and may not grow for `max` bytes
    /// of unparsed input.
    pub fn read_buffer_full(&self, max: usize) -> bool {
        self.rend == self.rbuf.len() && (self.rend - self.rstart >= max || self.rbuf.len() >= max)
    }

    /// Makes room for `need` unparsed bytes (compacting, then growing up to
    /// `CONNECTION_READ_BUFFER_MAX`).
    pub fn reserve_frame(&mut self, need: usize) {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        if self.rbuf.len() - self.rstart < need || self.rbuf.len() - self.rend < 4096 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if self.rbuf.len() < need {
            let size = need.clamp(RBUF_INITIAL, limits::CONNECTION_READ_BUFFER_MAX);
            self.rbuf.resize(size, 0);
        }
    }

    /// Reads once into the free tail of the read buffer.
    pub fn read_some(&mut self) -> ReadOutcome {
        if self.rbuf.is_empty() {
            return self.read_first();
        } else if self.rend == self.rbuf.len() && self.rstart == 0 && self.rbuf.len() < RBUF_BUSY {
            // The last read filled the buffer: this peer sends in bulk.
            let size = (self.rbuf.len() * 2).min(RBUF_BUSY);
            self.rbuf.resize(size, 0);
        }
        if self.rend == self.rbuf.len() {
            self.reserve_frame(0);
            if self.rend == self.rbuf.len() {
                return ReadOutcome::Progress;
            }
        }
        loop {
            match self.stream.read(&mut self.rbuf[self.rend..]) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => {
                    self.rend += n;
                    return ReadOutcome::Progress;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Run dry: a small, empty buffer is given back, so an
                    // idle connection holds none (bulk senders keep theirs).
                    if self.rstart == self.rend && self.rbuf.len() <= RBUF_INITIAL {
                        self.rbuf = Vec::new();
                        self.rstart = 0;
                        self.rend = 0;
                    }
                    return ReadOutcome::WouldBlock;
                }
                Err(_) => return ReadOutcome::Closed,
            }
        }
    }

    /// Reads into a connection without a buffer: the bytes land on the
    /// stack first, and a buffer is made only when some arrived, so an idle
    /// connection (or a parked poll) holds no read buffer at all.
    fn read_first(&mut self) -> ReadOutcome {
        let mut first = [0u8; RBUF_INITIAL];
        loop {
            match self.stream.read(&mut first) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => {
                    self.rbuf.resize(RBUF_INITIAL, 0);
                    self.rbuf[..n].copy_from_slice(&first[..n]);
                    self.rstart = 0;
                    self.rend = n;
                    return ReadOutcome::Progress;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::WouldBlock,
                Err(_) => return ReadOutcome::Closed,
            }
        }
    }

    /// Writes as much of the write buffer as the socket takes.
    ///
    /// # Errors
    /// A socket error other than `WouldBlock`/`Interrupted`.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
            // Give back memory after a burst, keeping a working size; a
            // small buffer is given back whole, so an idle connection holds
            // none.
            if self.wbuf.capacity() <= WBUF_IDLE_KEEP_MAX {
                self.wbuf = Vec::new();
            } else if self.wbuf.capacity() > 2 * limits::CONNECTION_WRITE_BUFFER_HIGH {
                self.wbuf.shrink_to(limits::CONNECTION_WRITE_BUFFER_HIGH);
            }
        } else if self.wpos > limits::CONNECTION_WRITE_BUFFER_HIGH {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        Ok(())
    }
}
