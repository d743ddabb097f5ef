//! A three-node cluster driven in memory (instant network, an always-synced "disk" per node): election, the commit
//! rule for a client's acknowledgement, and refusal of bad peer messages.

use bytes::BytesMut;
use mqtt_cluster::eraftpb::{Entry, HardState, Snapshot};
use mqtt_cluster::relay::{self, RelayKind};
use mqtt_cluster::wire::{self, PeerError};
use mqtt_cluster::{ClusterEvent, Node, NodeConfig, NodeInput, NodeOutput, Recovered};
use mqtt_core::broker::{ConnectionId, Input, ListenerId, Output};
use mqtt_core::codec::{self, Decoder};
use mqtt_core::packet::{Packet, ProtocolVersion, Publish, QoS, ReasonCode};
use mqtt_core::time::Time;
use std::collections::VecDeque;

const CLUSTER: u64 = 0xc1;

#[derive(Default)]
struct Disk {
    hs: HardState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

struct Cluster {
    nodes: Vec<Node>,
    disks: Vec<Disk>,
    now: Time,
    /// (from, to, message) in flight.
    network: VecDeque<(u64, u64, bytes::Bytes)>,
    /// Client outputs, by node index.
    client_outputs: Vec<Vec<Output>>,
    events: Vec<(u64, ClusterEvent)>,
    /// A node cut off from the others: messages from and to it are dropped.
    isolated: Option<u64>,
    /// A node whose disk has not synced yet: its writes, and the outputs after them, wait in `unsynced` for `sync`.
    slow_disk: Option<usize>,
    unsynced: VecDeque<NodeOutput>,
    /// Snapshots written (at once, on an always-synced disk), to hand back to their nodes.
    written: Vec<(usize, Snapshot)>,
}

fn config(id: u64) -> NodeConfig {
    let mut config = NodeConfig::new(id, vec![1, 2, 3], CLUSTER);
    config.tick_ms = 10;
    config.broker.persistence = true;
    config.seed = 7;
    config
}

/// The configuration of node `id` that joins the three running members without a vote until it is added.
fn joining_config(id: u64) -> NodeConfig {
    let mut config = config(id);
    config.joining = true;
    config
}

impl Disk {
    /// What a restart of the node finds on this disk.
    fn recovered(&self) -> Recovered {
        Recovered {
            hard_state: self.hs.clone(),
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }
}

impl Cluster {
    /// Starts a node with an empty disk that joins the running cluster.
    fn start_joining(&mut self, config: NodeConfig) {
        self.nodes.push(Node::new(config, Recovered::default()));
        self.disks.push(Disk::default());
        self.client_outputs.push(Vec::new());
    }

    fn new() -> Cluster {
        Cluster::with(|_| {})
    }

    /// A cluster given 2 s of virtual time to elect a leader; the cluster and the leader's index.
    fn elected() -> (Cluster, usize) {
        Cluster::elected_with(|_| {})
    }

    fn elected_with(tune: impl Fn(&mut NodeConfig)) -> (Cluster, usize) {
        let mut cluster = Cluster::with(tune);
        cluster.run(2_000);
        let leader = cluster.leader().expect("a leader within 2 s of virtual time");
        (cluster, leader)
    }

    fn with(tune: impl Fn(&mut NodeConfig)) -> Cluster {
        let configs = (1..=3).map(|id| {
            let mut c = config(id);
            tune(&mut c);
            c
        });
        Cluster {
            nodes: configs.map(|c| Node::new(c, Recovered::default())).collect(),
            disks: (0..3).map(|_| Disk::default()).collect(),
            now: Time::ZERO,
            network: VecDeque::new(),
            client_outputs: vec![Vec::new(); 3],
            events: Vec::new(),
            isolated: None,
            slow_disk: None,
            unsynced: VecDeque::new(),
            written: Vec::new(),
        }
    }

    fn input(&mut self, i: usize, input: NodeInput<'_>) {
        self.nodes[i].handle_input(self.now, input);
        self.drain(i);
    }

    fn drain(&mut self, i: usize) {
        let mut durable = None;
        while let Some(output) = self.nodes[i].poll_output() {
            if self.slow_disk == Some(i) {
                match output {
                    // A leader's appends leave while it writes; every write and what follows it waits for `sync`.
                    NodeOutput::PeerEarly { to, message } => self.network.push_back((i as u64 + 1, to, message)),
                    output => self.unsynced.push_back(output),
                }
                continue;
            }
            self.act(i, output, &mut durable);
        }
        if let Some(number) = durable {
            self.input(i, NodeInput::Durable(number));
        }
        self.hand_back_snapshots();
    }

