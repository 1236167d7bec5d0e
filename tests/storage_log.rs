//! Behaviour of the channel log through its public API: append, commit,
//! read, rotation, reopen, retention, rooms, idempotency, out of space,
//! index rebuild and concurrent reading.

mod storage_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use storage_common::*;
use tidewire::clock::ManualClock;
use tidewire::storage::{
    AppendOutcome, Author, ChannelLog, Chunk, Cursor, Durability, LogReader, Order, StorageError,
};

const SEG: u64 = 64 * 1024;

#[test]
fn handles_are_send_and_sync_as_promised() {
    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}
    fn assert_clone<T: Clone>() {}
    assert_send::<ChannelLog>();
    assert_send::<LogReader>();
    assert_sync::<LogReader>();
    assert_clone::<LogReader>();
    assert_send::<Cursor>();
}

#[test]
fn appended_records_are_invisible_until_commit_then_read_back_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (mut log, report) = open(dir.path(), &config(SEG, Durability::Batch), &clock);
    assert_eq!(report.next_id, 1);
    let reader = log.reader();
    for i in 1..=10u64 {
        let out = log
            .append(Author::ApiKey(7), &body(None, None, &payload_for(i, 20)))
            .unwrap();
        assert_eq!(out, AppendOutcome::Appended(i));
    }
    assert_eq!(reader.head_id(), 0);
    assert!(reader.get(1, |_| ()).is_none());
    assert_eq!(log.commit().unwrap(), 10);
    assert_eq!(log.synced_id(), 10);
    assert_eq!(reader.head_id(), 10);
    let mut c = reader.cursor(0, None);
    let mut calls = 0;
    let mut got = Vec::new();
    let chunk = c.read(1 << 20, &mut |run| {
        calls += 1;
        got.extend(split_run(run));
    });
    assert_eq!(calls, 1, "an unfiltered read hands one contiguous run");
    assert!(matches!(chunk, Chunk::Records { records: 10, .. }));
    assert_eq!(
        got.iter().map(|r| r.0).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        c.read(1 << 20, &mut |_| panic!("nothing new")),
        Chunk::UpToDate
    );
    assert_eq!(reader.get(4, decode).unwrap().1, payload_for(4, 20));
    log.close().unwrap();
}

#[test]
fn records_span_rotated_segments_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let cfg = config(SEG, Durability::None);
    let (mut log, _) = open(dir.path(), &cfg, &clock);
    for i in 1..=300u64 {
        log.append(Author::None, &body(None, None, &payload_for(i, 700)))
            .unwrap();
        if i % 7 == 0 {
            log.commit().unwrap();
        }
    }
    log.commit().unwrap();
    let segs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert!(segs >= 3, "small segments rotate ({segs})");
    let all = read_all(&log);
    assert_eq!(all.len(), 300);
    for (i, (id, p)) in all.iter().enumerate() {
        assert_eq!(*id, i as u64 + 1);
        assert_eq!(*p, payload_for(*id, 700));
    }
    log.close().unwrap();
    let (mut log, report) = open(dir.path(), &cfg, &clock);
    assert_eq!(report.next_id, 301);
    assert!(report.cut.is_empty());
    assert!(report.quarantined.is_empty());
    assert_eq!(read_all(&log), all);
    assert_eq!(
        log.append(Author::None, &body(None, None, b"x"))
            .unwrap()
            .id(),
        301
    );
    log.commit().unwrap();
    // Reads by id and time in the middle of old segments.
    let r = log.reader();
    assert_eq!(r.get(150, |raw| decode(raw).0), Some(150));
    let mut c = r.cursor(199, None);
    let mut first = None;
    c.read(1, &mut |run| first = Some(split_run(run)[0].0));
    assert_eq!(first, Some(200));
}

#[test]
fn history_pages_read_both_ways_with_bounds_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (mut log, _) = open(dir.path(), &config(SEG, Durability::None), &clock);
    for i in 1..=500u64 {
        log.append(Author::None, &body(None, None, &payload_for(i, 300)))
            .unwrap();
    }
    log.commit().unwrap();
    let r = log.reader();
    let page = |after, before, order, limit| {
        let mut ids = Vec::new();
        r.page(None, after, before, order, limit, &mut |raw| {
            ids.push(decode(raw).0);
            true
        });
        ids
    };
    assert_eq!(
        page(Some(10), Some(16), Order::OldestFirst, 100),
        vec![11, 12, 13, 14, 15]
    );
    assert_eq!(page(None, None, Order::NewestFirst, 3), vec![500, 499, 498]);
    assert_eq!(
        page(None, Some(400), Order::NewestFirst, 1000),
        (1..400).rev().collect::<Vec<_>>()
    );
    assert_eq!(
        page(Some(495), None, Order::OldestFirst, 1000),
        vec![496, 497, 498, 499, 500]
    );
    assert!(page(Some(500), None, Order::OldestFirst, 10).is_empty());
}

