//! Authentication and ACLs on a 3-node cluster of real `mqtt-broker` processes: every node has the same password
//! file, ACL file and listeners (anonymous clients refused). The leader's broker checks every client, its own and
//! those the followers relay to it, exactly as a single broker does (io/tests/e2e_auth.rs). Independent client:
//! rumqttc (3.1.1 and 5). Statement ids are MQTT 5.0's.

mod common;

use common::{pump4, pump5, wait_for, BrokerProcess, Events4, Events5, BIN};
use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode as Rc5, Packet as Packet5, PubAckReason};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::{Client, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

const ACL: &str = "\
user alice
topic read public/#
topic readwrite alice/#
user bob
topic readwrite public/#
topic readwrite private/#
";

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

fn add_user(file: &Path, user: &str, password: &str) {
    let out = Command::new(BIN)
        .arg("passwd")
        .arg(file)
        .args([user, "--password", password])
        .output()
        .expect("run passwd");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn node_config(id: u64, peers: &[SocketAddr], files: &Path) -> String {
    let peers: Vec<String> = peers
        .iter()
        .enumerate()
        .map(|(i, a)| format!("  {{ id = {}, address = \"{a}\" }},", i + 1))
        .collect();
    format!(
        "password_file = \"{}\"\nacl_file = \"{}\"\n\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\nallow_anonymous = false\n\n\
         [cluster]\nnode_id = {id}\ncluster_id = \"auth\"\n\
         tick_ms = 50\nelection_ticks = 10\nheartbeat_ticks = 2\npeers = [\n{}\n]\n",
        files.join("users.pw").display(),
        files.join("acl").display(),
        peers.join("\n")
    )
}

fn wait_for_leader(nodes: &[BrokerProcess]) -> Option<usize> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        for (i, node) in nodes.iter().enumerate() {
            if node.log.lock().unwrap().iter().any(|l| l.contains("serving clients")) {
                return Some(i);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn client4(node: &BrokerProcess, id: &str, credentials: Option<(&str, &str)>) -> (Client, Events4) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", node.port());
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some((user, password)) = credentials {
        opts.set_credentials(user, password);
    }
    let (client, connection) = Client::new(opts, 64);
    (client, pump4(connection))
}

fn client5(node: &BrokerProcess, id: &str, credentials: Option<(&str, &str)>) -> (v5::Client, Events5) {
    let mut opts = v5::MqttOptions::new(id, "127.0.0.1", node.port());
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some((user, password)) = credentials {
        opts.set_credentials(user, password);
    }
    let (client, connection) = v5::Client::new(opts, 64);
    (client, pump5(connection))
}

fn connack4(events: &Events4) -> Option<ConnectReturnCode> {
    wait_for(events, WAIT, |e| match e {
        Ok(Event::Incoming(Packet::ConnAck(ack))) => Some(ack.code),
        Err(ConnectionError::ConnectionRefused(code)) => Some(code),
        _ => None,
    })
}

fn connack5(events: &Events5) -> Option<Rc5> {
    wait_for(events, WAIT, |e| match e {
        Ok(v5::Event::Incoming(Packet5::ConnAck(ack))) => Some(ack.code),
        Err(v5::ConnectionError::ConnectionRefused(code)) => Some(code),
        _ => None,
    })
}

#[test]
fn passwords_and_acls_hold_on_the_leader_and_on_followers() {
    let files = tempfile::tempdir().expect("temp dir");
    add_user(&files.path().join("users.pw"), "alice", "apw");
    add_user(&files.path().join("users.pw"), "bob", "bpw");
    std::fs::write(files.path().join("acl"), ACL).expect("write acl");
    let peers: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let nodes: Vec<BrokerProcess> = (1..=3)
        .map(|id| BrokerProcess::start_with_config(&node_config(id, &peers, files.path()), &[]))
        .collect();
    let leader = wait_for_leader(&nodes).expect("a leader is elected");
    let follower_a = &nodes[(leader + 1) % 3];
    let follower_b = &nodes[(leader + 2) % 3];
    for f in [follower_a, follower_b] {
        assert!(
            f.wait_for_log(&format!("leader Some({})", leader + 1), WAIT),
            "{}",
            f.log_text()
        );
    }

    // [MQTT-3.2.2-7]: a refusing CONNACK, then close: 0x86 (5) / return code 4 (3.1.1) for a wrong password or
    // an unknown user, 0x87 / 5 without a user name (the listener refuses anonymous clients), on every node.
    for (name, node) in [("leader", &nodes[leader]), ("follower", follower_a)] {
        let (_c, events) = client5(node, &format!("bad5-{name}"), Some(("alice", "nope")));
        assert_eq!(connack5(&events), Some(Rc5::BadUserNamePassword), "{name}");
        let (_c, events) = client4(node, &format!("bad4-{name}"), Some(("mallory", "apw")));
        assert_eq!(
            connack4(&events),
            Some(ConnectReturnCode::BadUserNamePassword),
            "{name}"
        );
        let (_c, events) = client4(node, &format!("anon4-{name}"), None);
        assert_eq!(connack4(&events), Some(ConnectReturnCode::NotAuthorized), "{name}");
        let (_c, events) = client4(node, &format!("ok4-{name}"), Some(("bob", "bpw")));
        assert_eq!(connack4(&events), Some(ConnectReturnCode::Success), "{name}");
    }

    // ACLs: alice on one follower subscribes to everything and gets only what she may read; bob on the other
    // follower is refused a publish to alice/ (PUBACK 0x87 [MQTT-3.4.2-1]) and his private/ message is not
    // delivered to her.
    let (alice, alice_events) = client5(follower_a, "acl-alice", Some(("alice", "apw")));
    assert_eq!(connack5(&alice_events), Some(Rc5::Success));
    alice.subscribe("#", QoS5::AtLeastOnce).expect("subscribe");
    assert!(wait_for(&alice_events, WAIT, |e| matches!(
        e,
        Ok(v5::Event::Incoming(Packet5::SubAck(_)))
    )
    .then_some(()))
    .is_some());
    let (bob, bob_events) = client5(follower_b, "acl-bob", Some(("bob", "bpw")));
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
    let first = wait_for(&alice_events, WAIT, |e| match e {
        Ok(v5::Event::Incoming(Packet5::Publish(p))) => Some(String::from_utf8_lossy(&p.topic).into_owned()),
        _ => None,
    });
    assert_eq!(first.as_deref(), Some("public/1"), "{}", nodes[leader].log_text());
}
