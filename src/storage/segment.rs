//! One segment file: preallocated, memory-mapped, and the only `unsafe` code
//! in tidewire.
//!
//! Owns: creating (fallocate before mapping, so a full disk is a clean error
//! and never a SIGBUS), opening and mapping segment files, and the two ways
//! of touching mapped bytes:
//! * readers get shared slices of the *committed* range only
//!   ([`Segment::committed_bytes`]); the committed length is published by the
//!   writer with Release ordering and loaded with Acquire;
//! * the one [`SegmentWriter`] per segment (not `Clone`, `&mut self`) gets
//!   mutable slices of the *unpublished* range only.
//!
//! These two ranges never overlap, so no byte is read while it is written.
//! A mapped file is never shrunk; deleted segments are unlinked while still
//! mapped, which on Linux keeps the mapping valid until the last holder drops.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use memmap2::{MmapOptions, MmapRaw};

use crate::storage::sidecar::{self, IndexEntry, SegmentHeader};
use crate::storage::StorageError;

/// Bytes of the segment header; records start here.
pub const HEADER_LEN: u64 = 64;

/// Records of one room inside one segment: `(id, position)`, ascending.
#[derive(Debug, Default)]
pub(crate) struct RoomIndex {
    /// True when the writer adds every room record as it appends it (a
    /// segment written by this process) or the `.rooms` sidecar was loaded
    /// complete: readers never scan.
    pub complete: bool,
    /// True once a reader tried the `.rooms` sidecar.
    pub sidecar_checked: bool,
    /// Position up to which readers have indexed the committed records
    /// (when not `complete`).
    pub scanned_to: u64,
    /// Room name → its records in this segment.
    pub rooms: std::collections::HashMap<Box<[u8]>, Vec<(u64, u64)>>,
}

/// A mapped segment, shared by the writer and every reader holding it.
#[derive(Debug)]
pub(crate) struct Segment {
    /// The `.seg` file.
    pub path: PathBuf,
    /// Id of the first record this segment holds (or will hold).
    pub first_id: u64,
    /// Creation time of the segment (age rotation).
    pub created_at_us: u64,
    /// File and mapping size in bytes.
    pub size: u64,
    crc_check_below: AtomicU64,
    map: MmapRaw,
    committed: AtomicU64,
    sealed: AtomicBool,
    last_id: AtomicU64,
    newest_created_at_us: AtomicU64,
    /// Sparse index: one entry at the first record and one per
    /// `limits::INDEX_INTERVAL_BYTES`; entries past the committed length are
    /// ignored by readers.
    pub index: RwLock<Vec<IndexEntry>>,
    /// Room index, built lazily by readers from the committed records.
    pub rooms: Mutex<RoomIndex>,
}

/// The single write capability on a segment's unpublished bytes.
#[derive(Debug)]
pub(crate) struct SegmentWriter {
    seg: Arc<Segment>,
}

