//! A full disk under every file the server writes.
//!
//! Each test runs the server on its own small ext4 image (64 MiB, 1 KiB
//! blocks, no reserved blocks) mounted through a loop device, fills the file
//! system with a filler file until even a one-byte file cannot be written,
//! and then drives the server so that the next file to need a block is a
//! chosen one. The file is chosen by the shape of the load alone, from the
//! on-disk format of `protocol.md` (3 MiB segments, preallocated; 32-byte
//! index entries every 64 KiB of records; one `.keys` entry per keyed record;
//! one `.rooms` entry per record with a room; a 40-byte `checkpoint` written
//! after the first sync; a metadata snapshot per channel create):
//!
//! | test | what needs a block first |
//! | --- | --- |
//! | segment | the next segment, at rotation (its `.idx` still has room) |
//! | index | the `.idx` sidecar, after ~2 MiB of records without keys or rooms |
//! | keys | the `.keys` sidecar, after a few keyed messages |
//! | rooms | the `.rooms` sidecar, after a few messages with a long room |
//! | checkpoint | the channel's first `checkpoint` write |
//! | snapshot | the metadata snapshot of a channel create |
//! | start-up | anything a start on a 100 % full disk writes |
//!
//! Each must hold: a refused publish (or create) is answered `StorageFull`
//! (code 40) and nothing else; nothing acknowledged is lost; once the filler
//! is deleted, the same server accepts writes again without a restart; and
//! after a restart every acknowledged message is there exactly once, a
//! repeated idempotency key is answered with the original id, and a room's
//! history finds its messages. The segment, index and snapshot cases must be
//! refused; the keys, rooms and checkpoint cases may also never be refused
//! (a server that needs no new space for them), and then the checks after
//! the restart are what tells whether their entries were kept.
//!
//! Needs root and loop devices; without them each test says so and returns
//! (`TIDEWIRE_LOOP_REQUIRED=1` turns that into a failure, as in CI).

mod proc_common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use proc_common::{LoopMount, Serve, ServerProcess};
use tidewire::client::{Client, ClientError, HistoryQuery, OutgoingMessage};
use tidewire::wire::{AckMode, ErrorCode};

const IMAGE_BYTES: u64 = 64 << 20;
/// 1 KiB blocks make every sidecar need a new block soon, and -m 0 leaves no
/// blocks that only root may use (the tests run as root).
const MKFS: &[&str] = &["-b", "1024", "-m", "0"];
/// Segments of 3 MiB: 48 index points, which fit the `.idx`'s first two
/// blocks, so a full disk is met at rotation in the segment test; a fresh
/// segment's `.idx` needs its second block after ~2 MiB, before rotation.
const SEGMENT_BYTES: u64 = 3 << 20;
/// How long a write may still be refused after the filler is deleted.
const RECOVERY: Duration = Duration::from_secs(5);

/// The server on its own full-able file system; the fields drop in order:
/// server (killed), then the mount (unmounted, detached), then the files.
struct Disk {
    server: Option<ServerProcess>,
    mount: LoopMount,
    _tmp: tempfile::TempDir,
    /// Per channel: acknowledged id → message.
    acked: BTreeMap<String, BTreeMap<u64, Msg>>,
    /// Per channel: payloads sent and refused (they may have been stored).
    refused: BTreeMap<String, Vec<Vec<u8>>>,
}

impl Disk {
    fn start() -> Disk {
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join("disk.img");
        proc_common::make_ext4(&image, IMAGE_BYTES, MKFS).unwrap_or_else(|e| panic!("{e}"));
        let mount =
            LoopMount::mount(&image, &tmp.path().join("mnt")).unwrap_or_else(|e| panic!("{e}"));
        let mut disk = Disk {
            server: None,
            mount,
            _tmp: tmp,
            acked: BTreeMap::new(),
            refused: BTreeMap::new(),
        };
        disk.server = Some(ServerProcess::spawn(&disk.serve()));
        disk
    }

    fn serve(&self) -> Serve {
        Serve::new(&self.mount.path().join("data")).segment_size(SEGMENT_BYTES)
    }

    fn server(&self) -> &ServerProcess {
        self.server.as_ref().expect("a running server")
    }

    fn client(&self) -> Client {
        self.server().connect()
    }

    fn filler(&self) -> PathBuf {
        self.mount.path().join("filler")
    }

