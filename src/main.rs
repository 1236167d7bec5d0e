//! The `tidewire` binary: `serve` runs the broker; `pub`, `sub`, `history`,
//! `fetch`, `channel …` and `ping` are clients of a running server.
//!
//! Owns: argument parsing, output formats and exit codes. Never touches
//! broker logic; everything goes through `tidewire::server::run` or
//! `tidewire::client`.
//!
//! Exit codes: 0 success, 1 the server refused a request (or the server
//! failed), 2 usage error, 3 connection error.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

mod admin_cli;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Map, Value};

use tidewire::client::{
    error_code_name, parse_start, Client, ClientError, ConnectOptions, Event, HistoryQuery,
    Message, OutgoingMessage,
};
use tidewire::config::{self, ServerConfig};
use tidewire::limits;
use tidewire::storage::record::ContentType;
use tidewire::wire::AckMode;

#[derive(Debug, Parser)]
#[command(
    name = "tidewire",
    version,
    about = "A high-throughput, single-node channel broker"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the broker (binary protocol, and the HTTP shim when enabled).
    Serve(ServeArgs),
    /// Publish messages: the MESSAGE argument, or one per line of stdin.
    Pub(PubArgs),
    /// Follow a channel, printing every message.
    Sub(SubArgs),
    /// Print a page of a channel's history.
    History(HistoryArgs),
    /// Print one message by id.
    Fetch(FetchArgs),
    /// Create, read, list, change and delete channels.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Create, list and delete instances (server-wide admin key).
    #[command(subcommand)]
    Instance(admin_cli::InstanceCommand),
    /// Create, list, change and revoke keys of the instance.
    #[command(subcommand)]
    Key(admin_cli::KeyCommand),
    /// Create, list, change and delete users of the instance.
    #[command(subcommand)]
    User(admin_cli::UserCommand),
    /// Create, list, change and delete groups and their members.
    #[command(subcommand)]
    Group(admin_cli::GroupCommand),
    /// Measure a round trip to the server.
    Ping(ConnArgs),
    /// Generate load and report throughput and latency (see benches/README.md).
    Bench(BenchArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BenchMode {
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
struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value = "fanout")]
    mode: BenchMode,
    /// Server address (ignored with --embedded).
    #[arg(long, env = "TIDEWIRE_SERVER", default_value = config::LISTEN_DEFAULT, value_name = "ADDR")]
    server: String,
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
    /// Durability of the embedded server: none, batch or interval:MS.
    #[arg(long, default_value = "batch", value_name = "POLICY")]
    durability: String,
    /// io threads of the embedded server.
    #[arg(long, default_value_t = 2, value_name = "N")]
    io_threads: usize,
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
    /// Messages per publish frame.
    #[arg(long, default_value_t = 64, value_name = "K")]
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
    #[arg(long, default_value = config::HTTP_LISTEN_DEFAULT, value_name = "ADDR")]
    http: String,
    /// Start the server as a separate process on a temporary directory
    /// (HTTP modes read its resident memory).
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

#[derive(Debug, Args)]
struct ServeArgs {
    /// Data directory, created if missing [default: ./tidewire-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the binary protocol [default: 127.0.0.1:7400].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Address of the HTTP shim, or `off` [default: 127.0.0.1:7480].
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<String>,
    /// TOML configuration file; flags override it, it overrides defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Number of io threads [default: number of cores].
    #[arg(long, value_name = "N")]
    io_threads: Option<usize>,
    /// When an append counts as stored: none, batch or interval:MS [default: batch].
    #[arg(long, value_name = "POLICY")]
    durability: Option<String>,
    /// Size of each segment file, in bytes.
    #[arg(long, value_name = "BYTES")]
    segment_size: Option<u64>,
    /// How long messages stay readable, in seconds [default: 86400].
    #[arg(long, value_name = "SECS")]
    retention: Option<u64>,
    /// How long an idle HTTP long poll is held before its 204, in seconds [default: 300].
    #[arg(long, value_name = "SECS")]
    http_poll_timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct ConnArgs {
    /// Server address.
    #[arg(long, env = "TIDEWIRE_SERVER", default_value = config::LISTEN_DEFAULT, value_name = "ADDR")]
    server: String,
    /// Admin or API key.
    #[arg(long, env = "TIDEWIRE_KEY", hide_env_values = true, value_name = "KEY")]
    key: String,
    /// User key, sent together with an API key.
    #[arg(
        long,
        env = "TIDEWIRE_USER_KEY",
        hide_env_values = true,
        value_name = "KEY",
        default_value = ""
    )]
    user_key: String,
    /// Instance to work in [default: the key's own; `default` for a server-wide admin key].
    #[arg(
        long,
        env = "TIDEWIRE_INSTANCE",
        value_name = "NAME",
        default_value = ""
    )]
    instance: String,
    /// One JSON object per line instead of human-readable output.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AckArg {
    /// Do not wait for acknowledgements.
    None,
    /// Acknowledge once appended to the log.
    Append,
    /// Acknowledge once stored under the durability policy.
    Durable,
}

