//! Hostile and slow clients: frames that claim more than they send, a
//! handshake that never completes, HTTP heads and bodies that never arrive.
//! Each costs the server little and ends with a clear answer and a close;
//! other connections carry on.

mod common;
mod proc_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tidewire::client::Client;
use tidewire::clock::ManualClock;
use tidewire::limits;
use tidewire::wire::{self, ErrorCode, Request, Response};

use common::{TestServer, ADMIN_KEY};
use proc_common::{rss_anon_kib, Serve, ServerProcess};

fn raw(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn read_frame(s: &mut TcpStream) -> Option<(wire::FrameHeader, Vec<u8>)> {
    let mut head = [0u8; wire::FRAME_HEADER_LEN];
    s.read_exact(&mut head).ok()?;
    let h = wire::decode_header(&head).unwrap().unwrap();
    let mut body = vec![0u8; h.body_len];
    s.read_exact(&mut body).ok()?;
    Some((h, body))
}

fn expect_error_then_close(s: &mut TcpStream, code: ErrorCode) {
    let (h, body) = read_frame(s).expect("an error frame");
    match wire::decode_response(&h, &body).unwrap() {
        Response::Error { code: got, .. } => assert_eq!(got, code),
        other => panic!("expected an error, got {other:?}"),
    }
    let mut rest = [0u8; 16];
    assert_eq!(
        s.read(&mut rest).unwrap_or(0),
        0,
        "the connection is closed"
    );
}

/// A connection that has said `Hello` and authenticated with the admin key.
fn authenticated(addr: &str) -> TcpStream {
    let mut s = raw(addr);
    let mut out = Vec::new();
    let hello = Request::Hello {
        version_min: 1,
        version_max: 1,
        client_name: "hostile",
    };
    wire::encode_request(&mut out, 1, &hello);
    let auth = Request::Auth {
        key: ADMIN_KEY,
        user_key: "",
        instance: "",
    };
    wire::encode_request(&mut out, 2, &auth);
    s.write_all(&out).unwrap();
    for _ in 0..2 {
        let (h, body) = read_frame(&mut s).expect("handshake reply");
        assert!(matches!(
            wire::decode_response(&h, &body).unwrap(),
            Response::HelloOk { .. } | Response::AuthOk { .. }
        ));
    }
    s
}

/// A frame header claiming `len` bytes after the length prefix.
fn claimed_header(len: u32, opcode: u8) -> Vec<u8> {
    let mut h = len.to_le_bytes().to_vec();
    h.extend_from_slice(&[opcode, 0, 0, 0, 7, 0, 0, 0]);
    h
}

#[test]
fn frames_claiming_more_than_they_send_keep_server_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(&Serve::new(dir.path()));
    let addr = server.addr().to_string();
    let mut probe = Client::connect(&addr, ADMIN_KEY).unwrap();
    probe.ping().unwrap();
    let before = rss_anon_kib(server.pid());
    let conns = 200;
    // Before Hello: a frame over the unauthenticated limit is refused at its
    // header, whatever it claims.
    let mut early = Vec::new();
    for _ in 0..conns {
        let mut s = raw(&addr);
        s.write_all(&claimed_header(limits::FRAME_LEN_MAX - 1, 0x01))
            .unwrap();
        early.push(s);
    }
    for s in &mut early {
        expect_error_then_close(s, ErrorCode::FrameTooLarge);
    }
    // After Auth: a frame may be large, but memory follows the bytes that
    // arrive, not the length claimed.
    let mut held = Vec::new();
    for _ in 0..conns {
        let mut s = authenticated(&addr);
        s.write_all(&claimed_header(limits::FRAME_LEN_MAX, 0x10))
            .unwrap();
        s.write_all(&[0u8; 100]).unwrap();
        held.push(s);
    }
    // Requests on new connections (dealt to every io thread in turn) are
    // answered after the partial frames were sent; a moment more lets every
    // io thread read what it has.
    for _ in 0..4 {
        probe.ping().unwrap();
        Client::connect(&addr, ADMIN_KEY).unwrap().ping().unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_anon_kib(server.pid());
    // 200 claimed frames of 1 MiB would be 200 MiB if buffered up front.
    assert!(
        after.saturating_sub(before) < 32 * 1024,
        "server anonymous memory grew by {} KiB for {conns} claimed 1 MiB frames",
        after.saturating_sub(before)
    );
    probe.ping().unwrap();
    drop(held);
}

#[test]
fn a_handshake_that_does_not_complete_in_time_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, shared) = common::manual_clock();
    let server = TestServer::start_with(dir.path(), |c| c.clock = shared);
    let mut silent = raw(&server.addr);
    let mut hello_only = raw(&server.addr);
    let mut out = Vec::new();
    let hello = Request::Hello {
        version_min: 1,
        version_max: 1,
        client_name: "slow",
    };
    wire::encode_request(&mut out, 1, &hello);
    hello_only.write_all(&out).unwrap();
    read_frame(&mut hello_only).expect("HelloOk");
    let mut done = Client::connect(&server.addr, ADMIN_KEY).unwrap();
    // Enough clock time passes (the loop reads the clock at its next turn).
    advance_until_readable(&clock, &mut silent, limits::HANDSHAKE_TIMEOUT_MS, 100);
    expect_error_then_close(&mut silent, ErrorCode::HandshakeTimeout);
    expect_error_then_close(&mut hello_only, ErrorCode::HandshakeTimeout);
    // An authenticated connection carries on, and a new one may still
    // complete its handshake.
    done.ping().unwrap();
    Client::connect(&server.addr, ADMIN_KEY)
        .unwrap()
        .ping()
        .unwrap();
}

