//! Throughput and latency workloads: fan-in, fan-out and pairs, at QoS 0, 1 or 2. Every payload carries its send
//! time (nanoseconds since the run's start, one clock for every thread of this process), the publisher and a
//! sequence number, so subscribers measure end-to-end latency and count losses and duplicates.

use crate::wire::{self, Reader};
use hdrhistogram::Histogram;
use std::io::{self, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// N publishers to one subscriber.
    FanIn,
    /// One publisher to N subscribers.
    FanOut,
    /// N publishers, each to its own subscriber.
    Pairs,
}

#[derive(Debug, Clone)]
pub struct Workload {
    pub broker: SocketAddr,
    /// More nodes of the same cluster: clients are spread over `broker` and these, each subscriber on another
    /// node than the publisher with its index (empty: every client on `broker`).
    pub spread: Vec<SocketAddr>,
    pub shape: Shape,
    pub clients: usize,
    pub qos: u8,
    pub payload: usize,
    pub duration: Duration,
    /// Messages per second per publisher; `None` = as fast as the window allows.
    pub rate: Option<u64>,
    /// Unacknowledged QoS 1/2 messages a publisher keeps in flight.
    pub inflight: u64,
    /// Subscribers use persistent sessions (Clean Session 0).
    pub persistent: bool,
    /// Every client speaks MQTT 5.0 (else 3.1.1).
    pub v5: bool,
    /// The broker's pid, to read its CPU time when publishing begins.
    pub broker_pid: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Results {
    pub sent: u64,
    pub received: u64,
    pub expected: u64,
    pub duplicates: u64,
    pub seconds: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// The broker's CPU seconds when publishing began, after every client connected: CPU per delivery counts from
    /// here, leaving out connecting (most of a many-clients row's CPU otherwise).
    pub broker_cpu_at_start: Option<f64>,
}

impl Results {
    pub fn msgs_per_sec(&self) -> f64 {
        self.received as f64 / self.seconds.max(1e-9)
    }

