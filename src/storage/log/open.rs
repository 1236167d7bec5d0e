//! Opening a log: finding its segments, trusting sealed ones through their
//! on-disk seal, recovering the active one from its last index point,
//! continuing ids above the reservation a crash left, and reporting damage.
//!
//! Recovery never rewrites a byte of segment data. A segment whose valid
//! records end before its data does (a torn tail after a crash, or damage)
//! is sealed at the end of its valid records and the log continues in a new
//! segment: the damaged bytes stay on disk for inspection, every record
//! before them is served, and readers get a gap for the rest. Only a segment
//! whose header is damaged is moved aside (`quarantine/`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use super::keys::{record_keys, Amendments, KeyMaps};
use super::sync::{side_path, CheckpointCell, SegFiles, CHECKPOINT_FILE};
use super::write::Active;
use super::{ChannelLog, LogConfig, OpenReport, Shared};
use crate::clock::SharedClock;
use crate::limits;
use crate::storage::io::{self as sio, DataFile, Faults, FileKind};
use crate::storage::record::RecordView;
use crate::storage::recovery::{self, ScanStop};
use crate::storage::segment::{Segment, HEADER_LEN};
use crate::storage::sidecar::{self, Checkpoint, Hole, IndexEntry, KeyEntry};
use crate::storage::StorageError;

/// Directory (inside a log's directory) segments with a damaged header are moved to.
pub(super) const QUARANTINE_DIR: &str = "quarantine";
/// File name of the crash holes in a log's directory.
const HOLES_FILE: &str = "holes";

/// What the `.keys` sidecars of the retained records hold, as loaded.
#[derive(Default)]
struct Keys {
    maps: KeyMaps,
    amendments: Amendments,
}

impl Keys {
    fn insert(&mut self, e: &KeyEntry) {
        self.maps.insert(e, &mut self.amendments);
    }
}

