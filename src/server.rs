//! Starting and stopping a server: the io threads, the log writer, signals.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_queue::ArrayQueue;
use mio::net::TcpListener;
use mio::{Poll, Waker};

use crate::broker::writer::Writer;
use crate::broker::{BootstrapKey, Broker, IoLink, OpenError};
use crate::config::ServerConfig;
use crate::limits;
use crate::net::{Handoff, IoThread, Listeners, WAKER};

/// Any error that stops a server from starting or running.
pub type ServerError = Box<dyn std::error::Error + Send + Sync>;

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    broker: Arc<Broker>,
    threads: Vec<JoinHandle<()>>,
    bootstrap: BootstrapKey,
}

impl ServerHandle {
    /// The address the binary protocol listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    /// The address the HTTP shim listens on, when it is on.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }
    /// The admin key generated at this start, if one was.
    pub fn generated_admin_key(&self) -> Option<&str> {
        match &self.bootstrap {
            BootstrapKey::Generated(key) => Some(key),
            _ => None,
        }
    }
    /// What became of the bootstrap admin key at this start.
    pub fn bootstrap_key(&self) -> &BootstrapKey {
        &self.bootstrap
    }
    /// Begins a graceful shutdown: stop accepting and reading, append and
    /// sync what was queued, flush responses.
    pub fn shutdown(&self) {
        self.broker.shutting_down.store(true, Ordering::Release);
        self.broker.unpark_writer();
        self.broker.wake_all_io();
    }
    /// Waits for every thread to finish.
    ///
    /// # Errors
    /// When a thread panicked.
    pub fn wait(self) -> Result<(), ServerError> {
        let mut panicked = false;
        for t in self.threads {
            panicked |= t.join().is_err();
        }
        if panicked {
            return Err("a server thread panicked".into());
        }
        Ok(())
    }
}

