//! Fault injection inside the storage layer (`storage::FaultPlan`), the way
//! SQLite and TigerBeetle test their storage: the same workload of keyed
//! appends, commits, rotations (64 KiB segments) and upkeep runs once to
//! count its file operations, then once per operation with a crash at that
//! operation (a write at the crash point is torn), followed by recovery:
//! * after the process crash alone (the page cache survives);
//! * after a simulated power loss that undoes every write no sync covered,
//!   or a seeded random part of each (torn, dropped or kept);
//! * with a second crash inside recovery itself;
//! * with the disk full from that operation on, then space freed.
//!
//! After each, every acknowledged record is present exactly once with its
//! content, ids never go back below one a reader saw, and retrying every
//! idempotency key ever sent stores each key exactly once.
//!
//! `TIDEWIRE_FAULT_STEP` (default 1: every operation) thins the crash
//! points; `TIDEWIRE_FAULT_ROUNDS` sets the workload's length (default 80).

mod storage_common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use storage_common::*;
use tidewire::clock::ManualClock;
use tidewire::storage::{
    AppendOutcome, Author, ChannelLog, Durability, FaultPlan, Faults, LogConfig, OpKind,
    RecordView, StorageError,
};

const SEG: u64 = 64 * 1024;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A scratch directory, in memory where the machine has `/dev/shm`: the
/// faults are the plan's, so real syncs only cost time here.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new()
            .prefix("tidewire-faults")
            .tempdir_in(shm)
        {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

fn key_of(n: u64) -> Vec<u8> {
    format!("key-{n}").into_bytes()
}

fn payload_of(n: u64) -> Vec<u8> {
    payload_for(n, 300 + (n as usize * 397) % 1500)
}

/// What the workload saw: acknowledged records (id → key number), every key
/// number it sent, and the newest id published to readers.
#[derive(Debug, Default)]
struct Seen {
    acked: BTreeMap<u64, u64>,
    sent: HashSet<u64>,
    published_max: u64,
}

fn cfg(durability: Durability, plan: Option<&Arc<FaultPlan>>) -> LogConfig {
    LogConfig {
        faults: Faults(plan.cloned()),
        segment_age_us: 1000 * HOUR_US,
        ..config(SEG, durability)
    }
}

/// The workload: batches of 1–4 keyed messages (every fifth message repeats
/// an earlier key), a commit after each batch, upkeep every seventh. Stops
/// at the first error, which it returns.
fn workload(log: &mut ChannelLog, seen: &mut Seen, rounds: u64) -> Result<(), StorageError> {
    let mut n = 0u64;
    for round in 0..rounds {
        let mut batch = Vec::new();
        for j in 0..(round % 4 + 1) {
            n += 1;
            let key_n = if n.is_multiple_of(5) { n / 2 } else { n };
            seen.sent.insert(key_n);
            let out = log.append(
                Author::ApiKey(1),
                &body(None, Some(&key_of(key_n)), &payload_of(key_n)),
            )?;
            batch.push((out, key_n, j));
        }
        let head = log.commit()?;
        seen.published_max = seen.published_max.max(head);
        for (out, key_n, _) in batch {
            if let AppendOutcome::Appended(id) = out {
                seen.acked.insert(id, key_n);
            }
        }
        if round % 7 == 6 {
            log.maintain()?;
        }
    }
    Ok(())
}

/// The key number and payload check of every record of the log, in order.
fn records(log: &ChannelLog) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut c = log.reader().cursor(0, None);
    loop {
        let mut run_out = Vec::new();
        match c.read(1 << 20, &mut |run| {
            let mut run = run;
            while !run.is_empty() {
                let (v, used) = RecordView::decode(run).unwrap().unwrap();
                let key = std::str::from_utf8(v.idempotency_key().unwrap()).unwrap();
                let key_n: u64 = key.strip_prefix("key-").unwrap().parse().unwrap();
                assert_eq!(
                    v.payload(),
                    &payload_of(key_n)[..],
                    "record {} content",
                    v.id()
                );
                run_out.push((v.id(), key_n));
                run = &run[used..];
            }
        }) {
            tidewire::storage::Chunk::UpToDate => return out,
            _ => out.extend(run_out),
        }
    }
}

