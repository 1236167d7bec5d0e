//! The broker: channels, keys, access decisions, and the log-writer thread.
//!
//! Owns: the channel registry and its persisted settings, identities, the
//! append queue to the writer and the completion queues back to io threads.
//! Never touches sockets (that is `net`) or byte layouts (`wire`, `storage`).

mod channel;
mod keys;
pub mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crossbeam_queue::ArrayQueue;
use serde::{Deserialize, Serialize};

pub use channel::{Channel, ChannelKind, ChannelSettings, Permission};
pub use keys::{generate_key, Identity, KeyStore};

use crate::clock::SharedClock;
use crate::limits;
use crate::storage::{meta, ChannelLog, LogConfig, StorageError};
use crate::wire::{ErrorCode, WireError};
use writer::{Completion, WriterMsg};

/// The only instance until tenancy arrives; directories are named by its id.
pub const DEFAULT_INSTANCE_ID: u32 = 1;

/// A failed broker operation: the stable code and message a client receives.
pub type BrokerError = WireError;

fn err(code: ErrorCode, message: impl Into<String>) -> BrokerError {
    WireError::new(code, message)
}

/// Persisted channel registry.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ChannelsSnapshot {
    next_channel_id: u64,
    channels: Vec<ChannelSettings>,
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
    /// An admin key generated at this start, to be shown once.
    pub generated_admin_key: Option<String>,
}

/// State shared by every thread of one server.
#[derive(Debug)]
pub struct Broker {
    data_dir: PathBuf,
    log_config: LogConfig,
    clock: SharedClock,
    channels: RwLock<HashMap<String, Arc<Channel>>>,
    /// Serializes channel creation, update and deletion with their snapshot.
    admin_lock: Mutex<u64>,
    keys: KeyStore,
    /// Publishes and control messages for the writer.
    pub append_queue: ArrayQueue<WriterMsg>,
    /// Bytes of publish frames queued or being appended (bounded).
    pub inflight_bytes: AtomicUsize,
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
}

impl Broker {
    /// Opens (creating if needed) the broker state under `data_dir`: keys,
    /// channel settings, and every channel's log (run through recovery).
    /// Returns the broker, the logs for the writer thread, and a newly
    /// generated admin key when one was created.
    ///
    /// # Errors
    /// I/O or corruption errors from the metadata snapshots or logs.
    pub fn open(
        data_dir: &Path,
        log_config: LogConfig,
        clock: SharedClock,
        admin_key: Option<&str>,
        io_links: Vec<Arc<IoLink>>,
    ) -> Result<Opened, StorageError> {
        std::fs::create_dir_all(data_dir.join("meta"))?;
        let (keys, new_key) = KeyStore::open(&data_dir.join("meta/keys.snap"), admin_key, &*clock)?;
        let snap: ChannelsSnapshot =
            meta::read_snapshot(&data_dir.join("meta/channels.snap"))?.unwrap_or_default();
        let mut channels = HashMap::new();
        let mut logs = HashMap::new();
        for settings in snap.channels {
            let dir = channel_dir(data_dir, settings.id);
            let mut cfg = log_config.clone();
            if let Some(r) = settings.retention_us {
                cfg.retention_us = r;
            }
            let (log, report) = ChannelLog::open(&dir, cfg, clock.clone())?;
            if !report.quarantined.is_empty() || report.truncated_bytes > 0 {
                tracing::warn!(channel = %settings.name, ?report, "channel log recovered");
            }
            let ch = Arc::new(Channel::new(settings, log.reader()));
            channels.insert(ch.name().to_string(), ch.clone());
            logs.insert(ch.id, log);
        }
        let broker = Arc::new(Broker {
            data_dir: data_dir.to_path_buf(),
            log_config,
            clock,
            channels: RwLock::new(channels),
            admin_lock: Mutex::new(snap.next_channel_id.max(1)),
            keys,
            append_queue: ArrayQueue::new(limits::APPEND_QUEUE_LEN),
            inflight_bytes: AtomicUsize::new(0),
            io_links,
            writer_thread: Mutex::new(None),
            writer_sleeping: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            writer_done: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
        });
        Ok(Opened {
            broker,
            logs,
            generated_admin_key: new_key,
        })
    }

    /// The clock every component reads.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Checks a key and returns the identity it proves.
    ///
    /// # Errors
    /// `AuthFailed` for any unknown, revoked or wrong key (one answer for all).
    pub fn authenticate(&self, key: &str, user_key: &str) -> Result<Identity, BrokerError> {
        if !user_key.is_empty() {
            return Err(err(ErrorCode::AuthFailed, "no such key"));
        }
        self.keys
            .check(key)
            .ok_or_else(|| err(ErrorCode::AuthFailed, "no such key"))
    }

