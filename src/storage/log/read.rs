//! Readers: looking records up by id and time, history pages in the raw and
//! current views, and room indexes, all straight from the mapped segments
//! below the published head (subscriber cursors: `cursor.rs`).
//!
//! Damage found when reading (a record whose CRC, length or fields are
//! wrong in a part of a segment this process did not verify) is logged once
//! per segment and stepped over: readers continue at the next index point
//! that names a valid record, or at the next segment, and a cursor reports
//! the ids it could not deliver as a gap. Nothing with a bad CRC is served
//! and no reader stalls on damage.

use std::sync::atomic::Ordering;
use std::sync::Arc;

pub use super::cursor::{Chunk, Cursor};
use super::{Amendment, Order, Shared};
use crate::storage::record::{self, RecordView, RECORD_HEADER_LEN};
use crate::storage::segment::{RoomIndex, Segment, HEADER_LEN};
use crate::storage::sidecar::{self, Hole, IndexEntry};

pub(super) fn lock_rooms(seg: &Segment) -> std::sync::MutexGuard<'_, RoomIndex> {
    seg.rooms.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn read_index(seg: &Segment) -> std::sync::RwLockReadGuard<'_, Vec<IndexEntry>> {
    seg.index.read().unwrap_or_else(|e| e.into_inner())
}

fn rec_u64(raw: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&raw[off..off + 8]);
    u64::from_le_bytes(b)
}

pub(super) fn rec_id(raw: &[u8]) -> u64 {
    rec_u64(raw, 8)
}

pub(super) fn rec_created_at(raw: &[u8]) -> u64 {
    rec_u64(raw, 16)
}

/// What sits at a position of a segment.
pub(super) enum At<'a> {
    /// A whole, valid record.
    Record(&'a [u8]),
    /// The end of the committed records.
    End,
    /// A record that fails its checks (or is cut short).
    Damaged,
}

/// The record at `pos` (below `committed`), CRC-checked when this process
/// has not verified that part of the segment.
pub(super) fn record_at(seg: &Segment, pos: u64, committed: u64) -> At<'_> {
    if pos >= committed {
        return At::End;
    }
    let Some(head_end) = pos.checked_add(RECORD_HEADER_LEN as u64) else {
        return At::Damaged;
    };
    if head_end > committed {
        return At::Damaged;
    }
    let len = match record::peek_record_len(seg.committed_bytes(pos, pos + 4)) {
        Ok(Some(len)) => len as u64,
        _ => return At::Damaged,
    };
    let end = pos.saturating_add(len);
    if end > committed {
        return At::Damaged;
    }
    let raw = seg.committed_bytes(pos, end);
    if pos < seg.crc_check_below() && !matches!(RecordView::decode(raw), Ok(Some(_))) {
        return At::Damaged;
    }
    At::Record(raw)
}

/// Where reading continues after damage at `pos`: the first index point past
/// it that names a valid record, as (position, id). Logs the damage the
/// first time it is seen in the segment.
pub(super) fn skip_damage(seg: &Segment, pos: u64) -> Option<(u64, u64)> {
    if seg.first_report_of_damage(pos) {
        tracing::error!(segment = %seg.path.display(), pos, "damaged record in a segment: not served; readers skip to the next valid record and report a gap");
    }
    let committed = seg.committed_len();
    let points: Vec<IndexEntry> = read_index(seg)
        .iter()
        .filter(|e| e.pos > pos && e.pos < committed)
        .copied()
        .collect();
    points
        .into_iter()
        .find_map(|e| match record_at(seg, e.pos, committed) {
            At::Record(raw) if rec_id(raw) == e.id => Some((e.pos, e.id)),
            _ => None,
        })
}

/// The next valid record at or after `pos` in `seg`, stepping over damage:
/// (its position, its bytes). `None` at the end of what can be read.
fn next_record(seg: &Segment, mut pos: u64, committed: u64) -> Option<(u64, &[u8])> {
    loop {
        match record_at(seg, pos, committed) {
            At::Record(raw) => return Some((pos, raw)),
            At::End => return None,
            At::Damaged => pos = skip_damage(seg, pos)?.0,
        }
    }
}

/// Position of the first record with id >= `id` in `seg` (or the end of its
/// committed records): the nearest index point, then at most one interval.
pub(super) fn seek_id(seg: &Segment, id: u64) -> u64 {
    let start = nearest_point(seg, |e| e.id <= id);
    walk_until(seg, start, |raw| rec_id(raw) >= id)
}

