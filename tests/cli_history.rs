//! `tidewire history` against a real server: `--limit N` reads page by page
//! until N messages or the end of the history.

mod common;

use std::process::Command;

use serde_json::{json, Value};
use tidewire::client::{Client, OutgoingMessage};
use tidewire::wire::AckMode;

use common::{TestServer, ADMIN_KEY};

/// The ids `tidewire history CHANNEL ARGS --json` prints, in order.
fn history_ids(addr: &str, channel: &str, args: &[&str]) -> Vec<u64> {
    let out = Command::new(env!("CARGO_BIN_EXE_tidewire"))
        .args([
            "history", channel, "--json", "--server", addr, "--key", ADMIN_KEY,
        ])
        .args(args)
        .output()
        .expect("tidewire history runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["id"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn history_with_a_limit_reads_on_past_pages_cut_short_for_frame_size() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut c = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    c.channel_create(&json!({ "name": "big" })).unwrap();
    // 30 KB messages: about 33 fit one frame, so 100 take several pages.
    let payload = vec![b'x'; 30_000];
    for _ in 0..100 {
        c.publish("big", &OutgoingMessage::new(&payload), AckMode::Append)
            .unwrap();
    }
    let newest: Vec<u64> = (1..=100).rev().collect();
    assert_eq!(
        history_ids(&server.addr, "big", &["--limit", "100"]),
        newest
    );
    let oldest: Vec<u64> = (1..=100).collect();
    assert_eq!(
        history_ids(&server.addr, "big", &["--limit", "100", "--oldest-first"]),
        oldest
    );
    // A limit past the end stops at the end; a smaller one at the limit.
    assert_eq!(
        history_ids(&server.addr, "big", &["--limit", "500"]).len(),
        100
    );
    assert_eq!(
        history_ids(
            &server.addr,
            "big",
            &["--limit", "40", "--after", "50", "--oldest-first"]
        ),
        (51..=90).collect::<Vec<u64>>()
    );
}