/// Moves the clock by `step_ms` (and a second) at a time, at most
/// `steps_max` times, until `s` has something to read (the loop reads the
/// clock at its next turn).
fn advance_until_readable(clock: &ManualClock, s: &mut TcpStream, step_ms: u64, steps_max: u32) {
    s.set_nonblocking(true).unwrap();
    let mut first = [0u8; 1];
    let mut steps = 0;
    for _ in 0..200 {
        if steps < steps_max {
            clock.advance_us((step_ms + 1000) * 1000);
            steps += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
        match s.peek(&mut first) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => panic!("{e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
}

/// [`advance_until_readable`], then everything `s` sends up to its close.
fn advance_until_answered(
    clock: &ManualClock,
    s: &mut TcpStream,
    step_ms: u64,
    steps_max: u32,
) -> String {
    advance_until_readable(clock, s, step_ms, steps_max);
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn http_get(host: &str, close: bool) -> String {
    let connection = if close { "close" } else { "keep-alive" };
    format!("GET /v1.1/instances/default/channels/ HTTP/1.1\r\nHost: {host}\r\nX-API-KEY: {ADMIN_KEY}\r\nConnection: {connection}\r\n\r\n")
}

/// Reads one whole HTTP answer with a `Content-Length` body.
fn read_answer(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

#[test]
fn http_heads_and_bodies_that_do_not_arrive_in_time_get_408_and_a_close() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, shared) = common::manual_clock();
    let server = TestServer::start_http(dir.path(), |c| c.clock = shared);
    let host = server.http.clone();
    // A connection that never sends its first request is timed out too.
    let mut silent = raw(&host);
    // A keep-alive connection that finished its request is not timed out.
    let mut idle = raw(&host);
    idle.write_all(http_get(&host, false).as_bytes()).unwrap();
    assert!(read_answer(&mut idle).starts_with("HTTP/1.1 200"));
    // A head that trickles in: progress does not extend its deadline.
    let mut slow_head = raw(&host);
    slow_head.write_all(b"GET /v1.1/inst").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    clock.advance_us(limits::HTTP_HEAD_TIMEOUT_MS * 1000 / 2);
    slow_head.write_all(b"ances/default/chan").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // One more half: the head's deadline, from its first byte, has passed.
    let half = limits::HTTP_HEAD_TIMEOUT_MS / 2;
    let answer = advance_until_answered(&clock, &mut slow_head, half, 1);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#"{"detail":"Request timeout."}"#),
        "{answer}"
    );
    // A body that never completes.
    let mut no_body = raw(&host);
    let publish = format!("POST /v1.1/instances/default/channels/default/publish/ HTTP/1.1\r\nHost: {host}\r\nX-API-KEY: {ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"payload\": ");
    no_body.write_all(publish.as_bytes()).unwrap();
    let answer = advance_until_answered(&clock, &mut no_body, limits::HTTP_BODY_TIMEOUT_MS, 100);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let mut out = Vec::new();
    silent.read_to_end(&mut out).unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // Nothing else was affected.
    idle.write_all(http_get(&host, true).as_bytes()).unwrap();
    assert!(read_answer(&mut idle).starts_with("HTTP/1.1 200"));
}
