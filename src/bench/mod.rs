//! `tidewire bench`: a load generator in the manner of `nats bench`.
//!
//! Modes: `pub` (publish-only throughput into the log), `fanout` (N publishers
//! to M subscribers over C channels), `lat` (publish→deliver latency at a fixed
//! rate, corrected for coordinated omission) and `ack` (pipelined publishes
//! with acknowledgements, with ack latency). Every run is bounded in message
//! count and in time. It speaks to the server through the Rust client only;
//! `--embedded` starts a server in-process on a temporary directory.

mod http;
mod idle;

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::client::{Client, ClientError, OutgoingMessage, RawNext};
use crate::config::ServerConfig;
use crate::storage::record::RecordView;
use crate::storage::Durability;
use crate::wire::{AckMode, Start};

/// Any error that ends a benchmark run.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Publish-only throughput (no subscribers).
    Pub,
    /// Publishers and subscribers: delivered throughput and latency.
    Fanout,
    /// Latency at a fixed publish rate.
    Lat,
    /// Pipelined acknowledged publishes: throughput and ack latency.
    Ack,
    /// HTTP long polls: memory per parked poll, publish→all-answered latency.
    HttpPoll,
    /// HTTP publishes over keep-alive connections: requests/s.
    HttpPub,
    /// A fixed answer of the HTTP router, same loop: requests/s.
    HttpStatic,
    /// Server memory per idle authenticated connection.
    Idle,
}

impl Mode {
    fn is_http(self) -> bool {
        matches!(self, Mode::HttpPoll | Mode::HttpPub | Mode::HttpStatic)
    }
}

/// A benchmark run's settings.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// What to measure.
    pub mode: Mode,
    /// Server address (ignored with `embedded`).
    pub server: String,
    /// Admin key (ignored with `embedded`).
    pub key: String,
    /// Start a server in-process on a temporary directory.
    pub embedded: bool,
    /// Durability of the server the bench starts (`None`: the server's
    /// default, `batch`).
    pub durability: Option<Durability>,
    /// io threads of the server the bench starts (`None`: the server's
    /// default, one per core).
    pub io_threads: Option<usize>,
    /// Publisher connections.
    pub pubs: usize,
    /// Subscriber connections.
    pub subs: usize,
    /// Channels the publishers and subscribers spread over.
    pub channels: usize,
    /// Rooms per channel (0: none): publishers cycle through them message by
    /// message, subscriber `i` follows room `i % rooms`.
    pub rooms: usize,
    /// Payload bytes per message (at least 16: two timestamps lead it).
    pub size: usize,
    /// Messages to publish in all.
    pub count: u64,
    /// Messages per publish frame.
    pub batch: usize,
    /// Publish rate for `lat` (messages per second).
    pub rate: u64,
    /// Acknowledgement mode of the publishes.
    pub ack: AckMode,
    /// Publish frames in flight before waiting for an ack (`ack` mode).
    pub window: usize,
    /// Messages published before measuring (to a separate channel).
    pub warmup: u64,
    /// Hard limit on the measured phase.
    pub max_secs: u64,
    /// Print one JSON object instead of text.
    pub json: bool,
    /// HTTP shim address (HTTP modes, without `embedded` / `spawn`).
    pub http: String,
    /// Start the server as a separate process (so its memory can be read).
    pub spawn: bool,
    /// The server's process id, for its resident memory (HTTP modes).
    pub server_pid: Option<u32>,
    /// Parked polls (`http-poll`).
    pub polls: usize,
    /// Rounds (`http-poll`).
    pub rounds: usize,
    /// Connections (`http-pub`, `http-static`).
    pub conns: usize,
}

/// A server process started by the bench (`--spawn`), stopped on drop.
struct Spawned {
    child: std::process::Child,
    dir: std::path::PathBuf,
    addr: String,
    http: String,
}

