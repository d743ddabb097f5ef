//! `cargo run -p verify --release [-- --ci] [--scenario NAME] [--separately] [--threads N]`: explores every bounded
//! scenario and prints, per scenario, the states explored, the time, and each property's verdict; a broken property
//! is printed with its counterexample as a story. Exit code 1 if any property fails.

use mqtt_core::broker::Config;
use std::process::ExitCode;
use verify::model::PROPERTIES;
use verify::{check, scenario, story, world};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if flag("--help") {
        println!("verify [--ci] [--scenario NAME] [--separately] [--threads N]");
        println!("  --ci          the bounded scenarios CI runs");
        println!("  --separately  one exploration per property (states and time per property)");
        println!("  --cluster-bounds T1,T2,T3,CUTS,MESSAGES,CONNECTS  one cluster scenario with these bounds");
        println!("  --planted BUG (with --features planted-bugs) check the core with a planted bug, or `all`");
        return ExitCode::SUCCESS;
    }
    let threads = value("--threads")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut scenarios = if flag("--ci") { scenario::ci() } else { scenario::full() };
    if let Some(name) = value("--scenario") {
        scenarios.retain(|s| s.name == name);
    }
    #[cfg(feature = "planted-bugs")]
    if let Some(name) = value("--planted") {
        return run_planted(&name, threads);
    }
    let config: Config = world::config();
    let mut failures = 0;
    let mut total_states = 0;
    let started = std::time::Instant::now();
    for scenario in &scenarios {
        let runs: Vec<Option<usize>> = if flag("--separately") {
            (0..PROPERTIES.len()).map(Some).collect()
        } else {
            vec![None]
        };
        println!(
            "== {}: {} clients, {} cuts, {} crashes, {} ticks, {} takeovers",
            scenario.name,
            scenario.clients.len(),
            scenario.cuts,
            scenario.crashes,
            scenario.ticks,
            scenario.takeovers
        );
        for only in runs {
            let outcome = check(scenario, &config, only, threads);
            total_states += outcome.unique_states;
            println!(
                "   {} states ({} distinct), depth {}, {:.1}s",
                outcome.states,
                outcome.unique_states,
                outcome.max_depth,
                outcome.elapsed.as_secs_f64()
            );
            for (name, counterexample) in &outcome.results {
                match counterexample {
                    None => println!("   holds  {name}"),
                    Some(path) => {
                        failures += 1;
                        println!("   FAILS  {name}; counterexample ({} steps):", path.len());
                        for line in story(scenario, &config, path) {
                            println!("      {line}");
                        }
                    }
                }
            }
        }
    }
    let mut clusters = if flag("--ci") {
        verify::cluster::scenario::ci()
    } else {
        verify::cluster::scenario::full()
    };
    if let Some(name) = value("--scenario") {
        clusters.retain(|s| s.name == name);
    }
    if let Some(bounds) = value("--cluster-bounds") {
        clusters =
            vec![verify::cluster::scenario::custom(&bounds).expect("--cluster-bounds T1,T2,T3,CUTS,MESSAGES,CONNECTS")];
    }
    for scenario in &clusters {
        let (states, failed) = run_cluster(scenario, threads);
        total_states += states;
        failures += failed;
    }
    println!(
        "verify: {} scenarios, {} distinct states, {} failed properties, {:.1}s",
        scenarios.len() + clusters.len(),
        total_states,
        failures,
        started.elapsed().as_secs_f64()
    );
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Explores one cluster scenario and prints its verdicts; returns the distinct states and the failed properties.
fn run_cluster(scenario: &verify::cluster::scenario::ClusterScenario, threads: usize) -> (usize, usize) {
    println!(
        "== {}: 3 nodes, ticks {:?}, {} cuts, {} messages, {} connects",
        scenario.name, scenario.ticks, scenario.cuts, scenario.messages, scenario.connects
    );
    let outcome = verify::cluster::check(scenario, threads);
    println!(
        "   {} states ({} distinct), depth {}, {:.1}s",
        outcome.states,
        outcome.unique_states,
        outcome.max_depth,
        outcome.elapsed.as_secs_f64()
    );
    let mut failed = 0;
    for (name, holds, path) in &outcome.results {
        if *holds {
            println!("   holds  {name}");
            continue;
        }
        failed += 1;
        match path {
            Some(path) => {
                println!("   FAILS  {name}; counterexample ({} steps):", path.len());
                for line in verify::cluster::story(scenario, path) {
                    println!("      {line}");
                }
            }
            None => println!("   FAILS  {name}: not reached within the bounds"),
        }
    }
    (outcome.unique_states, failed)
}

/// Checks each planted bug's scenario for the property it must break; prints the counterexample as a story.
#[cfg(feature = "planted-bugs")]
fn run_planted(name: &str, threads: usize) -> ExitCode {
    let mut missed = 0;
    let mut cases = verify::planted::cases();
    cases.retain(|c| name == "all" || c.name == name);
    for case in &cases {
        let config = Config {
            planted_bug: Some(case.bug),
            ..world::config()
        };
        let index = verify::property_index(case.property).expect("a known property");
        let outcome = check(&case.scenario, &config, Some(index), threads);
        match &outcome.results[0].1 {
            Some(path) => {
                println!(
                    "== planted {}: found in {} states, {:.1}s: {}; counterexample ({} steps):",
                    case.name,
                    outcome.unique_states,
                    outcome.elapsed.as_secs_f64(),
                    case.property,
                    path.len()
                );
                for line in story(&case.scenario, &config, path) {
                    println!("      {line}");
                }
            }
            None => {
                missed += 1;
                println!("== planted {}: MISSED ({} states)", case.name, outcome.unique_states);
            }
        }
    }
    let mut total = cases.len();
    if name == "all" || name == "cluster-release-before-commit" {
        total += 1;
        let scenario = verify::cluster::scenario::planted_release_before_commit();
        let outcome = verify::cluster::check(&scenario, threads);
        let found = outcome
            .results
            .iter()
            .find(|(n, _, _)| *n == verify::cluster::RELEASED_AFTER_COMMIT)
            .and_then(|(_, holds, path)| (!holds).then_some(path.clone()).flatten());
        match found {
            Some(path) => {
                println!(
                    "== planted cluster-release-before-commit: found in {} states, {:.1}s; counterexample ({} steps):",
                    outcome.unique_states,
                    outcome.elapsed.as_secs_f64(),
                    path.len()
                );
                for line in verify::cluster::story(&scenario, &path) {
                    println!("      {line}");
                }
            }
            None => {
                missed += 1;
                println!(
                    "== planted cluster-release-before-commit: MISSED ({} states)",
                    outcome.unique_states
                );
            }
        }
    }
    println!("verify planted: {} of {} planted bugs found", total - missed, total);
    if missed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