/// Position of the first record created at or after `time_us` in `seg`.
pub(super) fn seek_time(seg: &Segment, time_us: u64) -> u64 {
    let start = nearest_point(seg, |e| e.created_at_us < time_us);
    walk_until(seg, start, |raw| rec_created_at(raw) >= time_us)
}

/// The position of the last committed index point for which `before` holds
/// (points are ordered), or the segment's first record.
pub(super) fn nearest_point(seg: &Segment, before: impl Fn(&IndexEntry) -> bool) -> u64 {
    let committed = seg.committed_len();
    let idx = read_index(seg);
    let i = idx.partition_point(before);
    idx[..i]
        .iter()
        .rev()
        .find(|e| e.pos < committed)
        .map_or(HEADER_LEN, |e| e.pos)
}

/// The position of the first record from `pos` on for which `stop` holds,
/// or the end of the readable records.
pub(super) fn walk_until(seg: &Segment, mut pos: u64, stop: impl Fn(&[u8]) -> bool) -> u64 {
    let committed = seg.committed_len();
    while let Some((at, raw)) = next_record(seg, pos, committed) {
        if stop(raw) {
            return at;
        }
        pos = at + raw.len() as u64;
    }
    committed.max(pos)
}

/// Loads a sealed segment's `.rooms` sidecar if it is complete (sealed at
/// exactly the segment's end).
pub(super) fn load_rooms_sidecar(seg: &Segment, ri: &mut RoomIndex) -> bool {
    let Ok(buf) = std::fs::read(seg.path.with_extension("rooms")) else {
        return false;
    };
    let Some((entries, Some((last_id, end)))) = sidecar::decode_rooms(&buf) else {
        return false;
    };
    if end != seg.committed_len() || last_id != seg.last_id() {
        return false;
    }
    for (room, id, pos) in entries {
        ri.rooms.entry(room.into()).or_default().push((id, pos));
    }
    true
}

/// The records of `room` in `seg` with `lo <= id <= hi`, and the position up
/// to which the segment's room index covers the records. Readers only scan
/// segments whose index is neither writer-maintained nor loaded from a
/// sealed sidecar.
pub(super) fn room_entries(seg: &Segment, room: &[u8], lo: u64, hi: u64) -> (Vec<(u64, u64)>, u64) {
    // Loaded before the lookup: every room record below it was added to the
    // index (under the lock) before it was published.
    let committed = seg.committed_len();
    let mut ri = lock_rooms(seg);
    if !ri.complete && !ri.sidecar_checked && seg.is_sealed() {
        ri.sidecar_checked = true;
        let mut fresh = RoomIndex::default();
        if load_rooms_sidecar(seg, &mut fresh) {
            ri.rooms = fresh.rooms;
            ri.complete = true;
        }
    }
    let covered = if ri.complete {
        committed
    } else {
        let mut pos = ri.scanned_to;
        while let Some((at, raw)) = next_record(seg, pos, committed) {
            if let Ok(v) = RecordView::parse_trusted(raw) {
                if let Some(r) = v.room() {
                    ri.rooms.entry(r.into()).or_default().push((v.id(), at));
                }
            }
            pos = at + raw.len() as u64;
        }
        ri.scanned_to = pos.max(committed);
        ri.scanned_to
    };
    let Some(list) = ri.rooms.get(room) else {
        return (Vec::new(), covered);
    };
    let a = list.partition_point(|e| e.0 < lo);
    let b = list.partition_point(|e| e.0 <= hi);
    (list[a..b.max(a)].to_vec(), covered)
}

impl Shared {
    pub(super) fn cutoff_us(&self) -> u64 {
        self.clock
            .now_us()
            .saturating_sub(self.retention_us.load(Ordering::Relaxed))
    }

