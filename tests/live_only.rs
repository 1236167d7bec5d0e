//! Live-only messages (`no_history`): delivered to the subscriptions that
//! are live when they are published, in the publisher's order among stored
//! messages, and never stored, listed, fetched or replayed.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use common::tenancy::{cmd, code, connect_as, secret};
use common::{TestServer, ADMIN_KEY};
use tidewire::client::{Client, Event, HistoryQuery, Message, OutgoingMessage};
use tidewire::wire::{self, AckMode, ErrorCode, Request, Response, Start};

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

fn live(text: &str) -> OutgoingMessage<'_> {
    let mut m = OutgoingMessage::text(text);
    m.fields.live = true;
    m
}

/// (live?, id, payload) of the next event, which must be a message.
fn next(c: &mut Client) -> (bool, u64, String) {
    match c.next_event(WAIT).unwrap() {
        Some(Event::Message { message, .. }) => (false, message.id, message.payload_text()),
        Some(Event::Live { message, .. }) => (true, message.id, message.payload_text()),
        other => panic!("expected a message, got {other:?}"),
    }
}

fn quiet(c: &mut Client) {
    c.ping().unwrap();
    let e = c.next_event(Some(Duration::from_millis(200))).unwrap();
    assert!(e.is_none(), "unexpected {e:?}");
}

#[test]
fn live_subscribers_get_it_in_order_and_nothing_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut p = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    p.channel_create(&json!({"name": "room"})).unwrap();
    let mut a = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    a.subscribe("room", None, Start::New).unwrap();
    let mut in_x = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    in_x.subscribe("room", Some("x"), Start::New).unwrap();

    // Pipelined: stored, live, stored, live in room x.
    p.send_publish("room", &OutgoingMessage::text("m1"), AckMode::Append)
        .unwrap();
    p.send_publish("room", &live("typing"), AckMode::Append)
        .unwrap();
    p.send_publish("room", &OutgoingMessage::text("m2"), AckMode::Append)
        .unwrap();
    p.send_publish("room", &live("in x").room("x"), AckMode::Append)
        .unwrap();
    let acks = p.wait_acks(4).unwrap();
    assert_eq!(
        acks.iter().map(|a| a.ids()[0]).collect::<Vec<_>>(),
        vec![1, 0, 2, 0]
    );
    // A live-only message has a uuid too (random: no id to derive it from).
    assert!(acks[1].duplicates.is_empty() && acks[1].first_id == 0);
    assert_eq!(acks[1].uuids.len(), 1);
    assert_ne!(acks[1].uuids, acks[3].uuids);

    let got: Vec<(bool, u64, String)> = (0..4).map(|_| next(&mut a)).collect();
    assert_eq!(
        got,
        vec![
            (false, 1, "m1".into()),
            (true, 0, "typing".into()),
            (false, 2, "m2".into()),
            (true, 0, "in x".into()),
        ]
    );
    // The room filter applies: only the live message of room x.
    assert_eq!(next(&mut in_x), (true, 0, "in x".into()));
    quiet(&mut in_x);

    // Nothing of it is stored: history, fetch and a replay hold m1 and m2.
    let q = HistoryQuery {
        newest_first: false,
        raw: true,
        ..HistoryQuery::default()
    };
    let ids: Vec<u64> = p
        .history("room", &q)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(
        code(p.fetch_raw("room", 3)),
        Err(ErrorCode::MessageNotFound)
    );
    let mut late = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    late.subscribe("room", None, Start::AfterId(0)).unwrap();
    assert_eq!(next(&mut late), (false, 1, "m1".into()));
    assert_eq!(next(&mut late), (false, 2, "m2".into()));
    quiet(&mut late);
    assert_eq!(
        p.publish("room", &OutgoingMessage::text("m3"), AckMode::Append)
            .unwrap(),
        3
    );

    // One frame holds live-only messages only, or none; and no idempotency key.
    let mixed = [live("l"), OutgoingMessage::text("s")];
    assert_eq!(
        code(p.publish_batch("room", &mixed, AckMode::Append)),
        Err(ErrorCode::BadRequest)
    );
    let keyed = live("k").idempotency_key(b"k1");
    assert_eq!(
        code(p.publish("room", &keyed, AckMode::Append)),
        Err(ErrorCode::BadRequest)
    );
    let two = p
        .publish_batch("room", &[live("l1"), live("l2")], AckMode::Durable)
        .unwrap();
    assert_eq!(two, vec![0, 0]);
}

