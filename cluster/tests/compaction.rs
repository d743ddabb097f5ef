//! The replicated image keeps what durable sessions still hold: a message every queue entry of which is finished
//! (acknowledged [MQTT-4.3.2-5]) leaves the image and the next snapshot; and the log is compacted by its bytes as
//! well as its entries. One voter is enough to commit and compact, so the node runs alone here, its writes durable
//! at once.

use bytes::{Bytes, BytesMut};
use mqtt_cluster::{ClusterEvent, Node, NodeConfig, NodeInput, NodeOutput, Recovered, SnapshotJob};
use mqtt_core::broker::{ConnectionId, Input, ListenerId, Output};
use mqtt_core::codec::{self, Decoder};
use mqtt_core::packet::{
    Packet, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions,
};
use mqtt_core::time::Time;

/// One node, its snapshots, and the client bytes it released.
struct Alone {
    node: Node,
    now: Time,
    snapshots: Vec<Bytes>,
    outputs: Vec<Output>,
    /// Snapshots the node asked for are held here, unwritten, instead of written at once.
    hold: bool,
    held: Vec<SnapshotJob>,
    /// The indexes of `ClusterEvent::SnapshotTaken`.
    taken: Vec<u64>,
    /// Snapshot jobs checked to rebuild the node's image.
    rebuilt: usize,
}

impl Alone {
    fn new(tune: impl Fn(&mut NodeConfig)) -> Alone {
        let mut config = NodeConfig::new(1, vec![1], 0xc1);
        config.tick_ms = 10;
        config.broker.persistence = true;
        config.seed = 7;
        tune(&mut config);
        let mut alone = Alone {
            node: Node::new(config, Recovered::default()),
            now: Time::ZERO,
            snapshots: Vec::new(),
            outputs: Vec::new(),
            hold: false,
            held: Vec::new(),
            taken: Vec::new(),
            rebuilt: 0,
        };
        for _ in 0..300 {
            alone.now = Time(alone.now.0 + 10);
            alone.input(NodeInput::Tick);
        }
        assert!(alone.node.is_leader(), "a lone voter elects itself");
        alone
    }

    fn input(&mut self, input: NodeInput<'_>) {
        self.node.handle_input(self.now, input);
        // Every write is durable at once: the node hears so, which commits and releases what waited for it.
        while let Some(output) = self.node.poll_output() {
            if let NodeOutput::TakeSnapshot(job) = &output {
                // The job rebuilds (from the previous snapshot and the entries since) the image the node holds at
                // its index, which is now: it is handed out at the end of the input that applied that index.
                let mut live = self.node.image();
                live.collect_garbage();
                live.orphan_records = 0;
                let mut rebuilt = job.image().expect("the job rebuilds the image");
                rebuilt.orphan_records = 0;
                assert!(
                    rebuilt == live,
                    "the snapshot at {} is not the node's image",
                    job.index()
                );
                self.rebuilt += 1;
            }
            match output {
                NodeOutput::ConfirmDurable(number) => self.node.handle_input(self.now, NodeInput::Durable(number)),
                NodeOutput::PersistSnapshot { snapshot, .. } => self.snapshots.push(snapshot.data),
                NodeOutput::TakeSnapshot(job) if self.hold => self.held.push(*job),
                NodeOutput::TakeSnapshot(job) => {
                    let snapshot = job.encode().expect("the node's own snapshot encodes");
                    self.snapshots.push(snapshot.data.clone());
                    self.node.handle_input(self.now, NodeInput::SnapshotWritten(snapshot));
                }
                NodeOutput::Event(ClusterEvent::SnapshotTaken { index }) => self.taken.push(index),
                NodeOutput::Client(output) => self.outputs.push(output),
                _ => {}
            }
        }
    }

    fn send(&mut self, conn: ConnectionId, packet: Packet) {
        let mut data = BytesMut::new();
        codec::encode(&packet, ProtocolVersion::V5, &mut data).expect("encodable packet");
        self.input(NodeInput::Client(Input::Received { conn, data: &data }));
    }

    fn connect(&mut self, conn: ConnectionId, client_id: &str) {
        let peer = "127.0.0.1:5000".parse().expect("address");
        self.input(NodeInput::Client(Input::Opened {
            conn,
            peer,
            listener: ListenerId(0),
        }));
        let mut connect = mqtt_core::harness::connect_packet(ProtocolVersion::V5, client_id);
        connect.clean_start = false;
        connect.properties.session_expiry_interval = Some(3600);
        self.send(conn, Packet::Connect(Box::new(connect)));
    }

    /// The packets released to `conn` so far (and forgets them).
    fn take_packets(&mut self, conn: ConnectionId) -> Vec<Packet> {
        let mut decoder = Decoder::new(Some(ProtocolVersion::V5), usize::MAX);
        self.outputs.retain(|output| match output {
            Output::Transmit { conn: c, data } if *c == conn => {
                decoder.feed(data);
                false
            }
            _ => true,
        });
        std::iter::from_fn(|| decoder.next_packet().expect("the broker sends valid packets")).collect()
    }
}

