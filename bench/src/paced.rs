//! Paced publishers on one event loop: the many-clients rows (thousands of devices, each publishing a few messages a
//! second) without a thread per client. With two threads per publisher, 2,000 devices were 4,000 threads waking
//! 16,000 times a second: the load average reached 220-710 on 2 cores, and the broker's CPU per message measured the
//! scheduler's queue as much as the broker. Here every publisher is a non-blocking socket of one mio loop, so the
//! machine runs the broker, one publishing thread and the subscribers, and the row can grow to the most clients the
//! open-file limit allows.
//!
//! Publishers are spread evenly over the interval (device `k` of `n` starts `k/n` of an interval late), as
//! unsynchronised devices are; each message is stamped with the time it was scheduled, so a broker that holds a
//! publisher back (a full window, a full socket) is charged for every message that waited (no coordinated omission).

use crate::wire::{self, Reader};
use crate::workload::{stamp, Workload, HEADER};
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

/// How long to wait at the end for the acknowledgements of what was sent.
const DRAIN: Duration = Duration::from_secs(10);

/// One paced device.
struct Device {
    reader: Reader<TcpStream>,
    topic: String,
    /// Messages sent so far (their sequence numbers are 1..=sent).
    sent: u64,
    /// QoS 1/2 messages completed (PUBACK, or PUBCOMP for QoS 2).
    acked: u64,
    packet_id: u16,
    /// Bytes the socket did not take yet.
    unsent: Vec<u8>,
    closed: bool,
}

impl Device {
    fn in_flight(&self) -> u64 {
        self.sent - self.acked
    }

    /// Writes what is pending; returns whether everything went.
    fn flush(&mut self) -> io::Result<bool> {
        while !self.unsent.is_empty() {
            match self.reader.get_mut().write(&self.unsent) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "broker closed the connection")),
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// The schedule shared by every device: `interval` per device, device `k` offset by `k * interval / n`.
struct Schedule {
    began: Instant,
    began_ns: u64,
    interval: Duration,
    devices: usize,
}

impl Schedule {
    /// When device `k` sends its first message, as an offset from `began`.
    fn phase(&self, k: usize) -> Duration {
        self.interval.mul_f64(k as f64 / self.devices as f64)
    }

    /// When device `k` is due to send its message `seq` (from 1), as an offset from `began`.
    fn due(&self, k: usize, seq: u64) -> Duration {
        self.phase(k) + self.interval * ((seq - 1) as u32)
    }

