//! Recovery: torn tails at every byte, bit flips, garbage and oversized
//! tails, physical truncation, damage below the synced watermark and in
//! sealed segments, and the pure recovery scan on random input (what the
//! fuzz targets call). Recovery never rewrites segment bytes and never gives
//! an id a reader may have seen.

mod storage_common;

use std::collections::HashSet;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use storage_common::*;
use tidewire::clock::ManualClock;
use tidewire::storage::recovery::{self, ScanStop};
use tidewire::storage::{Author, Durability, RecordView};

const SEG: u64 = 64 * 1024;
const HEADER: u64 = 64;

/// A log of `n` small records, dropped without close (Durability::None, so
/// nothing is below a synced watermark). Returns the segment path, its
/// pristine bytes and every record's [start, end) in the file.
struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    seg: PathBuf,
    pristine: Vec<(PathBuf, Vec<u8>)>,
    records: Vec<(u64, u64)>,
    payloads: Vec<Vec<u8>>,
}

fn fixture(n: u64) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("chan");
    let clock = ManualClock::new(T0);
    let (mut log, _) = open(&dir, &config(SEG, Durability::None), &clock);
    let mut payloads = Vec::new();
    for i in 1..=n {
        let p = payload_for(i, (i % 7) as usize + 1);
        log.append(Author::None, &body(None, None, &p)).unwrap();
        payloads.push(p);
        log.commit().unwrap();
    }
    drop(log);
    let seg = active_segment(&dir);
    let bytes = std::fs::read(&seg).unwrap();
    let mut records = Vec::new();
    recovery::scan_with(&bytes[HEADER as usize..], 0, &mut |off, v| {
        let s = HEADER + off as u64;
        records.push((s, s + v.raw().len() as u64));
    });
    assert_eq!(records.len() as u64, n);
    let pristine = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    Fixture {
        _dir: tmp,
        dir,
        seg,
        pristine,
        records,
        payloads,
    }
}

impl Fixture {
    fn restore(&self) {
        for e in std::fs::read_dir(&self.dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() && !self.pristine.iter().any(|(q, _)| *q == p) {
                std::fs::remove_file(p).unwrap();
            }
        }
        for (p, b) in &self.pristine {
            std::fs::write(p, b).unwrap();
        }
    }

    /// Opens, checks that exactly the first `keep` records are served (CRC
    /// intact), that the log continues above every id it had published
    /// (reporting the ids in between as a hole), and that appends work.
    /// Returns whether recovery reported the segment as cut.
    fn check_recovers_to(&self, keep: usize, what: &str) -> bool {
        let clock = ManualClock::new(T0 + HOUR_US);
        let before = std::fs::read(&self.seg).unwrap();
        let (mut log, report) = open(&self.dir, &config(SEG, Durability::None), &clock);
        assert!(report.quarantined.is_empty(), "{what}: {report:?}");
        assert_eq!(
            std::fs::read(&self.seg).unwrap(),
            before,
            "{what}: recovery leaves segment bytes alone"
        );
        let got = read_all(&log);
        let want: Vec<(u64, Vec<u8>)> = (0..keep)
            .map(|i| (i as u64 + 1, self.payloads[i].clone()))
            .collect();
        assert_eq!(got, want, "{what}");
        let n = self.records.len() as u64;
        assert!(report.next_id > n, "{what}: no published id is given again");
        let hole = report
            .hole
            .expect("a crash leaves a hole above the last record");
        assert_eq!(
            (hole.kept_id, hole.next_id),
            (keep as u64, report.next_id),
            "{what}"
        );
        let id = log
            .append(Author::None, &body(None, None, b"after"))
            .unwrap()
            .id();
        assert_eq!(id, report.next_id, "{what}: ids continue above the hole");
        log.commit().unwrap();
        let ids: Vec<u64> = read_all(&log).iter().map(|r| r.0).collect();
        assert_eq!(ids.len(), keep + 1, "{what}");
        assert_eq!(ids.last(), Some(&id), "{what}");
        drop(log);
        report.cut.iter().any(|c| c.0 == 1)
    }
}

fn zero_from(path: &Path, from: u64, to: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&vec![0u8; (to - from) as usize], from)
        .unwrap();
}

