//! A channel: its settings (the Syncano channel fields) and its log reader.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::limits;
use crate::storage::{Hole, LogReader, Position};
use crate::wire::{ErrorCode, WireError};

/// `default` or `separate_rooms` (every call names a room).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelKind {
    /// Rooms are optional.
    Default,
    /// Every publish, subscribe and history call names a room.
    SeparateRooms,
}

impl ChannelKind {
    fn name(self) -> &'static str {
        match self {
            ChannelKind::Default => "default",
            ChannelKind::SeparateRooms => "separate_rooms",
        }
    }
}

/// Ordered permission levels: publish implies subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    /// Nothing.
    None,
    /// May read.
    Subscribe,
    /// May read and write.
    Publish,
}

impl Permission {
    fn name(self) -> &'static str {
        match self {
            Permission::None => "none",
            Permission::Subscribe => "subscribe",
            Permission::Publish => "publish",
        }
    }
    fn parse(v: &Value, field: &str) -> Result<Permission, WireError> {
        match v.as_str() {
            Some("none") => Ok(Permission::None),
            Some("subscribe") => Ok(Permission::Subscribe),
            Some("publish") => Ok(Permission::Publish),
            _ => Err(bad(format!("{field} must be none, subscribe or publish"))),
        }
    }
}

/// The persisted settings of one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSettings {
    /// Numeric id; names the log directory.
    pub id: u64,
    /// Lower-case slug, unique.
    pub name: String,
    /// Free text.
    pub description: String,
    /// `default` or `separate_rooms`; read-only after creation.
    pub kind: ChannelKind,
    /// The group whose members get `group_permissions`.
    pub group: Option<u64>,
    /// What group members may do.
    pub group_permissions: Permission,
    /// What other users may do.
    pub other_permissions: Permission,
    /// Whether custom publishes are allowed (even admins need it).
    pub custom_publish: bool,
    /// Retention override in microseconds (`None`: the server default).
    pub retention_us: Option<u64>,
    /// Creation time, µs.
    pub created_at_us: u64,
    /// Last change, µs.
    pub updated_at_us: u64,
}

fn bad(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::BadRequest, message)
}

/// The built-in channel every instance has: separate rooms, open to everyone.
pub const DEFAULT_CHANNEL: &str = "default";
/// The built-in channel of server events: separate rooms, no custom publish.
pub const EVENTLOG_CHANNEL: &str = "eventlog";

/// The name of an instance's user stream: the log of its user-directed
/// messages (each names `pm_users`), which every user follows for its own.
/// Not a valid channel name, so no request reaches it by name; requests name
/// it with the empty channel name.
pub const USER_STREAM_CHANNEL: &str = "@users";

/// True for the names of the built-in channels.
pub fn is_builtin_name(name: &str) -> bool {
    name == DEFAULT_CHANNEL || name == EVENTLOG_CHANNEL
}

/// The server-wide id of channel `local_id` of instance `instance_id`.
pub fn global_channel_id(instance_id: u32, local_id: u64) -> u64 {
    (u64::from(instance_id) << 32) | (local_id & u64::from(u32::MAX))
}

/// True for 1..=`max` bytes of `a-z`, `0-9`, `_`, `-` (channel and
/// instance names).
pub fn is_slug(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A channel name as every path (binary and HTTP, create and lookup) reads
/// it: ASCII letters lower-cased, then 1..=64 bytes of `a-z`, `0-9`, `_`,
/// `-`. Borrows `name` when it is already in that form.
///
/// # Errors
/// `BadRequest` for a name over `CHANNEL_NAME_LEN_MAX` bytes (lengths are
/// checked first, as everywhere); `InvalidName` for an empty name or one
/// with other characters.
pub fn channel_name(name: &str) -> Result<Cow<'_, str>, WireError> {
    if name.len() > limits::CHANNEL_NAME_LEN_MAX {
        return Err(bad(format!(
            "channel name is {} bytes, over CHANNEL_NAME_LEN_MAX ({})",
            name.len(),
            limits::CHANNEL_NAME_LEN_MAX
        )));
    }
    let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    };
    if !is_slug(&name, limits::CHANNEL_NAME_LEN_MAX) {
        return Err(WireError::new(
            ErrorCode::InvalidName,
            format!(
                "invalid channel name {name:?}: channel names are 1 to 64 characters of a-z, 0-9, '_' and '-' (A-Z read as a-z)"
            ),
        ));
    }
    Ok(name)
}

