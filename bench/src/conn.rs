//! The connection test: many idle clients, spread over loopback source addresses (127.0.0.x) to stay clear of
//! ephemeral port exhaustion; reports the connect rate and, given the broker's pid, memory per connection. After the
//! hold every connection is pinged: a broker that silently dropped idle clients (or stopped reading them) is caught.

use crate::wire;
use socket2::{Domain, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub struct ConnResults {
    pub connections: usize,
    pub seconds: f64,
    pub rss_before_kb: Option<u64>,
    pub rss_after_kb: Option<u64>,
    /// Connections that answered a PINGREQ with a PINGRESP after the hold [MQTT-3.12.4-1].
    pub alive: usize,
}

impl ConnResults {
    pub fn per_second(&self) -> f64 {
        self.connections as f64 / self.seconds.max(1e-9)
    }

    pub fn bytes_per_connection(&self) -> Option<f64> {
        let (before, after) = (self.rss_before_kb?, self.rss_after_kb?);
        Some(after.saturating_sub(before) as f64 * 1024.0 / self.connections.max(1) as f64)
    }
}

/// CPU seconds a process has used (user + system), from /proc/<pid>/stat: fields 14 and 15, in clock ticks of
/// 1/100 s (USER_HZ, 100 on every Linux ABI this runs on).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?).map(|ticks| ticks as f64 / 100.0)
}

/// utime + stime of one /proc/<pid>/stat line, in clock ticks.
fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces: count fields after its closing one.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident set size of a process, from /proc.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Reports the open-file limit, which bounds how many connections this process can open (raise it with
/// `ulimit -n` before a large run).
pub fn report_fd_limit() {
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        if let Some(line) = limits.lines().find(|l| l.starts_with("Max open files")) {
            eprintln!("mqtt-bench: {}", line.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
}

pub(crate) fn connect_from(source: Ipv4Addr, broker: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    // Ports of an earlier run still in TIME_WAIT must not block binding a new source port.
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::from((source, 0)).into())?;
    socket
        .connect_timeout(&broker.into(), wire::SETUP_TIMEOUT)
        .map_err(|e| wire::step_failed(e, "TCP connect"))?;
    Ok(socket.into())
}

pub fn run(
    broker: SocketAddr,
    count: usize,
    broker_pid: Option<u32>,
    hold: Duration,
    v5: bool,
) -> io::Result<ConnResults> {
    let rss_before_kb = broker_pid.and_then(rss_kb);
    let started = Instant::now();
    let mut streams = Vec::with_capacity(count);
    for i in 0..count {
        // Round robin over 16 source addresses: each keeps few ports in use, so the kernel's search for a free
        // source port stays fast and the connect rate measures the broker (50,000 connections need 3,125 each).
        let source = Ipv4Addr::new(127, 0, 0, 1 + (i % 16) as u8);
        let mut stream = connect_from(source, broker)?;
        wire::handshake_bounded(&mut stream, &format!("idle-{i}"), true, v5)?;
        streams.push(stream);
        if (i + 1) % 5_000 == 0 {
            eprintln!("mqtt-bench: {} connections", i + 1);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    std::thread::sleep(hold);
    let rss_after_kb = broker_pid.and_then(rss_kb);
    let alive = ping_all(&mut streams);
    if alive < count {
        eprintln!(
            "mqtt-bench: {} of {count} connections did not answer a ping after the hold",
            count - alive
        );
    }
    // DISCONNECT first so the broker closes each connection: the TIME_WAIT state then stays on its side instead
    // of holding our source ports for the next run.
    for stream in &mut streams {
        let _ = stream.write_all(&wire::DISCONNECT);
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(streams);
    Ok(ConnResults {
        connections: count,
        seconds,
        rss_before_kb,
        rss_after_kb,
        alive,
    })
}

/// Sends PINGREQ on every connection, then counts the PINGRESPs (0xD0 0x00) that come back within 10 s.
fn ping_all(streams: &mut [TcpStream]) -> usize {
    let sent: Vec<bool> = streams
        .iter_mut()
        .map(|s| s.write_all(&wire::PINGREQ).is_ok())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut alive = 0;
    for (stream, sent) in streams.iter_mut().zip(sent) {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let mut answer = [0u8; 2];
        if sent && stream.set_read_timeout(Some(left)).is_ok() && stream.read_exact(&mut answer).is_ok() {
            alive += usize::from(answer == [0xD0, 0x00]);
        }
    }
    alive
}

#[cfg(test)]
mod tests {
    use super::cpu_ticks;

    #[test]
    fn cpu_ticks_are_fields_14_and_15_even_with_spaces_in_the_name() {
        let stat = "4242 (mqtt broker) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 567 0 0 20 0 3 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(1234 + 567));
        assert_eq!(cpu_ticks("4242 (x) S 1 2"), None, "a truncated line has no times");
    }
}