#[test]
fn a_tail_cut_at_every_byte_of_the_last_three_records_recovers_to_the_last_whole_one() {
    let fx = fixture(12);
    let n = fx.records.len();
    let end = fx.records[n - 1].1;
    for cut in fx.records[n - 3].0..end {
        fx.restore();
        zero_from(&fx.seg, cut, end);
        let keep = fx.records.iter().filter(|r| r.1 <= cut).count();
        fx.check_recovers_to(keep, &format!("zeroed from {cut}"));
        fx.restore();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fx.seg)
            .unwrap()
            .set_len(cut)
            .unwrap();
        fx.check_recovers_to(keep, &format!("file truncated to {cut}"));
    }
}

#[test]
fn every_bit_flip_in_the_last_record_cuts_exactly_that_record() {
    let fx = fixture(9);
    let n = fx.records.len();
    let (s, e) = fx.records[n - 1];
    for bit in 0..(e - s) * 8 {
        fx.restore();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fx.seg)
            .unwrap();
        let mut b = [0u8; 1];
        let at = s + bit / 8;
        f.read_exact_at(&mut b, at).unwrap();
        b[0] ^= 1 << (bit % 8);
        f.write_all_at(&b, at).unwrap();
        let cut = fx.check_recovers_to(n - 1, &format!("bit {bit} flipped"));
        assert!(
            cut,
            "bit {bit}: the damaged record is reported and sealed off"
        );
    }
}

#[test]
fn garbage_zero_and_oversized_length_tails_are_cut() {
    let fx = fixture(10);
    let n = fx.records.len();
    let end = fx.records[n - 1].1;
    let f = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fx.seg)
            .unwrap()
    };
    // Zero-filled tail: nothing to cut.
    fx.restore();
    assert!(!fx.check_recovers_to(n, "zero tail"));
    // Garbage after the last record.
    fx.restore();
    let garbage: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 1)
        .collect();
    f().write_all_at(&garbage, end).unwrap();
    assert!(fx.check_recovers_to(n, "garbage tail"));
    // A length far over any record.
    fx.restore();
    f().write_all_at(&u32::MAX.to_le_bytes(), end).unwrap();
    f().write_all_at(&[0xab; 12], end + 4).unwrap();
    assert!(fx.check_recovers_to(n, "oversized length"));
    // A plausible length whose body never arrived.
    fx.restore();
    f().write_all_at(&5000u32.to_le_bytes(), end).unwrap();
    fx.check_recovers_to(n, "length without body");
    // A stale, valid-looking copy of an earlier record (id out of order).
    fx.restore();
    let bytes = std::fs::read(&fx.seg).unwrap();
    let (s0, e0) = fx.records[0];
    f().write_all_at(&bytes[s0 as usize..e0 as usize], end)
        .unwrap();
    fx.check_recovers_to(n, "stale record after the end");
}