    fn hand_back_snapshots(&mut self) {
        for (i, snapshot) in std::mem::take(&mut self.written) {
            self.input(i, NodeInput::SnapshotWritten(snapshot));
        }
    }

    /// The slow disk's writes become durable: they and the outputs that waited for them are acted on.
    fn sync(&mut self, i: usize) {
        let mut durable = None;
        for output in std::mem::take(&mut self.unsynced) {
            self.act(i, output, &mut durable);
        }
        self.slow_disk = None;
        if let Some(number) = durable {
            self.input(i, NodeInput::Durable(number));
        }
        self.hand_back_snapshots();
    }

    fn act(&mut self, i: usize, output: NodeOutput, durable: &mut Option<u64>) {
        let id = i as u64 + 1;
        {
            match output {
                NodeOutput::Peer { to, message } | NodeOutput::PeerEarly { to, message } => {
                    self.network.push_back((id, to, message))
                }
                NodeOutput::PersistEntries(entries) => {
                    let disk = &mut self.disks[i];
                    let first = entries[0].index;
                    disk.entries.retain(|e| e.index < first);
                    disk.entries.extend(entries);
                }
                NodeOutput::PersistHardState(hs) => self.disks[i].hs = hs,
                NodeOutput::PersistSnapshot { snapshot, discard_log } => {
                    let index = snapshot.get_metadata().index;
                    let disk = &mut self.disks[i];
                    disk.entries.retain(|e| !discard_log && e.index > index);
                    disk.snapshot = Some(snapshot);
                }
                NodeOutput::TakeSnapshot(job) => {
                    let snapshot = job.encode().expect("the node's own snapshot encodes");
                    let index = snapshot.get_metadata().index;
                    let disk = &mut self.disks[i];
                    if disk.snapshot.as_ref().is_none_or(|s| s.get_metadata().index < index) {
                        disk.entries.retain(|e| e.index > index);
                        disk.snapshot = Some(snapshot.clone());
                    }
                    self.written.push((i, snapshot));
                }
                NodeOutput::Client(output) => self.client_outputs[i].push(output),
                NodeOutput::Event(event) => self.events.push((id, event)),
                // Everything before it is durable here.
                NodeOutput::ConfirmDurable(number) => *durable = Some(number),
            }
        }
    }

    /// Delivers every message in flight, then advances the clock by `ms`, ticking every node.
    fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            while let Some((from, to, message)) = self.network.pop_front() {
                if self.isolated == Some(from) || self.isolated == Some(to) {
                    continue;
                }
                self.input(
                    to as usize - 1,
                    NodeInput::Peer {
                        from,
                        message: &message,
                    },
                );
            }
            self.now = Time(self.now.0 + 1);
            for i in 0..self.nodes.len() {
                if self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                    self.input(i, NodeInput::Tick);
                }
            }
        }
    }

    /// Runs until the first relay message from `from` to `to` that `pick` accepts is about to be delivered, and
    /// takes it off the network instead (as a link that could not queue it): its bytes.
    fn intercept_relay(&mut self, from: u64, to: u64, pick: impl Fn(&RelayKind) -> bool) -> bytes::Bytes {
        for _ in 0..1_000 {
            while let Some((f, t, message)) = self.network.pop_front() {
                let wanted = f == from && t == to && relay::decode(&message, CLUSTER).is_ok_and(|m| pick(&m.kind));
                if wanted {
                    return message;
                }
                if self.isolated == Some(f) || self.isolated == Some(t) {
                    continue;
                }
                self.input(
                    t as usize - 1,
                    NodeInput::Peer {
                        from: f,
                        message: &message,
                    },
                );
            }
            self.run(1);
        }
        panic!("no such relay message from {from} to {to}");
    }

    fn leader(&self) -> Option<usize> {
        let leaders: Vec<usize> = (0..self.nodes.len()).filter(|i| self.nodes[*i].is_leader()).collect();
        assert!(leaders.len() <= 1, "two nodes serve at once: {leaders:?}");
        leaders.first().copied()
    }
}

fn encode(packet: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    codec::encode(packet, ProtocolVersion::V5, &mut out).expect("encodable packet");
    out.to_vec()
}

fn packets(outputs: &[Output], conn: ConnectionId) -> Vec<Packet> {
    let mut decoder = Decoder::new(Some(ProtocolVersion::V5), usize::MAX);
    for output in outputs {
        if let Output::Transmit { conn: c, data } = output {
            if *c == conn {
                decoder.feed(data);
            }
        }
    }
    std::iter::from_fn(|| decoder.next_packet().expect("the broker sends valid packets")).collect()
}

