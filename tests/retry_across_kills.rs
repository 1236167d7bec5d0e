//! Idempotent retries across `kill -9`, with rotations every few hundred
//! messages.
//!
//! A server with the smallest segments (`--segment-size 65536`) takes
//! pipelined publishes, one message per frame, each with its own idempotency
//! key, and is killed with SIGKILL while they flow: in half of the rounds at
//! a random moment, in the other half right after a new segment file
//! appears in the channel's directory (a rotation in progress), with a
//! random delay of a few microseconds. Each round restarts the server on the
//! same directory and first retries, with the same keys, every message whose
//! acknowledgement did not arrive, then goes on with new ones. A last
//! restart retries whatever is still unacknowledged without a kill, then the
//! whole history is read back:
//!
//! * every key is stored exactly once (a retry of a stored message is
//!   acknowledged as a duplicate with the original id);
//! * every acknowledged id holds its key and payload;
//! * the ids acknowledged after each restart are above every id
//!   acknowledged before it.
//!
//! This holds under every durability policy (a process crash, not a power
//! loss), and each policy is run.
//!
//! `TIDEWIRE_KILL_ROUNDS=N` sets the rounds per policy (default
//! [`ROUNDS_DEFAULT`]; a nightly-sized run uses a few hundred);
//! `TIDEWIRE_KILL_SEED=S` replays the random choices of a failed run, whose
//! seed the failure prints.

mod proc_common;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proc_common::{Rng, Serve, ServerProcess};
use tidewire::client::OutgoingMessage;
use tidewire::wire::AckMode;

/// Rounds per policy in the default (CI) run.
const ROUNDS_DEFAULT: u64 = 50;
const ROUNDS_ENV: &str = "TIDEWIRE_KILL_ROUNDS";
const SEED_ENV: &str = "TIDEWIRE_KILL_SEED";
/// The smallest segment the server accepts: a rotation every ~300 messages.
const SEGMENT_BYTES: u64 = 65_536;
const CHANNEL: &str = "retry";
const PAYLOAD_LEN: usize = 150;
/// Longest random wait before a kill at a random moment.
const KILL_AFTER_MAX: Duration = Duration::from_millis(40);
/// Longest random wait between a new segment file and the kill.
const KILL_AFTER_ROTATION_MAX_US: u64 = 400;
/// A round whose kill never came (the rotation did not happen in time)
/// kills anyway after this.
const ROUND_MAX: Duration = Duration::from_secs(2);

fn key(n: u64) -> String {
    format!("rk-{n:08}")
}

fn payload(n: u64) -> Vec<u8> {
    let mut p = format!("retried message {n:08} ").into_bytes();
    p.resize(PAYLOAD_LEN, b'~');
    p
}

/// What the publishing side knows.
#[derive(Debug, Default)]
struct Ledger {
    /// Per key number: the acknowledged id, once one arrived.
    acked: Vec<Option<u64>>,
    /// Per round: the highest id acknowledged by the end of it.
    round_max_id: Vec<u64>,
    /// Per round: how its server was killed.
    kills: Vec<String>,
}

impl Ledger {
    fn max_id(&self) -> u64 {
        self.round_max_id.last().copied().unwrap_or(0)
    }

    fn unacked(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.acked.len() as u64).filter(|&n| self.acked[n as usize].is_none())
    }

    /// The round by the end of which `id` was acknowledged, by the id
    /// ranges (an id never acknowledged counts to the next round that
    /// acknowledged a higher one).
    fn round_of(&self, id: u64) -> usize {
        self.round_max_id
            .iter()
            .position(|&max| id <= max)
            .unwrap_or(self.round_max_id.len())
    }
}

