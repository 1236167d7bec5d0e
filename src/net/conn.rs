//! One client connection: socket, bounded buffers, protocol state and its
//! subscriptions.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::BytesMut;
use mio::net::TcpStream;

use crate::broker::{Access, Caller, Channel};
use crate::limits;
use crate::storage::{Author, Cursor};
use crate::wire::{AckMode, ErrorCode};

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

/// What a connection's deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// A binary connection must complete `Hello` and `Auth` by then.
    Handshake,
    /// The head of the HTTP request being received must be whole by then.
    HttpHead,
    /// The body of the HTTP request being received must be whole by then.
    HttpBody,
}

/// One subscription of a connection.
#[derive(Debug)]
pub struct Sub {
    /// The channel.
    pub channel: Arc<Channel>,
    /// Its position in the channel's log.
    pub cursor: Cursor,
    /// Deliver only committed records (stored under the durability policy).
    pub committed: bool,
    /// The sequence number of the next live-only record it may get.
    pub live_seq: u64,
}

/// A publish frame of a binary connection waiting for its answer; answers
/// leave in the order the frames came.
#[derive(Debug)]
pub struct PendingAck {
    /// The frame's request id.
    pub request_id: u32,
    /// Messages in the frame.
    pub count: u32,
    /// Its acknowledgement mode.
    pub ack: AckMode,
    /// The channel (server-wide id), for the uuids the server assigned.
    pub channel: u64,
    /// The answer, once known.
    pub outcome: Option<AckOutcome>,
}

/// How a publish frame ended.
#[derive(Debug)]
pub enum AckOutcome {
    /// Stored: the first new id and the duplicates (index in the frame, id).
    Stored {
        /// Id of the first newly appended message (0: none).
        first_id: u64,
        /// Duplicates: (index in the frame, original id).
        duplicates: Vec<(u32, u64)>,
        /// Uuids the server did not assign: (index in the frame, uuid).
        uuids: Vec<(u32, [u8; 16])>,
    },
    /// Failed with a code.
    Failed {
        /// Stable code.
        code: ErrorCode,
        /// Explanation.
        message: String,
    },
    /// An answer already encoded (a request refused on the io thread).
    Encoded(Vec<u8>),
}

/// Consecutive publish frames of one connection, to one channel with one
/// ack mode, gathered into one writer request.
#[derive(Debug)]
pub struct Coalesced {
    /// Target channel.
    pub channel_id: u64,
    /// Recorded author.
    pub author: Author,
    /// Acknowledgement mode of every frame.
    pub ack: AckMode,
    /// The frames' messages: `count` × (u32 length, checked body).
    pub data: BytesMut,
    /// Messages gathered.
    pub count: u32,
    /// Frames gathered.
    pub frames: u32,
    /// Sequence number of the first frame.
    pub seq: u64,
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
    /// The protocol version agreed at `Hello`.
    pub version: u16,
    /// Set once the (HTTP) connection upgraded to a Channelstream WebSocket.
    pub cs_socket: Option<super::http::CsSocket>,
    /// Who the connection authenticated as.
    pub caller: Option<Caller>,
    /// The broker's access epoch `caller` was last checked at.
    pub caller_epoch: u64,
    /// Set when the caller's key was revoked: the next request fails with
    /// `AuthFailed` and the connection may authenticate again.
    pub revoked: bool,
    /// The access to the channel used last: (channel id, epoch, access).
    pub access_cache: Option<(u64, u64, Access)>,
    /// The channel looked up last (in the caller's instance, at
    /// `caller_epoch`).
    pub last_channel: Option<Arc<Channel>>,
    /// Subscriptions by client-chosen id.
    pub subs: HashMap<u32, Sub>,
    /// Publish requests queued for the writer and not yet completed.
    pub inflight: usize,
    /// Publish frames waiting for their answers, in frame order (binary).
    pub acks: VecDeque<PendingAck>,
    /// Sequence number of the first entry of `acks`.
    pub ack_seq: u64,
    /// Publish frames being gathered into one writer request.
    pub coalesced: Option<Coalesced>,
    /// Set when a delivery stopped because the write buffer was full.
    pub deliveries_blocked: bool,
    /// Close once the write buffer is flushed; read nothing more.
    pub closing: bool,
    /// A publish that did not fit the append queue; retried on wake-ups.
    pub stalled: Option<crate::broker::writer::WriterMsg>,
    /// Bytes of the stalled publish.
    pub stalled_bytes: usize,
    /// The connection's deadline (µs on the broker's clock) and what it is
    /// for; also in the io thread's timer set.
    pub timer: Option<(u64, TimerKind)>,
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
            version: crate::wire::PROTOCOL_VERSION_MIN,
            cs_socket: None,
            caller: None,
            caller_epoch: 0,
            revoked: false,
            access_cache: None,
            last_channel: None,
            subs: HashMap::new(),
            inflight: 0,
            acks: VecDeque::new(),
            ack_seq: 0,
            coalesced: None,
            deliveries_blocked: false,
            closing: false,
            stalled: None,
            stalled_bytes: 0,
            timer: None,
        }
    }

    /// True once the connection has authenticated (it may have lost its
    /// authentication to a revocation since): `caller_epoch` is set by the
    /// first successful `Auth` and never goes back to 0.
    pub fn handshake_done(&self) -> bool {
        self.caller_epoch > 0
    }

    /// The largest frame `len` this connection may send now: small until it
    /// has authenticated.
    pub fn frame_len_max(&self) -> u32 {
        if self.phase == Phase::Ready {
            limits::FRAME_LEN_MAX
        } else {
            limits::FRAME_LEN_UNAUTHENTICATED_MAX
        }
    }

    /// Bytes waiting to be written.
    pub fn pending_out(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Publish frames waiting for their answers (binary), or HTTP publishes
    /// waiting for the writer.
    pub fn awaiting(&self) -> usize {
        self.inflight
    }

    /// Answers a request refused on the io thread in request order: now, or
    /// after the publish frames still waiting for their answers.
    pub fn answer_in_order(&mut self, frame: Vec<u8>) {
        if self.acks.is_empty() {
            self.wbuf.extend_from_slice(&frame);
        } else {
            self.inflight += 1;
            self.acks.push_back(PendingAck {
                request_id: 0,
                count: 0,
                ack: AckMode::None,
                channel: 0,
                outcome: Some(AckOutcome::Encoded(frame)),
            });
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

    /// Makes room towards `need` unparsed bytes: compacts, then grows the
    /// buffer with the bytes that actually arrived (to at most twice what
    /// is buffered, at least `RBUF_INITIAL`, never past `need` or
    /// `CONNECTION_READ_BUFFER_MAX`), never to a length a peer only claims.
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
            let held = self.rend - self.rstart;
            let size = need
                .min(held.saturating_mul(2).max(RBUF_INITIAL))
                .min(limits::CONNECTION_READ_BUFFER_MAX);
            if size > self.rbuf.len() {
                self.rbuf.resize(size, 0);
            }
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
