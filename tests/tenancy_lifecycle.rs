//! Tenancy against a real server, over time: revocation on open
//! connections, secrets kept out of logs and snapshots, restart, limits and
//! names, and message targeting.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use tidewire::client::{Client, ClientError, Event, HistoryQuery, OutgoingMessage};
use tidewire::wire::{AckMode, ErrorCode, Start};

use common::tenancy::{admin_of, cmd, code, connect_as, secret, WAIT};
use common::{TestServer, ADMIN_KEY};

// ----- revocation ------------------------------------------------------------------

fn closed_event(c: &mut Client) -> ErrorCode {
    match c.next_event(WAIT).expect("event") {
        Some(Event::Closed { code, .. }) => code,
        other => panic!("expected SubscriptionClosed, got {other:?}"),
    }
}

#[test]
fn a_revoked_key_stops_working_on_an_open_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut a = admin_of(&server.addr, "");
    a.channel_create(&json!({"name": "news", "other_permissions": "publish"}))
        .unwrap();
    let api = cmd(&mut a, json!({"op": "key.create"}));
    let user = cmd(&mut a, json!({"op": "user.create", "username": "ada"}));
    let mut c = connect_as(
        &server.addr,
        &secret(&api, "key"),
        &secret(&user, "user_key"),
        "",
    )
    .unwrap();
    let sub = c.subscribe("news", None, Start::New).unwrap();
    c.publish("news", &OutgoingMessage::new(b"before"), AckMode::Append)
        .unwrap();
    match c.next_event(WAIT).unwrap() {
        Some(Event::Message { message, .. }) => assert_eq!(&message.payload[..], b"before"),
        other => panic!("{other:?}"),
    }
    // API key 1 and the server-wide admin key 1 share an id: a revoke
    // without a kind is refused rather than guessed.
    let ambiguous = a
        .admin(&json!({"op": "key.revoke", "id": api["id"]}))
        .unwrap_err();
    assert_eq!(ambiguous.code(), Some(ErrorCode::BadRequest));
    assert!(ambiguous.to_string().contains("give kind"), "{ambiguous}");
    let revoked = cmd(
        &mut a,
        json!({"op": "key.revoke", "id": api["id"], "kind": "api"}),
    );
    assert_eq!(
        (revoked["id"].clone(), revoked["kind"].clone()),
        (api["id"].clone(), json!("api"))
    );
    // The subscription ends at once, without a request from the client.
    assert_eq!(closed_event(&mut c), ErrorCode::PermissionDenied);
    // The next request fails; the connection is then unauthenticated.
    let e = c.publish("news", &OutgoingMessage::new(b"after"), AckMode::Append);
    assert_eq!(code(e), Err(ErrorCode::AuthFailed));
    assert_eq!(code(c.channel_list()), Err(ErrorCode::AuthRequired));
    assert_eq!(code(c.ping()), Ok(()), "the connection itself stays open");
    let _ = sub;
    // Nothing was published after the revocation.
    let page = a.history("news", &HistoryQuery::default()).unwrap();
    assert_eq!(page.len(), 1);
    // A new connection with the key fails too.
    assert_eq!(
        code(connect_as(&server.addr, &secret(&api, "key"), "", "")),
        Err(ErrorCode::AuthFailed)
    );
}

