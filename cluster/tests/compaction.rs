//! Log compaction keeps the replicated image to what durable sessions still hold: a message every queue entry of
//! which is finished (acknowledged [MQTT-4.3.2-5]) leaves the image and the next snapshot. One voter is enough to
//! commit and compact, so the node runs alone here, its writes durable at once.

use bytes::{Bytes, BytesMut};
use mqtt_cluster::{Node, NodeConfig, NodeInput, NodeOutput, Recovered};
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
}

impl Alone {
    fn new(snapshot_entries: u64) -> Alone {
        let mut config = NodeConfig::new(1, vec![1], 0xc1);
        config.tick_ms = 10;
        config.broker.persistence = true;
        config.seed = 7;
        config.snapshot_entries = snapshot_entries;
        let mut alone = Alone {
            node: Node::new(config, Recovered::default()),
            now: Time::ZERO,
            snapshots: Vec::new(),
            outputs: Vec::new(),
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
            match output {
                NodeOutput::ConfirmDurable(number) => self.node.handle_input(self.now, NodeInput::Durable(number)),
                NodeOutput::PersistSnapshot { snapshot, .. } => self.snapshots.push(snapshot.data),
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

#[test]
fn a_snapshot_holds_only_the_messages_a_session_still_queues() {
    let mut alone = Alone::new(20);
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
    let mut unacknowledged = None;
    for n in 1..=100u16 {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "t".into(),
            packet_id: n,
            properties: Default::default(),
            payload: Bytes::from(format!("message {n}")),
        };
        alone.send(publisher, Packet::Publish(publish));
        // Each proposal is its own entry, so the 100 messages span several compactions.
        alone.input(NodeInput::Flush);
        for packet in alone.take_packets(subscriber) {
            let Packet::Publish(delivered) = packet else { continue };
            // The last one stays unacknowledged: its message must survive compaction.
            if n == 100 {
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
    assert_eq!(unacknowledged.as_deref(), Some(&b"message 100"[..]));
    assert!(alone.snapshots.len() >= 5, "{} snapshots", alone.snapshots.len());
    let (_, image) = mqtt_cluster::wire::decode_snapshot_data(alone.snapshots.last().expect("a snapshot"))
        .expect("a readable snapshot");
    // Without compaction of the image, every acknowledged message stays in it (and in memory) for good.
    assert!(
        image.messages.len() <= 2,
        "{} messages in the last snapshot",
        image.messages.len()
    );
    assert!(
        alone.node.image().messages.len() <= 2,
        "{} messages in memory",
        alone.node.image().messages.len()
    );
    // What a session still queues is kept: the unacknowledged message must be redelivered after a failover.
    assert!(
        alone
            .node
            .image()
            .messages
            .values()
            .any(|m| m.payload.as_ref() == b"message 100"),
        "the unacknowledged message left the image"
    );
}
