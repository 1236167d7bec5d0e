//! The record format: one message as it sits in a segment and as it travels
//! to subscribers (deliveries carry these exact bytes).
//!
//! Sans-IO: everything here takes and returns byte slices. The layout is
//! normative and documented in `protocol.md`, section "On-disk format":
//!
//! ```text
//! off  size  field
//! 0    4     len          u32, bytes after the first 8 (record size = 8 + len)
//! 4    4     crc          u32, CRC-32 (IEEE) of bytes [8, 8 + len)
//! 8    8     id           u64, per-channel sequence from 1
//! 16   8     created_at   u64, microseconds since the Unix epoch
//! 24   1     action       u8
//! 25   1     content_type u8
//! 26   2     flags        u16, which optional fields follow
//! 28   ...   optional fields, in flag-bit order, then the payload to the end
//! ```
//!
//! Bytes 24.. are the *message body*. A publisher sends exactly a message body
//! (without the author fields, which the server fills in from the caller's
//! identity), so a record is built by one header write and one copy.
#![allow(clippy::indexing_slicing)] // every index below is checked against a length first

use crate::limits;

mod amend;
mod view;

pub use amend::{current_version, encode_amend_body, AmendKind};
pub use view::{visible, NameIter, RecordView};

/// Bytes before the optional fields: len, crc, id, created_at, action, content_type, flags.
pub const RECORD_HEADER_LEN: usize = 28;
/// Offset of the message body (action) inside a record.
pub const BODY_OFFSET: usize = 24;
/// Bytes of a body before its optional fields: action, content_type, flags.
pub const BODY_HEADER_LEN: usize = 4;
/// Largest record accepted when decoding, in bytes (8 + len).
pub const RECORD_LEN_MAX: usize = limits::FRAME_LEN_MAX as usize + 4096;

/// Flag bit: `author.admin` (u64) follows.
pub const FLAG_AUTHOR_ADMIN: u16 = 1 << 0;
/// Flag bit: `author.api_key` (u64) follows.
pub const FLAG_AUTHOR_API_KEY: u16 = 1 << 1;
/// Flag bit: `author.user` (u64) follows.
pub const FLAG_AUTHOR_USER: u16 = 1 << 2;
/// Flag bit: room (u8 length, bytes, lower-case) follows.
pub const FLAG_ROOM: u16 = 1 << 3;
/// Flag bit: metadata `{type: object, class}` (u8 length, bytes) follows.
pub const FLAG_OBJECT_CLASS: u16 = 1 << 4;
/// Flag bit: `pm_users` (u8 count, then u8 length + bytes each) follows.
pub const FLAG_PM_USERS: u16 = 1 << 5;
/// Flag bit: `exclude_users` (u8 count, then u8 length + bytes each) follows.
pub const FLAG_EXCLUDE_USERS: u16 = 1 << 6;
/// Flag bit: uuid (16 bytes) follows.
pub const FLAG_UUID: u16 = 1 << 7;
/// Flag bit: the id an edit/remove refers to (u64) follows.
pub const FLAG_REF_ID: u16 = 1 << 8;
/// Flag bit: idempotency key (u8 length, bytes) follows.
pub const FLAG_IDEMPOTENCY_KEY: u16 = 1 << 9;
/// Flag bit: a live-only message, delivered to live subscribers and never
/// stored (no field follows; a record with it has id 0).
pub const FLAG_LIVE: u16 = 1 << 10;
/// The author bits, which only the server sets.
pub const FLAGS_AUTHOR: u16 = FLAG_AUTHOR_ADMIN | FLAG_AUTHOR_API_KEY | FLAG_AUTHOR_USER;
/// Every defined bit; the others must be zero.
pub const FLAGS_KNOWN: u16 = (1 << 11) - 1;

/// What a message does (Syncano `action`, Channelstream edit/delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Action {
    /// A custom publish (the default).
    Custom = 0,
    /// A Data Object was created.
    Create = 1,
    /// A Data Object was updated.
    Update = 2,
    /// A Data Object was deleted.
    Delete = 3,
    /// An edit of an earlier message (`ref_id` names it).
    Edit = 4,
    /// A removal of an earlier message (`ref_id` names it).
    Remove = 5,
}

