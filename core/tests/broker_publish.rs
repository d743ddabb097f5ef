//! QoS flows, routing, ordering, queues, flow control, topic aliases and message properties.

mod common;

use bytes::Bytes;
use common::*;
use mqtt_core::broker::Config;
use mqtt_core::harness::Harness;
use mqtt_core::packet::*;
use std::time::Duration;

#[test]
fn qos0_message_reaches_matching_subscriber_only() {
    let mut h = harness();
    let sub = connected(&mut h, v5("sub"));
    let other = connected(&mut h, v5("other"));
    subscribe(&mut h, sub, "a/b", QoS::AtMostOnce);
    subscribe(&mut h, other, "a/c", QoS::AtMostOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "a/b", "hello", QoS::AtMostOnce, 0);
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["hello"]);
    assert!(publishes(&mut h, other).is_empty());
}

#[test]
fn qos1_publish_is_acknowledged_with_puback_mqtt_4_3_2_2() {
    let mut h = harness();
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", "m", QoS::AtLeastOnce, 42);
    assert_eq!(
        h.recv(publisher),
        Some(Packet::PubAck(PubResponse::new(42, ReasonCode::SUCCESS)))
    );
    let got = publishes(&mut h, sub);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert_ne!(got[0].packet_id, 0, "QoS 1 needs a non-zero packet id [MQTT-2.2.1-3]");
}

#[test]
fn puback_says_no_matching_subscribers_in_v5() {
    let mut h = harness();
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "nobody", "m", QoS::AtLeastOnce, 1);
    assert_eq!(
        h.recv(publisher),
        Some(Packet::PubAck(PubResponse::new(1, ReasonCode::NO_MATCHING_SUBSCRIBERS)))
    );
}

#[test]
fn qos2_duplicate_publish_is_delivered_once_mqtt_4_3_3_9() {
    let mut h = harness();
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "t", QoS::ExactlyOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", "once", QoS::ExactlyOnce, 9);
    assert!(matches!(h.recv(publisher), Some(Packet::PubRec(r)) if r.packet_id == 9));
    let mut again = publish_packet("t", "once", QoS::ExactlyOnce, 9);
    again.dup = true;
    h.send(publisher, Packet::Publish(again));
    assert!(matches!(h.recv(publisher), Some(Packet::PubRec(r)) if r.packet_id == 9));
    h.send(publisher, Packet::PubRel(PubResponse::new(9, ReasonCode::SUCCESS)));
    assert_eq!(
        h.recv(publisher),
        Some(Packet::PubComp(PubResponse::new(9, ReasonCode::SUCCESS)))
    );
    assert_eq!(publishes(&mut h, sub).len(), 1);
}

#[test]
fn qos2_outgoing_flow_pubrec_pubrel_pubcomp_mqtt_4_3_3() {
    let mut h = harness();
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "t", QoS::ExactlyOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", "m", QoS::ExactlyOnce, 1);
    let got = publishes(&mut h, sub);
    let id = got[0].packet_id;
    h.send(sub, Packet::PubRec(PubResponse::new(id, ReasonCode::SUCCESS)));
    assert_eq!(
        h.recv(sub),
        Some(Packet::PubRel(PubResponse::new(id, ReasonCode::SUCCESS)))
    );
    h.send(sub, Packet::PubComp(PubResponse::new(id, ReasonCode::SUCCESS)));
    assert!(h.recv_all(sub).is_empty());
}

/// A PUBREL is answered with a PUBCOMP carrying the same Packet Identifier [MQTT-4.3.3-11], [MQTT-2.2.1-5].
#[test]
fn pubrel_for_unknown_id_gets_pubcomp_0x92() {
    let mut h = harness();
    let conn = connected(&mut h, v5("a"));
    h.send(conn, Packet::PubRel(PubResponse::new(5, ReasonCode::SUCCESS)));
    assert_eq!(
        h.recv(conn),
        Some(Packet::PubComp(PubResponse::new(
            5,
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        )))
    );
}

#[test]
fn delivered_qos_is_minimum_of_publish_and_subscription_mqtt_3_8_4_8() {
    let mut h = harness();
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", "two", QoS::ExactlyOnce, 1);
    publish(&mut h, publisher, "t", "zero", QoS::AtMostOnce, 0);
    let got = publishes(&mut h, sub);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert_eq!(got[1].qos, QoS::AtMostOnce);
}

