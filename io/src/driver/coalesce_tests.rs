//! io_uring's coalescing window (`uring::coalesce`) against a real loop: many quiet clients sending now and then
//! are read in batches, and every byte still comes back.

use super::*;
use crate::config::{Cli, FileConfig};
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Echoes every byte, and counts loop turns and the reads that brought bytes.
struct CountingEcho {
    turns: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
    out: std::collections::VecDeque<Output>,
}

impl Core for CountingEcho {
    fn handle_input(&mut self, _now: Time, input: Input<'_>) {
        if let Input::Received { conn, data } = input {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.out.push_back(Output::Transmit {
                conn,
                data: bytes::Bytes::copy_from_slice(data),
            });
        }
    }
    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
    fn poll_timeout(&self) -> Option<Time> {
        None
    }
    fn end_turn(&mut self, _now: Time) {
        self.turns.fetch_add(1, Ordering::Relaxed);
    }
}

const CLIENTS: usize = 300;
/// Each client sends every 30 ms: 10,000 packets a second from connections that are all cold (`coalesce::HOT`).
const INTERVAL: Duration = Duration::from_millis(30);
const MESSAGE: &[u8] = b"reading\n";

/// Read whatever came back to each client, adding it to its count.
fn read_echoes(clients: &mut [std::net::TcpStream], echoed: &mut [usize]) {
    let mut buf = [0u8; 4096];
    for (client, got) in clients.iter_mut().zip(echoed.iter_mut()) {
        loop {
            match client.read(&mut buf) {
                Ok(0) => panic!("the loop closed a client"),
                Ok(n) => *got += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
    }
}

#[test]
fn many_quiet_clients_are_read_in_batches_and_every_byte_comes_back() {
    let _no_sigterm_meanwhile = super::tests::SIGTERM_WAITS.lock().unwrap_or_else(|e| e.into_inner());
    let (turns, reads) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let cli = Cli {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        io: Some(IoDriver::Uring),
        // 2 ms: some 20 packets a window at this rate, far from the one or two a turn without it.
        io_coalesce_us: Some(2_000),
        ..Cli::default()
    };
    let settings = crate::config::resolve(&FileConfig::default(), None, &cli).unwrap();
    let core = CountingEcho {
        turns: Arc::clone(&turns),
        reads: Arc::clone(&reads),
        out: Default::default(),
    };
    let driver = Driver::bind(&settings, core, None).unwrap();
    let addr = driver.local_addrs()[0];
    let runner = std::thread::spawn(move || driver.run());

    let mut clients: Vec<std::net::TcpStream> = (0..CLIENTS)
        .map(|_| {
            let stream = std::net::TcpStream::connect(addr).unwrap();
            stream.set_nonblocking(true).unwrap();
            stream
        })
        .collect();
    let mut echoed = vec![0usize; CLIENTS];
    // Warm up for a few decision periods, then count turns and reads over a second of sending.
    let start = Instant::now();
    let mut sent = 0usize;
    let mut counted_from = None;
    let mut next: Vec<Instant> = (0..CLIENTS)
        .map(|k| start + INTERVAL * k as u32 / CLIENTS as u32)
        .collect();
    while start.elapsed() < Duration::from_millis(1_200) {
        if counted_from.is_none() && start.elapsed() >= Duration::from_millis(200) {
            counted_from = Some((turns.load(Ordering::Relaxed), reads.load(Ordering::Relaxed)));
        }
        let now = Instant::now();
        for (client, due) in clients.iter_mut().zip(next.iter_mut()) {
            if *due <= now {
                client.write_all(MESSAGE).unwrap();
                sent += MESSAGE.len();
                *due += INTERVAL;
            }
        }
        read_echoes(&mut clients, &mut echoed);
        std::thread::sleep(Duration::from_micros(100));
    }
    let (turns_before, reads_before) = counted_from.unwrap();
    let (turns_during, reads_during) = (
        turns.load(Ordering::Relaxed) - turns_before,
        reads.load(Ordering::Relaxed) - reads_before,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while echoed.iter().sum::<usize>() < sent && Instant::now() < deadline {
        read_echoes(&mut clients, &mut echoed);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(echoed.iter().sum::<usize>(), sent, "every byte sent came back");
    let per_turn = reads_during as f64 / turns_during.max(1) as f64;
    assert!(
        per_turn >= 5.0,
        "{reads_during} reads in {turns_during} turns: {per_turn:.1} a turn; a 2 ms window at 10,000 packets a \
         second gathers about 20"
    );
    // Left running: a SIGTERM would also stop the other tests' drivers in this process.
    assert!(!runner.is_finished(), "the loop stopped");
}
