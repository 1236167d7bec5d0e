//! The storage engine: per-channel append-only, memory-mapped segment logs,
//! and atomic metadata snapshots.
//!
//! Owns: the record format and every other on-disk format, segment files (the
//! only `unsafe` in the crate, in `segment.rs`), recovery, rotation, retention,
//! indexes and durability. Never touches sockets or wire types.
//!
//! One [`ChannelLog`] per channel has exactly one writer (the log-writer
//! thread). Any number of [`LogReader`]s and [`Cursor`]s on any thread read
//! records below the head the writer publishes with Release ordering.
//!
//! The items re-exported here are the interface the broker, the client and
//! the bench use.
//!
//! Codemap:
//! * `record` — the record format (sans-IO);
//! * `recovery` — the pure CRC scan that finds where valid records end;
//! * `sidecar` — byte layouts of the segment header, `.idx`, `.keys`,
//!   `.rooms` and `checkpoint` (sans-IO);
//! * `io` — every file operation, and the fault injection tests use;
//! * `segment` — segment files and their mapping: the only `unsafe`;
//! * `log` — the writer (`log::write`), edits and removals (`log::amend`),
//!   record keys in memory (`log::keys`), the commit stage (`log::sync`),
//!   readers and cursors (`log::read`), recovery on open (`log::open`);
//! * `meta` — atomic metadata snapshots.
//!
//! Invariants: readers only touch bytes below a segment's committed length,
//! which the writer publishes with Release after writing them; the writer
//! only writes at or above it, through the file, never through the mapping.
//! Segment files grow as they fill, are allocated before they are written,
//! and are never shrunk. No id above the reservation on stable storage is
//! published. A failed sync poisons the log.
//! Formats are specified in `protocol.md`, "On-disk format".

pub mod record;
pub mod recovery;
pub mod sidecar;

mod error;
mod io;
mod log;
pub mod meta;
mod segment;

pub use error::StorageError;
#[doc(hidden)]
pub use io::{FaultPlan, Faults, FileKind, OpKind};
pub use log::{
    AmendError, AmendTarget, Amended, Amendment, AppendOutcome, ChannelLog, Chunk, Cursor,
    Durability, LiveRecord, LogConfig, LogReader, OpenReport, Order, Position, SyncJob, Synced,
    View,
};
pub use record::{Action, Author, ContentType, RecordView};
pub use sidecar::Hole;
