//! The broker's metadata on disk: which snapshot holds what, loading them at
//! start (with the first-start defaults and the upgrade of a data directory
//! from before instances), and writing them after a change.
//!
//! ```text
//! <data_dir>/meta/admins.snap                  admin keys (hashes)
//! <data_dir>/meta/instances.snap               instances, next instance id
//! <data_dir>/instances/<id>/identities.snap    API keys, users, groups
//! <data_dir>/instances/<id>/channels.snap      channel settings, next channel id, id marks
//! <data_dir>/instances/<id>/channels/<id>/     each channel's log
//! ```
//!
//! Every snapshot is written atomically (`storage::meta`); a change is
//! visible to clients only after its snapshot is on disk.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::channel::{Channel, ChannelSettings, DEFAULT_CHANNEL, EVENTLOG_CHANNEL};
use super::id_marks::IdMarks;
use super::keys::{generate_key, hash_key, KeyHash, KeyIndex, KeyOwner};
use super::tenancy::{AdminKeyRecord, Identities, Instance, InstanceRecord};
use super::{channel_dir, instance_dir, BrokerConfig, DEFAULT_INSTANCE};
use crate::clock::SharedClock;
use crate::storage::{meta, ChannelLog, LogConfig, StorageError};

/// Persisted admin keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AdminsSnapshot {
    /// Next admin key id.
    pub next_id: u64,
    /// Every admin key.
    pub keys: Vec<AdminKeyRecord>,
}

/// Persisted instance list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InstancesSnapshot {
    /// Next instance id (ids are never reused).
    pub next_instance_id: u32,
    /// Every live instance.
    pub instances: Vec<InstanceRecord>,
}

/// Persisted channel settings of one instance.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChannelsSnapshot {
    /// Next channel id in the instance.
    pub next_channel_id: u64,
    /// Every channel.
    pub channels: Vec<ChannelSettings>,
    /// Per deleted channel name, the highest id a channel of that name
    /// assigned: a channel created again under it continues after it.
    pub id_marks: Vec<(String, u64)>,
}

/// The layout of a channels snapshot written before it carried id marks
/// (also that of the single-instance `meta/channels.snap` of earlier data
/// directories).
#[derive(Debug, Deserialize)]
struct ChannelsSnapshotV1 {
    next_channel_id: u64,
    channels: Vec<ChannelSettings>,
}

/// Reads a channels snapshot in the current layout or the one before id
/// marks (each decodes exactly only in its own layout).
///
/// # Errors
/// I/O errors; corruption when the file decodes in neither layout.
fn read_channels(path: &Path) -> Result<Option<ChannelsSnapshot>, StorageError> {
    match meta::read_snapshot::<ChannelsSnapshot>(path) {
        Err(StorageError::Corruption(why)) => match meta::read_snapshot::<ChannelsSnapshotV1>(path)
        {
            Ok(old) => Ok(old.map(|v1| ChannelsSnapshot {
                next_channel_id: v1.next_channel_id,
                channels: v1.channels,
                id_marks: Vec::new(),
            })),
            Err(_) => Err(StorageError::Corruption(why)),
        },
        other => other,
    }
}

/// Admin keys of a data directory from before instances.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LegacyKeysSnapshot {
    next_id: u64,
    admin_keys: Vec<LegacyKeyRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LegacyKeyRecord {
    id: u64,
    sha256: KeyHash,
    created_at_us: u64,
}

/// The server-wide metadata the broker's metadata lock guards.
#[derive(Debug)]
pub struct MetaState {
    /// Admin keys.
    pub admins: AdminsSnapshot,
    /// Next instance id.
    pub next_instance_id: u32,
}

/// What became of the bootstrap admin key (`admin_key`, or
/// `TIDEWIRE_ADMIN_KEY`) at a start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapKey {
    /// None was given, and server-wide or instance admin keys exist.
    None,
    /// None was given on a first start: this key was generated, to be
    /// shown once.
    Generated(String),
    /// The given key is server-wide admin key `id` already.
    Known(u64),
    /// The given key became the first admin key, `id`.
    First(u64),
    /// The given key was new: it is now server-wide admin key `id` (the
    /// earlier ones still work).
    Added(u64),
    /// The given key is admin key `id`, which was revoked: it does not work.
    Revoked(u64),
}

