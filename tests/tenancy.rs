//! Tenancy, keys and permissions against a real server: the permission
//! matrix, isolation between instances, revocation on open connections,
//! secrets kept out of logs and snapshots, restart, limits and targeting.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tidewire::client::{Client, ClientError, ConnectOptions, Event, HistoryQuery, OutgoingMessage};
use tidewire::wire::{AckMode, ErrorCode, Start};

use common::{TestServer, ADMIN_KEY};

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

fn connect_as(
    addr: &str,
    key: &str,
    user_key: &str,
    instance: &str,
) -> Result<Client, ClientError> {
    let mut o = ConnectOptions::new(addr, key);
    o.user_key = user_key.to_string();
    o.instance = instance.to_string();
    Client::connect_with(&o)
}

fn admin_of(addr: &str, instance: &str) -> Client {
    connect_as(addr, ADMIN_KEY, "", instance).expect("server admin connects")
}

fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> Result<(), ErrorCode> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err(e
            .code()
            .unwrap_or_else(|| panic!("not a server error: {e:?}"))),
    }
}

fn cmd(c: &mut Client, v: Value) -> Value {
    c.admin(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn secret(v: &Value, field: &str) -> String {
    v[field].as_str().expect("secret in the result").to_string()
}

// ----- the permission matrix --------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    ServerAdmin,
    InstanceAdmin,
    ApiPlain,
    IgnoreAcl,
    AnonymousRead,
    UserInGroup,
    UserNotInGroup,
    RevokedKey,
    UnknownKey,
}

const WHO: [Who; 9] = [
    Who::ServerAdmin,
    Who::InstanceAdmin,
    Who::ApiPlain,
    Who::IgnoreAcl,
    Who::AnonymousRead,
    Who::UserInGroup,
    Who::UserNotInGroup,
    Who::RevokedKey,
    Who::UnknownKey,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Publish,
    Subscribe,
    History,
    Fetch,
    ChannelGet,
    ChannelAdmin,
    /// On separate_rooms channels: a publish without a room.
    PublishNoRoom,
    /// On separate_rooms channels: a history read without a room.
    HistoryNoRoom,
}

const OPS: [Op; 8] = [
    Op::Publish,
    Op::Subscribe,
    Op::History,
    Op::Fetch,
    Op::ChannelGet,
    Op::ChannelAdmin,
    Op::PublishNoRoom,
    Op::HistoryNoRoom,
];

const LEVELS: [&str; 3] = ["none", "subscribe", "publish"];

#[derive(Debug, Clone)]
struct Settings {
    name: String,
    other: usize,
    group: usize,
    custom_publish: bool,
    rooms: bool,
}

fn all_settings() -> Vec<Settings> {
    let mut out = Vec::new();
    for other in 0..3 {
        for group in 0..3 {
            for custom_publish in [true, false] {
                for rooms in [false, true] {
                    out.push(Settings {
                        name: format!(
                            "o{other}-g{group}-cp{}-{}",
                            u8::from(custom_publish),
                            if rooms { "sr" } else { "df" }
                        ),
                        other,
                        group,
                        custom_publish,
                        rooms,
                    });
                }
            }
        }
    }
    out
}

/// What the specification (legacy-apis.md §1.8, protocol.md "Tenancy and
/// access") says each caller gets, stated independently of the server.
fn expected(who: Who, s: &Settings, op: Op) -> Result<(), ErrorCode> {
    use ErrorCode::*;
    if matches!(who, Who::RevokedKey | Who::UnknownKey) {
        return Err(AuthFailed);
    }
    let admin = matches!(who, Who::ServerAdmin | Who::InstanceAdmin);
    let user = matches!(who, Who::UserInGroup | Who::UserNotInGroup);
    let member = who == Who::UserInGroup;
    let level = if user {
        s.other.max(if member { s.group } else { 0 })
    } else {
        0
    };
    let read = admin || who == Who::IgnoreAcl || who == Who::AnonymousRead || level >= 1;
    let write = admin || who == Who::IgnoreAcl || level >= 2;
    // The room rule is checked after the permissions.
    let room_check = |ok: Result<(), ErrorCode>, names_room: bool| match ok {
        Ok(()) if s.rooms && !names_room => Err(RoomRequired),
        other => other,
    };
    match op {
        Op::ChannelAdmin => {
            if admin {
                Ok(())
            } else {
                Err(PermissionDenied)
            }
        }
        Op::Publish | Op::PublishNoRoom => {
            let allowed = if !write {
                Err(PermissionDenied)
            } else if !s.custom_publish {
                Err(CustomPublishDisabled)
            } else {
                Ok(())
            };
            room_check(allowed, op == Op::Publish)
        }
        Op::Subscribe | Op::History | Op::HistoryNoRoom | Op::Fetch | Op::ChannelGet => {
            let allowed = if read { Ok(()) } else { Err(PermissionDenied) };
            // Admins and `ignore_acl` keys read the whole history of a
            // separate-rooms channel; everyone else names a room.
            let every_room = admin || who == Who::IgnoreAcl;
            match op {
                Op::Fetch | Op::ChannelGet => allowed,
                Op::HistoryNoRoom if every_room => allowed,
                _ => room_check(allowed, op != Op::HistoryNoRoom),
            }
        }
    }
}

fn run(c: &mut Client, s: &Settings, op: Op) -> Result<(), ErrorCode> {
    let room = s.rooms.then_some("r");
    let query = |room: Option<&str>| HistoryQuery {
        room: room.map(str::to_string),
        ..HistoryQuery::default()
    };
    match op {
        Op::Publish => {
            let mut m = OutgoingMessage::new(b"m");
            if let Some(r) = room {
                m = m.room(r);
            }
            code(c.publish(&s.name, &m, AckMode::Append))
        }
        Op::PublishNoRoom => code(c.publish(&s.name, &OutgoingMessage::new(b"m"), AckMode::Append)),
        Op::Subscribe => {
            let r = c.subscribe(&s.name, room, Start::Earliest);
            if let Ok(info) = &r {
                c.unsubscribe(info.sub_id).expect("unsubscribe");
            }
            code(r)
        }
        Op::History => {
            let r = c.history(&s.name, &query(room));
            if let Ok(page) = &r {
                assert!(!page.is_empty(), "{}: the seed message is readable", s.name);
            }
            code(r)
        }
        Op::HistoryNoRoom => code(c.history(&s.name, &query(None))),
        Op::Fetch => code(c.fetch(&s.name, 1)),
        Op::ChannelGet => code(c.channel_get(&s.name)),
        Op::ChannelAdmin => code(c.channel_update(&s.name, &json!({"description": "changed"}))),
    }
}

struct Matrix {
    keys: Vec<(Who, String, String)>,
}

/// Instance `matrix` with a group, two users, every kind of key and one
/// channel per combination of settings, each holding one message.
fn matrix_setup(addr: &str) -> Matrix {
    let mut root = admin_of(addr, "");
    cmd(
        &mut root,
        json!({"op": "instance.create", "name": "matrix"}),
    );
    let mut a = admin_of(addr, "matrix");
    let group = cmd(&mut a, json!({"op": "group.create", "name": "staff"}))["id"].clone();
    let inside = cmd(
        &mut a,
        json!({"op": "user.create", "username": "in", "groups": [group]}),
    );
    let outside = cmd(&mut a, json!({"op": "user.create", "username": "out"}));
    let key = |a: &mut Client, v: Value| secret(&cmd(a, v), "key");
    let admin_key = key(&mut a, json!({"op": "key.create", "kind": "admin"}));
    let plain = key(&mut a, json!({"op": "key.create"}));
    let ignore = key(&mut a, json!({"op": "key.create", "ignore_acl": true}));
    let anon = key(
        &mut a,
        json!({"op": "key.create", "allow_anonymous_read": true}),
    );
    let revoked = cmd(&mut a, json!({"op": "key.create"}));
    cmd(&mut a, json!({"op": "key.revoke", "id": revoked["id"]}));
    for s in all_settings() {
        a.channel_create(&json!({
            "name": s.name,
            "type": if s.rooms { "separate_rooms" } else { "default" },
            "group": group,
            "other_permissions": LEVELS[s.other],
            "group_permissions": LEVELS[s.group],
        }))
        .unwrap();
        let seed = OutgoingMessage::new(b"seed").room("r");
        a.publish(&s.name, &seed, AckMode::Append).unwrap();
        a.channel_update(&s.name, &json!({"custom_publish": s.custom_publish}))
            .unwrap();
    }
    Matrix {
        keys: vec![
            (Who::ServerAdmin, ADMIN_KEY.into(), String::new()),
            (Who::InstanceAdmin, admin_key, String::new()),
            (Who::ApiPlain, plain.clone(), String::new()),
            (Who::IgnoreAcl, ignore, String::new()),
            (Who::AnonymousRead, anon, String::new()),
            (Who::UserInGroup, plain.clone(), secret(&inside, "user_key")),
            (Who::UserNotInGroup, plain, secret(&outside, "user_key")),
            (Who::RevokedKey, secret(&revoked, "key"), String::new()),
            (
                Who::UnknownKey,
                "0123456789abcdef0123456789abcdef01234567".into(),
                String::new(),
            ),
        ],
    }
}

#[test]
fn the_permission_matrix_holds_for_every_caller_channel_and_operation() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let m = matrix_setup(&server.addr);
    let settings = all_settings();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for who in WHO {
        let (_, key, user_key) = m.keys.iter().find(|(w, _, _)| *w == who).unwrap();
        let instance = if who == Who::ServerAdmin {
            "matrix"
        } else {
            ""
        };
        let mut client = match connect_as(&server.addr, key, user_key, instance) {
            Ok(c) => Some(c),
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::AuthFailed), "{who:?} connects");
                None
            }
        };
        for s in &settings {
            for op in OPS {
                if !s.rooms && matches!(op, Op::PublishNoRoom | Op::HistoryNoRoom) {
                    continue;
                }
                let want = expected(who, s, op);
                let got = match client.as_mut() {
                    Some(c) => run(c, s, op),
                    None => Err(ErrorCode::AuthFailed),
                };
                checked += 1;
                if got != want {
                    wrong.push(format!(
                        "{who:?} {op:?} on {}: got {got:?}, want {want:?}",
                        s.name
                    ));
                }
            }
        }
        if let Some(c) = client.as_mut() {
            // Listing shows exactly the readable channels (plus the
            // built-in `default`, open to users and admins).
            let listed: Vec<String> = c
                .channel_list()
                .unwrap()
                .iter()
                .map(|ch| ch["name"].as_str().unwrap().to_string())
                .filter(|n| n.starts_with('o'))
                .collect();
            // An anonymous-read key lists only what is open to every user.
            let readable: Vec<String> = settings
                .iter()
                .filter(|s| match who {
                    Who::AnonymousRead => s.other >= 1,
                    _ => expected(who, s, Op::ChannelGet).is_ok(),
                })
                .map(|s| s.name.clone())
                .collect();
            let mut listed_sorted = listed.clone();
            listed_sorted.sort();
            let mut readable_sorted = readable;
            readable_sorted.sort();
            assert_eq!(
                listed_sorted, readable_sorted,
                "{who:?} lists what it may read"
            );
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} cases wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(checked > 2000, "{checked} cases");
}

