//! Record keys: what the `.keys` sidecars hold, in memory.
//!
//! Three things are looked up by something other than a record's id:
//! * idempotency keys (a retried publish returns the original id);
//! * uuids a publisher gave its messages (edits and deletes by uuid);
//! * amendments: the edit and remove records naming an earlier message,
//!   which the *current view* of a page folds into that message.
//!
//! The first two belong to the writer (only it looks them up). The
//! amendments are read by every reader of the current view, so they sit in
//! the log's shared state behind a lock that readers take once per page.
//! All three are rebuilt at open from the sidecars (or from the records
//! when a sidecar is missing), never by reading the whole log, and forget
//! what left retention.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use crate::storage::record::{Action, RecordView};
use crate::storage::sidecar::{KeyEntry, KeyKind};

/// One edit or removal of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amendment {
    /// The id of the edit or remove record.
    pub id: u64,
    /// True for a removal.
    pub removed: bool,
    /// When it was appended, µs.
    pub created_at_us: u64,
    /// Where the record starts in its segment (readers go straight to it).
    pub pos: u64,
}

/// Ids per chunk of the amended-ids bitmap.
const CHUNK_IDS: u64 = 4096;
const CHUNK_WORDS: usize = (CHUNK_IDS / 64) as usize;

/// Amendments by the id of the message they amend, each list in id order,
/// and a bitmap of the amended ids in chunks of [`CHUNK_IDS`]: a page asks
/// the bitmap about each record (neighbouring ids share a cache line) and
/// the map only about the few that were amended.
#[derive(Debug, Default)]
pub struct Amendments {
    by_target: FxHashMap<u64, Vec<Amendment>>,
    marks: FxHashMap<u64, Box<[u64; CHUNK_WORDS]>>,
}

impl Amendments {
    /// Records `a` of message `target` (ids only grow, so lists stay sorted).
    pub fn add(&mut self, target: u64, a: Amendment) {
        let list = self.by_target.entry(target).or_default();
        if list.last().is_none_or(|l| l.id < a.id) {
            list.push(a);
        }
        let chunk = self
            .marks
            .entry(target / CHUNK_IDS)
            .or_insert_with(|| Box::new([0; CHUNK_WORDS]));
        let bit = target % CHUNK_IDS;
        chunk[(bit / 64) as usize] |= 1 << (bit % 64);
    }

    /// The latest amendment of `target` among ids up to `limit_id`.
    pub fn latest(&self, target: u64, limit_id: u64) -> Option<Amendment> {
        self.by_target
            .get(&target)?
            .iter()
            .rev()
            .find(|a| a.id <= limit_id)
            .copied()
    }

    /// A reader of [`latest`](Self::latest) for the records of one page,
    /// which keeps the bitmap chunk it used last.
    pub fn scan(&self) -> AmendScan<'_> {
        AmendScan {
            amendments: self,
            chunk: None,
        }
    }

    /// Forgets the amendments of messages older than `oldest_id` (they left
    /// retention, so no page shows them).
    pub fn forget_before(&mut self, oldest_id: u64) {
        self.by_target.retain(|&target, _| target >= oldest_id);
        self.marks
            .retain(|&chunk, _| (chunk + 1) * CHUNK_IDS > oldest_id);
    }
}

/// See [`Amendments::scan`].
pub struct AmendScan<'a> {
    amendments: &'a Amendments,
    chunk: Option<(u64, Option<&'a [u64; CHUNK_WORDS]>)>,
}

impl AmendScan<'_> {
    /// As [`Amendments::latest`].
    pub fn latest(&mut self, target: u64, limit_id: u64) -> Option<Amendment> {
        let key = target / CHUNK_IDS;
        let words = match self.chunk {
            Some((k, words)) if k == key => words,
            _ => {
                let words = self.amendments.marks.get(&key).map(|b| &**b);
                self.chunk = Some((key, words));
                words
            }
        }?;
        let bit = target % CHUNK_IDS;
        if words[(bit / 64) as usize] & (1 << (bit % 64)) == 0 {
            return None;
        }
        self.amendments.latest(target, limit_id)
    }
}

/// The writer's lookups: idempotency keys and publisher uuids, each to
/// `(id, created_at)`.
#[derive(Debug, Default)]
pub struct KeyMaps {
    /// Idempotency keys.
    pub idempotency: HashMap<Box<[u8]>, (u64, u64)>,
    /// Uuids given by publishers.
    pub uuids: HashMap<[u8; 16], (u64, u64)>,
}

impl KeyMaps {
    /// Takes one sidecar entry (of a record inside retention).
    pub fn insert(&mut self, e: &KeyEntry, amendments: &mut Amendments) {
        let value = (e.id, e.created_at_us);
        match e.kind {
            KeyKind::Idempotency => {
                self.idempotency.insert(e.key.as_slice().into(), value);
            }
            KeyKind::Uuid => {
                if let Ok(u) = <[u8; 16]>::try_from(e.key.as_slice()) {
                    self.uuids.insert(u, value);
                }
            }
            KeyKind::Edit | KeyKind::Remove => {
                let (Some(t), Some(pos)) = (e.key.get(..8), e.key.get(8..16)) else {
                    return;
                };
                let u = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
                amendments.add(
                    u(t),
                    Amendment {
                        id: e.id,
                        removed: e.kind == KeyKind::Remove,
                        created_at_us: e.created_at_us,
                        pos: u(pos),
                    },
                );
            }
        }
    }

    /// Forgets the keys of records created before `cutoff_us`.
    pub fn forget_before(&mut self, cutoff_us: u64) {
        self.idempotency.retain(|_, &mut (_, at)| at >= cutoff_us);
        self.uuids.retain(|_, &mut (_, at)| at >= cutoff_us);
    }
}

/// The sidecar entries a record at `pos` in its segment has (what a scan of
/// the records collects when a `.keys` file is missing or behind).
pub fn record_keys(v: &RecordView<'_>, pos: u64, out: &mut Vec<KeyEntry>) {
    let entry = |kind, key: &[u8]| KeyEntry {
        id: v.id(),
        created_at_us: v.created_at_us(),
        kind,
        key: key.to_vec(),
    };
    if let Some(k) = v.idempotency_key() {
        out.push(entry(KeyKind::Idempotency, k));
    }
    let amend = |t: u64| {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&t.to_le_bytes());
        k[8..].copy_from_slice(&pos.to_le_bytes());
        k
    };
    match (v.action(), v.ref_id()) {
        (Action::Edit, Some(t)) => out.push(entry(KeyKind::Edit, &amend(t))),
        (Action::Remove, Some(t)) => out.push(entry(KeyKind::Remove, &amend(t))),
        (Action::Edit | Action::Remove, None) => {}
        _ => {
            if let Some(u) = v.uuid() {
                out.push(entry(KeyKind::Uuid, &u));
            }
        }
    }
}
