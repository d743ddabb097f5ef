//! Single statements of MQTT 5.0 that no broader test pins down, one test each, named after what they prove and
//! citing the statement (see CONFORMANCE.md).

mod common;

use common::*;
use mqtt_core::packet::*;

fn unsubscribe(h: &mut mqtt_core::harness::Harness, conn: mqtt_core::broker::ConnectionId, id: u16, filters: &[&str]) {
    h.send(
        conn,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: id,
            properties: Default::default(),
            filters: filters.iter().map(|f| f.to_string()).collect(),
        }),
    );
}

#[test]
fn unsubscribe_of_an_unknown_filter_still_gets_an_unsuback_with_its_packet_id() {
    // [MQTT-3.10.4-4], [MQTT-3.10.4-5]; 0x11 No subscription existed is an UNSUBACK reason code [MQTT-3.11.3-2].
    let mut h = harness();
    let conn = connected(&mut h, v5("a"));
    unsubscribe(&mut h, conn, 77, &["never/subscribed"]);
    match h.recv(conn) {
        Some(Packet::UnsubAck(ack)) => {
            assert_eq!(ack.packet_id, 77, "[MQTT-3.10.4-5]");
            assert_eq!(ack.reasons, vec![ReasonCode::NO_SUBSCRIPTION_EXISTED]);
        }
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
}

#[test]
fn unsubscribe_with_several_filters_is_answered_by_one_unsuback() {
    // [MQTT-3.10.4-6]; the filter is compared as a string, wildcards included [MQTT-3.10.4-1].
    let mut h = harness();
    let conn = connected(&mut h, v5("a"));
    subscribe(&mut h, conn, "a/+", QoS::AtMostOnce);
    subscribe(&mut h, conn, "b/#", QoS::AtMostOnce);
    unsubscribe(&mut h, conn, 3, &["a/+", "a/x", "b/#"]);
    let answers = h.recv_all(conn);
    assert_eq!(answers.len(), 1, "one UNSUBACK for three filters: {answers:?}");
    match &answers[0] {
        Packet::UnsubAck(ack) => assert_eq!(
            ack.reasons,
            vec![
                ReasonCode::SUCCESS,
                ReasonCode::NO_SUBSCRIPTION_EXISTED,
                ReasonCode::SUCCESS
            ]
        ),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "a/x", "gone", QoS::AtMostOnce, 0);
    assert!(
        publishes(&mut h, conn).is_empty(),
        "the deleted subscription delivers nothing"
    );
}

#[test]
fn a_zero_byte_retained_message_is_not_stored() {
    // [MQTT-3.3.1-7]: and it removes what was retained [MQTT-3.3.1-6].
    let mut h = harness();
    let publisher = connected(&mut h, v5("pub"));
    retain(&mut h, publisher, "r", "kept");
    retain(&mut h, publisher, "r", "");
    retain(&mut h, publisher, "s", "");
    assert_eq!(h.broker.gauges().retained_messages, 0);
    let late = connected(&mut h, v5("late"));
    subscribe(&mut h, late, "#", QoS::AtMostOnce);
    assert!(publishes(&mut h, late).is_empty());
}

#[test]
fn a_will_without_will_retain_is_published_as_a_non_retained_message() {
    // [MQTT-3.1.2-14], after an abnormal end [MQTT-3.1.2-8].
    let mut h = harness();
    let watcher = connected(&mut h, v5("w"));
    subscribe_with(
        &mut h,
        watcher,
        "wills",
        SubscriptionOptions {
            retain_as_published: true,
            ..Default::default()
        },
    );
    let client = connected(&mut h, with_will(v5("c"), "wills", "gone", QoS::AtMostOnce, None));
    h.drop_connection(client);
    let got = publishes(&mut h, watcher);
    assert_eq!(payloads(&got), vec!["gone"]);
    assert!(!got[0].retain);
    let late = connected(&mut h, v5("late"));
    subscribe(&mut h, late, "wills", QoS::AtMostOnce);
    assert!(publishes(&mut h, late).is_empty(), "nothing was retained");
}

#[test]
fn a_second_connect_gets_no_second_connack() {
    // [MQTT-3.2.0-2]; the second CONNECT is a Protocol Error [MQTT-3.1.0-2].
    let mut h = harness();
    let conn = connected(&mut h, v5("a"));
    h.send(conn, Packet::Connect(Box::new(v5("a"))));
    let answers = h.recv_all(conn);
    assert!(!answers.iter().any(|p| matches!(p, Packet::ConnAck(_))), "{answers:?}");
    assert!(h.is_closed(conn));
}

#[test]
fn qos0_goes_out_with_dup_0_and_no_packet_identifier() {
    // [MQTT-4.3.1-1], [MQTT-3.3.1-2], [MQTT-2.2.1-2]; the DUP of the incoming PUBLISH is not carried over [MQTT-3.3.1-3].
    let mut h = harness();
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "t", QoS::ExactlyOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", "zero", QoS::AtMostOnce, 0);
    let mut resent = publish_packet("t", "one", QoS::AtLeastOnce, 5);
    resent.dup = true;
    h.send(publisher, Packet::Publish(resent));
    let got = publishes(&mut h, sub);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].qos, got[0].dup, got[0].packet_id), (QoS::AtMostOnce, false, 0));
    assert_eq!(
        (got[1].qos, got[1].dup),
        (QoS::AtLeastOnce, false),
        "a first delivery is not a resend"
    );
}

