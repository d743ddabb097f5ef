//! A 3-node cluster of real `mqtt-broker` processes on loopback: the leader is SIGKILLed in the middle of a QoS 1
//! and a QoS 2 publish stream; once another node leads, every acknowledged message is in its state (a persistent
//! subscriber gets each of them; the QoS 2 ones exactly once). Clients on followers are relayed to the leader: a
//! subscriber on one follower receives what a publisher on the other sends. Independent client: rumqttc.

mod common;

use common::clients::{connect4, count_acks, publish_stream, try_connect5};
use common::cluster::{elected, free_addr, node_config, start_cluster, start_cluster_on, wait_for_leader};
use common::{wait_for, BrokerProcess, Events4 as Events};
use rumqttc::{Client, Event, Packet, QoS};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
/// Messages per stream: enough that the kill lands mid-stream on a fast machine, few enough for a busy one.
const N: usize = 300;

#[test]
fn acknowledged_messages_survive_sigkill_of_the_leader() {
    let started = Instant::now();
    let mut nodes = start_cluster(3, 3, &[], |id, peers| node_config(id, peers, "")).slots();
    let leader = wait_for_leader(&nodes, &[0, 0, 0], WAIT).expect("a leader is elected");
    let node = nodes[leader].as_ref().expect("leader runs");

    // A persistent session subscribes (3.1.1 Clean Session 0 [MQTT-3.1.2-4]) and goes offline.
    let (sub, sub_events) = connect4(node, "durable-sub", false);
    sub.subscribe("crash/#", QoS::ExactlyOnce).expect("subscribe");
    assert!(wait_for(&sub_events, WAIT, |e| matches!(
        e,
        Ok(Event::Incoming(Packet::SubAck(_)))
    )
    .then_some(()))
    .is_some());
    sub.disconnect().expect("disconnect");
    drop(sub_events);

    let (q1, q1_events) = connect4(node, "pub-q1", true);
    let (q2, q2_events) = connect4(node, "pub-q2", true);
    publish_stream(q1, "crash/q1", QoS::AtLeastOnce, "q1", N);
    publish_stream(q2, "crash/q2", QoS::ExactlyOnce, "q2", N);
    let deadline = Instant::now() + WAIT;
    let mut acked_q1 = count_acks(&q1_events, QoS::AtLeastOnce, deadline, N / 4);
    let mut acked_q2 = count_acks(&q2_events, QoS::ExactlyOnce, deadline, N / 4);
    let since: Vec<usize> = nodes
        .iter()
        .map(|n| n.as_ref().map_or(0, |n| n.log.lock().unwrap().len()))
        .collect();
    let killed = nodes[leader].take().expect("leader runs");
    let killed_log = killed.log_text();
    let killed_dir = killed.crash();
    acked_q1 += count_acks(
        &q1_events,
        QoS::AtLeastOnce,
        Instant::now() + Duration::from_millis(300),
        N,
    );
    acked_q2 += count_acks(
        &q2_events,
        QoS::ExactlyOnce,
        Instant::now() + Duration::from_millis(300),
        N,
    );
    assert!(
        acked_q1 > 0 && acked_q2 > 0,
        "some messages were acknowledged before the kill"
    );
    assert!(acked_q1 < N || acked_q2 < N, "the kill happened mid-stream");

    let new_leader = wait_for_leader(&nodes, &since, WAIT).unwrap_or_else(|| {
        let logs: Vec<String> = nodes.iter().flatten().map(|n| n.log_text()).collect();
        panic!(
            "no new leader after the kill:\n{}\n---\n{killed_log}",
            logs.join("\n---\n")
        )
    });
    let node = nodes[new_leader].as_ref().expect("new leader runs");
    let (_sub, sub_events) = connect4(node, "durable-sub", false);
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(p) = wait_for(&sub_events, Duration::from_secs(3), |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) => Some(p),
        _ => None,
    }) {
        *received
            .entry(String::from_utf8_lossy(&p.payload).into_owned())
            .or_default() += 1;
    }
    for i in 0..acked_q1 {
        assert!(
            received.contains_key(&format!("q1-{i}")),
            "acknowledged QoS 1 message q1-{i} lost (acked {acked_q1}, received {})",
            received.len()
        );
    }
    for i in 0..acked_q2 {
        let copies = received.get(&format!("q2-{i}")).copied().unwrap_or(0);
        assert_eq!(
            copies, 1,
            "acknowledged QoS 2 message q2-{i} must arrive exactly once [MQTT-4.3.3]"
        );
    }
    assert!(
        received
            .iter()
            .filter(|(k, _)| k.starts_with("q2-"))
            .all(|(_, n)| *n == 1),
        "no QoS 2 duplicates at all"
    );

    // The killed node restarts on its files (the Raft log as the kill left it) and rejoins as a follower.
    let config = killed_dir.path().join("broker.toml");
    let data = killed_dir.path().join("data");
    let config_arg = config.to_str().expect("utf-8 path").to_string();
    let restarted = BrokerProcess::start_with_data_dir(killed_dir, &data, &["--config", &config_arg]);
    let new_leader_id = new_leader + 1;
    assert!(
        restarted.wait_for_log(&format!("leader Some({new_leader_id})"), WAIT),
        "the restarted node follows node {new_leader_id}: {}",
        restarted.log_text()
    );
    let recovered = restarted.log_text();
    let line = recovered
        .lines()
        .find(|l| l.contains("log entries recovered"))
        .unwrap_or_default();
    assert!(!line.contains(" 0 log entries"), "its Raft log was read back: {line}");
    eprintln!(
        "cluster failover: {acked_q1} QoS 1 and {acked_q2} QoS 2 acknowledged before the kill, {} distinct \
         received from node {} after it; {:.1} s in all",
        received.len(),
        new_leader + 1,
        started.elapsed().as_secs_f64()
    );
}