impl Spawned {
    fn start(cfg: &BenchConfig, key: &str) -> Result<Spawned, BenchError> {
        use std::io::BufRead;
        let dir = std::env::temp_dir().join(format!("tidewire-bench-srv-{}", std::process::id()));
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ]);
        if let Some(n) = cfg.io_threads {
            cmd.arg("--io-threads").arg(n.max(1).to_string());
        }
        if let Some(d) = cfg.durability {
            cmd.arg("--durability").arg(match d {
                Durability::None => "none".to_string(),
                Durability::Batch => "batch".to_string(),
                Durability::Interval { ms } => format!("interval:{ms}"),
            });
        }
        let mut child = cmd
            .arg("--data-dir")
            .arg(&dir)
            .env("TIDEWIRE_ADMIN_KEY", key)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let (mut addr, mut http) = (String::new(), String::new());
        while addr.is_empty() || http.is_empty() {
            let line = lines.next().ok_or("the server exited")??;
            if let Some(a) = line.strip_prefix("tidewire: listening on ") {
                addr = a.trim().to_string();
            } else if let Some(a) = line.strip_prefix("tidewire: HTTP shim listening on ") {
                http = a.trim().to_string();
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Ok(Spawned {
            child,
            dir,
            addr,
            http,
        })
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // A bench run that failed still stops its server.
        if let Err(e) = self.child.kill() {
            tracing::debug!(error = %e, "the bench server had exited");
        }
        if let Err(e) = self.child.wait() {
            tracing::debug!(error = %e, "could not reap the bench server");
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::debug!(error = %e, "could not remove the bench server's directory");
        }
    }
}

/// Nanoseconds since the run's base instant, for payload timestamps.
fn now_ns(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Records `ns`; a value over the histogram's range (a minute, past every
/// deadline) is the only error and cannot occur in a bounded run.
fn record(h: &mut Histogram<u64>, ns: u64) {
    if h.record(ns.max(1)).is_err() {
        tracing::debug!(ns, "latency sample out of range");
    }
}

/// Latency percentiles in microseconds.
fn percentiles(h: &Histogram<u64>) -> Value {
    let us = |ns: u64| ns as f64 / 1000.0;
    json!({
        "samples": h.len(),
        "p50_us": us(h.value_at_quantile(0.50)),
        "p90_us": us(h.value_at_quantile(0.90)),
        "p99_us": us(h.value_at_quantile(0.99)),
        "p999_us": us(h.value_at_quantile(0.999)),
        "max_us": us(h.max()),
    })
}

/// A payload that leads with the intended and the actual send time (ns).
fn payload_with_time(size: usize, intended_ns: u64, actual_ns: u64, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&intended_ns.to_le_bytes());
    buf.extend_from_slice(&actual_ns.to_le_bytes());
    buf.resize(size.max(16), b'x');
}

/// The (intended, actual) send times a record's payload carries.
fn times_of(record: &[u8]) -> Option<(u64, u64)> {
    let v = RecordView::parse_trusted(record).ok()?;
    let p = v.payload();
    let intended = u64::from_le_bytes(p.get(..8)?.try_into().ok()?);
    let actual = u64::from_le_bytes(p.get(8..16)?.try_into().ok()?);
    Some((intended, actual))
}

/// The room of message `n` (or of subscriber `n`) when the run uses rooms.
fn room_name(rooms: usize, n: u64) -> Option<String> {
    (rooms > 0).then(|| format!("r{}", n % rooms as u64))
}

/// Messages subscriber `i` receives: all of its channel's, or those of its
/// room when `pubs_here` publishers each cycle `rooms` rooms from room 0.
fn expected_in_room(channel_total: u64, pubs_here: u64, rooms: usize, i: usize) -> u64 {
    if rooms == 0 || pubs_here == 0 {
        return channel_total;
    }
    let per_pub = channel_total / pubs_here;
    let (rooms, room) = (rooms as u64, (i % rooms) as u64);
    pubs_here * (per_pub / rooms + u64::from(room < per_pub % rooms))
}

