//! Tenancy, keys and permissions against a real server: the permission
//! matrix and isolation between instances. Revocation, secrets, restart,
//! limits and targeting are in `tenancy_lifecycle.rs`.

mod common;

use serde_json::{json, Value};
use tidewire::client::{Client, HistoryQuery, OutgoingMessage};
use tidewire::wire::{AckMode, ErrorCode, Start};

use common::tenancy::{admin_of, cmd, code, connect_as, secret};
use common::{TestServer, ADMIN_KEY};

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
