//! Three cluster cores in one process, on real loopback links and real files, each driven like the driver drives
//! it: the commit rule holds at the driver's edge (a durable CONNACK leaves `poll_output` only once its record is
//! in the Raft log files of a majority, the leader's included).

use super::*;
use crate::config::Peer;
use crate::test_ports::free_addr;
use bytes::BytesMut;
use mio::{Events, Poll};
use mqtt_core::broker::{ConnectionId, ListenerId};
use mqtt_core::codec;
use mqtt_core::packet::{Packet, ProtocolVersion};
use mqtt_core::persist::frame::{self, Scan};
use mqtt_core::persist::Record;
use protobuf::Message as _;
use std::time::Duration;

mod snapshot;

struct TestNode {
    poll: Poll,
    core: ClusterCore,
    dir: tempfile::TempDir,
}

fn cluster() -> Vec<TestNode> {
    cluster_with(|_| {})
}

fn settings_of(own: &Peer, peers: &[Peer]) -> ClusterSettings {
    ClusterSettings {
        node_id: own.id,
        cluster_id: "test".into(),
        peers: peers.to_vec(),
        listen: own.address,
        tick: Duration::from_millis(20),
        election_ticks: 10,
        heartbeat_ticks: 2,
        max_held_bytes: mqtt_cluster::config::DEFAULT_MAX_HELD_BYTES,
        snapshot_bytes: mqtt_cluster::config::DEFAULT_SNAPSHOT_BYTES,
        join: false,
    }
}

fn cluster_with(tune: impl Fn(&mut NodeConfig)) -> Vec<TestNode> {
    let peers: Vec<Peer> = (1..=3)
        .map(|id| Peer {
            id,
            address: free_addr(),
        })
        .collect();
    peers
        .iter()
        .map(|own| {
            let settings = settings_of(own, &peers);
            let mut config = node_config(&settings, BrokerConfig::default(), 7);
            tune(&mut config);
            let dir = tempfile::tempdir().expect("tempdir");
            let (mut core, _) = open(dir.path(), &settings, config, false).expect("open");
            let poll = Poll::new().expect("poll");
            core.attach(poll.registry()).expect("attach");
            TestNode { poll, core, dir }
        })
        .collect()
}

/// One loop turn of every node, as the driver runs it; every client output handed out goes through `check`.
/// Returns the longest time one node's turn took (its loop's pause for everything else).
fn turn(nodes: &mut [TestNode], start: Instant, check: &mut dyn FnMut(usize, &[TestNode], Output)) -> Duration {
    let mut events = Events::with_capacity(64);
    let mut longest = Duration::ZERO;
    for i in 0..nodes.len() {
        let now = Time::from_millis(start.elapsed().as_millis() as u64);
        let node = &mut nodes[i];
        node.poll
            .poll(&mut events, Some(Duration::from_millis(1)))
            .expect("poll");
        let began = Instant::now();
        for event in events.iter() {
            assert!(node.core.owns(event.token()), "only the core's sockets are registered");
            node.core.io_event(now, event);
        }
        if node.core.poll_timeout().is_some_and(|t| t <= now) {
            node.core.handle_input(now, Input::Tick);
        }
        node.core.end_turn(now);
        longest = longest.max(began.elapsed());
        while let Some(output) = nodes[i].core.poll_output() {
            check(i, nodes, output);
        }
    }
    longest
}

fn leader(nodes: &[TestNode]) -> Option<usize> {
    nodes.iter().position(|n| n.core.node().is_leader())
}

/// Whether the Raft log files in `dir` hold an entry whose records open the session of `client_id`.
fn log_holds_session(dir: &Path, client_id: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|file| {
        let name = file.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("raft-") && name.ends_with(".log")) {
            return false;
        }
        let data = std::fs::read(file.path()).unwrap_or_default();
        let mut offset = 0;
        while let Scan::Frame { body, next } = frame::scan(&data, offset) {
            offset = next;
            let Some((1, entry)) = body.split_first() else { continue };
            let Ok(entry) = mqtt_cluster::eraftpb::Entry::parse_from_bytes(entry) else {
                continue;
            };
            let records = mqtt_cluster::wire::decode_records(&entry.data).unwrap_or_default();
            if records
                .iter()
                .any(|r| matches!(r, Record::SessionOpen { client_id: c, .. } if c == client_id))
            {
                return true;
            }
        }
        false
    })
}

