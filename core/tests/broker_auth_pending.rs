//! Verdicts that come later: the authenticator answers `AuthDecision::Pending` (a password hash being verified
//! off the event loop) and the driver delivers the verdict with `Input::AuthDecided`. Meanwhile nothing the client
//! sent after its CONNECT is processed [MQTT-3.1.4-6]; afterwards everything happens as after an immediate verdict.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use mqtt_core::broker::{
    AuthDecision, Authenticator, Broker, Config, ConnectInfo, ConnectionId, Event, Input, ListenerId,
    MAX_BUFFERED_WHILE_VERIFYING,
};
use mqtt_core::codec;
use mqtt_core::harness::Harness;
use mqtt_core::packet::*;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// Defers every client with the user name "slow" (and records the connection it was asked about); lets everyone
/// else in at once.
struct DeferredAuth {
    asked: Rc<RefCell<Vec<ConnectionId>>>,
}

impl Authenticator for DeferredAuth {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        if info.username == Some("slow") {
            self.asked.borrow_mut().push(info.conn);
            AuthDecision::Pending
        } else {
            AuthDecision::Allow { data: None }
        }
    }
}

fn deferring_harness(config: Config) -> (Harness, Rc<RefCell<Vec<ConnectionId>>>) {
    let asked = Rc::new(RefCell::new(Vec::new()));
    let auth = DeferredAuth { asked: asked.clone() };
    (
        Harness::with_broker(Broker::with_authenticator(config, 1, Box::new(auth))),
        asked,
    )
}

fn slow(mut connect: Connect) -> Connect {
    connect.username = Some("slow".into());
    connect.password = Some(Bytes::from_static(b"pw"));
    connect
}

fn from_ip(last: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, last], 50000))
}

/// The bytes of several packets in one segment, as a client pipelining after its CONNECT sends them.
fn segment(version: ProtocolVersion, packets: &[Packet]) -> Vec<u8> {
    let mut bytes = BytesMut::new();
    for packet in packets {
        codec::encode(packet, version, &mut bytes).expect("test packets encode");
    }
    bytes.to_vec()
}

/// Opens a connection from `peer` and sends CONNECT followed by `pipelined`, all in one segment.
fn pipeline(h: &mut Harness, peer: SocketAddr, connect: Connect, pipelined: &[Packet]) -> ConnectionId {
    let conn = h.open_from(peer, ListenerId(0));
    let version = connect.protocol;
    // The CONNECT alone through the harness (it tells the client end its version), then the rest in one go.
    let mut packets = vec![Packet::Connect(Box::new(connect))];
    packets.extend_from_slice(pipelined);
    let bytes = segment(version, &packets);
    h.send(conn, packets.remove(0));
    h.send_bytes(conn, &bytes[bytes.len() - segment(version, &packets).len()..]);
    conn
}

fn decide(h: &mut Harness, conn: ConnectionId, decision: AuthDecision) {
    h.input(Input::AuthDecided { conn, decision });
}

fn allow() -> AuthDecision {
    AuthDecision::Allow { data: None }
}

#[test]
fn pipelined_subscribe_and_publish_wait_for_the_delayed_connack_mqtt_3_1_4_6() {
    let (mut h, asked) = deferring_harness(Config::default());
    let watcher = connected(&mut h, v5("watcher"));
    subscribe(&mut h, watcher, "t", QoS::AtLeastOnce);
    let pipelined = [
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Default::default(),
            filters: vec![(
                "t".into(),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..SubscriptionOptions::default()
                },
            )],
        }),
        Packet::Publish(publish_packet("t", "early", QoS::AtLeastOnce, 2)),
    ];
    let conn = pipeline(&mut h, from_ip(1), slow(v5("a")), &pipelined);
    assert_eq!(*asked.borrow(), [conn], "the authenticator is told the connection");
    // Nothing processed while the verdict is pending: no CONNACK, no SUBACK, no PUBACK, no delivery.
    h.advance(Duration::from_secs(1));
    assert!(h.recv_all(conn).is_empty());
    assert!(h.recv_all(watcher).is_empty());
    assert_eq!(h.broker.session_count(), 1, "no session attached yet");

    decide(&mut h, conn, allow());
    let answers = h.recv_all(conn);
    assert!(
        matches!(&answers[0], Packet::ConnAck(c) if c.reason == ReasonCode::SUCCESS),
        "CONNACK first: {answers:?}"
    );
    assert!(matches!(&answers[1], Packet::SubAck(s) if s.packet_id == 1));
    assert!(answers
        .iter()
        .any(|p| matches!(p, Packet::PubAck(a) if a.packet_id == 2)));
    assert!(answers
        .iter()
        .any(|p| matches!(p, Packet::Publish(p) if p.payload.as_ref() == b"early")));
    assert_eq!(payloads(&publishes(&mut h, watcher)), ["early"]);
    // The connection works on as any other.
    h.send(conn, Packet::PingReq);
    assert_eq!(h.recv(conn), Some(Packet::PingResp));
}

