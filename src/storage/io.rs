//! Every file operation of the storage engine, and the fault injection tests
//! use to crash, fill or cut the power under it.
//!
//! Owns: writing, syncing, allocating, creating, renaming and removing the
//! files of a log, each through one function here, so that a
//! [`FaultPlan`] installed in a log's configuration sees every operation in
//! order. Without a plan (the server's case) each call is the plain system
//! call plus one branch.
//!
//! A plan can:
//! * **crash** the process at operation *k*: that operation and every later
//!   one fail, and a write at the crash point is torn (a prefix of it lands);
//! * **fill the disk**: allocations, file creations and writes past a
//!   file's end fail with `ENOSPC`;
//! * **fail syncs** as a device error would;
//! * **cut the power**: it remembers what every write replaced until the
//!   file's next data sync, and [`FaultPlan::power_cut`] puts the replaced
//!   bytes back (all of them, or a seeded random choice, torn or whole),
//!   which is what a power loss does to data the page cache had not written.
//!
//! Directory entries (creation, rename, removal) are always followed by a
//! directory sync in the engine, so the plan counts them as operations (crash
//! points) but does not undo them on a power cut.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::storage::segment::allocate_range;

/// What a file of a log is for (fault plans may target one kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A `.seg` file.
    Segment,
    /// A `.idx` sidecar.
    Index,
    /// A `.keys` sidecar.
    Keys,
    /// A `.rooms` sidecar.
    Rooms,
    /// The `checkpoint` file.
    Checkpoint,
    /// The `holes` file.
    Holes,
    /// A directory.
    Dir,
}

/// The kind of one file operation, as a fault plan counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// A write of file bytes.
    Write,
    /// A data sync of a file (or a directory sync).
    Sync,
    /// Space allocated for a file (`fallocate`).
    Allocate,
    /// A file created, renamed or removed.
    Entry,
}

#[derive(Debug, Default)]
struct PlanState {
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
    disk_full: bool,
    full_at: Option<u64>,
    fail_sync: bool,
    track: bool,
    /// Per file: writes since its last sync, as (offset, replaced bytes,
    /// file length before the write).
    unsynced: HashMap<PathBuf, Vec<(u64, Vec<u8>, u64)>>,
    log: Vec<(OpKind, FileKind)>,
}

/// Faults injected under a log, for tests of crashes, full disks, failed
/// syncs and power loss. Shared by every file of the logs it is installed in.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct FaultPlan {
    state: Mutex<PlanState>,
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected fault: {what}"))
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