    /// The channel called `name`.
    ///
    /// # Errors
    /// `ChannelNotFound`.
    pub fn channel(&self, name: &str) -> Result<Arc<Channel>, BrokerError> {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| err(ErrorCode::ChannelNotFound, format!("no channel {name:?}")))
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

    /// Creates a channel from a JSON object.
    ///
    /// # Errors
    /// `BadRequest`/`InvalidName` for bad fields, `ChannelExists`,
    /// `LimitExceeded`, `StorageFull`/`Internal` when the log cannot be created.
    pub fn create_channel(&self, json: &[u8]) -> Result<Arc<Channel>, BrokerError> {
        let value = parse_json_object(json)?;
        let mut next_id = self.admin_lock.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now_us();
        let settings = ChannelSettings::from_create(&value, *next_id, now)?;
        if self.channel(&settings.name).is_ok() {
            return Err(err(
                ErrorCode::ChannelExists,
                format!("channel {:?} exists", settings.name),
            ));
        }
        if self
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
            >= limits::CHANNELS_MAX
        {
            return Err(err(
                ErrorCode::LimitExceeded,
                "too many channels (CHANNELS_MAX)",
            ));
        }
        let mut cfg = self.log_config.clone();
        if let Some(r) = settings.retention_us {
            cfg.retention_us = r;
        }
        let (log, _) = ChannelLog::open(
            &channel_dir(&self.data_dir, settings.id),
            cfg,
            self.clock.clone(),
        )
        .map_err(storage_to_wire)?;
        let ch = Arc::new(Channel::new(settings, log.reader()));
        *next_id += 1;
        self.channels
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ch.name().to_string(), ch.clone());
        if let Err(e) = self.save_channels(*next_id) {
            self.channels
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(ch.name());
            if let Err(e2) = log.destroy() {
                tracing::error!(error = %e2, "could not remove the log of a channel whose creation failed");
            }
            return Err(storage_to_wire(e));
        }
        self.send_to_writer(WriterMsg::AddChannel {
            id: ch.id,
            log: Box::new(log),
        });
        Ok(ch)
    }

    /// Changes a channel's settings from a JSON object of fields.
    ///
    /// # Errors
    /// `ChannelNotFound`, `BadRequest` for read-only or invalid fields.
    pub fn update_channel(&self, name: &str, json: &[u8]) -> Result<Arc<Channel>, BrokerError> {
        let value = parse_json_object(json)?;
        let next_id = self.admin_lock.lock().unwrap_or_else(|p| p.into_inner());
        let ch = self.channel(name)?;
        let old = ch.settings();
        let new = old.updated(&value, self.clock.now_us())?;
        ch.set_settings(new.clone());
        if let Err(e) = self.save_channels(*next_id) {
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
        Ok(ch)
    }

    /// Deletes a channel and its log; its subscriptions are closed.
    ///
    /// # Errors
    /// `ChannelNotFound`, or `Internal` when the registry cannot be saved.
    pub fn delete_channel(&self, name: &str) -> Result<(), BrokerError> {
        let next_id = self.admin_lock.lock().unwrap_or_else(|p| p.into_inner());
        let ch = self
            .channels
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .ok_or_else(|| err(ErrorCode::ChannelNotFound, format!("no channel {name:?}")))?;
        ch.mark_deleted();
        if let Err(e) = self.save_channels(*next_id) {
            tracing::error!(error = %e, "channel registry not saved after a delete");
            return Err(storage_to_wire(e));
        }
        self.send_to_writer(WriterMsg::RemoveChannel { id: ch.id });
        self.wake_all_io();
        Ok(())
    }

    fn save_channels(&self, next_channel_id: u64) -> Result<(), StorageError> {
        let snap = ChannelsSnapshot {
            next_channel_id,
            channels: self.channels().iter().map(|c| c.settings()).collect(),
        };
        meta::write_snapshot(&self.data_dir.join("meta/channels.snap"), &snap)
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

    /// Queues a publish for the writer; gives it back when the queue is full.
    ///
    /// # Errors
    /// The message itself when the queue or the in-flight byte budget is full.
    #[allow(clippy::result_large_err)] // the message is handed back, not an error value
    pub fn try_append(&self, msg: WriterMsg, bytes: usize) -> Result<(), WriterMsg> {
        let before = self.inflight_bytes.fetch_add(bytes, Ordering::AcqRel);
        if before > 0 && before + bytes > limits::INFLIGHT_BYTES_MAX {
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

    /// Wakes every io thread.
    pub fn wake_all_io(&self) {
        for link in &self.io_links {
            link.wake();
        }
    }
}

/// The directory of channel `id`'s log.
pub fn channel_dir(data_dir: &Path, id: u64) -> PathBuf {
    data_dir
        .join("instances")
        .join(DEFAULT_INSTANCE_ID.to_string())
        .join("channels")
        .join(id.to_string())
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
