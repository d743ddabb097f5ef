//! Authentication through the pluggable `Authenticator`: user name / password checks and MQTT 5 enhanced
//! authentication (AUTH exchanges, section 4.12), including re-authentication.

mod common;

use bytes::Bytes;
use common::*;
use mqtt_core::broker::{AuthDecision, Authenticator, Broker, Config, ConnectInfo};
use mqtt_core::harness::Harness;
use mqtt_core::packet::*;

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
    Packet::Auth(Auth { reason, properties })
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
    // The 3.1.1 encoder maps 0x86 to return code 4; decoding it back gives 0x86 again.
    let (conn, answer) = h.connect(with_credentials(v311("b"), "mallory", b"secret"));
    assert!(matches!(answer, Some(Packet::ConnAck(c)) if c.reason == ReasonCode::BAD_USER_NAME_OR_PASSWORD));
    assert!(h.is_closed(conn));
}

#[test]
fn unknown_authentication_method_gets_0x8c() {
    let mut h = harness();
    let mut connect = v5("a");
    connect.properties.authentication_method = Some("KERBEROS".into());
    let (conn, answer) = h.connect(connect);
    assert!(matches!(answer, Some(Packet::ConnAck(c)) if c.reason == ReasonCode::BAD_AUTHENTICATION_METHOD));
    assert!(h.is_closed(conn));
}

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