impl Action {
    /// The action for a wire/disk byte.
    pub fn from_u8(v: u8) -> Option<Action> {
        Some(match v {
            0 => Action::Custom,
            1 => Action::Create,
            2 => Action::Update,
            3 => Action::Delete,
            4 => Action::Edit,
            5 => Action::Remove,
            _ => return None,
        })
    }
    /// The lower-case name used in JSON (`custom`, `create`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Action::Custom => "custom",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Edit => "edit",
            Action::Remove => "remove",
        }
    }
    /// The action for a JSON name.
    pub fn from_name(s: &str) -> Option<Action> {
        [
            Action::Custom,
            Action::Create,
            Action::Update,
            Action::Delete,
            Action::Edit,
            Action::Remove,
        ]
        .into_iter()
        .find(|a| a.name() == s)
    }
}

/// How the payload bytes are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ContentType {
    /// Opaque bytes.
    Bytes = 0,
    /// A JSON document (UTF-8).
    Json = 1,
    /// UTF-8 text.
    Text = 2,
}

impl ContentType {
    /// The content type for a wire/disk byte.
    pub fn from_u8(v: u8) -> Option<ContentType> {
        Some(match v {
            0 => ContentType::Bytes,
            1 => ContentType::Json,
            2 => ContentType::Text,
            _ => return None,
        })
    }
}

/// Who published a message; filled in by the server from the caller's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Author {
    /// No recorded author (system messages).
    #[default]
    None,
    /// An admin (account) key.
    Admin(u64),
    /// An API key without a user key.
    ApiKey(u64),
    /// An API key together with a user key.
    User {
        /// The API key's id.
        api_key: u64,
        /// The user's id.
        user: u64,
    },
}

impl Author {
    fn flags(self) -> u16 {
        match self {
            Author::None => 0,
            Author::Admin(_) => FLAG_AUTHOR_ADMIN,
            Author::ApiKey(_) => FLAG_AUTHOR_API_KEY,
            Author::User { .. } => FLAG_AUTHOR_API_KEY | FLAG_AUTHOR_USER,
        }
    }
    /// Bytes the author takes in a record.
    pub fn encoded_len(self) -> usize {
        match self {
            Author::None => 0,
            Author::Admin(_) | Author::ApiKey(_) => 8,
            Author::User { .. } => 16,
        }
    }
    fn write(self, out: &mut [u8]) {
        match self {
            Author::None => {}
            Author::Admin(id) | Author::ApiKey(id) => out[..8].copy_from_slice(&id.to_le_bytes()),
            Author::User { api_key, user } => {
                out[..8].copy_from_slice(&api_key.to_le_bytes());
                out[8..16].copy_from_slice(&user.to_le_bytes());
            }
        }
    }
}

/// Why bytes are not a valid record or body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// A zero length: the end of written data in a segment.
    EndOfData,
    /// The length field is over [`RECORD_LEN_MAX`] or too small for a header.
    BadLength,
    /// The CRC does not match the bytes.
    BadCrc,
    /// The fields do not parse (unknown action, flag, or lengths past the end).
    Malformed(&'static str),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::EndOfData => write!(f, "end of data"),
            RecordError::BadLength => write!(f, "bad record length"),
            RecordError::BadCrc => write!(f, "record CRC mismatch"),
            RecordError::Malformed(why) => write!(f, "malformed record: {why}"),
        }
    }
}

impl std::error::Error for RecordError {}