#[test]
fn a_durable_connack_leaves_the_core_only_once_a_majority_of_log_files_hold_its_record() {
    let mut nodes = cluster();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(20);
    while leader(&nodes).is_none() {
        assert!(Instant::now() < deadline, "no leader elected");
        turn(&mut nodes, start, &mut |_, _, _| {});
    }
    let l = leader(&nodes).expect("leader");
    let conn = ConnectionId(1);
    let now = Time::from_millis(start.elapsed().as_millis() as u64);
    nodes[l].core.handle_input(
        now,
        Input::Opened {
            conn,
            peer: "127.0.0.1:5000".parse().expect("address"),
            listener: ListenerId(0),
        },
    );
    let mut connect = mqtt_core::harness::connect_packet(ProtocolVersion::V5, "durable");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(3600);
    let mut data = BytesMut::new();
    codec::encode(&Packet::Connect(Box::new(connect)), ProtocolVersion::V5, &mut data).expect("encode");
    nodes[l].core.handle_input(now, Input::Received { conn, data: &data });
    // Nothing for the client before a loop turn's group commit, whatever else happens.
    assert_eq!(nodes[l].core.poll_output(), None, "output before the group commit");
    let mut released = false;
    while !released {
        assert!(Instant::now() < deadline, "the CONNACK never left");
        turn(&mut nodes, start, &mut |i, nodes, output| {
            if i == l && matches!(output, Output::Transmit { conn: c, .. } if c == conn) {
                let holders: Vec<usize> = (0..nodes.len())
                    .filter(|&n| log_holds_session(nodes[n].dir.path(), "durable"))
                    .collect();
                assert!(
                    holders.contains(&l) && holders.len() >= 2,
                    "CONNACK released while only nodes {holders:?} have the session on disk"
                );
                released = true;
            }
        });
    }
}

fn elect(nodes: &mut [TestNode], start: Instant) -> usize {
    let deadline = start + Duration::from_secs(20);
    while leader(nodes).is_none() {
        assert!(Instant::now() < deadline, "no leader elected");
        turn(nodes, start, &mut |_, _, _| {});
    }
    leader(nodes).expect("leader")
}

#[test]
fn a_malformed_message_from_a_peer_is_refused_and_its_connection_dropped() {
    use std::io::{Read, Write};
    let mut nodes = cluster();
    let start = Instant::now();
    let l = elect(&mut nodes, start);
    // The bad messages claim to come from a member that is down (so that no real connection of its replaces theirs).
    let claimed_index = (l + 2) % 3;
    let claimed = nodes[claimed_index].core.node().node_id();
    let target_id = nodes[(l + 1) % 3].core.node().node_id();
    drop(nodes.remove(claimed_index));
    let target = nodes
        .iter()
        .position(|n| n.core.node().node_id() == target_id)
        .expect("target runs");
    let applied = nodes[target].core.node().applied();
    let addr = nodes[target].core.peer_addr().expect("attached");
    // For each: a hello as a member, then one frame that is not a Raft message of this cluster.
    let mut bad_header = mqtt_cluster::wire::encode_peer_message(
        cluster_id_digest("another cluster"),
        &mqtt_cluster::eraftpb::Message::default(),
    )
    .to_vec();
    let garbage = b"\xff\xff\xff\xff not protobuf".to_vec();
    let mut truncated =
        mqtt_cluster::wire::encode_peer_message(cluster_id_digest("test"), &mqtt_cluster::eraftpb::Message::default())
            .to_vec();
    truncated.truncate(5);
    for (what, body) in [
        ("another cluster id", std::mem::take(&mut bad_header)),
        ("not a peer message", garbage),
        ("shorter than its header", truncated),
    ] {
        let mut raw = std::net::TcpStream::connect(addr).expect("connect");
        raw.write_all(&crate::cluster::transport::encode_hello(claimed, "test"))
            .expect("hello");
        raw.write_all(&(body.len() as u32).to_be_bytes()).expect("len");
        raw.write_all(&body).expect("body");
        raw.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + Duration::from_secs(5);
        let closed = loop {
            turn(&mut nodes, start, &mut |_, _, _| {});
            let mut b = [0u8; 8];
            match raw.read(&mut b) {
                Ok(0) => break true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {}
                _ => break false,
            }
        };
        assert!(closed, "{what}: the connection is dropped");
    }
    // Nothing was applied from them, and the cluster goes on: every node applies the same entries.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        turn(&mut nodes, start, &mut |_, _, _| {});
        let digests: Vec<(u64, u64)> = nodes
            .iter()
            .map(|n| (n.core.node().applied(), n.core.node().applied_digest()))
            .collect();
        if digests.windows(2).all(|w| w[0] == w[1]) && leader(&nodes).is_some() {
            assert!(nodes[target].core.node().applied() >= applied);
            break;
        }
        assert!(Instant::now() < deadline, "nodes disagree: {digests:?}");
    }
}

