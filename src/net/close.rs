//! The end of connections: lingering after a refused HTTP request, closing,
//! and the last flush at shutdown.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::conn::ConnKind;
use super::IoThread;
use crate::wire::{self, ErrorCode};

/// How long a refused HTTP connection lingers before its close, µs.
const LINGER_US: u64 = 2_000_000;
/// Most bytes a lingering connection may still send before it is closed.
const LINGER_BYTES_MAX: usize = 1024 * 1024;

impl IoThread {
    /// The last words of a graceful shutdown, once every publish taken was
    /// answered: each binary connection gets `Error ShuttingDown` on
    /// request id 0 and is closed once it is flushed; each parked HTTP poll
    /// gets a 503 with `Retry-After`.
    pub(super) fn announce_shutdown(&mut self) {
        let indexes: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.kind == ConnKind::Binary && !c.closing && !c.lingering)
            .map(|(i, _)| i)
            .collect();
        for index in indexes {
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            // Left over only by publishes that never reached the writer
            // (they are not answered): nothing is sent out of order.
            conn.acks.clear();
            conn.coalesced = None;
            wire::encode_error(
                &mut conn.wbuf,
                0,
                ErrorCode::ShuttingDown,
                "the server is shutting down; reconnect later",
            );
            conn.closing = true;
            self.mark_dirty(index);
        }
        self.refuse_parked_at_shutdown();
    }

    /// Ends a connection whose last answer is written. One that was refused
    /// in the middle of a request (an HTTP framing error) first lingers: its
    /// write side is shut and what the client still sends is read and
    /// dropped for a while, so that the client reads the answer instead of
    /// a reset.
    pub(super) fn finish(&mut self, index: usize) {
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
    pub(super) fn discard_input(&mut self, index: usize) {
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
    pub(super) fn expire_lingering(&mut self) {
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

    pub(super) fn close(&mut self, index: usize) {
        if !self.conns.contains(index) {
            return;
        }
        self.unpark(index);
        self.cs_socket_closed(index);
        self.clear_timer(index);
        let mut conn = self.conns.remove(index);
        if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
            tracing::debug!(error = %e, "deregister failed");
        }
        for (&sub_id, sub) in &conn.subs {
            self.forget_member(sub.channel.id, index, conn.generation, sub_id);
        }
        self.broker.connections.fetch_sub(1, Ordering::AcqRel);
    }

    pub(super) fn forget_member(
        &mut self,
        channel_id: u64,
        index: usize,
        generation: u64,
        sub_id: u32,
    ) {
        if let Some(cs) = self.channel_subs.get_mut(&channel_id) {
            cs.members
                .retain(|&(i, g, s)| !(i == index && g == generation && s == sub_id));
            if cs.members.is_empty() {
                self.channel_subs.remove(&channel_id);
            }
        }
    }

    pub(super) fn final_flush(&mut self) {
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
