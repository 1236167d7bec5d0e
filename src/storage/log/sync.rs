//! The commit stage: syncing what the writer wrote, then writing what
//! describes it (index points, seals, the checkpoint), on a thread of its
//! own so that the writer appends the next records meanwhile.
//!
//! Order is what makes recovery trustworthy: an index point or a seal on
//! disk is written only after the records and idempotency keys it covers
//! were synced, so recovery may trust the keys before an on-disk index point
//! and the whole of a segment with an on-disk seal.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::{Durability, Shared};
use crate::storage::io::{self as sio, DataFile, Faults, FileKind};
use crate::storage::sidecar::{self, Checkpoint, IndexEntry};
use crate::storage::StorageError;

/// File name of the checkpoint in a log's directory.
pub(super) const CHECKPOINT_FILE: &str = "checkpoint";

pub(super) fn side_path(dir: &Path, first_id: u64, ext: &str) -> std::path::PathBuf {
    dir.join(format!("{first_id:020}.{ext}"))
}

/// The open files of one segment, shared by the writer and the commit stage.
#[derive(Debug)]
pub(crate) struct SegFiles {
    pub first_id: u64,
    /// The `.seg` file (written by the writer).
    pub seg: DataFile,
    /// The `.idx` sidecar (written by the commit stage only).
    idx: DataFile,
    idx_len: AtomicU64,
    /// The `.keys` sidecar, created by the writer on first use.
    keys: OnceLock<DataFile>,
    /// The `.rooms` sidecar, created by the writer on first use.
    rooms: OnceLock<DataFile>,
}

fn create_sidecar(
    path: &Path,
    magic: [u8; 8],
    kind: FileKind,
    faults: &Faults,
) -> std::io::Result<DataFile> {
    let f = DataFile::create(path, kind, faults)?;
    f.write_at(&sidecar::sidecar_header(magic), 0)?;
    Ok(f)
}

