//! What a cluster run varies, derived from its seed (swarm testing: each seed its own mix of sizes and fault
//! rates).

use super::net::NetFaults;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::fmt;

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub volatiles: usize,
    pub v5_share: f64,
    pub qos2_share: f64,
    /// A publisher's unacknowledged messages at most.
    pub inflight_max: usize,
    /// Mean ms between a publisher's messages.
    pub publish_every_ms: u64,
    pub net: NetFaults,
    /// Per-ms probabilities.
    pub crash_rate: f64,
    pub partition_rate: f64,
    pub garbage_rate: f64,
    pub client_drop_rate: f64,
    /// Share of crashes that strike in the middle of a node's outputs (some of its writes unsynced).
    pub mid_output_crash_share: f64,
    pub fault_ms: u64,
    pub tick_ms: u64,
    pub tick_jitter_ms: u64,
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    pub snapshot_entries: u64,
    /// Share of nodes with a slow disk, and how slow at most (ms per sync).
    pub slow_disk_share: f64,
    pub slow_disk_ms: u64,
    /// Raft messages ride the node-to-node streams with the relay, as in the binary; else a datagram network that
    /// loses, duplicates and reorders them (harsher than TCP, which Raft must survive anyway). Relay messages are
    /// always on the streams (see `links`).
    pub raft_on_links: bool,
    /// Share of client connections made to any node that is up (a follower relays them to the leader), as behind
    /// a load balancer; the rest go to a node that says it leads.
    pub any_node_share: f64,
    /// How late a node learns that a stream to a peer broke, at most, ms (see `links`).
    pub link_observe_ms: u64,
}

impl ClusterOptions {
    pub fn from_seed(nodes: Option<usize>, rng: &mut ChaCha8Rng) -> ClusterOptions {
        // Drawn even when given, so `--nodes` does not shift the rest of the seed's choices.
        let chosen = if rng.gen_bool(0.7) { 3 } else { 5 };
        let nodes = nodes.unwrap_or(chosen);
        let max_delay = *[2, 5, 20, 60][..].get(rng.gen_range(0..4)).unwrap_or(&5);
        ClusterOptions {
            nodes,
            publishers: rng.gen_range(1..=4),
            subscribers: rng.gen_range(1..=3),
            volatiles: rng.gen_range(0..=2),
            v5_share: rng.gen_range(0.0..=1.0),
            qos2_share: rng.gen_range(0.0..=1.0),
            inflight_max: rng.gen_range(1..=8),
            publish_every_ms: rng.gen_range(2..=40),
            net: NetFaults {
                loss: if rng.gen_bool(0.7) { rng.gen_range(0..=150) } else { 0 },
                duplicate: if rng.gen_bool(0.5) { rng.gen_range(0..=100) } else { 0 },
                min_delay: 1,
                max_delay,
            },
            crash_rate: [0.0, 0.0005, 0.002][rng.gen_range(0..3)],
            partition_rate: [0.0, 0.001, 0.004][rng.gen_range(0..3)],
            garbage_rate: if rng.gen_bool(0.3) { 0.002 } else { 0.0 },
            client_drop_rate: if rng.gen_bool(0.5) { 0.001 } else { 0.0 },
            mid_output_crash_share: rng.gen_range(0.0..=1.0),
            fault_ms: rng.gen_range(2_000..=8_000),
            tick_ms: 10,
            tick_jitter_ms: 3,
            election_tick: 10,
            heartbeat_tick: 2,
            snapshot_entries: [8, 32, 256][rng.gen_range(0..3)],
            slow_disk_share: [0.0, 0.3, 1.0][rng.gen_range(0..3)],
            slow_disk_ms: rng.gen_range(1..=20),
            raft_on_links: rng.gen_bool(0.6),
            any_node_share: [0.3, 0.7, 1.0][rng.gen_range(0..3)],
            link_observe_ms: [5, 50, 300][rng.gen_range(0..3)],
        }
    }

    /// The longest a leader cut off from its quorum may keep serving after another took over: raft-rs's
    /// check-quorum looks once per election timeout, so two timeouts, with slack for delays.
    pub fn stale_grace_ms(&self) -> u64 {
        let election_ms = self.election_tick as u64 * (self.tick_ms + self.tick_jitter_ms);
        4 * election_ms + 2 * self.net.max_delay
    }

    /// How long a healed cluster with every node up may take to serve again.
    pub fn election_bound_ms(&self) -> u64 {
        let election_ms = self.election_tick as u64 * (self.tick_ms + self.tick_jitter_ms);
        30 * election_ms
    }
}

impl fmt::Display for ClusterOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nodes {} | clients: {} publishers (inflight {}, every ~{} ms, qos2 {:.0}%), {} subscribers, {} volatile, \
             v5 {:.0}% | network: loss {}‰ dup {}‰ delay 1-{} ms | per-ms rates: crash {} partition {} garbage {} \
             client drop {} (mid-output crashes {:.0}%) | fault phase {} ms | ticks {}+0..{} ms, election {} \
             heartbeat {} | snapshot every {} entries | slow disks {:.0}% (syncs up to {} ms) | raft on {} | clients \
             on any node {:.0}% | stream breaks seen within {} ms",
            self.nodes,
            self.publishers,
            self.inflight_max,
            self.publish_every_ms,
            self.qos2_share * 100.0,
            self.subscribers,
            self.volatiles,
            self.v5_share * 100.0,
            self.net.loss,
            self.net.duplicate,
            self.net.max_delay,
            self.crash_rate,
            self.partition_rate,
            self.garbage_rate,
            self.client_drop_rate,
            self.mid_output_crash_share * 100.0,
            self.fault_ms,
            self.tick_ms,
            self.tick_jitter_ms,
            self.election_tick,
            self.heartbeat_tick,
            self.snapshot_entries,
            self.slow_disk_share * 100.0,
            self.slow_disk_ms,
            if self.raft_on_links { "streams" } else { "datagrams" },
            self.any_node_share * 100.0,
            self.link_observe_ms
        )
    }
}
