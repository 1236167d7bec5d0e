//! Byte layouts of the segment header and the small files beside segments:
//! `.idx` (sparse index and seal), `.keys` (record keys: idempotency keys,
//! publisher uuids, and what edits and removals refer to), `.rooms`,
//! the `checkpoint` (synced watermark and id reservation) and `holes`
//! (ids a crash took back). Sans-IO: bytes in, values out.
//!
//! Layouts are documented in `protocol.md`, "On-disk format". Every integer is
//! little-endian; every entry carries its own CRC-32 so a torn append is
//! detected and ignored, never trusted.
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

/// Magic of a segment header.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TWSEG\0\0\0";
/// Magic of an index sidecar.
pub const INDEX_MAGIC: [u8; 8] = *b"TWIDX\0\0\0";
/// Magic of a record-key sidecar.
pub const KEYS_MAGIC: [u8; 8] = *b"TWKEYS\0\0";
/// Magic of a room-index sidecar.
pub const ROOMS_MAGIC: [u8; 8] = *b"TWROOMS\0";
/// Bytes of a room entry before the room.
pub const ROOM_ENTRY_HEADER_LEN: usize = ENTRY_HEADER_LEN;
/// Magic of the checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"TWCKPT\0\0";
/// Version of every storage format in this module.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of a sidecar file header (magic, version, CRC).
pub const SIDECAR_HEADER_LEN: usize = 16;
/// Bytes of one index entry.
pub const INDEX_ENTRY_LEN: usize = 32;
/// Bytes of the checkpoint file.
pub const CHECKPOINT_LEN: usize = 48;
/// Bytes of a version 1 checkpoint file.
pub const CHECKPOINT_V1_LEN: usize = 40;
/// Bytes of a key entry before the key.
pub const KEY_ENTRY_HEADER_LEN: usize = ENTRY_HEADER_LEN;
/// Bytes before the variable part of a `.keys` or `.rooms` entry.
const ENTRY_HEADER_LEN: usize = 21;

/// Index entry kind: a record starts at `pos`.
pub const KIND_POINT: u32 = 1;
/// Index entry kind: the segment is sealed; `id` is its last id, `pos` its
/// end, `created_at` its newest record's time.
pub const KIND_SEAL: u32 = 2;

/// `<first_id:020>.seg`.
pub fn segment_file_name(first_id: u64) -> String {
    format!("{first_id:020}.seg")
}

/// The first id named by a `<first_id:020>.seg` file name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    let b = buf.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

fn u64_at(buf: &[u8], off: usize) -> Option<u64> {
    let b = buf.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// The 64-byte header at the start of every segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Id of the segment's first record.
    pub first_id: u64,
    /// When the segment was created, µs since the epoch.
    pub created_at_us: u64,
    /// Size of the file in bytes.
    pub size: u64,
}

impl SegmentHeader {
    /// Encodes: magic(8) version(4) header_len(4) first_id(8) created_at(8)
    /// size(8) crc(4) zeros(20); the CRC covers bytes 0..40.
    pub fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        let mut w = Writer(&mut b, 0);
        w.put(&SEGMENT_MAGIC);
        w.put(&FORMAT_VERSION.to_le_bytes());
        w.put(&64u32.to_le_bytes());
        w.put(&self.first_id.to_le_bytes());
        w.put(&self.created_at_us.to_le_bytes());
        w.put(&self.size.to_le_bytes());
        let crc = crc32fast::hash(w.0.get(..40).unwrap_or_default());
        w.put(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header.
    ///
    /// # Errors
    /// A description of what does not match.
    pub fn decode(buf: &[u8]) -> Result<SegmentHeader, &'static str> {
        let head = buf.get(..64).ok_or("short segment header")?;
        if head.get(..8) != Some(&SEGMENT_MAGIC[..]) {
            return Err("bad segment magic");
        }
        if u32_at(head, 8) != Some(FORMAT_VERSION) {
            return Err("unknown segment version");
        }
        if u32_at(head, 12) != Some(64) {
            return Err("bad segment header length");
        }
        let crc = u32_at(head, 40).ok_or("short segment header")?;
        if crc32fast::hash(head.get(..40).ok_or("short segment header")?) != crc {
            return Err("segment header CRC mismatch");
        }
        let h = SegmentHeader {
            first_id: u64_at(head, 16).ok_or("short segment header")?,
            created_at_us: u64_at(head, 24).ok_or("short segment header")?,
            size: u64_at(head, 32).ok_or("short segment header")?,
        };
        if h.first_id == 0
            || h.size < crate::limits::SEGMENT_SIZE_MIN
            || h.size > crate::limits::SEGMENT_SIZE_MAX
        {
            return Err("segment header fields out of range");
        }
        Ok(h)
    }
}