#[test]
fn deleting_a_user_or_a_membership_or_a_permission_ends_access_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut a = admin_of(&server.addr, "");
    let group = cmd(&mut a, json!({"op": "group.create", "name": "readers"}))["id"].clone();
    a.channel_create(&json!({"name": "team", "group": group, "group_permissions": "subscribe"}))
        .unwrap();
    a.channel_create(&json!({"name": "open", "other_permissions": "subscribe"}))
        .unwrap();
    let api = secret(&cmd(&mut a, json!({"op": "key.create"})), "key");
    let ada = cmd(
        &mut a,
        json!({"op": "user.create", "username": "ada", "groups": [group]}),
    );
    let bob = cmd(
        &mut a,
        json!({"op": "user.create", "username": "bob", "groups": [group]}),
    );
    let mut c_ada = connect_as(&server.addr, &api, &secret(&ada, "user_key"), "").unwrap();
    let mut c_bob = connect_as(&server.addr, &api, &secret(&bob, "user_key"), "").unwrap();
    c_ada.subscribe("team", None, Start::New).unwrap();
    c_bob.subscribe("team", None, Start::New).unwrap();
    c_bob.subscribe("open", None, Start::New).unwrap();
    // A denial is not cached past a change that grants access: joining the
    // group lets a caller that was refused read at once.
    let cy = cmd(&mut a, json!({"op": "user.create", "username": "cy"}));
    let mut c_cy = connect_as(&server.addr, &api, &secret(&cy, "user_key"), "").unwrap();
    assert_eq!(
        code(c_cy.history("team", &HistoryQuery::default())),
        Err(ErrorCode::PermissionDenied)
    );
    cmd(
        &mut a,
        json!({"op": "group.add_member", "group": group, "user": cy["id"]}),
    );
    assert_eq!(code(c_cy.history("team", &HistoryQuery::default())), Ok(()));
    // Ada leaves the group: her subscription to `team` ends.
    cmd(
        &mut a,
        json!({"op": "group.remove_member", "group": group, "user": ada["id"]}),
    );
    assert_eq!(closed_event(&mut c_ada), ErrorCode::PermissionDenied);
    assert_eq!(
        code(c_ada.history("team", &HistoryQuery::default())),
        Err(ErrorCode::PermissionDenied)
    );
    // Bob's user is deleted: both his subscriptions end, his requests fail.
    cmd(&mut a, json!({"op": "user.delete", "id": bob["id"]}));
    assert_eq!(closed_event(&mut c_bob), ErrorCode::PermissionDenied);
    assert_eq!(closed_event(&mut c_bob), ErrorCode::PermissionDenied);
    assert_eq!(
        code(c_bob.history("open", &HistoryQuery::default())),
        Err(ErrorCode::AuthFailed)
    );
    // Closing `open` to users ends Ada's subscription there too.
    c_ada.subscribe("open", None, Start::New).unwrap();
    a.channel_update("open", &json!({"other_permissions": "none"}))
        .unwrap();
    assert_eq!(closed_event(&mut c_ada), ErrorCode::PermissionDenied);
    // A new user key replaces the old one at once.
    let reset = cmd(
        &mut a,
        json!({"op": "user.update", "id": ada["id"], "reset_key": true}),
    );
    assert_eq!(code(c_ada.channel_list()), Err(ErrorCode::AuthFailed));
    assert_eq!(
        code(connect_as(
            &server.addr,
            &api,
            &secret(&ada, "user_key"),
            ""
        )),
        Err(ErrorCode::AuthFailed)
    );
    connect_as(&server.addr, &api, &secret(&reset, "user_key"), "")
        .expect("the new user key works");
}

// ----- secrets ------------------------------------------------------------------

fn files_contain(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

#[test]
fn keys_never_appear_in_logs_errors_or_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin_key = "9f4b0c2d8e7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c";
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidewire"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--io-threads",
            "1",
            "--data-dir",
        ])
        .arg(&data)
        .env("TIDEWIRE_ADMIN_KEY", admin_key)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("server starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut addr = String::new();
    let mut printed = String::new();
    while addr.is_empty() {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "server exited early"
        );
        printed.push_str(&line);
        if let Some(a) = line.trim().strip_prefix("tidewire: listening on ") {
            addr = a.to_string();
        }
    }
    let mut secrets = vec![admin_key.to_string()];
    let mut c = connect_as(&addr, admin_key, "", "").unwrap();
    let api = secret(
        &cmd(&mut c, json!({"op": "key.create", "description": "ci"})),
        "key",
    );
    let user = secret(
        &cmd(&mut c, json!({"op": "user.create", "username": "ada"})),
        "user_key",
    );
    let admin2 = secret(
        &cmd(&mut c, json!({"op": "key.create", "kind": "admin"})),
        "key",
    );
    secrets.extend([api.clone(), user.clone(), admin2]);
    // A wrong key is refused without being echoed.
    let wrong = format!("{api}x");
    let e = connect_as(&addr, &wrong, "", "").unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::AuthFailed));
    assert!(!e.to_string().contains(&wrong) && !e.to_string().contains(&api));
    let e = connect_as(&addr, &api, &format!("{user}x"), "").unwrap_err();
    assert!(!e.to_string().contains(&user));
    // Listings carry no secret.
    let listed = cmd(&mut c, json!({"op": "key.list"})).to_string();
    let users = cmd(&mut c, json!({"op": "user.list"})).to_string();
    for s in &secrets {
        assert!(!listed.contains(s.as_str()) && !users.contains(s.as_str()));
    }
    drop(c);
    // SIGTERM for a graceful stop, then read everything it logged.
    // SAFETY-free: kill(1) is a separate process.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    printed.push_str(&rest);
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        logs.contains("tidewire listening"),
        "trace logs were captured"
    );
    for s in &secrets {
        assert!(!logs.contains(s.as_str()), "a key is in the logs");
        assert!(!printed.contains(s.as_str()), "a key is on stdout");
        assert!(
            files_contain(&data, s.as_bytes()).is_empty(),
            "a key is in a file"
        );
    }
}

