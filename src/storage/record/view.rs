//! Reading records: [`RecordView`] over the bytes of one record, and the
//! targeting rules (`pm_users`, `exclude_users`).
#![allow(clippy::indexing_slicing)] // every index below is checked against a length first

use super::{
    parse_layout, peek_record_len, Action, Author, ContentType, Layout, RecordError, BODY_OFFSET,
    FLAG_EXCLUDE_USERS, FLAG_PM_USERS,
};

/// A decoded record, borrowing the bytes it was read from.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    raw: &'a [u8],
    action: Action,
    content_type: ContentType,
    flags: u16,
    layout: Layout,
}

impl<'a> RecordView<'a> {
    /// Decodes and CRC-checks the record at the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a record, otherwise the
    /// record and the bytes it spans.
    ///
    /// # Errors
    /// [`RecordError::EndOfData`] at a zero length; the other variants when the
    /// bytes are not a valid record.
    pub fn decode(buf: &'a [u8]) -> Result<Option<(RecordView<'a>, usize)>, RecordError> {
        let Some(total) = peek_record_len(buf)? else {
            return Ok(None);
        };
        let Some(raw) = buf.get(..total) else {
            return Ok(None);
        };
        let crc = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
        if crc32fast::hash(&raw[8..]) != crc {
            return Err(RecordError::BadCrc);
        }
        Self::parse_trusted(raw).map(|v| Some((v, total)))
    }

    /// Parses a whole record without checking its CRC: for bytes that were
    /// checked once already (below a log's published head).
    ///
    /// # Errors
    /// When the fields do not parse.
    pub fn parse_trusted(raw: &'a [u8]) -> Result<RecordView<'a>, RecordError> {
        let body = raw
            .get(BODY_OFFSET..)
            .ok_or(RecordError::Malformed("record shorter than its header"))?;
        let (action, content_type, flags, mut layout) = parse_layout(body)?;
        let shift = |r: &mut Option<(usize, usize)>| {
            if let Some((s, e)) = r {
                *s += BODY_OFFSET;
                *e += BODY_OFFSET;
            }
        };
        shift(&mut layout.room);
        shift(&mut layout.object_class);
        shift(&mut layout.pm_users);
        shift(&mut layout.exclude_users);
        shift(&mut layout.idempotency_key);
        layout.ref_at += BODY_OFFSET;
        layout.payload_start += BODY_OFFSET;
        Ok(RecordView {
            raw,
            action,
            content_type,
            flags,
            layout,
        })
    }

    fn u64_at(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.raw[off..off + 8]);
        u64::from_le_bytes(b)
    }
    /// The whole record, as stored and as delivered.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
    /// The per-channel id.
    pub fn id(&self) -> u64 {
        self.u64_at(8)
    }
    /// Microseconds since the Unix epoch.
    pub fn created_at_us(&self) -> u64 {
        self.u64_at(16)
    }
    /// What the message does.
    pub fn action(&self) -> Action {
        self.action
    }
    /// How to read the payload.
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }
    /// The raw flag word.
    pub fn flags(&self) -> u16 {
        self.flags
    }
    /// Who published it.
    pub fn author(&self) -> Author {
        match (
            self.layout.author_admin,
            self.layout.author_api_key,
            self.layout.author_user,
        ) {
            (Some(id), _, _) => Author::Admin(id),
            (None, Some(api_key), Some(user)) => Author::User { api_key, user },
            (None, Some(id), None) => Author::ApiKey(id),
            _ => Author::None,
        }
    }
    fn range(&self, r: Option<(usize, usize)>) -> Option<&'a [u8]> {
        r.map(|(s, e)| &self.raw[s..e])
    }
    /// The room, lower-case.
    pub fn room(&self) -> Option<&'a [u8]> {
        self.range(self.layout.room)
    }
    /// The Data Object class of `{type: object}` metadata.
    pub fn object_class(&self) -> Option<&'a [u8]> {
        self.range(self.layout.object_class)
    }
    /// Users who alone may see the message (empty: everyone).
    pub fn pm_users(&self) -> NameIter<'a> {
        NameIter::new(self.range(self.layout.pm_users))
    }
    /// Users who never see the message.
    pub fn exclude_users(&self) -> NameIter<'a> {
        NameIter::new(self.range(self.layout.exclude_users))
    }
    /// True when the message names `pm_users` or `exclude_users`.
    pub fn is_targeted(&self) -> bool {
        self.layout.pm_users.is_some() || self.layout.exclude_users.is_some()
    }
    /// The client-chosen uuid.
    pub fn uuid(&self) -> Option<[u8; 16]> {
        self.layout.uuid
    }
    /// The id an edit/remove refers to.
    pub fn ref_id(&self) -> Option<u64> {
        self.layout.ref_id
    }
    /// The idempotency key.
    pub fn idempotency_key(&self) -> Option<&'a [u8]> {
        self.range(self.layout.idempotency_key)
    }
    /// The raw bytes of the fields `pm_users` and `exclude_users` and of
    /// the room (count or length byte included), for copying them.
    pub(super) fn raw_field(&self, r: Option<(usize, usize)>, with_len_byte: bool) -> &'a [u8] {
        match r {
            Some((s, e)) if with_len_byte => &self.raw[s - 1..e],
            Some((s, e)) => &self.raw[s..e],
            None => &[],
        }
    }
    pub(super) fn layout(&self) -> &Layout {
        &self.layout
    }
    /// The payload bytes.
    pub fn payload(&self) -> &'a [u8] {
        &self.raw[self.layout.payload_start..]
    }
    /// May `user` (None: a caller without a user identity) see this message?
    /// `exclude_users` wins over `pm_users`.
    pub fn visible_to(&self, user: Option<&[u8]>) -> bool {
        if !self.is_targeted() {
            return true;
        }
        let Some(user) = user else {
            return self.layout.pm_users.is_none();
        };
        if self.exclude_users().any(|n| n == user) {
            return false;
        }
        self.layout.pm_users.is_none() || self.pm_users().any(|n| n == user)
    }
}

/// May `viewer` see the record `raw` (a whole record below a published
/// head)? Records without `pm_users` / `exclude_users` answer from their
/// flag word alone, without being parsed.
pub fn visible(raw: &[u8], viewer: Option<&[u8]>) -> bool {
    let flags = match raw.get(26..28) {
        Some(f) => u16::from_le_bytes([f[0], f[1]]),
        None => return false,
    };
    if flags & (FLAG_PM_USERS | FLAG_EXCLUDE_USERS) == 0 {
        return true;
    }
    RecordView::parse_trusted(raw).is_ok_and(|v| v.visible_to(viewer))
}

/// Iterates the names of a `pm_users` / `exclude_users` list.
#[derive(Debug, Clone)]
pub struct NameIter<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> NameIter<'a> {
    fn new(list: Option<&'a [u8]>) -> NameIter<'a> {
        match list.and_then(|l| l.split_first()) {
            Some((&count, rest)) => NameIter {
                rest,
                left: usize::from(count),
            },
            None => NameIter { rest: &[], left: 0 },
        }
    }
}

impl<'a> Iterator for NameIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let (&len, rest) = self.rest.split_first()?;
        let (name, rest) = rest.split_at_checked(usize::from(len))?;
        self.rest = rest;
        self.left -= 1;
        Some(name)
    }
}
