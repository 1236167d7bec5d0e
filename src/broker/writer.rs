//! The log-writer thread: the single writer of every channel log.
//!
//! It pops publish requests in batches from the append queue, appends their
//! records, commits each touched log once per batch (group commit under the
//! `batch` policy), and only then hands acknowledgements to the io threads
//! and wakes them: nothing is acknowledged before it is stored under the
//! policy in force.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::broker::{storage_to_wire, Broker};
use crate::limits;
use crate::storage::{AppendOutcome, Author, ChannelLog, Durability, StorageError};
use crate::wire::{AckMode, ErrorCode};

/// Identifies a connection across threads: io thread, slab index, generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRef {
    /// The io thread that owns the connection.
    pub thread: usize,
    /// Slab index on that thread.
    pub index: usize,
    /// Generation of the slot, so a reused slot never gets a stale completion.
    pub generation: u64,
}

/// A publish frame on its way to the log.
#[derive(Debug)]
pub struct PublishReq {
    /// Target channel.
    pub channel_id: u64,
    /// Recorded author.
    pub author: Author,
    /// `count` × (u32 length, checked message body).
    pub data: Bytes,
    /// Messages in `data`.
    pub count: u32,
    /// Acknowledgement mode.
    pub ack: AckMode,
    /// Who asked.
    pub conn: ConnRef,
    /// Echoed in the acknowledgement.
    pub request_id: u32,
}

/// Work for the writer.
#[derive(Debug)]
pub enum WriterMsg {
    /// Append messages.
    Publish(PublishReq),
    /// Take over the log of a new channel.
    AddChannel {
        /// Channel id.
        id: u64,
        /// Its opened log.
        log: Box<ChannelLog>,
    },
    /// Delete a channel's log.
    RemoveChannel {
        /// Channel id.
        id: u64,
    },
    /// Delete a directory (a deleted instance's), after the logs removed
    /// before it in the queue.
    RemoveDir {
        /// The directory.
        path: std::path::PathBuf,
    },
    /// Change a channel's retention.
    SetRetention {
        /// Channel id.
        id: u64,
        /// New retention, µs.
        retention_us: u64,
    },
}

/// What the writer tells an io thread.
#[derive(Debug)]
pub enum Completion {
    /// A publish was stored.
    Published {
        /// Who asked.
        conn: ConnRef,
        /// Their request id.
        request_id: u32,
        /// Their ack mode.
        ack: AckMode,
        /// Messages in the request.
        count: u32,
        /// Id of the first newly appended message (0: none).
        first_id: u64,
        /// (index, original id) of duplicates.
        duplicates: Vec<(u32, u64)>,
    },
    /// A publish failed; nothing of it is acknowledged.
    Failed {
        /// Who asked.
        conn: ConnRef,
        /// Their request id.
        request_id: u32,
        /// Stable code.
        code: ErrorCode,
        /// Explanation.
        message: String,
    },
}

impl Completion {
    fn conn(&self) -> ConnRef {
        match self {
            Completion::Published { conn, .. } | Completion::Failed { conn, .. } => *conn,
        }
    }
}

/// How long an idle writer polls its queue before it parks.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(200);

/// How often idle logs are rotated, expired and (under `interval`) synced.
const MAINTENANCE_EVERY: Duration = Duration::from_millis(250);

/// What appending one request stored: the first new id and the duplicates.
type Stored = (u64, Vec<(u32, u64)>);

struct Pending {
    req: PublishReq,
    result: Result<Stored, (ErrorCode, String)>,
}

/// The writer's state: every open log.
pub struct Writer {
    broker: Arc<Broker>,
    logs: HashMap<u64, ChannelLog>,
    durability: Durability,
    batch: Vec<WriterMsg>,
    pending: Vec<Pending>,
    touched: Vec<u64>,
    outbox: Vec<Vec<Completion>>,
    last_maintenance: Instant,
    batch_now_us: u64,
}