#[test]
fn damage_below_the_synced_watermark_serves_what_precedes_it_and_never_reuses_ids() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let cfg = config(SEG, Durability::Batch);
    let (mut log, _) = open(dir.path(), &cfg, &clock);
    for i in 1..=20u64 {
        log.append(Author::None, &body(None, None, &payload_for(i, 50)))
            .unwrap();
        log.commit().unwrap();
    }
    assert_eq!(log.synced_id(), 20);
    drop(log);
    let seg = active_segment(dir.path());
    let bytes = std::fs::read(&seg).unwrap();
    let mut records = Vec::new();
    recovery::scan_with(&bytes[HEADER as usize..], 0, &mut |off, v| {
        records.push(HEADER as usize + off + v.raw().len() / 2)
    });
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&[bytes[records[12]] ^ 0x40], records[12] as u64)
        .unwrap();
    let damaged = std::fs::read(&seg).unwrap();
    let (mut log, report) = open(dir.path(), &cfg, &clock);
    assert!(report.quarantined.is_empty(), "{report:?}");
    assert_eq!(report.cut.len(), 1, "{report:?}");
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        damaged,
        "the damaged bytes stay for inspection"
    );
    assert!(report.next_id > 20, "acknowledged ids are never reused");
    let id = log
        .append(Author::None, &body(None, None, b"x"))
        .unwrap()
        .id();
    assert_eq!(id, report.next_id);
    log.commit().unwrap();
    let got: Vec<u64> = read_all(&log).iter().map(|r| r.0).collect();
    let mut want: Vec<u64> = (1..=12).collect();
    want.push(id);
    assert_eq!(
        got, want,
        "every record before the damage is served, then the new one"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The recovery scan (fuzz target `recovery_scan`) never panics and only
    /// reports whole, CRC-valid, consecutive records.
    #[test]
    fn the_recovery_scan_never_panics_on_arbitrary_bytes(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        start in 0usize..5000,
    ) {
        let mut ids = Vec::new();
        let r = recovery::scan_with(&data, start, &mut |off, v| {
            assert!(RecordView::decode(&data[off..]).is_ok());
            ids.push(v.id());
        });
        prop_assert!(r.end <= data.len());
        prop_assert_eq!(r.records as usize, ids.len());
        prop_assert!(ids.windows(2).all(|w| w[1] == w[0] + 1));
        let _ = recovery::scan(&data, start);
        // Fuzz target `record_decode`.
        let _ = tidewire::storage::record::peek_record_len(&data);
        if let Ok(Some((v, used))) = RecordView::decode(&data) {
            prop_assert!(used <= data.len());
            let _ = (v.id(), v.created_at_us(), v.author(), v.room(), v.object_class());
            let _ = (v.pm_users().count(), v.exclude_users().count(), v.uuid(), v.ref_id());
            let _ = (v.idempotency_key(), v.payload(), v.visible_to(Some(b"u")));
        }
        let _ = RecordView::parse_trusted(&data);
        let mut body = data.clone();
        let _ = tidewire::storage::record::check_body(&mut body);
    }

    /// Valid records followed by random damage: the scan stops at or before
    /// the damage and keeps every record before it.
    #[test]
    fn the_scan_keeps_every_record_before_damage(
        n in 1u64..20,
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut data = Vec::new();
        let mut ends = Vec::new();
        for id in 1..=n {
            let b = body(None, None, &payload_for(id, (id % 9) as usize));
            let mut rec = vec![0u8; tidewire::storage::record::record_len(Author::None, b.len())];
            tidewire::storage::record::write_record(&mut rec, id, T0 + id, Author::None, &b);
            data.extend_from_slice(&rec);
            ends.push(data.len());
        }
        data.extend_from_slice(&[0u8; 64]);
        let clean = recovery::scan(&data, 0);
        prop_assert_eq!(clean.stop, ScanStop::EndOfData);
        prop_assert_eq!(clean.records, n);
        let i = at.index(ends[ends.len() - 1]);
        if data[i] != byte {
            data[i] = byte;
            let r = recovery::scan(&data, 0);
            let before = ends.iter().filter(|&&e| e <= i).count() as u64;
            prop_assert!(r.records >= before && r.records <= n);
            prop_assert!(r.records < n || r.stop != ScanStop::EndOfData || data[ends[ends.len()-1]..].iter().all(|&b| b == 0));
        }
    }
}

#[test]
fn a_corrupt_record_in_a_sealed_segment_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let cfg = config(SEG, Durability::None);
    let (mut log, _) = open(dir.path(), &cfg, &clock);
    for i in 1..=200u64 {
        log.append(Author::None, &body(None, None, &payload_for(i, 700)))
            .unwrap();
    }
    log.commit().unwrap();
    log.close().unwrap();
    let mut segs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let first = &segs[0];
    let bytes = std::fs::read(first).unwrap();
    let mut spans = Vec::new();
    recovery::scan_with(&bytes[HEADER as usize..], 0, &mut |off, v| {
        spans.push((HEADER as usize + off, v.id(), v.raw().len()))
    });
    let (pos, bad_id, len) = spans[5];
    let f = std::fs::OpenOptions::new().write(true).open(first).unwrap();
    f.write_all_at(&[bytes[pos + len - 1] ^ 1], (pos + len - 1) as u64)
        .unwrap();
    // The sealed segment is trusted through its index: opening does not read it.
    let (log, report) = open(dir.path(), &cfg, &clock);
    assert!(report.quarantined.is_empty());
    let r = log.reader();
    assert!(
        r.get(bad_id, |_| ()).is_none(),
        "the corrupt record is not served"
    );
    assert_eq!(r.get(bad_id - 1, |raw| decode(raw).0), Some(bad_id - 1));
    let got = read_all(&log);
    assert!(got.iter().all(|(id, p)| *p == payload_for(*id, 700)));
    assert!(!got.iter().any(|(id, _)| *id == bad_id));
    assert_eq!(
        got.last().unwrap().0,
        200,
        "reading continues in the next segment"
    );
}