#[test]
fn room_pages_and_room_cursors_return_only_that_room() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (mut log, _) = open(dir.path(), &config(SEG, Durability::None), &clock);
    let mut lobby = Vec::new();
    for i in 1..=400u64 {
        let room = match i % 5 {
            0 => Some("Lobby"),
            1 => Some("kitchen"),
            _ => None,
        };
        if room == Some("Lobby") {
            lobby.push(i);
        }
        log.append(Author::None, &body(room, None, &payload_for(i, 200)))
            .unwrap();
    }
    log.commit().unwrap();
    let r = log.reader();
    let mut got = Vec::new();
    r.page(
        Some(b"lobby"),
        None,
        None,
        Order::NewestFirst,
        10,
        &mut |raw| {
            got.push(decode(raw).0);
            true
        },
    );
    assert_eq!(
        got,
        lobby.iter().rev().take(10).copied().collect::<Vec<_>>()
    );
    let mut got = Vec::new();
    r.page(
        Some(b"lobby"),
        Some(100),
        Some(200),
        Order::OldestFirst,
        1000,
        &mut |raw| {
            got.push(decode(raw).0);
            true
        },
    );
    assert_eq!(
        got,
        lobby
            .iter()
            .filter(|&&i| i > 100 && i < 200)
            .copied()
            .collect::<Vec<_>>()
    );
    let mut c = r.cursor(0, Some(b"lobby"));
    let mut got = Vec::new();
    while let Chunk::Records { .. } = c.read(4096, &mut |run| got.extend(split_run(run))) {}
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), lobby);
    // Live: the room cursor picks up new records of its room only.
    log.append(Author::None, &body(Some("kitchen"), None, b"k"))
        .unwrap();
    log.append(Author::None, &body(Some("lobby"), None, b"l"))
        .unwrap();
    log.commit().unwrap();
    let mut got = Vec::new();
    c.read(4096, &mut |run| got.extend(split_run(run)));
    assert_eq!(got, vec![(402, b"l".to_vec())]);
}

#[test]
fn retention_is_exact_across_48_simulated_hours() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut cfg = config(SEG, Durability::None);
    cfg.segment_age_us = HOUR_US;
    let (mut log, _) = open(dir.path(), &cfg, &clock);
    let r = log.reader();
    let mut lagging = r.cursor(0, None);
    // One message every 10 minutes for 48 hours.
    for i in 1..=288u64 {
        log.append(Author::None, &body(None, None, &payload_for(i, 100)))
            .unwrap();
        log.commit().unwrap();
        log.maintain().unwrap();
        clock.advance_us(HOUR_US / 6);
    }
    // Now = T0 + 48 h; message i was created at T0 + (i - 1) * 10 min.
    let now = T0 + 288 * HOUR_US / 6;
    let cutoff = now - 24 * HOUR_US;
    let oldest = (1..=288u64)
        .find(|i| T0 + (i - 1) * HOUR_US / 6 >= cutoff)
        .unwrap();
    assert_eq!(r.oldest_id(), oldest);
    assert!(r.get(oldest - 1, |_| ()).is_none());
    assert!(r.get(oldest, |_| ()).is_some());
    log.maintain().unwrap();
    let segs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert!(segs <= 27, "expired segments were deleted ({segs} left)");
    // The lagging cursor still holds its (deleted) first segment: it reports
    // the gap and continues at the oldest retained id.
    match lagging.read(4096, &mut |_| panic!("expired records are not served")) {
        Chunk::Gap {
            wanted_id,
            oldest_id,
        } => {
            assert_eq!(wanted_id, 1);
            assert_eq!(oldest_id, oldest);
        }
        other => panic!("expected a gap, got {other:?}"),
    }
    let mut first = None;
    lagging.read(1, &mut |run| first = Some(split_run(run)[0].0));
    assert_eq!(first, Some(oldest));
    // Exactness: one microsecond later the oldest expires.
    let created_oldest = T0 + (oldest - 1) * HOUR_US / 6;
    clock.set_us(created_oldest + 24 * HOUR_US);
    assert_eq!(r.oldest_id(), oldest);
    clock.set_us(created_oldest + 24 * HOUR_US + 1);
    assert_eq!(r.oldest_id(), oldest + 1);
    assert_eq!(r.first_id_at_or_after(created_oldest), oldest);
}

