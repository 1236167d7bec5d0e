//! Helpers for tests that run `tidewire serve` as a separate process and
//! treat it from outside, as an operator or a failing machine would.
//!
//! * [`ServerProcess`]: spawns the binary on `127.0.0.1:0`, waits for the
//!   address it prints, keeps its log (stderr) in a file for failure
//!   messages, sends it signals, and kills it when dropped, even when the
//!   test panics.
//! * [`LoopMount`]: an ext4 image attached to a loop device and mounted;
//!   dropping it unmounts and detaches on every path. [`loop_support`] says
//!   whether this machine can do that (root, `/dev/loop-control`, the
//!   e2fsprogs tools); tests that need it print why they skip when it
//!   cannot, unless `TIDEWIRE_LOOP_REQUIRED` is set (CI sets it), in which
//!   case a missing loop device fails the test.
//! * [`Serve::run_to_exit`]: a server expected to refuse to start, with
//!   its exit status and output.
//! * [`rss_anon_kib`]: a process's anonymous resident memory.
//! * [`read_all`]: a channel's whole history, oldest first, page by page.
//! * [`Rng`]: a seeded generator, so a failing random run can be replayed.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tidewire::client::{Client, HistoryQuery, Message};

/// The admin key every spawned server is started with.
pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

/// How long a spawned server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Set (to anything) to make a missing loop device a test failure.
pub const LOOP_REQUIRED_ENV: &str = "TIDEWIRE_LOOP_REQUIRED";

/// How to run `tidewire serve`.
#[derive(Debug, Clone)]
pub struct Serve {
    data_dir: PathBuf,
    durability: String,
    segment_size: Option<u64>,
    http: bool,
}

impl Serve {
    /// The server on `data_dir` under `batch` durability, default segments.
    pub fn new(data_dir: &Path) -> Serve {
        Serve {
            data_dir: data_dir.to_path_buf(),
            durability: "batch".into(),
            segment_size: None,
            http: false,
        }
    }

    /// The HTTP shim on a free loopback port too (off otherwise).
    pub fn http(mut self) -> Serve {
        self.http = true;
        self
    }

    /// Runs the server to its end with stdout and stderr captured: for a
    /// server that is expected to refuse to start. One still running after
    /// `START_TIMEOUT` is killed (its status then says so).
    ///
    /// # Panics
    /// When the binary cannot be run.
    pub fn run_to_exit(&self) -> std::process::Output {
        let out = tempfile::tempfile().expect("stdout file");
        let err = tempfile::tempfile().expect("stderr file");
        let mut child = self
            .command()
            .stdout(Stdio::from(out.try_clone().expect("stdout file")))
            .stderr(Stdio::from(err.try_clone().expect("stderr file")))
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", env!("CARGO_BIN_EXE_tidewire")));
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for the server") {
                break status;
            }
            if started.elapsed() > START_TIMEOUT {
                // It may have exited meanwhile; the wait below reaps it.
                let _ = child.kill();
                break child.wait().expect("waiting for the server");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let read = |mut f: File| {
            use std::io::{Read, Seek};
            let mut bytes = Vec::new();
            f.rewind()
                .and_then(|_| f.read_to_end(&mut bytes))
                .expect("output file");
            bytes
        };
        std::process::Output {
            status,
            stdout: read(out),
            stderr: read(err),
        }
    }

    /// `--durability POLICY`.
    pub fn durability(mut self, policy: &str) -> Serve {
        self.durability = policy.into();
        self
    }

    /// `--segment-size BYTES`.
    pub fn segment_size(mut self, bytes: u64) -> Serve {
        self.segment_size = Some(bytes);
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidewire"));
        let http = if self.http { "127.0.0.1:0" } else { "off" };
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--http-listen", http])
            .args(["--io-threads", "2", "--durability", &self.durability])
            .arg("--data-dir")
            .arg(&self.data_dir);
        if let Some(size) = self.segment_size {
            cmd.args(["--segment-size", &size.to_string()]);
        }
        cmd.env("TIDEWIRE_ADMIN_KEY", ADMIN_KEY)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        cmd
    }
}

/// A `tidewire serve` process; killed and reaped when dropped.
pub struct ServerProcess {
    child: Child,
    addr: String,
    http_addr: Option<String>,
    log: tempfile::NamedTempFile,
    reaped: bool,
}

