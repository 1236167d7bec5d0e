//! Instances and the identities that live in them: API keys, users and
//! groups (admin keys live in the broker, since a server-wide one belongs to
//! no instance).
//!
//! Everything here is plain in-memory state with its persisted form; the
//! broker serializes changes, writes the snapshots and keeps the key index.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::channel::Channel;
use super::id_marks::IdMarks;
use super::keys::KeyHash;
use crate::limits;
use crate::time::format_rfc3339_us;
use crate::wire::{ErrorCode, WireError};

/// An admin key as stored: the hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminKeyRecord {
    /// Id, unique on the server.
    pub id: u64,
    /// SHA-256 of the key.
    pub sha256: KeyHash,
    /// The instance it administers; `None`: every instance.
    pub instance: Option<u32>,
    /// Free text.
    pub description: String,
    /// Creation time, µs.
    pub created_at_us: u64,
    /// Revoked keys are kept (hash only) so that a bootstrap key, once
    /// revoked, is not added again at the next start.
    pub revoked: bool,
}

impl AdminKeyRecord {
    /// The key as clients see it (no secret).
    pub fn to_json(&self, instance_name: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "kind": if self.instance.is_some() { "admin" } else { "server_admin" },
            "instance": instance_name,
            "description": self.description,
            "created_at": format_rfc3339_us(self.created_at_us),
        })
    }
}

/// An API key of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Id, unique in the instance.
    pub id: u64,
    /// SHA-256 of the key.
    pub sha256: KeyHash,
    /// Free text.
    pub description: String,
    /// Bypasses channel group/other permissions (not `custom_publish`, not rooms).
    pub ignore_acl: bool,
    /// May read every channel without a user key.
    pub allow_anonymous_read: bool,
    /// Creation time, µs.
    pub created_at_us: u64,
}

impl ApiKeyRecord {
    /// The key as clients see it (no secret).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "kind": "api",
            "description": self.description,
            "ignore_acl": self.ignore_acl,
            "allow_anonymous_read": self.allow_anonymous_read,
            "created_at": format_rfc3339_us(self.created_at_us),
        })
    }
}

/// A user of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Id, unique in the instance.
    pub id: u64,
    /// Unique in the instance; what `pm_users` / `exclude_users` name.
    pub username: String,
    /// SHA-256 of the user key.
    pub sha256: KeyHash,
    /// Creation time, µs.
    pub created_at_us: u64,
    /// Last change, µs.
    pub updated_at_us: u64,
}

/// A group of users of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// Id, unique in the instance.
    pub id: u64,
    /// Unique in the instance.
    pub name: String,
    /// Free text.
    pub description: String,
    /// User ids, sorted, without duplicates.
    pub members: Vec<u64>,
    /// Creation time, µs.
    pub created_at_us: u64,
}

impl GroupRecord {
    /// Whether `user` is a member.
    pub fn has_member(&self, user: u64) -> bool {
        self.members.binary_search(&user).is_ok()
    }
    /// The group as clients see it.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "members": self.members,
            "created_at": format_rfc3339_us(self.created_at_us),
        })
    }
}

/// The persisted identities of one instance. Ids are never reused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identities {
    /// Next API key id.
    pub next_api_key_id: u64,
    /// API keys by id.
    pub api_keys: BTreeMap<u64, ApiKeyRecord>,
    /// Next user id.
    pub next_user_id: u64,
    /// Users by id.
    pub users: BTreeMap<u64, UserRecord>,
    /// Next group id.
    pub next_group_id: u64,
    /// Groups by id.
    pub groups: BTreeMap<u64, GroupRecord>,
}

impl Identities {
    /// Whether user `user` is in group `group`.
    pub fn is_member(&self, group: u64, user: u64) -> bool {
        self.groups.get(&group).is_some_and(|g| g.has_member(user))
    }

    /// The user called `username`.
    pub fn user_by_name(&self, username: &str) -> Option<&UserRecord> {
        self.users.values().find(|u| u.username == username)
    }

    /// The group called `name`.
    pub fn group_by_name(&self, name: &str) -> Option<&GroupRecord> {
        self.groups.values().find(|g| g.name == name)
    }

    /// The user as clients see it, with the ids of its groups.
    pub fn user_json(&self, u: &UserRecord) -> Value {
        let groups: Vec<u64> = self
            .groups
            .values()
            .filter(|g| g.has_member(u.id))
            .map(|g| g.id)
            .collect();
        json!({
            "id": u.id,
            "username": u.username,
            "groups": groups,
            "created_at": format_rfc3339_us(u.created_at_us),
            "updated_at": format_rfc3339_us(u.updated_at_us),
        })
    }
}