    /// Fills the file system until not one more byte can be stored.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.filler()).expect("filler");
        for _pass in 0..4 {
            let mut wrote = false;
            for chunk in [1 << 20, 64 << 10, 4 << 10, 1 << 10] {
                let buf = vec![0xa5u8; chunk];
                while f.write_all(&buf).is_ok() {
                    wrote = true;
                }
            }
            // A sync settles reservations; what they leave is filled on the
            // next pass, until a pass writes nothing. The sync may itself
            // meet the full disk, which is the state wanted; the probe below
            // checks the outcome.
            let _ = f.sync_all();
            if !wrote {
                break;
            }
        }
        let probe = self.mount.path().join("probe");
        let stored = std::fs::File::create(&probe)
            .and_then(|mut p| p.write_all(b"x").and_then(|()| p.sync_all()));
        std::fs::remove_file(&probe).expect("probe removed");
        match stored {
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {}
            other => panic!("the file system is not full: a 1-byte file gave {other:?}"),
        }
    }

    /// Deletes the filler and commits the deletion, so its blocks are free.
    fn free(&self) {
        std::fs::remove_file(self.filler()).expect("filler removed");
        let status = Command::new("sync")
            .arg("-f")
            .arg(self.mount.path())
            .status()
            .expect("sync -f");
        assert!(status.success(), "sync -f: {status}");
    }

    fn create_channel(&mut self, name: &str) {
        self.client()
            .channel_create(&serde_json::json!({ "name": name }))
            .unwrap_or_else(|e| panic!("create {name}: {e}\n{}", self.log()));
        self.acked.entry(name.into()).or_default();
    }

    fn log(&self) -> String {
        self.server
            .as_ref()
            .map_or_else(String::new, |s| s.log_tail(20))
    }

    /// Publishes `msg(i)` for i in 0.. one at a time (durable) until one is
    /// refused or `max` were acknowledged; returns the refusal.
    fn publish_until_refused(
        &mut self,
        channel: &str,
        max: u64,
        msg: impl Fn(u64) -> Msg,
    ) -> Option<ClientError> {
        let mut c = self.client();
        let seen = self.acked.get(channel).map_or(0, BTreeMap::len)
            + self.refused.get(channel).map_or(0, Vec::len);
        let seen = seen as u64;
        for i in seen..seen + max {
            let m = msg(i);
            match publish(&mut c, channel, &m) {
                Ok(id) => self.record(channel, id, m),
                Err(e) => {
                    self.refused
                        .entry(channel.into())
                        .or_default()
                        .push(m.payload);
                    return Some(e);
                }
            }
        }
        None
    }

    fn record(&mut self, channel: &str, id: u64, m: Msg) {
        let previous = self.acked.entry(channel.into()).or_default().insert(id, m);
        assert!(previous.is_none(), "{channel}: id {id} acknowledged twice");
    }

    /// Asserts that `err` is `StorageFull`, with the server's log otherwise.
    /// No refusal at all passes unless `required`: a server may need no new
    /// space for a file (a preallocated sidecar, say), and what it wrote is
    /// checked after the restart.
    fn assert_storage_full(&self, what: &str, err: Option<ClientError>, required: bool) {
        match err {
            Some(e) if e.code() == Some(ErrorCode::StorageFull) => {}
            Some(e) => panic!(
                "{what} on a full disk was answered {e}, not StorageFull (40)\nserver log:\n{}",
                self.log()
            ),
            None if required => panic!("{what} on a full disk was never refused"),
            None => eprintln!("{what} on a full disk was never refused"),
        }
    }

    /// After [`Disk::free`]: a publish succeeds, perhaps after a few
    /// `StorageFull` answers while the space comes back, and never a
    /// different error.
    fn publish_after_free(&mut self, channel: &str, m: Msg) {
        let mut c = self.client();
        let deadline = Instant::now() + RECOVERY;
        loop {
            match publish(&mut c, channel, &m) {
                Ok(id) => return self.record(channel, id, m),
                Err(e) if e.code() == Some(ErrorCode::StorageFull) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!(
                    "{channel}: a publish after the space came back failed: {e}\nserver log:\n{}",
                    self.log()
                ),
            }
        }
    }

    /// Every acknowledged message is in its channel exactly once; the only
    /// others are refused ones (a refused publish may have been stored).
    fn assert_nothing_lost(&self, when: &str) {
        let mut c = self.client();
        for (channel, acked) in &self.acked {
            let refused = self.refused.get(channel).cloned().unwrap_or_default();
            let history = proc_common::read_all(&mut c, channel);
            let mut seen = BTreeMap::new();
            for m in &history {
                if let Some(first) = seen.insert(m.payload.clone(), m.id) {
                    panic!(
                        "{when}: {channel} holds one message at ids {first} and {}",
                        m.id
                    );
                }
                match acked.get(&m.id) {
                    Some(a) => assert_eq!(
                        a.payload, m.payload,
                        "{when}: {channel} id {} changed",
                        m.id
                    ),
                    None => assert!(
                        refused.contains(&m.payload),
                        "{when}: {channel} id {} was never sent",
                        m.id
                    ),
                }
            }
            let stored: std::collections::BTreeSet<u64> = history.iter().map(|m| m.id).collect();
            let lost: Vec<_> = acked.keys().filter(|id| !stored.contains(id)).collect();
            assert!(
                lost.is_empty(),
                "{when}: {channel} lost acknowledged ids {lost:?}"
            );
        }
    }

    /// Graceful restart, then the same check.
    fn restart_and_check(&mut self) {
        let status = self.server.as_mut().expect("server").terminate();
        assert!(
            status.success(),
            "graceful shutdown: {status}\n{}",
            self.log()
        );
        self.server = Some(ServerProcess::spawn(&self.serve()));
        self.assert_nothing_lost("after a restart");
        self.assert_keys_and_rooms_hold();
    }

    /// What the sidecars serve survived the full disk: a repeated key is
    /// answered with its original id, a room read finds its messages.
    fn assert_keys_and_rooms_hold(&self) {
        let mut c = self.client();
        for (channel, acked) in &self.acked {
            for (&id, m) in acked {
                if m.key.is_some() {
                    let again = publish(&mut c, channel, m)
                        .unwrap_or_else(|e| panic!("{channel}: repeating id {id}'s key: {e}"));
                    assert_eq!(again, id, "{channel}: id {id}'s key was stored again");
                }
                if let Some(room) = &m.room {
                    let query = HistoryQuery {
                        room: Some(room.clone()),
                        ..HistoryQuery::default()
                    };
                    let page = c.history(channel, &query).expect("room history");
                    let ids: Vec<u64> = page.iter().map(|m| m.id).collect();
                    assert_eq!(ids, [id], "{channel}: the history of id {id}'s room");
                }
            }
        }
    }
}

