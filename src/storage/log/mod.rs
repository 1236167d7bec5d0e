//! A channel's log: segments, indexes, the single writer, the commit stage
//! and the readers.
//!
//! The public items here are the storage engine's interface to the broker's
//! writer thread ([`ChannelLog`]), to its commit (sync) thread
//! ([`SyncJob`]) and to every reader ([`LogReader`], [`Cursor`]).
//!
//! A record goes through three steps:
//! 1. **append** ([`ChannelLog::append`]): encoded into the log's staging
//!    buffer; nothing is visible and nothing is written;
//! 2. **flush** ([`ChannelLog::flush`]): the staged records (and their
//!    idempotency keys and room entries) are written into the files with
//!    `pwrite`, and the new head is published to readers with Release
//!    ordering: subscribers see a record as soon as it is in the page cache;
//! 3. **sync** ([`SyncJob::run`], on another thread): the data is synced
//!    under the durability policy, index points and seals are written after
//!    what they describe is synced, the checkpoint records the synced
//!    watermark, and the *committed* head moves: what counts as stored.
//!
//! Because readers may see a record before it is synced, a power loss can
//! take back records a reader saw. Ids are never given twice anyway: the
//! writer publishes only ids covered by a *reservation* that is on stable
//! storage first (in the checkpoint), and after a crash the log continues
//! above it. The ids in between form a *hole*, kept in the `holes` file, so
//! a reader resuming inside it is told its position was taken back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::clock::SharedClock;
use crate::storage::io::Faults;
use crate::storage::segment::Segment;
use crate::storage::sidecar::{Hole, IndexEntry};
use crate::storage::StorageError;

mod amend;
mod cursor;
mod keys;
mod live;
mod open;
mod read;
mod sync;
mod write;

pub use amend::{AmendError, AmendTarget, Amended};
pub use keys::Amendment;
pub use live::LiveRecord;
pub use read::{Chunk, Cursor, LogReader, Position, View};
pub use sync::{SyncJob, Synced};

/// When an appended record counts as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Once the record is written into the log's files (survives a process
    /// crash, not a power cut); the log is synced only when it closes.
    None,
    /// Group commit: the log is synced after each group of appends, and a
    /// record counts as stored once a sync covers it.
    Batch,
    /// Synced every `ms` milliseconds; a record counts as stored once written.
    Interval {
        /// Milliseconds between syncs.
        ms: u64,
    },
}

/// How a channel's log is laid out and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Largest size of a segment file, in bytes (files grow as they fill).
    pub segment_size: u64,
    /// Age at which the active segment is rotated, in microseconds.
    pub segment_age_us: u64,
    /// How long a message stays readable after its `created_at`, in microseconds.
    pub retention_us: u64,
    /// When an append counts as stored.
    pub durability: Durability,
    /// The lowest id a new or empty log may give (ids of a channel name
    /// never go backwards, even across a delete and a re-create).
    pub first_id_floor: u64,
    /// Faults injected under the log's files (tests only).
    #[doc(hidden)]
    pub faults: Faults,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_size: crate::limits::SEGMENT_SIZE_DEFAULT,
            segment_age_us: crate::limits::SEGMENT_AGE_US_DEFAULT,
            retention_us: crate::limits::RETENTION_US_DEFAULT,
            durability: Durability::Batch,
            first_id_floor: 1,
            faults: Faults::default(),
        }
    }
}

/// What recovery found and did when a log was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Segments moved aside because their header is damaged.
    pub quarantined: Vec<PathBuf>,
    /// Segments whose valid records end before their data does (damage or
    /// a torn tail): `(first id, end of the valid records)`. Their records
    /// up to there are served; the ids after them are a gap for readers.
    pub cut: Vec<(u64, u64)>,
    /// Indexes rebuilt because they were missing or damaged.
    pub rebuilt_indexes: u32,
    /// Ids a crash took back: readers may have seen records after
    /// `kept_id` that are gone, and the log continues at `next_id`.
    pub hole: Option<Hole>,
    /// The id the next append will get.
    pub next_id: u64,
    /// What recovery did, one line each, for the server's log.
    pub actions: Vec<String>,
}

/// The result of appending one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// A new record with this id.
    Appended(u64),
    /// The idempotency key was seen inside retention: the original id.
    Duplicate(u64),
}

impl AppendOutcome {
    /// The id the publisher is told.
    pub fn id(self) -> u64 {
        match self {
            AppendOutcome::Appended(id) | AppendOutcome::Duplicate(id) => id,
        }
    }
}

/// Read direction of a history page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Ascending ids.
    OldestFirst,
    /// Descending ids.
    NewestFirst,
}

/// State shared by the writer, the commit stage and every reader of one channel.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    clock: SharedClock,
    retention_us: AtomicU64,
    /// Newest published id; stored with Release after the segment's
    /// committed length.
    head_id: AtomicU64,
    /// Newest id that counts as stored under the durability policy (under
    /// `batch`: covered by a sync); never above `head_id`.
    committed_id: AtomicU64,
    /// Segments in id order; the last one is the active segment. Locked only
    /// to look a segment up, never per record.
    segments: RwLock<Vec<Arc<Segment>>>,
    /// Ids crashes took back, ascending (fixed after open).
    holes: Vec<Hole>,
    /// Set when a sync or a write failed: the log refuses further writes.
    poisoned: AtomicBool,
    poison_why: Mutex<Option<String>>,
    /// Edits and removals of retained messages, for the current view
    /// (updated by the writer when the amending records are written).
    amendments: RwLock<keys::Amendments>,
    /// Recent live-only records, and the sequence number of the next one.
    live: Mutex<live::LiveRing>,
    live_seq: AtomicU64,
}