/// Live progress on stderr when it is a terminal.
struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(label: &'static str, sh: Arc<SubShared>) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Progress { stop, thread: None };
        }
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let secs = start.elapsed().as_secs_f64().max(1e-9);
                let p = sh.published.load(Ordering::Relaxed);
                let d = sh.delivered.load(Ordering::Relaxed);
                eprint!(
                    "\r{label}: {secs:.1}s published {p} ({:.0}/s) delivered {d} ({:.0}/s)   ",
                    p as f64 / secs,
                    d as f64 / secs
                );
            }
            eprintln!();
        });
        Progress {
            stop,
            thread: Some(thread),
        }
    }
    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::debug!("the progress line panicked");
            }
        }
    }
}

/// Runs a benchmark, prints its report and returns it as JSON.
///
/// # Errors
/// Connection, server or setup errors.
pub fn run(cfg: &BenchConfig) -> Result<Value, BenchError> {
    let mut embedded_dir = None;
    let mut handle = None;
    let mut spawned = None;
    let mut http_addr = cfg.http.clone();
    let mut server_pid = cfg.server_pid;
    let (addr, key) = if cfg.spawn {
        let key = crate::broker::generate_key()?;
        let s = Spawned::start(cfg, &key)?;
        let addr = s.addr.clone();
        http_addr.clone_from(&s.http);
        server_pid = Some(s.child.id());
        spawned = Some(s);
        (addr, key)
    } else if cfg.embedded {
        let dir = std::env::temp_dir().join(format!("tidewire-bench-{}", std::process::id()));
        let key = crate::broker::generate_key()?;
        let mut sc = ServerConfig::new(&dir);
        sc.listen = "127.0.0.1:0".parse()?;
        if let Some(n) = cfg.io_threads {
            sc.io_threads = n.max(1);
        }
        sc.admin_key = Some(key.clone());
        if let Some(d) = cfg.durability {
            sc.log.durability = d;
        }
        sc.log.segment_size = 1 << 30;
        if cfg.mode.is_http() {
            sc.http_listen = Some("127.0.0.1:0".parse()?);
        }
        let h = crate::server::start(sc)?;
        let addr = h.local_addr().to_string();
        if let Some(a) = h.http_addr() {
            http_addr = a.to_string();
        }
        handle = Some(h);
        embedded_dir = Some(dir);
        (addr, key)
    } else {
        (cfg.server.clone(), cfg.key.clone())
    };
    let result = if cfg.mode == Mode::Idle {
        idle::run_idle(&addr, &key, cfg.conns, server_pid, cfg.max_secs)
    } else if cfg.mode.is_http() {
        let b = http::HttpBench {
            http: http_addr,
            server: addr.clone(),
            key: key.clone(),
            polls: cfg.polls,
            rounds: cfg.rounds,
            conns: cfg.conns,
            count: cfg.count,
            size: cfg.size,
            server_pid,
            max_secs: cfg.max_secs,
        };
        match cfg.mode {
            Mode::HttpPoll => http::run_poll(&b),
            Mode::HttpPub => http::run_requests(&b, true),
            _ => http::run_requests(&b, false),
        }
    } else {
        run_against(cfg, &addr, &key)
    };
    drop(spawned);
    if let Some(h) = handle {
        h.shutdown();
        h.wait()?;
    }
    if let Some(dir) = embedded_dir {
        std::fs::remove_dir_all(&dir)?;
    }
    let report = result?;
    if cfg.json {
        println!("{report}");
    } else {
        print_human(&report);
    }
    Ok(report)
}

