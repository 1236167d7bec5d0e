//! tidewire: a high-throughput, single-node channel broker.
//!
//! Producers publish to named channels over a length-prefixed binary protocol
//! (`protocol.md`); every message is appended to a per-channel memory-mapped
//! segment log; subscribers read through cursors over that log.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod bench;
pub mod broker;
pub mod channelstream;
pub mod client;
pub mod clock;
pub mod config;
pub mod http;
pub mod limits;
pub mod net;
pub mod server;
pub mod storage;
pub mod time;
pub mod wire;
