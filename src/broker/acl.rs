//! Who a caller is and what it may do on a channel: the one access model
//! behind the binary protocol and the HTTP shim (Syncano's `group`,
//! `group_permissions`, `other_permissions`, `custom_publish`, `ignore_acl`
//! and `allow_anonymous_read`).
//!
//! Pure decisions over settings and identities; deny by default.

use std::sync::Arc;

use super::channel::{ChannelSettings, Permission};
use super::tenancy::{Identities, Instance};
use crate::storage::Author;
use crate::wire::{ErrorCode, WireError};

/// The key a caller authenticated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// An admin key.
    Admin {
        /// The admin key's id.
        id: u64,
        /// True for a server-wide key (instance management, every instance).
        server_wide: bool,
    },
    /// An API key of the caller's instance.
    ApiKey {
        /// The key's id.
        id: u64,
        /// Bypasses channel permissions (not `custom_publish`, not rooms).
        ignore_acl: bool,
        /// May read without a user key.
        allow_anonymous_read: bool,
    },
}

/// The user a caller names with a user key (only together with an API key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    /// The user's id in the instance.
    pub id: u64,
    /// The user's name (what message targeting names).
    pub name: Box<str>,
    /// The hash of the user key the caller presented: a new user key
    /// (`user.update` with `reset_key`) ends callers holding the old one.
    pub key_hash: super::keys::KeyHash,
}

/// An authenticated caller: its instance, key and optional user.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The instance requests address (`None`: a server-wide admin key that
    /// named no instance and there is no `default` instance).
    pub instance: Option<Arc<Instance>>,
    /// The key.
    pub principal: Principal,
    /// The user, when a user key was given.
    pub user: Option<UserRef>,
}

/// What a caller may do on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access {
    /// Subscribe, history, fetch, channel get.
    pub read: bool,
    /// Publish, as far as permissions go.
    pub write: bool,
    /// The channel allows custom publishes at all.
    pub custom_publish: bool,
}

fn denied() -> WireError {
    WireError::new(
        ErrorCode::PermissionDenied,
        "you do not have permission to perform this action",
    )
}

impl Access {
    /// `Ok` when the caller may read.
    ///
    /// # Errors
    /// `PermissionDenied`.
    pub fn check_read(self) -> Result<(), WireError> {
        if self.read {
            Ok(())
        } else {
            Err(denied())
        }
    }

    /// `Ok` when the caller may publish a custom message: permission first,
    /// then the channel's `custom_publish` (which binds admins too).
    ///
    /// # Errors
    /// `PermissionDenied`, `CustomPublishDisabled`.
    pub fn check_publish(self) -> Result<(), WireError> {
        if !self.write {
            return Err(denied());
        }
        if !self.custom_publish {
            return Err(WireError::new(
                ErrorCode::CustomPublishDisabled,
                "custom publish is not allowed on this channel",
            ));
        }
        Ok(())
    }
}

/// The access `caller` has to a channel with settings `s`; `ids` are the
/// identities of the channel's instance (for group membership).
pub fn access(caller: &Caller, s: &ChannelSettings, ids: &Identities) -> Access {
    let custom_publish = s.custom_publish;
    let (ignore_acl, anonymous_read) = match caller.principal {
        Principal::Admin { .. } => {
            return Access {
                read: true,
                write: true,
                custom_publish,
            }
        }
        Principal::ApiKey {
            ignore_acl,
            allow_anonymous_read,
            ..
        } => (ignore_acl, allow_anonymous_read),
    };
    if ignore_acl {
        return Access {
            read: true,
            write: true,
            custom_publish,
        };
    }
    // Without a user key only an anonymous-read key gets anything: even
    // `other_permissions = subscribe` needs a user.
    let level = caller.user.as_ref().map_or(Permission::None, |u| {
        let member = s.group.is_some_and(|g| ids.is_member(g, u.id));
        let group_level = if member {
            s.group_permissions
        } else {
            Permission::None
        };
        s.other_permissions.max(group_level)
    });
    Access {
        read: anonymous_read || level >= Permission::Subscribe,
        write: level >= Permission::Publish,
        custom_publish,
    }
}

impl Caller {
    /// True for admin keys (of the instance, or server-wide).
    pub fn is_admin(&self) -> bool {
        matches!(self.principal, Principal::Admin { .. })
    }

    /// True for a server-wide admin key.
    pub fn is_server_admin(&self) -> bool {
        matches!(
            self.principal,
            Principal::Admin {
                server_wide: true,
                ..
            }
        )
    }

    /// True for the callers that may read the history of a
    /// `separate_rooms` channel without naming a room: admin keys and API
    /// keys with `ignore_acl` (Syncano's "Viewing history of a Channel
    /// Socket with separate_rooms"). Everyone else names a room.
    pub fn reads_every_room(&self) -> bool {
        matches!(
            self.principal,
            Principal::Admin { .. }
                | Principal::ApiKey {
                    ignore_acl: true,
                    ..
                }
        )
    }

