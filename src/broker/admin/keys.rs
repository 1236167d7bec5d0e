//! Key commands: `key.create`, `key.list`, `key.update`, `key.revoke` for
//! API keys, instance admin keys and server-wide admin keys.

use serde_json::Value;

use super::{bad, given_key_kind, key_kind, limit, not_found, Args, KeyKind};
use crate::broker::acl::Caller;
use crate::broker::keys::{generate_key, hash_key, KeyHash, KeyOwner};
use crate::broker::store;
use crate::broker::tenancy::{validate_description, AdminKeyRecord, ApiKeyRecord, Instance};
use crate::broker::{storage_to_wire, Broker, BrokerError};

impl Broker {
    pub(super) fn key_create(
        &self,
        caller: &Caller,
        inst: &Instance,
        mut args: Args,
    ) -> Result<Value, BrokerError> {
        let kind = key_kind(&mut args)?;
        let description = args.str("description")?.unwrap_or_default();
        validate_description(&description)?;
        let ignore_acl = args.bool("ignore_acl")?;
        let anonymous = args.bool("allow_anonymous_read")?;
        args.finish()?;
        if kind != KeyKind::Api && (ignore_acl.is_some() || anonymous.is_some()) {
            return Err(bad(
                "ignore_acl and allow_anonymous_read are options of API keys",
            ));
        }
        let key = generate_key().map_err(storage_to_wire)?;
        let sha256 = hash_key(&key);
        let now = self.clock.now_us();
        let mut out = match kind {
            KeyKind::Api => {
                let rec = self.change_identities(inst, |ids| {
                    if ids.api_keys.len() >= self.limits.api_keys_per_instance_max {
                        return Err(limit(
                            "api_keys_per_instance_max",
                            self.limits.api_keys_per_instance_max,
                        ));
                    }
                    ids.next_api_key_id = ids.next_api_key_id.max(1);
                    let rec = ApiKeyRecord {
                        id: ids.next_api_key_id,
                        sha256,
                        description,
                        ignore_acl: ignore_acl.unwrap_or(false),
                        allow_anonymous_read: anonymous.unwrap_or(false),
                        created_at_us: now,
                    };
                    ids.next_api_key_id += 1;
                    ids.api_keys.insert(rec.id, rec.clone());
                    Ok(rec)
                })?;
                self.index_key(
                    sha256,
                    KeyOwner::Api {
                        instance: inst.id(),
                        id: rec.id,
                    },
                );
                rec.to_json()
            }
            KeyKind::Admin | KeyKind::ServerAdmin => {
                let scope = if kind == KeyKind::ServerAdmin {
                    caller.require_server_admin()?;
                    None
                } else {
                    Some(inst.id())
                };
                let rec = self.admin_key_create(sha256, scope, description, now)?;
                rec.to_json(scope.map(|_| inst.name()))
            }
        };
        if let Some(m) = out.as_object_mut() {
            m.insert("key".into(), Value::String(key));
        }
        Ok(out)
    }

