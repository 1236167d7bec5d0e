//! Subscriber cursors: reading forward from a position, by room and as a
//! viewer, with gap notices for what cannot be delivered.

use std::sync::Arc;

use super::read::*;
use super::{LogReader, Shared};
use crate::storage::record::{self, RecordView};
use crate::storage::segment::{Segment, HEADER_LEN};

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
    /// The cursor's next id cannot be delivered (it left retention, a crash
    /// took it back, or its record is damaged); it now points at `oldest_id`.
    Gap {
        /// The id the cursor wanted.
        wanted_id: u64,
        /// The next id that can be delivered; the cursor continues there.
        oldest_id: u64,
    },
}

/// A subscriber's position in a log: reads forward from the mapping below the
/// published head, holding the segment it is in so it cannot be deleted.
#[derive(Debug)]
pub struct Cursor {
    shared: Arc<Shared>,
    seg: Arc<Segment>,
    pos: u64,
    next_id: u64,
    room: Option<Box<[u8]>>,
    /// `Some(viewer)`: skip records targeted away from that viewer.
    viewer: Option<Option<Box<[u8]>>>,
    /// Records created before this time are skipped, µs.
    not_before_us: u64,
}

impl Cursor {
    /// This cursor, handing out only the records `viewer` may see
    /// (`record::visible`; `None`: a caller without a user).
    pub fn viewing_as(mut self, viewer: Option<&[u8]>) -> Cursor {
        self.viewer = Some(viewer.map(Box::from));
        self
    }

    /// This cursor, skipping records created before `time_us` (a
    /// subscription that starts at a time no record has reached yet).
    pub fn not_before(mut self, time_us: u64) -> Cursor {
        self.not_before_us = time_us;
        self
    }

    /// The id of the next record this cursor will hand out (room cursors:
    /// a lower bound).
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Moves a room cursor to its room's first record at or after `next_id`
    /// using the room index, or past everything committed when there is none.
    pub(super) fn jump_to_room(&mut self, room: &[u8]) {
        loop {
            let (entries, covered) = room_entries(&self.seg, room, self.next_id, u64::MAX);
            if let Some(&(_, pos)) = entries.first() {
                self.pos = self.pos.max(pos);
                return;
            }
            match self.shared.next_segment(self.seg.first_id) {
                Some(next) => {
                    self.seg = next;
                    self.pos = HEADER_LEN;
                }
                None => {
                    self.pos = self.pos.max(covered);
                    return;
                }
            }
        }
    }

    fn reposition(&mut self, id: u64) {
        self.seg = self.shared.segment_for(id);
        self.pos = seek_id(&self.seg, id);
        self.next_id = id;
    }

    /// Hands runs of whole, contiguous, published records (in id order,
    /// filtered by room) to `f`, about `max_bytes` in all (at least one
    /// record when any is available), and advances past them.
    pub fn read(&mut self, max_bytes: usize, f: &mut dyn FnMut(&[u8])) -> Chunk {
        self.read_upto(max_bytes, u64::MAX, f)
    }

