//! Starting and stopping a server: the io threads, the log writer, signals.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_queue::ArrayQueue;
use mio::net::TcpListener;
use mio::{Poll, Waker};

use crate::broker::writer::Writer;
use crate::broker::{Broker, IoLink};
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
    generated_admin_key: Option<String>,
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
        self.generated_admin_key.as_deref()
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

/// Starts a server and returns once it accepts connections.
///
/// # Errors
/// When the data directory, the logs or the listener cannot be opened.
pub fn start(config: ServerConfig) -> Result<ServerHandle, ServerError> {
    let io_threads = config.io_threads.max(1);
    let mut polls = Vec::with_capacity(io_threads);
    let mut links = Vec::with_capacity(io_threads);
    for _ in 0..io_threads {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        links.push(Arc::new(IoLink {
            completions: ArrayQueue::new(limits::COMPLETION_QUEUE_LEN),
            waker,
            wake_pending: AtomicBool::new(false),
        }));
        polls.push(poll);
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let crate::broker::Opened {
        broker,
        logs,
        generated_admin_key,
    } = Broker::open(
        crate::broker::BrokerConfig {
            data_dir: config.data_dir.clone(),
            log_config: config.log.clone(),
            clock: config.clock.clone(),
            admin_key: config.admin_key.clone(),
            limits: config.limits,
            http: config.http,
        },
        links,
    )?;
    let listener = TcpListener::bind(config.listen)?;
    let addr = listener.local_addr()?;
    let http_listener = match config.http_listen {
        Some(a) => Some(TcpListener::bind(a)?),
        None => None,
    };
    let http_addr = match &http_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let handoff: Handoff = Arc::new((0..io_threads).map(|_| ArrayQueue::new(1024)).collect());
    let mut threads = Vec::with_capacity(io_threads + 1);
    let writer = Writer::new(broker.clone(), logs, config.log.durability);
    threads.push(
        std::thread::Builder::new()
            .name("tidewire-writer".into())
            .spawn(move || writer.run())?,
    );
    let mut listeners = Some(Listeners {
        binary: Some(listener),
        http: http_listener,
    });
    for (id, poll) in polls.into_iter().enumerate() {
        let io = IoThread::new(
            id,
            poll,
            broker.clone(),
            listeners.take().unwrap_or_default(),
            handoff.clone(),
        )?;
        threads.push(
            std::thread::Builder::new()
                .name(format!("tidewire-io-{id}"))
                .spawn(move || {
                    if let Err(e) = io.run() {
                        tracing::error!(error = %e, "io thread stopped");
                    }
                })?,
        );
    }
    tracing::info!(%addr, io_threads, data_dir = %config.data_dir.display(), "tidewire listening");
    Ok(ServerHandle {
        addr,
        http_addr,
        broker,
        threads,
        generated_admin_key,
    })
}

/// Runs a server until SIGINT or SIGTERM, then shuts down gracefully.
///
/// # Errors
/// When the server cannot start or a thread panicked.
pub fn run(config: ServerConfig) -> Result<(), ServerError> {
    let handle = start(config)?;
    if let Some(key) = handle.generated_admin_key() {
        println!("tidewire: generated admin key (shown once, store it): {key}");
    }
    println!("tidewire: listening on {}", handle.local_addr());
    if let Some(http) = handle.http_addr() {
        println!("tidewire: HTTP shim listening on {http}");
    }
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "shutting down");
    }
    handle.shutdown();
    handle.wait()
}
