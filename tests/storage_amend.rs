//! Edits and removals in the storage engine: the current view, the raw
//! view, uuids given by publishers, and what survives a reopen, a rotation,
//! a crash and the end of retention.

mod storage_common;

use storage_common::*;
use tidewire::clock::ManualClock;
use tidewire::storage::record::{self, Action, Author, ContentType, MessageFields, RecordView};
use tidewire::storage::{
    AmendError, AmendTarget, AppendOutcome, ChannelLog, Durability, Order, View,
};

const AUTHOR: Author = Author::ApiKey(1);

fn body_with_uuid(uuid: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let fields = MessageFields {
        uuid: Some(uuid),
        ..MessageFields::default()
    };
    record::encode_body(&mut out, &fields, payload);
    record::check_body(&mut out).expect("valid body");
    out
}

fn allow_all(_: &RecordView<'_>) -> Result<(), String> {
    Ok(())
}

fn edit(log: &mut ChannelLog, target: AmendTarget, payload: &[u8]) -> Result<u64, AmendError> {
    log.amend_at(
        AUTHOR,
        target,
        Some((ContentType::Text, payload)),
        &mut allow_all,
        T0,
    )
    .map(|a| a.id)
}

fn remove(log: &mut ChannelLog, id: u64) -> Result<u64, AmendError> {
    log.amend_at(AUTHOR, AmendTarget::Id(id), None, &mut allow_all, T0)
        .map(|a| a.id)
}

/// (id, action, ref_id, payload) of a page in `view`.
fn page(log: &ChannelLog, current: bool, order: Order) -> Vec<(u64, Action, Option<u64>, Vec<u8>)> {
    let mut out = Vec::new();
    log.reader().page_as(
        None,
        None,
        None,
        order,
        1000,
        View {
            viewer: None,
            current,
        },
        &mut |raw| {
            let v = RecordView::decode(raw).unwrap().unwrap().0;
            out.push((v.id(), v.action(), v.ref_id(), v.payload().to_vec()));
            true
        },
    );
    out
}

fn payloads(rows: &[(u64, Action, Option<u64>, Vec<u8>)]) -> Vec<(u64, String)> {
    rows.iter()
        .map(|r| (r.0, String::from_utf8_lossy(&r.3).into_owned()))
        .collect()
}

fn publish(log: &mut ChannelLog, payload: &[u8]) -> u64 {
    log.append(AUTHOR, &body(None, None, payload)).unwrap().id()
}

#[test]
fn current_view_folds_edits_and_drops_removals_raw_view_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (mut log, _) = open(dir.path(), &config(1 << 20, Durability::Batch), &clock);
    for p in ["a", "b", "c", "d"] {
        publish(&mut log, p.as_bytes());
    }
    // Editing a message appended in the same batch writes it first.
    assert_eq!(edit(&mut log, AmendTarget::Id(2), b"b2").unwrap(), 5);
    assert_eq!(edit(&mut log, AmendTarget::Id(2), b"b3").unwrap(), 6);
    assert_eq!(remove(&mut log, 3).unwrap(), 7);
    log.flush().unwrap();
    assert!(matches!(remove(&mut log, 3), Err(AmendError::Removed(3))));
    assert!(matches!(
        edit(&mut log, AmendTarget::Id(3), b"x"),
        Err(AmendError::Removed(3))
    ));
    assert!(matches!(
        edit(&mut log, AmendTarget::Id(6), b"x"),
        Err(AmendError::NotAMessage(6))
    ));
    assert!(matches!(
        edit(&mut log, AmendTarget::Id(99), b"x"),
        Err(AmendError::NotFound(_))
    ));
    assert!(matches!(
        edit(&mut log, AmendTarget::Uuid([1; 16]), b"x"),
        Err(AmendError::NotFound(_))
    ));
    // A refused amendment appends nothing.
    assert_eq!(log.next_id(), 8);
    let denied = log.amend_at(
        AUTHOR,
        AmendTarget::Id(1),
        None,
        &mut |_| Err("not yours".into()),
        T0,
    );
    assert!(matches!(denied, Err(AmendError::Denied(_))));
    assert_eq!(log.next_id(), 8);

    let cur = page(&log, true, Order::OldestFirst);
    assert_eq!(
        payloads(&cur),
        vec![(1, "a".into()), (2, "b3".into()), (4, "d".into())]
    );
    assert_eq!(cur[1].2, Some(6), "ref_id names the latest edit");
    assert_eq!(cur[1].1, Action::Custom);
    let newest = page(&log, true, Order::NewestFirst);
    assert_eq!(
        newest.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![4, 2, 1]
    );
    let raw = page(&log, false, Order::OldestFirst);
    assert_eq!(raw.len(), 7);
    assert_eq!((raw[4].1, raw[4].2), (Action::Edit, Some(2)));
    assert_eq!((raw[6].1, raw[6].2), (Action::Remove, Some(3)));

    let r = log.reader();
    let get = |id| r.get_current(id, u64::MAX, |raw| decode(raw).1);
    assert_eq!(get(2), Some(b"b3".to_vec()));
    assert_eq!(get(3), None, "removed");
    assert_eq!(get(5), None, "an edit record is not a message");
    // Up to id 5 only the first edit exists.
    assert_eq!(
        r.get_current(2, 5, |raw| decode(raw).1),
        Some(b"b2".to_vec())
    );
    assert_eq!(
        r.get(3, |raw| decode(raw).1),
        Some(b"c".to_vec()),
        "raw stays"
    );
}