#[test]
fn a_leader_is_elected_and_serves_after_its_first_entry_is_applied() {
    let (mut cluster, leader) = Cluster::elected();
    let status = cluster.nodes[leader].status();
    assert!(status.serving && status.applied >= 1, "{status:?}");
    assert_eq!(status.match_index.len(), 3);
    // Every node applied the leader's first entry and agrees on what it applied.
    cluster.run(200);
    let digests: Vec<_> = cluster
        .nodes
        .iter()
        .map(|n| (n.applied(), n.applied_digest()))
        .collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
}

#[test]
fn a_client_of_a_follower_is_closed() {
    let (mut cluster, leader) = Cluster::elected();
    let follower = (leader + 1) % 3;
    let conn = ConnectionId(9);
    let peer = "127.0.0.1:5000".parse().expect("address");
    cluster.input(
        follower,
        NodeInput::Client(Input::Opened {
            conn,
            peer,
            listener: ListenerId(0),
        }),
    );
    assert_eq!(cluster.client_outputs[follower], vec![Output::Close { conn }]);
}

#[test]
fn a_qos1_puback_waits_for_the_commit_and_every_node_applies_the_message() {
    let (mut cluster, leader) = Cluster::elected();
    let conn = ConnectionId(1);
    connect(&mut cluster, leader, conn, "sub", true);
    // The session is durable: its CONNACK waits for the SessionOpen record to commit, which needs the followers.
    assert!(
        packets(&cluster.client_outputs[leader], conn).is_empty(),
        "CONNACK released before commit"
    );
    cluster.run(50);
    assert!(matches!(
        packets(&cluster.client_outputs[leader], conn)[..],
        [Packet::ConnAck(_)]
    ));

    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "t/1".into(),
        packet_id: 5,
        properties: Default::default(),
        payload: bytes::Bytes::from_static(b"hello"),
    };
    let data = encode(&Packet::Publish(publish));
    cluster.client_outputs[leader].clear();
    cluster.input(leader, NodeInput::Client(Input::Received { conn, data: &data }));
    assert!(
        packets(&cluster.client_outputs[leader], conn).is_empty(),
        "PUBACK released before commit"
    );
    cluster.run(50);
    assert!(matches!(
        packets(&cluster.client_outputs[leader], conn)[..],
        [Packet::PubAck(_)]
    ));
    cluster.run(100);
    for node in &cluster.nodes {
        assert!(
            node.image().retained.contains_key("t/1"),
            "node {} lacks the retained message",
            node.node_id()
        );
    }
}

/// Opens `conn` on node `i` and sends a CONNECT (durable with a session expiry, else a clean session).
fn connect(cluster: &mut Cluster, i: usize, conn: ConnectionId, client_id: &str, durable: bool) {
    let peer = "127.0.0.1:5000".parse().expect("address");
    cluster.input(
        i,
        NodeInput::Client(Input::Opened {
            conn,
            peer,
            listener: ListenerId(0),
        }),
    );
    let mut connect = mqtt_core::harness::connect_packet(ProtocolVersion::V5, client_id);
    if durable {
        connect.clean_start = false;
        connect.properties.session_expiry_interval = Some(3600);
    }
    let data = encode(&Packet::Connect(Box::new(connect)));
    cluster.input(i, NodeInput::Client(Input::Received { conn, data: &data }));
}

#[test]
fn records_of_a_turn_share_one_entry_and_other_clients_output_does_not_wait_for_it() {
    let (mut cluster, leader) = Cluster::elected_with(|c| c.propose_per_turn = true);
    let (clean, a, b) = (ConnectionId(1), ConnectionId(2), ConnectionId(3));
    connect(&mut cluster, leader, clean, "clean", false);
    assert!(matches!(
        packets(&cluster.client_outputs[leader], clean)[..],
        [Packet::ConnAck(_)]
    ));
    let entries_before = cluster.disks[leader].entries.len();
    connect(&mut cluster, leader, a, "a", true);
    connect(&mut cluster, leader, b, "b", true);
    assert!(
        cluster.nodes[leader].has_unproposed(),
        "records wait for the turn's Flush"
    );
    assert_eq!(
        cluster.disks[leader].entries.len(),
        entries_before,
        "nothing proposed before Flush"
    );
    // A client with nothing held answers at once, though other clients' records are pending.
    let ping = encode(&Packet::PingReq);
    cluster.input(
        leader,
        NodeInput::Client(Input::Received {
            conn: clean,
            data: &ping,
        }),
    );
    assert!(matches!(
        packets(&cluster.client_outputs[leader], clean)[..],
        [Packet::ConnAck(_), Packet::PingResp]
    ));
    assert!(
        packets(&cluster.client_outputs[leader], a).is_empty(),
        "CONNACK of a before commit"
    );
    cluster.input(leader, NodeInput::Flush);
    let new: Vec<&Entry> = cluster.disks[leader].entries[entries_before..].iter().collect();
    assert_eq!(new.len(), 1, "one entry for the turn");
    let records = wire::decode_records(&new[0].data).expect("records");
    assert!(
        records.len() >= 2,
        "both sessions' records in the one entry: {records:?}"
    );
    assert!(
        packets(&cluster.client_outputs[leader], b).is_empty(),
        "CONNACK of b before commit"
    );
    cluster.run(50);
    for conn in [a, b] {
        assert!(matches!(
            packets(&cluster.client_outputs[leader], conn)[..],
            [Packet::ConnAck(_)]
        ));
    }
}

