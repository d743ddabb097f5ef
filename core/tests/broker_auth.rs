//! Authentication through the pluggable `Authenticator`: user name / password checks and MQTT 5 enhanced
//! authentication (AUTH exchanges, section 4.12), including re-authentication.

mod common;

use bytes::Bytes;
use common::*;
use mqtt_core::broker::{AuthDecision, Authenticator, Broker, Config, ConnectInfo, Event, ListenerId};
use mqtt_core::harness::Harness;
use mqtt_core::packet::*;
use std::net::SocketAddr;
use std::time::Duration;

/// Accepts user "alice" with password "secret"; for method "CHALLENGE" asks for one round trip and accepts the
/// answer "response".
struct TestAuth;

impl Authenticator for TestAuth {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        match info.auth_method {
            Some("CHALLENGE") => AuthDecision::Continue {
                data: Some(Bytes::from_static(b"challenge")),
            },
            Some(_) => AuthDecision::Deny(ReasonCode::BAD_AUTHENTICATION_METHOD),
            None if info.username == Some("alice") && info.password == Some(&b"secret"[..]) => {
                AuthDecision::Allow { data: None }
            }
            None => AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        }
    }

    fn continue_auth(&mut self, _client_id: &str, method: &str, data: Option<&[u8]>) -> AuthDecision {
        if method == "CHALLENGE" && data == Some(&b"response"[..]) {
            AuthDecision::Allow {
                data: Some(Bytes::from_static(b"welcome")),
            }
        } else {
            AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED)
        }
    }
}

fn harness_with_auth() -> Harness {
    Harness::with_broker(Broker::with_authenticator(Config::default(), 1, Box::new(TestAuth)))
}

fn with_credentials(mut connect: Connect, user: &str, password: &[u8]) -> Connect {
    connect.username = Some(user.into());
    connect.password = Some(Bytes::copy_from_slice(password));
    connect
}

fn auth_packet(reason: ReasonCode, data: &'static [u8]) -> Packet {
    let properties = Properties {
        authentication_method: Some("CHALLENGE".into()),
        authentication_data: Some(Bytes::from_static(data)),
        ..Default::default()
    };
    Packet::Auth(Auth {
        reason,
        properties: properties.into(),
    })
}

#[test]
fn good_password_is_accepted() {
    let mut h = harness_with_auth();
    connected(&mut h, with_credentials(v5("a"), "alice", b"secret"));
    connected(&mut h, with_credentials(v311("b"), "alice", b"secret"));
}

#[test]
fn bad_password_gets_0x86_in_v5_and_return_code_4_in_v311() {
    let mut h = harness_with_auth();
    let (conn, answer) = h.connect(with_credentials(v5("a"), "alice", b"wrong"));
    assert!(matches!(answer, Some(Packet::ConnAck(c)) if c.reason == ReasonCode::BAD_USER_NAME_OR_PASSWORD));
    assert!(h.is_closed(conn), "[MQTT-3.2.2-7]: closed after a failing CONNACK");
    // The 3.1.1 encoder maps 0x86 to return code 4; decoding it back gives 0x86 again. (A second failure from the
    // same address is held on the slow-down timer, hence the wait.)
    let (conn, answer) = h.connect(with_credentials(v311("b"), "mallory", b"secret"));
    assert!(answer.is_none());
    h.advance(Duration::from_millis(Config::default().auth_failure_delay_ms));
    let answer = h.recv(conn);
    assert!(matches!(answer, Some(Packet::ConnAck(c)) if c.reason == ReasonCode::BAD_USER_NAME_OR_PASSWORD));
    assert!(h.is_closed(conn));
}

/// An Authentication Method the server does not support: CONNACK 0x8C and close [MQTT-4.12.0-1].
#[test]
fn unknown_authentication_method_gets_0x8c() {
    let mut h = harness();
    let mut connect = v5("a");
    connect.properties.authentication_method = Some("KERBEROS".into());
    let (conn, answer) = h.connect(connect);
    assert!(matches!(answer, Some(Packet::ConnAck(c)) if c.reason == ReasonCode::BAD_AUTHENTICATION_METHOD));
    assert!(h.is_closed(conn));
}

