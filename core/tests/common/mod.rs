//! Helpers shared by the broker tests: short ways to connect, subscribe and publish through the harness.
#![allow(dead_code)]

use bytes::Bytes;
use mqtt_core::broker::{Config, ConnectionId};
use mqtt_core::harness::{connect_packet, Harness};
use mqtt_core::packet::*;

pub fn harness() -> Harness {
    Harness::new(Config::default())
}

pub fn v5(client_id: &str) -> Connect {
    connect_packet(ProtocolVersion::V5, client_id)
}

pub fn v311(client_id: &str) -> Connect {
    connect_packet(ProtocolVersion::V3_1_1, client_id)
}

/// Connects and asserts a successful CONNACK; returns the connection and the CONNACK.
pub fn connect_ok(h: &mut Harness, connect: Connect) -> (ConnectionId, ConnAck) {
    let (conn, answer) = h.connect(connect);
    match answer {
        Some(Packet::ConnAck(connack)) if connack.reason == ReasonCode::SUCCESS => (conn, connack),
        other => panic!("expected successful CONNACK, got {other:?}"),
    }
}

pub fn connected(h: &mut Harness, connect: Connect) -> ConnectionId {
    connect_ok(h, connect).0
}

pub fn subscribe_with(h: &mut Harness, conn: ConnectionId, filter: &str, options: SubscriptionOptions) -> SubAck {
    subscribe_packet(h, conn, vec![(filter.to_string(), options)], Properties::default())
}

pub fn subscribe_packet(
    h: &mut Harness,
    conn: ConnectionId,
    filters: Vec<(String, SubscriptionOptions)>,
    properties: Properties,
) -> SubAck {
    h.send(
        conn,
        Packet::Subscribe(Subscribe {
            packet_id: 7,
            properties: properties.into(),
            filters,
        }),
    );
    match h.recv(conn) {
        Some(Packet::SubAck(suback)) => suback,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

pub fn subscribe(h: &mut Harness, conn: ConnectionId, filter: &str, qos: QoS) -> SubAck {
    let options = SubscriptionOptions {
        qos,
        ..Default::default()
    };
    subscribe_with(h, conn, filter, options)
}

pub fn publish_packet(topic: &str, payload: &str, qos: QoS, packet_id: u16) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.to_string(),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { packet_id },
        properties: Default::default(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

pub fn publish(h: &mut Harness, conn: ConnectionId, topic: &str, payload: &str, qos: QoS, packet_id: u16) {
    h.send(conn, Packet::Publish(publish_packet(topic, payload, qos, packet_id)));
}

pub fn retain(h: &mut Harness, conn: ConnectionId, topic: &str, payload: &str) {
    let mut packet = publish_packet(topic, payload, QoS::AtMostOnce, 0);
    packet.retain = true;
    h.send(conn, Packet::Publish(packet));
}

/// The PUBLISH packets among what the client received, dropping everything else.
pub fn publishes(h: &mut Harness, conn: ConnectionId) -> Vec<Publish> {
    h.recv_all(conn)
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(publish) => Some(publish),
            _ => None,
        })
        .collect()
}

pub fn payloads(publishes: &[Publish]) -> Vec<String> {
    publishes
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

/// Asserts the client got a DISCONNECT with `reason` and was closed.
pub fn expect_disconnect(h: &mut Harness, conn: ConnectionId, reason: ReasonCode) {
    let packets = h.recv_all(conn);
    let found = packets
        .iter()
        .any(|p| matches!(p, Packet::Disconnect(d) if d.reason == reason));
    assert!(found, "expected DISCONNECT {reason:?}, got {packets:?}");
    assert!(h.is_closed(conn), "connection should be closed");
}

/// `connect` with a will on `topic`, published `delay_seconds` after the connection ends (None: at once)
/// [MQTT-3.1.2-8], [MQTT-3.1.3-9].
pub fn with_will(mut connect: Connect, topic: &str, payload: &str, qos: QoS, delay_seconds: Option<u32>) -> Connect {
    let mut will = Will {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        ..Default::default()
    };
    will.properties.will_delay_interval = delay_seconds;
    connect.will = Some(will);
    connect
}
