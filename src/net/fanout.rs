//! Fan-out and the server's side of subscriptions: moving new records into
//! subscribers' write buffers, gap notices, and ending subscriptions when a
//! channel is deleted or access is revoked.

use super::conn::{self, Conn, Sub};
use super::IoThread;
use crate::limits;
use crate::storage::Chunk;
use crate::wire::{self, ErrorCode, Response};

impl IoThread {
    /// Moves newly published records of every channel with subscribers on
    /// this thread into their connections' write buffers.
    pub(super) fn fan_out(&mut self) {
        let mut work: Vec<(usize, u32)> = Vec::new();
        let mut gone: Vec<u64> = Vec::new();
        for (id, cs) in &mut self.channel_subs {
            if cs.channel.is_deleted() {
                gone.push(*id);
                continue;
            }
            let head = cs.reader.head_id();
            let committed = cs.reader.committed_id();
            let live = cs.reader.live_next_seq();
            if head == cs.last_head && committed == cs.last_committed && live == cs.last_live {
                continue;
            }
            cs.last_head = head;
            cs.last_committed = committed;
            cs.last_live = live;
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

    pub(super) fn close_channel_subs(&mut self, channel_id: u64) {
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
    pub(super) fn revalidate(&mut self) {
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
            conn.last_channel = None;
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
        conn.last_channel = None;
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
    pub(super) fn end_sub(&mut self, index: usize, sub_id: u32, code: ErrorCode, message: &str) {
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
    /// write buffer until it is up to date or the buffer is full, with the
    /// live-only records published meanwhile in their places.
    ///
    /// A live-only record published after record N goes to the
    /// subscription if it is *live* then: it has been handed every record up
    /// to N it can see (up to N committed, for a committed subscription) and
    /// its buffer has room. Otherwise it lags, and never gets that record.
    pub(super) fn pump(&mut self, index: usize, sub_id: u32) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        let Conn {
            wbuf,
            wpos,
            subs,
            deliveries_blocked,
            ..
        } = conn;
        let Some(sub) = subs.get_mut(&sub_id) else {
            return;
        };
        // Live-only records are rare: the reader is cloned only for them.
        if sub.channel.reader().live_next_seq() > sub.live_seq {
            let reader = sub.channel.reader().clone();
            let head = reader.head_id();
            for e in reader.live_from(sub.live_seq) {
                if e.after_id > head {
                    break; // its place is not published yet
                }
                let committed = !sub.committed || reader.committed_id() >= e.after_id;
                let caught_up = deliver_upto(wbuf, *wpos, sub, sub_id, e.after_id);
                if caught_up && committed && sub.cursor.matches(&e.record) {
                    wire::encode_response(
                        wbuf,
                        0,
                        &Response::Live {
                            sub_id,
                            record: &e.record,
                        },
                    );
                }
                sub.live_seq = e.seq + 1;
            }
        }
        if !deliver_upto(wbuf, *wpos, sub, sub_id, u64::MAX) {
            *deliveries_blocked = true;
        }
    }
}

/// Copies records with ids up to `limit_id` (and, for a committed
/// subscription, up to the committed head) from `sub`'s cursor into `wbuf`
/// (gap notices included). True when the subscription is up to date there;
/// false when the buffer filled first.
fn deliver_upto(
    wbuf: &mut Vec<u8>,
    wpos: usize,
    sub: &mut Sub,
    sub_id: u32,
    limit_id: u64,
) -> bool {
    loop {
        if wbuf.len() - wpos >= limits::CONNECTION_WRITE_BUFFER_HIGH {
            return false;
        }
        let limit_id = if sub.committed {
            sub.channel.reader().committed_id().min(limit_id)
        } else {
            limit_id
        };
        let start = wire::begin_deliver(wbuf, sub_id);
        let chunk = sub
            .cursor
            .read_upto(limits::DELIVERY_CHUNK_BYTES_MAX, limit_id, &mut |run| {
                wbuf.extend_from_slice(run)
            });
        match chunk {
            Chunk::Records { records, .. } => wire::end_deliver(wbuf, start, records),
            Chunk::UpToDate => {
                wbuf.truncate(start);
                return true;
            }
            Chunk::Gap {
                wanted_id,
                oldest_id,
            } => {
                wbuf.truncate(start);
                wire::encode_response(
                    wbuf,
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
