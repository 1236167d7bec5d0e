//! The Channelstream server API on the HTTP listener: signatures and the
//! address list, connect / subscribe / unsubscribe / user_state /
//! channel_config / info / disconnect with Channelstream 0.7.1's answers
//! and validation errors.

mod common;

use serde_json::{json, Value};

use common::http::{call, Answer};
use common::TestServer;
use tidewire::channelstream::sign;
use tidewire::clock::Clock;

const SECRET: &str = "s3cret";

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Cs {
    _server: TestServer,
    base: String,
}

impl Cs {
    fn start(dir: &std::path::Path) -> Cs {
        let server = TestServer::start_http(dir, |c| {
            tidewire::config::set_channelstream(c, Some(SECRET), None, None);
        });
        let base = format!("http://{}", server.http);
        Cs {
            _server: server,
            base,
        }
    }

    fn signed(&self, method: &str, path: &str, body: Value) -> Answer {
        let token = sign::sign(SECRET, "channelstream", now_secs());
        let body = body.to_string();
        call(
            method,
            &format!("{}{path}", self.base),
            &[
                ("x-channelstream-secret", &token),
                ("Content-Type", "application/json"),
            ],
            Some(&body),
        )
    }

    fn ok(&self, path: &str, body: Value) -> Value {
        let a = self.signed("POST", path, body);
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        a.json()
    }
}

#[test]
fn signatures_and_addresses_are_checked_as_channelstream_checks_them() {
    let dir = tempfile::tempdir().unwrap();
    let cs = Cs::start(dir.path());
    let url = format!("{}/connect", cs.base);
    let body = json!({"username": "a"}).to_string();
    let post = |headers: &[(&str, &str)]| call("POST", &url, headers, Some(&body));
    assert_eq!(post(&[]).status, 403);
    assert_eq!(post(&[("x-channelstream-secret", "")]).status, 403);
    let bad = post(&[("x-channelstream-secret", "channelstream.X14QAA.nope")]);
    assert_eq!(
        (bad.status, bad.json()),
        (401, json!({"request": "Bad Signature"}))
    );
    assert!(
        bad.body.contains("\n    \"request\""),
        "indented by four: {}",
        bad.body
    );
    let old = sign::sign(SECRET, "channelstream", now_secs() - 61);
    assert_eq!(post(&[("x-channelstream-secret", &old)]).status, 401);
    let other = sign::sign("other", "channelstream", now_secs());
    assert_eq!(post(&[("x-channelstream-secret", &other)]).status, 401);
    // Any signed value, in the header or as `?secret=`.
    let path_signed = sign::sign(SECRET, "/connect", now_secs());
    assert_eq!(
        post(&[("x-channelstream-secret", &path_signed)]).status,
        200
    );
    let q = call(
        "POST",
        &format!("{url}?secret={path_signed}"),
        &[],
        Some(&body),
    );
    assert_eq!(q.status, 200, "{}", q.body);
    // Wrong method and trailing slash: not found.
    assert_eq!(cs.signed("GET", "/connect", json!({})).status, 404);
    assert_eq!(
        cs.signed("POST", "/connect/", json!({"username": "a"}))
            .status,
        404
    );
    let pre = call("OPTIONS", &url, &[], None);
    assert_eq!(pre.status, 200);
}

