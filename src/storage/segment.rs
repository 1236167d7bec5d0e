//! One segment file, memory-mapped read-only for readers, and the only
//! `unsafe` code in tidewire.
//!
//! Owns: creating, opening and mapping segment files, allocating their space
//! (`fallocate`), and the one way readers touch mapped bytes: shared slices
//! of the *committed* range only ([`Segment::committed_bytes`]). The
//! committed length is published by the log's single writer with Release
//! ordering and loaded with Acquire.
//!
//! The writer never writes through the mapping: it writes records into the
//! file with `pwrite` (`storage::io`), at or above the committed length, and
//! then publishes. Writing whole pages through the file also spares the
//! kernel from zero-filling page-cache pages the writer is about to
//! overwrite, which a write fault on a mapping of unwritten space costs.
//!
//! A segment file grows as it fills: it is created with
//! `limits::SEGMENT_ALLOC_MIN` bytes and the writer allocates more ahead of
//! its position, up to the segment's size, which is also the length of the
//! mapping. Mapped pages past the file's end would fault (SIGBUS), so
//! nothing reads there: readers stay below the committed length, which is
//! never past the allocated length, and recovery reads only up to the length
//! it measured. A segment file is never shrunk; deleted segments are
//! unlinked while still mapped, which on Linux keeps the mapping valid until
//! the last holder drops it.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use memmap2::{MmapOptions, MmapRaw};

use crate::limits;
use crate::storage::io::{self as sio, DataFile, Faults, FileKind};
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
    /// Largest size of the file, and the length of the mapping, in bytes.
    pub size: u64,
    /// Length of the file when it was opened (recovery reads below it).
    opened_len: u64,
    crc_check_below: AtomicU64,
    /// Position of the first damaged record readers reported (u64::MAX: none),
    /// so that damage is logged once, not once per read.
    damage_reported: AtomicU64,
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

/// Allocates `[off, off + len)` of `file` (`fallocate`, which also grows the
/// file), falling back to `posix_fallocate` where the file system lacks it.
///
/// # Errors
/// The system call's error (`ENOSPC` when the disk is full).
pub(crate) fn allocate_range(file: &File, off: u64, len: u64) -> io::Result<()> {
    let too_large = || io::Error::new(io::ErrorKind::InvalidInput, "range too large");
    let off = libc::off_t::try_from(off).map_err(|_| too_large())?;
    let len = libc::off_t::try_from(len).map_err(|_| too_large())?;
    // SAFETY: fallocate only reads its integer arguments; the descriptor is
    // owned by `file`, which outlives the call.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, off, len) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(err);
    }
    // SAFETY: as above; posix_fallocate returns the error number instead of
    // setting errno.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), off, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Maps an I/O error: out of space is the clean, recoverable `StorageFull`.
pub(crate) fn space_error(e: io::Error) -> StorageError {
    StorageError::from(e)
}

