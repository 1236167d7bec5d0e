//! Power loss, simulated for real.
//!
//! The server runs on an ext4 file system in an image file mounted through a
//! loop device, and publishes arrive one message per frame, pipelined, each
//! with its own idempotency key and payload, acknowledged `durable`. The
//! server is frozen with SIGSTOP, either under load or after it idled, and
//! the image file is copied: the loop device has passed on to the image
//! exactly what a disk would have received, so the copy is what a power cut
//! at that moment would have left (the page cache of the mounted file system,
//! including the segment mapping's dirty pages, is not in it). The frozen
//! server is then killed, the copy is checked with `e2fsck -fy` and mounted,
//! and a new server on it must hold:
//!
//! * under `batch`: every acknowledged message, exactly once, with its id,
//!   key and payload;
//! * under `interval:MS`: every message acknowledged more than MS ms before
//!   the SIGSTOP (plus [`MARGIN_MS`]), exactly once, with its id, key and
//!   payload;
//! * under both: nothing twice, nothing that was not sent, and a publish
//!   after the restart gets an id above every id the log holds and every id
//!   that had to survive (no id goes backwards; holes are allowed).
//!
//! The copy happens while the server is frozen, so it can only contain more
//! than the moment of the SIGSTOP (kernel writeback), never less.
//!
//! Needs root and loop devices; without them each test says so and returns
//! (`TIDEWIRE_LOOP_REQUIRED=1` turns that into a failure, as in CI).
//! `TIDEWIRE_POWER_LOSS_ROUNDS=N` repeats each case N times (default 1).

mod proc_common;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proc_common::{LoopMount, Serve, ServerProcess, ADMIN_KEY};
use tidewire::client::{Client, Message, OutgoingMessage};
use tidewire::wire::AckMode;

/// Size of the ext4 image.
const IMAGE_BYTES: u64 = 256 << 20;
/// Segment size: small enough that a load run rotates a few times.
const SEGMENT_BYTES: u64 = 8 << 20;
/// The `interval` policy under test.
const INTERVAL_MS: u64 = 200;
/// Slack on top of the policy's period: the sync that makes a message durable
/// starts at most MS after it, but takes time itself (an `fdatasync` of up to
/// MS worth of appends on a loop device, on a shared machine), and the
/// previous sync may still be running when the period starts.
const MARGIN_MS: u64 = 300;
/// Publishing time before the SIGSTOP of a run under load.
const LOAD: Duration = Duration::from_millis(1500);
/// Publishing time of the burst before an idle period.
const BURST: Duration = Duration::from_millis(700);
/// Idle time between the burst's last acknowledgement and the SIGSTOP:
/// well past the interval and its margin, well short of the kernel's dirty
/// page expiry (30 s), so only the server's own syncs can have saved the tail.
const IDLE: Duration = Duration::from_millis(1500);
/// Publishes in flight on the publishing connection.
const WINDOW: usize = 512;
const CHANNEL: &str = "power";
const PAYLOAD_LEN: usize = 100;
const ROUNDS_ENV: &str = "TIDEWIRE_POWER_LOSS_ROUNDS";

fn key(seq: u64) -> String {
    format!("pl-{seq:010}")
}

fn payload(seq: u64) -> Vec<u8> {
    let mut p = format!("power-loss message {seq:010} ").into_bytes();
    p.resize(PAYLOAD_LEN, b'.');
    p
}