// ----- restart ------------------------------------------------------------------

#[test]
fn a_restart_keeps_instances_keys_users_groups_and_channel_settings() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path());
    let mut root = admin_of(&server.addr, "");
    cmd(
        &mut root,
        json!({"op": "instance.create", "name": "acme", "description": "d"}),
    );
    let mut a = admin_of(&server.addr, "acme");
    let group = cmd(&mut a, json!({"op": "group.create", "name": "ops"}))["id"].clone();
    let api = cmd(
        &mut a,
        json!({"op": "key.create", "allow_anonymous_read": true}),
    );
    let gone = cmd(&mut a, json!({"op": "key.create"}));
    cmd(&mut a, json!({"op": "key.revoke", "id": gone["id"]}));
    let ada = cmd(
        &mut a,
        json!({"op": "user.create", "username": "ada", "groups": [group]}),
    );
    a.channel_create(&json!({
        "name": "ops-room", "group": group, "group_permissions": "publish", "custom_publish": true
    }))
    .unwrap();
    let before_channel = a.channel_get("ops-room").unwrap();
    let before_keys = cmd(&mut a, json!({"op": "key.list"}));
    let before_users = cmd(&mut a, json!({"op": "user.list"}));
    let before_groups = cmd(&mut a, json!({"op": "group.list"}));
    let mut u = connect_as(
        &server.addr,
        &secret(&api, "key"),
        &secret(&ada, "user_key"),
        "",
    )
    .unwrap();
    u.publish("ops-room", &OutgoingMessage::new(b"hi"), AckMode::Durable)
        .unwrap();
    drop((root, a, u));
    server.stop();

    let server = TestServer::start(dir.path());
    let mut a = admin_of(&server.addr, "acme");
    assert_eq!(
        a.channel_get("ops-room").unwrap(),
        before_channel_after(&before_channel)
    );
    assert_eq!(cmd(&mut a, json!({"op": "key.list"})), before_keys);
    assert_eq!(cmd(&mut a, json!({"op": "user.list"})), before_users);
    assert_eq!(cmd(&mut a, json!({"op": "group.list"})), before_groups);
    let inst = cmd(&mut a, json!({"op": "instance.get"}));
    assert_eq!(
        (inst["name"].clone(), inst["description"].clone()),
        (json!("acme"), json!("d"))
    );
    // The keys work as before, the revoked one still does not.
    let mut u = connect_as(
        &server.addr,
        &secret(&api, "key"),
        &secret(&ada, "user_key"),
        "",
    )
    .unwrap();
    assert_eq!(
        u.publish("ops-room", &OutgoingMessage::new(b"again"), AckMode::Append)
            .unwrap(),
        2
    );
    assert_eq!(
        code(connect_as(&server.addr, &secret(&gone, "key"), "", "")),
        Err(ErrorCode::AuthFailed)
    );
    // Ids are never reused.
    let next = cmd(&mut a, json!({"op": "key.create"}));
    assert!(next["id"].as_u64() > gone["id"].as_u64());
}

/// A channel's JSON after a restart: everything equal (head and oldest ids
/// included, since nothing was published in between).
fn before_channel_after(v: &Value) -> Value {
    let mut v = v.clone();
    v["head_id"] = json!(1);
    v["oldest_id"] = json!(1);
    v
}

