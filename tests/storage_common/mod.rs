//! Helpers shared by the storage tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use tidewire::clock::{ManualClock, SharedClock};
use tidewire::storage::record::{self, MessageFields};
use tidewire::storage::{ChannelLog, Durability, LogConfig, OpenReport, RecordView};

/// 2026-01-01T00:00:00Z in µs.
pub const T0: u64 = 1_767_225_600_000_000;
pub const HOUR_US: u64 = 3600 * 1_000_000;

pub fn body(room: Option<&str>, key: Option<&[u8]>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let fields = MessageFields {
        room,
        idempotency_key: key,
        ..MessageFields::default()
    };
    record::encode_body(&mut out, &fields, payload);
    record::check_body(&mut out).expect("valid body");
    out
}

pub fn config(segment_size: u64, durability: Durability) -> LogConfig {
    LogConfig {
        segment_size,
        segment_age_us: 1000 * HOUR_US,
        retention_us: 24 * HOUR_US,
        durability,
        ..LogConfig::default()
    }
}

pub fn open(dir: &Path, cfg: &LogConfig, clock: &Arc<ManualClock>) -> (ChannelLog, OpenReport) {
    let shared: SharedClock = clock.clone();
    ChannelLog::open(dir, cfg.clone(), shared).expect("open")
}

/// (id, payload) of a raw record, checking its CRC.
pub fn decode(raw: &[u8]) -> (u64, Vec<u8>) {
    let (v, used) = RecordView::decode(raw)
        .expect("valid record")
        .expect("whole record");
    assert_eq!(used, raw.len());
    (v.id(), v.payload().to_vec())
}

/// Splits a run of records into (id, payload), checking every CRC.
pub fn split_run(mut run: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    while !run.is_empty() {
        let (v, used) = RecordView::decode(run)
            .expect("valid record in run")
            .expect("whole record in run");
        out.push((v.id(), v.payload().to_vec()));
        run = &run[used..];
    }
    out
}

/// Every record a fresh cursor from 0 hands out (draining to UpToDate).
pub fn read_all(log: &ChannelLog) -> Vec<(u64, Vec<u8>)> {
    let mut c = log.reader().cursor(0, None);
    let mut out = Vec::new();
    loop {
        match c.read(64 * 1024, &mut |run| out.extend(split_run(run))) {
            tidewire::storage::Chunk::Records { .. } => {}
            tidewire::storage::Chunk::Gap { .. } => {}
            tidewire::storage::Chunk::UpToDate => return out,
        }
    }
}

/// The active (newest) segment file of a log directory.
pub fn active_segment(dir: &Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs.pop().expect("a segment")
}

pub fn payload_for(id: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (id as usize * 31 + i) as u8).collect()
}
