//! The HTTP shim against a real server on the points where the Syncano
//! guide and API reference (the seed documents) say more than the platform's
//! later code: the room of every message, whole-channel history for admins,
//! JSON sent as `text/plain`, user keys that name no user; and channel names
//! in URLs read as on every other path.

mod common;

use serde_json::{json, Value};
use tidewire::client::OutgoingMessage;
use tidewire::wire::AckMode;

use common::http::{call, create, Shim};
use common::ADMIN_KEY;

/// An API key of the default instance with `options` (JSON fields of
/// `key.create`).
fn api_key(shim: &Shim, options: Value) -> String {
    let mut command = json!({"op": "key.create"});
    for (k, v) in options.as_object().unwrap() {
        command[k] = v.clone();
    }
    shim.binary().admin(&command).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string()
}

fn user_key(shim: &Shim, name: &str) -> (u64, String) {
    let u = shim
        .binary()
        .admin(&json!({"op": "user.create", "username": name}))
        .unwrap();
    (
        u["id"].as_u64().unwrap(),
        u["user_key"].as_str().unwrap().to_string(),
    )
}

#[test]
fn every_message_object_carries_its_room() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    create(
        &shim,
        json!({"name": "witchers", "type": "separate_rooms", "custom_publish": true}),
    );
    create(&shim, json!({"name": "plain", "custom_publish": true}));
    // The publish 201 (API reference: "room": "secret-room").
    let a = shim.admin(
        "POST",
        "witchers/publish/",
        Some(json!({"payload": {"message": "Hello Witchers!"}, "room": "Secret-Room"})),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.json()["room"], "secret-room");
    let a = shim.admin("POST", "plain/publish/", Some(json!({"payload": {}})));
    assert_eq!(
        a.json()["room"],
        Value::Null,
        "no room on a default channel"
    );
    // Poll answers and history items (the guide: "room": null).
    let poll = shim.admin("GET", "witchers/poll/?last_id=0&room=secret-room", None);
    assert_eq!(poll.json()["room"], "secret-room");
    let page = shim.admin("GET", "plain/history/", None).json();
    assert_eq!(page["objects"][0]["room"], Value::Null);
    let item = shim.admin("GET", "witchers/history/1/", None).json();
    assert_eq!(item["room"], "secret-room");
    // The key sits after `id`, as in the guide's history example.
    assert!(poll.body.starts_with(r#"{"id":1,"room":"secret-room","#));
}

#[test]
fn admins_and_ignore_acl_keys_read_a_whole_separate_rooms_history_users_name_a_room() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    create(
        &shim,
        json!({"name": "chat", "type": "separate_rooms", "custom_publish": true,
               "other_permissions": "subscribe"}),
    );
    for room in ["a", "b", "a"] {
        shim.binary()
            .publish(
                "chat",
                &OutgoingMessage::json("{}").room(room),
                AckMode::Durable,
            )
            .unwrap();
    }
    let ids = |v: Value| -> Vec<u64> {
        v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_u64().unwrap())
            .collect()
    };
    let a = shim.admin("GET", "chat/history/", None);
    assert_eq!((a.status, ids(a.json())), (200, vec![3, 2, 1]), "admin");
    let ignore_acl = api_key(&shim, json!({"ignore_acl": true}));
    let a = call(
        "GET",
        &shim.url("chat/history/"),
        &[("X-API-KEY", &ignore_acl)],
        None,
    );
    assert_eq!(
        (a.status, ids(a.json())),
        (200, vec![3, 2, 1]),
        "ignore_acl"
    );
    // A named room still narrows the page for them.
    let a = shim.admin("GET", "chat/history/?room=b", None);
    assert_eq!(ids(a.json()), vec![2]);
    // Users must name a room; so must an anonymous-read key.
    let api = api_key(&shim, json!({}));
    let (_, ukey) = user_key(&shim, "ada");
    let user = [("X-API-KEY", api.as_str()), ("X-USER-KEY", ukey.as_str())];
    let a = call("GET", &shim.url("chat/history/"), &user, None);
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(
        a.json(),
        json!({"room": "This field is required for channels with separate rooms."})
    );
    let a = call("GET", &shim.url("chat/history/?room=a"), &user, None);
    assert_eq!(ids(a.json()), vec![3, 1]);
    let anonymous = api_key(&shim, json!({"allow_anonymous_read": true}));
    let a = call(
        "GET",
        &shim.url("chat/history/"),
        &[("X-API-KEY", &anonymous)],
        None,
    );
    assert_eq!(a.status, 400);
    // Polls and publishes still name a room, whoever asks.
    assert_eq!(shim.admin("GET", "chat/poll/?last_id=0", None).status, 400);
}