    pub(super) fn segments(&self) -> Vec<Arc<Segment>> {
        self.segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The segment that holds `id` (or the oldest one when `id` is older).
    pub(super) fn segment_for(&self, id: u64) -> Arc<Segment> {
        let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
        let i = segs.partition_point(|s| s.first_id <= id);
        segs[i.saturating_sub(1)].clone()
    }

    pub(super) fn next_segment(&self, first_id: u64) -> Option<Arc<Segment>> {
        let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
        segs.iter().find(|s| s.first_id > first_id).cloned()
    }

    pub(super) fn head_id(&self) -> u64 {
        self.head_id.load(Ordering::Acquire)
    }

    pub(super) fn first_id_at_or_after(&self, time_us: u64) -> u64 {
        let head = self.head_id();
        for seg in self.segments() {
            if seg.last_id() < seg.first_id || seg.newest_created_at_us() < time_us {
                continue;
            }
            let committed = seg.committed_len();
            let pos = seek_time(&seg, time_us);
            if let Some((_, raw)) = next_record(&seg, pos, committed) {
                return rec_id(raw).min(head.saturating_add(1));
            }
        }
        head.saturating_add(1)
    }
}

/// Hands one record of a page to `f`; true when the page is complete
/// (`f` said stop, or `left` reached 0). Records `f` skips (`None`) do not
/// count.
fn take(f: &mut dyn FnMut(&[u8]) -> Option<bool>, raw: &[u8], left: &mut usize) -> bool {
    match f(raw) {
        None => false,
        Some(go_on) => {
            *left -= 1;
            !go_on || *left == 0
        }
    }
}

/// How a reader sees the records of a page or a fetch.
#[derive(Debug, Clone, Copy, Default)]
pub struct View<'a> {
    /// `Some(viewer)`: leave out records targeted away from `viewer`
    /// (`pm_users`, `exclude_users`; see `record::visible`); `None`: every
    /// record.
    pub viewer: Option<Option<&'a [u8]>>,
    /// The current view: each message in its latest version (an edited one
    /// with the edit's content type and payload and `ref_id` naming the
    /// edit), removed messages and the edit and remove records left out.
    /// Otherwise the raw records, amendments included, as subscribers get
    /// them.
    pub current: bool,
}

/// True for an edit or remove record.
fn is_amendment(raw: &[u8]) -> bool {
    matches!(
        raw.get(24).copied().and_then(record::Action::from_u8),
        Some(record::Action::Edit | record::Action::Remove)
    )
}

/// Where a position "after id N" stands in a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// N is a position the log can continue from.
    Valid,
    /// N lies in ids a crash took back: records after `hole.kept_id` are
    /// gone, and the log continues at `hole.next_id`.
    TakenBack(Hole),
    /// N is past every id the log ever gave.
    Ahead {
        /// The newest id.
        head_id: u64,
    },
}

/// A cheap, cloneable, `Send + Sync` read handle on one channel's log.
#[derive(Debug, Clone)]
pub struct LogReader {
    pub(super) shared: Arc<Shared>,
}

impl LogReader {
    pub(super) fn new(shared: Arc<Shared>) -> LogReader {
        LogReader { shared }
    }

    /// The newest published id (0: the log is empty). Acquire ordering.
    pub fn head_id(&self) -> u64 {
        self.shared.head_id()
    }

    /// The newest id that counts as stored under the durability policy
    /// (under `batch`: covered by a sync). Acquire ordering.
    pub fn committed_id(&self) -> u64 {
        self.shared.committed_id.load(Ordering::Acquire)
    }

    /// The oldest id still inside retention (`head_id() + 1` when none is).
    pub fn oldest_id(&self) -> u64 {
        self.shared.first_id_at_or_after(self.shared.cutoff_us())
    }

    /// The first id whose `created_at` is at or after `time_us`
    /// (`head_id() + 1` when none is).
    pub fn first_id_at_or_after(&self, time_us: u64) -> u64 {
        self.shared.first_id_at_or_after(time_us)
    }

    /// Ids crashes took back, ascending.
    pub fn holes(&self) -> &[Hole] {
        &self.shared.holes
    }

    /// Where "after id `after_id`" stands: a valid position, inside ids a
    /// crash took back, or past every id given.
    pub fn position(&self, after_id: u64) -> Position {
        if let Some(h) = self
            .shared
            .holes
            .iter()
            .find(|h| h.kept_id < after_id && after_id < h.next_id)
        {
            return Position::TakenBack(*h);
        }
        let head_id = self.head_id();
        if after_id > head_id {
            return Position::Ahead { head_id };
        }
        Position::Valid
    }

    /// Calls `f` with the raw bytes of record `id` if it is published and retained.
    pub fn get<R>(&self, id: u64, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if id == 0 || id > self.head_id() {
            return None;
        }
        let seg = self.shared.segment_for(id);
        let committed = seg.committed_len();
        let At::Record(raw) = record_at(&seg, seek_id(&seg, id), committed) else {
            return None;
        };
        (rec_id(raw) == id && rec_created_at(raw) >= self.shared.cutoff_us()).then(|| f(raw))
    }

    /// [`get`](Self::get) in the current view (see [`View`]) up to id
    /// `limit_id`: `None` also for a removed message or an amending record.
    pub fn get_current<R>(&self, id: u64, limit_id: u64, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let latest = self
            .shared
            .amendments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .latest(id, limit_id.min(self.head_id()));
        let mut scratch = Vec::new();
        let shown = self.get(id, |raw| {
            if is_amendment(raw) {
                return false;
            }
            match latest {
                None => {
                    scratch.extend_from_slice(raw);
                    true
                }
                Some(a) if a.removed => false,
                Some(a) => self.fold_edit(raw, a, &mut scratch),
            }
        });
        (shown == Some(true)).then(|| f(&scratch))
    }

