//! Authentication and ACLs on a 3-node cluster of real `mqtt-broker` processes: every node has the same password
//! file, ACL file and listeners (anonymous clients refused). The leader's broker checks every client, its own and
//! those the followers relay to it, exactly as a single broker does (io/tests/e2e_auth.rs). Independent client:
//! rumqttc (3.1.1 and 5). Statement ids are MQTT 5.0's. Also each node's `[http]` listener: `/health` names the
//! node's role and leader and is 503 while it knows none; `/metrics` carries the cluster's own metrics.

mod common;

use common::auth::{add_user, auth_files};
use common::clients::{client4, client5, connack4, connack5};
use common::cluster::{self, cluster_section, elected, wait_for_leader};
use common::http::{get, http_addr, poll};
use common::{wait_for, BrokerProcess};
use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode as Rc5, Packet as Packet5, PubAckReason};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::ConnectReturnCode;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

const ACL: &str = "\
user alice
topic read public/#
topic readwrite alice/#
user bob
topic readwrite public/#
topic readwrite private/#
";

fn node_config(id: u64, peers: &[SocketAddr], files: &Path, http: bool) -> String {
    format!(
        "password_file = \"{}\"\nacl_file = \"{}\"\n\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\nallow_anonymous = false\n\n{}{}",
        files.join("users.pw").display(),
        files.join("acl").display(),
        if http {
            "[http]\nlisten = \"127.0.0.1:0\"\n\n"
        } else {
            ""
        },
        cluster_section(id, "auth", peers, "")
    )
}

fn start_cluster(files: &tempfile::TempDir, http: bool) -> Vec<BrokerProcess> {
    cluster::start_cluster(3, 3, &[], |id, peers| node_config(id, peers, files.path(), http)).nodes
}

