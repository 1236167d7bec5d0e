//! Parked HTTP long polls: the per-thread table keyed by channel, their
//! deadlines, answering them when a channel's head moves, at their deadline
//! (204) or when their caller loses access, and forgetting them when their
//! client hangs up.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::Arc;

use super::{fail, first_after, poll_body, Failure, HttpWait, Reply, Waiting};
use crate::broker::{Caller, Channel};
use crate::http::{write_error, write_response, ApiError, ResponseOptions};
use crate::limits;
use crate::net::IoThread;
use crate::storage::record;

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
    /// Parked Channelstream `/listen` requests: slab index → connection.
    pub(super) cs: HashMap<usize, [u8; 16]>,
    /// (deadline µs, slab index, generation), earliest first.
    pub(super) deadlines: BTreeSet<(u64, usize, u64)>,
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

impl IoThread {
    pub(super) fn park(
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
    pub(in crate::net) fn unpark(&mut self, index: usize) -> Option<ResponseOptions> {
        let conn = self.conns.get_mut(index)?;
        if let Waiting::CsListen { deadline_us, .. } = conn.http_wait.as_ref()?.what {
            let generation = conn.generation;
            let wait = conn.http_wait.take()?;
            self.parked
                .deadlines
                .remove(&(deadline_us, index, generation));
            self.parked.cs.remove(&index);
            return Some(wait.opts);
        }
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
    pub(super) fn answer(
        &mut self,
        index: usize,
        opts: &ResponseOptions,
        status: u16,
        body: &[u8],
    ) {
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
    pub(super) fn resume_http(&mut self, index: usize) {
        self.mark_dirty(index);
        if self.conns.get(index).is_some_and(|c| c.rend > c.rstart) {
            self.push_again(index);
        }
    }

    pub(super) fn answer_error(&mut self, index: usize, opts: &ResponseOptions, e: &ApiError) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        write_error(&mut conn.wbuf, e, &[], opts);
        if !opts.keep_alive {
            conn.closing = true;
        }
        self.resume_http(index);
    }

    /// Answers every parked poll 503 with `Retry-After: 1` and closes its
    /// connection: the server is shutting down.
    pub(in crate::net) fn refuse_parked_at_shutdown(&mut self) {
        let indexes: Vec<usize> = self
            .parked
            .channels
            .values()
            .flat_map(|pc| pc.polls.keys().copied())
            .collect();
        for index in indexes {
            if let Some(mut opts) = self.unpark(index) {
                opts.keep_alive = false;
                opts.retry_after_secs = Some(1);
                let e = ApiError::Unavailable("The server is shutting down; retry shortly.".into());
                self.answer_error(index, &opts, &e);
            }
        }
    }

    /// Answers the parked polls of every channel whose head moved, and
    /// those of deleted channels (404).
    pub(in crate::net) fn wake_parked(&mut self) {
        self.wake_cs_listens();
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
    pub(in crate::net) fn expire_parked(&mut self) {
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
            if self.parked.cs.contains_key(&index) {
                self.answer_cs_listen(index, Vec::new());
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
    pub(in crate::net) fn revalidate_parked(&mut self) {
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
}
