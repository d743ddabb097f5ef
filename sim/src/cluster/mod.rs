//! The cluster simulation (`sim --nodes 3`): 3 or 5 real cluster nodes (`mqtt_cluster::Node`, each running raft-rs
//! and, while it leads, the real broker core) in one thread under a virtual clock, node-to-node streams between them
//! as the binary has them (`links`: in order, no loss while up; a crash, restart or partition breaks them, and each
//! sender learns at a seeded moment), optionally a harsher datagram network for Raft alone (`net`: loss, delay,
//! reordering, duplication, one-way cuts), crashes at any point with a disk that loses unsynced writes, restarts,
//! and garbage peer messages. Clients connect to any node, seeded: a follower relays them to the leader
//! (`mqtt_cluster::relay`) exactly as the binary does, and closes them in a failover (MQTT 5: DISCONNECT 0x8B); they
//! reconnect anywhere and resume their sessions. A fault phase is followed by a liveness phase (network healed,
//! every node up) in which a leader must emerge and every acknowledged message must arrive. See `check` and
//! `streams` for the invariants.

mod check;
mod client;
mod disk;
mod links;
mod net;
mod options;
mod streams;
mod world;

pub use options::ClusterOptions;

use crate::trace::Trace;
use crate::Failure;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use world::World;

/// How a cluster run may be adjusted from the outside.
#[derive(Debug, Clone, Default)]
pub struct ClusterRunConfig {
    pub trace: bool,
    /// 3 or 5; `None`: the seed chooses.
    pub nodes: Option<usize>,
    /// Override the fault phase's length, ms.
    pub fault_ms: Option<u64>,
    /// Plant a known cluster bug (vopr self-test).
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<mqtt_cluster::ClusterBug>,
}

/// What a passing cluster run did.
#[derive(Debug, Clone)]
pub struct ClusterReport {
    pub seed: u64,
    pub options: ClusterOptions,
    pub counts: world::ClusterCounts,
    pub simulated_ms: u64,
    pub trace_hash: u64,
    pub trace_lines: u64,
}

/// The options a seed runs with.
pub fn cluster_options_for(seed: u64, config: &ClusterRunConfig) -> (ClusterOptions, ChaCha8Rng) {
    // A stream of its own, so a cluster seed does not mirror the single-node run of the same number.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc1u64.rotate_right(8));
    let mut options = ClusterOptions::from_seed(config.nodes, &mut rng);
    if let Some(ms) = config.fault_ms {
        options.fault_ms = ms;
    }
    (options, rng)
}

/// Runs one cluster simulation.
pub fn run_cluster(seed: u64, config: &ClusterRunConfig) -> Result<ClusterReport, Failure> {
    let (options, rng) = cluster_options_for(seed, config);
    #[cfg(feature = "planted-bugs")]
    let planted = config.planted_bug;
    #[cfg(not(feature = "planted-bugs"))]
    let planted = None;
    let mut world = World::new(seed, options.clone(), rng, Trace::new(config.trace), planted);
    let outcome = world.run();
    match outcome {
        Ok(()) => Ok(ClusterReport {
            seed,
            options,
            counts: world.counts.clone(),
            simulated_ms: world.now,
            trace_hash: world.trace.hash(),
            trace_lines: world.trace.lines(),
        }),
        Err(violation) => Err(Failure {
            seed,
            violation,
            trace_tail: world.trace.tail().collect(),
            trace_hash: world.trace.hash(),
        }),
    }
}

/// The planted cluster bugs by their command-line names.
#[cfg(feature = "planted-bugs")]
pub fn cluster_bug_named(name: &str) -> Option<mqtt_cluster::ClusterBug> {
    use mqtt_cluster::ClusterBug;
    match name {
        "release-before-commit" => Some(ClusterBug::ReleaseBeforeCommit),
        "reapply-after-snapshot" => Some(ClusterBug::ReapplyAfterSnapshot),
        "serve-without-quorum" => Some(ClusterBug::KeepServingWithoutQuorum),
        "relay-before-commit" => Some(ClusterBug::RelayBeforeCommit),
        _ => None,
    }
}

/// Every planted cluster bug's name.
pub const CLUSTER_BUGS: &[&str] = &[
    "release-before-commit",
    "reapply-after-snapshot",
    "serve-without-quorum",
    "relay-before-commit",
];