#[test]
fn amendments_and_uuids_survive_reopen_rotation_and_a_lost_keys_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    // Small segments: amendments land in other segments than their targets.
    let cfg = config(64 * 1024, Durability::Batch);
    let (mut log, _) = open(dir.path(), &cfg, &clock);
    let big = vec![b'x'; 3000];
    let mut want = std::collections::BTreeMap::new();
    for i in 1..=60u64 {
        let id = log
            .append(AUTHOR, &body_with_uuid([i as u8; 16], &big))
            .unwrap()
            .id();
        want.insert(id, big.clone());
    }
    log.flush().unwrap();
    for i in (1..=60u64).step_by(7) {
        let p = format!("edited {i}").into_bytes();
        edit(&mut log, AmendTarget::Uuid([i as u8; 16]), &p).unwrap();
        want.insert(i, p);
    }
    for i in (3..=60u64).step_by(11) {
        remove(&mut log, i).unwrap();
        want.remove(&i);
    }
    log.commit().unwrap();
    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert!(segments > 2, "rotations happened ({segments} segments)");
    let view = |log: &ChannelLog| -> Vec<(u64, Vec<u8>)> {
        page(log, true, Order::OldestFirst)
            .into_iter()
            .map(|r| (r.0, r.3))
            .collect()
    };
    let expect: Vec<(u64, Vec<u8>)> = want.clone().into_iter().collect();
    assert_eq!(view(&log), expect);
    log.close().unwrap();

    let (mut log, _) = open(dir.path(), &cfg, &clock);
    assert_eq!(view(&log), expect, "after a reopen");
    // The uuid index came back: a duplicate uuid is the original message.
    assert_eq!(
        log.append(AUTHOR, &body_with_uuid([9; 16], b"again"))
            .unwrap(),
        AppendOutcome::Duplicate(9)
    );
    assert!(matches!(remove(&mut log, 3), Err(AmendError::Removed(3))));
    log.close().unwrap();

    // Every `.keys` sidecar lost: sealed segments without a seal are
    // scanned, the active one is recovered from its records.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "keys" || x == "idx") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let (log, report) = open(dir.path(), &cfg, &clock);
    assert!(report.rebuilt_indexes > 0);
    assert_eq!(view(&log), expect, "rebuilt from the records");
    assert_eq!(log.id_of_uuid(&[15; 16]), Some(15));
}

#[test]
fn amendments_of_expired_messages_are_forgotten_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut cfg = config(64 * 1024, Durability::Batch);
    cfg.segment_age_us = HOUR_US;
    let (mut log, _) = open(dir.path(), &cfg, &clock);
    publish(&mut log, b"old");
    edit(&mut log, AmendTarget::Id(1), b"old2").unwrap();
    log.commit().unwrap();
    clock.advance_us(25 * HOUR_US);
    log.maintain().unwrap();
    assert!(matches!(
        edit(&mut log, AmendTarget::Id(1), b"x"),
        Err(AmendError::NotFound(_))
    ));
    let id = publish(&mut log, b"new");
    log.flush().unwrap();
    assert_eq!(
        payloads(&page(&log, true, Order::OldestFirst)),
        vec![(id, "new".into())]
    );
}
