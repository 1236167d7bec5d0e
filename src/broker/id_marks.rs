//! Ids never go backwards for a channel name: per instance, the highest id
//! each deleted channel's name may have had, so that a channel created again
//! under that name continues after it (a client that resumes by name with
//! its last id then never skips new messages silently).
//!
//! A deleted channel's log may still take ids after the delete: publishes
//! queued before its removal are appended and answered first (the writer
//! handles its queue in order), and their acknowledgements carry ids. The
//! mark is therefore taken before the removal is queued, as a bound: the
//! head plus the most messages the bytes queued for the writer can hold.
//! The head already covers the ids a crash took back (a log opened after
//! one continues above its crash hole, and its head starts there), and ids
//! a log reserved but never gave are no one's.

use std::collections::HashMap;

use crate::storage::record;

/// The id high-water marks of one instance's deleted channel names.
#[derive(Debug, Default)]
pub struct IdMarks {
    /// Per name: the highest id a deleted channel of that name may have assigned.
    marks: HashMap<String, u64>,
}

impl IdMarks {
    /// The marks persisted in the instance's channels snapshot.
    pub fn from_snapshot(pairs: Vec<(String, u64)>) -> IdMarks {
        let mut marks = IdMarks::default();
        for (name, id) in pairs {
            marks.raise(&name, id);
        }
        marks
    }

    /// The mark of `name` (0: none); a channel created under the name
    /// starts after it.
    pub fn mark(&self, name: &str) -> u64 {
        self.marks.get(name).copied().unwrap_or(0)
    }

    /// Raises the mark of `name` to at least `id`.
    pub fn raise(&mut self, name: &str, id: u64) {
        let e = self.marks.entry(name.to_string()).or_insert(0);
        *e = (*e).max(id);
    }

    /// Every name's mark, for the snapshot, sorted by name.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self.marks.iter().map(|(n, m)| (n.clone(), *m)).collect();
        all.sort_unstable();
        all
    }
}

/// The highest id a channel being deleted may assign: its head, plus the
/// most messages `queued_bytes` can hold. Call it after the channel is
/// marked deleted and before its removal is queued for the writer, with
/// `queued_bytes` (the writer's in-flight byte count) read before `head_id`:
/// a publish whose bytes the writer released by then is in the head (the
/// writer publishes a batch's head before it releases its bytes), one not
/// released is still counted in the queued bytes, and one not counted yet
/// waits until the removal is queued ahead of it (`Broker::try_append`), so
/// it gets no id.
pub fn deleted_channel_bound(head_id: u64, queued_bytes: usize) -> u64 {
    head_id.saturating_add(queued_messages(queued_bytes))
}

/// Most messages `queued_bytes` of the writer's queue can hold: each takes
/// its u32 length and a body of at least `BODY_HEADER_LEN` bytes.
fn queued_messages(queued_bytes: usize) -> u64 {
    (queued_bytes / QUEUED_MESSAGE_LEN_MIN) as u64
}

/// Fewest bytes one message takes in the writer's queue (publish data is
/// `u32 length, body` per message, and the in-flight byte count counts it).
const QUEUED_MESSAGE_LEN_MIN: usize = 4 + record::BODY_HEADER_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_keep_the_highest_id_per_name() {
        let marks = IdMarks::from_snapshot(vec![("a".into(), 5), ("a".into(), 9), ("b".into(), 2)]);
        assert_eq!(
            (marks.mark("a"), marks.mark("b"), marks.mark("c")),
            (9, 2, 0)
        );
        assert_eq!(marks.snapshot(), vec![("a".into(), 9), ("b".into(), 2)]);
    }

    #[test]
    fn queued_bytes_bound_the_ids_still_to_come() {
        assert_eq!(deleted_channel_bound(7, 0), 7);
        assert_eq!(deleted_channel_bound(7, QUEUED_MESSAGE_LEN_MIN * 3 + 1), 10);
    }
}