#[test]
fn a_lagging_subscriber_never_gets_it_and_targeting_holds() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut p = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    p.channel_create(&json!({"name": "feed", "other_permissions": "subscribe"}))
        .unwrap();
    // 24 MB of backlog: more than the write buffer and both socket buffers.
    let big = "x".repeat(60_000);
    for _ in 0..400 {
        p.send_publish("feed", &OutgoingMessage::text(&big), AckMode::Durable)
            .unwrap();
    }
    p.wait_acks(400).unwrap();

    // A raw subscriber from the earliest message that reads nothing yet.
    let mut slow = TcpStream::connect(&server.addr).unwrap();
    let mut out = Vec::new();
    let hello = Request::Hello {
        version_min: 1,
        version_max: 2,
        client_name: "slow",
    };
    wire::encode_request(&mut out, 1, &hello);
    let auth = Request::Auth {
        key: ADMIN_KEY,
        user_key: "",
        instance: "",
    };
    wire::encode_request(&mut out, 2, &auth);
    let sub = Request::Subscribe {
        sub_id: 9,
        channel: "feed",
        room: "",
        start: Start::Earliest,
        committed: false,
    };
    wire::encode_request(&mut out, 3, &sub);
    std::io::Write::write_all(&mut slow, &out).unwrap();

    let mut a = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    let mut root_admin = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    let key = secret(&cmd(&mut root_admin, json!({"op": "key.create"})), "key");
    let ann = secret(
        &cmd(
            &mut root_admin,
            json!({"op": "user.create", "username": "ann"}),
        ),
        "user_key",
    );
    let bob = secret(
        &cmd(
            &mut root_admin,
            json!({"op": "user.create", "username": "bob"}),
        ),
        "user_key",
    );
    let mut ann_c = connect_as(&server.addr, &key, &ann, "").unwrap();
    let mut bob_c = connect_as(&server.addr, &key, &bob, "").unwrap();
    for c in [&mut a, &mut ann_c, &mut bob_c] {
        c.subscribe("feed", None, Start::New).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    p.publish("feed", &live("now"), AckMode::Append).unwrap();
    let mut for_ann = live("for ann");
    for_ann.fields.pm_users = &["ann"];
    p.publish("feed", &for_ann, AckMode::Append).unwrap();
    assert_eq!(next(&mut a), (true, 0, "now".into()));
    quiet(&mut a); // an admin key has no user: not one of pm_users
    assert_eq!(next(&mut ann_c), (true, 0, "now".into()));
    assert_eq!(next(&mut ann_c), (true, 0, "for ann".into()));
    assert_eq!(next(&mut bob_c), (true, 0, "now".into()));
    quiet(&mut bob_c);

    // The slow subscriber now reads everything: 400 stored messages, no live one.
    slow.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    while let Ok(n) = slow.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut rest = &buf[..];
    let (mut stored, mut live_frames) = (0, 0);
    while let Ok(Some(h)) = wire::decode_header(rest) {
        let frame_len = wire::FRAME_HEADER_LEN + h.body_len;
        if rest.len() < frame_len {
            break;
        }
        match wire::decode_response(&h, &rest[wire::FRAME_HEADER_LEN..frame_len]).unwrap() {
            Response::Deliver { records, count, .. } => {
                stored += count;
                tidewire::client::split_records(records, count, |r| {
                    assert_ne!(Message::from_record(r).unwrap().id, 0);
                })
                .unwrap();
            }
            Response::Live { .. } => live_frames += 1,
            _ => {}
        }
        rest = &rest[frame_len..];
    }
    assert_eq!((stored, live_frames), (400, 0));
}
