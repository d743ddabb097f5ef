//! Clusters of real processes on loopback: peer addresses, the `[cluster]` section, and finding the leader.

use super::BrokerProcess;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A loopback address nobody listens on now (the port is released when the probe is dropped).
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// The `[cluster]` section of node `id` among `peers` (node `i + 1` at `peers[i]`), with timings short enough for
/// tests: 50 ms ticks, elections after 10, heartbeats every 2.
pub fn cluster_section(id: u64, cluster_id: &str, peers: &[SocketAddr]) -> String {
    let peers: Vec<String> = peers
        .iter()
        .enumerate()
        .map(|(i, a)| format!("  {{ id = {}, address = \"{a}\" }},", i + 1))
        .collect();
    format!(
        "[cluster]\nnode_id = {id}\ncluster_id = \"{cluster_id}\"\n\
         tick_ms = 50\nelection_ticks = 10\nheartbeat_ticks = 2\npeers = [\n{}\n]\n",
        peers.join("\n")
    )
}

/// The index of the node that logs that it serves clients after `since[i]` log lines of node `i` (`None` for a
/// node that is down), or `None` if none does within `timeout`.
pub fn wait_for_leader_since<'a>(
    nodes: impl Iterator<Item = Option<&'a BrokerProcess>> + Clone,
    since: &[usize],
    timeout: Duration,
) -> Option<usize> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        for (i, node) in nodes.clone().enumerate() {
            let Some(node) = node else { continue };
            let log = node.log.lock().unwrap();
            if log.iter().skip(since[i]).any(|l| l.contains("serving clients")) {
                return Some(i);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