#[test]
fn peers_off_the_address_list_are_refused_and_the_api_is_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_http(dir.path(), |c| {
        tidewire::config::set_channelstream(c, Some(SECRET), None, Some(&["10.9.8.7".to_string()]));
    });
    let token = sign::sign(SECRET, "channelstream", now_secs());
    let a = call(
        "POST",
        &format!("http://{}/connect", server.http),
        &[("x-channelstream-secret", &token)],
        Some(r#"{"username": "a"}"#),
    );
    assert_eq!(a.status, 403);
    let dir2 = tempfile::tempdir().unwrap();
    let off = TestServer::start_http(dir2.path(), |_| {});
    let a = call(
        "POST",
        &format!("http://{}/connect", off.http),
        &[("x-channelstream-secret", &token)],
        Some(r#"{"username": "a"}"#),
    );
    assert_eq!(a.status, 404);
}

#[test]
fn connections_users_channels_and_their_answers() {
    let dir = tempfile::tempdir().unwrap();
    let cs = Cs::start(dir.path());
    let alice = cs.ok(
        "/connect",
        json!({
            "username": "alice",
            "channels": ["b", "a"],
            "channel_configs": {"a": {"notify_presence": true, "history_size": 5}},
            "user_state": {"x": 1, "y": "p"},
            "state_public_keys": ["x"],
        }),
    );
    assert_eq!(alice["username"], "alice");
    assert_eq!(alice["channels"], json!(["a", "b"]));
    assert_eq!(alice["state"], json!({"x": 1, "y": "p"}));
    assert_eq!(alice["public_state"], json!({"x": 1}));
    let a_info = &alice["channels_info"]["channels"]["a"];
    assert_eq!(a_info["settings"]["history_size"], 5);
    assert_eq!(a_info["settings"]["notify_presence"], true);
    assert_eq!(a_info["settings"]["store_frames"], true);
    assert_eq!(
        (a_info["users"].clone(), a_info["total_connections"].clone()),
        (json!(["alice"]), json!(1))
    );
    assert_eq!(a_info["long_name"], Value::Null);
    assert_eq!(
        alice["channels_info"]["users"],
        json!([{"user": "alice", "state": {"x": 1, "y": "p"}}])
    );
    let conn_a = alice["conn_id"].as_str().unwrap().to_string();
    assert_eq!(conn_a.len(), 36);

    let bob_id = "0646b957-e427-4f92-bb5b-bba32f0b2561";
    let bob = cs.ok(
        "/connect",
        json!({"username": "bob", "conn_id": bob_id, "channels": ["a"]}),
    );
    assert_eq!(bob["conn_id"], bob_id);
    let info = cs.ok("/info", json!({"info": {"include_history": false}}));
    assert_eq!(info["channels"]["a"]["users"], json!(["alice", "bob"]));
    assert_eq!(info["channels"]["a"]["total_connections"], 2);
    let sub = cs.ok(
        "/subscribe",
        json!({"conn_id": bob_id, "channels": ["c", "a"]}),
    );
    assert_eq!(
        (sub["channels"].clone(), sub["subscribed_to"].clone()),
        (json!(["a", "c"]), json!(["c"]))
    );
    let unsub = cs.ok(
        "/unsubscribe",
        json!({"conn_id": bob_id, "channels": ["a", "nope"]}),
    );
    assert_eq!(
        (
            unsub["channels"].clone(),
            unsub["unsubscribed_from"].clone()
        ),
        (json!(["c"]), json!(["a"]))
    );

    let st = cs.ok(
        "/user_state",
        json!({"user": "alice", "user_state": {"x": 2, "z": 3, "y": "p"}}),
    );
    assert_eq!(st["user_state"], json!({"x": 2, "y": "p", "z": 3}));
    assert_eq!(st["public_keys"], json!(["x"]));
    let changed: Vec<String> = st["changed_state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(changed, vec!["x", "z"]);

    // A partial config resets the other keys to their defaults, as in 0.7.1.
    let cfg = cs.ok(
        "/channel_config",
        json!({"a": {"notify_state": true}, "new": {}}),
    );
    assert_eq!(cfg["channels"]["a"]["settings"]["history_size"], 10);
    assert_eq!(cfg["channels"]["a"]["settings"]["notify_state"], true);
    assert_eq!(cfg["channels"]["a"]["users"], json!([]));
    assert_eq!(cfg["channels"]["new"]["settings"]["notify_presence"], false);
    assert_eq!(cfg["users"], json!([]));

    // Validation errors, as marshmallow words them.
    let err = |path: &str, body: Value| {
        let a = cs.signed("POST", path, body);
        assert_eq!(a.status, 422, "{path}: {}", a.body);
        a.json()
    };
    assert_eq!(
        err("/connect", json!({})),
        json!({"username": ["Missing data for required field."]})
    );
    assert_eq!(
        err(
            "/connect",
            json!({"username": "u", "conn_id": "x", "channels": [""]})
        ),
        json!({"conn_id": ["Not a valid UUID."], "channels": {"0": ["Length must be between 1 and 256."]}})
    );
    assert_eq!(
        err(
            "/subscribe",
            json!({"conn_id": "0646b957-e427-4f92-bb5b-000000000000", "channels": ["a"]})
        ),
        json!({"conn_id": ["Unknown connection"]})
    );
    assert_eq!(
        err("/subscribe", json!({"conn_id": bob_id, "channels": []})),
        json!({"channels": ["Shorter than minimum length 1."]})
    );
    assert_eq!(
        err("/user_state", json!({"user": "zed"})),
        json!({"user": ["Unknown user"]})
    );
    assert_eq!(
        err("/channel_config", json!({"a": {"history_size": -1}})),
        json!({"history_size": ["Must be at least 0."]})
    );
    assert_eq!(
        err("/connect", json!([1])),
        json!({"_schema": ["Invalid input type."]})
    );
    let token = sign::sign(SECRET, "channelstream", now_secs());
    let broken = call(
        "POST",
        &format!("{}/connect", cs.base),
        &[("x-channelstream-secret", &token)],
        Some("{nope"),
    );
    assert_eq!(broken.status, 500);

    // Disconnect: unsigned, any method; true once, then false.
    let d = call(
        "GET",
        &format!("{}/disconnect?conn_id={bob_id}", cs.base),
        &[],
        None,
    );
    assert_eq!((d.status, d.json()), (200, json!(true)));
    let d = call(
        "GET",
        &format!("{}/disconnect?conn_id={bob_id}", cs.base),
        &[],
        None,
    );
    assert_eq!(d.json(), json!(false));
    let d = call(
        "POST",
        &format!("{}/disconnect", cs.base),
        &[],
        Some(r#"{"conn_id": "bad"}"#),
    );
    assert_eq!(
        (d.status, d.json()),
        (422, json!({"conn_id": ["Not a valid UUID."]}))
    );
    let info = cs.signed("GET", "/info", json!({}));
    assert_eq!(info.status, 422, "{}", info.body);
    let all = call(
        "GET",
        &format!("{}/info", cs.base),
        &[("x-channelstream-secret", &token)],
        None,
    );
    assert_eq!(all.status, 200, "{}", all.body);
    let all = all.json();
    assert_eq!(
        all["channels"]["c"]["users"],
        json!([]),
        "bob left with his connection"
    );
    let names: Vec<&String> = all["channels"].as_object().unwrap().keys().collect();
    assert_eq!(names, vec!["a", "b", "c", "new"]);
}

#[test]
fn messages_edits_and_deletions_go_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let cs = Cs::start(dir.path());
    let mut admin = tidewire::client::Client::connect(&cs._server.addr, common::ADMIN_KEY).unwrap();
    cs.ok(
        "/connect",
        json!({"username": "alice", "channels": ["room", "Chat Room"]}),
    );
    let sent = cs.ok(
        "/message",
        json!([
            {"user": "alice", "channel": "room", "message": {"t": "hi"}, "extra": 1},
            {"user": "nobody"},
            {"user": "bob", "channel": "nochannel", "message": {}},
            {"user": "alice", "channel": "Chat Room", "message": {"t": "spaced"}},
            {"user": "alice", "channel": "room", "message": {"t": "typing"}, "no_history": true},
            {"user": "sys", "pm_users": ["alice"], "message": {"n": 1}},
        ]),
    );
    let sent = sent.as_array().unwrap();
    assert_eq!(
        sent.len(),
        5,
        "the item without channel or users is dropped"
    );
    assert_eq!(sent[0]["message"], json!({"t": "hi"}));
    assert_eq!(sent[0]["edited"], Value::Null);
    assert!(sent[0].get("extra").is_none());
    let uuid = sent[0]["uuid"].as_str().unwrap().to_string();

    let q = tidewire::client::HistoryQuery {
        newest_first: false,
        ..Default::default()
    };
    let hist = admin.history("room", &q).unwrap();
    assert_eq!(hist.len(), 1, "the live-only message is not stored");
    let m = &hist[0];
    assert_eq!(
        m.uuid.map(|u| tidewire::client::format_uuid(&u)),
        Some(uuid.clone())
    );
    let payload: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(payload["user"], "alice");
    assert_eq!(payload["message"], json!({"t": "hi"}));
    assert_eq!(payload["timestamp"], sent[0]["timestamp"]);
    let hashed = tidewire::channelstream::tidewire_channel("Chat Room");
    assert!(hashed.starts_with("cs-") && hashed.len() == 43, "{hashed}");
    assert_eq!(admin.history(&hashed, &q).unwrap().len(), 1);
    assert!(
        code_of(admin.history("nochannel", &q)).is_some(),
        "no channel made for it"
    );

    let edited = cs.signed(
        "PATCH",
        "/message",
        json!([{"uuid": uuid, "channel": "room", "message": {"t": "edited"}}]),
    );
    assert_eq!(edited.status, 200, "{}", edited.body);
    assert_eq!(edited.json()[0]["message"], json!({"t": "edited"}));
    let now = admin.history("room", &q).unwrap();
    let payload: Value = serde_json::from_slice(&now[0].payload).unwrap();
    assert_eq!(payload["message"], json!({"t": "edited"}));
    assert!(payload["edited"].is_string());
    // An unknown uuid is answered alike (Channelstream does not check).
    let unknown = cs.signed(
        "DELETE",
        "/message",
        json!([{"uuid": "0646b957-e427-4f92-bb5b-bba32f0b2561", "channel": "room"}]),
    );
    assert_eq!(unknown.status, 200, "{}", unknown.body);
    let deleted = cs.signed(
        "DELETE",
        "/message",
        json!([{"uuid": uuid, "channel": "room"}]),
    );
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(
        deleted.json(),
        json!([{"pm_users": [], "exclude_users": [], "channel": "room", "no_history": false, "uuid": uuid}])
    );
    assert!(admin.history("room", &q).unwrap().is_empty());
    let raw = tidewire::client::HistoryQuery { raw: true, ..q };
    assert_eq!(
        admin.history("room", &raw).unwrap().len(),
        3,
        "message, edit, deletion"
    );
    let bad = cs.signed("POST", "/message", json!({"user": "a"}));
    assert_eq!(
        (bad.status, bad.json()),
        (422, json!({"_schema": ["Invalid input type."]}))
    );
    assert_eq!(cs.signed("PUT", "/message", json!([])).status, 404);
}

fn code_of<T>(r: Result<T, tidewire::client::ClientError>) -> Option<tidewire::wire::ErrorCode> {
    r.err().and_then(|e| e.code())
}

#[test]
fn listen_sends_what_happened_since_the_last_read_and_waits_for_more() {
    let dir = tempfile::tempdir().unwrap();
    let cs = Cs::start(dir.path());
    let alice = cs.ok(
        "/connect",
        json!({"username": "alice", "channels": ["room"],
               "channel_configs": {"room": {"notify_presence": true}}}),
    );
    let conn = alice["conn_id"].as_str().unwrap().to_string();
    let bob = cs.ok("/connect", json!({"username": "bob", "channels": ["room"]}));
    let bob_conn = bob["conn_id"].as_str().unwrap().to_string();
    cs.ok(
        "/message",
        json!([
            {"user": "bob", "channel": "room", "message": {"t": "hi"}},
            {"user": "bob", "channel": "room", "message": {"t": "not for alice"}, "exclude_users": ["alice"]},
            {"user": "sys", "pm_users": ["alice"], "message": {"n": 1}},
        ]),
    );
    let listen = |extra: &str| {
        call(
            "GET",
            &format!("{}/listen?conn_id={conn}{extra}", cs.base),
            &[],
            None,
        )
    };
    // What happened since /connect: a replay, in channel order, the user's
    // own messages last.
    let first = listen("");
    assert_eq!(first.status, 200, "{}", first.body);
    let events = first.json();
    let kinds: Vec<(String, Value)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["catchup"].clone(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("presence".into(), json!(true)),
            ("message".into(), json!(true)),
            ("message".into(), json!(true)),
        ]
    );
    assert_eq!(events[0]["user"], "bob");
    assert_eq!(events[0]["message"], json!({"action": "joined"}));
    assert_eq!(events[1]["message"], json!({"t": "hi"}));
    assert_eq!(events[1]["channel"], "room");
    assert_eq!(events[2]["channel"], Value::Null);
    assert_eq!(events[2]["message"], json!({"n": 1}));
    let uuid = events[1]["uuid"].as_str().unwrap().to_string();

    // Nothing new: the poll waits, and a message sent meanwhile answers it.
    std::thread::scope(|s| {
        let waiting = s.spawn(|| listen(""));
        std::thread::sleep(std::time::Duration::from_millis(300));
        cs.ok(
            "/message",
            json!([{"user": "bob", "channel": "room", "message": {"t": "live"}}]),
        );
        let got = waiting.join().unwrap();
        assert_eq!(got.status, 200, "{}", got.body);
        let got = got.json();
        assert_eq!(got[0]["message"], json!({"t": "live"}));
        assert_eq!(got[0]["catchup"], false);
    });
    // A no_history message reaches the waiting poll, and is never stored.
    std::thread::scope(|s| {
        let waiting = s.spawn(|| listen(""));
        std::thread::sleep(std::time::Duration::from_millis(300));
        cs.ok(
            "/message",
            json!([{"user": "bob", "channel": "room", "message": {"t": "typing"}, "no_history": true}]),
        );
        let got = waiting.join().unwrap().json();
        assert_eq!(
            (got[0]["message"].clone(), got[0]["type"].clone()),
            (json!({"t": "typing"}), json!("message"))
        );
    });
    let edit = cs.signed(
        "PATCH",
        "/message",
        json!([{"uuid": uuid, "channel": "room", "message": {"t": "edited"}}]),
    );
    assert_eq!(edit.status, 200);
    let got = listen("&callback=cb");
    assert!(
        got.body.starts_with("cb(") && got.body.ends_with(')'),
        "{}",
        got.body
    );
    let inner: Value = serde_json::from_str(&got.body[3..got.body.len() - 1]).unwrap();
    assert_eq!(inner[0]["type"], "message:edit");
    assert_eq!(inner[0]["uuid"], uuid.as_str());
    assert_eq!(inner[0]["catchup"], true, "it happened between two polls");

    // Bob leaves: alice's next poll tells her.
    let d = call(
        "GET",
        &format!("{}/disconnect?conn_id={bob_conn}", cs.base),
        &[],
        None,
    );
    assert_eq!(d.json(), json!(true));
    let got = listen("").json();
    assert_eq!(
        (got[0]["type"].clone(), got[0]["message"].clone()),
        (json!("presence"), json!({"action": "parted"}))
    );

    // Errors of /listen.
    let q = |q: &str| call("GET", &format!("{}/listen{q}", cs.base), &[], None);
    assert_eq!(q("?conn_id=nope").json(), json!(["Wrong UUID format"]));
    assert_eq!(
        q("?conn_id=0646b957-e427-4f92-bb5b-bba32f0b2561").status,
        401
    );
    assert_eq!(q("").status, 500);
}

#[test]
fn info_shows_the_latest_messages_of_channels_that_store_history() {
    let dir = tempfile::tempdir().unwrap();
    let cs = Cs::start(dir.path());
    cs.ok(
        "/connect",
        json!({"username": "u", "channels": ["hist", "plain"],
               "channel_configs": {"hist": {"store_history": true, "history_size": 2}}}),
    );
    let sent = cs.ok(
        "/message",
        json!([
            {"user": "u", "channel": "hist", "message": {"n": 1}},
            {"user": "u", "channel": "hist", "message": {"n": 2}, "pm_users": ["u"]},
            {"user": "u", "channel": "hist", "message": {"n": 3}},
            {"user": "u", "channel": "plain", "message": {"n": 4}},
        ]),
    );
    let second = sent[1]["uuid"].as_str().unwrap().to_string();
    let e = cs.signed(
        "PATCH",
        "/message",
        json!([{"uuid": second, "channel": "hist", "message": {"n": 22}, "user": "editor"}]),
    );
    assert_eq!(e.status, 200);
    let info = cs.ok("/info", json!({"info": {"channels": ["hist", "plain"]}}));
    let hist = info["channels"]["hist"]["history"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(hist.len(), 2, "history_size 2: {hist:?}");
    assert_eq!(hist[0]["message"], json!({"n": 22}));
    assert_eq!(hist[0]["user"], "editor");
    assert_eq!(
        hist[0]["timestamp"], sent[1]["timestamp"],
        "kept from the message"
    );
    assert!(hist[0]["edited"].is_string());
    assert_eq!(hist[0]["pm_users"], json!(["u"]));
    assert_eq!(hist[0]["uuid"], second.as_str());
    assert_eq!(
        (hist[1]["message"].clone(), hist[1]["edited"].clone()),
        (json!({"n": 3}), Value::Null)
    );
    assert_eq!(
        info["channels"]["plain"]["history"],
        json!([]),
        "store_history off"
    );
}

#[test]
fn channels_their_configurations_and_messages_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cs = Cs::start(dir.path());
    cs.ok(
        "/connect",
        json!({"username": "u", "channels": ["kept"],
               "channel_configs": {"kept": {"store_history": true, "notify_state": true}}}),
    );
    cs.ok(
        "/message",
        json!([{"user": "u", "channel": "kept", "message": {"n": 1}}]),
    );
    let before = cs.ok("/info", json!({"info": {"channels": ["kept"]}}));
    drop(cs);
    let cs = Cs::start(dir.path());
    let after = cs.ok("/info", json!({"info": {"channels": ["kept"]}}));
    let (b, a) = (&before["channels"]["kept"], &after["channels"]["kept"]);
    assert_eq!(a["settings"], b["settings"]);
    assert_eq!(a["uuid"], b["uuid"]);
    assert_eq!(a["history"], b["history"]);
    assert_eq!(a["history"][0]["message"], json!({"n": 1}));
    assert_eq!(
        a["users"],
        json!([]),
        "presence comes back with the clients"
    );
}

#[test]
fn idle_connections_are_collected_and_part_without_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, shared) = common::manual_clock();
    let server = TestServer::start_http(dir.path(), |c| {
        c.clock = shared.clone();
        tidewire::config::set_channelstream(c, Some(SECRET), None, None);
    });
    let base = format!("http://{}", server.http);
    let post = |path: &str, body: Value| {
        let token = sign::sign(SECRET, "channelstream", clock.now_us() / 1_000_000);
        let a = call(
            "POST",
            &format!("{base}{path}"),
            &[("x-channelstream-secret", &token)],
            Some(&body.to_string()),
        );
        assert_eq!(a.status, 200, "{}", a.body);
        a.json()
    };
    post(
        "/connect",
        json!({"username": "a", "channels": ["room"], "channel_configs": {"room": {"notify_presence": true}}}),
    );
    let mut admin = tidewire::client::Client::connect(&server.addr, common::ADMIN_KEY).unwrap();
    let presences = |admin: &mut tidewire::client::Client| -> Vec<Value> {
        let q = tidewire::client::HistoryQuery {
            newest_first: false,
            ..Default::default()
        };
        admin
            .history("room", &q)
            .unwrap()
            .iter()
            .filter_map(|m| serde_json::from_slice::<Value>(&m.payload).ok())
            .filter(|p| p["type"] == "presence")
            .map(|p| p["message"]["action"].clone())
            .collect()
    };
    clock.advance_us(16_000_000);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while presences(&mut admin) != vec![json!("joined"), json!("parted")] {
        assert!(
            std::time::Instant::now() < until,
            "never collected: {:?}",
            presences(&mut admin)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn limits_are_refused_as_validation_errors_and_nothing_else_changes() {
    let dir = tempfile::tempdir().unwrap();
    let cs = Cs::start(dir.path());
    let big = "x".repeat(tidewire::limits::CS_STATE_BYTES_MAX);
    let a = cs.signed(
        "POST",
        "/connect",
        json!({"username": "u", "user_state": {"k": big}}),
    );
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.json()["user_state"][0]
        .as_str()
        .unwrap()
        .starts_with("State is over"));
    let many: Vec<String> = (0..=tidewire::limits::CS_CHANNELS_PER_CONNECTION_MAX)
        .map(|i| format!("c{i}"))
        .collect();
    let a = cs.signed(
        "POST",
        "/connect",
        json!({"username": "u", "channels": many}),
    );
    assert_eq!(a.status, 422, "{}", a.body);
    let ok = cs.ok("/connect", json!({"username": "u", "user_state": {"k": 1}}));
    let a = cs.signed(
        "POST",
        "/user_state",
        json!({"user": "u", "user_state": {"k": big}}),
    );
    assert_eq!(a.status, 422);
    let a = cs.signed(
        "POST",
        "/subscribe",
        json!({"conn_id": ok["conn_id"], "channels": (0..=tidewire::limits::CS_CHANNELS_PER_CONNECTION_MAX).map(|i| format!("c{i}")).collect::<Vec<_>>()}),
    );
    assert_eq!(a.status, 422, "{}", a.body);
    let info = cs.ok("/info", json!({"info": {}}));
    assert_eq!(info["channels"], json!({}), "nothing was made");
    assert_eq!(info["users"], json!([]));
}

#[test]
fn presence_is_readable_over_the_binary_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let cs = Cs::start(dir.path());
    cs.ok(
        "/connect",
        json!({"username": "ann", "channels": ["lobby"], "user_state": {"mood": "ok", "secret": 1},
               "state_public_keys": ["mood"]}),
    );
    cs.ok(
        "/connect",
        json!({"username": "ben", "channels": ["lobby"]}),
    );
    let mut admin = tidewire::client::Client::connect(&cs._server.addr, common::ADMIN_KEY).unwrap();
    let p = admin
        .admin(&json!({"op": "channelstream.info", "channels": ["lobby"]}))
        .unwrap();
    assert_eq!(p["channels"]["lobby"]["users"], json!(["ann", "ben"]));
    assert_eq!(p["channels"]["lobby"]["total_connections"], 2);
    let ann = p["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == "ann")
        .unwrap()
        .clone();
    assert_eq!(ann["state"], json!({"mood": "ok"}), "public state only");
    assert!(admin
        .admin(&json!({"op": "channelstream.info", "channels": "lobby"}))
        .is_err());
}

#[test]
fn websocket_clients_get_events_as_frames_and_keep_their_connection() {
    use tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let cs = Cs::start(dir.path());
    let alice = cs.ok(
        "/connect",
        json!({"username": "alice", "channels": ["room"], "channel_configs": {"room": {"notify_presence": true}}}),
    );
    let conn = alice["conn_id"].as_str().unwrap().to_string();
    cs.ok(
        "/message",
        json!([{"user": "bob", "channel": "room", "message": {"t": "before"}}]),
    );
    let addr = cs.base.trim_start_matches("http://").to_string();
    let stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let (mut ws, resp) =
        tungstenite::client::client(format!("ws://{addr}/ws?conn_id={conn}"), stream).unwrap();
    assert_eq!(resp.status(), 101);
    let next = |ws: &mut tungstenite::WebSocket<std::net::TcpStream>| -> Value {
        loop {
            match ws.read().unwrap() {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    // The catch-up: one event per frame, each a list of one.
    let first = next(&mut ws);
    assert_eq!(first.as_array().unwrap().len(), 1);
    assert_eq!(
        (first[0]["message"].clone(), first[0]["catchup"].clone()),
        (json!({"t": "before"}), json!(true))
    );
    // Live events, and the client's pings answered.
    cs.ok(
        "/message",
        json!([{"user": "bob", "channel": "room", "message": {"t": "live"}}]),
    );
    let live = next(&mut ws);
    assert_eq!(
        (live[0]["message"].clone(), live[0]["catchup"].clone()),
        (json!({"t": "live"}), json!(false))
    );
    ws.send(Message::Ping(b"hi".to_vec().into())).unwrap();
    ws.send(Message::Text(r#"{"type":"heartbeat"}"#.into()))
        .unwrap();
    loop {
        match ws.read().unwrap() {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"hi");
                break;
            }
            Message::Text(t) if t.as_str() == "[]" => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    // A message in fragments is only activity; the socket goes on.
    use tungstenite::protocol::frame::{
        coding::{Data, OpCode},
        Frame,
    };
    ws.write(Message::Frame(Frame::message(
        b"{\"type\":".to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .unwrap();
    ws.write(Message::Frame(Frame::message(
        b"\"heartbeat\"}".to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .unwrap();
    ws.flush().unwrap();
    cs.ok(
        "/message",
        json!([{"user": "bob", "channel": "room", "message": {"t": "after"}}]),
    );
    let after = loop {
        let v = next(&mut ws);
        if v != json!([]) {
            break v;
        }
    };
    assert_eq!(after[0]["message"], json!({"t": "after"}));
    // A frame over the limit closes the socket with 1009.
    ws.send(Message::Binary(
        vec![0u8; (tidewire::limits::CS_WS_FRAME_MAX + 1) as usize].into(),
    ))
    .unwrap();
    let closed = loop {
        match ws.read() {
            Ok(Message::Close(c)) => break c,
            Ok(_) => continue,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(closed.map(|c| u16::from(c.code)), Some(1009));
    // The socket's end ends the connection, as Channelstream collects it.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let d = call(
            "GET",
            &format!("{}/disconnect?conn_id={conn}", cs.base),
            &[],
            None,
        );
        if d.json() == json!(false) {
            break;
        }
        assert!(std::time::Instant::now() < until);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // An unknown connection's socket is closed at once with 1000.
    let stream = std::net::TcpStream::connect(&addr).unwrap();
    let (mut ws, _) = tungstenite::client::client(
        format!("ws://{addr}/ws?conn_id=0646b957-e427-4f92-bb5b-bba32f0b2561"),
        stream,
    )
    .unwrap();
    match ws.read() {
        Ok(Message::Close(Some(c))) => assert_eq!(u16::from(c.code), 1000),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_websocket_that_reads_slowly_lags_in_the_log_and_misses_nothing() {
    use tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let cs = Cs::start(dir.path());
    let c = cs.ok(
        "/connect",
        json!({"username": "slow", "channels": ["flood"]}),
    );
    let conn = c["conn_id"].as_str().unwrap().to_string();
    let addr = cs.base.trim_start_matches("http://").to_string();
    let stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let (mut ws, _) =
        tungstenite::client::client(format!("ws://{addr}/ws?conn_id={conn}"), stream).unwrap();
    // ~12 MB while the client reads nothing: more than the socket buffers
    // and the connection's write buffer hold.
    let text = "z".repeat(30_000);
    for i in 0..400 {
        cs.ok(
            "/message",
            json!([{"user": "p", "channel": "flood", "message": {"i": i, "t": text}}]),
        );
    }
    let mut got = Vec::new();
    while got.len() < 400 {
        match ws.read().unwrap() {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if let Some(i) = v[0]["message"]["i"].as_u64() {
                    got.push(i);
                }
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, (0..400).collect::<Vec<u64>>(), "every event, in order");
}
