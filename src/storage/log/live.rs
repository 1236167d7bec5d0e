//! Live-only records: messages delivered to the subscribers that are live
//! when the writer processes them, never appended.
//!
//! The writer puts each into a small ring beside the log, marked with the
//! id of the last record appended before it, so a subscriber receives it
//! exactly between the stored records around it, in the publisher's order.
//! The ring is bounded in entries and bytes: it holds what io threads have
//! not yet looked at, not a history. A live-only record has id 0 (it names
//! no message and cannot be resumed from).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{ChannelLog, LogReader};
use crate::limits;

/// One live-only record.
#[derive(Debug)]
pub struct LiveRecord {
    /// Its place in the log's sequence of live-only records.
    pub seq: u64,
    /// The id of the last record appended before it (0: none).
    pub after_id: u64,
    /// The record (id 0).
    pub record: Box<[u8]>,
}

/// The ring of recent live-only records of one log.
#[derive(Debug, Default)]
pub(super) struct LiveRing {
    entries: VecDeque<Arc<LiveRecord>>,
    bytes: usize,
}

impl ChannelLog {
    /// Hands `record` (a whole record with id 0) to the log's live
    /// subscribers, after every record appended so far and before any
    /// appended later. Returns its sequence number.
    pub fn push_live(&mut self, record: Box<[u8]>) -> u64 {
        let seq = self.shared.live_seq.load(Ordering::Relaxed);
        let entry = Arc::new(LiveRecord {
            seq,
            after_id: self.next_id - 1,
            record,
        });
        let mut ring = self.shared.live.lock().unwrap_or_else(|e| e.into_inner());
        ring.bytes += entry.record.len();
        ring.entries.push_back(entry);
        while ring.entries.len() > limits::LIVE_RING_RECORDS_MAX
            || ring.bytes > limits::LIVE_RING_BYTES_MAX
        {
            match ring.entries.pop_front() {
                Some(old) => ring.bytes -= old.record.len(),
                None => break,
            }
        }
        self.shared.live_seq.store(seq + 1, Ordering::Release);
        seq
    }
}

impl LogReader {
    /// The sequence number the next live-only record will get.
    pub fn live_next_seq(&self) -> u64 {
        self.shared.live_seq.load(Ordering::Acquire)
    }

    /// The live-only records from sequence number `seq` on that the ring
    /// still holds, in order (older ones were dropped: their subscribers
    /// were not live).
    pub fn live_from(&self, seq: u64) -> Vec<Arc<LiveRecord>> {
        if seq >= self.live_next_seq() {
            return Vec::new();
        }
        let ring = self.shared.live.lock().unwrap_or_else(|e| e.into_inner());
        let first = ring.entries.front().map_or(seq, |e| e.seq);
        let skip = usize::try_from(seq.saturating_sub(first)).unwrap_or(usize::MAX);
        ring.entries.iter().skip(skip).cloned().collect()
    }
}
