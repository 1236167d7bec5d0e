//! Storage errors, sorted by what the caller must do.

use std::io;

/// Everything that can go wrong in the storage engine.
#[derive(Debug)]
pub enum StorageError {
    /// No space for a new segment; nothing acknowledged was lost and appends
    /// work again once space is freed.
    StorageFull,
    /// A sync failed earlier; the log refuses every further write.
    Poisoned(String),
    /// Bytes on disk are not what was written (CRC, magic, version, length).
    Corruption(String),
    /// A record or batch is malformed or over a limit (a caller bug or bad input).
    Invalid(&'static str),
    /// Any other I/O error.
    Io(io::Error),
}

impl StorageError {
    /// True when the data on disk is damaged, as opposed to an operating error.
    pub fn is_corruption(&self) -> bool {
        matches!(self, StorageError::Corruption(_))
    }
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::StorageFull => write!(f, "storage full"),
            StorageError::Poisoned(why) => {
                write!(f, "log refuses writes after a failed sync: {why}")
            }
            StorageError::Corruption(why) => write!(f, "corruption: {why}"),
            StorageError::Invalid(why) => write!(f, "invalid: {why}"),
            StorageError::Io(e) => write!(f, "i/o: {e}"),
        }
    }
}

impl std::error::Error for StorageError {}

impl From<io::Error> for StorageError {
    /// Out of space (`ENOSPC`, `EDQUOT`) anywhere is the clean, recoverable
    /// [`StorageError::StorageFull`]; anything else is `Io`.
    fn from(e: io::Error) -> Self {
        if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
            StorageError::StorageFull
        } else {
            StorageError::Io(e)
        }
    }
}
