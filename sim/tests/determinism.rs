//! Same seed, same trace: the simulator (and so the broker core) is deterministic.

#[test]
fn same_seed_gives_same_trace_hash() {
    for seed in 1..=5 {
        let config = sim::RunConfig::new(false, Some(400));
        let first = sim::run(seed, &config).expect("seed passes");
        let second = sim::run(seed, &config).expect("seed passes");
        assert_eq!(first.trace_hash, second.trace_hash, "seed {seed}");
        assert_eq!(first.trace_lines, second.trace_lines);
    }
}

#[test]
fn different_seeds_give_different_traces() {
    let config = sim::RunConfig::new(false, Some(400));
    let a = sim::run(1, &config).expect("seed passes").trace_hash;
    let b = sim::run(2, &config).expect("seed passes").trace_hash;
    assert_ne!(a, b);
}
