//! Storage engine micro-benchmarks: append throughput beside a raw copy into
//! a mapped file, and group-commit appends under `Durability::Batch`.
//!
//! Run briefly: `cargo bench --bench storage -- --quick` (see benches/README.md).
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tidewire::clock;
use tidewire::storage::record::ContentType;
use tidewire::storage::record::{self, MessageFields};
use tidewire::storage::{AmendTarget, Author, ChannelLog, Durability, LogConfig, Order, View};

const SEGMENT_SIZE: u64 = 128 * 1024 * 1024;
/// Bytes written per fresh file. Each chunk starts a new log (or file) and
/// deletes it after timing, so both sides pay the same first-touch page
/// faults and dirty memory stays bounded (no writeback throttling skews
/// the numbers); no rotation falls inside the timed part.
const CHUNK_BYTES: u64 = 64 * 1024 * 1024;

fn body(payload_len: usize) -> Vec<u8> {
    let mut b = Vec::new();
    record::encode_body(&mut b, &MessageFields::default(), &vec![7u8; payload_len]);
    record::check_body(&mut b).expect("valid body");
    b
}

fn config(durability: Durability) -> LogConfig {
    LogConfig {
        segment_size: SEGMENT_SIZE,
        durability,
        ..LogConfig::default()
    }
}

/// Appends `iters` records in chunks into fresh logs, committing every `batch`.
fn run_appends(iters: u64, body: &[u8], durability: Durability, batch: u64) -> Duration {
    let chunk = CHUNK_BYTES / record::record_len(Author::ApiKey(1), body.len()) as u64;
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(chunk);
        left -= n;
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) =
            ChannelLog::open(dir.path(), config(durability), clock::system()).expect("open");
        let start = Instant::now();
        for i in 0..n {
            log.append(Author::ApiKey(1), body).expect("append");
            if (i + 1) % batch == 0 {
                log.commit().expect("commit");
            }
        }
        log.commit().expect("commit");
        total += start.elapsed();
        log.destroy().expect("destroy");
    }
    total
}

/// The same bytes copied into a mapped, preallocated file: the ceiling.
#[allow(unsafe_code)]
fn run_raw_copy(iters: u64, record_len: usize) -> Duration {
    let chunk = CHUNK_BYTES / record_len as u64;
    let src = vec![7u8; record_len];
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(chunk);
        left -= n;
        let file = tempfile::tempfile().expect("tempfile");
        file.set_len(SEGMENT_SIZE).expect("set_len");
        // SAFETY: the file is private to this function (an unlinked
        // temporary), sized before mapping and never truncated while mapped.
        let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }.expect("map");
        let mut pos = 0usize;
        let start = Instant::now();
        for _ in 0..n {
            map[pos..pos + record_len].copy_from_slice(&src);
            pos += record_len;
        }
        std::hint::black_box(&map);
        total += start.elapsed();
    }
    total
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(10)
        .throughput(Throughput::Elements(1));
    for payload in [16usize, 128, 1024] {
        let b = body(payload);
        let record_len = record::record_len(Author::ApiKey(1), b.len());
        g.bench_with_input(BenchmarkId::new("log_none", payload), &b, |bench, b| {
            bench.iter_custom(|iters| run_appends(iters, b, Durability::None, 256))
        });
        g.bench_with_input(
            BenchmarkId::new("raw_mmap_copy", payload),
            &record_len,
            |bench, &n| bench.iter_custom(|iters| run_raw_copy(iters, n)),
        );
    }
    g.finish();
}

fn group_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("group_commit");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(10)
        .throughput(Throughput::Elements(1));
    let b = body(1024);
    g.bench_function(BenchmarkId::new("batch_256", 1024), |bench| {
        bench.iter_custom(|iters| run_appends(iters, &b, Durability::Batch, 256))
    });
    g.finish();
}

/// Messages in the channel of the `amend` group.
const AMEND_MESSAGES: u64 = 1_000_000;
/// Every this many messages one is edited (10 %).
const AMEND_EVERY: u64 = 10;

/// A log of [`AMEND_MESSAGES`] messages of 128 B, one in [`AMEND_EVERY`]
/// edited, written and published.
fn edited_log(dir: &std::path::Path) -> ChannelLog {
    let (mut log, _) =
        ChannelLog::open(dir, config(Durability::None), clock::system()).expect("open");
    let b = body(128);
    for i in 1..=AMEND_MESSAGES {
        log.append(Author::ApiKey(1), &b).expect("append");
        if i % 4096 == 0 {
            log.commit().expect("commit");
        }
    }
    let now = clock::system().now_us();
    for i in (1..=AMEND_MESSAGES).step_by(AMEND_EVERY as usize) {
        log.amend_at(
            Author::ApiKey(1),
            AmendTarget::Id(i),
            Some((ContentType::Text, &[b'e'; 128])),
            &mut |_| Ok(()),
            now,
        )
        .expect("edit");
    }
    log.commit().expect("commit");
    log
}

/// Pages of 100, newest first, from spread-out positions of a channel of a
/// million messages with 10 % edited: the current view (edits folded in)
/// beside the raw records; and edits appended per second.
fn amend(c: &mut Criterion) {
    let mut g = c.benchmark_group("amend");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = edited_log(dir.path());
    let reader = log.reader();
    for (name, current) in [("page_100_raw", false), ("page_100_current", true)] {
        g.throughput(Throughput::Elements(100));
        g.bench_function(name, |bench| {
            let mut before = 1u64;
            bench.iter(|| {
                // A different page each time, across the whole channel.
                before = (before * 7919) % AMEND_MESSAGES + 200;
                let mut n = 0usize;
                let view = View {
                    viewer: None,
                    current,
                };
                reader.page_as(
                    None,
                    None,
                    Some(before),
                    Order::NewestFirst,
                    100,
                    view,
                    &mut |raw| {
                        n += raw.len();
                        true
                    },
                );
                std::hint::black_box(n)
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    let now = clock::system().now_us();
    let mut target = 2u64;
    g.bench_function("edit", |bench| {
        bench.iter(|| {
            target = (target + 7) % AMEND_MESSAGES + 1;
            log.amend_at(
                Author::ApiKey(1),
                AmendTarget::Id(target),
                Some((ContentType::Text, &[b'f'; 128])),
                &mut |_| Ok(()),
                now,
            )
            .expect("edit");
        })
    });
    log.commit().expect("commit");
    g.finish();
}

criterion_group!(benches, append, group_commit, amend);
criterion_main!(benches);
