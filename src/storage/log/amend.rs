//! Editing and removing messages: the writer's side.
//!
//! An edit or removal is a record of its own, appended like any other
//! (durable, ordered, replayed to resuming subscribers), whose `ref_id`
//! names the message and whose audience is the message's. The writer checks
//! the message first — it exists inside retention, is a message and not an
//! amendment, was not removed — so two removals of one message cannot both
//! succeed, and nothing is appended when the check fails.

use super::keys::Amendment;
use super::ChannelLog;
use crate::storage::record::{self, AmendKind, Author, ContentType, RecordView};
use crate::storage::sidecar::{self, KeyKind};
use crate::storage::StorageError;

/// The message an edit or removal names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmendTarget {
    /// By id.
    Id(u64),
    /// By the uuid its publisher gave it.
    Uuid([u8; 16]),
}

/// An edit or removal appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amended {
    /// The id of the edit or remove record.
    pub id: u64,
    /// The id of the message it changed.
    pub target: u64,
    /// The uuid the message's publisher gave it, if any.
    pub uuid: Option<[u8; 16]>,
}

/// Why an edit or removal was refused (nothing was appended).
#[derive(Debug)]
pub enum AmendError {
    /// No such message inside retention (never existed, expired, or a
    /// uuid no retained message has).
    NotFound(String),
    /// The message was removed.
    Removed(u64),
    /// The id names an edit or removal, not a message.
    NotAMessage(u64),
    /// The caller may not amend this message (the broker's check said so).
    Denied(String),
    /// The log could not append.
    Storage(StorageError),
}

impl From<StorageError> for AmendError {
    fn from(e: StorageError) -> Self {
        AmendError::Storage(e)
    }
}

impl ChannelLog {
    /// The id of the retained message whose publisher gave it `uuid`.
    pub fn id_of_uuid(&self, uuid: &[u8; 16]) -> Option<u64> {
        let cutoff = self.shared.cutoff_us();
        self.keys
            .uuids
            .get(uuid)
            .and_then(|&(id, at)| (at >= cutoff).then_some(id))
    }

    /// Appends an edit (`Some((content_type, payload))`) or a removal
    /// (`None`) of `target`, after `allow` accepted the message (it sees the
    /// original record; the broker checks who may amend it there). Visible to readers after [`flush`](Self::flush)
    /// like any append.
    ///
    /// # Errors
    /// [`AmendError`]; on `Storage`, as for [`append`](Self::append).
    pub fn amend_at(
        &mut self,
        author: Author,
        target: AmendTarget,
        edit: Option<(ContentType, &[u8])>,
        allow: &mut dyn FnMut(&RecordView<'_>) -> Result<(), String>,
        now: u64,
    ) -> Result<Amended, AmendError> {
        let id = match target {
            AmendTarget::Id(id) => id,
            AmendTarget::Uuid(u) => self
                .id_of_uuid(&u)
                .ok_or_else(|| AmendError::NotFound("no retained message has this uuid".into()))?,
        };
        if let Some(a) = self.latest_amendment(id) {
            if a.removed {
                return Err(AmendError::Removed(id));
            }
        }
        if id > self.head_id() && id < self.next_id {
            // Appended in this batch, not yet readable: write it first.
            self.flush()?;
        }
        let kind = if edit.is_some() {
            AmendKind::Edit
        } else {
            AmendKind::Remove
        };
        let (body, uuid) = self.amend_body(id, kind, edit, allow)?;
        let (new_id, created_at_us) = self.stage(author, &body, now)?;
        let pos = self.last_staged_pos(record::record_len(author, body.len()) as u64);
        let (key_kind, removed) = match kind {
            AmendKind::Edit => (KeyKind::Edit, false),
            AmendKind::Remove => (KeyKind::Remove, true),
        };
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&id.to_le_bytes());
        key[8..].copy_from_slice(&pos.to_le_bytes());
        sidecar::encode_key_entry(
            &mut self.active.pending_keys,
            new_id,
            created_at_us,
            key_kind,
            &key,
        );
        self.amendments_unwritten.push((
            id,
            Amendment {
                id: new_id,
                removed,
                created_at_us,
                pos,
            },
        ));
        self.end_append()?;
        Ok(Amended {
            id: new_id,
            target: id,
            uuid,
        })
    }

    /// The body of the record that amends message `id` (checked: it is a
    /// retained message and `allow` accepts it), and the message's uuid.
    fn amend_body(
        &self,
        id: u64,
        kind: AmendKind,
        edit: Option<(ContentType, &[u8])>,
        allow: &mut dyn FnMut(&RecordView<'_>) -> Result<(), String>,
    ) -> Result<(Vec<u8>, Option<[u8; 16]>), AmendError> {
        let (content_type, payload) = edit.unwrap_or((ContentType::Bytes, &[]));
        let mut body = Vec::new();
        let mut uuid = None;
        let found = self.reader().get(id, |raw| -> Result<(), AmendError> {
            let v = RecordView::parse_trusted(raw)
                .map_err(|e| AmendError::Storage(StorageError::Corruption(e.to_string())))?;
            if matches!(v.action(), record::Action::Edit | record::Action::Remove) {
                return Err(AmendError::NotAMessage(id));
            }
            allow(&v).map_err(AmendError::Denied)?;
            uuid = v.uuid();
            record::encode_amend_body(&mut body, &v, kind, content_type, payload);
            Ok(())
        });
        match found {
            None => Err(AmendError::NotFound(format!(
                "no message {id} (never stored, or expired)"
            ))),
            Some(r) => r.map(|()| (body, uuid)),
        }
    }

    /// The latest amendment of `id`, written or staged.
    fn latest_amendment(&self, id: u64) -> Option<Amendment> {
        if let Some((_, a)) = self
            .amendments_unwritten
            .iter()
            .rev()
            .find(|(t, _)| *t == id)
        {
            return Some(*a);
        }
        self.shared
            .amendments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .latest(id, u64::MAX)
    }
}
