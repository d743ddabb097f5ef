//! Server-side statements of MQTT 5.0 and 3.1.1 about acknowledgements, sessions, wills and resends that no test
//! cited yet (see CONFORMANCE.md). A bare id is MQTT 5.0; `(3.1.1)` marks the 3.1.1 statement.

mod common;

use common::*;
use mqtt_core::packet::*;
use std::time::Duration;

#[test]
fn suback_and_unsuback_carry_the_packet_id_and_one_reason_per_filter_mqtt_2_2_1_6_mqtt_3_9_3_2() {
    // [MQTT-2.2.1-6], [MQTT-3.9.3-2]; 3.1.1: [MQTT-2.3.1-7] (3.1.1), [MQTT-3.9.3-2] (3.1.1).
    for connect in [v5("acks5"), v311("acks4")] {
        let mut h = harness();
        let conn = connected(&mut h, connect);
        h.send(
            conn,
            Packet::Subscribe(Subscribe {
                packet_id: 4242,
                properties: Default::default(),
                filters: vec![
                    (
                        "a/b".into(),
                        SubscriptionOptions {
                            qos: QoS::AtLeastOnce,
                            ..Default::default()
                        },
                    ),
                    (
                        "c/+".into(),
                        SubscriptionOptions {
                            qos: QoS::ExactlyOnce,
                            ..Default::default()
                        },
                    ),
                    ("d/#".into(), SubscriptionOptions::default()),
                ],
            }),
        );
        match h.recv(conn) {
            Some(Packet::SubAck(ack)) => {
                assert_eq!(ack.packet_id, 4242);
                assert_eq!(ack.reasons, vec![ReasonCode(1), ReasonCode(2), ReasonCode(0)]);
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
        h.send(
            conn,
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 777,
                properties: Default::default(),
                filters: vec!["a/b".into(), "c/+".into()],
            }),
        );
        match h.recv(conn) {
            Some(Packet::UnsubAck(ack)) => assert_eq!(ack.packet_id, 777),
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }
}

#[test]
fn a_publish_is_answered_as_its_qos_requires_mqtt_3_3_4_1() {
    // [MQTT-3.3.4-1] and [MQTT-3.3.4-1] (3.1.1): QoS 0 nothing, QoS 1 PUBACK, QoS 2 PUBREC then PUBCOMP, each with
    // the PUBLISH's packet id and a reason from its own table [MQTT-3.5.2-1], [MQTT-3.7.2-1].
    for connect in [v5("p5"), v311("p4")] {
        let mut h = harness();
        // A subscriber, so that the v5 reason is 0x00 Success rather than 0x10 No matching subscribers.
        let sub = connected(&mut h, v5("listener"));
        subscribe(&mut h, sub, "t", QoS::AtMostOnce);
        let conn = connected(&mut h, connect);
        publish(&mut h, conn, "t", "zero", QoS::AtMostOnce, 0);
        assert!(h.recv(conn).is_none(), "no answer to QoS 0");
        publish(&mut h, conn, "t", "one", QoS::AtLeastOnce, 11);
        match h.recv(conn) {
            Some(Packet::PubAck(ack)) => assert_eq!((ack.packet_id, ack.reason), (11, ReasonCode(0))),
            other => panic!("expected PUBACK, got {other:?}"),
        }
        publish(&mut h, conn, "t", "two", QoS::ExactlyOnce, 12);
        match h.recv(conn) {
            Some(Packet::PubRec(rec)) => assert_eq!((rec.packet_id, rec.reason), (12, ReasonCode(0))),
            other => panic!("expected PUBREC, got {other:?}"),
        }
        h.send(
            conn,
            Packet::PubRel(PubResponse {
                packet_id: 12,
                reason: ReasonCode(0),
                properties: Default::default(),
            }),
        );
        match h.recv(conn) {
            Some(Packet::PubComp(comp)) => assert_eq!((comp.packet_id, comp.reason), (12, ReasonCode(0))),
            other => panic!("expected PUBCOMP, got {other:?}"),
        }
    }
}

#[test]
fn a_successful_connect_gets_connack_success_mqtt_3_1_4_5() {
    // [MQTT-3.1.4-5]; 3.1.1: [MQTT-3.1.4-4] (3.1.1).
    for connect in [v5("ok5"), v311("ok4")] {
        let mut h = harness();
        let (_, ack) = connect_ok(&mut h, connect);
        assert_eq!(ack.reason, ReasonCode(0));
    }
}

#[test]
fn a_delivered_topic_name_matches_the_subscription_filter_mqtt_3_3_2_3() {
    // [MQTT-3.3.2-3] and [MQTT-3.3.2-3] (3.1.1): the Topic Name sent is the published one, which the filter matches.
    let mut h = harness();
    let sub = connected(&mut h, v311("sub"));
    subscribe(&mut h, sub, "sensors/+/temp", QoS::AtMostOnce);
    let publ = connected(&mut h, v5("pub"));
    publish(&mut h, publ, "sensors/k1/temp", "21", QoS::AtMostOnce, 0);
    publish(&mut h, publ, "sensors/k1/humidity", "40", QoS::AtMostOnce, 0);
    let got = publishes(&mut h, sub);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].topic, "sensors/k1/temp");
}

