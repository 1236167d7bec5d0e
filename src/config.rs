//! Server configuration: a TOML file, then environment, then flags, each
//! validated against `limits`.
//!
//! `main.rs` builds a `ServerConfig` from these pieces for `tidewire serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::broker::HttpSettings;
use crate::clock::SharedClock;
use crate::limits::TenancyLimits;
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
    /// Address of the HTTP shim listener (`None`: off; [`ServerConfig::new`]
    /// leaves it off, `tidewire serve` turns it on).
    pub http_listen: Option<SocketAddr>,
    /// Number of io threads (at least 1).
    pub io_threads: usize,
    /// Log layout, retention and durability for new and reopened channels.
    pub log: LogConfig,
    /// Bootstrap admin key; generated and printed on first start when `None`.
    pub admin_key: Option<String>,
    /// The clock rotation and retention read (tests inject a manual one).
    pub clock: SharedClock,
    /// Instances, keys, users, groups and channels per instance.
    pub limits: TenancyLimits,
    /// Long-poll timeout and parked-poll bound of the HTTP shim.
    pub http: HttpSettings,
    /// The Channelstream API on the HTTP listener (`None`: off).
    pub channelstream: Option<crate::broker::ChannelstreamSettings>,
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
            limits: TenancyLimits::default(),
            http: HttpSettings::default(),
            channelstream: None,
        }
    }
}

impl ServerConfig {
    /// What `tidewire serve` starts from: [`ServerConfig::new`] on
    /// [`DATA_DIR_DEFAULT`] with the HTTP shim on [`HTTP_LISTEN_DEFAULT`].
    pub fn serve_default() -> ServerConfig {
        let mut c = ServerConfig::new(DATA_DIR_DEFAULT);
        c.http_listen = Some(HTTP_LISTEN_DEFAULT.parse().expect("valid default address"));
        c
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

/// Why a configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The `tidewire serve --config FILE` format (TOML); every field is
/// optional and overrides the default. Unknown fields are an error, so a
/// typo never passes silently.
///
/// ```toml
/// data_dir = "/var/lib/tidewire"
/// listen = "0.0.0.0:7400"
/// http_listen = "0.0.0.0:7480"
/// io_threads = 2
/// durability = "interval:5"
/// segment_size = 268435456
/// segment_age_secs = 86400
/// retention_secs = 86400
/// admin_key = "..."
/// http_poll_timeout_secs = 300
/// http_parked_polls_max = 100000
/// http_poll_rate_per_instance = 0
/// channelstream_secret = "..."          # turns the Channelstream API on
/// channelstream_instance = "default"
/// channelstream_allow_posting_from = ["127.0.0.1"]
///
/// [limits]
/// instances_max = 1000
/// channels_per_instance_max = 10000
/// admin_keys_max = 1000
/// api_keys_per_instance_max = 1000
/// users_per_instance_max = 10000
/// groups_per_instance_max = 1000
/// members_per_group_max = 10000
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where logs and metadata live.
    pub data_dir: Option<PathBuf>,
    /// Address of the binary protocol listener.
    pub listen: Option<String>,
    /// Address of the HTTP shim listener.
    pub http_listen: Option<String>,
    /// Number of io threads.
    pub io_threads: Option<usize>,
    /// `none`, `batch` or `interval:MS`.
    pub durability: Option<String>,
    /// Size of each segment file, in bytes.
    pub segment_size: Option<u64>,
    /// Age at which the active segment is rotated, in seconds.
    pub segment_age_secs: Option<u64>,
    /// How long messages stay readable, in seconds.
    pub retention_secs: Option<u64>,
    /// Bootstrap admin key.
    pub admin_key: Option<String>,
    /// How long an idle HTTP long poll is held, in seconds.
    pub http_poll_timeout_secs: Option<u64>,
    /// Most HTTP long polls parked at once.
    pub http_parked_polls_max: Option<usize>,
    /// HTTP polls per second per instance (0: no limit).
    pub http_poll_rate_per_instance: Option<u32>,
    /// The Channelstream API's shared secret; the API is on with one.
    pub channelstream_secret: Option<String>,
    /// The instance the Channelstream API works in (default `default`).
    pub channelstream_instance: Option<String>,
    /// Addresses allowed to call the signed Channelstream API (default
    /// `["127.0.0.1"]`; `"0.0.0.0"`: any).
    pub channelstream_allow_posting_from: Option<Vec<String>>,
    /// Tenancy limits (table `[limits]`).
    pub limits: Option<LimitsConfig>,
}

/// The `[limits]` table: each key overrides one of [`TenancyLimits`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most instances.
    pub instances_max: Option<usize>,
    /// Most channels per instance.
    pub channels_per_instance_max: Option<usize>,
    /// Most admin keys.
    pub admin_keys_max: Option<usize>,
    /// Most API keys per instance.
    pub api_keys_per_instance_max: Option<usize>,
    /// Most users per instance.
    pub users_per_instance_max: Option<usize>,
    /// Most groups per instance.
    pub groups_per_instance_max: Option<usize>,
    /// Most members per group.
    pub members_per_group_max: Option<usize>,
}

