//! Opening a log: finding its segments, trusting sealed ones through their
//! index sidecar and header, recovering the active one from its last index
//! point, and quarantining damage below the synced watermark.

use std::fs::{self, OpenOptions};
use std::io;

use super::*;
use crate::storage::recovery::{self, ScanStop};
use crate::storage::segment::sync_dir;

/// File name of the synced-watermark checkpoint in a log's directory.
pub(super) const CHECKPOINT_FILE: &str = "checkpoint";
/// Directory (inside a log's directory) damaged segments are moved to.
pub(super) const QUARANTINE_DIR: &str = "quarantine";

fn side_path(dir: &Path, first_id: u64, ext: &str) -> PathBuf {
    dir.join(format!("{first_id:020}.{ext}"))
}

fn read_optional(path: &Path) -> Result<Vec<u8>, StorageError> {
    match fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

fn create_with_header(path: &Path, magic: [u8; 8]) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all_at(&sidecar::sidecar_header(magic), 0)?;
    Ok(f)
}

/// Creates the empty `.idx`, `.keys` and `.rooms` sidecars of a new segment.
pub(super) fn create_sidecars(
    dir: &Path,
    first_id: u64,
) -> Result<(File, File, File), StorageError> {
    let idx = create_with_header(&side_path(dir, first_id, "idx"), sidecar::INDEX_MAGIC)?;
    let keys = create_with_header(&side_path(dir, first_id, "keys"), sidecar::KEYS_MAGIC)?;
    let rooms = create_with_header(&side_path(dir, first_id, "rooms"), sidecar::ROOMS_MAGIC)?;
    Ok((idx, keys, rooms))
}

