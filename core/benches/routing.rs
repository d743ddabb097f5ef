//! Routing through the whole core: one publisher, N subscribers on one broker in memory, QoS 0 and QoS 1,
//! measured as messages delivered per second (decode, match, encode for each subscriber, acknowledgements).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mqtt_core::broker::{Broker, Config, ConnectionId, Input, ListenerId, Output};
use mqtt_core::codec::encode;
use mqtt_core::packet::*;
use mqtt_core::time::Time;
use std::net::SocketAddr;

fn bytes_of(packet: &Packet) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    encode(packet, ProtocolVersion::V5, &mut out).expect("encodes");
    out.to_vec()
}

fn drain(broker: &mut Broker) -> usize {
    let mut bytes = 0;
    while let Some(output) = broker.poll_output() {
        if let Output::Transmit { data, .. } = output {
            bytes += data.len();
        }
    }
    bytes
}

fn setup(subscribers: u64, qos: QoS) -> Broker {
    let config = Config {
        sys_interval: 0,
        ..Config::default()
    };
    let mut broker = Broker::new(config, 1);
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    for id in 0..=subscribers {
        let conn = ConnectionId(id);
        broker.handle_input(
            Time::ZERO,
            Input::Opened {
                conn,
                peer,
                listener: ListenerId(0),
            },
        );
        let mut connect = mqtt_core::harness::connect_packet(ProtocolVersion::V5, &format!("c{id}"));
        connect.keep_alive = 0;
        let data = bytes_of(&Packet::Connect(Box::new(connect)));
        broker.handle_input(Time::ZERO, Input::Received { conn, data: &data });
        if id > 0 {
            let subscribe = Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: Default::default(),
                filters: vec![(
                    "bench/+/data".into(),
                    SubscriptionOptions {
                        qos,
                        ..Default::default()
                    },
                )],
            });
            broker.handle_input(
                Time::ZERO,
                Input::Received {
                    conn,
                    data: &bytes_of(&subscribe),
                },
            );
        }
        drain(&mut broker);
    }
    broker
}

fn route(c: &mut Criterion) {
    for (qos, name) in [(QoS::AtMostOnce, "qos0"), (QoS::AtLeastOnce, "qos1")] {
        for subscribers in [1u64, 100] {
            let mut broker = setup(subscribers, qos);
            let publish = Packet::Publish(Publish {
                qos,
                topic: "bench/x/data".into(),
                packet_id: if qos == QoS::AtMostOnce { 0 } else { 1 },
                payload: bytes::Bytes::from_static(&[0u8; 32]),
                ..Default::default()
            });
            let data = bytes_of(&publish);
            let mut group = c.benchmark_group(format!("route_{name}"));
            group.throughput(Throughput::Elements(subscribers));
            // Every subscriber's session allocates packet ids 1, 2, 3, ... in step, one per message.
            let mut next_packet_id: u16 = 1;
            group.bench_function(format!("{subscribers}_subscribers"), |b| {
                b.iter(|| {
                    broker.handle_input(
                        Time::ZERO,
                        Input::Received {
                            conn: ConnectionId(0),
                            data: &data,
                        },
                    );
                    let mut sent = drain(&mut broker);
                    if qos == QoS::AtLeastOnce {
                        // Subscribers acknowledge, so inflight windows never fill.
                        let ack = bytes_of(&Packet::PubAck(PubResponse::new(next_packet_id, ReasonCode::SUCCESS)));
                        for id in 1..=subscribers {
                            broker.handle_input(
                                Time::ZERO,
                                Input::Received {
                                    conn: ConnectionId(id),
                                    data: &ack,
                                },
                            );
                        }
                        next_packet_id = next_packet_id.checked_add(1).unwrap_or(1);
                        sent += drain(&mut broker);
                    }
                    sent
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, route);
criterion_main!(benches);
