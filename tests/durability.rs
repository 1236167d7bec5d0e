//! Durability through a whole server, with the storage layer's fault
//! injection standing in for the machine: a simulated power loss freezes
//! every file operation at one instant and undoes every write no sync had
//! covered (what a power cut does to the page cache), then a new server
//! opens the same directory.
//!
//! * under `batch`, every publish acknowledged as durable before the cut
//!   survives it;
//! * under `interval:MS`, an idle log's tail is synced by the interval
//!   alone, so what was acknowledged more than MS before a cut survives it;
//! * readers that must never see a record a crash can take back (the HTTP
//!   shim's pollers) see only committed records;
//! * a fresh server, and a thousand channels with one message each, take
//!   disk in proportion to their data.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestServer, ADMIN_KEY};
use serde_json::json;
use tidewire::client::{Client, Event, HistoryQuery, OutgoingMessage};
use tidewire::storage::sidecar::Checkpoint;
use tidewire::storage::{Durability, FaultPlan, Faults};
use tidewire::wire::{AckMode, Start};

fn connect(addr: &str) -> Client {
    Client::connect(addr, ADMIN_KEY).expect("client connects")
}

/// Every message id of `channel`, oldest first.
fn stored_ids(c: &mut Client, channel: &str) -> Vec<u64> {
    let mut all: Vec<u64> = Vec::new();
    loop {
        let page = c
            .history(
                channel,
                &HistoryQuery {
                    newest_first: false,
                    after_id: all.last().copied().unwrap_or(0),
                    limit: 1000,
                    ..HistoryQuery::default()
                },
            )
            .unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page.iter().map(|m| m.id));
    }
}

/// The highest synced id any channel's checkpoint under `dir` records.
fn synced_id(dir: &Path) -> u64 {
    let mut best = 0;
    let Ok(instances) = std::fs::read_dir(dir.join("instances")) else {
        return 0;
    };
    for inst in instances.flatten() {
        let Ok(channels) = std::fs::read_dir(inst.path().join("channels")) else {
            continue;
        };
        for ch in channels.flatten() {
            if let Ok(b) = std::fs::read(ch.path().join("checkpoint")) {
                if let Some(cp) = Checkpoint::decode(&b) {
                    best = best.max(cp.synced_id);
                }
            }
        }
    }
    best
}

/// A server whose storage goes through `plan`.
fn start_with_plan(dir: &Path, durability: Durability, plan: &Arc<FaultPlan>) -> TestServer {
    plan.track_unsynced();
    TestServer::start_with(dir, |c| {
        c.log.durability = durability;
        c.log.faults = Faults(Some(plan.clone()));
    })
}

/// Cuts the power: no file operation from now on reaches the disk, and
/// every write no sync covered is undone. Then stops what is left of the
/// server.
fn power_cut(mut server: TestServer, plan: &FaultPlan) {
    plan.crash_at(plan.ops() + 1);
    plan.power_cut(None).unwrap();
    server.stop();
}

#[test]
fn durable_acknowledgements_under_batch_survive_a_power_cut_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let server = start_with_plan(dir.path(), Durability::Batch, &plan);
    let mut c = connect(&server.addr);
    c.channel_create(&json!({"name": "orders"})).unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (acked, stop, addr) = (acked.clone(), stop.clone(), server.addr.clone());
        std::thread::spawn(move || {
            let mut c = connect(&addr);
            let mut pending = std::collections::VecDeque::new();
            for i in 0..200_000u32 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let Ok(rid) = c.send_publish(
                    "orders",
                    &OutgoingMessage::new(&i.to_le_bytes()),
                    AckMode::Durable,
                ) else {
                    return;
                };
                pending.push_back(rid);
                if pending.len() >= 64 {
                    if c.flush().is_err() {
                        return;
                    }
                    let Ok(ack) = c.recv_ack() else { return };
                    pending.pop_front();
                    acked.lock().unwrap().push(ack.first_id);
                }
            }
        })
    };
    let until = Instant::now() + Duration::from_secs(10);
    while acked.lock().unwrap().len() < 3000 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    let before_cut: Vec<u64> = acked.lock().unwrap().clone();
    assert!(before_cut.len() >= 100, "the publisher made progress");
    power_cut(server, &plan);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    publisher.join().unwrap();
    let server = TestServer::start(dir.path());
    let mut c = connect(&server.addr);
    let stored = stored_ids(&mut c, "orders");
    let set: std::collections::HashSet<u64> = stored.iter().copied().collect();
    let lost: Vec<&u64> = before_cut.iter().filter(|id| !set.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{} durable acknowledgements lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
}

