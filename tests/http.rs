//! The HTTP shim (Syncano v1.1 Channels) against a real server: a real HTTP
//! client for well-formed requests, raw sockets for malformed ones.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tidewire::client::{Client, ConnectOptions, Event, OutgoingMessage};
use tidewire::wire::{AckMode, Start};

use common::{TestServer, ADMIN_KEY};

/// One HTTP answer: status, `X-Last-Id`, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    last_id: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .build()
}

fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Answer {
    let mut r = agent().request(method, url);
    for (k, v) in headers {
        r = r.set(k, v);
    }
    let result = match body {
        Some(b) => r.send_string(b),
        None => r.call(),
    };
    let resp = match result {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let last_id = resp.header("X-Last-Id").map(str::to_string);
    let body = resp.into_string().unwrap();
    Answer {
        status,
        last_id,
        body,
    }
}

struct Shim {
    server: TestServer,
    base: String,
}

impl Shim {
    fn start(dir: &std::path::Path) -> Shim {
        Self::start_with(dir, |_| {})
    }
    fn start_with(
        dir: &std::path::Path,
        tweak: impl FnOnce(&mut tidewire::config::ServerConfig),
    ) -> Shim {
        let server = TestServer::start_http(dir, tweak);
        let base = format!("http://{}/v1.1/instances/default/channels/", server.http);
        Shim { server, base }
    }
    fn url(&self, rest: &str) -> String {
        format!("{}{rest}", self.base)
    }
    fn admin(&self, method: &str, rest: &str, body: Option<Value>) -> Answer {
        let body = body.map(|b| b.to_string());
        call(
            method,
            &self.url(rest),
            &[
                ("X-API-KEY", ADMIN_KEY),
                ("Content-Type", "application/json"),
            ],
            body.as_deref(),
        )
    }
    fn binary(&self) -> Client {
        Client::connect(&self.server.addr, ADMIN_KEY).unwrap()
    }
    fn parked(&self) -> u64 {
        self.binary().admin(&json!({"op": "server.stats"})).unwrap()["parked_polls"]
            .as_u64()
            .unwrap()
    }
    fn wait_parked(&self, n: u64) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.parked() != n {
            assert!(Instant::now() < until, "parked polls never reached {n}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn create(shim: &Shim, body: Value) {
    let a = shim.admin("POST", "", Some(body));
    assert_eq!(a.status, 201, "{}", a.body);
}

/// A raw HTTP exchange: writes `request`, reads until the server closes or
/// `want` complete responses arrived.
fn raw(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

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
        json!({"name": "rooms", "type": "separate_rooms", "custom_publish": true}),
    );
    create(&shim, json!({"name": "plain", "custom_publish": true}));
    create(&shim, json!({"name": "closed"}));
    let user_api = shim.binary().admin(&json!({"op": "key.create"})).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = [
        ("X-API-KEY", ADMIN_KEY),
        ("Content-Type", "application/json"),
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
            "GET",
            shim.url("rooms/history/"),
            admin.to_vec(),
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

#[test]
fn the_request_shapes_of_the_legacy_clients_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    // Python: Authorization: token <account key>, content-type JSON on GET too.
    let py = [
        ("Authorization", &*format!("token {ADMIN_KEY}")),
        ("content-type", "application/json"),
    ];
    let a = call(
        "POST",
        &shim.base,
        &py,
        Some(
            &json!({"name": "Shapes", "type": "separate_rooms", "custom_publish": true})
                .to_string(),
        ),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.json()["name"], "shapes");
    assert!(
        a.json()["links"]["self"].is_string(),
        "links tell the client the object exists"
    );
    // PATCH with the name in the body; PUT with the whole object back.
    let a = call(
        "PATCH",
        &shim.url("shapes/"),
        &py,
        Some(&json!({"name": "shapes", "description": "d"}).to_string()),
    );
    assert_eq!(
        (a.status, a.json()["description"].clone()),
        (200, json!("d"))
    );
    let whole = a.body.clone();
    let a = call("PUT", &shim.url("shapes/"), &py, Some(&whole));
    assert_eq!(a.status, 200, "{}", a.body);
    // Publish with the payload as a JSON string (both clients).
    let a = call(
        "POST",
        &shim.url("shapes/publish/"),
        &py,
        Some(&json!({"payload": "{\"content\": \"hello!\"}", "room": "r1"}).to_string()),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.json()["payload"], json!({"content": "hello!"}));
    // JS: X-API-KEY, a {} body on GET, and ?last_id=&room= on the first poll.
    let js = [
        ("X-API-KEY", ADMIN_KEY),
        ("Content-Type", "application/json"),
    ];
    let a = call("GET", &shim.url("shapes/history/?room=r1"), &js, Some("{}"));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["objects"].as_array().unwrap().len(), 1);
    let url = shim.url("shapes/poll/?last_id=&room=r1");
    let waiter = std::thread::spawn(move || call("GET", &url, &js, Some("{}")));
    shim.wait_parked(1);
    call(
        "POST",
        &shim.url("shapes/publish/"),
        &py,
        Some(&json!({"payload": "{\"n\": 2}", "room": "R1"}).to_string()),
    );
    let a = waiter.join().unwrap();
    assert_eq!(
        (a.status, a.json()["payload"].clone()),
        (200, json!({"n": 2}))
    );
    // Form-encoded publish and the keys in the query string and body.
    let a = call(
        "POST",
        &format!("{}?api_key={ADMIN_KEY}", shim.url("shapes/publish/")),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("payload=%7B%22f%22%3A1%7D&room=r1"),
    );
    assert_eq!(
        (a.status, a.json()["payload"].clone()),
        (201, json!({"f": 1}))
    );
    let a = call(
        "POST",
        &shim.url("shapes/publish/"),
        &[("Content-Type", "application/json")],
        Some(&json!({"_api_key": ADMIN_KEY, "room": "r1", "payload": {}}).to_string()),
    );
    assert_eq!(a.status, 201, "{}", a.body);
}

#[test]
fn user_keys_and_permissions_apply_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    create(
        &shim,
        json!({"name": "feed", "other_permissions": "subscribe", "custom_publish": true}),
    );
    let mut c = shim.binary();
    let api = c.admin(&json!({"op": "key.create"})).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let user = c
        .admin(&json!({"op": "user.create", "username": "ada"}))
        .unwrap();
    let ukey = user["user_key"].as_str().unwrap().to_string();
    shim.admin("POST", "feed/publish/", Some(json!({"payload": {"x": 1}})));
    let h = [
        ("X-API-KEY", api.as_str()),
        ("X-USER-KEY", ukey.as_str()),
        ("Content-Type", "application/json"),
    ];
    assert_eq!(
        call("GET", &shim.url("feed/poll/?last_id=0"), &h, None).status,
        200
    );
    assert_eq!(
        call("GET", &shim.url("feed/history/1/"), &h, None).status,
        200
    );
    let a = call("POST", &shim.url("feed/publish/"), &h, Some("{}"));
    assert_eq!(a.status, 403, "subscribe does not allow publish");
    // Without the user key nothing is readable; listing shows only readable channels.
    let no_user = [("X-API-KEY", api.as_str())];
    assert_eq!(
        call("GET", &shim.url("feed/poll/?last_id=0"), &no_user, None).status,
        403
    );
    let listed: Vec<Value> = call("GET", &shim.base, &h, None).json()["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(listed, vec![json!("default"), json!("feed")]);
    // The author of a user's publish names the API key and the user.
    c.channel_update("feed", &json!({"other_permissions": "publish"}))
        .unwrap();
    let a = call(
        "POST",
        &shim.url("feed/publish/"),
        &h,
        Some(&json!({"payload": {}}).to_string()),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(
        a.json()["author"],
        json!({"api_key": 1, "user": user["id"]})
    );
}

// ----- history paging ------------------------------------------------------------------

#[test]
fn history_pages_forwards_and_backwards_through_a_room_following_links() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    create(
        &shim,
        json!({"name": "talk", "type": "separate_rooms", "custom_publish": true}),
    );
    let mut c = shim.binary();
    let mut ids_a = Vec::new();
    for i in 0..250u32 {
        let room = if i % 3 == 0 { "b" } else { "a" };
        let id = c
            .publish(
                "talk",
                &OutgoingMessage::json(&format!("{{\"i\":{i}}}")).room(room),
                AckMode::Durable,
            )
            .unwrap();
        if room == "a" {
            ids_a.push(id);
        }
    }
    let host = format!("http://{}", shim.server.http);
    // Forwards, newest first, 30 per page.
    let mut url = format!("{}talk/history/?room=a&page_size=30", shim.base);
    let mut seen: Vec<u64> = Vec::new();
    let mut pages = Vec::new();
    loop {
        let a = call("GET", &url, &[("X-API-KEY", ADMIN_KEY)], None);
        assert_eq!(a.status, 200, "{url}: {}", a.body);
        let v = a.json();
        let ids: Vec<u64> = v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_u64().unwrap())
            .collect();
        assert!(ids.len() <= 30);
        for o in v["objects"].as_array().unwrap() {
            assert_eq!(
                o["links"]["self"],
                format!("/v1.1/instances/default/channels/talk/history/{}/", o["id"])
            );
        }
        seen.extend(&ids);
        pages.push((url.clone(), v["prev"].clone()));
        match v["next"].as_str() {
            Some(next) => {
                assert!(next.contains("room=a"), "links keep the room: {next}");
                url = format!("{host}{next}");
            }
            None => break,
        }
    }
    let mut want = ids_a.clone();
    want.reverse();
    assert_eq!(seen, want, "every message of the room once, newest first");
    // Backwards from the last page following prev.
    let (_, mut prev) = pages.last().cloned().unwrap();
    let mut back = Vec::new();
    while let Some(p) = prev.as_str() {
        let a = call(
            "GET",
            &format!("{host}{p}"),
            &[("X-API-KEY", ADMIN_KEY)],
            None,
        );
        let v = a.json();
        let ids: Vec<u64> = v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_u64().unwrap())
            .collect();
        back.splice(0..0, ids);
        prev = v["prev"].clone();
    }
    let last_page_len = want.len() % 30;
    let expect_back = &want[..want.len()
        - if last_page_len == 0 {
            30
        } else {
            last_page_len
        }];
    assert_eq!(back, expect_back, "prev pages walk back to the first page");
    // Ascending with last_id: only newer ids, oldest first; links keep last_id.
    let cut = ids_a[100];
    let a = shim.admin(
        "GET",
        &format!("talk/history/?room=a&ordering=asc&page_size=10&last_id={cut}"),
        None,
    );
    let v = a.json();
    let ids: Vec<u64> = v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, ids_a[101..111].to_vec());
    assert!(v["next"]
        .as_str()
        .unwrap()
        .contains(&format!("last_id={cut}")));
    // A message of another room or channel is not found by id in this one.
    let a = shim.admin("GET", &format!("talk/history/{}/", ids_a[0]), None);
    assert_eq!(a.status, 200);
    assert_eq!(shim.admin("GET", "talk/history/9999/", None).status, 404);
}

