//! The bounded situations the checker explores: which clients there are, what they do, and how many faults of each
//! kind the environment may inject. Small on purpose: every reachable state of each one is visited.

use mqtt_core::packet::QoS;

/// The one topic every scenario publishes to.
pub const TOPIC: &str = "t";

/// What a scripted client does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Publishes these messages to [`TOPIC`] in order (message `i` carries payload byte `i`), at most `window`
    /// unacknowledged at a time, and resends what is unacknowledged when it reconnects [MQTT-4.4.0-1].
    Publisher { messages: Vec<QoS>, window: usize },
    /// Subscribes to `filter` with `qos` during setup and acknowledges what it receives.
    Subscriber { filter: &'static str, qos: QoS },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    pub client_id: &'static str,
    pub role: Role,
}

/// One bounded configuration to explore exhaustively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub name: &'static str,
    pub clients: Vec<ClientSpec>,
    /// Connections the network may cut (either side of any client).
    pub cuts: u8,
    /// Broker crashes, each followed by a restore from the records written so far.
    pub crashes: u8,
    /// Timer firings (the clock jumps to the broker's next deadline).
    pub ticks: u8,
    /// Session takeovers: a client opens a new connection with its client id while its old one is still open.
    pub takeovers: u8,
}

impl Scenario {
    pub fn publisher(&self) -> Option<(usize, &[QoS], usize)> {
        self.clients.iter().enumerate().find_map(|(i, c)| match &c.role {
            Role::Publisher { messages, window } => Some((i, messages.as_slice(), *window)),
            Role::Subscriber { .. } => None,
        })
    }

    /// The QoS of every message.
    pub fn messages(&self) -> &[QoS] {
        self.publisher().map(|(_, m, _)| m).unwrap_or(&[])
    }

    pub fn subscription(&self, client: usize) -> Option<(&'static str, QoS)> {
        match &self.clients[client].role {
            Role::Subscriber { filter, qos } => Some((filter, *qos)),
            Role::Publisher { .. } => None,
        }
    }

    /// The subscribers that share one subscription group (all filters of the form `$share/...` in one scenario
    /// name the same group).
    pub fn shared_members(&self) -> Vec<usize> {
        (0..self.clients.len())
            .filter(|&i| self.subscription(i).is_some_and(|(f, _)| f.starts_with("$share/")))
            .collect()
    }

    /// Subscribers with a subscription of their own (not shared).
    pub fn plain_subscribers(&self) -> Vec<usize> {
        (0..self.clients.len())
            .filter(|&i| self.subscription(i).is_some_and(|(f, _)| !f.starts_with("$share/")))
            .collect()
    }
}

fn publisher(messages: Vec<QoS>, window: usize) -> ClientSpec {
    ClientSpec {
        client_id: "pub",
        role: Role::Publisher { messages, window },
    }
}

fn subscriber(client_id: &'static str, filter: &'static str, qos: QoS) -> ClientSpec {
    ClientSpec {
        client_id,
        role: Role::Subscriber { filter, qos },
    }
}

use QoS::{AtLeastOnce as Q1, ExactlyOnce as Q2};

/// The full set `cargo run -p verify --release` explores (minutes to tens of minutes on 2 cores).
pub fn full() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "qos2-crash",
            clients: vec![publisher(vec![Q2, Q2], 2), subscriber("sub", TOPIC, Q2)],
            cuts: 2,
            crashes: 1,
            ticks: 0,
            takeovers: 0,
        },
        Scenario {
            name: "qos2-three-messages",
            clients: vec![publisher(vec![Q2, Q2, Q2], 1), subscriber("sub", TOPIC, Q2)],
            cuts: 1,
            crashes: 1,
            ticks: 0,
            takeovers: 0,
        },
        Scenario {
            name: "qos1-two-subscribers",
            clients: vec![
                publisher(vec![Q1, Q1], 1),
                subscriber("sub-a", TOPIC, Q1),
                subscriber("sub-b", TOPIC, Q2),
            ],
            cuts: 1,
            crashes: 1,
            ticks: 1,
            takeovers: 0,
        },
        Scenario {
            name: "takeover",
            clients: vec![publisher(vec![Q2, Q1], 2), subscriber("sub", TOPIC, Q2)],
            cuts: 1,
            crashes: 1,
            ticks: 0,
            takeovers: 1,
        },
        Scenario {
            name: "shared-group",
            clients: vec![
                publisher(vec![Q2, Q2], 2),
                subscriber("member-a", "$share/g/t", Q2),
                subscriber("member-b", "$share/g/t", Q2),
            ],
            cuts: 1,
            crashes: 1,
            ticks: 0,
            takeovers: 0,
        },
    ]
}

/// Smaller bounds for CI (a few minutes on 2 cores): every kind of fault and every property, with fewer messages
/// and faults than [`full`].
pub fn ci() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "qos2-crash",
            clients: vec![publisher(vec![Q2, Q2], 2), subscriber("sub", TOPIC, Q2)],
            cuts: 1,
            crashes: 1,
            ticks: 0,
            takeovers: 0,
        },
        Scenario {
            name: "qos1-two-subscribers",
            clients: vec![
                publisher(vec![Q1], 1),
                subscriber("sub-a", TOPIC, Q1),
                subscriber("sub-b", TOPIC, Q2),
            ],
            cuts: 1,
            crashes: 1,
            ticks: 1,
            takeovers: 0,
        },
        Scenario {
            name: "takeover",
            clients: vec![publisher(vec![Q2, Q1], 2), subscriber("sub", TOPIC, Q2)],
            cuts: 1,
            crashes: 0,
            ticks: 0,
            takeovers: 1,
        },
        Scenario {
            name: "shared-group",
            clients: vec![
                publisher(vec![Q2], 1),
                subscriber("member-a", "$share/g/t", Q2),
                subscriber("member-b", "$share/g/t", Q2),
            ],
            cuts: 1,
            crashes: 1,
            ticks: 0,
            takeovers: 0,
        },
    ]
}