#[test]
fn the_first_qos2_delivery_has_dup_0_and_stays_unacknowledged_until_pubrec_then_pubcomp_mqtt_4_3_3_2() {
    // [MQTT-4.3.3-2], [MQTT-4.3.3-3], [MQTT-4.3.3-5]: a PUBLISH not yet PUBREC'd is resent (DUP 1) on
    // reconnect; a PUBREL not yet PUBCOMP'd is resent as PUBREL, not as the PUBLISH.
    let mut h = harness();
    let mut sub_connect = v5("q2sub");
    sub_connect.clean_start = false;
    sub_connect.properties.session_expiry_interval = Some(600);
    let sub = connected(&mut h, sub_connect.clone());
    subscribe(&mut h, sub, "q2", QoS::ExactlyOnce);
    let publ = connected(&mut h, v5("q2pub"));
    publish(&mut h, publ, "q2", "first", QoS::ExactlyOnce, 1);
    let first = publishes(&mut h, sub);
    assert_eq!(first.len(), 1);
    assert!(!first[0].dup, "first delivery has DUP 0 [MQTT-4.3.3-2]");
    let id = first[0].packet_id;
    // No PUBREC: after a reconnect the PUBLISH is sent again, with DUP 1 [MQTT-4.3.3-3].
    h.drop_connection(sub);
    let (sub, ack) = connect_ok(&mut h, sub_connect.clone());
    assert!(ack.session_present);
    let again = publishes(&mut h, sub);
    assert_eq!(again.len(), 1);
    assert!(again[0].dup && again[0].packet_id == id);
    // PUBREC: the broker sends PUBREL and keeps it until PUBCOMP, resending the PUBREL after a reconnect
    // [MQTT-4.3.3-5].
    h.send(
        sub,
        Packet::PubRec(PubResponse {
            packet_id: id,
            reason: ReasonCode(0),
            properties: Default::default(),
        }),
    );
    assert!(matches!(h.recv(sub), Some(Packet::PubRel(rel)) if rel.packet_id == id));
    h.drop_connection(sub);
    let (sub, _) = connect_ok(&mut h, sub_connect);
    let resent = h.recv_all(sub);
    assert!(
        matches!(resent.as_slice(), [Packet::PubRel(rel)] if rel.packet_id == id),
        "only the PUBREL is resent, got {resent:?}"
    );
}

#[test]
fn resends_keep_the_original_order_mqtt_4_6_0_1() {
    // [MQTT-4.6.0-1] and [MQTT-4.6.0-1] (3.1.1): unacknowledged messages are resent in the order first sent.
    let mut h = harness();
    let mut sub_connect = v311("order");
    sub_connect.clean_start = false;
    let sub = connected(&mut h, sub_connect.clone());
    subscribe(&mut h, sub, "o", QoS::AtLeastOnce);
    let publ = connected(&mut h, v5("opub"));
    for (i, payload) in ["1", "2", "3", "4"].iter().enumerate() {
        publish(&mut h, publ, "o", payload, QoS::AtLeastOnce, i as u16 + 1);
    }
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["1", "2", "3", "4"]);
    h.drop_connection(sub);
    let (sub, _) = connect_ok(&mut h, sub_connect);
    let resent = publishes(&mut h, sub);
    assert!(resent.iter().all(|p| p.dup));
    assert_eq!(payloads(&resent), vec!["1", "2", "3", "4"]);
}