#[test]
fn a_leader_cut_off_from_its_quorum_drops_held_acknowledgements_and_closes_its_clients() {
    let (mut cluster, leader) = Cluster::elected();
    let conn = ConnectionId(1);
    connect(&mut cluster, leader, conn, "pub", true);
    cluster.run(50);
    cluster.client_outputs[leader].clear();
    cluster.isolated = Some(leader as u64 + 1);
    // Retained, so it changes durable state (a QoS 1 message nobody subscribed to changes nothing and is
    // acknowledged at once).
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "t/2".into(),
        packet_id: 9,
        properties: Default::default(),
        payload: bytes::Bytes::from_static(b"lost"),
    };
    let data = encode(&Packet::Publish(publish));
    cluster.input(leader, NodeInput::Client(Input::Received { conn, data: &data }));
    cluster.run(1_000);
    // check-quorum deposed it: the PUBACK that waited for a commit never went out, and the client was closed.
    assert!(!cluster.nodes[leader].is_leader());
    // All it got is DISCONNECT 0x8B Server shutting down (an MQTT 5 client past its CONNACK is told why, so it
    // reconnects at once [MQTT-3.14.2-1]).
    let got = packets(&cluster.client_outputs[leader], conn);
    assert_eq!(got.len(), 1, "a held PUBACK was released: {got:?}");
    assert!(
        matches!(&got[0], Packet::Disconnect(d) if d.reason.0 == 0x8B),
        "{got:?}"
    );
    assert!(cluster.client_outputs[leader].contains(&Output::Close { conn }));
    let deposed = cluster.events.iter().any(|(id, e)| {
        *id == leader as u64 + 1 && matches!(e, ClusterEvent::Deposed { dropped, closed: 1, .. } if *dropped >= 1)
    });
    assert!(
        deposed,
        "no Deposed event with the dropped output: {:?}",
        cluster.events
    );
    // The other two elected a new leader, which does not have the uncommitted message.
    let new_leader = cluster.leader().expect("a new leader among the majority");
    assert_ne!(new_leader, leader);
    assert!(!cluster.nodes[new_leader].image().retained.contains_key("t/2"));
}

/// A session taken over on a leader that has lost its quorum: the broker closes the old connection, but that Close
/// waits behind the old connection's held PUBACK. When the leader is deposed the held outputs are dropped; the old
/// connection must still be closed (cluster simulator seed 870: it stayed open and unserved, its client waiting
/// for good).
#[test]
fn a_close_held_behind_uncommitted_output_still_closes_the_connection_when_the_leader_is_deposed() {
    let (mut cluster, leader) = Cluster::elected();
    let old = ConnectionId(1);
    connect(&mut cluster, leader, old, "s", true);
    cluster.run(50);
    assert!(matches!(
        packets(&cluster.client_outputs[leader], old)[..],
        [Packet::ConnAck(_)]
    ));
    cluster.isolated = Some(leader as u64 + 1);
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "t/3".into(),
        packet_id: 3,
        properties: Default::default(),
        payload: bytes::Bytes::from_static(b"held"),
    };
    let data = encode(&Packet::Publish(publish));
    cluster.input(leader, NodeInput::Client(Input::Received { conn: old, data: &data }));
    // The same client id again: the broker takes the session over and closes the old connection [MQTT-3.1.4-3].
    let new = ConnectionId(2);
    connect(&mut cluster, leader, new, "s", true);
    assert!(
        !cluster.client_outputs[leader].contains(&Output::Close { conn: old }),
        "the old connection's Close must wait behind its held PUBACK"
    );
    cluster.run(1_000);
    assert!(!cluster.nodes[leader].is_leader());
    for conn in [old, new] {
        assert!(
            cluster.client_outputs[leader].contains(&Output::Close { conn }),
            "{conn:?} left open by the deposed leader: {:?}",
            cluster.client_outputs[leader]
        );
    }
    // Neither the PUBACK nor the new CONNACK was ever committed: neither went out.
    assert!(!packets(&cluster.client_outputs[leader], old)
        .iter()
        .any(|p| matches!(p, Packet::PubAck(_))));
    assert!(!packets(&cluster.client_outputs[leader], new)
        .iter()
        .any(|p| matches!(p, Packet::ConnAck(_))));
}