/// The persisted description of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Numeric id: names the instance's directory. Never reused.
    pub id: u32,
    /// Lower-case slug, unique on the server.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Creation time, µs.
    pub created_at_us: u64,
}

/// A live instance: its channels and identities.
#[derive(Debug)]
pub struct Instance {
    /// What is persisted about the instance itself.
    pub record: InstanceRecord,
    /// Channels by name.
    pub(super) channels: RwLock<HashMap<String, Arc<Channel>>>,
    /// API keys, users and groups.
    pub(super) identities: RwLock<Identities>,
    /// Next channel id in this instance (persisted with the channels).
    pub(super) next_channel_id: RwLock<u64>,
    /// The HTTP poll rate bucket: (tokens, last refill µs).
    poll_bucket: std::sync::Mutex<(f64, u64)>,
    /// The highest ids of deleted channel names (persisted with the channels).
    id_marks: std::sync::Mutex<IdMarks>,
    deleted: AtomicBool,
}

impl Instance {
    /// A live instance over its records.
    pub(super) fn new(record: InstanceRecord, identities: Identities) -> Instance {
        Instance {
            record,
            channels: RwLock::new(HashMap::new()),
            identities: RwLock::new(identities),
            next_channel_id: RwLock::new(1),
            poll_bucket: std::sync::Mutex::new((f64::MAX, 0)),
            id_marks: std::sync::Mutex::new(IdMarks::default()),
            deleted: AtomicBool::new(false),
        }
    }
    /// The numeric id.
    pub fn id(&self) -> u32 {
        self.record.id
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.record.name
    }
    /// Takes one poll from the instance's rate bucket (`rate` polls per
    /// second, bursts of up to one second's worth), or says how many
    /// seconds until one is available.
    ///
    /// # Errors
    /// The seconds to wait (at least 1) when the bucket is empty.
    pub fn take_poll(&self, rate: u32, now_us: u64) -> Result<(), u32> {
        let rate_f = f64::from(rate.max(1));
        let mut b = self.poll_bucket.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now_us.saturating_sub(b.1) as f64 / 1e6;
        b.0 = (b.0.min(rate_f) + elapsed * rate_f).min(rate_f);
        b.1 = now_us;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - b.0) / rate_f).ceil().max(1.0);
        Err(wait as u32)
    }

    /// Marks the instance deleted: its keys stop working, its channels close.
    pub(super) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }
    /// Whether the instance was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }
    /// Writes the channel registry (the broker's metadata lock is held).
    pub(super) fn channels_mut(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Channel>>> {
        self.channels.write().unwrap_or_else(|p| p.into_inner())
    }
    /// Writes the identities (the broker's metadata lock is held).
    pub(super) fn identities_mut(&self) -> std::sync::RwLockWriteGuard<'_, Identities> {
        self.identities.write().unwrap_or_else(|p| p.into_inner())
    }
    /// The id the next channel of this instance gets.
    pub(super) fn next_channel_id(&self) -> u64 {
        *self
            .next_channel_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }
    /// Sets the id the next channel gets.
    pub(super) fn set_next_channel_id(&self, id: u64) {
        *self
            .next_channel_id
            .write()
            .unwrap_or_else(|p| p.into_inner()) = id;
    }
    /// The id marks of deleted channel names (under the broker's metadata
    /// lock when they change).
    pub(super) fn id_marks(&self) -> std::sync::MutexGuard<'_, IdMarks> {
        self.id_marks.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Reads the identities.
    pub fn identities(&self) -> std::sync::RwLockReadGuard<'_, Identities> {
        self.identities.read().unwrap_or_else(|p| p.into_inner())
    }
    /// The channel called `name`.
    pub fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
    /// Every channel, sorted by name.
    pub fn channels(&self) -> Vec<Arc<Channel>> {
        let mut all: Vec<_> = self
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }
    /// Number of channels.
    pub fn channel_count(&self) -> usize {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
    /// The instance as clients see it.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.record.id,
            "name": self.record.name,
            "description": self.record.description,
            "created_at": format_rfc3339_us(self.record.created_at_us),
            "channels": self.channel_count(),
        })
    }
}

fn bad(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::BadRequest, message)
}

/// Checks a name's length first: over `max` bytes is a length error
/// (`BadRequest`), as for every field over its limit.
fn check_name_len(what: &str, name: &str, max: usize) -> Result<(), WireError> {
    if name.len() > max {
        return Err(bad(format!("{what} is {} bytes, over {max}", name.len())));
    }
    Ok(())
}