/// An error that names what it concerns (a path, an address, a step).
fn context(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> ServerError {
    move |e| format!("{what}: {e}").into()
}

/// Starts a server and returns once it accepts connections.
///
/// # Errors
/// When the data directory, the logs or a listener cannot be opened; the
/// message names the path or address.
pub fn start(config: ServerConfig) -> Result<ServerHandle, ServerError> {
    let io_threads = config.io_threads.max(1);
    let (polls, links) = event_loops(io_threads)?;
    let data_dir = config.data_dir.display().to_string();
    std::fs::create_dir_all(&config.data_dir).map_err(context(format!(
        "cannot create the data directory {data_dir}"
    )))?;
    let crate::broker::Opened {
        broker,
        logs,
        bootstrap,
    } = Broker::open(
        crate::broker::BrokerConfig {
            data_dir: config.data_dir.clone(),
            log_config: config.log.clone(),
            clock: config.clock.clone(),
            admin_key: config.admin_key.clone(),
            limits: config.limits,
            http: config.http,
            channelstream: config.channelstream.clone(),
        },
        links,
    )
    .map_err(|e| -> ServerError {
        match e {
            // It names the directory and the server holding it.
            OpenError::Locked(_) => Box::new(e),
            OpenError::Storage(_) => {
                format!("cannot open the data directory {data_dir}: {e}").into()
            }
        }
    })?;
    let listeners = bind(&config)?;
    let addr = listeners
        .binary
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?
        .ok_or("no binary listener")?;
    let http_addr = listeners
        .http
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let mut threads = Vec::with_capacity(io_threads + 1);
    let writer = Writer::new(broker.clone(), logs, config.log.durability);
    threads.push(
        std::thread::Builder::new()
            .name("tidewire-writer".into())
            .spawn(move || writer.run())
            .map_err(context("starting the log writer thread"))?,
    );
    spawn_io_threads(&broker, polls, listeners, &mut threads)?;
    tracing::info!(%addr, io_threads, data_dir = %config.data_dir.display(), "tidewire listening");
    Ok(ServerHandle {
        addr,
        http_addr,
        broker,
        threads,
        bootstrap,
    })
}

/// One `Poll` per io thread and the link the writer wakes it through.
fn event_loops(n: usize) -> Result<(Vec<Poll>, Vec<Arc<IoLink>>), ServerError> {
    let mut polls = Vec::with_capacity(n);
    let mut links = Vec::with_capacity(n);
    for _ in 0..n {
        let poll = Poll::new().map_err(context("creating an event loop"))?;
        let waker =
            Waker::new(poll.registry(), WAKER).map_err(context("creating an event loop waker"))?;
        links.push(Arc::new(IoLink {
            completions: ArrayQueue::new(limits::COMPLETION_QUEUE_LEN),
            waker,
            wake_pending: AtomicBool::new(false),
        }));
        polls.push(poll);
    }
    Ok((polls, links))
}

/// Binds the listeners; a failure names the address and its flag.
fn bind(config: &ServerConfig) -> Result<Listeners, ServerError> {
    let binary = TcpListener::bind(config.listen).map_err(context(format!(
        "cannot listen on {} (the binary protocol, --listen)",
        config.listen
    )))?;
    let http = match config.http_listen {
        Some(a) => Some(TcpListener::bind(a).map_err(context(format!(
            "cannot listen on {a} (the HTTP shim, --http-listen)"
        )))?),
        None => None,
    };
    Ok(Listeners {
        binary: Some(binary),
        http,
    })
}

/// Starts one thread per event loop; the first accepts on the listeners.
fn spawn_io_threads(
    broker: &Arc<Broker>,
    polls: Vec<Poll>,
    listeners: Listeners,
    threads: &mut Vec<JoinHandle<()>>,
) -> Result<(), ServerError> {
    let handoff: Handoff = Arc::new((0..polls.len()).map(|_| ArrayQueue::new(1024)).collect());
    let mut listeners = Some(listeners);
    for (id, poll) in polls.into_iter().enumerate() {
        let io = IoThread::new(
            id,
            poll,
            broker.clone(),
            listeners.take().unwrap_or_default(),
            handoff.clone(),
        )
        .map_err(context(format!("starting io thread {id}")))?;
        threads.push(
            std::thread::Builder::new()
                .name(format!("tidewire-io-{id}"))
                .spawn(move || {
                    if let Err(e) = io.run() {
                        tracing::error!(error = %e, "io thread stopped");
                    }
                })
                .map_err(context(format!("starting io thread {id}")))?,
        );
    }
    Ok(())
}

/// Runs a server until SIGINT or SIGTERM, then shuts down gracefully.
///
/// # Errors
/// When the server cannot start or a thread panicked.
pub fn run(config: ServerConfig) -> Result<(), ServerError> {
    let handle = start(config)?;
    say_bootstrap_key(handle.bootstrap_key());
    println!("tidewire: listening on {}", handle.local_addr());
    if let Some(http) = handle.http_addr() {
        println!("tidewire: HTTP shim listening on {http}");
    }
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(context("installing the SIGINT and SIGTERM handlers"))?;
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "shutting down");
    }
    handle.shutdown();
    handle.wait()
}

/// Tells the operator, on stdout, what became of the bootstrap admin key:
/// a generated key is shown once; a new configured key joins the earlier
/// ones, which keep working; a revoked one does not work.
fn say_bootstrap_key(bootstrap: &BootstrapKey) {
    match bootstrap {
        BootstrapKey::Generated(key) => {
            println!("tidewire: generated admin key (shown once, store it): {key}");
        }
        BootstrapKey::Added(id) => {
            println!(
                "tidewire: the configured admin key (admin_key / TIDEWIRE_ADMIN_KEY) is new: \
                 added as server-wide admin key {id}; earlier admin keys still work \
                 (list: tidewire key list --kind server_admin; \
                 revoke: tidewire key revoke ID --kind server_admin)"
            );
            tracing::warn!(id, "a new bootstrap admin key was added");
        }
        BootstrapKey::Revoked(id) => {
            println!(
                "tidewire: the configured admin key (admin_key / TIDEWIRE_ADMIN_KEY) is admin key {id}, \
                 which was revoked: it does not work; configure another key to add one"
            );
            tracing::warn!(id, "the configured bootstrap admin key was revoked");
        }
        BootstrapKey::Known(_) | BootstrapKey::First(_) | BootstrapKey::None => {}
    }
}
