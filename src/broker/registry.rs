//! Creating, changing and deleting instances and channels: each change
//! under the broker's metadata lock, persisted before it is visible, and
//! handed to the writer (new and removed logs) afterwards.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::acl::Caller;
use super::channel::{Channel, ChannelKind, ChannelSettings, USER_STREAM_CHANNEL};
use super::id_marks::deleted_channel_bound;
use super::store::{self, InstancesSnapshot, MetaState};
use super::tenancy::{validate_description, validate_instance_name, Instance, InstanceRecord};
use super::writer::WriterMsg;
use super::{
    channel_dir, err, instance_dir, parse_json_object, storage_to_wire, Broker, BrokerError,
};
use crate::limits;
use crate::storage::ChannelLog;
use crate::wire::ErrorCode;

fn limit(name: &str, value: usize) -> BrokerError {
    err(
        ErrorCode::LimitExceeded,
        format!("limit reached: {name} = {value}"),
    )
}

impl Broker {
    /// Creates a channel in the caller's instance from a JSON object
    /// (native defaults: `custom_publish` true).
    ///
    /// # Errors
    /// `PermissionDenied` (not an admin), `BadRequest`/`InvalidName` for bad
    /// fields, `ChannelExists`, `LimitExceeded`, `StorageFull`/`Internal`
    /// when the log cannot be created.
    pub fn create_channel(
        &self,
        caller: &Caller,
        json: &[u8],
    ) -> Result<Arc<Channel>, BrokerError> {
        let fields = parse_json_object(json)?;
        self.create_channel_from(caller, &fields, true)
    }

    /// Creates a channel from already parsed fields; `custom_publish_default`
    /// is what `custom_publish` is when the fields do not say (the Syncano
    /// view defaults to false).
    ///
    /// # Errors
    /// As [`Broker::create_channel`].
    pub fn create_channel_from(
        &self,
        caller: &Caller,
        fields: &Map<String, Value>,
        custom_publish_default: bool,
    ) -> Result<Arc<Channel>, BrokerError> {
        caller.require_admin()?;
        let inst = caller.instance()?.clone();
        let _meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        let local = inst.next_channel_id();
        if local > u64::from(u32::MAX) {
            return Err(limit("channel ids of this instance", u32::MAX as usize));
        }
        let mut settings = ChannelSettings::from_create(fields, local, self.clock.now_us())?;
        if !fields.contains_key("custom_publish") {
            settings.custom_publish = custom_publish_default;
        }
        self.check_group(&inst, settings.group)?;
        self.add_channel(&inst, settings, false)
    }

    /// The user stream of the caller's instance, made the first time it is
    /// needed (see [`USER_STREAM_CHANNEL`]).
    ///
    /// # Errors
    /// `InstanceNotFound`; `LimitExceeded` (`CHANNELS_MAX`) and storage
    /// errors when it must be made.
    pub fn user_stream(&self, caller: &Caller) -> Result<Arc<Channel>, BrokerError> {
        let inst = caller.instance()?.clone();
        self.internal_channel(&inst, USER_STREAM_CHANNEL, "user-directed messages")
    }

    /// The channel named `name` of `inst`, made (open to no key but admins
    /// and `ignore_acl` keys, custom publish on, no rooms) when missing.
    ///
    /// # Errors
    /// As [`Broker::user_stream`].
    pub fn internal_channel(
        &self,
        inst: &Arc<Instance>,
        name: &str,
        description: &str,
    ) -> Result<Arc<Channel>, BrokerError> {
        if let Some(ch) = inst.channel(name).filter(|c| !c.is_deleted()) {
            return Ok(ch);
        }
        let _meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = inst.channel(name).filter(|c| !c.is_deleted()) {
            return Ok(ch);
        }
        let local = inst.next_channel_id();
        if local > u64::from(u32::MAX) {
            return Err(limit("channel ids of this instance", u32::MAX as usize));
        }
        let mut settings = ChannelSettings::builtin(name, local, self.clock.now_us());
        settings.kind = ChannelKind::Default;
        settings.custom_publish = true;
        settings.description = description.into();
        self.add_channel(inst, settings, true)
    }

