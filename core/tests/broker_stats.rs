//! The counters and sizes the driver exports as metrics: messages and payload bytes by QoS, drops by cause,
//! CONNECT refusals by reason code, and `Broker::gauges`.

mod common;

use common::*;
use mqtt_core::broker::{Config, DropCause};
use mqtt_core::harness::Harness;
use mqtt_core::packet::*;

#[test]
fn messages_and_payload_bytes_are_counted_by_qos_in_and_out() {
    let mut h = harness();
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "t", QoS::ExactlyOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", "a", QoS::AtMostOnce, 0);
    publish(&mut h, publisher, "t", "bb", QoS::AtLeastOnce, 1);
    publish(&mut h, publisher, "t", "ccc", QoS::ExactlyOnce, 2);
    h.send(publisher, Packet::PubRel(PubResponse::new(2, ReasonCode::SUCCESS)));
    assert_eq!(publishes(&mut h, sub).len(), 3);
    let stats = h.broker.stats();
    assert_eq!(stats.messages_received_by_qos, [1, 1, 1]);
    assert_eq!(stats.payload_bytes_received_by_qos, [1, 2, 3]);
    assert_eq!(stats.messages_sent_by_qos, [1, 1, 1]);
    assert_eq!(stats.payload_bytes_sent_by_qos, [1, 2, 3]);
    assert_eq!(stats.messages_received, 3);
    assert_eq!(stats.messages_dropped, 0);
}

#[test]
fn drops_are_counted_by_cause_and_add_up_to_the_total() {
    let mut h = Harness::new(Config {
        max_queued_messages: 1,
        ..Config::default()
    });
    let mut offline = v311("offline");
    offline.clean_start = false;
    let conn = connected(&mut h, offline);
    subscribe(&mut h, conn, "o", QoS::AtLeastOnce);
    h.drop_connection(conn);
    let publisher = connected(&mut h, v5("pub"));
    // QoS 0 is never queued for an offline session; the second QoS 1 finds its queue full.
    publish(&mut h, publisher, "o", "zero", QoS::AtMostOnce, 0);
    publish(&mut h, publisher, "o", "kept", QoS::AtLeastOnce, 1);
    publish(&mut h, publisher, "o", "full", QoS::AtLeastOnce, 2);
    let stats = h.broker.stats().clone();
    assert_eq!(stats.drops_by_cause[DropCause::Offline as usize], 1);
    assert_eq!(stats.drops_by_cause[DropCause::QueueFull as usize], 1);
    assert_eq!(stats.drops_by_cause.iter().sum::<u64>(), stats.messages_dropped);
    let gauges = h.broker.gauges();
    assert_eq!(gauges.queued_messages, 1);
    assert_eq!(gauges.queued_bytes, 4, "the payload of `kept`");
    assert_eq!(gauges.inflight_messages, 0);
    assert_eq!(
        (gauges.sessions, gauges.clients_connected, gauges.subscriptions),
        (2, 1, 1)
    );
}

#[test]
fn connect_refusals_are_counted_by_reason_code() {
    let mut h = harness();
    // 3.1.1: an empty client id needs Clean Session 1 [MQTT-3.1.3-8] (3.1.1).
    let mut refused = v311("");
    refused.clean_start = false;
    let (_, answer) = h.connect(refused);
    assert!(matches!(answer, Some(Packet::ConnAck(a)) if a.reason == ReasonCode::CLIENT_IDENTIFIER_NOT_VALID));
    assert_eq!(
        h.broker
            .stats()
            .connects_refused
            .get(&ReasonCode::CLIENT_IDENTIFIER_NOT_VALID.0),
        Some(&1)
    );
    assert_eq!(h.broker.stats().connects_refused.values().sum::<u64>(), 1);
}

#[test]
fn gauges_count_retained_messages_and_bytes_of_clients_only() {
    let mut h = harness();
    let publisher = connected(&mut h, v5("pub"));
    retain(&mut h, publisher, "r/1", "12345");
    retain(&mut h, publisher, "r/2", "1234567");
    retain(&mut h, publisher, "r/1", "123");
    let gauges = h.broker.gauges();
    assert_eq!((gauges.retained_messages, gauges.retained_bytes), (2, 10));
}
