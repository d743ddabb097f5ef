//! Cluster helpers shared by the cluster test crates: node-to-node addresses, node configuration files, finding
//! the leader in the logs, and running `mqtt-broker cluster ...` against a node's configuration.

pub use super::ports::free_addr;
use super::{BrokerProcess, StartFailure, BIN};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// How many times a cluster (or a node joining one) is started on fresh addresses when a node's cluster port was
/// taken between `free_addr` and the node's bind.
pub const START_ATTEMPTS: usize = 5;

/// A started test cluster: the addresses of its members (node `i + 1` at `peers[i]`), its running nodes (node
/// `i + 1` is `nodes[i]`), and how many attempts the start took.
pub struct Cluster {
    pub peers: Vec<SocketAddr>,
    pub nodes: Vec<BrokerProcess>,
    pub attempts: usize,
}

impl Cluster {
    /// The nodes as slots a test may empty (to kill a node).
    pub fn slots(self) -> Vec<Option<BrokerProcess>> {
        self.nodes.into_iter().map(Some).collect()
    }
}

/// Starts nodes `1..=running` of a cluster of `members` addresses, node `id`'s configuration being
/// `config(id, &peers)`, each with the `extra` flags. The addresses are in every node's configuration, so when one
/// node cannot bind its own (another process took it after `free_addr` let it go), the whole cluster starts again
/// on fresh addresses, up to `START_ATTEMPTS` times.
pub fn start_cluster(
    members: usize,
    running: usize,
    extra: &[&str],
    config: impl Fn(u64, &[SocketAddr]) -> String,
) -> Cluster {
    start_cluster_on(free_addr, members, running, extra, config)
}

/// `start_cluster` with the addresses drawn from `addr` (a test injects a taken one).
pub fn start_cluster_on(
    mut addr: impl FnMut() -> SocketAddr,
    members: usize,
    running: usize,
    extra: &[&str],
    config: impl Fn(u64, &[SocketAddr]) -> String,
) -> Cluster {
    let mut taken = Vec::new();
    for attempt in 1..=START_ATTEMPTS {
        let peers: Vec<SocketAddr> = (0..members).map(|_| addr()).collect();
        let mut nodes = Vec::with_capacity(running);
        for id in 1..=running as u64 {
            match BrokerProcess::try_start_with_config(&config(id, &peers), extra) {
                Ok(node) => nodes.push(node),
                Err(failure) => {
                    taken.push(retry_or_panic(failure, peers[id as usize - 1]));
                    break;
                }
            }
        }
        if nodes.len() == running {
            return Cluster {
                peers,
                nodes,
                attempts: attempt,
            };
        }
        // Dropping the nodes that did start kills them: their configuration names the address that was taken.
    }
    panic!("no cluster started in {START_ATTEMPTS} attempts: each time a node's cluster port was taken ({taken:?})");
}

/// Starts one node whose own cluster address only its configuration and the test know (a node that joins a running
/// cluster): `config(addr)` with a fresh `addr`, again on another one if that was taken, up to `START_ATTEMPTS`.
pub fn start_node(extra: &[&str], config: impl Fn(SocketAddr) -> String) -> (SocketAddr, BrokerProcess) {
    let mut taken = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let addr = free_addr();
        match BrokerProcess::try_start_with_config(&config(addr), extra) {
            Ok(node) => return (addr, node),
            Err(failure) => taken.push(retry_or_panic(failure, addr)),
        }
    }
    panic!("the node did not start in {START_ATTEMPTS} attempts: each time its cluster port was taken ({taken:?})");
}

/// `addr` if the failure is that its port was taken (worth another attempt); any other failure fails the test.
fn retry_or_panic(failure: StartFailure, addr: SocketAddr) -> SocketAddr {
    if failure.cluster_port_taken() {
        eprintln!("cluster port {addr} was taken before the node bound it; starting again on fresh addresses");
        return addr;
    }
    panic!("broker did not log its address; stderr: {:?}", failure.log);
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