impl ServerProcess {
    /// Spawns the server and waits for its address.
    ///
    /// # Panics
    /// When it does not start; the message carries its log.
    pub fn spawn(serve: &Serve) -> ServerProcess {
        Self::try_spawn(serve).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Spawns the server and waits for its address; the error carries the
    /// exit status and the log of a server that exited instead.
    pub fn try_spawn(serve: &Serve) -> Result<ServerProcess, String> {
        let log = tempfile::NamedTempFile::new().map_err(|e| format!("log file: {e}"))?;
        let stderr = log.reopen().map_err(|e| format!("log file: {e}"))?;
        let mut child = serve
            .command()
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", env!("CARGO_BIN_EXE_tidewire")))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Reads the addresses, then keeps draining stdout so the server
        // never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let binary = line.strip_prefix("tidewire: listening on ");
                let http = line.strip_prefix("tidewire: HTTP shim listening on ");
                if let Some(a) = binary.or(http) {
                    // The receiver may have given up; nothing to do then.
                    let _ = tx.send((http.is_some(), a.trim().to_string()));
                }
            }
        });
        let mut server = ServerProcess {
            child,
            addr: String::new(),
            http_addr: None,
            log,
            reaped: false,
        };
        let started = std::time::Instant::now();
        let listening =
            |s: &ServerProcess| !s.addr.is_empty() && (!serve.http || s.http_addr.is_some());
        while !listening(&server) {
            let left = START_TIMEOUT.saturating_sub(started.elapsed());
            match rx.recv_timeout(left) {
                Ok((true, addr)) => server.http_addr = Some(addr),
                Ok((false, addr)) => server.addr = addr,
                Err(_) => break,
            }
        }
        if listening(&server) {
            return Ok(server);
        }
        let status = server.kill9();
        Err(format!(
            "tidewire serve did not start ({status}); its log:\n{}",
            server.log()
        ))
    }

    /// `host:port` of the binary protocol.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `host:port` of the HTTP shim.
    ///
    /// # Panics
    /// When the server was started without it ([`Serve::http`]).
    pub fn http_addr(&self) -> &str {
        self.http_addr
            .as_deref()
            .expect("the server runs the HTTP shim")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client connected with the admin key.
    pub fn connect(&self) -> Client {
        Client::connect(&self.addr, ADMIN_KEY).expect("client connects")
    }

    /// Sends `sig` to the server (SIGSTOP, SIGCONT, SIGTERM, ...).
    ///
    /// # Panics
    /// When the process was reaped already or kill(2) fails.
    pub fn signal(&self, sig: libc::c_int) {
        assert!(!self.reaped, "signal to a reaped server");
        send_signal(self.pid(), sig);
    }

    /// SIGKILL (a stopped process dies too), then reaps it.
    pub fn kill9(&mut self) -> String {
        if self.reaped {
            return "reaped already".into();
        }
        // The process may have exited already; then only the reaping matters.
        let _ = self.child.kill();
        self.wait().to_string()
    }

    /// SIGTERM (graceful shutdown), then reaps it.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait()
    }

    fn wait(&mut self) -> ExitStatus {
        let status = self.child.wait().expect("waiting for the server");
        self.reaped = true;
        status
    }

    /// Everything the server wrote to stderr so far.
    pub fn log(&self) -> String {
        let raw = std::fs::read(self.log.path()).unwrap_or_default();
        String::from_utf8_lossy(&raw).into_owned()
    }

    /// The last `n` lines of [`ServerProcess::log`].
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if !self.reaped {
            // Best effort on every path, panics included.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// kill(2) on a process this test started.
///
/// # Panics
/// When kill(2) fails.
pub fn send_signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// Anonymous resident memory of process `pid`, in KiB.
///
/// # Panics
/// When `/proc/PID/status` cannot be read.
pub fn rss_anon_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc status")
}

/// A channel's whole retained history, oldest first.
pub fn read_all(c: &mut Client, channel: &str) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    loop {
        let page = c
            .history(
                channel,
                &HistoryQuery {
                    newest_first: false,
                    after_id: out.last().map_or(0, |m| m.id),
                    limit: 1000,
                    ..HistoryQuery::default()
                },
            )
            .unwrap_or_else(|e| panic!("history of {channel} after {} messages: {e}", out.len()));
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Serializes the tests of one binary that use loop devices or measure
/// time, so they neither compete for the two cores nor for loop devices.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

// ----- loop devices ---------------------------------------------------------

fn run(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{shown}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{shown}: {}: {}", out.status, text.trim()))
    }
}

/// Creates `path` as a sparse file of `bytes` and makes an ext4 file
/// system on it (`extra` goes to mkfs.ext4, e.g. `["-b", "1024", "-m", "0"]`).
///
/// # Errors
/// When the file or mkfs.ext4 fails.
pub fn make_ext4(path: &Path, bytes: u64, extra: &[&str]) -> Result<(), String> {
    let f = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.set_len(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    drop(f);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .args(extra)
        .arg(path))
    .map(drop)
}

