//! Each planted bug of the core that `verify` checks must yield a counterexample for the property it breaks, and
//! the same scenario on the correct core must not (so the counterexample is the bug's, not the model's).
#![cfg(feature = "planted-bugs")]

use mqtt_core::broker::Config;
use verify::planted::{cases, PlantedCase};
use verify::{check, property_index, story, world};

fn case(name: &str) -> PlantedCase {
    cases().into_iter().find(|c| c.name == name).expect("a planted case")
}

fn assert_found(name: &str) {
    let case = case(name);
    let index = property_index(case.property).expect("a known property");
    let buggy = Config {
        planted_bug: Some(case.bug),
        ..world::config()
    };
    let outcome = check(&case.scenario, &buggy, Some(index), 1);
    let path = outcome.results[0]
        .1
        .as_ref()
        .unwrap_or_else(|| panic!("planted bug {name} was not found ({} states)", outcome.unique_states));
    let lines = story(&case.scenario, &buggy, path);
    assert!(lines.len() > path.len(), "the story tells every step: {lines:#?}");

    let correct = world::config();
    let outcome = check(&case.scenario, &correct, Some(index), 1);
    assert!(
        outcome.results[0].1.is_none(),
        "the correct core breaks {} in scenario {}",
        case.property,
        case.scenario.name
    );
}

#[test]
fn finds_qos2_duplicate_delivered() {
    assert_found("qos2-duplicate");
}

#[test]
fn finds_qos2_receipt_not_persisted() {
    assert_found("qos2-receipt-not-persisted");
}

#[test]
fn finds_inflight_dropped_on_reconnect() {
    assert_found("inflight-dropped");
}

#[test]
fn finds_enqueue_not_recorded() {
    assert_found("enqueue-not-recorded");
}

#[test]
fn finds_takeover_without_disconnect() {
    assert_found("takeover-without-disconnect");
}

#[test]
fn finds_shared_to_every_member() {
    assert_found("shared-to-every-member");
}

#[test]
fn every_planted_case_is_tested() {
    assert_eq!(cases().len(), 6, "add a finds_* test for the new case");
}

/// The cluster's planted bug: PUBACKs released when their entry is proposed, not when it commits. The correct
/// cluster holds the same scenario (and the CI one) without a counterexample.
#[test]
fn finds_cluster_release_before_commit() {
    use verify::cluster::{check, scenario, story, RELEASED_AFTER_COMMIT, SOME_ACK};
    let planted = scenario::planted_release_before_commit();
    let outcome = check(&planted, 1);
    let (_, holds, path) = outcome
        .results
        .iter()
        .find(|(name, _, _)| *name == RELEASED_AFTER_COMMIT)
        .expect("the property is checked");
    assert!(
        !holds,
        "the planted release-before-commit was not found ({} states)",
        outcome.unique_states
    );
    let path = path.as_ref().expect("a counterexample");
    let lines = story(&planted, path);
    assert!(
        lines.iter().any(|l| l.contains("client gets PUBACK")),
        "the story ends in the early PUBACK: {lines:#?}"
    );
    let correct = scenario::ClusterScenario {
        planted: None,
        ..planted
    };
    let outcome = check(&correct, 1);
    let holds = |name: &str| outcome.results.iter().any(|(n, holds, _)| *n == name && *holds);
    assert!(
        holds(RELEASED_AFTER_COMMIT),
        "the correct cluster releases only after commit"
    );
    assert!(holds(SOME_ACK), "and the message is acknowledged all the same");
}