impl Writer {
    /// A writer over the logs opened at start-up.
    pub fn new(
        broker: Arc<Broker>,
        logs: HashMap<u64, ChannelLog>,
        durability: Durability,
    ) -> Writer {
        let threads = broker.io_links.len();
        Writer {
            broker,
            logs,
            durability,
            batch: Vec::with_capacity(limits::WRITER_BATCH_MAX),
            pending: Vec::with_capacity(limits::WRITER_BATCH_MAX),
            touched: Vec::new(),
            outbox: (0..threads).map(|_| Vec::new()).collect(),
            last_maintenance: Instant::now(),
            batch_now_us: 0,
        }
    }

    /// Runs until shutdown has begun and the queue is empty, then syncs and
    /// closes every log.
    pub fn run(mut self) {
        self.broker.set_writer_thread(std::thread::current());
        loop {
            while self.batch.len() < limits::WRITER_BATCH_MAX {
                match self.broker.append_queue.pop() {
                    Some(m) => self.batch.push(m),
                    None => break,
                }
            }
            if self.batch.is_empty() {
                if self.broker.shutting_down.load(Ordering::Acquire) {
                    break;
                }
                self.maintain_if_due();
                if self.spin_for_work() {
                    continue;
                }
                self.broker.writer_parking(true);
                if self.broker.append_queue.is_empty()
                    && !self.broker.shutting_down.load(Ordering::Acquire)
                {
                    std::thread::park_timeout(MAINTENANCE_EVERY);
                }
                self.broker.writer_parking(false);
                continue;
            }
            self.process_batch();
            self.maintain_if_due();
        }
        self.close_all();
        self.broker.writer_done.store(true, Ordering::Release);
        self.broker.wake_all_io();
    }

    /// Polls the queue for a short while before parking: a publish that
    /// arrives meanwhile is appended without the cost of a wake-up (tens of
    /// microseconds here). The poll yields the core, so io threads sharing it
    /// keep running.
    fn spin_for_work(&self) -> bool {
        let until = Instant::now() + SPIN_BEFORE_PARK;
        while Instant::now() < until {
            if !self.broker.append_queue.is_empty() {
                return true;
            }
            std::thread::yield_now();
        }
        false
    }

    fn process_batch(&mut self) {
        // One clock read per batch: every record of a batch gets this time
        // (the log keeps `created_at` non-decreasing).
        self.batch_now_us = self.broker.clock().now_us();
        let mut batch = std::mem::take(&mut self.batch);
        for msg in batch.drain(..) {
            match msg {
                WriterMsg::Publish(req) => self.append(req),
                WriterMsg::AddChannel { id, log } => {
                    self.logs.insert(id, *log);
                }
                WriterMsg::RemoveChannel { id } => {
                    if let Some(log) = self.logs.remove(&id) {
                        if let Err(e) = log.destroy() {
                            tracing::error!(channel = id, error = %e, "could not remove a deleted channel's log");
                        }
                    }
                }
                WriterMsg::RemoveDir { path } => {
                    if let Err(e) = std::fs::remove_dir_all(&path) {
                        tracing::error!(dir = %path.display(), error = %e, "could not remove a deleted instance's directory");
                    }
                }
                WriterMsg::SetRetention { id, retention_us } => {
                    if let Some(log) = self.logs.get_mut(&id) {
                        log.set_retention_us(retention_us);
                    }
                }
            }
        }
        self.batch = batch;
        self.commit_touched();
        self.complete();
    }

    fn append(&mut self, req: PublishReq) {
        let Some(log) = self.logs.get_mut(&req.channel_id) else {
            self.pending.push(Pending {
                req,
                result: Err((ErrorCode::ChannelNotFound, "the channel was deleted".into())),
            });
            return;
        };
        let result = append_all(log, &req, self.batch_now_us);
        if !self.touched.contains(&req.channel_id) {
            self.touched.push(req.channel_id);
        }
        self.pending.push(Pending {
            req,
            result: result.map_err(|e| {
                let w = storage_to_wire(e);
                (w.code, w.message)
            }),
        });
    }

