//! Integration tests of the native broker against a real server on 127.0.0.1.

mod common;
mod proc_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use tidewire::client::{Client, ClientError, Event, HistoryQuery, OutgoingMessage};
use tidewire::wire::{self, AckMode, ErrorCode, Start};

use common::{TestServer, ADMIN_KEY};
use proc_common::{rss_anon_kib, Serve, ServerProcess};

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

fn connect(addr: &str) -> Client {
    Client::connect(addr, ADMIN_KEY).expect("client connects")
}

fn create(c: &mut Client, name: &str) {
    c.channel_create(&json!({ "name": name }))
        .expect("channel created");
}

/// Receives `n` messages of subscription `sub_id`, returning their ids and payloads.
fn receive(c: &mut Client, n: usize) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match c.next_event(WAIT).expect("event") {
            Some(Event::Message { message, .. }) => {
                out.push((message.id, message.payload.to_vec()))
            }
            Some(other) => panic!("unexpected event {other:?}"),
            None => panic!("timed out after {} of {n} messages", out.len()),
        }
    }
    out
}

#[test]
fn a_published_message_reaches_a_subscriber_with_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut sub = connect(&server.addr);
    let mut publ = connect(&server.addr);
    create(&mut publ, "orders");
    let info = sub.subscribe("orders", None, Start::New).unwrap();
    assert_eq!(info.head_id, 0);
    let msg = OutgoingMessage::json(r#"{"n":1}"#).room("Eu").uuid([9; 16]);
    let id = publ.publish("orders", &msg, AckMode::Append).unwrap();
    assert_eq!(id, 1);
    match sub.next_event(WAIT).unwrap() {
        Some(Event::Message { sub_id, message }) => {
            assert_eq!(sub_id, info.sub_id);
            assert_eq!(message.id, 1);
            assert_eq!(&message.payload[..], br#"{"n":1}"#);
            assert_eq!(message.room.as_deref(), Some("eu"));
            assert_eq!(message.uuid, Some([9; 16]));
            assert!(matches!(
                message.author,
                tidewire::storage::Author::Admin(_)
            ));
        }
        other => panic!("expected a message, got {other:?}"),
    }
    let page = publ.history("orders", &HistoryQuery::default()).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(publ.fetch("orders", 1).unwrap().id, 1);
    let missing = publ.fetch("orders", 2).unwrap_err();
    assert_eq!(missing.code(), Some(ErrorCode::MessageNotFound));
}

#[test]
fn pipelined_publishes_are_acknowledged_in_order_with_contiguous_ids() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut c = connect(&server.addr);
    create(&mut c, "pipe");
    let n = 5_000u64;
    let mut request_ids = Vec::new();
    for i in 0..n {
        let payload = i.to_le_bytes();
        request_ids.push(
            c.send_publish("pipe", &OutgoingMessage::new(&payload), AckMode::Append)
                .unwrap(),
        );
    }
    c.flush().unwrap();
    for (i, rid) in request_ids.iter().enumerate() {
        let ack = c.recv_ack().unwrap();
        assert_eq!(ack.request_id, *rid);
        assert_eq!(ack.first_id, i as u64 + 1);
    }
    let batch: Vec<OutgoingMessage> = (0..100).map(|_| OutgoingMessage::new(b"b")).collect();
    let ids = c.publish_batch("pipe", &batch, AckMode::Durable).unwrap();
    assert_eq!(ids, (n + 1..=n + 100).collect::<Vec<_>>());
}

#[test]
fn a_repeated_idempotency_key_returns_the_original_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut c = connect(&server.addr);
    create(&mut c, "idem");
    let first = c
        .publish(
            "idem",
            &OutgoingMessage::new(b"x").idempotency_key(b"order-17"),
            AckMode::Append,
        )
        .unwrap();
    c.publish("idem", &OutgoingMessage::new(b"y"), AckMode::Append)
        .unwrap();
    let again = c
        .publish(
            "idem",
            &OutgoingMessage::new(b"x").idempotency_key(b"order-17"),
            AckMode::Append,
        )
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(
        c.history("idem", &HistoryQuery::default()).unwrap().len(),
        2
    );
}

