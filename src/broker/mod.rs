//! The broker: instances, their channels and identities, access decisions,
//! and the queues to and from the log-writer thread.
//!
//! Owns: the instance and channel registries and their persisted settings,
//! keys, users and groups, who may do what, the append queue to the writer
//! and the completion queues back to io threads. Never touches sockets
//! (that is `net`) or byte layouts (`wire`, `storage`).

mod acl;
mod admin;
mod channel;
mod commit;
mod id_marks;
mod keys;
mod lock;
mod registry;
mod settings;
mod store;
mod tenancy;
pub mod uuids;
pub mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crossbeam_queue::ArrayQueue;

pub use acl::{access, Access, Caller, Principal, UserRef};
pub use channel::{
    channel_name, check_room_name, global_channel_id, is_builtin_name, is_slug, AheadOfHead,
    Channel, ChannelKind, ChannelSettings, Permission, DEFAULT_CHANNEL, EVENTLOG_CHANNEL,
    USER_STREAM_CHANNEL,
};
pub use keys::{generate_key, hash_key, KeyHash, KeyIndex, KeyOwner};
pub use lock::{DataDirLock, LockError, OpenError, LOCK_FILE};
pub use tenancy::{
    AdminKeyRecord, ApiKeyRecord, GroupRecord, Identities, Instance, InstanceRecord, UserRecord,
};

use crate::clock::SharedClock;
use crate::limits::{self, TenancyLimits};
use crate::storage::{ChannelLog, LogConfig, StorageError};
use crate::wire::{ErrorCode, WireError};
pub use settings::{BrokerConfig, ChannelstreamSettings, HttpSettings};
pub use store::BootstrapKey;
use store::MetaState;
use writer::{Completion, WriterMsg};

/// The instance a server-wide admin key addresses when it names none; the
/// first start creates it.
pub const DEFAULT_INSTANCE: &str = "default";

/// A failed broker operation: the stable code and message a client receives.
pub type BrokerError = WireError;

fn err(code: ErrorCode, message: impl Into<String>) -> BrokerError {
    WireError::new(code, message)
}

/// `AuthFailed` saying why: one code for every refused key, and a message
/// that tells its holder what to fix.
fn auth_failed(why: impl Into<String>) -> BrokerError {
    err(ErrorCode::AuthFailed, why)
}

fn no_such_key() -> BrokerError {
    auth_failed("no such key: it is neither an admin key nor an API key (it may have been revoked)")
}

/// Something an io thread must learn from the writer, with the waker to call.
#[derive(Debug)]
pub struct IoLink {
    /// Completions for this io thread.
    pub completions: ArrayQueue<Completion>,
    /// Wakes this io thread's event loop.
    pub waker: mio::Waker,
    /// Set when a wake is pending, so the writer wakes each thread once per batch.
    pub wake_pending: AtomicBool,
}

impl IoLink {
    /// Wakes the io thread unless a wake is already pending.
    pub fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.waker.wake() {
                tracing::error!(error = %e, "failed to wake an io thread");
            }
        }
    }
}

/// What [`Broker::open`] returns.
#[derive(Debug)]
pub struct Opened {
    /// The shared broker state.
    pub broker: Arc<Broker>,
    /// Every channel's log, for the writer thread.
    pub logs: HashMap<u64, ChannelLog>,
    /// What became of the bootstrap admin key (a generated one is shown
    /// once).
    pub bootstrap: BootstrapKey,
}

/// Live instances by id and by name.
#[derive(Debug, Default)]
struct InstanceTable {
    by_id: HashMap<u32, Arc<Instance>>,
    by_name: HashMap<String, u32>,
}

impl InstanceTable {
    fn insert(&mut self, inst: Arc<Instance>) {
        self.by_name.insert(inst.name().to_string(), inst.id());
        self.by_id.insert(inst.id(), inst);
    }
    fn remove(&mut self, id: u32) -> Option<Arc<Instance>> {
        let inst = self.by_id.remove(&id)?;
        self.by_name.remove(inst.name());
        Some(inst)
    }
    fn by_name(&self, name: &str) -> Option<&Arc<Instance>> {
        self.by_name.get(name).and_then(|id| self.by_id.get(id))
    }
}