// ----- raw sockets: malformed input, keep-alive, CORS -----------------------------------

#[test]
fn malformed_requests_get_an_error_and_a_close_and_nothing_else_is_affected() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    create(&shim, json!({"name": "safe", "custom_publish": true}));
    // A parked poll on another connection survives all of it.
    let url = shim.url("safe/poll/");
    let waiter = std::thread::spawn(move || call("GET", &url, &[("X-API-KEY", ADMIN_KEY)], None));
    shim.wait_parked(1);
    let http = shim.server.http.clone();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), "HTTP/1.1 400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n".to_vec(), "HTTP/1.1 400"),
        (
            b"POST /v1.1/instances/default/channels/safe/publish/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(),
            "HTTP/1.1 501",
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(17_000)).into_bytes(),
            "HTTP/1.1 431",
        ),
        (
            b"POST /v1.1/instances/default/channels/safe/publish/ HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n".to_vec(),
            "HTTP/1.1 413",
        ),
        (
            // Not a framing error: nesting too deep is a 400 for this request.
            format!("POST /v1.1/instances/default/channels/safe/publish/ HTTP/1.1\r\nHost: x\r\nX-API-KEY: {ADMIN_KEY}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 400\r\n\r\n{}{}", "[".repeat(200), "]".repeat(200)).into_bytes(),
            "HTTP/1.1 400",
        ),
    ];
    for (request, status) in cases {
        let out = raw(&http, &request);
        assert!(out.starts_with(status), "{status}: {out}");
        assert!(
            out.contains("Connection: close")
                || out.starts_with("HTTP/1.1 400") && out.contains("detail"),
            "{out}"
        );
    }
    let a = shim.admin(
        "POST",
        "safe/publish/",
        Some(json!({"payload": {"ok": true}})),
    );
    assert_eq!(a.status, 201);
    let a = waiter.join().unwrap();
    assert_eq!(
        (a.status, a.json()["payload"].clone()),
        (200, json!({"ok": true}))
    );
    assert_eq!(
        shim.admin("GET", "safe/history/", None).json()["objects"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "nothing malformed was stored"
    );
}