    pub fn lost(&self) -> u64 {
        self.expected
            .saturating_sub(self.received.saturating_sub(self.duplicates))
    }
}

impl Workload {
    /// The node a client connects to: client `id` in round robin, subscribers one node further on, so that a
    /// publisher and the subscriber with its index meet only through the cluster.
    fn node_for(&self, id: usize, subscriber: bool) -> SocketAddr {
        if self.spread.is_empty() {
            return self.broker;
        }
        let nodes = self.spread.len() + 1;
        match (id + usize::from(subscriber)) % nodes {
            0 => self.broker,
            i => self.spread[i - 1],
        }
    }
}

/// Every payload starts with a stamp: send time (ns since the run began, 8 bytes), publisher (2 bytes) and sequence
/// number (6 bytes), all big-endian: 16 bytes, so the smallest payload measured is 16 B.
pub const HEADER: usize = 16;

/// Writes the stamp into the first `HEADER` bytes of `payload`.
pub(crate) fn stamp(payload: &mut [u8], sent_ns: u64, publisher: u16, seq: u64) {
    payload[0..8].copy_from_slice(&sent_ns.to_be_bytes());
    payload[8..10].copy_from_slice(&publisher.to_be_bytes());
    payload[10..16].copy_from_slice(&seq.to_be_bytes()[2..8]);
}

/// The stamp of a received payload: (send time, publisher, sequence), if it is long enough to carry one.
fn read_stamp(payload: &[u8]) -> Option<(u64, usize, u64)> {
    let sent = u64::from_be_bytes(payload.get(0..8)?.try_into().ok()?);
    let publisher = u16::from_be_bytes(payload.get(8..10)?.try_into().ok()?);
    let mut seq = [0u8; 8];
    seq[2..8].copy_from_slice(payload.get(10..16)?);
    Some((sent, usize::from(publisher), u64::from_be_bytes(seq)))
}

fn now_ns(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

struct Topics {
    publish: Vec<String>,
    /// (filter, publishers whose messages this subscriber should get)
    subscribe: Vec<(String, usize)>,
}

fn topics(shape: Shape, n: usize) -> Topics {
    match shape {
        Shape::FanIn => Topics {
            publish: (0..n).map(|i| format!("bench/in/{i}")).collect(),
            subscribe: vec![("bench/in/+".into(), n)],
        },
        Shape::FanOut => Topics {
            publish: vec!["bench/out".into()],
            subscribe: (0..n).map(|_| ("bench/out".into(), 1)).collect(),
        },
        Shape::Pairs => Topics {
            publish: (0..n).map(|i| format!("bench/pair/{i}")).collect(),
            subscribe: (0..n).map(|i| (format!("bench/pair/{i}"), 1)).collect(),
        },
    }
}

struct SubscriberOutcome {
    received: u64,
    duplicates: u64,
    histogram: Histogram<u64>,
    first_ns: u64,
    last_ns: u64,
}

/// Connects, subscribes and waits for the SUBACK, every wait bounded by [`wire::SETUP_TIMEOUT`].
fn subscriber_setup(w: &Workload, id: usize, filter: &str) -> io::Result<(TcpStream, Reader<TcpStream>)> {
    // A persistent subscriber's session is stored by a durable broker: what `--persistent` measures. The process id
    // keeps sessions of earlier runs out of the way.
    let client_id = format!("bench-sub-{id}-{}", std::process::id());
    let mut stream = wire::open(w.node_for(id, true), &client_id, !w.persistent, w.v5)?;
    stream.set_nodelay(true)?;
    stream.write_all(&wire::subscribe(1, filter, w.qos, w.v5))?;
    let mut reader = Reader::new(stream.try_clone()?);
    while reader.next().map_err(|e| wire::step_failed(e, "SUBACK"))?.kind() != 9 {}
    Ok((stream, reader))
}

fn subscriber(
    w: &Workload,
    id: usize,
    filter: &str,
    ready: &Barrier,
    stop: &AtomicBool,
    start: Instant,
) -> io::Result<SubscriberOutcome> {
    // Every thread reaches the barrier, failed or not, so one failed setup fails the run instead of hanging it.
    let setup = subscriber_setup(w, id, filter);
    ready.wait();
    let (mut stream, mut reader) = setup?;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(io::Error::other)?;
    let (mut received, mut duplicates, mut first_ns, mut last_ns) = (0u64, 0u64, 0u64, 0u64);
    let mut last_seq: Vec<u64> = Vec::new();
    let mut writer = BufWriter::new(stream.try_clone()?);
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut idle_since_stop = 0;
    loop {
        let frame = match reader.next() {
            Ok(frame) => frame,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                writer.flush()?;
                if stop.load(Ordering::Relaxed) {
                    idle_since_stop += 1;
                    if idle_since_stop >= 5 {
                        break;
                    }
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        match frame.kind() {
            3 => {
                let qos = (frame.first >> 1) & 3;
                let Some((_, packet_id, payload)) = frame.publish(w.v5) else {
                    continue;
                };
                if let Some((sent, publisher, seq)) = read_stamp(payload) {
                    let now = now_ns(start);
                    let _ = histogram.record(((now.saturating_sub(sent)) / 1000).max(1));
                    if received == 0 {
                        first_ns = now;
                    }
                    last_ns = now;
                    received += 1;
                    if last_seq.len() <= publisher {
                        last_seq.resize(publisher + 1, 0);
                    }
                    if seq <= last_seq[publisher] {
                        duplicates += 1;
                    } else {
                        last_seq[publisher] = seq;
                    }
                }
                match qos {
                    1 => writer.write_all(&wire::ack(0x40, packet_id))?,
                    2 => writer.write_all(&wire::ack(0x50, packet_id))?,
                    _ => {}
                }
            }
            6 => {
                if let Some(id) = frame.packet_id() {
                    writer.write_all(&wire::ack(0x70, id))?;
                }
            }
            _ => {}
        }
        // Acknowledge as soon as the buffered batch is handled, so the broker's inflight window keeps moving.
        if !reader.has_frame() {
            writer.flush()?;
        }
    }
    let _ = stream.write_all(&wire::DISCONNECT);
    Ok(SubscriberOutcome {
        received,
        duplicates,
        histogram,
        first_ns,
        last_ns,
    })
}

fn publisher(
    w: &Workload,
    id: usize,
    topic: &str,
    ready: &Barrier,
    start: Instant,
    sent_total: &AtomicU64,
    began_cpu: &OnceLock<Option<f64>>,
) -> io::Result<u64> {
    let opened = wire::open(w.node_for(id, false), &format!("bench-pub-{id}"), true, w.v5)
        .and_then(|stream| stream.set_nodelay(true).map(|()| stream));
    // Every thread reaches the barrier, failed or not, so one failed setup fails the run instead of hanging it.
    ready.wait();
    began_cpu.get_or_init(|| w.broker_pid.and_then(crate::conn::cpu_seconds));
    let stream = opened?;
    let writer = Arc::new(Mutex::new(BufWriter::new(stream.try_clone()?)));
    let acked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // Acknowledgements are read on their own thread so the window refills while we write; each one wakes this
    // thread if it waits for a free slot (unparking a thread that is not parked costs one atomic swap).
    let publisher_thread = std::thread::current();
    let ack_thread = {
        let (acked, done, writer) = (Arc::clone(&acked), Arc::clone(&done), Arc::clone(&writer));
        let mut reader = Reader::new(stream.try_clone()?);
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let Ok(frame) = reader.next() else { continue };
                match frame.kind() {
                    4 | 7 => {
                        acked.fetch_add(1, Ordering::Release);
                        publisher_thread.unpark();
                    }
                    5 => {
                        if let (Some(id), Ok(mut w)) = (frame.packet_id(), writer.lock()) {
                            let _ = w.write_all(&wire::ack(0x62, id));
                            let _ = w.flush();
                        }
                    }
                    _ => {}
                }
            }
        })
    };
    let mut payload = vec![0u8; w.payload.max(HEADER)];
    let publisher = u16::try_from(id).unwrap_or(u16::MAX);
    let began = Instant::now();
    let began_ns = now_ns(start);
    let interval = w.rate.map(|r| Duration::from_nanos(1_000_000_000 / r.max(1)));
    let mut seq = 0u64;
    let mut packet_id = 0u16;
    while began.elapsed() < w.duration {
        if w.qos > 0 {
            if seq - acked.load(Ordering::Acquire) >= w.inflight {
                if let Ok(mut guard) = writer.lock() {
                    guard.flush()?;
                }
            }
            // Parked, not spinning, while the window is full: a spinning publisher (`yield_now`) took a whole core
            // of the two the benchmarked brokers share, the more so the longer the broker's round trip (32 µs of
            // generator CPU per message against a 3-node cluster, 13.5 against one node), which charged the
            // slower broker for the generator's own waiting. The timeout bounds a wake-up lost to a closed socket.
            while seq - acked.load(Ordering::Acquire) >= w.inflight {
                if began.elapsed() >= w.duration + Duration::from_secs(5) {
                    break;
                }
                std::thread::park_timeout(Duration::from_millis(10));
            }
        }
        seq += 1;
        packet_id = if packet_id == u16::MAX { 1 } else { packet_id + 1 };
        // A paced message is stamped with the time it was scheduled, not the time it went out: a broker that stalls
        // the publisher (a full inflight window, a full socket) is charged the whole delay of every message that
        // waited behind the stall, so latency is not understated by coordinated omission.
        let sent_ns = match interval {
            Some(interval) => {
                let due = interval * ((seq - 1) as u32);
                if let Some(wait) = due.checked_sub(began.elapsed()) {
                    std::thread::sleep(wait);
                }
                began_ns + due.as_nanos() as u64
            }
            None => now_ns(start),
        };
        stamp(&mut payload, sent_ns, publisher, seq);
        let bytes = wire::publish(topic, w.qos, packet_id, &payload, w.v5);
        if let Ok(mut guard) = writer.lock() {
            guard.write_all(&bytes)?;
            if seq.is_multiple_of(16) || interval.is_some() {
                guard.flush()?;
            }
        }
    }
    if let Ok(mut guard) = writer.lock() {
        guard.flush()?;
    }
    let drain = Instant::now();
    while w.qos > 0 && acked.load(Ordering::Relaxed) < seq && drain.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    done.store(true, Ordering::Relaxed);
    let _ = ack_thread.join();
    if let Ok(mut guard) = writer.lock() {
        let _ = guard.write_all(&wire::DISCONNECT);
        let _ = guard.flush();
    }
    sent_total.fetch_add(seq, Ordering::Relaxed);
    Ok(seq)
}

/// Runs one workload; bounded by `duration` plus a few seconds of draining.
pub fn run(w: &Workload) -> io::Result<Results> {
    let plan = topics(w.shape, w.clients.max(1));
    let start = Instant::now();
    // Paced publishers (devices sending a few messages a second) share one event loop; unpaced ones, which are few
    // and as fast as their window allows, have a thread each.
    let paced = w.rate.is_some() && plan.publish.len() > 1;
    let publisher_threads = if paced { 1 } else { plan.publish.len() };
    let ready = Barrier::new(publisher_threads + plan.subscribe.len());
    let stop = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    let began_cpu = OnceLock::new();
    let outcomes = std::thread::scope(|scope| {
        let subs: Vec<_> = plan
            .subscribe
            .iter()
            .enumerate()
            .map(|(i, (filter, _))| {
                let (ready, stop) = (&ready, &stop);
                scope.spawn(move || subscriber(w, i, filter, ready, stop, start))
            })
            .collect();
        let pubs: Vec<_> = if paced {
            let (ready, sent, topics, began_cpu) = (&ready, &sent, &plan.publish, &began_cpu);
            vec![scope.spawn(move || crate::paced::publish(w, topics, ready, start, sent, began_cpu).map(|()| 0))]
        } else {
            plan.publish
                .iter()
                .enumerate()
                .map(|(i, topic)| {
                    let (ready, sent, began_cpu) = (&ready, &sent, &began_cpu);
                    scope.spawn(move || publisher(w, i, topic, ready, start, sent, began_cpu))
                })
                .collect()
        };
        let mut errors = Vec::new();
        for handle in pubs {
            match handle.join() {
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push(io::Error::other("publisher thread panicked")),
                Ok(Ok(_)) => {}
            }
        }
        stop.store(true, Ordering::Relaxed);
        let subs: Vec<_> = subs.into_iter().map(|h| h.join()).collect();
        (subs, errors)
    });
    let (subs, mut errors) = outcomes;
    if let Some(e) = errors.pop() {
        return Err(e);
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(io::Error::other)?;
    let (mut received, mut duplicates, mut first, mut last) = (0, 0, u64::MAX, 0);
    for sub in subs {
        let sub = sub.map_err(|_| io::Error::other("subscriber thread panicked"))??;
        received += sub.received;
        duplicates += sub.duplicates;
        let _ = histogram.add(&sub.histogram);
        if sub.received > 0 {
            first = first.min(sub.first_ns);
            last = last.max(sub.last_ns);
        }
    }
    let sent = sent.load(Ordering::Relaxed);
    // Fan-out copies every message to each subscriber; fan-in and pairs deliver each message once.
    let expected = match w.shape {
        Shape::FanOut => sent * plan.subscribe.len() as u64,
        Shape::FanIn | Shape::Pairs => sent,
    };
    Ok(Results {
        sent,
        received,
        expected,
        duplicates,
        seconds: last.saturating_sub(first) as f64 / 1e9,
        p50_us: histogram.value_at_quantile(0.50),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
        max_us: histogram.max(),
        broker_cpu_at_start: began_cpu.get().copied().flatten(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_fits_the_smallest_payload_and_reads_back() {
        let mut payload = [0xAAu8; HEADER];
        stamp(&mut payload, 123_456_789_012, 65_000, (1 << 48) - 1);
        assert_eq!(read_stamp(&payload), Some((123_456_789_012, 65_000, (1 << 48) - 1)));
        assert_eq!(read_stamp(&payload[..HEADER - 1]), None, "too short to carry a stamp");
    }
}
