//! The real binary's command line: config checking, exit codes, startup, signals.

mod common;

use common::{BrokerProcess, BIN};
use std::process::Command;
use std::time::Duration;

fn write_config(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp file");
    std::fs::write(file.path(), text).expect("write config");
    file
}

#[test]
fn check_config_on_good_file_prints_effective_config_and_exits_0() {
    let file = write_config(
        "log_level = \"debug\"\n[[listeners]]\naddress = \"127.0.0.1:18830\"\n[limits]\nmax_inflight = 12\n",
    );
    let out = Command::new(BIN)
        .arg("--config")
        .arg(file.path())
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("log_level = \"debug\""), "{stdout}");
    assert!(stdout.contains("address = \"127.0.0.1:18830\""), "{stdout}");
    assert!(stdout.contains("max_inflight = 12"), "{stdout}");
    // Defaults are spelled out too.
    assert!(stdout.contains("maximum_qos = 2"), "{stdout}");
}

#[test]
fn check_config_on_repo_example_file_exits_0() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../mqtt-broker.toml");
    let out = Command::new(BIN)
        .args(["--config", example, "--check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_config_on_bad_file_exits_2_naming_key_and_line() {
    let file = write_config("log_level = \"info\"\n\n[limits]\nmax_inflight = 0\n");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(file.path())
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let location = format!("{}:4:", file.path().display());
    assert!(stderr.contains(&location), "{stderr}");
    assert!(stderr.contains("limits.max_inflight"), "{stderr}");
}

#[test]
fn unknown_key_exits_2_naming_key_and_line() {
    let file = write_config("[limits]\nmax_inflight = 5\nmax_inflihgt = 5\n");
    let out = Command::new(BIN).arg("--config").arg(file.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains(&format!("{}:3:", file.path().display())), "{stderr}");
    assert!(stderr.contains("limits.max_inflihgt"), "{stderr}");
}

#[test]
fn bad_flag_values_exit_2() {
    for args in [
        &["--maximum-qos", "3"][..],
        &["--max-packet-size", "abc"],
        &["--listen", "nowhere"],
        &["--bogus"],
    ] {
        let out = Command::new(BIN).args(args).arg("--check-config").output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn missing_config_file_exits_2() {
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/mqtt-broker.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/mqtt-broker.toml"));
}

#[test]
fn starts_on_port_0_logs_bound_address_and_exits_0_on_sigterm() {
    let mut broker = BrokerProcess::start(&[]);
    assert_ne!(broker.port(), 0);
    assert!(broker.addr.ip().is_loopback());
    // Something really listens there.
    std::net::TcpStream::connect(broker.addr).expect("connect to the logged address");
    let log = broker.log_text();
    assert!(log.contains("mqtt-broker ") && log.contains("starting"), "{log}");
    assert!(log.contains("data dir"), "{log}");
    broker.signal(libc::SIGTERM);
    let status = broker
        .wait_exit(Duration::from_secs(5))
        .expect("exits within 5 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", broker.log_text());
}

#[test]
fn sigint_also_shuts_down_cleanly() {
    let mut broker = BrokerProcess::start(&[]);
    broker.signal(libc::SIGINT);
    let status = broker
        .wait_exit(Duration::from_secs(5))
        .expect("exits within 5 s of SIGINT");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn creates_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b");
    let mut again = BrokerProcess::start_with_data_dir(dir, &nested.clone(), &[]);
    assert!(nested.is_dir());
    again.signal(libc::SIGTERM);
    assert_eq!(again.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()), Some(0));
}

#[test]
fn address_in_use_exits_1_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("cannot listen on {addr}")), "{stderr}");
}