fn read_optional(path: &Path) -> Result<Vec<u8>, StorageError> {
    match fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Removes a segment and its sidecars (missing files are fine).
pub(super) fn remove_segment_files(
    dir: &Path,
    first_id: u64,
    faults: &Faults,
) -> Result<(), StorageError> {
    for (ext, kind) in [
        ("seg", FileKind::Segment),
        ("idx", FileKind::Index),
        ("keys", FileKind::Keys),
        ("rooms", FileKind::Rooms),
    ] {
        sio::remove_file(&side_path(dir, first_id, ext), kind, faults)?;
    }
    Ok(())
}

/// Moves a segment with a damaged header and its sidecars to `quarantine/`, loudly.
fn quarantine(
    dir: &Path,
    first_id: u64,
    now_us: u64,
    why: &str,
    faults: &Faults,
) -> Result<PathBuf, StorageError> {
    let qdir = dir.join(QUARANTINE_DIR);
    fs::create_dir_all(&qdir)?;
    let mut seg_dest = PathBuf::new();
    for ext in ["seg", "idx", "keys", "rooms"] {
        let from = side_path(dir, first_id, ext);
        let to = qdir.join(format!("{first_id:020}.{ext}.{now_us}"));
        match sio::rename(&from, &to, FileKind::Segment, faults) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        if ext == "seg" {
            seg_dest = to;
        }
    }
    sio::sync_dir(dir, faults)?;
    tracing::error!(dir = %dir.display(), first_id, moved_to = %seg_dest.display(), %why, "segment with a damaged header quarantined");
    Ok(seg_dest)
}

fn list_segments(dir: &Path, faults: &Faults) -> Result<Vec<u64>, StorageError> {
    let mut firsts = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            // A segment or sidecar whose creation did not finish: never renamed
            // into place, so nothing refers to it.
            sio::remove_file(&entry.path(), FileKind::Segment, faults)?;
            continue;
        }
        if let Some(first) = sidecar::parse_segment_file_name(name) {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// True when bytes after `from` hold anything but zeros: the declared length
/// of a torn record, or any following window of `INDEX_INTERVAL_BYTES` that
/// is not all zero.
fn dirty_after(data: &[u8], from: usize) -> bool {
    let window = limits::INDEX_INTERVAL_BYTES as usize;
    let mut probe = from;
    while probe < data.len() {
        let w_end = probe.saturating_add(window).min(data.len());
        if data[probe..w_end].iter().any(|&b| b != 0) {
            return true;
        }
        // An all-zero window after the last record: the rest was never
        // written (a segment fills front to back).
        if probe > from {
            return false;
        }
        probe = w_end;
    }
    false
}

/// A scan visitor that adds an index point at the first record and then one
/// per `INDEX_INTERVAL_BYTES`.
fn index_builder(
    points: &mut Vec<IndexEntry>,
    mut last: Option<u64>,
) -> impl FnMut(usize, &RecordView<'_>) + '_ {
    move |off, v| {
        let pos = HEADER_LEN + off as u64;
        if last.is_none_or(|p| pos - p >= limits::INDEX_INTERVAL_BYTES) {
            points.push(IndexEntry {
                id: v.id(),
                created_at_us: v.created_at_us(),
                pos,
                kind: sidecar::KIND_POINT,
            });
            last = Some(pos);
        }
    }
}

/// The last index point that still names a valid record: the scan start
/// (relative to the data region) and how many points to keep.
fn resume_point(points: &[IndexEntry], data: &[u8]) -> (usize, usize) {
    for (i, p) in points.iter().enumerate().rev() {
        let Some(rel) = p.pos.checked_sub(HEADER_LEN) else {
            continue;
        };
        let Some(at) = usize::try_from(rel).ok().and_then(|r| data.get(r..)) else {
            continue;
        };
        if let Ok(Some((v, _))) = RecordView::decode(at) {
            if v.id() == p.id {
                return (rel as usize, i + 1);
            }
        }
    }
    (0, 0)
}

fn index_bytes(entries: &[IndexEntry]) -> Vec<u8> {
    let mut bytes = sidecar::sidecar_header(sidecar::INDEX_MAGIC).to_vec();
    for e in entries {
        bytes.extend_from_slice(&e.encode());
    }
    bytes
}

/// Rewrites an index sidecar atomically; out of space only costs a rebuild
/// at the next start, so it is logged, not fatal.
fn rewrite_index(
    dir: &Path,
    first: u64,
    entries: &[IndexEntry],
    faults: &Faults,
) -> Result<(), StorageError> {
    match sio::replace_file(
        &side_path(dir, first, "idx"),
        &index_bytes(entries),
        FileKind::Index,
        faults,
    ) {
        Ok(_) => Ok(()),
        Err(e) if sio::is_out_of_space(&e) => {
            tracing::warn!(segment = first, "disk full: rebuilt index not written");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Loads the record keys of `[lo, hi]` from a segment's `.keys` that are
/// inside retention.
fn load_keys(
    dir: &Path,
    first: u64,
    lo: u64,
    hi: u64,
    cutoff: u64,
    keys: &mut Keys,
) -> Result<(), StorageError> {
    for k in sidecar::decode_keys(&read_optional(&side_path(dir, first, "keys"))?) {
        if k.id >= lo && k.id <= hi && k.created_at_us >= cutoff {
            keys.insert(&k);
        }
    }
    Ok(())
}

/// What a full scan of a segment found: its index points, its seal, its keys.
struct Scanned {
    points: Vec<IndexEntry>,
    seal: IndexEntry,
    keys: Vec<KeyEntry>,
    clean: bool,
    stop: ScanStop,
}

/// Scans `data` (a segment's data region) from `start`, building index
/// points after `points` and collecting keys.
fn scan_segment(
    first: u64,
    data: &[u8],
    start: usize,
    mut points: Vec<IndexEntry>,
) -> (Scanned, recovery::ScanResult) {
    let mut keys = Vec::new();
    let mut add_point = index_builder(&mut points, None);
    let r = recovery::scan_with(data, start, &mut |off, v| {
        add_point(off, v);
        record_keys(v, HEADER_LEN + off as u64, &mut keys);
    });
    drop(add_point);
    points.dedup_by_key(|p| p.pos);
    let clean = matches!(r.stop, ScanStop::EndOfData | ScanStop::EndOfRegion)
        && !dirty_after(data, r.end)
        && (start > 0 || r.first_id.is_none_or(|f| f == first));
    let seal = IndexEntry {
        id: r.last_id.unwrap_or(first - 1),
        created_at_us: r.last_created_at_us,
        pos: HEADER_LEN + r.end as u64,
        kind: sidecar::KIND_SEAL,
    };
    (
        Scanned {
            points,
            seal,
            keys,
            clean,
            stop: r.stop,
        },
        r,
    )
}

/// Opens a sealed segment: trusted through its on-disk seal (written only
/// after its records and keys were synced), or scanned in full and its index
/// rebuilt when the seal is missing. Damage (a file shorter than its seal,
/// or a scan that stops early) cuts the segment at its last valid record.
fn open_sealed(
    dir: &Path,
    first: u64,
    cutoff: u64,
    report: &mut OpenReport,
    keys: &mut Keys,
    faults: &Faults,
) -> Result<Arc<Segment>, StorageError> {
    let seg = Segment::open(&side_path(dir, first, "seg"), first)?;
    let file_len = seg.opened_len();
    let idx = sidecar::decode_index(&read_optional(&side_path(dir, first, "idx"))?);
    let seal = idx.entries.last().copied().filter(|e| {
        e.kind == sidecar::KIND_SEAL
            && e.pos >= HEADER_LEN
            && e.pos <= seg.size
            && e.id.checked_add(1).is_some_and(|n| n >= first)
    });
    let (points, seal, end) = match seal {
        Some(seal) => {
            if file_len < seal.pos {
                report.cut.push((first, file_len));
                report.actions.push(format!("segment {first}: file ends at {file_len}, before its last record at {}; the records after the end are a gap", seal.pos));
            }
            if seal.created_at_us >= cutoff {
                load_keys(dir, first, first, seal.id, cutoff, keys)?;
            }
            (
                idx.entries[..idx.entries.len() - 1].to_vec(),
                seal,
                seal.pos.min(file_len),
            )
        }
        None => {
            let (s, _) = scan_segment(first, seg.recovery_bytes(file_len), 0, Vec::new());
            if !s.clean {
                report.cut.push((first, s.seal.pos));
                report.actions.push(format!("segment {first}: damaged after id {} ({:?}); records up to it are served, the rest is a gap", s.seal.id, s.stop));
            }
            for k in s.keys.iter().filter(|k| k.created_at_us >= cutoff) {
                keys.insert(k);
            }
            let mut entries = s.points.clone();
            entries.push(s.seal);
            rewrite_index(dir, first, &entries, faults)?;
            report.rebuilt_indexes += 1;
            seg.set_verified_from(HEADER_LEN);
            (s.points, s.seal, s.seal.pos)
        }
    };
    *seg.index.write().unwrap_or_else(|e| e.into_inner()) = points;
    seg.publish(end, seal.id, seal.created_at_us);
    seg.seal();
    Ok(seg)
}

/// The recovered active segment.
struct Recovered {
    seg: Arc<Segment>,
    end: u64,
    last_id: u64,
    last_created_at_us: u64,
    last_index_pos: Option<u64>,
    /// Index points of the scanned part not yet on disk.
    new_points: Vec<IndexEntry>,
    /// The valid records end before the data does: the segment must be sealed.
    cut: bool,
}

/// Recovers the active segment: finds the last index point that still names
/// a valid record and CRC-scans from there. Keys and index entries the scan
/// found that are missing from the sidecars are written back.
fn recover_active(
    dir: &Path,
    first: u64,
    checkpoint: Option<Checkpoint>,
    cutoff: u64,
    report: &mut OpenReport,
    keys: &mut Keys,
    faults: &Faults,
) -> Result<Recovered, StorageError> {
    let seg = Segment::open(&side_path(dir, first, "seg"), first)?;
    let data = seg.recovery_bytes(seg.opened_len());
    let idx = sidecar::decode_index(&read_optional(&side_path(dir, first, "idx"))?);
    let mut points: Vec<IndexEntry> = idx
        .entries
        .iter()
        .filter(|e| e.kind == sidecar::KIND_POINT)
        .copied()
        .collect();
    let (start, valid) = resume_point(&points, data);
    let on_disk = valid;
    let rewrite_idx = idx.damaged || valid < idx.entries.len();
    points.truncate(valid);
    let (s, r) = scan_segment(first, data, start, points);
    let end = s.seal.pos;
    if !s.clean {
        report.cut.push((first, end));
        report.actions.push(format!("active segment {first}: valid records end at id {} ({:?}); sealed there, the log continues in a new segment", s.seal.id, s.stop));
        if let Some(cp) =
            checkpoint.filter(|cp| cp.segment_first_id == first && end < cp.synced_pos)
        {
            tracing::error!(
                segment = first,
                end,
                synced_pos = cp.synced_pos,
                "damage in synced records: acknowledged records after this point are lost"
            );
        }
    }
    // Keys: the sidecar's entries below the scan start, then what the scan
    // found. The sidecar is rewritten only when it says anything else
    // (keys lost with a crash, or entries of records that are gone).
    let scanned_from = r.first_id.unwrap_or(u64::MAX);
    let on_file = sidecar::decode_keys(&read_optional(&side_path(dir, first, "keys"))?);
    let mut all: Vec<KeyEntry> = on_file
        .iter()
        .filter(|k| k.id >= first && k.id < scanned_from && k.id <= s.seal.id)
        .cloned()
        .collect();
    all.extend(s.keys);
    if on_file != all {
        let mut bytes = sidecar::sidecar_header(sidecar::KEYS_MAGIC).to_vec();
        for k in &all {
            sidecar::encode_key_entry(&mut bytes, k.id, k.created_at_us, k.kind, &k.key);
        }
        match sio::replace_file(
            &side_path(dir, first, "keys"),
            &bytes,
            FileKind::Keys,
            faults,
        ) {
            Ok(_) => report.actions.push(format!(
                "segment {first}: record keys rewritten from the records"
            )),
            // The keys are right in memory for this run; the sidecar is
            // repaired by the next start with space.
            Err(e) if sio::is_out_of_space(&e) => report.actions.push(format!(
                "segment {first}: disk full, record keys not rewritten"
            )),
            Err(e) => return Err(e.into()),
        }
    }
    for k in all.iter().filter(|k| k.created_at_us >= cutoff) {
        keys.insert(k);
    }
    let new_points = if rewrite_idx {
        rewrite_index(dir, first, &s.points, faults)?;
        if r.records > 0 {
            report.rebuilt_indexes += 1;
        }
        Vec::new()
    } else {
        s.points[on_disk.min(s.points.len())..].to_vec()
    };
    if end == HEADER_LEN {
        // An empty segment: a room sidecar can only hold entries of records
        // that were never written.
        sio::remove_file(&side_path(dir, first, "rooms"), FileKind::Rooms, faults)?;
    }
    seg.set_verified_from(HEADER_LEN + start as u64);
    let last_index_pos = s.points.last().map(|p| p.pos);
    *seg.index.write().unwrap_or_else(|e| e.into_inner()) = s.points;
    Ok(Recovered {
        seg,
        end,
        last_id: s.seal.id,
        last_created_at_us: s.seal.created_at_us,
        last_index_pos,
        new_points,
        cut: !s.clean,
    })
}

/// Seals a recovered active segment that cannot take more records: its
/// seal entry is appended to its index and synced.
fn seal_recovered(dir: &Path, a: &Recovered, faults: &Faults) -> Result<(), StorageError> {
    let seal = IndexEntry {
        id: a.last_id,
        created_at_us: a.last_created_at_us,
        pos: a.end,
        kind: sidecar::KIND_SEAL,
    };
    let mut entries = a
        .seg
        .index
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    entries.push(seal);
    rewrite_index(dir, a.seg.first_id, &entries, faults)?;
    a.seg.publish(a.end, a.last_id, a.last_created_at_us);
    a.seg.seal();
    Ok(())
}

/// Records a hole in the `holes` file (created atomically the first time),
/// synced before the log takes writes.
pub(super) fn record_hole(dir: &Path, hole: Hole, faults: &Faults) -> Result<(), StorageError> {
    let path = dir.join(HOLES_FILE);
    let existing = read_optional(&path)?;
    let mut bytes = if sidecar::check_sidecar_header(&existing, sidecar::HOLES_MAGIC) {
        let valid = sidecar::decode_holes(&existing).len();
        existing[..sidecar::SIDECAR_HEADER_LEN + valid * sidecar::HOLE_ENTRY_LEN].to_vec()
    } else {
        sidecar::sidecar_header(sidecar::HOLES_MAGIC).to_vec()
    };
    bytes.extend_from_slice(&hole.encode());
    sio::replace_file(&path, &bytes, FileKind::Holes, faults)
        .map_err(crate::storage::segment::space_error)?;
    Ok(())
}

/// The first id the log continues at, and whether a crash may have shown
/// ids above the last record to readers.
fn continue_at(
    last_id: u64,
    checkpoint: Option<Checkpoint>,
    had_segments: bool,
    floor: u64,
) -> u64 {
    let after = match checkpoint {
        Some(cp) => last_id.max(cp.synced_id).max(cp.reserved_id),
        // Records exist but no checkpoint says how far ids were handed
        // out: assume a whole reservation could have been.
        None if had_segments && last_id > 0 => last_id.saturating_add(limits::ID_RESERVATION_MAX),
        None => last_id,
    };
    after.saturating_add(1).max(floor)
}

fn new_active(
    dir: &Path,
    first: u64,
    now: u64,
    size: u64,
    faults: &Faults,
) -> Result<(Active, Arc<Segment>), StorageError> {
    let (seg, file, allocated) = Segment::create(dir, first, now, size, faults)?;
    let files =
        SegFiles::new(dir, first, file, faults).map_err(crate::storage::segment::space_error)?;
    let active = Active {
        seg: seg.clone(),
        files: Some(Arc::new(files)),
        faults: faults.clone(),
        allocated,
        write_pos: HEADER_LEN,
        written_pos: HEADER_LEN,
        stage: Vec::new(),
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
    Ok((active, seg))
}

fn recovered_active(a: Recovered, faults: &Faults) -> Active {
    let rooms_maintained = a.end == HEADER_LEN;
    if rooms_maintained {
        a.seg
            .rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .complete = true;
    }
    a.seg.publish(a.end, a.last_id, a.last_created_at_us);
    Active {
        allocated: a.seg.opened_len(),
        seg: a.seg,
        files: None,
        faults: faults.clone(),
        write_pos: a.end,
        written_pos: a.end,
        stage: Vec::new(),
        pending_keys: Vec::new(),
        pending_rooms: Vec::new(),
        keys_len: 0,
        rooms_len: 0,
        staged_rooms: Vec::new(),
        staged_points: Vec::new(),
        last_index_pos: a.last_index_pos,
        written_last_index_pos: a.last_index_pos,
        rooms_maintained,
        rotate_first: false,
        sealed_on_disk: false,
    }
}

/// Opens every sealed segment (quarantining ones whose header is damaged).
fn open_sealed_segments(
    dir: &Path,
    firsts: &[u64],
    now: u64,
    cutoff: u64,
    report: &mut OpenReport,
    keys: &mut Keys,
    faults: &Faults,
) -> Result<Vec<Arc<Segment>>, StorageError> {
    let mut segments = Vec::new();
    for &first in firsts {
        match open_sealed(dir, first, cutoff, report, keys, faults) {
            Ok(seg) => segments.push(seg),
            Err(StorageError::Corruption(why)) => {
                report
                    .quarantined
                    .push(quarantine(dir, first, now, &why, faults)?);
                report.actions.push(format!(
                    "segment {first}: {why}; moved to {QUARANTINE_DIR}/"
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(segments)
}

pub(super) fn open(
    dir: &Path,
    config: LogConfig,
    clock: SharedClock,
) -> Result<(ChannelLog, OpenReport), StorageError> {
    if config.segment_size < limits::SEGMENT_SIZE_MIN
        || config.segment_size > limits::SEGMENT_SIZE_MAX
    {
        return Err(StorageError::Invalid("segment size out of its limits"));
    }
    let faults = config.faults.clone();
    fs::create_dir_all(dir)?;
    let now = clock.now_us();
    let cutoff = now.saturating_sub(config.retention_us);
    let mut firsts = list_segments(dir, &faults)?;
    let had_segments = !firsts.is_empty();
    let checkpoint = Checkpoint::decode(&read_optional(&dir.join(CHECKPOINT_FILE))?);
    let mut holes = sidecar::decode_holes(&read_optional(&dir.join(HOLES_FILE))?);
    let mut report = OpenReport::default();
    let mut keys = Keys::default();
    let active_first = firsts.pop();
    let mut segments =
        open_sealed_segments(dir, &firsts, now, cutoff, &mut report, &mut keys, &faults)?;
    let mut last_id = segments.iter().map(|s| s.last_id()).max().unwrap_or(0);
    let mut last_created_at_us = segments
        .iter()
        .map(|s| s.newest_created_at_us())
        .max()
        .unwrap_or(0);
    let recovered = match active_first {
        Some(first) => match recover_active(
            dir,
            first,
            checkpoint,
            cutoff,
            &mut report,
            &mut keys,
            &faults,
        ) {
            Ok(a) => Some(a),
            Err(StorageError::Corruption(why)) => {
                report
                    .quarantined
                    .push(quarantine(dir, first, now, &why, &faults)?);
                report.actions.push(format!(
                    "active segment {first}: {why}; moved to {QUARANTINE_DIR}/"
                ));
                None
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    if let Some(a) = &recovered {
        last_id = last_id.max(a.last_id);
        last_created_at_us = last_created_at_us.max(a.last_created_at_us);
    }
    if had_segments && checkpoint.is_none() {
        report
            .actions
            .push("no valid checkpoint: ids continue above a whole reservation".to_string());
    }
    let next_id = continue_at(last_id, checkpoint, had_segments, config.first_id_floor);
    // Recorded by the first write: until ids are given above the hole, a
    // crash leads recovery to the same hole, so start-up writes nothing.
    let mut pending_hole = None;
    let known = |h: &Hole| h.kept_id == last_id && h.next_id == next_id;
    if had_segments
        && next_id > last_id + 1
        && last_id + 1 >= config.first_id_floor
        && !holes.iter().any(known)
    {
        let hole = Hole {
            kept_id: last_id,
            next_id,
            at_us: now,
        };
        pending_hole = Some(hole);
        holes.push(hole);
        report.hole = Some(hole);
        report.actions.push(format!("ids {}..{} may have been shown to readers before a crash and are not stored: the log continues at {next_id}", last_id + 1, next_id - 1));
    }
    let (active, pending_points) = match recovered {
        Some(a) if !a.cut && a.last_id + 1 == next_id => {
            let points = a.new_points.clone();
            (recovered_active(a, &faults), points)
        }
        Some(a) if !a.cut => {
            // Ids continue above a crash hole: the first write starts the
            // segment they need.
            let points = a.new_points.clone();
            let mut active = recovered_active(a, &faults);
            active.rotate_first = true;
            (active, points)
        }
        Some(a) => {
            let empty = a.end == HEADER_LEN;
            if !empty {
                seal_recovered(dir, &a, &faults)?;
            }
            match new_active(dir, next_id, now, config.segment_size, &faults) {
                Ok((active, _)) => {
                    if empty {
                        remove_segment_files(dir, a.seg.first_id, &faults)?;
                    } else {
                        segments.push(a.seg.clone());
                    }
                    (active, Vec::new())
                }
                Err(StorageError::StorageFull) => {
                    // A full disk: the log opens read-only in effect; the
                    // first append makes the new segment once there is space.
                    report.actions.push(format!(
                        "disk full: no new segment at id {next_id}; writes wait for space"
                    ));
                    let mut active = recovered_active(a, &faults);
                    active.rotate_first = true;
                    active.sealed_on_disk = !empty;
                    (active, Vec::new())
                }
                Err(e) => return Err(e),
            }
        }
        None => (
            new_active(dir, next_id, now, config.segment_size, &faults)?.0,
            Vec::new(),
        ),
    };
    segments.push(active.seg.clone());
    // Files are opened by the first write: an idle channel holds no
    // descriptor (a server may hold many thousands of channels).
    let mut active = active;
    active.files = None;
    let cp_value = checkpoint.unwrap_or(Checkpoint {
        segment_first_id: active.seg.first_id,
        synced_pos: HEADER_LEN,
        synced_id: 0,
        reserved_id: 0,
    });
    let checkpoint_cell = CheckpointCell::new(dir, cp_value, None::<DataFile>, &faults);
    if holes.len() > limits::HOLES_KEPT_MAX {
        holes.drain(..holes.len() - limits::HOLES_KEPT_MAX);
    }
    let shared = Arc::new(Shared {
        dir: dir.to_path_buf(),
        clock,
        retention_us: AtomicU64::new(config.retention_us),
        head_id: AtomicU64::new(next_id - 1),
        committed_id: AtomicU64::new(next_id - 1),
        segments: RwLock::new(segments),
        holes,
        poisoned: AtomicBool::new(false),
        poison_why: Mutex::new(None),
        amendments: RwLock::new(keys.amendments),
        live: Mutex::default(),
        live_seq: AtomicU64::new(0),
    });
    report.next_id = next_id;
    let head = next_id - 1;
    let log = ChannelLog {
        shared,
        active,
        sealing: Vec::new(),
        checkpoint: Arc::new(checkpoint_cell),
        next_id,
        last_created_at_us,
        written_id: head,
        written_created_at_us: last_created_at_us,
        reserved_id: head,
        reserve_chunk: limits::ID_RESERVATION_MIN,
        job_points: pending_points,
        keys: keys.maps,
        keys_unwritten: Vec::new(),
        amendments_unwritten: Vec::new(),
        last_append_us: now,
        last_job_watermark: (0, 0, 0),
        deferred_job: None,
        last_sync_us: now,
        unsynced_rotated: Vec::new(),
        keys_pruned_us: now,
        pending_hole,
        config,
    };
    Ok((log, report))
}