/// A log over several 64 KiB segments (closed cleanly or dropped): its
/// directory, its pristine files, where each record lies and a checkpoint
/// from early on.
struct MultiFixture {
    tmp: tempfile::TempDir,
    pristine: Vec<(PathBuf, Vec<u8>)>,
    /// (segment path, start, end, id) of every record.
    spans: Vec<(PathBuf, u64, u64, u64)>,
    stale_checkpoint: Vec<u8>,
}

fn multi_segment_fixture(clean: bool) -> MultiFixture {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let cfg = config(SEG, Durability::Batch);
    let (mut log, _) = open(tmp.path(), &cfg, &clock);
    let mut stale_checkpoint = Vec::new();
    for i in 1..=180u64 {
        log.append(Author::None, &body(None, None, &payload_for(i, 1000)))
            .unwrap();
        if i % 10 == 0 {
            log.commit().unwrap();
        }
        if i == 60 {
            stale_checkpoint = std::fs::read(tmp.path().join("checkpoint")).unwrap();
        }
    }
    log.commit().unwrap();
    if clean {
        log.close().unwrap();
    } else {
        drop(log);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut spans = Vec::new();
    for p in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
    {
        let bytes = std::fs::read(p).unwrap();
        recovery::scan_with(&bytes[HEADER as usize..], 0, &mut |off, v| {
            let s = HEADER + off as u64;
            spans.push((p.clone(), s, s + v.raw().len() as u64, v.id()));
        });
    }
    assert!(
        files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .count()
            >= 3
    );
    let pristine = files
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    MultiFixture {
        tmp,
        pristine,
        spans,
        stale_checkpoint,
    }
}

#[test]
fn damage_at_random_places_of_active_and_sealed_segments_becomes_a_gap_never_a_stall() {
    for clean in [true, false] {
        let MultiFixture {
            tmp,
            pristine,
            spans,
            stale_checkpoint: stale,
        } = multi_segment_fixture(clean);
        let dir = tmp.path();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for round in 0..60u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_file() {
                    std::fs::remove_file(p).unwrap();
                } else {
                    std::fs::remove_dir_all(p).unwrap();
                }
            }
            for (p, b) in &pristine {
                std::fs::write(p, b).unwrap();
            }
            let (seg, s0, _, _) = &spans[(seed % spans.len() as u64) as usize];
            let at = s0 + (seed >> 20) % 200;
            let truncate = round % 3 == 0;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(seg)
                .unwrap();
            if truncate {
                f.set_len(at).unwrap();
            } else {
                let mut b = [0u8; 1];
                f.read_exact_at(&mut b, at).unwrap();
                b[0] ^= 1 << (seed % 8);
                f.write_all_at(&b, at).unwrap();
            }
            if round % 2 == 1 {
                std::fs::write(dir.join("checkpoint"), &stale).unwrap();
            }
            let what = format!(
                "clean {clean}, round {round}: {} at {}:{at}",
                if truncate { "cut" } else { "flip" },
                seg.display()
            );
            let clock = ManualClock::new(T0 + HOUR_US);
            let (mut log, report) = open(dir, &config(SEG, Durability::Batch), &clock);
            // Nothing with a bad CRC is served (read_all checks every CRC),
            // every payload is the one written, and every record before the
            // damage is there.
            let got = read_all(&log);
            assert!(
                got.iter().all(|(id, p)| *p == payload_for(*id, 1000)),
                "{what}"
            );
            let ids: HashSet<u64> = got.iter().map(|r| r.0).collect();
            for (p, _, end, id) in &spans {
                if p != seg || *end <= at {
                    assert!(
                        ids.contains(id),
                        "{what}: record {id} outside the damage is served"
                    );
                }
            }
            assert!(report.next_id > 180, "{what}: ids never go back");
            // A reader from the start reaches records written after the
            // restart: damage is stepped over, never a stall.
            let id = log
                .append(
                    Author::None,
                    &body(None, None, &payload_for(report.next_id, 1000)),
                )
                .unwrap()
                .id();
            log.commit().unwrap();
            let again = read_all(&log);
            assert_eq!(
                again.last().map(|r| r.0),
                Some(id),
                "{what}: a reader reaches the new record"
            );
        }
    }
}