impl LimitsConfig {
    fn apply(&self, l: &mut TenancyLimits) {
        let set = |dst: &mut usize, v: Option<usize>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut l.instances_max, self.instances_max);
        set(
            &mut l.channels_per_instance_max,
            self.channels_per_instance_max,
        );
        set(&mut l.admin_keys_max, self.admin_keys_max);
        set(
            &mut l.api_keys_per_instance_max,
            self.api_keys_per_instance_max,
        );
        set(&mut l.users_per_instance_max, self.users_per_instance_max);
        set(&mut l.groups_per_instance_max, self.groups_per_instance_max);
        set(&mut l.members_per_group_max, self.members_per_group_max);
    }
}

/// Parses a listen address: `host:port`, resolving host names.
///
/// # Errors
/// When it does not parse or resolves to nothing.
pub fn parse_listen(s: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| ConfigError(format!("{s:?} is not a host:port address")))
}

/// Parses the HTTP shim's listen address; `off` turns the shim off.
///
/// # Errors
/// As [`parse_listen`].
pub fn parse_http_listen(s: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if s == "off" {
        return Ok(None);
    }
    parse_listen(s).map(Some)
}

/// Seconds to microseconds for a duration setting that must be positive.
///
/// # Errors
/// For 0 or a value whose microseconds overflow.
pub fn secs_to_us(secs: u64, what: &str) -> Result<u64, ConfigError> {
    secs.checked_mul(1_000_000)
        .filter(|&us| us > 0)
        .ok_or_else(|| {
            ConfigError(format!(
                "{what} must be between 1 and {} seconds",
                u64::MAX / 1_000_000
            ))
        })
}