#[test]
fn the_server_gives_each_unacknowledged_publish_its_own_non_zero_packet_identifier() {
    // [MQTT-2.2.1-4], [MQTT-4.3.2-1], [MQTT-4.3.3-1]; the ones unacknowledged stay taken [MQTT-4.3.2-3].
    let mut h = harness();
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "t", QoS::ExactlyOnce);
    let publisher = connected(&mut h, v5("pub"));
    for (i, qos) in [QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        publish(&mut h, publisher, "t", "m", qos, i as u16 + 1);
    }
    let got = publishes(&mut h, sub);
    let mut ids: Vec<u16> = got.iter().map(|p| p.packet_id).collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.iter().all(|&id| id != 0));
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "identifiers in use are not reused: {got:?}");
}

#[test]
fn a_full_receive_window_holds_back_only_publishes() {
    // [MQTT-4.9.0-2], [MQTT-3.3.4-9]; PINGREQ and SUBSCRIBE are still answered [MQTT-4.9.0-3], [MQTT-3.3.4-10].
    let mut h = harness();
    let mut connect = v5("sub");
    connect.properties.receive_maximum = Some(1);
    let sub = connected(&mut h, connect);
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", "1", QoS::AtLeastOnce, 1);
    publish(&mut h, publisher, "t", "2", QoS::AtLeastOnce, 2);
    let first = publishes(&mut h, sub);
    assert_eq!(payloads(&first), vec!["1"]);
    h.send(sub, Packet::PingReq);
    assert_eq!(h.recv(sub), Some(Packet::PingResp));
    subscribe(&mut h, sub, "other", QoS::AtMostOnce);
    h.send(
        sub,
        Packet::PubAck(PubResponse::new(first[0].packet_id, ReasonCode::SUCCESS)),
    );
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["2"]);
}

fn persistent(client_id: &str) -> Connect {
    let mut connect = v5(client_id);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(600);
    connect
}

#[test]
fn a_session_is_found_by_its_client_id_and_resumed_with_what_arrived_meanwhile() {
    // [MQTT-3.1.3-2], [MQTT-3.1.2-5], [MQTT-3.1.4-4]; the message went into the offline session [MQTT-4.5.0-1].
    let mut h = harness();
    let conn = connected(&mut h, persistent("keeper"));
    let suback = subscribe(&mut h, conn, "t", QoS::AtLeastOnce);
    assert_eq!(
        suback.reasons,
        vec![ReasonCode::GRANTED_QOS_1],
        "SUBACK answers SUBSCRIBE [MQTT-3.8.4-1]"
    );
    h.send(conn, Packet::Disconnect(Disconnect::default()));
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", "meanwhile", QoS::AtLeastOnce, 1);
    let (conn, connack) = connect_ok(&mut h, persistent("keeper"));
    assert!(connack.session_present);
    assert_eq!(payloads(&publishes(&mut h, conn)), vec!["meanwhile"]);
}

