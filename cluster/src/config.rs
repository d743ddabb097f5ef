//! What a node is told at start-up: who it is, who its peers are, its timing, the broker's configuration, and the
//! durable Raft state the driver read back from disk.

use crate::auth::SharedAuthenticator;
use mqtt_core::broker::Config as BrokerConfig;
use raft::eraftpb::{Entry, HardState, Snapshot};

/// Default of `NodeConfig::snapshot_bytes`.
pub const DEFAULT_SNAPSHOT_BYTES: u64 = 256 << 20;

/// Default bound of held client output: 64 MiB.
pub const DEFAULT_MAX_HELD_BYTES: usize = 64 << 20;

/// A node's configuration (build it with [`NodeConfig::new`], then set fields). Every node of a cluster must be given the same initial set of ids; `members` changes it at run time.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id, non-zero, unique in the cluster.
    pub node_id: u64,
    /// The other nodes' ids (this node's own id may be listed too; it is ignored). With this node: 3 or 5 voters.
    pub peers: Vec<u64>,
    /// Every peer message carries it; a message with another one is refused (a node of another cluster, or a data
    /// directory copied from one).
    pub cluster_id: u64,
    /// Raft ticks without a leader's word before a follower campaigns. raft-rs would draw it from
    /// `[election_tick, 2 * election_tick)` with a thread RNG; the node pins the range to one value and breaks
    /// symmetry with seeded jitter on the tick length instead, so a seed decides everything.
    pub election_tick: usize,
    /// Raft ticks between a leader's heartbeats; less than `election_tick`.
    pub heartbeat_tick: usize,
    /// Milliseconds per Raft tick (before jitter).
    pub tick_ms: u64,
    /// Each tick lasts `tick_ms` plus a seeded draw from `0..=tick_jitter_ms`.
    pub tick_jitter_ms: u64,
    /// The broker the leader runs. `persistence` is switched on whatever it says: its records are what the
    /// cluster replicates.
    pub broker: BrokerConfig,
    /// Seeds the broker (assigned client ids) and the tick jitter; mixed with `node_id`.
    pub seed: u64,
    /// Take a snapshot of the applied image (and compact the log) after this many applied entries.
    pub snapshot_entries: u64,
    /// Or once the entries applied since the last snapshot carry this many bytes (and four times the last
    /// snapshot's size, so a large image is not rewritten for a small log). Entries of a busy leader's turns are
    /// tens of kilobytes: 10,000 of them are hundreds of megabytes per node, in memory and on disk. Chosen while
    /// snapshots were encoded and written on the loop, where with a large image (100,000 messages queued for slow
    /// subscribers: 14.7 MB, 0.3-0.9 s on a busy machine) more frequent ones stalled every node past the election
    /// timeout (bench/cluster.sh's fan-out row with clients on all nodes, with 32 MiB). The loop now only freezes
    /// the image (see `snapshot`); the default stays until a quiet machine shows a lower one costs nothing.
    pub snapshot_bytes: u64,
    /// Largest peer message accepted, header included.
    pub max_peer_message: usize,
    /// Whether a node that does not lead relays its clients to the leader (see `relay`); without it, such a node
    /// closes their connections at once and only the leader serves clients.
    pub relay_clients: bool,
    /// Bytes of client output the leader may hold waiting for commits; beyond it QoS 0 PUBLISHes are dropped
    /// (counted in `NodeStatus::held_qos0_dropped`) rather than held (see `release`).
    pub max_held_bytes: usize,
    /// Gather the records of every input until `NodeInput::Flush` and propose them as one entry, instead of one
    /// entry per input: far fewer entries, append messages and acknowledgements under load.
    pub propose_per_turn: bool,
    /// The authenticator of every broker the node builds as leader (password and ACL files); none lets everyone
    /// in, as `Broker::new` does. Relayed clients are authenticated by the leader's, with the listener index of
    /// the follower that accepted them.
    pub authenticator: Option<SharedAuthenticator>,
    /// This node joins a running cluster: `peers` are the current members and this node is not one of them yet. It
    /// starts without a vote and catches up from the leader; it becomes a voter when the leader's configuration
    /// change adding it is applied (see `members`). Ignored once its data directory holds a configuration.
    pub joining: bool,
    /// A known bug to plant (simulator self-test only).
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<crate::planted::ClusterBug>,
}

impl NodeConfig {
    /// Defaults for a node of a cluster with the given members: 100 ms ticks, an election after 10 silent ticks
    /// (about a second), heartbeats every 2 ticks.
    pub fn new(node_id: u64, peers: Vec<u64>, cluster_id: u64) -> NodeConfig {
        NodeConfig {
            node_id,
            peers,
            cluster_id,
            election_tick: 10,
            heartbeat_tick: 2,
            tick_ms: 100,
            tick_jitter_ms: 20,
            broker: BrokerConfig::default(),
            seed: 0,
            snapshot_entries: 10_000,
            snapshot_bytes: DEFAULT_SNAPSHOT_BYTES,
            max_peer_message: crate::wire::DEFAULT_MAX_PEER_MESSAGE,
            relay_clients: false,
            max_held_bytes: DEFAULT_MAX_HELD_BYTES,
            propose_per_turn: false,
            authenticator: None,
            joining: false,
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }

    /// The initial members: every peer and this node (unless it joins), sorted. Membership changes later move on
    /// from here through the log.
    pub fn voters(&self) -> Vec<u64> {
        let own = (!self.joining).then_some(self.node_id);
        let mut voters: Vec<u64> = self
            .peers
            .iter()
            .copied()
            .filter(|p| *p != self.node_id)
            .chain(own)
            .collect();
        voters.sort_unstable();
        voters.dedup();
        voters
    }
}

/// The durable Raft state the driver read back at start-up; `Recovered::default()` for a new node.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// The last `PersistHardState`.
    pub hard_state: HardState,
    /// The last `PersistSnapshot`, if any (its data holds the image; see `wire::decode_snapshot_data`).
    pub snapshot: Option<Snapshot>,
    /// The log as persisted by `PersistEntries` (later entries replace earlier ones from their index on), in index
    /// order. Entries at or below the snapshot's index may be included; they are skipped.
    pub entries: Vec<Entry>,
}
