//! End-to-end authentication and authorization: the real binary with a password file and an ACL file, driven by
//! rumqttc (v3.1.1 and v5). Statement ids are MQTT 5.0's unless a test says 3.1.1.

mod common;
mod wire;

use common::auth::{add_user, auth_files};
use common::clients::{client4, client5, connack4, connack5};
use common::{wait_for, BrokerProcess, Events5};
use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode as Rc5, Packet as Packet5, PubAckReason, SubscribeReasonCode as SubRc5,
};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::{ConnectReturnCode, Event, Packet, QoS, SubscribeReasonCode};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn start(dir: &tempfile::TempDir, extra: &[&str]) -> BrokerProcess {
    let pw = dir.path().join("users.pw");
    let acl = dir.path().join("acl");
    let mut args = vec!["--password-file", pw.to_str().expect("utf-8 path"), "--acl-file"];
    args.push(acl.to_str().expect("utf-8 path"));
    args.extend_from_slice(extra);
    BrokerProcess::start(&args)
}

fn suback5(client: &v5::Client, events: &Events5, filter: &str) -> Option<Vec<SubRc5>> {
    client.subscribe(filter, QoS5::AtLeastOnce).expect("subscribe queued");
    wait_for(events, WAIT, |e| match e {
        Ok(v5::Event::Incoming(Packet5::SubAck(ack))) => Some(ack.return_codes),
        _ => None,
    })
}

fn next_topic5(events: &Events5) -> Option<String> {
    wait_for(events, WAIT, |e| match e {
        Ok(v5::Event::Incoming(Packet5::Publish(p))) => Some(String::from_utf8_lossy(&p.topic).into_owned()),
        _ => None,
    })
}

const ACL: &str = "\
user alice
topic read public/#
topic readwrite alice/#
user bob
topic readwrite public/#
topic readwrite private/#
";

/// [MQTT-3.2.2-7]: a refusing CONNACK then close; 0x86 / return code 4 for a bad password, 0x87 / 5 without a
/// user name where anonymous access is off.
#[test]
fn wrong_password_is_refused_and_right_password_accepted() {
    let dir = auth_files(ACL);
    let broker = start(&dir, &["--allow-anonymous", "false"]);
    let (_c, events) = client5(&broker, "e2e-auth-bad5", Some(("alice", "nope")));
    assert_eq!(connack5(&events), Some(Rc5::BadUserNamePassword));
    let (_c, events) = client4(&broker, "e2e-auth-bad4", Some(("mallory", "apw")));
    assert_eq!(connack4(&events), Some(ConnectReturnCode::BadUserNamePassword));
    let (_c, events) = client4(&broker, "e2e-auth-anon4", None);
    assert_eq!(connack4(&events), Some(ConnectReturnCode::NotAuthorized));
    let (_c, events) = client5(&broker, "e2e-auth-anon5", None);
    assert_eq!(connack5(&events), Some(Rc5::NotAuthorized));
    // Failures are logged with the peer address.
    assert!(
        broker.wait_for_log("authentication failed: addr=127.0.0.1:", WAIT),
        "{}",
        broker.log_text()
    );
    // The right password gets in, in both versions, and after the failures above from the same address.
    let (_c, events) = client5(&broker, "e2e-auth-ok5", Some(("alice", "apw")));
    assert_eq!(connack5(&events), Some(Rc5::Success));
    let (_c, events) = client4(&broker, "e2e-auth-ok4", Some(("bob", "bpw")));
    assert_eq!(connack4(&events), Some(ConnectReturnCode::Success));
}

#[test]
fn loopback_listener_allows_anonymous_clients_by_default() {
    let dir = auth_files(ACL);
    let broker = start(&dir, &[]);
    let (_c, events) = client4(&broker, "e2e-auth-anon", None);
    assert_eq!(connack4(&events), Some(ConnectReturnCode::Success));
}

