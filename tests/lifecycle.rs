//! Editing and deleting messages through the server: uuids in
//! acknowledgements, the edit and delete requests and their errors, what
//! live and resuming subscribers receive, history and fetch in the current
//! and raw views, who may change a message, the Syncano view of a change,
//! and all of it across a restart.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use common::http::{create, Shim};
use common::tenancy::{admin_of, cmd, code, connect_as, secret};
use common::{TestServer, ADMIN_KEY};
use tidewire::client::{Client, Event, HistoryQuery, Message, OutgoingMessage};
use tidewire::storage::record::{Action, ContentType};
use tidewire::wire::{AckMode, AmendTarget, ErrorCode, Start};

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

fn next_message(c: &mut Client) -> Message {
    match c.next_event(WAIT).unwrap() {
        Some(Event::Message { message, .. }) => message,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn history(c: &mut Client, channel: &str, raw: bool) -> Vec<(u64, Action, String)> {
    let q = HistoryQuery {
        newest_first: false,
        raw,
        ..HistoryQuery::default()
    };
    c.history(channel, &q)
        .unwrap()
        .into_iter()
        .map(|m| (m.id, m.action, m.payload_text()))
        .collect()
}

#[test]
fn edits_and_deletes_reach_subscribers_and_rewrite_history_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path());
    let mut c = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    c.channel_create(&json!({"name": "chat"})).unwrap();
    let mut live = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    live.subscribe("chat", None, Start::New).unwrap();

    // Every acknowledgement carries the message's uuid: assigned (random
    // looking, version 4) or the publisher's own.
    let mut uuids = Vec::new();
    for text in ["one", "two", "three"] {
        let ack = c
            .publish_acked("chat", &OutgoingMessage::text(text), AckMode::Append)
            .unwrap();
        assert_eq!(ack.uuids.len(), 1);
        let u = ack.uuids[0];
        assert_eq!(
            (u[6] >> 4, u[8] >> 6),
            (4, 0b10),
            "an RFC 9562 version 4 uuid"
        );
        uuids.push(u);
    }
    assert_eq!(uuids.iter().collect::<HashSet<_>>().len(), 3);
    let mine = [0xab; 16];
    let mut m = OutgoingMessage::text("four");
    m.fields.uuid = Some(mine);
    let ack = c.publish_acked("chat", &m, AckMode::Durable).unwrap();
    assert_eq!((ack.first_id, ack.uuids.clone()), (4, vec![mine]));
    // A uuid a retained message has makes a publish a duplicate.
    let again = c.publish_acked("chat", &m, AckMode::Append).unwrap();
    assert_eq!(
        (again.first_id, again.duplicates.clone()),
        (0, vec![(0, 4)])
    );

    let e = c
        .edit(
            "chat",
            AmendTarget::Uuid(uuids[1]),
            ContentType::Text,
            b"two!",
            AckMode::Durable,
        )
        .unwrap();
    assert_eq!((e.first_id, e.uuids.clone()), (5, vec![uuids[1]]));
    let e = c
        .edit(
            "chat",
            AmendTarget::Uuid(mine),
            ContentType::Json,
            br#"{"n":4}"#,
            AckMode::Append,
        )
        .unwrap();
    assert_eq!((e.first_id, e.uuids.clone()), (6, vec![mine]));
    let d = c
        .delete("chat", AmendTarget::Id(1), AckMode::Append)
        .unwrap();
    assert_eq!((d.first_id, d.uuids.clone()), (7, vec![uuids[0]]));

    // Refusals, each with its code; nothing is appended.
    let refused = [
        (
            code(c.delete("chat", AmendTarget::Id(1), AckMode::Append)),
            ErrorCode::MessageDeleted,
        ),
        (
            code(c.edit(
                "chat",
                AmendTarget::Id(1),
                ContentType::Text,
                b"x",
                AckMode::Append,
            )),
            ErrorCode::MessageDeleted,
        ),
        (
            code(c.delete("chat", AmendTarget::Id(40), AckMode::Append)),
            ErrorCode::MessageNotFound,
        ),
        (
            code(c.delete("chat", AmendTarget::Uuid([3; 16]), AckMode::Append)),
            ErrorCode::MessageNotFound,
        ),
        (
            code(c.delete("chat", AmendTarget::Id(5), AckMode::Append)),
            ErrorCode::BadRequest,
        ),
        (
            code(c.edit(
                "chat",
                AmendTarget::Id(2),
                ContentType::Json,
                b"{",
                AckMode::Append,
            )),
            ErrorCode::BadRequest,
        ),
        (
            code(c.delete("nochannel", AmendTarget::Id(2), AckMode::Append)),
            ErrorCode::ChannelNotFound,
        ),
    ];
    for (got, want) in refused {
        assert_eq!(got, Err(want));
    }
    // Publishers cannot write edit records themselves.
    let mut forged = OutgoingMessage::text("forged");
    forged.fields.action = Some(Action::Edit);
    forged.fields.ref_id = Some(2);
    assert_eq!(
        code(c.publish("chat", &forged, AckMode::Append)),
        Err(ErrorCode::BadRequest)
    );

    // The live subscriber got every record in order, changes included.
    let got: Vec<(u64, Action, Option<u64>)> = (0..7)
        .map(|_| {
            let m = next_message(&mut live);
            (m.id, m.action, m.ref_id)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1, Action::Custom, None),
            (2, Action::Custom, None),
            (3, Action::Custom, None),
            (4, Action::Custom, None),
            (5, Action::Edit, Some(2)),
            (6, Action::Edit, Some(4)),
            (7, Action::Remove, Some(1)),
        ]
    );

    let current = vec![
        (2, Action::Custom, "two!".to_string()),
        (3, Action::Custom, "three".to_string()),
        (4, Action::Custom, r#"{"n":4}"#.to_string()),
    ];
    let check_reads = |c: &mut Client| {
        assert_eq!(history(c, "chat", false), current);
        assert_eq!(history(c, "chat", true).len(), 7);
        let two = c.fetch("chat", 2).unwrap();
        assert_eq!((two.payload_text().as_str(), two.ref_id), ("two!", Some(5)));
        assert_eq!(c.fetch("chat", 4).unwrap().content_type, ContentType::Json);
        assert_eq!(code(c.fetch("chat", 1)), Err(ErrorCode::MessageNotFound));
        assert_eq!(c.fetch_raw("chat", 1).unwrap().payload_text(), "one");
        assert_eq!(c.fetch_raw("chat", 7).unwrap().action, Action::Remove);
        // A subscriber resuming from the start replays every change in order.
        c.subscribe("chat", None, Start::AfterId(0)).unwrap();
        let ids: Vec<u64> = (0..7).map(|_| next_message(c).id).collect();
        assert_eq!(ids, (1..=7).collect::<Vec<_>>());
    };
    check_reads(&mut c);

    drop((c, live));
    server.stop();
    let server = TestServer::start(dir.path());
    let mut c = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    check_reads(&mut c);
    // Uuids the server assigned still name their messages after a restart.
    let e = c
        .edit(
            "chat",
            AmendTarget::Uuid(uuids[2]),
            ContentType::Text,
            b"3",
            AckMode::Append,
        )
        .unwrap();
    assert_eq!(e.uuids, vec![uuids[2]]);
    assert_eq!(c.fetch("chat", 3).unwrap().payload_text(), "3");
    assert_eq!(
        code(c.delete("chat", AmendTarget::Uuid(uuids[0]), AckMode::Append)),
        Err(ErrorCode::MessageDeleted)
    );
}

