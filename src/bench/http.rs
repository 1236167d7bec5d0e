//! `tidewire bench --mode http-poll | http-pub | http-static`: load on the
//! HTTP shim from one thread driving many non-blocking connections (mio).
//!
//! * `http-poll`: `--polls N` connections each park a long poll; one
//!   message is published (over the binary protocol) and the time until
//!   every poll has its 200 is measured, `--rounds` times. With a server
//!   process id (`--spawn` or `--server-pid`), the server's resident memory
//!   before and after parking gives the cost of one parked poll.
//! * `http-pub`: `--conns C` keep-alive connections publish over HTTP, one
//!   request in flight each, for `--count` requests: requests/s and latency.
//! * `http-static`: the same loop against a fixed answer of the router (a
//!   404 for an unknown path), for the cost of HTTP itself.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};

use super::{histogram, percentiles, record, BenchError};
use crate::client::{Client, OutgoingMessage};
use crate::wire::AckMode;

/// Settings of the HTTP modes.
#[derive(Debug, Clone)]
pub struct HttpBench {
    /// `host:port` of the HTTP shim.
    pub http: String,
    /// `host:port` of the binary protocol (setup and the `http-poll` publish).
    pub server: String,
    /// A server-wide admin key.
    pub key: String,
    /// Parked polls (`http-poll`).
    pub polls: usize,
    /// Rounds of park-publish-answer (`http-poll`).
    pub rounds: usize,
    /// Connections (`http-pub`, `http-static`).
    pub conns: usize,
    /// Requests in all (`http-pub`, `http-static`).
    pub count: u64,
    /// Payload bytes of each HTTP publish (a JSON object about this size).
    pub size: usize,
    /// The server's process id, to read its resident memory.
    pub server_pid: Option<u32>,
    /// Hard limit on each phase.
    pub max_secs: u64,
}

/// Resident memory of process `pid`, in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// One client connection of the load loop.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    out: Vec<u8>,
    sent_at: Option<Instant>,
    done: bool,
}

/// Bytes of one complete response at the start of `buf`, if there is one.
fn response_len(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let total = head_end + len;
    (buf.len() >= total).then_some(total)
}

