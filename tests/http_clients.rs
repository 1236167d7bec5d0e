//! The HTTP shim against a real server as the legacy clients use it: their
//! request shapes, user keys and permissions, history pages, malformed
//! input, keep-alive, and channel writes.

mod common;

use serde_json::{json, Value};
use tidewire::client::{ConnectOptions, OutgoingMessage};
use tidewire::wire::AckMode;

use common::http::{call, create, raw, Shim};
use common::ADMIN_KEY;

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