fn fallocate(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
    // SAFETY: fallocate only reads its integer arguments; the descriptor is
    // owned by `file`, which outlives the call.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(err);
    }
    // SAFETY: as above; posix_fallocate returns the error number instead of
    // setting errno.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Syncs a directory so that renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Segment {
    fn map(
        path: PathBuf,
        file: &File,
        header: SegmentHeader,
        crc_check_below: u64,
    ) -> io::Result<Segment> {
        let len = usize::try_from(header.size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
        let map = MmapOptions::new().len(len).map_raw(file)?;
        Ok(Segment {
            path,
            first_id: header.first_id,
            created_at_us: header.created_at_us,
            size: header.size,
            crc_check_below: AtomicU64::new(crc_check_below),
            map,
            committed: AtomicU64::new(HEADER_LEN),
            sealed: AtomicBool::new(false),
            last_id: AtomicU64::new(header.first_id.saturating_sub(1)),
            newest_created_at_us: AtomicU64::new(0),
            index: RwLock::new(Vec::new()),
            rooms: Mutex::new(RoomIndex {
                complete: false,
                sidecar_checked: false,
                scanned_to: HEADER_LEN,
                rooms: Default::default(),
            }),
        })
    }

    /// Creates `<first_id:020>.seg` in `dir`: a temporary file preallocated to
    /// `size`, its header written and synced, renamed into place, the
    /// directory synced, then mapped. `fail_allocation` simulates a full disk.
    ///
    /// # Errors
    /// `StorageFull` when the space cannot be allocated (the partial file is
    /// removed); `Io` otherwise.
    pub fn create(
        dir: &Path,
        first_id: u64,
        created_at_us: u64,
        size: u64,
        fail_allocation: bool,
    ) -> Result<(Arc<Segment>, SegmentWriter), StorageError> {
        let path = dir.join(sidecar::segment_file_name(first_id));
        let tmp = path.with_extension("seg.tmp");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        let allocated = if fail_allocation {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        } else {
            fallocate(&file, size)
        };
        if let Err(e) = allocated {
            drop(file);
            if let Err(rm) = std::fs::remove_file(&tmp) {
                tracing::error!(path = %tmp.display(), error = %rm, "cannot remove partial segment");
            }
            if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
                return Err(StorageError::StorageFull);
            }
            return Err(e.into());
        }
        let header = SegmentHeader {
            first_id,
            created_at_us,
            size,
        };
        file.write_all_at(&header.encode(), 0)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        sync_dir(dir)?;
        let seg = Segment::map(path, &file, header, HEADER_LEN)?;
        seg.rooms.lock().unwrap_or_else(|e| e.into_inner()).complete = true;
        let seg = Arc::new(seg);
        Ok((seg.clone(), SegmentWriter { seg }))
    }

    /// Opens and maps an existing segment whose header must name `first_id`.
    /// A file shorter than its header's size (physically truncated) is grown
    /// back with zeros before mapping when `repair_length`, and reported as
    /// corruption otherwise. Every record is CRC-checked by readers until
    /// recovery marks a prefix verified.
    ///
    /// # Errors
    /// `Corruption` for a bad header or length; `Io` otherwise.
    pub fn open(
        path: &Path,
        first_id: u64,
        repair_length: bool,
    ) -> Result<(Arc<Segment>, SegmentWriter), StorageError> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let mut buf = [0u8; HEADER_LEN as usize];
        let file_len = file.metadata()?.len();
        if file_len < HEADER_LEN {
            return Err(StorageError::Corruption(format!(
                "{}: shorter than a segment header",
                path.display()
            )));
        }
        file.read_exact_at(&mut buf, 0)?;
        let header = SegmentHeader::decode(&buf)
            .map_err(|why| StorageError::Corruption(format!("{}: {why}", path.display())))?;
        if header.first_id != first_id {
            return Err(StorageError::Corruption(format!(
                "{}: header names first id {}",
                path.display(),
                header.first_id
            )));
        }
        if file_len < header.size {
            if !repair_length {
                return Err(StorageError::Corruption(format!(
                    "{}: file is {file_len} bytes, header says {}",
                    path.display(),
                    header.size
                )));
            }
            tracing::warn!(path = %path.display(), file_len, "segment shorter than its size: regrowing with zeros");
            file.set_len(header.size)?;
            fallocate(&file, header.size)?;
            file.sync_all()?;
        }
        let seg = Arc::new(Segment::map(
            path.to_path_buf(),
            &file,
            header,
            header.size,
        )?);
        Ok((seg.clone(), SegmentWriter { seg }))
    }

    /// Records below this position were not verified in this process:
    /// readers CRC-check them.
    pub fn crc_check_below(&self) -> u64 {
        self.crc_check_below.load(Ordering::Acquire)
    }

    /// The published end of the records (absolute file offset). Acquire.
    pub fn committed_len(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// True once the writer moved on and `committed_len` is final. Acquire.
    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// The id of the last published record (`first_id - 1`: none).
    pub fn last_id(&self) -> u64 {
        self.last_id.load(Ordering::Acquire)
    }

    /// The `created_at` of the last published record (0: none).
    pub fn newest_created_at_us(&self) -> u64 {
        self.newest_created_at_us.load(Ordering::Acquire)
    }

    /// Writes `[start, end)` of the mapping to stable storage (msync with
    /// MS_SYNC on the page range).
    ///
    /// # Errors
    /// The sync's error; the caller poisons the log.
    pub fn sync_range(&self, start: u64, end: u64) -> io::Result<()> {
        let end = end.min(self.size);
        if end <= start {
            return Ok(());
        }
        let offset = usize::try_from(start).expect("mapping offsets fit usize");
        let len = usize::try_from(end - start).expect("mapping offsets fit usize");
        self.map.flush_range(offset, len)
    }

    /// The committed bytes `[start, end)`.
    ///
    /// # Panics
    /// When the range is not inside the committed range (a caller bug).
    pub fn committed_bytes(&self, start: u64, end: u64) -> &[u8] {
        let committed = self.committed_len();
        assert!(
            HEADER_LEN <= start && start <= end && end <= committed,
            "read outside the committed range"
        );
        let offset = usize::try_from(start).expect("mapping offsets fit usize");
        let len = usize::try_from(end - start).expect("mapping offsets fit usize");
        // SAFETY: `[start, end)` lies inside the mapping (committed <= size,
        // the mapping's length). The writer published `committed` with
        // Release after its last write below it and only writes at or above
        // it from then on (SegmentWriter asserts this), so these bytes are
        // initialised and never mutated while the returned slice, tied to
        // `&self` (which keeps the mapping alive), exists. The file is
        // preallocated and never shrunk, so touching the pages cannot SIGBUS.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset), len) }
    }
}

