//! The stateright model. A state is the path of actions that leads to it (a recipe: `Broker` can be neither cloned
//! nor hashed, so the world is rebuilt by replaying the path, which is deterministic) together with what the checker
//! compares states by: the client views and a digest of the broker (see [`World::digest`]). Two paths that end in
//! the same views and digest are one state, so interleavings that lead to the same situation are explored once.

use crate::client::{Link, Violation};
use crate::scenario::Scenario;
use crate::world::{Action, Side, View, World};
use mqtt_core::broker::Config;
use mqtt_core::packet::QoS;
use stateright::{Model, Property};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct State {
    pub path: Arc<Vec<Action>>,
    pub view: View,
    pub digest: u64,
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest && self.view == other.view
    }
}

impl Eq for State {}

impl Hash for State {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.view.hash(state);
        self.digest.hash(state);
    }
}

pub struct BrokerModel {
    pub scenario: Scenario,
    pub config: Config,
    /// Check only this property (an index into [`PROPERTIES`]), or all of them.
    pub only: Option<usize>,
}

impl BrokerModel {
    fn state(world: &World, path: Vec<Action>) -> State {
        State {
            path: Arc::new(path),
            view: world.view.clone(),
            digest: world.digest(),
        }
    }

    /// The steps of the clients and the network that are not faults: with only these, the system must settle.
    fn progress_actions(&self, view: &View, actions: &mut Vec<Action>) {
        for (i, c) in view.clients.iter().enumerate() {
            if !c.to_broker.is_empty() && c.link != Link::Offline && !c.closing {
                actions.push(Action::ToBroker(i, Side::Current));
            }
            if !c.to_client.is_empty() {
                actions.push(Action::ToClient(i, Side::Current));
            }
            if let Some(old) = &c.old {
                if !old.to_broker.is_empty() && !old.closed {
                    actions.push(Action::ToBroker(i, Side::Old));
                }
                if !old.to_client.is_empty() {
                    actions.push(Action::ToClient(i, Side::Old));
                }
            }
            if let Some((publisher, messages, window)) = self.scenario.publisher() {
                let open = c.link == Link::Online && !c.closing;
                if i == publisher && open && (c.next_msg as usize) < messages.len() && c.unacked.len() < window {
                    actions.push(Action::Publish(i));
                }
            }
            if c.link == Link::Offline {
                actions.push(Action::Reconnect(i));
            }
        }
    }

    /// No client or network step is possible: only a fault could change anything now.
    pub fn is_quiet(&self, view: &View) -> bool {
        let mut actions = Vec::new();
        self.progress_actions(view, &mut actions);
        actions.is_empty()
    }

    /// Every message owed is delivered and every publication completed.
    pub fn all_delivered(&self, view: &View) -> bool {
        let messages = self.scenario.messages();
        let publisher_done = self
            .scenario
            .publisher()
            .map(|(p, m, _)| view.clients[p].completed.len() >= m.len())
            .unwrap_or(true);
        let owed = |sub_qos: QoS| {
            (0..messages.len() as u8).filter(move |&m| messages[m as usize].min(sub_qos) >= QoS::AtLeastOnce)
        };
        let plain = self.scenario.plain_subscribers().into_iter().all(|s| {
            let (_, qos) = self.scenario.subscription(s).expect("a subscriber");
            owed(qos).all(|m| view.clients[s].received.contains(&m))
        });
        let members = self.scenario.shared_members();
        let shared = members.first().is_none_or(|&first| {
            let (_, qos) = self.scenario.subscription(first).expect("a subscriber");
            owed(qos).all(|m| members.iter().any(|&s| view.clients[s].received.contains(&m)))
        });
        publisher_done && plain && shared
    }
}

impl Model for BrokerModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let world = World::new(&self.scenario, &self.config, false);
        vec![BrokerModel::state(&world, Vec::new())]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        let view = &state.view;
        self.progress_actions(view, actions);
        for (i, c) in view.clients.iter().enumerate() {
            if view.cuts_left > 0 && c.link != Link::Offline {
                actions.push(Action::Cut(i));
            }
            if view.takeovers_left > 0 && c.link == Link::Online && !c.closing && c.old.is_none() {
                actions.push(Action::Takeover(i));
            }
        }
        if view.crashes_left > 0 {
            actions.push(Action::Crash);
        }
        if view.ticks_left > 0 && view.timer_armed {
            actions.push(Action::Tick);
        }
    }

    fn next_state(&self, state: &State, action: Action) -> Option<State> {
        let mut world = World::replay(&self.scenario, &self.config, &state.path, false);
        world.apply(action);
        let mut path = Vec::with_capacity(state.path.len() + 1);
        path.extend_from_slice(&state.path);
        path.push(action);
        Some(BrokerModel::state(&world, path))
    }

    fn properties(&self) -> Vec<Property<Self>> {
        PROPERTIES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.only.is_none_or(|only| only == *i))
            .map(|(_, p)| p)
            .map(|p| match p.kind {
                Kind::Always => Property::always(p.name, p.holds),
                Kind::Eventually => Property::eventually(p.name, p.holds),
            })
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Always,
    Eventually,
}