impl FileConfig {
    /// Parses TOML text.
    ///
    /// # Errors
    /// Syntax errors, unknown fields and wrong types, with their position.
    pub fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }

    /// Writes the fields that are set into `config`.
    ///
    /// # Errors
    /// A field that does not parse (addresses, durability, zero durations).
    pub fn apply(&self, config: &mut ServerConfig) -> Result<(), ConfigError> {
        if let Some(dir) = &self.data_dir {
            config.data_dir.clone_from(dir);
        }
        if let Some(listen) = &self.listen {
            config.listen = parse_listen(listen)?;
        }
        if let Some(http) = &self.http_listen {
            config.http_listen = parse_http_listen(http)?;
        }
        if let Some(n) = self.io_threads {
            config.io_threads = n;
        }
        if let Some(d) = &self.durability {
            config.log.durability = parse_durability(d).map_err(ConfigError)?;
        }
        if let Some(size) = self.segment_size {
            config.log.segment_size = size;
        }
        if let Some(secs) = self.segment_age_secs {
            config.log.segment_age_us = secs_to_us(secs, "segment_age_secs")?;
        }
        if let Some(secs) = self.retention_secs {
            config.log.retention_us = secs_to_us(secs, "retention_secs")?;
        }
        if let Some(key) = &self.admin_key {
            config.admin_key = Some(key.clone());
        }
        if let Some(secs) = self.http_poll_timeout_secs {
            config.http.poll_timeout_us = secs_to_us(secs, "http_poll_timeout_secs")?;
        }
        if let Some(n) = self.http_parked_polls_max {
            config.http.parked_polls_max = n;
        }
        if let Some(n) = self.http_poll_rate_per_instance {
            config.http.poll_rate_per_instance = n;
        }
        if let Some(secret) = &self.channelstream_secret {
            set_channelstream(config, Some(secret), None, None);
        }
        if self.channelstream_instance.is_some() || self.channelstream_allow_posting_from.is_some()
        {
            set_channelstream(
                config,
                None,
                self.channelstream_instance.as_deref(),
                self.channelstream_allow_posting_from.as_deref(),
            );
        }
        if let Some(l) = &self.limits {
            l.apply(&mut config.limits);
        }
        Ok(())
    }
}

impl ServerConfig {
    /// Defaults, overridden by the TOML file at `path`, validated.
    ///
    /// # Errors
    /// When the file cannot be read, does not parse, or a value is out of
    /// its limits; the message names the file.
    pub fn from_file(path: &std::path::Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        let file = FileConfig::parse(&text)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        let mut config = ServerConfig::serve_default();
        file.apply(&mut config)
            .and_then(|()| config.validate())
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        Ok(config)
    }

    /// Checks every setting against `limits`.
    ///
    /// # Errors
    /// A message naming the first setting out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use crate::limits::{IO_THREADS_MAX, KEY_LEN_MAX, SEGMENT_SIZE_MAX, SEGMENT_SIZE_MIN};
        if !(1..=IO_THREADS_MAX).contains(&self.io_threads) {
            return Err(ConfigError(format!(
                "io_threads must be 1..={IO_THREADS_MAX}, not {}",
                self.io_threads
            )));
        }
        let size = self.log.segment_size;
        if !(SEGMENT_SIZE_MIN..=SEGMENT_SIZE_MAX).contains(&size) {
            return Err(ConfigError(format!(
                "segment_size must be {SEGMENT_SIZE_MIN}..={SEGMENT_SIZE_MAX} bytes, not {size}"
            )));
        }
        if self.log.segment_age_us == 0 || self.log.retention_us == 0 {
            return Err(ConfigError(
                "segment age and retention must be positive".into(),
            ));
        }
        if let Some(key) = &self.admin_key {
            if key.is_empty() || key.len() > KEY_LEN_MAX {
                return Err(ConfigError(format!(
                    "admin_key must be 1..={KEY_LEN_MAX} bytes"
                )));
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError("data_dir must not be empty".into()));
        }
        self.limits
            .validate()
            .map_err(|e| ConfigError(format!("limits: {e}")))?;
        let timeout_max = crate::limits::HTTP_POLL_TIMEOUT_SECS_MAX * 1_000_000;
        if self.http.poll_timeout_us == 0 || self.http.poll_timeout_us > timeout_max {
            return Err(ConfigError(format!(
                "http_poll_timeout_secs must be 1..={}",
                crate::limits::HTTP_POLL_TIMEOUT_SECS_MAX
            )));
        }
        if !(1..=crate::limits::CONNECTIONS_MAX).contains(&self.http.parked_polls_max) {
            return Err(ConfigError(format!(
                "http_parked_polls_max must be 1..={}",
                crate::limits::CONNECTIONS_MAX
            )));
        }
        Ok(())
    }
}

