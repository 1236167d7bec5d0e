//! The write path: appending into the staging buffer, writing it into the
//! files, rolling a failed write back, publishing, reserving ids, rotating,
//! and the log's upkeep (age rotation, retention, idle files, close).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::sync::{SealWork, SegFiles, SyncJob};
use super::{AppendOutcome, ChannelLog, Durability, Synced};
use crate::limits;
use crate::storage::io::{self as sio, Faults};
use crate::storage::record::{self, Author};
use crate::storage::segment::{space_error, Segment, HEADER_LEN};
use crate::storage::sidecar::{self, IndexEntry, KeyKind};
use crate::storage::StorageError;

/// The active segment and what the writer knows of it.
#[derive(Debug)]
pub(super) struct Active {
    pub seg: Arc<Segment>,
    /// Its files, while the log is busy (closed when idle, opened on demand).
    pub files: Option<Arc<SegFiles>>,
    pub faults: Faults,
    /// Length of the segment file (allocated), bytes.
    pub allocated: u64,
    /// End of the appended records.
    pub write_pos: u64,
    /// End of the records written into the file.
    pub written_pos: u64,
    /// Bytes `[written_pos, write_pos)`: appended records not yet written.
    pub stage: Vec<u8>,
    /// `.keys` and `.rooms` entries of the staged records.
    pub pending_keys: Vec<u8>,
    pub pending_rooms: Vec<u8>,
    /// Length of the `.keys` / `.rooms` files as written (0: not created).
    pub keys_len: u64,
    pub rooms_len: u64,
    /// Room index entries `(room, id, pos)` and index points of the staged records.
    pub staged_rooms: Vec<(Box<[u8]>, u64, u64)>,
    pub staged_points: Vec<IndexEntry>,
    pub last_index_pos: Option<u64>,
    pub written_last_index_pos: Option<u64>,
    /// False while the active segment is one recovered at open: its room
    /// entries before the crash are not known, so its sidecar stays unsealed
    /// and readers index it themselves.
    pub rooms_maintained: bool,
    /// The segment cannot take the next id (recovery cut it, or the ids
    /// continue above a crash hole) but no new one could be made (a full
    /// disk): the first append makes one.
    pub rotate_first: bool,
    /// Recovery already wrote this segment's seal.
    pub sealed_on_disk: bool,
}

/// A key added to the writer's maps since the last successful write.
#[derive(Debug)]
pub(super) enum Unwritten {
    Key(Box<[u8]>),
    Uuid([u8; 16]),
}

impl Active {
    pub fn set_faults(&mut self, faults: &Faults) {
        self.faults = faults.clone();
        self.files = None;
    }
}

/// How often expired idempotency keys are forgotten, µs.
const KEYS_PRUNE_EVERY_US: u64 = 60_000_000;

/// Appended bytes staged before they are written into the file mid-batch.
const STAGE_WRITE_BYTES: usize = 4 * 1024 * 1024;