impl Segment {
    fn map(
        file: &File,
        path: PathBuf,
        header: SegmentHeader,
        opened_len: u64,
    ) -> io::Result<Segment> {
        let len = usize::try_from(header.size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
        let map = MmapOptions::new().len(len).map_raw_read_only(file)?;
        Ok(Segment {
            path,
            first_id: header.first_id,
            created_at_us: header.created_at_us,
            size: header.size,
            opened_len,
            crc_check_below: AtomicU64::new(opened_len.min(header.size)),
            damage_reported: AtomicU64::new(u64::MAX),
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

    /// Creates `<first_id:020>.seg` in `dir`: a temporary file with its first
    /// `SEGMENT_ALLOC_MIN` bytes allocated, its header written and synced,
    /// renamed into place, the directory synced, then mapped. Returns the
    /// segment, the file opened for writing and its allocated length.
    ///
    /// # Errors
    /// `StorageFull` when the space or the file cannot be allocated (the
    /// partial file is removed); `Io` otherwise.
    pub fn create(
        dir: &Path,
        first_id: u64,
        created_at_us: u64,
        size: u64,
        faults: &Faults,
    ) -> Result<(Arc<Segment>, DataFile, u64), StorageError> {
        let path = dir.join(sidecar::segment_file_name(first_id));
        let tmp = path.with_extension("seg.tmp");
        let header = SegmentHeader {
            first_id,
            created_at_us,
            size,
        };
        let allocated = limits::SEGMENT_ALLOC_MIN.min(size);
        let made = DataFile::create(&tmp, FileKind::Segment, faults)
            .map_err(space_error)
            .and_then(|f| {
                f.allocate(0, allocated).map_err(space_error)?;
                f.write_at(&header.encode(), 0).map_err(space_error)?;
                f.sync_data()?;
                Ok(f)
            });
        match made {
            Ok(f) => drop(f),
            Err(e) => {
                if let Err(rm) = std::fs::remove_file(&tmp) {
                    if rm.kind() != io::ErrorKind::NotFound {
                        tracing::error!(path = %tmp.display(), error = %rm, "cannot remove a partial segment");
                    }
                }
                return Err(e);
            }
        }
        sio::rename(&tmp, &path, FileKind::Segment, faults)?;
        sio::sync_dir(dir, faults)?;
        let file = DataFile::open(&path, FileKind::Segment, faults)?;
        let seg = Segment::map(file.raw(), path, header, allocated)?;
        seg.rooms.lock().unwrap_or_else(|e| e.into_inner()).complete = true;
        seg.crc_check_below.store(HEADER_LEN, Ordering::Release);
        Ok((Arc::new(seg), file, allocated))
    }

    /// Opens and maps an existing segment whose header must name `first_id`.
    /// Every record is CRC-checked by readers until recovery marks a prefix
    /// verified. The file may be shorter than its header's size: a segment
    /// grows as it fills.
    ///
    /// # Errors
    /// `Corruption` for a bad header; `Io` otherwise.
    pub fn open(path: &Path, first_id: u64) -> Result<Arc<Segment>, StorageError> {
        let file = OpenOptions::new().read(true).open(path)?;
        let file_len = file.metadata()?.len();
        let mut buf = [0u8; HEADER_LEN as usize];
        if file_len < HEADER_LEN {
            return Err(StorageError::Corruption(format!(
                "{}: shorter than a segment header",
                path.display()
            )));
        }
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, 0)?;
        let header = SegmentHeader::decode(&buf)
            .map_err(|why| StorageError::Corruption(format!("{}: {why}", path.display())))?;
        if header.first_id != first_id {
            return Err(StorageError::Corruption(format!(
                "{}: header names first id {}",
                path.display(),
                header.first_id
            )));
        }
        let seg = Segment::map(&file, path.to_path_buf(), header, file_len)?;
        Ok(Arc::new(seg))
    }

    /// Length of the file when it was opened or created.
    pub fn opened_len(&self) -> u64 {
        self.opened_len.min(self.size)
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

    /// True the first time damage at `pos` is reported (later reports of the
    /// same or later damage in this segment are quiet).
    pub fn first_report_of_damage(&self, pos: u64) -> bool {
        self.damage_reported.fetch_min(pos, Ordering::AcqRel) > pos
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
        // SAFETY: `[start, end)` lies below the committed length, which the
        // writer publishes (Release, loaded here with Acquire) only after
        // its `pwrite` of every byte below it returned, and which is never
        // past the file's length (the writer allocates before it writes;
        // recovery publishes at most the length it measured). The writer
        // never writes below the committed length again and files are never
        // shrunk, so these bytes are initialised, stay unchanged, and
        // touching their pages cannot fault, while the slice (tied to
        // `&self`, which keeps the mapping alive) exists.
        unsafe { self.slice(start, end) }
    }

    /// The bytes `[HEADER_LEN, end)` for recovery, which reads a segment
    /// before anything is published.
    ///
    /// # Panics
    /// When `end` is past the length the file had when it was opened (a
    /// caller bug: those pages are not backed by the file).
    pub fn recovery_bytes(&self, end: u64) -> &[u8] {
        assert!(
            HEADER_LEN <= end && end <= self.opened_len(),
            "recovery reads past the file"
        );
        // SAFETY: `[HEADER_LEN, end)` is inside the mapping (opened_len is
        // clamped to its size) and inside the file (its length when opened;
        // segment files are never shrunk). Recovery runs before the log has
        // a writer, and the writer later writes only at or above the end
        // recovery settles on, so no byte of the slice changes while it lives.
        unsafe { self.slice(HEADER_LEN, end) }
    }

    /// # Safety
    /// `[start, end)` must be inside the mapping and the file, and no byte of
    /// it may change while the returned slice lives.
    unsafe fn slice(&self, start: u64, end: u64) -> &[u8] {
        let offset = usize::try_from(start).expect("mapping offsets fit usize");
        let len = usize::try_from(end - start).expect("mapping offsets fit usize");
        debug_assert!(end <= self.size);
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset), len) }
    }

    /// Records from `pos` on were verified by recovery in this process.
    pub fn set_verified_from(&self, pos: u64) {
        self.crc_check_below.store(pos, Ordering::Release);
    }

    /// Publishes records up to `end`, with `last_id` and its `created_at`.
    /// Only the log's writer calls it, after writing every byte below `end`.
    /// Release ordering: those bytes are visible to readers that load the
    /// committed length with Acquire.
    pub fn publish(&self, end: u64, last_id: u64, newest_created_at_us: u64) {
        assert!(end <= self.size, "publish past the segment end");
        assert!(
            end >= self.committed_len(),
            "committed length went backwards"
        );
        self.last_id.store(last_id, Ordering::Release);
        self.newest_created_at_us
            .store(newest_created_at_us, Ordering::Release);
        self.committed.store(end, Ordering::Release);
    }

    /// Marks the segment final: readers at its committed end move on.
    pub fn seal(&self) {
        self.sealed.store(true, Ordering::Release);
    }
}
