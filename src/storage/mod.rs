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
//! * `segment` — segment files and their mapping: the only `unsafe`;
//! * `log` — the writer, readers, cursors, rotation, retention, durability;
//!   `log::open` — recovery on open and quarantine;
//! * `meta` — atomic metadata snapshots.
//!
//! Invariants: readers only touch bytes below a segment's committed length,
//! which the writer publishes with Release after writing them; the writer
//! only writes at or above it. Segment files are preallocated before they
//! are mapped and never shrunk while mapped. A failed sync poisons the log.
//! Formats are specified in `protocol.md`, "On-disk format".

pub mod record;
pub mod recovery;
pub mod sidecar;

mod error;
mod log;
pub mod meta;
mod segment;

pub use error::StorageError;
pub use log::{
    AppendOutcome, ChannelLog, Chunk, Cursor, Durability, LogConfig, LogReader, OpenReport, Order,
};
pub use record::{Action, Author, ContentType, RecordView};
