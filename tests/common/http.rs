//! Helpers for the HTTP shim's integration tests: a server with the shim on,
//! a real HTTP client for well-formed requests, raw sockets for malformed
//! ones.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tidewire::client::Client;

use super::{TestServer, ADMIN_KEY};

/// One HTTP answer: status, `X-Last-Id`, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub last_id: Option<String>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .build()
}

pub fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Answer {
    let mut r = agent().request(method, url);
    for (k, v) in headers {
        r = r.set(k, v);
    }
    let result = match body {
        Some(b) => r.send_string(b),
        None => r.call(),
    };
    let resp = match result {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let last_id = resp.header("X-Last-Id").map(str::to_string);
    let body = resp.into_string().unwrap();
    Answer {
        status,
        last_id,
        body,
    }
}

pub struct Shim {
    pub server: TestServer,
    pub base: String,
}

impl Shim {
    pub fn start(dir: &std::path::Path) -> Shim {
        Self::start_with(dir, |_| {})
    }
    pub fn start_with(
        dir: &std::path::Path,
        tweak: impl FnOnce(&mut tidewire::config::ServerConfig),
    ) -> Shim {
        let server = TestServer::start_http(dir, tweak);
        let base = format!("http://{}/v1.1/instances/default/channels/", server.http);
        Shim { server, base }
    }
    pub fn url(&self, rest: &str) -> String {
        format!("{}{rest}", self.base)
    }
    pub fn admin(&self, method: &str, rest: &str, body: Option<Value>) -> Answer {
        let body = body.map(|b| b.to_string());
        call(
            method,
            &self.url(rest),
            &[
                ("X-API-KEY", ADMIN_KEY),
                ("Content-Type", "application/json"),
            ],
            body.as_deref(),
        )
    }
    pub fn binary(&self) -> Client {
        Client::connect(&self.server.addr, ADMIN_KEY).unwrap()
    }
    pub fn parked(&self) -> u64 {
        self.binary().admin(&json!({"op": "server.stats"})).unwrap()["parked_polls"]
            .as_u64()
            .unwrap()
    }
    pub fn wait_parked(&self, n: u64) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.parked() != n {
            assert!(Instant::now() < until, "parked polls never reached {n}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

pub fn create(shim: &Shim, body: Value) {
    let a = shim.admin("POST", "", Some(body));
    assert_eq!(a.status, 201, "{}", a.body);
}

/// A raw HTTP exchange: writes `request`, reads until the server closes or
/// `want` complete responses arrived.
pub fn raw(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}
