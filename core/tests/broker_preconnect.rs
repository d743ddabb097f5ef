//! What a connection may cost before its CONNACK: a small CONNECT limit, checked on the fixed header, and one
//! budget for the bytes of every connection not yet accepted (hostile clients that announce huge packets or hold
//! many half-sent CONNECTs).

mod common;

use bytes::BytesMut;
use common::*;
use mqtt_core::broker::Config;
use mqtt_core::codec::encode;
use mqtt_core::harness::Harness;
use mqtt_core::packet::*;

/// The fixed header and start of a v5 CONNECT that announces `remaining` bytes, followed by zeros.
fn huge_connect_start(remaining: usize) -> Vec<u8> {
    let mut header = vec![0x10];
    let mut len = remaining;
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        header.push(byte);
        if len == 0 {
            break;
        }
    }
    // Protocol name "MQTT", level 5: the start of a real CONNECT.
    header.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 5]);
    header.resize(header.len() + 32 * 1024, 0);
    header
}

#[test]
fn a_connect_announcing_200_mb_is_refused_on_its_header_not_buffered() {
    let mut h = harness();
    let conn = h.open();
    h.send_bytes(conn, &huge_connect_start(200 * 1024 * 1024));
    // The protocol level was readable, so the v5 client learns why: CONNACK 0x95 Packet too large.
    match h.recv(conn) {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ReasonCode::PACKET_TOO_LARGE),
        other => panic!("expected CONNACK 0x95, got {other:?}"),
    }
    assert!(
        h.is_closed(conn),
        "a CONNECT beyond max_connect_size closes the connection"
    );
    assert_eq!(h.broker.preconnect_bytes(), 0, "nothing of it stays buffered");
}

#[test]
fn a_connect_with_a_modest_will_fits_and_the_limit_is_lifted_after_connack() {
    let mut h = harness();
    let mut connect = v5("with-will");
    connect.will = Some(Will {
        topic: "status/with-will".into(),
        payload: vec![b'w'; 32 * 1024].into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    let (publisher, _) = connect_ok(&mut h, connect);
    let subscriber = connected(&mut h, v5("sub"));
    subscribe(&mut h, subscriber, "big", QoS::AtMostOnce);
    // After CONNACK the full Maximum Packet Size applies [MQTT-3.2.2-15]: a 1 MiB PUBLISH is accepted.
    let payload = "x".repeat(1024 * 1024);
    publish(&mut h, publisher, "big", &payload, QoS::AtMostOnce, 0);
    assert!(!h.is_closed(publisher));
    assert_eq!(payloads(&publishes(&mut h, subscriber)), vec![payload]);
}

#[test]
fn the_connection_that_exceeds_the_preconnect_budget_is_closed_and_others_keep_their_service() {
    let config = Config {
        max_preconnect_bytes: 80 * 1024,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let established = connected(&mut h, v5("established"));
    subscribe(&mut h, established, "t", QoS::AtMostOnce);
    // Each half-sent CONNECT announces 60 KiB (within max_connect_size) and sends 33 KiB of it.
    let first = h.open();
    h.send_bytes(first, &huge_connect_start(60 * 1024));
    let second = h.open();
    h.send_bytes(second, &huge_connect_start(60 * 1024));
    assert!(!h.is_closed(first));
    assert!(!h.is_closed(second), "66 KiB in all is within the 80 KiB budget");
    let third = h.open();
    h.send_bytes(third, &huge_connect_start(60 * 1024));
    assert!(
        h.is_closed(third),
        "the connection that took the total over the budget is closed"
    );
    assert!(!h.is_closed(first) && !h.is_closed(second));
    assert_eq!(h.broker.stats().preconnect_budget_closes, 1);
    // The connected client is untouched.
    publish(&mut h, established, "t", "still served", QoS::AtMostOnce, 0);
    assert_eq!(payloads(&publishes(&mut h, established)), vec!["still served"]);
    // Closing a half-open connection returns its bytes to the budget.
    h.drop_connection(first);
    let fourth = h.open();
    h.send_bytes(fourth, &huge_connect_start(60 * 1024));
    assert!(!h.is_closed(fourth));
}

#[test]
fn an_accepted_connection_no_longer_counts_against_the_budget() {
    let config = Config {
        max_preconnect_bytes: 16 * 1024,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let mut bytes = BytesMut::new();
    encode(&Packet::Connect(Box::new(v5("a"))), ProtocolVersion::V5, &mut bytes).unwrap();
    let conn = h.open();
    h.send_bytes(conn, &bytes);
    assert!(matches!(h.recv(conn), Some(Packet::ConnAck(_))));
    assert_eq!(h.broker.preconnect_bytes(), 0);
    for _ in 0..4 {
        let other = h.open();
        h.send_bytes(other, &huge_connect_start(20 * 1024)[..8 * 1024]);
        h.drop_connection(other);
    }
    assert_eq!(
        h.broker.preconnect_bytes(),
        0,
        "closed connections give their bytes back"
    );
}
