//! Test harness: run the real `mqtt-broker` binary on 127.0.0.1:0 with a temporary data directory, learn its
//! address from the "listening on" log line, and kill it when dropped.

#![allow(dead_code)] // Each test crate uses its own part of the harness.

pub mod auth;
pub mod clients;
pub mod cluster;
pub mod http;
#[path = "../../src/test_ports.rs"]
pub mod ports;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mqtt-broker");
/// How long the broker may take to start (debug build, busy machine).
const STARTUP: Duration = Duration::from_secs(20);

pub struct BrokerProcess {
    child: Child,
    pub addr: SocketAddr,
    /// Every stderr line so far, for assertions and for failure messages.
    pub log: Arc<Mutex<Vec<String>>>,
    pub data_dir: tempfile::TempDir,
}

/// A broker that exited (or hung) before it logged its address: its log, which says why.
#[derive(Debug)]
pub struct StartFailure {
    pub log: Vec<String>,
}

impl StartFailure {
    /// Whether it failed because another process held the port it listens on for the other cluster nodes.
    pub fn cluster_port_taken(&self) -> bool {
        self.log
            .iter()
            .any(|l| l.contains("cannot listen for cluster nodes") && l.contains("Address already in use"))
    }
}

/// The I/O driver the suite runs against (`MQTT_TEST_IO`), if one is asked for.
pub fn test_io() -> Option<String> {
    std::env::var("MQTT_TEST_IO").ok().filter(|v| !v.is_empty())
}

impl BrokerProcess {
    /// Start the broker with `extra` flags added after `--listen 127.0.0.1:0 --data-dir TMP`.
    pub fn start(extra: &[&str]) -> BrokerProcess {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let path = data_dir.path().to_path_buf();
        BrokerProcess::start_with_data_dir(data_dir, &path, extra)
    }

    /// Start with the data directory at `path` (inside the kept temp dir `data_dir`).
    pub fn start_with_data_dir(data_dir: tempfile::TempDir, path: &std::path::Path, extra: &[&str]) -> BrokerProcess {
        BrokerProcess::start_with_env(data_dir, path, extra, &[])
    }

    /// Like `start_with_data_dir`, with environment variables set for the broker.
    pub fn start_with_env(
        data_dir: tempfile::TempDir,
        path: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> BrokerProcess {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        BrokerProcess::spawn(data_dir, path, &args, env, test_io())
    }

    /// Start on the I/O driver `io` (auto, uring, epoll) whatever `MQTT_TEST_IO` says, with `env` set.
    pub fn start_on_io(io: &str, env: &[(&str, &str)]) -> BrokerProcess {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let path = data_dir.path().to_path_buf();
        BrokerProcess::spawn(data_dir, &path, &["--listen", "127.0.0.1:0"], env, Some(io.to_string()))
    }

    /// Start with `config` as the configuration file (its listeners, instead of `--listen`), plus `extra` flags.
    /// `addr` is the first listener's address.
    pub fn start_with_config(config: &str, extra: &[&str]) -> BrokerProcess {
        match BrokerProcess::try_start_with_config(config, extra) {
            Ok(broker) => broker,
            Err(failure) => panic!("broker did not log its address; stderr: {:?}", failure.log),
        }
    }

    /// Like `start_with_config`, but a broker that exits before it listens is returned as a `StartFailure` (its
    /// log) instead of failing the test: the cluster helpers retry a node whose cluster port was taken meanwhile.
    pub fn try_start_with_config(config: &str, extra: &[&str]) -> Result<BrokerProcess, StartFailure> {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let config_path = data_dir.path().join("broker.toml");
        std::fs::write(&config_path, config).expect("write config");
        let path = data_dir.path().join("data");
        let mut args = vec!["--config", config_path.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        BrokerProcess::try_spawn(data_dir, &path, &args, &[], test_io())
    }

    fn spawn(
        data_dir: tempfile::TempDir,
        path: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
        io: Option<String>,
    ) -> BrokerProcess {
        match BrokerProcess::try_spawn(data_dir, path, args, env, io) {
            Ok(broker) => broker,
            Err(failure) => panic!("broker did not log its address; stderr: {:?}", failure.log),
        }
    }

    fn try_spawn(
        data_dir: tempfile::TempDir,
        path: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
        io: Option<String>,
    ) -> Result<BrokerProcess, StartFailure> {
        let mut command = Command::new(BIN);
        command.arg("--data-dir").arg(path).args(args);
        if let Some(io) = &io {
            command.arg("--io").arg(io);
        }
        let mut child = command
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mqtt-broker");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let addr = line
                    .split("listening on ")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next());
                let addr = addr.map(str::to_string);
                // Record the line before announcing the address, so the log is complete up to it.
                lines.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(STARTUP) {
            Ok(addr) => addr.parse().expect("bound address parses"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = log.lock().unwrap().clone();
                return Err(StartFailure { log });
            }
        };
        if let Some(io) = io.filter(|io| io != "auto") {
            let name = if io == "uring" { "io_uring" } else { "epoll" };
            let said = log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(&format!("io driver: {name}")));
            assert!(said, "broker did not say it runs on {name}: {:?}", log.lock().unwrap());
        }
        Ok(BrokerProcess {
            child,
            addr,
            log,
            data_dir,
        })
    }

    /// The broker's resident memory in bytes (VmRSS), for the abuse tests' budgets.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("read /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status");
        kib * 1024
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The broker's process id, for the tests that look at or change its limits.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// Wait for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL: the process dies at once, with whatever it had not written lost. Returns the data directory, for a
    /// restart on it.
    pub fn crash(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.data_dir, tempfile::tempdir().expect("temp dir"))
    }

    /// Start again on the data directory a crashed or stopped broker left.
    pub fn restart(data_dir: tempfile::TempDir, extra: &[&str]) -> BrokerProcess {
        let path = data_dir.path().to_path_buf();
        BrokerProcess::start_with_data_dir(data_dir, &path, extra)
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Wait until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Receive from `rx` until `pick` returns `Some` or `timeout` passes.
pub fn wait_for<E, T>(rx: &Receiver<E>, timeout: Duration, mut pick: impl FnMut(E) -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(event) => {
                if let Some(found) = pick(event) {
                    return Some(found);
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// Events of a rumqttc client, as its event loop produced them.
pub type Events4 = Receiver<Result<rumqttc::Event, rumqttc::ConnectionError>>;
pub type Events5 = Receiver<Result<rumqttc::v5::Event, rumqttc::v5::ConnectionError>>;

/// Runs a v3.1.1 client's event loop on its own thread, forwarding every event; it stops at the first error so the
/// client never reconnects behind the test's back (the channel then reports disconnection).
pub fn pump4(mut connection: rumqttc::Connection) -> Events4 {
    forward(move || connection.iter().next())
}

/// The same for an MQTT 5 client.
pub fn pump5(mut connection: rumqttc::v5::Connection) -> Events5 {
    forward(move || connection.iter().next())
}

fn forward<T: Send + 'static, E: Send + 'static>(
    mut next: impl FnMut() -> Option<Result<T, E>> + Send + 'static,
) -> Receiver<Result<T, E>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        while let Some(event) = next() {
            let failed = event.is_err();
            if tx.send(event).is_err() || failed {
                return;
            }
        }
    });
    rx
}