#[test]
fn interval_durability_syncs_an_idle_tail_so_a_later_power_cut_loses_none_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let server = start_with_plan(dir.path(), Durability::Interval { ms: 100 }, &plan);
    let mut c = connect(&server.addr);
    c.channel_create(&json!({"name": "ticks"})).unwrap();
    let mut last = 0;
    for i in 0..2000u32 {
        last = c
            .publish(
                "ticks",
                &OutgoingMessage::new(&i.to_le_bytes()),
                AckMode::Append,
            )
            .unwrap();
    }
    // No more publishes: the interval alone must bring the tail to disk.
    let until = Instant::now() + Duration::from_secs(20);
    while synced_id(dir.path()) < last {
        assert!(
            Instant::now() < until,
            "the idle tail was never synced ({} of {last})",
            synced_id(dir.path())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    power_cut(server, &plan);
    let server = TestServer::start(dir.path());
    let mut c = connect(&server.addr);
    let stored = stored_ids(&mut c, "ticks");
    assert_eq!(
        stored.len(),
        2000,
        "acknowledged messages older than the interval survive"
    );
    assert_eq!(stored.last(), Some(&last));
}

#[test]
fn subscribers_see_records_at_append_and_http_pollers_only_once_committed() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let server = TestServer::start_http(dir.path(), |c| {
        c.log.faults = Faults(Some(plan.clone()));
        c.http.poll_timeout_us = 300_000;
    });
    let mut c = connect(&server.addr);
    c.channel_create(&json!({"name": "news"})).unwrap();
    let first = c
        .publish(
            "news",
            &OutgoingMessage::json(r#"{"n":0}"#),
            AckMode::Durable,
        )
        .unwrap();
    let mut sub = connect(&server.addr);
    sub.subscribe("news", None, Start::New).unwrap();
    // Syncs fail from now on: nothing more becomes committed.
    plan.set_sync_failure(true);
    let id = c
        .publish(
            "news",
            &OutgoingMessage::json(r#"{"n":1}"#),
            AckMode::Append,
        )
        .unwrap();
    match sub.next_event(Some(Duration::from_secs(10))).unwrap() {
        Some(Event::Message { message, .. }) => assert_eq!(message.id, id),
        other => panic!("the subscriber did not get the appended record: {other:?}"),
    }
    let url = format!(
        "http://{}/v1.1/instances/default/channels/news/poll/?last_id={first}",
        server.http
    );
    let status = match ureq::get(&url).set("X-API-KEY", ADMIN_KEY).call() {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("poll failed: {e}"),
    };
    assert_eq!(
        status, 204,
        "the poller never sees a record no sync covered"
    );
}

/// Bytes of disk the files under `dir` take (allocated blocks, like `du`).
fn disk_use(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += m.blocks() * 512;
        if m.is_dir() {
            total += disk_use(&e.path());
        }
    }
    total
}

#[test]
fn a_fresh_server_and_a_thousand_small_channels_take_disk_in_proportion_to_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), |c| {
        c.log.segment_size = tidewire::limits::SEGMENT_SIZE_DEFAULT;
    });
    let fresh = disk_use(dir.path());
    assert!(fresh < 10 << 20, "a fresh server takes {fresh} bytes");
    let mut c = connect(&server.addr);
    for i in 0..1000 {
        let name = format!("c{i}");
        c.channel_create(&json!({"name": name})).unwrap();
        c.publish(
            &name,
            &OutgoingMessage::new(b"one message"),
            AckMode::Durable,
        )
        .unwrap();
    }
    let used = disk_use(dir.path());
    assert!(
        used < 100 << 20,
        "1,000 channels with one message each take {used} bytes (over 100 KiB each)"
    );
}