fn run_against(cfg: &BenchConfig, addr: &str, key: &str) -> Result<Value, BenchError> {
    let tag = format!(
        "{}-{}",
        std::process::id(),
        now_ns(Instant::now()) % 1_000_000
    );
    let mut admin = Client::connect(addr, key)?;
    let channels: Vec<String> = (0..cfg.channels.max(1))
        .map(|i| format!("bench-{tag}-{i}"))
        .collect();
    for name in &channels {
        admin.channel_create(&json!({ "name": name }))?;
    }
    if cfg.warmup > 0 {
        let name = format!("bench-{tag}-warmup");
        admin.channel_create(&json!({ "name": name }))?;
        let deadline = Instant::now() + Duration::from_secs(cfg.max_secs);
        publish_plain(addr, key, &name, cfg.warmup, cfg.size, 64, deadline)?;
        admin.channel_delete(&name)?;
    }
    let report = match cfg.mode {
        Mode::Pub => run_pub(cfg, addr, key, &channels)?,
        Mode::Fanout | Mode::Lat => run_fanout(cfg, addr, key, &channels)?,
        Mode::Ack => run_ack(cfg, addr, key, &channels)?,
        Mode::HttpPoll | Mode::HttpPub | Mode::HttpStatic | Mode::Idle => {
            return Err("this mode runs through run()".into())
        }
    };
    for name in &channels {
        admin.channel_delete(name)?;
    }
    Ok(report)
}

/// Publishes `count` messages without acknowledgements, then waits until all
/// are stored (a ping is answered only after every earlier publish).
fn publish_plain(
    addr: &str,
    key: &str,
    channel: &str,
    count: u64,
    size: usize,
    batch: usize,
    deadline: Instant,
) -> Result<u64, ClientError> {
    let mut c = Client::connect(addr, key)?;
    let mut payload = Vec::new();
    payload_with_time(size, 0, 0, &mut payload);
    let mut body = Vec::new();
    OutgoingMessage::new(&payload).encode_body(&mut body)?;
    let batch = batch.max(1);
    let bodies: Vec<&[u8]> = (0..batch).map(|_| &body[..]).collect();
    let mut sent = 0u64;
    while sent < count && Instant::now() < deadline {
        let k = usize::try_from((count - sent).min(batch as u64)).unwrap_or(batch);
        c.send_publish_bodies(channel, &bodies[..k], AckMode::None)?;
        sent += k as u64;
    }
    c.flush()?;
    c.ping()?;
    Ok(sent)
}

fn run_pub(
    cfg: &BenchConfig,
    addr: &str,
    key: &str,
    channels: &[String],
) -> Result<Value, BenchError> {
    let pubs = cfg.pubs.max(1);
    let per = cfg.count / pubs as u64;
    let deadline = Instant::now() + Duration::from_secs(cfg.max_secs);
    let barrier = Arc::new(Barrier::new(pubs + 1));
    let threads: Vec<_> = (0..pubs)
        .map(|i| {
            let (addr, key) = (addr.to_string(), key.to_string());
            let channel = channels[i % channels.len()].clone();
            let (size, batch) = (cfg.size, cfg.batch);
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                publish_plain(&addr, &key, &channel, per, size, batch, deadline)
            })
        })
        .collect();
    barrier.wait();
    let t0 = Instant::now();
    let mut sent = 0u64;
    for t in threads {
        sent += t.join().map_err(|_| "publisher thread panicked")??;
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(json!({
        "mode": "pub", "size": cfg.size, "pubs": pubs, "batch": cfg.batch,
        "published": sent, "secs": secs,
        "publish_msgs_per_s": sent as f64 / secs,
        "publish_mb_per_s": (sent as f64 * cfg.size as f64) / secs / 1e6,
        "timed_out": sent < per * pubs as u64,
    }))
}

struct SubResult {
    received: u64,
    last: Instant,
    /// Receive time minus actual send time.
    hist: Histogram<u64>,
    /// Receive time minus intended send time (coordinated omission corrected).
    hist_co: Histogram<u64>,
    gaps: u64,
}