#[test]
fn idempotency_keys_return_the_original_id_even_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let cfg = config(SEG, Durability::Batch);
    let (mut log, _) = open(dir.path(), &cfg, &clock);
    let a = log
        .append(Author::None, &body(None, Some(b"key-a"), b"1"))
        .unwrap();
    assert_eq!(a, AppendOutcome::Appended(1));
    log.append(Author::None, &body(None, None, b"2")).unwrap();
    assert_eq!(
        log.append(Author::None, &body(None, Some(b"key-a"), b"again"))
            .unwrap(),
        AppendOutcome::Duplicate(1)
    );
    // Fill past a segment so the key lives in a sealed segment.
    for i in 0..200u64 {
        log.append(Author::None, &body(None, None, &payload_for(i, 500)))
            .unwrap();
    }
    let b = log
        .append(Author::None, &body(None, Some(b"key-b"), b"b"))
        .unwrap();
    log.commit().unwrap();
    drop(log); // no close: recovery must find the keys
    let (mut log, _) = open(dir.path(), &cfg, &clock);
    assert_eq!(
        log.append(Author::None, &body(None, Some(b"key-a"), b"x"))
            .unwrap(),
        AppendOutcome::Duplicate(1)
    );
    assert_eq!(
        log.append(Author::None, &body(None, Some(b"key-b"), b"x"))
            .unwrap(),
        AppendOutcome::Duplicate(b.id())
    );
    // Outside retention the key is new again.
    clock.advance_us(24 * HOUR_US + 1);
    let again = log
        .append(Author::None, &body(None, Some(b"key-a"), b"x"))
        .unwrap();
    assert!(matches!(again, AppendOutcome::Appended(_)));
}

#[test]
fn a_full_disk_fails_appends_cleanly_and_they_resume_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (mut log, _) = open(dir.path(), &config(SEG, Durability::Batch), &clock);
    for i in 1..=10u64 {
        log.append(Author::None, &body(None, None, &payload_for(i, 1000)))
            .unwrap();
        assert_eq!(log.commit().unwrap(), i);
    }
    log.set_allocation_failure(true);
    let mut acked = 10u64;
    let mut full = false;
    for i in 11..=200u64 {
        let stored = log
            .append(Author::None, &body(None, None, &payload_for(i, 1000)))
            .and_then(|_| log.commit());
        match stored {
            Ok(head) => {
                assert_eq!(head, i);
                acked = head;
            }
            Err(StorageError::StorageFull) => {
                full = true;
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(full, "the file had to grow or a segment had to be made");
    assert!(
        !std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .path()
            .to_string_lossy()
            .ends_with(".tmp")),
        "no partial file is left behind"
    );
    assert_eq!(log.written_id(), acked, "what failed was rolled back");
    assert!(matches!(
        log.append(Author::None, &body(None, None, &payload_for(0, 1000)))
            .and_then(|_| log.commit()),
        Err(StorageError::StorageFull)
    ));
    assert_eq!(read_all(&log).len() as u64, acked);
    log.set_allocation_failure(false);
    let next = log
        .append(
            Author::None,
            &body(None, None, &payload_for(acked + 1, 1000)),
        )
        .unwrap();
    assert_eq!(next.id(), acked + 1, "no id was used by the failed appends");
    log.commit().unwrap();
    log.close().unwrap();
    let (log, report) = open(dir.path(), &config(SEG, Durability::Batch), &clock);
    assert_eq!(report.hole, None, "a clean close leaves no hole");
    let all = read_all(&log);
    assert_eq!(all.len() as u64, acked + 1);
    assert!(all.iter().all(|(id, p)| *p == payload_for(*id, 1000)));
}

#[test]
fn deleted_or_damaged_indexes_are_rebuilt_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let cfg = config(SEG, Durability::None);
    let (mut log, _) = open(dir.path(), &cfg, &clock);
    for i in 1..=400u64 {
        log.append(Author::None, &body(Some("r"), None, &payload_for(i, 600)))
            .unwrap();
    }
    log.commit().unwrap();
    let all = read_all(&log);
    log.close().unwrap();
    let mut idx: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    idx.sort();
    assert!(idx.len() >= 3);
    std::fs::remove_file(&idx[0]).unwrap(); // a sealed segment's index
    let mut bytes = std::fs::read(&idx[1]).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xff; // its seal entry
    std::fs::write(&idx[1], &bytes).unwrap();
    std::fs::write(idx.last().unwrap(), b"garbage").unwrap(); // the active one
    let (log, report) = open(dir.path(), &cfg, &clock);
    assert_eq!(report.rebuilt_indexes, 3);
    assert!(report.quarantined.is_empty());
    assert_eq!(report.next_id, 401);
    assert_eq!(read_all(&log), all);
    let r = log.reader();
    assert_eq!(r.get(123, |raw| decode(raw).0), Some(123));
    let mut n = 0;
    r.page(
        Some(b"r"),
        None,
        None,
        Order::NewestFirst,
        1000,
        &mut |_| {
            n += 1;
            true
        },
    );
    assert_eq!(n, 400);
    drop(log);
    let (_, report) = open(dir.path(), &cfg, &clock);
    assert_eq!(
        report.rebuilt_indexes, 0,
        "rebuilt indexes were written back"
    );
}