/// A relay message the follower's link to the leader could not queue (a full queue): the relayed connection is
/// closed on both sides, the client told to reconnect (MQTT 5: DISCONNECT 0x8B), the leader's broker sees the
/// connection go, and it is counted; nothing after the hole reaches the leader.
#[test]
fn an_upstream_relay_message_that_cannot_be_queued_closes_the_connection_on_both_sides() {
    let (mut cluster, leader) = Cluster::elected_with(|c| c.relay_clients = true);
    let follower = (leader + 1) % 3;
    let (l, f) = (leader as u64 + 1, follower as u64 + 1);
    let conn = ConnectionId(5);
    connect(&mut cluster, follower, conn, "r", true);
    cluster.run(100);
    assert!(matches!(
        packets(&cluster.client_outputs[follower], conn)[..],
        [Packet::ConnAck(_)]
    ));
    assert_eq!(
        cluster.nodes[leader].broker().map(|b| b.gauges().clients_connected),
        Some(1)
    );
    cluster.client_outputs[follower].clear();
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "t/4".into(),
        packet_id: 4,
        properties: Default::default(),
        payload: bytes::Bytes::from_static(b"dropped"),
    };
    let data = encode(&Packet::Publish(publish));
    cluster.input(follower, NodeInput::Client(Input::Received { conn, data: &data }));
    let dropped = cluster.intercept_relay(f, l, |k| matches!(k, RelayKind::Received(_)));
    cluster.input(
        follower,
        NodeInput::RelayDropped {
            peer: l,
            message: &dropped,
        },
    );
    let got = packets(&cluster.client_outputs[follower], conn);
    assert!(
        matches!(&got[..], [Packet::Disconnect(d)] if d.reason.0 == 0x8B),
        "{got:?}"
    );
    assert!(cluster.client_outputs[follower].contains(&Output::Close { conn }));
    assert_eq!(cluster.nodes[follower].status().relays_dropped, 1);
    assert!(cluster.events.iter().any(
        |(id, e)| *id == f && matches!(e, ClusterEvent::RelayDropped { peer, conn: c } if *peer == l && *c == conn)
    ));
    cluster.run(100);
    // The leader heard the close in sequence (no gap event) and its broker let the connection go.
    assert_eq!(
        cluster.nodes[leader].broker().map(|b| b.gauges().clients_connected),
        Some(0)
    );
    assert!(!cluster
        .events
        .iter()
        .any(|(_, e)| matches!(e, ClusterEvent::RelayGap { .. })));
}

/// A follower relays what its TLS handshake verified along with the connection: on a listener that uses the
/// certificate's name as the user name, the leader's broker admits the client it names and refuses (0x87) one the
/// follower had no name for, as a single broker would.
#[test]
fn a_relayed_client_carries_its_verified_name_to_the_leader() {
    const CERTIFIED: ListenerId = ListenerId(1);
    let (mut cluster, leader) = Cluster::elected_with(|c| {
        c.relay_clients = true;
        c.broker.identity_as_username = vec![CERTIFIED];
    });
    let follower = (leader + 1) % 3;
    let peer = "127.0.0.1:5000".parse().expect("address");
    let connect = encode(&Packet::Connect(Box::new(mqtt_core::harness::connect_packet(
        ProtocolVersion::V5,
        "c",
    ))));
    for (conn, identity) in [(ConnectionId(5), Some("alice")), (ConnectionId(6), None)] {
        cluster.input(
            follower,
            NodeInput::Client(Input::Opened {
                conn,
                peer,
                listener: CERTIFIED,
            }),
        );
        if let Some(identity) = identity {
            cluster.input(follower, NodeInput::Client(Input::Identified { conn, identity }));
        }
        cluster.input(follower, NodeInput::Client(Input::Received { conn, data: &connect }));
        cluster.run(100);
        let expected = match identity {
            Some(_) => ReasonCode::SUCCESS,
            None => ReasonCode::NOT_AUTHORIZED,
        };
        let got = packets(&cluster.client_outputs[follower], conn);
        assert!(
            matches!(&got[..], [Packet::ConnAck(c)] if c.reason == expected),
            "{identity:?}: {got:?}"
        );
    }
}