// ----- isolation ------------------------------------------------------------------

#[test]
fn nothing_of_one_instance_is_visible_or_writable_with_another_instances_keys() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut root = admin_of(&server.addr, "");
    let mut keys = Vec::new();
    for name in ["alpha", "beta"] {
        cmd(&mut root, json!({"op": "instance.create", "name": name}));
        let mut a = admin_of(&server.addr, name);
        a.channel_create(&json!({"name": "orders"})).unwrap();
        a.channel_create(&json!({"name": format!("only-{name}")}))
            .unwrap();
        let api = secret(
            &cmd(&mut a, json!({"op": "key.create", "ignore_acl": true})),
            "key",
        );
        let admin = secret(
            &cmd(&mut a, json!({"op": "key.create", "kind": "admin"})),
            "key",
        );
        let user = secret(
            &cmd(&mut a, json!({"op": "user.create", "username": "ada"})),
            "user_key",
        );
        keys.push((api, admin, user));
    }
    let (a_api, a_admin, a_user) = keys[0].clone();
    let (b_api, b_admin, b_user) = keys[1].clone();
    let mut a = connect_as(&server.addr, &a_api, "", "").unwrap();
    assert_eq!(a.server_info().instance, "alpha");
    a.publish(
        "orders",
        &OutgoingMessage::new(b"secret order"),
        AckMode::Append,
    )
    .unwrap();
    let mut b = connect_as(&server.addr, &b_api, "", "").unwrap();
    assert_eq!(b.server_info().instance, "beta");
    // Same channel name, different channel.
    assert!(b
        .history("orders", &HistoryQuery::default())
        .unwrap()
        .is_empty());
    assert_eq!(code(b.fetch("orders", 1)), Err(ErrorCode::MessageNotFound));
    assert_eq!(
        code(b.history("only-alpha", &HistoryQuery::default())),
        Err(ErrorCode::ChannelNotFound)
    );
    assert_eq!(
        code(b.publish("only-alpha", &OutgoingMessage::new(b"x"), AckMode::Append)),
        Err(ErrorCode::ChannelNotFound)
    );
    assert_eq!(
        code(b.subscribe("only-alpha", None, Start::Earliest)),
        Err(ErrorCode::ChannelNotFound)
    );
    let names: Vec<Value> = b
        .channel_list()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert!(!names.contains(&json!("only-alpha")), "{names:?}");
    // Keys only open their own instance; user keys only pair with their own.
    for (key, user, instance) in [
        (&b_api, "", "alpha"),
        (&b_admin, "", "alpha"),
        (&a_api, b_user.as_str(), ""),
        (&b_api, a_user.as_str(), ""),
        (&a_user, "", ""),
    ] {
        assert_eq!(
            code(connect_as(&server.addr, key, user, instance)),
            Err(ErrorCode::AuthFailed),
            "{key} {user} {instance}"
        );
    }
    // An instance admin sees and manages only its own instance.
    let mut badmin = connect_as(&server.addr, &b_admin, "", "").unwrap();
    let list = cmd(&mut badmin, json!({"op": "instance.list"}));
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "beta");
    assert_eq!(
        code(badmin.admin(&json!({"op": "instance.get", "name": "alpha"}))),
        Err(ErrorCode::PermissionDenied)
    );
    assert_eq!(
        code(badmin.admin(&json!({"op": "instance.delete", "name": "alpha"}))),
        Err(ErrorCode::PermissionDenied)
    );
    assert_eq!(
        code(badmin.channel_delete("only-alpha")),
        Err(ErrorCode::ChannelNotFound)
    );
    // Revoking "key 1" in beta revokes beta's key 1, never alpha's.
    let a_keys = cmd(
        &mut admin_of(&server.addr, "alpha"),
        json!({"op": "key.list", "kind": "api"}),
    );
    let a_first = a_keys[0]["id"].clone();
    cmd(&mut badmin, json!({"op": "key.revoke", "id": a_first}));
    let mut a2 = connect_as(&server.addr, &a_api, "", "").unwrap();
    assert_eq!(
        a2.history("orders", &HistoryQuery::default())
            .unwrap()
            .len(),
        1
    );
    let _ = a_admin;
}

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
