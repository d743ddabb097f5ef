//! The cluster simulation is deterministic (same seed, same trace hash, for 3 and 5 nodes, passing or failing) and
//! its healthy runs pass.

use sim::cluster::{run_cluster, ClusterRunConfig};

fn hash(seed: u64, nodes: usize) -> (u64, bool) {
    let config = ClusterRunConfig {
        nodes: Some(nodes),
        fault_ms: Some(1_500),
        ..Default::default()
    };
    match run_cluster(seed, &config) {
        Ok(report) => (report.trace_hash, true),
        Err(failure) => (failure.trace_hash, false),
    }
}

#[test]
fn same_cluster_seed_gives_same_trace_hash() {
    for (seed, nodes) in [(1, 3), (2, 5), (3, 3)] {
        assert_eq!(hash(seed, nodes), hash(seed, nodes), "seed {seed}, {nodes} nodes");
    }
}

#[test]
fn different_cluster_seeds_give_different_traces() {
    let hashes: std::collections::BTreeSet<u64> = (1..=4).map(|seed| hash(seed, 3).0).collect();
    assert_eq!(hashes.len(), 4);
}

#[test]
fn healthy_cluster_seeds_pass_with_faults_injected() {
    let mut crashes = 0;
    let mut partitions = 0;
    for seed in 1..=6 {
        let config = ClusterRunConfig {
            fault_ms: Some(2_000),
            ..Default::default()
        };
        match run_cluster(seed, &config) {
            Ok(report) => {
                assert!(report.counts.acknowledged > 0, "seed {seed} acknowledged nothing");
                crashes += report.counts.crashes;
                partitions += report.counts.partitions;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    // The seeds above do exercise failover: otherwise this test proves little.
    assert!(
        crashes > 0 && partitions > 0,
        "crashes {crashes}, partitions {partitions}"
    );
}
