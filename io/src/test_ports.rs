//! Free loopback ports for tests that must know an address in advance (cluster nodes, which name each other in
//! their configuration; Mosquitto), where port 0 cannot be used. One file for the library's unit tests and the
//! integration tests (io/tests/common includes it by path).

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Mutex;

/// The ports `free_addr` handed out in this process, never handed out twice: the tests of one crate run in
/// parallel, and a port is free again between the handing out and the broker's bind.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback address free at the time of asking, on a port the kernel never picks by itself.
///
/// Why not port 0's choice: the kernel takes it from the ephemeral range (`ip_local_port_range`), the same range it
/// draws the local ports of every outgoing connection from, so a process opening thousands of client sockets can
/// take it before the node binds it, or while a killed node is down before its restart on the same
/// address. A port below that range is only ever taken by an explicit bind. What remains (another test run picking
/// the same port) is what the integration tests' cluster start retries for (io/tests/common/cluster.rs).
pub fn free_addr() -> SocketAddr {
    let (low, high) = ephemeral_range();
    // Up to 12,768 ports below the ephemeral range (20000-32767 by default), else above it.
    let (from, to) = if low > 1024 + 1000 {
        (low.saturating_sub(12_768).max(1024), low)
    } else {
        (high.saturating_add(1), u16::MAX)
    };
    let random = RandomState::new();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    if from < to {
        for attempt in 0..100u64 {
            let offset = random.hash_one(attempt) % u64::from(to - from);
            let port = from + u16::try_from(offset).expect("offset below a u16 span");
            if handed_out.contains(&port) {
                continue;
            }
            if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                handed_out.insert(port);
                return listener.local_addr().expect("addr");
            }
        }
    }
    // No room outside the ephemeral range (or all tried ports busy): the kernel's choice, and the retry.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// The kernel's range of automatically chosen local ports (Linux's default if it cannot be read).
pub fn ephemeral_range() -> (u16, u16) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut bounds = text.split_whitespace().map(|v| v.parse::<u16>().ok());
    match (bounds.next().flatten(), bounds.next().flatten()) {
        (Some(low), Some(high)) if low <= high => (low, high),
        _ => (32768, 60999),
    }
}