    /// Opens the log of a new channel of `inst` and adds the channel (the
    /// caller holds the metadata lock). An `internal` channel does not count
    /// against the instance's channel limit.
    fn add_channel(
        &self,
        inst: &Arc<Instance>,
        settings: ChannelSettings,
        internal: bool,
    ) -> Result<Arc<Channel>, BrokerError> {
        let local = settings.id;
        if inst.channel(&settings.name).is_some() {
            return Err(err(
                ErrorCode::ChannelExists,
                format!(
                    "channel {:?} exists in instance {:?}",
                    settings.name,
                    inst.name()
                ),
            ));
        }
        if !internal && inst.channel_count() >= self.limits.channels_per_instance_max {
            return Err(limit(
                "channels_per_instance_max",
                self.limits.channels_per_instance_max,
            ));
        }
        if self.channel_total.load(Ordering::Acquire) >= limits::CHANNELS_MAX {
            return Err(limit("CHANNELS_MAX", limits::CHANNELS_MAX));
        }
        let mut cfg = self.log_config.clone();
        if let Some(r) = settings.retention_us {
            cfg.retention_us = r;
        }
        // Ids never go backwards for a name: a channel created again under
        // a deleted one's name continues after every id that one assigned.
        cfg.first_id_floor = inst.id_marks().mark(&settings.name).saturating_add(1);
        let (log, _) = ChannelLog::open(
            &channel_dir(&self.data_dir, inst.id(), local),
            cfg,
            self.clock.clone(),
        )
        .map_err(storage_to_wire)?;
        let ch = Arc::new(Channel::new(inst.id(), settings, log.reader()));
        inst.set_next_channel_id(local + 1);
        inst.channels_mut()
            .insert(ch.name().to_string(), ch.clone());
        if let Err(e) = store::save_channels(&self.data_dir, inst) {
            inst.channels_mut().remove(ch.name());
            if let Err(e2) = log.destroy() {
                tracing::error!(error = %e2, "could not remove the log of a channel whose creation failed");
            }
            return Err(storage_to_wire(e));
        }
        self.channel_total.fetch_add(1, Ordering::AcqRel);
        self.send_to_writer(WriterMsg::AddChannel {
            id: ch.id,
            log: Box::new(log),
        });
        Ok(ch)
    }

    /// A group a channel names must exist in its instance.
    fn check_group(&self, inst: &Instance, group: Option<u64>) -> Result<(), BrokerError> {
        match group {
            Some(g) if !inst.identities().groups.contains_key(&g) => Err(err(
                ErrorCode::BadRequest,
                format!("group {g} does not exist in this instance"),
            )),
            _ => Ok(()),
        }
    }

    /// Changes a channel's settings from a JSON object of fields.
    ///
    /// # Errors
    /// `PermissionDenied`, `ChannelNotFound`, `BadRequest` for read-only or
    /// invalid fields.
    pub fn update_channel(
        &self,
        caller: &Caller,
        name: &str,
        json: &[u8],
    ) -> Result<Arc<Channel>, BrokerError> {
        let fields = parse_json_object(json)?;
        self.update_channel_from(caller, name, &fields)
    }

    /// Changes a channel's settings from already parsed fields.
    ///
    /// # Errors
    /// As [`Broker::update_channel`].
    pub fn update_channel_from(
        &self,
        caller: &Caller,
        name: &str,
        fields: &Map<String, Value>,
    ) -> Result<Arc<Channel>, BrokerError> {
        caller.require_admin()?;
        let inst = caller.instance()?.clone();
        let _meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        let ch = self.channel(caller, name)?;
        let old = ch.settings();
        let new = old.updated(fields, self.clock.now_us())?;
        if new.group != old.group {
            self.check_group(&inst, new.group)?;
        }
        ch.set_settings(new.clone());
        if let Err(e) = store::save_channels(&self.data_dir, &inst) {
            ch.set_settings(old);
            return Err(storage_to_wire(e));
        }
        if new.retention_us != old.retention_us {
            let retention_us = new.retention_us.unwrap_or(self.log_config.retention_us);
            self.send_to_writer(WriterMsg::SetRetention {
                id: ch.id,
                retention_us,
            });
        }
        self.bump_epoch();
        Ok(ch)
    }

    /// Deletes a channel and its log; its subscriptions are closed.
    ///
    /// # Errors
    /// `PermissionDenied` (not an admin, or a built-in channel),
    /// `ChannelNotFound`, or `Internal` when the registry cannot be saved.
    pub fn delete_channel(&self, caller: &Caller, name: &str) -> Result<(), BrokerError> {
        caller.require_admin()?;
        let inst = caller.instance()?.clone();
        let _meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        let ch = self.channel(caller, name)?;
        if ch.is_builtin() {
            return Err(err(
                ErrorCode::PermissionDenied,
                format!("the built-in channel {:?} cannot be deleted", ch.name()),
            ));
        }
        inst.channels_mut().remove(ch.name());
        // Publishes queued before the removal are still appended: the
        // name's mark covers them (read in this order, before the removal
        // is queued; see `id_marks::deleted_channel_bound`). Publishes that
        // passed their check of the channel but are not counted yet wait
        // meanwhile (`Broker::try_append`).
        self.deleting_channel.store(ch.id, Ordering::SeqCst);
        ch.mark_deleted();
        let queued = self.inflight_bytes.load(Ordering::SeqCst);
        let bound = deleted_channel_bound(ch.reader().head_id(), queued);
        inst.id_marks().raise(ch.name(), bound);
        self.channel_total.fetch_sub(1, Ordering::AcqRel);
        // The mark is on disk before the log is gone: a crash between the
        // two cannot bring the name back with ids from the start.
        let saved = store::save_channels(&self.data_dir, &inst);
        self.send_to_writer(WriterMsg::RemoveChannel { id: ch.id });
        self.deleting_channel.store(0, Ordering::SeqCst);
        self.bump_epoch();
        if let Err(e) = saved {
            tracing::error!(error = %e, "channel registry not saved after a delete");
            return Err(storage_to_wire(e));
        }
        Ok(())
    }

