//! The simulator must find each planted bug within a bounded number of seeds: proof that its checks bite.
#![cfg(feature = "planted-bugs")]

use std::time::Duration;

const MAX_SEEDS: u64 = 200;

fn finds(name: &str) -> u64 {
    let bug = sim::planted_bug_named(name).expect("known planted bug");
    let plan = vopr::Plan {
        first_seed: 1,
        seeds: Some(MAX_SEEDS),
        budget: Some(Duration::from_secs(300)),
        threads: 2,
        stop_on_failure: true,
        run: sim::RunConfig {
            planted_bug: Some(bug),
            ..Default::default()
        },
        progress: false,
    };
    let outcome = vopr::run(&plan);
    let first = outcome
        .failures
        .first()
        .unwrap_or_else(|| panic!("planted bug {name} not found in {MAX_SEEDS} seeds"));
    first.seed
}

#[test]
fn finds_qos2_duplicate_delivery() {
    finds("qos2-duplicate");
}

#[test]
fn finds_inflight_dropped_on_reconnect() {
    finds("inflight-dropped");
}

#[test]
fn finds_plus_matching_across_levels() {
    finds("plus-across-levels");
}

#[test]
fn without_a_planted_bug_the_same_seeds_pass() {
    let plan = vopr::Plan {
        first_seed: 1,
        seeds: Some(20),
        budget: None,
        threads: 2,
        stop_on_failure: false,
        run: sim::RunConfig::default(),
        progress: false,
    };
    let outcome = vopr::run(&plan);
    assert!(
        outcome.failures.is_empty(),
        "{:?}",
        outcome.failures.first().map(|f| &f.violation)
    );
    assert_eq!(outcome.seeds_run, 20);
}