/// Checks a room (not empty; at most `ROOM_LEN_MAX` bytes, checked where
/// it is read): any UTF-8 but control characters (U+0000 to U+001F, U+007F
/// to U+009F). Rooms compare with ASCII letters lower-cased; that is done
/// where they are read.
///
/// # Errors
/// `InvalidName`.
pub fn check_room_name(room: &str) -> Result<(), WireError> {
    if room.chars().any(char::is_control) {
        return Err(WireError::new(
            ErrorCode::InvalidName,
            format!("invalid room {room:?}: rooms may not contain control characters"),
        ));
    }
    Ok(())
}

impl ChannelSettings {
    /// The settings of built-in channel `name` of a new instance
    /// (`default`: open to every user, custom publish on; `eventlog`: no
    /// custom publish); both have separate rooms.
    pub fn builtin(name: &str, id: u64, now_us: u64) -> ChannelSettings {
        let open = name == DEFAULT_CHANNEL;
        ChannelSettings {
            id,
            name: name.to_string(),
            description: String::new(),
            kind: ChannelKind::SeparateRooms,
            group: None,
            group_permissions: Permission::None,
            other_permissions: if open {
                Permission::Publish
            } else {
                Permission::None
            },
            custom_publish: open,
            retention_us: None,
            created_at_us: now_us,
            updated_at_us: now_us,
        }
    }

    /// Settings for a new channel from a create request's JSON fields.
    ///
    /// # Errors
    /// `InvalidName` or `BadRequest` naming the field.
    pub fn from_create(
        v: &Map<String, Value>,
        id: u64,
        now_us: u64,
    ) -> Result<ChannelSettings, WireError> {
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("name is required"))?;
        let name = channel_name(name)?.into_owned();
        let kind = match v.get("type").map(|t| t.as_str()) {
            None | Some(Some("default")) => ChannelKind::Default,
            Some(Some("separate_rooms")) => ChannelKind::SeparateRooms,
            _ => return Err(bad("type must be default or separate_rooms")),
        };
        let mut s = ChannelSettings {
            id,
            name,
            description: String::new(),
            kind,
            group: None,
            group_permissions: Permission::None,
            other_permissions: Permission::None,
            custom_publish: true,
            retention_us: None,
            created_at_us: now_us,
            updated_at_us: now_us,
        };
        s.apply(v)?;
        Ok(s)
    }

    /// A copy with the mutable fields of `v` applied. `name` and `type`
    /// are read-only: `v` may carry them only with the current values (the
    /// name in any case).
    ///
    /// # Errors
    /// `BadRequest` when `v` changes `name` or `type`, or a field is invalid.
    pub fn updated(
        &self,
        v: &Map<String, Value>,
        now_us: u64,
    ) -> Result<ChannelSettings, WireError> {
        if let Some(name) = v.get("name") {
            let same = name
                .as_str()
                .and_then(|n| channel_name(n).ok())
                .is_some_and(|n| n == self.name);
            if !same {
                return Err(bad(format!(
                    "name is read-only: {:?} cannot be renamed",
                    self.name
                )));
            }
        }
        if let Some(kind) = v.get("type") {
            if kind.as_str() != Some(self.kind.name()) {
                return Err(bad(format!(
                    "type is read-only: {:?} stays {}",
                    self.name,
                    self.kind.name()
                )));
            }
        }
        let mut s = self.clone();
        s.apply(v)?;
        s.updated_at_us = now_us;
        Ok(s)
    }

    fn apply(&mut self, v: &Map<String, Value>) -> Result<(), WireError> {
        for (key, value) in v {
            match key.as_str() {
                "name" | "type" => {}
                "description" => {
                    let d = value
                        .as_str()
                        .ok_or_else(|| bad("description must be a string"))?;
                    if d.len() > limits::CHANNEL_DESCRIPTION_LEN_MAX {
                        return Err(bad("description over CHANNEL_DESCRIPTION_LEN_MAX"));
                    }
                    self.description = d.to_string();
                }
                "group" => {
                    self.group = match value {
                        Value::Null => None,
                        v => Some(
                            v.as_u64()
                                .ok_or_else(|| bad("group must be an id or null"))?,
                        ),
                    }
                }
                "group_permissions" => self.group_permissions = Permission::parse(value, key)?,
                "other_permissions" => self.other_permissions = Permission::parse(value, key)?,
                "custom_publish" => {
                    self.custom_publish = value
                        .as_bool()
                        .ok_or_else(|| bad("custom_publish must be a boolean"))?;
                }
                "retention_secs" => {
                    self.retention_us = match value {
                        Value::Null => None,
                        v => {
                            let secs = v
                                .as_u64()
                                .filter(|&s| s > 0 && s <= limits::RETENTION_SECS_MAX)
                                .ok_or_else(|| {
                                    bad("retention_secs must be 1..=RETENTION_SECS_MAX")
                                })?;
                            Some(secs * 1_000_000)
                        }
                    }
                }
                other => return Err(bad(format!("unknown channel field {other:?}"))),
            }
        }
        Ok(())
    }
}