    fn commit_touched(&mut self) {
        for id in std::mem::take(&mut self.touched) {
            let Some(log) = self.logs.get_mut(&id) else {
                continue;
            };
            // Under `batch` the commit syncs; under `none` and `interval` a
            // durable acknowledgement means stored under that policy, which
            // the commit also is (protocol.md, "Acknowledgement modes").
            if let Err(e) = log.commit() {
                tracing::error!(channel = id, error = %e, "commit failed; the log refuses further writes");
                let w = storage_to_wire(e);
                for p in self.pending.iter_mut().filter(|p| p.req.channel_id == id) {
                    if p.result.is_ok() {
                        p.result = Err((w.code, w.message.clone()));
                    }
                }
            }
        }
    }

    fn complete(&mut self) {
        let mut freed = 0usize;
        for p in self.pending.drain(..) {
            freed += p.req.data.len();
            let c = match p.result {
                Ok((first_id, duplicates)) => Completion::Published {
                    conn: p.req.conn,
                    request_id: p.req.request_id,
                    ack: p.req.ack,
                    count: p.req.count,
                    first_id,
                    duplicates,
                },
                Err((code, message)) => Completion::Failed {
                    conn: p.req.conn,
                    request_id: p.req.request_id,
                    code,
                    message,
                },
            };
            if let Some(out) = self.outbox.get_mut(c.conn().thread) {
                out.push(c);
            }
        }
        self.broker
            .inflight_bytes
            .fetch_sub(freed, Ordering::AcqRel);
        for (thread, out) in self.outbox.iter_mut().enumerate() {
            let Some(link) = self.broker.io_links.get(thread) else {
                continue;
            };
            for c in out.drain(..) {
                let mut c = c;
                // The completion queue holds more entries than can be in
                // flight, so this only waits while an io thread catches up.
                while let Err(back) = link.completions.push(c) {
                    c = back;
                    link.wake();
                    std::thread::yield_now();
                }
            }
        }
        // Every io thread may hold subscribers of the channels that advanced.
        self.broker.wake_all_io();
    }

    fn maintain_if_due(&mut self) {
        if self.last_maintenance.elapsed() < MAINTENANCE_EVERY {
            return;
        }
        self.last_maintenance = Instant::now();
        let mut advanced = false;
        for (id, log) in &mut self.logs {
            if let Err(e) = log.maintain() {
                tracing::error!(channel = id, error = %e, "log maintenance failed");
            }
            if let Durability::Interval { .. } = self.durability {
                match log.commit() {
                    Ok(_) => advanced = true,
                    Err(e) => tracing::error!(channel = id, error = %e, "interval sync failed"),
                }
            }
        }
        if advanced {
            self.broker.wake_all_io();
        }
    }

    fn close_all(&mut self) {
        for (id, log) in self.logs.drain() {
            if let Err(e) = log.close() {
                tracing::error!(channel = id, error = %e, "closing a log failed");
            }
        }
    }
}

/// Appends every message of `req`; returns the first new id and duplicates.
fn append_all(log: &mut ChannelLog, req: &PublishReq, now_us: u64) -> Result<Stored, StorageError> {
    let mut first_id = 0u64;
    let mut duplicates = Vec::new();
    let mut rest: &[u8] = &req.data;
    for index in 0..req.count {
        let (len, tail) = rest
            .split_at_checked(4)
            .ok_or(StorageError::Invalid("short publish data"))?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (body, tail) = tail
            .split_at_checked(len)
            .ok_or(StorageError::Invalid("short publish data"))?;
        rest = tail;
        match log.append_at(req.author, body, now_us)? {
            AppendOutcome::Appended(id) => {
                if first_id == 0 {
                    first_id = id;
                }
            }
            AppendOutcome::Duplicate(id) => duplicates.push((index, id)),
        }
    }
    Ok((first_id, duplicates))
}
