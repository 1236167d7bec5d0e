//! Ids never go backwards for a channel name, and a read after an id the
//! channel never had is refused with a signal naming the head (while one
//! after ids a crash took back reads on above them); a start time in the
//! future never delivers older messages. Through the binary protocol and
//! the HTTP shim.

mod common;

use std::time::Duration;

use serde_json::json;
use tidewire::client::{Client, ClientError, Event, HistoryQuery, OutgoingMessage};
use tidewire::clock;
use tidewire::storage::{ChannelLog, Durability, FaultPlan, Faults, LogConfig};
use tidewire::wire::{AckMode, ErrorCode, Start};

use common::http::{create, Shim};
use common::{TestServer, ADMIN_KEY};

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

fn connect(addr: &str) -> Client {
    Client::connect(addr, ADMIN_KEY).expect("client connects")
}

fn publish_n(c: &mut Client, channel: &str, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            c.publish(channel, &OutgoingMessage::new(b"m"), AckMode::Append)
                .unwrap()
        })
        .collect()
}

fn server_code(r: Result<impl std::fmt::Debug, ClientError>) -> (ErrorCode, String) {
    match r {
        Err(ClientError::Server { code, message }) => (code, message),
        other => panic!("expected a server error, got {other:?}"),
    }
}

fn after(after_id: u64) -> HistoryQuery {
    HistoryQuery {
        newest_first: false,
        after_id,
        ..HistoryQuery::default()
    }
}

#[test]
fn a_log_opened_with_a_floor_starts_there_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_size: tidewire::limits::SEGMENT_SIZE_MIN,
        ..LogConfig::default()
    };
    let floored = LogConfig {
        first_id_floor: 101,
        ..config.clone()
    };
    let (log, _) = ChannelLog::open(dir.path(), floored, clock::system()).unwrap();
    assert_eq!((log.next_id(), log.reader().head_id()), (101, 100));
    log.close().unwrap();
    // An empty log keeps its floor when opened again without one.
    let (mut log, _) = ChannelLog::open(dir.path(), config.clone(), clock::system()).unwrap();
    assert_eq!(log.next_id(), 101);
    let author = tidewire::storage::Author::Admin(1);
    assert_eq!(log.append(author, &[0, 0, 0, 0]).unwrap().id(), 101);
    log.commit().unwrap();
    log.close().unwrap();
    // A floor below the log's ids changes nothing.
    let low = LogConfig {
        first_id_floor: 5,
        ..config
    };
    let (log, _) = ChannelLog::open(dir.path(), low, clock::system()).unwrap();
    assert_eq!(log.next_id(), 102);
}

#[test]
fn a_channel_created_again_continues_after_its_names_highest_id_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path());
    let mut c = connect(&server.addr);
    c.channel_create(&json!({ "name": "again" })).unwrap();
    assert_eq!(publish_n(&mut c, "again", 5), vec![1, 2, 3, 4, 5]);
    c.channel_delete("again").unwrap();
    c.channel_create(&json!({ "name": "again" })).unwrap();
    let ch = c.channel_get("again").unwrap();
    assert_eq!(
        (ch["head_id"].as_u64(), ch["oldest_id"].as_u64()),
        (Some(5), Some(6))
    );
    assert_eq!(publish_n(&mut c, "again", 2), vec![6, 7]);
    // Deleted again (by a name read the same way), then a restart: the mark
    // is on disk.
    c.channel_delete("AGAIN").unwrap();
    drop(c);
    server.stop();
    let server = TestServer::start(dir.path());
    let mut c = connect(&server.addr);
    c.channel_create(&json!({ "name": "again" })).unwrap();
    assert_eq!(publish_n(&mut c, "again", 1), vec![8]);
    // A subscriber resuming with an id of the first channel gets a gap
    // notice, never a silent skip, and then every new message.
    let mut sub = connect(&server.addr);
    sub.subscribe("again", None, Start::AfterId(5)).unwrap();
    match sub.next_event(WAIT).unwrap() {
        Some(Event::Gap {
            wanted_id,
            oldest_id,
            ..
        }) => assert_eq!((wanted_id, oldest_id), (6, 8)),
        other => panic!("expected a gap notice, got {other:?}"),
    }
    match sub.next_event(WAIT).unwrap() {
        Some(Event::Message { message, .. }) => assert_eq!(message.id, 8),
        other => panic!("expected message 8, got {other:?}"),
    }
}

