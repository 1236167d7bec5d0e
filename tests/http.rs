//! The HTTP shim (Syncano v1.1 Channels) against a real server: the error
//! catalogue and its precedence, long polls and their parking table. The
//! shapes the legacy clients send, keys, history and channel writes are in
//! `http_clients.rs`.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tidewire::client::{Event, OutgoingMessage};
use tidewire::wire::{AckMode, Start};

use common::http::{call, create, raw, Shim};
use common::ADMIN_KEY;

// ----- the error catalogue ------------------------------------------------------

/// method, URL, headers, body, expected status, expected body.
type Case<'a> = (
    &'a str,
    String,
    Vec<(&'a str, &'a str)>,
    Option<String>,
    u16,
    Value,
);

#[test]
fn every_row_of_the_error_catalogue_is_answered_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    create(
        &shim,
        json!({"name": "rooms", "type": "separate_rooms", "custom_publish": true,
               "other_permissions": "subscribe"}),
    );
    create(&shim, json!({"name": "plain", "custom_publish": true}));
    create(&shim, json!({"name": "closed"}));
    let user_api = shim.binary().admin(&json!({"op": "key.create"})).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let user_key = shim
        .binary()
        .admin(&json!({"op": "user.create", "username": "reader"}))
        .unwrap()["user_key"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = [
        ("X-API-KEY", ADMIN_KEY),
        ("Content-Type", "application/json"),
    ];
    let user = [
        ("X-API-KEY", user_api.as_str()),
        ("X-USER-KEY", user_key.as_str()),
    ];
    let cases: Vec<Case> = vec![
        (
            "GET",
            shim.url("rooms/poll/"),
            admin.to_vec(),
            None,
            400,
            json!({"room": "This field is required for channels with separate rooms."}),
        ),
        (
            "POST",
            shim.url("rooms/publish/"),
            admin.to_vec(),
            Some(json!({"payload": {}}).to_string()),
            400,
            json!({"room": "This field is required for channels with separate rooms."}),
        ),
        (
            // A user names a room; admins may read the whole history.
            "GET",
            shim.url("rooms/history/"),
            user.to_vec(),
            None,
            400,
            json!({"room": "This field is required for channels with separate rooms."}),
        ),
        (
            "GET",
            shim.url("plain/poll/?last_id=abc"),
            admin.to_vec(),
            None,
            400,
            json!({"last_id": ["A valid integer is required."]}),
        ),
        (
            "GET",
            shim.url(&format!("rooms/poll/?room={}", "r".repeat(129))),
            admin.to_vec(),
            None,
            400,
            json!({"room": ["Ensure this field has no more than 128 characters."]}),
        ),
        (
            "POST",
            shim.url("plain/publish/"),
            admin.to_vec(),
            Some(json!({"payload": [1]}).to_string()),
            400,
            json!({"payload": ["Payload passed in invalid format."]}),
        ),
        (
            "POST",
            shim.url("plain/publish/"),
            admin.to_vec(),
            Some(json!({"payload": "{nope"}).to_string()),
            400,
            json!({"payload": ["Not a valid JSON string."]}),
        ),
        (
            "GET",
            shim.url("plain/history/?page_size=x"),
            admin.to_vec(),
            None,
            400,
            json!({"detail": "Incorrect page parameter provided."}),
        ),
        (
            "POST",
            shim.url("closed/publish/"),
            admin.to_vec(),
            Some("{}".into()),
            403,
            json!({"detail": "Custom publish not allowed on this channel."}),
        ),
        (
            "POST",
            shim.url("plain/publish/"),
            vec![
                ("X-API-KEY", user_api.as_str()),
                ("Content-Type", "application/json"),
            ],
            Some("{}".into()),
            403,
            json!({"detail": "You do not have permission to perform this action."}),
        ),
        (
            "DELETE",
            shim.url("default/"),
            admin.to_vec(),
            None,
            403,
            json!({"detail": "You do not have permission to perform this action."}),
        ),
        (
            "POST",
            shim.url("eventlog/publish/"),
            admin.to_vec(),
            Some(json!({"room": "r"}).to_string()),
            403,
            json!({"detail": "You do not have permission to perform this action."}),
        ),
        (
            "GET",
            shim.url("plain/poll/"),
            vec![("X-API-KEY", "nosuchkey")],
            None,
            403,
            json!({"detail": "No such API Key."}),
        ),
        (
            "GET",
            shim.url("plain/history/"),
            vec![],
            None,
            403,
            json!({"detail": "You do not have permission to perform this action."}),
        ),
        (
            "GET",
            shim.url("missing/poll/"),
            admin.to_vec(),
            None,
            404,
            json!({"detail": "Not found."}),
        ),
        (
            "POST",
            shim.url("missing/publish/"),
            admin.to_vec(),
            Some("{}".into()),
            404,
            json!({"detail": "Not found."}),
        ),
        (
            "GET",
            shim.url("missing/"),
            admin.to_vec(),
            None,
            404,
            json!({"detail": "Not found."}),
        ),
        (
            "GET",
            shim.url("missing/history/"),
            admin.to_vec(),
            None,
            404,
            json!({"detail": "Channel was not found."}),
        ),
        (
            "GET",
            format!("http://{}/v1.1/instances/nope/channels/", shim.server.http),
            admin.to_vec(),
            None,
            404,
            json!({"detail": "Instance was not found."}),
        ),
        (
            "GET",
            format!("http://{}/v1.1/nothing/here/", shim.server.http),
            admin.to_vec(),
            None,
            404,
            json!({"detail": "Not found."}),
        ),
        (
            "POST",
            shim.url("plain/publish/"),
            admin.to_vec(),
            Some(format!(
                "{{\"payload\":{{\"a\":\"{}\"}}}}",
                "x".repeat(70_000)
            )),
            413,
            json!({"detail": "Request size limit exceeded (65536)."}),
        ),
    ];
    for (method, url, headers, body, status, want) in cases {
        let a = call(method, &url, &headers, body.as_deref());
        assert_eq!(
            (a.status, a.json()),
            (status, want.clone()),
            "{method} {url}"
        );
        // Exact bytes: compact JSON, as DRF renders it.
        assert_eq!(a.body, want.to_string(), "{method} {url}");
    }
}