    /// `Ok` for admin keys.
    ///
    /// # Errors
    /// `PermissionDenied`.
    pub fn require_admin(&self) -> Result<(), WireError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(denied())
        }
    }

    /// `Ok` for server-wide admin keys.
    ///
    /// # Errors
    /// `PermissionDenied`.
    pub fn require_server_admin(&self) -> Result<(), WireError> {
        if self.is_server_admin() {
            Ok(())
        } else {
            Err(denied())
        }
    }

    /// The instance requests address.
    ///
    /// # Errors
    /// `InstanceNotFound` when there is none or it was deleted.
    pub fn instance(&self) -> Result<&Arc<Instance>, WireError> {
        match &self.instance {
            Some(i) if !i.is_deleted() => Ok(i),
            _ => Err(WireError::new(
                ErrorCode::InstanceNotFound,
                "no instance: name one when authenticating",
            )),
        }
    }

    /// The author recorded on what this caller publishes.
    pub fn author(&self) -> Author {
        match (self.principal, &self.user) {
            (Principal::Admin { id, .. }, _) => Author::Admin(id),
            (Principal::ApiKey { id, .. }, None) => Author::ApiKey(id),
            (Principal::ApiKey { id, .. }, Some(u)) => Author::User {
                api_key: id,
                user: u.id,
            },
        }
    }

    /// (kind, id) as sent in `AuthOk`: 0 admin, 1 API key, 2 API key + user.
    pub fn wire(&self) -> (u8, u64) {
        match (self.principal, &self.user) {
            (Principal::Admin { id, .. }, _) => (0, id),
            (Principal::ApiKey { id, .. }, None) => (1, id),
            (Principal::ApiKey { id, .. }, Some(_)) => (2, id),
        }
    }

    /// The user name message targeting is evaluated for (`None`: no user).
    pub fn viewer(&self) -> Option<&[u8]> {
        self.user.as_ref().map(|u| u.name.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tenancy::GroupRecord;
    use super::*;

    fn settings(other: Permission, group: Permission, custom_publish: bool) -> ChannelSettings {
        ChannelSettings {
            id: 1,
            name: "c".into(),
            description: String::new(),
            kind: super::super::channel::ChannelKind::Default,
            group: Some(7),
            group_permissions: group,
            other_permissions: other,
            custom_publish,
            retention_us: None,
            created_at_us: 0,
            updated_at_us: 0,
        }
    }

    fn api(ignore_acl: bool, anon: bool, user: Option<u64>) -> Caller {
        Caller {
            instance: None,
            principal: Principal::ApiKey {
                id: 1,
                ignore_acl,
                allow_anonymous_read: anon,
            },
            user: user.map(|id| UserRef {
                id,
                name: format!("u{id}").into(),
                key_hash: [0; 32],
            }),
        }
    }

    fn ids() -> Identities {
        let mut ids = Identities::default();
        ids.groups.insert(
            7,
            GroupRecord {
                id: 7,
                name: "g".into(),
                description: String::new(),
                members: vec![1],
                created_at_us: 0,
            },
        );
        ids
    }

    #[test]
    fn a_user_key_is_needed_even_for_open_channels() {
        let s = settings(Permission::Publish, Permission::None, true);
        let a = access(&api(false, false, None), &s, &ids());
        assert!(!a.read && !a.write);
        let a = access(&api(false, false, Some(2)), &s, &ids());
        assert!(a.read && a.write);
    }

    #[test]
    fn group_permissions_apply_to_members_only() {
        let s = settings(Permission::None, Permission::Subscribe, true);
        let member = access(&api(false, false, Some(1)), &s, &ids());
        assert!(member.read && !member.write);
        let other = access(&api(false, false, Some(2)), &s, &ids());
        assert!(!other.read);
    }

    #[test]
    fn anonymous_read_grants_reads_only_and_custom_publish_binds_everyone() {
        let s = settings(Permission::None, Permission::None, false);
        let anon = access(&api(false, true, None), &s, &ids());
        assert!(anon.read && !anon.write);
        let ignore = access(&api(true, false, None), &s, &ids());
        assert!(ignore.read && ignore.write);
        assert_eq!(
            ignore.check_publish().unwrap_err().code,
            ErrorCode::CustomPublishDisabled
        );
        let admin = Caller {
            instance: None,
            principal: Principal::Admin {
                id: 1,
                server_wide: false,
            },
            user: None,
        };
        assert_eq!(
            access(&admin, &s, &ids()).check_publish().unwrap_err().code,
            ErrorCode::CustomPublishDisabled
        );
    }
}
