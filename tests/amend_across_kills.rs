//! Edits and deletions across `kill -9`.
//!
//! A server with the smallest segments (rotations every few hundred
//! messages) takes publishes, edits and deletions, each acknowledged after
//! the append, and is killed with SIGKILL at a random moment. After each
//! restart the operation that was in flight is settled (a publish retried
//! with its idempotency key; an edit or deletion found applied or not), and
//! the channel's current view must equal the model built from the
//! acknowledged operations: every acknowledged edit and deletion is there,
//! and nothing else changed.
//!
//! `TIDEWIRE_KILL_ROUNDS=N` sets the rounds (default [`ROUNDS_DEFAULT`]);
//! `TIDEWIRE_KILL_SEED=S` replays a failed run's random choices.

mod proc_common;

use std::collections::BTreeMap;
use std::time::Duration;

use proc_common::{env_number, read_all, Rng, Serve, ServerProcess};
use tidewire::client::{Client, OutgoingMessage};
use tidewire::storage::record::ContentType;
use tidewire::wire::{AckMode, AmendTarget, ErrorCode};

const ROUNDS_DEFAULT: u64 = 12;
const CHANNEL: &str = "amend";

/// Per id: the current payload, or `None` once deleted.
type Model = BTreeMap<u64, Option<String>>;

#[derive(Debug, Clone)]
enum Op {
    Publish(u64),
    Edit(u64, String),
    Delete(u64),
}

fn key(n: u64) -> String {
    format!("ak-{n:08}")
}

fn text(n: u64) -> String {
    format!("message {n:08} {}", "~".repeat(120))
}

/// Runs operations until the connection fails; returns the one that was in
/// flight then (sent, not acknowledged).
fn operate(c: &mut Client, model: &mut Model, next: &mut u64, rng: &mut Rng) -> Option<Op> {
    loop {
        let alive: Vec<u64> = model
            .iter()
            .filter(|(_, p)| p.is_some())
            .map(|(id, _)| *id)
            .collect();
        let roll = rng.below(10);
        let op = if alive.is_empty() || roll < 6 {
            *next += 1;
            Op::Publish(*next)
        } else {
            let id = alive[rng.below(alive.len() as u64) as usize];
            if roll < 9 {
                *next += 1;
                Op::Edit(id, format!("edit {:08}", *next))
            } else {
                Op::Delete(id)
            }
        };
        let done = match &op {
            Op::Publish(n) => {
                let t = text(*n);
                let k = key(*n);
                let m = OutgoingMessage::text(&t).idempotency_key(k.as_bytes());
                c.publish(CHANNEL, &m, AckMode::Append).map(|id| {
                    model.insert(id, Some(t.clone()));
                })
            }
            Op::Edit(id, t) => c
                .edit(
                    CHANNEL,
                    AmendTarget::Id(*id),
                    ContentType::Text,
                    t.as_bytes(),
                    AckMode::Append,
                )
                .map(|_| {
                    model.insert(*id, Some(t.clone()));
                }),
            Op::Delete(id) => c
                .delete(CHANNEL, AmendTarget::Id(*id), AckMode::Append)
                .map(|_| {
                    model.insert(*id, None);
                }),
        };
        if let Err(e) = done {
            assert!(e.code().is_none(), "the server refused {op:?}: {e}");
            return Some(op);
        }
    }
}

/// Settles the operation in flight at the kill against the restarted
/// server, updating the model.
fn settle(c: &mut Client, model: &mut Model, op: Op) {
    match op {
        Op::Publish(n) => {
            let t = text(n);
            let k = key(n);
            let m = OutgoingMessage::text(&t).idempotency_key(k.as_bytes());
            let id = c.publish(CHANNEL, &m, AckMode::Append).unwrap();
            model.insert(id, Some(t));
        }
        Op::Edit(id, t) => {
            let now = c.fetch(CHANNEL, id).unwrap().payload_text();
            if now == t {
                model.insert(id, Some(t));
            }
        }
        Op::Delete(id) => match c.fetch(CHANNEL, id) {
            Err(e) if e.code() == Some(ErrorCode::MessageNotFound) => {
                model.insert(id, None);
            }
            Err(e) => panic!("fetch {id}: {e}"),
            Ok(_) => {}
        },
    }
}

fn current(model: &Model) -> Vec<(u64, String)> {
    model
        .iter()
        .filter_map(|(id, p)| p.clone().map(|p| (*id, p)))
        .collect()
}

#[test]
fn acknowledged_edits_and_deletions_survive_kill_9() {
    let _guard = proc_common::exclusive();
    let rounds = env_number("TIDEWIRE_KILL_ROUNDS", ROUNDS_DEFAULT);
    let (mut rng, seed) = Rng::from_env("TIDEWIRE_KILL_SEED");
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::new(dir.path()).segment_size(65_536);
    let mut model = Model::new();
    let mut next = 0u64;
    let mut pending: Option<Op> = None;
    for round in 0..rounds {
        let mut server = ServerProcess::spawn(&serve);
        let mut c = server.connect();
        if round == 0 {
            c.channel_create(&serde_json::json!({"name": CHANNEL}))
                .unwrap();
        }
        if let Some(op) = pending.take() {
            settle(&mut c, &mut model, op);
        }
        let got: Vec<(u64, String)> = read_all(&mut c, CHANNEL)
            .into_iter()
            .map(|m| (m.id, m.payload_text()))
            .collect();
        assert_eq!(got, current(&model), "round {round}, seed {seed}");
        let wait = Duration::from_millis(5 + rng.below(60));
        pending = std::thread::scope(|s| {
            let worker = s.spawn(|| operate(&mut c, &mut model, &mut next, &mut rng));
            std::thread::sleep(wait);
            server.kill9();
            worker.join().expect("the operating thread")
        });
    }
    let server = ServerProcess::spawn(&serve);
    let mut c = server.connect();
    if let Some(op) = pending.take() {
        settle(&mut c, &mut model, op);
    }
    let got: Vec<(u64, String)> = read_all(&mut c, CHANNEL)
        .into_iter()
        .map(|m| (m.id, m.payload_text()))
        .collect();
    assert_eq!(got, current(&model), "after the last restart, seed {seed}");
    let edits = model
        .values()
        .filter(|p| p.as_deref().is_some_and(|p| p.starts_with("edit")))
        .count();
    let deleted = model.values().filter(|p| p.is_none()).count();
    assert!(
        edits > 0 && deleted > 0,
        "the run edited ({edits}) and deleted ({deleted})"
    );
}