/// State shared by every thread of one server.
#[derive(Debug)]
pub struct Broker {
    /// Held for the broker's whole life: one server per data directory.
    _lock: DataDirLock,
    data_dir: PathBuf,
    log_config: LogConfig,
    clock: SharedClock,
    limits: TenancyLimits,
    instances: RwLock<InstanceTable>,
    /// Serializes every metadata change with its snapshot; holds the admin
    /// keys and the instance id counter.
    meta: Mutex<MetaState>,
    keys: RwLock<KeyIndex>,
    /// Bumped by every change that can take access away (a revoked key, a
    /// deleted user, a membership or permission change, a deleted channel or
    /// instance); io threads re-check their connections when it moves.
    epoch: AtomicU64,
    /// Channels in all instances (bounded by `CHANNELS_MAX`).
    channel_total: AtomicUsize,
    /// Publishes and control messages for the writer.
    pub append_queue: ArrayQueue<WriterMsg>,
    /// Bytes of publish frames queued or being appended (bounded).
    pub inflight_bytes: AtomicUsize,
    /// The channel whose delete is taking its name's id mark (0: none):
    /// publishes to it wait until its removal is queued for the writer.
    deleting_channel: AtomicU64,
    /// One link per io thread, indexed by io thread number.
    pub io_links: Vec<Arc<IoLink>>,
    writer_thread: Mutex<Option<std::thread::Thread>>,
    writer_sleeping: AtomicBool,
    /// Set once shutdown has begun.
    pub shutting_down: AtomicBool,
    /// Set when the writer has synced and closed every log.
    pub writer_done: AtomicBool,
    /// Connections open now, all io threads together.
    pub connections: AtomicUsize,
    /// HTTP long polls parked now, all io threads together.
    pub parked_polls: AtomicUsize,
    /// Long-poll settings of the HTTP shim.
    pub http: HttpSettings,
    /// The key of the uuids the server assigns to messages.
    pub uuid_key: uuids::UuidKey,
    /// The Channelstream API's settings (`None`: off).
    pub channelstream: Option<ChannelstreamSettings>,
    /// Channelstream's users, connections and channels.
    pub cs_state: Mutex<crate::channelstream::state::State>,
    /// Batches the writer has published: readers that poll logs (the
    /// Channelstream transports) look again only when it moved.
    pub batches: AtomicU64,
}

/// Why an HTTP request's keys were refused, in Syncano's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAuthError {
    /// The instance in the URL does not exist (404).
    InstanceNotFound,
    /// A key was given and is not valid for the instance (403 "No such API Key.").
    NoSuchKey,
    /// No key at all (403 "You do not have permission ...").
    Anonymous,
}

/// Where the Channelstream face keeps its channels' configurations.
const CHANNELSTREAM_SNAPSHOT: &str = "meta/channelstream.snap";

impl Broker {
    /// Saves the Channelstream channels' configurations.
    ///
    /// # Errors
    /// I/O errors (the previous snapshot stays whole).
    pub fn save_channelstream(
        &self,
        snap: &crate::channelstream::state::Snapshot,
    ) -> Result<(), StorageError> {
        crate::storage::meta::write_snapshot(&self.data_dir.join(CHANNELSTREAM_SNAPSHOT), snap)
    }

