//! One server per data directory: an exclusive advisory lock on
//! `<data_dir>/lock`, held for as long as the broker lives, and the errors
//! of opening a data directory.
//!
//! The lock is `flock(2)` through [`File::try_lock`]: the kernel releases it
//! when the process dies, however it dies, so a `kill -9` leaves no stale
//! lock behind. The file holds the holder's PID as text, so that a second
//! server can name the process it collides with. A server that finds the
//! directory locked changes nothing in it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::storage::StorageError;

/// File name of the lock in a data directory.
pub const LOCK_FILE: &str = "lock";

/// Holds the lock on a data directory until dropped.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Why a data directory could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds the lock.
    Held {
        /// The data directory.
        dir: PathBuf,
        /// The holder's PID, when its lock file names one.
        pid: Option<u32>,
    },
    /// The lock file could not be opened or locked.
    Io(std::io::Error),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { dir, pid } => {
                write!(
                    f,
                    "data directory {} is in use by another tidewire server",
                    dir.display()
                )?;
                match pid {
                    Some(pid) => write!(f, " (pid {pid})")?,
                    None => write!(f, " (pid unknown)")?,
                }
                write!(f, "; stop it first or choose another data directory")
            }
            LockError::Io(e) => write!(f, "cannot lock the data directory: {e}"),
        }
    }
}

impl std::error::Error for LockError {}

impl DataDirLock {
    /// Takes the exclusive lock on `dir` (which must exist) and writes this
    /// process's PID into the lock file.
    ///
    /// # Errors
    /// [`LockError::Held`] when another process (or another server in this
    /// process) holds it; nothing in `dir` is changed then.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(LockError::Io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    pid: holder_pid(&mut file),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
        }
        file.set_len(0).map_err(LockError::Io)?;
        file.rewind().map_err(LockError::Io)?;
        writeln!(file, "{}", std::process::id()).map_err(LockError::Io)?;
        Ok(DataDirLock { _file: file })
    }
}

/// Why [`Broker::open`](super::Broker::open) failed.
#[derive(Debug)]
pub enum OpenError {
    /// Another server holds the data directory; nothing in it was changed.
    Locked(LockError),
    /// The metadata or a log could not be read.
    Storage(StorageError),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Locked(e) => e.fmt(f),
            OpenError::Storage(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<StorageError> for OpenError {
    fn from(e: StorageError) -> OpenError {
        OpenError::Storage(e)
    }
}

impl From<LockError> for OpenError {
    fn from(e: LockError) -> OpenError {
        OpenError::Locked(e)
    }
}

/// The PID a lock file names (its holder may not have written it yet).
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_directory_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        match DataDirLock::acquire(dir.path()) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected the directory to be held, got {other:?}"),
        }
        drop(first);
        DataDirLock::acquire(dir.path()).expect("free again once dropped");
    }
}
