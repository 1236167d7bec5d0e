//! Crash safety: a child process appends and reports every acknowledged id
//! on stdout; the parent SIGKILLs it at random moments, reopens the log and
//! checks that every acknowledged record is there exactly once, in id order,
//! with its CRC intact, and that ids continue above every id ever given.
//!
//! `TIDEWIRE_CRASH_ROUNDS` sets the number of rounds (20 by default).

mod storage_common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use storage_common::*;
use tidewire::clock::{self, ManualClock};
use tidewire::storage::{Author, ChannelLog, Durability};

const SEG: u64 = 64 * 1024;
const CHILD_ENV: &str = "TIDEWIRE_CRASH_CHILD_DIR";
const DURABILITY_ENV: &str = "TIDEWIRE_CRASH_CHILD_BATCH";
const TEST_NAME: &str = "acknowledged_records_survive_sigkill_at_random_moments";

fn len_for(id: u64) -> usize {
    (id.wrapping_mul(2_654_435_761) % 2000) as usize
}

/// The child role: append forever, printing `acked <head>` after each commit.
fn child(dir: &str) -> ! {
    let durability = if std::env::var_os(DURABILITY_ENV).is_some() {
        Durability::Batch
    } else {
        Durability::None
    };
    let (mut log, _) = ChannelLog::open(dir.as_ref(), config(SEG, durability), clock::system())
        .expect("child open");
    let mut out = std::io::stdout();
    let mut batch = 1u64;
    loop {
        let first = log.next_id();
        for _ in 0..batch {
            let id = log.next_id();
            let out = log
                .append(
                    Author::ApiKey(id),
                    &body(None, None, &payload_for(id, len_for(id))),
                )
                .expect("child append");
            assert_eq!(out.id(), id);
        }
        let head = log.commit().expect("child commit");
        writeln!(out, "acked {first} {head}").expect("parent reads");
        out.flush().expect("parent reads");
        batch = batch % 17 + 1;
    }
}

#[test]
fn acknowledged_records_survive_sigkill_at_random_moments() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(dir.to_str().unwrap());
    }
    let rounds: u64 = std::env::var("TIDEWIRE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("chan");
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut acked: Vec<u64> = Vec::new();
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let run_ms = 50 + seed % 100;
        let mut cmd = Command::new(&exe);
        cmd.args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if round % 2 == 1 {
            cmd.env(DURABILITY_ENV, "1");
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = std::thread::spawn(move || {
            let mut ids = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(range) = line.strip_prefix("acked ") {
                    let mut it = range.split(' ').map(|v| v.trim().parse::<u64>().unwrap());
                    let (first, last) = (it.next().unwrap(), it.next().unwrap());
                    ids.extend(first..=last);
                }
            }
            ids
        });
        std::thread::sleep(Duration::from_millis(run_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        acked.extend(lines.join().unwrap());

        let clock = ManualClock::new(clock::system().now_us());
        let (mut log, report) = open(&dir, &config(SEG, Durability::Batch), &clock);
        assert!(report.quarantined.is_empty(), "round {round}: {report:?}");
        let all = read_all(&log);
        assert!(
            all.windows(2).all(|w| w[0].0 < w[1].0),
            "round {round}: ids in order, once each"
        );
        for (id, payload) in &all {
            assert_eq!(
                *payload,
                payload_for(*id, len_for(*id)),
                "round {round}: id {id}"
            );
        }
        let present: std::collections::HashSet<u64> = all.iter().map(|r| r.0).collect();
        let lost: Vec<&u64> = acked.iter().filter(|id| !present.contains(id)).collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged ids lost: {lost:?}"
        );
        let max_seen = acked
            .iter()
            .chain(present.iter())
            .max()
            .copied()
            .unwrap_or(0);
        assert!(
            report.next_id > max_seen,
            "round {round}: ids never go back"
        );
        let next = report.next_id;
        let id = log
            .append(
                Author::ApiKey(next),
                &body(None, None, &payload_for(next, len_for(next))),
            )
            .unwrap()
            .id();
        assert_eq!(id, next, "round {round}: ids continue");
        log.commit().unwrap();
        acked.push(id);
        log.close().unwrap();
    }
    assert!(
        acked.len() as u64 > rounds * 2,
        "the children made progress"
    );
}
