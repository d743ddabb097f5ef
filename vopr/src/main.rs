//! `cargo run --release -p vopr -- --seeds 1000` or `--time-budget 60`: many seeds, all cores, every failure
//! printed with the command that reproduces it.

use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Run many deterministic simulations with randomized workloads and faults")]
struct Args {
    /// Number of seeds to run.
    #[arg(long)]
    seeds: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    time_budget: Option<u64>,
    /// First seed (seeds run in order from here).
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Run cluster seeds (3 or 5 nodes under partitions and crashes) instead of single-broker ones.
    #[arg(long)]
    cluster: bool,
    /// With --cluster: always this many nodes (default: each seed chooses 3 or 5).
    #[arg(long)]
    nodes: Option<usize>,
    /// Fail if any feature or fault of the coverage table happened in no seed.
    #[arg(long)]
    require_coverage: bool,
    /// A file of seeds known to fail from a gap in the reference model (one seed per line, `#` comments): their
    /// failures are printed as known gaps, not counted; a listed seed of the run that passes is a failure (the
    /// list must shrink as gaps are fixed).
    #[arg(long)]
    known_gaps: Option<std::path::PathBuf>,
    /// Plant a known bug, by its name in `sim::PLANTED_BUGS` (core and storage bugs); needs `--features planted-bugs`.
    #[cfg(feature = "planted-bugs")]
    #[arg(long)]
    planted_bug: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let seeds = match (args.seeds, args.time_budget) {
        (None, None) => Some(100),
        (seeds, _) => seeds,
    };
    if args.cluster {
        return run_cluster(&args, seeds, threads);
    }
    #[allow(unused_mut)]
    let mut run = sim::RunConfig::default();
    #[cfg(feature = "planted-bugs")]
    if let Some(name) = &args.planted_bug {
        match sim::planted_bug_named(name) {
            Some(bug) => run.planted_bug = Some(bug),
            None => {
                eprintln!(
                    "unknown planted bug '{name}'; known: {:?}",
                    sim::PLANTED_BUGS.iter().map(|(n, _)| n).collect::<Vec<_>>()
                );
                return ExitCode::from(2);
            }
        }
    }
    let plan = vopr::Plan {
        first_seed: args.first_seed,
        seeds,
        budget: args.time_budget.map(Duration::from_secs),
        threads,
        stop_on_failure: false,
        run,
        progress: true,
    };
    eprintln!(
        "vopr: seeds from {} ({:?} seeds, budget {:?}s) on {threads} threads",
        plan.first_seed, seeds, args.time_budget
    );
    let known = match known_gaps(&args) {
        Ok(known) => known,
        Err(code) => return code,
    };
    let outcome = vopr::run(&plan);
    let verdict = vopr::known_gaps::judge(&known, plan.first_seed, outcome.seeds_run, &outcome.failures);
    for failure in &outcome.failures {
        let label = if known.contains(&failure.seed) {
            "KNOWN GAP"
        } else {
            "FAILED"
        };
        println!(
            "{label} seed {}: {}\n  reproduce: cargo run -p sim -- --seed {} --trace",
            failure.seed, failure.violation, failure.seed
        );
    }
    for seed in &verdict.fixed {
        println!("FIXED seed {seed}: listed as a known gap but passes; remove it from the list");
    }
    println!(
        "vopr: {} seeds, {} failures, {} known model gaps, {:.1} seeds/s, {:.0} simulated seconds ({:.0}x real time), \
         {} broker restarts from the simulated disk",
        outcome.seeds_run,
        verdict.unexpected,
        verdict.known,
        outcome.seeds_per_second(),
        outcome.simulated_ms as f64 / 1000.0,
        outcome.simulated_ms as f64 / 1000.0 / outcome.elapsed.as_secs_f64().max(1e-9),
        outcome.broker_restarts
    );
    print!("{}", outcome.coverage);
    let missing = outcome.coverage.missing();
    if args.require_coverage && !missing.is_empty() {
        for feature in &missing {
            println!("NOT COVERED: {}", feature.text());
        }
        println!(
            "vopr: {} features never exercised in {} seeds",
            missing.len(),
            outcome.seeds_run
        );
        return ExitCode::FAILURE;
    }
    if verdict.unexpected == 0 && verdict.fixed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The seeds listed by `--known-gaps` (none without it); a file that cannot be read ends the run.
fn known_gaps(args: &Args) -> Result<std::collections::BTreeSet<u64>, ExitCode> {
    match &args.known_gaps {
        Some(path) => vopr::known_gaps::read(path).map_err(|e| {
            eprintln!("vopr: {e}");
            ExitCode::from(2)
        }),
        None => Ok(Default::default()),
    }
}

fn run_cluster(args: &Args, seeds: Option<u64>, threads: usize) -> ExitCode {
    #[allow(unused_mut)]
    let mut run = sim::cluster::ClusterRunConfig {
        nodes: args.nodes,
        ..Default::default()
    };
    #[cfg(feature = "planted-bugs")]
    if let Some(name) = &args.planted_bug {
        match sim::cluster::cluster_bug_named(name) {
            Some(bug) => run.planted_bug = Some(bug),
            None => {
                eprintln!(
                    "unknown planted cluster bug '{name}'; known: {:?}",
                    sim::cluster::CLUSTER_BUGS
                );
                return ExitCode::from(2);
            }
        }
    }
    let plan = vopr::cluster::ClusterPlan {
        first_seed: args.first_seed,
        seeds,
        budget: args.time_budget.map(Duration::from_secs),
        threads,
        run,
        progress: true,
    };
    eprintln!(
        "vopr --cluster: seeds from {} ({:?} seeds, budget {:?}s) on {threads} threads",
        plan.first_seed, seeds, args.time_budget
    );
    let known = match known_gaps(args) {
        Ok(known) => known,
        Err(code) => return code,
    };
    let outcome = vopr::cluster::run_cluster(&plan);
    let verdict = vopr::known_gaps::judge(&known, plan.first_seed, outcome.seeds_run, &outcome.failures);
    let nodes = args.nodes.map_or(String::new(), |n| format!(" --nodes {n}"));
    for failure in &outcome.failures {
        let label = if known.contains(&failure.seed) {
            "KNOWN GAP"
        } else {
            "FAILED"
        };
        let nodes = sim::cluster::cluster_options_for(failure.seed, &plan.run).0.nodes;
        println!(
            "{label} cluster seed {}: {}\n  reproduce: cargo run -p sim -- --seed {} --nodes {nodes} --trace",
            failure.seed, failure.violation, failure.seed
        );
    }
    for seed in &verdict.fixed {
        println!("FIXED cluster seed {seed}: listed as a known gap but passes; remove it from the list");
    }
    println!(
        "vopr --cluster{nodes}: {} seeds, {} failures, {} known gaps, {:.2} seeds/s, {:.0} simulated seconds ({:.0}x real time), {} \
         crashes, {} partitions, {} leader terms, {} acknowledged messages checked",
        outcome.seeds_run,
        verdict.unexpected,
        verdict.known,
        outcome.seeds_per_second(),
        outcome.simulated_ms as f64 / 1000.0,
        outcome.simulated_ms as f64 / 1000.0 / outcome.elapsed.as_secs_f64().max(1e-9),
        outcome.crashes,
        outcome.partitions,
        outcome.leader_terms,
        outcome.acknowledged
    );
    let r = &outcome.relay;
    println!(
        "relay coverage: {} connections relayed by followers ({} got CONNACK), {} closed by a failover or a broken \
         stream, {} relay sequence gaps, {} failover DISCONNECTs (0x8B), {} sessions resumed, {} node-to-node streams \
         broken; {} seeds had a relayed client and a failover; Raft on streams in {} seeds, on datagrams in the rest; \
         {} acknowledgements checked against the disks, {} relayed chunks against the leader's stream",
        r.relayed_connects,
        r.relayed_connacks,
        r.relays_closed,
        r.relay_gaps,
        r.failover_disconnects,
        r.sessions_resumed,
        r.stream_breaks,
        r.seeds_relayed_and_failover,
        r.seeds_raft_on_streams,
        r.acks_verified,
        r.relayed_chunks_checked
    );
    if verdict.unexpected == 0 && verdict.fixed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
