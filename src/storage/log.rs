//! A channel's log: segments, indexes, the single writer and the readers.
//!
//! The public items here are the storage engine's interface to the broker's
//! writer thread (`ChannelLog`) and to every reader (`LogReader`, `Cursor`).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::clock::SharedClock;
use crate::limits;
use crate::storage::record::{self, Author, RecordView, RECORD_HEADER_LEN};
use crate::storage::segment::{RoomIndex, Segment, SegmentWriter, HEADER_LEN};
use crate::storage::sidecar::{self, Checkpoint, IndexEntry};
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

/// Appends not yet published (and their segment's final state) for a
/// segment the writer has moved past.
#[derive(Debug)]
struct ToSeal {
    writer: SegmentWriter,
    end: u64,
    last_id: u64,
    newest_created_at_us: u64,
}

/// State shared by the writer and every reader of one channel.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    clock: SharedClock,
    retention_us: AtomicU64,
    /// Newest published id; stored with Release after the segment's
    /// committed length.
    head_id: AtomicU64,
    /// Segments in id order; the last one is the active segment. Locked only
    /// to look a segment up, never per record.
    segments: RwLock<Vec<Arc<Segment>>>,
}

/// The single writer of one channel's log. `Send`, not shared.
///
/// Room index: per segment, an in-memory map room → `(id, position)`
/// (`segment::RoomIndex`). The writer adds each record with a room as it
/// appends it and persists the entries in the segment's `.rooms` sidecar,
/// sealed with a marker at rotation. A sealed segment opened from disk loads
/// its sidecar the first time a room is read in it; only when that sidecar
/// is missing, damaged or unsealed (the segment was active during a crash)
/// do readers build the map by walking the segment once, then incrementally.
/// Opening a log never reads it.
#[derive(Debug)]
pub struct ChannelLog {
    shared: Arc<Shared>,
    config: LogConfig,
    active: SegmentWriter,
    idx_file: File,
    idx_len: u64,
    keys_file: File,
    keys_len: u64,
    rooms_file: File,
    rooms_len: u64,
    /// False while the active segment is one recovered at open: its room
    /// entries before the crash are not known, so its sidecar stays empty
    /// and unsealed and readers index it themselves.
    rooms_maintained: bool,
    checkpoint_file: File,
    pending_idx: Vec<u8>,
    pending_keys: Vec<u8>,
    pending_rooms: Vec<u8>,
    sidecars_unsynced: bool,
    to_seal: Vec<ToSeal>,
    /// Sealed segments with bytes not yet synced (`Durability::None` does
    /// not sync at rotation): `sync` covers them before the active one.
    unsynced_sealed: Vec<(Arc<Segment>, u64, u64)>,
    write_pos: u64,
    next_id: u64,
    last_created_at_us: u64,
    last_index_pos: Option<u64>,
    prefaulted_to: u64,
    synced_pos: u64,
    synced_id: u64,
    last_sync_us: u64,
    poisoned: Option<String>,
    keys: HashMap<Box<[u8]>, (u64, u64)>,
    fail_allocation: bool,
    fail_sync: bool,
}

fn lock_rooms(seg: &Segment) -> std::sync::MutexGuard<'_, RoomIndex> {
    seg.rooms.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_index(seg: &Segment) -> std::sync::RwLockReadGuard<'_, Vec<IndexEntry>> {
    seg.index.read().unwrap_or_else(|e| e.into_inner())
}

fn rec_u64(raw: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&raw[off..off + 8]);
    u64::from_le_bytes(b)
}

fn rec_id(raw: &[u8]) -> u64 {
    rec_u64(raw, 8)
}

fn rec_created_at(raw: &[u8]) -> u64 {
    rec_u64(raw, 16)
}