#[test]
fn resuming_after_a_reconnect_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut publ = connect(&server.addr);
    create(&mut publ, "resume");
    for i in 0..300u32 {
        publ.publish(
            "resume",
            &OutgoingMessage::new(&i.to_le_bytes()),
            AckMode::Append,
        )
        .unwrap();
    }
    let mut sub = connect(&server.addr);
    sub.subscribe("resume", None, Start::Earliest).unwrap();
    let first = receive(&mut sub, 120);
    let last_seen = first.last().unwrap().0;
    drop(sub);
    for i in 300..400u32 {
        publ.publish(
            "resume",
            &OutgoingMessage::new(&i.to_le_bytes()),
            AckMode::Append,
        )
        .unwrap();
    }
    let mut sub = connect(&server.addr);
    sub.subscribe("resume", None, Start::AfterId(last_seen))
        .unwrap();
    let rest = receive(&mut sub, 400 - 120);
    let ids: Vec<u64> = first.iter().chain(rest.iter()).map(|m| m.0).collect();
    assert_eq!(ids, (1..=400).collect::<Vec<_>>());
    for (id, payload) in first.iter().chain(rest.iter()) {
        assert_eq!(payload, &((*id - 1) as u32).to_le_bytes());
    }
}

#[test]
fn a_graceful_restart_keeps_messages_and_continues_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path());
    let mut c = connect(&server.addr);
    create(&mut c, "durable");
    for _ in 0..50 {
        c.publish("durable", &OutgoingMessage::new(b"before"), AckMode::Append)
            .unwrap();
    }
    drop(c);
    server.stop();
    let server = TestServer::start(dir.path());
    let mut c = connect(&server.addr);
    assert_eq!(
        c.publish("durable", &OutgoingMessage::new(b"after"), AckMode::Append)
            .unwrap(),
        51
    );
    let all = c
        .history(
            "durable",
            &HistoryQuery {
                newest_first: false,
                limit: 1000,
                ..HistoryQuery::default()
            },
        )
        .unwrap();
    assert_eq!(
        all.iter().map(|m| m.id).collect::<Vec<_>>(),
        (1..=51).collect::<Vec<_>>()
    );
}

/// A server process (killed when the test ends, even when it fails) and its address.
fn spawn_server_process(dir: &std::path::Path, durability: &str) -> (ServerProcess, String) {
    let server = ServerProcess::spawn(&Serve::new(dir).durability(durability));
    let addr = server.addr().to_string();
    (server, addr)
}

