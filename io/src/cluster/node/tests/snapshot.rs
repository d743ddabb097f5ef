//! A node's own snapshot of a large image, taken while clients are served: how long the loop pauses for it.

use super::*;
use mqtt_core::packet::{Publish, QoS, Subscribe, SubscriptionOptions};

/// The PUBACKs among the packets a client received (`data` holds whole packets: the broker transmits packets).
fn pubacks_in(data: &[u8]) -> Vec<u16> {
    let mut ids = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let header = data[at];
        let (mut len, mut shift, mut i) = (0usize, 0, at + 1);
        while let Some(byte) = data.get(i) {
            len |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            i += 1;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if header >> 4 == 4 && len >= 2 && i + 2 <= data.len() {
            ids.push(u16::from_be_bytes([data[i], data[i + 1]]));
        }
        at = i + len;
    }
    ids
}

fn publish(topic: &str, packet_id: u16, payload: &[u8]) -> Packet {
    Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: topic.into(),
        packet_id,
        payload: bytes::Bytes::copy_from_slice(payload),
        ..Publish::default()
    })
}

fn send(nodes: &mut [TestNode], start: Instant, n: usize, conn: ConnectionId, packets: &[Packet]) {
    let mut data = BytesMut::new();
    for packet in packets {
        codec::encode(packet, ProtocolVersion::V5, &mut data).expect("encode");
    }
    let now = Time::from_millis(start.elapsed().as_millis() as u64);
    nodes[n].core.handle_input(now, Input::Received { conn, data: &data });
}

/// Waits until the leader `l` transmits something to `conn` (an answer to what it sent).
fn answered(nodes: &mut [TestNode], start: Instant, l: usize, conn: ConnectionId) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = false;
    while !got {
        assert!(Instant::now() < deadline, "no answer on {conn:?}");
        turn(nodes, start, &mut |i, _, output| {
            got |= i == l && matches!(output, Output::Transmit { conn: c, .. } if c == conn);
        });
    }
}

/// A durable session `queue` subscribed to `big/#` and offline, so every PUBLISH to `big/...` is queued for it in
/// the image of every node (MQTT 3.1.1's [MQTT-3.1.2-5]); and a durable publisher connected. Returns the leader.
fn queue_and_publisher(nodes: &mut [TestNode], start: Instant) -> usize {
    let l = elect(nodes, start);
    let queue = ConnectionId(1);
    connect_durable(nodes, start, l, queue, "queue");
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(
            "big/#".into(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..SubscriptionOptions::default()
            },
        )],
        ..Subscribe::default()
    });
    send(nodes, start, l, queue, &[subscribe]);
    answered(nodes, start, l, queue);
    let now = Time::from_millis(start.elapsed().as_millis() as u64);
    nodes[l].core.handle_input(now, Input::Closed { conn: queue });
    connect_durable(nodes, start, l, ConnectionId(2), "publisher");
    connect_durable(nodes, start, l, ConnectionId(3), "pinger");
    l
}

fn snapshot_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|files| {
            files
                .flatten()
                .filter(|f| f.file_name().to_string_lossy().ends_with(".snap"))
                .count()
        })
        .unwrap_or(0)
}

