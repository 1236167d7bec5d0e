//! The `tidewire` command line as a newcomer meets it: `serve` takes its
//! addresses from the environment, start-up and connection errors name what
//! they concern, refused keys say what is wrong, and key commands say what
//! they did.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use serde_json::json;
use tidewire::client::Client;

use common::{TestServer, ADMIN_KEY};

fn tidewire(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidewire"));
    cmd.args(args).env("RUST_LOG", "warn");
    for var in ["TIDEWIRE_KEY", "TIDEWIRE_SERVER", "TIDEWIRE_INSTANCE"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("tidewire runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn serve_takes_its_addresses_and_data_directory_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-env");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidewire"))
        .arg("serve")
        .env("TIDEWIRE_LISTEN", "127.0.0.1:0")
        .env("TIDEWIRE_HTTP_LISTEN", "127.0.0.1:0")
        .env("TIDEWIRE_DATA_DIR", &data)
        .env("TIDEWIRE_IO_THREADS", "1")
        .env("TIDEWIRE_ADMIN_KEY", ADMIN_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut binary = None;
    while let Some(Ok(line)) = lines.next() {
        if let Some(a) = line.strip_prefix("tidewire: listening on ") {
            binary = Some(a.to_string());
        }
        if let Some(a) = line.strip_prefix("tidewire: HTTP shim listening on ") {
            assert_ne!(a, "127.0.0.1:7480", "TIDEWIRE_HTTP_LISTEN was read");
            break;
        }
    }
    let binary = binary.expect("the binary listener's address");
    assert_ne!(binary, "127.0.0.1:7400", "TIDEWIRE_LISTEN was read");
    Client::connect(&binary, ADMIN_KEY).expect("it serves there");
    assert!(data.join("meta").is_dir(), "TIDEWIRE_DATA_DIR was used");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn start_up_errors_name_the_address_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = dir.path().join("d");
    let data = data.to_str().unwrap();
    let o = tidewire(
        &[
            "serve",
            "--listen",
            &addr,
            "--http-listen",
            "off",
            "--data-dir",
            data,
        ],
        &[("TIDEWIRE_ADMIN_KEY", ADMIN_KEY)],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(err.contains("--listen"), "{err}");

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let inside = file.join("data");
    let inside = inside.to_str().unwrap();
    let o = tidewire(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--data-dir",
            inside,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(inside), "the path is named: {err}");

    let o = tidewire(&["serve", "--listen", "nowhere"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--listen (or TIDEWIRE_LISTEN)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn client_errors_name_the_server_and_an_address_needs_a_port() {
    let o = tidewire(&["ping", "--server", "localhost", "--key", "k"], &[]);
    assert_eq!(o.status.code(), Some(2), "a usage error");
    assert!(
        stderr(&o).contains("\"localhost\" has no port"),
        "{}",
        stderr(&o)
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let o = tidewire(&["ping", "--server", &addr, "--key", "k"], &[]);
    assert_eq!(o.status.code(), Some(3), "a connection error");
    assert!(
        stderr(&o).contains(&format!("cannot connect to {addr}")),
        "{}",
        stderr(&o)
    );
}

#[test]
fn refused_keys_and_missing_channels_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let mut root = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    root.admin(&json!({"op": "instance.create", "name": "shop"}))
        .unwrap();
    let mut shop = Client::connect_with(&{
        let mut o = tidewire::client::ConnectOptions::new(&server.addr, ADMIN_KEY);
        o.instance = "shop".into();
        o
    })
    .unwrap();
    let user_key = shop
        .admin(&json!({"op": "user.create", "username": "ada"}))
        .unwrap()["user_key"]
        .as_str()
        .unwrap()
        .to_string();
    let api = shop.admin(&json!({"op": "key.create"})).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let s = server.addr.as_str();
    let cases: [(&[&str], &str); 5] = [
        (&["ping", "--server", s, "--key", "wrong"], "no such key"),
        (
            &["ping", "--server", s, "--key", &user_key],
            "that is a user key",
        ),
        (
            &["ping", "--server", s, "--key", &api, "--user-key", "wrong"],
            "not the key of a user of instance \"shop\"",
        ),
        (
            &[
                "ping",
                "--server",
                s,
                "--key",
                &api,
                "--instance",
                "default",
            ],
            "belongs to instance \"shop\", not \"default\"",
        ),
        (
            &[
                "history",
                "tills",
                "--server",
                s,
                "--key",
                ADMIN_KEY,
                "--instance",
                "shop",
            ],
            "no channel \"tills\" in instance \"shop\"",
        ),
    ];
    for (args, want) in cases {
        let o = tidewire(args, &[]);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn key_commands_say_what_they_did_and_ask_when_an_id_is_ambiguous() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let s = server.addr.as_str();
    let env = [("TIDEWIRE_KEY", ADMIN_KEY), ("TIDEWIRE_SERVER", s)];
    // API key 1 of `default`, next to the server-wide admin key 1.
    let o = tidewire(&["key", "create", "--description", "backend"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = tidewire(&["key", "list"], &env);
    let listed = stdout(&o);
    assert!(listed.starts_with("ID\tKIND\tINSTANCE"), "{listed}");
    assert!(listed.contains("1\tapi\t-\t"), "{listed}");
    assert!(
        listed.contains("1\tserver_admin\t-\t") && listed.contains("bootstrap"),
        "{listed}"
    );
    let o = tidewire(&["key", "revoke", "1"], &env);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("give kind"), "{}", stderr(&o));
    let o = tidewire(&["key", "revoke", "1", "--kind", "api"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "revoked api key 1\n");
    let o = tidewire(&["user", "create", "ada"], &env);
    assert!(o.status.success());
    let o = tidewire(&["user", "delete", "ada", "--username"], &env);
    assert_eq!(stdout(&o), "deleted user ada\n");
}