#[test]
fn publishes_queued_when_a_channel_is_deleted_stay_below_the_next_channels_ids() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut admin = connect(&server.addr);
    let mut publ = connect(&server.addr);
    // Frames of many small messages keep the writer's queue busy when the
    // delete comes.
    let bodies: Vec<[u8; 4]> = (0..1000u32).map(u32::to_le_bytes).collect();
    let batch: Vec<OutgoingMessage> = bodies.iter().map(|b| OutgoingMessage::new(b)).collect();
    for round in 0..5 {
        admin.channel_create(&json!({ "name": "busy" })).unwrap();
        let mut sent = 0;
        for _ in 0..40 {
            publ.send_publish_batch("busy", &batch, AckMode::Append)
                .unwrap();
            sent += 1;
        }
        publ.flush().unwrap();
        admin.channel_delete("busy").unwrap();
        let mut acked_max = 0;
        for _ in 0..sent {
            match publ.recv_ack() {
                Ok(ack) => acked_max = acked_max.max(ack.first_id + batch.len() as u64 - 1),
                Err(e) => assert_eq!(e.code(), Some(ErrorCode::ChannelNotFound), "{e}"),
            }
        }
        admin.channel_create(&json!({ "name": "busy" })).unwrap();
        let next = admin
            .publish("busy", &OutgoingMessage::new(b"next"), AckMode::Append)
            .unwrap();
        assert!(
            next > acked_max,
            "round {round}: id {next} given again after {acked_max} was acknowledged"
        );
        admin.channel_delete("busy").unwrap();
    }
}

#[test]
fn reads_after_an_id_beyond_the_head_are_refused_naming_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut c = connect(&server.addr);
    c.channel_create(&json!({ "name": "short" })).unwrap();
    publish_n(&mut c, "short", 3);
    let (code, message) = server_code(c.subscribe("short", None, Start::AfterId(4)));
    assert_eq!(code, ErrorCode::AheadOfHead);
    assert!(message.contains("head_id 3"), "{message}");
    let (code, message) = server_code(c.history("short", &after(10)));
    assert_eq!((code, code as u16), (ErrorCode::AheadOfHead, 33));
    assert!(message.contains("head_id 3"), "{message}");
    // At the head itself: accepted, nothing yet.
    assert!(c.history("short", &after(3)).unwrap().is_empty());
    c.subscribe("short", None, Start::AfterId(3)).unwrap();
    let id = c
        .publish("short", &OutgoingMessage::new(b"4"), AckMode::Append)
        .unwrap();
    match c.next_event(WAIT).unwrap() {
        Some(Event::Message { message, .. }) => assert_eq!(message.id, id),
        other => panic!("expected message {id}, got {other:?}"),
    }
}

#[test]
fn a_start_time_in_the_future_never_delivers_older_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, shared) = common::manual_clock();
    let server = TestServer::start_with(dir.path(), |c| c.clock = shared);
    let mut c = connect(&server.addr);
    c.channel_create(&json!({ "name": "later" })).unwrap();
    publish_n(&mut c, "later", 2);
    let start_us = clock::Clock::now_us(&*clock) + 10_000_000;
    let mut sub = connect(&server.addr);
    let info = sub
        .subscribe("later", None, Start::AtTime(start_us))
        .unwrap();
    assert_eq!(info.next_id, 3, "a lower bound: nothing created at T yet");
    // Appended after the subscription, but created before its start time.
    let early = publish_n(&mut c, "later", 2);
    clock.advance_us(20_000_000);
    let on_time = publish_n(&mut c, "later", 1)[0];
    match sub.next_event(WAIT).unwrap() {
        Some(Event::Message { message, .. }) => {
            assert_eq!(message.id, on_time, "messages {early:?} are older than T")
        }
        other => panic!("expected message {on_time}, got {other:?}"),
    }
}