/// One copy, carrying the Subscription Identifiers of all matching subscriptions [MQTT-3.3.4-4].
#[test]
fn overlapping_subscriptions_deliver_once_with_max_qos_and_all_ids_mqtt_3_3_4_2_and_3() {
    let mut h = harness();
    let sub = connected(&mut h, v5("sub"));
    let mut props = Properties {
        subscription_identifiers: vec![1],
        ..Default::default()
    };
    let opts0 = SubscriptionOptions::default();
    subscribe_packet(&mut h, sub, vec![("a/+".into(), opts0)], props.clone());
    props.subscription_identifiers = vec![2];
    let opts1 = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    subscribe_packet(&mut h, sub, vec![("a/#".into(), opts1)], props);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "a/b", "m", QoS::ExactlyOnce, 1);
    let got = publishes(&mut h, sub);
    assert_eq!(got.len(), 1, "one delivery for overlapping subscriptions");
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    let mut ids = got[0].properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
}

#[test]
fn no_local_suppresses_own_messages_mqtt_3_8_3_3() {
    let mut h = harness();
    let conn = connected(&mut h, v5("self"));
    let options = SubscriptionOptions {
        no_local: true,
        ..Default::default()
    };
    subscribe_with(&mut h, conn, "t", options);
    publish(&mut h, conn, "t", "mine", QoS::AtMostOnce, 0);
    assert!(publishes(&mut h, conn).is_empty());
    let other = connected(&mut h, v5("other"));
    publish(&mut h, other, "t", "theirs", QoS::AtMostOnce, 0);
    assert_eq!(payloads(&publishes(&mut h, conn)), vec!["theirs"]);
}

#[test]
fn per_publisher_order_is_preserved_for_qos1_mqtt_4_6_0_6() {
    let mut h = harness();
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    for i in 1..=50u16 {
        publish(&mut h, publisher, "t", &i.to_string(), QoS::AtLeastOnce, i);
    }
    let got = publishes(&mut h, sub);
    let expected: Vec<String> = (1..=50).map(|i| i.to_string()).collect();
    assert_eq!(payloads(&got), expected);
}

#[test]
fn inflight_never_exceeds_client_receive_maximum_mqtt_3_3_4_9() {
    let mut h = harness();
    let mut connect = v5("sub");
    connect.properties.receive_maximum = Some(3);
    let sub = connected(&mut h, connect);
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    for i in 1..=10u16 {
        publish(&mut h, publisher, "t", &i.to_string(), QoS::AtLeastOnce, i);
    }
    let first = publishes(&mut h, sub);
    assert_eq!(payloads(&first), vec!["1", "2", "3"]);
    h.send(
        sub,
        Packet::PubAck(PubResponse::new(first[0].packet_id, ReasonCode::SUCCESS)),
    );
    let next = publishes(&mut h, sub);
    assert_eq!(payloads(&next), vec!["4"], "one ack frees exactly one slot");
}

