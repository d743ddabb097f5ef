//! SUBSCRIBE / UNSUBSCRIBE, wildcards, `$` topics, shared subscriptions, retained messages and wills.

mod common;

use common::*;
use mqtt_core::broker::Config;
use mqtt_core::harness::Harness;
use mqtt_core::packet::*;
use std::time::Duration;

#[test]
fn suback_grants_requested_qos_capped_by_maximum_mqtt_3_8_4_7() {
    let config = Config {
        maximum_qos: 1,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let conn = connected(&mut h, v5("a"));
    let suback = subscribe(&mut h, conn, "t", QoS::ExactlyOnce);
    assert_eq!(suback.reasons, vec![ReasonCode::GRANTED_QOS_1]);
    assert_eq!(suback.packet_id, 7, "same packet id as SUBSCRIBE [MQTT-3.8.4-2]");
}

#[test]
fn wildcards_match_per_spec_examples_mqtt_4_7_1() {
    let mut h = harness();
    let plus = connected(&mut h, v5("plus"));
    let hash = connected(&mut h, v5("hash"));
    subscribe(&mut h, plus, "sport/+", QoS::AtMostOnce);
    subscribe(&mut h, hash, "sport/#", QoS::AtMostOnce);
    let p = connected(&mut h, v5("p"));
    for topic in ["sport", "sport/tennis", "sport/tennis/player1"] {
        publish(&mut h, p, topic, topic, QoS::AtMostOnce, 0);
    }
    assert_eq!(payloads(&publishes(&mut h, plus)), vec!["sport/tennis"]);
    assert_eq!(
        payloads(&publishes(&mut h, hash)),
        vec!["sport", "sport/tennis", "sport/tennis/player1"]
    );
}

#[test]
fn wildcards_do_not_match_dollar_topics_mqtt_4_7_2_1() {
    let mut h = harness();
    let all = connected(&mut h, v5("all"));
    let sys = connected(&mut h, v5("sys"));
    subscribe(&mut h, all, "#", QoS::AtMostOnce);
    subscribe(&mut h, sys, "$SYS/#", QoS::AtMostOnce);
    h.advance(Duration::from_secs(11));
    assert!(publishes(&mut h, all).is_empty(), "# must not match $SYS topics");
    let sys_topics: Vec<String> = publishes(&mut h, sys).into_iter().map(|p| p.topic).collect();
    assert!(
        sys_topics.contains(&"$SYS/broker/clients/connected".to_string()),
        "{sys_topics:?}"
    );
    assert!(sys_topics.contains(&"$SYS/broker/uptime".to_string()));
}

#[test]
fn clients_cannot_publish_to_sys_topics() {
    let mut h = harness();
    let sys = connected(&mut h, v5("sys"));
    subscribe(&mut h, sys, "$SYS/fake", QoS::AtMostOnce);
    let p = connected(&mut h, v5("p"));
    publish(&mut h, p, "$SYS/fake", "spoof", QoS::AtLeastOnce, 1);
    assert_eq!(
        h.recv(p),
        Some(Packet::PubAck(PubResponse::new(1, ReasonCode::NOT_AUTHORIZED)))
    );
    assert!(publishes(&mut h, sys).is_empty());
}

/// One reason code per filter [MQTT-3.8.4-6], in the order of the filters [MQTT-3.9.3-1]: a SUBSCRIBE with several
/// filters is handled as several SUBSCRIBEs answered together [MQTT-3.8.4-5].
#[test]
fn invalid_filter_gets_0x8f_in_suback() {
    let mut h = harness();
    let conn = connected(&mut h, v5("a"));
    let options = SubscriptionOptions::default();
    let filters = vec![("a/#/b".to_string(), options), ("ok".to_string(), options)];
    let suback = subscribe_packet(&mut h, conn, filters, Properties::default());
    assert_eq!(
        suback.reasons,
        vec![ReasonCode::TOPIC_FILTER_INVALID, ReasonCode::GRANTED_QOS_0]
    );
}

#[test]
fn unsubscribe_reports_per_filter_reason_codes_mqtt_3_11_3_1() {
    let mut h = harness();
    let conn = connected(&mut h, v5("a"));
    subscribe(&mut h, conn, "x", QoS::AtMostOnce);
    h.send(
        conn,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 3,
            properties: Default::default(),
            filters: vec!["x".into(), "never".into()],
        }),
    );
    match h.recv(conn) {
        Some(Packet::UnsubAck(unsuback)) => {
            assert_eq!(unsuback.packet_id, 3);
            assert_eq!(
                unsuback.reasons,
                vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
            );
        }
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    let p = connected(&mut h, v5("p"));
    publish(&mut h, p, "x", "after", QoS::AtMostOnce, 0);
    assert!(
        publishes(&mut h, conn).is_empty(),
        "no delivery after UNSUBACK [MQTT-3.10.4-2]"
    );
}