/// Everything [`load`] found.
pub struct Loaded {
    /// Admin keys and counters.
    pub meta: MetaState,
    /// Every instance with its channels.
    pub instances: Vec<Arc<Instance>>,
    /// Every key.
    pub keys: KeyIndex,
    /// Every channel's log.
    pub logs: HashMap<u64, ChannelLog>,
    /// What became of the bootstrap admin key at this start.
    pub bootstrap: BootstrapKey,
}

fn admins_path(d: &Path) -> PathBuf {
    d.join("meta/admins.snap")
}
fn instances_path(d: &Path) -> PathBuf {
    d.join("meta/instances.snap")
}
fn identities_path(d: &Path, iid: u32) -> PathBuf {
    instance_dir(d, iid).join("identities.snap")
}
fn channels_path(d: &Path, iid: u32) -> PathBuf {
    instance_dir(d, iid).join("channels.snap")
}

/// Loads every snapshot and opens every log.
///
/// # Errors
/// I/O or corruption errors.
pub fn load(config: &BrokerConfig) -> Result<Loaded, StorageError> {
    let d = &config.data_dir;
    std::fs::create_dir_all(d.join("meta"))?;
    let (admins, bootstrap) = load_admins(d, config)?;
    let mut keys = KeyIndex::default();
    for k in admins.keys.iter().filter(|k| !k.revoked) {
        keys.insert(
            k.sha256,
            KeyOwner::Admin {
                id: k.id,
                instance: k.instance,
            },
        );
    }
    let mut logs = HashMap::new();
    let snap = match meta::read_snapshot::<InstancesSnapshot>(&instances_path(d))? {
        Some(s) => s,
        None => first_instances(config, &mut logs)?,
    };
    remove_orphan_instances(d, &snap.instances);
    let mut instances = Vec::with_capacity(snap.instances.len());
    for rec in snap.instances {
        if let Some(inst) = instances.iter().find(|i: &&Arc<Instance>| i.id() == rec.id) {
            tracing::warn!(
                instance = inst.id(),
                "instance listed twice; keeping the first"
            );
            continue;
        }
        let inst = open_instance(config, rec, &mut logs, &mut keys)?;
        instances.push(inst);
    }
    Ok(Loaded {
        meta: MetaState {
            admins,
            next_instance_id: snap.next_instance_id.max(2),
        },
        instances,
        keys,
        logs,
        bootstrap,
    })
}

/// The admin keys, with the bootstrap key added (or one generated when
/// there is none at all).
fn load_admins(
    d: &Path,
    config: &BrokerConfig,
) -> Result<(AdminsSnapshot, BootstrapKey), StorageError> {
    let (mut admins, mut dirty) = match meta::read_snapshot::<AdminsSnapshot>(&admins_path(d))? {
        Some(a) => (a, false),
        None => match meta::read_snapshot::<LegacyKeysSnapshot>(&d.join("meta/keys.snap"))? {
            Some(legacy) => (upgrade_keys(legacy), true),
            None => (AdminsSnapshot::default(), false),
        },
    };
    let (key, description) = match &config.admin_key {
        Some(k) => (k.clone(), "bootstrap: admin_key or TIDEWIRE_ADMIN_KEY"),
        None if admins.keys.is_empty() => (generate_key()?, "bootstrap: generated at first start"),
        None => return Ok((admins, BootstrapKey::None)),
    };
    let h = hash_key(&key);
    let bootstrap = match admins.keys.iter().find(|k| k.sha256 == h) {
        Some(k) if k.revoked => BootstrapKey::Revoked(k.id),
        Some(k) => BootstrapKey::Known(k.id),
        None => {
            let first = admins.keys.is_empty();
            admins.next_id = admins.next_id.max(1);
            let id = admins.next_id;
            admins.keys.push(AdminKeyRecord {
                id,
                sha256: h,
                instance: None,
                description: description.into(),
                created_at_us: config.clock.now_us(),
                revoked: false,
            });
            admins.next_id += 1;
            dirty = true;
            match (config.admin_key.is_some(), first) {
                (false, _) => BootstrapKey::Generated(key),
                (true, true) => BootstrapKey::First(id),
                (true, false) => BootstrapKey::Added(id),
            }
        }
    };
    if dirty {
        save_admins(d, &admins)?;
    }
    Ok((admins, bootstrap))
}