/// The same on the leader's side: its output for a relayed client could not be queued. The broker's connection is
/// closed (the session stays for the client to resume) and the holding node is told in the dropped message's
/// place, so its client gets DISCONNECT 0x8B and is closed; nothing after the hole reaches the client.
#[test]
fn a_downstream_relay_message_that_cannot_be_queued_closes_the_connection_on_both_sides() {
    let (mut cluster, leader) = Cluster::elected_with(|c| c.relay_clients = true);
    let follower = (leader + 1) % 3;
    let (l, f) = (leader as u64 + 1, follower as u64 + 1);
    let conn = ConnectionId(6);
    connect(&mut cluster, follower, conn, "d", true);
    cluster.run(100);
    assert!(matches!(
        packets(&cluster.client_outputs[follower], conn)[..],
        [Packet::ConnAck(_)]
    ));
    cluster.client_outputs[follower].clear();
    let ping = encode(&Packet::PingReq);
    cluster.input(follower, NodeInput::Client(Input::Received { conn, data: &ping }));
    let dropped = cluster.intercept_relay(l, f, |k| matches!(k, RelayKind::Transmit(_)));
    cluster.input(
        leader,
        NodeInput::RelayDropped {
            peer: f,
            message: &dropped,
        },
    );
    assert_eq!(
        cluster.nodes[leader].broker().map(|b| b.gauges().clients_connected),
        Some(0)
    );
    assert_eq!(cluster.nodes[leader].status().relays_dropped, 1);
    cluster.run(100);
    let got = packets(&cluster.client_outputs[follower], conn);
    assert!(
        matches!(&got[..], [Packet::Disconnect(d)] if d.reason.0 == 0x8B),
        "the PINGRESP was dropped, the client gets the failover DISCONNECT only: {got:?}"
    );
    assert!(cluster.client_outputs[follower].contains(&Output::Close { conn }));
    assert!(!cluster
        .events
        .iter()
        .any(|(_, e)| matches!(e, ClusterEvent::RelayGap { .. })));
}

/// A follower that installs a snapshot from the leader and then, before its disk has synced it, runs out its
/// election clock (the leader unreachable): raft-rs reads the entries after its applied index when it campaigns,
/// and those are gone from the store behind the snapshot, so its applied index must reach the snapshot at once
/// (cluster simulator seed 504 panicked in raft-rs: "unexpected error getting unapplied entries ... Compacted").
#[test]
fn a_follower_campaigns_safely_while_an_installed_snapshot_is_still_unsynced() {
    let (mut cluster, leader) = Cluster::elected_with(|c| c.snapshot_entries = 2);
    let follower = (leader + 1) % 3;
    let f = follower as u64 + 1;
    cluster.isolated = Some(f);
    let conn = ConnectionId(1);
    connect(&mut cluster, leader, conn, "p", true);
    cluster.run(50);
    for (i, topic) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: (*topic).into(),
            packet_id: i as u16 + 1,
            properties: Default::default(),
            payload: bytes::Bytes::from_static(b"x"),
        };
        let data = encode(&Packet::Publish(publish));
        cluster.input(leader, NodeInput::Client(Input::Received { conn, data: &data }));
        cluster.run(20);
    }
    // The follower comes back and gets the snapshot; its disk turns slow just then, so the snapshot waits unsynced.
    cluster.isolated = None;
    'delivery: for _ in 0..1_000 {
        while let Some((from, to, message)) = cluster.network.pop_front() {
            let snapshot = to == f
                && wire::decode_peer_message(&message, CLUSTER, usize::MAX)
                    .is_ok_and(|m| m.msg_type == mqtt_cluster::eraftpb::MessageType::MsgSnapshot);
            if snapshot {
                cluster.slow_disk = Some(follower);
            }
            cluster.input(
                to as usize - 1,
                NodeInput::Peer {
                    from,
                    message: &message,
                },
            );
            if snapshot {
                break 'delivery;
            }
        }
        cluster.run(1);
    }
    assert!(cluster
        .unsynced
        .iter()
        .any(|o| matches!(o, NodeOutput::PersistSnapshot { .. })));
    // Cut off again, it campaigns (raft-rs checks the entries it has not applied first).
    cluster.isolated = Some(f);
    cluster.run(1_000);
    assert_ne!(
        cluster.nodes[follower].role(),
        mqtt_cluster::Role::Follower,
        "it campaigned"
    );
    // Synced and back, it catches up with the others.
    cluster.sync(follower);
    cluster.isolated = None;
    cluster.run(1_000);
    let leader = cluster.leader().expect("a leader");
    let (a, b) = (&cluster.nodes[leader], &cluster.nodes[follower]);
    assert_eq!((b.applied(), b.applied_digest()), (a.applied(), a.applied_digest()));
}