#[test]
fn resubscribe_replaces_subscription_mqtt_3_8_4_3() {
    let mut h = harness();
    let conn = connected(&mut h, v5("a"));
    subscribe(&mut h, conn, "t", QoS::AtLeastOnce);
    subscribe(&mut h, conn, "t", QoS::AtMostOnce);
    let p = connected(&mut h, v5("p"));
    publish(&mut h, p, "t", "m", QoS::AtLeastOnce, 1);
    let got = publishes(&mut h, conn);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos, QoS::AtMostOnce);
}

#[test]
fn shared_subscription_spreads_messages_across_group() {
    let mut h = harness();
    let a = connected(&mut h, v5("a"));
    let b = connected(&mut h, v5("b"));
    let plain = connected(&mut h, v5("plain"));
    subscribe(&mut h, a, "$share/g/jobs/+", QoS::AtMostOnce);
    subscribe(&mut h, b, "$share/g/jobs/+", QoS::AtMostOnce);
    subscribe(&mut h, plain, "jobs/+", QoS::AtMostOnce);
    let p = connected(&mut h, v5("p"));
    for i in 0..10 {
        publish(&mut h, p, "jobs/x", &i.to_string(), QoS::AtMostOnce, 0);
    }
    let got_a = publishes(&mut h, a).len();
    let got_b = publishes(&mut h, b).len();
    assert_eq!(got_a + got_b, 10, "each message to exactly one group member");
    assert_eq!(got_a, 5);
    assert_eq!(
        publishes(&mut h, plain).len(),
        10,
        "non-shared subscribers get every message"
    );
}

#[test]
fn no_local_on_shared_subscription_is_protocol_error_mqtt_3_8_3_4() {
    let mut h = harness();
    let conn = connected(&mut h, v5("a"));
    let options = SubscriptionOptions {
        no_local: true,
        ..Default::default()
    };
    h.send(
        conn,
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Default::default(),
            filters: vec![("$share/g/t".into(), options)],
        }),
    );
    expect_disconnect(&mut h, conn, ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn retained_message_is_sent_on_subscribe_with_retain_flag_mqtt_3_3_1_9() {
    let mut h = harness();
    let p = connected(&mut h, v5("p"));
    retain(&mut h, p, "status/a", "on");
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "status/+", QoS::AtMostOnce);
    let got = publishes(&mut h, sub);
    assert_eq!(payloads(&got), vec!["on"]);
    assert!(got[0].retain);
}

#[test]
fn retained_message_is_replaced_and_cleared_by_empty_payload_mqtt_3_3_1_5_and_6() {
    let mut h = harness();
    let p = connected(&mut h, v5("p"));
    retain(&mut h, p, "s", "one");
    retain(&mut h, p, "s", "two");
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "s", QoS::AtMostOnce);
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["two"]);
    retain(&mut h, p, "s", "");
    h.recv_all(sub);
    let late = connected(&mut h, v5("late"));
    subscribe(&mut h, late, "s", QoS::AtMostOnce);
    assert!(publishes(&mut h, late).is_empty());
}