fn status_of(response: &[u8]) -> u16 {
    std::str::from_utf8(response.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Many non-blocking connections on one `mio::Poll`.
struct Loop {
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
}

impl Loop {
    fn connect(addr: &str, n: usize, deadline: Instant) -> Result<Loop, BenchError> {
        let addr: SocketAddr = addr.parse()?;
        let poll = Poll::new()?;
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            let mut stream = TcpStream::connect(addr)?;
            poll.registry().register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            conns.push(Conn {
                stream,
                buf: Vec::new(),
                out: Vec::new(),
                sent_at: None,
                done: false,
            });
            // Let the server's accept loop keep up with the backlog.
            if i % 256 == 255 {
                std::thread::sleep(Duration::from_millis(2));
            }
            if Instant::now() > deadline {
                return Err("connecting took longer than --max-secs".into());
            }
        }
        Ok(Loop {
            poll,
            events: Events::with_capacity(4096),
            conns,
        })
    }

    /// Queues `request` on connection `i` and writes what the socket takes.
    fn send(&mut self, i: usize, request: &[u8]) -> io::Result<()> {
        let c = &mut self.conns[i];
        c.out.extend_from_slice(request);
        c.sent_at = Some(Instant::now());
        c.done = false;
        flush(c)
    }

    /// Runs until `on_response` has been called for every connection that
    /// was sent a request, or the deadline. `on_response(i, bytes, at)`
    /// returns the next request for that connection, if any.
    fn drive(
        &mut self,
        deadline: Instant,
        mut on_response: impl FnMut(usize, &[u8], Instant) -> Option<Vec<u8>>,
    ) -> Result<(), BenchError> {
        loop {
            if self.conns.iter().all(|c| c.done || c.sent_at.is_none()) {
                return Ok(());
            }
            let now = Instant::now();
            if now > deadline {
                return Err("responses did not arrive within --max-secs".into());
            }
            self.poll.poll(
                &mut self.events,
                Some(deadline.saturating_duration_since(now)),
            )?;
            let ready: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
            for i in ready {
                let Some(c) = self.conns.get_mut(i) else {
                    continue;
                };
                flush(c)?;
                let mut chunk = [0u8; 16 * 1024];
                loop {
                    match c.stream.read(&mut chunk) {
                        Ok(0) => return Err(format!("connection {i} closed by the server").into()),
                        Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                while let Some(len) = response_len(&c.buf) {
                    let at = Instant::now();
                    let response: Vec<u8> = c.buf.drain(..len).collect();
                    c.done = true;
                    if let Some(next) = on_response(i, &response, at) {
                        c.out.extend_from_slice(&next);
                        c.sent_at = Some(Instant::now());
                        c.done = false;
                        flush(c)?;
                    }
                }
            }
        }
    }
}

fn flush(c: &mut Conn) -> io::Result<()> {
    while !c.out.is_empty() {
        match c.stream.write(&c.out) {
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn parked(admin: &mut Client) -> Result<u64, BenchError> {
    Ok(admin.admin(&json!({"op": "server.stats"}))?["parked_polls"]
        .as_u64()
        .unwrap_or(0))
}

fn wait_parked(admin: &mut Client, n: u64, deadline: Instant) -> Result<(), BenchError> {
    while parked(admin)? < n {
        if Instant::now() > deadline {
            return Err(format!("only {} of {n} polls parked", parked(admin)?).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `http-poll`: parked-poll memory and publish-to-all-answered latency.
///
/// # Errors
/// Connection, server or timing-out errors.
pub fn run_poll(b: &HttpBench) -> Result<Value, BenchError> {
    let mut admin = Client::connect(&b.server, &b.key)?;
    let channel = format!("bench-poll-{}", std::process::id());
    admin.channel_create(&json!({"name": channel, "custom_publish": true}))?;
    let deadline = Instant::now() + Duration::from_secs(b.max_secs);
    let rss_before = b.server_pid.and_then(rss_kib);
    let mut lp = Loop::connect(&b.http, b.polls, deadline)?;
    let request = |last_id: Option<u64>| {
        let q = last_id.map(|l| format!("?last_id={l}")).unwrap_or_default();
        format!(
            "GET /v1.1/instances/default/channels/{channel}/poll/{q} HTTP/1.1\r\nHost: bench\r\nX-API-KEY: {}\r\n\r\n",
            b.key
        )
        .into_bytes()
    };
    let mut rounds = Vec::new();
    let mut rss_parked = None;
    let mut last_id = None;
    for round in 0..b.rounds.max(1) {
        let req = request(last_id);
        for i in 0..b.polls {
            lp.send(i, &req)?;
        }
        // Pump writes until every poll is parked on the server.
        let park_deadline = Instant::now() + Duration::from_secs(b.max_secs);
        while parked(&mut admin)? < b.polls as u64 {
            lp.poll
                .poll(&mut lp.events, Some(Duration::from_millis(10)))?;
            for c in &mut lp.conns {
                flush(c)?;
            }
            if Instant::now() > park_deadline {
                return Err(
                    format!("only {} of {} polls parked", parked(&mut admin)?, b.polls).into(),
                );
            }
        }
        wait_parked(&mut admin, b.polls as u64, park_deadline)?;
        if round == 0 {
            std::thread::sleep(Duration::from_millis(200));
            rss_parked = b.server_pid.and_then(rss_kib);
        }
        let t0 = Instant::now();
        let id = admin.publish(
            &channel,
            &OutgoingMessage::json(r#"{"bench":"poll"}"#),
            AckMode::Append,
        )?;
        last_id = Some(id);
        let mut hist = histogram();
        let mut bad = 0u64;
        lp.drive(park_deadline, |_, response, at| {
            if status_of(response) != 200 {
                bad += 1;
            }
            record(
                &mut hist,
                u64::try_from(at.duration_since(t0).as_nanos()).unwrap_or(u64::MAX),
            );
            None
        })?;
        if bad > 0 {
            return Err(format!("{bad} polls were not answered 200").into());
        }
        rounds.push(percentiles(&hist));
    }
    admin.channel_delete(&channel)?;
    let per_poll = match (rss_before, rss_parked) {
        (Some(a), Some(p)) => json!((p.saturating_sub(a) as f64) * 1024.0 / b.polls as f64),
        _ => Value::Null,
    };
    let field = |k: &str| {
        median(
            rounds
                .iter()
                .map(|r| r[k].as_f64().unwrap_or(0.0))
                .collect(),
        )
    };
    Ok(json!({
        "mode": "http-poll",
        "polls": b.polls,
        "rounds": rounds.len(),
        "server_rss_kib_before": rss_before,
        "server_rss_kib_parked": rss_parked,
        "bytes_per_parked_poll": per_poll,
        "all_answered_p50_us": field("p50_us"),
        "all_answered_p99_us": field("p99_us"),
        "all_answered_max_us": field("max_us"),
        "per_round": rounds,
    }))
}

/// `http-pub` / `http-static`: requests/s over keep-alive connections, one
/// request in flight on each.
///
/// # Errors
/// Connection, server or timing-out errors.
pub fn run_requests(b: &HttpBench, publish: bool) -> Result<Value, BenchError> {
    let mut admin = Client::connect(&b.server, &b.key)?;
    let channel = format!("bench-http-{}", std::process::id());
    admin.channel_create(&json!({"name": channel, "custom_publish": true}))?;
    let deadline = Instant::now() + Duration::from_secs(b.max_secs);
    let request = if publish {
        let filler = "x".repeat(b.size.saturating_sub(20).max(1));
        let body = format!(r#"{{"payload":{{"data":"{filler}"}}}}"#);
        format!(
            "POST /v1.1/instances/default/channels/{channel}/publish/ HTTP/1.1\r\nHost: bench\r\nX-API-KEY: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            b.key,
            body.len()
        )
    } else {
        "GET /v1.1/static/ HTTP/1.1\r\nHost: bench\r\n\r\n".to_string()
    }
    .into_bytes();
    let want_status = if publish { 201 } else { 404 };
    let mut lp = Loop::connect(&b.http, b.conns.max(1), deadline)?;
    let mut sent = 0u64;
    for i in 0..lp.conns.len() {
        if sent < b.count {
            lp.send(i, &request)?;
            sent += 1;
        }
    }
    let mut hist: Histogram<u64> = histogram();
    let mut answered = 0u64;
    let mut wrong = 0u64;
    let mut sent_at: HashMap<usize, Instant> = HashMap::new();
    for (i, c) in lp.conns.iter().enumerate() {
        if let Some(t) = c.sent_at {
            sent_at.insert(i, t);
        }
    }
    let started = Instant::now();
    lp.drive(deadline, |i, response, at| {
        answered += 1;
        if status_of(response) != want_status {
            wrong += 1;
        }
        if let Some(t) = sent_at.get(&i) {
            record(
                &mut hist,
                u64::try_from(at.duration_since(*t).as_nanos()).unwrap_or(u64::MAX),
            );
        }
        if sent < b.count {
            sent += 1;
            sent_at.insert(i, Instant::now());
            Some(request.clone())
        } else {
            None
        }
    })?;
    let secs = started.elapsed().as_secs_f64();
    admin.channel_delete(&channel)?;
    if wrong > 0 {
        return Err(format!("{wrong} of {answered} answers had an unexpected status").into());
    }
    Ok(json!({
        "mode": if publish { "http-pub" } else { "http-static" },
        "conns": lp.conns.len(),
        "requests": answered,
        "secs": secs,
        "requests_per_s": answered as f64 / secs,
        "latency": percentiles(&hist),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_responses_are_found_by_their_content_length() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 204";
        assert_eq!(response_len(r), Some(41));
        assert_eq!(status_of(r), 200);
        assert_eq!(
            response_len(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab"),
            None
        );
        assert_eq!(response_len(b"HTTP/1.1 204 No Content\r\n\r\n"), Some(27));
        assert_eq!(response_len(b"HTTP/1.1 204"), None);
    }

    #[test]
    fn the_median_of_rounds_is_the_middle_value() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![]), 0.0);
    }
}