/// A leader may send its appends before its own write of them is synced, but it must not count that write toward
/// a commit until it is: with one follower cut off, the other follower's acknowledgement and the leader's unsynced
/// copy are not a durable majority, and a commit index announced then would survive on the follower after a crash of
/// the leader lost the entry (cluster simulator seed 1725: the follower's commit then pointed at an entry the new
/// leader's log replaced, and it never caught up again).
#[test]
fn a_leader_counts_its_own_write_toward_a_commit_only_once_it_is_synced() {
    let (mut cluster, leader) = Cluster::elected();
    cluster.run(100);
    let follower = (leader + 1) % 3;
    cluster.isolated = Some((leader as u64 + 2) % 3 + 1);
    let committed_before = cluster.nodes[leader].status().commit;
    cluster.slow_disk = Some(leader);
    let conn = ConnectionId(1);
    connect(&mut cluster, leader, conn, "sub", true);
    cluster.run(100);
    let entry = cluster
        .unsynced
        .iter()
        .filter_map(|o| match o {
            NodeOutput::PersistEntries(entries) => entries.last().map(|e| e.index),
            _ => None,
        })
        .max()
        .expect("the session's record waits in the leader's unsynced write");
    assert!(entry > committed_before);
    // The follower has it durably (its disk is always synced) and acknowledged it.
    assert!(cluster.disks[follower].entries.iter().any(|e| e.index == entry));
    assert_eq!(
        cluster.nodes[leader].status().match_index.get(&(follower as u64 + 1)),
        Some(&entry)
    );
    for node in &cluster.nodes {
        let status = node.status();
        assert!(
            status.commit < entry,
            "node {} counts entry {entry} committed while only one disk holds it: {status:?}",
            status.id
        );
    }
    assert!(packets(&cluster.client_outputs[leader], conn).is_empty());
    // Synced: now it is committed, and the CONNACK goes out.
    cluster.sync(leader);
    cluster.run(50);
    assert!(cluster.nodes[leader].status().commit >= entry);
    assert!(cluster.nodes[follower].status().commit >= entry);
    assert!(matches!(
        packets(&cluster.client_outputs[leader], conn)[..],
        [Packet::ConnAck(_)]
    ));
}

#[test]
fn a_restarted_node_recovers_its_image_from_its_disk() {
    let (cluster, leader) = Cluster::elected();
    let before = (cluster.nodes[leader].applied(), cluster.nodes[leader].applied_digest());
    let node = Node::new(config(leader as u64 + 1), cluster.disks[leader].recovered());
    assert_eq!((node.applied(), node.applied_digest()), before);
}

#[test]
fn bad_peer_messages_are_refused_with_a_typed_error() {
    let mut cluster = Cluster::new();
    cluster.run(2_000);
    let good = {
        let m = mqtt_cluster::eraftpb::Message {
            from: 2,
            to: 1,
            term: 1,
            ..Default::default()
        };
        wire::encode_peer_message(CLUSTER, &m)
    };
    let mut wrong_cluster = good.to_vec();
    wrong_cluster[5..13].copy_from_slice(&0xbadu64.to_be_bytes());
    let mut garbage_body = good[..wire::PEER_HEADER_LEN].to_vec();
    garbage_body.extend_from_slice(&[0xff; 7]);
    let oversized = vec![0u8; wire::DEFAULT_MAX_PEER_MESSAGE + 1];
    type Expect = fn(&PeerError) -> bool;
    let cases: Vec<(u64, Vec<u8>, Expect)> = vec![
        (2, wrong_cluster, |e| {
            matches!(e, PeerError::WrongCluster { got: 0xbad, .. })
        }),
        (2, garbage_body, |e| matches!(e, PeerError::Malformed(_))),
        (2, good[..5].to_vec(), |e| matches!(e, PeerError::Truncated { len: 5 })),
        (2, b"GET / HTTP/1.1\r\n\r\n".to_vec(), |e| {
            matches!(e, PeerError::BadMagic)
        }),
        (2, oversized, |e| matches!(e, PeerError::TooLarge { .. })),
        // A message that claims another sender than the connection it came on, and one from a non-member.
        (3, good.to_vec(), |e| {
            matches!(
                e,
                PeerError::UnknownSender {
                    claimed: 2,
                    connection: 3
                }
            )
        }),
        (9, good.to_vec(), |e| {
            matches!(e, PeerError::UnknownSender { connection: 9, .. })
        }),
    ];
    for (from, data, expected) in cases {
        cluster.events.clear();
        let applied = cluster.nodes[0].applied();
        cluster.input(0, NodeInput::Peer { from, message: &data });
        let refused: Vec<&PeerError> = cluster
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                ClusterEvent::PeerRefused { error, .. } => Some(error),
                _ => None,
            })
            .collect();
        assert!(
            refused.len() == 1 && expected(refused[0]),
            "unexpected refusal: {refused:?}"
        );
        assert_eq!(cluster.nodes[0].applied(), applied);
    }
}