/// The fields a publisher sets, for building a message body.
#[derive(Debug, Clone, Default)]
pub struct MessageFields<'a> {
    /// What the message does; `Custom` when unset.
    pub action: Option<Action>,
    /// How to read the payload.
    pub content_type: Option<ContentType>,
    /// The room (lower-cased by the server).
    pub room: Option<&'a str>,
    /// Data Object class for `{type: object}` metadata.
    pub object_class: Option<&'a str>,
    /// Only these users may see the message.
    pub pm_users: &'a [&'a str],
    /// These users never see the message.
    pub exclude_users: &'a [&'a str],
    /// A client-chosen uuid.
    pub uuid: Option<[u8; 16]>,
    /// The id an edit/remove refers to.
    pub ref_id: Option<u64>,
    /// Duplicate publishes with this key inside retention return the original id.
    pub idempotency_key: Option<&'a [u8]>,
    /// Live-only: delivered to live subscribers, never stored.
    pub live: bool,
}

fn push_short(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u8::try_from(bytes.len()).expect("caller checked the length against limits");
    out.push(len);
    out.extend_from_slice(bytes);
}

/// Appends a message body (no author) for `fields` and `payload` to `out`.
///
/// # Panics
/// Panics if a string field is longer than 255 bytes or a list holds more
/// than 255 names; the server rejects anything over the (smaller) limits.
pub fn encode_body(out: &mut Vec<u8>, fields: &MessageFields<'_>, payload: &[u8]) {
    let mut flags = 0u16;
    let set = |flags: &mut u16, on: bool, bit: u16| {
        if on {
            *flags |= bit;
        }
    };
    set(&mut flags, fields.room.is_some(), FLAG_ROOM);
    set(&mut flags, fields.object_class.is_some(), FLAG_OBJECT_CLASS);
    set(&mut flags, !fields.pm_users.is_empty(), FLAG_PM_USERS);
    set(
        &mut flags,
        !fields.exclude_users.is_empty(),
        FLAG_EXCLUDE_USERS,
    );
    set(&mut flags, fields.uuid.is_some(), FLAG_UUID);
    set(&mut flags, fields.ref_id.is_some(), FLAG_REF_ID);
    set(
        &mut flags,
        fields.idempotency_key.is_some(),
        FLAG_IDEMPOTENCY_KEY,
    );
    set(&mut flags, fields.live, FLAG_LIVE);
    out.push(fields.action.unwrap_or(Action::Custom) as u8);
    out.push(fields.content_type.unwrap_or(ContentType::Bytes) as u8);
    out.extend_from_slice(&flags.to_le_bytes());
    if let Some(room) = fields.room {
        push_short(out, room.as_bytes());
    }
    if let Some(class) = fields.object_class {
        push_short(out, class.as_bytes());
    }
    for list in [fields.pm_users, fields.exclude_users] {
        if !list.is_empty() {
            out.push(u8::try_from(list.len()).expect("caller checked the count"));
            for name in list {
                push_short(out, name.as_bytes());
            }
        }
    }
    if let Some(uuid) = fields.uuid {
        out.extend_from_slice(&uuid);
    }
    if let Some(ref_id) = fields.ref_id {
        out.extend_from_slice(&ref_id.to_le_bytes());
    }
    if let Some(key) = fields.idempotency_key {
        push_short(out, key);
    }
    out.extend_from_slice(payload);
}

/// Where the variable fields of a body or record sit, relative to the start
/// of the flags' following byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Layout {
    author_admin: Option<u64>,
    author_api_key: Option<u64>,
    author_user: Option<u64>,
    room: Option<(usize, usize)>,
    object_class: Option<(usize, usize)>,
    pm_users: Option<(usize, usize)>,
    exclude_users: Option<(usize, usize)>,
    uuid: Option<[u8; 16]>,
    ref_id: Option<u64>,
    idempotency_key: Option<(usize, usize)>,
    /// Where the ref_id field starts (or would start).
    ref_at: usize,
    payload_start: usize,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<(usize, usize), RecordError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(RecordError::Malformed(what))?;
        let range = (self.pos, end);
        self.pos = end;
        Ok(range)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, RecordError> {
        let (s, _) = self.take(1, what)?;
        Ok(self.buf[s])
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, RecordError> {
        let (s, e) = self.take(8, what)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.buf[s..e]);
        Ok(u64::from_le_bytes(b))
    }
    fn short(&mut self, max: usize, what: &'static str) -> Result<(usize, usize), RecordError> {
        let n = usize::from(self.u8(what)?);
        if n == 0 || n > max {
            return Err(RecordError::Malformed(what));
        }
        self.take(n, what)
    }
    fn names(&mut self, what: &'static str) -> Result<(usize, usize), RecordError> {
        let start = self.pos;
        let count = usize::from(self.u8(what)?);
        if count == 0 || count > limits::TARGET_USERS_MAX {
            return Err(RecordError::Malformed(what));
        }
        for _ in 0..count {
            self.short(limits::TARGET_USER_LEN_MAX, what)?;
        }
        Ok((start, self.pos))
    }
}

