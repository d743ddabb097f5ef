//! Runs many simulator seeds in parallel (one seed per thread at a time, each single-threaded and deterministic)
//! and collects the failures with the command that reproduces each.

pub mod cluster;
pub mod known_gaps;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which seeds to run and for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    pub first_seed: u64,
    /// Stop after this many seeds...
    pub seeds: Option<u64>,
    /// ...or after this much time, whichever comes first.
    pub budget: Option<Duration>,
    pub threads: usize,
    /// Stop at the first failure.
    pub stop_on_failure: bool,
    pub run: sim::RunConfig,
    /// Print progress to stderr.
    pub progress: bool,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub seeds_run: u64,
    pub failures: Vec<sim::Failure>,
    pub elapsed: Duration,
    pub simulated_ms: u64,
    /// Broker crashes and restarts from the simulated disk, over all passing seeds.
    pub broker_restarts: u64,
    /// In how many passing seeds each feature and fault happened.
    pub coverage: sim::coverage::Table,
}

impl Outcome {
    pub fn seeds_per_second(&self) -> f64 {
        self.seeds_run as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs the plan; seeds are handed out in order, so a count-bounded run covers exactly `first_seed..first+seeds`.
pub fn run(plan: &Plan) -> Outcome {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(plan.first_seed));
    let done = Arc::new(AtomicU64::new(0));
    let simulated = Arc::new(AtomicU64::new(0));
    let restarts = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let coverage = Mutex::new(sim::coverage::Table::default());
    let end_seed = plan.seeds.map(|n| plan.first_seed.saturating_add(n));
    std::thread::scope(|scope| {
        for _ in 0..plan.threads.max(1) {
            let (next, done, simulated, failed, failures, restarts, coverage) =
                (&next, &done, &simulated, &failed, &failures, &restarts, &coverage);
            scope.spawn(move || loop {
                if plan.budget.is_some_and(|b| started.elapsed() >= b) {
                    return;
                }
                if plan.stop_on_failure && failed.load(Ordering::Relaxed) > 0 {
                    return;
                }
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if end_seed.is_some_and(|end| seed >= end) {
                    return;
                }
                match sim::run(seed, &plan.run) {
                    Ok(report) => {
                        simulated.fetch_add(report.simulated_ms, Ordering::Relaxed);
                        restarts.fetch_add(report.counts.broker_restarts, Ordering::Relaxed);
                        if let Ok(mut table) = coverage.lock() {
                            table.add(report.coverage);
                        }
                    }
                    Err(failure) => {
                        if plan.progress {
                            eprintln!("\n{failure}");
                        }
                        failed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut list) = failures.lock() {
                            list.push(failure);
                        }
                    }
                }
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if plan.progress && n % 50 == 0 {
                    let rate = n as f64 / started.elapsed().as_secs_f64().max(1e-9);
                    eprint!(
                        "\rvopr: {n} seeds, {} failures, {rate:.1} seeds/s   ",
                        failed.load(Ordering::Relaxed)
                    );
                }
            });
        }
    });
    if plan.progress {
        eprintln!();
    }
    let mut failures = failures.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default();
    failures.sort_by_key(|f| f.seed);
    Outcome {
        seeds_run: done.load(Ordering::Relaxed),
        failures,
        elapsed: started.elapsed(),
        simulated_ms: simulated.load(Ordering::Relaxed),
        broker_restarts: restarts.load(Ordering::Relaxed),
        coverage: coverage.into_inner().unwrap_or_default(),
    }
}