/// The whole committed record at `pos` (below `committed`), CRC-checked when
/// this process has not verified that part of the segment. `None` at the end
/// of the records or at a damaged record (logged).
fn record_at(seg: &Segment, pos: u64, committed: u64) -> Option<&[u8]> {
    let head_end = pos.checked_add(RECORD_HEADER_LEN as u64)?;
    if head_end > committed {
        return None;
    }
    let len = match record::peek_record_len(seg.committed_bytes(pos, pos + 4)) {
        Ok(Some(len)) => len as u64,
        _ => return None,
    };
    let end = pos.checked_add(len)?;
    if end > committed {
        return None;
    }
    let raw = seg.committed_bytes(pos, end);
    if pos < seg.crc_check_below() && !matches!(RecordView::decode(raw), Ok(Some(_))) {
        tracing::error!(segment = %seg.path.display(), pos, "corrupt record in a segment; not served");
        return None;
    }
    Some(raw)
}

/// Position of the first record with id >= `id` in `seg` (or the end of its
/// committed records): the nearest index point, then at most one interval.
fn seek_id(seg: &Segment, id: u64) -> u64 {
    let committed = seg.committed_len();
    let start = {
        let idx = read_index(seg);
        let i = idx.partition_point(|e| e.id <= id);
        idx[..i]
            .iter()
            .rev()
            .find(|e| e.pos < committed)
            .map_or(HEADER_LEN, |e| e.pos)
    };
    walk_until(seg, start, committed, |raw| rec_id(raw) >= id)
}

/// Position of the first record created at or after `time_us` in `seg`.
fn seek_time(seg: &Segment, time_us: u64) -> u64 {
    let committed = seg.committed_len();
    let start = {
        let idx = read_index(seg);
        let i = idx.partition_point(|e| e.created_at_us < time_us);
        idx[..i]
            .iter()
            .rev()
            .find(|e| e.pos < committed)
            .map_or(HEADER_LEN, |e| e.pos)
    };
    walk_until(seg, start, committed, |raw| rec_created_at(raw) >= time_us)
}

fn walk_until(seg: &Segment, mut pos: u64, committed: u64, stop: impl Fn(&[u8]) -> bool) -> u64 {
    while let Some(raw) = record_at(seg, pos, committed) {
        if stop(raw) {
            break;
        }
        pos += raw.len() as u64;
    }
    pos
}

/// Loads a sealed segment's `.rooms` sidecar if it is complete (sealed at
/// exactly the segment's end).
fn load_rooms_sidecar(seg: &Segment, ri: &mut RoomIndex) -> bool {
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
fn room_entries(seg: &Segment, room: &[u8], lo: u64, hi: u64) -> (Vec<(u64, u64)>, u64) {
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
        while let Some(raw) = record_at(seg, pos, committed) {
            if let Ok(v) = RecordView::parse_trusted(raw) {
                if let Some(r) = v.room() {
                    ri.rooms.entry(r.into()).or_default().push((v.id(), pos));
                }
            }
            pos += raw.len() as u64;
        }
        ri.scanned_to = pos;
        pos
    };
    let Some(list) = ri.rooms.get(room) else {
        return (Vec::new(), covered);
    };
    let a = list.partition_point(|e| e.0 < lo);
    let b = list.partition_point(|e| e.0 <= hi);
    (list[a..b.max(a)].to_vec(), covered)
}

impl Shared {
    fn cutoff_us(&self) -> u64 {
        self.clock
            .now_us()
            .saturating_sub(self.retention_us.load(Ordering::Relaxed))
    }