impl From<AckArg> for AckMode {
    fn from(a: AckArg) -> AckMode {
        match a {
            AckArg::None => AckMode::None,
            AckArg::Append => AckMode::Append,
            AckArg::Durable => AckMode::Durable,
        }
    }
}

#[derive(Debug, Args)]
struct PubArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Channel name.
    channel: String,
    /// The message; without it, every line of stdin is one message.
    message: Option<String>,
    /// Room of the messages.
    #[arg(long)]
    room: Option<String>,
    /// Acknowledgement mode.
    #[arg(long, value_enum, default_value_t = AckArg::Append)]
    ack: AckArg,
    /// Idempotency key: a repeat inside retention returns the original id.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// The payload is JSON (checked before sending; content type json).
    #[arg(long)]
    json_payload: bool,
    /// Publish the MESSAGE this many times.
    #[arg(long, default_value_t = 1, value_name = "N")]
    count: u64,
}

#[derive(Debug, Args)]
struct SubArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Channel name.
    channel: String,
    /// Where to start: new, earliest, a message id (inclusive), an RFC 3339
    /// time (2026-11-22T10:00:00Z) or @<unix-seconds>.
    #[arg(long, default_value = "new", value_name = "WHERE")]
    from: String,
    /// Only this room.
    #[arg(long)]
    room: Option<String>,
    /// Exit after this many messages (default: follow forever).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

#[derive(Debug, Args)]
struct HistoryArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Channel name.
    channel: String,
    /// Only this room.
    #[arg(long)]
    room: Option<String>,
    /// Most messages (server default page when absent); more than one
    /// page's worth is read page by page.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// Oldest message first (default: newest first).
    #[arg(long)]
    oldest_first: bool,
    /// Only ids greater than this.
    #[arg(long, value_name = "ID")]
    after: Option<u64>,
    /// Only ids less than this.
    #[arg(long, value_name = "ID")]
    before: Option<u64>,
}

#[derive(Debug, Args)]
struct FetchArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Channel name.
    channel: String,
    /// Message id.
    id: u64,
}

#[derive(Debug, Subcommand)]
enum ChannelCommand {
    /// Create a channel.
    Create(ChannelEditArgs),
    /// Print a channel's settings.
    Get(ChannelNameArgs),
    /// List channels.
    List(ConnArgs),
    /// Change a channel's settings (only the options given).
    Update(ChannelEditArgs),
    /// Delete a channel and its messages.
    Delete(ChannelNameArgs),
}

#[derive(Debug, Args)]
struct ChannelNameArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Channel name.
    name: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ChannelType {
    /// One stream for the whole channel.
    Default,
    /// Every message, poll and history read names a room.
    #[value(name = "separate_rooms")]
    SeparateRooms,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Permission {
    /// No access.
    None,
    /// May read.
    Subscribe,
    /// May read and publish.
    Publish,
}

#[derive(Debug, Args)]
struct ChannelEditArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Channel name.
    name: String,
    /// Channel type.
    #[arg(long = "type", value_enum)]
    kind: Option<ChannelType>,
    /// Free-form description.
    #[arg(long)]
    description: Option<String>,
    /// Whether API keys may publish custom messages.
    #[arg(long, value_name = "BOOL")]
    custom_publish: Option<bool>,
    /// What keys outside the group may do.
    #[arg(long, value_enum)]
    other_permissions: Option<Permission>,
    /// What members of the channel's group may do.
    #[arg(long, value_enum)]
    group_permissions: Option<Permission>,
    /// The group the group permissions apply to.
    #[arg(long, value_name = "ID")]
    group: Option<u64>,
    /// How long messages stay readable, in seconds.
    #[arg(long, value_name = "SECS")]
    retention: Option<u64>,
}