/// Publishes `n` messages `{prefix}-{i}` and waits for every acknowledgement (PUBACK, or PUBCOMP for QoS 2).
fn publish_all(client: &Client, events: &Events, topic: &str, qos: QoS, prefix: &str, n: usize) {
    for i in 0..n {
        client
            .publish(topic, qos, false, format!("{prefix}-{i}").into_bytes())
            .expect("publish");
    }
    let mut acked = 0;
    let deadline = Instant::now() + WAIT;
    while acked < n && Instant::now() < deadline {
        match events.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) if qos == QoS::AtLeastOnce => acked += 1,
            Ok(Ok(Event::Incoming(Packet::PubComp(_)))) if qos == QoS::ExactlyOnce => acked += 1,
            Ok(Err(e)) => panic!("{prefix}: connection failed: {e}"),
            _ => {}
        }
    }
    assert_eq!(acked, n, "{prefix}: every message acknowledged");
}

#[test]
fn clients_on_followers_are_relayed_to_the_leader() {
    let nodes = start_cluster(3, 3, &[], |id, peers| node_config(id, peers, "")).slots();
    let leader = elected(&nodes, WAIT);
    let follower_a = nodes[(leader + 1) % 3].as_ref().expect("runs");
    let follower_b = nodes[(leader + 2) % 3].as_ref().expect("runs");

    // A persistent QoS 2 subscriber on one follower [MQTT-3.1.2-4].
    let (sub, sub_events) = connect4(follower_a, "relay-sub", false);
    sub.subscribe("relay/#", QoS::ExactlyOnce).expect("subscribe");
    assert!(wait_for(&sub_events, WAIT, |e| matches!(
        e,
        Ok(Event::Incoming(Packet::SubAck(_)))
    )
    .then_some(()))
    .is_some());

    // Publishers on the other follower and on the leader.
    const M: usize = 50;
    let (p1, p1_events) = connect4(follower_b, "relay-pub-q1", true);
    let (p2, p2_events) = connect4(follower_b, "relay-pub-q2", true);
    let (pl, pl_events) = connect4(nodes[leader].as_ref().expect("runs"), "relay-pub-leader", true);
    publish_all(&p1, &p1_events, "relay/q1", QoS::AtLeastOnce, "q1", M);
    publish_all(&p2, &p2_events, "relay/q2", QoS::ExactlyOnce, "q2", M);
    publish_all(&pl, &pl_events, "relay/lq2", QoS::ExactlyOnce, "lq2", M);

    let mut received: Vec<String> = Vec::new();
    while received.len() < 3 * M {
        let Some(p) = wait_for(&sub_events, WAIT, |e| match e {
            Ok(Event::Incoming(Packet::Publish(p))) => Some(p),
            _ => None,
        }) else {
            break;
        };
        received.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    for prefix in ["q1", "q2", "lq2"] {
        let got: Vec<&String> = received
            .iter()
            .filter(|r| r.starts_with(&format!("{prefix}-")))
            .collect();
        let want: Vec<String> = (0..M).map(|i| format!("{prefix}-{i}")).collect();
        // In order per publisher [MQTT-4.6.0-5], each exactly once (QoS 1 may duplicate only after a reconnect,
        // and there was none).
        assert_eq!(
            got.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            want.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "{prefix}: every message once, in order; leader log:\n{}",
            nodes[leader].as_ref().map(|n| n.log_text()).unwrap_or_default()
        );
    }
    assert!(
        follower_a.wait_for_log("relayed to node", WAIT),
        "the follower logs its relayed clients: {}",
        follower_a.log_text()
    );

    // `cluster status`, from any node's configuration: every member, one leader, each follower's lag.
    let config = follower_b.data_dir.path().join("broker.toml");
    let output = std::process::Command::new(common::BIN)
        .args(["--config", config.to_str().expect("utf-8 path"), "cluster", "status"])
        .output()
        .expect("run mqtt-broker cluster status");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let leader_id = leader + 1;
    assert!(
        report.contains(&format!("leader: node {leader_id} in term")),
        "{report}"
    );
    assert_eq!(report.matches(" Leader term ").count(), 1, "{report}");
    assert_eq!(report.matches(" Follower term ").count(), 2, "{report}");
    assert!(report.contains("(serving clients)"), "{report}");
    for id in 1..=3 {
        assert!(
            report.contains(&format!("  node {id}: replicated through ")),
            "{report}"
        );
    }
    assert!(report.contains("lag "), "{report}");
    eprintln!("{report}");
}

/// Another process takes a node's cluster port between `free_addr` and the node's bind (it happened under a
/// process opening thousands of client sockets): the node exits with "Address already in use", and since every
/// node's configuration names every address, the helper starts the whole cluster again on fresh addresses.
#[test]
fn a_cluster_port_taken_before_the_node_binds_it_is_replaced_and_the_cluster_starts() {
    // The first address handed out is one this test listens on: node 1 cannot bind it.
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = occupied.local_addr().expect("addr");
    let mut first = true;
    let addrs = || if std::mem::take(&mut first) { taken } else { free_addr() };
    let cluster = start_cluster_on(addrs, 3, 3, &[], |id, peers| node_config(id, peers, ""));
    assert_eq!(
        cluster.attempts, 2,
        "the first attempt failed on the taken port, the second started"
    );
    assert!(!cluster.peers.contains(&taken), "{:?} replaced", cluster.peers);
    let nodes = cluster.slots();
    let leader = elected(&nodes, WAIT);
    // The cluster works: a client of the leader is served.
    let (client, events) = connect4(nodes[leader].as_ref().expect("runs"), "after-retry", true);
    client.disconnect().expect("disconnect");
    drop(events);
    drop(occupied);
}

#[test]
fn a_data_directory_of_another_cluster_is_refused_at_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // A directory that node 1 of cluster "other" has used.
    drop(mqtt_io::cluster::disk::RaftDisk::open(&data, "other", 1, false).expect("other cluster's directory"));
    let peers: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let config = dir.path().join("node1.toml");
    std::fs::write(&config, node_config(1, &peers, "")).expect("config");
    let output = std::process::Command::new(common::BIN)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run mqtt-broker");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let file = data.join("cluster.id").display().to_string();
    assert!(
        stderr.contains(&file) && stderr.contains("\"other\"") && stderr.contains("\"test\""),
        "{stderr}"
    );
}

