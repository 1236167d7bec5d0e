//! `tidewire bench`: the load generator's arguments, handed to
//! `tidewire::bench`.

use clap::{Args, ValueEnum};

use crate::message_cli::AckArg;
use crate::{usage, Failure};
use tidewire::config;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum BenchMode {
    /// Publish-only throughput into the log.
    Pub,
    /// Publishers to subscribers: delivered throughput and latency.
    Fanout,
    /// Publish→deliver latency at a fixed rate.
    Lat,
    /// Pipelined acknowledged publishes: throughput and ack latency.
    Ack,
    /// HTTP long polls: server memory per parked poll, publish→all-answered latency.
    HttpPoll,
    /// HTTP publishes over keep-alive connections: requests/s.
    HttpPub,
    /// A fixed answer of the HTTP router (404), same loop: requests/s.
    HttpStatic,
    /// Server memory per idle authenticated connection (--conns, --spawn).
    Idle,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value = "fanout")]
    mode: BenchMode,
    /// A running server to measure. Without it (and without --embedded) the
    /// bench starts its own server as a separate process, with the server's
    /// defaults.
    #[arg(long, env = "TIDEWIRE_SERVER", value_name = "ADDR")]
    server: Option<String>,
    /// Admin key (ignored with --embedded).
    #[arg(
        long,
        env = "TIDEWIRE_KEY",
        hide_env_values = true,
        value_name = "KEY",
        default_value = ""
    )]
    key: String,
    /// Start a server in this process on a temporary directory.
    #[arg(long)]
    embedded: bool,
    /// Durability of the server the bench starts: none, batch or
    /// interval:MS (default: the server's default, batch).
    #[arg(long, value_name = "POLICY")]
    durability: Option<String>,
    /// io threads of the server the bench starts (default: the server's
    /// default, one per core).
    #[arg(long, value_name = "N")]
    io_threads: Option<usize>,
    /// Publisher connections.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pubs: usize,
    /// Subscriber connections.
    #[arg(long, default_value_t = 1, value_name = "M")]
    subs: usize,
    /// Channels to spread publishers and subscribers over.
    #[arg(long, default_value_t = 1, value_name = "C")]
    channels: usize,
    /// Rooms per channel: publishers cycle through them, subscriber i follows room i mod R.
    #[arg(long, default_value_t = 0, value_name = "R")]
    rooms: usize,
    /// Payload bytes per message (at least 8).
    #[arg(long, default_value_t = 128, value_name = "BYTES")]
    size: usize,
    /// Messages to publish in all.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    count: u64,
    /// Messages per publish frame (one, as clients of other brokers send
    /// one message per publish).
    #[arg(long, default_value_t = 1, value_name = "K")]
    batch: usize,
    /// Publish rate of the `lat` mode, messages per second.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    rate: u64,
    /// Acknowledgement mode of the publishes.
    #[arg(long, value_enum, default_value = "none")]
    ack: AckArg,
    /// Publish frames in flight before the `ack` mode waits for one.
    #[arg(long, default_value_t = 256, value_name = "N")]
    window: usize,
    /// Messages published to a scratch channel before measuring.
    #[arg(long, default_value_t = 200_000, value_name = "N")]
    warmup: u64,
    /// Hard limit on the measured phase, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    max_secs: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// HTTP shim address (HTTP modes, without --embedded or --spawn).
    #[arg(long, env = "TIDEWIRE_HTTP_SERVER", default_value = config::HTTP_LISTEN_DEFAULT, value_name = "ADDR")]
    http: String,
    /// Start the server as a separate process on a temporary directory (the
    /// default without --server and --embedded; HTTP modes read its
    /// resident memory).
    #[arg(long)]
    spawn: bool,
    /// The server's process id, to read its resident memory (HTTP modes).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Parked polls (http-poll).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    polls: usize,
    /// Rounds of park, publish, answer (http-poll).
    #[arg(long, default_value_t = 5, value_name = "N")]
    rounds: usize,
    /// Connections (http-pub, http-static: keep-alive; idle).
    #[arg(long, default_value_t = 32, value_name = "N")]
    conns: usize,
}

pub(crate) fn bench(a: BenchArgs) -> Result<(), Failure> {
    let spawn = a.spawn || (a.server.is_none() && !a.embedded);
    if !a.embedded && !spawn && a.key.is_empty() {
        return Err(usage("bench needs --key (or TIDEWIRE_KEY) with --server"));
    }
    let durability = a
        .durability
        .as_deref()
        .map(config::parse_durability)
        .transpose()
        .map_err(usage)?;
    let cfg = tidewire::bench::BenchConfig {
        mode: match a.mode {
            BenchMode::Pub => tidewire::bench::Mode::Pub,
            BenchMode::Fanout => tidewire::bench::Mode::Fanout,
            BenchMode::Lat => tidewire::bench::Mode::Lat,
            BenchMode::Ack => tidewire::bench::Mode::Ack,
            BenchMode::HttpPoll => tidewire::bench::Mode::HttpPoll,
            BenchMode::HttpPub => tidewire::bench::Mode::HttpPub,
            BenchMode::HttpStatic => tidewire::bench::Mode::HttpStatic,
            BenchMode::Idle => tidewire::bench::Mode::Idle,
        },
        server: a
            .server
            .unwrap_or_else(|| config::LISTEN_DEFAULT.to_string()),
        key: a.key,
        embedded: a.embedded,
        durability,
        io_threads: a.io_threads,
        pubs: a.pubs,
        subs: a.subs,
        channels: a.channels,
        rooms: a.rooms,
        size: a.size,
        count: a.count,
        batch: if matches!(a.mode, BenchMode::Lat) {
            1
        } else {
            a.batch
        },
        rate: a.rate,
        ack: a.ack.into(),
        window: a.window,
        warmup: a.warmup,
        max_secs: a.max_secs,
        json: a.json,
        http: a.http,
        spawn,
        server_pid: a.server_pid,
        polls: a.polls,
        rounds: a.rounds,
        conns: a.conns,
    };
    tidewire::bench::run(&cfg).map_err(|e| Failure::Serve(e.to_string()))?;
    Ok(())
}