/// Opens a durable session of `client_id` on the leader and runs the cluster until its CONNACK leaves.
fn connect_durable(nodes: &mut [TestNode], start: Instant, l: usize, conn: ConnectionId, client_id: &str) {
    let now = Time::from_millis(start.elapsed().as_millis() as u64);
    nodes[l].core.handle_input(
        now,
        Input::Opened {
            conn,
            peer: "127.0.0.1:5000".parse().expect("address"),
            listener: ListenerId(0),
        },
    );
    let mut connect = mqtt_core::harness::connect_packet(ProtocolVersion::V5, client_id);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(3600);
    let mut data = BytesMut::new();
    codec::encode(&Packet::Connect(Box::new(connect)), ProtocolVersion::V5, &mut data).expect("encode");
    nodes[l].core.handle_input(now, Input::Received { conn, data: &data });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut acked = false;
    while !acked {
        assert!(Instant::now() < deadline, "no CONNACK for {client_id}");
        turn(nodes, start, &mut |i, _, output| {
            acked |= i == l && matches!(output, Output::Transmit { conn: c, .. } if c == conn);
        });
    }
}

#[test]
fn snapshots_compact_the_log_files_and_a_restarted_node_recovers_its_image_from_them() {
    let mut nodes = cluster_with(|config| config.snapshot_entries = 3);
    let start = Instant::now();
    let l = elect(&mut nodes, start);
    let clients: Vec<String> = (0..8).map(|i| format!("durable-{i}")).collect();
    for (i, client) in clients.iter().enumerate() {
        connect_durable(&mut nodes, start, l, ConnectionId(i as u64 + 1), client);
    }
    // Let every node apply everything, and finish the snapshots its threads write.
    let deadline = Instant::now() + Duration::from_secs(10);
    while nodes
        .iter()
        .any(|n| n.core.node().image().sessions.len() < clients.len() || n.core.snapshots.in_flight().is_some())
    {
        assert!(Instant::now() < deadline, "the followers never applied every session");
        turn(&mut nodes, start, &mut |_, _, _| {});
    }
    let f = (l + 1) % 3;
    // The older files go once the rename is synced, on a thread.
    nodes[f].core.disk.wait_cleanup();
    let files: Vec<String> = std::fs::read_dir(nodes[f].dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().any(|n| n.ends_with(".snap")) && !files.contains(&"raft-00000000000000000000.log".to_string()),
        "a snapshot replaced the first log: {files:?}"
    );
    // The follower restarts from its files alone: snapshot, then the log after it.
    let id = nodes[f].core.node().node_id();
    let before = nodes[f].core.node().image();
    let TestNode { mut core, dir, .. } = nodes.remove(f);
    // The commit index rides along with the next sync, so the last entries it applied may be committed on disk only
    // once another sync comes (a node that stops before then learns the rest from the leader); this test is about
    // the files, so the commit is written now (without this it failed now and then under load).
    core.persist_commit();
    drop(core);
    let peers: Vec<Peer> = (1..=3)
        .map(|id| Peer {
            id,
            address: free_addr(),
        })
        .collect();
    let settings = settings_of(&peers[id as usize - 1], &peers);
    let config = node_config(&settings, BrokerConfig::default(), 7);
    let (core, recovered) = open(dir.path(), &settings, config, false).expect("reopen");
    assert!(recovered.snapshot.get_metadata().index > 0, "recovered from a snapshot");
    let image = core.node().image();
    let mut sessions: Vec<&str> = image.sessions.values().map(|s| s.client_id.as_str()).collect();
    sessions.sort_unstable();
    assert_eq!(sessions, clients.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(image.sessions, before.sessions);
}
