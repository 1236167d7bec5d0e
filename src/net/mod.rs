//! The event loop: one `mio::Poll` per io thread, a closed set of tokens
//! (listener, waker, connections), one `match` per event, draining until
//! `WouldBlock`.
//!
//! Owns: sockets, connection buffers, accept and close, and driving
//! subscriber cursors into write buffers. Never parses bytes itself (that is
//! `wire` and `storage::record`) and never writes files.

mod acks;
mod conn;
mod handle;
mod http;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::broker::{Broker, Channel, IoLink};
use crate::limits;
use crate::storage::{Chunk, LogReader};
use crate::wire::{self, ErrorCode, Response};
use conn::{Conn, ConnKind, ReadOutcome};

/// How long a refused HTTP connection lingers before its close, µs.
const LINGER_US: u64 = 2_000_000;
/// Most bytes a lingering connection may still send before it is closed.
const LINGER_BYTES_MAX: usize = 1024 * 1024;

const LISTENER: Token = Token(usize::MAX - 1);
const HTTP_LISTENER: Token = Token(usize::MAX - 3);
/// The token of every io thread's waker.
pub const WAKER: Token = Token(usize::MAX - 2);

/// Subscribers of one channel on this io thread.
#[derive(Debug)]
struct ChannelSubs {
    channel: Arc<Channel>,
    reader: LogReader,
    last_head: u64,
    /// (slab index, generation, subscription id).
    members: Vec<(usize, u64, u32)>,
}

/// New connections handed from the accepting thread to each io thread.
pub type Handoff = Arc<Vec<ArrayQueue<(TcpStream, ConnKind)>>>;

/// The listeners io thread 0 accepts on.
#[derive(Debug, Default)]
pub struct Listeners {
    /// The binary protocol.
    pub binary: Option<TcpListener>,
    /// The HTTP shim.
    pub http: Option<TcpListener>,
}

/// One io thread's state.
pub struct IoThread {
    id: usize,
    poll: Poll,
    broker: Arc<Broker>,
    link: Arc<IoLink>,
    listener: Option<TcpListener>,
    http_listener: Option<TcpListener>,
    handoff: Handoff,
    /// Parked HTTP long polls.
    parked: http::Parked,
    /// Connections lingering before their close: (index, generation, until µs).
    lingering: Vec<(usize, u64, u64)>,
    next_target: usize,
    conns: Slab<Conn>,
    next_generation: u64,
    channel_subs: HashMap<u64, ChannelSubs>,
    /// Channels looked up by this thread: instance id → name → channel.
    channel_cache: HashMap<u32, HashMap<String, Arc<Channel>>>,
    /// Entries in `channel_cache` (bounded by `CHANNELS_MAX`).
    channel_cache_len: usize,
    /// The broker's access epoch subscriptions were last checked at.
    seen_epoch: u64,
    /// Connections with unhandled input or a stalled publish.
    again: Vec<usize>,
    /// Connections whose write buffer grew since the last flush pass.
    dirty: Vec<usize>,
}

impl IoThread {
    /// An io thread; thread 0 also owns the listeners.
    pub fn new(
        id: usize,
        poll: Poll,
        broker: Arc<Broker>,
        listeners: Listeners,
        handoff: Handoff,
    ) -> std::io::Result<IoThread> {
        let link = broker.io_links[id].clone();
        let Listeners {
            binary: mut listener,
            http: mut http_listener,
        } = listeners;
        if let Some(l) = listener.as_mut() {
            poll.registry().register(l, LISTENER, Interest::READABLE)?;
        }
        if let Some(l) = http_listener.as_mut() {
            poll.registry()
                .register(l, HTTP_LISTENER, Interest::READABLE)?;
        }
        Ok(IoThread {
            id,
            poll,
            broker,
            link,
            listener,
            http_listener,
            handoff,
            parked: http::Parked::default(),
            lingering: Vec::new(),
            next_target: 0,
            conns: Slab::new(),
            next_generation: 1,
            channel_subs: HashMap::new(),
            channel_cache: HashMap::new(),
            channel_cache_len: 0,
            seen_epoch: 0,
            again: Vec::new(),
            dirty: Vec::new(),
        })
    }