impl FaultPlan {
    /// A plan that injects nothing yet.
    pub fn new() -> Arc<FaultPlan> {
        Arc::new(FaultPlan::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PlanState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Operations seen so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// The kinds of every operation seen so far, in order.
    pub fn op_log(&self) -> Vec<(OpKind, FileKind)> {
        self.lock().log.clone()
    }

    /// Makes operation number `op` (counting from 1 since the plan was made)
    /// and every later one fail, as if the process died there.
    pub fn crash_at(&self, op: u64) {
        self.lock().crash_at = Some(op);
    }

    /// True once the crash point was reached.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Makes allocations, creations and writes past a file's end fail with
    /// `ENOSPC` (or work again).
    pub fn set_disk_full(&self, full: bool) {
        let mut s = self.lock();
        s.disk_full = full;
        s.full_at = None;
    }

    /// Fills the disk from operation number `op` on (see
    /// [`set_disk_full`](Self::set_disk_full)).
    pub fn disk_full_at(&self, op: u64) {
        self.lock().full_at = Some(op);
    }

    /// Makes every data sync fail as a device error would (or work again).
    pub fn set_sync_failure(&self, fail: bool) {
        self.lock().fail_sync = fail;
    }

    /// Starts remembering what each write replaces until its file is synced,
    /// for [`power_cut`](Self::power_cut).
    pub fn track_unsynced(&self) {
        self.lock().track = true;
    }

    /// Simulates a power loss: every write not yet covered by a data sync of
    /// its file is undone. With `seed`, each such write is instead kept
    /// whole, dropped, or torn (only a prefix of it kept), chosen by a
    /// generator seeded with it, as the page cache may have written any part
    /// of it back before the power went. Call it with every log of the plan
    /// closed or dropped. Returns the number of writes undone in part or whole.
    ///
    /// # Errors
    /// An I/O error restoring the files.
    pub fn power_cut(&self, seed: Option<u64>) -> io::Result<usize> {
        let unsynced = std::mem::take(&mut self.lock().unsynced);
        let mut rng = seed.unwrap_or(0) | 1;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut undone = 0;
        for (path, writes) in unsynced {
            let Ok(file) = OpenOptions::new().write(true).open(&path) else {
                continue; // removed since: nothing to undo
            };
            for (off, old, old_len) in writes.into_iter().rev() {
                // How many leading bytes of the write reached the disk.
                let kept = match seed {
                    None => 0,
                    Some(_) => match next() % 3 {
                        0 => continue, // all of it
                        1 => 0,
                        _ => (next() % (old.len() as u64 + 1)) as usize,
                    },
                };
                undone += 1;
                file.write_all_at(&old[kept..], off + kept as u64)?;
                if kept == 0 && file.metadata()?.len() > old_len {
                    file.set_len(old_len)?;
                }
            }
            file.sync_all()?;
        }
        Ok(undone)
    }

    /// Counts one operation; the error to return instead of doing it, if any.
    fn enter(&self, op: OpKind, kind: FileKind) -> Result<(), io::Error> {
        let mut s = self.lock();
        s.ops += 1;
        s.log.push((op, kind));
        if s.full_at.is_some_and(|f| s.ops >= f) {
            s.disk_full = true;
        }
        if s.crashed || s.crash_at.is_some_and(|c| s.ops >= c) {
            s.crashed = true;
            return Err(injected("crashed"));
        }
        match op {
            OpKind::Sync if s.fail_sync && kind != FileKind::Dir => Err(injected("sync failed")),
            OpKind::Allocate | OpKind::Entry if s.disk_full => Err(enospc()),
            _ => Ok(()),
        }
    }

    /// Like [`enter`](Self::enter) for a write of `len` bytes at `off` into
    /// `file`: also refuses writes past the end on a full disk, tears a
    /// write at the crash point, and remembers what the write replaces.
    fn enter_write(&self, file: &DataFile, buf: &[u8], off: u64) -> io::Result<()> {
        let len = file.file.metadata()?.len();
        let mut s = self.lock();
        s.ops += 1;
        s.log.push((OpKind::Write, file.kind));
        if s.full_at.is_some_and(|f| s.ops >= f) {
            s.disk_full = true;
        }
        if s.crashed || s.crash_at.is_some_and(|c| s.ops >= c) {
            let torn = !s.crashed;
            s.crashed = true;
            if torn && !buf.is_empty() {
                let keep = (s.ops.wrapping_mul(2_654_435_761) % buf.len() as u64) as usize;
                drop(s);
                file.file.write_all_at(&buf[..keep], off)?;
            }
            return Err(injected("crashed in a write"));
        }
        if s.disk_full && off + buf.len() as u64 > len {
            return Err(enospc());
        }
        if s.track {
            let end = (off + buf.len() as u64).min(len);
            let mut old = vec![0u8; end.saturating_sub(off) as usize];
            file.file.read_exact_at(&mut old, off)?;
            old.resize(buf.len(), 0);
            s.unsynced
                .entry(file.path.clone())
                .or_default()
                .push((off, old, len));
        }
        Ok(())
    }

    fn synced(&self, path: &Path) {
        let mut s = self.lock();
        if s.track {
            s.unsynced.remove(path);
        }
    }
}

/// The fault plan a log's files go through, if any (a test's).
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct Faults(pub Option<Arc<FaultPlan>>);

impl PartialEq for Faults {
    fn eq(&self, other: &Faults) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Faults {}

impl Faults {
    fn enter(&self, op: OpKind, kind: FileKind) -> io::Result<()> {
        match &self.0 {
            None => Ok(()),
            Some(p) => p.enter(op, kind),
        }
    }
}

/// One open file of a log, with what it is for and the faults it goes through.
#[derive(Debug)]
pub(crate) struct DataFile {
    file: File,
    path: PathBuf,
    kind: FileKind,
    faults: Faults,
}

impl DataFile {
    /// Opens an existing file for reading and writing.
    pub fn open(path: &Path, kind: FileKind, faults: &Faults) -> io::Result<DataFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(DataFile {
            file,
            path: path.to_path_buf(),
            kind,
            faults: faults.clone(),
        })
    }

    /// Creates (or truncates) a file, empty.
    pub fn create(path: &Path, kind: FileKind, faults: &Faults) -> io::Result<DataFile> {
        faults.enter(OpKind::Entry, kind)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(DataFile {
            file,
            path: path.to_path_buf(),
            kind,
            faults: faults.clone(),
        })
    }

    /// The file, for mapping it.
    pub fn raw(&self) -> &File {
        &self.file
    }

    /// The file's length in bytes.
    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Writes all of `buf` at `off`.
    pub fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        if let Some(p) = &self.faults.0 {
            p.enter_write(self, buf, off)?;
        }
        self.file.write_all_at(buf, off)
    }

    /// `fdatasync`: the file's data (and its size) on stable storage.
    pub fn sync_data(&self) -> io::Result<()> {
        self.faults.enter(OpKind::Sync, self.kind)?;
        self.file.sync_data()?;
        if let Some(p) = &self.faults.0 {
            p.synced(&self.path);
        }
        Ok(())
    }

    /// Allocates `[off, off + len)` (`fallocate`, growing the file).
    pub fn allocate(&self, off: u64, len: u64) -> io::Result<()> {
        self.faults.enter(OpKind::Allocate, self.kind)?;
        allocate_range(&self.file, off, len)
    }
}

/// Renames `from` to `to` (counted as an operation on `kind`).
pub(crate) fn rename(from: &Path, to: &Path, kind: FileKind, faults: &Faults) -> io::Result<()> {
    faults.enter(OpKind::Entry, kind)?;
    std::fs::rename(from, to)
}

/// Removes a file; a missing one is fine.
pub(crate) fn remove_file(path: &Path, kind: FileKind, faults: &Faults) -> io::Result<()> {
    faults.enter(OpKind::Entry, kind)?;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Syncs a directory so that creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path, faults: &Faults) -> io::Result<()> {
    faults.enter(OpKind::Sync, FileKind::Dir)?;
    File::open(dir)?.sync_all()
}

/// Writes a whole small file atomically: a temporary file written and
/// synced, renamed over `path`, the directory synced. Returns it opened.
pub(crate) fn replace_file(
    path: &Path,
    bytes: &[u8],
    kind: FileKind,
    faults: &Faults,
) -> io::Result<DataFile> {
    let tmp = path.with_extension("tmp");
    {
        let f = DataFile::create(&tmp, kind, faults)?;
        f.write_at(bytes, 0)?;
        f.sync_data()?;
    }
    rename(&tmp, path, kind, faults)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir, faults)?;
    }
    DataFile::open(path, kind, faults)
}

/// True for the errors that mean "no space left" (the disk or a quota).
pub(crate) fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