/// What a subscriber thread shares with the run.
struct SubShared {
    base: Instant,
    deadline: Instant,
    ready: Barrier,
    delivered: AtomicU64,
    published: AtomicU64,
    /// Samples sent before this time (ns since `base`) are warm-up.
    measure_from_ns: AtomicU64,
}

fn subscriber(
    addr: &str,
    key: &str,
    channel: &str,
    room: Option<&str>,
    expect: u64,
    sh: &SubShared,
) -> Result<SubResult, ClientError> {
    let mut c = Client::connect(addr, key)?;
    c.subscribe(channel, room, Start::New)?;
    sh.ready.wait();
    let mut r = SubResult {
        received: 0,
        last: Instant::now(),
        hist: histogram(),
        hist_co: histogram(),
        gaps: 0,
    };
    while r.received < expect && Instant::now() < sh.deadline {
        let mut n = 0u64;
        let (hist, hist_co) = (&mut r.hist, &mut r.hist_co);
        let from = sh.measure_from_ns.load(Ordering::Relaxed);
        let got = c.next_raw(Some(Duration::from_millis(500)), |_, rec| {
            n += 1;
            if let Some((intended, actual)) = times_of(rec) {
                if actual >= from {
                    let now = now_ns(sh.base);
                    record(hist, now.saturating_sub(actual));
                    record(hist_co, now.saturating_sub(intended));
                }
            }
        })?;
        if let Some(RawNext::Gap { .. }) = got {
            r.gaps += 1;
        }
        r.received += n;
        sh.delivered.fetch_add(n, Ordering::Relaxed);
        if n > 0 {
            r.last = Instant::now();
        }
    }
    Ok(r)
}

/// One publisher of a fan-out or latency run; returns when it started.
fn publisher(
    addr: &str,
    key: &str,
    channel: &str,
    cfg: &BenchConfig,
    count: u64,
    rate: u64,
    sh: &SubShared,
) -> Result<Instant, ClientError> {
    let mut c = Client::connect(addr, key)?;
    let batch = cfg.batch.max(1);
    let mut payload = Vec::new();
    let mut bodies: Vec<Vec<u8>> = vec![Vec::new(); batch];
    sh.ready.wait();
    let start = Instant::now();
    let start_ns = now_ns(sh.base);
    let interval_ns = 1_000_000_000u64.checked_div(rate).unwrap_or(0);
    let mut sent = 0u64;
    while sent < count && Instant::now() < sh.deadline {
        let k = usize::try_from((count - sent).min(batch as u64)).unwrap_or(batch);
        let intended = start_ns + sent * interval_ns;
        if rate > 0 {
            let now = now_ns(sh.base);
            if intended > now {
                std::thread::sleep(Duration::from_nanos(intended - now));
            }
        }
        let actual = now_ns(sh.base);
        let intended = if rate > 0 { intended } else { actual };
        payload_with_time(cfg.size, intended, actual, &mut payload);
        for (j, body) in bodies.iter_mut().take(k).enumerate() {
            body.clear();
            let msg = OutgoingMessage::new(&payload);
            match room_name(cfg.rooms, sent + j as u64) {
                Some(room) => msg.room(&room).encode_body(body)?,
                None => msg.encode_body(body)?,
            }
        }
        let refs: Vec<&[u8]> = bodies[..k].iter().map(Vec::as_slice).collect();
        c.send_publish_bodies(channel, &refs, cfg.ack)?;
        if rate > 0 {
            c.flush()?;
        }
        sent += k as u64;
        sh.published.fetch_add(k as u64, Ordering::Relaxed);
    }
    c.flush()?;
    c.ping()?;
    Ok(start)
}