/// A subscription to `#` brings only what the ACL lets the user read; denied publishes get PUBACK 0x87 (v5) and
/// denied subscriptions 0x87 (v5) / 0x80 (3.1.1) in SUBACK [MQTT-3.9.3-1].
#[test]
fn acl_filters_deliveries_publishes_and_subscriptions() {
    let dir = auth_files(ACL);
    let broker = start(&dir, &[]);
    let (alice, alice_events) = client5(&broker, "e2e-acl-alice", Some(("alice", "apw")));
    assert_eq!(connack5(&alice_events), Some(Rc5::Success));
    assert_eq!(
        suback5(&alice, &alice_events, "#"),
        Some(vec![SubRc5::Success(QoS5::AtLeastOnce)])
    );
    assert_eq!(
        suback5(&alice, &alice_events, "private/#"),
        Some(vec![SubRc5::NotAuthorized])
    );

    let (bob, bob_events) = client5(&broker, "e2e-acl-bob", Some(("bob", "bpw")));
    assert_eq!(connack5(&bob_events), Some(Rc5::Success));
    bob.publish("alice/inbox", QoS5::AtLeastOnce, false, "forged")
        .expect("publish");
    let ack = wait_for(&bob_events, WAIT, |e| match e {
        Ok(v5::Event::Incoming(Packet5::PubAck(ack))) => Some(ack.reason),
        _ => None,
    });
    assert_eq!(ack, Some(PubAckReason::NotAuthorized));
    bob.publish("private/1", QoS5::AtLeastOnce, false, "hidden")
        .expect("publish");
    bob.publish("public/1", QoS5::AtLeastOnce, false, "visible")
        .expect("publish");
    // Same publisher, so order is kept [MQTT-4.6.0-5]: public/1 first means neither earlier message came through.
    assert_eq!(next_topic5(&alice_events).as_deref(), Some("public/1"));

    let (old, old_events) = client4(&broker, "e2e-acl-old", Some(("alice", "apw")));
    assert_eq!(connack4(&old_events), Some(ConnectReturnCode::Success));
    old.subscribe("private/#", QoS::AtMostOnce).expect("subscribe");
    let codes = wait_for(&old_events, WAIT, |e| match e {
        Ok(Event::Incoming(Packet::SubAck(ack))) => Some(ack.return_codes),
        _ => None,
    });
    assert_eq!(codes, Some(vec![SubscribeReasonCode::Failure]));
}

/// SIGHUP reloads both files: a connected client keeps its connection and gets the new permissions, and a user
/// added to the password file can log in.
#[test]
fn sighup_reloads_password_and_acl_files_without_dropping_clients() {
    let dir = auth_files(ACL);
    let broker = start(&dir, &["--allow-anonymous", "false"]);
    let (alice, alice_events) = client5(&broker, "e2e-hup-alice", Some(("alice", "apw")));
    assert_eq!(connack5(&alice_events), Some(Rc5::Success));
    assert_eq!(
        suback5(&alice, &alice_events, "#"),
        Some(vec![SubRc5::Success(QoS5::AtLeastOnce)])
    );
    let (bob, bob_events) = client5(&broker, "e2e-hup-bob", Some(("bob", "bpw")));
    assert_eq!(connack5(&bob_events), Some(Rc5::Success));
    bob.publish("private/1", QoS5::AtLeastOnce, false, "before")
        .expect("publish");
    bob.publish("public/1", QoS5::AtLeastOnce, false, "marker")
        .expect("publish");
    assert_eq!(next_topic5(&alice_events).as_deref(), Some("public/1"));
    let (_c, events) = client5(&broker, "e2e-hup-carol", Some(("carol", "cpw")));
    assert_eq!(connack5(&events), Some(Rc5::BadUserNamePassword));

    std::fs::write(
        dir.path().join("acl"),
        format!("{ACL}user alice\ntopic read private/#\n"),
    )
    .expect("write acl");
    add_user(&dir.path().join("users.pw"), "carol", "cpw");
    broker.signal(libc::SIGHUP);
    assert!(
        broker.wait_for_log("password and ACL files reloaded", WAIT),
        "{}",
        broker.log_text()
    );

    bob.publish("private/2", QoS5::AtLeastOnce, false, "after")
        .expect("publish");
    // Still the same connection: the next thing alice sees is the message, not a reconnect.
    let next = wait_for(&alice_events, WAIT, |e| match e {
        Ok(v5::Event::Incoming(Packet5::Publish(p))) => Some(Ok(String::from_utf8_lossy(&p.topic).into_owned())),
        Ok(v5::Event::Incoming(Packet5::ConnAck(_))) | Err(_) => Some(Err("connection dropped")),
        _ => None,
    });
    assert_eq!(next, Some(Ok("private/2".to_string())));
    let (_c, events) = client5(&broker, "e2e-hup-carol2", Some(("carol", "cpw")));
    assert_eq!(connack5(&events), Some(Rc5::Success));

    // A broken file on reload keeps the previous rules.
    std::fs::write(dir.path().join("acl"), "nonsense\n").expect("write acl");
    broker.signal(libc::SIGHUP);
    assert!(
        broker.wait_for_log("keeping the previous password and ACL files", WAIT),
        "{}",
        broker.log_text()
    );
    bob.publish("private/3", QoS5::AtLeastOnce, false, "still")
        .expect("publish");
    assert_eq!(next_topic5(&alice_events).as_deref(), Some("private/3"));
}

