//! Cluster helpers shared by the cluster test crates: node-to-node addresses, node configuration files, finding
//! the leader in the logs, and running `mqtt-broker cluster ...` against a node's configuration.

use super::{BrokerProcess, BIN};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// A loopback address free at the time of asking.
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// The configuration of node `id` of cluster "test", whose members `peers` are numbered from 1, with a client
/// listener on a free port, 50 ms ticks, and `extra` lines added to `[cluster]`.
pub fn node_config(id: u64, peers: &[SocketAddr], extra: &str) -> String {
    format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n{}",
        cluster_section(id, "test", peers, extra)
    )
}

/// The `[cluster]` section of node `id` of `cluster_id` among `peers` (node `i + 1` at `peers[i]`), with timings
/// short enough for tests (50 ms ticks, elections after 10, heartbeats every 2) and `extra` lines.
pub fn cluster_section(id: u64, cluster_id: &str, peers: &[SocketAddr], extra: &str) -> String {
    let peers: Vec<String> = peers
        .iter()
        .enumerate()
        .map(|(i, a)| format!("  {{ id = {}, address = \"{a}\" }},", i + 1))
        .collect();
    format!(
        "[cluster]\nnode_id = {id}\ncluster_id = \"{cluster_id}\"\n\
         tick_ms = 50\nelection_ticks = 10\nheartbeat_ticks = 2\n{extra}\npeers = [\n{}\n]\n",
        peers.join("\n")
    )
}

/// A node of a test cluster: one that runs, or (`Option`) one that may have been stopped.
pub trait NodeSlot {
    fn running(&self) -> Option<&BrokerProcess>;
}

impl NodeSlot for BrokerProcess {
    fn running(&self) -> Option<&BrokerProcess> {
        Some(self)
    }
}

impl NodeSlot for Option<BrokerProcess> {
    fn running(&self) -> Option<&BrokerProcess> {
        self.as_ref()
    }
}

/// The index of a node that logged that it serves clients after its first `since[i]` log lines.
pub fn wait_for_leader<N: NodeSlot>(nodes: &[N], since: &[usize], timeout: Duration) -> Option<usize> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        for (i, node) in nodes.iter().enumerate() {
            let Some(node) = node.running() else { continue };
            let log = node.log.lock().unwrap();
            if log
                .iter()
                .skip(since.get(i).copied().unwrap_or(0))
                .any(|l| l.contains("serving clients"))
            {
                return Some(i);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The index of the elected leader, once it serves clients and every other running node has logged that it knows
/// it (a follower relays clients only to a leader it has heard from). Panics with the node's log if that takes
/// longer than `timeout`.
pub fn elected<N: NodeSlot>(nodes: &[N], timeout: Duration) -> usize {
    let leader = wait_for_leader(nodes, &vec![0; nodes.len()], timeout).expect("a leader is elected");
    let known = format!("leader Some({})", leader + 1);
    for node in nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .filter_map(|(_, n)| n.running())
    {
        assert!(node.wait_for_log(&known, timeout), "{}", node.log_text());
    }
    leader
}

/// Log lines so far, per node (0 for a node that does not run), for `wait_for_leader`'s `since`.
pub fn log_lengths(nodes: &[Option<BrokerProcess>]) -> Vec<usize> {
    nodes
        .iter()
        .map(|n| n.as_ref().map_or(0, |n| n.log.lock().unwrap().len()))
        .collect()
}

/// `mqtt-broker --config <node's file> cluster <args>`: whether it succeeded, its stdout and its stderr.
pub fn cluster_command(node: &BrokerProcess, args: &[&str]) -> (bool, String, String) {
    let config = node.data_dir.path().join("broker.toml");
    cluster_command_with(&config, args)
}

pub fn cluster_command_with(config: &Path, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(BIN)
        .args(["--config", config.to_str().expect("utf-8 path"), "cluster"])
        .args(args)
        .output()
        .expect("run mqtt-broker cluster");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