    /// Opens (creating if needed) the broker state under `data_dir`: admin
    /// keys, instances with their identities and channels, and every
    /// channel's log (run through recovery). The first start creates the
    /// `default` instance and, without a bootstrap key, generates a
    /// server-wide admin key, returned to be shown once.
    ///
    /// Every way of opening a data directory comes through here, so this is
    /// where its lock is taken ([`DataDirLock`]); the broker holds it until
    /// it is dropped.
    ///
    /// # Errors
    /// [`OpenError::Locked`] when another server holds the directory (it is
    /// then left untouched); I/O or corruption errors from the metadata
    /// snapshots or logs.
    pub fn open(config: BrokerConfig, io_links: Vec<Arc<IoLink>>) -> Result<Opened, OpenError> {
        std::fs::create_dir_all(&config.data_dir).map_err(StorageError::from)?;
        let lock = DataDirLock::acquire(&config.data_dir)?;
        let loaded = store::load(&config)?;
        let uuid_key = uuids::UuidKey::load_or_create(&config.data_dir)?;
        let mut cs_state = crate::channelstream::state::State::default();
        if let Some(cs) = &config.channelstream {
            let path = config.data_dir.join(CHANNELSTREAM_SNAPSHOT);
            if let Some(snap) =
                crate::storage::meta::read_snapshot::<crate::channelstream::state::Snapshot>(&path)?
            {
                if snap.instance == cs.instance {
                    cs_state.restore(&snap, config.clock.now_us());
                }
            }
        }
        let mut table = InstanceTable::default();
        let mut channel_total = 0;
        for inst in loaded.instances {
            channel_total += inst.channel_count();
            table.insert(inst);
        }
        let broker = Arc::new(Broker {
            _lock: lock,
            data_dir: config.data_dir,
            log_config: config.log_config,
            clock: config.clock,
            limits: config.limits,
            instances: RwLock::new(table),
            meta: Mutex::new(loaded.meta),
            keys: RwLock::new(loaded.keys),
            epoch: AtomicU64::new(1),
            channel_total: AtomicUsize::new(channel_total),
            append_queue: ArrayQueue::new(limits::APPEND_QUEUE_LEN),
            inflight_bytes: AtomicUsize::new(0),
            deleting_channel: AtomicU64::new(0),
            io_links,
            writer_thread: Mutex::new(None),
            writer_sleeping: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            writer_done: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            parked_polls: AtomicUsize::new(0),
            http: config.http,
            uuid_key,
            channelstream: config.channelstream,
            cs_state: Mutex::new(cs_state),
            batches: AtomicU64::new(0),
        });
        Ok(Opened {
            broker,
            logs: loaded.logs,
            bootstrap: loaded.bootstrap,
        })
    }

