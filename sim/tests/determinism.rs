//! Same seed, same trace: the simulator (and so the broker core) is deterministic. A failing run must be just as
//! reproducible as a passing one, so both outcomes are compared by their trace hash.

fn hash(seed: u64, steps: usize) -> (u64, bool) {
    let config = sim::RunConfig::new(false, Some(steps));
    match sim::run(seed, &config) {
        Ok(report) => (report.trace_hash, true),
        Err(failure) => (failure.trace_hash, false),
    }
}

#[test]
fn same_seed_gives_same_trace_hash() {
    for seed in 1..=5 {
        assert_eq!(hash(seed, 400), hash(seed, 400), "seed {seed}");
    }
}

#[test]
fn different_seeds_give_different_traces() {
    let hashes: std::collections::BTreeSet<u64> = (1..=5).map(|seed| hash(seed, 400).0).collect();
    assert_eq!(hashes.len(), 5);
}

#[test]
fn steps_override_changes_the_run() {
    assert_ne!(hash(1, 200).0, hash(1, 400).0);
}