#[test]
fn a_will_lives_with_the_session_and_only_with_the_will_flag_mqtt_3_1_2_7() {
    // [MQTT-3.1.2-7]: the will is stored with the session and published when the connection is lost.
    // [MQTT-3.1.2-12] (3.1.1): without the Will Flag nothing is published when the connection ends.
    let mut h = harness();
    let watcher = connected(&mut h, v5("watcher"));
    subscribe(&mut h, watcher, "will/#", QoS::AtLeastOnce);
    let mut with_will = v5("w1");
    with_will.will = Some(Will {
        topic: "will/w1".into(),
        payload: "gone".into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    });
    let a = connected(&mut h, with_will);
    let b = connected(&mut h, v311("w2"));
    h.drop_connection(b);
    assert!(publishes(&mut h, watcher).is_empty(), "no will without the Will Flag");
    h.drop_connection(a);
    assert_eq!(payloads(&publishes(&mut h, watcher)), vec!["gone"]);
}

#[test]
fn session_state_lasts_while_the_connection_is_open_mqtt_4_1_0_1() {
    // [MQTT-4.1.0-1]; 3.1.1: [MQTT-4.1.0-1] (3.1.1), [MQTT-4.1.0-2] (3.1.1): a session with Session Expiry 0 keeps
    // its subscriptions as long as its connection is open, however long that is.
    let mut h = harness();
    let mut connect = v5("long");
    connect.keep_alive = 0;
    let sub = connected(&mut h, connect);
    subscribe(&mut h, sub, "l", QoS::AtLeastOnce);
    h.advance(Duration::from_secs(3 * 24 * 3600));
    let publ = connected(&mut h, v5("lpub"));
    publish(&mut h, publ, "l", "still here", QoS::AtLeastOnce, 1);
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["still here"]);
}

#[test]
fn retained_messages_outlive_the_session_that_published_them_mqtt_3_1_2_7_v311() {
    // [MQTT-3.1.2-7] (3.1.1): retained messages are not session state and are not deleted when the session ends.
    let mut h = harness();
    let publ = connected(&mut h, v311("ret"));
    retain(&mut h, publ, "r/1", "kept");
    h.send(publ, Packet::Disconnect(Disconnect::default()));
    let sub = connected(&mut h, v5("rsub"));
    subscribe(&mut h, sub, "r/#", QoS::AtMostOnce);
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["kept"]);
}

#[test]
fn an_invalid_share_name_is_refused_mqtt_4_8_2_2() {
    // [MQTT-4.8.2-2]: the ShareName must not contain "+" or "#" and must be followed by "/" and a filter.
    for filter in ["$share/g+/t", "$share/g#/t", "$share/g", "$share//t"] {
        let mut h = harness();
        let conn = connected(&mut h, v5("share"));
        h.send(
            conn,
            Packet::Subscribe(Subscribe {
                packet_id: 3,
                properties: Default::default(),
                filters: vec![(filter.into(), SubscriptionOptions::default())],
            }),
        );
        let refused = match h.recv(conn) {
            Some(Packet::SubAck(ack)) => ack.reasons.iter().all(|r| r.0 >= 0x80),
            Some(Packet::Disconnect(d)) => d.reason.0 >= 0x80,
            None => h.is_closed(conn),
            other => panic!("unexpected {other:?}"),
        };
        assert!(refused, "{filter} must be refused");
    }
}

#[test]
fn a_shared_message_inflight_to_a_member_is_completed_when_it_reconnects_mqtt_4_8_2_4() {
    // [MQTT-4.8.2-4]: a QoS 1 message sent to a member and not acknowledged goes to that member again on
    // reconnect; [MQTT-4.8.2-5]: it is not sent to another member meanwhile.
    let mut h = harness();
    let mut m1 = v5("m1");
    m1.clean_start = false;
    m1.properties.session_expiry_interval = Some(600);
    let a = connected(&mut h, m1.clone());
    subscribe(&mut h, a, "$share/g/s", QoS::AtLeastOnce);
    let b = connected(&mut h, v5("m2"));
    subscribe(&mut h, b, "$share/g/s", QoS::AtLeastOnce);
    let publ = connected(&mut h, v5("spub"));
    publish(&mut h, publ, "s", "only-one", QoS::AtLeastOnce, 1);
    let (got_a, got_b) = (publishes(&mut h, a), publishes(&mut h, b));
    assert_eq!(got_a.len() + got_b.len(), 1, "one member gets it");
    if got_a.len() == 1 {
        h.drop_connection(a);
        assert!(
            publishes(&mut h, b).is_empty(),
            "not sent to the other member [MQTT-4.8.2-5]"
        );
        let (a, _) = connect_ok(&mut h, m1);
        let again = publishes(&mut h, a);
        assert_eq!(payloads(&again), vec!["only-one"]);
        assert!(again[0].dup);
    } else {
        // Round robin chose the other member first; the rule is symmetric, so publish once more for `a`.
        publish(&mut h, publ, "s", "second", QoS::AtLeastOnce, 2);
        let got = publishes(&mut h, a);
        assert_eq!(payloads(&got), vec!["second"]);
        h.drop_connection(a);
        assert!(
            publishes(&mut h, b).is_empty(),
            "not sent to the other member [MQTT-4.8.2-5]"
        );
        let (a, _) = connect_ok(&mut h, m1);
        assert_eq!(payloads(&publishes(&mut h, a)), vec!["second"]);
    }
}

