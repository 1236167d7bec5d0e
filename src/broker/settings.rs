//! How the broker is configured: where it keeps its data, the logs'
//! layout, the HTTP shim's long polls and the Channelstream API.

use std::path::PathBuf;

use crate::clock::SharedClock;
use crate::limits::{self, TenancyLimits};
use crate::storage::LogConfig;

/// Long-poll settings of the HTTP shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// How long an idle poll is held before its 204, in microseconds.
    pub poll_timeout_us: u64,
    /// Most polls parked at once, server-wide.
    pub parked_polls_max: usize,
    /// Polls per second one instance may make (0: no limit); more are
    /// answered 429 with `Retry-After`, like Syncano's plan limits.
    pub poll_rate_per_instance: u32,
}

impl Default for HttpSettings {
    fn default() -> HttpSettings {
        HttpSettings {
            poll_timeout_us: limits::HTTP_POLL_TIMEOUT_SECS_DEFAULT * 1_000_000,
            parked_polls_max: limits::HTTP_PARKED_POLLS_MAX_DEFAULT,
            poll_rate_per_instance: 0,
        }
    }
}

/// How [`Broker::open`] is configured.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where logs and metadata live.
    pub data_dir: PathBuf,
    /// Layout, retention and durability of channel logs.
    pub log_config: LogConfig,
    /// The clock every component reads.
    pub clock: SharedClock,
    /// A bootstrap server-wide admin key (added when not yet known).
    pub admin_key: Option<String>,
    /// Tenancy limits.
    pub limits: TenancyLimits,
    /// Long-poll settings of the HTTP shim.
    pub http: HttpSettings,
    /// The Channelstream API (`None`: off).
    pub channelstream: Option<ChannelstreamSettings>,
}

/// The Channelstream server API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelstreamSettings {
    /// The shared secret requests are signed with.
    pub secret: String,
    /// The instance the API works in.
    pub instance: String,
    /// Peer addresses allowed to call the signed API (`0.0.0.0`: any).
    pub allow_posting_from: Vec<String>,
}
