//! The cluster simulation must find each planted cluster bug within a bounded number of seeds, by the violation
//! that bug should cause. A seed counts only if it fails with the bug planted and passes without it.
#![cfg(feature = "planted-bugs")]

use sim::cluster::{cluster_bug_named, run_cluster, ClusterRunConfig};

const MAX_SEEDS: u64 = 60;

/// The first seed that finds `name`, with the violation it reported.
fn finds(name: &str, violation: &str) -> u64 {
    let bug = cluster_bug_named(name).expect("known planted cluster bug");
    let planted = ClusterRunConfig {
        planted_bug: Some(bug),
        ..Default::default()
    };
    let clean = ClusterRunConfig::default();
    for seed in 1..=MAX_SEEDS {
        if let Err(failure) = run_cluster(seed, &planted) {
            if failure.violation.contains(violation) && run_cluster(seed, &clean).is_ok() {
                println!("{name}: found by seed {seed}: {}", failure.violation);
                return seed;
            }
        }
    }
    panic!("planted cluster bug {name} not found in {MAX_SEEDS} seeds");
}

#[test]
fn finds_cluster_release_before_commit() {
    finds("release-before-commit", "an acknowledgement for an uncommitted record");
}

#[test]
fn finds_cluster_reapply_after_snapshot() {
    finds("reapply-after-snapshot", "applied other entries up to index");
}

#[test]
fn finds_cluster_leader_serving_without_quorum() {
    finds("serve-without-quorum", "stale leader");
}

#[test]
fn finds_cluster_relay_before_commit() {
    finds(
        "relay-before-commit",
        "while no entry storing it was durable on a majority",
    );
}