fn open_if_exists(
    path: &Path,
    kind: FileKind,
    faults: &Faults,
) -> std::io::Result<Option<DataFile>> {
    match DataFile::open(path, kind, faults) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl SegFiles {
    /// The files of a new segment whose `.seg` was just created: an empty
    /// `.idx` is created beside it (`.keys` and `.rooms` come on first use).
    pub fn new(
        dir: &Path,
        first_id: u64,
        seg: DataFile,
        faults: &Faults,
    ) -> std::io::Result<SegFiles> {
        let idx = create_sidecar(
            &side_path(dir, first_id, "idx"),
            sidecar::INDEX_MAGIC,
            FileKind::Index,
            faults,
        )?;
        Ok(SegFiles {
            first_id,
            seg,
            idx,
            idx_len: AtomicU64::new(sidecar::SIDECAR_HEADER_LEN as u64),
            keys: OnceLock::new(),
            rooms: OnceLock::new(),
        })
    }

    /// Opens the files of an existing segment (its `.idx` must have been
    /// checked or rewritten by recovery; a missing one is created empty).
    pub fn open(dir: &Path, first_id: u64, faults: &Faults) -> std::io::Result<SegFiles> {
        let seg = DataFile::open(&side_path(dir, first_id, "seg"), FileKind::Segment, faults)?;
        let idx_path = side_path(dir, first_id, "idx");
        let idx = match open_if_exists(&idx_path, FileKind::Index, faults)? {
            Some(f) => f,
            None => create_sidecar(&idx_path, sidecar::INDEX_MAGIC, FileKind::Index, faults)?,
        };
        let idx_len = idx.len()?;
        let files = SegFiles {
            first_id,
            seg,
            idx,
            idx_len: AtomicU64::new(idx_len),
            keys: OnceLock::new(),
            rooms: OnceLock::new(),
        };
        if let Some(k) = open_if_exists(&side_path(dir, first_id, "keys"), FileKind::Keys, faults)?
        {
            let _ = files.keys.set(k); // freshly made: empty
        }
        if let Some(r) =
            open_if_exists(&side_path(dir, first_id, "rooms"), FileKind::Rooms, faults)?
        {
            let _ = files.rooms.set(r); // freshly made: empty
        }
        Ok(files)
    }

    /// `fdatasync` of the segment's data and sidecars.
    ///
    /// # Errors
    /// The first sync that fails.
    pub fn sync_all_data(&self) -> std::io::Result<()> {
        sync_data_files(self)?;
        self.idx.sync_data()
    }

    /// The `.keys` sidecar, if it exists.
    pub fn keys(&self) -> Option<&DataFile> {
        self.keys.get()
    }

    /// The `.rooms` sidecar, if it exists.
    pub fn rooms(&self) -> Option<&DataFile> {
        self.rooms.get()
    }

    /// The `.keys` sidecar, created empty (with its header) if needed.
    /// Only the writer calls it.
    pub fn keys_or_create(&self, dir: &Path, faults: &Faults) -> std::io::Result<&DataFile> {
        if self.keys.get().is_none() {
            let f = create_sidecar(
                &side_path(dir, self.first_id, "keys"),
                sidecar::KEYS_MAGIC,
                FileKind::Keys,
                faults,
            )?;
            let _ = self.keys.set(f); // the writer is the only caller
        }
        Ok(self.keys.get().expect("set above"))
    }

    /// The `.rooms` sidecar, created empty (with its header) if needed.
    /// Only the writer calls it.
    pub fn rooms_or_create(&self, dir: &Path, faults: &Faults) -> std::io::Result<&DataFile> {
        if self.rooms.get().is_none() {
            let f = create_sidecar(
                &side_path(dir, self.first_id, "rooms"),
                sidecar::ROOMS_MAGIC,
                FileKind::Rooms,
                faults,
            )?;
            let _ = self.rooms.set(f); // the writer is the only caller
        }
        Ok(self.rooms.get().expect("set above"))
    }

    /// Appends index entries to `.idx` (the commit stage only). Out of space
    /// costs recovery time, not correctness (indexes are rebuilt), so it is
    /// logged and the entries are dropped.
    fn append_index(&self, entries: &[IndexEntry]) -> Result<(), std::io::Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(entries.len() * sidecar::INDEX_ENTRY_LEN);
        for e in entries {
            bytes.extend_from_slice(&e.encode());
        }
        let at = self.idx_len.load(Ordering::Acquire);
        match self.idx.write_at(&bytes, at) {
            Ok(()) => {
                self.idx_len
                    .store(at + bytes.len() as u64, Ordering::Release);
                Ok(())
            }
            Err(e) if sio::is_out_of_space(&e) => {
                tracing::warn!(
                    segment = self.first_id,
                    "disk full: index entries not written (recovery will scan instead)"
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// The checkpoint file and its current value, shared by the writer (id
/// reservations, close) and the commit stage (synced watermark).
#[derive(Debug)]
pub(crate) struct CheckpointCell {
    dir: std::path::PathBuf,
    inner: Mutex<CheckpointState>,
    synced_id: AtomicU64,
}

#[derive(Debug)]
struct CheckpointState {
    file: Option<DataFile>,
    value: Checkpoint,
    faults: Faults,
}

impl CheckpointCell {
    pub fn new(
        dir: &Path,
        value: Checkpoint,
        file: Option<DataFile>,
        faults: &Faults,
    ) -> CheckpointCell {
        CheckpointCell {
            dir: dir.to_path_buf(),
            synced_id: AtomicU64::new(value.synced_id),
            inner: Mutex::new(CheckpointState {
                file,
                value,
                faults: faults.clone(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CheckpointState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_faults(&self, faults: &Faults) {
        let mut s = self.lock();
        s.faults = faults.clone();
        s.file = None;
    }

    /// The highest id a sync covered.
    pub fn synced_id(&self) -> u64 {
        self.synced_id.load(Ordering::Acquire)
    }

    /// Changes the value with `f` and writes it (syncing it when `sync`).
    ///
    /// # Errors
    /// The write's or the sync's error.
    pub fn update(&self, sync: bool, f: impl FnOnce(&mut Checkpoint)) -> std::io::Result<()> {
        let mut s = self.lock();
        let mut value = s.value;
        f(&mut value);
        if s.file.is_none() {
            let path = self.dir.join(CHECKPOINT_FILE);
            s.file = Some(
                match DataFile::open(&path, FileKind::Checkpoint, &s.faults) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        let f = DataFile::create(&path, FileKind::Checkpoint, &s.faults)?;
                        sio::sync_dir(&self.dir, &s.faults)?;
                        f
                    }
                    Err(e) => return Err(e),
                },
            );
        }
        let file = s.file.as_ref().expect("opened above");
        file.write_at(&value.encode(), 0)?;
        if sync {
            file.sync_data()?;
        }
        s.value = value;
        self.synced_id.store(value.synced_id, Ordering::Release);
        Ok(())
    }

    /// Closes the file (it is opened again on the next update).
    pub fn close_file(&self) {
        self.lock().file = None;
    }
}

/// A rotated segment whose on-disk seal the commit stage writes once its
/// data and keys are synced.
#[derive(Debug)]
pub(crate) struct SealWork {
    pub seg: Arc<crate::storage::segment::Segment>,
    pub files: Arc<SegFiles>,
    /// Index points of the segment not yet on disk.
    pub points: Vec<IndexEntry>,
    /// The seal entry (last id, newest time, end of the records).
    pub seal: IndexEntry,
    /// The `.rooms` seal marker and where it goes, when the writer kept the
    /// segment's room sidecar.
    pub rooms_marker: Option<(Vec<u8>, u64)>,
}

/// What the commit stage does for one log after a flush: cumulative, so
/// jobs of the same log merge into one.
#[derive(Debug)]
pub struct SyncJob {
    shared: Arc<Shared>,
    checkpoint: Arc<CheckpointCell>,
    durability: Durability,
    seals: Vec<SealWork>,
    active: Arc<SegFiles>,
    points: Vec<IndexEntry>,
    /// (segment first id, end of written records, last written id).
    watermark: (u64, u64, u64),
}

/// What a sync job made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    /// The newest id that counts as stored after the job.
    pub committed_id: u64,
    /// True when the job synced data (false under `none`, where it only
    /// wrote index entries).
    pub synced: bool,
}

impl SyncJob {
    pub(super) fn new(
        shared: Arc<Shared>,
        checkpoint: Arc<CheckpointCell>,
        durability: Durability,
        seals: Vec<SealWork>,
        active: Arc<SegFiles>,
        points: Vec<IndexEntry>,
        watermark: (u64, u64, u64),
    ) -> SyncJob {
        SyncJob {
            shared,
            checkpoint,
            durability,
            seals,
            active,
            points,
            watermark,
        }
    }

    /// The durability policy of the log the job is for.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// True when both jobs are for the same log.
    pub fn same_log(&self, other: &SyncJob) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The last id the job covers.
    pub fn last_id(&self) -> u64 {
        self.watermark.2
    }

    /// Folds a later job of the same log into this one.
    ///
    /// # Panics
    /// When `later` is for another log (a caller bug).
    pub fn merge(&mut self, later: SyncJob) {
        assert!(self.same_log(&later), "sync jobs of different logs merged");
        if !Arc::ptr_eq(&self.active, &later.active) {
            // The log rotated between the jobs: `later.seals` begins with
            // this job's active segment, which carries its own points.
            if let Some(first) = later.seals.first() {
                debug_assert_eq!(first.files.first_id, self.active.first_id);
            }
            let mut own = std::mem::take(&mut self.points);
            let mut seals = later.seals;
            if let Some(first) = seals.first_mut() {
                own.append(&mut first.points);
                first.points = own;
            }
            self.seals.append(&mut seals);
            self.active = later.active;
            self.points = later.points;
        } else {
            self.seals.extend(later.seals);
            self.points.extend(later.points);
        }
        self.watermark = later.watermark;
    }

    /// Runs the job: under `batch` and `interval` (or with `force_sync`),
    /// syncs the rotated segments and their sidecars and writes their seals,
    /// syncs the active segment, writes the new index points and records the
    /// synced watermark in the checkpoint; under `none`, writes the index
    /// points and seals without syncing. Then moves the committed head.
    ///
    /// # Errors
    /// A failed sync or write poisons the log and is returned; nothing of
    /// the job counts as stored.
    pub fn run(self, force_sync: bool) -> Result<Synced, StorageError> {
        self.shared.check_poisoned()?;
        let sync = force_sync || self.durability != Durability::None;
        let fail = |what: &str, e: std::io::Error| self.shared.poison(format!("{what}: {e}"));
        for s in &self.seals {
            if sync {
                sync_data_files(&s.files).map_err(|e| fail("sync of a rotated segment", e))?;
            }
            let mut entries = s.points.clone();
            entries.push(s.seal);
            s.files
                .append_index(&entries)
                .map_err(|e| fail("write of a seal", e))?;
            if let (Some((marker, at)), Some(rooms)) = (&s.rooms_marker, s.files.rooms()) {
                // The room sidecar is a hint that readers rebuild when it is
                // unsealed, so a failed marker costs speed, not correctness.
                if let Err(e) = rooms.write_at(marker, *at).and_then(|()| {
                    if sync {
                        rooms.sync_data()
                    } else {
                        Ok(())
                    }
                }) {
                    tracing::warn!(error = %e, "room index sidecar not sealed");
                }
            }
            if sync {
                s.files
                    .idx
                    .sync_data()
                    .map_err(|e| fail("sync of a seal", e))?;
            }
        }
        if sync {
            sync_data_files(&self.active).map_err(|e| fail("sync of the segment", e))?;
        }
        self.active
            .append_index(&self.points)
            .map_err(|e| fail("write of index points", e))?;
        let (segment_first_id, pos, id) = self.watermark;
        if sync {
            let recorded = self.checkpoint.update(false, |cp| {
                cp.segment_first_id = segment_first_id;
                cp.synced_pos = pos;
                cp.synced_id = id;
            });
            // A stale checkpoint only under-reports what was synced, so a
            // failed write is logged and not fatal.
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "checkpoint write failed; watermark stays lower");
            }
        }
        let committed_id = if sync || self.durability != Durability::Batch {
            let head = self.shared.head_id.load(Ordering::Acquire);
            let c = id.min(head);
            self.shared.committed_id.fetch_max(c, Ordering::AcqRel);
            c
        } else {
            self.shared.committed_id.load(Ordering::Acquire)
        };
        Ok(Synced {
            committed_id,
            synced: sync,
        })
    }
}

/// `fdatasync` of a segment's keys, rooms and data (keys first: an index
/// point or seal written after this covers them).
fn sync_data_files(files: &SegFiles) -> std::io::Result<()> {
    if let Some(k) = files.keys() {
        k.sync_data()?;
    }
    if let Some(r) = files.rooms() {
        r.sync_data()?;
    }
    files.seg.sync_data()
}