#[test]
fn disconnect_0x00_discards_the_will() {
    // [MQTT-3.14.4-3], [MQTT-3.1.2-10].
    let mut h = harness();
    let watcher = connected(&mut h, v5("w"));
    subscribe(&mut h, watcher, "wills", QoS::AtMostOnce);
    let client = connected(&mut h, with_will(v5("c"), "wills", "gone", QoS::AtMostOnce, None));
    h.send(client, Packet::Disconnect(Disconnect::default()));
    h.drop_connection(client);
    assert!(publishes(&mut h, watcher).is_empty());
}

#[test]
fn topic_aliases_stay_within_the_client_maximum_and_are_not_sent_without_one() {
    // [MQTT-3.1.2-26], [MQTT-3.3.2-11]: at most the client's Topic Alias Maximum; [MQTT-3.1.2-27]: none without.
    let mut h = harness();
    let mut connect = v5("aliased");
    connect.properties.topic_alias_maximum = Some(1);
    let aliased = connected(&mut h, connect);
    let plain = connected(&mut h, v5("plain"));
    for conn in [aliased, plain] {
        subscribe(&mut h, conn, "t/#", QoS::AtMostOnce);
    }
    let publisher = connected(&mut h, v5("pub"));
    for topic in ["t/a", "t/b", "t/a", "t/b", "t/c"] {
        publish(&mut h, publisher, topic, "m", QoS::AtMostOnce, 0);
    }
    let got = publishes(&mut h, aliased);
    assert_eq!(got.len(), 5);
    assert!(
        got.iter().all(|p| p.properties.topic_alias.unwrap_or(1) == 1),
        "{got:?}"
    );
    assert!(
        got.iter().any(|p| p.properties.topic_alias == Some(1)),
        "the one alias is used"
    );
    assert!(publishes(&mut h, plain)
        .iter()
        .all(|p| p.properties.topic_alias.is_none()));
}

#[test]
fn a_message_too_large_for_the_client_is_not_sent_to_it() {
    // [MQTT-3.1.2-24], [MQTT-3.1.2-25].
    let mut h = harness();
    let mut connect = v5("small");
    connect.properties.maximum_packet_size = Some(64);
    let small = connected(&mut h, connect);
    subscribe(&mut h, small, "t", QoS::AtMostOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", &"x".repeat(200), QoS::AtMostOnce, 0);
    publish(&mut h, publisher, "t", "fits", QoS::AtMostOnce, 0);
    assert_eq!(payloads(&publishes(&mut h, small)), vec!["fits"]);
}

#[test]
fn no_auth_packet_and_no_authentication_method_without_one_in_the_connect() {
    // [MQTT-4.12.0-6].
    let mut h = harness();
    let (conn, connack) = connect_ok(&mut h, v5("plain"));
    assert_eq!(connack.properties.authentication_method, None);
    h.send(conn, Packet::PingReq);
    assert_eq!(h.recv_all(conn), vec![Packet::PingResp]);
}

#[test]
fn qos1_packet_identifier_reused_after_puback_is_a_new_message() {
    // [MQTT-4.3.2-5], with the PUBACK carrying the PUBLISH's identifier [MQTT-4.3.2-4].
    let mut h = harness();
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "t", QoS::AtMostOnce);
    let publisher = connected(&mut h, v5("pub"));
    for payload in ["first", "second"] {
        publish(&mut h, publisher, "t", payload, QoS::AtLeastOnce, 9);
        assert!(matches!(h.recv(publisher), Some(Packet::PubAck(a)) if a.packet_id == 9));
    }
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["first", "second"]);
}

#[test]
fn qos2_duplicates_before_pubrel_are_acknowledged_not_delivered_and_after_pubcomp_the_id_is_new() {
    // [MQTT-4.3.3-10], [MQTT-4.3.3-8], [MQTT-4.3.3-11], [MQTT-4.3.3-12].
    let mut h = harness();
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "t", QoS::AtMostOnce);
    let publisher = connected(&mut h, v5("pub"));
    for _ in 0..2 {
        publish(&mut h, publisher, "t", "once", QoS::ExactlyOnce, 4);
        assert!(matches!(h.recv(publisher), Some(Packet::PubRec(r)) if r.packet_id == 4));
    }
    h.send(publisher, Packet::PubRel(PubResponse::new(4, ReasonCode::SUCCESS)));
    assert!(matches!(h.recv(publisher), Some(Packet::PubComp(c)) if c.packet_id == 4));
    publish(&mut h, publisher, "t", "again", QoS::ExactlyOnce, 4);
    assert!(matches!(h.recv(publisher), Some(Packet::PubRec(r)) if r.packet_id == 4));
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["once", "again"]);
}

