//! Clients authenticated by their transport: on a listener in `Config::identity_as_username`, the name the driver
//! verified (a TLS client certificate's Common Name, `Input::Identified`) is the User Name the authenticator and
//! the ACL see, whatever the CONNECT claims (section 5.4.1); without one the CONNECT is refused.

mod common;

use common::*;
use mqtt_core::broker::{AuthDecision, Authenticator, Broker, ClientIdentity, Config, ConnectInfo, ListenerId};
use mqtt_core::harness::Harness;
use mqtt_core::packet::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The credentials each CONNECT was authenticated with, as the authenticator saw them.
type Seen = Arc<Mutex<Vec<(Option<String>, Option<Vec<u8>>)>>>;

/// Admits "alice" without a password (as `FileAuthenticator` admits a name the transport vouches for), "bob" only
/// with password "bpw"; a user may subscribe to `home/{user}/#` only.
struct TestAuth(Seen);

impl Authenticator for TestAuth {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        let seen = (info.username.map(str::to_string), info.password.map(<[u8]>::to_vec));
        self.0.lock().unwrap().push(seen);
        match (info.username, info.password) {
            (Some("alice"), _) | (Some("bob"), Some(b"bpw")) => AuthDecision::Allow { data: None },
            _ => AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        }
    }

    fn authorize_subscribe(&self, client: ClientIdentity<'_>, filter: &str) -> bool {
        client
            .username
            .is_some_and(|user| filter.starts_with(&format!("home/{user}/")))
    }
}

const PLAIN: ListenerId = ListenerId(0);
const CERTIFIED: ListenerId = ListenerId(1);

fn harness() -> (Harness, Seen) {
    let seen = Seen::default();
    let config = Config {
        identity_as_username: vec![CERTIFIED],
        ..Config::default()
    };
    let broker = Broker::with_authenticator(config, 1, Box::new(TestAuth(Arc::clone(&seen))));
    (Harness::with_broker(broker), seen)
}

fn open(h: &mut Harness, listener: ListenerId) -> mqtt_core::broker::ConnectionId {
    let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    h.open_from(peer, listener)
}

fn with_credentials(mut connect: Connect, user: &str, password: &[u8]) -> Connect {
    connect.username = Some(user.into());
    connect.password = Some(bytes::Bytes::copy_from_slice(password));
    connect
}

fn connack(packet: Option<Packet>) -> ConnAck {
    match packet {
        Some(Packet::ConnAck(connack)) => connack,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[test]
fn the_verified_name_is_authenticated_instead_of_the_connects_user_name_and_password() {
    // 3.1.1 knows one failure code in SUBACK.
    for (connect, refused) in [
        (v5("c1"), ReasonCode::NOT_AUTHORIZED),
        (v311("c2"), ReasonCode::UNSPECIFIED_ERROR),
    ] {
        let (mut h, seen) = harness();
        let conn = open(&mut h, CERTIFIED);
        h.identify(conn, "alice");
        // The CONNECT claims to be bob, with bob's own password: the certificate decides.
        h.send(
            conn,
            Packet::Connect(Box::new(with_credentials(connect, "bob", b"bpw"))),
        );
        assert_eq!(connack(h.recv(conn)).reason, ReasonCode::SUCCESS);
        assert_eq!(*seen.lock().unwrap(), [(Some("alice".to_string()), None)]);
        // The ACL sees the same name.
        assert_eq!(
            subscribe(&mut h, conn, "home/alice/#", QoS::AtLeastOnce).reasons,
            [ReasonCode::GRANTED_QOS_1]
        );
        assert_eq!(
            subscribe(&mut h, conn, "home/bob/#", QoS::AtLeastOnce).reasons,
            [refused]
        );
    }
}

#[test]
fn a_connect_without_a_verified_name_is_refused_0x87_and_closed_mqtt_3_1_4_2() {
    for (connect, client_id) in [(v5("c1"), "c1"), (v311("c2"), "c2")] {
        let (mut h, seen) = harness();
        let conn = open(&mut h, CERTIFIED);
        // A certificate without a Common Name: the driver has no name to give. Good credentials do not help.
        h.send(
            conn,
            Packet::Connect(Box::new(with_credentials(connect, "bob", b"bpw"))),
        );
        // 3.1.1 gets return code 5, which decodes back to 0x87.
        assert_eq!(connack(h.recv(conn)).reason, ReasonCode::NOT_AUTHORIZED, "{client_id}");
        assert!(h.is_closed(conn), "[MQTT-3.1.4-2]: closed after failing authentication");
        assert!(
            seen.lock().unwrap().is_empty(),
            "the authenticator is not asked without a name"
        );
    }
}

#[test]
fn other_listeners_authenticate_what_the_connect_says() {
    let (mut h, seen) = harness();
    let conn = open(&mut h, PLAIN);
    // A name from the transport changes nothing on a listener that does not use it.
    h.identify(conn, "alice");
    h.send(
        conn,
        Packet::Connect(Box::new(with_credentials(v5("c1"), "bob", b"bpw"))),
    );
    assert_eq!(connack(h.recv(conn)).reason, ReasonCode::SUCCESS);
    assert_eq!(
        *seen.lock().unwrap(),
        [(Some("bob".to_string()), Some(b"bpw".to_vec()))]
    );
}

#[test]
fn a_name_given_after_the_connect_or_for_a_closed_connection_changes_nothing() {
    let (mut h, seen) = harness();
    let conn = open(&mut h, CERTIFIED);
    h.identify(conn, "alice");
    h.send(conn, Packet::Connect(Box::new(v5("c1"))));
    assert_eq!(connack(h.recv(conn)).reason, ReasonCode::SUCCESS);
    // Too late to matter: the session stays alice's.
    h.identify(conn, "bob");
    assert_eq!(
        subscribe(&mut h, conn, "home/alice/#", QoS::AtMostOnce).reasons,
        [ReasonCode::GRANTED_QOS_0]
    );
    assert_eq!(
        subscribe(&mut h, conn, "home/bob/#", QoS::AtMostOnce).reasons,
        [ReasonCode::NOT_AUTHORIZED]
    );
    // A connection closed meanwhile: ignored.
    h.drop_connection(conn);
    h.identify(conn, "bob");
    assert!(h.recv(conn).is_none());
    assert_eq!(seen.lock().unwrap().len(), 1);
}