/// One acknowledged publish: which message, the id it got, when the
/// acknowledgement was read (never earlier than the server sent it).
#[derive(Debug, Clone, Copy)]
struct Acked {
    seq: u64,
    id: u64,
    at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Moment {
    UnderLoad,
    AfterIdle,
}

/// Publishes pipelined until `stop` is set or `until` passes (then drains
/// the acknowledgements), or until the connection breaks.
fn publish(addr: &str, stop: &AtomicBool, until: Option<Instant>) -> Vec<Acked> {
    let mut c = Client::connect(addr, ADMIN_KEY).expect("publisher connects");
    let mut in_flight = VecDeque::new();
    let mut acked = Vec::new();
    let mut seq = 0u64;
    loop {
        let more = !stop.load(Ordering::Relaxed) && until.is_none_or(|u| Instant::now() < u);
        if more {
            let (k, p) = (key(seq), payload(seq));
            let m = OutgoingMessage::new(&p).idempotency_key(k.as_bytes());
            if c.send_publish(CHANNEL, &m, AckMode::Durable).is_err() {
                break;
            }
            in_flight.push_back(seq);
            seq += 1;
            if in_flight.len() < WINDOW {
                continue;
            }
        } else if in_flight.is_empty() {
            break;
        }
        let Ok(ack) = c.recv_ack() else { break };
        let seq = in_flight.pop_front().expect("an ack answers a publish");
        let id = ack.ids()[0];
        acked.push(Acked {
            seq,
            id,
            at: Instant::now(),
        });
    }
    acked
}

/// What reached the disk, as a new server on the checked copy reads it.
struct Recovered {
    history: Vec<Message>,
    next_id: u64,
    log: String,
}

/// Checks and mounts `image`, starts a server on it, reads the channel and
/// publishes one more message.
fn recover(image: &Path, mountpoint: &Path, durability: &str) -> Recovered {
    let fsck = proc_common::fsck(image).unwrap_or_else(|e| panic!("{e}"));
    let mount = LoopMount::mount(image, mountpoint).unwrap_or_else(|e| panic!("{e}"));
    let mut server =
        ServerProcess::spawn(&Serve::new(&mount.path().join("data")).durability(durability));
    let mut c = server.connect();
    let history = proc_common::read_all(&mut c, CHANNEL);
    let next_id = c
        .publish(CHANNEL, &OutgoingMessage::new(b"after"), AckMode::Durable)
        .expect("publish after the restart");
    let log = format!("e2fsck:\n{fsck}\nserver log:\n{}", server.log_tail(30));
    server.kill9();
    drop(mount);
    Recovered {
        history,
        next_id,
        log,
    }
}

/// Runs one power cut and returns the acknowledged publishes, the instant of
/// the SIGSTOP and what the copy holds.
fn power_cut(durability: &str, moment: Moment) -> (Vec<Acked>, Instant, Recovered) {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("disk.img");
    let cut = tmp.path().join("cut.img");
    proc_common::make_ext4(&image, IMAGE_BYTES, &[]).unwrap_or_else(|e| panic!("{e}"));
    let mut mount =
        LoopMount::mount(&image, &tmp.path().join("mnt")).unwrap_or_else(|e| panic!("{e}"));
    let mut server = ServerProcess::spawn(
        &Serve::new(&mount.path().join("data"))
            .durability(durability)
            .segment_size(SEGMENT_BYTES),
    );
    server
        .connect()
        .channel_create(&serde_json::json!({ "name": CHANNEL }))
        .expect("channel created");
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server.addr().to_string();
    let flag = stop.clone();
    let until = (moment == Moment::AfterIdle).then(|| Instant::now() + BURST);
    let publisher = std::thread::spawn(move || publish(&addr, &flag, until));
    match moment {
        Moment::UnderLoad => std::thread::sleep(LOAD),
        Moment::AfterIdle => {
            while !publisher.is_finished() {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(IDLE);
        }
    }
    let stopped_at = Instant::now();
    server.signal(libc::SIGSTOP);
    stop.store(true, Ordering::Relaxed);
    let copy_started = Instant::now();
    std::fs::copy(&image, &cut).expect("copy of the image");
    let copy_took = copy_started.elapsed();
    server.kill9();
    let acked = publisher.join().expect("publisher thread");
    mount.unmount().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{durability} {moment:?}: image copied in {copy_took:?}");
    let recovered = recover(&cut, &tmp.path().join("cut-mnt"), durability);
    (acked, stopped_at, recovered)
}

/// The recovered log by message: seq → ids holding it. Asserts that ids
/// ascend and that every record is a message that was sent, intact.
fn stored_by_seq(what: &str, history: &[Message]) -> HashMap<u64, Vec<u64>> {
    let mut found: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut last_id = 0;
    for m in history {
        assert!(
            m.id > last_id,
            "{what}: history out of order at id {}",
            m.id
        );
        last_id = m.id;
        let k = m.idempotency_key.as_deref().unwrap_or_default();
        let seq = std::str::from_utf8(k)
            .ok()
            .and_then(|k| k.strip_prefix("pl-"))
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{what}: id {} has a key never sent: {k:?}", m.id));
        assert_eq!(m.payload, payload(seq), "{what}: id {} is damaged", m.id);
        found.entry(seq).or_default().push(m.id);
    }
    found
}

/// Panics with what was lost, when it was acknowledged, and the logs.
fn report_lost(what: &str, lost: &[&Acked], required: usize, stopped_at: Instant, r: &Recovered) {
    let age = |a: &Acked| stopped_at.saturating_duration_since(a.at).as_millis();
    let (first, last) = (lost[0], lost[lost.len() - 1]);
    panic!(
        "{what}: {} of {required} acknowledged messages that had to survive were lost \
         (ids {}..={}, acknowledged {} ms to {} ms before the power cut; \
         {} in the recovered log)\n{}",
        lost.len(),
        first.id,
        last.id,
        age(last),
        age(first),
        r.history.len(),
        r.log
    );
}

/// Asserts the survival rules of the module docs; `keep_before` is the
/// instant before which every acknowledgement must survive (None: all).
fn check(
    what: &str,
    acked: &[Acked],
    stopped_at: Instant,
    keep_before: Option<Instant>,
    r: &Recovered,
) {
    assert!(!acked.is_empty(), "{what}: nothing was acknowledged");
    let found = stored_by_seq(what, &r.history);
    let twice: Vec<_> = found.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "{what}: stored more than once (seq, ids): {twice:?}"
    );
    let required: Vec<&Acked> = acked
        .iter()
        .filter(|a| keep_before.is_none_or(|t| a.at < t))
        .collect();
    let mut lost = Vec::new();
    for a in &required {
        match found.get(&a.seq).map(Vec::as_slice) {
            Some([id]) => assert_eq!(*id, a.id, "{what}: seq {} moved from id {}", a.seq, a.id),
            _ => lost.push(*a),
        }
    }
    if !lost.is_empty() {
        report_lost(what, &lost, required.len(), stopped_at, r);
    }
    let oldest_missing = acked
        .iter()
        .filter(|a| !found.contains_key(&a.seq))
        .map(|a| stopped_at.saturating_duration_since(a.at))
        .max();
    eprintln!(
        "{what}: {} acknowledged, {} had to survive, {} in the recovered log; \
         the oldest acknowledgement missing was {oldest_missing:?} old at the cut",
        acked.len(),
        required.len(),
        r.history.len()
    );
    let floor = required
        .iter()
        .map(|a| a.id)
        .chain(r.history.iter().map(|m| m.id))
        .max()
        .unwrap_or(0);
    assert!(
        r.next_id > floor,
        "{what}: after the restart a publish got id {}, not above {floor}\n{}",
        r.next_id,
        r.log
    );
}

fn run_case(test: &str, durability: &str, moment: Moment) {
    if !proc_common::loop_or_skip(test) {
        return;
    }
    let _one_at_a_time = proc_common::exclusive();
    for round in 0..proc_common::env_number(ROUNDS_ENV, 1) {
        let what = format!("{durability}, {moment:?}, round {round}");
        let (acked, stopped_at, recovered) = power_cut(durability, moment);
        let keep_before = match durability.strip_prefix("interval:") {
            Some(ms) => {
                let ms: u64 = ms.parse().expect("interval:MS");
                stopped_at.checked_sub(Duration::from_millis(ms + MARGIN_MS))
            }
            None => None,
        };
        if let Some(t) = keep_before {
            // The test must have something to prove.
            assert!(
                acked.iter().any(|a| a.at < t),
                "{what}: no acknowledgement old enough"
            );
        }
        check(&what, &acked, stopped_at, keep_before, &recovered);
    }
}

fn interval() -> String {
    format!("interval:{INTERVAL_MS}")
}

#[test]
fn batch_keeps_every_acknowledged_message_through_a_power_cut_under_load() {
    run_case(
        "batch_keeps_every_acknowledged_message_through_a_power_cut_under_load",
        "batch",
        Moment::UnderLoad,
    );
}

#[test]
fn batch_keeps_every_acknowledged_message_through_a_power_cut_after_idling() {
    run_case(
        "batch_keeps_every_acknowledged_message_through_a_power_cut_after_idling",
        "batch",
        Moment::AfterIdle,
    );
}

#[test]
fn interval_keeps_messages_acknowledged_before_its_period_through_a_power_cut_under_load() {
    run_case(
        "interval_keeps_messages_acknowledged_before_its_period_through_a_power_cut_under_load",
        &interval(),
        Moment::UnderLoad,
    );
}

#[test]
fn interval_keeps_messages_acknowledged_before_its_period_through_a_power_cut_after_idling() {
    run_case(
        "interval_keeps_messages_acknowledged_before_its_period_through_a_power_cut_after_idling",
        &interval(),
        Moment::AfterIdle,
    );
}