#[test]
fn only_the_author_or_a_key_above_the_acl_changes_a_message_and_its_audience_stays() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut root = admin_of(&server.addr, "");
    cmd(&mut root, json!({"op": "instance.create", "name": "team"}));
    let mut a = admin_of(&server.addr, "team");
    let key = secret(&cmd(&mut a, json!({"op": "key.create"})), "key");
    let ignore = secret(
        &cmd(&mut a, json!({"op": "key.create", "ignore_acl": true})),
        "key",
    );
    let ann = secret(
        &cmd(&mut a, json!({"op": "user.create", "username": "ann"})),
        "user_key",
    );
    let bob = secret(
        &cmd(&mut a, json!({"op": "user.create", "username": "bob"})),
        "user_key",
    );
    a.channel_create(&json!({"name": "room", "other_permissions": "publish"}))
        .unwrap();
    let mut ann_c = connect_as(&server.addr, &key, &ann, "team").unwrap();
    let mut bob_c = connect_as(&server.addr, &key, &bob, "team").unwrap();
    let mut ignore_c = connect_as(&server.addr, &ignore, "", "team").unwrap();
    bob_c.subscribe("room", None, Start::New).unwrap();

    // Ann's message for Ann only.
    let mut m = OutgoingMessage::text("secret");
    m.fields.pm_users = &["ann"];
    let id = ann_c.publish("room", &m, AckMode::Append).unwrap();
    let open_id = ann_c
        .publish("room", &OutgoingMessage::text("open"), AckMode::Append)
        .unwrap();

    let edit = |c: &mut Client, id: u64, text: &str| {
        code(c.edit(
            "room",
            AmendTarget::Id(id),
            ContentType::Text,
            text.as_bytes(),
            AckMode::Append,
        ))
    };
    assert_eq!(
        edit(&mut bob_c, open_id, "bob was here"),
        Err(ErrorCode::PermissionDenied)
    );
    assert_eq!(edit(&mut ann_c, open_id, "open, edited"), Ok(()));
    assert_eq!(edit(&mut ignore_c, open_id, "moderated"), Ok(()));
    assert_eq!(edit(&mut a, id, "still secret"), Ok(()));
    assert_eq!(
        code(bob_c.delete("room", AmendTarget::Id(id), AckMode::Append)),
        Err(ErrorCode::PermissionDenied)
    );

    // Bob saw the open message and its two edits, never the private one
    // nor its edit (the edit's audience is the message's).
    let seen: Vec<(u64, Option<u64>)> = (0..3)
        .map(|_| {
            let m = next_message(&mut bob_c);
            (m.id, m.ref_id)
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (open_id, None),
            (open_id + 1, Some(open_id)),
            (open_id + 2, Some(open_id))
        ]
    );
    bob_c.ping().unwrap();
    assert!(matches!(
        bob_c.next_event(Some(Duration::from_millis(200))),
        Ok(None)
    ));
    let bob_raw = history(&mut bob_c, "room", true);
    assert!(bob_raw.iter().all(|(_, _, text)| !text.contains("secret")));
    let ann_now = history(&mut ann_c, "room", false);
    assert_eq!(
        ann_now,
        vec![
            (id, Action::Custom, "still secret".into()),
            (open_id, Action::Custom, "moderated".into()),
        ]
    );
}