#[test]
fn a_subscriber_resuming_after_an_id_a_power_cut_took_back_is_told_and_continues_above_it() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let server = start_with_plan(dir.path(), Durability::Batch, &plan);
    let mut c = connect(&server.addr);
    c.channel_create(&json!({"name": "feed"})).unwrap();
    let kept = c
        .publish("feed", &OutgoingMessage::new(b"synced"), AckMode::Durable)
        .unwrap();
    // Syncs fail from now on: what follows is seen by subscribers, never
    // committed, and lost by the power cut.
    plan.set_sync_failure(true);
    let mut sub = connect(&server.addr);
    sub.subscribe("feed", None, Start::AfterId(kept)).unwrap();
    let seen = c
        .publish("feed", &OutgoingMessage::new(b"lost"), AckMode::Append)
        .unwrap();
    match sub.next_event(Some(Duration::from_secs(10))).unwrap() {
        Some(Event::Message { message, .. }) => assert_eq!(message.id, seen),
        other => panic!("expected the appended message, got {other:?}"),
    }
    drop(sub);
    power_cut(server, &plan);
    let server = TestServer::start(dir.path());
    let mut c = connect(&server.addr);
    let mut sub = connect(&server.addr);
    let info = sub.subscribe("feed", None, Start::AfterId(seen)).unwrap();
    let next = match sub.next_event(Some(Duration::from_secs(10))).unwrap() {
        Some(Event::Truncated {
            after_id,
            kept_id,
            next_id,
            ..
        }) => {
            assert_eq!((after_id, kept_id), (seen, kept));
            assert!(
                next_id > seen,
                "the id the subscriber saw is never given again"
            );
            next_id
        }
        other => panic!("expected Truncated, got {other:?}"),
    };
    assert_eq!(info.next_id, next);
    let id = c
        .publish("feed", &OutgoingMessage::new(b"after"), AckMode::Durable)
        .unwrap();
    assert_eq!(id, next);
    match sub.next_event(Some(Duration::from_secs(10))).unwrap() {
        Some(Event::Message { message, .. }) => {
            assert_eq!((message.id, &message.payload[..]), (id, &b"after"[..]))
        }
        other => panic!("expected the new message, got {other:?}"),
    }
    assert_eq!(stored_ids(&mut c, "feed"), vec![kept, id]);
}

#[test]
fn a_committed_subscription_sees_a_message_only_once_a_sync_covers_it() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let server = TestServer::start_with(dir.path(), |c| {
        c.log.faults = Faults(Some(plan.clone()));
    });
    let mut c = connect(&server.addr);
    c.channel_create(&json!({"name": "ledger"})).unwrap();
    let mut committed = connect(&server.addr);
    committed
        .subscribe_committed("ledger", None, Start::New)
        .unwrap();
    let first = c
        .publish("ledger", &OutgoingMessage::new(b"one"), AckMode::Durable)
        .unwrap();
    match committed.next_event(Some(Duration::from_secs(10))).unwrap() {
        Some(Event::Message { message, .. }) => assert_eq!(message.id, first),
        other => panic!("expected the committed message, got {other:?}"),
    }
    plan.set_sync_failure(true);
    let mut appended = connect(&server.addr);
    appended
        .subscribe("ledger", None, Start::AfterId(first))
        .unwrap();
    let second = c
        .publish("ledger", &OutgoingMessage::new(b"two"), AckMode::Append)
        .unwrap();
    match appended.next_event(Some(Duration::from_secs(10))).unwrap() {
        Some(Event::Message { message, .. }) => assert_eq!(message.id, second),
        other => panic!("expected the appended message, got {other:?}"),
    }
    // A durable publish fails: the sync failed, nothing after it is committed.
    let e = c.publish("ledger", &OutgoingMessage::new(b"three"), AckMode::Durable);
    assert!(e.is_err(), "{e:?}");
    assert_eq!(
        committed
            .next_event(Some(Duration::from_millis(300)))
            .unwrap(),
        None,
        "the committed subscription never sees an uncommitted message"
    );
}