/// AUTH 0x18 for more data [MQTT-4.12.0-2], AUTH reasons from the AUTH table only [MQTT-3.15.2-1]; the CONNACK repeats the Authentication Method [MQTT-4.12.0-5]; a failed
/// re-authentication ends the connection [MQTT-4.12.1-2].
#[test]
fn enhanced_authentication_exchange_mqtt_4_12() {
    let mut h = harness_with_auth();
    let mut connect = v5("a");
    connect.properties.authentication_method = Some("CHALLENGE".into());
    let (conn, answer) = h.connect(connect);
    match answer {
        Some(Packet::Auth(auth)) => {
            assert_eq!(auth.reason, ReasonCode::CONTINUE_AUTHENTICATION);
            assert_eq!(auth.properties.authentication_data.as_deref(), Some(&b"challenge"[..]));
        }
        other => panic!("expected AUTH 0x18, got {other:?}"),
    }
    h.send(conn, auth_packet(ReasonCode::CONTINUE_AUTHENTICATION, b"response"));
    match h.recv(conn) {
        Some(Packet::ConnAck(connack)) => {
            assert_eq!(connack.reason, ReasonCode::SUCCESS);
            assert_eq!(connack.properties.authentication_method.as_deref(), Some("CHALLENGE"));
            assert_eq!(connack.properties.authentication_data.as_deref(), Some(&b"welcome"[..]));
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    // Re-authentication on the live connection [MQTT-4.12.1].
    h.send(conn, auth_packet(ReasonCode::REAUTHENTICATE, b"response"));
    assert!(matches!(h.recv(conn), Some(Packet::Auth(a)) if a.reason == ReasonCode::SUCCESS));
    h.send(conn, auth_packet(ReasonCode::REAUTHENTICATE, b"wrong"));
    expect_disconnect(&mut h, conn, ReasonCode::NOT_AUTHORIZED);
}

/// The server may reject the authentication at any step, with a CONNACK of 0x80 or above, and close [MQTT-4.12.0-4].
#[test]
fn failed_enhanced_authentication_is_refused() {
    let mut h = harness_with_auth();
    let mut connect = v5("a");
    connect.properties.authentication_method = Some("CHALLENGE".into());
    let (conn, _) = h.connect(connect);
    h.send(conn, auth_packet(ReasonCode::CONTINUE_AUTHENTICATION, b"guess"));
    assert!(matches!(h.recv(conn), Some(Packet::ConnAck(c)) if c.reason == ReasonCode::NOT_AUTHORIZED));
    assert!(h.is_closed(conn));
}

#[test]
fn auth_without_method_in_connect_is_protocol_error_mqtt_4_12_0_7() {
    let mut h = harness();
    let conn = connected(&mut h, v5("a"));
    h.send(conn, auth_packet(ReasonCode::REAUTHENTICATE, b"x"));
    expect_disconnect(&mut h, conn, ReasonCode::PROTOCOL_ERROR);
}

fn from_ip(last: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, last], 50000))
}

/// Connects from `peer` and returns the connection and whatever arrived at once.
fn connect_from(
    h: &mut Harness,
    peer: SocketAddr,
    connect: Connect,
) -> (mqtt_core::broker::ConnectionId, Option<Packet>) {
    let conn = h.open_from(peer, ListenerId(0));
    h.send(conn, Packet::Connect(Box::new(connect)));
    let answer = h.recv(conn);
    (conn, answer)
}

