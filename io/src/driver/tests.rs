//! The driver's I/O paths against a scripted echo core: reads reach the core, transmits reach the socket in
//! order, a full socket produces WriteBlocked then Writable, Close flushes before closing, SIGTERM stops the loop.
//! Each runs on both I/O drivers.

use super::*;
use crate::config::{Cli, FileConfig};
use accept::{limit_unsent, MAX_SOCKET_UNSENT};
use std::io::{Read, Write};
use std::sync::{mpsc, Arc, Mutex};

/// What the echo core was told, for assertions.
#[derive(Default)]
struct Seen {
    opened: usize,
    blocked: usize,
    writable: usize,
    closed: usize,
    shutdown: bool,
}

/// Echoes every byte back; the line "close\\n" makes it ask for Close instead.
struct Echo {
    seen: Arc<Mutex<Seen>>,
    out: std::collections::VecDeque<Output>,
}

impl Core for Echo {
    fn handle_input(&mut self, _now: Time, input: Input<'_>) {
        let mut seen = self.seen.lock().unwrap();
        match input {
            Input::Opened { .. } => seen.opened += 1,
            Input::Received { conn, data } if data == b"close\n" => self.out.push_back(Output::Close { conn }),
            Input::Received { conn, data } => self.out.push_back(Output::Transmit {
                conn,
                data: bytes::Bytes::copy_from_slice(data),
            }),
            Input::WriteBlocked { .. } => seen.blocked += 1,
            Input::Writable { .. } => seen.writable += 1,
            Input::Closed { .. } => seen.closed += 1,
            Input::Shutdown => seen.shutdown = true,
            Input::Tick | Input::StorageWritable(_) | Input::AuthDecided { .. } | Input::Identified { .. } => {}
        }
    }
    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
    fn poll_timeout(&self) -> Option<Time> {
        None
    }
}

/// Held by a test whose driver must keep running until it is done: the SIGTERM of the test below reaches every
/// driver in the process.
pub(super) static SIGTERM_WAITS: Mutex<()> = Mutex::new(());

/// One test for both drivers, one after the other: the SIGTERM it raises reaches every driver in the process.
#[test]
fn echo_core_round_trip_backpressure_close_and_sigterm_on_epoll_then_uring() {
    let _running_drivers_done = SIGTERM_WAITS.lock().unwrap_or_else(|e| e.into_inner());
    echo_core_round_trip_backpressure_close_and_sigterm(IoDriver::Epoll);
    echo_core_round_trip_backpressure_close_and_sigterm(IoDriver::Uring);
}

fn echo_core_round_trip_backpressure_close_and_sigterm(io: IoDriver) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let cli = Cli {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        io: Some(io),
        ..Cli::default()
    };
    let settings = crate::config::resolve(&FileConfig::default(), None, &cli).unwrap();
    let (tx, rx) = mpsc::channel();
    let core = Echo {
        seen: Arc::clone(&seen),
        out: Default::default(),
    };
    let runner = std::thread::spawn(move || {
        let driver = Driver::bind(&settings, core, None).unwrap();
        tx.send(driver.local_addrs()[0]).unwrap();
        driver.run()
    });
    let addr = rx.recv().unwrap();

    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    client.write_all(b"hello").unwrap();
    let mut got = [0u8; 5];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");

    // 8 MiB echoed to a client that is not reading fills the socket buffers: the core hears WriteBlocked.
    let big: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut writer = client.try_clone().unwrap();
    let expected = big.clone();
    let sender = std::thread::spawn(move || writer.write_all(&big));
    std::thread::sleep(Duration::from_millis(300));
    let mut back = vec![0u8; expected.len()];
    client.read_exact(&mut back).unwrap();
    sender.join().unwrap().unwrap();
    assert!(back == expected, "echo intact and in order");

    // Close: the bytes before it still arrive, then EOF.
    client.write_all(b"tail").unwrap();
    let mut tail = [0u8; 4];
    client.read_exact(&mut tail).unwrap();
    client.write_all(b"close\n").unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    drop(client);

    // SAFETY: raise(3) has no memory-safety preconditions; signal-hook has replaced SIGTERM's default action.
    unsafe { libc::raise(libc::SIGTERM) };
    runner.join().unwrap().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.opened, 1);
    assert!(seen.blocked >= 1, "WriteBlocked sent");
    assert_eq!(
        seen.blocked, seen.writable,
        "every WriteBlocked is followed by Writable"
    );
    assert_eq!(seen.closed, 1, "Closed once, after the core's Close");
    assert!(seen.shutdown);
}