impl ChannelEditArgs {
    /// The JSON object of the options given (with `name` when creating).
    fn fields(&self, with_name: bool) -> Value {
        let mut m = Map::new();
        if with_name {
            m.insert("name".into(), json!(self.name));
        }
        if let Some(kind) = self.kind {
            let kind = match kind {
                ChannelType::Default => "default",
                ChannelType::SeparateRooms => "separate_rooms",
            };
            m.insert("type".into(), json!(kind));
        }
        if let Some(d) = &self.description {
            m.insert("description".into(), json!(d));
        }
        if let Some(c) = self.custom_publish {
            m.insert("custom_publish".into(), json!(c));
        }
        let perm = |p: Permission| match p {
            Permission::None => "none",
            Permission::Subscribe => "subscribe",
            Permission::Publish => "publish",
        };
        if let Some(p) = self.other_permissions {
            m.insert("other_permissions".into(), json!(perm(p)));
        }
        if let Some(p) = self.group_permissions {
            m.insert("group_permissions".into(), json!(perm(p)));
        }
        if let Some(g) = self.group {
            m.insert("group".into(), json!(g));
        }
        if let Some(r) = self.retention {
            m.insert("retention_secs".into(), json!(r));
        }
        Value::Object(m)
    }
}

/// Why the command failed, sorted by exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad arguments or configuration: exit 2.
    Usage(String),
    /// A client call failed: exit 1 for a server error, 2 for an invalid
    /// argument, 3 for a connection error.
    Client(ClientError),
    /// The server failed: exit 1.
    Serve(String),
    /// Writing to stdout failed (a closed pipe ends quietly).
    Output(io::Error),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure::Client(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Output(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .init();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => report(failure),
    }
}