    /// Writes `raw` as edited by the edit record `a` into `out` (read at its
    /// known position); the raw record when the edit cannot be read.
    fn fold_edit(&self, raw: &[u8], a: Amendment, out: &mut Vec<u8>) -> bool {
        let mut fold = |edit: &[u8]| match (
            RecordView::parse_trusted(raw),
            RecordView::parse_trusted(edit),
        ) {
            (Ok(o), Ok(e)) => {
                record::current_version(&o, &e, out);
                true
            }
            _ => false,
        };
        let seg = self.shared.segment_for(a.id);
        let folded = match record_at(&seg, a.pos, seg.committed_len()) {
            At::Record(edit) if rec_id(edit) == a.id => Some(fold(edit)),
            _ => self.get(a.id, fold),
        };
        if folded != Some(true) {
            out.clear();
            out.extend_from_slice(raw);
        }
        true
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
        self.page_as(room, after, before, order, limit, View::default(), f);
    }

    /// [`LogReader::page`] as seen through `view`: records it leaves out do
    /// not count towards `limit`.
    #[allow(clippy::too_many_arguments)] // the bounds of one page, kept flat like `page`
    pub fn page_as(
        &self,
        room: Option<&[u8]>,
        after: Option<u64>,
        before: Option<u64>,
        order: Order,
        limit: usize,
        view: View<'_>,
        f: &mut dyn FnMut(&[u8]) -> bool,
    ) {
        self.page_upto(room, after, before, order, limit, view, self.head_id(), f);
    }

    /// [`LogReader::page_as`] seeing only ids up to `limit_id` (for example
    /// [`committed_id`](Self::committed_id)).
    #[allow(clippy::too_many_arguments)] // the bounds of one page, kept flat like `page`
    pub fn page_upto(
        &self,
        room: Option<&[u8]>,
        after: Option<u64>,
        before: Option<u64>,
        order: Order,
        limit: usize,
        view: View<'_>,
        limit_id: u64,
        f: &mut dyn FnMut(&[u8]) -> bool,
    ) {
        let head = self.head_id().min(limit_id);
        // Read once per page: the writer adds to it only as it writes.
        let guard = view.current.then(|| {
            self.shared
                .amendments
                .read()
                .unwrap_or_else(|e| e.into_inner())
        });
        let mut amendments = guard.as_ref().map(|g| g.scan());
        let mut scratch = Vec::new();
        let mut filtered = |raw: &[u8]| -> Option<bool> {
            if let Some(v) = view.viewer {
                if !record::visible(raw, v) {
                    return None;
                }
            }
            let Some(am) = &mut amendments else {
                return Some(f(raw));
            };
            if is_amendment(raw) {
                return None;
            }
            match am.latest(rec_id(raw), head) {
                None => Some(f(raw)),
                Some(a) if a.removed => None,
                Some(a) => {
                    self.fold_edit(raw, a, &mut scratch);
                    Some(f(&scratch))
                }
            }
        };
        let f = &mut filtered;
        let lo = after
            .map_or(1, |a| a.saturating_add(1))
            .max(self.oldest_id());
        let hi = before.map_or(head, |b| b.saturating_sub(1)).min(head);
        if lo > hi || limit == 0 {
            return;
        }
        let mut left = limit;
        match (room, order) {
            (Some(room), _) => self.page_room(room, lo, hi, order, &mut left, f),
            (None, Order::OldestFirst) => self.page_forward(lo, hi, &mut left, f),
            (None, Order::NewestFirst) => self.page_backward(lo, hi, &mut left, f),
        }
    }

    fn page_room(
        &self,
        room: &[u8],
        lo: u64,
        hi: u64,
        order: Order,
        left: &mut usize,
        f: &mut dyn FnMut(&[u8]) -> Option<bool>,
    ) {
        let mut segs = self.shared.segments();
        segs.retain(|s| s.first_id <= hi && s.last_id() >= lo);
        if order == Order::NewestFirst {
            segs.reverse();
        }
        for seg in segs {
            let (mut entries, _) = room_entries(&seg, room, lo, hi);
            if order == Order::NewestFirst {
                entries.reverse();
            }
            let committed = seg.committed_len();
            for (_, pos) in entries {
                let At::Record(raw) = record_at(&seg, pos, committed) else {
                    continue;
                };
                if take(f, raw, left) {
                    return;
                }
            }
        }
    }

