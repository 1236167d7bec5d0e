//! Edits and removals: the body of the record that amends a message, and
//! the message as the *current view* shows it (its latest edit folded in).
//!
//! An amending record copies the audience of the message it names — its
//! room, `pm_users`, `exclude_users` and uuid — whatever the request that
//! made it said, so an edit or removal reaches exactly who could see the
//! message, and the same targeting code decides for both.
#![allow(clippy::indexing_slicing)] // ranges come from a parsed layout of the same bytes

use super::{
    Action, ContentType, RecordView, BODY_OFFSET, FLAG_EXCLUDE_USERS, FLAG_PM_USERS, FLAG_REF_ID,
    FLAG_ROOM, FLAG_UUID, RECORD_HEADER_LEN,
};

/// Which amendment a record makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmendKind {
    /// A new version of the message.
    Edit,
    /// The message is deleted.
    Remove,
}

/// Appends to `out` the message body of the record that amends
/// `original`: action edit (with `content_type` and `payload`) or remove
/// (content type bytes, empty payload), `ref_id` naming the original, and
/// the original's room, `pm_users`, `exclude_users` and uuid.
pub fn encode_amend_body(
    out: &mut Vec<u8>,
    original: &RecordView<'_>,
    kind: AmendKind,
    content_type: ContentType,
    payload: &[u8],
) {
    let (action, content_type, payload) = match kind {
        AmendKind::Edit => (Action::Edit, content_type, payload),
        AmendKind::Remove => (Action::Remove, ContentType::Bytes, &[][..]),
    };
    let copied = FLAG_ROOM | FLAG_PM_USERS | FLAG_EXCLUDE_USERS | FLAG_UUID;
    let flags = (original.flags() & copied) | FLAG_REF_ID;
    let l = original.layout();
    out.push(action as u8);
    out.push(content_type as u8);
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(original.raw_field(l.room, true));
    out.extend_from_slice(original.raw_field(l.pm_users, false));
    out.extend_from_slice(original.raw_field(l.exclude_users, false));
    if let Some(u) = l.uuid {
        out.extend_from_slice(&u);
    }
    out.extend_from_slice(&original.id().to_le_bytes());
    out.extend_from_slice(payload);
}

/// Writes into `out` (cleared first) `original` as the current view shows
/// it after the edit `edit`: the original's id, time, action, author and
/// fields, the edit's content type and payload, and `ref_id` set to the
/// edit's id (so a reader can tell the message was edited, and when).
pub fn current_version(original: &RecordView<'_>, edit: &RecordView<'_>, out: &mut Vec<u8>) {
    let raw = original.raw();
    let l = original.layout();
    out.clear();
    out.extend_from_slice(&raw[..BODY_OFFSET]);
    out.push(original.action() as u8);
    out.push(edit.content_type() as u8);
    out.extend_from_slice(&(original.flags() | FLAG_REF_ID).to_le_bytes());
    out.extend_from_slice(&raw[RECORD_HEADER_LEN..l.ref_at]);
    out.extend_from_slice(&edit.id().to_le_bytes());
    out.extend_from_slice(original.raw_field(l.idempotency_key, true));
    out.extend_from_slice(edit.payload());
    let len = u32::try_from(out.len() - 8).unwrap_or(u32::MAX);
    out[0..4].copy_from_slice(&len.to_le_bytes());
    let crc = crc32fast::hash(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
}