#[test]
fn request_problem_information_0_keeps_reason_strings_off_other_packets_mqtt_3_1_2_29() {
    // [MQTT-3.1.2-29]: with Request Problem Information 0, a refused SUBSCRIBE's SUBACK carries no Reason String.
    let mut h = harness();
    let mut connect = v5("quiet");
    connect.properties.request_problem_information = Some(0);
    let conn = connected(&mut h, connect);
    h.send(
        conn,
        Packet::Subscribe(Subscribe {
            packet_id: 5,
            properties: Default::default(),
            filters: vec![("$share/bad+/t".into(), SubscriptionOptions::default())],
        }),
    );
    match h.recv(conn) {
        Some(Packet::SubAck(ack)) => {
            assert!(ack.properties.reason_string.is_none());
            assert!(ack.properties.user_properties.is_empty());
        }
        Some(Packet::Disconnect(_)) => {} // DISCONNECT may carry one; nothing else was sent.
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn an_empty_property_set_is_sent_as_property_length_zero_mqtt_2_2_2_1() {
    // [MQTT-2.2.2-1]: a SUBACK without properties carries Property Length 0 before its reason codes.
    let mut out = bytes::BytesMut::new();
    let suback = Packet::SubAck(SubAck {
        packet_id: 9,
        properties: Default::default(),
        reasons: vec![ReasonCode(1)],
    });
    mqtt_core::codec::encode(&suback, ProtocolVersion::V5, &mut out).unwrap();
    assert_eq!(
        &out[..],
        &[0x90, 4, 0, 9, 0, 1],
        "fixed header, packet id, property length 0, reason"
    );
}

#[test]
fn a_wills_user_properties_keep_their_order_mqtt_3_1_3_10() {
    // [MQTT-3.1.3-10]: the Will Properties' User Properties are forwarded in their order.
    let mut h = harness();
    let watcher = connected(&mut h, v5("uwatch"));
    subscribe(&mut h, watcher, "will/u", QoS::AtMostOnce);
    let order = vec![
        ("b".to_string(), "1".to_string()),
        ("a".to_string(), "2".to_string()),
        ("b".to_string(), "3".to_string()),
    ];
    let mut connect = v5("uauthor");
    connect.will = Some(Will {
        topic: "will/u".into(),
        payload: "bye".into(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties {
            user_properties: order.clone(),
            ..Properties::default()
        },
    });
    let author = connected(&mut h, connect);
    h.drop_connection(author);
    let got = publishes(&mut h, watcher);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].properties.user_properties, order);
}

#[test]
fn the_send_quota_never_exceeds_the_clients_receive_maximum_mqtt_4_9_0_1() {
    // [MQTT-4.9.0-1]: the broker's send quota towards a client starts at (at most) its Receive Maximum.
    let mut h = harness();
    let mut connect = v5("slow");
    connect.properties.receive_maximum = Some(2);
    let sub = connected(&mut h, connect);
    subscribe(&mut h, sub, "q", QoS::AtLeastOnce);
    let publ = connected(&mut h, v5("fast"));
    for id in 1..=5 {
        publish(&mut h, publ, "q", &format!("m{id}"), QoS::AtLeastOnce, id);
    }
    let first = publishes(&mut h, sub);
    assert_eq!(
        payloads(&first),
        vec!["m1", "m2"],
        "two in flight, as the Receive Maximum allows"
    );
    h.send(
        sub,
        Packet::PubAck(PubResponse {
            packet_id: first[0].packet_id,
            reason: ReasonCode(0),
            properties: Default::default(),
        }),
    );
    assert_eq!(
        payloads(&publishes(&mut h, sub)),
        vec!["m3"],
        "one acknowledgement frees one slot"
    );
}

#[test]
fn a_qos2_message_sent_is_not_expired_and_its_pubrel_uses_a_pubrel_reason_mqtt_4_3_3_7() {
    // [MQTT-4.3.3-7]: once a QoS 2 PUBLISH was sent, its Message Expiry no longer applies: it is resent after
    // expiring. [MQTT-3.6.2-1]: the PUBREL the broker sends carries a PUBREL reason code (0x00).
    let mut h = harness();
    let mut sub_connect = v5("exp2");
    sub_connect.clean_start = false;
    sub_connect.properties.session_expiry_interval = Some(600);
    let sub = connected(&mut h, sub_connect.clone());
    subscribe(&mut h, sub, "e", QoS::ExactlyOnce);
    let publ = connected(&mut h, v5("epub"));
    let mut message = publish_packet("e", "short-lived", QoS::ExactlyOnce, 1);
    message.properties.message_expiry_interval = Some(2);
    h.send(publ, Packet::Publish(message));
    let sent = publishes(&mut h, sub);
    assert_eq!(sent.len(), 1);
    h.drop_connection(sub);
    h.advance(Duration::from_secs(10));
    let (sub, _) = connect_ok(&mut h, sub_connect);
    let again = publishes(&mut h, sub);
    assert_eq!(
        payloads(&again),
        vec!["short-lived"],
        "resent although its expiry passed"
    );
    h.send(
        sub,
        Packet::PubRec(PubResponse {
            packet_id: again[0].packet_id,
            reason: ReasonCode(0),
            properties: Default::default(),
        }),
    );
    match h.recv(sub) {
        Some(Packet::PubRel(rel)) => assert_eq!(rel.reason, ReasonCode(0)),
        other => panic!("expected PUBREL, got {other:?}"),
    }
}

#[test]
fn malformed_connects_and_bad_flags_close_without_connack_mqtt_3_1_4_1_v311() {
    // [MQTT-3.1.4-1] (3.1.1): a CONNECT that does not conform is answered by closing, without CONNACK (the
    // reserved flag bit set here); no 3.1.1 return code describes a malformed CONNECT, so the connection is closed
    // without a CONNACK [MQTT-3.2.2-6] (3.1.1). [MQTT-2.2.2-2] (3.1.1): invalid fixed-header flags close the
    // connection.
    let mut h = harness();
    let conn = h.open();
    // CONNECT, 3.1.1, connect flags 0x03: the reserved bit 0 is set.
    h.send_bytes(
        conn,
        &[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x03, 0, 60, 0, 1, b'x'],
    );
    assert!(h.recv(conn).is_none(), "no CONNACK");
    assert!(h.is_closed(conn));
    // [MQTT-3.1.4-1]: the same for MQTT 5, which may first learn the reason (CONNACK 0x81 Malformed Packet).
    let conn = h.open();
    h.send_bytes(
        conn,
        &[0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x03, 0, 60, 0, 0, 1, b'x'],
    );
    if let Some(packet) = h.recv(conn) {
        assert!(
            matches!(packet, Packet::ConnAck(ref ack) if ack.reason.0 >= 0x80),
            "got {packet:?}"
        );
    }
    assert!(h.is_closed(conn));
    let conn = connected(&mut h, v311("flags"));
    // SUBSCRIBE with fixed-header flags 0 instead of 2.
    h.send_bytes(conn, &[0x80, 6, 0, 1, 0, 1, b't', 0]);
    assert!(h.is_closed(conn));
}

#[test]
fn an_expired_qos2_message_still_completes_its_acknowledgements_mqtt_4_3_3_13() {
    // [MQTT-4.3.3-13]: the broker, as receiver, continues the QoS 2 sequence (PUBREL -> PUBCOMP) even after the
    // message's expiry passed.
    let mut h = harness();
    let publ = connected(&mut h, v5("late"));
    let mut message = publish_packet("x", "expiring", QoS::ExactlyOnce, 21);
    message.properties.message_expiry_interval = Some(1);
    h.send(publ, Packet::Publish(message));
    assert!(matches!(h.recv(publ), Some(Packet::PubRec(r)) if r.packet_id == 21));
    h.advance(Duration::from_secs(5));
    h.send(
        publ,
        Packet::PubRel(PubResponse {
            packet_id: 21,
            reason: ReasonCode(0),
            properties: Default::default(),
        }),
    );
    assert!(matches!(h.recv(publ), Some(Packet::PubComp(c)) if c.packet_id == 21 && c.reason == ReasonCode(0)));
}