struct Writer<'a>(&'a mut [u8], usize);

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.1.checked_add(bytes.len()).expect("fixed layouts fit");
        self.0
            .get_mut(self.1..end)
            .expect("fixed layouts fit")
            .copy_from_slice(bytes);
        self.1 = end;
    }
}

/// The 16-byte header of a sidecar file: magic(8) version(4) crc(4) of 0..12.
pub fn sidecar_header(magic: [u8; 8]) -> [u8; SIDECAR_HEADER_LEN] {
    let mut b = [0u8; SIDECAR_HEADER_LEN];
    let mut w = Writer(&mut b, 0);
    w.put(&magic);
    w.put(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32fast::hash(w.0.get(..12).unwrap_or_default());
    w.put(&crc.to_le_bytes());
    b
}

/// True when `buf` starts with a valid sidecar header with `magic`.
pub fn check_sidecar_header(buf: &[u8], magic: [u8; 8]) -> bool {
    buf.get(..SIDECAR_HEADER_LEN) == Some(&sidecar_header(magic)[..])
}

/// One entry of an `.idx` sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Record id (seal: last id of the segment).
    pub id: u64,
    /// Record `created_at` (seal: newest record's).
    pub created_at_us: u64,
    /// Absolute file offset of the record (seal: end of the records).
    pub pos: u64,
    /// [`KIND_POINT`] or [`KIND_SEAL`].
    pub kind: u32,
}

impl IndexEntry {
    /// Encodes: id(8) created_at(8) pos(8) kind(4) crc(4) of 0..28.
    pub fn encode(&self) -> [u8; INDEX_ENTRY_LEN] {
        let mut b = [0u8; INDEX_ENTRY_LEN];
        let mut w = Writer(&mut b, 0);
        w.put(&self.id.to_le_bytes());
        w.put(&self.created_at_us.to_le_bytes());
        w.put(&self.pos.to_le_bytes());
        w.put(&self.kind.to_le_bytes());
        let crc = crc32fast::hash(w.0.get(..28).unwrap_or_default());
        w.put(&crc.to_le_bytes());
        b
    }

    /// Decodes one entry; `None` when short, torn or of an unknown kind.
    pub fn decode(buf: &[u8]) -> Option<IndexEntry> {
        let b = buf.get(..INDEX_ENTRY_LEN)?;
        if crc32fast::hash(b.get(..28)?) != u32_at(b, 28)? {
            return None;
        }
        let e = IndexEntry {
            id: u64_at(b, 0)?,
            created_at_us: u64_at(b, 8)?,
            pos: u64_at(b, 16)?,
            kind: u32_at(b, 24)?,
        };
        matches!(e.kind, KIND_POINT | KIND_SEAL).then_some(e)
    }
}

/// What an `.idx` file holds: its valid entries, and whether anything after
/// them (or the header) was damaged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFile {
    /// Valid entries, in file order.
    pub entries: Vec<IndexEntry>,
    /// True when the header was bad or bytes after the last valid entry
    /// did not form one.
    pub damaged: bool,
}

/// Decodes an `.idx` file. Entries must be in ascending id and position.
pub fn decode_index(buf: &[u8]) -> IndexFile {
    if !check_sidecar_header(buf, INDEX_MAGIC) {
        return IndexFile {
            entries: Vec::new(),
            damaged: true,
        };
    }
    let mut out = IndexFile::default();
    let body = buf.get(SIDECAR_HEADER_LEN..).unwrap_or_default();
    for chunk in body.chunks(INDEX_ENTRY_LEN) {
        match IndexEntry::decode(chunk) {
            Some(e)
                if out
                    .entries
                    .last()
                    .is_none_or(|p| p.kind == KIND_POINT && p.id <= e.id && p.pos < e.pos) =>
            {
                out.entries.push(e)
            }
            _ => {
                out.damaged = true;
                break;
            }
        }
    }
    out
}

/// What a `.keys` entry names: the top two bits of its `created_at` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// An idempotency key (1 to `IDEMPOTENCY_KEY_LEN_MAX` bytes).
    Idempotency = 0,
    /// A uuid the publisher gave its message (16 bytes).
    Uuid = 1,
    /// The record is an edit of the message whose id (u64) follows, then
    /// the record's position in its segment (u64).
    Edit = 2,
    /// The record removes the message whose id (u64) follows, then the
    /// record's position (u64).
    Remove = 3,
}

