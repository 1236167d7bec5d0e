//! Broker hot paths: frame encode/decode, publish checking (split + body
//! check), record encode + CRC, fan-out from one cursor read to K write
//! buffers, and one loopback publish→deliver round trip through a server.
//!
//! Run briefly: `cargo bench --bench broker -- --quick` (see benches/README.md).
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tidewire::client::{Client, OutgoingMessage};
use tidewire::clock;
use tidewire::config::ServerConfig;
use tidewire::storage::record::{self, MessageFields};
use tidewire::storage::{Author, ChannelLog, Durability, LogConfig};
use tidewire::wire::{self, AckMode, Start};

fn body(payload_len: usize) -> Vec<u8> {
    let mut b = Vec::new();
    record::encode_body(&mut b, &MessageFields::default(), &vec![7u8; payload_len]);
    b
}

fn frame_codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_codec");
    let b = body(128);
    let bodies: Vec<&[u8]> = (0..64).map(|_| &b[..]).collect();
    let mut frame = Vec::new();
    wire::encode_publish(&mut frame, 1, "orders", AckMode::Append, &bodies);
    g.throughput(Throughput::Elements(64));
    g.bench_function("encode_publish_64x128B", |bench| {
        let mut out = Vec::with_capacity(frame.len());
        bench.iter(|| {
            out.clear();
            wire::encode_publish(&mut out, 1, "orders", AckMode::Append, &bodies);
            out.len()
        })
    });
    g.bench_function("decode_and_check_publish_64x128B", |bench| {
        let mut scratch = frame.clone();
        bench.iter(|| {
            let h = wire::decode_header(&frame).unwrap().unwrap();
            let body = &frame[wire::FRAME_HEADER_LEN..];
            let wire::Request::Publish {
                count,
                messages_offset,
                ..
            } = wire::decode_request(&h, body).unwrap()
            else {
                unreachable!("a publish frame")
            };
            let region = &mut scratch[wire::FRAME_HEADER_LEN + messages_offset..];
            let ranges = wire::split_messages(region, count).unwrap();
            for (s, e) in ranges {
                record::check_body(&mut region[s..e]).unwrap();
            }
        })
    });
    g.finish();
}

fn record_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("record_encode_crc");
    for size in [16usize, 128, 1024] {
        let b = body(size);
        let mut dst = vec![0u8; record::record_len(Author::Admin(1), b.len())];
        g.throughput(Throughput::Bytes(dst.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |bench, _| {
            bench.iter(|| {
                record::write_record(&mut dst, 42, 1_700_000_000_000_000, Author::Admin(1), &b)
            })
        });
    }
    g.finish();
}

fn fan_out(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_size: 256 * 1024 * 1024,
        durability: Durability::None,
        ..LogConfig::default()
    };
    let (mut log, _) = ChannelLog::open(dir.path(), cfg, clock::system()).unwrap();
    let b = body(128);
    let n = 100_000u64;
    for _ in 0..n {
        log.append(Author::Admin(1), &b).unwrap();
    }
    log.commit().unwrap();
    let reader = log.reader();
    let mut g = c.benchmark_group("fan_out_to_k_cursors");
    for k in [1usize, 10, 100] {
        g.throughput(Throughput::Elements(n * k as u64));
        g.bench_with_input(BenchmarkId::from_parameter(k), &k, |bench, &k| {
            let mut bufs: Vec<Vec<u8>> = (0..k).map(|_| Vec::with_capacity(128 * 1024)).collect();
            bench.iter(|| {
                let mut delivered = 0u64;
                for buf in &mut bufs {
                    let mut cursor = reader.cursor(0, None);
                    loop {
                        buf.clear();
                        let start = wire::begin_deliver(buf, 1);
                        match cursor.read(64 * 1024, &mut |run| buf.extend_from_slice(run)) {
                            tidewire::storage::Chunk::Records { records, .. } => {
                                wire::end_deliver(buf, start, records);
                                delivered += u64::from(records);
                            }
                            _ => break,
                        }
                    }
                }
                delivered
            })
        });
    }
    g.finish();
}

fn loopback(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.io_threads = 2;
    cfg.admin_key = Some("bench-key".into());
    cfg.log.durability = Durability::None;
    let server = tidewire::server::start(cfg).unwrap();
    let addr = server.local_addr().to_string();
    let mut publisher = Client::connect(&addr, "bench-key").unwrap();
    publisher
        .channel_create(&serde_json::json!({"name": "e2e"}))
        .unwrap();
    let mut subscriber = Client::connect(&addr, "bench-key").unwrap();
    subscriber.subscribe("e2e", None, Start::New).unwrap();
    let payload = vec![1u8; 128];
    let mut g = c.benchmark_group("loopback");
    g.bench_function("publish_to_deliver_128B", |bench| {
        bench.iter(|| {
            publisher
                .publish("e2e", &OutgoingMessage::new(&payload), AckMode::None)
                .unwrap();
            publisher.flush().unwrap();
            let mut got = 0;
            while got == 0 {
                subscriber
                    .next_raw(Some(Duration::from_secs(5)), |_, _| got += 1)
                    .unwrap()
                    .expect("a delivery within 5 s");
            }
        })
    });
    g.finish();
    drop((publisher, subscriber));
    server.shutdown();
    server.wait().unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = frame_codec, record_encode, fan_out, loopback
}
criterion_main!(benches);
