//! The `tidewire` binary: `serve` runs the broker; `pub`, `sub`, `history`,
//! `fetch`, `channel …` and `ping` are clients of a running server.
//!
//! Owns: argument parsing, output formats and exit codes. Never touches
//! broker logic; everything goes through `tidewire::server::run` or
//! `tidewire::client`.
//!
//! Exit codes: 0 success, 1 the server refused a request (or the server
//! failed), 2 usage error, 3 connection error (including a server that shut
//! down).

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

mod admin_cli;
mod amend_cli;
mod bench_cli;
mod channel_cli;
mod message_cli;
mod sub_cli;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use bench_cli::BenchArgs;
use channel_cli::ChannelCommand;
use message_cli::{FetchArgs, HistoryArgs, PubArgs};
use sub_cli::SubArgs;
use tidewire::client::{error_code_name, Client, ClientError, ConnectOptions};
use tidewire::config::{self, ServerConfig};
use tidewire::wire::ErrorCode;

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
    /// Edit a message (by id or uuid): its new version replaces it in
    /// history; subscribers get the edit as an event of its own.
    Edit(amend_cli::EditArgs),
    /// Delete a message (by id or uuid): it leaves history; subscribers get
    /// the deletion as an event of its own.
    Delete(amend_cli::DeleteArgs),
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

#[derive(Debug, Args)]
struct ServeArgs {
    /// Data directory, created if missing [default: ./tidewire-data].
    #[arg(long, env = "TIDEWIRE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the binary protocol [default: 127.0.0.1:7400].
    #[arg(long, env = "TIDEWIRE_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// Address of the HTTP shim, or `off` [default: 127.0.0.1:7480].
    #[arg(long, env = "TIDEWIRE_HTTP_LISTEN", value_name = "ADDR")]
    http_listen: Option<String>,
    /// TOML configuration file; the environment and flags override it, it
    /// overrides defaults.
    #[arg(long, env = "TIDEWIRE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Number of io threads [default: number of cores].
    #[arg(long, env = "TIDEWIRE_IO_THREADS", value_name = "N")]
    io_threads: Option<usize>,
    /// When an append counts as stored: none, batch or interval:MS [default: batch].
    #[arg(long, env = "TIDEWIRE_DURABILITY", value_name = "POLICY")]
    durability: Option<String>,
    /// Size of each segment file, in bytes.
    #[arg(long, env = "TIDEWIRE_SEGMENT_SIZE", value_name = "BYTES")]
    segment_size: Option<u64>,
    /// How long messages stay readable, in seconds [default: 86400].
    #[arg(long, env = "TIDEWIRE_RETENTION", value_name = "SECS")]
    retention: Option<u64>,
    /// How long an idle HTTP long poll is held before its 204, in seconds [default: 300].
    #[arg(long, env = "TIDEWIRE_HTTP_POLL_TIMEOUT", value_name = "SECS")]
    http_poll_timeout: Option<u64>,
    /// Turns the Channelstream API on, with this shared secret (requests are
    /// signed with it) [default: off].
    #[arg(
        long,
        env = "TIDEWIRE_CHANNELSTREAM_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    channelstream_secret: Option<String>,
    /// The instance the Channelstream API works in [default: default].
    #[arg(long, env = "TIDEWIRE_CHANNELSTREAM_INSTANCE", value_name = "NAME")]
    channelstream_instance: Option<String>,
    /// Peer addresses allowed to call the signed Channelstream API, comma
    /// separated; 0.0.0.0 allows any [default: 127.0.0.1].
    #[arg(
        long,
        env = "TIDEWIRE_CHANNELSTREAM_ALLOW_POSTING_FROM",
        value_name = "ADDRS",
        value_delimiter = ','
    )]
    channelstream_allow_posting_from: Option<Vec<String>>,
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
        Failure::Client(
            e @ ClientError::Server {
                code: ErrorCode::ShuttingDown,
                ..
            },
        ) => {
            // A connection ended by the server's shutdown is a connection
            // error, not a refused request.
            eprintln!("error: {e}");
            ExitCode::from(3)
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
        Command::Pub(a) => message_cli::publish(&a),
        Command::Sub(a) => sub_cli::subscribe(&a),
        Command::History(a) => message_cli::history(&a),
        Command::Fetch(a) => message_cli::fetch(&a),
        Command::Edit(a) => amend_cli::edit(&a),
        Command::Delete(a) => amend_cli::delete(&a),
        Command::Channel(cmd) => channel_cli::channel(cmd),
        Command::Instance(cmd) => admin_cli::run(cmd.request()),
        Command::Key(cmd) => admin_cli::run(cmd.request()),
        Command::User(cmd) => admin_cli::run(cmd.request()),
        Command::Group(cmd) => admin_cli::run(cmd.request()),
        Command::Bench(a) => bench_cli::bench(a),
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
    apply_serve_args(&a, &mut config)?;
    config.validate().map_err(usage)?;
    tracing::info!(data_dir = %config.data_dir.display(), listen = %config.listen, "starting");
    tidewire::server::run(config).map_err(|e| Failure::Serve(e.to_string()))
}