#[test]
fn the_syncano_view_shows_an_edit_as_update_and_a_deletion_as_delete() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::start(dir.path());
    create(&shim, json!({"name": "news", "custom_publish": true}));
    let publish = |t: &str| {
        let r = shim.admin("POST", "news/publish/", Some(json!({"payload": {"t": t}})));
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["id"].as_u64().unwrap()
    };
    let id = publish("a");
    publish("b");
    let mut c = shim.binary();
    c.edit(
        "news",
        AmendTarget::Id(id),
        ContentType::Json,
        br#"{"t": "a2"}"#,
        AckMode::Durable,
    )
    .unwrap();
    c.delete("news", AmendTarget::Id(id + 1), AckMode::Durable)
        .unwrap();

    let poll = |last: u64| -> Value {
        let r = shim.admin("GET", &format!("news/poll/?last_id={last}"), None);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    };
    let upd = poll(id + 1);
    assert_eq!(upd["id"], id + 2);
    assert_eq!(upd["action"], "update");
    assert_eq!(upd["payload"], json!({"t": "a2"}));
    assert_eq!(
        upd["metadata"],
        json!({"type": "message", "message_id": id})
    );
    let del = poll(id + 2);
    assert_eq!(del["action"], "delete");
    assert_eq!(del["payload"], json!({"id": id + 1}));
    assert_eq!(
        del["metadata"],
        json!({"type": "message", "message_id": id + 1})
    );

    let hist = shim.admin("GET", "news/history/?direction=1", None);
    assert_eq!(hist.status, 200, "{}", hist.body);
    let shown: Vec<(u64, Value)> = hist.json()["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["id"].as_u64().unwrap(), o["payload"].clone()))
        .collect();
    assert_eq!(shown, vec![(id, json!({"t": "a2"}))]);
}