#[test]
fn sighup_reopens_the_log_file_for_logrotate() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("broker.log");
    let rotated = dir.path().join("broker.log.1");
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--log-file"])
        .arg(&log)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .spawn()
        .unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let wait_for = |path: &std::path::Path, needle: &str| {
        for _ in 0..500 {
            if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    };
    assert!(wait_for(&log, "listening on"), "startup logged to the file");
    std::fs::rename(&log, &rotated).unwrap();
    // SAFETY: kill(2) on our own child has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    assert!(wait_for(&log, "reopened"), "a fresh file appears after SIGHUP");
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(std::fs::read_to_string(&log).unwrap().contains("shutdown complete"));
    assert!(!std::fs::read_to_string(&rotated).unwrap().contains("shutdown complete"));
}

#[test]
fn log_lines_have_utc_timestamp_and_level() {
    let broker = BrokerProcess::start(&[]);
    let log = broker.log_text();
    let line = log.lines().find(|l| l.contains("listening on")).unwrap();
    // 2026-11-25T06:00:00.123Z INFO  listening on ...
    let (stamp, rest) = line.split_once(' ').unwrap();
    assert_eq!(stamp.len(), 24, "{line}");
    assert!(stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "{line}");
    assert!(rest.starts_with("INFO  listening on"), "{line}");
}

fn passwd(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("passwd")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn passwd");
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("passwd output")
}

fn users_in(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read password file")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':').map(|(u, _)| u.to_string()))
        .collect()
}

#[test]
fn passwd_creates_a_private_file_and_adds_updates_and_deletes_users() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.pw");
    let path = file.to_str().unwrap();
    let out = passwd(&[path, "alice", "--password", "one"], None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let first = std::fs::read_to_string(&file).unwrap();
    assert!(first.starts_with("alice:$argon2id$"), "{first}");
    // Without --password and without a terminal: one line of standard input.
    let out = passwd(&[path, "bob"], Some("two\n"));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(users_in(&file), ["alice", "bob"]);
    // Updating replaces alice's line in place with a new salted hash.
    assert_eq!(passwd(&[path, "alice", "-b", "three"], None).status.code(), Some(0));
    assert_eq!(users_in(&file), ["alice", "bob"]);
    assert_ne!(std::fs::read_to_string(&file).unwrap(), first);
    assert_eq!(passwd(&[path, "alice", "--delete"], None).status.code(), Some(0));
    assert_eq!(users_in(&file), ["bob"]);
    // Deleting a user who is not there fails.
    let out = passwd(&[path, "alice", "--delete"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in"));
}

#[test]
fn passwd_refuses_empty_password_bad_names_and_malformed_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.pw");
    let path = file.to_str().unwrap();
    assert_eq!(passwd(&[path, "alice"], Some("\n")).status.code(), Some(1));
    assert_eq!(passwd(&[path, "a:b", "-b", "x"], None).status.code(), Some(1));
    assert!(!file.exists(), "nothing written on failure");
    std::fs::write(&file, "# users\ngarbage\n").unwrap();
    let out = passwd(&[path, "alice", "-b", "x"], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{path}:2:")), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "# users\ngarbage\n");
}

#[test]
fn malformed_password_or_acl_file_stops_the_broker_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "user alice\ntopic read a/#/b\n").unwrap();
    let out = Command::new(BIN)
        .args(["--check-config", "--acl-file"])
        .arg(&acl)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}:2:", acl.display())), "{stderr}");
    let out = Command::new(BIN)
        .args(["--check-config", "--password-file"])
        .arg(dir.path().join("missing.pw"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.pw"));
}

/// Reads the soft and hard "Max open files" of a process from /proc.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read /proc limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let numbers: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    (numbers[0], numbers[1])
}

#[test]
fn raises_its_open_file_limit_to_the_hard_limit_so_connections_are_not_capped_at_1024() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    let (_, hard) = open_file_limits(std::process::id());
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["--listen", "127.0.0.1:0", "--sys-interval", "0", "--data-dir"])
        .arg(data.path())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // A distribution's usual start: a soft limit far below the hard one.
            let low = libc::rlimit {
                rlim_cur: 256,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &low) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("start the broker");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut log = String::new();
    for line in stderr.lines() {
        let line = line.expect("log line");
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening on") {
            break;
        }
    }
    let (soft, broker_hard) = open_file_limits(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(broker_hard, hard);
    assert_eq!(soft, hard, "soft limit raised to the hard limit\n{log}");
    assert!(
        log.contains(&format!("open-file limit raised from 256 to {hard}")),
        "{log}"
    );
}

