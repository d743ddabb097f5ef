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