/// Parses the optional fields of `buf`, which starts at the action byte.
fn parse_layout(buf: &[u8]) -> Result<(Action, ContentType, u16, Layout), RecordError> {
    if buf.len() < BODY_HEADER_LEN {
        return Err(RecordError::Malformed("body shorter than its header"));
    }
    let action = Action::from_u8(buf[0]).ok_or(RecordError::Malformed("unknown action"))?;
    let content_type =
        ContentType::from_u8(buf[1]).ok_or(RecordError::Malformed("unknown content type"))?;
    let flags = u16::from_le_bytes([buf[2], buf[3]]);
    if flags & !FLAGS_KNOWN != 0 {
        return Err(RecordError::Malformed("unknown flag bits"));
    }
    let mut r = Reader {
        buf,
        pos: BODY_HEADER_LEN,
    };
    let mut l = Layout::default();
    let has = |bit: u16| flags & bit != 0;
    if has(FLAG_AUTHOR_ADMIN) {
        l.author_admin = Some(r.u64("author admin")?);
    }
    if has(FLAG_AUTHOR_API_KEY) {
        l.author_api_key = Some(r.u64("author api key")?);
    }
    if has(FLAG_AUTHOR_USER) {
        l.author_user = Some(r.u64("author user")?);
    }
    if has(FLAG_ROOM) {
        l.room = Some(r.short(limits::ROOM_LEN_MAX, "room")?);
    }
    if has(FLAG_OBJECT_CLASS) {
        l.object_class = Some(r.short(limits::OBJECT_CLASS_LEN_MAX, "object class")?);
    }
    if has(FLAG_PM_USERS) {
        l.pm_users = Some(r.names("pm_users")?);
    }
    if has(FLAG_EXCLUDE_USERS) {
        l.exclude_users = Some(r.names("exclude_users")?);
    }
    if has(FLAG_UUID) {
        let (s, e) = r.take(16, "uuid")?;
        let mut u = [0u8; 16];
        u.copy_from_slice(&buf[s..e]);
        l.uuid = Some(u);
    }
    l.ref_at = r.pos;
    if has(FLAG_REF_ID) {
        l.ref_id = Some(r.u64("ref id")?);
    }
    if has(FLAG_IDEMPOTENCY_KEY) {
        l.idempotency_key = Some(r.short(limits::IDEMPOTENCY_KEY_LEN_MAX, "idempotency key")?);
    }
    l.payload_start = r.pos;
    Ok((action, content_type, flags, l))
}

/// What the server learns when it checks a publisher's message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyInfo {
    /// Byte range of the room inside the body.
    pub room: Option<(usize, usize)>,
    /// Byte range of the idempotency key inside the body.
    pub idempotency_key: Option<(usize, usize)>,
    /// Bytes of payload.
    pub payload_len: usize,
}