    /// [`read`](Self::read) handing out only records with ids up to
    /// `limit_id` (a subscription that sees only committed records passes
    /// [`LogReader::committed_id`]).
    pub fn read_upto(
        &mut self,
        max_bytes: usize,
        limit_id: u64,
        f: &mut dyn FnMut(&[u8]),
    ) -> Chunk {
        let cutoff = self.shared.cutoff_us();
        let mut records = 0u32;
        let mut bytes = 0usize;
        loop {
            let sealed = self.seg.is_sealed();
            let committed = self.seg.committed_len();
            let first = match record_at(&self.seg, self.pos, committed) {
                At::Record(raw) => raw,
                At::End => {
                    if records == 0 && sealed {
                        if let Some(next) = self.shared.next_segment(self.seg.first_id) {
                            self.seg = next;
                            self.pos = HEADER_LEN;
                            continue;
                        }
                    }
                    break;
                }
                At::Damaged => {
                    if records > 0 {
                        break;
                    }
                    let resume = match skip_damage(&self.seg, self.pos) {
                        Some((pos, id)) => {
                            self.pos = pos;
                            id
                        }
                        None => match self.shared.next_segment(self.seg.first_id) {
                            Some(next) if sealed => {
                                let id = next.first_id;
                                self.seg = next;
                                self.pos = HEADER_LEN;
                                id
                            }
                            _ => break,
                        },
                    };
                    if resume > self.next_id {
                        let wanted_id = self.next_id;
                        self.next_id = resume;
                        return Chunk::Gap {
                            wanted_id,
                            oldest_id: resume,
                        };
                    }
                    continue;
                }
            };
            let id = rec_id(first);
            if id > limit_id {
                break;
            }
            if id < self.next_id || rec_created_at(first) < self.not_before_us {
                self.pos += first.len() as u64;
                if id >= self.next_id {
                    self.next_id = id + 1;
                }
                continue;
            }
            if records == 0 && rec_created_at(first) < cutoff {
                let wanted_id = self.next_id;
                let oldest_id = self.shared.first_id_at_or_after(cutoff);
                self.reposition(oldest_id.max(wanted_id));
                return Chunk::Gap {
                    wanted_id,
                    oldest_id: self.next_id,
                };
            }
            if records == 0 && self.room.is_none() && id > self.next_id {
                let wanted_id = self.next_id;
                self.next_id = id;
                return Chunk::Gap {
                    wanted_id,
                    oldest_id: id,
                };
            }
            let before = self.pos;
            let budget = max_bytes.saturating_sub(bytes);
            let (n, b) = self.read_run(committed, budget, records == 0, limit_id, f);
            records += n;
            bytes += b;
            if bytes >= max_bytes || self.pos == before {
                break;
            }
        }
        if records == 0 {
            Chunk::UpToDate
        } else {
            Chunk::Records { records, bytes }
        }
    }

    /// Hands the records from the cursor's position in its segment, up to
    /// `budget` bytes (at least one record when `must_take_one`) and up to id
    /// `limit_id`, as one run (unfiltered) or as runs of matching records.
    fn read_run(
        &mut self,
        committed: u64,
        budget: usize,
        must_take_one: bool,
        limit_id: u64,
        f: &mut dyn FnMut(&[u8]),
    ) -> (u32, usize) {
        let seg = self.seg.clone();
        let mut pos = self.pos;
        let mut run_start = pos;
        let mut records = 0u32;
        let mut bytes = 0usize;
        while let At::Record(raw) = record_at(&seg, pos, committed) {
            let len = raw.len();
            let taking_first = must_take_one && records == 0;
            if (bytes + len > budget && !taking_first) || rec_id(raw) > limit_id {
                break;
            }
            if !self.matches(raw) {
                if run_start < pos {
                    f(seg.committed_bytes(run_start, pos));
                }
                run_start = pos + len as u64;
            } else {
                records += 1;
                bytes += len;
            }
            self.next_id = rec_id(raw) + 1;
            pos += len as u64;
        }
        if run_start < pos {
            f(seg.committed_bytes(run_start, pos));
        }
        self.pos = pos;
        (records, bytes)
    }

    /// True when the record is in the cursor's room and visible to its
    /// viewer (what it hands out of the log; also asked of live-only records).
    pub fn matches(&self, raw: &[u8]) -> bool {
        let in_room = match &self.room {
            None => true,
            Some(room) => RecordView::parse_trusted(raw)
                .map(|v| v.room() == Some(&room[..]))
                .unwrap_or(false),
        };
        in_room
            && match &self.viewer {
                None => true,
                Some(v) => record::visible(raw, v.as_deref()),
            }
    }
}

impl LogReader {
    /// A cursor whose first record is the first with id > `after_id` (in
    /// `room` when given). Inside ids a crash took back, it starts where the
    /// log continued.
    pub fn cursor(&self, after_id: u64, room: Option<&[u8]>) -> Cursor {
        let mut target = after_id.saturating_add(1);
        if let Position::TakenBack(h) = self.position(after_id) {
            target = h.next_id;
        }
        let seg = self.shared.segment_for(target);
        let pos = seek_id(&seg, target);
        let mut cursor = Cursor {
            shared: self.shared.clone(),
            seg,
            pos,
            next_id: target,
            room: room.map(Box::from),
            viewer: None,
            not_before_us: 0,
        };
        if let Some(room) = room {
            cursor.jump_to_room(room);
        }
        cursor
    }
}
