//! Property test: random appends, commits, reads (cursors, pages, rooms,
//! gets), rotation (small segments, segment age), clock advances with
//! retention, and close/crash-and-reopen, against a simple in-memory model.

mod storage_common;

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use storage_common::*;
use tidewire::clock::ManualClock;
use tidewire::storage::{AppendOutcome, Author, ChannelLog, Chunk, Durability, Order, RecordView};

const SEG: u64 = 64 * 1024;
const ROOMS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Append {
        room: Option<usize>,
        key: Option<u8>,
        len: usize,
    },
    Commit,
    Read {
        after: u64,
        room: Option<usize>,
        newest_first: bool,
        limit: usize,
    },
    Advance {
        minutes: u64,
    },
    Reopen {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (proptest::option::of(0..3usize), proptest::option::weighted(0.2, 0..6u8), 0..3000usize)
            .prop_map(|(room, key, len)| Op::Append { room, key, len }),
        3 => Just(Op::Commit),
        2 => (0..200u64, proptest::option::of(0..3usize), any::<bool>(), 1..50usize)
            .prop_map(|(after, room, newest_first, limit)| Op::Read { after, room, newest_first, limit }),
        1 => (1..600u64).prop_map(|minutes| Op::Advance { minutes }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

#[derive(Debug, Clone)]
struct Rec {
    id: u64,
    created_at: u64,
    room: Option<usize>,
    payload: Vec<u8>,
}

struct Model {
    records: Vec<Rec>,
    committed: usize,
    keys: HashMap<u8, (u64, u64)>,
    last_created: u64,
    /// The id the next append gets (ids jump above a crash's reservation).
    next_id: u64,
    /// The published head.
    head: u64,
}

impl Default for Model {
    fn default() -> Model {
        Model {
            records: Vec::new(),
            committed: 0,
            keys: HashMap::new(),
            last_created: 0,
            next_id: 1,
            head: 0,
        }
    }
}

impl Model {
    fn cutoff(&self, now: u64) -> u64 {
        now.saturating_sub(24 * HOUR_US)
    }
    fn visible(&self, now: u64) -> impl Iterator<Item = &Rec> {
        let cutoff = self.cutoff(now);
        self.records[..self.committed]
            .iter()
            .filter(move |r| r.created_at >= cutoff)
    }
}

fn room_of(raw: &[u8]) -> Option<usize> {
    let v = RecordView::decode(raw).unwrap().unwrap().0;
    v.room()
        .map(|r| ROOMS.iter().position(|x| x.as_bytes() == r).unwrap())
}

fn check_reads(
    log: &ChannelLog,
    m: &Model,
    now: u64,
    after: u64,
    room: Option<usize>,
    newest_first: bool,
    limit: usize,
) {
    let r = log.reader();
    let head = m.head;
    assert_eq!(r.head_id(), head);
    let visible: Vec<&Rec> = m.visible(now).collect();
    let oldest = visible.first().map_or(head + 1, |r| r.id);
    assert_eq!(r.oldest_id(), oldest, "oldest id");
    // Cursor from `after`.
    let room_name = room.map(|i| ROOMS[i].as_bytes());
    let mut c = r.cursor(after, room_name);
    let mut got = Vec::new();
    for _ in 0..10_000 {
        match c.read(2000, &mut |run| got.extend(split_run(run))) {
            Chunk::Records { .. } => {}
            Chunk::Gap {
                wanted_id,
                oldest_id,
            } => assert!(wanted_id < oldest_id),
            Chunk::UpToDate => break,
        }
    }
    let want: Vec<(u64, Vec<u8>)> = visible
        .iter()
        .filter(|x| x.id > after && (room.is_none() || x.room == room))
        .map(|x| (x.id, x.payload.clone()))
        .collect();
    assert_eq!(got, want, "cursor after {after} room {room:?}");
    // History page.
    let mut page = Vec::new();
    let order = if newest_first {
        Order::NewestFirst
    } else {
        Order::OldestFirst
    };
    let before = if after.is_multiple_of(3) {
        Some(after + 40)
    } else {
        None
    };
    r.page(
        room_name,
        Some(after / 2),
        before,
        order,
        limit,
        &mut |raw| {
            page.push(decode(raw));
            true
        },
    );
    let mut want: Vec<(u64, Vec<u8>)> = visible
        .iter()
        .filter(|x| x.id > after / 2 && before.is_none_or(|b| x.id < b))
        .filter(|x| room.is_none() || x.room == room)
        .map(|x| (x.id, x.payload.clone()))
        .collect();
    if newest_first {
        want.reverse();
    }
    want.truncate(limit);
    assert_eq!(
        page,
        want,
        "page after {} before {before:?} room {room:?}",
        after / 2
    );
    for p in &page {
        assert_eq!(r.get(p.0, decode), Some(p.clone()));
        let stored_room = r.get(p.0, room_of).unwrap();
        if room.is_some() {
            assert_eq!(stored_room, room);
        }
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut cfg = config(SEG, Durability::None);
    cfg.segment_age_us = 2 * HOUR_US;
    let (mut log, _) = open(dir.path(), &cfg, &clock);
    let mut m = Model::default();
    for op in ops {
        let now = clock.now_us_for_test();
        match op {
            Op::Append { room, key, len } => {
                let id = m.next_id;
                let payload = payload_for(id, len);
                let key_bytes = key.map(|k| vec![b'k', k]);
                let b = body(room.map(|i| ROOMS[i]), key_bytes.as_deref(), &payload);
                let out = log.append(Author::None, &b).unwrap();
                let cutoff = m.cutoff(now);
                match key
                    .and_then(|k| m.keys.get(&k))
                    .filter(|(_, at)| *at >= cutoff)
                {
                    Some(&(orig, _)) => assert_eq!(out, AppendOutcome::Duplicate(orig)),
                    None => {
                        assert_eq!(out, AppendOutcome::Appended(id));
                        m.next_id = id + 1;
                        let created_at = now.max(m.last_created);
                        m.last_created = created_at;
                        if let Some(k) = key {
                            m.keys.insert(k, (id, created_at));
                        }
                        m.records.push(Rec {
                            id,
                            created_at,
                            room,
                            payload,
                        });
                    }
                }
            }
            Op::Commit => {
                assert_eq!(log.commit().unwrap(), m.next_id - 1);
                m.committed = m.records.len();
                m.head = m.next_id - 1;
            }
            Op::Read {
                after,
                room,
                newest_first,
                limit,
            } => check_reads(&log, &m, now, after, room, newest_first, limit),
            Op::Advance { minutes } => {
                clock.advance_us(minutes * 60 * 1_000_000);
                log.maintain().unwrap();
            }
            Op::Reopen { clean } => {
                if clean {
                    log.close().unwrap();
                } else {
                    // A process crash: what was written into the files
                    // survives, what was only staged in memory does not.
                    let written = log.written_id();
                    drop(log);
                    // Ids only staged were never seen by anyone.
                    m.next_id = written + 1;
                    m.records.retain(|r| r.id <= written);
                    m.keys.retain(|_, (id, _)| *id <= written);
                    m.last_created = m
                        .records
                        .last()
                        .map_or(0, |r| r.created_at)
                        .max(m.records.iter().map(|r| r.created_at).max().unwrap_or(0));
                }
                let (l, report) = open(dir.path(), &cfg, &clock);
                assert!(report.quarantined.is_empty());
                if clean {
                    assert_eq!(report.next_id, m.next_id);
                    assert_eq!(report.hole, None);
                } else {
                    assert!(report.next_id >= m.next_id, "ids never go back");
                }
                m.next_id = report.next_id;
                m.head = report.next_id - 1;
                log = l;
                // Recovery publishes every whole record it finds.
                m.committed = m.records.len();
            }
        }
    }
    log.commit().unwrap();
    m.committed = m.records.len();
    m.head = m.next_id - 1;
    let now = clock.now_us_for_test();
    check_reads(&log, &m, now, 0, None, false, 1000);
    drop(log);
    let (log, report) = open(dir.path(), &cfg, &clock);
    assert!(report.next_id >= m.next_id, "ids never go back");
    m.head = report.next_id - 1;
    check_reads(&log, &m, now, 0, None, true, 1000);
    check_reads(&log, &m, now, 3, Some(1), false, 7);
}

trait NowForTest {
    fn now_us_for_test(&self) -> u64;
}

impl NowForTest for Arc<ManualClock> {
    fn now_us_for_test(&self) -> u64 {
        use tidewire::clock::Clock;
        self.now_us()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn the_log_matches_an_in_memory_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops);
    }
}