/// Checks a publisher's message body and lower-cases its room in place.
///
/// # Errors
/// [`RecordError::Malformed`] when a field is out of its limits, an author bit
/// is set (only the server sets authors), or the room is not valid UTF-8.
pub fn check_body(body: &mut [u8]) -> Result<BodyInfo, RecordError> {
    let (action, _, flags, l) = parse_layout(body)?;
    if flags & FLAGS_AUTHOR != 0 {
        return Err(RecordError::Malformed(
            "author fields are set by the server",
        ));
    }
    if matches!(action, Action::Edit | Action::Remove) || flags & FLAG_REF_ID != 0 {
        return Err(RecordError::Malformed(
            "edits and removals are made with the Edit and Delete requests (action edit/remove and ref_id are set by the server)",
        ));
    }
    if flags & FLAG_LIVE != 0 && flags & FLAG_IDEMPOTENCY_KEY != 0 {
        return Err(RecordError::Malformed(
            "a live-only message is never stored, so it has no idempotency key",
        ));
    }
    let payload_len = body.len().saturating_sub(l.payload_start);
    if payload_len > limits::PAYLOAD_LEN_MAX as usize {
        return Err(RecordError::Malformed("payload over its limit"));
    }
    if let Some((s, e)) = l.room {
        let room = &mut body[s..e];
        if std::str::from_utf8(room).is_err() {
            return Err(RecordError::Malformed("room is not UTF-8"));
        }
        room.make_ascii_lowercase();
    }
    Ok(BodyInfo {
        room: l.room,
        idempotency_key: l.idempotency_key,
        payload_len,
    })
}

/// The idempotency key of a checked body, if it has one (without parsing
/// the body when its flag is clear).
pub fn body_idempotency_key(body: &[u8]) -> Option<&[u8]> {
    let flags = u16::from_le_bytes([*body.get(2)?, *body.get(3)?]);
    if flags & FLAG_IDEMPOTENCY_KEY == 0 {
        return None;
    }
    let (_, _, _, l) = parse_layout(body).ok()?;
    let (s, e) = l.idempotency_key?;
    body.get(s..e)
}

/// The uuid of a checked body, if it has one (without parsing the body when
/// its flag is clear).
pub fn body_uuid(body: &[u8]) -> Option<[u8; 16]> {
    let flags = u16::from_le_bytes([*body.get(2)?, *body.get(3)?]);
    if flags & FLAG_UUID == 0 {
        return None;
    }
    let (_, _, _, l) = parse_layout(body).ok()?;
    l.uuid
}

/// True for a body that names `pm_users`.
pub fn body_is_targeted(body: &[u8]) -> bool {
    body.get(2..4)
        .is_some_and(|f| u16::from_le_bytes([f[0], f[1]]) & FLAG_PM_USERS != 0)
}

/// True for the body of a live-only message.
pub fn body_is_live(body: &[u8]) -> bool {
    body.get(2..4)
        .is_some_and(|f| u16::from_le_bytes([f[0], f[1]]) & FLAG_LIVE != 0)
}

/// A checked body without a uuid, with `uuid` added (in its place among the
/// optional fields).
pub fn body_with_uuid(body: &[u8], uuid: [u8; 16]) -> Vec<u8> {
    let Ok((_, _, flags, l)) = parse_layout(body) else {
        return body.to_vec();
    };
    if l.uuid.is_some() {
        return body.to_vec();
    }
    let mut out = Vec::with_capacity(body.len() + 16);
    out.extend_from_slice(&body[..2]);
    out.extend_from_slice(&(flags | FLAG_UUID).to_le_bytes());
    out.extend_from_slice(&body[BODY_HEADER_LEN..l.ref_at]);
    out.extend_from_slice(&uuid);
    out.extend_from_slice(&body[l.ref_at..]);
    out
}

/// A random RFC 9562 version 4 uuid.
///
/// # Errors
/// When the OS has no randomness to give.
pub fn random_uuid() -> Result<[u8; 16], getrandom::Error> {
    let mut u = [0u8; 16];
    getrandom::fill(&mut u)?;
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    Ok(u)
}

/// The room of a checked body, if it has one (without parsing the body when
/// its flag is clear).
pub fn body_room(body: &[u8]) -> Option<&[u8]> {
    let flags = u16::from_le_bytes([*body.get(2)?, *body.get(3)?]);
    if flags & FLAG_ROOM == 0 {
        return None;
    }
    let (_, _, _, l) = parse_layout(body).ok()?;
    let (s, e) = l.room?;
    body.get(s..e)
}

