//! The model itself: replay is deterministic, equal situations reached by different interleavings are one state,
//! and the correct core satisfies every property in a small scenario with every kind of fault.

use mqtt_core::packet::QoS;
use verify::client::Link;
use verify::scenario::{ClientSpec, Role, Scenario, TOPIC};
use verify::world::{config, Action, Side, World};
use verify::{check, model::PROPERTIES};

fn small() -> Scenario {
    one_message(1, 1, 1, 1)
}

fn one_message(cuts: u8, crashes: u8, ticks: u8, takeovers: u8) -> Scenario {
    Scenario {
        name: "small",
        clients: vec![
            ClientSpec {
                client_id: "pub",
                role: Role::Publisher {
                    messages: vec![QoS::ExactlyOnce],
                    window: 1,
                },
            },
            ClientSpec {
                client_id: "sub",
                role: Role::Subscriber {
                    filter: TOPIC,
                    qos: QoS::ExactlyOnce,
                },
            },
        ],
        cuts,
        crashes,
        ticks,
        takeovers,
    }
}

#[test]
fn replaying_a_path_rebuilds_the_same_world() {
    let scenario = small();
    let config = config();
    let path = [
        Action::Publish(0),
        Action::ToBroker(0, Side::Current),
        Action::Crash,
        Action::Reconnect(1),
        Action::ToBroker(1, Side::Current),
    ];
    let first = World::replay(&scenario, &config, &path, false);
    let second = World::replay(&scenario, &config, &path, false);
    assert_eq!(first.digest(), second.digest());
    assert_eq!(first.view, second.view);
    assert_eq!(first.view.clients[1].link, Link::Connecting);
    assert_eq!(first.view.crashes_left, 0);
}

#[test]
fn the_digest_sees_what_the_broker_stored() {
    let scenario = small();
    let config = config();
    let before = World::replay(&scenario, &config, &[Action::Publish(0)], false);
    let after = World::replay(
        &scenario,
        &config,
        &[Action::Publish(0), Action::ToBroker(0, Side::Current)],
        false,
    );
    assert_ne!(
        before.digest(),
        after.digest(),
        "the message was queued for the subscriber"
    );
}

fn assert_all_hold(scenario: &Scenario) {
    let outcome = check(scenario, &config(), None, 2);
    assert_eq!(outcome.results.len(), PROPERTIES.len());
    for (name, counterexample) in &outcome.results {
        assert!(counterexample.is_none(), "{name} fails: {counterexample:?}");
    }
    // Every interleaving is explored, and different interleavings meet in one state.
    assert!(outcome.unique_states > 100, "{} states", outcome.unique_states);
    assert!(outcome.states > outcome.unique_states);
}

#[test]
fn the_correct_core_satisfies_every_property_with_a_cut_and_a_crash() {
    assert_all_hold(&one_message(1, 1, 0, 0));
}

#[test]
fn the_correct_core_satisfies_every_property_with_a_takeover_and_a_timer() {
    assert_all_hold(&one_message(0, 0, 1, 1));
}