#[test]
fn keep_alive_answers_pipelined_requests_in_order_and_cors_preflight_works() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    create(&shim, json!({"name": "pipe", "custom_publish": true}));
    let body = r#"{"payload":{"k":1}}"#;
    let publish = format!("POST /v1.1/instances/default/channels/pipe/publish/ HTTP/1.1\r\nHost: x\r\nX-API-KEY: {ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let history = format!("GET /v1.1/instances/default/channels/pipe/history/ HTTP/1.1\r\nHost: x\r\nX-API-KEY: {ADMIN_KEY}\r\nConnection: close\r\n\r\n");
    let out = raw(
        &shim.server.http,
        format!("{publish}{publish}{history}").as_bytes(),
    );
    let starts: Vec<&str> = out
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &out[i..i + 12])
        .collect();
    assert_eq!(
        starts,
        vec!["HTTP/1.1 201", "HTTP/1.1 201", "HTTP/1.1 200"],
        "{out}"
    );
    let first = out.find("\"id\":1").unwrap();
    let second = out.find("\"id\":2").unwrap();
    assert!(first < second);
    assert!(
        out.ends_with("]}"),
        "the history page comes last and holds both: {out}"
    );
    let out = raw(&shim.server.http, b"OPTIONS /v1.1/instances/default/channels/pipe/poll/ HTTP/1.1\r\nHost: x\r\nOrigin: http://app.example\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: x-api-key, x-user-key\r\nConnection: close\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 204"), "{out}");
    assert!(out.contains("Access-Control-Allow-Origin: *"), "{out}");
    assert!(
        out.contains("Access-Control-Allow-Headers: x-api-key, x-user-key"),
        "{out}"
    );
    assert!(out.contains("Access-Control-Allow-Methods:"), "{out}");
    let a = shim.admin("GET", "pipe/history/", None);
    assert_eq!(a.status, 200);
}

