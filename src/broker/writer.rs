//! The log-writer thread: the single writer of every channel log.
//!
//! It pops publish requests in batches from the append queue, appends their
//! records, writes each touched log once per batch and publishes its head
//! (subscribers see the records at once), then hands each log's sync job to
//! the commit thread (`commit.rs`) and goes on with the next batch.
//! Acknowledgements that only need the records appended leave right away;
//! durable acknowledgements under the `batch` policy leave from the commit
//! thread once a sync covers them. Nothing is acknowledged before it is
//! stored under the policy in force.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::commit::CommitStage;
use crate::broker::{storage_to_wire, Broker};
use crate::limits;
use crate::storage::record::{self, RecordView};
use crate::storage::{
    AmendError, AmendTarget, AppendOutcome, Author, ChannelLog, ContentType, Durability,
    StorageError,
};
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

/// Publish frames on their way to the log: one frame, or consecutive
/// frames of one connection to one channel with one ack mode, coalesced.
#[derive(Debug)]
pub struct PublishReq {
    /// Target channel.
    pub channel_id: u64,
    /// Recorded author.
    pub author: Author,
    /// `count` × (u32 length, checked message body), frame after frame.
    pub data: Bytes,
    /// Messages in `data`.
    pub count: u32,
    /// Frames coalesced into this request.
    pub frames: u32,
    /// Acknowledgement mode (the same for every frame).
    pub ack: AckMode,
    /// Who asked.
    pub conn: ConnRef,
    /// The connection's sequence number of the first frame.
    pub seq: u64,
}

/// An edit or removal of a message on its way to the log.
#[derive(Debug)]
pub struct AmendReq {
    /// The channel.
    pub channel_id: u64,
    /// Recorded author of the amending record.
    pub author: Author,
    /// The message.
    pub target: AmendTarget,
    /// The new version (content type, payload); `None`: remove.
    pub edit: Option<(ContentType, Bytes)>,
    /// The caller may amend any message (an admin key, or an API key with
    /// `ignore_acl`); otherwise only its own.
    pub any_author: bool,
    /// Acknowledgement mode.
    pub ack: AckMode,
    /// Who asked.
    pub conn: ConnRef,
    /// The connection's sequence number of the request.
    pub seq: u64,
}

/// Work for the writer.
#[derive(Debug)]
pub enum WriterMsg {
    /// Append messages.
    Publish(PublishReq),
    /// Edit or remove a message.
    Amend(AmendReq),
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

/// What the writer (or the commit thread) tells an io thread.
#[derive(Debug)]
pub enum Completion {
    /// A publish request was stored under its ack mode.
    Published {
        /// Who asked.
        conn: ConnRef,
        /// Sequence number of its first frame.
        seq: u64,
        /// Frames in the request.
        frames: u32,
        /// Id of the first newly appended message (0: none).
        first_id: u64,
        /// (message index in the request, original id) of duplicates.
        duplicates: Vec<(u32, u64)>,
        /// (message index, uuid) of the messages whose uuid the server did
        /// not assign (given by the publisher; the amended message's uuid).
        uuids: Vec<(u32, [u8; 16])>,
    },
    /// A publish request failed; nothing of it is acknowledged.
    Failed {
        /// Who asked.
        conn: ConnRef,
        /// Sequence number of its first frame.
        seq: u64,
        /// Frames in the request.
        frames: u32,
        /// Stable code.
        code: ErrorCode,
        /// Explanation.
        message: String,
    },
}

impl Completion {
    /// The connection the completion is for.
    pub fn conn(&self) -> ConnRef {
        match self {
            Completion::Published { conn, .. } | Completion::Failed { conn, .. } => *conn,
        }
    }

