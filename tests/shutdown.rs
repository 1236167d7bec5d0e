//! A graceful shutdown (what SIGTERM and SIGINT start) against a real
//! server: every publish taken is answered, then every connection gets
//! `Error ShuttingDown` on request id 0 and its close; parked HTTP polls get
//! a 503 with `Retry-After`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use tidewire::client::{Client, HistoryQuery};
use tidewire::storage::record::{encode_body, MessageFields};
use tidewire::wire::{self, AckMode, ErrorCode, Response, Start};

use common::{TestServer, ADMIN_KEY};

fn read_frame(s: &mut TcpStream) -> Option<(wire::FrameHeader, Vec<u8>)> {
    let mut head = [0u8; wire::FRAME_HEADER_LEN];
    s.read_exact(&mut head).ok()?;
    let h = wire::decode_header(&head).unwrap().unwrap();
    let mut body = vec![0u8; h.body_len];
    s.read_exact(&mut body).ok()?;
    Some((h, body))
}

/// A connection that said Hello and authenticated as the admin.
fn ready(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut out = Vec::new();
    let hello = wire::Request::Hello {
        version_min: 1,
        version_max: 1,
        client_name: "shutdown-test",
    };
    wire::encode_request(&mut out, 1, &hello);
    let auth = wire::Request::Auth {
        key: ADMIN_KEY,
        user_key: "",
        instance: "",
    };
    wire::encode_request(&mut out, 2, &auth);
    s.write_all(&out).unwrap();
    read_frame(&mut s).unwrap();
    read_frame(&mut s).unwrap();
    s
}

/// Reads to the end: (request id, first id) of each `PublishAck` (a
/// publish refused with an error has no id), then asserts the last frame is
/// `ShuttingDown` on request id 0 followed by the close.
fn until_shutdown(s: &mut TcpStream) -> Vec<(u32, Option<u64>)> {
    let mut answered = Vec::new();
    loop {
        let (h, body) = read_frame(s).expect("ShuttingDown before the close");
        match wire::decode_response(&h, &body).unwrap() {
            Response::Error { code, .. } if h.request_id == 0 => {
                assert_eq!(code, ErrorCode::ShuttingDown, "the connection-level error");
                break;
            }
            Response::Error { .. } => answered.push((h.request_id, None)),
            Response::PublishAck { first_id, .. } => {
                answered.push((h.request_id, Some(first_id)));
            }
            Response::Deliver { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut rest = [0u8; 16];
    assert_eq!(s.read(&mut rest).unwrap_or(0), 0, "closed after it");
    answered
}

#[test]
fn a_graceful_shutdown_answers_what_it_took_then_says_shutting_down_to_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path());
    let mut admin = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    admin.channel_create(&json!({"name": "s"})).unwrap();
    let mut sub = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    sub.subscribe("s", None, Start::New).unwrap();
    let mut before_hello = TcpStream::connect(&server.addr).unwrap();
    before_hello
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut publisher = ready(&server.addr);
    let mut body = Vec::new();
    encode_body(&mut body, &MessageFields::default(), b"m");
    let mut out = Vec::new();
    for rid in 10..210 {
        wire::encode_publish(&mut out, rid, "s", AckMode::Durable, &[&body]);
    }
    publisher.write_all(&out).unwrap();
    // At least one publish is taken before the shutdown starts.
    let (h, first) = read_frame(&mut publisher).unwrap();
    let Response::PublishAck { first_id, .. } = wire::decode_response(&h, &first).unwrap() else {
        panic!("a PublishAck first");
    };
    server.stop();

    let mut answered = vec![(h.request_id, Some(first_id))];
    answered.extend(until_shutdown(&mut publisher));
    for pair in answered.windows(2) {
        assert!(
            pair[0].0 < pair[1].0,
            "answers in request order: {answered:?}"
        );
    }
    let acked: Vec<u64> = answered.iter().filter_map(|a| a.1).collect();
    for pair in acked.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "contiguous ids: {acked:?}");
    }
    until_shutdown(&mut before_hello);
    // A subscriber gets its deliveries, then the error.
    let err = loop {
        match sub.next_event(Some(Duration::from_secs(20))) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("nothing within 20 s"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), Some(ErrorCode::ShuttingDown), "{err}");

    // Everything acknowledged is there after a restart.
    let server = TestServer::start(dir.path());
    let mut c = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    let stored = c
        .history(
            "s",
            &HistoryQuery {
                newest_first: false,
                limit: 1000,
                ..HistoryQuery::default()
            },
        )
        .unwrap();
    let last_acked = *acked.last().unwrap();
    assert!(stored.len() as u64 >= last_acked);
    assert_eq!(stored.last().map(|m| m.id), Some(stored.len() as u64));
}

#[test]
fn a_parked_poll_gets_503_with_retry_after_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_http(dir.path(), |_| {});
    let mut admin = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    admin
        .channel_create(&json!({"name": "p", "custom_publish": true}))
        .unwrap();
    let mut poll = TcpStream::connect(&server.http).unwrap();
    poll.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        poll,
        "GET /v1.1/instances/default/channels/p/poll/ HTTP/1.1\r\nHost: x\r\nX-API-KEY: {ADMIN_KEY}\r\n\r\n"
    )
    .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while admin.admin(&json!({"op": "server.stats"})).unwrap()["parked_polls"] != 1 {
        assert!(std::time::Instant::now() < until, "the poll never parked");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(admin);
    server.stop();
    let mut answer = String::new();
    poll.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("\r\nRetry-After: 1\r\n"), "{answer}");
    assert!(answer.contains("shutting down"), "{answer}");
}