#[test]
fn retain_handling_1_sends_only_for_new_subscription_and_2_never_mqtt_3_3_1_10_and_11() {
    let mut h = harness();
    let p = connected(&mut h, v5("p"));
    retain(&mut h, p, "r", "kept");
    let sub = connected(&mut h, v5("sub"));
    let if_new = SubscriptionOptions {
        retain_handling: RetainHandling::SendIfNew,
        ..Default::default()
    };
    subscribe_with(&mut h, sub, "r", if_new);
    assert_eq!(publishes(&mut h, sub).len(), 1);
    subscribe_with(&mut h, sub, "r", if_new);
    assert!(
        publishes(&mut h, sub).is_empty(),
        "existing subscription: not sent again"
    );
    let never = connected(&mut h, v5("never"));
    let options = SubscriptionOptions {
        retain_handling: RetainHandling::DoNotSend,
        ..Default::default()
    };
    subscribe_with(&mut h, never, "r", options);
    assert!(publishes(&mut h, never).is_empty());
}

#[test]
fn retain_as_published_keeps_flag_on_forwarded_messages_mqtt_3_3_1_12_and_13() {
    let mut h = harness();
    let keep = connected(&mut h, v5("keep"));
    let clear = connected(&mut h, v5("clear"));
    let options = SubscriptionOptions {
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
        ..Default::default()
    };
    subscribe_with(&mut h, keep, "t", options);
    let options = SubscriptionOptions {
        retain_handling: RetainHandling::DoNotSend,
        ..Default::default()
    };
    subscribe_with(&mut h, clear, "t", options);
    let p = connected(&mut h, v5("p"));
    retain(&mut h, p, "t", "live");
    assert!(publishes(&mut h, keep)[0].retain);
    assert!(!publishes(&mut h, clear)[0].retain);
}

#[test]
fn retained_message_expires_mqtt_3_3_2_5() {
    let mut h = harness();
    let p = connected(&mut h, v5("p"));
    let mut packet = publish_packet("e", "short-lived", QoS::AtMostOnce, 0);
    packet.retain = true;
    packet.properties.message_expiry_interval = Some(5);
    h.send(p, Packet::Publish(packet));
    h.advance(Duration::from_secs(6));
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "e", QoS::AtMostOnce);
    assert!(publishes(&mut h, sub).is_empty());
}

fn will_connect(client_id: &str, delay: Option<u32>) -> Connect {
    let mut connect = v5(client_id);
    let mut will = Will {
        topic: "wills".into(),
        payload: bytes::Bytes::from_static(b"gone"),
        ..Default::default()
    };
    will.properties.will_delay_interval = delay;
    connect.will = Some(will);
    connect
}

#[test]
fn will_is_published_on_abnormal_disconnect_mqtt_3_1_2_8() {
    let mut h = harness();
    let watcher = connected(&mut h, v5("w"));
    subscribe(&mut h, watcher, "wills", QoS::AtMostOnce);
    let client = connected(&mut h, will_connect("c", None));
    h.drop_connection(client);
    assert_eq!(payloads(&publishes(&mut h, watcher)), vec!["gone"]);
}

#[test]
fn will_is_discarded_on_normal_disconnect_mqtt_3_1_2_10() {
    let mut h = harness();
    let watcher = connected(&mut h, v5("w"));
    subscribe(&mut h, watcher, "wills", QoS::AtMostOnce);
    let client = connected(&mut h, will_connect("c", None));
    h.send(client, Packet::Disconnect(Disconnect::default()));
    assert!(publishes(&mut h, watcher).is_empty());
}

#[test]
fn disconnect_with_will_message_publishes_will() {
    let mut h = harness();
    let watcher = connected(&mut h, v5("w"));
    subscribe(&mut h, watcher, "wills", QoS::AtMostOnce);
    let client = connected(&mut h, will_connect("c", None));
    let disconnect = Disconnect {
        reason: ReasonCode::DISCONNECT_WITH_WILL,
        ..Default::default()
    };
    h.send(client, Packet::Disconnect(disconnect));
    assert_eq!(payloads(&publishes(&mut h, watcher)), vec!["gone"]);
}

