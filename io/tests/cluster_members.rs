//! Membership changes at run time with real processes: a 3-node cluster gains a fourth node (`cluster add-node`,
//! the new node catches up and becomes a voter), loses its leader (`cluster remove-node` of the leader: it stops
//! and says so, another node leads), then loses one more original node to SIGKILL. Through all of it a persistent
//! QoS 1 subscriber receives every message whose PUBACK a publisher got. Bad requests get a clear error.
//! Independent client: rumqttc (MQTT 3.1.1).

mod common;

use common::cluster::{cluster_command, elected, log_lengths, node_config, start_cluster, start_node, wait_for_leader};
use common::{pump4, wait_for, BrokerProcess, Events4 as Events};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
/// Messages published in each phase.
const PHASE: usize = 15;

/// Connects `id` to `node`; `None` if the node closes the connection without a CONNACK (no leader yet).
fn try_connect(node: &BrokerProcess, id: &str, clean: bool) -> Option<(Client, Events)> {
    let mut opts = MqttOptions::new(id, "127.0.0.1", node.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(clean);
    let (client, connection) = Client::new(opts, 64);
    let events = pump4(connection);
    wait_for(&events, Duration::from_secs(3), |e| match e {
        Ok(Event::Incoming(Packet::ConnAck(_))) => Some(Some(())),
        Err(_) => Some(None),
        _ => None,
    })
    .flatten()?;
    Some((client, events))
}

/// Connects, retrying until a node serves (an election may be under way) or `WAIT` passes.
fn connect(node: &BrokerProcess, id: &str, clean: bool) -> (Client, Events) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(pair) = try_connect(node, id, clean) {
            return pair;
        }
        assert!(Instant::now() < deadline, "{id} never connected: {}", node.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Publishes `phase-0` .. `phase-{PHASE-1}` at QoS 1 through `node`, one at a time; returns the payloads whose
/// PUBACK arrived. A connection that ends is replaced (a failover); what it had not acknowledged is published again
/// under the same payload, so "acknowledged" means at least one PUBACK for it.
fn publish_phase(node: &BrokerProcess, phase: &str) -> BTreeSet<String> {
    let mut acked = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    let mut i = 0;
    while i < PHASE {
        assert!(Instant::now() < deadline, "phase {phase}: only {i} acknowledged");
        let (client, events) = connect(node, &format!("pub-{phase}"), true);
        while i < PHASE {
            let payload = format!("{phase}-{i}");
            if client
                .publish("members/t", QoS::AtLeastOnce, false, payload.clone())
                .is_err()
            {
                break;
            }
            let acked_now = wait_for(&events, Duration::from_secs(5), |e| match e {
                Ok(Event::Incoming(Packet::PubAck(_))) => Some(true),
                Err(_) => Some(false),
                _ => None,
            });
            if acked_now != Some(true) {
                break;
            }
            acked.insert(payload);
            i += 1;
        }
        let _ = client.disconnect();
    }
    acked
}

/// Drains the payloads a subscriber's connection received so far.
fn received(events: &Events, into: &mut BTreeSet<String>) {
    while let Ok(event) = events.recv_timeout(Duration::from_millis(200)) {
        if let Ok(Event::Incoming(Packet::Publish(p))) = event {
            into.insert(String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
}

#[test]
fn members_are_added_and_removed_at_run_time_and_nothing_acknowledged_is_lost() {
    let started = start_cluster(3, 3, &[], |id, peers| node_config(id, peers, ""));
    let peers = started.peers.clone();
    let mut nodes = started.slots();
    let leader = elected(&nodes, WAIT);
    let leader_id = leader as u64 + 1;
    // The original that survives everything, and the one killed at the end.
    let (stays, killed) = ((leader + 1) % 3, (leader + 2) % 3);

    // A persistent QoS 1 subscriber, through a follower.
    let (sub, sub_events) = connect(nodes[stays].as_ref().expect("runs"), "members-sub", false);
    sub.subscribe("members/#", QoS::AtLeastOnce).expect("subscribe");
    assert!(wait_for(&sub_events, WAIT, |e| matches!(
        e,
        Ok(Event::Incoming(Packet::SubAck(_)))
    )
    .then_some(()))
    .is_some());
    let mut acked = publish_phase(nodes[stays].as_ref().expect("runs"), "a");

    // Node 4 starts naming the current members and itself, then is added through the leader.
    // Its own address is only in its configuration and the add-node command: a taken one is replaced.
    let (four_addr, four) = start_node(&[], |own| {
        let members: Vec<SocketAddr> = peers.iter().copied().chain([own]).collect();
        node_config(4, &members, "join = true")
    });
    nodes.push(Some(four));
    let stays_node = nodes[stays].as_ref().expect("runs");
    let address = four_addr.to_string();
    let (ok, out, err) = cluster_command(stays_node, &["add-node", "--id", "4", "--address", &address]);
    assert!(ok, "add-node: {out}{err}");
    assert!(out.contains("node 4 (") && out.contains("voters now 1,2,3,4"), "{out}");
    let four = nodes[3].as_ref().expect("runs");
    assert!(
        four.wait_for_log("voters now 1,2,3,4", WAIT),
        "node 4 applies its own addition: {}",
        four.log_text()
    );
    acked.extend(publish_phase(four, "b"));

    // Bad requests: a clear error, nothing changed.
    let (ok, _, err) = cluster_command(stays_node, &["add-node", "--id", "4", "--address", &address]);
    assert!(!ok && err.contains("node 4 is a member already"), "{err}");
    let (ok, _, err) = cluster_command(stays_node, &["remove-node", "--id", "9"]);
    assert!(
        !ok && err.contains("node 9 is not a member (members: 1,2,3,4)"),
        "{err}"
    );

    // The leader is removed: it says so and stops; another node leads.
    let since = log_lengths(&nodes);
    let (ok, out, err) = cluster_command(stays_node, &["remove-node", "--id", &leader_id.to_string()]);
    assert!(ok, "remove-node: {out}{err}");
    let mut old_leader = nodes[leader].take().expect("runs");
    let status = old_leader.wait_exit(WAIT);
    assert!(
        status.is_some_and(|s| !s.success()),
        "the removed node stops: {status:?}"
    );
    assert!(
        old_leader.log_text().contains("was removed from the cluster"),
        "{}",
        old_leader.log_text()
    );
    let new_leader = wait_for_leader(&nodes, &since, WAIT).expect("another node leads");
    assert_ne!(new_leader, leader);
    let remaining: Vec<String> = [stays, killed, 3].iter().map(|i| (i + 1).to_string()).collect();
    let mut remaining_sorted = remaining.clone();
    remaining_sorted.sort();
    let voters = remaining_sorted.join(",");
    let (ok, report, _) = cluster_command(nodes[stays].as_ref().expect("runs"), &["status"]);
    assert!(ok && report.contains(&format!("voters: {voters}")), "{report}");
    assert!(
        report.contains("node 4 at "),
        "the status finds the added node: {report}"
    );
    // The removed node's data directory does not start it again.
    let dir = old_leader.crash();
    let config = std::fs::read_to_string(dir.path().join("broker.toml")).expect("config");
    let mut again = std::process::Command::new(common::BIN)
        .args(["--config", dir.path().join("broker.toml").to_str().expect("utf-8")])
        .args(["--data-dir", dir.path().join("data").to_str().expect("utf-8")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = again.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = again.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut said = String::new();
    std::io::Read::read_to_string(&mut again.stderr.take().expect("piped"), &mut said).expect("stderr");
    assert!(
        status.is_some_and(|s| !s.success()) && said.contains("was removed from the cluster"),
        "the removed node's data does not start it: {status:?}\n{config}\n{said}"
    );
    acked.extend(publish_phase(nodes[3].as_ref().expect("runs"), "c"));

    // One more original is lost: two of the three voters left still form a majority.
    let _ = nodes[killed].take().expect("runs").crash();
    acked.extend(publish_phase(nodes[stays].as_ref().expect("runs"), "d"));

    // The subscriber's session resumes on a survivor; every acknowledged message arrives.
    let mut got = BTreeSet::new();
    received(&sub_events, &mut got);
    drop(sub);
    let deadline = Instant::now() + WAIT;
    let mut attempt = 0;
    while !acked.is_subset(&got) && Instant::now() < deadline {
        let node = nodes[[stays, 3][attempt % 2]].as_ref().expect("runs");
        attempt += 1;
        if let Some((_client, events)) = try_connect(node, "members-sub", false) {
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until && !acked.is_subset(&got) {
                received(&events, &mut got);
            }
        }
    }
    let lost: Vec<&String> = acked.difference(&got).collect();
    assert_eq!(acked.len(), 4 * PHASE);
    assert!(lost.is_empty(), "acknowledged but never delivered: {lost:?}");
    eprintln!(
        "members: node 4 added, leader node {leader_id} removed (node {} leads after), node {} killed; {} acknowledged, \
         all delivered",
        new_leader + 1,
        killed + 1,
        acked.len()
    );
}