#[test]
fn a_server_limited_to_qos1_grants_qos1_to_a_qos2_subscribe_and_refuses_a_qos2_will() {
    // [MQTT-3.2.2-10]: SUBSCRIBE with QoS 2 is still accepted; [MQTT-3.2.2-12]: a Will QoS above it is refused (0x9B).
    let mut h = mqtt_core::harness::Harness::new(mqtt_core::broker::Config {
        maximum_qos: 1,
        ..mqtt_core::broker::Config::default()
    });
    let conn = connected(&mut h, v5("sub"));
    assert_eq!(
        subscribe(&mut h, conn, "t", QoS::ExactlyOnce).reasons,
        vec![ReasonCode::GRANTED_QOS_1]
    );
    let mut connect = v5("will2");
    connect.will = Some(Will {
        topic: "w".into(),
        payload: bytes::Bytes::from_static(b"x"),
        qos: QoS::ExactlyOnce,
        ..Default::default()
    });
    let (conn, answer) = h.connect(connect);
    assert!(matches!(answer, Some(Packet::ConnAck(a)) if a.reason == ReasonCode::QOS_NOT_SUPPORTED));
    assert!(h.is_closed(conn));
}

#[test]
fn a_server_without_retain_refuses_a_retained_will() {
    // [MQTT-3.2.2-13]: CONNACK 0x9A and close.
    let mut h = mqtt_core::harness::Harness::new(mqtt_core::broker::Config {
        retain_available: false,
        ..mqtt_core::broker::Config::default()
    });
    let mut connect = v5("retained-will");
    connect.will = Some(Will {
        topic: "w".into(),
        payload: bytes::Bytes::from_static(b"x"),
        retain: true,
        ..Default::default()
    });
    let (conn, answer) = h.connect(connect);
    assert!(matches!(answer, Some(Packet::ConnAck(a)) if a.reason == ReasonCode::RETAIN_NOT_SUPPORTED));
    assert!(h.is_closed(conn));
}

#[test]
fn topics_are_matched_as_written_without_normalization_or_stripping() {
    // [MQTT-4.7.3-4]: a composed and a decomposed "é" are different topics; [MQTT-1.5.4-3]: a leading U+FEFF stays.
    let mut h = harness();
    let composed = connected(&mut h, v5("composed"));
    subscribe(&mut h, composed, "caf\u{e9}", QoS::AtMostOnce);
    let bom = connected(&mut h, v5("bom"));
    subscribe(&mut h, bom, "\u{feff}t", QoS::AtMostOnce);
    let plain = connected(&mut h, v5("plain"));
    subscribe(&mut h, plain, "t", QoS::AtMostOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "cafe\u{301}", "decomposed", QoS::AtMostOnce, 0);
    publish(&mut h, publisher, "\u{feff}t", "with bom", QoS::AtMostOnce, 0);
    assert!(publishes(&mut h, composed).is_empty());
    let got = publishes(&mut h, bom);
    assert_eq!(payloads(&got), vec!["with bom"]);
    assert_eq!(got[0].topic, "\u{feff}t");
    assert!(publishes(&mut h, plain).is_empty());
}

fn small_client(client_id: &str, maximum_packet_size: u32) -> Connect {
    let mut connect = v5(client_id);
    connect.properties.maximum_packet_size = Some(maximum_packet_size);
    connect
}

