//! Model checking of the broker core's delivery protocols (issue 16).
//!
//! The real `mqtt_core::broker::Broker`, driven through `handle_input` / `poll_output` with a virtual clock, is put
//! among a few scripted clients and a network that may deliver, cut, take over and crash in every order; stateright
//! explores every reachable state of small bounded [`scenario`]s breadth-first and checks the [`model`]'s
//! properties in each. A failed property comes with the path that breaks it, told as a story of events
//! ([`story`]).

pub mod client;
pub mod cluster;
pub mod model;
#[cfg(feature = "planted-bugs")]
pub mod planted;
pub mod scenario;
pub mod world;

use model::{BrokerModel, Kind, PROPERTIES};
use mqtt_core::broker::Config;
use scenario::Scenario;
use stateright::{Checker, Model};
use std::time::{Duration, Instant};
use world::{Action, World};

/// What one exploration found.
pub struct Outcome {
    pub scenario: &'static str,
    /// States generated (with repeats) and distinct states.
    pub states: usize,
    pub unique_states: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
    /// Per property checked: its name, and the path that breaks it if one was found.
    pub results: Vec<(&'static str, Option<Vec<Action>>)>,
}

/// Explores every reachable state of `scenario` breadth-first, checking the property `only` (an index into
/// [`PROPERTIES`]) or all of them.
pub fn check(scenario: &Scenario, config: &Config, only: Option<usize>, threads: usize) -> Outcome {
    let model = BrokerModel {
        scenario: scenario.clone(),
        config: config.clone(),
        only,
    };
    let names: Vec<&'static str> = model.properties().iter().map(|p| p.name).collect();
    let started = Instant::now();
    let checker = model.checker().threads(threads).spawn_bfs().join();
    let elapsed = started.elapsed();
    let discoveries = checker.discoveries();
    let results = names
        .into_iter()
        .map(|name| {
            let path = discoveries.get(name).map(|p| p.last_state().path.to_vec());
            (name, path)
        })
        .collect();
    Outcome {
        scenario: scenario.name,
        states: checker.state_count(),
        unique_states: checker.unique_state_count(),
        max_depth: checker.max_depth(),
        elapsed,
        results,
    }
}

/// The counterexample `path` replayed with the story switched on: one line per event.
pub fn story(scenario: &Scenario, config: &Config, path: &[Action]) -> Vec<String> {
    let world = World::replay(scenario, config, path, true);
    world.story.unwrap_or_default()
}

/// Whether the property named `name` is checked at terminal states only (stateright's `eventually`).
pub fn is_eventually(name: &str) -> bool {
    PROPERTIES.iter().any(|p| p.name == name && p.kind == Kind::Eventually)
}

/// The index in [`PROPERTIES`] of the property named `name`.
pub fn property_index(name: &str) -> Option<usize> {
    PROPERTIES.iter().position(|p| p.name == name)
}