#[test]
fn channels_are_created_updated_and_deleted_over_http_with_syncano_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    let a = shim.admin("POST", "", Some(json!({"name": "ops"})));
    assert_eq!(a.status, 201);
    let v = a.json();
    assert_eq!(v["custom_publish"], false, "Syncano's default");
    assert_eq!(v["type"], "default");
    for link in ["self", "poll", "publish", "history"] {
        assert!(v["links"][link]
            .as_str()
            .unwrap()
            .starts_with("/v1.1/instances/default/channels/ops/"));
    }
    let a = shim.admin("POST", "", Some(json!({"name": "ops"})));
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.json().get("name").is_some());
    assert_eq!(shim.admin("GET", "ops/", None).json()["name"], "ops");
    let a = shim.admin(
        "PATCH",
        "ops/",
        Some(json!({"other_permissions": "subscribe"})),
    );
    assert_eq!(a.json()["other_permissions"], "subscribe");
    assert_eq!(shim.admin("DELETE", "ops/", None).status, 204);
    assert_eq!(shim.admin("GET", "ops/", None).status, 404);
    assert_eq!(shim.admin("DELETE", "eventlog/", None).status, 403);
    // A user key may not administer channels.
    let mut c = shim.binary();
    let api = c
        .admin(&json!({"op": "key.create", "ignore_acl": true}))
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let a = call(
        "POST",
        &shim.base,
        &[("X-API-KEY", &api), ("Content-Type", "application/json")],
        Some(r#"{"name":"x"}"#),
    );
    assert_eq!(a.status, 403);
    let _ = ConnectOptions::new("", "");
}
