//! A channel's log: segments, indexes, the single writer and the readers.
//!
//! CONTRACT: the public items and signatures in this file are used by the
//! broker, the client and the bench; their bodies are the storage engine.

use std::path::{Path, PathBuf};

use crate::clock::SharedClock;
use crate::storage::record::Author;
use crate::storage::StorageError;

/// When an appended record counts as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge once the record is in the mapping (survives a process
    /// crash, not a power cut).
    None,
    /// Group commit: one data sync per writer batch before the acknowledgements.
    Batch,
    /// Sync every `ms` milliseconds; acknowledge at once.
    Interval {
        /// Milliseconds between syncs.
        ms: u64,
    },
}

/// How a channel's log is laid out and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Size of each segment file, in bytes (preallocated).
    pub segment_size: u64,
    /// Age at which the active segment is rotated, in microseconds.
    pub segment_age_us: u64,
    /// How long a message stays readable after its `created_at`, in microseconds.
    pub retention_us: u64,
    /// When an append counts as stored.
    pub durability: Durability,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_size: crate::limits::SEGMENT_SIZE_DEFAULT,
            segment_age_us: crate::limits::SEGMENT_AGE_US_DEFAULT,
            retention_us: crate::limits::RETENTION_US_DEFAULT,
            durability: Durability::Batch,
        }
    }
}

/// What recovery found and did when a log was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Segments moved aside because of corruption below the synced position.
    pub quarantined: Vec<PathBuf>,
    /// Bytes of torn tail cut from the active segment.
    pub truncated_bytes: u64,
    /// Indexes rebuilt because they were missing or damaged.
    pub rebuilt_indexes: u32,
    /// The id the next append will get.
    pub next_id: u64,
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

/// The single writer of one channel's log. `Send`, not shared.
#[derive(Debug)]
pub struct ChannelLog {
    _private: (),
}

impl ChannelLog {
    /// Opens (creating if needed) the log in `dir`, running recovery.
    ///
    /// Start-up reads at most one index interval of records per channel.
    ///
    /// # Errors
    /// I/O errors; corruption is quarantined and reported, not returned.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        clock: SharedClock,
    ) -> Result<(ChannelLog, OpenReport), StorageError> {
        let _ = (dir, config, clock);
        todo!()
    }

    /// A reader handle for any thread.
    pub fn reader(&self) -> LogReader {
        todo!()
    }

    /// The id the next appended record gets.
    pub fn next_id(&self) -> u64 {
        todo!()
    }

    /// Appends one message body (already checked by `record::check_body`),
    /// rotating first if needed. Not visible to readers until [`commit`](Self::commit).
    ///
    /// # Errors
    /// `StorageFull` when a new segment cannot be allocated, `Poisoned` after a
    /// failed sync, `Invalid` for a record too large for a segment.
    pub fn append(&mut self, author: Author, body: &[u8]) -> Result<AppendOutcome, StorageError> {
        let _ = (author, body);
        todo!()
    }

    /// Applies the durability policy to everything appended so far (one data
    /// sync under `Batch`, a sync when due under `Interval`) and then publishes
    /// the head to readers with Release ordering. Returns the published head id.
    ///
    /// # Errors
    /// A failed sync poisons the log and is returned; nothing is published.
    pub fn commit(&mut self) -> Result<u64, StorageError> {
        todo!()
    }

    /// Syncs everything appended so far now, whatever the policy (shutdown,
    /// durable acknowledgements under `Interval`/`None`).
    ///
    /// # Errors
    /// A failed sync poisons the log.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        todo!()
    }

    /// The highest id known to be on stable storage (0: none).
    pub fn synced_id(&self) -> u64 {
        todo!()
    }

    /// Changes this channel's retention.
    pub fn set_retention_us(&mut self, retention_us: u64) {
        let _ = retention_us;
        todo!()
    }

    /// Rotates an over-age active segment and deletes segments whose newest
    /// record has expired (files are unlinked once no reader holds them).
    ///
    /// # Errors
    /// I/O errors.
    pub fn maintain(&mut self) -> Result<(), StorageError> {
        todo!()
    }

    /// Syncs, writes indexes and closes.
    ///
    /// # Errors
    /// A failed sync or index write.
    pub fn close(self) -> Result<(), StorageError> {
        todo!()
    }

    /// Closes and removes every file of this log.
    ///
    /// # Errors
    /// I/O errors.
    pub fn destroy(self) -> Result<(), StorageError> {
        todo!()
    }
}

/// A cheap, cloneable, `Send + Sync` read handle on one channel's log.
#[derive(Debug, Clone)]
pub struct LogReader {
    _private: (),
}

impl LogReader {
    /// The newest published id (0: the log is empty). Acquire ordering.
    pub fn head_id(&self) -> u64 {
        todo!()
    }

    /// The oldest id still inside retention (`head_id() + 1` when none is).
    pub fn oldest_id(&self) -> u64 {
        todo!()
    }

    /// The first id whose `created_at` is at or after `time_us`
    /// (`head_id() + 1` when none is).
    pub fn first_id_at_or_after(&self, time_us: u64) -> u64 {
        todo!()
    }

    /// Calls `f` with the raw bytes of record `id` if it is published and retained.
    pub fn get<R>(&self, id: u64, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let _ = (id, f);
        todo!()
    }

    /// Reads a history page: records of `room` (all records when `None`)
    /// with `after < id < before`, in `order`, at most `limit`, stopping
    /// early when `f` returns false. Costs in proportion to the records
    /// returned (room reads use the room index), not to the channel's size.
    pub fn page(
        &self,
        room: Option<&[u8]>,
        after: Option<u64>,
        before: Option<u64>,
        order: Order,
        limit: usize,
        f: &mut dyn FnMut(&[u8]) -> bool,
    ) {
        let _ = (room, after, before, order, limit, f);
        todo!()
    }

    /// A cursor whose first record is the first with id > `after_id` (in
    /// `room` when given).
    pub fn cursor(&self, after_id: u64, room: Option<&[u8]>) -> Cursor {
        let _ = (after_id, room);
        todo!()
    }
}

/// What one [`Cursor::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// `records` whole records (`bytes` in all) were handed to the callback.
    Records {
        /// Number of records.
        records: u32,
        /// Bytes handed over.
        bytes: usize,
    },
    /// Nothing past the cursor is published yet.
    UpToDate,
    /// The cursor's next id left retention; it now points at `oldest_id`.
    Gap {
        /// The id the cursor wanted.
        wanted_id: u64,
        /// The oldest id still available; the cursor continues there.
        oldest_id: u64,
    },
}

/// A subscriber's position in a log: reads forward from the mapping below the
/// published head, holding the segment it is in so it cannot be deleted.
#[derive(Debug)]
pub struct Cursor {
    _private: (),
}

impl Cursor {
    /// The id of the next record this cursor will hand out (room cursors:
    /// a lower bound).
    pub fn next_id(&self) -> u64 {
        todo!()
    }

    /// Hands runs of whole, contiguous, published records (in id order,
    /// filtered by room) to `f`, about `max_bytes` in all (at least one
    /// record when any is available), and advances past them.
    pub fn read(&mut self, max_bytes: usize, f: &mut dyn FnMut(&[u8])) -> Chunk {
        let _ = (max_bytes, f);
        todo!()
    }
}