mod failover {
    //! The leader is SIGKILLed under MQTT 5 clients held by the followers: they are told (DISCONNECT 0x8B), and a
    //! persistent session resumes on another node with Session Present and its unacknowledged messages resent.

    use super::*;
    use rumqttc::v5::mqttbytes::v5::{DisconnectReasonCode, Packet as Packet5};
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::{self, ConnectionError, StateError};

    fn opts(node: &BrokerProcess, id: &str) -> v5::MqttOptions {
        let mut opts = v5::MqttOptions::new(id, "127.0.0.1", node.port());
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_start(false);
        opts.set_session_expiry_interval(Some(300));
        opts.set_connection_timeout(1);
        opts
    }

    #[test]
    fn a_persistent_session_resumes_on_another_node_after_the_leader_is_killed() {
        let mut nodes = start_cluster(3, 3, &[], |id, peers| node_config(id, peers, "")).slots();
        let leader = elected(&nodes, WAIT);
        let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);

        // The subscriber on follower a acknowledges nothing: what it got stays owed to its session.
        let mut sub_opts = opts(nodes[a].as_ref().expect("runs"), "fo-sub");
        sub_opts.set_manual_acks(true);
        let (sub, sub_events, present) = try_connect5(sub_opts).expect("the follower relays the CONNECT");
        assert!(!present);
        sub.subscribe("fo/#", QoS5::ExactlyOnce).expect("subscribe");
        assert!(wait_for(&sub_events, WAIT, |e| matches!(
            e,
            Ok(v5::Event::Incoming(Packet5::SubAck(_)))
        )
        .then_some(()))
        .is_some());