/// Puts the flags (or their environment variables) over the file's values;
/// an error names the flag and its variable.
fn apply_serve_args(a: &ServeArgs, config: &mut ServerConfig) -> Result<(), Failure> {
    let named = |flag: &str, env: &str| {
        let what = format!("--{flag} (or {env})");
        move |e: config::ConfigError| usage(format!("{what}: {e}"))
    };
    if let Some(dir) = &a.data_dir {
        config.data_dir.clone_from(dir);
    }
    if let Some(listen) = &a.listen {
        config.listen = config::parse_listen(listen).map_err(named("listen", "TIDEWIRE_LISTEN"))?;
    }
    if let Some(http) = &a.http_listen {
        config.http_listen = config::parse_http_listen(http)
            .map_err(named("http-listen", "TIDEWIRE_HTTP_LISTEN"))?;
    }
    if let Some(secs) = a.http_poll_timeout {
        config.http.poll_timeout_us = config::secs_to_us(secs, "--http-poll-timeout")
            .map_err(named("http-poll-timeout", "TIDEWIRE_HTTP_POLL_TIMEOUT"))?;
    }
    if let Some(n) = a.io_threads {
        config.io_threads = n;
    }
    if let Some(d) = &a.durability {
        config.log.durability = config::parse_durability(d)
            .map_err(|e| usage(format!("--durability (or TIDEWIRE_DURABILITY): {e}")))?;
    }
    if let Some(size) = a.segment_size {
        config.log.segment_size = size;
    }
    if let Some(secs) = a.retention {
        config.log.retention_us = config::secs_to_us(secs, "--retention")
            .map_err(named("retention", "TIDEWIRE_RETENTION"))?;
    }
    config::set_channelstream(
        config,
        a.channelstream_secret.as_deref(),
        a.channelstream_instance.as_deref(),
        a.channelstream_allow_posting_from.as_deref(),
    );
    Ok(())
}

/// Connects and authenticates; a failure names the server address.
///
/// # Errors
/// A usage error for an address without a port; otherwise the client's.
pub(crate) fn connect(conn: &ConnArgs) -> Result<Client, Failure> {
    check_server_address(&conn.server)?;
    let mut options = ConnectOptions::new(&conn.server, &conn.key);
    options.user_key.clone_from(&conn.user_key);
    options.instance.clone_from(&conn.instance);
    Client::connect_with(&options).map_err(|e| match e {
        ClientError::Io(io) => Failure::Client(ClientError::Io(io::Error::new(
            io.kind(),
            format!("cannot connect to {}: {io}", conn.server),
        ))),
        ClientError::Server { code, message } if code == ErrorCode::AuthFailed => {
            Failure::Client(ClientError::Server {
                code,
                message: format!("{} (server {})", message, conn.server),
            })
        }
        other => Failure::Client(other),
    })
}

/// `--server` must be `HOST:PORT`: a bare host is a usage error, not a
/// failed connection.
///
/// # Errors
/// [`Failure::Usage`] naming the address.
pub(crate) fn check_server_address(addr: &str) -> Result<(), Failure> {
    let port = addr.rsplit_once(':').map(|(_, p)| p);
    if port.is_some_and(|p| p.parse::<u16>().is_ok()) {
        return Ok(());
    }
    Err(usage(format!(
        "server address {addr:?} has no port: give HOST:PORT, e.g. {}",
        config::LISTEN_DEFAULT
    )))
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
    fn a_server_address_needs_a_port() {
        for ok in ["127.0.0.1:7400", "localhost:1", "[::1]:7400"] {
            assert!(check_server_address(ok).is_ok(), "{ok}");
        }
        for bad in ["localhost", "127.0.0.1", "host:", "host:port", "host:70000"] {
            let Err(Failure::Usage(why)) = check_server_address(bad) else {
                panic!("{bad} accepted");
            };
            assert!(why.contains(bad), "{why}");
        }
    }

    #[test]
    fn a_missing_key_is_a_usage_error() {
        std::env::remove_var("TIDEWIRE_KEY");
        let err = Cli::try_parse_from(["tidewire", "ping"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
