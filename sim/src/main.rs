//! `cargo run -p sim -- --seed N`: one reproducible simulation.

use clap::Parser;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Run one deterministic simulation of the broker core")]
struct Args {
    /// The seed: it determines the workload, the faults and everything else.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print the event log.
    #[arg(long)]
    trace: bool,
    /// Number of fault-phase steps (default: chosen by the seed).
    #[arg(long)]
    steps: Option<usize>,
    /// Simulate a cluster of this many nodes (3 or 5) instead of one broker.
    #[arg(long)]
    nodes: Option<usize>,
    /// Plant a known bug in the core, by its name in `sim::PLANTED_BUGS` (needs the `planted-bugs` feature).
    #[cfg(feature = "planted-bugs")]
    #[arg(long)]
    planted_bug: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !cfg!(debug_assertions) {
        eprintln!("note: built without debug assertions; fine for speed, but debug builds check more");
    }
    if let Some(nodes) = args.nodes {
        return run_cluster(&args, nodes);
    }
    #[allow(unused_mut)]
    let mut config = sim::RunConfig::new(args.trace, args.steps);
    #[cfg(feature = "planted-bugs")]
    if let Some(name) = &args.planted_bug {
        match sim::planted_bug_named(name) {
            Some(bug) => config.planted_bug = Some(bug),
            None => {
                eprintln!("unknown planted bug '{name}'");
                return ExitCode::from(2);
            }
        }
    }
    println!("options: {}", sim::options_for(args.seed, &config).0);
    let started = Instant::now();
    match sim::run(args.seed, &config) {
        Ok(report) => {
            let elapsed = started.elapsed().as_secs_f64().max(1e-9);
            let c = &report.counts;
            println!(
                "clients {} | published {} | deliveries {} | connects {} | faults: cuts {} crashes {} slow readers {} \
                 time jumps {} misbehaving {} takeovers {} broker restarts {} disk full {}",
                report.options.clients,
                c.published,
                report.deliveries,
                c.connects,
                c.cuts,
                c.crashes,
                c.slow_readers,
                c.time_jumps,
                c.garbage,
                c.takeovers,
                c.broker_restarts,
                c.disk_full
            );
            if report.options.persistence {
                let d = &c.disk;
                println!(
                    "disk: power cuts {} (mid-write {}) | unsynced bytes lost {} | bit flips {} | EIO {} | ENOSPC {} | \
                     recovery refusals {}",
                    d.power_cuts, c.mid_write_crashes, d.lost_bytes, d.flips, d.eio, d.enospc, c.recovery_refusals
                );
            }
            println!(
                "steps {} | simulated {:.1}s in {:.3}s wall ({:.0} steps/s, {:.0}x real time) | trace lines {}",
                c.steps,
                report.simulated_ms as f64 / 1000.0,
                elapsed,
                c.steps as f64 / elapsed,
                report.simulated_ms as f64 / 1000.0 / elapsed,
                report.trace_lines
            );
            println!("covered: {}", report.coverage);
            println!("trace hash: {:#018x}", report.trace_hash);
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("{failure}");
            println!("trace hash: {:#018x}", failure.trace_hash);
            ExitCode::FAILURE
        }
    }
}

fn run_cluster(args: &Args, nodes: usize) -> ExitCode {
    if nodes != 3 && nodes != 5 {
        eprintln!("--nodes must be 3 or 5");
        return ExitCode::from(2);
    }
    // `..Default::default()` fills `planted_bug`, which exists only with the `planted-bugs` feature.
    #[allow(unused_mut, clippy::needless_update)]
    let mut config = sim::cluster::ClusterRunConfig {
        trace: args.trace,
        nodes: Some(nodes),
        fault_ms: args.steps.map(|s| s as u64),
        ..Default::default()
    };
    #[cfg(feature = "planted-bugs")]
    if let Some(name) = &args.planted_bug {
        match sim::cluster::cluster_bug_named(name) {
            Some(bug) => config.planted_bug = Some(bug),
            None => {
                eprintln!(
                    "unknown planted cluster bug '{name}' (one of {:?})",
                    sim::cluster::CLUSTER_BUGS
                );
                return ExitCode::from(2);
            }
        }
    }
    println!("options: {}", sim::cluster::cluster_options_for(args.seed, &config).0);
    let started = Instant::now();
    match sim::cluster::run_cluster(args.seed, &config) {
        Ok(report) => {
            let elapsed = started.elapsed().as_secs_f64().max(1e-9);
            let c = &report.counts;
            println!(
                "published {} | acknowledged {} | leader terms {} | crashes {} ({} unsynced writes lost) | restarts {} \
                 | partitions {} | garbage refused {} | client connects {} (refused by nodes that knew no reachable leader {}) | snapshots {} \
                 taken, {} installed, {} unwritten at a crash | releases checked against the disks {} | peer messages {}",
                c.published,
                c.acknowledged,
                c.leader_terms,
                c.crashes,
                c.writes_lost,
                c.restarts,
                c.partitions,
                c.refused,
                c.client_connects,
                c.client_refusals,
                c.snapshots,
                c.snapshots_installed,
                c.snapshots_unwritten,
                c.releases_checked,
                c.peer_messages
            );
            println!(
                "relay: {} connections relayed ({} got their CONNACK), {} closed by a failover or a broken stream, {} \
                 sequence gaps | {} failover DISCONNECTs (0x8B), {} sessions resumed | streams: {} broken, {} seen \
                 broken, {} redialled | checked: {} acknowledgements against the disks, {} relayed chunks against \
                 the leader's stream",
                c.relayed_connects,
                c.relayed_connacks,
                c.relays_closed,
                c.relay_gaps,
                c.failover_disconnects,
                c.sessions_resumed,
                c.stream_breaks,
                c.unreachable_reports,
                c.stream_reconnects,
                c.acks_verified,
                c.relayed_chunks_checked
            );
            println!(
                "simulated {:.1}s in {:.3}s wall ({:.0}x real time); leader {} ms after healing | trace lines {}",
                report.simulated_ms as f64 / 1000.0,
                elapsed,
                report.simulated_ms as f64 / 1000.0 / elapsed,
                c.leaderless_ms_after_heal,
                report.trace_lines
            );
            println!("trace hash: {:#018x}", report.trace_hash);
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("seed {} FAILED: {}", failure.seed, failure.violation);
            eprintln!("last trace lines:");
            for line in &failure.trace_tail {
                eprintln!("  {line}");
            }
            eprintln!(
                "reproduce: cargo run -p sim -- --seed {} --nodes {nodes} --trace",
                failure.seed
            );
            println!("trace hash: {:#018x}", failure.trace_hash);
            ExitCode::FAILURE
        }
    }
}