    /// The clock every component reads.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The access epoch: it moves whenever access may have been taken away.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Moves the access epoch and wakes the io threads to re-check.
    fn bump_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.wake_all_io();
    }

    /// The live instance called `name`.
    pub fn instance(&self, name: &str) -> Option<Arc<Instance>> {
        self.instances
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_name(name)
            .cloned()
    }

    fn instance_by_id(&self, id: u32) -> Option<Arc<Instance>> {
        self.instances
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_id
            .get(&id)
            .cloned()
    }

    /// Checks a key (and an optional user key) and returns who it proves,
    /// addressing `instance` (empty: the key's own instance, or
    /// [`DEFAULT_INSTANCE`] for a server-wide admin key).
    ///
    /// # Errors
    /// `AuthFailed` for an unknown, revoked or wrong key, a key of another
    /// instance, or a user key that is not paired with an API key of its
    /// instance (one answer for all); `InstanceNotFound` when a server-wide
    /// admin key names an instance that does not exist.
    pub fn authenticate(
        &self,
        instance: &str,
        key: &str,
        user_key: &str,
    ) -> Result<Caller, BrokerError> {
        let owner = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .find(key)
            .ok_or_else(no_such_key)?;
        let (inst, principal) = match owner {
            KeyOwner::Admin { id, instance: None } => {
                let name = if instance.is_empty() {
                    DEFAULT_INSTANCE
                } else {
                    instance
                };
                let inst = self.instance(name);
                if inst.is_none() && !instance.is_empty() {
                    return Err(err(
                        ErrorCode::InstanceNotFound,
                        format!("no instance {instance:?}"),
                    ));
                }
                let principal = Principal::Admin {
                    id,
                    server_wide: true,
                };
                (inst, principal)
            }
            KeyOwner::Admin {
                id,
                instance: Some(iid),
            } => {
                let principal = Principal::Admin {
                    id,
                    server_wide: false,
                };
                (Some(self.own_instance(iid, instance)?), principal)
            }
            KeyOwner::Api { instance: iid, id } => {
                let inst = self.own_instance(iid, instance)?;
                let rec = inst
                    .identities()
                    .api_keys
                    .get(&id)
                    .cloned()
                    .ok_or_else(no_such_key)?;
                let principal = Principal::ApiKey {
                    id,
                    ignore_acl: rec.ignore_acl,
                    allow_anonymous_read: rec.allow_anonymous_read,
                };
                (Some(inst), principal)
            }
            KeyOwner::User { .. } => {
                return Err(auth_failed(
                    "that is a user key: send it as the user key (--user-key, TIDEWIRE_USER_KEY) together with an API key",
                ))
            }
        };
        let user = if user_key.is_empty() {
            None
        } else {
            Some(self.user_of(&inst, principal, user_key)?)
        };
        Ok(Caller {
            instance: inst,
            principal,
            user,
        })
    }

    /// Checks the keys of an HTTP request to instance `instance`, in the
    /// order the Syncano API answers: the instance first, then the keys. A
    /// user key that goes with no user of the instance is ignored, as the
    /// platform did; the binary protocol's `Auth` refuses it instead.
    ///
    /// # Errors
    /// [`HttpAuthError`].
    pub fn authenticate_http(
        &self,
        instance: &str,
        key: Option<&str>,
        user_key: Option<&str>,
    ) -> Result<Caller, HttpAuthError> {
        if self.instance(instance).is_none() {
            return Err(HttpAuthError::InstanceNotFound);
        }
        let key = key.ok_or(HttpAuthError::Anonymous)?;
        match (
            self.authenticate(instance, key, user_key.unwrap_or("")),
            user_key,
        ) {
            (Ok(caller), _) => Ok(caller),
            // As the platform did (`get_auth_user`): a user key that names
            // no user of the instance is ignored, and the request runs as
            // the key alone, which can do no more than with a user.
            (Err(_), Some(_)) => self
                .authenticate(instance, key, "")
                .map_err(|_| HttpAuthError::NoSuchKey),
            (Err(_), None) => Err(HttpAuthError::NoSuchKey),
        }
    }

    /// Takes one poll from the rate of `caller`'s instance.
    ///
    /// # Errors
    /// Seconds until the instance may poll again.
    pub fn take_poll(&self, caller: &Caller) -> Result<(), u32> {
        let rate = self.http.poll_rate_per_instance;
        match (&caller.instance, rate) {
            (_, 0) | (None, _) => Ok(()),
            (Some(inst), rate) => inst.take_poll(rate, self.clock.now_us()),
        }
    }

    /// Counts of what the server holds now (`server.stats`).
    pub fn stats(&self) -> serde_json::Value {
        let table = self.instances.read().unwrap_or_else(|p| p.into_inner());
        serde_json::json!({
            "instances": table.by_id.len(),
            "channels": self.channel_total.load(Ordering::Acquire),
            "connections": self.connections.load(Ordering::Acquire),
            "parked_polls": self.parked_polls.load(Ordering::Acquire),
            "inflight_bytes": self.inflight_bytes.load(Ordering::Acquire),
        })
    }

    /// The instance of an instance-scoped key, which `named` (when given)
    /// must name.
    fn own_instance(&self, iid: u32, named: &str) -> Result<Arc<Instance>, BrokerError> {
        let inst = self
            .instance_by_id(iid)
            .ok_or_else(|| auth_failed("the key's instance was deleted"))?;
        if !named.is_empty() && named != inst.name() {
            return Err(auth_failed(format!(
                "the key belongs to instance {:?}, not {named:?}",
                inst.name()
            )));
        }
        Ok(inst)
    }

    fn user_of(
        &self,
        inst: &Option<Arc<Instance>>,
        principal: Principal,
        user_key: &str,
    ) -> Result<UserRef, BrokerError> {
        let Some(inst) = inst else {
            return Err(auth_failed("a user key needs an instance"));
        };
        if !matches!(principal, Principal::ApiKey { .. }) {
            return Err(auth_failed(
                "a user key goes with an API key; an admin key acts as itself (send no user key)",
            ));
        }
        let no_user = || {
            auth_failed(format!(
                "the user key is not the key of a user of instance {:?} (it may have been reset, or the user deleted)",
                inst.name()
            ))
        };
        let owner = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .find(user_key)
            .ok_or_else(no_user)?;
        let KeyOwner::User { instance, id } = owner else {
            return Err(no_user());
        };
        if instance != inst.id() {
            return Err(no_user());
        }
        let ids = inst.identities();
        let u = ids.users.get(&id).ok_or_else(no_user)?;
        Ok(UserRef {
            id,
            name: u.username.as_str().into(),
            key_hash: u.sha256,
        })
    }

    /// `caller` as it stands now: `None` when its key, user or instance is
    /// gone; otherwise with current key flags and user name.
    pub fn refresh(&self, caller: &Caller) -> Option<Caller> {
        let alive = |i: &Option<Arc<Instance>>| -> Option<Arc<Instance>> {
            i.as_ref().filter(|i| !i.is_deleted()).cloned()
        };
        match caller.principal {
            Principal::Admin { id, server_wide } => {
                let known = self
                    .meta
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .admins
                    .keys
                    .iter()
                    .any(|k| k.id == id && !k.revoked);
                if !known {
                    return None;
                }
                let instance = alive(&caller.instance);
                if instance.is_none() && !server_wide {
                    return None;
                }
                Some(Caller {
                    instance,
                    principal: caller.principal,
                    user: None,
                })
            }
            Principal::ApiKey { id, .. } => {
                let inst = alive(&caller.instance)?;
                let ids = inst.identities();
                let rec = ids.api_keys.get(&id)?;
                let principal = Principal::ApiKey {
                    id,
                    ignore_acl: rec.ignore_acl,
                    allow_anonymous_read: rec.allow_anonymous_read,
                };
                let user = match &caller.user {
                    None => None,
                    Some(u) => {
                        let rec = ids.users.get(&u.id).filter(|r| r.sha256 == u.key_hash)?;
                        Some(UserRef {
                            id: u.id,
                            name: rec.username.as_str().into(),
                            key_hash: rec.sha256,
                        })
                    }
                };
                drop(ids);
                Some(Caller {
                    instance: Some(inst),
                    principal,
                    user,
                })
            }
        }
    }

    /// The channel called `name` in the caller's instance (no access
    /// check), the name read by [`channel_name`] as on every path.
    ///
    /// # Errors
    /// `BadRequest`/`InvalidName` for a name that cannot be one,
    /// `InstanceNotFound`, `ChannelNotFound` (naming the instance searched).
    pub fn channel(&self, caller: &Caller, name: &str) -> Result<Arc<Channel>, BrokerError> {
        let name = channel_name(name)?;
        let inst = caller.instance()?;
        inst.channel(&name)
            .filter(|c| !c.is_deleted())
            .ok_or_else(|| {
                err(
                    ErrorCode::ChannelNotFound,
                    format!("no channel {name:?} in instance {:?}", inst.name()),
                )
            })
    }

    /// What `caller` may do on `ch` now.
    pub fn access(&self, caller: &Caller, ch: &Channel) -> Access {
        let Ok(inst) = caller.instance() else {
            return Access::default();
        };
        if inst.id() != ch.instance_id {
            return Access::default();
        }
        if ch.is_user_stream() {
            // A user reads its own messages there; keys without a user
            // (backends) send them.
            let user = caller.user.is_some();
            return Access {
                read: user,
                write: !user,
                custom_publish: true,
            };
        }
        let ids = inst.identities();
        ch.with_settings(|s| access(caller, s, &ids))
    }

    /// The channels of the caller's instance it may read, sorted by name.
    /// An anonymous-read key without a user lists only the channels open to
    /// every user (`other_permissions` at least `subscribe`), as Syncano
    /// did, though it may read the others by name.
    ///
    /// # Errors
    /// `InstanceNotFound`.
    pub fn visible_channels(&self, caller: &Caller) -> Result<Vec<Arc<Channel>>, BrokerError> {
        let inst = caller.instance()?;
        let ids = inst.identities();
        let anonymous = matches!(
            caller.principal,
            Principal::ApiKey {
                ignore_acl: false,
                allow_anonymous_read: true,
                ..
            }
        ) && caller.user.is_none();
        Ok(inst
            .channels()
            .into_iter()
            .filter(|c| !c.is_user_stream())
            .filter(|c| {
                c.with_settings(|s| {
                    if anonymous {
                        s.other_permissions >= Permission::Subscribe
                    } else {
                        access(caller, s, &ids).read
                    }
                })
            })
            .collect())
    }
    /// Queues a control message for the writer, waiting for room: control
    /// messages are rare and must not be lost.
    fn send_to_writer(&self, mut msg: WriterMsg) {
        loop {
            match self.append_queue.push(msg) {
                Ok(()) => break,
                Err(back) => {
                    msg = back;
                    self.unpark_writer();
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            }
        }
        self.unpark_writer();
    }

    /// Queues a publish for the writer; gives it back when the queue is full
    /// (or while its channel's delete takes the name's id mark).
    ///
    /// # Errors
    /// The message itself when the queue or the in-flight byte budget is
    /// full, or its channel is being deleted.
    #[allow(clippy::result_large_err)] // the message is handed back, not an error value
    pub fn try_append(&self, msg: WriterMsg, bytes: usize) -> Result<(), WriterMsg> {
        let before = self.inflight_bytes.fetch_add(bytes, Ordering::SeqCst);
        if before > 0 && before + bytes > limits::INFLIGHT_BYTES_MAX {
            self.inflight_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(msg);
        }
        // Counted first, then checked (both SeqCst), against the delete's
        // store then read: either the delete's id mark counts these bytes,
        // or this publish waits until the removal is queued ahead of it
        // (and is then refused by the writer with `ChannelNotFound`).
        let channel = match &msg {
            WriterMsg::Publish(req) => Some(req.channel_id),
            WriterMsg::Amend(req) => Some(req.channel_id),
            _ => None,
        };
        if channel.is_some_and(|c| c == self.deleting_channel.load(Ordering::SeqCst)) {
            self.inflight_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(msg);
        }
        match self.append_queue.push(msg) {
            Ok(()) => {
                self.unpark_writer();
                Ok(())
            }
            Err(back) => {
                self.inflight_bytes.fetch_sub(bytes, Ordering::AcqRel);
                self.unpark_writer();
                Err(back)
            }
        }
    }

    /// Registers the writer thread so producers can unpark it.
    pub fn set_writer_thread(&self, t: std::thread::Thread) {
        *self.writer_thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
    }

    /// Marks the writer as about to park (it re-checks the queue afterwards).
    pub fn writer_parking(&self, sleeping: bool) {
        self.writer_sleeping.store(sleeping, Ordering::SeqCst);
    }

    /// Wakes the writer if it is parked.
    pub fn unpark_writer(&self) {
        if self.writer_sleeping.load(Ordering::SeqCst) {
            if let Some(t) = &*self.writer_thread.lock().unwrap_or_else(|p| p.into_inner()) {
                t.unpark();
            }
        }
    }

    /// Hands completions to their io threads' queues (one list per io
    /// thread, emptied), waking each thread that got some.
    pub fn push_completions(&self, outbox: &mut [Vec<Completion>]) {
        for (thread, out) in outbox.iter_mut().enumerate() {
            let Some(link) = self.io_links.get(thread) else {
                out.clear();
                continue;
            };
            if out.is_empty() {
                continue;
            }
            for c in out.drain(..) {
                let mut c = c;
                // The completion queue holds more entries than can be in
                // flight, so this only waits while an io thread catches up.
                while let Err(back) = link.completions.push(c) {
                    c = back;
                    link.wake();
                    std::thread::yield_now();
                }
            }
            link.wake();
        }
    }

    /// Wakes every io thread.
    pub fn wake_all_io(&self) {
        for link in &self.io_links {
            link.wake();
        }
    }
}