/// The last lines of every node's log, for a failure message (a CONNACK missing under load: which node closed
/// the connection, and was there an election?).
fn tails(nodes: &[BrokerProcess]) -> String {
    let tail = |n: &BrokerProcess| {
        let log = n.log.lock().unwrap();
        log[log.len().saturating_sub(20)..].join("\n")
    };
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| format!("--- node {}:\n{}", i + 1, tail(n)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn passwords_and_acls_hold_on_the_leader_and_on_followers() {
    let files = auth_files(ACL);
    let mut nodes = start_cluster(&files, false);
    let leader = elected(&nodes, WAIT);
    let follower_a = &nodes[(leader + 1) % 3];
    let follower_b = &nodes[(leader + 2) % 3];

    // [MQTT-3.2.2-7]: a refusing CONNACK, then close: 0x86 (5) / return code 4 (3.1.1) for a wrong password or
    // an unknown user, 0x87 / 5 without a user name (the listener refuses anonymous clients), on every node.
    for (name, node) in [("leader", &nodes[leader]), ("follower", follower_a)] {
        let (_c, events) = client5(node, &format!("bad5-{name}"), Some(("alice", "nope")));
        let logs = || format!("{name}\n{}", tails(&nodes));
        assert_eq!(connack5(&events), Some(Rc5::BadUserNamePassword), "{}", logs());
        let (_c, events) = client4(node, &format!("bad4-{name}"), Some(("mallory", "apw")));
        assert_eq!(
            connack4(&events),
            Some(ConnectReturnCode::BadUserNamePassword),
            "{}",
            logs()
        );
        let (_c, events) = client4(node, &format!("anon4-{name}"), None);
        assert_eq!(connack4(&events), Some(ConnectReturnCode::NotAuthorized), "{}", logs());
        let (_c, events) = client4(node, &format!("ok4-{name}"), Some(("bob", "bpw")));
        assert_eq!(connack4(&events), Some(ConnectReturnCode::Success), "{}", logs());
    }

    // ACLs: alice on one follower subscribes to everything and gets only what she may read; bob on the other
    // follower is refused a publish to alice/ (PUBACK 0x87 [MQTT-3.4.2-1]) and his private/ message is not
    // delivered to her.
    // Alice's first login: her password is not cached yet, so the leader's verifier threads verify it and the
    // verdict (`AuthDecided`) reaches the leader's broker for this relayed connection.
    let (alice, alice_events) = client5(follower_a, "acl-alice", Some(("alice", "apw")));
    assert_eq!(connack5(&alice_events), Some(Rc5::Success), "{}", tails(&nodes));
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

    // SIGHUP reloads the files on a cluster node too: a user added afterwards logs in through a follower.
    let (_c, events) = client4(follower_b, "carol-before", Some(("carol", "cpw")));
    assert_eq!(connack4(&events), Some(ConnectReturnCode::BadUserNamePassword));
    add_user(&files.path().join("users.pw"), "carol", "cpw");
    for node in &nodes {
        node.signal(libc::SIGHUP);
        assert!(
            node.wait_for_log("password and ACL files reloaded", WAIT),
            "{}",
            node.log_text()
        );
    }
    let (_c, events) = client4(follower_b, "carol-after", Some(("carol", "cpw")));
    assert_eq!(
        connack4(&events),
        Some(ConnectReturnCode::Success),
        "{}",
        nodes[leader].log_text()
    );
    drop((alice, alice_events, bob, bob_events));

    // The leader is SIGKILLed: the broker the new leader builds checks the same (reloaded) files.
    drop(nodes.remove(leader).crash());
    let since: Vec<usize> = nodes.iter().map(|n| n.log.lock().unwrap().len()).collect();
    let new_leader = &nodes[wait_for_leader(&nodes, &since, WAIT).expect("a new leader is elected")];
    let (_c, events) = client5(new_leader, "bad5-new-leader", Some(("alice", "nope")));
    assert_eq!(connack5(&events), Some(Rc5::BadUserNamePassword));
    let (_c, events) = client4(new_leader, "carol-new-leader", Some(("carol", "cpw")));
    assert_eq!(
        connack4(&events),
        Some(ConnectReturnCode::Success),
        "{}",
        new_leader.log_text()
    );
    let (alice, alice_events) = client5(new_leader, "acl-alice-2", Some(("alice", "apw")));
    assert_eq!(connack5(&alice_events), Some(Rc5::Success));
    // Alice may only read public/ [MQTT-3.4.2-1]: 0x87 Not authorized.
    alice
        .publish("public/2", QoS5::AtLeastOnce, false, "not hers")
        .expect("publish");
    let ack = wait_for(&alice_events, WAIT, |e| match e {
        Ok(v5::Event::Incoming(Packet5::PubAck(ack))) => Some(ack.reason),
        _ => None,
    });
    assert_eq!(ack, Some(PubAckReason::NotAuthorized));
}

#[test]
fn health_names_the_leader_on_every_node_and_is_503_without_one() {
    let files = auth_files(ACL);
    let mut nodes = start_cluster(&files, true);
    let leader = wait_for_leader(&nodes, &[0, 0, 0], WAIT).expect("a leader is elected");
    let leader_id = leader + 1;
    let https: Vec<SocketAddr> = nodes.iter().map(http_addr).collect();
    for (i, http) in https.iter().enumerate() {
        let named = format!("leader node {leader_id}, applied index ");
        let (status, body) = poll(*http, "/health", |(s, b)| *s == 200 && b.contains(&named));
        assert_eq!(status, 200, "node {}: {body}", i + 1);
        let role = if i == leader { "leader" } else { "follower" };
        assert!(
            body.starts_with("ok\n") && body.contains(&format!("cluster node {}: role {role}, ", i + 1)),
            "node {}: {body}",
            i + 1
        );
        assert!(body.contains(&named), "node {}: {body}", i + 1);
        let (status, metrics) = get(*http, "/metrics");
        assert_eq!(status, 200);
        for line in [
            "mqtt_cluster_held_qos0_dropped_total 0",
            &format!("mqtt_cluster_leader {leader_id}"),
            &format!("mqtt_cluster_is_leader {}", u8::from(i == leader)),
        ] {
            assert!(metrics.contains(line), "node {}: {line} in\n{metrics}", i + 1);
        }
    }

    // The broker's own metrics are the leader's broker's: a client connected through a follower counts there.
    let (_bob, bob_events) = client4(&nodes[(leader + 1) % 3], "metrics-bob", Some(("bob", "bpw")));
    assert_eq!(connack4(&bob_events), Some(ConnectReturnCode::Success));
    let (_, metrics) = poll(https[leader], "/metrics", |(_, m)| {
        m.contains("mqtt_clients_connected 1\n")
    });
    assert!(metrics.contains("mqtt_clients_connected 1\n"), "{metrics}");

    // Alone, a node loses its leader (a leader steps down without a quorum, a follower stops hearing it):
    // unhealthy, and the body says why.
    let survivor = (leader + 1) % 3;
    let survivor_http = https[survivor];
    let survivor_node = nodes.remove(survivor);
    drop(nodes);
    let (status, body) = poll(survivor_http, "/health", |(s, _)| *s == 503);
    assert_eq!(status, 503, "{body}\n{}", survivor_node.log_text());
    assert!(
        body.contains("knows no leader") && body.contains("leader none"),
        "{body}"
    );
}