#[test]
fn a_reader_thread_never_sees_torn_records_while_the_writer_appends() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (mut log, _) = open(dir.path(), &config(SEG, Durability::None), &clock);
    let reader = log.reader();
    let done = Arc::new(AtomicBool::new(false));
    let total = 3000u64;
    let d = done.clone();
    let t = std::thread::spawn(move || {
        let mut c = reader.cursor(0, None);
        let mut expect = 1u64;
        loop {
            let finished = d.load(Ordering::Acquire);
            let chunk = c.read(8192, &mut |run| {
                for (id, p) in split_run(run) {
                    assert_eq!(id, expect, "ids are contiguous");
                    assert_eq!(p, payload_for(id, (id % 300) as usize));
                    expect += 1;
                }
            });
            if chunk == Chunk::UpToDate && finished {
                return expect - 1;
            }
        }
    });
    for i in 1..=total {
        log.append(
            Author::None,
            &body(None, None, &payload_for(i, (i % 300) as usize)),
        )
        .unwrap();
        if i % 3 == 0 {
            log.commit().unwrap();
        }
    }
    log.commit().unwrap();
    done.store(true, Ordering::Release);
    assert_eq!(t.join().unwrap(), total);
}

#[test]
fn a_record_larger_than_a_segment_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (mut log, _) = open(dir.path(), &config(SEG, Durability::None), &clock);
    let big = vec![0u8; SEG as usize];
    assert!(matches!(
        log.append(Author::None, &body(None, None, &big)),
        Err(StorageError::Invalid(_))
    ));
    assert_eq!(
        log.append(Author::None, &body(None, None, b"ok"))
            .unwrap()
            .id(),
        1
    );
}

#[test]
fn destroy_removes_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let chan = dir.path().join("c1");
    let (mut log, _) = open(&chan, &config(SEG, Durability::None), &clock);
    log.append(Author::None, &body(None, None, b"x")).unwrap();
    log.commit().unwrap();
    log.destroy().unwrap();
    assert!(!chan.exists());
}

#[test]
fn a_failed_sync_poisons_the_log_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (mut log, _) = open(dir.path(), &config(SEG, Durability::Batch), &clock);
    log.append(Author::None, &body(None, None, b"1")).unwrap();
    assert_eq!(log.commit().unwrap(), 1);
    log.set_sync_failure(true);
    log.append(Author::None, &body(None, None, b"2")).unwrap();
    assert!(matches!(log.commit(), Err(StorageError::Poisoned(_))));
    assert_eq!(
        log.reader().head_id(),
        2,
        "readers saw the record at append"
    );
    assert_eq!(
        log.reader().committed_id(),
        1,
        "nothing counts as stored after the failed sync"
    );
    assert_eq!(log.synced_id(), 1);
    log.set_sync_failure(false);
    // Never retried and acknowledged: the log stays poisoned.
    assert!(matches!(log.commit(), Err(StorageError::Poisoned(_))));
    assert!(matches!(
        log.append(Author::None, &body(None, None, b"3")),
        Err(StorageError::Poisoned(_))
    ));
    assert!(matches!(log.sync(), Err(StorageError::Poisoned(_))));
}