#[test]
fn polls_over_the_instance_rate_get_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, shared) = common::manual_clock();
    let shim = Shim::start_with(dir.path(), |c| {
        c.http.poll_rate_per_instance = 2;
        c.clock = shared;
    });
    create(&shim, json!({"name": "rated", "custom_publish": true}));
    assert_eq!(
        shim.admin("POST", "rated/publish/", Some(json!({}))).status,
        201
    );
    for _ in 0..2 {
        assert_eq!(shim.admin("GET", "rated/poll/?last_id=0", None).status, 200);
    }
    let out = raw(
        &shim.server.http,
        format!("GET /v1.1/instances/default/channels/rated/poll/?last_id=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-API-KEY: {ADMIN_KEY}\r\n\r\n").as_bytes(),
    );
    assert!(out.starts_with("HTTP/1.1 429"), "{out}");
    assert!(out.contains("Retry-After: 1"), "{out}");
    assert!(
        out.ends_with(r#"{"detail":"Request was throttled. Expected available in 1 second."}"#),
        "{out}"
    );
    // Other routes are not counted; half a second later one poll is allowed.
    assert_eq!(shim.admin("GET", "rated/history/", None).status, 200);
    clock.advance_us(500_000);
    assert_eq!(shim.admin("GET", "rated/poll/?last_id=0", None).status, 200);
    assert_eq!(shim.admin("GET", "rated/poll/?last_id=0", None).status, 429);
}

#[test]
fn errors_follow_the_documented_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    create(&shim, json!({"name": "rooms", "type": "separate_rooms"}));
    // Unknown instance before a bad key; bad key before an unknown channel;
    // unknown channel before parameters; permission before the room rule.
    let other = format!(
        "http://{}/v1.1/instances/nope/channels/x/poll/?last_id=z",
        shim.server.http
    );
    assert_eq!(
        call("GET", &other, &[("X-API-KEY", "bad")], None).status,
        404
    );
    assert_eq!(
        call(
            "GET",
            &shim.url("x/poll/?last_id=z"),
            &[("X-API-KEY", "bad")],
            None
        )
        .status,
        403
    );
    let a = call(
        "GET",
        &shim.url("x/poll/?last_id=z"),
        &[("X-API-KEY", ADMIN_KEY)],
        None,
    );
    assert_eq!((a.status, a.json()), (404, json!({"detail": "Not found."})));
    let a = call(
        "POST",
        &shim.url("rooms/publish/"),
        &[
            ("X-API-KEY", ADMIN_KEY),
            ("Content-Type", "application/json"),
        ],
        Some("{}"),
    );
    assert_eq!(
        a.json(),
        json!({"detail": "Custom publish not allowed on this channel."})
    );
    let a = call(
        "GET",
        &shim.url("rooms/poll/?last_id=z"),
        &[("X-API-KEY", ADMIN_KEY)],
        None,
    );
    assert_eq!(
        a.json(),
        json!({"last_id": ["A valid integer is required."]})
    );
    // A bad key is refused before a broken body is looked at.
    let broken = [("X-API-KEY", "bad"), ("Content-Type", "application/json")];
    let a = call("POST", &shim.url("rooms/publish/"), &broken, Some("{nope"));
    assert_eq!(
        (a.status, a.json()),
        (403, json!({"detail": "No such API Key."}))
    );
    let good = [
        ("X-API-KEY", ADMIN_KEY),
        ("Content-Type", "application/json"),
    ];
    let a = call("POST", &shim.url("rooms/publish/"), &good, Some("{nope"));
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.json()["detail"]
        .as_str()
        .unwrap()
        .starts_with("JSON parse error"));
}

// ----- long polls ------------------------------------------------------------------