impl ChannelLog {
    /// Appends one message body (already checked by `record::check_body`),
    /// rotating first if needed. Not visible to readers until
    /// [`flush`](Self::flush).
    ///
    /// # Errors
    /// `StorageFull` when space cannot be allocated, `Poisoned` after a
    /// failed sync, `Invalid` for a record too large for a segment. An error
    /// may also have rolled back records appended before this one since the
    /// last write; they are the ones above [`written_id`](Self::written_id).
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
        let key = record::body_idempotency_key(body);
        let uuid = record::body_uuid(body);
        if let Some(id) = self.duplicate_of(key, uuid, now) {
            return Ok(AppendOutcome::Duplicate(id));
        }
        let (id, created_at_us) = self.stage(author, body, now)?;
        if let Some(key) = key {
            sidecar::encode_key_entry(
                &mut self.active.pending_keys,
                id,
                created_at_us,
                KeyKind::Idempotency,
                key,
            );
            self.keys
                .idempotency
                .insert(key.into(), (id, created_at_us));
            self.keys_unwritten.push(Unwritten::Key(key.into()));
        }
        if let Some(u) = uuid {
            sidecar::encode_key_entry(
                &mut self.active.pending_keys,
                id,
                created_at_us,
                KeyKind::Uuid,
                &u,
            );
            self.keys.uuids.insert(u, (id, created_at_us));
            self.keys_unwritten.push(Unwritten::Uuid(u));
        }
        self.end_append()?;
        Ok(AppendOutcome::Appended(id))
    }

    /// The id of a message inside retention that `key` or `uuid` already
    /// names: publishing it again is a duplicate.
    fn duplicate_of(&self, key: Option<&[u8]>, uuid: Option<[u8; 16]>, now: u64) -> Option<u64> {
        let cutoff = now.saturating_sub(self.shared.retention_us.load(Ordering::Relaxed));
        let live = |&(id, at): &(u64, u64)| (at >= cutoff).then_some(id);
        key.and_then(|k| self.keys.idempotency.get(k).and_then(live))
            .or_else(|| uuid.and_then(|u| self.keys.uuids.get(&u).and_then(live)))
    }

    /// Checks and stages one record (rotating first if needed): its id and
    /// `created_at`. The caller stages its keys, then calls
    /// [`end_append`](Self::end_append).
    pub(super) fn stage(
        &mut self,
        author: Author,
        body: &[u8],
        now: u64,
    ) -> Result<(u64, u64), StorageError> {
        self.shared.check_poisoned()?;
        if body.len() < record::BODY_HEADER_LEN {
            return Err(StorageError::Invalid("body shorter than its header"));
        }
        let len = record::record_len(author, body.len()) as u64;
        if len > self.config.segment_size - HEADER_LEN || len as usize > record::RECORD_LEN_MAX {
            return Err(StorageError::Invalid("record larger than a segment"));
        }
        let created_at_us = now.max(self.last_created_at_us);
        let a = &self.active;
        let age_us = now.saturating_sub(a.seg.created_at_us);
        if a.rotate_first
            || (a.write_pos > HEADER_LEN
                && (a.write_pos + len > a.seg.size || age_us >= self.config.segment_age_us))
        {
            self.rotate(now)?;
        }
        let id = self.next_id;
        self.stage_record(id, created_at_us, author, body, len);
        self.next_id = id + 1;
        self.last_created_at_us = created_at_us;
        self.last_append_us = now;
        Ok((id, created_at_us))
    }

    /// Where the record staged last starts in the active segment.
    pub(super) fn last_staged_pos(&self, len: u64) -> u64 {
        self.active.write_pos - len
    }

    /// Writes the staging buffer once it is large.
    pub(super) fn end_append(&mut self) -> Result<(), StorageError> {
        if self.active.stage.len() >= STAGE_WRITE_BYTES {
            self.write_stage()?;
        }
        Ok(())
    }

    /// Encodes one record at the end of the staging buffer, with its index
    /// point and room entry.
    fn stage_record(&mut self, id: u64, created_at_us: u64, author: Author, body: &[u8], len: u64) {
        let a = &mut self.active;
        let pos = a.write_pos;
        let written = record::append_record(&mut a.stage, id, created_at_us, author, body);
        debug_assert_eq!(written as u64, len);
        if a.last_index_pos
            .is_none_or(|p| pos - p >= limits::INDEX_INTERVAL_BYTES)
        {
            a.staged_points.push(IndexEntry {
                id,
                created_at_us,
                pos,
                kind: sidecar::KIND_POINT,
            });
            a.last_index_pos = Some(pos);
        }
        if a.rooms_maintained {
            if let Some(room) = record::body_room(body) {
                sidecar::encode_room_entry(&mut a.pending_rooms, id, pos, room);
                a.staged_rooms.push((room.into(), id, pos));
            }
        }
        a.write_pos = pos + len;
    }

    /// The last id written into the log's files: after an error, the
    /// records above it were rolled back and are not stored.
    pub fn written_id(&self) -> u64 {
        self.written_id
    }

    /// The active segment's files, opened again if idleness closed them.
    fn files(&mut self) -> Result<Arc<SegFiles>, StorageError> {
        if let Some(f) = &self.active.files {
            return Ok(f.clone());
        }
        let f = Arc::new(SegFiles::open(
            &self.shared.dir,
            self.active.seg.first_id,
            &self.active.faults,
        )?);
        self.active.keys_len = match f.keys() {
            Some(k) => k.len()?,
            None => 0,
        };
        self.active.rooms_len = match f.rooms() {
            Some(r) => r.len()?,
            None => 0,
        };
        self.active.files = Some(f.clone());
        Ok(f)
    }

    /// Writes the staged records into the files: first the space, then the
    /// idempotency keys and room entries, then the records. On failure
    /// everything staged since the last write is rolled back (ids and keys
    /// included) and the error returned; out of space is `StorageFull`, and
    /// the next append may try again.
    fn write_stage(&mut self) -> Result<(), StorageError> {
        if self.active.stage.is_empty() {
            return Ok(());
        }
        let lens = (self.active.keys_len, self.active.rooms_len);
        if let Err(e) = self.try_write_stage() {
            (self.active.keys_len, self.active.rooms_len) = lens;
            self.rollback();
            return Err(e);
        }
        let a = &mut self.active;
        a.written_pos = a.write_pos;
        a.written_last_index_pos = a.last_index_pos;
        a.stage.clear();
        a.seg
            .index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(&a.staged_points);
        self.job_points.append(&mut a.staged_points);
        if !a.staged_rooms.is_empty() {
            let mut ri = a.seg.rooms.lock().unwrap_or_else(|e| e.into_inner());
            for (room, id, pos) in a.staged_rooms.drain(..) {
                ri.rooms.entry(room).or_default().push((id, pos));
            }
        }
        self.written_id = self.next_id - 1;
        self.written_created_at_us = self.last_created_at_us;
        self.keys_unwritten.clear();
        if !self.amendments_unwritten.is_empty() {
            let mut am = self
                .shared
                .amendments
                .write()
                .unwrap_or_else(|e| e.into_inner());
            for (target, a) in self.amendments_unwritten.drain(..) {
                am.add(target, a);
            }
        }
        Ok(())
    }

    fn try_write_stage(&mut self) -> Result<(), StorageError> {
        if let Some(hole) = self.pending_hole {
            super::open::record_hole(&self.shared.dir, hole, &self.config.faults)?;
            self.pending_hole = None;
        }
        self.reserve(self.next_id - 1)?;
        let files = self.files()?;
        let dir = self.shared.dir.clone();
        let a = &mut self.active;
        if a.write_pos > a.allocated {
            let target = grow_target(a.allocated, a.write_pos, a.seg.size);
            files
                .seg
                .allocate(a.allocated, target - a.allocated)
                .map_err(space_error)?;
            a.allocated = target;
        }
        if !a.pending_keys.is_empty() {
            let keys = files.keys_or_create(&dir, &a.faults).map_err(space_error)?;
            if a.keys_len == 0 {
                a.keys_len = sidecar::SIDECAR_HEADER_LEN as u64;
            }
            keys.write_at(&a.pending_keys, a.keys_len)
                .map_err(space_error)?;
            a.keys_len += a.pending_keys.len() as u64;
            a.pending_keys.clear();
        }
        if !a.pending_rooms.is_empty() {
            let rooms = files
                .rooms_or_create(&dir, &a.faults)
                .map_err(space_error)?;
            if a.rooms_len == 0 {
                a.rooms_len = sidecar::SIDECAR_HEADER_LEN as u64;
            }
            rooms
                .write_at(&a.pending_rooms, a.rooms_len)
                .map_err(space_error)?;
            a.rooms_len += a.pending_rooms.len() as u64;
            a.pending_rooms.clear();
        }
        if let Err(e) = files.seg.write_at(&a.stage, a.written_pos) {
            // The space was allocated, so this is a device error: the page
            // cache can no longer be trusted to hold what was written.
            return Err(self.shared.poison(format!("write of records: {e}")));
        }
        Ok(())
    }

    /// Undoes everything appended since the last successful write.
    fn rollback(&mut self) {
        let a = &mut self.active;
        a.write_pos = a.written_pos;
        a.last_index_pos = a.written_last_index_pos;
        a.stage.clear();
        a.pending_keys.clear();
        a.pending_rooms.clear();
        a.staged_rooms.clear();
        a.staged_points.clear();
        for k in self.keys_unwritten.drain(..) {
            match k {
                Unwritten::Key(k) => self.keys.idempotency.remove(&k),
                Unwritten::Uuid(u) => self.keys.uuids.remove(&u),
            };
        }
        self.amendments_unwritten.clear();
        self.next_id = self.written_id + 1;
        self.last_created_at_us = self.written_created_at_us;
        // Keys or room entries of rolled-back records may have reached the
        // sidecars: cut them, so that later entries follow the last good one.
        if let Some(files) = &a.files {
            let cut = |f: Option<&sio::DataFile>, len: u64| -> std::io::Result<()> {
                match f {
                    Some(f) if len > 0 && f.len()? > len => {
                        f.raw().set_len(len)?;
                        f.sync_data()
                    }
                    _ => Ok(()),
                }
            };
            if let Err(e) =
                cut(files.keys(), a.keys_len).and_then(|()| cut(files.rooms(), a.rooms_len))
            {
                tracing::warn!(error = %e, "could not cut sidecar entries of rolled-back records");
            }
        }
    }

    /// Makes sure ids up to `id` are covered by a reservation on stable
    /// storage before any of them is written or shown to a reader.
    fn reserve(&mut self, id: u64) -> Result<(), StorageError> {
        if id <= self.reserved_id {
            return Ok(());
        }
        let reserved = id.saturating_add(self.reserve_chunk);
        if let Err(e) = self.checkpoint.update(true, |cp| cp.reserved_id = reserved) {
            if sio::is_out_of_space(&e) {
                return Err(StorageError::StorageFull);
            }
            return Err(self
                .shared
                .poison(format!("sync of the id reservation: {e}")));
        }
        self.reserved_id = reserved;
        self.reserve_chunk = (self.reserve_chunk * 2).min(limits::ID_RESERVATION_MAX);
        Ok(())
    }

    /// Writes what is staged into the files and publishes everything written
    /// to readers (Release). Returns the published head id. Call
    /// [`take_sync_job`](Self::take_sync_job) after it and hand the job to
    /// the commit stage.
    ///
    /// # Errors
    /// As [`append`](Self::append): what failed to be written was rolled back.
    pub fn flush(&mut self) -> Result<u64, StorageError> {
        self.shared.check_poisoned()?;
        self.write_stage()?;
        Ok(self.publish())
    }

    fn publish(&mut self) -> u64 {
        for s in &self.sealing {
            s.seg.publish(s.seal.pos, s.seal.id, s.seal.created_at_us);
            s.seg.seal();
        }
        let head = self.written_id;
        let a = &self.active;
        a.seg
            .publish(a.written_pos, head, self.written_created_at_us);
        self.shared.head_id.store(head, Ordering::Release);
        if self.config.durability != Durability::Batch {
            self.shared.committed_id.store(head, Ordering::Release);
        }
        head
    }

    /// The commit-stage work for what was flushed since the last job, if any.
    pub fn take_sync_job(&mut self) -> Option<SyncJob> {
        let files = self.active.files.clone()?;
        let watermark = (
            self.active.seg.first_id,
            self.active.written_pos,
            self.written_id,
        );
        if self.sealing.is_empty()
            && self.job_points.is_empty()
            && self.last_job_watermark == watermark
        {
            return None;
        }
        Some(self.job(files, watermark))
    }

    fn job(&mut self, files: Arc<SegFiles>, watermark: (u64, u64, u64)) -> SyncJob {
        self.last_job_watermark = watermark;
        if self.config.durability == Durability::None {
            // Jobs under `none` do not sync: remember the rotated segments
            // for the next explicit sync.
            self.unsynced_rotated
                .extend(self.sealing.iter().map(|s| s.files.clone()));
        }
        SyncJob::new(
            self.shared.clone(),
            self.checkpoint.clone(),
            self.config.durability,
            std::mem::take(&mut self.sealing),
            files,
            std::mem::take(&mut self.job_points),
            watermark,
        )
    }

    /// Flushes and applies the durability policy at once, on this thread:
    /// one data sync under `Batch`, a sync when due under `Interval`, index
    /// and seal writes only under `None`. Returns the published head id.
    /// (A server runs the sync on its commit thread instead, while the
    /// writer goes on appending.)
    ///
    /// # Errors
    /// As [`flush`](Self::flush); a failed sync poisons the log.
    pub fn commit(&mut self) -> Result<u64, StorageError> {
        let head = self.flush()?;
        if let Some(job) = self.take_sync_job() {
            match &mut self.deferred_job {
                Some(d) => d.merge(job),
                None => self.deferred_job = Some(job),
            }
        }
        let due = match self.config.durability {
            Durability::Interval { ms } => {
                let now = self.shared.clock.now_us();
                now.saturating_sub(self.last_sync_us) >= ms.saturating_mul(1000)
            }
            _ => true,
        };
        if due {
            self.run_deferred(false)?;
        }
        Ok(head)
    }

    fn run_deferred(&mut self, force_sync: bool) -> Result<Option<Synced>, StorageError> {
        let Some(job) = self.deferred_job.take() else {
            return Ok(None);
        };
        let synced = job.run(force_sync)?;
        if synced.synced {
            self.last_sync_us = self.shared.clock.now_us();
        }
        Ok(Some(synced))
    }

    /// Flushes and syncs everything appended so far now, whatever the policy.
    ///
    /// # Errors
    /// A failed sync poisons the log.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.flush()?;
        let files = self.files()?;
        let watermark = (
            self.active.seg.first_id,
            self.active.written_pos,
            self.written_id,
        );
        let job = self.job(files, watermark);
        match &mut self.deferred_job {
            Some(d) => d.merge(job),
            None => self.deferred_job = Some(job),
        }
        for f in std::mem::take(&mut self.unsynced_rotated) {
            if let Err(e) = f.sync_all_data() {
                return Err(self
                    .shared
                    .poison(format!("sync of a rotated segment: {e}")));
            }
        }
        self.run_deferred(true)?;
        Ok(())
    }

    /// Starts a new segment at `next_id`. What is staged is written into the
    /// old segment first; the new file is allocated before anything changes,
    /// so a full disk leaves the log as it was.
    fn rotate(&mut self, now: u64) -> Result<(), StorageError> {
        self.write_stage()?;
        let old_files = self.files()?;
        let dir = self.shared.dir.clone();
        let (seg, file, allocated) = Segment::create(
            &dir,
            self.next_id,
            now,
            self.config.segment_size,
            &self.active.faults,
        )?;
        let files = match SegFiles::new(&dir, self.next_id, file, &self.active.faults) {
            Ok(f) => Arc::new(f),
            Err(e) => {
                for ext in ["seg", "idx"] {
                    let path = super::sync::side_path(&dir, self.next_id, ext);
                    if let Err(rm) = std::fs::remove_file(&path) {
                        tracing::error!(path = %path.display(), error = %rm, "cannot remove a partial segment");
                    }
                }
                return Err(space_error(e));
            }
        };
        let old = &self.active;
        let seal = IndexEntry {
            id: self.written_id,
            created_at_us: self.written_created_at_us,
            pos: old.written_pos,
            kind: sidecar::KIND_SEAL,
        };
        let rooms_marker = (old.rooms_maintained && old.rooms_len > 0).then(|| {
            let mut marker = Vec::with_capacity(sidecar::ROOM_ENTRY_HEADER_LEN);
            sidecar::encode_room_entry(&mut marker, seal.id, seal.pos, &[]);
            (marker, old.rooms_len)
        });
        if old.sealed_on_disk {
            self.job_points.clear();
        } else {
            self.sealing.push(SealWork {
                seg: old.seg.clone(),
                files: old_files,
                points: std::mem::take(&mut self.job_points),
                seal,
                rooms_marker,
            });
        }
        self.shared
            .segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(seg.clone());
        self.active = Active {
            seg,
            files: Some(files),
            faults: self.active.faults.clone(),
            allocated,
            write_pos: HEADER_LEN,
            written_pos: HEADER_LEN,
            stage: std::mem::take(&mut self.active.stage),
            pending_keys: Vec::new(),
            pending_rooms: Vec::new(),
            keys_len: 0,
            rooms_len: 0,
            staged_rooms: Vec::new(),
            staged_points: Vec::new(),
            last_index_pos: None,
            written_last_index_pos: None,
            rooms_maintained: true,
            rotate_first: false,
            sealed_on_disk: false,
        };
        Ok(())
    }

    /// Rotates an over-age active segment, deletes segments whose newest
    /// record has expired, forgets expired idempotency keys, and closes the
    /// files of a log idle for `LOG_IDLE_CLOSE_US` (they are opened again on
    /// the next append). Call [`flush`](Self::flush) and
    /// [`take_sync_job`](Self::take_sync_job) after it.
    ///
    /// Deleted files are unlinked at once: on Linux a mapping of an unlinked
    /// file stays valid, so readers holding the segment keep reading it and
    /// the space is freed when the last of them drops it.
    ///
    /// # Errors
    /// I/O errors.
    pub fn maintain(&mut self) -> Result<(), StorageError> {
        let now = self.shared.clock.now_us();
        if !self.shared.poisoned.load(Ordering::Acquire)
            && self.active.write_pos > HEADER_LEN
            && now.saturating_sub(self.active.seg.created_at_us) >= self.config.segment_age_us
        {
            self.rotate(now)?;
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
            super::open::remove_segment_files(&self.shared.dir, seg.first_id, &self.config.faults)?;
        }
        // Expired keys are ignored by lookups; forgetting them is upkeep of
        // memory, done once a minute rather than on every round.
        if now.saturating_sub(self.keys_pruned_us) >= KEYS_PRUNE_EVERY_US {
            self.keys.forget_before(cutoff);
            let oldest = self.shared.first_id_at_or_after(cutoff);
            self.shared
                .amendments
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .forget_before(oldest);
            self.keys_pruned_us = now;
        }
        let idle = now.saturating_sub(self.last_append_us) >= limits::LOG_IDLE_CLOSE_US;
        if idle
            && self.active.stage.is_empty()
            && self.sealing.is_empty()
            && self.deferred_job.is_none()
        {
            self.active.files = None;
            self.checkpoint.close_file();
        }
        Ok(())
    }

    /// When the log has been idle for `LOG_IDLE_CLOSE_US` with ids reserved
    /// past its last record, gives the unused ids back (the checkpoint, synced,
    /// reserves exactly what was written), so that a crash while idle leaves
    /// no hole. Returns whether it did; the writer bounds how many logs do
    /// it at once (each costs a checkpoint sync).
    ///
    /// # Errors
    /// A failed checkpoint write or sync poisons the log.
    pub fn release_unused_ids(&mut self) -> Result<bool, StorageError> {
        let now = self.shared.clock.now_us();
        let idle = now.saturating_sub(self.last_append_us) >= limits::LOG_IDLE_CLOSE_US;
        if !idle
            || self.reserved_id <= self.written_id
            || !self.active.stage.is_empty()
            || self.shared.poisoned.load(Ordering::Acquire)
        {
            return Ok(false);
        }
        let written = self.written_id;
        if let Err(e) = self.checkpoint.update(true, |cp| cp.reserved_id = written) {
            return Err(self
                .shared
                .poison(format!("sync of the id reservation: {e}")));
        }
        self.reserved_id = written;
        self.reserve_chunk = limits::ID_RESERVATION_MIN;
        Ok(true)
    }

    /// Writes and syncs everything, records in the checkpoint that no id
    /// past the last one was shown to readers (so a restart continues right
    /// after it), and closes.
    ///
    /// # Errors
    /// A failed write or sync.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.shared.check_poisoned()?;
        if let Some(hole) = self.pending_hole.take() {
            super::open::record_hole(&self.shared.dir, hole, &self.config.faults)?;
        }
        let settled = self.active.stage.is_empty()
            && self.sealing.is_empty()
            && self.deferred_job.is_none()
            && self.unsynced_rotated.is_empty()
            && self.reserved_id == self.written_id
            && self.checkpoint.synced_id() == self.written_id;
        if settled {
            // Synced, and nothing reserved past the last record: a log
            // idle since it gave its unused ids back closes without I/O.
            return Ok(());
        }
        self.sync()?;
        let (first, pos, id) = (
            self.active.seg.first_id,
            self.active.written_pos,
            self.written_id,
        );
        self.checkpoint
            .update(true, |cp| {
                cp.segment_first_id = first;
                cp.synced_pos = pos;
                cp.synced_id = id;
                cp.reserved_id = id;
            })
            .map_err(|e| self.shared.poison(format!("final checkpoint: {e}")))?;
        Ok(())
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

/// The allocated length a segment file grows to so that `need` bytes fit:
/// at least double the current length (whole pages, at most
/// `SEGMENT_ALLOC_STEP_MAX` more), never past `size`.
fn grow_target(allocated: u64, need: u64, size: u64) -> u64 {
    let step = allocated.clamp(limits::SEGMENT_ALLOC_MIN, limits::SEGMENT_ALLOC_STEP_MAX);
    let target = need.max(allocated.saturating_add(step));
    let page = 4096;
    target
        .div_ceil(page)
        .saturating_mul(page)
        .min(size)
        .max(need)
}