/// One message: payload, and maybe a key and a room.
#[derive(Debug, Clone)]
struct Msg {
    payload: Vec<u8>,
    key: Option<String>,
    room: Option<String>,
}

fn publish(c: &mut Client, channel: &str, m: &Msg) -> Result<u64, ClientError> {
    let mut out = OutgoingMessage::new(&m.payload);
    if let Some(k) = &m.key {
        out = out.idempotency_key(k.as_bytes());
    }
    if let Some(r) = &m.room {
        out = out.room(r);
    }
    c.publish(channel, &out, AckMode::Durable)
}

/// A payload of `len` bytes that names its channel and index.
fn payload(channel: &str, i: u64, len: usize) -> Vec<u8> {
    let mut p = format!("{channel} {i:06} ").into_bytes();
    p.resize(len.max(p.len()), b'#');
    p
}

fn big(channel: &'static str) -> impl Fn(u64) -> Msg + Copy {
    move |i| Msg {
        payload: payload(channel, i, 4000),
        key: None,
        room: None,
    }
}

fn keyed(channel: &'static str) -> impl Fn(u64) -> Msg + Copy {
    move |i| Msg {
        payload: payload(channel, i, 40),
        key: Some(format!("{channel}-key-{i:06}-{}", "k".repeat(40))),
        room: None,
    }
}

fn roomed(channel: &'static str) -> impl Fn(u64) -> Msg + Copy {
    move |i| Msg {
        payload: payload(channel, i, 40),
        key: None,
        room: Some(format!("room-{}-{i:06}", "r".repeat(100))),
    }
}

fn small(channel: &'static str) -> impl Fn(u64) -> Msg + Copy {
    move |i| Msg {
        payload: payload(channel, i, 40),
        key: None,
        room: None,
    }
}

/// The common shape: a channel, optional load with space, a full disk,
/// publishes until one is refused with `StorageFull`, nothing lost, space
/// back, a publish accepted by the same server, a restart, nothing lost.
fn refused_then_recovers(
    test: &str,
    channel: &'static str,
    before_fill: u64,
    until_refused: u64,
    required: bool,
    msg: impl Fn(u64) -> Msg + Copy,
) {
    if !proc_common::loop_or_skip(test) {
        return;
    }
    let _one_at_a_time = proc_common::exclusive();
    let mut disk = Disk::start();
    disk.create_channel(channel);
    if before_fill > 0 {
        let refused = disk.publish_until_refused(channel, before_fill, msg);
        assert!(
            refused.is_none(),
            "{test}: refused with space left: {refused:?}"
        );
    }
    disk.fill();
    let refused = disk.publish_until_refused(channel, until_refused, msg);
    disk.assert_storage_full(&format!("{test}: a publish"), refused, required);
    disk.assert_nothing_lost("on the full disk");
    disk.free();
    let next = disk.acked[channel].len() as u64 + 1000;
    disk.publish_after_free(channel, msg(next));
    disk.assert_nothing_lost("after the space came back");
    disk.restart_and_check();
}

