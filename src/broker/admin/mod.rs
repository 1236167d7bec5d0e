//! Administrative commands (`Admin` requests, `tidewire instance|key|user|group`):
//! a JSON object naming an `op` and its fields, answered with JSON.
//!
//! Keys are generated here and returned exactly once; only their hashes are
//! stored. Identity changes are made on a copy of the instance's identities,
//! persisted, and only then swapped in, so a failed write changes nothing.

use serde_json::{json, Map, Value};

mod keys;

use super::acl::Caller;
use super::keys::{generate_key, hash_key, KeyOwner};
use super::store;
use super::tenancy::{
    validate_description, validate_group_name, validate_username, GroupRecord, Identities,
    Instance, UserRecord,
};
use super::{err, parse_json_object, storage_to_wire, Broker, BrokerError};
use crate::wire::{ErrorCode, WireError};

fn bad(message: impl Into<String>) -> BrokerError {
    err(ErrorCode::BadRequest, message)
}

fn not_found(what: &str, id: impl std::fmt::Display) -> BrokerError {
    err(ErrorCode::IdentityNotFound, format!("no {what} {id}"))
}

fn limit(name: &str, value: usize) -> BrokerError {
    err(
        ErrorCode::LimitExceeded,
        format!("limit reached: {name} = {value}"),
    )
}

/// The fields of one command, taken one by one; any left over is an error.
struct Args(Map<String, Value>);

impl Args {
    fn take(&mut self, k: &str) -> Option<Value> {
        self.0.remove(k).filter(|v| !v.is_null())
    }
    fn str(&mut self, k: &str) -> Result<Option<String>, BrokerError> {
        match self.take(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(bad(format!("{k} must be a string"))),
        }
    }
    fn req_str(&mut self, k: &str) -> Result<String, BrokerError> {
        self.str(k)?.ok_or_else(|| bad(format!("{k} is required")))
    }
    fn bool(&mut self, k: &str) -> Result<Option<bool>, BrokerError> {
        match self.take(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(bad(format!("{k} must be a boolean"))),
        }
    }
    fn u64(&mut self, k: &str) -> Result<Option<u64>, BrokerError> {
        match self.take(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| bad(format!("{k} must be a non-negative integer"))),
        }
    }
    fn req_u64(&mut self, k: &str) -> Result<u64, BrokerError> {
        self.u64(k)?.ok_or_else(|| bad(format!("{k} is required")))
    }
    fn ids(&mut self, k: &str) -> Result<Vec<u64>, BrokerError> {
        match self.take(k) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_u64()
                        .ok_or_else(|| bad(format!("{k} must be a list of ids")))
                })
                .collect(),
            Some(_) => Err(bad(format!("{k} must be a list of ids"))),
        }
    }
    fn finish(self) -> Result<(), BrokerError> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(k) => Err(bad(format!("unknown field {k:?}"))),
        }
    }
}

/// Which kind of key a key command is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Api,
    Admin,
    ServerAdmin,
}

impl KeyKind {
    fn name(self) -> &'static str {
        match self {
            KeyKind::Api => "api",
            KeyKind::Admin => "admin",
            KeyKind::ServerAdmin => "server_admin",
        }
    }
}

/// The `kind` field, if given.
fn given_key_kind(args: &mut Args) -> Result<Option<KeyKind>, BrokerError> {
    match args.str("kind")?.as_deref() {
        None => Ok(None),
        Some("api") => Ok(Some(KeyKind::Api)),
        Some("admin") => Ok(Some(KeyKind::Admin)),
        Some("server_admin") => Ok(Some(KeyKind::ServerAdmin)),
        Some(other) => Err(bad(format!(
            "kind must be api, admin or server_admin, not {other:?}"
        ))),
    }
}

/// The `kind` field; an API key when it is not given.
fn key_kind(args: &mut Args) -> Result<KeyKind, BrokerError> {
    Ok(given_key_kind(args)?.unwrap_or(KeyKind::Api))
}