/// Opens the log after a fault and checks everything the header promises.
fn check(dir: &Path, durability: Durability, seen: &Seen, what: &str) {
    let clock = ManualClock::new(T0 + 1);
    let (mut log, report) = open(dir, &cfg(durability, None), &clock);
    assert!(report.quarantined.is_empty(), "{what}: {report:?}");
    let stored = records(&log);
    assert!(
        stored.windows(2).all(|w| w[0].0 < w[1].0),
        "{what}: ids in order, once each"
    );
    let by_id: HashMap<u64, u64> = stored.iter().copied().collect();
    for (id, key_n) in &seen.acked {
        assert_eq!(
            by_id.get(id),
            Some(key_n),
            "{what}: acknowledged id {id} lost"
        );
    }
    let mut keys = HashSet::new();
    for (id, key_n) in &stored {
        assert!(
            keys.insert(*key_n),
            "{what}: key {key_n} stored twice (id {id})"
        );
    }
    let max_stored = stored.last().map_or(0, |r| r.0);
    assert!(
        report.next_id > seen.published_max.max(max_stored),
        "{what}: next id {} gives an id a reader may have seen ({})",
        report.next_id,
        seen.published_max
    );
    // Retry every key ever sent: stored ones are duplicates of themselves,
    // the others are stored now, once.
    let key_ids: HashMap<u64, u64> = stored.iter().map(|&(id, k)| (k, id)).collect();
    let mut sent: Vec<u64> = seen.sent.iter().copied().collect();
    sent.sort_unstable();
    for key_n in sent {
        let out = log
            .append(
                Author::ApiKey(1),
                &body(None, Some(&key_of(key_n)), &payload_of(key_n)),
            )
            .unwrap();
        match (key_ids.get(&key_n), out) {
            (Some(&id), AppendOutcome::Duplicate(d)) => assert_eq!(d, id, "{what}: key {key_n}"),
            (None, AppendOutcome::Appended(id)) => assert!(id >= report.next_id, "{what}"),
            (had, out) => panic!("{what}: key {key_n} stored as {had:?}, retry gave {out:?}"),
        }
    }
    log.commit().unwrap();
    let after = records(&log);
    let unique: HashSet<u64> = after.iter().map(|r| r.1).collect();
    assert_eq!(
        unique.len(),
        after.len(),
        "{what}: a retried key was stored twice"
    );
    assert_eq!(unique, seen.sent, "{what}: every key is stored");
}

/// Runs the workload with `plan` until it fails (or ends), then drops the
/// log as a dead process would.
fn run_until_fault(dir: &Path, durability: Durability, plan: &Arc<FaultPlan>, rounds: u64) -> Seen {
    let clock = ManualClock::new(T0);
    let mut seen = Seen::default();
    let opened = ChannelLog::open(dir, cfg(durability, Some(plan)), clock.clone() as _);
    if let Ok((mut log, _)) = opened {
        // An error ends the run; none means the fault lies past its end.
        let _ = workload(&mut log, &mut seen, rounds);
        // Readers may have seen everything published, acknowledged or not.
        seen.published_max = seen.published_max.max(log.head_id());
        drop(log);
    }
    seen
}

fn ops_of_workload(durability: Durability, rounds: u64) -> u64 {
    let dir = scratch();
    let plan = FaultPlan::new();
    let seen = run_until_fault(dir.path(), durability, &plan, rounds);
    assert!(seen.acked.len() as u64 > rounds, "the workload ran");
    plan.ops()
}

fn crash_points(durability: Durability, power: Option<Option<u64>>) {
    let rounds = env_u64("TIDEWIRE_FAULT_ROUNDS", 80);
    let step = env_u64("TIDEWIRE_FAULT_STEP", 1).max(1);
    let total = ops_of_workload(durability, rounds);
    let mut k = 1;
    while k <= total + 1 {
        let dir = scratch();
        let plan = FaultPlan::new();
        plan.track_unsynced();
        plan.crash_at(k);
        let seen = run_until_fault(dir.path(), durability, &plan, rounds);
        if let Some(seed) = power {
            plan.power_cut(seed.map(|s| s ^ k)).unwrap();
        }
        check(
            dir.path(),
            durability,
            &seen,
            &format!("{durability:?} crash at op {k}/{total}, power {power:?}"),
        );
        k += step;
    }
}

#[test]
fn a_crash_at_every_operation_loses_nothing_acknowledged_under_batch() {
    crash_points(Durability::Batch, None);
}

#[test]
fn a_crash_at_every_operation_loses_nothing_acknowledged_under_none() {
    crash_points(Durability::None, None);
}

#[test]
fn a_power_loss_at_every_operation_keeps_every_synced_acknowledgement() {
    crash_points(Durability::Batch, Some(None));
}

#[test]
fn a_power_loss_that_keeps_random_parts_of_unsynced_writes_keeps_every_synced_acknowledgement() {
    crash_points(Durability::Batch, Some(Some(0x5eed)));
}

