//! Property test of targeting with edits and deletions, against a real
//! server: random audiences (`pm_users` × `exclude_users`), random edits
//! and deletions, and every viewer (four users and a key without a user)
//! reading live, in history (current and raw views) and by fetch. No viewer
//! may receive or read a message, an edit or a deletion of a message it
//! could not see; what each sees must equal the model's answer exactly.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;

use common::tenancy::{admin_of, cmd, connect_as, secret};
use common::TestServer;
use tidewire::client::{Client, Event, HistoryQuery, OutgoingMessage};
use tidewire::storage::record::{Action, ContentType};
use tidewire::wire::{AckMode, AmendTarget, ErrorCode, Start};

const USERS: [&str; 4] = ["ann", "bob", "cat", "dan"];

#[derive(Debug, Clone)]
struct Msg {
    pm: Vec<usize>,
    ex: Vec<usize>,
}

#[derive(Debug, Clone)]
enum Change {
    Edit(usize),
    Delete(usize),
}

fn users() -> impl Strategy<Value = Vec<usize>> {
    proptest::sample::subsequence((0..USERS.len()).collect::<Vec<_>>(), 0..=USERS.len())
}

fn scenario() -> impl Strategy<Value = (Vec<Msg>, Vec<Change>)> {
    let msgs =
        proptest::collection::vec((users(), users()).prop_map(|(pm, ex)| Msg { pm, ex }), 1..7);
    let changes = proptest::collection::vec(
        prop_oneof![3 => (0..7usize).prop_map(Change::Edit), 1 => (0..7usize).prop_map(Change::Delete)],
        0..8,
    );
    (msgs, changes)
}

/// May `viewer` (`None`: a key without a user) see a message with this
/// audience? `exclude_users` wins over `pm_users`.
fn sees(viewer: Option<usize>, m: &Msg) -> bool {
    match viewer {
        None => m.pm.is_empty(),
        Some(u) => !m.ex.contains(&u) && (m.pm.is_empty() || m.pm.contains(&u)),
    }
}

/// One record of the raw view, as the model expects it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    id: u64,
    action: Action,
    ref_id: Option<u64>,
    payload: String,
}

struct World {
    admin: Client,
    viewers: Vec<(Option<usize>, Client)>,
}

