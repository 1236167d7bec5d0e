//! Crash safety: a child process appends and reports every acknowledged id
//! on stdout; the parent SIGKILLs it at random moments, reopens the log and
//! checks that every acknowledged record is there exactly once, in id order,
//! with its CRC intact, and that ids continue after the reopen.
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
        writeln!(out, "acked {head}").expect("parent reads");
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
    let mut acked_max = 0u64;
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
            let mut max = 0u64;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(id) = line.strip_prefix("acked ") {
                    max = max.max(id.trim().parse().unwrap());
                }
            }
            max
        });
        std::thread::sleep(Duration::from_millis(run_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        acked_max = acked_max.max(lines.join().unwrap());

        let clock = ManualClock::new(clock::system().now_us());
        let (mut log, report) = open(&dir, &config(SEG, Durability::Batch), &clock);
        assert!(report.quarantined.is_empty(), "round {round}: {report:?}");
        let all = read_all(&log);
        let n = all.len() as u64;
        assert!(
            n >= acked_max,
            "round {round}: {n} records, {acked_max} acknowledged"
        );
        for (i, (id, payload)) in all.iter().enumerate() {
            assert_eq!(*id, i as u64 + 1, "round {round}: ids in order, once each");
            assert_eq!(
                *payload,
                payload_for(*id, len_for(*id)),
                "round {round}: id {id}"
            );
        }
        assert_eq!(report.next_id, n + 1, "round {round}");
        let id = log
            .append(
                Author::ApiKey(n + 1),
                &body(None, None, &payload_for(n + 1, len_for(n + 1))),
            )
            .unwrap()
            .id();
        assert_eq!(id, n + 1, "round {round}: ids continue");
        log.commit().unwrap();
        acked_max = n + 1;
        log.close().unwrap();
    }
    assert!(acked_max > rounds, "the children made progress");
}