/// Bit position of [`KeyKind`] inside a `.keys` entry's `created_at` field.
const KEY_KIND_SHIFT: u32 = 62;
/// The `created_at` bits of a `.keys` entry's second field.
const KEY_TIME_MASK: u64 = (1 << KEY_KIND_SHIFT) - 1;

impl KeyKind {
    fn from_bits(v: u64) -> KeyKind {
        match v >> KEY_KIND_SHIFT {
            0 => KeyKind::Idempotency,
            1 => KeyKind::Uuid,
            2 => KeyKind::Edit,
            _ => KeyKind::Remove,
        }
    }
}

/// One entry of a `.keys` sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// The record's id.
    pub id: u64,
    /// The record's `created_at`.
    pub created_at_us: u64,
    /// What `key` is.
    pub kind: KeyKind,
    /// The key, the uuid, or the id (u64) of the message amended and the
    /// position (u64) of the amending record in its segment.
    pub key: Vec<u8>,
}

/// Appends one entry of a `.keys` or `.rooms` sidecar: crc(4) of the rest,
/// a(8), b(8), len(1), bytes. Both sidecars share this layout.
fn encode_entry(out: &mut Vec<u8>, a: u64, b: u64, bytes: &[u8]) {
    let len = u8::try_from(bytes.len()).expect("entries are checked against their limit");
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&a.to_le_bytes());
    out.extend_from_slice(&b.to_le_bytes());
    out.push(len);
    out.extend_from_slice(bytes);
    let crc_start = start.checked_add(4).expect("vector length fits");
    let crc = crc32fast::hash(out.get(crc_start..).unwrap_or_default());
    if let Some(slot) = out.get_mut(start..crc_start) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
}

/// Decodes the entry at `pos` (layout of [`encode_entry`]): `(a, b, bytes,
/// end)`, or `None` at a short, over-long (`len > len_max`) or CRC-failing
/// entry, where a sidecar's valid prefix ends.
fn decode_entry(buf: &[u8], pos: usize, len_max: usize) -> Option<(u64, u64, &[u8], usize)> {
    let head = buf.get(pos..)?.get(..ENTRY_HEADER_LEN)?;
    let len = usize::from(*head.get(20)?);
    if len > len_max {
        return None;
    }
    let end = pos.checked_add(ENTRY_HEADER_LEN)?.checked_add(len)?;
    let entry = buf.get(pos..end)?;
    if crc32fast::hash(entry.get(4..)?) != u32_at(entry, 0)? {
        return None;
    }
    Some((
        u64_at(entry, 4)?,
        u64_at(entry, 12)?,
        entry.get(ENTRY_HEADER_LEN..)?,
        end,
    ))
}

/// Appends the encoding of a key entry to `out`: crc(4) of the rest, id(8),
/// created_at(8) with the entry's [`KeyKind`] in its top two bits,
/// key_len(1), key.
pub fn encode_key_entry(out: &mut Vec<u8>, id: u64, created_at_us: u64, kind: KeyKind, key: &[u8]) {
    let tagged = (created_at_us & KEY_TIME_MASK) | ((kind as u64) << KEY_KIND_SHIFT);
    encode_entry(out, id, tagged, key);
}

/// Decodes a `.keys` file up to its first invalid entry.
pub fn decode_keys(buf: &[u8]) -> Vec<KeyEntry> {
    let mut out = Vec::new();
    if !check_sidecar_header(buf, KEYS_MAGIC) {
        return out;
    }
    let mut pos = SIDECAR_HEADER_LEN;
    while let Some((id, tagged, key, end)) =
        decode_entry(buf, pos, crate::limits::IDEMPOTENCY_KEY_LEN_MAX)
    {
        let kind = KeyKind::from_bits(tagged);
        let fits = match kind {
            KeyKind::Idempotency => !key.is_empty(),
            KeyKind::Uuid => key.len() == 16,
            KeyKind::Edit | KeyKind::Remove => key.len() == 16,
        };
        if !fits {
            break;
        }
        out.push(KeyEntry {
            id,
            created_at_us: tagged & KEY_TIME_MASK,
            kind,
            key: key.to_vec(),
        });
        pos = end;
    }
    out
}