/// A read "after id N" where N is beyond the head of its channel: no such
/// id was ever assigned there (`AheadOfHead`, 33).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AheadOfHead {
    /// The channel's head when the read was checked.
    pub head_id: u64,
    /// What a client is told (naming the channel, the id and the head).
    pub message: String,
}

impl From<AheadOfHead> for WireError {
    fn from(e: AheadOfHead) -> WireError {
        WireError::new(ErrorCode::AheadOfHead, e.message)
    }
}

/// A live channel: settings behind a lock (changed rarely) and the reader of
/// its log (read on every delivery, lock-free).
#[derive(Debug)]
pub struct Channel {
    /// Server-wide numeric id: the instance id in the high 32 bits, the
    /// channel's id in its instance in the low 32 (stable for the channel's life).
    pub id: u64,
    /// The instance the channel belongs to.
    pub instance_id: u32,
    name: String,
    kind: ChannelKind,
    settings: Mutex<ChannelSettings>,
    reader: LogReader,
    deleted: AtomicBool,
}

impl Channel {
    /// A channel of instance `instance_id` over an open log's reader.
    pub fn new(instance_id: u32, settings: ChannelSettings, reader: LogReader) -> Channel {
        Channel {
            id: global_channel_id(instance_id, settings.id),
            instance_id,
            name: settings.name.clone(),
            kind: settings.kind,
            settings: Mutex::new(settings),
            reader,
            deleted: AtomicBool::new(false),
        }
    }
    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Default or separate rooms (never changes).
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }
    /// A copy of the settings.
    pub fn settings(&self) -> ChannelSettings {
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    /// Replaces the settings.
    pub fn set_settings(&self, s: ChannelSettings) {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }
    /// Calls `f` with the current settings (no copy).
    pub fn with_settings<R>(&self, f: impl FnOnce(&ChannelSettings) -> R) -> R {
        f(&self.settings.lock().unwrap_or_else(|p| p.into_inner()))
    }
    /// True for the instance's user stream ([`USER_STREAM_CHANNEL`]).
    pub fn is_user_stream(&self) -> bool {
        self.name == USER_STREAM_CHANNEL
    }

    /// True for the built-in channels every instance has (`default`,
    /// `eventlog`), which cannot be deleted.
    pub fn is_builtin(&self) -> bool {
        is_builtin_name(&self.name)
    }
    /// True for `eventlog`, which nobody publishes to (it carries server events).
    pub fn is_eventlog(&self) -> bool {
        self.name == EVENTLOG_CHANNEL
    }
    /// The log reader.
    pub fn reader(&self) -> &LogReader {
        &self.reader
    }
    /// Checks where a read "after id `after_id`" starts: the single check of
    /// every path that takes such an id from a client (`Subscribe` after
    /// id, `History` after_id, the HTTP poll's `last_id`). Ids never go
    /// backwards in a channel (nor for its name), so an id beyond the head
    /// was never assigned here: the caller is confused (another channel's
    /// id, or a channel it does not know was replaced), and is told so
    /// rather than left waiting for ids that would skip its messages. An id
    /// inside ids a crash took back is no error: the crash hole is returned,
    /// and the read continues above it.
    ///
    /// # Errors
    /// [`AheadOfHead`], naming the head id.
    pub fn check_after(&self, after_id: u64) -> Result<Option<Hole>, AheadOfHead> {
        match self.reader.position(after_id) {
            Position::Valid => Ok(None),
            Position::TakenBack(hole) => Ok(Some(hole)),
            Position::Ahead { head_id } => Err(AheadOfHead {
                head_id,
                message: format!(
                    "id {after_id} is beyond the head of channel {:?}: head_id {head_id}",
                    self.name
                ),
            }),
        }
    }
    /// Marks the channel deleted: new requests fail, subscriptions close.
    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }
    /// Whether the channel was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }
    /// The channel as the JSON object clients see.
    pub fn to_json(&self) -> Value {
        let s = self.settings();
        json!({
            "id": s.id,
            "name": s.name,
            "description": s.description,
            "type": s.kind.name(),
            "group": s.group,
            "group_permissions": s.group_permissions.name(),
            "other_permissions": s.other_permissions.name(),
            "custom_publish": s.custom_publish,
            "retention_secs": s.retention_us.map(|us| us / 1_000_000),
            "created_at": crate::time::format_rfc3339_us(s.created_at_us),
            "updated_at": crate::time::format_rfc3339_us(s.updated_at_us),
            "head_id": self.reader.head_id(),
            "oldest_id": self.reader.oldest_id(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test input is an object"),
        }
    }

    #[test]
    fn names_are_lower_case_slugs_read_the_same_on_every_path() {
        assert_eq!(channel_name("orders-eu_1").unwrap(), "orders-eu_1");
        assert!(matches!(channel_name("orders"), Ok(Cow::Borrowed(_))));
        assert_eq!(channel_name("Orders-EU").unwrap(), "orders-eu");
        for bad in ["", "a b", "Ä", "../x", "%2e%2e"] {
            assert_eq!(
                channel_name(bad).unwrap_err().code,
                ErrorCode::InvalidName,
                "{bad:?}"
            );
        }
        assert_eq!(
            channel_name(&"x".repeat(65)).unwrap_err().code,
            ErrorCode::BadRequest,
            "an over-long name is a length error, like every field over its limit"
        );
    }

    #[test]
    fn create_applies_fields_and_rejects_unknown_ones() {
        let s = ChannelSettings::from_create(
            &obj(json!({"name": "Rooms", "type": "separate_rooms", "other_permissions": "subscribe", "custom_publish": false})),
            7,
            1,
        )
        .unwrap();
        assert_eq!(s.name, "rooms");
        assert_eq!(s.kind, ChannelKind::SeparateRooms);
        assert_eq!(s.other_permissions, Permission::Subscribe);
        assert!(!s.custom_publish);
        assert!(
            ChannelSettings::from_create(&obj(json!({"name": "x", "colour": 1})), 1, 1).is_err()
        );
        assert!(
            ChannelSettings::from_create(&obj(json!({"name": "x", "type": "rooms"})), 1, 1)
                .is_err()
        );
    }

    #[test]
    fn name_and_type_are_read_only() {
        let s = ChannelSettings::from_create(&obj(json!({"name": "a"})), 1, 1).unwrap();
        assert!(s.updated(&obj(json!({"name": "b"})), 2).is_err());
        assert!(s
            .updated(&obj(json!({"type": "separate_rooms"})), 2)
            .is_err());
        let u = s
            .updated(
                &obj(json!({"name": "A", "type": "default", "description": "d"})),
                2,
            )
            .unwrap();
        assert_eq!(u.description, "d");
        assert_eq!(u.updated_at_us, 2);
    }
}