/// A durable subscriber on `t` (conn 2) and a publisher (conn 1) on a fresh session each.
fn subscribed(alone: &mut Alone) -> (ConnectionId, ConnectionId) {
    let (publisher, subscriber) = (ConnectionId(1), ConnectionId(2));
    alone.connect(publisher, "pub");
    alone.connect(subscriber, "sub");
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..SubscriptionOptions::default()
    };
    alone.send(
        subscriber,
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Default::default(),
            filters: vec![("t".into(), options)],
        }),
    );
    (publisher, subscriber)
}

/// Publishes `count` QoS 1 messages of `size` bytes or more, each its own entry; the subscriber acknowledges all
/// but the last [MQTT-4.3.2-5]. The payload of the last one.
fn publish_and_acknowledge(alone: &mut Alone, count: u16, size: usize) -> Bytes {
    let (publisher, subscriber) = subscribed(alone);
    let mut unacknowledged = None;
    for n in 1..=count {
        let mut payload = format!("message {n} ").into_bytes();
        payload.resize(payload.len().max(size), b'.');
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "t".into(),
            packet_id: n,
            properties: Default::default(),
            payload: Bytes::from(payload),
        };
        alone.send(publisher, Packet::Publish(publish));
        alone.input(NodeInput::Flush);
        for packet in alone.take_packets(subscriber) {
            let Packet::Publish(delivered) = packet else { continue };
            if n == count {
                unacknowledged = Some(delivered.payload.clone());
                continue;
            }
            alone.send(
                subscriber,
                Packet::PubAck(PubResponse::new(delivered.packet_id, ReasonCode::SUCCESS)),
            );
            alone.input(NodeInput::Flush);
        }
    }
    unacknowledged.expect("the last message was delivered")
}

/// Whether the node's image still holds a message with this payload.
fn holds(alone: &Alone, payload: &Bytes) -> bool {
    alone.node.image().messages.values().any(|m| m.payload == *payload)
}

#[test]
fn a_snapshot_holds_only_the_messages_a_session_still_queues() {
    let mut alone = Alone::new(|c| c.snapshot_entries = 20);
    let last = publish_and_acknowledge(&mut alone, 100, 0);
    assert!(alone.snapshots.len() >= 5, "{} snapshots", alone.snapshots.len());
    let (_, image) = mqtt_cluster::wire::decode_snapshot_data(alone.snapshots.last().expect("a snapshot"))
        .expect("a readable snapshot");
    // Without compaction of the image, every acknowledged message stays in it (and in memory) for good.
    assert!(
        image.messages.len() <= 2,
        "{} messages in the last snapshot",
        image.messages.len()
    );
    // What a session still queues is kept: the unacknowledged message must be redelivered after a failover.
    assert!(holds(&alone, &last), "the unacknowledged message left the image");
}

#[test]
fn acknowledged_messages_leave_the_image_between_snapshots_too() {
    let mut alone = Alone::new(|c| {
        c.snapshot_entries = u64::MAX;
        c.snapshot_bytes = u64::MAX;
    });
    let last = publish_and_acknowledge(&mut alone, 10_000, 0);
    assert!(alone.snapshots.is_empty(), "no snapshot taken");
    let held = alone.node.image().messages.len();
    assert!(
        held <= 4096,
        "{held} of 10,000 acknowledged messages still in the image"
    );
    assert!(holds(&alone, &last), "the unacknowledged message left the image");
}

#[test]
fn a_log_of_large_entries_is_compacted_by_its_bytes_before_its_entry_count() {
    let mut alone = Alone::new(|c| c.snapshot_bytes = 64 << 10);
    publish_and_acknowledge(&mut alone, 200, 4 << 10);
    // About 800 KiB of entries: a snapshot every 64 KiB or so, though far fewer than 10,000 entries were applied.
    assert!(
        (5..=40).contains(&alone.snapshots.len()),
        "{} snapshots",
        alone.snapshots.len()
    );
}

/// The node asks the driver for one snapshot at a time and compacts its log only once it is written: while one is
/// being written none is taken (compacted) and no other is asked for, however much is applied; once it is handed
/// back it is taken at its index, and the next is asked for. One handed back twice changes nothing.
#[test]
fn the_log_is_compacted_only_once_its_snapshot_is_written() {
    let mut alone = Alone::new(|c| c.snapshot_entries = 5);
    alone.hold = true;
    publish_and_acknowledge(&mut alone, 30, 16);
    assert_eq!(alone.held.len(), 1, "one snapshot at a time");
    assert!(
        alone.taken.is_empty(),
        "nothing compacted before the snapshot is written"
    );
    let job = alone.held.remove(0);
    let index = job.index();
    let image = job.image().expect("the job rebuilds the image");
    assert_eq!(
        image.sessions.len(),
        2,
        "the image at the snapshot's index holds both sessions"
    );
    let snapshot = job.encode().expect("the node's own snapshot encodes");
    alone.hold = false;
    alone.input(NodeInput::SnapshotWritten(snapshot.clone()));
    assert_eq!(
        alone.taken.first(),
        Some(&index),
        "compacted at the snapshot's index once written"
    );
    // Far more than 5 entries were applied meanwhile: the next snapshot follows at once, past the first, rebuilt
    // from the first and the entries since.
    assert!(alone.taken.len() == 2 && alone.taken[1] > index, "{:?}", alone.taken);
    assert_eq!(alone.rebuilt, 2);
    alone.input(NodeInput::SnapshotWritten(snapshot));
    assert_eq!(alone.taken.len(), 2, "an older snapshot handed back again is not taken");
}