    fn segments(&self) -> Vec<Arc<Segment>> {
        self.segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The segment that holds `id` (or the oldest one when `id` is older).
    fn segment_for(&self, id: u64) -> Arc<Segment> {
        let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
        let i = segs.partition_point(|s| s.first_id <= id);
        segs[i.saturating_sub(1)].clone()
    }

    fn next_segment(&self, first_id: u64) -> Option<Arc<Segment>> {
        let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
        segs.iter().find(|s| s.first_id > first_id).cloned()
    }

    fn head_id(&self) -> u64 {
        self.head_id.load(Ordering::Acquire)
    }

    fn first_id_at_or_after(&self, time_us: u64) -> u64 {
        let head = self.head_id();
        for seg in self.segments() {
            if seg.last_id() < seg.first_id || seg.newest_created_at_us() < time_us {
                continue;
            }
            let committed = seg.committed_len();
            let pos = seek_time(&seg, time_us);
            if let Some(raw) = record_at(&seg, pos, committed) {
                return rec_id(raw).min(head.saturating_add(1));
            }
        }
        head.saturating_add(1)
    }
}

mod open;

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
        open::open(dir, config, clock)
    }

    /// Makes every later segment allocation fail as if the disk were full
    /// (`StorageFull`), or work again. For tests of the out-of-space path.
    #[doc(hidden)]
    pub fn set_allocation_failure(&mut self, fail: bool) {
        self.fail_allocation = fail;
    }

    /// Makes every later data sync fail as if the device reported an I/O
    /// error. For tests of the poisoning path.
    #[doc(hidden)]
    pub fn set_sync_failure(&mut self, fail: bool) {
        self.fail_sync = fail;
    }

    /// A reader handle for any thread.
    pub fn reader(&self) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    /// The id the next appended record gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    fn check_poisoned(&self) -> Result<(), StorageError> {
        match &self.poisoned {
            Some(why) => Err(StorageError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    fn poison(&mut self, what: &str, e: std::io::Error) -> StorageError {
        let why = format!("{what}: {e}");
        tracing::error!(dir = %self.shared.dir.display(), %why, "sync failed; log refuses further writes");
        self.poisoned = Some(why.clone());
        StorageError::Poisoned(why)
    }

    /// Appends one message body (already checked by `record::check_body`),
    /// rotating first if needed. Not visible to readers until [`commit`](Self::commit).
    ///
    /// # Errors
    /// `StorageFull` when a new segment cannot be allocated, `Poisoned` after a
    /// failed sync, `Invalid` for a record too large for a segment.
    pub fn append(&mut self, author: Author, body: &[u8]) -> Result<AppendOutcome, StorageError> {
        let now = self.shared.clock.now_us();
        self.append_at(author, body, now)
    }

    /// [`append`](Self::append) with the current time read by the caller: a
    /// writer appending a batch reads the clock once for all of it.
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub fn append_at(
        &mut self,
        author: Author,
        body: &[u8],
        now: u64,
    ) -> Result<AppendOutcome, StorageError> {
        self.check_poisoned()?;
        if body.len() < record::BODY_HEADER_LEN {
            return Err(StorageError::Invalid("body shorter than its header"));
        }
        let len = record::record_len(author, body.len()) as u64;
        if len > self.config.segment_size - HEADER_LEN || len as usize > record::RECORD_LEN_MAX {
            return Err(StorageError::Invalid("record larger than a segment"));
        }
        let created_at_us = now.max(self.last_created_at_us);
        let key = record::body_idempotency_key(body);
        if let Some(key) = key {
            let cutoff = now.saturating_sub(self.shared.retention_us.load(Ordering::Relaxed));
            if let Some(&(id, at)) = self.keys.get(key) {
                if at >= cutoff {
                    return Ok(AppendOutcome::Duplicate(id));
                }
            }
        }
        let seg_size = self.active.segment().size;
        let age_us = now.saturating_sub(self.active.segment().created_at_us);
        if self.write_pos > HEADER_LEN
            && (self.write_pos + len > seg_size || age_us >= self.config.segment_age_us)
        {
            self.rotate(now)?;
        }
        let id = self.next_id;
        let pos = self.write_pos;
        let dst = self.active.unpublished_mut(pos, pos + len);
        record::write_record(dst, id, created_at_us, author, body);
        if self
            .last_index_pos
            .map_or(true, |p| pos - p >= limits::INDEX_INTERVAL_BYTES)
        {
            let e = IndexEntry {
                id,
                created_at_us,
                pos,
                kind: sidecar::KIND_POINT,
            };
            self.active
                .segment()
                .index
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(e);
            self.pending_idx.extend_from_slice(&e.encode());
            self.last_index_pos = Some(pos);
        }
        if self.rooms_maintained {
            if let Some(room) = record::body_room(body) {
                let mut ri = lock_rooms(self.active.segment());
                match ri.rooms.get_mut(room) {
                    Some(list) => list.push((id, pos)),
                    None => {
                        ri.rooms.insert(room.into(), vec![(id, pos)]);
                    }
                }
                drop(ri);
                sidecar::encode_room_entry(&mut self.pending_rooms, id, pos, room);
            }
        }
        if let Some(key) = key {
            sidecar::encode_key_entry(&mut self.pending_keys, id, created_at_us, key);
            self.keys.insert(key.into(), (id, created_at_us));
        }
        self.write_pos = pos + len;
        self.next_id = id + 1;
        self.last_created_at_us = created_at_us;
        if self.write_pos + PREFAULT_BYTES / 2 > self.prefaulted_to {
            let from = self.prefaulted_to.max(self.write_pos);
            self.prefaulted_to = from + PREFAULT_BYTES;
            self.active.prefault(from, self.prefaulted_to);
        }
        Ok(AppendOutcome::Appended(id))
    }

    /// Writes buffered sidecar entries (keys first, then index points: an
    /// index point on disk implies the keys before it are on disk).
    fn flush_sidecars(&mut self) -> Result<(), StorageError> {
        if !self.pending_keys.is_empty() {
            if let Err(e) = self
                .keys_file
                .write_all_at(&self.pending_keys, self.keys_len)
            {
                return Err(self.poison("write of idempotency keys", e));
            }
            self.keys_len += self.pending_keys.len() as u64;
            self.pending_keys.clear();
            self.sidecars_unsynced = true;
            if !self.pending_idx.is_empty() && self.config.durability != Durability::None {
                if let Err(e) = self.keys_file.sync_data() {
                    return Err(self.poison("sync of idempotency keys", e));
                }
            }
        }
        if !self.pending_rooms.is_empty() {
            if let Err(e) = self
                .rooms_file
                .write_all_at(&self.pending_rooms, self.rooms_len)
            {
                return Err(self.poison("write of room index", e));
            }
            self.rooms_len += self.pending_rooms.len() as u64;
            self.pending_rooms.clear();
        }
        if !self.pending_idx.is_empty() {
            if let Err(e) = self.idx_file.write_all_at(&self.pending_idx, self.idx_len) {
                return Err(self.poison("write of index", e));
            }
            self.idx_len += self.pending_idx.len() as u64;
            self.pending_idx.clear();
            self.sidecars_unsynced = true;
        }
        Ok(())
    }

    fn sync_inner(&mut self) -> Result<(), StorageError> {
        self.flush_sidecars()?;
        if self.fail_sync {
            let e = std::io::Error::other("injected sync failure");
            return Err(self.poison("msync of segment", e));
        }
        while let Some((seg, from, to)) = self.unsynced_sealed.first().cloned() {
            if let Err(e) = seg.sync_range(from, to) {
                return Err(self.poison("msync of sealed segment", e));
            }
            self.unsynced_sealed.remove(0);
        }
        if let Err(e) = self.active.sync_range(self.synced_pos, self.write_pos) {
            return Err(self.poison("msync of segment", e));
        }
        if self.sidecars_unsynced {
            if let Err(e) = self
                .keys_file
                .sync_data()
                .and_then(|()| self.idx_file.sync_data())
            {
                return Err(self.poison("sync of sidecar", e));
            }
            self.sidecars_unsynced = false;
        }
        self.synced_pos = self.write_pos;
        self.synced_id = self.next_id - 1;
        self.last_sync_us = self.shared.clock.now_us();
        self.write_checkpoint();
        Ok(())
    }

    /// Records the synced watermark. Not synced itself: a lost or stale
    /// checkpoint only under-reports what was synced, which makes recovery
    /// cut instead of quarantine, never the reverse. A failed write leaves
    /// the previous, lower watermark, so it is logged and not fatal.
    fn write_checkpoint(&mut self) {
        let cp = Checkpoint {
            segment_first_id: self.active.segment().first_id,
            synced_pos: self.synced_pos,
            synced_id: self.synced_id,
        };
        if let Err(e) = self.checkpoint_file.write_all_at(&cp.encode(), 0) {
            tracing::warn!(error = %e, "checkpoint write failed; watermark stays lower");
        }
    }

    fn publish(&mut self) -> u64 {
        for s in self.to_seal.drain(..) {
            s.writer.publish(s.end, s.last_id, s.newest_created_at_us);
            s.writer.seal();
        }
        let head = self.next_id - 1;
        self.active
            .publish(self.write_pos, head, self.last_created_at_us);
        self.shared.head_id.store(head, Ordering::Release);
        head
    }

    /// Applies the durability policy to everything appended so far (one data
    /// sync under `Batch`, a sync when due under `Interval`) and then publishes
    /// the head to readers with Release ordering. Returns the published head id.
    ///
    /// # Errors
    /// A failed sync poisons the log and is returned; nothing is published.
    pub fn commit(&mut self) -> Result<u64, StorageError> {
        self.check_poisoned()?;
        if self.shared.head_id() == self.next_id - 1 && self.to_seal.is_empty() {
            return Ok(self.next_id - 1);
        }
        match self.config.durability {
            Durability::Batch => self.sync_inner()?,
            Durability::Interval { ms } => {
                let now = self.shared.clock.now_us();
                if now.saturating_sub(self.last_sync_us) >= ms.saturating_mul(1000) {
                    self.sync_inner()?;
                } else {
                    self.flush_sidecars()?;
                }
            }
            Durability::None => self.flush_sidecars()?,
        }
        Ok(self.publish())
    }

    /// Syncs everything appended so far now, whatever the policy (shutdown,
    /// durable acknowledgements under `Interval`/`None`).
    ///
    /// # Errors
    /// A failed sync poisons the log.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.check_poisoned()?;
        self.sync_inner()
    }

    /// The highest id known to be on stable storage (0: none).
    pub fn synced_id(&self) -> u64 {
        self.synced_id
    }

    /// Changes this channel's retention.
    pub fn set_retention_us(&mut self, retention_us: u64) {
        self.shared
            .retention_us
            .store(retention_us, Ordering::Relaxed);
    }

    /// Starts a new segment at `next_id`. The new file is allocated first, so
    /// a full disk leaves the log exactly as it was.
    fn rotate(&mut self, now: u64) -> Result<(), StorageError> {
        let dir = self.shared.dir.clone();
        let (seg, writer) = Segment::create(
            &dir,
            self.next_id,
            now,
            self.config.segment_size,
            self.fail_allocation,
        )?;
        let (idx_file, keys_file, rooms_file) = open::create_sidecars(&dir, self.next_id)?;
        self.flush_sidecars()?;
        if self.rooms_maintained {
            let mut marker = Vec::with_capacity(sidecar::ROOM_ENTRY_HEADER_LEN);
            sidecar::encode_room_entry(&mut marker, self.next_id - 1, self.write_pos, &[]);
            // The room sidecar is a hint rebuilt by walking the segment when
            // it is missing or unsealed, so a failed write or sync costs
            // speed, not correctness: logged, not fatal.
            if let Err(e) = self
                .rooms_file
                .write_all_at(&marker, self.rooms_len)
                .and_then(|()| self.rooms_file.sync_data())
            {
                tracing::warn!(error = %e, "room index sidecar not sealed");
            }
        }
        let seal = IndexEntry {
            id: self.next_id - 1,
            created_at_us: self.last_created_at_us,
            pos: self.write_pos,
            kind: sidecar::KIND_SEAL,
        };
        if self.config.durability != Durability::None {
            if let Err(e) = self.active.sync_range(self.synced_pos, self.write_pos) {
                return Err(self.poison("msync of segment", e));
            }
        } else {
            self.unsynced_sealed.push((
                self.active.segment().clone(),
                self.synced_pos,
                self.write_pos,
            ));
        }
        if let Err(e) = self.idx_file.write_all_at(&seal.encode(), self.idx_len) {
            return Err(self.poison("write of index seal", e));
        }
        if let Err(e) = self
            .keys_file
            .sync_data()
            .and_then(|()| self.idx_file.sync_data())
        {
            return Err(self.poison("sync of sidecar", e));
        }
        let old = std::mem::replace(&mut self.active, writer);
        self.to_seal.push(ToSeal {
            writer: old,
            end: self.write_pos,
            last_id: self.next_id - 1,
            newest_created_at_us: self.last_created_at_us,
        });
        self.shared
            .segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(seg);
        self.idx_file = idx_file;
        self.keys_file = keys_file;
        self.rooms_file = rooms_file;
        self.rooms_len = sidecar::SIDECAR_HEADER_LEN as u64;
        self.rooms_maintained = true;
        self.idx_len = sidecar::SIDECAR_HEADER_LEN as u64;
        self.keys_len = sidecar::SIDECAR_HEADER_LEN as u64;
        self.sidecars_unsynced = false;
        self.write_pos = HEADER_LEN;
        self.prefaulted_to = HEADER_LEN;
        self.last_index_pos = None;
        if self.unsynced_sealed.is_empty() {
            self.synced_id = self.next_id - 1;
        }
        self.synced_pos = HEADER_LEN;
        self.write_checkpoint();
        Ok(())
    }

    /// Rotates an over-age active segment and deletes segments whose newest
    /// record has expired (files are unlinked once no reader holds them).
    ///
    /// Deleted files are unlinked at once: on Linux a mapping of an unlinked
    /// file stays valid, so readers holding the segment keep reading it and
    /// the space is freed when the last of them drops it.
    ///
    /// # Errors
    /// I/O errors.
    pub fn maintain(&mut self) -> Result<(), StorageError> {
        let now = self.shared.clock.now_us();
        if self.poisoned.is_none()
            && self.write_pos > HEADER_LEN
            && now.saturating_sub(self.active.segment().created_at_us) >= self.config.segment_age_us
        {
            let nothing_unpublished = self.shared.head_id() == self.next_id - 1;
            self.rotate(now)?;
            if nothing_unpublished {
                self.publish();
            }
        }
        let cutoff = self.shared.cutoff_us();
        let removed: Vec<Arc<Segment>> = {
            let mut segs = self
                .shared
                .segments
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let keep_last = segs.len().saturating_sub(1);
            let n = segs[..keep_last]
                .iter()
                .take_while(|s| s.is_sealed() && s.newest_created_at_us() < cutoff)
                .count();
            segs.drain(..n).collect()
        };
        for seg in removed {
            open::remove_segment_files(&self.shared.dir, seg.first_id)?;
        }
        self.keys.retain(|_, &mut (_, at)| at >= cutoff);
        Ok(())
    }

    /// Syncs, writes indexes and closes.
    ///
    /// # Errors
    /// A failed sync or index write.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.check_poisoned()?;
        self.sync_inner()
    }

    /// Closes and removes every file of this log.
    ///
    /// # Errors
    /// I/O errors.
    pub fn destroy(self) -> Result<(), StorageError> {
        let dir = self.shared.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
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

/// Bytes of the mapping faulted in ahead of the write position.
const PREFAULT_BYTES: u64 = limits::SEGMENT_PREFAULT_BYTES;

/// A cheap, cloneable, `Send + Sync` read handle on one channel's log.
#[derive(Debug, Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

impl LogReader {
    /// The newest published id (0: the log is empty). Acquire ordering.
    pub fn head_id(&self) -> u64 {
        self.shared.head_id()
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

    /// Calls `f` with the raw bytes of record `id` if it is published and retained.
    pub fn get<R>(&self, id: u64, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if id == 0 || id > self.head_id() {
            return None;
        }
        let seg = self.shared.segment_for(id);
        let committed = seg.committed_len();
        let raw = record_at(&seg, seek_id(&seg, id), committed)?;
        (rec_id(raw) == id && rec_created_at(raw) >= self.shared.cutoff_us()).then(|| f(raw))
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
        self.page_as(room, after, before, order, limit, None, f);
    }

    /// [`LogReader::page`] as seen by a caller: with `Some(viewer)`, records
    /// targeted away from that viewer (`pm_users`, `exclude_users`; see
    /// `record::visible`) are skipped and do not count towards `limit`.
    #[allow(clippy::too_many_arguments)] // the bounds of one page, kept flat like `page`
    pub fn page_as(
        &self,
        room: Option<&[u8]>,
        after: Option<u64>,
        before: Option<u64>,
        order: Order,
        limit: usize,
        viewer: Option<Option<&[u8]>>,
        f: &mut dyn FnMut(&[u8]) -> bool,
    ) {
        let mut filtered = |raw: &[u8]| -> Option<bool> {
            match viewer {
                Some(v) if !record::visible(raw, v) => None,
                _ => Some(f(raw)),
            }
        };
        let f = &mut filtered;
        let head = self.head_id();
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
                let Some(raw) = record_at(&seg, pos, committed) else {
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
            while let Some(raw) = record_at(&seg, pos, committed) {
                let id = rec_id(raw);
                if id > hi {
                    return;
                }
                pos += raw.len() as u64;
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
                while let Some(raw) = record_at(seg, pos, committed) {
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
                let first = block_first.unwrap_or(seg.first_id);
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

    /// A cursor whose first record is the first with id > `after_id` (in
    /// `room` when given).
    pub fn cursor(&self, after_id: u64, room: Option<&[u8]>) -> Cursor {
        let target = after_id.saturating_add(1);
        let seg = self.shared.segment_for(target);
        let pos = seek_id(&seg, target);
        let mut cursor = Cursor {
            shared: self.shared.clone(),
            seg,
            pos,
            next_id: target,
            room: room.map(Box::from),
            viewer: None,
        };
        if let Some(room) = room {
            cursor.jump_to_room(room);
        }
        cursor
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
    shared: Arc<Shared>,
    seg: Arc<Segment>,
    pos: u64,
    next_id: u64,
    room: Option<Box<[u8]>>,
    /// `Some(viewer)`: skip records targeted away from that viewer.
    viewer: Option<Option<Box<[u8]>>>,
}

impl Cursor {
    /// This cursor, handing out only the records `viewer` may see
    /// (`record::visible`; `None`: a caller without a user).
    pub fn viewing_as(mut self, viewer: Option<&[u8]>) -> Cursor {
        self.viewer = Some(viewer.map(Box::from));
        self
    }

    /// The id of the next record this cursor will hand out (room cursors:
    /// a lower bound).
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Moves a room cursor to its room's first record at or after `next_id`
    /// using the room index, or past everything committed when there is none.
    fn jump_to_room(&mut self, room: &[u8]) {
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
        let cutoff = self.shared.cutoff_us();
        let mut records = 0u32;
        let mut bytes = 0usize;
        loop {
            let sealed = self.seg.is_sealed();
            let committed = self.seg.committed_len();
            let Some(first) = record_at(&self.seg, self.pos, committed) else {
                if records == 0 && sealed {
                    if let Some(next) = self.shared.next_segment(self.seg.first_id) {
                        self.seg = next;
                        self.pos = HEADER_LEN;
                        continue;
                    }
                }
                break;
            };
            let id = rec_id(first);
            if id < self.next_id {
                self.pos += first.len() as u64;
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
            let (n, b) = self.read_run(committed, max_bytes.saturating_sub(bytes), records == 0, f);
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
    /// `budget` bytes (at least one record when `must_take_one`), as one run
    /// (unfiltered) or as runs of matching records (room).
    fn read_run(
        &mut self,
        committed: u64,
        budget: usize,
        must_take_one: bool,
        f: &mut dyn FnMut(&[u8]),
    ) -> (u32, usize) {
        let seg = self.seg.clone();
        let mut pos = self.pos;
        let mut run_start = pos;
        let mut records = 0u32;
        let mut bytes = 0usize;
        while let Some(raw) = record_at(&seg, pos, committed) {
            let len = raw.len();
            let taking_first = must_take_one && records == 0;
            if bytes + len > budget && !taking_first {
                break;
            }
            let in_room = match &self.room {
                None => true,
                Some(room) => RecordView::parse_trusted(raw)
                    .map(|v| v.room() == Some(&room[..]))
                    .unwrap_or(false),
            };
            let matches = in_room
                && match &self.viewer {
                    None => true,
                    Some(v) => record::visible(raw, v.as_deref()),
                };
            if !matches {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::storage::record::MessageFields;

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