/// Password verification (Argon2, tens of milliseconds by design) does not stall the event loop: while several
/// uncached logins are being verified, an already connected client's PINGREQ and PUBLISH round trips stay well
/// under the time of one verification.
#[test]
fn connected_client_stays_responsive_while_uncached_logins_are_verified() {
    use mqtt_core::packet::{Packet as P, ProtocolVersion, ReasonCode};
    use std::time::Instant;
    use wire::{connect_packet, tcp, Mqtt, Stream};
    const LOGINS: usize = 8;

    let dir = tempfile::tempdir().expect("temp dir");
    let pw = dir.path().join("users.pw");
    add_user(&pw, "watcher", "wpw");
    for i in 0..LOGINS {
        add_user(&pw, &format!("u{i}"), &format!("p{i}"));
    }
    let broker = BrokerProcess::start(&["--password-file", pw.to_str().expect("utf-8 path")]);
    let v5 = ProtocolVersion::V5;
    // The watcher's own first login is one uncached verification: the yardstick.
    let mut watcher = Mqtt::new(Stream(tcp(&broker)), v5);
    let started = Instant::now();
    assert_eq!(
        watcher.connect("watcher", Some("watcher"), Some(b"wpw")),
        ReasonCode::SUCCESS
    );
    let one_verification = started.elapsed();
    assert_eq!(watcher.subscribe("latency"), ReasonCode::GRANTED_QOS_1);

    let mut logins: Vec<_> = (0..LOGINS)
        .map(|i| {
            let mut login = Mqtt::new(Stream(tcp(&broker)), v5);
            let (user, password) = (format!("u{i}"), format!("p{i}"));
            login.send(&connect_packet(
                v5,
                &format!("login-{i}"),
                Some(&user),
                Some(password.as_bytes()),
            ));
            login
        })
        .collect();
    let burst = Instant::now();
    let mut round_trips = Vec::new();
    while round_trips.len() < 20 || burst.elapsed() < one_verification * LOGINS as u32 {
        let start = Instant::now();
        watcher.send(&P::PingReq);
        assert_eq!(watcher.recv(), Some(P::PingResp));
        watcher.send(&P::Publish(mqtt_core::packet::Publish {
            topic: "latency".into(),
            payload: bytes::Bytes::from_static(b"ping"),
            ..Default::default()
        }));
        assert!(matches!(watcher.recv(), Some(P::Publish(p)) if p.topic == "latency"));
        round_trips.push(start.elapsed());
    }
    for login in &mut logins {
        assert!(matches!(login.recv(), Some(P::ConnAck(ack)) if ack.reason == ReasonCode::SUCCESS));
    }
    let all_logins = burst.elapsed();
    round_trips.sort();
    let max = round_trips[round_trips.len() - 1];
    let median = round_trips[round_trips.len() / 2];
    eprintln!(
        "one verification {one_verification:?}; {LOGINS} logins answered within {all_logins:?}; {} round trips \
         (PINGREQ, then a PUBLISH to itself) meanwhile: median {median:?}, max {max:?}",
        round_trips.len()
    );
    // Verifying on the event loop would stall it for the whole burst (the 8 CONNECTs arrive together: about 8
    // verifications in a row, 179 ms measured before the verifier pool). On 2 shared cores the scheduler alone
    // may delay one round trip by about a verification, so the bound is half the burst, not one verification.
    let stalled = one_verification * (LOGINS as u32 / 2);
    assert!(
        max < stalled,
        "a connected client waited {max:?} for a round trip; one verification takes {one_verification:?}, \
         so the loop was stalled by about {} verifications",
        max.as_millis() / one_verification.as_millis().max(1)
    );
}