#[test]
fn too_many_unacknowledged_qos2_from_client_is_0x93() {
    let config = Config {
        receive_maximum: 2,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let conn = connected(&mut h, v5("pub"));
    for id in 1..=3u16 {
        publish(&mut h, conn, "t", "m", QoS::ExactlyOnce, id);
    }
    expect_disconnect(&mut h, conn, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
}

#[test]
fn unacknowledged_messages_are_resent_with_dup_on_reconnect_mqtt_4_4_0_1() {
    let mut h = harness();
    let mut connect = v5("sub");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(600);
    let sub = connected(&mut h, connect.clone());
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    for i in 1..=3u16 {
        publish(&mut h, publisher, "t", &i.to_string(), QoS::AtLeastOnce, i);
    }
    let first = publishes(&mut h, sub);
    assert_eq!(first.len(), 3);
    h.drop_connection(sub);
    let (sub, connack) = connect_ok(&mut h, connect);
    assert!(connack.session_present);
    let again = publishes(&mut h, sub);
    assert_eq!(payloads(&again), vec!["1", "2", "3"], "original order");
    assert!(again.iter().all(|p| p.dup), "DUP set on resend [MQTT-3.3.1-1]");
    let ids: Vec<u16> = again.iter().map(|p| p.packet_id).collect();
    let first_ids: Vec<u16> = first.iter().map(|p| p.packet_id).collect();
    assert_eq!(ids, first_ids, "same packet identifiers");
}

/// Past PUBREC the sender resends the PUBREL, with the original Packet Identifier, and not the PUBLISH [MQTT-4.4.0-1],
/// [MQTT-4.3.3-4], [MQTT-4.3.3-6].
#[test]
fn pubrel_is_resent_on_reconnect_for_messages_past_pubrec() {
    let mut h = harness();
    let mut connect = v5("sub");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(600);
    let sub = connected(&mut h, connect.clone());
    subscribe(&mut h, sub, "t", QoS::ExactlyOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", "m", QoS::ExactlyOnce, 1);
    let id = publishes(&mut h, sub)[0].packet_id;
    h.send(sub, Packet::PubRec(PubResponse::new(id, ReasonCode::SUCCESS)));
    h.recv_all(sub);
    h.drop_connection(sub);
    let (sub, _) = connect_ok(&mut h, connect);
    assert_eq!(
        h.recv(sub),
        Some(Packet::PubRel(PubResponse::new(id, ReasonCode::SUCCESS)))
    );
}

#[test]
fn offline_queue_is_bounded_by_max_queued_messages() {
    let config = Config {
        max_queued_messages: 5,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let mut connect = v5("sub");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(600);
    let sub = connected(&mut h, connect.clone());
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    h.drop_connection(sub);
    let publisher = connected(&mut h, v5("pub"));
    for i in 1..=20u16 {
        publish(&mut h, publisher, "t", &i.to_string(), QoS::AtLeastOnce, i);
    }
    assert_eq!(h.broker.stats().messages_dropped, 15);
    let (sub, _) = connect_ok(&mut h, connect);
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["1", "2", "3", "4", "5"]);
}

#[test]
fn qos0_is_not_queued_for_offline_sessions() {
    let mut h = harness();
    let mut connect = v5("sub");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(600);
    let sub = connected(&mut h, connect.clone());
    subscribe(&mut h, sub, "t", QoS::AtMostOnce);
    h.drop_connection(sub);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", "lost", QoS::AtMostOnce, 0);
    let (sub, _) = connect_ok(&mut h, connect);
    assert!(publishes(&mut h, sub).is_empty());
}

#[test]
fn expired_message_is_not_delivered_mqtt_3_3_2_5() {
    let mut h = harness();
    let mut connect = v5("sub");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(600);
    let sub = connected(&mut h, connect.clone());
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    h.drop_connection(sub);
    let publisher = connected(&mut h, v5("pub"));
    let mut short = publish_packet("t", "short", QoS::AtLeastOnce, 1);
    short.properties.message_expiry_interval = Some(5);
    h.send(publisher, Packet::Publish(short));
    let mut long = publish_packet("t", "long", QoS::AtLeastOnce, 2);
    long.properties.message_expiry_interval = Some(100);
    h.send(publisher, Packet::Publish(long));
    h.advance(Duration::from_secs(10));
    let (sub, _) = connect_ok(&mut h, connect);
    let got = publishes(&mut h, sub);
    assert_eq!(payloads(&got), vec!["long"]);
    // [MQTT-3.3.2-6]: the interval sent is what remains.
    assert_eq!(got[0].properties.message_expiry_interval, Some(90));
}

/// Payload Format Indicator [MQTT-3.3.2-4], Response Topic [MQTT-3.3.2-15], Correlation Data [MQTT-3.3.2-16], Content
/// Type [MQTT-3.3.2-20] and User Properties in their order [MQTT-3.3.2-18] reach the subscriber unaltered.
#[test]
fn user_properties_and_message_properties_pass_through_unchanged_mqtt_3_3_2_17() {
    let mut h = harness();
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "t", QoS::AtMostOnce);
    let publisher = connected(&mut h, v5("pub"));
    let mut packet = publish_packet("t", "{}", QoS::AtMostOnce, 0);
    packet.properties.user_properties = vec![
        ("b".into(), "2".into()),
        ("a".into(), "1".into()),
        ("b".into(), "3".into()),
    ];
    packet.properties.payload_format_indicator = Some(1);
    packet.properties.content_type = Some("application/json".into());
    packet.properties.response_topic = Some("reply/here".into());
    packet.properties.correlation_data = Some(Bytes::from_static(b"corr"));
    h.send(publisher, Packet::Publish(packet.clone()));
    let got = publishes(&mut h, sub);
    let p = &got[0].properties;
    assert_eq!(
        p.user_properties, packet.properties.user_properties,
        "order kept [MQTT-3.3.2-18]"
    );
    assert_eq!(p.payload_format_indicator, Some(1));
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    assert_eq!(p.response_topic.as_deref(), Some("reply/here"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"corr"[..]));
}

#[test]
fn inbound_topic_alias_is_resolved_mqtt_3_3_2_12() {
    let mut h = harness();
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "long/topic/name", QoS::AtMostOnce);
    let publisher = connected(&mut h, v5("pub"));
    let mut first = publish_packet("long/topic/name", "1", QoS::AtMostOnce, 0);
    first.properties.topic_alias = Some(3);
    h.send(publisher, Packet::Publish(first));
    let mut second = publish_packet("", "2", QoS::AtMostOnce, 0);
    second.properties.topic_alias = Some(3);
    h.send(publisher, Packet::Publish(second));
    let got = publishes(&mut h, sub);
    assert_eq!(payloads(&got), vec!["1", "2"]);
    assert!(got
        .iter()
        .all(|p| p.topic == "long/topic/name" && p.properties.topic_alias.is_none()));
}

#[test]
fn topic_alias_above_maximum_is_0x94_mqtt_3_3_2_9() {
    let mut h = harness();
    let conn = connected(&mut h, v5("pub"));
    let mut packet = publish_packet("t", "x", QoS::AtMostOnce, 0);
    packet.properties.topic_alias = Some(1000);
    h.send(conn, Packet::Publish(packet));
    expect_disconnect(&mut h, conn, ReasonCode::TOPIC_ALIAS_INVALID);
}

#[test]
fn unknown_topic_alias_is_protocol_error() {
    let mut h = harness();
    let conn = connected(&mut h, v5("pub"));
    let mut packet = publish_packet("", "x", QoS::AtMostOnce, 0);
    packet.properties.topic_alias = Some(1);
    h.send(conn, Packet::Publish(packet));
    expect_disconnect(&mut h, conn, ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn outbound_topic_aliases_are_used_when_client_allows() {
    let mut h = harness();
    let mut connect = v5("sub");
    connect.properties.topic_alias_maximum = Some(2);
    let sub = connected(&mut h, connect);
    subscribe(&mut h, sub, "t/#", QoS::AtMostOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t/a", "1", QoS::AtMostOnce, 0);
    publish(&mut h, publisher, "t/a", "2", QoS::AtMostOnce, 0);
    let got = publishes(&mut h, sub);
    assert_eq!(got[0].topic, "t/a");
    let alias = got[0].properties.topic_alias.expect("alias set with the topic");
    assert!((1..=2).contains(&alias), "within the client's maximum [MQTT-3.3.2-7]");
    assert_eq!(got[1].topic, "");
    assert_eq!(got[1].properties.topic_alias, Some(alias));
}

#[test]
fn message_larger_than_client_maximum_packet_size_is_dropped_mqtt_3_1_2_25() {
    let mut h = harness();
    let mut connect = v5("small");
    connect.properties.maximum_packet_size = Some(50);
    let sub = connected(&mut h, connect);
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", &"x".repeat(100), QoS::AtLeastOnce, 1);
    publish(&mut h, publisher, "t", "fits", QoS::AtLeastOnce, 2);
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["fits"]);
}

#[test]
fn qos_above_maximum_is_0x9b_mqtt_3_2_2_11() {
    let config = Config {
        maximum_qos: 1,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let conn = connected(&mut h, v5("pub"));
    publish(&mut h, conn, "t", "x", QoS::ExactlyOnce, 1);
    expect_disconnect(&mut h, conn, ReasonCode::QOS_NOT_SUPPORTED);
}

#[test]
fn v5_publisher_to_v311_subscriber_strips_properties() {
    let mut h = harness();
    let sub = connected(&mut h, v311("old"));
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("new"));
    let mut packet = publish_packet("t", "x", QoS::AtLeastOnce, 1);
    packet.properties.user_properties = vec![("k".into(), "v".into())];
    h.send(publisher, Packet::Publish(packet));
    let got = publishes(&mut h, sub);
    assert_eq!(payloads(&got), vec!["x"]);
    assert!(got[0].properties.is_empty());
}

#[test]
fn slow_consumer_drops_qos0_but_keeps_qos1_queued() {
    let config = Config {
        max_outbuf_bytes: 1000,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let sub = connected(&mut h, v5("slow"));
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    h.input(mqtt_core::broker::Input::WriteBlocked { conn: sub });
    let publisher = connected(&mut h, v5("pub"));
    let big = "y".repeat(400);
    for i in 0..10u16 {
        publish(&mut h, publisher, "t", &big, QoS::AtMostOnce, 0);
        publish(&mut h, publisher, "t", &format!("q{i}"), QoS::AtLeastOnce, i + 1);
    }
    assert!(
        h.broker.stats().messages_dropped > 0,
        "QoS 0 dropped past the buffer bound"
    );
    h.input(mqtt_core::broker::Input::Writable { conn: sub });
    let mut qos1 = Vec::new();
    for _ in 0..20 {
        for p in publishes(&mut h, sub) {
            if p.qos == QoS::AtLeastOnce {
                qos1.push(String::from_utf8_lossy(&p.payload).into_owned());
                h.send(sub, Packet::PubAck(PubResponse::new(p.packet_id, ReasonCode::SUCCESS)));
            }
        }
    }
    let expected: Vec<String> = (0..10).map(|i| format!("q{i}")).collect();
    assert_eq!(qos1, expected, "every QoS 1 message arrives, in order");
}

#[test]
fn alias_is_not_established_by_a_publish_dropped_for_size() {
    let mut h = harness();
    let mut connect = v5("sub");
    connect.properties.topic_alias_maximum = Some(2);
    connect.properties.maximum_packet_size = Some(60);
    let sub = connected(&mut h, connect);
    subscribe(&mut h, sub, "t/a", QoS::AtMostOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t/a", &"x".repeat(100), QoS::AtMostOnce, 0);
    publish(&mut h, publisher, "t/a", "small", QoS::AtMostOnce, 0);
    let got = publishes(&mut h, sub);
    assert_eq!(payloads(&got), vec!["small"]);
    // The first PUBLISH the client sees on this topic must carry the topic itself [MQTT-3.3.2-12].
    assert_eq!(got[0].topic, "t/a");
}

#[test]
fn queue_keeps_moving_after_a_message_too_large_for_the_client_is_dropped() {
    let mut h = harness();
    let mut connect = v5("sub");
    connect.properties.receive_maximum = Some(1);
    connect.properties.maximum_packet_size = Some(60);
    let sub = connected(&mut h, connect);
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", "first", QoS::AtLeastOnce, 1);
    publish(&mut h, publisher, "t", &"x".repeat(100), QoS::AtLeastOnce, 2);
    publish(&mut h, publisher, "t", "third", QoS::AtLeastOnce, 3);
    let first = publishes(&mut h, sub);
    assert_eq!(payloads(&first), vec!["first"]);
    // Acknowledging the first lets the oversized one be dropped [MQTT-3.1.2-25], and the window must then move on
    // to the third without waiting for anything else.
    h.send(
        sub,
        Packet::PubAck(PubResponse::new(first[0].packet_id, ReasonCode::SUCCESS)),
    );
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["third"]);
}

/// The exact size of the PUBLISH the broker would send for `topic`/`payload` at QoS 1 without any alias.
fn qos1_publish_len(topic: &str, payload: &str) -> u32 {
    let packet = Packet::Publish(publish_packet(topic, payload, QoS::AtLeastOnce, 1));
    mqtt_core::codec::encoded_len(&packet, ProtocolVersion::V5) as u32
}

#[test]
fn inflight_message_is_resent_on_reconnect_even_when_a_new_alias_would_not_fit_mqtt_4_4_0_1() {
    // Found by the simulator (seed 13790): the first connection had no topic aliases and the message fitted the
    // client's Maximum Packet Size exactly; the reconnecting client allows aliases, and the resend with a new
    // alias (3 more bytes) no longer fitted, so it was dropped and left in the inflight window for good.
    let mut h = harness();
    let payload = "x".repeat(50);
    let mut connect = v5("sub");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(600);
    connect.properties.receive_maximum = Some(1);
    connect.properties.maximum_packet_size = Some(qos1_publish_len("t", &payload));
    let sub = connected(&mut h, connect.clone());
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", &payload, QoS::AtLeastOnce, 1);
    publish(&mut h, publisher, "t", "next", QoS::AtLeastOnce, 2);
    let first = publishes(&mut h, sub);
    assert_eq!(payloads(&first), vec![payload.clone()]);
    h.drop_connection(sub);

    connect.properties.topic_alias_maximum = Some(4);
    let (sub, connack) = connect_ok(&mut h, connect);
    assert!(connack.session_present);
    // [MQTT-4.4.0-1]: the unacknowledged PUBLISH is sent again, with DUP [MQTT-3.3.1-1] and the same packet id;
    // a topic alias is optional, so it must not be what stops the message from fitting [MQTT-3.1.2-25].
    let again = publishes(&mut h, sub);
    assert_eq!(payloads(&again), vec![payload]);
    assert!(again[0].dup);
    assert_eq!(again[0].packet_id, first[0].packet_id);
    assert_eq!(again[0].topic, "t");
    h.send(
        sub,
        Packet::PubAck(PubResponse::new(again[0].packet_id, ReasonCode::SUCCESS)),
    );
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["next"]);
}

#[test]
fn window_moves_when_an_inflight_message_no_longer_fits_after_reconnect_mqtt_3_1_2_25() {
    // The client reconnects announcing a smaller Maximum Packet Size: the inflight message cannot be resent
    // [MQTT-3.1.2-25], so it counts as delivered and must not hold its window slot for ever.
    let mut h = harness();
    let payload = "x".repeat(50);
    let mut connect = v5("sub");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(600);
    connect.properties.receive_maximum = Some(1);
    let sub = connected(&mut h, connect.clone());
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", &payload, QoS::AtLeastOnce, 1);
    publish(&mut h, publisher, "t", "next", QoS::AtLeastOnce, 2);
    assert_eq!(payloads(&publishes(&mut h, sub)), vec![payload.clone()]);
    h.drop_connection(sub);

    connect.properties.maximum_packet_size = Some(qos1_publish_len("t", &payload) - 1);
    let (sub, connack) = connect_ok(&mut h, connect);
    assert!(connack.session_present);
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["next"]);
}

#[test]
fn publish_from_client_with_subscription_identifier_is_protocol_error_mqtt_3_3_4_6() {
    let mut h = harness();
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "t", QoS::AtMostOnce);
    let conn = connected(&mut h, v5("pub"));
    let mut packet = publish_packet("t", "x", QoS::AtLeastOnce, 1);
    packet.properties.subscription_identifiers = vec![7];
    h.send(conn, Packet::Publish(packet));
    expect_disconnect(&mut h, conn, ReasonCode::PROTOCOL_ERROR);
    assert!(publishes(&mut h, sub).is_empty(), "the message is not routed");
}

/// A fan-out's output is handed to the driver in the order it was made: every subscriber's PUBLISH, in routing
/// order, before the PUBACK to the publisher (sent once the message is routed). The driver writes in that order, so
/// the deliveries leave first and the publisher's wake-up does not sit in front of them (a reversed hand-out order
/// put the PUBACK first).
#[test]
fn fan_out_deliveries_are_handed_out_before_the_publishers_puback() {
    let mut h = harness();
    let subscribers: Vec<_> = (0..4)
        .map(|i| {
            let conn = connected(&mut h, v311(&format!("sub-{i}")));
            subscribe(&mut h, conn, "fan/out", QoS::AtLeastOnce);
            conn
        })
        .collect();
    let publisher = connected(&mut h, v311("pub"));
    h.transmits = Some(Vec::new());
    publish(&mut h, publisher, "fan/out", "m", QoS::AtLeastOnce, 7);
    let order: Vec<_> = h
        .transmits
        .take()
        .expect("recording")
        .into_iter()
        .map(|(conn, _)| conn)
        .collect();
    let mut expected = subscribers.clone();
    expected.push(publisher);
    assert_eq!(order, expected, "subscribers in routing order, then the publisher");
    assert_eq!(
        h.recv(publisher),
        Some(Packet::PubAck(PubResponse::new(7, ReasonCode::SUCCESS)))
    );
    for conn in subscribers {
        assert_eq!(payloads(&publishes(&mut h, conn)), vec!["m"]);
    }
}