/// Sets a process's soft open-file limit (prlimit(2); lowering it below what is open only refuses new descriptors),
/// keeping its hard limit, which an unprivileged process could not raise again.
fn set_soft_open_file_limit(pid: u32, soft: u64) {
    let (_, hard) = open_file_limits(pid);
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `new` lives for the duration of the call; the old limits are not asked for (null).
    let rc = unsafe {
        libc::prlimit(
            libc::pid_t::try_from(pid).expect("pid fits"),
            libc::RLIMIT_NOFILE,
            &new,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// The number of descriptors `pid` holds once it has settled: the same count three times 50 ms apart. Right after
/// start the broker may still hold descriptors it is about to close (the io_uring probe ring, files read by
/// recovery); counted then, they would leave room for more connections than the test means to allow.
fn settled_descriptor_count(pid: u32) -> u64 {
    let count = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("read /proc fd")
            .count() as u64
    };
    let (mut last, mut same) = (count(), 0);
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(50));
        let now = count();
        same = if now == last { same + 1 } else { 0 };
        last = now;
        if same == 2 {
            break;
        }
    }
    last
}

/// A 3.1.1 CONNECT (clean session, keep-alive 60 s) whose CONNACK tells that the broker accepted the socket.
fn connect311(client_id: u8) -> Vec<u8> {
    vec![0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, client_id]
}

/// Whether `stream` receives a CONNACK accepting its CONNECT [MQTT-3.2.2-4] within `timeout`.
fn connack_within(stream: &mut std::net::TcpStream, timeout: Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(timeout)).expect("read timeout");
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).is_ok() && connack == [0x20, 2, 0, 0]
}

#[test]
fn out_of_descriptors_it_pauses_accepting_then_accepts_the_queued_connections_once_descriptors_free_up() {
    use std::io::Write;
    use std::net::TcpStream;
    // On epoll whatever the suite runs on: io_uring's multishot accept reads the open-file limit once, when it is
    // armed at start (the kernel's accept prep), so lowering the limit under a running broker cannot reach it.
    let broker = BrokerProcess::start_on_io("epoll", &[]);
    let open = settled_descriptor_count(broker.pid());
    // Room for two connections; the rest queue in the listener's backlog.
    let (soft, _) = open_file_limits(broker.pid());
    set_soft_open_file_limit(broker.pid(), open + 2);
    let mut clients: Vec<TcpStream> = (0..8)
        .map(|i| {
            let mut s = TcpStream::connect(broker.addr).expect("connect: the kernel completes it into the backlog");
            s.write_all(&connect311(b'a' + i)).expect("send CONNECT");
            s
        })
        .collect();
    assert!(
        broker.wait_for_log("pausing accepts until descriptors free up", Duration::from_secs(10)),
        "EMFILE on accept is logged and accepting pauses\n{}",
        broker.log_text()
    );
    let last = clients.last_mut().expect("eight clients");
    assert!(
        !connack_within(last, Duration::from_millis(500)),
        "the last client is still in the backlog while descriptors run out\n{}",
        broker.log_text()
    );
    // Descriptors free up. Nothing new happens on the listener (its queue filled before the pause), so only the
    // back-off's own deadline can resume accepting.
    set_soft_open_file_limit(broker.pid(), soft);
    let last = clients.last_mut().expect("eight clients");
    assert!(
        connack_within(last, Duration::from_secs(5)),
        "the queued client is accepted once the back-off ends\n{}",
        broker.log_text()
    );
    assert!(broker.wait_for_log("accepting connections again", Duration::from_secs(5)));
}