/// Bytes of the record built from `body` with `author`.
pub fn record_len(author: Author, body_len: usize) -> usize {
    BODY_OFFSET + body_len + author.encoded_len()
}

/// Writes the record for (`id`, `created_at_us`, `author`, checked `body`)
/// into `dst`, CRC included, and returns its length.
///
/// # Panics
/// Panics if `dst` is shorter than [`record_len`] or `body` is shorter than
/// its header; both are caller bugs (the body was checked at the edge).
pub fn write_record(
    dst: &mut [u8],
    id: u64,
    created_at_us: u64,
    author: Author,
    body: &[u8],
) -> usize {
    let total = record_len(author, body.len());
    assert!(dst.len() >= total, "record does not fit its destination");
    assert!(
        body.len() >= BODY_HEADER_LEN,
        "body shorter than its header"
    );
    let len = u32::try_from(total - 8).expect("record length bounded by limits");
    let flags = u16::from_le_bytes([body[2], body[3]]) | author.flags();
    dst[0..4].copy_from_slice(&len.to_le_bytes());
    dst[8..16].copy_from_slice(&id.to_le_bytes());
    dst[16..24].copy_from_slice(&created_at_us.to_le_bytes());
    dst[24] = body[0];
    dst[25] = body[1];
    dst[26..28].copy_from_slice(&flags.to_le_bytes());
    let author_len = author.encoded_len();
    author.write(&mut dst[28..28 + author_len]);
    dst[28 + author_len..total].copy_from_slice(&body[BODY_HEADER_LEN..]);
    let crc = crc32fast::hash(&dst[8..total]);
    dst[4..8].copy_from_slice(&crc.to_le_bytes());
    total
}

/// Appends the record for (`id`, `created_at_us`, `author`, checked `body`)
/// to `out`, CRC included, and returns its length: the same bytes as
/// [`write_record`], built without zero-filling the destination first.
///
/// # Panics
/// Panics if `body` is shorter than its header (a caller bug: the body was
/// checked at the edge).
pub fn append_record(
    out: &mut Vec<u8>,
    id: u64,
    created_at_us: u64,
    author: Author,
    body: &[u8],
) -> usize {
    assert!(
        body.len() >= BODY_HEADER_LEN,
        "body shorter than its header"
    );
    let total = record_len(author, body.len());
    let len = u32::try_from(total - 8).expect("record length bounded by limits");
    let flags = u16::from_le_bytes([body[2], body[3]]) | author.flags();
    let author_len = author.encoded_len();
    let head_len = RECORD_HEADER_LEN + author_len;
    let mut head = [0u8; RECORD_HEADER_LEN + 16];
    head[0..4].copy_from_slice(&len.to_le_bytes());
    head[8..16].copy_from_slice(&id.to_le_bytes());
    head[16..24].copy_from_slice(&created_at_us.to_le_bytes());
    head[24] = body[0];
    head[25] = body[1];
    head[26..28].copy_from_slice(&flags.to_le_bytes());
    author.write(&mut head[RECORD_HEADER_LEN..head_len]);
    let start = out.len();
    out.reserve(total);
    out.extend_from_slice(&head[..head_len]);
    out.extend_from_slice(&body[BODY_HEADER_LEN..]);
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    total
}

/// Reads the length prefix at the start of `buf`: `Ok(None)` when fewer than
/// 4 bytes are there, the whole record size (8 + len) otherwise.
///
/// # Errors
/// [`RecordError::EndOfData`] for a zero length, [`RecordError::BadLength`] for
/// a length that no valid record has.
pub fn peek_record_len(buf: &[u8]) -> Result<Option<usize>, RecordError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if len == 0 {
        return Err(RecordError::EndOfData);
    }
    let total = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(8))
        .ok_or(RecordError::BadLength)?;
    if !(RECORD_HEADER_LEN..=RECORD_LEN_MAX).contains(&total) {
        return Err(RecordError::BadLength);
    }
    Ok(Some(total))
}

#[cfg(test)]
mod tests;