fn upgrade_keys(legacy: LegacyKeysSnapshot) -> AdminsSnapshot {
    AdminsSnapshot {
        next_id: legacy.next_id,
        keys: legacy
            .admin_keys
            .into_iter()
            .map(|k| AdminKeyRecord {
                id: k.id,
                sha256: k.sha256,
                instance: None,
                description: String::new(),
                created_at_us: k.created_at_us,
                revoked: false,
            })
            .collect(),
    }
}

/// The instance list of a first start: the `default` instance, holding the
/// channels of a data directory from before instances if there is one.
fn first_instances(
    config: &BrokerConfig,
    logs: &mut HashMap<u64, ChannelLog>,
) -> Result<InstancesSnapshot, StorageError> {
    let d = &config.data_dir;
    let rec = InstanceRecord {
        id: 1,
        name: DEFAULT_INSTANCE.into(),
        description: String::new(),
        created_at_us: config.clock.now_us(),
    };
    let legacy = d.join("meta/channels.snap");
    if let Some(channels) = read_channels(&legacy)? {
        // The old layout already kept logs under instances/1/channels/<id>.
        std::fs::create_dir_all(instance_dir(d, 1))?;
        meta::write_snapshot(&channels_path(d, 1), &channels)?;
        save_identities(d, 1, &Identities::default())?;
    } else {
        let (_inst, new_logs) = create_instance(d, &config.log_config, &config.clock, rec.clone())?;
        logs.extend(new_logs);
    }
    let snap = InstancesSnapshot {
        next_instance_id: 2,
        instances: vec![rec],
    };
    meta::write_snapshot(&instances_path(d), &snap)?;
    Ok(snap)
}

/// Deletes the directories of instances that are no longer listed (their
/// deletion was interrupted); their ids are never reused.
fn remove_orphan_instances(d: &Path, live: &[InstanceRecord]) {
    let live: HashSet<String> = live.iter().map(|r| r.id.to_string()).collect();
    let Ok(entries) = std::fs::read_dir(d.join("instances")) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_ok() && !live.contains(&name) {
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                tracing::warn!(dir = %e.path().display(), error = %err, "could not remove a deleted instance's directory");
            }
        }
    }
}

/// Opens the log of channel `s`, whose ids start after `id_mark` (the
/// highest id a deleted channel of its name had; 0: none).
fn open_log(
    d: &Path,
    iid: u32,
    s: &ChannelSettings,
    id_mark: u64,
    log_config: &LogConfig,
    clock: &SharedClock,
) -> Result<ChannelLog, StorageError> {
    let mut cfg = log_config.clone();
    if let Some(r) = s.retention_us {
        cfg.retention_us = r;
    }
    cfg.first_id_floor = id_mark.saturating_add(1);
    let (log, report) = ChannelLog::open(&channel_dir(d, iid, s.id), cfg, clock.clone())?;
    for action in &report.actions {
        tracing::warn!(instance = iid, channel = %s.name, "recovery: {action}");
    }
    Ok(log)
}

