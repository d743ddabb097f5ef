//! Authorization through the `Authenticator`'s topic checks: PUBLISH (retained and wills included), SUBSCRIBE,
//! and read access per delivery; and swapping the authenticator on a live broker.

mod common;

use bytes::Bytes;
use common::*;
use mqtt_core::broker::{AllowAll, AuthDecision, Authenticator, Broker, ClientIdentity, Config, ConnectInfo};
use mqtt_core::harness::Harness;
use mqtt_core::packet::*;

/// Everyone may read and write `open/#`; each user may also write and read `home/{username}/#`; nobody may
/// subscribe to anything under `secret/`, and `open/hidden` may be written but never read.
struct Rules;

fn owns(client: ClientIdentity<'_>, topic: &str) -> bool {
    client.username.is_some_and(|user| {
        topic
            .strip_prefix("home/")
            .and_then(|t| t.strip_prefix(user))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

impl Authenticator for Rules {
    fn authenticate(&mut self, _info: &ConnectInfo<'_>) -> AuthDecision {
        AuthDecision::Allow { data: None }
    }
    fn authorize_publish(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        topic.starts_with("open/") || owns(client, topic)
    }
    fn authorize_subscribe(&self, _client: ClientIdentity<'_>, filter: &str) -> bool {
        !filter.starts_with("secret/")
    }
    fn authorize_read(&self, client: ClientIdentity<'_>, topic: &str) -> bool {
        (topic.starts_with("open/") && topic != "open/hidden") || owns(client, topic)
    }
}

fn harness_with_rules() -> Harness {
    Harness::with_broker(Broker::with_authenticator(Config::default(), 1, Box::new(Rules)))
}

fn as_user(mut connect: Connect, user: &str) -> Connect {
    connect.username = Some(user.into());
    connect.password = Some(Bytes::from_static(b"pw"));
    connect
}

fn will_on(connect: Connect, topic: &str) -> Connect {
    with_will(connect, topic, "gone", QoS::AtMostOnce, None)
}

#[test]
fn denied_qos1_publish_gets_puback_0x87_in_v5_and_is_not_delivered() {
    let mut h = harness_with_rules();
    let watcher = connected(&mut h, v5("w"));
    subscribe(&mut h, watcher, "#", QoS::AtLeastOnce);
    let alice = connected(&mut h, as_user(v5("a"), "alice"));
    publish(&mut h, alice, "home/bob/x", "forged", QoS::AtLeastOnce, 1);
    // MQTT 5.0 section 3.4.2.1: 0x87 Not authorized.
    assert!(
        matches!(h.recv(alice), Some(Packet::PubAck(a)) if a.packet_id == 1 && a.reason == ReasonCode::NOT_AUTHORIZED)
    );
    assert!(publishes(&mut h, watcher).is_empty());
    // An allowed publish still goes through.
    publish(&mut h, alice, "open/news", "hello", QoS::AtLeastOnce, 2);
    assert!(matches!(h.recv(alice), Some(Packet::PubAck(a)) if a.reason == ReasonCode::SUCCESS));
    assert_eq!(payloads(&publishes(&mut h, watcher)), ["hello"]);
}

#[test]
fn denied_qos2_publish_gets_pubrec_0x87_in_v5() {
    let mut h = harness_with_rules();
    let alice = connected(&mut h, as_user(v5("a"), "alice"));
    publish(&mut h, alice, "home/bob/x", "forged", QoS::ExactlyOnce, 3);
    // MQTT 5.0 section 3.5.2.1; an error PUBREC ends the flow, so the PUBREL finds no id (0x92).
    assert!(matches!(h.recv(alice), Some(Packet::PubRec(r)) if r.reason == ReasonCode::NOT_AUTHORIZED));
    h.send(alice, Packet::PubRel(PubResponse::new(3, ReasonCode::SUCCESS)));
    assert!(matches!(h.recv(alice), Some(Packet::PubComp(c)) if c.reason == ReasonCode::PACKET_IDENTIFIER_NOT_FOUND));
}

/// 3.1.1 cannot refuse a PUBLISH: an unauthorized one gets a positive acknowledgement and goes nowhere
/// [MQTT-3.3.5-2].
#[test]
fn denied_publish_from_v311_client_is_acknowledged_and_dropped() {
    let mut h = harness_with_rules();
    let watcher = connected(&mut h, v5("w"));
    subscribe(&mut h, watcher, "#", QoS::AtLeastOnce);
    let anon = connected(&mut h, v311("anon"));
    publish(&mut h, anon, "home/alice/x", "forged", QoS::AtLeastOnce, 1);
    // 3.1.1 PUBACK carries no reason code: the client sees a normal acknowledgement and stays connected.
    assert!(matches!(h.recv(anon), Some(Packet::PubAck(a)) if a.packet_id == 1 && a.reason == ReasonCode::SUCCESS));
    assert!(!h.is_closed(anon));
    assert!(publishes(&mut h, watcher).is_empty());
}

#[test]
fn denied_retained_publish_is_not_stored() {
    let mut h = harness_with_rules();
    let mallory = connected(&mut h, as_user(v5("m"), "mallory"));
    retain(&mut h, mallory, "home/alice/status", "forged");
    retain(&mut h, mallory, "home/mallory/status", "mine");
    let reader = connected(&mut h, as_user(v5("r"), "mallory"));
    subscribe(&mut h, reader, "home/#", QoS::AtMostOnce);
    assert_eq!(payloads(&publishes(&mut h, reader)), ["mine"]);
}

#[test]
fn denied_subscription_gets_0x87_in_v5_and_0x80_in_v311() {
    let mut h = harness_with_rules();
    let conn = connected(&mut h, v5("a"));
    let options = SubscriptionOptions::default();
    let suback = subscribe_packet(
        &mut h,
        conn,
        vec![("open/#".into(), options), ("secret/plans".into(), options)],
        Properties::default(),
    );
    // MQTT 5.0 [MQTT-3.9.3-1] and section 3.9.3: one reason per filter, 0x87 Not authorized.
    assert_eq!(suback.reasons, [ReasonCode::SUCCESS, ReasonCode::NOT_AUTHORIZED]);
    // The shared-subscription prefix does not hide the filter.
    let suback = subscribe(&mut h, conn, "$share/g/secret/#", QoS::AtMostOnce);
    assert_eq!(suback.reasons, [ReasonCode::NOT_AUTHORIZED]);
    // MQTT 3.1.1 section 3.9.3: return code 0x80 Failure (decoded back as 0x80 Unspecified error).
    let old = connected(&mut h, v311("b"));
    let suback = subscribe(&mut h, old, "secret/plans", QoS::AtMostOnce);
    assert_eq!(suback.reasons, [ReasonCode::UNSPECIFIED_ERROR]);
    // Nothing was subscribed: a publish there reaches nobody.
    let writer = connected(&mut h, v5("c"));
    publish(&mut h, writer, "secret/plans", "x", QoS::AtMostOnce, 0);
    assert!(publishes(&mut h, conn).is_empty() && publishes(&mut h, old).is_empty());
}

#[test]
fn wide_subscription_delivers_only_readable_topics() {
    let mut h = harness_with_rules();
    let alice = connected(&mut h, as_user(v5("a"), "alice"));
    subscribe(&mut h, alice, "#", QoS::AtLeastOnce);
    let bob = connected(&mut h, as_user(v5("b"), "bob"));
    for (i, topic) in ["open/a", "open/hidden", "home/bob/diary", "home/alice/inbox"]
        .iter()
        .enumerate()
    {
        publish(&mut h, bob, topic, topic, QoS::AtMostOnce, i as u16);
    }
    // bob may not write home/alice/inbox, and alice may not read open/hidden or bob's home.
    assert_eq!(payloads(&publishes(&mut h, alice)), ["open/a"]);
    let anon = connected(&mut h, v5("anon"));
    retain(&mut h, anon, "open/hidden", "r1");
    retain(&mut h, anon, "open/visible", "r2");
    // Retained messages sent on subscribe are checked too.
    let late = connected(&mut h, as_user(v5("late"), "alice"));
    subscribe(&mut h, late, "open/+", QoS::AtMostOnce);
    assert_eq!(payloads(&publishes(&mut h, late)), ["r2"]);
}

#[test]
fn queued_deliveries_to_offline_session_are_checked_with_its_username() {
    let mut h = harness_with_rules();
    let mut connect = as_user(v5("a"), "alice");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(600);
    let alice = connected(&mut h, connect.clone());
    subscribe(&mut h, alice, "home/#", QoS::AtLeastOnce);
    h.send(alice, Packet::Disconnect(Disconnect::default()));
    let writer = connected(&mut h, as_user(v5("w"), "alice"));
    publish(&mut h, writer, "home/alice/note", "for alice", QoS::AtLeastOnce, 1);
    let bob = connected(&mut h, as_user(v5("b"), "bob"));
    publish(&mut h, bob, "home/bob/note", "not for alice", QoS::AtLeastOnce, 1);
    let (again, connack) = connect_ok(&mut h, connect);
    assert!(connack.session_present);
    assert_eq!(payloads(&publishes(&mut h, again)), ["for alice"]);
}

#[test]
fn will_on_a_denied_topic_refuses_the_connect_with_not_authorized() {
    let mut h = harness_with_rules();
    // MQTT 5.0 [MQTT-3.2.2-7]: a failing CONNACK, then close; 0x87 Not authorized.
    let (conn, answer) = h.connect(will_on(as_user(v5("a"), "alice"), "home/bob/status"));
    assert!(matches!(answer, Some(Packet::ConnAck(c)) if c.reason == ReasonCode::NOT_AUTHORIZED));
    assert!(h.is_closed(conn));
    // MQTT 3.1.1 return code 5 Not authorized.
    let (conn, answer) = h.connect(will_on(v311("b"), "home/bob/status"));
    assert!(matches!(answer, Some(Packet::ConnAck(c)) if c.reason == ReasonCode::NOT_AUTHORIZED));
    assert!(h.is_closed(conn));
    // A will on an allowed topic is fine, and is published when the connection drops.
    let watcher = connected(&mut h, v5("w"));
    subscribe(&mut h, watcher, "open/#", QoS::AtMostOnce);
    let conn = connected(&mut h, will_on(v5("c"), "open/status"));
    h.drop_connection(conn);
    assert_eq!(payloads(&publishes(&mut h, watcher)), ["gone"]);
}

#[test]
fn swapping_the_authenticator_applies_to_connected_clients_without_dropping_them() {
    let mut h = harness_with_rules();
    let watcher = connected(&mut h, v5("w"));
    subscribe(&mut h, watcher, "#", QoS::AtMostOnce);
    let alice = connected(&mut h, as_user(v5("a"), "alice"));
    publish(&mut h, alice, "home/bob/x", "before", QoS::AtLeastOnce, 1);
    assert!(matches!(h.recv(alice), Some(Packet::PubAck(a)) if a.reason == ReasonCode::NOT_AUTHORIZED));
    h.broker.set_authenticator(Box::new(AllowAll));
    publish(&mut h, alice, "home/bob/x", "after", QoS::AtLeastOnce, 2);
    assert!(matches!(h.recv(alice), Some(Packet::PubAck(a)) if a.reason == ReasonCode::SUCCESS));
    assert_eq!(payloads(&publishes(&mut h, watcher)), ["after"]);
    assert!(!h.is_closed(alice) && !h.is_closed(watcher));
}

/// May connect and read anything, publish nothing: the rules after an ACL reload that revoked a client's rights.
struct NoPublishing;

impl Authenticator for NoPublishing {
    fn authenticate(&mut self, _info: &ConnectInfo<'_>) -> AuthDecision {
        AuthDecision::Allow { data: None }
    }
    fn authorize_publish(&self, _client: ClientIdentity<'_>, _topic: &str) -> bool {
        false
    }
    fn authorize_subscribe(&self, _client: ClientIdentity<'_>, _filter: &str) -> bool {
        true
    }
    fn authorize_read(&self, _client: ClientIdentity<'_>, _topic: &str) -> bool {
        true
    }
}

/// A will is a PUBLISH by its author [MQTT-3.1.2-8]; it goes out when the connection ends, possibly after a Will
/// Delay Interval, long after the CONNECT. If the ACL no longer lets the author publish to the will's topic by
/// then, the will is dropped (and reported), as a PUBLISH would be.
#[test]
fn a_will_whose_topic_was_revoked_after_the_connect_is_not_published() {
    let mut h = harness_with_rules();
    let watcher = connected(&mut h, v5("w"));
    subscribe(&mut h, watcher, "#", QoS::AtMostOnce);
    let immediate = connected(&mut h, will_on(as_user(v5("a"), "alice"), "home/alice/status"));
    let mut delayed_connect = will_on(as_user(v5("b"), "bob"), "home/bob/status");
    if let Some(will) = delayed_connect.will.as_mut() {
        will.properties.will_delay_interval = Some(5);
    }
    delayed_connect.properties.session_expiry_interval = Some(60);
    let delayed = connected(&mut h, delayed_connect);
    h.drop_connection(delayed);

    h.broker.set_authenticator(Box::new(NoPublishing));
    h.drop_connection(immediate);
    h.advance(std::time::Duration::from_secs(6));
    assert!(publishes(&mut h, watcher).is_empty(), "neither will was published");
    let refused: Vec<_> = h
        .events
        .iter()
        .filter_map(|e| match e {
            mqtt_core::broker::Event::WillRefused { client_id, topic } => Some((client_id.as_str(), topic.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(refused, [("a", "home/alice/status"), ("b", "home/bob/status")]);
}
