//! `tidewire sub` across a graceful server restart: it reconnects and
//! resumes after the last message it printed (nothing skipped, nothing
//! repeated), says so on stderr, and with `--no-reconnect` exits instead.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;
use tidewire::client::{Client, OutgoingMessage};
use tidewire::wire::AckMode;

use common::{TestServer, ADMIN_KEY};

/// A `tidewire sub` process, killed when the test ends.
struct Sub(Child);

impl Drop for Sub {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            // Best effort: the process may have exited meanwhile.
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn_sub(addr: &str, extra: &[&str]) -> (Sub, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidewire"))
        .args(["sub", "follow", "--from", "earliest", "--server", addr])
        .args(extra)
        .env("TIDEWIRE_KEY", ADMIN_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tidewire sub starts");
    let stdout: ChildStdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Sub(child), rx)
}

/// The payloads of the next `n` printed lines (`#ID TIME PAYLOAD`).
fn next_lines(rx: &mpsc::Receiver<String>, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("a printed message");
            let mut parts = line.splitn(3, ' ');
            let id = parts.next().unwrap().to_string();
            let payload = parts.nth(1).unwrap_or_default();
            format!("{id} {payload}")
        })
        .collect()
}

fn publish(addr: &str, payloads: &[&str]) {
    let mut c = Client::connect(addr, ADMIN_KEY).unwrap();
    for p in payloads {
        c.publish("follow", &OutgoingMessage::text(p), AckMode::Append)
            .unwrap();
    }
}

fn stderr_of(sub: &mut Sub) -> String {
    let mut err = String::new();
    sub.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

#[test]
fn sub_reconnects_after_a_graceful_restart_and_resumes_after_the_last_message_printed() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path());
    let addr = server.addr.clone();
    Client::connect(&addr, ADMIN_KEY)
        .unwrap()
        .channel_create(&json!({"name": "follow"}))
        .unwrap();
    publish(&addr, &["a", "b", "c"]);
    let (mut sub, rx) = spawn_sub(&addr, &["--count", "6"]);
    assert_eq!(next_lines(&rx, 3), ["#1 a", "#2 b", "#3 c"]);
    server.stop();
    let listen = addr.parse().unwrap();
    let _server = TestServer::start_with(dir.path(), |c| c.listen = listen);
    publish(&addr, &["d", "e", "f"]);
    assert_eq!(next_lines(&rx, 3), ["#4 d", "#5 e", "#6 f"]);
    let status = sub.0.wait().unwrap();
    assert!(status.success(), "--count 6 reached: {status:?}");
    let err = stderr_of(&mut sub);
    assert!(err.contains("the server is shutting down"), "{err}");
    assert!(err.contains("resuming after #3"), "{err}");
}

#[test]
fn sub_with_no_reconnect_exits_3_when_the_server_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path());
    let addr = server.addr.clone();
    Client::connect(&addr, ADMIN_KEY)
        .unwrap()
        .channel_create(&json!({"name": "follow"}))
        .unwrap();
    publish(&addr, &["a"]);
    let (mut sub, rx) = spawn_sub(&addr, &["--no-reconnect"]);
    assert_eq!(next_lines(&rx, 1), ["#1 a"]);
    server.stop();
    let status = sub.0.wait().unwrap();
    assert_eq!(status.code(), Some(3), "a connection error");
    let err = stderr_of(&mut sub);
    assert!(err.contains("shutting_down (42)"), "{err}");
}