    /// The same request, failed with `code`.
    pub fn into_failure(self, code: ErrorCode, message: String) -> Completion {
        match self {
            Completion::Published {
                conn, seq, frames, ..
            }
            | Completion::Failed {
                conn, seq, frames, ..
            } => Completion::Failed {
                conn,
                seq,
                frames,
                code,
                message,
            },
        }
    }
}

/// How long an idle writer polls its queue before it parks.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(200);

/// How often idle logs are rotated, expired and closed.
const MAINTENANCE_EVERY: Duration = Duration::from_millis(250);

/// Idle logs that give their unused reserved ids back per maintenance round.
const RELEASES_PER_MAINTENANCE: usize = 8;

/// One request of a batch, with what appending it gave.
struct Pending {
    req: PublishReq,
    first_id: u64,
    /// The largest id any of its messages got or was a duplicate of.
    max_id: u64,
    duplicates: Vec<(u32, u64)>,
    uuids: Vec<(u32, [u8; 16])>,
    error: Option<(ErrorCode, String)>,
}

impl Pending {
    fn new(req: PublishReq) -> Pending {
        Pending {
            req,
            first_id: 0,
            max_id: 0,
            duplicates: Vec::new(),
            uuids: Vec::new(),
            error: None,
        }
    }
}

fn channel_deleted() -> (ErrorCode, String) {
    (ErrorCode::ChannelNotFound, "the channel was deleted".into())
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

    /// Runs until shutdown has begun and the queue is empty, then lets the
    /// commit thread finish, syncs and closes every log.
    pub fn run(mut self) {
        self.broker.set_writer_thread(std::thread::current());
        let stage = CommitStage::new(self.broker.clone(), self.durability);
        std::thread::scope(|scope| {
            let commit = std::thread::Builder::new()
                .name("tidewire-commit".into())
                .spawn_scoped(scope, || stage.run());
            if let Err(e) = &commit {
                tracing::error!(error = %e, "could not start the commit thread; syncing on the writer");
            }
            let stage = commit.is_ok().then_some(&stage);
            self.serve(stage);
            if let Ok(handle) = commit {
                if let Some(stage) = stage {
                    stage.finish();
                }
                if handle.join().is_err() {
                    tracing::error!("the commit thread panicked");
                }
            }
        });
        self.close_all();
        self.broker.writer_done.store(true, Ordering::Release);
        self.broker.wake_all_io();
    }

    /// The loop: batches until shutdown has begun and the queue is empty.
    fn serve(&mut self, stage: Option<&CommitStage>) {
        loop {
            while self.batch.len() < limits::WRITER_BATCH_MAX {
                match self.broker.append_queue.pop() {
                    Some(m) => self.batch.push(m),
                    None => break,
                }
            }
            if self.batch.is_empty() {
                if self.broker.shutting_down.load(Ordering::Acquire) {
                    return;
                }
                self.maintain_if_due(stage);
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
            self.process_batch(stage);
            self.maintain_if_due(stage);
        }
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

    fn process_batch(&mut self, stage: Option<&CommitStage>) {
        // One clock read per batch: every record of a batch gets this time
        // (the log keeps `created_at` non-decreasing).
        self.batch_now_us = self.broker.clock().now_us();
        let mut batch = std::mem::take(&mut self.batch);
        for msg in batch.drain(..) {
            match msg {
                WriterMsg::Publish(req) => self.append(req),
                WriterMsg::Amend(req) => self.amend(req),
                WriterMsg::AddChannel { id, log } => {
                    self.logs.insert(id, *log);
                }
                WriterMsg::RemoveChannel { id } => {
                    // What was appended before the delete is answered first.
                    self.flush_and_complete(stage);
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
        self.flush_and_complete(stage);
    }

    fn append(&mut self, req: PublishReq) {
        let mut p = Pending::new(req);
        let Some(log) = self.logs.get_mut(&p.req.channel_id) else {
            p.error = Some(channel_deleted());
            self.pending.push(p);
            return;
        };
        if let Err(e) = append_all(log, &mut p, self.batch_now_us) {
            let next = log.next_id();
            p.error = Some(self.fail_rolled_back(p.req.channel_id, next, e));
        }
        if !self.touched.contains(&p.req.channel_id) {
            self.touched.push(p.req.channel_id);
        }
        self.pending.push(p);
    }

    /// A failed write rolls back what this batch staged before it: the
    /// requests of `channel` with ids at or above `next` (no longer stored)
    /// failed too. Returns the wire form of `e`.
    fn fail_rolled_back(
        &mut self,
        channel: u64,
        next: u64,
        e: StorageError,
    ) -> (ErrorCode, String) {
        let w = storage_to_wire(e);
        for q in self
            .pending
            .iter_mut()
            .filter(|q| q.req.channel_id == channel)
        {
            if q.error.is_none() && q.max_id >= next {
                q.error = Some((w.code, w.message.clone()));
            }
        }
        (w.code, w.message)
    }

    /// Appends an edit or removal; its answer travels like a publish's (a
    /// request of one message).
    fn amend(&mut self, a: AmendReq) {
        let now = self.batch_now_us;
        let key = self.broker.uuid_key;
        let channel = a.channel_id;
        // The payload stands in for the data, so its bytes are counted out
        // of the in-flight total like a publish's.
        let req = PublishReq {
            channel_id: channel,
            author: a.author,
            data: a.edit.as_ref().map(|(_, p)| p.clone()).unwrap_or_default(),
            count: 1,
            frames: 1,
            ack: a.ack,
            conn: a.conn,
            seq: a.seq,
        };
        let mut p = Pending::new(req);
        let Some(log) = self.logs.get_mut(&channel) else {
            p.error = Some(channel_deleted());
            self.pending.push(p);
            return;
        };
        // A uuid the server assigned names its message without a lookup.
        let target = match a.target {
            AmendTarget::Uuid(u) => key
                .resolve(channel, &u)
                .map_or(AmendTarget::Uuid(u), AmendTarget::Id),
            t => t,
        };
        let author = a.author;
        let mut allow = |v: &RecordView<'_>| {
            if a.any_author || same_author(v.author(), author) {
                Ok(())
            } else {
                Err(format!(
                    "message {} has another author: only its author, an admin key or an API key with ignore_acl may change it",
                    v.id()
                ))
            }
        };
        let edit = a.edit.as_ref().map(|(ct, payload)| (*ct, payload.as_ref()));
        match log.amend_at(author, target, edit, &mut allow, now) {
            Ok(done) => {
                p.first_id = done.id;
                p.max_id = done.id;
                let uuid = done.uuid.or_else(|| key.assign(channel, done.target));
                p.uuids.extend(uuid.map(|u| (0, u)));
            }
            Err(AmendError::Storage(e)) => {
                let next = log.next_id();
                p.error = Some(self.fail_rolled_back(channel, next, e));
            }
            Err(e) => p.error = Some(amend_error(e)),
        }
        if !self.touched.contains(&channel) {
            self.touched.push(channel);
        }
        self.pending.push(p);
    }

    /// Writes and publishes every touched log, then sends every completion
    /// of the batch: at once, or with the log's sync job to the commit stage.
    fn flush_and_complete(&mut self, stage: Option<&CommitStage>) {
        let mut jobs = Vec::with_capacity(self.touched.len());
        for id in std::mem::take(&mut self.touched) {
            let Some(log) = self.logs.get_mut(&id) else {
                continue;
            };
            if let Err(e) = log.flush() {
                // What was not written was rolled back: the requests with
                // ids above the last written one failed.
                let written = log.written_id();
                let w = storage_to_wire(e);
                for p in self.pending.iter_mut().filter(|p| p.req.channel_id == id) {
                    if p.error.is_none() && p.max_id > written {
                        p.error = Some((w.code, w.message.clone()));
                    }
                }
            }
            jobs.push((id, log.take_sync_job()));
        }
        let mut waiting: HashMap<u64, Vec<Completion>> = HashMap::new();
        let mut freed = 0usize;
        for p in self.pending.drain(..) {
            freed += p.req.data.len();
            // Live-only messages (duplicates of id 0) store nothing to wait for.
            let stores = p.first_id != 0 || p.duplicates.iter().any(|d| d.1 != 0);
            let durable_wait =
                self.durability == Durability::Batch && p.req.ack == AckMode::Durable && stores;
            let (channel, c) = completion(p);
            match c {
                c @ Completion::Published { .. } if durable_wait => {
                    waiting.entry(channel).or_default().push(c);
                }
                c => {
                    if let Some(out) = self.outbox.get_mut(c.conn().thread) {
                        out.push(c);
                    }
                }
            }
        }
        self.broker
            .inflight_bytes
            .fetch_sub(freed, Ordering::AcqRel);
        for (id, job) in jobs {
            let acks = waiting.remove(&id).unwrap_or_default();
            self.hand_over(stage, id, job, acks);
        }
        for (id, acks) in waiting {
            self.hand_over(stage, id, None, acks);
        }
        self.broker.push_completions(&mut self.outbox);
        self.broker.batches.fetch_add(1, Ordering::Release);
        // Every io thread may hold subscribers of the channels that advanced.
        self.broker.wake_all_io();
    }

    /// Gives a job and the acknowledgements waiting for it to the commit
    /// stage, or runs it here when there is none.
    fn hand_over(
        &mut self,
        stage: Option<&CommitStage>,
        id: u64,
        job: Option<crate::storage::SyncJob>,
        acks: Vec<Completion>,
    ) {
        if let Some(stage) = stage {
            stage.submit(id, job, acks);
            return;
        }
        let failed = job.map(|j| j.run(false)).transpose().err();
        for ack in acks {
            let ack = match &failed {
                None => ack,
                Some(e) => ack.into_failure(ErrorCode::StorageFailed, e.to_string()),
            };
            if let Some(out) = self.outbox.get_mut(ack.conn().thread) {
                out.push(ack);
            }
        }
    }

    fn maintain_if_due(&mut self, stage: Option<&CommitStage>) {
        if self.last_maintenance.elapsed() < MAINTENANCE_EVERY {
            return;
        }
        self.last_maintenance = Instant::now();
        let mut jobs = Vec::new();
        // Each release costs a checkpoint sync on this thread: a few per round.
        let mut releases = RELEASES_PER_MAINTENANCE;
        for (&id, log) in &mut self.logs {
            if let Err(e) = log.maintain() {
                tracing::error!(channel = id, error = %e, "log maintenance failed");
            }
            if releases > 0 {
                match log.release_unused_ids() {
                    Ok(true) => releases -= 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(channel = id, error = %e, "giving back unused ids failed")
                    }
                }
            }
            // A rotation by age publishes its seal here.
            if let Err(e) = log.flush() {
                tracing::error!(channel = id, error = %e, "log flush failed");
            }
            if let Some(job) = log.take_sync_job() {
                jobs.push((id, job));
            }
        }
        for (id, job) in jobs {
            self.hand_over(stage, id, Some(job), Vec::new());
        }
        self.broker.push_completions(&mut self.outbox);
    }

    fn close_all(&mut self) {
        for (id, log) in self.logs.drain() {
            if let Err(e) = log.close() {
                tracing::error!(channel = id, error = %e, "closing a log failed");
            }
        }
    }
}

/// The completion of a finished request, with its channel.
fn completion(p: Pending) -> (u64, Completion) {
    let PublishReq {
        channel_id,
        conn,
        seq,
        frames,
        ..
    } = p.req;
    let c = match p.error {
        None => Completion::Published {
            conn,
            seq,
            frames,
            first_id: p.first_id,
            duplicates: p.duplicates,
            uuids: p.uuids,
        },
        Some((code, message)) => Completion::Failed {
            conn,
            seq,
            frames,
            code,
            message,
        },
    };
    (channel_id, c)
}

/// Appends every message of `p.req`, recording the first new id, the
/// duplicates and the largest id involved.
fn append_all(log: &mut ChannelLog, p: &mut Pending, now_us: u64) -> Result<(), StorageError> {
    let mut rest: &[u8] = &p.req.data;
    for index in 0..p.req.count {
        let (len, tail) = rest
            .split_at_checked(4)
            .ok_or(StorageError::Invalid("short publish data"))?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (body, tail) = tail
            .split_at_checked(len)
            .ok_or(StorageError::Invalid("short publish data"))?;
        rest = tail;
        if record::body_is_live(body) {
            let uuid = push_live(log, p.req.author, body, now_us)?;
            // No id: listed like a duplicate of id 0, which the
            // acknowledgement leaves out.
            p.duplicates.push((index, 0));
            p.uuids.push((index, uuid));
            continue;
        }
        let out = log.append_at(p.req.author, body, now_us)?;
        p.max_id = p.max_id.max(out.id());
        if let Some(u) = record::body_uuid(body) {
            p.uuids.push((index, u));
        }
        match out {
            AppendOutcome::Appended(id) => {
                if p.first_id == 0 {
                    p.first_id = id;
                }
            }
            AppendOutcome::Duplicate(id) => p.duplicates.push((index, id)),
        }
    }
    Ok(())
}

/// True when `a` (a message's author) and `b` (a caller) are one author: the
/// same key, or the same user whatever API key it came through.
fn same_author(a: Author, b: Author) -> bool {
    match (a, b) {
        (Author::User { user: x, .. }, Author::User { user: y, .. }) => x == y,
        _ => a == b && a != Author::None,
    }
}

/// The wire form of a refused amendment.
fn amend_error(e: AmendError) -> (ErrorCode, String) {
    match e {
        AmendError::NotFound(why) => (ErrorCode::MessageNotFound, why),
        AmendError::Removed(id) => (
            ErrorCode::MessageDeleted,
            format!("message {id} was deleted"),
        ),
        AmendError::NotAMessage(id) => (
            ErrorCode::BadRequest,
            format!("id {id} is an edit or a deletion, not a message: name the message it changed"),
        ),
        AmendError::Denied(why) => (ErrorCode::PermissionDenied, why),
        AmendError::Storage(e) => {
            let w = storage_to_wire(e);
            (w.code, w.message)
        }
    }
}

/// Hands a live-only message to the log's live subscribers (never stored):
/// a record with id 0 and a uuid (the publisher's, or a random one).
fn push_live(
    log: &mut ChannelLog,
    author: Author,
    body: &[u8],
    now_us: u64,
) -> Result<[u8; 16], StorageError> {
    let (uuid, with_uuid) = match record::body_uuid(body) {
        Some(u) => (u, None),
        None => {
            let u = record::random_uuid().map_err(|e| {
                StorageError::Io(std::io::Error::other(format!("no randomness: {e}")))
            })?;
            (u, Some(record::body_with_uuid(body, u)))
        }
    };
    let body = with_uuid.as_deref().unwrap_or(body);
    let mut rec = Vec::with_capacity(record::record_len(author, body.len()));
    record::append_record(&mut rec, 0, now_us, author, body);
    log.push_live(rec.into_boxed_slice());
    Ok(uuid)
}