/// Every channel directory of the server's data directory.
fn channel_dirs(data: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for inst in std::fs::read_dir(data.join("instances"))
        .into_iter()
        .flatten()
    {
        let channels = inst.map(|e| e.path().join("channels"));
        for ch in channels
            .ok()
            .and_then(|c| std::fs::read_dir(c).ok())
            .into_iter()
            .flatten()
        {
            out.extend(ch.ok().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    out
}

fn segment_files(dirs: &[PathBuf]) -> usize {
    dirs.iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        })
        .count()
}

/// Kills `pid` at a random moment, or right after the next rotation.
fn killer(pid: u32, data: PathBuf, at_rotation: bool, delay_us: u64, done: Arc<AtomicBool>) {
    let started = Instant::now();
    if at_rotation {
        let dirs = channel_dirs(&data);
        let before = segment_files(&dirs);
        while segment_files(&dirs) == before && started.elapsed() < ROUND_MAX {
            if done.load(Ordering::Relaxed) {
                return;
            }
        }
        let until = Instant::now() + Duration::from_micros(delay_us);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    } else {
        std::thread::sleep(Duration::from_micros(delay_us));
    }
    proc_common::send_signal(pid, libc::SIGKILL);
}

/// Publishes the retries, then new messages, pipelined, until the
/// connection breaks (the kill) or, with `finish`, until every retry is
/// acknowledged. Records every acknowledgement in the ledger and checks
/// that a message newly appended gets an id above `floor` (every id
/// acknowledged before this server started). Returns the highest id
/// acknowledged.
fn publish(ledger: &mut Ledger, server: &ServerProcess, window: usize, finish: bool) -> u64 {
    let floor = ledger.max_id();
    let mut max = floor;
    let Ok(mut c) = tidewire::client::Client::connect(server.addr(), proc_common::ADMIN_KEY) else {
        return max;
    };
    let mut queue: VecDeque<u64> = ledger.unacked().collect();
    let mut in_flight = VecDeque::new();
    loop {
        let next = match queue.pop_front() {
            Some(n) => Some(n),
            None if finish => None,
            None => {
                ledger.acked.push(None);
                Some(ledger.acked.len() as u64 - 1)
            }
        };
        if let Some(n) = next {
            let (k, p) = (key(n), payload(n));
            let m = OutgoingMessage::new(&p).idempotency_key(k.as_bytes());
            if c.send_publish(CHANNEL, &m, AckMode::Durable).is_err() {
                return max;
            }
            in_flight.push_back(n);
            if in_flight.len() < window {
                continue;
            }
        } else if in_flight.is_empty() {
            return max;
        }
        let ack = match c.recv_ack() {
            Ok(ack) => ack,
            Err(e) if finish => panic!("publish without a kill failed: {e}"),
            Err(_) => return max,
        };
        let n = in_flight.pop_front().expect("an ack answers a publish");
        let id = ack.ids()[0];
        assert!(
            !ack.duplicates.is_empty() || id > floor,
            "{} was appended with id {id}, not above {floor} acknowledged before the restart",
            key(n)
        );
        ledger.acked[n as usize] = Some(id);
        max = max.max(id);
    }
}

/// One round: start, publish, kill at a random moment or at a rotation.
fn round(ledger: &mut Ledger, serve: &Serve, data: &Path, rng: &mut Rng, first: bool) {
    let mut server = ServerProcess::spawn(serve);
    if first {
        server
            .connect()
            .channel_create(&serde_json::json!({ "name": CHANNEL }))
            .expect("channel created");
    }
    let at_rotation = rng.below(2) == 0;
    let delay_us = if at_rotation {
        rng.below(KILL_AFTER_ROTATION_MAX_US + 1)
    } else {
        rng.below(KILL_AFTER_MAX.as_micros() as u64 + 1)
    };
    let window = 1 << (4 + rng.below(6));
    let done = Arc::new(AtomicBool::new(false));
    let (pid, dir, flag) = (server.pid(), data.to_path_buf(), done.clone());
    let killer = std::thread::spawn(move || killer(pid, dir, at_rotation, delay_us, flag));
    let max = publish(ledger, &server, window, false);
    done.store(true, Ordering::Relaxed);
    ledger.kills.push(if at_rotation {
        format!("{delay_us} µs after a new segment file appeared, window {window}")
    } else {
        format!("{delay_us} µs after the start, window {window}")
    });
    killer.join().expect("killer thread");
    server.kill9();
    ledger.round_max_id.push(max);
}

/// First ids of the channel's segments, from the file names.
fn segment_first_ids(data: &Path) -> Vec<u64> {
    let mut firsts: Vec<u64> = channel_dirs(data)
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    firsts.sort_unstable();
    firsts
}

/// For a failure message: per round whose retries were stored again, how
/// many, where the first copies sit, and how the server was killed before.
fn describe_duplicates(ledger: &Ledger, twice: &[&Vec<u64>], data: &Path) -> String {
    let firsts = segment_first_ids(data);
    let segment_of = |id: u64| {
        let i = firsts.iter().rposition(|&f| f <= id)?;
        let last = firsts.get(i + 1).map(|next| (next - 1).to_string());
        Some(format!(
            "{}..={}",
            firsts[i],
            last.as_deref().unwrap_or("(active)")
        ))
    };
    let mut by_round: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for ids in twice {
        by_round
            .entry(ledger.round_of(ids[1]))
            .or_default()
            .push(ids[0]);
    }
    let mut out = format!("; retries stored again in {} rounds:", by_round.len());
    for (round, mut originals) in by_round.into_iter().take(12) {
        originals.sort_unstable();
        let (lo, hi) = (originals[0], originals[originals.len() - 1]);
        let kill = round
            .checked_sub(1)
            .and_then(|r| ledger.kills.get(r))
            .map_or("-", String::as_str);
        out.push_str(&format!(
            "\n  round {round}: {} keys whose first copies are ids {lo}..={hi} \
             (segments {} and {}); the server before was killed {kill}",
            originals.len(),
            segment_of(lo).unwrap_or_default(),
            segment_of(hi).unwrap_or_default(),
        ));
    }
    out
}

/// Reads everything back and asserts the module's rules.
fn verify(ledger: &Ledger, server: &ServerProcess, data: &Path, what: &str) {
    let mut c = server.connect();
    let history = proc_common::read_all(&mut c, CHANNEL);
    let mut stored: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for m in &history {
        let k = m.idempotency_key.as_deref().unwrap_or_default();
        let n = std::str::from_utf8(k)
            .ok()
            .and_then(|k| k.strip_prefix("rk-"))
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{what}: id {} has a key never sent: {k:?}", m.id));
        assert_eq!(
            m.payload,
            payload(n),
            "{what}: id {} has a wrong payload",
            m.id
        );
        stored.entry(n).or_default().push(m.id);
    }
    let twice: Vec<&Vec<u64>> = stored.values().filter(|ids| ids.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "{what}: {} of {} keys stored more than once{}",
        twice.len(),
        ledger.acked.len(),
        describe_duplicates(ledger, &twice, data)
    );
    for (n, id) in ledger.acked.iter().enumerate() {
        let id = id.unwrap_or_else(|| panic!("{what}: {} never acknowledged", key(n as u64)));
        assert_eq!(
            stored.get(&(n as u64)).map(Vec::as_slice),
            Some(&[id][..]),
            "{what}: {} was acknowledged with id {id}",
            key(n as u64)
        );
    }
}

fn run(durability: &str) {
    let (mut rng, seed) = Rng::from_env(SEED_ENV);
    let rounds = proc_common::env_number(ROUNDS_ENV, ROUNDS_DEFAULT);
    let what = format!("{durability}, {rounds} rounds, {SEED_ENV}={seed}");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let serve = Serve::new(&data)
        .durability(durability)
        .segment_size(SEGMENT_BYTES);
    let mut ledger = Ledger::default();
    for r in 0..rounds {
        round(&mut ledger, &serve, &data, &mut rng, r == 0);
    }
    let mut server = ServerProcess::spawn(&serve);
    let max = publish(&mut ledger, &server, 256, true);
    ledger.round_max_id.push(max);
    eprintln!(
        "{what}: {} keys, {} segment files",
        ledger.acked.len(),
        segment_files(&channel_dirs(&data))
    );
    verify(&ledger, &server, &data, &what);
    server.kill9();
}

#[test]
fn idempotent_retries_across_kills_at_rotation_store_each_key_once_under_batch() {
    run("batch");
}

#[test]
fn idempotent_retries_across_kills_at_rotation_store_each_key_once_under_interval() {
    run("interval:50");
}

#[test]
fn idempotent_retries_across_kills_at_rotation_store_each_key_once_under_none() {
    run("none");
}