/// Sets the Channelstream API's settings that are given: a secret turns
/// the API on (instance `default`, calls from 127.0.0.1), the others change
/// it once it is on.
pub fn set_channelstream(
    config: &mut ServerConfig,
    secret: Option<&str>,
    instance: Option<&str>,
    allow_posting_from: Option<&[String]>,
) {
    if let Some(secret) = secret {
        let cs = config
            .channelstream
            .get_or_insert_with(|| crate::broker::ChannelstreamSettings {
                secret: String::new(),
                instance: crate::broker::DEFAULT_INSTANCE.to_string(),
                allow_posting_from: vec!["127.0.0.1".to_string()],
            });
        cs.secret = secret.to_string();
    }
    if let Some(cs) = config.channelstream.as_mut() {
        if let Some(i) = instance {
            cs.instance = i.to_string();
        }
        if let Some(a) = allow_posting_from {
            cs.allow_posting_from = a.iter().map(|s| s.trim().to_string()).collect();
        }
    }
}

#[cfg(test)]
mod file_config_tests {
    use super::*;

    #[test]
    fn a_full_file_overrides_every_default() {
        let file = FileConfig::parse(
            r#"
            data_dir = "/tmp/tw"
            listen = "127.0.0.1:9000"
            http_listen = "127.0.0.1:9001"
            io_threads = 3
            durability = "interval:7"
            segment_size = 1048576
            segment_age_secs = 60
            retention_secs = 120
            admin_key = "k"

            [limits]
            instances_max = 5
            members_per_group_max = 7
            "#,
        )
        .unwrap();
        let mut c = ServerConfig::new(DATA_DIR_DEFAULT);
        file.apply(&mut c).unwrap();
        c.validate().unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/tw"));
        assert_eq!(c.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.http_listen, Some("127.0.0.1:9001".parse().unwrap()));
        assert_eq!(c.io_threads, 3);
        assert_eq!(c.log.durability, Durability::Interval { ms: 7 });
        assert_eq!(c.log.segment_size, 1_048_576);
        assert_eq!(c.log.segment_age_us, 60_000_000);
        assert_eq!(c.log.retention_us, 120_000_000);
        assert_eq!(c.admin_key.as_deref(), Some("k"));
        assert_eq!(c.limits.instances_max, 5);
        assert_eq!(c.limits.members_per_group_max, 7);
        assert_eq!(
            c.limits.users_per_instance_max,
            crate::limits::USERS_PER_INSTANCE_MAX_DEFAULT
        );
    }

    #[test]
    fn unknown_fields_and_bad_values_are_errors() {
        assert!(FileConfig::parse("listen_addr = \"x\"").is_err());
        assert!(FileConfig::parse("io_threads = \"two\"").is_err());
        let mut c = ServerConfig::new(DATA_DIR_DEFAULT);
        let bad = FileConfig {
            durability: Some("sometimes".into()),
            ..FileConfig::default()
        };
        assert!(bad.apply(&mut c).is_err());
        let zero = FileConfig {
            retention_secs: Some(0),
            ..FileConfig::default()
        };
        assert!(zero.apply(&mut c).is_err());
    }

    #[test]
    fn validation_enforces_the_limits() {
        let mut c = ServerConfig::new(DATA_DIR_DEFAULT);
        c.validate().unwrap();
        c.io_threads = 0;
        assert!(c.validate().is_err());
        c.io_threads = 1;
        c.log.segment_size = crate::limits::SEGMENT_SIZE_MIN - 1;
        assert!(c.validate().is_err());
        c.log.segment_size = crate::limits::SEGMENT_SIZE_DEFAULT;
        c.admin_key = Some(String::new());
        assert!(c.validate().is_err());
        c.admin_key = None;
        c.limits.instances_max = 0;
        assert!(c.validate().is_err());
        c.limits.instances_max = crate::limits::INSTANCES_CAP + 1;
        assert!(c.validate().is_err());
    }
}
