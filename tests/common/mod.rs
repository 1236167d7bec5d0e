//! Shared helpers for integration tests: a real server on 127.0.0.1:0.
#![allow(dead_code)]

pub mod http;
pub mod tenancy;

use std::path::Path;
use std::sync::Arc;

use tidewire::clock::{ManualClock, SharedClock};
use tidewire::config::ServerConfig;
use tidewire::server::{self, ServerHandle};
use tidewire::storage::Durability;

/// The admin key every test server is started with.
pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

/// A server on a free port over `dir`.
pub struct TestServer {
    pub handle: Option<ServerHandle>,
    pub addr: String,
    /// `host:port` of the HTTP shim (empty unless started with it).
    pub http: String,
}

impl TestServer {
    pub fn start(dir: &Path) -> TestServer {
        Self::start_with(dir, |_| {})
    }

    pub fn start_with(dir: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let mut config = ServerConfig::new(dir);
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.io_threads = 2;
        config.admin_key = Some(ADMIN_KEY.to_string());
        config.log.segment_size = 8 * 1024 * 1024;
        config.log.durability = Durability::Batch;
        tweak(&mut config);
        let handle = server::start(config).expect("server starts");
        let addr = handle.local_addr().to_string();
        let http = handle
            .http_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        TestServer {
            handle: Some(handle),
            addr,
            http,
        }
    }

    /// A server with the HTTP shim on a free port too.
    pub fn start_http(dir: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        Self::start_with(dir, |c| {
            c.http_listen = Some("127.0.0.1:0".parse().unwrap());
            tweak(c);
        })
    }

    pub fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
            h.wait().expect("clean shutdown");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A manual clock starting at a fixed, realistic instant.
pub fn manual_clock() -> (Arc<ManualClock>, SharedClock) {
    let c = ManualClock::new(1_767_225_600_000_000); // 2026-01-01T00:00:00Z
    let shared: SharedClock = c.clone();
    (c, shared)
}