        const M: usize = 10;
        let (publisher, pub_events, _) =
            try_connect5(opts(nodes[b].as_ref().expect("runs"), "fo-pub")).expect("publisher connects");
        for i in 0..M {
            publisher
                .publish("fo/q1", QoS5::AtLeastOnce, false, format!("a-{i}"))
                .expect("publish");
            publisher
                .publish("fo/q2", QoS5::ExactlyOnce, false, format!("b-{i}"))
                .expect("publish");
        }
        let mut acked = 0;
        while acked < 2 * M {
            match wait_for(&pub_events, WAIT, |e| match e {
                Ok(v5::Event::Incoming(Packet5::PubAck(_) | Packet5::PubComp(_))) => Some(()),
                _ => None,
            }) {
                Some(()) => acked += 1,
                None => panic!("only {acked} acknowledged"),
            }
        }
        let mut first = 0;
        while first < 2 * M {
            if wait_for(&sub_events, WAIT, |e| {
                matches!(e, Ok(v5::Event::Incoming(Packet5::Publish(_)))).then_some(())
            })
            .is_none()
            {
                break;
            }
            first += 1;
        }
        assert_eq!(first, 2 * M, "the subscriber got every message before the kill");

        let killed = nodes[leader].take().expect("leader runs");
        let killed_at = Instant::now();
        let _dir = killed.crash();

        // The follower holding the subscriber tells it why its connection ends [MQTT-3.14.2-1].
        let reason = wait_for(&sub_events, WAIT, |e| match e {
            Err(ConnectionError::MqttState(StateError::ServerDisconnect { reason_code, .. })) => {
                Some(Some(reason_code))
            }
            Err(e) => {
                eprintln!("subscriber connection ended: {e:?}");
                Some(None)
            }
            _ => None,
        });
        assert_eq!(
            reason,
            Some(Some(DisconnectReasonCode::ServerShuttingDown)),
            "{}",
            nodes[a].as_ref().map(|n| n.log_text()).unwrap_or_default()
        );

        // It reconnects, to either survivor in turn, until a node serves its session again [MQTT-3.2.2-2].
        let mut attempt = 0;
        let (_sub, sub_events) = loop {
            assert!(
                killed_at.elapsed() < WAIT,
                "no node resumed the session within {WAIT:?}"
            );
            let node = nodes[[a, b][attempt % 2]].as_ref().expect("runs");
            attempt += 1;
            match try_connect5(opts(node, "fo-sub")) {
                Some((client, events, present)) => {
                    assert!(present, "the session survived the leader's loss");
                    break (client, events);
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let failover = killed_at.elapsed();

        // Every message it had not acknowledged is sent again [MQTT-4.4.0-1], each QoS 2 one exactly once.
        let mut again: BTreeMap<String, usize> = BTreeMap::new();
        while let Some(p) = wait_for(&sub_events, Duration::from_secs(3), |e| match e {
            Ok(v5::Event::Incoming(Packet5::Publish(p))) => Some(p),
            _ => None,
        }) {
            *again
                .entry(String::from_utf8_lossy(&p.payload).into_owned())
                .or_default() += 1;
        }
        for i in 0..M {
            assert!(again.contains_key(&format!("a-{i}")), "QoS 1 a-{i} resent: {again:?}");
            assert_eq!(again.get(&format!("b-{i}")), Some(&1), "QoS 2 b-{i} once: {again:?}");
        }
        eprintln!(
            "cluster failover: leader SIGKILLed -> CONNACK with Session Present on node {} after {} ms ({attempt} attempt(s))",
            [a, b][(attempt - 1) % 2] + 1,
            failover.as_millis()
        );
    }
}