#[test]
fn kill_9_under_batch_durability_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_server_process(dir.path(), "batch");
    let mut c = connect(&addr);
    create(&mut c, "crash");
    let mut acked = Vec::new();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..20_000u32 {
        pending.push_back(
            c.send_publish(
                "crash",
                &OutgoingMessage::new(&i.to_le_bytes()),
                AckMode::Durable,
            )
            .unwrap(),
        );
        if pending.len() >= 256 {
            c.flush().unwrap();
            let ack = c.recv_ack().unwrap();
            assert_eq!(Some(ack.request_id), pending.pop_front());
            acked.push(ack.first_id);
        }
    }
    c.flush().unwrap();
    // Kill while a last burst is still in flight.
    child.kill9();
    drop(c);
    let (mut child, addr) = spawn_server_process(dir.path(), "batch");
    let mut c = connect(&addr);
    let mut all = Vec::new();
    loop {
        let page = c
            .history(
                "crash",
                &HistoryQuery {
                    newest_first: false,
                    after_id: all.last().map_or(0, |m: &tidewire::client::Message| m.id),
                    limit: 1000,
                    ..HistoryQuery::default()
                },
            )
            .unwrap();
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    assert_eq!(all.first().map(|m| m.id), Some(1));
    for (k, m) in all.iter().enumerate() {
        assert_eq!(
            m.id,
            k as u64 + 1,
            "the stored ids of one run are contiguous, once each"
        );
        assert_eq!(&m.payload[..], &(k as u32).to_le_bytes());
    }
    let stored_max = all.last().unwrap().id;
    assert!(
        stored_max >= *acked.last().unwrap(),
        "stored up to {stored_max}: acknowledged ids lost"
    );
    let next = c
        .publish("crash", &OutgoingMessage::new(b"after"), AckMode::Append)
        .unwrap();
    assert!(next > stored_max, "ids never go back after a crash");
    // A subscriber from the earliest message gets every stored one, is
    // told about the ids the crash skipped, and gets the new one.
    let mut sub = connect(&addr);
    sub.subscribe("crash", None, Start::Earliest).unwrap();
    let mut got = Vec::new();
    while got.last() != Some(&next) {
        match sub.next_event(WAIT).expect("event") {
            Some(Event::Message { message, .. }) => got.push(message.id),
            Some(Event::Gap {
                wanted_id,
                oldest_id,
                ..
            }) => {
                assert_eq!(
                    (wanted_id, oldest_id),
                    (stored_max + 1, next),
                    "one gap, over the hole"
                )
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got.len(), all.len() + 1);
    child.kill9();
}

#[test]
fn a_subscriber_that_stops_reading_stays_bounded_and_then_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_server_process(dir.path(), "none");
    let mut publ = connect(&addr);
    create(&mut publ, "lag");
    let mut sub = connect(&addr);
    sub.subscribe("lag", None, Start::New).unwrap();
    let before = rss_anon_kib(child.pid());
    let payload = [7u8; 128];
    let total = 200_000usize;
    let batch: Vec<OutgoingMessage> = (0..500).map(|_| OutgoingMessage::new(&payload)).collect();
    for _ in 0..total / 500 {
        publ.publish_batch("lag", &batch, AckMode::Append).unwrap();
    }
    let after = rss_anon_kib(child.pid());
    // 200,000 × 128 B is 25 MiB of payload; the server holds only a bounded
    // write buffer for the subscriber, the rest stays in the log.
    assert!(
        after.saturating_sub(before) < 12 * 1024,
        "server anonymous memory grew by {} KiB while a subscriber lagged",
        after.saturating_sub(before)
    );
    let got = receive(&mut sub, total);
    assert!(got.iter().enumerate().all(|(k, m)| m.0 == k as u64 + 1));
    child.kill9();
}

#[test]
fn a_start_that_left_retention_gets_a_gap_notice_then_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, shared) = common::manual_clock();
    let server = TestServer::start_with(dir.path(), |c| c.clock = shared);
    let mut c = connect(&server.addr);
    create(&mut c, "expiring");
    for _ in 0..3 {
        c.publish("expiring", &OutgoingMessage::new(b"old"), AckMode::Append)
            .unwrap();
    }
    clock.advance_us(25 * 3600 * 1_000_000);
    c.publish("expiring", &OutgoingMessage::new(b"new"), AckMode::Append)
        .unwrap();
    let mut sub = connect(&server.addr);
    sub.subscribe("expiring", None, Start::AfterId(0)).unwrap();
    match sub.next_event(WAIT).unwrap() {
        Some(Event::Gap {
            wanted_id,
            oldest_id,
            ..
        }) => {
            assert_eq!(wanted_id, 1);
            assert_eq!(oldest_id, 4);
        }
        other => panic!("expected a gap notice, got {other:?}"),
    }
    let got = receive(&mut sub, 1);
    assert_eq!(got[0].0, 4);
    assert_eq!(got[0].1, b"new");
}

fn raw_handshake(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    wire::encode_request(
        &mut out,
        1,
        &wire::Request::Hello {
            version_min: 1,
            version_max: 1,
            client_name: "raw",
        },
    );
    wire::encode_request(
        &mut out,
        2,
        &wire::Request::Auth {
            key: ADMIN_KEY,
            user_key: "",
            instance: "",
        },
    );
    s.write_all(&out).unwrap();
    for _ in 0..2 {
        let (h, body) = read_frame(&mut s).expect("handshake reply");
        assert!(matches!(
            wire::decode_response(&h, &body).unwrap(),
            wire::Response::HelloOk { .. } | wire::Response::AuthOk { .. }
        ));
    }
    s
}

fn read_frame(s: &mut TcpStream) -> Option<(wire::FrameHeader, Vec<u8>)> {
    let mut head = [0u8; wire::FRAME_HEADER_LEN];
    s.read_exact(&mut head).ok()?;
    let h = wire::decode_header(&head).unwrap().unwrap();
    let mut body = vec![0u8; h.body_len];
    s.read_exact(&mut body).ok()?;
    Some((h, body))
}

fn expect_error_then_close(s: &mut TcpStream, code: ErrorCode) {
    let (h, body) = read_frame(s).expect("an error frame");
    match wire::decode_response(&h, &body).unwrap() {
        wire::Response::Error { code: got, .. } => assert_eq!(got, code),
        other => panic!("expected an error, got {other:?}"),
    }
    let mut rest = [0u8; 16];
    assert_eq!(
        s.read(&mut rest).unwrap_or(0),
        0,
        "the connection is closed"
    );
}