/// Voters added and removed at run time: a fourth node joins (catching up on the log) and becomes a voter, the
/// leader removes itself and stops, another node leads the three left, and a restart recovers the membership.
#[test]
fn a_node_joins_and_the_leader_removes_itself_through_configuration_changes() {
    use mqtt_cluster::{MemberChange, MemberChangeError};
    let (mut cluster, leader) = Cluster::elected();
    let follower = (leader + 1) % 3;
    let add = MemberChange::Add {
        id: 4,
        address: "127.0.0.1:7004".into(),
    };
    // Only the leader proposes.
    let refused = cluster.nodes[follower].request_member_change(cluster.now, add.clone());
    assert_eq!(
        refused,
        Err(MemberChangeError::NotLeader {
            leader: Some(leader as u64 + 1)
        })
    );
    // The new node names the current members and joins without a vote.
    cluster.start_joining(joining_config(4));
    let now = cluster.now;
    cluster.nodes[leader]
        .request_member_change(now, add.clone())
        .expect("proposed");
    cluster.drain(leader);
    // A second change while the first is not applied is refused.
    let second = cluster.nodes[leader].request_member_change(now, MemberChange::Remove { id: 2 });
    assert_eq!(second, Err(MemberChangeError::Pending));
    cluster.drain(leader);
    cluster.run(500);
    for node in &cluster.nodes {
        assert_eq!(node.voters(), vec![1, 2, 3, 4], "node {}", node.node_id());
    }
    let digests: Vec<(u64, u64)> = cluster
        .nodes
        .iter()
        .map(|n| (n.applied(), n.applied_digest()))
        .collect();
    assert!(
        digests.iter().all(|d| *d == digests[0]),
        "node 4 caught up: {digests:?}"
    );
    let again = cluster.nodes[leader].request_member_change(cluster.now, add);
    assert_eq!(again, Err(MemberChangeError::AlreadyMember(4)));
    let unknown = cluster.nodes[leader].request_member_change(cluster.now, MemberChange::Remove { id: 9 });
    assert!(
        matches!(unknown, Err(MemberChangeError::NotMember { id: 9, .. })),
        "{unknown:?}"
    );

    // The leader removes itself: once applied, it stops serving and falls silent; the others elect a leader.
    let id = leader as u64 + 1;
    let now = cluster.now;
    cluster.nodes[leader]
        .request_member_change(now, MemberChange::Remove { id })
        .expect("proposed");
    cluster.drain(leader);
    cluster.run(3_000);
    assert!(cluster.nodes[leader].is_removed() && !cluster.nodes[leader].is_leader());
    assert!(cluster
        .events
        .iter()
        .any(|(n, e)| *n == id && matches!(e, ClusterEvent::Removed { .. })));
    let new_leader = cluster.leader().expect("a leader among the three left");
    assert_ne!(new_leader, leader);
    let left: Vec<u64> = (1..=4).filter(|n| *n != id).collect();
    for (i, node) in cluster.nodes.iter().enumerate().filter(|(i, _)| *i != leader) {
        assert_eq!(node.voters(), left, "node {}", i + 1);
    }

    // A restart of the new node recovers the membership from its disk alone.
    let node = Node::new(joining_config(4), cluster.disks[3].recovered());
    assert_eq!(node.voters(), left);
    // And a restart of the removed one knows it was removed.
    assert!(Node::new(config(id), cluster.disks[leader].recovered()).is_removed());
}

/// A node added after the log was compacted catches up from a snapshot, whose configuration makes it a voter.
#[test]
fn a_node_added_after_compaction_catches_up_from_a_snapshot() {
    use mqtt_cluster::MemberChange;
    let mut cluster = Cluster::with(|c| c.snapshot_entries = 1);
    cluster.run(2_000);
    let leader = cluster.leader().expect("leader");
    let mut joining = joining_config(4);
    joining.snapshot_entries = 1;
    cluster.start_joining(joining);
    let add = MemberChange::Add {
        id: 4,
        address: "127.0.0.1:7004".into(),
    };
    let now = cluster.now;
    cluster.nodes[leader].request_member_change(now, add).expect("proposed");
    cluster.drain(leader);
    cluster.run(1_000);
    assert!(
        cluster
            .events
            .iter()
            .any(|(n, e)| *n == 4 && matches!(e, ClusterEvent::SnapshotInstalled { .. })),
        "node 4 installed a snapshot"
    );
    for node in &cluster.nodes {
        assert_eq!(node.voters(), vec![1, 2, 3, 4], "node {}", node.node_id());
    }
    let four = &cluster.nodes[3];
    let first = &cluster.nodes[leader];
    assert_eq!(
        (four.applied(), four.applied_digest()),
        (first.applied(), first.applied_digest())
    );
    // Its disk alone gives the membership back.
    assert_eq!(
        Node::new(joining_config(4), cluster.disks[3].recovered()).voters(),
        vec![1, 2, 3, 4]
    );
}
