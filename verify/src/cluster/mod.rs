//! The cluster commit rule (issue 16), checked over three real `mqtt_cluster::Node`s: raft-rs, the release logic
//! and the broker core exactly as the binary runs them, with a network that may deliver its messages in any order
//! across links, lose some, and run any node's clock.
//!
//! Properties:
//! - [`RELEASED_AFTER_COMMIT`]: no PUBACK reaches the client before the entry holding its record is durable on a
//!   majority. A leader deposed before its entry commits must drop what it held, so this covers "a deposed
//!   leader's uncommitted outputs are never sent" too.
//! - [`ACKED_STAYS`]: the entry of every acknowledged message stays on a majority across later leader changes (an
//!   acknowledged entry is never overwritten).
//! - Reachability, to show the bounds are wide enough to matter: a message is acknowledged; a leader is deposed
//!   while holding outputs.

pub mod scenario;
pub mod world;

use scenario::ClusterScenario;
use stateright::{Checker, Model, Property};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use world::{ClusterView, ClusterViolation, ClusterWorld, Step};

pub const RELEASED_AFTER_COMMIT: &str = "cluster: no output released before its record commits on a majority";
pub const ACKED_STAYS: &str = "cluster: an acknowledged entry stays on a majority";
pub const SOME_ACK: &str = "cluster (reachable): a message is acknowledged";
pub const SOME_DEPOSED_HOLDING: &str = "cluster (reachable): a leader is deposed holding outputs";

#[derive(Clone, Debug)]
pub struct ClusterState {
    pub path: Arc<Vec<Step>>,
    pub view: ClusterView,
}

impl PartialEq for ClusterState {
    fn eq(&self, other: &Self) -> bool {
        self.view == other.view
    }
}

impl Eq for ClusterState {}

impl Hash for ClusterState {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.view.hash(state);
    }
}

pub struct ClusterModel {
    pub scenario: ClusterScenario,
}

impl Model for ClusterModel {
    type State = ClusterState;
    type Action = Step;

    fn init_states(&self) -> Vec<ClusterState> {
        let world = ClusterWorld::new(&self.scenario, false);
        vec![ClusterState {
            path: Arc::new(Vec::new()),
            view: world.view,
        }]
    }

    fn actions(&self, state: &ClusterState, actions: &mut Vec<Step>) {
        // A state that already broke a safety property need not be extended.
        if state.view.violations.is_empty() {
            ClusterWorld::steps(&state.view, &self.scenario, actions);
        }
    }

    fn next_state(&self, state: &ClusterState, step: Step) -> Option<ClusterState> {
        let mut world = ClusterWorld::replay(&self.scenario, &state.path, false);
        world.step(step);
        let mut path = Vec::with_capacity(state.path.len() + 1);
        path.extend_from_slice(&state.path);
        path.push(step);
        Some(ClusterState {
            path: Arc::new(path),
            view: world.view,
        })
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(RELEASED_AFTER_COMMIT, |_, s: &ClusterState| {
                !s.view.violations.iter().any(|v| {
                    matches!(
                        v,
                        ClusterViolation::ReleasedBeforeCommit { .. } | ClusterViolation::AckWithoutRecord { .. }
                    )
                })
            }),
            Property::always(ACKED_STAYS, |_, s: &ClusterState| {
                s.view
                    .acked_entries
                    .iter()
                    .all(|&(index, term)| s.view.on_majority(index, term))
            }),
            Property::sometimes(SOME_ACK, |_, s: &ClusterState| !s.view.client.acked.is_empty()),
            Property::sometimes(SOME_DEPOSED_HOLDING, |_, s: &ClusterState| s.view.deposed_holding),
        ]
    }
}

/// What one exploration found.
pub struct ClusterOutcome {
    pub unique_states: usize,
    pub states: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
    /// Per property: its name, whether it holds, and the path that shows it (a counterexample for a safety
    /// property that fails, an example for a reachability property that holds).
    pub results: Vec<(&'static str, bool, Option<Vec<Step>>)>,
}

pub fn check(scenario: &ClusterScenario, threads: usize) -> ClusterOutcome {
    let model = ClusterModel {
        scenario: scenario.clone(),
    };
    let properties: Vec<(&'static str, bool)> = model
        .properties()
        .iter()
        .map(|p| (p.name, p.expectation == stateright::Expectation::Sometimes))
        .collect();
    let started = Instant::now();
    let checker = model.checker().threads(threads).spawn_bfs().join();
    let elapsed = started.elapsed();
    let discoveries = checker.discoveries();
    let results = properties
        .into_iter()
        .map(|(name, sometimes)| {
            let path = discoveries.get(name).map(|p| p.last_state().path.to_vec());
            // A safety property holds when nothing was discovered; a reachability property when something was.
            let holds = path.is_some() == sometimes;
            (name, holds, path)
        })
        .collect();
    ClusterOutcome {
        unique_states: checker.unique_state_count(),
        states: checker.state_count(),
        max_depth: checker.max_depth(),
        elapsed,
        results,
    }
}

/// The path replayed with the story switched on: one line per event.
pub fn story(scenario: &ClusterScenario, path: &[Step]) -> Vec<String> {
    ClusterWorld::replay(scenario, path, true).story.unwrap_or_default()
}