#[test]
fn malformed_and_oversized_frames_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut good = connect(&server.addr);
    create(&mut good, "safe");
    let mut sub = connect(&server.addr);
    sub.subscribe("safe", None, Start::New).unwrap();

    let mut bad = raw_handshake(&server.addr);
    bad.write_all(&[3, 0, 0, 0, 0x10, 0, 0, 0]).unwrap(); // length below the header
    expect_error_then_close(&mut bad, ErrorCode::MalformedFrame);

    let mut big = raw_handshake(&server.addr);
    let too_big = tidewire::limits::FRAME_LEN_MAX + 1;
    let mut frame = too_big.to_le_bytes().to_vec();
    frame.extend_from_slice(&[0x10, 0, 0, 0, 9, 0, 0, 0]);
    big.write_all(&frame).unwrap();
    expect_error_then_close(&mut big, ErrorCode::FrameTooLarge);

    let mut garbage = raw_handshake(&server.addr);
    let mut frame = Vec::new();
    frame.extend_from_slice(&20u32.to_le_bytes());
    frame.extend_from_slice(&[0x10, 0, 0, 0, 5, 0, 0, 0]);
    frame.extend_from_slice(&[0xff; 12]); // a publish body that does not parse
    garbage.write_all(&frame).unwrap();
    // The framing is intact, so only the request fails; the connection goes on.
    let (h, body) = read_frame(&mut garbage).expect("an error frame");
    assert!(matches!(
        wire::decode_response(&h, &body).unwrap(),
        wire::Response::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
    assert_eq!(h.request_id, 5);
    let mut ping = Vec::new();
    wire::encode_request(&mut ping, 6, &wire::Request::Ping { data: b"hi" });
    garbage.write_all(&ping).unwrap();
    let (h, body) = read_frame(&mut garbage).expect("a pong");
    assert_eq!(
        wire::decode_response(&h, &body).unwrap(),
        wire::Response::Pong { data: b"hi" }
    );

    let id = good
        .publish(
            "safe",
            &OutgoingMessage::new(b"still here"),
            AckMode::Append,
        )
        .unwrap();
    assert_eq!(receive(&mut sub, 1)[0].0, id);
}

#[test]
fn requests_that_fail_get_stable_codes_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut c = connect(&server.addr);
    let err = |r: Result<u64, ClientError>| r.unwrap_err().code();
    assert_eq!(
        err(c.publish("nope", &OutgoingMessage::new(b"x"), AckMode::Append)),
        Some(ErrorCode::ChannelNotFound)
    );
    c.channel_create(&json!({"name": "rooms", "type": "separate_rooms"}))
        .unwrap();
    assert_eq!(
        err(c.publish("rooms", &OutgoingMessage::new(b"x"), AckMode::Append)),
        Some(ErrorCode::RoomRequired)
    );
    assert_eq!(
        c.subscribe("rooms", None, Start::New).unwrap_err().code(),
        Some(ErrorCode::RoomRequired)
    );
    c.channel_create(&json!({"name": "closed", "custom_publish": false}))
        .unwrap();
    assert_eq!(
        err(c.publish("closed", &OutgoingMessage::new(b"x"), AckMode::Append)),
        Some(ErrorCode::CustomPublishDisabled)
    );
    assert_eq!(
        c.channel_create(&json!({"name": "rooms"}))
            .unwrap_err()
            .code(),
        Some(ErrorCode::ChannelExists)
    );
    assert_eq!(
        c.channel_create(&json!({"name": "../etc"}))
            .unwrap_err()
            .code(),
        Some(ErrorCode::InvalidName)
    );
    assert!(
        Client::connect(&server.addr, "wrong-key")
            .unwrap_err()
            .code()
            == Some(ErrorCode::AuthFailed)
    );
    assert_eq!(
        c.publish(
            "rooms",
            &OutgoingMessage::new(b"x").room("a"),
            AckMode::Append
        )
        .unwrap(),
        1
    );
}

#[test]
fn room_subscriptions_and_history_see_only_their_room() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut c = connect(&server.addr);
    c.channel_create(&json!({"name": "chat", "type": "separate_rooms"}))
        .unwrap();
    let mut sub = connect(&server.addr);
    sub.subscribe("chat", Some("blue"), Start::Earliest)
        .unwrap();
    for i in 0..30u32 {
        let room = if i % 3 == 0 { "Blue" } else { "red" };
        c.publish(
            "chat",
            &OutgoingMessage::new(&i.to_le_bytes()).room(room),
            AckMode::Append,
        )
        .unwrap();
    }
    let blue = receive(&mut sub, 10);
    assert_eq!(
        blue.iter().map(|m| m.0).collect::<Vec<_>>(),
        (0..10).map(|k| k * 3 + 1).collect::<Vec<u64>>()
    );
    let q = HistoryQuery {
        room: Some("red".into()),
        limit: 5,
        ..HistoryQuery::default()
    };
    let page = c.history("chat", &q).unwrap();
    assert_eq!(
        page.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![30, 29, 27, 26, 24]
    );
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max.min(8192);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[test]
fn a_thousand_concurrent_connections_are_served() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut admin = connect(&server.addr);
    create(&mut admin, "many");
    let mut clients: Vec<Client> = (0..1000).map(|_| connect(&server.addr)).collect();
    for c in clients.iter_mut().step_by(10) {
        c.subscribe("many", None, Start::New).unwrap();
    }
    for c in &mut clients {
        c.ping().unwrap();
    }
    admin
        .publish("many", &OutgoingMessage::new(b"all"), AckMode::Append)
        .unwrap();
    for c in clients.iter_mut().step_by(10) {
        assert_eq!(receive(c, 1)[0].0, 1);
    }
}