#[test]
fn over_http_ids_continue_after_a_channel_is_created_again_and_a_poll_ahead_of_the_head_is_refused()
{
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    let feed = json!({"name": "feed", "custom_publish": true, "other_permissions": "publish"});
    let publish = || {
        let a = shim.admin("POST", "feed/publish/", Some(json!({"payload": {"n": 1}})));
        assert_eq!(a.status, 201, "{}", a.body);
        a.json()["id"].as_u64().unwrap()
    };
    create(&shim, feed.clone());
    assert_eq!((publish(), publish(), publish()), (1, 2, 3));
    // A poll ahead of the head is told the head at once.
    let a = shim.admin("GET", "feed/poll/?last_id=9", None);
    assert_eq!(a.status, 400);
    assert_eq!(
        a.json(),
        json!({"last_id": ["Ensure this value is less than or equal to 3."]})
    );
    assert_eq!(shim.admin("DELETE", "feed/", None).status, 204);
    create(&shim, feed);
    assert_eq!(publish(), 4);
    // A poller that resumes with the old channel's last id gets the new message.
    let a = shim.admin("GET", "feed/poll/?last_id=3", None);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["id"], 4);
}

#[test]
fn reads_after_ids_a_crash_took_back_continue_above_them_and_only_reads_beyond_the_head_fail() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    plan.track_unsynced();
    let mut server = TestServer::start_http(dir.path(), |c| {
        c.log.durability = Durability::Batch;
        c.log.faults = Faults(Some(plan.clone()));
    });
    let mut c = connect(&server.addr);
    c.channel_create(&json!({"name": "feed"})).unwrap();
    let kept = c
        .publish("feed", &OutgoingMessage::new(b"{}"), AckMode::Durable)
        .unwrap();
    // Syncs fail from now on: this message is appended (its id is given),
    // never committed, and lost by the power cut.
    plan.set_sync_failure(true);
    let lost = c
        .publish("feed", &OutgoingMessage::new(b"{}"), AckMode::Append)
        .unwrap();
    drop(c);
    plan.crash_at(plan.ops() + 1);
    plan.power_cut(None).unwrap();
    server.stop();

    let shim = Shim::start(dir.path());
    let mut c = shim.binary();
    let next = c
        .publish("feed", &OutgoingMessage::new(b"{}"), AckMode::Durable)
        .unwrap();
    assert!(next > lost, "the lost id is never given again");
    // After the lost id: not beyond the head, so History and the HTTP poll
    // read on above the crash hole.
    let page = c.history("feed", &after(lost)).unwrap();
    assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), vec![next]);
    let a = shim.admin("GET", &format!("feed/poll/?last_id={lost}"), None);
    assert_eq!((a.status, a.json()["id"].as_u64()), (200, Some(next)));
    // Beyond the head: refused on every path, naming the head.
    let (code, message) = server_code(c.history("feed", &after(next + 1)));
    assert_eq!(code, ErrorCode::AheadOfHead);
    assert!(message.contains(&format!("head_id {next}")), "{message}");
    let (code, _) = server_code(c.subscribe("feed", None, Start::AfterId(next + 1)));
    assert_eq!(code, ErrorCode::AheadOfHead);
    let a = shim.admin("GET", &format!("feed/poll/?last_id={}", next + 1), None);
    assert_eq!(a.status, 400, "{}", a.body);
    let all = c.history("feed", &after(0)).unwrap();
    assert_eq!(
        all.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![kept, next]
    );
}