impl Broker {
    /// The Channelstream face's channels, their users (with public state)
    /// and connection counts: `/info` without history, for an admin of its
    /// instance.
    fn channelstream_info(
        &self,
        caller: &Caller,
        channels: Option<Value>,
    ) -> Result<Value, BrokerError> {
        let Some(settings) = &self.channelstream else {
            return Err(WireError::new(
                ErrorCode::BadRequest,
                "the Channelstream API is off",
            ));
        };
        caller.require_admin()?;
        if caller.instance()?.name() != settings.instance {
            return Err(WireError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "the Channelstream API works in instance {:?}",
                    settings.instance
                ),
            ));
        }
        let names = match channels {
            None => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<String>>>()
                    .ok_or_else(|| {
                        WireError::new(ErrorCode::BadRequest, "channels: a list of names")
                    })?,
            ),
            Some(_) => {
                return Err(WireError::new(
                    ErrorCode::BadRequest,
                    "channels: a list of names",
                ))
            }
        };
        let ask = crate::channelstream::schema::InfoAsk {
            include_history: false,
            return_public_state: true,
            ..Default::default()
        };
        let st = self.cs_state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(st.channels_info(names.as_deref(), &ask, &|_, _| Vec::new()))
    }

    /// Runs one administrative command.
    ///
    /// # Errors
    /// `BadRequest` (unknown op or field, bad value), `PermissionDenied`
    /// (the caller is not an admin of the instance, or not server-wide for
    /// instance commands), `InstanceNotFound`, `InstanceExists`,
    /// `IdentityNotFound`, `IdentityExists`, `InvalidName`,
    /// `LimitExceeded`, storage errors.
    pub fn admin(&self, caller: &Caller, json: &[u8]) -> Result<Value, BrokerError> {
        let mut args = Args(parse_json_object(json)?);
        let op = args.req_str("op")?;
        let out = match op.as_str() {
            "instance.create" => {
                let name = args.req_str("name")?;
                let description = args.str("description")?.unwrap_or_default();
                args.finish()?;
                self.create_instance(caller, &name, &description)?.to_json()
            }
            "instance.list" => {
                args.finish()?;
                Value::Array(
                    self.visible_instances(caller)
                        .iter()
                        .map(|i| i.to_json())
                        .collect(),
                )
            }
            "instance.get" => {
                let name = args.str("name")?;
                args.finish()?;
                self.instance_visible(caller, name.as_deref())?.to_json()
            }
            "server.stats" => {
                args.finish()?;
                caller.require_server_admin()?;
                self.stats()
            }
            "channelstream.info" => {
                let channels = args.take("channels");
                args.finish()?;
                self.channelstream_info(caller, channels)?
            }
            "instance.delete" => {
                let name = args.req_str("name")?;
                args.finish()?;
                self.delete_instance(caller, &name)?;
                json!({})
            }
            _ => {
                caller.require_admin()?;
                let inst = caller.instance()?.clone();
                self.identity_command(caller, &inst, &op, args)?
            }
        };
        Ok(out)
    }

    fn instance_visible(
        &self,
        caller: &Caller,
        name: Option<&str>,
    ) -> Result<std::sync::Arc<Instance>, BrokerError> {
        let own = caller.instance().ok();
        match (name, own) {
            (None, Some(i)) => Ok(i.clone()),
            (Some(n), Some(i)) if n == i.name() => Ok(i.clone()),
            (Some(n), _) if caller.is_server_admin() => self
                .instance(n)
                .ok_or_else(|| err(ErrorCode::InstanceNotFound, format!("no instance {n:?}"))),
            (Some(_), _) => Err(err(
                ErrorCode::PermissionDenied,
                "you do not have permission to perform this action",
            )),
            (None, None) => Err(err(ErrorCode::InstanceNotFound, "no instance")),
        }
    }

    fn identity_command(
        &self,
        caller: &Caller,
        inst: &Instance,
        op: &str,
        mut args: Args,
    ) -> Result<Value, BrokerError> {
        match op {
            "key.create" => self.key_create(caller, inst, args),
            "key.list" => {
                let kind = args.str("kind")?;
                args.finish()?;
                self.key_list(caller, inst, kind.as_deref())
            }
            "key.update" => self.key_update(inst, args),
            "key.revoke" => self.key_revoke(caller, inst, args),
            "user.create" => self.user_create(inst, args),
            "user.list" => {
                args.finish()?;
                let ids = inst.identities();
                Ok(Value::Array(
                    ids.users.values().map(|u| ids.user_json(u)).collect(),
                ))
            }
            "user.get" => {
                let id = user_selector(&mut args, &inst.identities())?;
                args.finish()?;
                let ids = inst.identities();
                let u = ids.users.get(&id).ok_or_else(|| not_found("user", id))?;
                Ok(ids.user_json(u))
            }
            "user.update" => self.user_update(inst, args),
            "user.delete" => self.user_delete(inst, args),
            "group.create" => self.group_create(inst, args),
            "group.list" => {
                args.finish()?;
                Ok(Value::Array(
                    inst.identities()
                        .groups
                        .values()
                        .map(GroupRecord::to_json)
                        .collect(),
                ))
            }
            "group.get" => {
                let id = args.req_u64("id")?;
                args.finish()?;
                let ids = inst.identities();
                Ok(ids
                    .groups
                    .get(&id)
                    .ok_or_else(|| not_found("group", id))?
                    .to_json())
            }
            "group.update" => self.group_update(inst, args),
            "group.delete" => self.group_delete(inst, args),
            "group.add_member" | "group.remove_member" => {
                let group = args.req_u64("group")?;
                let user = args.req_u64("user")?;
                args.finish()?;
                self.group_member(inst, group, user, op == "group.add_member")
            }
            other => Err(bad(format!("unknown op {other:?}"))),
        }
    }

    /// Applies `f` to a copy of the instance's identities, persists the
    /// copy, then swaps it in and moves the access epoch. Nothing changes
    /// when `f` or the write fails.
    fn change_identities<R>(
        &self,
        inst: &Instance,
        f: impl FnOnce(&mut Identities) -> Result<R, BrokerError>,
    ) -> Result<R, BrokerError> {
        let _meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        if inst.is_deleted() {
            return Err(err(ErrorCode::InstanceNotFound, "the instance was deleted"));
        }
        let mut ids = inst.identities().clone();
        let out = f(&mut ids)?;
        store::save_identities(&self.data_dir, inst.id(), &ids).map_err(storage_to_wire)?;
        *inst.identities_mut() = ids;
        // Every change can grant or take away access: cached decisions
        // (denials included) must be made again.
        self.bump_epoch();
        Ok(out)
    }

    fn user_create(&self, inst: &Instance, mut args: Args) -> Result<Value, BrokerError> {
        let username = args.req_str("username")?;
        let groups = args.ids("groups")?;
        args.finish()?;
        validate_username(&username)?;
        let key = generate_key().map_err(storage_to_wire)?;
        let sha256 = hash_key(&key);
        let now = self.clock.now_us();
        let members_max = self.limits.members_per_group_max;
        let (rec, view) = self.change_identities(inst, |ids| {
            if ids.users.len() >= self.limits.users_per_instance_max {
                return Err(limit(
                    "users_per_instance_max",
                    self.limits.users_per_instance_max,
                ));
            }
            if ids.user_by_name(&username).is_some() {
                return Err(err(
                    ErrorCode::IdentityExists,
                    format!("user {username:?} exists"),
                ));
            }
            ids.next_user_id = ids.next_user_id.max(1);
            let rec = UserRecord {
                id: ids.next_user_id,
                username,
                sha256,
                created_at_us: now,
                updated_at_us: now,
            };
            ids.next_user_id += 1;
            for g in &groups {
                add_member(ids, *g, rec.id, members_max)?;
            }
            ids.users.insert(rec.id, rec.clone());
            let view = ids.user_json(&rec);
            Ok((rec, view))
        })?;
        self.index_key(
            sha256,
            KeyOwner::User {
                instance: inst.id(),
                id: rec.id,
            },
        );
        let mut view = view;
        if let Some(m) = view.as_object_mut() {
            m.insert("user_key".into(), Value::String(key));
        }
        Ok(view)
    }

    fn user_update(&self, inst: &Instance, mut args: Args) -> Result<Value, BrokerError> {
        let id = args.req_u64("id")?;
        let username = args.str("username")?;
        let reset_key = args.bool("reset_key")?.unwrap_or(false);
        args.finish()?;
        if let Some(n) = &username {
            validate_username(n)?;
        }
        let new_key = if reset_key {
            Some(generate_key().map_err(storage_to_wire)?)
        } else {
            None
        };
        let now = self.clock.now_us();
        let (old_hash, rec, view) = self.change_identities(inst, |ids| {
            if let Some(n) = &username {
                if ids.user_by_name(n).is_some_and(|u| u.id != id) {
                    return Err(err(ErrorCode::IdentityExists, format!("user {n:?} exists")));
                }
            }
            let u = ids
                .users
                .get_mut(&id)
                .ok_or_else(|| not_found("user", id))?;
            let old_hash = u.sha256;
            if let Some(n) = username {
                u.username = n;
            }
            if let Some(k) = &new_key {
                u.sha256 = hash_key(k);
            }
            u.updated_at_us = now;
            let rec = u.clone();
            let view = ids.user_json(&rec);
            Ok((old_hash, rec, view))
        })?;
        let owner = KeyOwner::User {
            instance: inst.id(),
            id,
        };
        if new_key.is_some() {
            self.unindex_key(&old_hash, owner);
            self.index_key(rec.sha256, owner);
        }
        self.bump_epoch();
        let mut view = view;
        if let (Some(k), Some(m)) = (new_key, view.as_object_mut()) {
            m.insert("user_key".into(), Value::String(k));
        }
        Ok(view)
    }

    fn user_delete(&self, inst: &Instance, mut args: Args) -> Result<Value, BrokerError> {
        let id = user_selector(&mut args, &inst.identities())?;
        args.finish()?;
        let rec = self.change_identities(inst, |ids| {
            let rec = ids.users.remove(&id).ok_or_else(|| not_found("user", id))?;
            for g in ids.groups.values_mut() {
                g.members.retain(|&m| m != id);
            }
            Ok(rec)
        })?;
        self.unindex_key(
            &rec.sha256,
            KeyOwner::User {
                instance: inst.id(),
                id,
            },
        );
        self.bump_epoch();
        Ok(json!({}))
    }

    fn group_create(&self, inst: &Instance, mut args: Args) -> Result<Value, BrokerError> {
        let name = args.req_str("name")?;
        let description = args.str("description")?.unwrap_or_default();
        args.finish()?;
        validate_group_name(&name)?;
        validate_description(&description)?;
        let now = self.clock.now_us();
        let rec = self.change_identities(inst, |ids| {
            if ids.groups.len() >= self.limits.groups_per_instance_max {
                return Err(limit(
                    "groups_per_instance_max",
                    self.limits.groups_per_instance_max,
                ));
            }
            if ids.group_by_name(&name).is_some() {
                return Err(err(
                    ErrorCode::IdentityExists,
                    format!("group {name:?} exists"),
                ));
            }
            ids.next_group_id = ids.next_group_id.max(1);
            let rec = GroupRecord {
                id: ids.next_group_id,
                name,
                description,
                members: Vec::new(),
                created_at_us: now,
            };
            ids.next_group_id += 1;
            ids.groups.insert(rec.id, rec.clone());
            Ok(rec)
        })?;
        Ok(rec.to_json())
    }

    fn group_update(&self, inst: &Instance, mut args: Args) -> Result<Value, BrokerError> {
        let id = args.req_u64("id")?;
        let name = args.str("name")?;
        let description = args.str("description")?;
        args.finish()?;
        if let Some(n) = &name {
            validate_group_name(n)?;
        }
        if let Some(d) = &description {
            validate_description(d)?;
        }
        let rec = self.change_identities(inst, |ids| {
            if let Some(n) = &name {
                if ids.group_by_name(n).is_some_and(|g| g.id != id) {
                    return Err(err(
                        ErrorCode::IdentityExists,
                        format!("group {n:?} exists"),
                    ));
                }
            }
            let g = ids
                .groups
                .get_mut(&id)
                .ok_or_else(|| not_found("group", id))?;
            if let Some(n) = name {
                g.name = n;
            }
            if let Some(d) = description {
                g.description = d;
            }
            Ok(g.clone())
        })?;
        Ok(rec.to_json())
    }

    fn group_delete(&self, inst: &Instance, mut args: Args) -> Result<Value, BrokerError> {
        let id = args.req_u64("id")?;
        args.finish()?;
        self.change_identities(inst, |ids| {
            ids.groups
                .remove(&id)
                .map(|_| ())
                .ok_or_else(|| not_found("group", id))
        })?;
        // Channels of the group lose their group permissions with it.
        let _meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed = false;
        for ch in inst.channels() {
            if ch.with_settings(|s| s.group == Some(id)) {
                let mut s = ch.settings();
                s.group = None;
                s.updated_at_us = self.clock.now_us();
                ch.set_settings(s);
                changed = true;
            }
        }
        if changed {
            store::save_channels(&self.data_dir, inst).map_err(storage_to_wire)?;
        }
        drop(_meta);
        self.bump_epoch();
        Ok(json!({}))
    }

    fn group_member(
        &self,
        inst: &Instance,
        group: u64,
        user: u64,
        add: bool,
    ) -> Result<Value, BrokerError> {
        let members_max = self.limits.members_per_group_max;
        let rec = self.change_identities(inst, |ids| {
            if !ids.users.contains_key(&user) {
                return Err(not_found("user", user));
            }
            if add {
                add_member(ids, group, user, members_max)?;
            } else {
                let g = ids
                    .groups
                    .get_mut(&group)
                    .ok_or_else(|| not_found("group", group))?;
                g.members.retain(|&m| m != user);
            }
            Ok(ids.groups.get(&group).cloned())
        })?;
        rec.map(|g| g.to_json())
            .ok_or_else(|| not_found("group", group))
    }
}

fn add_member(
    ids: &mut Identities,
    group: u64,
    user: u64,
    members_max: usize,
) -> Result<(), BrokerError> {
    let g = ids
        .groups
        .get_mut(&group)
        .ok_or_else(|| not_found("group", group))?;
    if let Err(at) = g.members.binary_search(&user) {
        if g.members.len() >= members_max {
            return Err(limit("members_per_group_max", members_max));
        }
        g.members.insert(at, user);
    }
    Ok(())
}

/// A user named by `id` or by `username`.
fn user_selector(args: &mut Args, ids: &Identities) -> Result<u64, BrokerError> {
    match (args.u64("id")?, args.str("username")?) {
        (Some(id), None) => Ok(id),
        (None, Some(name)) => ids
            .user_by_name(&name)
            .map(|u| u.id)
            .ok_or_else(|| not_found("user", format!("{name:?}"))),
        _ => Err(bad("name the user by id or by username")),
    }
}