fn run_fanout(
    cfg: &BenchConfig,
    addr: &str,
    key: &str,
    channels: &[String],
) -> Result<Value, BenchError> {
    let subs = cfg.subs.max(1);
    let pubs = cfg.pubs.max(1);
    let lat_mode = cfg.mode == Mode::Lat;
    let per_pub = cfg.count / pubs as u64;
    let base = Instant::now();
    let rate = if lat_mode {
        (cfg.rate / pubs as u64).max(1)
    } else {
        0
    };
    // The latency run leaves its first tenth out as warm-up, like loadgen.
    let measure_from_ns = if lat_mode {
        (per_pub / 10) * (1_000_000_000 / rate)
    } else {
        0
    };
    let sh = Arc::new(SubShared {
        base,
        deadline: base + Duration::from_secs(cfg.max_secs),
        ready: Barrier::new(subs + pubs),
        delivered: AtomicU64::new(0),
        published: AtomicU64::new(0),
        measure_from_ns: AtomicU64::new(u64::MAX),
    });
    let per_channel: Vec<u64> = (0..channels.len())
        .map(|c| (0..pubs).filter(|p| p % channels.len() == c).count() as u64 * per_pub)
        .collect();
    let sub_threads: Vec<_> = (0..subs)
        .map(|i| {
            let (addr, key, sh) = (addr.to_string(), key.to_string(), sh.clone());
            let ci = i % channels.len();
            let pubs_here = (0..pubs).filter(|p| p % channels.len() == ci).count() as u64;
            let expect = expected_in_room(per_channel[ci], pubs_here, cfg.rooms, i);
            let (channel, room) = (channels[ci].clone(), room_name(cfg.rooms, i as u64));
            std::thread::spawn(move || {
                subscriber(&addr, &key, &channel, room.as_deref(), expect, &sh)
            })
        })
        .collect();
    let progress = Progress::start(if lat_mode { "lat" } else { "fanout" }, sh.clone());
    sh.measure_from_ns
        .store(now_ns(base) + measure_from_ns, Ordering::Relaxed);
    let pub_threads: Vec<_> = (0..pubs)
        .map(|i| {
            let (addr, key, sh) = (addr.to_string(), key.to_string(), sh.clone());
            let channel = channels[i % channels.len()].clone();
            let cfg = cfg.clone();
            std::thread::spawn(move || publisher(&addr, &key, &channel, &cfg, per_pub, rate, &sh))
        })
        .collect();
    let mut first_start: Option<Instant> = None;
    for t in pub_threads {
        let start = t.join().map_err(|_| "publisher thread panicked")??;
        first_start = Some(first_start.map_or(start, |f: Instant| f.min(start)));
    }
    let (mut hist, mut hist_co) = (histogram(), histogram());
    let (mut received, mut gaps, mut last) = (0u64, 0u64, base);
    for t in sub_threads {
        let r = t.join().map_err(|_| "subscriber thread panicked")??;
        received += r.received;
        last = last.max(r.last);
        gaps += r.gaps;
        hist.add(&r.hist)?;
        hist_co.add(&r.hist_co)?;
    }
    progress.finish();
    let start = first_start.unwrap_or(base);
    let secs = last
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(1e-9);
    let published = sh.published.load(Ordering::Relaxed);
    let expected: u64 = (0..subs)
        .map(|i| {
            let ci = i % channels.len();
            let pubs_here = (0..pubs).filter(|p| p % channels.len() == ci).count() as u64;
            expected_in_room(per_channel[ci], pubs_here, cfg.rooms, i)
        })
        .sum();
    Ok(json!({
        "mode": if lat_mode { "lat" } else { "fanout" },
        "size": cfg.size, "pubs": pubs, "subs": subs, "channels": channels.len(), "rooms": cfg.rooms,
        "batch": cfg.batch, "rate": if lat_mode { json!(cfg.rate) } else { Value::Null },
        "published": published, "delivered": received, "expected_deliveries": expected,
        "complete": received >= expected, "gaps": gaps, "secs": secs,
        "delivered_msgs_per_s": received as f64 / secs,
        "delivered_mb_per_s": received as f64 * cfg.size as f64 / secs / 1e6,
        "publish_msgs_per_s": published as f64 / secs,
        "latency": percentiles(&hist),
        "latency_co_corrected": if lat_mode { percentiles(&hist_co) } else { Value::Null },
    }))
}