#[test]
fn repeated_failures_from_one_address_hold_the_refusal_longer_each_time() {
    let mut h = harness_with_auth();
    let base = Config::default().auth_failure_delay_ms;
    // First failure: refused at once [MQTT-3.2.2-7].
    let (conn, answer) = connect_from(&mut h, from_ip(1), with_credentials(v5("a"), "alice", b"bad"));
    assert!(matches!(answer, Some(Packet::ConnAck(c)) if c.reason == ReasonCode::BAD_USER_NAME_OR_PASSWORD));
    assert!(h.is_closed(conn));
    // Then base, 2 * base: nothing before the delay, the refusal and close right after it.
    for delay in [base, 2 * base] {
        let (conn, answer) = connect_from(&mut h, from_ip(1), with_credentials(v5("a"), "alice", b"bad"));
        assert!(answer.is_none(), "refusal must be held");
        h.advance(Duration::from_millis(delay - 1));
        assert!(h.recv(conn).is_none() && !h.is_closed(conn), "held for {delay} ms");
        h.advance(Duration::from_millis(1));
        assert!(matches!(h.recv(conn), Some(Packet::ConnAck(c)) if c.reason == ReasonCode::BAD_USER_NAME_OR_PASSWORD));
        assert!(h.is_closed(conn));
    }
    // Another address is not slowed down by these failures.
    let (_, answer) = connect_from(&mut h, from_ip(2), with_credentials(v5("b"), "alice", b"bad"));
    assert!(matches!(answer, Some(Packet::ConnAck(c)) if c.reason == ReasonCode::BAD_USER_NAME_OR_PASSWORD));
    // The failures were reported with the address, for the log.
    let reported: Vec<(SocketAddr, u64)> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::AuthenticationFailed { peer, delay_ms, .. } => Some((*peer, *delay_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(
        reported,
        [
            (from_ip(1), 0),
            (from_ip(1), base),
            (from_ip(1), 2 * base),
            (from_ip(2), 0)
        ]
    );
}

#[test]
fn success_resets_the_slow_down_and_held_connection_ignores_input() {
    let mut h = harness_with_auth();
    connect_from(&mut h, from_ip(1), with_credentials(v5("a"), "alice", b"bad"));
    let (held, answer) = connect_from(&mut h, from_ip(1), with_credentials(v5("a"), "alice", b"bad"));
    assert!(answer.is_none());
    // Packets sent while the refusal is held are ignored: no PINGRESP, no second CONNACK.
    h.send(held, Packet::PingReq);
    assert!(h.recv(held).is_none());
    h.advance(Duration::from_secs(60));
    assert!(matches!(h.recv(held), Some(Packet::ConnAck(c)) if c.reason.is_error()));
    assert!(h.recv(held).is_none());
    // A success from the address forgets its failures: the next failure is refused at once again.
    let (_, answer) = connect_from(&mut h, from_ip(1), with_credentials(v5("ok"), "alice", b"secret"));
    assert!(matches!(answer, Some(Packet::ConnAck(c)) if c.reason == ReasonCode::SUCCESS));
    let (_, answer) = connect_from(&mut h, from_ip(1), with_credentials(v5("a"), "alice", b"bad"));
    assert!(matches!(answer, Some(Packet::ConnAck(c)) if c.reason == ReasonCode::BAD_USER_NAME_OR_PASSWORD));
}

#[test]
fn slow_down_can_be_disabled() {
    let config = Config {
        auth_failure_delay_ms: 0,
        ..Config::default()
    };
    let mut h = Harness::with_broker(Broker::with_authenticator(config, 1, Box::new(TestAuth)));
    for _ in 0..5 {
        let (_, answer) = connect_from(&mut h, from_ip(1), with_credentials(v5("a"), "alice", b"bad"));
        assert!(matches!(answer, Some(Packet::ConnAck(c)) if c.reason == ReasonCode::BAD_USER_NAME_OR_PASSWORD));
    }
}

/// The AUTH packets the broker sends carry no Reason String or User Properties, so neither can take one beyond the
/// client's Maximum Packet Size [MQTT-3.15.2-2], [MQTT-3.15.2-3]: with a Maximum Packet Size just large enough for
/// the method and data, the exchange still completes.
#[test]
fn auth_packets_fit_the_clients_maximum_packet_size_mqtt_3_15_2_2() {
    let mut h = harness_with_auth();
    let mut connect = v5("small");
    connect.properties.authentication_method = Some("CHALLENGE".into());
    connect.properties.maximum_packet_size = Some(40);
    let (conn, answer) = h.connect(connect);
    let Some(Packet::Auth(auth)) = answer else {
        panic!("expected AUTH 0x18, got {answer:?}");
    };
    assert!(auth.properties.reason_string.is_none() && auth.properties.user_properties.is_empty());
    let encoded = Packet::Auth(auth.clone());
    let mut out = bytes::BytesMut::new();
    mqtt_core::codec::encode(&encoded, ProtocolVersion::V5, &mut out).unwrap();
    assert!(out.len() <= 40, "AUTH of {} bytes exceeds the client's 40", out.len());
    h.send(conn, auth_packet(ReasonCode::CONTINUE_AUTHENTICATION, b"response"));
    assert!(matches!(h.recv(conn), Some(Packet::ConnAck(c)) if c.reason == ReasonCode::SUCCESS));
}