/// Records which connection each `Received` came from, and how many bytes; sends nothing.
struct Recorder {
    received: Arc<Mutex<Vec<(ConnectionId, usize)>>>,
}

impl Core for Recorder {
    fn handle_input(&mut self, _now: Time, input: Input<'_>) {
        if let Input::Received { conn, data } = input {
            self.received.lock().unwrap().push((conn, data.len()));
        }
    }
    fn poll_output(&mut self) -> Option<Output> {
        None
    }
    fn poll_timeout(&self) -> Option<Time> {
        None
    }
}

#[test]
fn a_client_that_sends_without_pause_does_not_hold_back_the_others_epoll() {
    a_client_that_sends_without_pause_does_not_hold_back_the_others(IoDriver::Epoll);
}

#[test]
fn a_client_that_sends_without_pause_does_not_hold_back_the_others_uring() {
    a_client_that_sends_without_pause_does_not_hold_back_the_others(IoDriver::Uring);
}

fn a_client_that_sends_without_pause_does_not_hold_back_the_others(io: IoDriver) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let cli = Cli {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        io: Some(io),
        ..Cli::default()
    };
    let settings = crate::config::resolve(&FileConfig::default(), None, &cli).unwrap();
    let driver = Driver::bind(
        &settings,
        Recorder {
            received: Arc::clone(&received),
        },
        None,
    )
    .unwrap();
    let addr = driver.local_addrs()[0];

    // Before the loop runs, the flooder fills its socket buffers and keeps writing; the other client's few bytes
    // arrive behind them.
    let mut flooder = std::net::TcpStream::connect(addr).unwrap();
    let flood = std::thread::spawn(move || {
        let chunk = vec![0u8; 64 * 1024];
        let mut sent = 0usize;
        while sent < 16 << 20 {
            if flooder.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut other = std::net::TcpStream::connect(addr).unwrap();
    other.write_all(b"ping").unwrap();

    let runner = std::thread::spawn(move || driver.run());
    let sent = flood.join().unwrap();
    assert_eq!(sent, 16 << 20);
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = received.lock().unwrap().clone();
        if log.iter().map(|(_, n)| n).sum::<usize>() >= sent + 4 || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let flooder_id = log[0].0;
    let before_other: usize = log
        .iter()
        .take_while(|(conn, _)| *conn == flooder_id)
        .map(|(_, n)| n)
        .sum();
    assert!(
        log.iter().any(|(conn, n)| *conn != flooder_id && *n == 4),
        "the other client's bytes arrived"
    );
    assert!(
        before_other <= READ_BUF,
        "one read buffer of the flooder at most before the other client's turn, not {before_other} bytes"
    );
    // The loop is left running: a SIGTERM here would also stop the other test's driver in this process.
    assert!(!runner.is_finished());
}

#[cfg(target_os = "linux")]
#[test]
fn accepted_sockets_hold_at_most_256_kib_unsent() {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    let stream = TcpStream::from_std(accepted);
    limit_unsent(&stream);
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`, which outlives the call.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0);
    assert_eq!(value, MAX_SOCKET_UNSENT);
    assert_eq!(MAX_SOCKET_UNSENT, 256 * 1024);
}