    /// Runs the loop until shutdown completes.
    ///
    /// # Errors
    /// A failure of the poll itself.
    pub fn run(mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut shutdown_started: Option<Instant> = None;
        loop {
            let timeout = if self.again.is_empty() {
                Some(self.idle_timeout())
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(ConnKind::Binary),
                    HTTP_LISTENER => self.accept(ConnKind::Http),
                    WAKER => {}
                    Token(index) => {
                        if event.is_readable() || event.is_read_closed() {
                            self.on_readable(index);
                        }
                        if event.is_writable() || event.is_write_closed() {
                            self.on_writable(index);
                        }
                    }
                }
            }
            self.link.wake_pending.store(false, Ordering::Release);
            self.take_handoffs();
            self.drain_completions();
            self.revalidate();
            self.run_again();
            self.fan_out();
            self.expire_parked();
            self.expire_lingering();
            self.flush_dirty();
            if self.broker.shutting_down.load(Ordering::Acquire) {
                let started = *shutdown_started.get_or_insert_with(|| {
                    self.listener = None;
                    self.http_listener = None;
                    Instant::now()
                });
                if self.broker.writer_done.load(Ordering::Acquire) {
                    self.drain_completions();
                    self.flush_dirty();
                    self.final_flush();
                    return Ok(());
                }
                if started.elapsed() > Duration::from_secs(30) {
                    tracing::error!("shutdown: the writer did not finish in 30 s");
                    return Ok(());
                }
            }
        }
    }

    /// How long the loop may sleep: the usual tick, or less when a parked
    /// poll's deadline comes sooner.
    fn idle_timeout(&self) -> Duration {
        let tick = Duration::from_millis(200);
        match self.parked.next_deadline_us() {
            None => tick,
            Some(d) => {
                let now = self.broker.clock().now_us();
                tick.min(Duration::from_micros(d.saturating_sub(now)))
            }
        }
    }

    fn accept(&mut self, kind: ConnKind) {
        loop {
            let listener = match kind {
                ConnKind::Binary => self.listener.as_ref(),
                ConnKind::Http => self.http_listener.as_ref(),
            };
            let Some(listener) = listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, _)) => {
                    if self.broker.connections.load(Ordering::Acquire) >= limits::CONNECTIONS_MAX {
                        refuse(stream, kind);
                        continue;
                    }
                    self.broker.connections.fetch_add(1, Ordering::AcqRel);
                    let n = self.handoff.len();
                    let target = self.next_target % n;
                    self.next_target = self.next_target.wrapping_add(1);
                    if target == self.id {
                        self.register(stream, kind);
                    } else if let Some(q) = self.handoff.get(target) {
                        if let Err((stream, kind)) = q.push((stream, kind)) {
                            self.register(stream, kind);
                        } else if let Some(link) = self.broker.io_links.get(target) {
                            link.wake();
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors or similar: log and retry on the next event.
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    fn take_handoffs(&mut self) {
        while let Some((stream, kind)) = self.handoff.get(self.id).and_then(ArrayQueue::pop) {
            self.register(stream, kind);
        }
    }

    fn register(&mut self, mut stream: TcpStream, kind: ConnKind) {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let entry = self.conns.vacant_entry();
        let index = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(error = %e, "could not register a connection");
            self.broker.connections.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        entry.insert(Conn::new(stream, kind, generation));
    }

    fn on_readable(&mut self, index: usize) {
        if self.broker.shutting_down.load(Ordering::Acquire) {
            // Shutdown takes no new requests: what was queued is appended,
            // synced and answered; nothing is queued after the writer drained.
            return;
        }
        if self.conns.get(index).is_some_and(|c| c.lingering) {
            self.discard_input(index);
            return;
        }
        if self.is_http(index) {
            self.on_readable_http(index);
            return;
        }
        loop {
            let Some(conn) = self.conns.get_mut(index) else {
                return;
            };
            if conn.closing || self.paused(index) {
                return;
            }
            let Some(conn) = self.conns.get_mut(index) else {
                return;
            };
            match conn.read_some() {
                ReadOutcome::Progress => {
                    if !self.handle_frames(index) {
                        return;
                    }
                }
                ReadOutcome::WouldBlock => return,
                ReadOutcome::Closed => {
                    self.close(index);
                    return;
                }
            }
        }
    }

    /// Reads an HTTP connection. While a request waits (a parked poll, a
    /// publish), input is only buffered, up to one request, so that a
    /// hang-up is seen at once and pipelined requests wait their turn.
    fn on_readable_http(&mut self, index: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(index) else {
                return;
            };
            if conn.closing || conn.out_full() {
                return;
            }
            let waiting = conn.http_wait.is_some() || conn.stalled.is_some();
            if waiting
                && conn.read_buffer_full(limits::HTTP_HEAD_LEN_MAX + limits::HTTP_BODY_LEN_MAX)
            {
                return;
            }
            match conn.read_some() {
                ReadOutcome::Progress => {
                    if waiting {
                        continue;
                    }
                    if !self.handle_http(index) {
                        return;
                    }
                }
                ReadOutcome::WouldBlock => return,
                ReadOutcome::Closed => {
                    self.close(index);
                    return;
                }
            }
        }
    }

    /// Handles buffered input: frames or HTTP requests.
    fn handle_input(&mut self, index: usize) -> bool {
        if self.is_http(index) {
            self.handle_http(index)
        } else {
            self.handle_frames(index)
        }
    }

    /// True when the connection must not take more input now; it is then
    /// on the `again` list or waits for a writable event.
    fn paused(&mut self, index: usize) -> bool {
        let Some(conn) = self.conns.get(index) else {
            return true;
        };
        if conn.stalled.is_some() {
            self.push_again(index);
            return true;
        }
        // A full write buffer resumes on the writable event; too many
        // publishes in flight resume when their completions arrive.
        conn.out_full() || conn.inflight >= limits::CONNECTION_INFLIGHT_REQUESTS_MAX
    }

    fn on_writable(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if let Err(e) = conn.flush() {
            tracing::debug!(error = %e, "write failed");
            self.close(index);
            return;
        }
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if conn.closing {
            if conn.pending_out() == 0 {
                self.finish(index);
            }
            return;
        }
        self.push_again(index);
    }

    /// Restarts the cursors of a connection whose deliveries stopped at a
    /// full write buffer, once the buffer has room again.
    fn resume_deliveries(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if !conn.deliveries_blocked || conn.out_full() {
            return;
        }
        conn.deliveries_blocked = false;
        let ids: Vec<u32> = conn.subs.keys().copied().collect();
        for sub_id in ids {
            self.pump(index, sub_id);
        }
        self.mark_dirty(index);
    }

    /// Retries stalled publishes and parses input left in read buffers.
    fn run_again(&mut self) {
        if self.broker.shutting_down.load(Ordering::Acquire) {
            for index in std::mem::take(&mut self.again) {
                if let Some(c) = self.conns.get_mut(index) {
                    c.queued_again = false;
                }
            }
            return;
        }
        let list = std::mem::take(&mut self.again);
        for &index in &list {
            if let Some(c) = self.conns.get_mut(index) {
                c.queued_again = false;
            }
        }
        for index in list {
            self.resume_deliveries(index);
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            if let Some(msg) = conn.stalled.take() {
                let bytes = conn.stalled_bytes;
                match self.broker.try_append(msg, bytes) {
                    Ok(()) => {}
                    Err(back) => {
                        conn.stalled = Some(back);
                        self.push_again(index);
                        continue;
                    }
                }
            }
            if self.handle_input(index) {
                self.on_readable(index);
            }
        }
        if !self.again.is_empty() {
            // Give the writer a moment when its queue is what blocks us.
            std::thread::yield_now();
        }
    }

    /// Puts a connection on the list to flush at the end of this turn (once).
    fn mark_dirty(&mut self, index: usize) {
        if let Some(c) = self.conns.get_mut(index) {
            if !c.queued_dirty {
                c.queued_dirty = true;
                self.dirty.push(index);
            }
        }
    }

    /// Puts a connection on the list to look at again this turn (once).
    fn push_again(&mut self, index: usize) {
        if let Some(c) = self.conns.get_mut(index) {
            if !c.queued_again {
                c.queued_again = true;
                self.again.push(index);
            }
        }
    }

    fn flush_dirty(&mut self) {
        for index in std::mem::take(&mut self.dirty) {
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            conn.queued_dirty = false;
            if let Err(e) = conn.flush() {
                tracing::debug!(error = %e, "write failed");
                self.close(index);
                continue;
            }
            let Some(conn) = self.conns.get(index) else {
                continue;
            };
            if conn.closing && conn.pending_out() == 0 {
                self.finish(index);
            } else if conn.deliveries_blocked && !conn.out_full() {
                // The socket took the buffer without reaching `WouldBlock`,
                // so no writable event will come: resume on the next turn.
                self.push_again(index);
            }
        }
    }

    /// Moves newly published records of every channel with subscribers on
    /// this thread into their connections' write buffers.
    fn fan_out(&mut self) {
        let mut work: Vec<(usize, u32)> = Vec::new();
        let mut gone: Vec<u64> = Vec::new();
        for (id, cs) in &mut self.channel_subs {
            if cs.channel.is_deleted() {
                gone.push(*id);
                continue;
            }
            let head = cs.reader.head_id();
            if head == cs.last_head {
                continue;
            }
            cs.last_head = head;
            for &(index, generation, sub_id) in &cs.members {
                if self
                    .conns
                    .get(index)
                    .is_some_and(|c| c.generation == generation)
                {
                    work.push((index, sub_id));
                }
            }
        }
        for id in gone {
            self.close_channel_subs(id);
        }
        for (index, sub_id) in work {
            self.pump(index, sub_id);
            self.mark_dirty(index);
        }
        self.wake_parked();
    }

    fn close_channel_subs(&mut self, channel_id: u64) {
        let Some(cs) = self.channel_subs.remove(&channel_id) else {
            return;
        };
        for m in self.channel_cache.values_mut() {
            m.retain(|_, c| c.id != channel_id);
        }
        for (index, generation, sub_id) in cs.members {
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            if conn.generation != generation || conn.subs.remove(&sub_id).is_none() {
                continue;
            }
            wire::encode_response(
                &mut conn.wbuf,
                0,
                &Response::SubscriptionClosed {
                    sub_id,
                    code: ErrorCode::ChannelNotFound,
                    message: "the channel was deleted",
                },
            );
            self.mark_dirty(index);
        }
    }

    /// Re-checks, once per move of the broker's access epoch, every
    /// connection that holds subscriptions: a connection whose key is gone
    /// loses its authentication and subscriptions; a subscription its caller
    /// may no longer read ends with `SubscriptionClosed` (`PermissionDenied`).
    /// Connections without subscriptions are re-checked at their next request.
    fn revalidate(&mut self) {
        let epoch = self.broker.epoch();
        if epoch == self.seen_epoch {
            return;
        }
        self.seen_epoch = epoch;
        self.revalidate_parked();
        let indexes: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.subs.is_empty())
            .map(|(i, _)| i)
            .collect();
        for index in indexes {
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            let fresh = conn.caller.as_ref().and_then(|c| self.broker.refresh(c));
            conn.caller_epoch = epoch;
            conn.access_cache = None;
            let Some(caller) = fresh else {
                self.revoke(index);
                continue;
            };
            let denied: Vec<u32> = conn
                .subs
                .iter()
                .filter(|(_, sub)| !self.broker.access(&caller, &sub.channel).read)
                .map(|(&id, _)| id)
                .collect();
            conn.caller = Some(caller);
            for sub_id in denied {
                self.end_sub(
                    index,
                    sub_id,
                    ErrorCode::PermissionDenied,
                    "access to the channel was revoked",
                );
            }
        }
    }

    /// Ends a connection's authentication after its key was revoked: every
    /// subscription closes, and the next request fails with `AuthFailed`.
    pub(crate) fn revoke(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        conn.caller = None;
        conn.phase = conn::Phase::Auth;
        conn.revoked = true;
        conn.access_cache = None;
        let ids: Vec<u32> = conn.subs.keys().copied().collect();
        for sub_id in ids {
            self.end_sub(
                index,
                sub_id,
                ErrorCode::PermissionDenied,
                "the key was revoked",
            );
        }
    }

    /// Ends one subscription from the server's side.
    fn end_sub(&mut self, index: usize, sub_id: u32, code: ErrorCode, message: &str) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        let Some(sub) = conn.subs.remove(&sub_id) else {
            return;
        };
        let generation = conn.generation;
        wire::encode_response(
            &mut conn.wbuf,
            0,
            &Response::SubscriptionClosed {
                sub_id,
                code,
                message,
            },
        );
        self.forget_member(sub.channel.id, index, generation, sub_id);
        self.mark_dirty(index);
    }

    /// Copies records from one subscription's cursor into its connection's
    /// write buffer until it is up to date or the buffer is full.
    fn pump(&mut self, index: usize, sub_id: u32) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        let Some(sub) = conn.subs.get_mut(&sub_id) else {
            return;
        };
        loop {
            if conn.wbuf.len() - conn.wpos >= limits::CONNECTION_WRITE_BUFFER_HIGH {
                conn.deliveries_blocked = true;
                return;
            }
            let start = wire::begin_deliver(&mut conn.wbuf, sub_id);
            let wbuf = &mut conn.wbuf;
            let chunk = sub
                .cursor
                .read(limits::DELIVERY_CHUNK_BYTES_MAX, &mut |run| {
                    wbuf.extend_from_slice(run)
                });
            match chunk {
                Chunk::Records { records, .. } => wire::end_deliver(&mut conn.wbuf, start, records),
                Chunk::UpToDate => {
                    conn.wbuf.truncate(start);
                    return;
                }
                Chunk::Gap {
                    wanted_id,
                    oldest_id,
                } => {
                    conn.wbuf.truncate(start);
                    wire::encode_response(
                        &mut conn.wbuf,
                        0,
                        &Response::Gap {
                            sub_id,
                            wanted_id,
                            oldest_id,
                        },
                    );
                }
            }
        }
    }

    /// Ends a connection whose last answer is written. One that was refused
    /// in the middle of a request (an HTTP framing error) first lingers: its
    /// write side is shut and what the client still sends is read and
    /// dropped for a while, so that the client reads the answer instead of
    /// a reset.
    fn finish(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if !conn.linger || conn.lingering {
            if !conn.lingering {
                self.close(index);
            }
            return;
        }
        conn.lingering = true;
        conn.rbuf = Vec::new();
        conn.rstart = 0;
        conn.rend = 0;
        if conn.stream.shutdown(std::net::Shutdown::Write).is_err() {
            self.close(index);
            return;
        }
        let until = self.broker.clock().now_us().saturating_add(LINGER_US);
        let generation = conn.generation;
        self.lingering.push((index, generation, until));
        self.discard_input(index);
    }

    /// Reads and drops the input of a lingering connection; closes it at
    /// the end of its input or past `LINGER_BYTES_MAX`.
    fn discard_input(&mut self, index: usize) {
        let mut scratch = [0u8; 4096];
        loop {
            let Some(conn) = self.conns.get_mut(index) else {
                return;
            };
            match std::io::Read::read(&mut conn.stream, &mut scratch) {
                Ok(0) => break,
                Ok(n) => {
                    conn.discarded += n;
                    if conn.discarded > LINGER_BYTES_MAX {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.close(index);
    }

    /// Closes lingering connections whose time is up.
    fn expire_lingering(&mut self) {
        if self.lingering.is_empty() {
            return;
        }
        let now = self.broker.clock().now_us();
        let mut due = Vec::new();
        self.lingering.retain(|&(index, generation, until)| {
            let over = until <= now;
            if over {
                due.push((index, generation));
            }
            !over
        });
        for (index, generation) in due {
            if self
                .conns
                .get(index)
                .is_some_and(|c| c.generation == generation)
            {
                self.close(index);
            }
        }
    }

    fn close(&mut self, index: usize) {
        if !self.conns.contains(index) {
            return;
        }
        self.unpark(index);
        let mut conn = self.conns.remove(index);
        if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
            tracing::debug!(error = %e, "deregister failed");
        }
        for (&sub_id, sub) in &conn.subs {
            self.forget_member(sub.channel.id, index, conn.generation, sub_id);
        }
        self.broker.connections.fetch_sub(1, Ordering::AcqRel);
    }

    fn forget_member(&mut self, channel_id: u64, index: usize, generation: u64, sub_id: u32) {
        if let Some(cs) = self.channel_subs.get_mut(&channel_id) {
            cs.members
                .retain(|&(i, g, s)| !(i == index && g == generation && s == sub_id));
            if cs.members.is_empty() {
                self.channel_subs.remove(&channel_id);
            }
        }
    }

    fn final_flush(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let indexes: Vec<usize> = self.conns.iter().map(|(i, _)| i).collect();
        for index in indexes {
            while Instant::now() < deadline {
                let Some(conn) = self.conns.get_mut(index) else {
                    break;
                };
                if conn.pending_out() == 0 || conn.flush().is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
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

/// Tells a connection over the limit why it is closed, without blocking.
fn refuse(mut stream: TcpStream, kind: ConnKind) {
    use std::io::Write;
    let mut out = Vec::new();
    match kind {
        ConnKind::Binary => wire::encode_error(
            &mut out,
            0,
            ErrorCode::LimitExceeded,
            "too many connections (CONNECTIONS_MAX)",
        ),
        ConnKind::Http => crate::http::write_error(
            &mut out,
            &crate::http::ApiError::Unavailable("Too many connections; retry later.".into()),
            &[("Retry-After", "1")],
            &crate::http::ResponseOptions::closing(),
        ),
    }
    // Best effort: the socket is new, so the small frame fits its buffer;
    // if not, the peer sees the close alone.
    if let Err(e) = stream.write(&out) {
        tracing::debug!(error = %e, "could not send the refusal");
    }
}