#[test]
fn subscribers_on_different_io_threads_each_receive_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    // Connections are dealt to io threads in turn: these two land on different ones.
    let mut a = connect(&server.addr);
    let mut b = connect(&server.addr);
    let mut publ = connect(&server.addr);
    create(&mut publ, "fan");
    a.subscribe("fan", None, Start::New).unwrap();
    b.subscribe("fan", None, Start::New).unwrap();
    let n = 20_000usize;
    let t = std::thread::spawn(move || {
        let payload = [1u8; 64];
        let batch: Vec<OutgoingMessage> =
            (0..100).map(|_| OutgoingMessage::new(&payload)).collect();
        for _ in 0..n / 100 {
            publ.publish_batch("fan", &batch, AckMode::Append).unwrap();
        }
    });
    let got_a = receive(&mut a, n);
    let got_b = receive(&mut b, n);
    t.join().unwrap();
    for got in [got_a, got_b] {
        assert!(got.iter().enumerate().all(|(k, m)| m.0 == k as u64 + 1));
    }
}

#[test]
fn sigterm_appends_what_was_acknowledged_exits_0_and_a_restart_continues_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_server_process(dir.path(), "batch");
    let mut c = connect(&addr);
    create(&mut c, "term");
    for _ in 0..100 {
        c.publish("term", &OutgoingMessage::new(b"m"), AckMode::Append)
            .unwrap();
    }
    let status = child.terminate();
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
    let (mut child, addr) = spawn_server_process(dir.path(), "batch");
    let mut c = connect(&addr);
    assert_eq!(
        c.publish("term", &OutgoingMessage::new(b"n"), AckMode::Append)
            .unwrap(),
        101
    );
    child.kill9();
}

#[test]
fn one_connection_holds_several_subscriptions_and_unsubscribe_stops_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut publ = connect(&server.addr);
    create(&mut publ, "alpha");
    create(&mut publ, "beta");
    let mut sub = connect(&server.addr);
    let a = sub.subscribe("alpha", None, Start::New).unwrap();
    let b = sub.subscribe("beta", Some("x"), Start::New).unwrap();
    assert_ne!(a.sub_id, b.sub_id);
    publ.publish("alpha", &OutgoingMessage::new(b"a1"), AckMode::Append)
        .unwrap();
    publ.publish(
        "beta",
        &OutgoingMessage::new(b"b-other").room("y"),
        AckMode::Append,
    )
    .unwrap();
    publ.publish(
        "beta",
        &OutgoingMessage::new(b"b1").room("x"),
        AckMode::Append,
    )
    .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match sub.next_event(WAIT).unwrap() {
            Some(Event::Message { sub_id, message }) => {
                seen.push((sub_id, message.payload.to_vec()))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    seen.sort();
    let mut want = vec![(a.sub_id, b"a1".to_vec()), (b.sub_id, b"b1".to_vec())];
    want.sort();
    assert_eq!(
        seen, want,
        "each subscription gets its channel (and room) only"
    );
    sub.unsubscribe(a.sub_id).unwrap();
    publ.publish("alpha", &OutgoingMessage::new(b"a2"), AckMode::Append)
        .unwrap();
    publ.publish(
        "beta",
        &OutgoingMessage::new(b"b2").room("x"),
        AckMode::Append,
    )
    .unwrap();
    match sub.next_event(WAIT).unwrap() {
        Some(Event::Message { sub_id, message }) => {
            assert_eq!(
                sub_id, b.sub_id,
                "nothing arrives for an ended subscription"
            );
            assert_eq!(message.payload, b"b2");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        sub.unsubscribe(a.sub_id).unwrap_err().code(),
        Some(ErrorCode::UnknownSubscription)
    );
}