#[test]
fn json_sent_as_text_plain_is_read_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    create(&shim, json!({"name": "cors", "custom_publish": true}));
    // What a browser sends to avoid a CORS preflight: the key in the body.
    let body = json!({"payload": {"n": 1}, "_api_key": ADMIN_KEY}).to_string();
    let a = call(
        "POST",
        &shim.url("cors/publish/"),
        &[("Content-Type", "text/plain;charset=UTF-8")],
        Some(&body),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.json()["payload"], json!({"n": 1}));
    let a = call(
        "POST",
        &shim.url("cors/publish/"),
        &[("X-API-KEY", ADMIN_KEY), ("Content-Type", "text/plain")],
        Some("not json"),
    );
    assert_eq!(a.status, 400, "text/plain must hold JSON: {}", a.body);
    let a = call(
        "POST",
        &shim.url("cors/publish/"),
        &[("X-API-KEY", ADMIN_KEY), ("Content-Type", "text/html")],
        Some("{}"),
    );
    assert_eq!(a.status, 415);
}

#[test]
fn a_user_key_that_names_no_user_is_ignored_beside_a_valid_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    create(
        &shim,
        json!({"name": "open", "other_permissions": "publish", "custom_publish": true}),
    );
    let anonymous = api_key(&shim, json!({"allow_anonymous_read": true}));
    let (uid, ukey) = user_key(&shim, "gone");
    shim.binary()
        .admin(&json!({"op": "user.delete", "id": uid}))
        .unwrap();
    for user_key in ["0123456789abcdef0123456789abcdef01234567", ukey.as_str()] {
        let h = [
            ("X-API-KEY", anonymous.as_str()),
            ("X-USER-KEY", user_key),
            ("Content-Type", "application/json"),
        ];
        let a = call("GET", &shim.url("open/history/"), &h, None);
        assert_eq!(a.status, 200, "read as the API key alone: {}", a.body);
        // The API key alone may not publish: the user key gave nothing.
        let a = call("POST", &shim.url("open/publish/"), &h, Some("{}"));
        assert_eq!(a.status, 403);
        assert_eq!(
            a.json(),
            json!({"detail": "You do not have permission to perform this action."})
        );
    }
    // A bad API key is still refused, whatever the user key.
    let h = [("X-API-KEY", "nosuchkey"), ("X-USER-KEY", ukey.as_str())];
    let a = call("GET", &shim.url("open/history/"), &h, None);
    assert_eq!(
        (a.status, a.json()),
        (403, json!({"detail": "No such API Key."}))
    );
}

#[test]
fn channel_names_in_urls_are_read_as_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    create(&shim, json!({"name": "Mixed", "custom_publish": true}));
    let a = shim.admin("GET", "MIXED/", None);
    assert_eq!((a.status, a.json()["name"].clone()), (200, json!("mixed")));
    let a = shim.admin("POST", "MiXeD/publish/", Some(json!({"payload": {}})));
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(
        a.json()["links"]["self"],
        "/v1.1/instances/default/channels/mixed/history/1/"
    );
    // The binary protocol reads the name the same way.
    assert_eq!(shim.binary().channel_get("MIXED").unwrap()["head_id"], 1);
    // A name no channel can have is simply not found.
    let a = shim.admin("GET", "no%20such/", None);
    assert_eq!((a.status, a.json()), (404, json!({"detail": "Not found."})));
}