#[test]
fn denied_delayed_verdict_refuses_like_an_immediate_one_and_processes_nothing_after_connect() {
    let (mut h, _) = deferring_harness(Config::default());
    let watcher = connected(&mut h, v5("watcher"));
    subscribe(&mut h, watcher, "t", QoS::AtMostOnce);
    let pipelined = [Packet::Publish(publish_packet("t", "never", QoS::AtMostOnce, 0))];

    // MQTT 5: 0x86 in the CONNACK, then closed [MQTT-3.2.2-7].
    let conn = pipeline(&mut h, from_ip(1), slow(v5("a")), &pipelined);
    decide(&mut h, conn, AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD));
    let answers = h.recv_all(conn);
    assert!(
        matches!(&answers[..], [Packet::ConnAck(c)] if c.reason == ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        "{answers:?}"
    );
    assert!(h.is_closed(conn));
    // 3.1.1: return code 5 (0x87 Not authorized); another address, so no slow-down.
    let old = pipeline(&mut h, from_ip(2), slow(v311("b")), &pipelined);
    decide(&mut h, old, AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED));
    assert!(matches!(h.recv(old), Some(Packet::ConnAck(c)) if c.reason == ReasonCode::NOT_AUTHORIZED));
    assert!(h.is_closed(old) && h.recv(old).is_none());
    assert!(
        h.recv_all(watcher).is_empty(),
        "the pipelined PUBLISH was never processed"
    );

    // The guessing slow-down applies as after an immediate denial: the second failure from 192.0.2.1 is held.
    let again = pipeline(&mut h, from_ip(1), slow(v311("c")), &pipelined);
    decide(&mut h, again, AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD));
    assert!(h.recv(again).is_none() && !h.is_closed(again), "refusal held");
    h.advance(Duration::from_millis(Config::default().auth_failure_delay_ms));
    assert!(matches!(h.recv(again), Some(Packet::ConnAck(c)) if c.reason == ReasonCode::BAD_USER_NAME_OR_PASSWORD));
    assert!(h.is_closed(again));
    let delays: Vec<u64> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::AuthenticationFailed { delay_ms, .. } => Some(*delay_ms),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [0, 0, Config::default().auth_failure_delay_ms]);
    assert!(h.recv_all(watcher).is_empty());
}

#[test]
fn verdict_after_the_client_closed_is_ignored() {
    let (mut h, _) = deferring_harness(Config::default());
    let conn = pipeline(&mut h, from_ip(1), slow(v5("a")), &[]);
    h.drop_connection(conn);
    decide(&mut h, conn, allow());
    assert_eq!(h.broker.session_count(), 0, "no session for a closed connection");
    assert_eq!(h.broker.connection_count(), 0);
    assert!(h.recv_all(conn).is_empty());
}

#[test]
fn connect_timeout_applies_while_the_verdict_is_pending() {
    let timeout = Config::default().connect_timeout_ms;
    let (mut h, _) = deferring_harness(Config::default());
    let conn = pipeline(&mut h, from_ip(1), slow(v5("a")), &[Packet::PingReq]);
    h.advance(Duration::from_millis(timeout - 1));
    assert!(!h.is_closed(conn));
    h.advance(Duration::from_millis(1));
    assert!(
        h.is_closed(conn),
        "a verdict that never comes ends with the connect timeout"
    );
    assert!(h.recv_all(conn).is_empty(), "no CONNACK, no PINGRESP");
    decide(&mut h, conn, allow());
    assert_eq!(h.broker.session_count(), 0);
    assert!(h.recv_all(conn).is_empty());
}

#[test]
fn verdict_for_an_unknown_or_already_decided_connection_is_ignored() {
    let (mut h, _) = deferring_harness(Config::default());
    decide(&mut h, ConnectionId(999), allow());
    let plain = connected(&mut h, v5("plain"));
    decide(&mut h, plain, AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED));
    assert!(!h.is_closed(plain) && h.recv_all(plain).is_empty());
    let conn = pipeline(&mut h, from_ip(1), slow(v5("a")), &[]);
    decide(&mut h, conn, allow());
    assert!(matches!(h.recv(conn), Some(Packet::ConnAck(c)) if c.reason == ReasonCode::SUCCESS));
    // A second verdict for the same CONNECT changes nothing.
    decide(&mut h, conn, AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED));
    assert!(!h.is_closed(conn) && h.recv_all(conn).is_empty());
    assert_eq!(h.broker.session_count(), 2);
}

#[test]
fn flooding_while_the_verdict_is_pending_closes_the_connection() {
    let (mut h, _) = deferring_harness(Config::default());
    let conn = pipeline(&mut h, from_ip(1), slow(v5("a")), &[]);
    let chunk = vec![0u8; 16 * 1024];
    let mut sent = 0;
    while sent <= MAX_BUFFERED_WHILE_VERIFYING {
        assert!(!h.is_closed(conn), "closed after only {sent} bytes");
        h.send_bytes(conn, &chunk);
        sent += chunk.len();
    }
    assert!(h.is_closed(conn));
    assert!(
        h.recv_all(conn).is_empty(),
        "no CONNACK for a client that was never decided on"
    );
    decide(&mut h, conn, allow());
    assert_eq!(h.broker.session_count(), 0);
}

#[test]
fn connection_limit_is_checked_again_when_the_verdict_comes() {
    let config = Config {
        max_connections: 1,
        ..Config::default()
    };
    let (mut h, _) = deferring_harness(config);
    let conn = pipeline(&mut h, from_ip(1), slow(v5("a")), &[]);
    // Another client takes the only place while this one waits.
    connected(&mut h, v5("quick"));
    decide(&mut h, conn, allow());
    assert!(matches!(h.recv(conn), Some(Packet::ConnAck(c)) if c.reason == ReasonCode::SERVER_BUSY));
    assert!(h.is_closed(conn));
}