/// How many of [`big`]'s messages fill `bytes` of a segment, about.
fn records_of(bytes: u64) -> u64 {
    bytes / 4096
}

#[test]
fn a_full_disk_at_segment_rotation_is_storage_full_and_writes_resume_when_space_returns() {
    // 2.6 MiB of records with space: the `.idx` has its second block; the
    // rest of the segment needs no new sidecar block, so the rotation's new
    // segment is the first allocation to fail.
    refused_then_recovers(
        "a_full_disk_at_segment_rotation",
        "seg",
        records_of(2_600 << 10),
        records_of(1 << 20),
        true,
        big("seg"),
    );
}

#[test]
fn a_full_disk_under_the_index_sidecar_is_storage_full_and_writes_resume_when_space_returns() {
    refused_then_recovers(
        "a_full_disk_under_the_index_sidecar",
        "idx",
        0,
        records_of(2 * SEGMENT_BYTES),
        true,
        big("idx"),
    );
}

#[test]
fn a_full_disk_under_the_keys_sidecar_is_storage_full_and_writes_resume_when_space_returns() {
    refused_then_recovers(
        "a_full_disk_under_the_keys_sidecar",
        "keys",
        0,
        1000,
        false,
        keyed("keys"),
    );
}

#[test]
fn a_full_disk_under_the_rooms_sidecar_is_storage_full_and_writes_resume_when_space_returns() {
    refused_then_recovers(
        "a_full_disk_under_the_rooms_sidecar",
        "rooms",
        0,
        1000,
        false,
        roomed("rooms"),
    );
}

#[test]
fn a_full_disk_under_the_first_checkpoint_refuses_only_with_storage_full_and_loses_nothing() {
    let test = "a_full_disk_under_the_first_checkpoint";
    if !proc_common::loop_or_skip(test) {
        return;
    }
    let _one_at_a_time = proc_common::exclusive();
    let mut disk = Disk::start();
    disk.create_channel("ckpt");
    disk.fill();
    // The checkpoint only under-reports what was synced, so acknowledging
    // without it is allowed; refusing is too, with StorageFull only.
    if let Some(e) = disk.publish_until_refused("ckpt", 50, small("ckpt")) {
        disk.assert_storage_full(&format!("{test}: a publish"), Some(e), false);
    }
    disk.assert_nothing_lost("on the full disk");
    disk.free();
    disk.publish_after_free("ckpt", small("ckpt")(1000));
    disk.restart_and_check();
}

#[test]
fn a_channel_create_on_a_full_disk_is_storage_full_and_succeeds_when_space_returns() {
    let test = "a_channel_create_on_a_full_disk";
    if !proc_common::loop_or_skip(test) {
        return;
    }
    let _one_at_a_time = proc_common::exclusive();
    let mut disk = Disk::start();
    disk.create_channel("before");
    disk.publish_until_refused("before", 20, small("before"));
    disk.fill();
    let refused = disk
        .client()
        .channel_create(&serde_json::json!({ "name": "snap" }))
        .err();
    disk.assert_storage_full(&format!("{test}: a channel create"), refused, true);
    disk.assert_nothing_lost("on the full disk");
    disk.free();
    let deadline = Instant::now() + RECOVERY;
    loop {
        match disk
            .client()
            .channel_create(&serde_json::json!({ "name": "snap" }))
        {
            Ok(_) => break,
            Err(e) if e.code() == Some(ErrorCode::StorageFull) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!(
                "{test}: create after the space came back: {e}\n{}",
                disk.log()
            ),
        }
    }
    disk.acked.entry("snap".into()).or_default();
    disk.publish_after_free("snap", small("snap")(0));
    disk.restart_and_check();
}

#[test]
fn the_server_starts_on_a_full_disk_serves_reads_and_accepts_writes_when_space_returns() {
    let test = "the_server_starts_on_a_full_disk";
    if !proc_common::loop_or_skip(test) {
        return;
    }
    let _one_at_a_time = proc_common::exclusive();
    let mut disk = Disk::start();
    disk.create_channel("boot");
    disk.publish_until_refused("boot", 50, keyed("boot"));
    let status = disk.server.as_mut().expect("server").terminate();
    assert!(status.success(), "graceful shutdown: {status}");
    disk.server = None;
    disk.fill();
    match ServerProcess::try_spawn(&disk.serve()) {
        Ok(s) => disk.server = Some(s),
        Err(e) => panic!("{test}: the server did not start on a full disk: {e}"),
    }
    disk.assert_nothing_lost("after a start on the full disk");
    if let Some(e) = disk.publish_until_refused("boot", 50, keyed("boot")) {
        disk.assert_storage_full(&format!("{test}: a publish"), Some(e), false);
    }
    disk.free();
    disk.publish_after_free("boot", keyed("boot")(1000));
    disk.restart_and_check();
}