/// Appends a room entry to `out`: crc(4) of the rest, id(8), pos(8),
/// room_len(1), room. A `room_len` of 0 is the seal marker: `id` is the
/// segment's last id and `pos` the end of its records.
pub fn encode_room_entry(out: &mut Vec<u8>, id: u64, pos: u64, room: &[u8]) {
    encode_entry(out, id, pos, room);
}

/// A `.rooms` file's entries `(room, id, pos)`, and its seal marker
/// `(last_id, end)` when the file is complete. `None` for a bad header.
pub type RoomsFile = (Vec<(Vec<u8>, u64, u64)>, Option<(u64, u64)>);

/// Decodes a `.rooms` file up to its first invalid entry or its seal marker.
pub fn decode_rooms(buf: &[u8]) -> Option<RoomsFile> {
    if !check_sidecar_header(buf, ROOMS_MAGIC) {
        return None;
    }
    let mut entries = Vec::new();
    let mut pos = SIDECAR_HEADER_LEN;
    while let Some((id, at, room, end)) = decode_entry(buf, pos, crate::limits::ROOM_LEN_MAX) {
        if room.is_empty() {
            return Some((entries, Some((id, at))));
        }
        entries.push((room.to_vec(), id, at));
        pos = end;
    }
    Some((entries, None))
}

/// The durable state of a log: everything in segment `segment_first_id`
/// below `synced_pos` (and every earlier segment) was on stable storage, and
/// no id above `reserved_id` was ever shown to a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// First id of the segment the watermark is in.
    pub segment_first_id: u64,
    /// Absolute file offset below which that segment was synced.
    pub synced_pos: u64,
    /// Highest synced id.
    pub synced_id: u64,
    /// Highest id the writer may publish to readers before a newer
    /// checkpoint is on stable storage; after a crash the log continues
    /// above it, so no id a reader may have seen is ever given again.
    pub reserved_id: u64,
}

/// Version of the checkpoint layout written now (version 1 had no
/// `reserved_id` and was 40 bytes long).
pub const CHECKPOINT_VERSION: u32 = 2;

impl Checkpoint {
    /// Encodes: magic(8) segment_first_id(8) synced_pos(8) synced_id(8)
    /// reserved_id(8) version(4) crc(4) of 0..44.
    pub fn encode(&self) -> [u8; CHECKPOINT_LEN] {
        let mut b = [0u8; CHECKPOINT_LEN];
        let mut w = Writer(&mut b, 0);
        w.put(&CHECKPOINT_MAGIC);
        w.put(&self.segment_first_id.to_le_bytes());
        w.put(&self.synced_pos.to_le_bytes());
        w.put(&self.synced_id.to_le_bytes());
        w.put(&self.reserved_id.to_le_bytes());
        w.put(&CHECKPOINT_VERSION.to_le_bytes());
        let crc = crc32fast::hash(w.0.get(..44).unwrap_or_default());
        w.put(&crc.to_le_bytes());
        b
    }

    /// Decodes a checkpoint of version 2, or of version 1 (whose readers saw
    /// only synced ids: its reservation is its `synced_id`); `None` when it
    /// is not a valid one.
    pub fn decode(buf: &[u8]) -> Option<Checkpoint> {
        if buf.get(..8)? != CHECKPOINT_MAGIC {
            return None;
        }
        if let Some(b) = buf.get(..CHECKPOINT_LEN) {
            if u32_at(b, 40)? == CHECKPOINT_VERSION
                && crc32fast::hash(b.get(..44)?) == u32_at(b, 44)?
            {
                return Some(Checkpoint {
                    segment_first_id: u64_at(b, 8)?,
                    synced_pos: u64_at(b, 16)?,
                    synced_id: u64_at(b, 24)?,
                    reserved_id: u64_at(b, 32)?,
                });
            }
        }
        let b = buf.get(..CHECKPOINT_V1_LEN)?;
        if u32_at(b, 32)? != 1 || crc32fast::hash(b.get(..36)?) != u32_at(b, 36)? {
            return None;
        }
        let synced_id = u64_at(b, 24)?;
        Some(Checkpoint {
            segment_first_id: u64_at(b, 8)?,
            synced_pos: u64_at(b, 16)?,
            synced_id,
            reserved_id: synced_id,
        })
    }
}

/// Magic of the `holes` file.
pub const HOLES_MAGIC: [u8; 8] = *b"TWHOLES\0";
/// Bytes of one `holes` entry.
pub const HOLE_ENTRY_LEN: usize = 28;

