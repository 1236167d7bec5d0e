//! `tidewire pub --uuid`, `pub --no-history`, `edit`, `delete`,
//! `history --raw` and `fetch --raw` against a real server.

mod common;

use std::process::Command;

use serde_json::Value;

use common::{TestServer, ADMIN_KEY};

/// Runs `tidewire ARGS --json` and returns its stdout lines as JSON, or its
/// exit code and stderr when it fails.
fn run(addr: &str, args: &[&str]) -> Result<Vec<Value>, (i32, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_tidewire"))
        .args(args)
        .args(["--json", "--server", addr, "--key", ADMIN_KEY])
        .output()
        .expect("tidewire runs");
    if !out.status.success() {
        return Err((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect())
}

#[test]
fn edit_and_delete_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let a = server.addr.as_str();
    run(a, &["channel", "create", "notes"]).unwrap();
    let uuid = "0f0e0d0c-0b0a-4908-8706-050403020100";
    let first = run(a, &["pub", "notes", "first", "--uuid", uuid]).unwrap();
    assert_eq!(first[0]["id"], 1);
    assert_eq!(first[0]["uuid"], uuid);
    let second = run(a, &["pub", "notes", "second"]).unwrap();
    let assigned = second[0]["uuid"].as_str().unwrap().to_string();
    assert_eq!(assigned.len(), 36);

    let e = run(a, &["edit", "notes", uuid, r#"{"v":2}"#, "--json-payload"]).unwrap();
    assert_eq!(
        (e[0]["id"].as_u64(), e[0]["uuid"].as_str()),
        (Some(3), Some(uuid))
    );
    let d = run(a, &["delete", "notes", &assigned]).unwrap();
    assert_eq!(
        (d[0]["id"].as_u64(), d[0]["uuid"].as_str()),
        (Some(4), Some(assigned.as_str()))
    );
    // A deleted message: refused with its code name, exit code 1.
    let (code, err) = run(a, &["delete", "notes", "2"]).unwrap_err();
    assert_eq!(code, 1);
    assert!(err.contains("message_deleted (35)"), "{err}");
    let (code, err) = run(a, &["edit", "notes", "nonsense", "x"]).unwrap_err();
    assert_eq!(code, 2, "{err}");

    let current = run(a, &["history", "notes", "--oldest-first"]).unwrap();
    assert_eq!(current.len(), 1);
    assert_eq!(
        (current[0]["id"].as_u64(), current[0]["ref_id"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(current[0]["payload"]["v"], 2);
    let raw = run(a, &["history", "notes", "--oldest-first", "--raw"]).unwrap();
    let actions: Vec<&str> = raw.iter().map(|m| m["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["custom", "custom", "edit", "remove"]);
    // Live-only: acknowledged without an id, never in history.
    let l = run(a, &["pub", "notes", "typing", "--no-history"]).unwrap();
    assert_eq!(l[0]["id"], 0);
    assert_eq!(l[0]["uuid"].as_str().map(str::len), Some(36));
    assert_eq!(run(a, &["history", "notes", "--raw"]).unwrap().len(), 4);
    assert!(run(a, &["fetch", "notes", "2"]).is_err());
    assert_eq!(
        run(a, &["fetch", "notes", "2", "--raw"]).unwrap()[0]["payload"],
        "second"
    );
}