/// The directory of instance `instance_id`.
pub fn instance_dir(data_dir: &Path, instance_id: u32) -> PathBuf {
    data_dir.join("instances").join(instance_id.to_string())
}

/// The directory of the log of channel `local_id` of instance `instance_id`.
pub fn channel_dir(data_dir: &Path, instance_id: u32, local_id: u64) -> PathBuf {
    instance_dir(data_dir, instance_id)
        .join("channels")
        .join(local_id.to_string())
}

/// Maps a storage error to what a client is told.
pub fn storage_to_wire(e: StorageError) -> BrokerError {
    match e {
        StorageError::StorageFull => err(ErrorCode::StorageFull, "storage full; retry later"),
        StorageError::Poisoned(why) => err(ErrorCode::StorageFailed, why),
        StorageError::Invalid(why) => err(ErrorCode::BadRequest, why),
        other => {
            tracing::error!(error = %other, "storage error");
            err(ErrorCode::Internal, "storage error")
        }
    }
}

fn parse_json_object(
    json: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, BrokerError> {
    if json.len() > limits::ADMIN_JSON_LEN_MAX {
        return Err(err(
            ErrorCode::BadRequest,
            "JSON body over ADMIN_JSON_LEN_MAX",
        ));
    }
    match serde_json::from_slice::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(err(ErrorCode::BadRequest, "expected a JSON object")),
        Err(e) => Err(err(ErrorCode::BadRequest, format!("invalid JSON: {e}"))),
    }
}