fn run_ack(
    cfg: &BenchConfig,
    addr: &str,
    key: &str,
    channels: &[String],
) -> Result<Value, BenchError> {
    let mut c = Client::connect(addr, key)?;
    let channel = &channels[0];
    let deadline = Instant::now() + Duration::from_secs(cfg.max_secs);
    let ack = if cfg.ack == AckMode::None {
        AckMode::Append
    } else {
        cfg.ack
    };
    let batch = cfg.batch.max(1);
    let mut payload = Vec::new();
    payload_with_time(cfg.size, 0, 0, &mut payload);
    let mut body = Vec::new();
    OutgoingMessage::new(&payload).encode_body(&mut body)?;
    let bodies: Vec<&[u8]> = (0..batch).map(|_| &body[..]).collect();
    let mut hist = histogram();
    let mut in_flight: VecDeque<Instant> = VecDeque::new();
    let window = cfg.window.max(1);
    let one_ack = |c: &mut Client,
                   in_flight: &mut VecDeque<Instant>,
                   hist: &mut Histogram<u64>|
     -> Result<u64, ClientError> {
        let a = c.recv_ack()?;
        if let Some(t) = in_flight.pop_front() {
            record(
                hist,
                u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX),
            );
        }
        Ok(u64::from(a.count))
    };
    let t0 = Instant::now();
    let (mut sent, mut acked) = (0u64, 0u64);
    while sent < cfg.count && Instant::now() < deadline {
        // Fill the window and send it in one write, then take the
        // acknowledgements back down to half a window: a pipelining client
        // makes one system call per many frames, not one per frame.
        while in_flight.len() < window && sent < cfg.count {
            let k = usize::try_from((cfg.count - sent).min(batch as u64)).unwrap_or(batch);
            c.send_publish_bodies(channel, &bodies[..k], ack)?;
            in_flight.push_back(Instant::now());
            sent += k as u64;
        }
        c.flush()?;
        while in_flight.len() > window / 2 {
            acked += one_ack(&mut c, &mut in_flight, &mut hist)?;
        }
    }
    c.flush()?;
    while !in_flight.is_empty() {
        acked += one_ack(&mut c, &mut in_flight, &mut hist)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(json!({
        "mode": "ack", "size": cfg.size, "batch": batch, "window": window,
        "ack": if ack == AckMode::Durable { "durable" } else { "append" },
        "published": sent, "acknowledged": acked, "secs": secs,
        "acked_msgs_per_s": acked as f64 / secs,
        "acked_mb_per_s": acked as f64 * cfg.size as f64 / secs / 1e6,
        "ack_latency": percentiles(&hist),
    }))
}