#[test]
fn interval_durability_publishes_at_once_and_syncs_when_due() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (mut log, _) = open(
        dir.path(),
        &config(SEG, Durability::Interval { ms: 50 }),
        &clock,
    );
    log.append(Author::None, &body(None, None, b"1")).unwrap();
    assert_eq!(log.commit().unwrap(), 1);
    assert_eq!(log.reader().head_id(), 1);
    assert_eq!(log.synced_id(), 0, "not due yet");
    clock.advance_us(50_000);
    log.append(Author::None, &body(None, None, b"2")).unwrap();
    assert_eq!(log.commit().unwrap(), 2);
    assert_eq!(log.synced_id(), 2, "due: synced");
    log.append(Author::None, &body(None, None, b"3")).unwrap();
    log.commit().unwrap();
    assert_eq!(log.synced_id(), 2);
    log.sync().unwrap();
    assert_eq!(log.synced_id(), 3);
}

#[test]
fn durability_none_syncs_only_when_asked_and_then_covers_rotated_segments() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (mut log, _) = open(dir.path(), &config(SEG, Durability::None), &clock);
    for i in 1..=200u64 {
        log.append(Author::None, &body(None, None, &payload_for(i, 900)))
            .unwrap();
        log.commit().unwrap();
    }
    assert_eq!(log.synced_id(), 0);
    log.sync().unwrap();
    assert_eq!(log.synced_id(), 200);
}

#[test]
fn room_indexes_come_back_from_sidecars_or_a_walk_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let cfg = config(SEG, Durability::None);
    let (mut log, _) = open(dir.path(), &cfg, &clock);
    let mut lobby = Vec::new();
    for i in 1..=600u64 {
        let room = if i % 3 == 0 {
            Some("lobby")
        } else {
            Some("other")
        };
        if i % 3 == 0 {
            lobby.push(i);
        }
        log.append(Author::None, &body(room, None, &payload_for(i, 250)))
            .unwrap();
    }
    log.commit().unwrap();
    log.close().unwrap();
    let page_all = |log: &ChannelLog| {
        let mut got = Vec::new();
        log.reader().page(
            Some(b"lobby"),
            None,
            None,
            Order::OldestFirst,
            1000,
            &mut |raw| {
                got.push(decode(raw).0);
                true
            },
        );
        got
    };
    let (mut log, _) = open(dir.path(), &cfg, &clock);
    assert_eq!(
        page_all(&log),
        lobby,
        "sealed sidecars plus a walk of the active segment"
    );
    // New records after the reopen are found too, and sealed with the rest.
    for i in 601..=900u64 {
        let room = if i % 3 == 0 { Some("lobby") } else { None };
        if i % 3 == 0 {
            lobby.push(i);
        }
        log.append(Author::None, &body(room, None, &payload_for(i, 250)))
            .unwrap();
    }
    log.commit().unwrap();
    assert_eq!(page_all(&log), lobby);
    log.close().unwrap();
    // Damage every room sidecar: readers fall back to walking the segments.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rooms") {
            let mut b = std::fs::read(&p).unwrap();
            if b.len() > 40 {
                b[30] ^= 0xff;
                std::fs::write(&p, b).unwrap();
            }
        }
    }
    let (log, _) = open(dir.path(), &cfg, &clock);
    assert_eq!(page_all(&log), lobby);
    let mut c = log.reader().cursor(0, Some(b"lobby"));
    let mut got = Vec::new();
    while let Chunk::Records { .. } = c.read(1 << 16, &mut |run| got.extend(split_run(run))) {}
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), lobby);
}

#[test]
fn a_crash_after_the_log_went_idle_leaves_no_hole_in_the_ids() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let cfg = config(SEG, Durability::Batch);
    let (mut log, _) = open(dir.path(), &cfg, &clock);
    for i in 1..=5u64 {
        log.append(Author::None, &body(None, None, &payload_for(i, 10)))
            .unwrap();
        log.commit().unwrap();
    }
    assert!(!log.release_unused_ids().unwrap(), "not idle yet");
    drop(log);
    // A crash while busy: the log continues above its reservation.
    let (mut log, report) = open(dir.path(), &cfg, &clock);
    let hole = report.hole.expect("a crash while busy leaves a hole");
    assert_eq!(hole.kept_id, 5);
    let next = report.next_id;
    log.append(Author::None, &body(None, None, b"x")).unwrap();
    log.commit().unwrap();
    clock.advance_us(tidewire::limits::LOG_IDLE_CLOSE_US);
    assert!(
        log.release_unused_ids().unwrap(),
        "idle: unused ids given back"
    );
    drop(log);
    // A crash while idle: no hole, ids continue right after the last one.
    let (log, report) = open(dir.path(), &cfg, &clock);
    assert_eq!(report.hole, None);
    assert_eq!(report.next_id, next + 1);
    assert_eq!(read_all(&log).len(), 6);
}