fn report(failure: Failure) -> ExitCode {
    match failure {
        Failure::Usage(why) => {
            eprintln!("error: {why}");
            ExitCode::from(2)
        }
        Failure::Client(ClientError::Server { code, message }) => {
            eprintln!(
                "error: {} ({}): {message}",
                error_code_name(code),
                code as u16
            );
            ExitCode::from(1)
        }
        Failure::Client(e @ ClientError::Invalid(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Failure::Client(e) => {
            eprintln!("error: {e}");
            ExitCode::from(3)
        }
        Failure::Serve(why) => {
            eprintln!("error: {why}");
            ExitCode::from(1)
        }
        Failure::Output(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Failure::Output(e) => {
            eprintln!("error: writing output: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Serve(a) => serve(a),
        Command::Pub(a) => publish(&a),
        Command::Sub(a) => subscribe(&a),
        Command::History(a) => history(&a),
        Command::Fetch(a) => {
            let mut c = connect(&a.conn)?;
            let m = c.fetch(&a.channel, a.id)?;
            print_message(&mut io::stdout().lock(), &m, a.conn.json)
        }
        Command::Channel(cmd) => channel(cmd),
        Command::Instance(cmd) => admin_cli::run(cmd.request()),
        Command::Key(cmd) => admin_cli::run(cmd.request()),
        Command::User(cmd) => admin_cli::run(cmd.request()),
        Command::Group(cmd) => admin_cli::run(cmd.request()),
        Command::Bench(a) => bench(a),
        Command::Ping(conn) => {
            let mut c = connect(&conn)?;
            let rtt = c.ping()?;
            let server = c.server_info().server_name.clone();
            let mut out = io::stdout().lock();
            if conn.json {
                let rtt_us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
                writeln!(out, "{}", json!({ "rtt_us": rtt_us, "server": server }))?;
            } else {
                writeln!(out, "pong from {server} in {rtt:?}")?;
            }
            Ok(())
        }
    }
}

pub(crate) fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Usage(e.to_string())
}

fn serve(a: ServeArgs) -> Result<(), Failure> {
    let mut config = match &a.config {
        Some(path) => ServerConfig::from_file(path).map_err(usage)?,
        None => ServerConfig::serve_default(),
    };
    if let Some(key) = std::env::var_os("TIDEWIRE_ADMIN_KEY") {
        let key = key
            .into_string()
            .map_err(|_| usage("TIDEWIRE_ADMIN_KEY is not UTF-8"))?;
        if !key.is_empty() {
            config.admin_key = Some(key);
        }
    }
    if let Some(dir) = a.data_dir {
        config.data_dir = dir;
    }
    if let Some(listen) = &a.listen {
        config.listen = config::parse_listen(listen).map_err(usage)?;
    }
    if let Some(http) = &a.http_listen {
        config.http_listen = config::parse_http_listen(http).map_err(usage)?;
    }
    if let Some(secs) = a.http_poll_timeout {
        config.http.poll_timeout_us =
            config::secs_to_us(secs, "--http-poll-timeout").map_err(usage)?;
    }
    if let Some(n) = a.io_threads {
        config.io_threads = n;
    }
    if let Some(d) = &a.durability {
        config.log.durability = config::parse_durability(d).map_err(usage)?;
    }
    if let Some(size) = a.segment_size {
        config.log.segment_size = size;
    }
    if let Some(secs) = a.retention {
        config.log.retention_us = config::secs_to_us(secs, "--retention").map_err(usage)?;
    }
    config.validate().map_err(usage)?;
    tracing::info!(data_dir = %config.data_dir.display(), listen = %config.listen, "starting");
    tidewire::server::run(config).map_err(|e| Failure::Serve(e.to_string()))
}

pub(crate) fn connect(conn: &ConnArgs) -> Result<Client, Failure> {
    let mut options = ConnectOptions::new(&conn.server, &conn.key);
    options.user_key.clone_from(&conn.user_key);
    options.instance.clone_from(&conn.instance);
    Ok(Client::connect_with(&options)?)
}

fn print_message(out: &mut impl Write, m: &Message, json: bool) -> Result<(), Failure> {
    if json {
        writeln!(out, "{}", m.to_json())?;
    } else {
        let room = m
            .room
            .as_deref()
            .map(|r| format!(" [{r}]"))
            .unwrap_or_default();
        writeln!(
            out,
            "#{} {}{room} {}",
            m.id,
            m.created_at(),
            m.payload_text()
        )?;
    }
    Ok(())
}

/// Lines of stdin published between two collections of acknowledgements.
const PUB_STDIN_CHUNK: usize = 1024;

fn publish(a: &PubArgs) -> Result<(), Failure> {
    let ack = AckMode::from(a.ack);
    let content_type = if a.json_payload {
        ContentType::Json
    } else {
        ContentType::Text
    };
    let check = |payload: &str, what: &str| {
        if a.json_payload {
            serde_json::from_str::<serde::de::IgnoredAny>(payload)
                .map_err(|e| Failure::Usage(format!("{what} is not JSON: {e}")))?;
        }
        Ok::<(), Failure>(())
    };
    let mut c = connect(&a.conn)?;
    let mut out = io::stdout().lock();
    let mut sent = 0u64;
    if let Some(payload) = &a.message {
        check(payload, "MESSAGE")?;
        let m = outgoing(a, payload, content_type);
        for _ in 0..a.count {
            c.send_publish(&a.channel, &m, ack)?;
            sent += 1;
        }
        print_acks(&mut c, &mut out, a.conn.json)?;
    } else {
        let mut stdin = io::BufReader::with_capacity(64 * 1024, io::stdin().lock());
        let mut line = String::new();
        let mut since_acks = 0usize;
        loop {
            line.clear();
            if stdin
                .read_line(&mut line)
                .map_err(|e| usage(format!("reading stdin: {e}")))?
                == 0
            {
                break;
            }
            let payload = line.strip_suffix('\n').unwrap_or(&line);
            let payload = payload.strip_suffix('\r').unwrap_or(payload);
            check(payload, &format!("line {}", sent + 1))?;
            c.send_publish(&a.channel, &outgoing(a, payload, content_type), ack)?;
            sent += 1;
            since_acks += 1;
            // Print ids once the input pauses (or every chunk), so a slow
            // producer on stdin sees its ids promptly and a file is pipelined.
            if since_acks >= PUB_STDIN_CHUNK || stdin.buffer().is_empty() {
                print_acks(&mut c, &mut out, a.conn.json)?;
                since_acks = 0;
            }
        }
        print_acks(&mut c, &mut out, a.conn.json)?;
    }
    if ack == AckMode::None {
        // A round trip after the last publish: errors of unacknowledged
        // publishes arrive before the pong and are reported here.
        c.ping()?;
        if c.acks_pending() > 0 {
            c.recv_ack()?;
        }
        eprintln!("sent {sent} message(s) without acknowledgement");
    }
    Ok(())
}

fn outgoing<'a>(
    a: &'a PubArgs,
    payload: &'a str,
    content_type: ContentType,
) -> OutgoingMessage<'a> {
    let mut m = OutgoingMessage::new(payload.as_bytes()).content_type(content_type);
    m.fields.room = a.room.as_deref();
    m.fields.idempotency_key = a.idempotency_key.as_deref().map(str::as_bytes);
    m
}

fn print_acks(c: &mut Client, out: &mut impl Write, json: bool) -> Result<(), Failure> {
    while c.acks_pending() > 0 {
        let ack = c.recv_ack()?;
        for id in ack.ids() {
            if json {
                writeln!(out, "{}", json!({ "id": id }))?;
            } else {
                writeln!(out, "{id}")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn subscribe(a: &SubArgs) -> Result<(), Failure> {
    let start = parse_start(&a.from).map_err(Failure::Usage)?;
    if a.count == Some(0) {
        return Ok(());
    }
    let mut c = connect(&a.conn)?;
    let sub = c.subscribe(&a.channel, a.room.as_deref(), start)?;
    tracing::debug!(
        sub_id = sub.sub_id,
        next_id = sub.next_id,
        head_id = sub.head_id,
        "subscribed"
    );
    let mut out = io::stdout().lock();
    let mut seen = 0u64;
    for event in c.events() {
        match event? {
            Event::Message { message, .. } => {
                print_message(&mut out, &message, a.conn.json)?;
                seen += 1;
                if a.count.is_some_and(|n| seen >= n) {
                    break;
                }
            }
            Event::Gap {
                sub_id,
                wanted_id,
                oldest_id,
            } => {
                eprintln!(
                    "gap: message #{wanted_id} and later ones up to #{oldest_id} are no longer retained; continuing at #{oldest_id}"
                );
                if a.conn.json {
                    let gap = json!({ "gap": { "sub_id": sub_id, "wanted_id": wanted_id, "oldest_id": oldest_id } });
                    writeln!(out, "{gap}")?;
                }
            }
            Event::Closed { code, message, .. } => {
                return Err(Failure::Client(ClientError::Server { code, message }));
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn history(a: &HistoryArgs) -> Result<(), Failure> {
    let mut query = HistoryQuery {
        room: a.room.clone(),
        newest_first: !a.oldest_first,
        after_id: a.after.unwrap_or(0),
        before_id: a.before.unwrap_or(0),
        limit: 0,
    };
    let page_max = u64::from(limits::HISTORY_PAGE_MAX);
    let mut left = a.limit;
    let mut c = connect(&a.conn)?;
    let mut out = io::stdout().lock();
    loop {
        // `min` with the page maximum makes the narrowing exact.
        query.limit = left.map_or(0, |n| n.min(page_max) as u32);
        let page = c.history(&a.channel, &query)?;
        for m in &page {
            print_message(&mut out, m, a.conn.json)?;
        }
        let Some(n) = left else { break };
        let got = page.len() as u64;
        left = Some(n.saturating_sub(got));
        let Some(last) = page.last() else { break };
        if left == Some(0) || got < u64::from(query.limit) {
            break;
        }
        if query.newest_first {
            query.before_id = last.id;
        } else {
            query.after_id = last.id;
        }
    }
    Ok(())
}

fn print_channel(out: &mut impl Write, channel: &Value, json: bool) -> Result<(), Failure> {
    if json {
        writeln!(out, "{channel}")?;
    } else {
        let pretty = serde_json::to_string_pretty(channel).unwrap_or_else(|_| channel.to_string());
        writeln!(out, "{pretty}")?;
    }
    Ok(())
}

fn channel(cmd: ChannelCommand) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    match cmd {
        ChannelCommand::Create(a) => {
            let mut c = connect(&a.conn)?;
            let ch = c.channel_create(&a.fields(true))?;
            print_channel(&mut out, &ch, a.conn.json)
        }
        ChannelCommand::Get(a) => {
            let mut c = connect(&a.conn)?;
            let ch = c.channel_get(&a.name)?;
            print_channel(&mut out, &ch, a.conn.json)
        }
        ChannelCommand::List(conn) => {
            let mut c = connect(&conn)?;
            for ch in c.channel_list()? {
                if conn.json {
                    writeln!(out, "{ch}")?;
                } else {
                    let field =
                        |k: &str| ch.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                    writeln!(
                        out,
                        "{}\t{}\t{}",
                        field("name"),
                        field("type"),
                        field("description")
                    )?;
                }
            }
            Ok(())
        }
        ChannelCommand::Update(a) => {
            let fields = a.fields(false);
            if fields.as_object().is_some_and(Map::is_empty) {
                return Err(usage("nothing to update: give at least one option"));
            }
            let mut c = connect(&a.conn)?;
            let ch = c.channel_update(&a.name, &fields)?;
            print_channel(&mut out, &ch, a.conn.json)
        }
        ChannelCommand::Delete(a) => {
            let mut c = connect(&a.conn)?;
            c.channel_delete(&a.name)?;
            if a.conn.json {
                writeln!(out, "{}", json!({ "deleted": a.name }))?;
            } else {
                writeln!(out, "deleted {}", a.name)?;
            }
            Ok(())
        }
    }
}

fn bench(a: BenchArgs) -> Result<(), Failure> {
    if !a.embedded && !a.spawn && a.key.is_empty() {
        return Err(usage(
            "bench needs --key (or TIDEWIRE_KEY) unless --embedded or --spawn",
        ));
    }
    let durability = config::parse_durability(&a.durability).map_err(usage)?;
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
        server: a.server,
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
        spawn: a.spawn,
        server_pid: a.server_pid,
        polls: a.polls,
        rounds: a.rounds,
        conns: a.conns,
    };
    tidewire::bench::run(&cfg).map_err(|e| Failure::Serve(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn pub_parses_its_options() {
        let cli = Cli::try_parse_from([
            "tidewire", "pub", "--key", "k", "news", "hi", "--room", "r", "--ack", "durable",
            "--count", "3",
        ])
        .unwrap();
        let Command::Pub(a) = cli.command else {
            panic!("not pub")
        };
        assert_eq!(a.channel, "news");
        assert_eq!(a.message.as_deref(), Some("hi"));
        assert_eq!(a.count, 3);
        assert!(matches!(a.ack, AckArg::Durable));
    }

    #[test]
    fn channel_options_become_json_fields() {
        let cli = Cli::try_parse_from([
            "tidewire",
            "channel",
            "create",
            "--key",
            "k",
            "chat",
            "--type",
            "separate_rooms",
            "--custom-publish",
            "true",
            "--other-permissions",
            "subscribe",
        ])
        .unwrap();
        let Command::Channel(ChannelCommand::Create(a)) = cli.command else {
            panic!("not channel create")
        };
        assert_eq!(
            a.fields(true),
            json!({"name": "chat", "type": "separate_rooms", "custom_publish": true, "other_permissions": "subscribe"})
        );
    }

    #[test]
    fn a_missing_key_is_a_usage_error() {
        std::env::remove_var("TIDEWIRE_KEY");
        let err = Cli::try_parse_from(["tidewire", "ping"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