#[test]
fn a_server_admin_can_delete_an_instance_and_its_keys_die_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path());
    let mut root = admin_of(&server.addr, "");
    cmd(&mut root, json!({"op": "instance.create", "name": "temp"}));
    let mut a = admin_of(&server.addr, "temp");
    a.channel_create(&json!({"name": "c"})).unwrap();
    a.publish("c", &OutgoingMessage::new(b"x"), AckMode::Durable)
        .unwrap();
    let api = secret(
        &cmd(&mut a, json!({"op": "key.create", "ignore_acl": true})),
        "key",
    );
    let mut c = connect_as(&server.addr, &api, "", "").unwrap();
    c.subscribe("c", None, Start::New).unwrap();
    assert_eq!(
        code(a.channel_delete("default")),
        Err(ErrorCode::PermissionDenied),
        "built-in channels stay"
    );
    cmd(&mut root, json!({"op": "instance.delete", "name": "temp"}));
    assert_eq!(closed_event(&mut c), ErrorCode::PermissionDenied);
    assert_eq!(code(c.channel_list()), Err(ErrorCode::AuthFailed));
    assert_eq!(
        code(connect_as(&server.addr, &api, "", "")),
        Err(ErrorCode::AuthFailed)
    );
    assert_eq!(
        code(connect_as(&server.addr, ADMIN_KEY, "", "temp")),
        Err(ErrorCode::InstanceNotFound)
    );
    drop((root, a, c));
    server.stop();
    let server = TestServer::start(dir.path());
    let mut root = admin_of(&server.addr, "");
    let names: Vec<Value> = cmd(&mut root, json!({"op": "instance.list"}))
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("default")]);
    assert!(
        !dir.path().join("instances/2").exists(),
        "its files are gone"
    );
    // The name can be used again; the id is new.
    let again = cmd(&mut root, json!({"op": "instance.create", "name": "temp"}));
    assert_eq!(again["id"], 3);
}

// ----- limits and names ------------------------------------------------------------------

#[test]
fn tenancy_limits_are_enforced_with_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), |c| {
        c.limits.instances_max = 2;
        c.limits.channels_per_instance_max = 3;
        c.limits.api_keys_per_instance_max = 1;
        c.limits.users_per_instance_max = 1;
        c.limits.groups_per_instance_max = 1;
        c.limits.members_per_group_max = 1;
    });
    let mut root = admin_of(&server.addr, "");
    let limited = |r: Result<Value, ClientError>, name: &str| match r {
        Err(ClientError::Server { code, message }) => {
            assert_eq!(code, ErrorCode::LimitExceeded);
            assert!(message.contains(name), "{message}");
        }
        other => panic!("expected LimitExceeded for {name}, got {other:?}"),
    };
    cmd(&mut root, json!({"op": "instance.create", "name": "one"}));
    limited(
        root.admin(&json!({"op": "instance.create", "name": "two"})),
        "instances_max",
    );
    root.channel_create(&json!({"name": "third"})).unwrap();
    limited(
        root.channel_create(&json!({"name": "fourth"})),
        "channels_per_instance_max",
    );
    cmd(&mut root, json!({"op": "key.create"}));
    limited(
        root.admin(&json!({"op": "key.create"})),
        "api_keys_per_instance_max",
    );
    let g = cmd(&mut root, json!({"op": "group.create", "name": "g"}))["id"].clone();
    limited(
        root.admin(&json!({"op": "group.create", "name": "h"})),
        "groups_per_instance_max",
    );
    let u = cmd(&mut root, json!({"op": "user.create", "username": "u1"}))["id"].clone();
    limited(
        root.admin(&json!({"op": "user.create", "username": "u2"})),
        "users_per_instance_max",
    );
    cmd(
        &mut root,
        json!({"op": "group.add_member", "group": g, "user": u}),
    );
    // A limit reached in one instance does not touch another.
    let mut one = admin_of(&server.addr, "one");
    cmd(&mut one, json!({"op": "key.create"}));
    let _ = u;
}