/// Checks an instance name: 1..=64 bytes of `a-z`, `0-9`, `_`, `-`. Names
/// never reach the file system (directories are named by id); the rule keeps
/// them usable in URLs as they are.
///
/// # Errors
/// `BadRequest` over 64 bytes, `InvalidName` otherwise.
pub fn validate_instance_name(name: &str) -> Result<(), WireError> {
    check_name_len("instance name", name, limits::INSTANCE_NAME_LEN_MAX)?;
    if super::channel::is_slug(name, limits::INSTANCE_NAME_LEN_MAX) {
        Ok(())
    } else {
        Err(WireError::new(
            ErrorCode::InvalidName,
            format!("invalid instance name {name:?}: instance names are 1 to 64 characters of a-z, 0-9, '_' and '-'"),
        ))
    }
}

/// Checks a user name: 1..=`USERNAME_LEN_MAX` bytes of ASCII letters,
/// digits and `. _ @ + -`.
///
/// # Errors
/// `BadRequest` over the length limit, `InvalidName` otherwise.
pub fn validate_username(name: &str) -> Result<(), WireError> {
    check_name_len("user name", name, limits::USERNAME_LEN_MAX)?;
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".@_+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(WireError::new(
            ErrorCode::InvalidName,
            format!("invalid user name {name:?}: user names are 1 to 64 characters of letters, digits and . _ @ + -"),
        ))
    }
}

/// Checks a group name: 1..=`GROUP_NAME_LEN_MAX` printable bytes.
///
/// # Errors
/// `BadRequest` over the length limit, `InvalidName` otherwise.
pub fn validate_group_name(name: &str) -> Result<(), WireError> {
    check_name_len("group name", name, limits::GROUP_NAME_LEN_MAX)?;
    let ok = !name.is_empty() && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(WireError::new(
            ErrorCode::InvalidName,
            "group names are 1 to 64 bytes without control characters",
        ))
    }
}

/// Checks a description's length.
///
/// # Errors
/// `BadRequest`.
pub fn validate_description(d: &str) -> Result<(), WireError> {
    if d.len() > limits::IDENTITY_DESCRIPTION_LEN_MAX {
        return Err(bad("description over IDENTITY_DESCRIPTION_LEN_MAX"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_never_look_like_paths() {
        assert!(validate_instance_name("acme-eu_1").is_ok());
        for bad in [
            "",
            "../x",
            "%2e%2e",
            "a/b",
            ".",
            "..",
            "Acme",
            &"x".repeat(65),
        ] {
            assert!(validate_instance_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_and_group_names_are_bounded() {
        let code = |r: Result<(), WireError>| r.unwrap_err().code;
        assert!(validate_username("ann.lee+1@x").is_ok());
        assert_eq!(code(validate_username("ann lee")), ErrorCode::InvalidName);
        assert!(validate_group_name("Ops team").is_ok());
        assert_eq!(code(validate_group_name("a\nb")), ErrorCode::InvalidName);
        assert_eq!(code(validate_group_name("")), ErrorCode::InvalidName);
        // Over its length limit a name is a length error, like any field.
        assert_eq!(
            code(validate_username(&"u".repeat(65))),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(validate_group_name(&"g".repeat(65))),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(validate_instance_name(&"i".repeat(65))),
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn the_poll_bucket_allows_its_rate_and_tells_when_to_retry() {
        let inst = Instance::new(
            InstanceRecord {
                id: 1,
                name: "i".into(),
                description: String::new(),
                created_at_us: 0,
            },
            Identities::default(),
        );
        let t0 = 10_000_000;
        for _ in 0..3 {
            assert_eq!(inst.take_poll(3, t0), Ok(()));
        }
        assert_eq!(inst.take_poll(3, t0), Err(1));
        // A third of a second later one more poll is allowed.
        assert_eq!(inst.take_poll(3, t0 + 340_000), Ok(()));
        assert_eq!(inst.take_poll(3, t0 + 340_000), Err(1));
    }

    #[test]
    fn membership_is_per_group() {
        let mut ids = Identities::default();
        ids.groups.insert(
            1,
            GroupRecord {
                id: 1,
                name: "g".into(),
                description: String::new(),
                members: vec![2, 5],
                created_at_us: 0,
            },
        );
        assert!(ids.is_member(1, 5));
        assert!(!ids.is_member(1, 3));
        assert!(!ids.is_member(2, 5));
    }
}
