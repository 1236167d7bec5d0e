//! The event loop: one `mio::Poll` per io thread, a closed set of tokens
//! (listener, waker, connections), one `match` per event, draining until
//! `WouldBlock`.
//!
//! Owns: sockets, connection buffers, accept and close, and driving
//! subscriber cursors into write buffers. Never parses bytes itself (that is
//! `wire` and `storage::record`) and never writes files.

mod amend;
mod close;
mod completions;
mod conn;
mod fanout;
mod handle;
mod handshake;
mod http;
mod timers;

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
use crate::storage::LogReader;
use crate::wire::{self, ErrorCode};
use conn::{Conn, ConnKind, ReadOutcome};

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
    last_committed: u64,
    /// The channel's next live-only sequence number when last pumped.
    last_live: u64,
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
    /// Connection deadlines (handshake, HTTP head and body).
    timers: timers::Timers,
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
    /// Message ranges of the publish frame being checked (kept to reuse).
    ranges_scratch: Vec<(usize, usize)>,
    /// When Channelstream's idle connections were last collected (thread 0), µs.
    cs_collected_us: u64,
    /// Connections upgraded to Channelstream WebSockets.
    cs_sockets: std::collections::HashSet<usize>,
    /// The writer's batch count when the sockets last read their logs.
    cs_seen_batches: u64,
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
            timers: timers::Timers::new(),
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
            ranges_scratch: Vec::new(),
            cs_collected_us: 0,
            cs_sockets: std::collections::HashSet::new(),
            cs_seen_batches: 0,
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
            self.cs_collect_idle();
            self.expire_timers();
            self.expire_lingering();
            self.flush_dirty();
            if self.broker.shutting_down.load(Ordering::Acquire) {
                if shutdown_started.is_none() {
                    // Connections the kernel completed but nobody accepted
                    // yet are taken here, so that they are told about the
                    // shutdown rather than reset with the listener.
                    self.accept_before_closing();
                    self.listener = None;
                    self.http_listener = None;
                    shutdown_started = Some(Instant::now());
                }
                let started = shutdown_started.unwrap_or_else(Instant::now);
                if self.broker.writer_done.load(Ordering::Acquire) {
                    // Every publish taken is answered first; then every
                    // connection learns why it is closed.
                    self.take_handoffs();
                    self.drain_completions();
                    self.announce_shutdown();
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
    /// poll's or a connection's deadline comes sooner.
    fn idle_timeout(&self) -> Duration {
        let tick = Duration::from_millis(200);
        let next = match (self.parked.next_deadline_us(), self.next_timer_us()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match next {
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

    /// Accepts every connection waiting on the listeners and keeps it on
    /// this thread (shutdown: other threads may have stopped taking handoffs).
    fn accept_before_closing(&mut self) {
        for kind in [ConnKind::Binary, ConnKind::Http] {
            loop {
                let listener = match kind {
                    ConnKind::Binary => self.listener.as_ref(),
                    ConnKind::Http => self.http_listener.as_ref(),
                };
                let Some(Ok((stream, _))) = listener.map(|l| l.accept()) else {
                    break;
                };
                self.broker.connections.fetch_add(1, Ordering::AcqRel);
                self.register(stream, kind);
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
        // A new connection has until its deadline to prove itself: the
        // handshake, or the head of its first HTTP request.
        let (timer, ms) = match kind {
            ConnKind::Binary => (conn::TimerKind::Handshake, limits::HANDSHAKE_TIMEOUT_MS),
            ConnKind::Http => (conn::TimerKind::HttpHead, limits::HTTP_HEAD_TIMEOUT_MS),
        };
        self.set_timer(index, timer, ms * 1000);
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
        conn.out_full() || conn.awaiting() >= limits::CONNECTION_INFLIGHT_REQUESTS_MAX
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
