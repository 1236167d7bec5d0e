//! Metadata snapshots: serde values encoded with bincode behind our own
//! header (magic, version, length, CRC), written atomically.
//!
//! The broker keeps channels and keys with `write_snapshot` / `read_snapshot`.
//!
//! Layout (little-endian): magic `TWSNAP\0\0` (8), version u32 (4), payload
//! length u64 (8), CRC-32 of the payload u32 (4), then the bincode payload
//! (`bincode::config::standard()`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::limits;
use crate::storage::StorageError;

/// Magic at the start of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"TWSNAP\0\0";
/// Version of the snapshot header.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Bytes of the snapshot header.
pub const SNAPSHOT_HEADER_LEN: usize = 24;

/// Writes `value` to `path` atomically: a temporary file, synced, renamed
/// over `path`, then the directory synced.
///
/// # Errors
/// I/O errors; nothing at `path` changes unless the whole write succeeded.
pub fn write_snapshot<T: Serialize>(path: &Path, value: &T) -> Result<(), StorageError> {
    let payload = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|_| StorageError::Invalid("value cannot be encoded as a snapshot"))?;
    if payload.len() as u64 > limits::SNAPSHOT_LEN_MAX {
        return Err(StorageError::Invalid("snapshot over its size limit"));
    }
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_LEN + payload.len());
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = dir.join(name);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Reads the snapshot at `path`; `Ok(None)` when there is none.
///
/// # Errors
/// `Corruption` for a bad magic, version, length or CRC (the length is
/// checked against `limits::SNAPSHOT_LEN_MAX` before allocating).
pub fn read_snapshot<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StorageError> {
    use std::io::Read;
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let file_len = f.metadata()?.len();
    let mut head = [0u8; SNAPSHOT_HEADER_LEN];
    f.read_exact(&mut head).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => corrupt("snapshot shorter than its header"),
        _ => e.into(),
    })?;
    let (magic, rest) = head.split_at(8);
    if magic != SNAPSHOT_MAGIC {
        return Err(corrupt("bad snapshot magic"));
    }
    let (version, rest) = rest.split_at(4);
    let (len, crc) = rest.split_at(8);
    let arr4 = |b: &[u8]| -> [u8; 4] { b.try_into().unwrap_or_default() };
    if u32::from_le_bytes(arr4(version)) != SNAPSHOT_VERSION {
        return Err(corrupt("unknown snapshot version"));
    }
    let len = u64::from_le_bytes(len.try_into().unwrap_or_default());
    let crc = u32::from_le_bytes(arr4(crc));
    if len > limits::SNAPSHOT_LEN_MAX
        || Some(len) != file_len.checked_sub(SNAPSHOT_HEADER_LEN as u64)
    {
        return Err(corrupt("snapshot length does not match its header"));
    }
    let len = usize::try_from(len).map_err(|_| corrupt("snapshot too large"))?;
    let mut payload = vec![0u8; len];
    f.read_exact(&mut payload)?;
    if crc32fast::hash(&payload) != crc {
        return Err(corrupt("snapshot CRC mismatch"));
    }
    let (value, used) = bincode::serde::decode_from_slice(&payload, bincode::config::standard())
        .map_err(|e| StorageError::Corruption(format!("snapshot does not decode: {e}")))?;
    if used != payload.len() {
        return Err(corrupt("trailing bytes after the snapshot value"));
    }
    Ok(Some(value))
}

fn corrupt(why: &str) -> StorageError {
    StorageError::Corruption(why.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_and_reject_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.snap");
        assert!(read_snapshot::<Vec<String>>(&path).unwrap().is_none());
        let v = vec!["a".to_string(), "bc".to_string()];
        write_snapshot(&path, &v).unwrap();
        assert_eq!(read_snapshot::<Vec<String>>(&path).unwrap(), Some(v));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_snapshot::<Vec<String>>(&path)
            .unwrap_err()
            .is_corruption());
        bytes[8..12].copy_from_slice(&9u32.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_snapshot::<Vec<String>>(&path)
            .unwrap_err()
            .is_corruption());
        let mut huge = bytes[..SNAPSHOT_HEADER_LEN].to_vec();
        huge[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        huge[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, &huge).unwrap();
        assert!(read_snapshot::<Vec<String>>(&path)
            .unwrap_err()
            .is_corruption());
    }
}