/// 100,000 QoS 1 messages of 64 bytes queued for an offline session (an image of about 14 MB on every node, as in
/// bench/cluster.sh's fan-out row; a snapshot due after 4 MiB of entries, then four times the last snapshot's
/// size; a debug build, 30 times slower, queues 5,000 with a snapshot every 256 KiB), published 500 at a time while a second client keeps one QoS 1 PUBLISH
/// in flight on the leader: the loop must keep answering it while every node snapshots the image, and no election
/// may happen (the election timeout is 10 ticks of 20 ms). Prints the longest loop turn and the longest QoS 1 round
/// trip, for BENCHMARKS.md.
#[test]
fn a_large_snapshot_is_taken_while_the_loop_keeps_serving() {
    const MESSAGES: usize = if cfg!(debug_assertions) { 5_000 } else { 100_000 };
    const BATCH: usize = 500;
    let every = if cfg!(debug_assertions) { 256 << 10 } else { 4 << 20 };
    let mut nodes = cluster_with(|config| config.snapshot_bytes = every);
    let start = Instant::now();
    let l = queue_and_publisher(&mut nodes, start);
    let term = nodes[l].core.node().term();
    let (publisher, pinger) = (ConnectionId(2), ConnectionId(3));
    let payload = [0x5a; 64];
    let (mut sent, mut acked) = (0, 0);
    let mut ping: Option<Instant> = None;
    let (mut longest_turn, mut longest_ping, mut pings) = (Duration::ZERO, Duration::ZERO, 0);
    // The longest turn in which a node froze a snapshot (handed it to its thread), and put one in place.
    let (mut freeze_turn, mut adopt_turn) = (Duration::ZERO, Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(300);
    // `queued` rebuilds a node's image from its log (see `Node::image`): asked only once the rest is done.
    while acked < MESSAGES
        || nodes.iter().any(|n| snapshot_files(n.dir.path()) == 0)
        || nodes.iter().any(|n| queued(&n.core) < MESSAGES)
    {
        assert!(
            Instant::now() < deadline,
            "{acked} of {MESSAGES} acknowledged; snapshots not all taken"
        );
        if acked == sent && sent < MESSAGES {
            let batch: Vec<Packet> = (1..=BATCH as u16)
                .map(|id| publish("big/queue", id, &payload))
                .collect();
            send(&mut nodes, start, l, publisher, &batch);
            sent += BATCH;
        }
        if ping.is_none() {
            send(&mut nodes, start, l, pinger, &[publish("ping", 7, b"ping")]);
            ping = Some(Instant::now());
        }
        let mut ponged = false;
        let writing: Vec<bool> = nodes.iter().map(|n| n.core.snapshots.in_flight().is_some()).collect();
        let took = turn(&mut nodes, start, &mut |i, _, output| {
            if let (true, Output::Transmit { conn, data }) = (i == l, &output) {
                if *conn == publisher {
                    acked += pubacks_in(data).len();
                } else if *conn == pinger {
                    ponged |= pubacks_in(data).contains(&7);
                }
            }
        });
        longest_turn = longest_turn.max(took);
        for (n, was) in nodes.iter().zip(writing) {
            match (was, n.core.snapshots.in_flight().is_some()) {
                (false, true) => freeze_turn = freeze_turn.max(took),
                (true, false) => adopt_turn = adopt_turn.max(took),
                _ => {}
            }
        }
        if ponged {
            longest_ping = longest_ping.max(ping.take().map_or(Duration::ZERO, |p| p.elapsed()));
            pings += 1;
        }
    }
    for n in &nodes {
        assert_eq!(n.core.node().term(), term, "no election while the snapshots were taken");
        assert_eq!(queued(&n.core), MESSAGES, "every node holds every queued message");
    }
    // What the loop paid before the snapshot moved to its thread, on the same image: garbage collection, encoding,
    // then writing, syncing and rewriting the log (`save_snapshot`); and what a copy of the image would cost it.
    let mut image = nodes[l].core.node().image();
    let began = Instant::now();
    image.collect_garbage();
    let frozen = image.clone();
    let copy = began.elapsed();
    let began = Instant::now();
    let mut snapshot = mqtt_cluster::eraftpb::Snapshot {
        data: mqtt_cluster::wire::encode_snapshot_data(0, &frozen),
        ..Default::default()
    };
    snapshot.mut_metadata().index = 1;
    let encode = began.elapsed();
    let scratch = tempfile::tempdir().expect("tempdir");
    let (mut disk, _) = RaftDisk::open(scratch.path(), "test", 1, false).expect("open");
    let began = Instant::now();
    disk.save_snapshot(&snapshot, false).expect("save");
    let write = began.elapsed();
    eprintln!(
        "snapshot of {MESSAGES} queued messages ({} bytes): on the loop before: encode {} ms + write \
         and sync {} ms (collecting and copying the image: {} ms); now: longest turn that froze a snapshot {} ms, \
         that put one in place {} ms, of the run {} ms; longest QoS 1 round trip {} ms ({pings} round trips)",
        snapshot.data.len(),
        encode.as_millis(),
        write.as_millis(),
        copy.as_millis(),
        freeze_turn.as_millis(),
        adopt_turn.as_millis(),
        longest_turn.as_millis(),
        longest_ping.as_millis()
    );
}

/// Publishes `count` QoS 1 messages of 256 bytes to `big/queue` on the leader, `BATCH` at a time, each batch once
/// the last is acknowledged.
fn publish_queued(nodes: &mut [TestNode], start: Instant, l: usize, count: usize) {
    const BATCH: usize = 500;
    let publisher = ConnectionId(2);
    let (mut sent, mut acked) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked < count {
        assert!(Instant::now() < deadline, "{acked} of {count} acknowledged");
        if acked == sent {
            let batch: Vec<Packet> = (1..=BATCH.min(count - sent) as u16)
                .map(|id| publish("big/queue", id, &[0x5a; 256]))
                .collect();
            sent += batch.len();
            send(nodes, start, l, publisher, &batch);
        }
        turn(nodes, start, &mut |i, _, output| {
            if let (true, Output::Transmit { conn, data }) = (i == l, &output) {
                if *conn == publisher {
                    acked += pubacks_in(data).len();
                }
            }
        });
    }
}

fn queued(core: &ClusterCore) -> usize {
    core.node().image().sessions.values().map(|s| s.entries.len()).sum()
}

/// Every node's snapshot thread is held before it writes (a write that never completes). The loops go on serving
/// meanwhile (a QoS 1 round trip [MQTT-4.3.2-4]) and append to the next generation's log, started at the hand-over;
/// no log is compacted: the first generation's log is whole and no snapshot file exists. A follower killed then
/// restarts from the two logs (no snapshot before them), which together hold every entry it had applied, merged
/// back into the first, and catches up. Once the other two threads go on, their snapshots are put in place and their logs
/// compacted.
#[test]
fn a_node_killed_while_its_snapshot_is_written_recovers_its_image_from_the_log() {
    const MESSAGES: usize = 2_000;
    let mut nodes = cluster_with(|config| config.snapshot_bytes = 256 << 10);
    let gates: Vec<std::sync::Arc<crate::cluster::snapshotter::Gate>> = nodes
        .iter_mut()
        .map(|n| {
            let gate = std::sync::Arc::default();
            n.core.snapshots.gate = Some(std::sync::Arc::clone(&gate));
            gate
        })
        .collect();
    let start = Instant::now();
    let l = queue_and_publisher(&mut nodes, start);
    publish_queued(&mut nodes, start, l, MESSAGES);
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes
        .iter()
        .any(|n| n.core.snapshots.in_flight().is_none() || queued(&n.core) < MESSAGES)
    {
        assert!(Instant::now() < deadline, "not every node froze a snapshot");
        turn(&mut nodes, start, &mut |_, _, _| {});
    }
    let pinger = ConnectionId(3);
    send(&mut nodes, start, l, pinger, &[publish("ping", 7, b"ping")]);
    answered(&mut nodes, start, l, pinger);
    let first_log = "raft-00000000000000000000.log";
    let next_log = "raft-00000000000000000001.log";
    for n in &nodes {
        assert_eq!(
            snapshot_files(n.dir.path()),
            0,
            "no snapshot is in place before it is written"
        );
        assert!(
            n.dir.path().join(first_log).exists(),
            "the log is not compacted before the snapshot is written"
        );
        assert!(
            n.dir.path().join(next_log).exists(),
            "the next log was started at the hand-over"
        );
        assert!(
            n.core.snapshots.in_flight().is_some(),
            "the snapshot is still being written"
        );
    }
    // A follower dies while its thread is held: its write never completes.
    let f = (l + 1) % 3;
    let applied = nodes[f].core.node().applied();
    let TestNode { core, dir, .. } = nodes.remove(f);
    let links = core.transport_config.clone();
    drop(core);
    // It restarts on the same files and addresses: from the first generation's log alone, which holds everything
    // it applied; then it rejoins and catches up.
    let mut peers: Vec<Peer> = links
        .peers
        .iter()
        .map(|(id, address)| Peer {
            id: *id,
            address: *address,
        })
        .chain([Peer {
            id: links.node_id,
            address: links.listen,
        }])
        .collect();
    peers.sort_by_key(|p| p.id);
    let settings = settings_of(&peers[links.node_id as usize - 1], &peers);
    let config = node_config(&settings, BrokerConfig::default(), 7);
    let (mut core, recovered) = open(dir.path(), &settings, config, false).expect("reopen");
    assert_eq!(
        recovered.snapshot.get_metadata().index,
        0,
        "no snapshot was put in place"
    );
    assert!(
        recovered.entries.first().is_some_and(|e| e.index == 1)
            && recovered.entries.last().is_some_and(|e| e.index >= applied),
        "the logs hold every entry the node applied, from the first"
    );
    assert!(
        !dir.path().join(next_log).exists() && dir.path().join(first_log).exists(),
        "the two logs merged back into the first"
    );
    let poll = Poll::new().expect("poll");
    core.attach(poll.registry()).expect("attach");
    nodes.insert(f, TestNode { poll, core, dir });
    let deadline = Instant::now() + Duration::from_secs(30);
    while queued(&nodes[f].core) < MESSAGES {
        assert!(Instant::now() < deadline, "the restarted node never caught up");
        turn(&mut nodes, start, &mut |_, _, _| {});
    }
    // The others' threads go on: their snapshots are put in place and their logs compacted.
    for (i, gate) in gates.iter().enumerate() {
        if i != f {
            gate.open();
        }
    }
    let others = |nodes: &[TestNode]| -> Vec<usize> { (0..nodes.len()).filter(|i| *i != f).collect() };
    let deadline = Instant::now() + Duration::from_secs(30);
    while others(&nodes).into_iter().any(|i| {
        let dir = nodes[i].dir.path();
        snapshot_files(dir) == 0 || dir.join(first_log).exists() || nodes[i].core.snapshots.in_flight().is_some()
    }) {
        assert!(Instant::now() < deadline, "the snapshots were never put in place");
        turn(&mut nodes, start, &mut |_, _, _| {});
    }
    for n in &nodes {
        assert_eq!(queued(&n.core), MESSAGES);
    }
}