/// `e2fsck -fy` on an image that is not mounted: replays the journal and
/// repairs what a power cut left. Exit codes 0 (clean) and 1 (repaired) are
/// success; the output is returned either way.
///
/// # Errors
/// A higher exit code, with e2fsck's output.
pub fn fsck(image: &Path) -> Result<String, String> {
    let out = Command::new("e2fsck")
        .arg("-fy")
        .arg(image)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("e2fsck: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0 | 1) => Ok(text),
        _ => Err(format!(
            "e2fsck {}: {}\n{text}",
            out.status,
            image.display()
        )),
    }
}

/// An ext4 image attached to a loop device and mounted at a directory.
/// Dropping it unmounts and detaches, whatever happened before.
#[derive(Debug)]
pub struct LoopMount {
    device: Option<String>,
    mountpoint: PathBuf,
    mounted: bool,
}

impl LoopMount {
    /// Attaches `image` to a free loop device and mounts it at `mountpoint`
    /// (created when missing).
    ///
    /// # Errors
    /// When losetup or mount fails (the device is detached again).
    pub fn mount(image: &Path, mountpoint: &Path) -> Result<LoopMount, String> {
        std::fs::create_dir_all(mountpoint)
            .map_err(|e| format!("{}: {e}", mountpoint.display()))?;
        let device = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image))?
        .trim()
        .to_string();
        let mut guard = LoopMount {
            device: Some(device.clone()),
            mountpoint: mountpoint.to_path_buf(),
            mounted: false,
        };
        run(Command::new("mount")
            .args(["-t", "ext4", &device])
            .arg(mountpoint))?;
        guard.mounted = true;
        Ok(guard)
    }

    /// The mounted directory.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The loop device, e.g. `/dev/loop3`.
    pub fn device(&self) -> &str {
        self.device.as_deref().unwrap_or("(detached)")
    }

    /// Unmounts and detaches; doing it twice is harmless. A mount that stays
    /// busy (a process still holds a file) is detached lazily.
    ///
    /// # Errors
    /// When umount or losetup -d fails.
    pub fn unmount(&mut self) -> Result<(), String> {
        if self.mounted {
            let mut last = Ok(String::new());
            for _ in 0..50 {
                last = run(Command::new("umount").arg(&self.mountpoint));
                if last.is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if last.is_err() {
                run(Command::new("umount").arg("-l").arg(&self.mountpoint))?;
            }
            self.mounted = false;
        }
        if let Some(device) = self.device.take() {
            run(Command::new("losetup").args(["-d", &device]))?;
        }
        Ok(())
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            // Drop cannot fail; say it where the operator will look.
            let _ = writeln!(std::io::stderr(), "cleaning up a loop mount: {e}");
        }
    }
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn probe_loop_devices() -> Result<(), String> {
    if effective_uid() != Some(0) {
        return Err("not running as root".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err("no /dev/loop-control".into());
    }
    for tool in ["losetup", "mkfs.ext4", "e2fsck", "mount", "umount"] {
        run(Command::new("sh").args(["-c", &format!("command -v {tool}")]))
            .map_err(|_| format!("{tool} is not installed"))?;
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let image = dir.path().join("probe.img");
    make_ext4(&image, 8 << 20, &[])?;
    let mut m = LoopMount::mount(&image, &dir.path().join("mnt"))?;
    m.unmount()
}

/// Whether loop-mounted ext4 images work here (probed once per process).
///
/// # Errors
/// Why not: no root, no loop devices, missing tools.
pub fn loop_support() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(probe_loop_devices).clone()
}

/// True when loop mounts work. Otherwise prints why `test` is skipped on
/// the terminal (past the test harness's capture) and returns false, or
/// panics when `TIDEWIRE_LOOP_REQUIRED` is set.
pub fn loop_or_skip(test: &str) -> bool {
    match loop_support() {
        Ok(()) => true,
        Err(why) if std::env::var_os(LOOP_REQUIRED_ENV).is_some() => {
            panic!("{test}: loop devices are required ({LOOP_REQUIRED_ENV}) but {why}")
        }
        Err(why) => {
            // Written to the process's stderr directly so that it shows even
            // when the harness captures the test's output; if stderr itself
            // fails there is nowhere left to say it.
            let line =
                format!("\nSKIPPED {test}: needs root and loop devices for an ext4 image: {why}\n");
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
            false
        }
    }
}

// ----- randomness -------------------------------------------------------------

/// SplitMix64: small, seeded, good enough to pick moments and sizes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `env_var` when it holds a number, from the clock
    /// otherwise; returns the seed too so a failure can print it.
    pub fn from_env(env_var: &str) -> (Rng, u64) {
        let seed = std::env::var(env_var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        (Rng(seed), seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A number from the environment, or `default`.
pub fn env_number(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