    fn instances_snapshot(&self, meta: &MetaState) -> InstancesSnapshot {
        let table = self.instances.read().unwrap_or_else(|p| p.into_inner());
        let mut instances: Vec<InstanceRecord> =
            table.by_id.values().map(|i| i.record.clone()).collect();
        instances.sort_by_key(|r| r.id);
        InstancesSnapshot {
            next_instance_id: meta.next_instance_id,
            instances,
        }
    }

    /// Creates an instance with its built-in channels.
    ///
    /// # Errors
    /// `PermissionDenied` (not a server-wide admin key), `InvalidName`,
    /// `BadRequest`, `InstanceExists`, `LimitExceeded`, storage errors.
    pub fn create_instance(
        &self,
        caller: &Caller,
        name: &str,
        description: &str,
    ) -> Result<Arc<Instance>, BrokerError> {
        caller.require_server_admin()?;
        validate_instance_name(name)?;
        validate_description(description)?;
        let mut meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        if self.instance(name).is_some() {
            return Err(err(
                ErrorCode::InstanceExists,
                format!("instance {name:?} exists"),
            ));
        }
        let count = self
            .instances
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_id
            .len();
        if count >= self.limits.instances_max {
            return Err(limit("instances_max", self.limits.instances_max));
        }
        let rec = InstanceRecord {
            id: meta.next_instance_id,
            name: name.to_string(),
            description: description.to_string(),
            created_at_us: self.clock.now_us(),
        };
        let (inst, logs) =
            store::create_instance(&self.data_dir, &self.log_config, &self.clock, rec)
                .map_err(storage_to_wire)?;
        meta.next_instance_id += 1;
        self.instances
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(inst.clone());
        if let Err(e) = store::save_instances(&self.data_dir, &self.instances_snapshot(&meta)) {
            self.instances
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(inst.id());
            drop(logs);
            if let Err(e2) = std::fs::remove_dir_all(instance_dir(&self.data_dir, inst.id())) {
                tracing::error!(error = %e2, "could not remove an instance whose creation failed");
            }
            return Err(storage_to_wire(e));
        }
        self.channel_total.fetch_add(logs.len(), Ordering::AcqRel);
        for (id, log) in logs {
            self.send_to_writer(WriterMsg::AddChannel {
                id,
                log: Box::new(log),
            });
        }
        Ok(inst)
    }

    /// Deletes an instance: its channels and their logs, its keys, users and
    /// groups. Open connections of its keys fail at their next request.
    ///
    /// # Errors
    /// `PermissionDenied`, `InstanceNotFound`, storage errors.
    pub fn delete_instance(&self, caller: &Caller, name: &str) -> Result<(), BrokerError> {
        caller.require_server_admin()?;
        let mut meta = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        let inst = self
            .instance(name)
            .ok_or_else(|| err(ErrorCode::InstanceNotFound, format!("no instance {name:?}")))?;
        let mut snap = self.instances_snapshot(&meta);
        snap.instances.retain(|r| r.id != inst.id());
        store::save_instances(&self.data_dir, &snap).map_err(storage_to_wire)?;
        self.instances
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(inst.id());
        inst.mark_deleted();
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove_instance(inst.id());
        let before = meta.admins.keys.len();
        meta.admins.keys.retain(|k| k.instance != Some(inst.id()));
        if meta.admins.keys.len() != before {
            if let Err(e) = store::save_admins(&self.data_dir, &meta.admins) {
                // The keys are unusable already (their instance is gone and
                // they are out of the index); the records are cleaned up at
                // the next successful save.
                tracing::error!(error = %e, "admin keys not saved after an instance delete");
            }
        }
        let channels = inst.channels();
        self.channel_total
            .fetch_sub(channels.len(), Ordering::AcqRel);
        for ch in channels {
            ch.mark_deleted();
            self.send_to_writer(WriterMsg::RemoveChannel { id: ch.id });
        }
        self.send_to_writer(WriterMsg::RemoveDir {
            path: instance_dir(&self.data_dir, inst.id()),
        });
        self.bump_epoch();
        Ok(())
    }

    /// Every instance the caller may see: all for a server-wide admin key,
    /// its own otherwise.
    pub fn visible_instances(&self, caller: &Caller) -> Vec<Arc<Instance>> {
        let mut all: Vec<Arc<Instance>> = if caller.is_server_admin() {
            self.instances
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .by_id
                .values()
                .cloned()
                .collect()
        } else {
            caller.instance().into_iter().cloned().collect()
        };
        all.sort_by_key(|i| i.id());
        all
    }
}
