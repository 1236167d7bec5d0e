//! protocol.md is enough to write a client: a Python client written from it
//! alone (tests/spec_client/client.py) talks to a real server, checking each
//! rule of the document it relies on, and last sees the server shut down.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use common::{TestServer, ADMIN_KEY};

#[test]
fn a_python_client_written_from_protocol_md_works_against_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/spec_client/client.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(&server.addr)
        .arg(ADMIN_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    // The client's last check waits for the server to shut down.
    for line in lines.by_ref() {
        let line = line.unwrap();
        stdout.push_str(&line);
        stdout.push('\n');
        if line == "waiting for shutdown" {
            server.stop();
            break;
        }
    }
    for line in lines {
        stdout.push_str(&line.unwrap());
        stdout.push('\n');
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "client failed:\n{stdout}\n{stderr}");
    for step in [
        "hello ok",
        "auth ok kind=0",
        "channel ok",
        "subscribed ok",
        "publish ack first_id=1",
        "deliver ok",
        "history ok",
        "errors ok",
        "tenancy ok",
        "handshake rules ok",
        "response order ok",
        "names ok",
        "payloads ok",
        "history rules ok",
        "delivery rules ok",
        "lifecycle rules ok",
        "shutdown ok",
    ] {
        assert!(
            stdout.lines().any(|l| l == step),
            "missing step {step:?} in:\n{stdout}"
        );
    }
}