#[test]
fn a_poll_returns_the_oldest_newer_message_at_once_with_x_last_id() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    create(&shim, json!({"name": "chat", "custom_publish": true}));
    for n in 1..=3 {
        let a = shim.admin("POST", "chat/publish/", Some(json!({"payload": {"n": n}})));
        assert_eq!(a.status, 201);
        assert_eq!(
            a.json()["links"]["self"],
            format!("/v1.1/instances/default/channels/chat/history/{n}/")
        );
    }
    let a = shim.admin("GET", "chat/poll/?last_id=1", None);
    assert_eq!(a.status, 200);
    assert_eq!(a.last_id.as_deref(), Some("2"));
    let v = a.json();
    assert_eq!(v["id"], 2);
    assert_eq!(v["payload"], json!({"n": 2}));
    assert!(v.get("links").is_none(), "poll answers carry no links");
    assert_eq!(v["action"], "custom");
    assert_eq!(v["metadata"], json!({"type": "message"}));
    assert_eq!(v["author"], json!({"admin": 1}));
    let created = v["created_at"].as_str().unwrap();
    assert_eq!(created.len(), 27, "{created}");
    assert!(
        created.ends_with('Z') && created.as_bytes()[19] == b'.',
        "{created}"
    );
}

#[test]
fn a_parked_poll_is_woken_by_a_binary_publish_and_times_out_with_204() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start_with(dir.path(), |c| c.http.poll_timeout_us = 1_500_000);
    create(&shim, json!({"name": "live", "custom_publish": true}));
    let url = shim.url("live/poll/");
    let waiter = std::thread::spawn(move || call("GET", &url, &[("X-API-KEY", ADMIN_KEY)], None));
    shim.wait_parked(1);
    let mut c = shim.binary();
    let id = c
        .publish(
            "live",
            &OutgoingMessage::json(r#"{"from":"binary"}"#),
            AckMode::Append,
        )
        .unwrap();
    let a = waiter.join().unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["id"], id);
    assert_eq!(a.json()["payload"], json!({"from": "binary"}));
    assert_eq!(a.last_id, Some(id.to_string()));
    assert_eq!(shim.parked(), 0);
    // Nothing new: held for the configured timeout, then 204 with no body.
    let started = Instant::now();
    let a = shim.admin("GET", "live/poll/", None);
    assert_eq!((a.status, a.body.as_str()), (204, ""));
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(shim.parked(), 0);
}

#[test]
fn a_message_published_over_http_reaches_a_binary_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    create(
        &shim,
        json!({"name": "mixed", "type": "separate_rooms", "custom_publish": true}),
    );
    let mut c = shim.binary();
    c.subscribe("mixed", Some("lobby"), Start::New).unwrap();
    let a = shim.admin(
        "POST",
        "mixed/publish/",
        Some(json!({"payload": "{\"hi\": 1}", "room": "Lobby"})),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    match c.next_event(Some(Duration::from_secs(10))).unwrap() {
        Some(Event::Message { message, .. }) => {
            assert_eq!(message.id, 1);
            assert_eq!(message.room.as_deref(), Some("lobby"));
            assert_eq!(&message.payload[..], br#"{"hi":1}"#);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_client_that_hangs_up_while_parked_leaves_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    create(&shim, json!({"name": "quiet", "custom_publish": true}));
    let mut socks = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(&shim.server.http).unwrap();
        write!(s, "GET /v1.1/instances/default/channels/quiet/poll/ HTTP/1.1\r\nHost: x\r\nX-API-KEY: {ADMIN_KEY}\r\n\r\n").unwrap();
        socks.push(s);
    }
    shim.wait_parked(5);
    socks.truncate(2);
    shim.wait_parked(2);
    drop(socks);
    shim.wait_parked(0);
    // The server is fine: a publish and a poll work.
    assert_eq!(
        shim.admin("POST", "quiet/publish/", Some(json!({}))).status,
        201
    );
    assert_eq!(shim.admin("GET", "quiet/poll/?last_id=0", None).status, 200);
}

#[test]
fn a_full_parking_table_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start_with(dir.path(), |c| c.http.parked_polls_max = 2);
    create(&shim, json!({"name": "busy", "custom_publish": true}));
    let mut socks = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&shim.server.http).unwrap();
        write!(s, "GET /v1.1/instances/default/channels/busy/poll/ HTTP/1.1\r\nHost: x\r\nX-API-KEY: {ADMIN_KEY}\r\n\r\n").unwrap();
        socks.push(s);
    }
    shim.wait_parked(2);
    let out = raw(&shim.server.http, format!("GET /v1.1/instances/default/channels/busy/poll/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-API-KEY: {ADMIN_KEY}\r\n\r\n").as_bytes());
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert!(out.contains("Retry-After: 1"), "{out}");
    assert!(
        out.ends_with(r#"{"detail":"Too many parked polls; retry later."}"#),
        "{out}"
    );
    // An answered poll frees its slot.
    assert_eq!(
        shim.admin("POST", "busy/publish/", Some(json!({}))).status,
        201
    );
    shim.wait_parked(0);
    assert_eq!(shim.admin("GET", "busy/poll/?last_id=0", None).status, 200);
}

// ----- what the legacy clients send ------------------------------------------------------