#[test]
fn a_crash_during_recovery_is_recovered_from_too() {
    let rounds = env_u64("TIDEWIRE_FAULT_ROUNDS", 80);
    let total = ops_of_workload(Durability::Batch, rounds);
    for k in [total / 3, total / 2, total * 3 / 4] {
        let dir = scratch();
        let plan = FaultPlan::new();
        plan.track_unsynced();
        plan.crash_at(k);
        let seen = run_until_fault(dir.path(), Durability::Batch, &plan, rounds);
        plan.power_cut(Some(k)).unwrap();
        // Count recovery's own operations, then crash at each of them.
        let probe = scratch();
        copy_dir(dir.path(), probe.path());
        let counter = FaultPlan::new();
        let clock = ManualClock::new(T0 + 1);
        drop(
            ChannelLog::open(
                probe.path(),
                cfg(Durability::Batch, Some(&counter)),
                clock.clone() as _,
            )
            .unwrap(),
        );
        for j in 1..=counter.ops() {
            let again = scratch();
            copy_dir(dir.path(), again.path());
            let second = FaultPlan::new();
            second.track_unsynced();
            second.crash_at(j);
            let _ = ChannelLog::open(
                again.path(),
                cfg(Durability::Batch, Some(&second)),
                clock.clone() as _,
            );
            second.power_cut(None).unwrap();
            check(
                again.path(),
                Durability::Batch,
                &seen,
                &format!("crash at {k}, then in recovery at {j}"),
            );
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn a_full_disk_at_any_operation_is_storage_full_and_writes_resume_when_space_returns() {
    let rounds = env_u64("TIDEWIRE_FAULT_ROUNDS", 80);
    let step = env_u64("TIDEWIRE_FAULT_STEP", 1).max(1);
    let total = ops_of_workload(Durability::Batch, rounds);
    let mut k = 1;
    while k <= total {
        let dir = scratch();
        let plan = FaultPlan::new();
        plan.disk_full_at(k);
        let clock = ManualClock::new(T0);
        let mut seen = Seen::default();
        let opened = ChannelLog::open(
            dir.path(),
            cfg(Durability::Batch, Some(&plan)),
            clock.clone() as _,
        );
        let Ok((mut log, _)) = opened else {
            k += step;
            continue;
        };
        match workload(&mut log, &mut seen, rounds) {
            Ok(()) | Err(StorageError::StorageFull) => {}
            Err(e) => {
                panic!("full disk at op {k}: {e} (a full disk must be StorageFull, never fatal)")
            }
        }
        plan.set_disk_full(false);
        workload(&mut log, &mut seen, 6)
            .unwrap_or_else(|e| panic!("full disk at op {k}: writes did not resume: {e}"));
        log.close().unwrap();
        check(
            dir.path(),
            Durability::Batch,
            &seen,
            &format!("full disk at op {k}"),
        );
        k += step;
    }
}

#[test]
fn a_log_opens_on_a_full_disk_serves_reads_and_takes_writes_once_space_returns() {
    let dir = scratch();
    let plan = FaultPlan::new();
    let mut seen = Seen::default();
    {
        let clock = ManualClock::new(T0);
        let (mut log, _) =
            ChannelLog::open(dir.path(), cfg(Durability::Batch, None), clock as _).unwrap();
        workload(&mut log, &mut seen, 30).unwrap();
        // Dropped while busy: the next open must start a new segment above
        // the reservation, and the disk is full.
    }
    plan.set_disk_full(true);
    let clock = ManualClock::new(T0 + 1);
    let (mut log, report) =
        ChannelLog::open(dir.path(), cfg(Durability::Batch, Some(&plan)), clock as _).unwrap();
    assert!(report.hole.is_some(), "{report:?}");
    let writes: Vec<_> = plan
        .op_log()
        .into_iter()
        .filter(|(op, _)| *op != OpKind::Sync)
        .collect();
    assert!(
        writes.is_empty(),
        "opening after a crash writes nothing: {writes:?}"
    );
    let stored = records(&log);
    for (id, key_n) in &seen.acked {
        assert!(
            stored.contains(&(*id, *key_n)),
            "acknowledged id {id} is served"
        );
    }
    let later = 1_000_000;
    let message = body(None, Some(&key_of(later)), &payload_of(later));
    let refused = log
        .append(Author::ApiKey(1), &message)
        .and_then(|_| log.commit());
    assert!(
        matches!(refused, Err(StorageError::StorageFull)),
        "{refused:?}"
    );
    plan.set_disk_full(false);
    let id = log.append(Author::ApiKey(1), &message).unwrap().id();
    log.commit().unwrap();
    seen.sent.insert(later);
    seen.acked.insert(id, later);
    assert!(id >= report.next_id);
    log.close().unwrap();
    check(
        dir.path(),
        Durability::Batch,
        &seen,
        "after a start on a full disk",
    );
}