/// Replaces a sidecar atomically (temporary file, sync, rename) and returns
/// it opened for appending, with its length.
fn rewrite_sidecar(path: &Path, bytes: &[u8]) -> Result<(File, u64), StorageError> {
    let tmp = path.with_extension("tmp");
    {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all_at(bytes, 0)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    Ok((f, bytes.len() as u64))
}

/// Removes a segment and its sidecars (missing files are fine).
pub(super) fn remove_segment_files(dir: &Path, first_id: u64) -> Result<(), StorageError> {
    for ext in ["seg", "idx", "keys", "rooms"] {
        match fs::remove_file(side_path(dir, first_id, ext)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Moves a damaged segment and its sidecars to `quarantine/`, loudly.
fn quarantine(dir: &Path, first_id: u64, now_us: u64, why: &str) -> Result<PathBuf, StorageError> {
    let qdir = dir.join(QUARANTINE_DIR);
    fs::create_dir_all(&qdir)?;
    let mut seg_dest = PathBuf::new();
    for ext in ["seg", "idx", "keys", "rooms"] {
        let from = side_path(dir, first_id, ext);
        let to = qdir.join(format!("{first_id:020}.{ext}.{now_us}"));
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        if ext == "seg" {
            seg_dest = to;
        }
    }
    sync_dir(dir)?;
    tracing::error!(
        dir = %dir.display(),
        first_id,
        moved_to = %seg_dest.display(),
        %why,
        "corrupt segment quarantined"
    );
    Ok(seg_dest)
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, StorageError> {
    let mut firsts = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            // A segment or sidecar whose creation did not finish: never renamed
            // into place, so nothing refers to it.
            fs::remove_file(entry.path())?;
            continue;
        }
        if let Some(first) = sidecar::parse_segment_file_name(name) {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// Bytes after `from` that hold anything but zeros: the declared length of a
/// torn record, then every following window of `INDEX_INTERVAL_BYTES` that
/// is not all zero.
fn tail_extent(data: &[u8], from: usize) -> usize {
    let mut end = from;
    if let Some(b) = data.get(from..from.saturating_add(4)) {
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len > 0 && len <= record::RECORD_LEN_MAX {
            end = from.saturating_add(8).saturating_add(len).min(data.len());
        }
    }
    let window = limits::INDEX_INTERVAL_BYTES as usize;
    let mut probe = from;
    while probe < data.len() {
        let w_end = probe.saturating_add(window).min(data.len());
        match data[probe..w_end].iter().rposition(|&b| b != 0) {
            Some(i) => {
                end = end.max(probe + i + 1);
                probe = w_end;
            }
            None => break,
        }
    }
    end
}

/// Opens a sealed segment, trusting its `.idx` seal entry, or rebuilding the
/// index by a full scan when the sidecar is missing or damaged.
fn open_sealed(
    dir: &Path,
    first: u64,
    report: &mut OpenReport,
    cutoff: u64,
    keys: &mut HashMap<Box<[u8]>, (u64, u64)>,
) -> Result<Arc<Segment>, StorageError> {
    let (seg, mut w) = Segment::open(&side_path(dir, first, "seg"), first, false)?;
    let idx = sidecar::decode_index(&read_optional(&side_path(dir, first, "idx"))?);
    let seal = idx.entries.last().copied().filter(|e| {
        e.kind == sidecar::KIND_SEAL
            && e.pos >= HEADER_LEN
            && e.pos <= seg.size
            && e.id.checked_add(1).is_some_and(|n| n >= first)
    });
    let (points, seal) = match seal {
        Some(seal) => (idx.entries[..idx.entries.len() - 1].to_vec(), seal),
        None => {
            let data = w.unpublished(HEADER_LEN, seg.size);
            let mut points = Vec::new();
            let r = recovery::scan_with(data, 0, &mut index_builder(&mut points, None));
            if !matches!(r.stop, ScanStop::EndOfData | ScanStop::EndOfRegion)
                || r.first_id.is_some_and(|f| f != first)
            {
                return Err(StorageError::Corruption(format!(
                    "sealed segment {first} without index fails its scan: {:?}",
                    r.stop
                )));
            }
            let seal = IndexEntry {
                id: r.last_id.unwrap_or(first - 1),
                created_at_us: r.last_created_at_us,
                pos: HEADER_LEN + r.end as u64,
                kind: sidecar::KIND_SEAL,
            };
            let mut bytes = sidecar::sidecar_header(sidecar::INDEX_MAGIC).to_vec();
            for e in points.iter().chain([&seal]) {
                bytes.extend_from_slice(&e.encode());
            }
            rewrite_sidecar(&side_path(dir, first, "idx"), &bytes)?;
            report.rebuilt_indexes += 1;
            w.set_verified_from(HEADER_LEN);
            (points, seal)
        }
    };
    *seg.index.write().unwrap_or_else(|e| e.into_inner()) = points;
    w.publish(seal.pos, seal.id, seal.created_at_us);
    w.seal();
    if seal.created_at_us >= cutoff {
        for k in sidecar::decode_keys(&read_optional(&side_path(dir, first, "keys"))?) {
            if k.id >= first && k.id <= seal.id && k.created_at_us >= cutoff {
                keys.insert(k.key.into(), (k.id, k.created_at_us));
            }
        }
    }
    Ok(seg)
}

/// A scan visitor that adds an index point at the first record and then one
/// per `INDEX_INTERVAL_BYTES`.
fn index_builder(
    points: &mut Vec<IndexEntry>,
    mut last: Option<u64>,
) -> impl FnMut(usize, &RecordView<'_>) + '_ {
    move |off, v| {
        let pos = HEADER_LEN + off as u64;
        if last.map_or(true, |p| pos - p >= limits::INDEX_INTERVAL_BYTES) {
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

/// Idempotency keys found by a scan: `(key, id, created_at)`.
type ScannedKeys = Vec<(Vec<u8>, u64, u64)>;

/// Rewrites the active segment's `.keys`: the entries on file below the
/// scan start (and not past the last valid id), then the keys the scan found
/// (`scanned`: the scan's first id and its keys). Loads the retained ones.
fn rewrite_active_keys(
    dir: &Path,
    first: u64,
    last_id: u64,
    scanned: Option<(u64, ScannedKeys)>,
    cutoff: u64,
    keys: &mut HashMap<Box<[u8]>, (u64, u64)>,
) -> Result<(File, u64), StorageError> {
    let (scanned_from, scan_keys) = scanned.unwrap_or((u64::MAX, Vec::new()));
    let mut all_keys: ScannedKeys =
        sidecar::decode_keys(&read_optional(&side_path(dir, first, "keys"))?)
            .into_iter()
            .filter(|k| k.id >= first && k.id < scanned_from && k.id <= last_id)
            .map(|k| (k.key, k.id, k.created_at_us))
            .collect();
    all_keys.extend(scan_keys);
    let mut keys_bytes = sidecar::sidecar_header(sidecar::KEYS_MAGIC).to_vec();
    for (k, id, at) in all_keys {
        sidecar::encode_key_entry(&mut keys_bytes, id, at, &k);
        if at >= cutoff {
            keys.insert(k.into(), (id, at));
        }
    }
    rewrite_sidecar(&side_path(dir, first, "keys"), &keys_bytes)
}

/// The recovered active segment.
struct Active {
    writer: SegmentWriter,
    idx_file: File,
    idx_len: u64,
    keys_file: File,
    keys_len: u64,
    rooms_file: File,
    rooms_maintained: bool,
    write_pos: u64,
    last_id: u64,
    last_created_at_us: u64,
    last_index_pos: Option<u64>,
}

/// Recovers the active segment: finds the last index point that still names
/// a valid record, CRC-scans from there, cuts (zeroes) a torn tail, and
/// refuses (as corruption) to cut below the synced watermark.
fn recover_active(
    dir: &Path,
    first: u64,
    checkpoint: Option<Checkpoint>,
    cutoff: u64,
    report: &mut OpenReport,
    keys: &mut HashMap<Box<[u8]>, (u64, u64)>,
) -> Result<Active, StorageError> {
    let (seg, mut w) = Segment::open(&side_path(dir, first, "seg"), first, true)?;
    let idx = sidecar::decode_index(&read_optional(&side_path(dir, first, "idx"))?);
    let mut points: Vec<IndexEntry> = idx
        .entries
        .iter()
        .filter(|e| e.kind == sidecar::KIND_POINT)
        .copied()
        .collect();
    let mut rebuilt = idx.damaged;
    let data = w.unpublished(HEADER_LEN, seg.size);
    let (start, valid) = resume_point(&points, data);
    if valid < points.len() {
        rebuilt = true;
        points.truncate(valid);
    }
    let mut scan_keys: ScannedKeys = Vec::new();
    let mut add_point = index_builder(&mut points, None);
    let r = recovery::scan_with(data, start, &mut |off, v| {
        add_point(off, v);
        if let Some(k) = v.idempotency_key() {
            scan_keys.push((k.to_vec(), v.id(), v.created_at_us()));
        }
    });
    drop(add_point);
    points.dedup_by_key(|p| p.pos);
    if start == 0 && r.first_id.is_some_and(|f| f != first) {
        return Err(StorageError::Corruption(format!(
            "segment {first} starts with record {:?}",
            r.first_id
        )));
    }
    let end = HEADER_LEN + r.end as u64;
    if let Some(cp) = checkpoint.filter(|cp| cp.segment_first_id == first) {
        if end < cp.synced_pos {
            return Err(StorageError::Corruption(format!(
                "segment {first}: valid records end at {end}, below the synced position {} ({:?})",
                cp.synced_pos, r.stop
            )));
        }
    }
    let extent = tail_extent(data, r.end);
    if extent > r.end {
        let extent_abs = HEADER_LEN + extent as u64;
        w.unpublished_mut(end, extent_abs).fill(0);
        w.sync_range(end, extent_abs)?;
        report.truncated_bytes += extent_abs - end;
        tracing::warn!(segment = first, at = end, bytes = extent_abs - end, stop = ?r.stop, "torn tail cut");
    }
    let last_id = r.last_id.unwrap_or(first - 1);
    let scanned = r.first_id.map(|f| (f, scan_keys));
    let (keys_file, keys_len) = rewrite_active_keys(dir, first, last_id, scanned, cutoff, keys)?;
    let mut idx_bytes = sidecar::sidecar_header(sidecar::INDEX_MAGIC).to_vec();
    for p in &points {
        idx_bytes.extend_from_slice(&p.encode());
    }
    let (idx_file, idx_len) = rewrite_sidecar(&side_path(dir, first, "idx"), &idx_bytes)?;
    if rebuilt && r.records > 0 {
        report.rebuilt_indexes += 1;
    }
    // Room entries from before the crash are not trusted (some may be
    // missing, some may name cut records): the sidecar restarts empty and is
    // never sealed, and readers index this segment themselves. An empty
    // segment is maintained by the writer from its first record.
    let rooms_file = create_with_header(&side_path(dir, first, "rooms"), sidecar::ROOMS_MAGIC)?;
    let rooms_maintained = end == HEADER_LEN;
    if rooms_maintained {
        seg.rooms.lock().unwrap_or_else(|e| e.into_inner()).complete = true;
    }
    w.set_verified_from(HEADER_LEN + start as u64);
    let last_index_pos = points.last().map(|p| p.pos);
    *seg.index.write().unwrap_or_else(|e| e.into_inner()) = points;
    Ok(Active {
        writer: w,
        idx_file,
        idx_len,
        keys_file,
        keys_len,
        rooms_file,
        rooms_maintained,
        write_pos: end,
        last_id,
        last_created_at_us: r.last_created_at_us,
        last_index_pos,
    })
}

fn new_active(dir: &Path, first: u64, now: u64, size: u64) -> Result<Active, StorageError> {
    let (_, writer) = Segment::create(dir, first, now, size, false)?;
    let (idx_file, keys_file, rooms_file) = create_sidecars(dir, first)?;
    Ok(Active {
        writer,
        idx_file,
        idx_len: sidecar::SIDECAR_HEADER_LEN as u64,
        keys_file,
        keys_len: sidecar::SIDECAR_HEADER_LEN as u64,
        rooms_file,
        rooms_maintained: true,
        write_pos: HEADER_LEN,
        last_id: first - 1,
        last_created_at_us: 0,
        last_index_pos: None,
    })
}

/// Seals a recovered active segment that cannot take more records (the next
/// id does not follow its last one).
fn seal_active(a: Active) -> Result<Arc<Segment>, StorageError> {
    let seal = IndexEntry {
        id: a.last_id,
        created_at_us: a.last_created_at_us,
        pos: a.write_pos,
        kind: sidecar::KIND_SEAL,
    };
    a.idx_file.write_all_at(&seal.encode(), a.idx_len)?;
    a.idx_file.sync_data()?;
    let seg = a.writer.segment().clone();
    a.writer
        .publish(a.write_pos, a.last_id, a.last_created_at_us);
    a.writer.seal();
    Ok(seg)
}

/// Opens every sealed segment (quarantining damaged ones); returns them with
/// the id after their last record and their newest `created_at`.
fn open_sealed_segments(
    dir: &Path,
    firsts: &[u64],
    now: u64,
    cutoff: u64,
    report: &mut OpenReport,
    keys: &mut HashMap<Box<[u8]>, (u64, u64)>,
) -> Result<(Vec<Arc<Segment>>, u64, u64), StorageError> {
    let mut segments = Vec::new();
    let mut next_id = 1;
    let mut last_created_at_us = 0;
    for &first in firsts {
        match open_sealed(dir, first, report, cutoff, keys) {
            Ok(seg) => {
                next_id = next_id.max(seg.last_id() + 1);
                last_created_at_us = last_created_at_us.max(seg.newest_created_at_us());
                segments.push(seg);
            }
            Err(StorageError::Corruption(why)) => {
                report.quarantined.push(quarantine(dir, first, now, &why)?);
            }
            Err(e) => return Err(e),
        }
    }
    Ok((segments, next_id, last_created_at_us))
}

/// The segment appends go to: the recovered active one when its ids follow
/// everything known, otherwise a new one at `next_id` (the recovered one,
/// if it holds records, is sealed; if empty, removed).
fn settle_active(
    dir: &Path,
    recovered: Option<Active>,
    segments: &mut Vec<Arc<Segment>>,
    next_id: u64,
    now: u64,
    size: u64,
) -> Result<Active, StorageError> {
    match recovered {
        Some(a) if a.last_id + 1 >= next_id => Ok(a),
        Some(a) => {
            if a.write_pos == HEADER_LEN {
                remove_segment_files(dir, a.writer.segment().first_id)?;
            } else {
                segments.push(seal_active(a)?);
            }
            new_active(dir, next_id, now, size)
        }
        None => new_active(dir, next_id, now, size),
    }
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
    fs::create_dir_all(dir)?;
    let now = clock.now_us();
    let cutoff = now.saturating_sub(config.retention_us);
    let mut firsts = list_segments(dir)?;
    let checkpoint = Checkpoint::decode(&read_optional(&dir.join(CHECKPOINT_FILE))?);
    let mut report = OpenReport::default();
    let mut keys = HashMap::new();
    let active_first = firsts.pop();
    let (mut segments, next_id, mut last_created_at_us) =
        open_sealed_segments(dir, &firsts, now, cutoff, &mut report, &mut keys)?;
    let next_id = next_id.max(checkpoint.map_or(1, |cp| cp.synced_id.saturating_add(1)));
    let recovered = match active_first {
        Some(first) => {
            match recover_active(dir, first, checkpoint, cutoff, &mut report, &mut keys) {
                Ok(a) => Some(a),
                Err(StorageError::Corruption(why)) => {
                    report.quarantined.push(quarantine(dir, first, now, &why)?);
                    None
                }
                Err(e) => return Err(e),
            }
        }
        None => None,
    };
    let active = settle_active(
        dir,
        recovered,
        &mut segments,
        next_id,
        now,
        config.segment_size,
    )?;
    let next_id = active.last_id + 1;
    last_created_at_us = last_created_at_us.max(active.last_created_at_us);
    let seg = active.writer.segment().clone();
    active
        .writer
        .publish(active.write_pos, active.last_id, last_created_at_us);
    segments.push(seg.clone());
    let (synced_id, synced_pos) = match checkpoint {
        Some(cp) if cp.segment_first_id == seg.first_id => (
            cp.synced_id.min(next_id - 1),
            cp.synced_pos.min(active.write_pos),
        ),
        Some(cp) if cp.segment_first_id < seg.first_id => {
            (cp.synced_id.min(next_id - 1), HEADER_LEN)
        }
        _ => (0, HEADER_LEN),
    };
    let checkpoint_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(CHECKPOINT_FILE))?;
    sync_dir(dir)?;
    let shared = Arc::new(Shared {
        dir: dir.to_path_buf(),
        clock,
        retention_us: AtomicU64::new(config.retention_us),
        head_id: AtomicU64::new(next_id - 1),
        segments: RwLock::new(segments),
    });
    report.next_id = next_id;
    let log = ChannelLog {
        shared,
        config,
        active: active.writer,
        idx_file: active.idx_file,
        idx_len: active.idx_len,
        keys_file: active.keys_file,
        keys_len: active.keys_len,
        rooms_file: active.rooms_file,
        rooms_len: sidecar::SIDECAR_HEADER_LEN as u64,
        rooms_maintained: active.rooms_maintained,
        checkpoint_file,
        pending_idx: Vec::with_capacity(4096),
        pending_keys: Vec::with_capacity(4096),
        pending_rooms: Vec::with_capacity(4096),
        sidecars_unsynced: false,
        to_seal: Vec::new(),
        unsynced_sealed: Vec::new(),
        write_pos: active.write_pos,
        next_id,
        last_created_at_us,
        last_index_pos: active.last_index_pos,
        prefaulted_to: active.write_pos,
        synced_pos,
        synced_id,
        last_sync_us: now,
        poisoned: None,
        keys,
        fail_allocation: false,
        fail_sync: false,
    };
    Ok((log, report))
}