fn open_instance(
    config: &BrokerConfig,
    rec: InstanceRecord,
    logs: &mut HashMap<u64, ChannelLog>,
    keys: &mut KeyIndex,
) -> Result<Arc<Instance>, StorageError> {
    let d = &config.data_dir;
    let iid = rec.id;
    let ids: Identities = meta::read_snapshot(&identities_path(d, iid))?.unwrap_or_default();
    for k in ids.api_keys.values() {
        keys.insert(
            k.sha256,
            KeyOwner::Api {
                instance: iid,
                id: k.id,
            },
        );
    }
    for u in ids.users.values() {
        keys.insert(
            u.sha256,
            KeyOwner::User {
                instance: iid,
                id: u.id,
            },
        );
    }
    let snap = read_channels(&channels_path(d, iid))?.unwrap_or_default();
    let inst = Instance::new(rec, ids);
    let marks = IdMarks::from_snapshot(snap.id_marks);
    for s in snap.channels {
        if let Some(log) = logs.get(&super::global_channel_id(iid, s.id)) {
            // Created by this start (first start): already open.
            let ch = Arc::new(Channel::new(iid, s, log.reader()));
            inst.channels_mut().insert(ch.name().to_string(), ch);
            continue;
        }
        let mark = marks.mark(&s.name);
        let log = open_log(d, iid, &s, mark, &config.log_config, &config.clock)?;
        let ch = Arc::new(Channel::new(iid, s, log.reader()));
        logs.insert(ch.id, log);
        inst.channels_mut().insert(ch.name().to_string(), ch);
    }
    *inst.id_marks() = marks;
    inst.set_next_channel_id(snap.next_channel_id.max(1));
    Ok(Arc::new(inst))
}

/// A new instance and the logs of its channels (by channel id).
pub type NewInstance = (Arc<Instance>, Vec<(u64, ChannelLog)>);

/// Creates a new instance on disk: its directory, empty identities and the
/// built-in `default` and `eventlog` channels. Returns the instance and the
/// logs of its channels (for the writer).
///
/// # Errors
/// I/O errors.
pub fn create_instance(
    d: &Path,
    log_config: &LogConfig,
    clock: &SharedClock,
    rec: InstanceRecord,
) -> Result<NewInstance, StorageError> {
    let iid = rec.id;
    std::fs::create_dir_all(instance_dir(d, iid))?;
    save_identities(d, iid, &Identities::default())?;
    let now = clock.now_us();
    let inst = Instance::new(rec, Identities::default());
    let mut logs = Vec::new();
    for (local, name) in [(1, DEFAULT_CHANNEL), (2, EVENTLOG_CHANNEL)] {
        let s = ChannelSettings::builtin(name, local, now);
        let log = open_log(d, iid, &s, 0, log_config, clock)?;
        let ch = Arc::new(Channel::new(iid, s, log.reader()));
        logs.push((ch.id, log));
        inst.channels_mut().insert(ch.name().to_string(), ch);
    }
    inst.set_next_channel_id(3);
    save_channels(d, &inst)?;
    Ok((Arc::new(inst), logs))
}

/// Writes the admin keys.
///
/// # Errors
/// I/O errors.
pub fn save_admins(d: &Path, admins: &AdminsSnapshot) -> Result<(), StorageError> {
    meta::write_snapshot(&admins_path(d), admins)
}

/// Writes the instance list.
///
/// # Errors
/// I/O errors.
pub fn save_instances(d: &Path, snap: &InstancesSnapshot) -> Result<(), StorageError> {
    meta::write_snapshot(&instances_path(d), snap)
}

/// Writes one instance's identities.
///
/// # Errors
/// I/O errors.
pub fn save_identities(d: &Path, iid: u32, ids: &Identities) -> Result<(), StorageError> {
    meta::write_snapshot(&identities_path(d, iid), ids)
}