#[test]
fn will_delay_postpones_will_and_reconnect_cancels_it_mqtt_3_1_3_9() {
    let mut h = harness();
    let watcher = connected(&mut h, v5("w"));
    subscribe(&mut h, watcher, "wills", QoS::AtMostOnce);
    let mut connect = will_connect("c", Some(30));
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(600);
    let client = connected(&mut h, connect.clone());
    h.drop_connection(client);
    h.advance(Duration::from_secs(10));
    assert!(publishes(&mut h, watcher).is_empty(), "delayed");
    connected(&mut h, connect.clone());
    h.advance(Duration::from_secs(60));
    assert!(publishes(&mut h, watcher).is_empty(), "cancelled by reconnect");

    let other = connected(&mut h, will_connect("d", Some(30)));
    h.drop_connection(other);
    // Session expiry 0 ends the session at once, which publishes the will without waiting for the delay.
    assert_eq!(payloads(&publishes(&mut h, watcher)), vec!["gone"]);
}

#[test]
fn delayed_will_is_published_after_delay() {
    let mut h = harness();
    let watcher = connected(&mut h, v5("w"));
    subscribe(&mut h, watcher, "wills", QoS::AtMostOnce);
    let mut connect = will_connect("c", Some(30));
    connect.properties.session_expiry_interval = Some(600);
    let client = connected(&mut h, connect);
    h.drop_connection(client);
    h.advance(Duration::from_secs(29));
    assert!(publishes(&mut h, watcher).is_empty());
    h.advance(Duration::from_secs(2));
    assert_eq!(payloads(&publishes(&mut h, watcher)), vec!["gone"]);
}

#[test]
fn will_on_keep_alive_timeout_is_published() {
    let mut h = harness();
    let watcher = connected(&mut h, v5("w"));
    subscribe(&mut h, watcher, "wills", QoS::AtMostOnce);
    let mut connect = will_connect("c", None);
    connect.keep_alive = 2;
    connected(&mut h, connect);
    h.advance(Duration::from_secs(4));
    assert_eq!(payloads(&publishes(&mut h, watcher)), vec!["gone"]);
}

/// Will Retain 1: the will is published as a retained message [MQTT-3.1.2-15].
#[test]
fn retained_will_is_stored() {
    let mut h = harness();
    let mut connect = will_connect("c", None);
    if let Some(will) = connect.will.as_mut() {
        will.retain = true;
    }
    let client = connected(&mut h, connect);
    h.drop_connection(client);
    let late = connected(&mut h, v5("late"));
    subscribe(&mut h, late, "wills", QoS::AtMostOnce);
    let got = publishes(&mut h, late);
    assert_eq!(payloads(&got), vec!["gone"]);
    assert!(got[0].retain);
}

#[test]
fn mqtt_3_1_client_retrying_subscribe_and_unsubscribe_with_dup_is_answered() {
    // MQTT 3.1 (protocol level 3) set DUP on retried SUBSCRIBE / UNSUBSCRIBE (QoS 1 in the fixed header); 3.1.1
    // reserved those flags [MQTT-2.1.3-1], but a 3.1 client must not be disconnected for them.
    let mut h = harness();
    let conn = connected(&mut h, connect_packet_v31("old-client"));
    h.send_bytes(conn, &[0x8A, 0x06, 0x00, 0x05, 0x00, 0x01, b'a', 0x01]);
    match h.recv(conn) {
        Some(Packet::SubAck(suback)) => {
            assert_eq!(suback.packet_id, 5);
            assert_eq!(suback.reasons, vec![ReasonCode::GRANTED_QOS_1]);
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
    h.send_bytes(conn, &[0xAA, 0x05, 0x00, 0x06, 0x00, 0x01, b'a']);
    assert!(matches!(h.recv(conn), Some(Packet::UnsubAck(u)) if u.packet_id == 6));
    assert!(!h.is_closed(conn));
}

#[test]
fn mqtt_3_1_1_client_subscribe_with_dup_is_malformed_mqtt_2_1_3_1() {
    let mut h = harness();
    let conn = connected(&mut h, v311("new-client"));
    h.send_bytes(conn, &[0x8A, 0x06, 0x00, 0x05, 0x00, 0x01, b'a', 0x01]);
    assert!(h.recv_all(conn).iter().all(|p| !matches!(p, Packet::SubAck(_))));
    assert!(h.is_closed(conn));
}

fn connect_packet_v31(client_id: &str) -> Connect {
    mqtt_core::harness::connect_packet(ProtocolVersion::V3_1, client_id)
}
