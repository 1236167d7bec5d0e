//! One server per data directory: a second server on a directory in use is
//! refused and changes nothing; the lock dies with its holder.

mod proc_common;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::json;
use tidewire::broker::OpenError;
use tidewire::client::OutgoingMessage;
use tidewire::config::ServerConfig;
use tidewire::wire::AckMode;

use proc_common::{read_all, Serve, ServerProcess};

/// Every file under `dir` with its length and modification time.
fn tree(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path(), meta.len(), meta.modified().unwrap()));
        }
    }
    out.sort();
    out
}

fn ids(messages: &[tidewire::client::Message]) -> Vec<u64> {
    messages.iter().map(|m| m.id).collect()
}

#[test]
fn a_second_server_on_a_directory_in_use_is_refused_and_kill_9_frees_it_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::new(dir.path());
    let mut first = ServerProcess::spawn(&serve);
    let mut c = first.connect();
    c.channel_create(&json!({ "name": "keep" })).unwrap();
    let mut acked = Vec::new();
    for i in 0..3u32 {
        let bytes = i.to_le_bytes();
        let m = OutgoingMessage::new(&bytes);
        acked.push(c.publish("keep", &m, AckMode::Durable).unwrap());
    }
    // Stopped, the first server writes nothing meanwhile, and still holds
    // its lock.
    first.signal(libc::SIGSTOP);
    let before = tree(dir.path());

    // A second `tidewire serve` exits at once, naming the directory and the holder.
    let second = serve.run_to_exit();
    assert_eq!(second.status.code(), Some(1), "refused with exit code 1");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!(
            "error: data directory {} is in use by another tidewire server (pid {})",
            dir.path().display(),
            first.pid()
        )),
        "the error names the directory and the holder: {stderr}"
    );
    // A server started in this process is refused the same way.
    match tidewire::server::start(ServerConfig::new(dir.path())) {
        Err(e) => match e.downcast_ref::<OpenError>() {
            Some(OpenError::Locked(_)) => {}
            _ => panic!("expected a lock error, got {e}"),
        },
        Ok(_) => panic!("a second server started on a directory in use"),
    }
    assert_eq!(
        tree(dir.path()),
        before,
        "the refused servers changed nothing"
    );
    first.signal(libc::SIGCONT);

    // The first server goes on with every acknowledged message.
    assert_eq!(ids(&read_all(&mut c, "keep")), acked);
    let m = OutgoingMessage::new(b"more");
    acked.push(c.publish("keep", &m, AckMode::Durable).unwrap());
    assert_eq!(ids(&read_all(&mut c, "keep")), acked);

    // `kill -9` leaves no stale lock: a new server starts at once.
    first.kill9();
    drop(c);
    let mut again = ServerProcess::spawn(&serve);
    let mut c = again.connect();
    let stored = ids(&read_all(&mut c, "keep"));
    for id in &acked {
        assert_eq!(
            stored.iter().filter(|i| *i == id).count(),
            1,
            "id {id} once"
        );
    }
    let next = c
        .publish("keep", &OutgoingMessage::new(b"after"), AckMode::Durable)
        .unwrap();
    assert!(next > *acked.last().unwrap(), "ids never go backwards");
    again.kill9();
}
