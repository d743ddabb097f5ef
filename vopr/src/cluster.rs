//! Cluster seeds (`vopr --cluster`): the same parallel runner shape as single-node seeds, over
//! `sim::cluster::run_cluster`.

use sim::cluster::ClusterRunConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ClusterPlan {
    pub first_seed: u64,
    pub seeds: Option<u64>,
    pub budget: Option<Duration>,
    pub threads: usize,
    pub run: ClusterRunConfig,
    pub progress: bool,
}

#[derive(Debug, Default)]
pub struct ClusterOutcome {
    pub seeds_run: u64,
    pub failures: Vec<sim::Failure>,
    pub elapsed: Duration,
    pub simulated_ms: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub leader_terms: u64,
    pub acknowledged: u64,
    pub relay: RelayCoverage,
}

/// How much of the relay and failover paths the passing seeds went through.
#[derive(Debug, Default, Clone)]
pub struct RelayCoverage {
    pub relayed_connects: u64,
    pub relayed_connacks: u64,
    pub relays_closed: u64,
    pub relay_gaps: u64,
    pub failover_disconnects: u64,
    pub sessions_resumed: u64,
    pub stream_breaks: u64,
    pub acks_verified: u64,
    pub relayed_chunks_checked: u64,
    /// Seeds in which a relayed client got its CONNACK and some client got a failover DISCONNECT.
    pub seeds_relayed_and_failover: u64,
    /// Seeds whose Raft messages rode the streams (the rest: the datagram network).
    pub seeds_raft_on_streams: u64,
}

impl ClusterOutcome {
    pub fn seeds_per_second(&self) -> f64 {
        self.seeds_run as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs cluster seeds in order from `first_seed`, on `threads` threads, until the count or the budget is spent.
pub fn run_cluster(plan: &ClusterPlan) -> ClusterOutcome {
    let started = Instant::now();
    let next = AtomicU64::new(plan.first_seed);
    let end_seed = plan.seeds.map(|n| plan.first_seed.saturating_add(n));
    let outcome = Mutex::new(ClusterOutcome::default());
    std::thread::scope(|scope| {
        for _ in 0..plan.threads.max(1) {
            scope.spawn(|| loop {
                if plan.budget.is_some_and(|b| started.elapsed() >= b) {
                    return;
                }
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if end_seed.is_some_and(|end| seed >= end) {
                    return;
                }
                let result = sim::cluster::run_cluster(seed, &plan.run);
                let Ok(mut o) = outcome.lock() else { return };
                o.seeds_run += 1;
                match result {
                    Ok(report) => {
                        o.simulated_ms += report.simulated_ms;
                        o.crashes += report.counts.crashes;
                        o.partitions += report.counts.partitions;
                        o.leader_terms += report.counts.leader_terms;
                        o.acknowledged += report.counts.acknowledged;
                        let c = &report.counts;
                        let r = &mut o.relay;
                        r.relayed_connects += c.relayed_connects;
                        r.relayed_connacks += c.relayed_connacks;
                        r.relays_closed += c.relays_closed;
                        r.relay_gaps += c.relay_gaps;
                        r.failover_disconnects += c.failover_disconnects;
                        r.sessions_resumed += c.sessions_resumed;
                        r.stream_breaks += c.stream_breaks;
                        r.acks_verified += c.acks_verified;
                        r.relayed_chunks_checked += c.relayed_chunks_checked;
                        if c.relayed_connacks > 0 && c.failover_disconnects > 0 {
                            r.seeds_relayed_and_failover += 1;
                        }
                        if report.options.raft_on_links {
                            r.seeds_raft_on_streams += 1;
                        }
                    }
                    Err(failure) => {
                        if plan.progress {
                            eprintln!("\n{}: {}", failure.seed, failure.violation);
                        }
                        o.failures.push(failure);
                    }
                }
                if plan.progress && o.seeds_run % 20 == 0 {
                    let rate = o.seeds_run as f64 / started.elapsed().as_secs_f64().max(1e-9);
                    eprint!(
                        "\rvopr --cluster: {} seeds, {} failures, {rate:.1} seeds/s   ",
                        o.seeds_run,
                        o.failures.len()
                    );
                }
            });
        }
    });
    let mut outcome = outcome.into_inner().unwrap_or_default();
    outcome.failures.sort_by_key(|f| f.seed);
    outcome.elapsed = started.elapsed();
    outcome
}