#[test]
fn a_refusing_connack_drops_its_reason_string_when_the_client_could_not_take_it() {
    // [MQTT-3.2.2-19], [MQTT-3.2.2-20]; the refusal itself still arrives and the connection closes [MQTT-3.2.2-7].
    let mut h = mqtt_core::harness::Harness::new(mqtt_core::broker::Config {
        max_connections: 1,
        ..mqtt_core::broker::Config::default()
    });
    connected(&mut h, v5("first"));
    let (conn, answer) = h.connect(v5("roomy"));
    assert!(matches!(&answer, Some(Packet::ConnAck(a)) if a.properties.reason_string.is_some()));
    assert!(h.is_closed(conn));
    let (conn, answer) = h.connect(small_client("small", 8));
    match answer {
        Some(Packet::ConnAck(a)) => {
            assert_eq!(a.reason, ReasonCode::SERVER_BUSY);
            assert_eq!(a.properties.reason_string, None);
            assert!(a.properties.user_properties.is_empty());
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert!(h.is_closed(conn));
}

#[test]
fn a_server_disconnect_drops_its_reason_string_when_the_client_could_not_take_it() {
    // [MQTT-3.14.2-3], [MQTT-3.14.2-4]; after its DISCONNECT the server closes [MQTT-3.14.4-2] and sends nothing
    // more [MQTT-3.14.4-1].
    let mut h = harness();
    let (probe, connack) = connect_ok(&mut h, v5("probe"));
    let connack_len = mqtt_core::codec::encoded_len(&Packet::ConnAck(connack), ProtocolVersion::V5) as u32;
    h.send(probe, Packet::Connect(Box::new(v5("probe"))));
    let told = h.recv_all(probe);
    assert!(
        matches!(told.as_slice(), [Packet::Disconnect(d)] if d.properties.reason_string.is_some()),
        "a client without a limit is told why: {told:?}"
    );
    let conn = connected(&mut h, small_client("small", connack_len));
    h.send(conn, Packet::Connect(Box::new(v5("small"))));
    let answers = h.recv_all(conn);
    match answers.as_slice() {
        [Packet::Disconnect(d)] => {
            assert_eq!(d.reason, ReasonCode::PROTOCOL_ERROR);
            assert_eq!(d.properties.reason_string, None);
        }
        other => panic!("expected exactly one DISCONNECT, got {other:?}"),
    }
    assert!(h.is_closed(conn));
}

#[test]
fn acknowledgements_to_a_small_client_carry_no_reason_string_or_user_properties() {
    // PUBACK [MQTT-3.4.2-2], [MQTT-3.4.2-3]; PUBREC [MQTT-3.5.2-2], [MQTT-3.5.2-3]; PUBREL [MQTT-3.6.2-2],
    // [MQTT-3.6.2-3]; PUBCOMP [MQTT-3.7.2-2], [MQTT-3.7.2-3]; SUBACK [MQTT-3.9.2-1], [MQTT-3.9.2-2]; UNSUBACK
    // [MQTT-3.11.2-1], [MQTT-3.11.2-2]: a client with a small Maximum Packet Size still gets every acknowledgement.
    let mut h = harness();
    let small = connected(&mut h, small_client("small", 16));
    subscribe(&mut h, small, "t", QoS::ExactlyOnce);
    publish(&mut h, small, "u", "1", QoS::AtLeastOnce, 1);
    publish(&mut h, small, "t", "2", QoS::ExactlyOnce, 2);
    h.send(small, Packet::PubRel(PubResponse::new(2, ReasonCode::SUCCESS)));
    unsubscribe(&mut h, small, 3, &["nothing"]);
    let mut received = h.recv_all(small);
    let delivered: Vec<u16> = received
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.packet_id),
            _ => None,
        })
        .collect();
    assert_eq!(delivered.len(), 1, "its own QoS 2 message comes back: {received:?}");
    h.send(
        small,
        Packet::PubRec(PubResponse::new(delivered[0], ReasonCode::SUCCESS)),
    );
    received.extend(h.recv_all(small));
    let mut kinds = Vec::new();
    for packet in &received {
        let properties = match packet {
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => &p.properties,
            Packet::UnsubAck(p) => &p.properties,
            Packet::SubAck(p) => &p.properties,
            _ => continue,
        };
        assert_eq!(properties.reason_string, None, "{packet:?}");
        assert!(properties.user_properties.is_empty(), "{packet:?}");
        kinds.push(std::mem::discriminant(packet));
    }
    kinds.sort_by_key(|k| format!("{k:?}"));
    kinds.dedup();
    assert_eq!(
        kinds.len(),
        5,
        "PUBACK, PUBREC, PUBREL, PUBCOMP and UNSUBACK: {received:?}"
    );
}

#[test]
fn client_identifiers_of_23_letters_and_digits_are_allowed_in_both_versions() {
    // [MQTT-3.1.3-5].
    let mut h = harness();
    let id = "abcdefghijklmnopqrsWXYZ";
    assert_eq!(id.len(), 23);
    connect_ok(&mut h, v5(id));
    connect_ok(&mut h, v311("0123456789ABCDEFGHIJklm"));
}

