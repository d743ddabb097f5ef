//! CONNECT / CONNACK / DISCONNECT / keep alive / takeover rules, checked on the state machine alone.

mod common;

use common::*;
use mqtt_core::broker::Config;
use mqtt_core::harness::Harness;
use mqtt_core::packet::*;
use std::time::Duration;

#[test]
fn first_packet_not_connect_closes_connection_mqtt_3_1_0_1() {
    let mut h = harness();
    let conn = h.open();
    h.send(conn, Packet::PingReq);
    assert!(h.is_closed(conn));
    assert!(h.recv(conn).is_none(), "no CONNACK for a non-CONNECT first packet");
}

#[test]
fn second_connect_is_protocol_error_mqtt_3_1_0_2() {
    let mut h = harness();
    let conn = connected(&mut h, v5("a"));
    h.send(conn, Packet::Connect(Box::new(v5("a"))));
    expect_disconnect(&mut h, conn, ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn clean_start_gives_session_present_zero_mqtt_3_2_2_2() {
    let mut h = harness();
    let (_, connack) = connect_ok(&mut h, v5("a"));
    assert!(!connack.session_present);
}

#[test]
fn resumed_session_gives_session_present_one_mqtt_3_2_2_3() {
    let mut h = harness();
    let mut connect = v5("a");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(300);
    let (conn, first) = connect_ok(&mut h, connect.clone());
    assert!(!first.session_present);
    h.send(conn, Packet::Disconnect(Disconnect::default()));
    let (_, second) = connect_ok(&mut h, connect);
    assert!(second.session_present);
}

#[test]
fn v311_persistent_session_survives_disconnect_and_keeps_subscriptions_mqtt_3_1_2_4() {
    let mut h = harness();
    let mut connect = v311("sub");
    connect.clean_start = false;
    let conn = connected(&mut h, connect.clone());
    subscribe(&mut h, conn, "t", QoS::AtLeastOnce);
    h.send(conn, Packet::Disconnect(Disconnect::default()));
    let publisher = connected(&mut h, v311("pub"));
    publish(&mut h, publisher, "t", "while-offline", QoS::AtLeastOnce, 1);
    let (conn, connack) = connect_ok(&mut h, connect);
    assert!(connack.session_present);
    assert_eq!(payloads(&publishes(&mut h, conn)), vec!["while-offline"]);
}

#[test]
fn clean_session_discards_previous_session_mqtt_3_1_2_6() {
    let mut h = harness();
    let mut persistent = v311("c");
    persistent.clean_start = false;
    let conn = connected(&mut h, persistent);
    subscribe(&mut h, conn, "t", QoS::AtLeastOnce);
    h.send(conn, Packet::Disconnect(Disconnect::default()));
    let (conn, connack) = connect_ok(&mut h, v311("c"));
    assert!(!connack.session_present);
    let publisher = connected(&mut h, v311("p"));
    publish(&mut h, publisher, "t", "x", QoS::AtLeastOnce, 1);
    assert!(publishes(&mut h, conn).is_empty(), "old subscription must be gone");
}

#[test]
fn session_expiry_zero_ends_session_at_disconnect_mqtt_3_1_2_23() {
    let mut h = harness();
    let mut connect = v5("a");
    connect.clean_start = false;
    let conn = connected(&mut h, connect.clone());
    h.drop_connection(conn);
    let (_, connack) = connect_ok(&mut h, connect);
    assert!(!connack.session_present);
}

/// The session is discarded once its connection is closed and the Session Expiry Interval has passed [MQTT-4.1.0-2].
#[test]
fn session_expires_after_its_interval() {
    let mut h = harness();
    let mut connect = v5("a");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(10);
    let conn = connected(&mut h, connect.clone());
    h.drop_connection(conn);
    h.advance(Duration::from_secs(9));
    assert_eq!(h.broker.session_count(), 1);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.broker.session_count(), 0);
    let (_, connack) = connect_ok(&mut h, connect);
    assert!(!connack.session_present);
}

#[test]
fn disconnect_cannot_set_expiry_when_connect_had_zero_mqtt_3_14_2_2() {
    let mut h = harness();
    let conn = connected(&mut h, v5("a"));
    let mut disconnect = Disconnect::default();
    disconnect.properties.session_expiry_interval = Some(60);
    h.send(conn, Packet::Disconnect(disconnect));
    expect_disconnect(&mut h, conn, ReasonCode::PROTOCOL_ERROR);
}

/// A zero-length ClientID gets a unique one, returned as Assigned Client Identifier [MQTT-3.1.3-6], [MQTT-3.1.3-7].
#[test]
fn empty_client_id_gets_assigned_identifier_mqtt_3_2_2_16() {
    let mut h = harness();
    let (_, connack) = connect_ok(&mut h, v5(""));
    let assigned = connack
        .properties
        .assigned_client_identifier
        .clone()
        .expect("assigned id");
    assert!(!assigned.is_empty());
    let (_, other) = connect_ok(&mut h, v5(""));
    assert_ne!(
        other.properties.assigned_client_identifier,
        Some(assigned),
        "ids are unique"
    );
}

#[test]
fn assigned_identifiers_are_deterministic_for_a_seed() {
    let ids = |seed| {
        let mut h = Harness::with_broker(mqtt_core::broker::Broker::new(Config::default(), seed));
        let (_, connack) = connect_ok(&mut h, v5(""));
        connack.properties.assigned_client_identifier.clone()
    };
    assert_eq!(ids(7), ids(7));
    assert_ne!(ids(7), ids(8));
}

#[test]
fn v311_empty_client_id_without_clean_session_is_rejected_mqtt_3_1_3_8() {
    let mut h = harness();
    let mut connect = v311("");
    connect.clean_start = false;
    let (conn, answer) = h.connect(connect);
    match answer {
        Some(Packet::ConnAck(connack)) => assert_eq!(connack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert!(h.is_closed(conn));
}

#[test]
fn takeover_disconnects_existing_client_with_0x8e_mqtt_3_1_4_3() {
    let mut h = harness();
    let first = connected(&mut h, v5("same"));
    let second = connected(&mut h, v5("same"));
    expect_disconnect(&mut h, first, ReasonCode::SESSION_TAKEN_OVER);
    assert!(!h.is_closed(second));
    h.send(second, Packet::PingReq);
    assert_eq!(h.recv(second), Some(Packet::PingResp));
}

/// A second connection with the same ClientId closes the first [MQTT-3.1.4-2] (3.1.1).
#[test]
fn takeover_of_v311_client_closes_without_disconnect_packet() {
    let mut h = harness();
    let first = connected(&mut h, v311("same"));
    connected(&mut h, v311("same"));
    assert!(h.is_closed(first));
    assert!(h.recv_all(first).is_empty(), "3.1.1 has no server DISCONNECT");
}

/// Without a Server Keep Alive the client's own Keep Alive is the one enforced [MQTT-3.2.2-22].
#[test]
fn keep_alive_timeout_after_one_and_a_half_times_mqtt_3_1_2_22() {
    let mut h = harness();
    let mut connect = v5("a");
    connect.keep_alive = 10;
    let conn = connected(&mut h, connect);
    h.advance(Duration::from_millis(14_900));
    assert!(!h.is_closed(conn));
    h.advance(Duration::from_millis(200));
    expect_disconnect(&mut h, conn, ReasonCode::KEEP_ALIVE_TIMEOUT);
}

#[test]
fn traffic_resets_keep_alive() {
    let mut h = harness();
    let mut connect = v5("a");
    connect.keep_alive = 10;
    let conn = connected(&mut h, connect);
    for _ in 0..5 {
        h.advance(Duration::from_secs(10));
        h.send(conn, Packet::PingReq);
        assert_eq!(h.recv(conn), Some(Packet::PingResp), "PINGRESP [MQTT-3.12.4-1]");
    }
    assert!(!h.is_closed(conn));
}

#[test]
fn server_keep_alive_caps_client_value_mqtt_3_2_2_21() {
    let config = Config {
        max_keep_alive: 30,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let mut connect = v5("a");
    connect.keep_alive = 0;
    let (conn, connack) = connect_ok(&mut h, connect);
    assert_eq!(connack.properties.server_keep_alive, Some(30));
    h.advance(Duration::from_secs(46));
    expect_disconnect(&mut h, conn, ReasonCode::KEEP_ALIVE_TIMEOUT);
}

#[test]
fn connect_timeout_closes_silent_connection() {
    let mut h = harness();
    let conn = h.open();
    h.advance(Duration::from_secs(11));
    assert!(h.is_closed(conn));
}

/// A server without QoS 2 says so with Maximum QoS in the CONNACK [MQTT-3.2.2-9].
#[test]
fn connack_advertises_limits_to_v5_clients() {
    let config = Config {
        receive_maximum: 10,
        max_packet_size: 1000,
        max_topic_alias: 5,
        maximum_qos: 1,
        retain_available: false,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let (_, connack) = connect_ok(&mut h, v5("a"));
    let p = connack.properties;
    assert_eq!(p.receive_maximum, Some(10));
    assert_eq!(p.maximum_packet_size, Some(1000));
    assert_eq!(p.topic_alias_maximum, Some(5));
    assert_eq!(p.maximum_qos, Some(1));
    assert_eq!(p.retain_available, Some(0));
}

#[test]
fn connection_limit_answers_server_busy() {
    let config = Config {
        max_connections: 1,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    connected(&mut h, v5("a"));
    let (conn, answer) = h.connect(v5("b"));
    match answer {
        Some(Packet::ConnAck(connack)) => assert_eq!(connack.reason, ReasonCode::SERVER_BUSY),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert!(h.is_closed(conn));
}

#[test]
fn shutdown_sends_server_shutting_down_to_v5_clients() {
    let mut h = harness();
    let a = connected(&mut h, v5("a"));
    let b = connected(&mut h, v311("b"));
    h.input(mqtt_core::broker::Input::Shutdown);
    expect_disconnect(&mut h, a, ReasonCode::SERVER_SHUTTING_DOWN);
    assert!(h.is_closed(b));
}

#[test]
fn packet_too_large_gets_0x95_mqtt_3_2_2_15() {
    let config = Config {
        max_packet_size: 100,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let conn = connected(&mut h, v5("a"));
    publish(&mut h, conn, "t", &"x".repeat(200), QoS::AtMostOnce, 0);
    expect_disconnect(&mut h, conn, ReasonCode::PACKET_TOO_LARGE);
}

#[test]
fn malformed_packet_gets_0x81_and_other_clients_are_unharmed() {
    let mut h = harness();
    let bad = connected(&mut h, v5("bad"));
    let good = connected(&mut h, v5("good"));
    subscribe(&mut h, good, "t", QoS::AtMostOnce);
    // PUBLISH with QoS 3 [MQTT-3.3.1-4].
    h.send_bytes(bad, &[0x36, 0x03, 0x00, 0x01, b't']);
    expect_disconnect(&mut h, bad, ReasonCode::MALFORMED_PACKET);
    let publisher = connected(&mut h, v5("p"));
    publish(&mut h, publisher, "t", "still-fine", QoS::AtMostOnce, 0);
    assert_eq!(payloads(&publishes(&mut h, good)), vec!["still-fine"]);
}

#[test]
fn unsupported_protocol_level_is_refused_and_closed_mqtt_3_1_2_2() {
    let mut h = harness();
    let conn = h.open();
    // CONNECT, protocol name "MQTT", level 6.
    h.send_bytes(
        conn,
        &[0x10, 0x0D, 0, 4, b'M', b'Q', b'T', b'T', 6, 0x02, 0, 60, 0, 1, b'a'],
    );
    assert!(h.is_closed(conn));
}

#[test]
fn response_information_is_returned_only_when_requested_mqtt_3_1_2_28() {
    let mut h = harness();
    let (_, plain) = connect_ok(&mut h, v5("a"));
    assert_eq!(plain.properties.response_information, None);
    let mut asking = v5("b");
    asking.properties.request_response_information = Some(1);
    let (_, connack) = connect_ok(&mut h, asking);
    assert_eq!(connack.properties.response_information.as_deref(), Some("response/b/"));
}

#[test]
fn server_disconnect_carries_a_reason_string() {
    let mut h = harness();
    let mut connect = v5("a");
    connect.keep_alive = 1;
    let conn = connected(&mut h, connect);
    h.advance(Duration::from_secs(2));
    let packets = h.recv_all(conn);
    let reason_string = packets.iter().find_map(|p| match p {
        Packet::Disconnect(d) => d.properties.reason_string.clone(),
        _ => None,
    });
    assert_eq!(reason_string.as_deref(), Some("keep alive timeout"));
}
