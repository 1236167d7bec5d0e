//! User-directed messages: sent with no channel to `pm_users`, they reach
//! every connection of those users through the instance's user stream, are
//! stored and resumable like any channel's messages, and stay inside their
//! instance.

mod common;

use std::time::Duration;

use serde_json::json;

use common::tenancy::{admin_of, cmd, code, connect_as, secret};
use common::{TestServer, ADMIN_KEY};
use tidewire::client::{Client, Event, HistoryQuery, OutgoingMessage, USER_STREAM};
use tidewire::wire::{AckMode, ErrorCode, Start};

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

fn to<'a>(users: &'a [&'a str], text: &'a str) -> OutgoingMessage<'a> {
    let mut m = OutgoingMessage::text(text);
    m.fields.pm_users = users;
    m
}

fn next(c: &mut Client) -> (u64, String) {
    match c.next_event(WAIT).unwrap() {
        Some(Event::Message { message, .. }) => (message.id, message.payload_text()),
        other => panic!("expected a message, got {other:?}"),
    }
}

fn quiet(c: &mut Client) {
    c.ping().unwrap();
    let e = c.next_event(Some(Duration::from_millis(200))).unwrap();
    assert!(e.is_none(), "unexpected {e:?}");
}

struct Team {
    backend: String,
    ann: String,
    bob: String,
}

fn team(addr: &str, instance: &str) -> Team {
    let mut root = admin_of(addr, "");
    cmd(
        &mut root,
        json!({"op": "instance.create", "name": instance}),
    );
    let mut a = admin_of(addr, instance);
    let user = |a: &mut Client, name: &str| {
        secret(
            &cmd(a, json!({"op": "user.create", "username": name})),
            "user_key",
        )
    };
    Team {
        backend: secret(&cmd(&mut a, json!({"op": "key.create"})), "key"),
        ann: user(&mut a, "ann"),
        bob: user(&mut a, "bob"),
    }
}

#[test]
fn every_connection_of_a_user_gets_its_messages_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path());
    let t = team(&server.addr, "team");
    let other = team(&server.addr, "other");
    let c = |key: &str, user: &str, inst: &str| connect_as(&server.addr, key, user, inst).unwrap();
    let mut backend = c(&t.backend, "", "team");
    let mut ann1 = c(&t.backend, &t.ann, "team");
    let mut ann2 = c(&t.backend, &t.ann, "team");
    let mut bob = c(&t.backend, &t.bob, "team");
    let mut other_ann = c(&other.backend, &other.ann, "other");
    for s in [&mut ann1, &mut ann2, &mut bob, &mut other_ann] {
        s.subscribe(USER_STREAM, None, Start::New).unwrap();
    }

    let first = backend
        .publish(USER_STREAM, &to(&["ann"], "hi ann"), AckMode::Append)
        .unwrap();
    backend
        .publish(USER_STREAM, &to(&["bob"], "hi bob"), AckMode::Append)
        .unwrap();
    let both = backend
        .publish(
            USER_STREAM,
            &to(&["ann", "bob"], "hi both"),
            AckMode::Durable,
        )
        .unwrap();
    assert_eq!(
        (next(&mut ann1), next(&mut ann1)),
        ((first, "hi ann".into()), (both, "hi both".into()))
    );
    assert_eq!(
        (next(&mut ann2), next(&mut ann2)),
        ((first, "hi ann".into()), (both, "hi both".into()))
    );
    assert_eq!(next(&mut bob).1, "hi bob");
    assert_eq!(next(&mut bob).1, "hi both");
    // Another instance's "ann" is another user.
    quiet(&mut other_ann);
    quiet(&mut ann1);

    // Who may do what: users read their own, keys without a user send.
    assert_eq!(
        code(ann1.publish(USER_STREAM, &to(&["bob"], "x"), AckMode::Append)),
        Err(ErrorCode::PermissionDenied)
    );
    assert_eq!(
        code(backend.publish(
            USER_STREAM,
            &OutgoingMessage::text("nobody"),
            AckMode::Append
        )),
        Err(ErrorCode::BadRequest)
    );
    let mut admin = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    assert_eq!(
        code(admin.subscribe(USER_STREAM, None, Start::New)),
        Err(ErrorCode::PermissionDenied)
    );
    // The user stream is no channel of the instance's list.
    let mut team_admin = admin_of(&server.addr, "team");
    let names: Vec<String> = team_admin
        .channel_list()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["default", "eventlog"]);

    // Ann goes away; what is sent meanwhile waits for her, across a restart.
    drop((ann1, ann2, bob, backend, other_ann, admin, team_admin));
    let mut backend = c(&t.backend, "", "team");
    let away = backend
        .publish(USER_STREAM, &to(&["ann"], "while away"), AckMode::Durable)
        .unwrap();
    backend
        .publish(USER_STREAM, &to(&["bob"], "not for ann"), AckMode::Durable)
        .unwrap();
    drop(backend);
    server.stop();
    let server = TestServer::start(dir.path());
    let mut ann = connect_as(&server.addr, &t.backend, &t.ann, "team").unwrap();
    ann.subscribe(USER_STREAM, None, Start::AfterId(both))
        .unwrap();
    assert_eq!(next(&mut ann), (away, "while away".into()));
    quiet(&mut ann);
    let q = HistoryQuery {
        newest_first: false,
        ..HistoryQuery::default()
    };
    let mine: Vec<String> = ann
        .history(USER_STREAM, &q)
        .unwrap()
        .iter()
        .map(|m| m.payload_text())
        .collect();
    assert_eq!(mine, vec!["hi ann", "hi both", "while away"]);
}

#[test]
fn the_command_line_sends_to_users_and_follows_a_user_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let t = team(&server.addr, "team");
    // Connection options go after the subcommand.
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tidewire"));
        c.args(args).args([
            "--server",
            &server.addr,
            "--instance",
            "team",
            "--key",
            &t.backend,
        ]);
        c
    };
    let out = run(&["pub", "--to", "ann", "first", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["pub", "--to", "bob,ann", "second"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "sub",
        "--user-stream",
        "--from",
        "earliest",
        "--count",
        "2",
        "--user-key",
        &t.ann,
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_once(' ').map(|x| x.1).unwrap_or(l).to_string())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].ends_with("first") && lines[1].ends_with("second"),
        "{lines:?}"
    );
    // Without a user key there is no user stream to follow.
    let out = run(&["sub", "--user-stream", "--count", "1", "--no-reconnect"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