fn print_human(r: &Value) {
    let f = |k: &str| r.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let lat = |v: &Value| {
        let g = |k: &str| v[k].as_f64().unwrap_or(0.0);
        format!(
            "p50 {:.1} µs, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1} ({} samples)",
            g("p50_us"),
            g("p90_us"),
            g("p99_us"),
            g("p999_us"),
            g("max_us"),
            v["samples"].as_u64().unwrap_or(0)
        )
    };
    match r["mode"].as_str() {
        Some("http-poll") => {
            println!(
                "{} parked polls: all answered p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (median of {} rounds)",
                r["polls"],
                f("all_answered_p50_us") / 1000.0,
                f("all_answered_p99_us") / 1000.0,
                f("all_answered_max_us") / 1000.0,
                r["rounds"]
            );
            match r["bytes_per_parked_poll"].as_f64() {
                Some(b) => println!("server resident memory per parked poll: {:.0} bytes", b),
                None => println!("server resident memory: unknown (use --spawn or --server-pid)"),
            }
        }
        Some("idle") => match r["bytes_per_idle_connection"].as_f64() {
            Some(b) => println!(
                "{} idle authenticated connections: {:.0} bytes of server memory each",
                r["conns"], b
            ),
            None => println!("server resident memory: unknown (use --spawn or --server-pid)"),
        },
        Some("http-pub") | Some("http-static") => println!(
            "{}: {:.0} requests/s over {} keep-alive connections ({} requests in {:.2} s); latency {}",
            r["mode"].as_str().unwrap_or(""),
            f("requests_per_s"),
            r["conns"],
            r["requests"],
            f("secs"),
            lat(&r["latency"])
        ),
        Some("pub") => println!(
            "publish: {:.0} msgs/s, {:.1} MB/s ({} messages in {:.2} s)",
            f("publish_msgs_per_s"),
            f("publish_mb_per_s"),
            r["published"],
            f("secs")
        ),
        Some("ack") => {
            println!(
                "acknowledged publish ({}): {:.0} msgs/s, {:.1} MB/s ({} messages in {:.2} s)",
                r["ack"].as_str().unwrap_or(""),
                f("acked_msgs_per_s"),
                f("acked_mb_per_s"),
                r["acknowledged"],
                f("secs")
            );
            println!("ack latency: {}", lat(&r["ack_latency"]));
        }
        _ => {
            let incomplete = if r["complete"].as_bool() == Some(true) {
                ""
            } else {
                ", INCOMPLETE"
            };
            println!(
                "delivered: {:.0} msgs/s, {:.1} MB/s ({} of {} deliveries in {:.2} s{incomplete})",
                f("delivered_msgs_per_s"),
                f("delivered_mb_per_s"),
                r["delivered"],
                r["expected_deliveries"],
                f("secs"),
            );
            println!("publish: {:.0} msgs/s", f("publish_msgs_per_s"));
            println!("publish→deliver latency: {}", lat(&r["latency"]));
            if r["latency_co_corrected"].is_object() {
                println!(
                    "corrected for coordinated omission: {}",
                    lat(&r["latency_co_corrected"])
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::{record_len, write_record};
    use crate::storage::Author;

    #[test]
    fn payloads_carry_their_intended_and_actual_send_times() {
        let mut p = Vec::new();
        payload_with_time(128, 0x0102_0304_0506_0708, 42, &mut p);
        assert_eq!(p.len(), 128);
        let mut body = Vec::new();
        OutgoingMessage::new(&p).encode_body(&mut body).unwrap();
        let mut rec = vec![0u8; record_len(Author::None, body.len())];
        write_record(&mut rec, 1, 2, Author::None, &body);
        assert_eq!(times_of(&rec), Some((0x0102_0304_0506_0708, 42)));
        payload_with_time(3, 9, 9, &mut p);
        assert_eq!(p.len(), 16, "payloads are at least two timestamps long");
    }

    #[test]
    fn room_runs_expect_each_room_its_share() {
        assert_eq!(expected_in_room(10, 1, 0, 3), 10);
        assert_eq!(expected_in_room(10, 1, 3, 0), 4);
        assert_eq!(expected_in_room(10, 1, 3, 1), 3);
        assert_eq!(expected_in_room(20, 2, 3, 5), 6);
        assert_eq!(room_name(3, 7).as_deref(), Some("r1"));
        assert_eq!(room_name(0, 7), None);
    }

    #[test]
    fn percentiles_are_reported_in_microseconds() {
        let mut h = histogram();
        for v in [1_000u64, 2_000, 3_000, 4_000] {
            record(&mut h, v);
        }
        let p = percentiles(&h);
        assert_eq!(p["samples"], 4);
        assert!((p["p50_us"].as_f64().unwrap() - 2.0).abs() < 0.01);
        assert!((p["max_us"].as_f64().unwrap() - 4.0).abs() < 0.01);
    }
}
