//! protocol.md is enough to write a client: a Python client written from it
//! alone (tests/spec_client/client.py) talks to a real server.

mod common;

use std::process::Command;

use common::{TestServer, ADMIN_KEY};

#[test]
fn a_python_client_written_from_protocol_md_works_against_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/spec_client/client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&server.addr)
        .arg(ADMIN_KEY)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    ] {
        assert!(
            stdout.lines().any(|l| l == step),
            "missing step {step:?} in:\n{stdout}"
        );
    }
}
