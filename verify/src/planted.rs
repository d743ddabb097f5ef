//! The core's planted bugs (`planted-bugs` feature) that the checker must catch, each with the small scenario that
//! exposes it and the property it breaks.

use crate::model::{DURABLE_ACK, QOS2_AT_MOST_ONCE, QUIET_OWES_NOTHING, SHARED_ONE, TAKEOVER};
use crate::scenario::{ClientSpec, Role, Scenario, TOPIC};
use mqtt_core::broker::PlantedBug;
use mqtt_core::packet::QoS::{self, AtLeastOnce as Q1, ExactlyOnce as Q2};

pub struct PlantedCase {
    pub name: &'static str,
    pub bug: PlantedBug,
    pub scenario: Scenario,
    /// The property the bug must break.
    pub property: &'static str,
}

fn scenario(
    name: &'static str,
    messages: Vec<QoS>,
    subscribers: &[(&'static str, &'static str)],
    faults: (u8, u8, u8),
) -> Scenario {
    let mut clients = vec![ClientSpec {
        client_id: "pub",
        role: Role::Publisher { messages, window: 1 },
    }];
    clients.extend(subscribers.iter().map(|&(client_id, filter)| ClientSpec {
        client_id,
        role: Role::Subscriber { filter, qos: Q2 },
    }));
    Scenario {
        name,
        clients,
        cuts: faults.0,
        crashes: faults.1,
        ticks: 0,
        takeovers: faults.2,
    }
}

/// PlusMatchesAcrossLevels is not here: every scenario publishes to one topic, which no filter under test could
/// match wrongly (the simulator's vopr finds it).
pub fn cases() -> Vec<PlantedCase> {
    let sub = [("sub", TOPIC)];
    vec![
        PlantedCase {
            name: "qos2-duplicate",
            bug: PlantedBug::Qos2DuplicateDelivered,
            scenario: scenario("planted-qos2-cut", vec![Q2], &sub, (1, 0, 0)),
            property: QOS2_AT_MOST_ONCE,
        },
        PlantedCase {
            name: "qos2-receipt-not-persisted",
            bug: PlantedBug::Qos2ReceiptNotPersisted,
            scenario: scenario("planted-qos2-crash", vec![Q2], &sub, (0, 1, 0)),
            property: QOS2_AT_MOST_ONCE,
        },
        PlantedCase {
            name: "inflight-dropped",
            bug: PlantedBug::InflightDroppedOnReconnect,
            scenario: scenario("planted-qos1-cut", vec![Q1], &sub, (1, 0, 0)),
            property: QUIET_OWES_NOTHING,
        },
        PlantedCase {
            name: "enqueue-not-recorded",
            bug: PlantedBug::EnqueueNotRecorded,
            scenario: scenario("planted-qos1-crash", vec![Q1], &sub, (0, 1, 0)),
            property: DURABLE_ACK,
        },
        PlantedCase {
            name: "takeover-without-disconnect",
            bug: PlantedBug::TakeoverWithoutDisconnect,
            scenario: scenario("planted-takeover", vec![Q1], &sub, (0, 0, 1)),
            property: TAKEOVER,
        },
        PlantedCase {
            name: "shared-to-every-member",
            bug: PlantedBug::SharedToEveryMember,
            scenario: scenario(
                "planted-shared",
                vec![Q2],
                &[("member-a", "$share/g/t"), ("member-b", "$share/g/t")],
                (0, 0, 0),
            ),
            property: SHARED_ONE,
        },
    ]
}
