//! Connection deadlines on an io thread: the handshake of a binary
//! connection, and the head and body of the HTTP request being received.
//! Each connection has at most one deadline, kept in a sorted set that
//! bounds the loop's sleep (like parked polls' deadlines) and read on the
//! broker's clock, so tests move time instead of sleeping.

use std::collections::BTreeSet;

use super::conn::{ConnKind, TimerKind};
use super::IoThread;
use crate::http::{write_error, ApiError, ResponseOptions};
use crate::limits;
use crate::wire::{self, ErrorCode};

/// Every connection deadline of one io thread: (µs, slab index, generation),
/// earliest first.
pub type Timers = BTreeSet<(u64, usize, u64)>;

impl IoThread {
    /// Sets connection `index`'s deadline to `after_us` from now, for `kind`
    /// (replacing the one it had).
    pub(super) fn set_timer(&mut self, index: usize, kind: TimerKind, after_us: u64) {
        self.clear_timer(index);
        let deadline_us = self.broker.clock().now_us().saturating_add(after_us);
        if let Some(conn) = self.conns.get_mut(index) {
            conn.timer = Some((deadline_us, kind));
            self.timers.insert((deadline_us, index, conn.generation));
        }
    }

    /// Removes connection `index`'s deadline, if it has one.
    pub(super) fn clear_timer(&mut self, index: usize) {
        if let Some(conn) = self.conns.get_mut(index) {
            if let Some((deadline_us, _)) = conn.timer.take() {
                self.timers.remove(&(deadline_us, index, conn.generation));
            }
        }
    }

    /// Keeps the deadline of an HTTP request that is partly received:
    /// while its head is incomplete, the head's deadline from its first
    /// byte (from the accept, for a connection's first request); once the
    /// head is whole (`head_done`), the body's from then. A request that
    /// completes clears it (`clear_timer`).
    pub(super) fn arm_http_timer(&mut self, index: usize, head_done: bool) {
        let Some(conn) = self.conns.get(index) else {
            return;
        };
        let current = conn.timer.map(|t| t.1);
        if !head_done && current.is_none() {
            let ms = limits::HTTP_HEAD_TIMEOUT_MS;
            self.set_timer(index, TimerKind::HttpHead, ms * 1000);
        } else if head_done && current != Some(TimerKind::HttpBody) {
            let ms = limits::HTTP_BODY_TIMEOUT_MS;
            self.set_timer(index, TimerKind::HttpBody, ms * 1000);
        }
    }

    /// The earliest connection deadline, µs on the broker's clock.
    pub(super) fn next_timer_us(&self) -> Option<u64> {
        self.timers.first().map(|t| t.0)
    }

    /// Acts on every deadline that has passed.
    pub(super) fn expire_timers(&mut self) {
        if self.timers.is_empty() {
            return;
        }
        let now = self.broker.clock().now_us();
        while let Some(&(deadline_us, index, generation)) = self.timers.first() {
            if deadline_us > now {
                break;
            }
            self.timers.remove(&(deadline_us, index, generation));
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            if conn.generation != generation || conn.timer.map(|t| t.0) != Some(deadline_us) {
                continue;
            }
            let Some((_, kind)) = conn.timer.take() else {
                continue;
            };
            self.on_timer(index, kind);
        }
    }

    /// A deadline passed: a binary connection still in its handshake is
    /// told `HandshakeTimeout`; an HTTP request still arriving is answered
    /// 408. Either way the connection closes.
    fn on_timer(&mut self, index: usize, kind: TimerKind) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if conn.closing {
            return;
        }
        match (conn.kind, kind) {
            (ConnKind::Binary, TimerKind::Handshake) => {
                if conn.handshake_done() {
                    return;
                }
                wire::encode_error(
                    &mut conn.wbuf,
                    0,
                    ErrorCode::HandshakeTimeout,
                    "Hello and Auth did not complete in time (HANDSHAKE_TIMEOUT_MS)",
                );
            }
            (ConnKind::Http, TimerKind::HttpHead | TimerKind::HttpBody) => {
                if conn.http_wait.is_some() {
                    return;
                }
                write_error(
                    &mut conn.wbuf,
                    &ApiError::RequestTimeout,
                    &[],
                    &ResponseOptions::closing(),
                );
                // What the client still sends is read and dropped for a
                // while, so that it reads the answer rather than a reset.
                conn.linger = true;
            }
            _ => return,
        }
        conn.closing = true;
        self.mark_dirty(index);
    }
}