impl Shared {
    fn poison(&self, why: String) -> StorageError {
        tracing::error!(dir = %self.dir.display(), %why, "log refuses further writes");
        let mut slot = self.poison_why.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(why.clone());
        }
        self.poisoned.store(true, Ordering::Release);
        StorageError::Poisoned(why)
    }

    fn check_poisoned(&self) -> Result<(), StorageError> {
        if !self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        let why = self.poison_why.lock().unwrap_or_else(|p| p.into_inner());
        Err(StorageError::Poisoned(why.clone().unwrap_or_default()))
    }
}

/// The single writer of one channel's log. `Send`, not shared.
///
/// Room index: per segment, an in-memory map room → `(id, position)`
/// (`segment::RoomIndex`). The writer adds each record with a room as it
/// writes it and appends the entries to the segment's `.rooms` sidecar,
/// sealed with a marker by the commit stage. A sealed segment opened from
/// disk loads its sidecar the first time a room is read in it; only when
/// that sidecar is missing, damaged or unsealed (the segment was active
/// during a crash) do readers build the map by walking the segment once,
/// then incrementally. Opening a log never reads it.
#[derive(Debug)]
pub struct ChannelLog {
    shared: Arc<Shared>,
    config: LogConfig,
    /// The active segment and its write state.
    active: write::Active,
    /// Segments rotated away whose seal the next sync job carries.
    sealing: Vec<sync::SealWork>,
    /// The checkpoint file, shared with the commit stage.
    checkpoint: Arc<sync::CheckpointCell>,
    next_id: u64,
    last_created_at_us: u64,
    /// Last id written into the files (what a failed flush rolls back to).
    written_id: u64,
    written_created_at_us: u64,
    /// The reservation on stable storage: ids up to it may be published.
    reserved_id: u64,
    reserve_chunk: u64,
    /// Index points of written records not yet handed to the commit stage.
    job_points: Vec<IndexEntry>,
    /// Idempotency keys and publisher uuids inside retention.
    keys: keys::KeyMaps,
    /// Keys added since the last successful write (removed by a rollback).
    keys_unwritten: Vec<write::Unwritten>,
    /// Amendments of the records staged since the last successful write
    /// (made visible to readers once written): (target, amendment).
    amendments_unwritten: Vec<(u64, Amendment)>,
    /// When the log was last appended to (closing idle files), µs.
    last_append_us: u64,
    /// The watermark of the last sync job handed out.
    last_job_watermark: (u64, u64, u64),
    /// Work of [`commit`](ChannelLog::commit) not yet due (`interval`).
    deferred_job: Option<SyncJob>,
    /// When `commit` last synced, µs.
    last_sync_us: u64,
    /// Segments rotated under `none` that no sync has covered yet.
    unsynced_rotated: Vec<Arc<sync::SegFiles>>,
    /// When expired idempotency keys were last forgotten, µs.
    keys_pruned_us: u64,
    /// A crash hole recovery found, recorded by the first write.
    pending_hole: Option<Hole>,
}

impl ChannelLog {
    /// Opens (creating if needed) the log in `dir`, running recovery.
    ///
    /// Start-up reads at most one index interval of records per channel
    /// (more only for segments a crash left unsealed), and writes nothing
    /// unless recovery has something to repair.
    ///
    /// # Errors
    /// I/O errors; damage is reported in the [`OpenReport`], not returned.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        clock: SharedClock,
    ) -> Result<(ChannelLog, OpenReport), StorageError> {
        open::open(dir, config, clock)
    }

    /// Makes every later space allocation fail as if the disk were full
    /// (`StorageFull`), or work again. For tests of the out-of-space path
    /// (the log's fault plan, created on first use).
    #[doc(hidden)]
    pub fn set_allocation_failure(&mut self, fail: bool) {
        self.fault_plan().set_disk_full(fail);
    }

    /// Makes every later data sync fail as if the device reported an I/O
    /// error. For tests of the poisoning path.
    #[doc(hidden)]
    pub fn set_sync_failure(&mut self, fail: bool) {
        self.fault_plan().set_sync_failure(fail);
    }

    fn fault_plan(&mut self) -> Arc<crate::storage::FaultPlan> {
        if let Some(p) = &self.config.faults.0 {
            return p.clone();
        }
        let plan = crate::storage::FaultPlan::new();
        self.config.faults = Faults(Some(plan.clone()));
        self.active.set_faults(&self.config.faults);
        self.checkpoint.set_faults(&self.config.faults);
        plan
    }

    /// A reader handle for any thread.
    pub fn reader(&self) -> LogReader {
        LogReader::new(self.shared.clone())
    }

    /// The id the next appended record gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The newest id readers can see.
    pub fn head_id(&self) -> u64 {
        self.shared.head_id.load(Ordering::Acquire)
    }

    /// The newest id that counts as stored under the durability policy.
    pub fn committed_id(&self) -> u64 {
        self.shared.committed_id.load(Ordering::Acquire)
    }

    /// The highest id known to be on stable storage (0: none).
    pub fn synced_id(&self) -> u64 {
        self.checkpoint.synced_id()
    }

    /// The durability policy the log was opened with.
    pub fn durability(&self) -> Durability {
        self.config.durability
    }

    /// Changes this channel's retention.
    pub fn set_retention_us(&mut self, retention_us: u64) {
        self.shared
            .retention_us
            .store(retention_us, Ordering::Relaxed);
    }
}