/// The next `n` records delivered to `c`, then nothing more for a moment.
fn next_records(c: &mut Client, n: usize) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut wait = Some(Duration::from_secs(10));
    loop {
        if out.len() == n {
            wait = Some(Duration::from_millis(40));
        }
        let Some(e) = c.next_event(wait).unwrap() else {
            return out;
        };
        match e {
            Event::Message { message: m, .. } => out.push(Rec {
                id: m.id,
                action: m.action,
                ref_id: m.ref_id,
                payload: m.payload_text(),
            }),
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn run_case(
    w: &mut World,
    channel: &str,
    msgs: &[Msg],
    changes: &[Change],
) -> Result<(), TestCaseError> {
    w.admin
        .channel_create(&json!({"name": channel, "other_permissions": "subscribe"}))
        .unwrap();
    for (_, c) in &mut w.viewers {
        c.subscribe(channel, None, Start::New).unwrap();
    }
    // The raw records with their audience, and each message's current payload.
    let mut raw: Vec<(usize, Rec)> = Vec::new();
    let mut current: BTreeMap<u64, (usize, Option<String>)> = BTreeMap::new();
    let names = |list: &[usize]| list.iter().map(|&u| USERS[u]).collect::<Vec<_>>();
    let mut ids = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let (pm, ex) = (names(&m.pm), names(&m.ex));
        let text = format!("m{i}");
        let mut out = OutgoingMessage::text(&text);
        out.fields.pm_users = &pm;
        out.fields.exclude_users = &ex;
        let id = w.admin.publish(channel, &out, AckMode::Append).unwrap();
        ids.push(id);
        raw.push((
            i,
            Rec {
                id,
                action: Action::Custom,
                ref_id: None,
                payload: text.clone(),
            },
        ));
        current.insert(id, (i, Some(text)));
    }
    for (n, ch) in changes.iter().enumerate() {
        let (Change::Edit(i) | Change::Delete(i)) = ch;
        let Some(&target) = ids.get(*i) else { continue };
        let deleted = current[&target].1.is_none();
        let result = match ch {
            Change::Edit(_) => {
                let t = format!("e{n}");
                w.admin
                    .edit(
                        channel,
                        AmendTarget::Id(target),
                        ContentType::Text,
                        t.as_bytes(),
                        AckMode::Append,
                    )
                    .map(|a| (a.first_id, Action::Edit, t))
            }
            Change::Delete(_) => w
                .admin
                .delete(channel, AmendTarget::Id(target), AckMode::Append)
                .map(|a| (a.first_id, Action::Remove, String::new())),
        };
        match result {
            Ok((id, action, payload)) => {
                prop_assert!(!deleted, "a change of a deleted message was accepted");
                raw.push((
                    *i,
                    Rec {
                        id,
                        action,
                        ref_id: Some(target),
                        payload: payload.clone(),
                    },
                ));
                current.get_mut(&target).unwrap().1 = (action == Action::Edit).then_some(payload);
            }
            Err(e) => {
                prop_assert!(deleted, "refused: {e}");
                prop_assert_eq!(e.code(), Some(ErrorCode::MessageDeleted));
            }
        }
    }
    for (viewer, c) in &mut w.viewers {
        let v = *viewer;
        let want_raw: Vec<Rec> = raw
            .iter()
            .filter(|(i, _)| sees(v, &msgs[*i]))
            .map(|(_, r)| r.clone())
            .collect();
        prop_assert_eq!(
            &next_records(c, want_raw.len()),
            &want_raw,
            "live, viewer {:?}",
            v
        );
        let q = |raw| HistoryQuery {
            newest_first: false,
            raw,
            limit: 1000,
            ..HistoryQuery::default()
        };
        let got_raw: Vec<Rec> = c
            .history(channel, &q(true))
            .unwrap()
            .into_iter()
            .map(|m| Rec {
                id: m.id,
                action: m.action,
                ref_id: m.ref_id,
                payload: m.payload_text(),
            })
            .collect();
        prop_assert_eq!(&got_raw, &want_raw, "raw history, viewer {:?}", v);
        let want_now: Vec<(u64, String)> = current
            .iter()
            .filter(|(_, (i, p))| p.is_some() && sees(v, &msgs[*i]))
            .map(|(id, (_, p))| (*id, p.clone().unwrap_or_default()))
            .collect();
        let got_now: Vec<(u64, String)> = c
            .history(channel, &q(false))
            .unwrap()
            .into_iter()
            .map(|m| (m.id, m.payload_text()))
            .collect();
        prop_assert_eq!(&got_now, &want_now, "current history, viewer {:?}", v);
        for (id, (i, p)) in &current {
            let got = c.fetch(channel, *id).ok().map(|m| m.payload_text());
            let want = p.clone().filter(|_| sees(v, &msgs[*i]));
            prop_assert_eq!(got, want, "fetch {}, viewer {:?}", id, v);
        }
    }
    Ok(())
}

#[test]
fn no_viewer_sees_a_message_or_a_change_of_one_it_could_not_see() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut root = admin_of(&server.addr, "");
    cmd(&mut root, json!({"op": "instance.create", "name": "aud"}));
    let mut admin = admin_of(&server.addr, "aud");
    let key = secret(
        &cmd(
            &mut admin,
            json!({"op": "key.create", "allow_anonymous_read": true}),
        ),
        "key",
    );
    let mut viewers = vec![(None, connect_as(&server.addr, &key, "", "aud").unwrap())];
    for (u, name) in USERS.iter().enumerate() {
        let uk = secret(
            &cmd(&mut admin, json!({"op": "user.create", "username": name})),
            "user_key",
        );
        viewers.push((Some(u), connect_as(&server.addr, &key, &uk, "aud").unwrap()));
    }
    let world = std::cell::RefCell::new(World { admin, viewers });
    let case = AtomicU64::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&scenario(), |(msgs, changes)| {
            let n = case.fetch_add(1, Ordering::Relaxed);
            run_case(&mut world.borrow_mut(), &format!("c{n}"), &msgs, &changes)
        })
        .unwrap();
}