/// A property with the normative statement it comes from.
pub struct Prop {
    pub name: &'static str,
    pub kind: Kind,
    pub holds: fn(&BrokerModel, &State) -> bool,
}

pub const QOS2_AT_MOST_ONCE: &str = "QoS 2: no message handed to a subscriber twice [MQTT-4.3.3-9]";
pub const QOS1_AT_LEAST_ONCE: &str = "QoS 1: eventually every message reaches every subscriber (section 4.3.2)";
pub const ORDER: &str = "order: first deliveries in the publisher's order [MQTT-4.6.0-5]";
pub const DURABLE_ACK: &str = "no PUBACK/PUBREC before the message is recorded";
pub const SESSION_KEPT: &str = "a persistent session survives cuts, takeovers and crashes [MQTT-3.2.2-3]";
pub const TAKEOVER: &str = "takeover: the old connection gets DISCONNECT 0x8E and nothing after [MQTT-3.1.4-3]";
pub const SHARED_ONE: &str = "shared: each message to exactly one member, an online one if any (section 4.8.2)";
pub const QUIET_OWES_NOTHING: &str = "once no fault is left to happen, nothing is owed (quiet ⇒ all delivered)";
pub const EVENTUALLY_DELIVERED: &str = "eventually every owed message is delivered and every publish completed";

pub const PROPERTIES: &[Prop] = &[
    Prop {
        name: QOS2_AT_MOST_ONCE,
        kind: Kind::Always,
        holds: |model, state| {
            let messages = model.scenario.messages();
            let plain = model.scenario.plain_subscribers().into_iter().all(|s| {
                let qos = model.scenario.subscription(s).map(|(_, q)| q);
                qos != Some(QoS::ExactlyOnce) || qos2_once(messages, state.view.clients[s].received.iter())
            });
            let members = model.scenario.shared_members();
            plain
                && qos2_once(
                    messages,
                    members.iter().flat_map(|&m| state.view.clients[m].received.iter()),
                )
        },
    },
    Prop {
        name: QOS1_AT_LEAST_ONCE,
        kind: Kind::Eventually,
        holds: |model, state| {
            let messages = model.scenario.messages();
            model.scenario.plain_subscribers().into_iter().all(|s| {
                (0..messages.len() as u8)
                    .filter(|&m| messages[m as usize] == QoS::AtLeastOnce)
                    .all(|m| state.view.clients[s].received.contains(&m))
            })
        },
    },
    Prop {
        name: ORDER,
        kind: Kind::Always,
        holds: |model, state| {
            (0..model.scenario.clients.len()).all(|s| {
                let mut seen = [false; 256];
                let mut last: Option<u8> = None;
                state.view.clients[s].received.iter().all(|&m| {
                    let first = !std::mem::replace(&mut seen[m as usize], true);
                    let in_order = !first || last.is_none_or(|l| m > l);
                    if first {
                        last = Some(m);
                    }
                    in_order
                })
            })
        },
    },
    Prop {
        name: DURABLE_ACK,
        kind: Kind::Always,
        holds: |_, state| {
            !state
                .view
                .violations
                .iter()
                .any(|v| matches!(v, Violation::AckedNotDurable { .. }))
        },
    },
    Prop {
        name: SESSION_KEPT,
        kind: Kind::Always,
        holds: |_, state| {
            !state.view.violations.iter().any(|v| {
                matches!(
                    v,
                    Violation::SessionLost { .. } | Violation::Refused { .. } | Violation::Undecodable { .. }
                )
            })
        },
    },
    Prop {
        name: TAKEOVER,
        kind: Kind::Always,
        holds: |_, state| {
            state.view.clients.iter().filter_map(|c| c.old.as_ref()).all(|old| {
                !old.after_disconnect && (!old.closed || !old.to_client.is_empty() || old.disconnect == Some(0x8E))
            })
        },
    },
    Prop {
        name: SHARED_ONE,
        kind: Kind::Always,
        holds: |model, state| {
            let members = model.scenario.shared_members();
            let misrouted = state
                .view
                .violations
                .iter()
                .any(|v| matches!(v, Violation::SharedMisrouted { .. }));
            let twice = (0..model.scenario.messages().len() as u8).any(|m| {
                members
                    .iter()
                    .filter(|&&s| state.view.clients[s].received.contains(&m))
                    .count()
                    > 1
            });
            !misrouted && !twice
        },
    },
    Prop {
        name: QUIET_OWES_NOTHING,
        kind: Kind::Always,
        holds: |model, state| !model.is_quiet(&state.view) || model.all_delivered(&state.view),
    },
    Prop {
        name: EVENTUALLY_DELIVERED,
        kind: Kind::Eventually,
        holds: |model, state| model.all_delivered(&state.view),
    },
];

/// No QoS 2 message appears twice in `received`.
fn qos2_once<'a>(messages: &[QoS], received: impl Iterator<Item = &'a u8>) -> bool {
    let mut seen = [false; 256];
    received
        .filter(|&&m| messages.get(m as usize) == Some(&QoS::ExactlyOnce))
        .all(|&m| !std::mem::replace(&mut seen[m as usize], true))
}