    /// How many messages device `k` owes by `now` (offset from `began`), at most `last` in all.
    fn owed(&self, k: usize, now: Duration, last: Duration) -> u64 {
        let now = now.min(last);
        match now.checked_sub(self.phase(k)) {
            None => 0,
            Some(since) => (since.as_nanos() / self.interval.as_nanos().max(1)) as u64 + 1,
        }
    }
}

/// Connects every publisher (progress on stderr), waits at `ready` with the subscribers, then publishes at
/// `w.rate` per device for `w.duration`, and drains the acknowledgements. Adds the messages sent to `sent_total`.
pub fn publish(
    w: &Workload,
    topics: &[String],
    ready: &Barrier,
    start: Instant,
    sent_total: &AtomicU64,
    began_cpu: &OnceLock<Option<f64>>,
) -> io::Result<()> {
    let setup = connect_all(w, topics);
    // Every thread reaches the barrier, failed or not, so a failed setup fails the run instead of hanging it.
    ready.wait();
    began_cpu.get_or_init(|| w.broker_pid.and_then(crate::conn::cpu_seconds));
    let (mut poll, mut devices) = setup?;
    if devices.is_empty() {
        return Ok(());
    }
    let rate = w.rate.unwrap_or(1).max(1);
    let schedule = Schedule {
        began: Instant::now(),
        began_ns: start.elapsed().as_nanos() as u64,
        interval: Duration::from_nanos(1_000_000_000 / rate),
        devices: devices.len(),
    };
    let mut payload = vec![0u8; w.payload.max(HEADER)];
    let mut events = Events::with_capacity(1024);
    let mut timer = Timer::new()?;
    poll.registry()
        .register(&mut SourceFd(&timer.fd()), TIMER, Interest::READABLE)?;
    // Round robin over the schedule: slot `g` is device `g % n`'s message `g / n + 1`.
    let mut slot = 0u64;
    let n = devices.len() as u64;
    let last = w.duration;
    let mut dirty: Vec<usize> = Vec::new();
    loop {
        let now = schedule.began.elapsed();
        // Every device whose next slot is due catches up to what it owes.
        loop {
            let k = (slot % n) as usize;
            let due = schedule.due(k, slot / n + 1);
            if due > now || due >= last {
                break;
            }
            catch_up(w, &schedule, &mut devices[k], k, now, &mut payload);
            dirty.push(k);
            slot += 1;
        }
        for k in dirty.drain(..) {
            let device = &mut devices[k];
            if !device.closed {
                device.flush()?;
            }
        }
        let sending = now < last;
        // Once sending is over: until every acknowledgement is in, or the drain's time is up. (Looked at only then:
        // it walks every device.)
        if !sending && (now >= last + DRAIN || w.qos == 0 || !devices.iter().any(|d| !d.closed && d.in_flight() > 0)) {
            break;
        }
        let next = if sending {
            schedule.due((slot % n) as usize, slot / n + 1).saturating_sub(now)
        } else {
            Duration::from_millis(50)
        };
        // epoll's own timeout counts whole milliseconds: the next slot is armed on a timer that does not, so a
        // device sends on time whether or not the broker's answers happen to wake the loop first.
        let wait = next.min(Duration::from_millis(50));
        timer.arm(wait)?;
        poll.poll(&mut events, Some(wait + Duration::from_millis(1)))?;
        let now = schedule.began.elapsed();
        for event in events.iter() {
            if event.token() == TIMER {
                timer.clear();
                continue;
            }
            let k = event.token().0;
            let device = &mut devices[k];
            if device.closed {
                continue;
            }
            if event.is_readable() {
                read_acks(device)?;
                if now < last {
                    catch_up(w, &schedule, device, k, now, &mut payload);
                }
            }
            device.flush()?;
        }
    }
    let mut sent = 0;
    for device in &mut devices {
        sent += device.sent;
        device.unsent.extend_from_slice(&wire::DISCONNECT);
        let _ = device.flush();
    }
    sent_total.fetch_add(sent, Ordering::Relaxed);
    Ok(())
}

/// The poll token of the slot timer (devices use their index).
const TIMER: Token = Token(usize::MAX);

/// A one-shot timer with nanosecond resolution (a `timerfd`), for the next scheduled slot.
struct Timer(OwnedFd);

impl Timer {
    fn new() -> io::Result<Timer> {
        // SAFETY: plain system call; a valid descriptor is owned below.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        Ok(Timer(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Fire once after `after` (at least a nanosecond: zero would disarm it).
    fn arm(&mut self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not asked for.
        if unsafe { libc::timerfd_settime(self.fd(), 0, &spec, std::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Read the expiry count so the edge-triggered poll reports the next one.
    fn clear(&mut self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `count`; a nonblocking read of an unexpired timer fails harmlessly.
        let _ = unsafe { libc::read(self.fd(), count.as_mut_ptr().cast(), count.len()) };
    }
}

/// Queues every message device `k` owes by `now` that its window allows, each stamped with its scheduled time.
fn catch_up(w: &Workload, schedule: &Schedule, device: &mut Device, k: usize, now: Duration, payload: &mut [u8]) {
    let owed = schedule.owed(k, now, w.duration.saturating_sub(Duration::from_nanos(1)));
    while device.sent < owed && (w.qos == 0 || device.in_flight() < w.inflight) {
        device.sent += 1;
        device.packet_id = if device.packet_id == u16::MAX {
            1
        } else {
            device.packet_id + 1
        };
        let scheduled = schedule.began_ns + schedule.due(k, device.sent).as_nanos() as u64;
        stamp(payload, scheduled, u16::try_from(k).unwrap_or(u16::MAX), device.sent);
        let bytes = wire::publish(&device.topic, w.qos, device.packet_id, payload, w.v5);
        device.unsent.extend_from_slice(&bytes);
    }
}

/// Reads what the broker sent: PUBACK and PUBCOMP complete a message, PUBREC is answered with PUBREL.
fn read_acks(device: &mut Device) -> io::Result<()> {
    loop {
        match device.reader.next() {
            Ok(frame) => match frame.kind() {
                4 | 7 => device.acked += 1,
                5 => {
                    if let Some(id) = frame.packet_id() {
                        device.unsent.extend_from_slice(&wire::ack(0x62, id));
                    }
                }
                _ => {}
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                device.closed = true;
                return Err(io::Error::new(e.kind(), "the broker closed a publisher's connection"));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Opens every publisher's connection (blocking handshake), then hands it to the loop, non-blocking.
fn connect_all(w: &Workload, topics: &[String]) -> io::Result<(Poll, Vec<Device>)> {
    let poll = Poll::new()?;
    let mut devices = Vec::with_capacity(topics.len());
    for (k, topic) in topics.iter().enumerate() {
        // Spread over 16 loopback source addresses, as the connection test does: thousands of clients then keep
        // few source ports each.
        let source = Ipv4Addr::new(127, 0, 0, 1 + (k % 16) as u8);
        let mut stream = crate::conn::connect_from(source, w.broker)?;
        wire::handshake_bounded(&mut stream, &format!("bench-pub-{k}"), true, w.v5)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(stream);
        poll.registry()
            .register(&mut stream, Token(k), Interest::READABLE | Interest::WRITABLE)?;
        devices.push(Device {
            reader: Reader::new(stream),
            topic: topic.clone(),
            sent: 0,
            acked: 0,
            packet_id: 0,
            unsent: Vec::new(),
            closed: false,
        });
        if (k + 1) % 2_000 == 0 {
            eprintln!("mqtt-bench: {} publishers connected", k + 1);
        }
    }
    Ok((poll, devices))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_spread_over_the_interval_and_owe_one_message_per_interval() {
        let schedule = Schedule {
            began: Instant::now(),
            began_ns: 0,
            interval: Duration::from_millis(100),
            devices: 4,
        };
        assert_eq!(schedule.due(0, 1), Duration::ZERO);
        assert_eq!(schedule.due(2, 1), Duration::from_millis(50));
        assert_eq!(schedule.due(2, 3), Duration::from_millis(250));
        let last = Duration::from_secs(1);
        assert_eq!(
            schedule.owed(2, Duration::from_millis(49), last),
            0,
            "device 2 starts at 50 ms"
        );
        assert_eq!(schedule.owed(2, Duration::from_millis(50), last), 1);
        assert_eq!(schedule.owed(2, Duration::from_millis(251), last), 3);
        assert_eq!(
            schedule.owed(0, Duration::from_secs(5), last),
            11,
            "capped at the run's end"
        );
    }
}
