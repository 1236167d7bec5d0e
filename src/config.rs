//! Server configuration: a TOML file, then environment, then flags, each
//! validated against `limits`.
//!
//! CONTRACT: `ServerConfig` and `parse_durability` are used by `main.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::clock::SharedClock;
use crate::storage::{Durability, LogConfig};

/// Default address of the binary protocol.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7400";
/// Default address of the HTTP shim.
pub const HTTP_LISTEN_DEFAULT: &str = "127.0.0.1:7480";
/// Default data directory.
pub const DATA_DIR_DEFAULT: &str = "./tidewire-data";

/// Everything `tidewire serve` needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where logs and metadata live (created if missing).
    pub data_dir: PathBuf,
    /// Address of the binary protocol listener (port 0: any free port).
    pub listen: SocketAddr,
    /// Address of the HTTP shim listener (reserved; `None`: off).
    pub http_listen: Option<SocketAddr>,
    /// Number of io threads (at least 1).
    pub io_threads: usize,
    /// Log layout, retention and durability for new and reopened channels.
    pub log: LogConfig,
    /// Bootstrap admin key; generated and printed on first start when `None`.
    pub admin_key: Option<String>,
    /// The clock rotation and retention read (tests inject a manual one).
    pub clock: SharedClock,
}

impl ServerConfig {
    /// Defaults rooted at `data_dir`: default ports, one io thread per core,
    /// durability `batch`.
    pub fn new(data_dir: impl Into<PathBuf>) -> ServerConfig {
        let io_threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        ServerConfig {
            data_dir: data_dir.into(),
            listen: LISTEN_DEFAULT.parse().expect("valid default address"),
            http_listen: None,
            io_threads,
            log: LogConfig::default(),
            admin_key: None,
            clock: crate::clock::system(),
        }
    }
}

/// Parses `none`, `batch` or `interval:MS`.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_durability(s: &str) -> Result<Durability, String> {
    match s {
        "none" => Ok(Durability::None),
        "batch" => Ok(Durability::Batch),
        other => match other.strip_prefix("interval:").map(str::parse::<u64>) {
            Some(Ok(ms)) if ms > 0 => Ok(Durability::Interval { ms }),
            _ => Err(format!(
                "durability must be none, batch or interval:MS (MS > 0), not {other:?}"
            )),
        },
    }
}