    pub(super) fn index_key(&self, sha256: KeyHash, owner: KeyOwner) {
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sha256, owner);
    }

    pub(super) fn unindex_key(&self, sha256: &KeyHash, owner: KeyOwner) {
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sha256, owner);
    }

    pub(super) fn admin_key_create(
        &self,
        sha256: KeyHash,
        instance: Option<u32>,
        description: String,
        now: u64,
    ) -> Result<AdminKeyRecord, BrokerError> {
        let mut meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        let live = meta.admins.keys.iter().filter(|k| !k.revoked).count();
        if live >= self.limits.admin_keys_max {
            return Err(limit("admin_keys_max", self.limits.admin_keys_max));
        }
        let mut admins = meta.admins.clone();
        admins.next_id = admins.next_id.max(1);
        let rec = AdminKeyRecord {
            id: admins.next_id,
            sha256,
            instance,
            description,
            created_at_us: now,
            revoked: false,
        };
        admins.next_id += 1;
        admins.keys.push(rec.clone());
        store::save_admins(&self.data_dir, &admins).map_err(storage_to_wire)?;
        meta.admins = admins;
        self.index_key(
            sha256,
            KeyOwner::Admin {
                id: rec.id,
                instance,
            },
        );
        Ok(rec)
    }

    pub(super) fn key_list(
        &self,
        caller: &Caller,
        inst: &Instance,
        kind: Option<&str>,
    ) -> Result<Value, BrokerError> {
        let (api, admin, server) = match kind {
            None => (true, true, caller.is_server_admin()),
            Some("api") => (true, false, false),
            Some("admin") => (false, true, false),
            Some("server_admin") => {
                caller.require_server_admin()?;
                (false, false, true)
            }
            Some(other) => return Err(bad(format!("unknown key kind {other:?}"))),
        };
        let mut out = Vec::new();
        if api {
            out.extend(
                inst.identities()
                    .api_keys
                    .values()
                    .map(ApiKeyRecord::to_json),
            );
        }
        let meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        for k in meta.admins.keys.iter().filter(|k| !k.revoked) {
            match k.instance {
                Some(i) if admin && i == inst.id() => out.push(k.to_json(Some(inst.name()))),
                None if server => out.push(k.to_json(None)),
                _ => {}
            }
        }
        Ok(Value::Array(out))
    }

    pub(super) fn key_update(&self, inst: &Instance, mut args: Args) -> Result<Value, BrokerError> {
        let id = args.req_u64("id")?;
        match args.str("kind")?.as_deref() {
            None | Some("api") => {}
            Some(_) => return Err(bad("only API keys have options to update")),
        }
        let description = args.str("description")?;
        let ignore_acl = args.bool("ignore_acl")?;
        let anonymous = args.bool("allow_anonymous_read")?;
        args.finish()?;
        if let Some(d) = &description {
            validate_description(d)?;
        }
        let rec = self.change_identities(inst, |ids| {
            let k = ids
                .api_keys
                .get_mut(&id)
                .ok_or_else(|| not_found("API key", id))?;
            if let Some(d) = description {
                k.description = d;
            }
            if let Some(b) = ignore_acl {
                k.ignore_acl = b;
            }
            if let Some(b) = anonymous {
                k.allow_anonymous_read = b;
            }
            Ok(k.clone())
        })?;
        self.bump_epoch();
        Ok(rec.to_json())
    }

    /// The kind of key `id` names among the keys the caller may see: API
    /// keys and admin keys of the instance, and server-wide admin keys for
    /// a server-wide admin. Ids of different kinds may be equal.
    ///
    /// # Errors
    /// `IdentityNotFound` when it names none, `BadRequest` when it names
    /// several (the caller must say which).
    fn kind_of_key(
        &self,
        caller: &Caller,
        inst: &Instance,
        id: u64,
    ) -> Result<KeyKind, BrokerError> {
        let mut found = Vec::new();
        if inst.identities().api_keys.contains_key(&id) {
            found.push(KeyKind::Api);
        }
        let meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        for k in meta.admins.keys.iter().filter(|k| k.id == id && !k.revoked) {
            match k.instance {
                Some(i) if i == inst.id() => found.push(KeyKind::Admin),
                None if caller.is_server_admin() => found.push(KeyKind::ServerAdmin),
                _ => {}
            }
        }
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(not_found("key", id)),
            several => {
                let kinds: Vec<&str> = several.iter().map(|k| k.name()).collect();
                Err(bad(format!(
                    "key id {id} names an {} key: give kind ({})",
                    kinds.join(" key and an "),
                    kinds.join(" or ")
                )))
            }
        }
    }

    /// Revokes a key: of the kind given, or of the one kind its id names.
    /// Returns the revoked key's record.
    pub(super) fn key_revoke(
        &self,
        caller: &Caller,
        inst: &Instance,
        mut args: Args,
    ) -> Result<Value, BrokerError> {
        let kind = given_key_kind(&mut args)?;
        let id = args.req_u64("id")?;
        args.finish()?;
        let kind = match kind {
            Some(k) => k,
            None => self.kind_of_key(caller, inst, id)?,
        };
        let revoked = match kind {
            KeyKind::Api => {
                let rec = self.change_identities(inst, |ids| {
                    ids.api_keys
                        .remove(&id)
                        .ok_or_else(|| not_found("API key", id))
                })?;
                let owner = KeyOwner::Api {
                    instance: inst.id(),
                    id,
                };
                self.unindex_key(&rec.sha256, owner);
                rec.to_json()
            }
            KeyKind::Admin | KeyKind::ServerAdmin => {
                let scope = if kind == KeyKind::ServerAdmin {
                    caller.require_server_admin()?;
                    None
                } else {
                    Some(inst.id())
                };
                self.admin_key_revoke(id, scope, inst.name())?
            }
        };
        self.bump_epoch();
        Ok(revoked)
    }

    /// Marks admin key `id` of `scope` (an instance id, `None`:
    /// server-wide) revoked, persisted before it takes effect.
    fn admin_key_revoke(
        &self,
        id: u64,
        scope: Option<u32>,
        instance_name: &str,
    ) -> Result<Value, BrokerError> {
        let mut meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        let mut admins = meta.admins.clone();
        let rec = admins
            .keys
            .iter_mut()
            .find(|k| k.id == id && k.instance == scope && !k.revoked)
            .ok_or_else(|| not_found("admin key", id))?;
        rec.revoked = true;
        let sha256 = rec.sha256;
        let out = rec.to_json(scope.map(|_| instance_name));
        store::save_admins(&self.data_dir, &admins).map_err(storage_to_wire)?;
        meta.admins = admins;
        self.unindex_key(
            &sha256,
            KeyOwner::Admin {
                id,
                instance: scope,
            },
        );
        Ok(out)
    }
}