/// Writes one instance's channel settings and id marks.
///
/// # Errors
/// I/O errors.
pub fn save_channels(d: &Path, inst: &Instance) -> Result<(), StorageError> {
    let snap = ChannelsSnapshot {
        next_channel_id: inst.next_channel_id(),
        channels: inst.channels().iter().map(|c| c.settings()).collect(),
        id_marks: inst.id_marks().snapshot(),
    };
    meta::write_snapshot(&channels_path(d, inst.id()), &snap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::TenancyLimits;

    fn config(dir: &Path, admin_key: Option<&str>) -> BrokerConfig {
        BrokerConfig {
            data_dir: dir.to_path_buf(),
            log_config: LogConfig {
                segment_size: crate::limits::SEGMENT_SIZE_MIN,
                ..LogConfig::default()
            },
            clock: crate::clock::ManualClock::new(1_000_000),
            admin_key: admin_key.map(str::to_string),
            limits: TenancyLimits::default(),
            http: super::super::HttpSettings::default(),
            channelstream: None,
        }
    }

    #[test]
    fn a_data_directory_from_before_instances_becomes_the_default_instance() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("meta")).unwrap();
        let legacy_keys = LegacyKeysSnapshot {
            next_id: 2,
            admin_keys: vec![LegacyKeyRecord {
                id: 1,
                sha256: hash_key("old-key"),
                created_at_us: 5,
            }],
        };
        meta::write_snapshot(&d.join("meta/keys.snap"), &legacy_keys).unwrap();
        let mut s = ChannelSettings::builtin("x", 7, 5);
        s.name = "orders".into();
        #[derive(Serialize)]
        struct V1 {
            next_channel_id: u64,
            channels: Vec<ChannelSettings>,
        }
        let channels = V1 {
            next_channel_id: 8,
            channels: vec![s],
        };
        meta::write_snapshot(&d.join("meta/channels.snap"), &channels).unwrap();
        let loaded = load(&config(d, None)).unwrap();
        assert_eq!(loaded.bootstrap, BootstrapKey::None, "the old key is kept");
        assert_eq!(
            loaded.keys.find("old-key"),
            Some(KeyOwner::Admin {
                id: 1,
                instance: None
            })
        );
        assert_eq!(loaded.instances.len(), 1);
        let inst = &loaded.instances[0];
        assert_eq!((inst.id(), inst.name()), (1, DEFAULT_INSTANCE));
        let ch = inst.channel("orders").expect("the old channel");
        assert_eq!(ch.id, super::super::global_channel_id(1, 7));
        assert!(d.join("instances/1/channels/7").is_dir());
        assert_eq!(inst.next_channel_id(), 8);
        drop(loaded);
        // A second start reads the new layout.
        let again = load(&config(d, None)).unwrap();
        assert!(again.instances[0].channel("orders").is_some());
    }

    #[test]
    fn a_revoked_bootstrap_key_is_not_added_back_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let first = load(&config(d, Some("boot"))).unwrap();
        assert!(first.keys.find("boot").is_some());
        assert_eq!(first.bootstrap, BootstrapKey::First(1));
        let mut admins = first.meta.admins.clone();
        drop(first);
        admins.keys[0].revoked = true;
        save_admins(d, &admins).unwrap();
        let second = load(&config(d, Some("boot"))).unwrap();
        assert_eq!(second.keys.find("boot"), None);
        assert_eq!(second.meta.admins.keys.len(), 1);
        assert_eq!(second.bootstrap, BootstrapKey::Revoked(1), "and it is said");
    }

    #[test]
    fn each_new_bootstrap_key_is_added_and_reported_the_known_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let first = load(&config(d, None)).unwrap();
        let BootstrapKey::Generated(generated) = first.bootstrap.clone() else {
            panic!("a first start without a key generates one");
        };
        drop(first);
        let again = load(&config(d, Some(&generated))).unwrap();
        assert_eq!(again.bootstrap, BootstrapKey::Known(1));
        drop(again);
        let other = load(&config(d, Some("another"))).unwrap();
        assert_eq!(other.bootstrap, BootstrapKey::Added(2));
        let descriptions: Vec<&str> = other
            .meta
            .admins
            .keys
            .iter()
            .map(|k| k.description.as_str())
            .collect();
        assert_eq!(
            descriptions,
            [
                "bootstrap: generated at first start",
                "bootstrap: admin_key or TIDEWIRE_ADMIN_KEY"
            ]
        );
    }
}