#[test]
fn bad_names_and_commands_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut root = admin_of(&server.addr, "");
    for bad in ["../x", "%2e%2e", "Upper", "", "a/b"] {
        assert_eq!(
            code(root.admin(&json!({"op": "instance.create", "name": bad}))),
            Err(ErrorCode::InvalidName),
            "{bad:?}"
        );
    }
    assert_eq!(
        code(root.admin(&json!({"op": "instance.create", "name": "default"}))),
        Err(ErrorCode::InstanceExists)
    );
    assert_eq!(
        code(root.admin(&json!({"op": "user.create", "username": "a b"}))),
        Err(ErrorCode::InvalidName)
    );
    cmd(&mut root, json!({"op": "user.create", "username": "ada"}));
    assert_eq!(
        code(root.admin(&json!({"op": "user.create", "username": "ada"}))),
        Err(ErrorCode::IdentityExists)
    );
    assert_eq!(
        code(root.admin(&json!({"op": "group.add_member", "group": 99, "user": 1}))),
        Err(ErrorCode::IdentityNotFound)
    );
    assert_eq!(
        code(root.admin(&json!({"op": "key.revoke", "id": 99}))),
        Err(ErrorCode::IdentityNotFound)
    );
    assert_eq!(
        code(root.admin(&json!({"op": "no.such"}))),
        Err(ErrorCode::BadRequest)
    );
    assert_eq!(
        code(root.admin(&json!({"op": "key.create", "colour": "red"}))),
        Err(ErrorCode::BadRequest)
    );
    assert_eq!(
        code(root.channel_create(&json!({"name": "g", "group": 42}))),
        Err(ErrorCode::BadRequest),
        "a channel's group must exist"
    );
    // None of it disturbed the server.
    root.ping().unwrap();
    assert!(!dir.path().join("instances").read_dir().unwrap().any(|e| {
        let name = e.unwrap().file_name();
        name.to_string_lossy().contains("..") || name.to_string_lossy().contains('%')
    }));
}

// ----- targeting ------------------------------------------------------------------

#[test]
fn targeted_messages_reach_only_their_users_live_and_in_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut a = admin_of(&server.addr, "");
    a.channel_create(&json!({"name": "dm", "other_permissions": "publish"}))
        .unwrap();
    let api = secret(&cmd(&mut a, json!({"op": "key.create"})), "key");
    let mut users = Vec::new();
    for name in ["ada", "bob", "cy"] {
        let u = cmd(&mut a, json!({"op": "user.create", "username": name}));
        let mut c = connect_as(&server.addr, &api, &secret(&u, "user_key"), "").unwrap();
        c.subscribe("dm", None, Start::New).unwrap();
        users.push(c);
    }
    let ada_only: &[&str] = &["ada"];
    let not_bob: &[&str] = &["bob"];
    a.publish(
        "dm",
        &OutgoingMessage::new(b"to ada").pm_users(ada_only),
        AckMode::Append,
    )
    .unwrap();
    a.publish(
        "dm",
        &OutgoingMessage::new(b"not bob").exclude_users(not_bob),
        AckMode::Append,
    )
    .unwrap();
    a.publish("dm", &OutgoingMessage::new(b"everyone"), AckMode::Append)
        .unwrap();
    let expect: [&[&[u8]]; 3] = [
        &[b"to ada", b"not bob", b"everyone"],
        &[b"everyone"],
        &[b"not bob", b"everyone"],
    ];
    for (c, want) in users.iter_mut().zip(expect) {
        let mut got: Vec<Vec<u8>> = Vec::new();
        while got.len() < want.len() {
            match c.next_event(WAIT).unwrap() {
                Some(Event::Message { message, .. }) => got.push(message.payload.to_vec()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, want.iter().map(|w| w.to_vec()).collect::<Vec<_>>());
        let q = HistoryQuery {
            newest_first: false,
            ..HistoryQuery::default()
        };
        let hist: Vec<Vec<u8>> = c
            .history("dm", &q)
            .unwrap()
            .iter()
            .map(|m| m.payload.to_vec())
            .collect();
        assert_eq!(hist, got, "history shows what delivery showed");
        assert_eq!(code(c.fetch("dm", 1)).is_ok(), want.len() == 3);
    }
    // A caller without a user sees no private message.
    assert_eq!(code(a.fetch("dm", 1)), Err(ErrorCode::MessageNotFound));
    assert_eq!(a.history("dm", &HistoryQuery::default()).unwrap().len(), 2);
}
