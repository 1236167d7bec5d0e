//! `tidewire bench --mode idle`: the server memory one idle, authenticated
//! binary connection costs. `--conns N` connections each send `Hello` and
//! `Auth` and then nothing; the server's resident memory (`--spawn` or
//! `--server-pid`) before and after gives the cost of one.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http::rss_kib;
use super::BenchError;
use crate::client::Client;
use crate::wire::{self, Request, PROTOCOL_VERSION};

/// Runs the idle-connection measurement.
///
/// # Errors
/// Connection errors, or connections that never show up on the server.
pub fn run_idle(
    server: &str,
    key: &str,
    conns: usize,
    server_pid: Option<u32>,
    max_secs: u64,
) -> Result<Value, BenchError> {
    let mut admin = Client::connect(server, key)?;
    let count = |admin: &mut Client| -> Result<u64, BenchError> {
        Ok(admin.admin(&json!({"op": "server.stats"}))?["connections"]
            .as_u64()
            .unwrap_or(0))
    };
    let base = count(&mut admin)?;
    std::thread::sleep(Duration::from_millis(200));
    let before = server_pid.and_then(rss_kib);
    let mut handshake = Vec::new();
    wire::encode_request(
        &mut handshake,
        1,
        &Request::Hello {
            version_min: PROTOCOL_VERSION,
            version_max: PROTOCOL_VERSION,
            client_name: "bench-idle",
        },
    );
    wire::encode_request(
        &mut handshake,
        2,
        &Request::Auth {
            key,
            user_key: "",
            instance: "",
        },
    );
    let deadline = Instant::now() + Duration::from_secs(max_secs);
    let mut open = Vec::with_capacity(conns);
    for i in 0..conns {
        let mut s = TcpStream::connect(server)?;
        s.write_all(&handshake)?;
        open.push(s);
        if i % 256 == 255 {
            std::thread::sleep(Duration::from_millis(2));
        }
        if Instant::now() > deadline {
            return Err("connecting took longer than --max-secs".into());
        }
    }
    while count(&mut admin)? < base + conns as u64 {
        if Instant::now() > deadline {
            return Err("the server did not see every connection".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let every handshake be answered before reading the memory.
    std::thread::sleep(Duration::from_millis(500));
    let after = server_pid.and_then(rss_kib);
    let per = match (before, after) {
        (Some(b), Some(a)) => json!((a.saturating_sub(b) as f64) * 1024.0 / conns as f64),
        _ => Value::Null,
    };
    drop(open);
    Ok(json!({
        "mode": "idle",
        "conns": conns,
        "server_rss_kib_before": before,
        "server_rss_kib_after": after,
        "bytes_per_idle_connection": per,
    }))
}