#[test]
fn subscribing_again_resends_the_retained_message_without_losing_others() {
    // [MQTT-3.8.4-4]: Retain Handling 0 re-sends retained messages when the subscription is replaced [MQTT-3.8.4-3].
    let mut h = harness();
    let publisher = connected(&mut h, v5("pub"));
    retain(&mut h, publisher, "r", "kept");
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "r", QoS::AtMostOnce);
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["kept"]);
    subscribe(&mut h, sub, "r", QoS::AtLeastOnce);
    publish(&mut h, publisher, "r", "live", QoS::AtMostOnce, 0);
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["kept", "live"]);
}

#[test]
fn unsubscribing_does_not_cancel_a_qos1_delivery_already_started() {
    // [MQTT-3.10.4-3]: the unacknowledged message is still resent on reconnect [MQTT-4.4.0-1].
    let mut h = harness();
    let sub = connected(&mut h, persistent("sub"));
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", "started", QoS::AtLeastOnce, 1);
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["started"]);
    unsubscribe(&mut h, sub, 2, &["t"]);
    assert!(matches!(h.recv(sub), Some(Packet::UnsubAck(_))));
    h.drop_connection(sub);
    let (sub, _) = connect_ok(&mut h, persistent("sub"));
    let resent = publishes(&mut h, sub);
    assert_eq!(payloads(&resent), vec!["started"]);
    assert!(resent[0].dup);
}

#[test]
fn a_publish_refused_by_the_client_is_not_resent() {
    // [MQTT-4.4.0-2]: a PUBACK of 0x80 or above acknowledges the message too.
    let mut h = harness();
    let sub = connected(&mut h, persistent("sub"));
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", "refused", QoS::AtLeastOnce, 1);
    let got = publishes(&mut h, sub);
    h.send(
        sub,
        Packet::PubAck(PubResponse::new(got[0].packet_id, ReasonCode::UNSPECIFIED_ERROR)),
    );
    h.drop_connection(sub);
    let (sub, _) = connect_ok(&mut h, persistent("sub"));
    assert!(publishes(&mut h, sub).is_empty());
}

#[test]
fn a_shared_subscription_member_gets_its_granted_qos_and_a_refusal_is_not_passed_on() {
    // [MQTT-4.8.2-3]: delivered at the member's granted QoS; [MQTT-4.8.2-6]: a PUBACK of 0x80 or above discards the
    // message, no other member gets it.
    let mut h = harness();
    let low = connected(&mut h, v5("low"));
    subscribe(&mut h, low, "$share/g/t", QoS::AtMostOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", "at most once", QoS::AtLeastOnce, 1);
    let got = publishes(&mut h, low);
    assert_eq!((got.len(), got[0].qos), (1, QoS::AtMostOnce));

    let mut h = harness();
    let first = connected(&mut h, v5("first"));
    let second = connected(&mut h, v5("second"));
    for member in [first, second] {
        subscribe(&mut h, member, "$share/g/t", QoS::AtLeastOnce);
    }
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", "m", QoS::AtLeastOnce, 1);
    let (taker, other) = {
        let a = publishes(&mut h, first);
        let b = publishes(&mut h, second);
        if a.is_empty() {
            ((second, b), first)
        } else {
            assert!(b.is_empty(), "one member per message");
            ((first, a), second)
        }
    };
    h.send(
        taker.0,
        Packet::PubAck(PubResponse::new(taker.1[0].packet_id, ReasonCode::UNSPECIFIED_ERROR)),
    );
    assert!(publishes(&mut h, other).is_empty());
    assert!(publishes(&mut h, taker.0).is_empty());
}

#[test]
fn no_disconnect_goes_out_before_a_successful_connack() {
    // [MQTT-3.14.0-1]: a refused CONNECT is answered with CONNACK only, and the connection closes [MQTT-4.13.2-1].
    let mut h = mqtt_core::harness::Harness::new(mqtt_core::broker::Config {
        max_connections: 1,
        ..mqtt_core::broker::Config::default()
    });
    connected(&mut h, v5("first"));
    let conn = h.open();
    h.send(conn, Packet::Connect(Box::new(v5("second"))));
    let answers = h.recv_all(conn);
    assert!(
        matches!(answers.as_slice(), [Packet::ConnAck(a)] if a.reason.0 >= 0x80),
        "{answers:?}"
    );
    assert!(h.is_closed(conn));
}