impl SegmentWriter {
    /// The segment this writer writes.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// Mutable access to the unpublished bytes `[start, end)`.
    ///
    /// # Panics
    /// When the range reaches below the committed length or past the end of
    /// the segment (a caller bug).
    pub fn unpublished_mut(&mut self, start: u64, end: u64) -> &mut [u8] {
        let committed = self.seg.committed_len();
        assert!(
            committed <= start && start <= end && end <= self.seg.size,
            "write outside the unpublished range"
        );
        let offset = usize::try_from(start).expect("mapping offsets fit usize");
        let len = usize::try_from(end - start).expect("mapping offsets fit usize");
        // SAFETY: the range is inside the mapping (end <= size) and at or
        // above the committed length, so no reader slice covers it (readers
        // only slice below `committed`, which only grows). Only one
        // SegmentWriter exists per segment and this borrow is `&mut self`, so
        // no other mutable slice aliases it. The file is preallocated and
        // never shrunk while mapped, so writes cannot SIGBUS.
        unsafe { std::slice::from_raw_parts_mut(self.seg.map.as_mut_ptr().add(offset), len) }
    }

    /// Read access to unpublished bytes (recovery scans them before publishing).
    pub fn unpublished(&mut self, start: u64, end: u64) -> &[u8] {
        self.unpublished_mut(start, end)
    }

    /// Records from `pos` on were verified by recovery in this process.
    pub fn set_verified_from(&self, pos: u64) {
        self.seg.crc_check_below.store(pos, Ordering::Release);
    }

    /// Publishes records up to `end`, with `last_id` and its `created_at`.
    /// Release ordering: everything written below `end` is visible to readers
    /// that load the committed length with Acquire.
    pub fn publish(&self, end: u64, last_id: u64, newest_created_at_us: u64) {
        assert!(end <= self.seg.size, "publish past the segment end");
        assert!(
            end >= self.seg.committed_len(),
            "committed length went backwards"
        );
        self.seg.last_id.store(last_id, Ordering::Release);
        self.seg
            .newest_created_at_us
            .store(newest_created_at_us, Ordering::Release);
        self.seg.committed.store(end, Ordering::Release);
    }

    /// Marks the segment final: readers at its committed end move on.
    pub fn seal(self) {
        self.seg.sealed.store(true, Ordering::Release);
    }

    /// Writes `[start, end)` of the mapping to stable storage (msync with
    /// MS_SYNC on the page range, which is what makes MAP_SHARED writes durable).
    ///
    /// # Errors
    /// The sync's error; the caller poisons the log.
    pub fn sync_range(&self, start: u64, end: u64) -> io::Result<()> {
        self.seg.sync_range(start, end)
    }

    /// Asks the kernel to fault in `[start, end)` ahead of the writer.
    ///
    /// The populated pages hold zeros, which is what unwritten segment bytes
    /// must hold anyway, so readers and recovery see no difference.
    pub fn prefault(&self, start: u64, end: u64) {
        let end = end.min(self.seg.size);
        if end <= start {
            return;
        }
        let (Ok(offset), Ok(len)) = (usize::try_from(start), usize::try_from(end - start)) else {
            return;
        };
        // Populating write-enabled page tables ahead of the writer takes the
        // page faults out of the per-record path (one madvise per
        // `PREFAULT_BYTES` instead of one fault per page). It is only a
        // hint: on kernels without MADV_POPULATE_WRITE (before 5.14) the
        // writer takes the faults itself, so errors are logged and dropped.
        if let Err(e) = self
            .seg
            .map
            .advise_range(memmap2::Advice::PopulateWrite, offset, len)
        {
            tracing::debug!(error = %e, "madvise(POPULATE_WRITE) failed");
        }
    }
}