    fn page_forward(
        &self,
        lo: u64,
        hi: u64,
        left: &mut usize,
        f: &mut dyn FnMut(&[u8]) -> Option<bool>,
    ) {
        let mut seg = self.shared.segment_for(lo);
        let mut pos = seek_id(&seg, lo);
        loop {
            let committed = seg.committed_len();
            while let Some((at, raw)) = next_record(&seg, pos, committed) {
                let id = rec_id(raw);
                if id > hi {
                    return;
                }
                pos = at + raw.len() as u64;
                if id < lo {
                    continue;
                }
                if take(f, raw, left) {
                    return;
                }
            }
            match self.shared.next_segment(seg.first_id) {
                Some(next) => {
                    seg = next;
                    pos = HEADER_LEN;
                }
                None => return,
            }
        }
    }

    fn page_backward(
        &self,
        lo: u64,
        hi: u64,
        left: &mut usize,
        f: &mut dyn FnMut(&[u8]) -> Option<bool>,
    ) {
        let mut cur_hi = hi;
        let mut block: Vec<(u64, u64)> = Vec::new();
        for seg in self.shared.segments().iter().rev() {
            if seg.first_id > cur_hi {
                continue;
            }
            let committed = seg.committed_len();
            let points: Vec<(u64, u64)> = read_index(seg)
                .iter()
                .filter(|e| e.pos < committed)
                .map(|e| (e.id, e.pos))
                .collect();
            loop {
                let i = points.partition_point(|p| p.0 <= cur_hi);
                let start = if i == 0 { HEADER_LEN } else { points[i - 1].1 };
                block.clear();
                let mut pos = start;
                let mut block_first = None;
                // A block runs from one index point to the next; damage
                // inside it ends the block (the records after it, up to
                // the next point, are not served).
                while let At::Record(raw) = record_at(seg, pos, committed) {
                    let id = rec_id(raw);
                    if id > cur_hi {
                        break;
                    }
                    block_first.get_or_insert(id);
                    if id >= lo {
                        block.push((pos, pos + raw.len() as u64));
                    }
                    pos += raw.len() as u64;
                }
                for &(s, e) in block.iter().rev() {
                    if take(f, seg.committed_bytes(s, e), left) {
                        return;
                    }
                }
                let first = block_first.unwrap_or(if i == 0 {
                    seg.first_id
                } else {
                    points[i - 1].0
                });
                if first <= lo {
                    return;
                }
                cur_hi = first - 1;
                if i == 0 {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, SharedClock};
    use crate::limits;
    use crate::storage::record::{self, Author, MessageFields};
    use crate::storage::{ChannelLog, Durability, LogConfig};

    fn room_body(room: &str) -> Vec<u8> {
        let mut b = Vec::new();
        let fields = MessageFields {
            room: Some(room),
            ..MessageFields::default()
        };
        record::encode_body(&mut b, &fields, &[5u8; 300]);
        record::check_body(&mut b).unwrap();
        b
    }

    #[test]
    fn sealed_segments_reopened_use_their_room_sidecar_without_walking() {
        let dir = tempfile::tempdir().unwrap();
        let clock: SharedClock = ManualClock::new(1_000_000);
        let cfg = LogConfig {
            segment_size: limits::SEGMENT_SIZE_MIN,
            durability: Durability::None,
            ..LogConfig::default()
        };
        let (mut log, _) = ChannelLog::open(dir.path(), cfg.clone(), clock.clone()).unwrap();
        for i in 0..600 {
            log.append(Author::None, &room_body(if i % 2 == 0 { "a" } else { "b" }))
                .unwrap();
        }
        log.commit().unwrap();
        log.close().unwrap();
        let (log, _) = ChannelLog::open(dir.path(), cfg, clock).unwrap();
        let segs = log.shared.segments();
        assert!(segs.len() >= 3);
        for seg in &segs[..segs.len() - 1] {
            let (entries, covered) = room_entries(seg, b"a", 0, u64::MAX);
            assert!(!entries.is_empty());
            assert_eq!(covered, seg.committed_len());
            let ri = lock_rooms(seg);
            assert!(ri.complete, "loaded from the sealed sidecar");
            assert_eq!(ri.scanned_to, HEADER_LEN, "no walk");
        }
        // The recovered active segment is walked.
        let active = segs.last().unwrap();
        room_entries(active, b"a", 0, u64::MAX);
        assert!(!lock_rooms(active).complete);
    }
}