/// Ids a crash took back: records after `kept_id` may have been shown to
/// readers and were lost, and the log continued at `next_id`; no record has
/// an id in `kept_id + 1 .. next_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hole {
    /// The last id that survived.
    pub kept_id: u64,
    /// The first id after the hole.
    pub next_id: u64,
    /// When recovery found it, µs.
    pub at_us: u64,
}

impl Hole {
    /// Encodes: kept_id(8) next_id(8) at_us(8) crc(4) of 0..24.
    pub fn encode(&self) -> [u8; HOLE_ENTRY_LEN] {
        let mut b = [0u8; HOLE_ENTRY_LEN];
        let mut w = Writer(&mut b, 0);
        w.put(&self.kept_id.to_le_bytes());
        w.put(&self.next_id.to_le_bytes());
        w.put(&self.at_us.to_le_bytes());
        let crc = crc32fast::hash(w.0.get(..24).unwrap_or_default());
        w.put(&crc.to_le_bytes());
        b
    }
}

/// Decodes a `holes` file up to its first invalid entry (entries must be
/// in ascending order and each a real hole).
pub fn decode_holes(buf: &[u8]) -> Vec<Hole> {
    let mut out: Vec<Hole> = Vec::new();
    if !check_sidecar_header(buf, HOLES_MAGIC) {
        return out;
    }
    let body = buf.get(SIDECAR_HEADER_LEN..).unwrap_or_default();
    for b in body.chunks(HOLE_ENTRY_LEN) {
        let (Some(kept_id), Some(next_id), Some(at_us), Some(crc)) =
            (u64_at(b, 0), u64_at(b, 8), u64_at(b, 16), u32_at(b, 24))
        else {
            break;
        };
        let ordered = out
            .last()
            .is_none_or(|p| p.next_id <= kept_id.saturating_add(1));
        if crc32fast::hash(b.get(..24).unwrap_or_default()) != crc
            || kept_id.checked_add(1).is_none_or(|k| k >= next_id)
            || !ordered
        {
            break;
        }
        out.push(Hole {
            kept_id,
            next_id,
            at_us,
        });
    }
    out
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn headers_entries_and_checkpoints_round_trip() {
        let h = SegmentHeader {
            first_id: 7,
            created_at_us: 9,
            size: 1 << 20,
        };
        assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
        let mut bad = h.encode();
        bad[20] ^= 1;
        assert!(SegmentHeader::decode(&bad).is_err());
        let e = IndexEntry {
            id: 1,
            created_at_us: 2,
            pos: 64,
            kind: KIND_POINT,
        };
        let mut file = sidecar_header(INDEX_MAGIC).to_vec();
        file.extend_from_slice(&e.encode());
        file.extend_from_slice(&[1, 2, 3]);
        let idx = decode_index(&file);
        assert_eq!(idx.entries, vec![e]);
        assert!(idx.damaged);
        let c = Checkpoint {
            segment_first_id: 1,
            synced_pos: 100,
            synced_id: 3,
            reserved_id: 9,
        };
        assert_eq!(Checkpoint::decode(&c.encode()), Some(c));
        let mut holes = sidecar_header(HOLES_MAGIC).to_vec();
        let h = Hole {
            kept_id: 4,
            next_id: 70,
            at_us: 5,
        };
        holes.extend_from_slice(&h.encode());
        holes.extend_from_slice(&h.encode()); // out of order: ends the file
        assert_eq!(decode_holes(&holes), vec![h]);
        let mut keys = sidecar_header(KEYS_MAGIC).to_vec();
        encode_key_entry(&mut keys, 5, 6, KeyKind::Idempotency, b"abc");
        encode_key_entry(&mut keys, 6, 7, KeyKind::Uuid, &[9; 16]);
        encode_key_entry(&mut keys, 8, 9, KeyKind::Remove, &[5; 16]);
        encode_key_entry(&mut keys, 9, 10, KeyKind::Edit, b"d");
        let k = decode_keys(&keys);
        // An edit entry whose reference is not 16 bytes ends the file.
        assert_eq!(k.len(), 3);
        assert_eq!(
            (k[0].key.as_slice(), k[0].kind),
            (&b"abc"[..], KeyKind::Idempotency)
        );
        assert_eq!((k[1].created_at_us, k[1].kind), (7, KeyKind::Uuid));
        assert_eq!(
            (k[2].id, k[2].created_at_us, k[2].kind),
            (8, 9, KeyKind::Remove)
        );
        keys.pop();
        assert_eq!(decode_keys(&keys).len(), 3);
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
    }
}
