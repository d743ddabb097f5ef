//! Retained-message memory: `load` stores N retained messages on distinct topics shaped like a real fleet
//! (`site/S/device/D/temp`), `count` subscribes to `#` and counts what comes back (that recovery kept every one,
//! and that a wide subscribe delivers them all through the broker's flow control).

use crate::wire::{self, Reader};
use std::collections::VecDeque;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Devices per site: 1M messages are 1,000 sites of 1,000 devices.
const DEVICES_PER_SITE: u64 = 1000;

pub fn topic(i: u64) -> String {
    format!("site/{}/device/{}/temp", i / DEVICES_PER_SITE, i % DEVICES_PER_SITE)
}

/// Publishes `n` retained QoS 1 messages of `payload` bytes, keeping `inflight` unacknowledged; returns seconds.
pub fn load(broker: SocketAddr, n: u64, payload: usize, inflight: u64, v5: bool) -> io::Result<f64> {
    let stream = wire::open(broker, "retained-load", true, v5)?;
    stream.set_nodelay(true)?;
    let mut reader = Reader::new(stream.try_clone()?);
    let mut writer = BufWriter::with_capacity(1 << 16, stream);
    let start = Instant::now();
    let mut pending: VecDeque<u16> = VecDeque::new();
    let body = vec![b'x'; payload];
    let (mut sent, mut acked) = (0u64, 0u64);
    while acked < n {
        while sent < n && (pending.len() as u64) < inflight {
            let packet_id = (sent % 65_535) as u16 + 1;
            let mut packet = wire::publish(&topic(sent), 1, packet_id, &body, v5);
            packet[0] |= 0x01; // RETAIN
            writer.write_all(&packet)?;
            pending.push_back(packet_id);
            sent += 1;
        }
        writer.flush()?;
        let frame = reader.next()?;
        if frame.kind() == 4 {
            if pending.pop_front() != frame.packet_id() {
                return Err(io::Error::other("PUBACK out of order"));
            }
            acked += 1;
            if acked.is_multiple_of(100_000) {
                eprintln!("mqtt-bench: {acked} retained messages stored");
            }
        }
    }
    writer.write_all(&wire::DISCONNECT)?;
    writer.flush()?;
    Ok(start.elapsed().as_secs_f64())
}

/// Subscribes to `#` at QoS 1 (acknowledging each message, so the broker's window and queue pace the flow) and
/// counts retained messages until `n` arrived or nothing came for `idle`; returns (count, seconds).
pub fn count(broker: SocketAddr, n: u64, idle: Duration, v5: bool) -> io::Result<(u64, f64)> {
    let mut stream = wire::open(broker, "retained-count", true, v5)?;
    stream.set_nodelay(true)?;
    stream.write_all(&wire::subscribe(1, "#", 1, v5))?;
    stream.set_read_timeout(Some(idle))?;
    let mut reader = Reader::new(stream.try_clone()?);
    let mut writer = BufWriter::with_capacity(1 << 16, stream);
    let start = Instant::now();
    let mut received = 0u64;
    while received < n {
        let frame = match reader.next() {
            Ok(frame) => frame,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => break,
            Err(e) => return Err(e),
        };
        if frame.kind() != 3 {
            continue;
        }
        if frame.first & 0x01 != 0 {
            received += 1;
            if received.is_multiple_of(100_000) {
                eprintln!("mqtt-bench: {received} retained messages received");
            }
        }
        if (frame.first >> 1) & 3 == 1 {
            let (_, packet_id, _) = frame.publish(v5).ok_or_else(|| io::Error::other("bad PUBLISH"))?;
            writer.write_all(&wire::ack(0x40, packet_id))?;
            if !reader.has_frame() {
                writer.flush()?;
            }
        }
    }
    writer.write_all(&wire::DISCONNECT)?;
    writer.flush()?;
    Ok((received, start.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn topics_are_distinct_and_fleet_shaped() {
        assert_eq!(super::topic(0), "site/0/device/0/temp");
        assert_eq!(super::topic(1_234_567), "site/1234/device/567/temp");
        assert_ne!(super::topic(999), super::topic(1000));
    }
}
