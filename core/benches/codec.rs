//! Encode and decode throughput of PUBLISH packets, small (16 B payload) and large (64 KiB payload), MQTT 5.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mqtt_core::codec::{encode, Decoder};
use mqtt_core::packet::{Packet, ProtocolVersion, Publish, QoS};
use std::hint::black_box;

const BATCH: usize = 1000;

fn publish(payload_len: usize) -> Packet {
    Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: "devices/sensor-0042/telemetry".into(),
        packet_id: 7,
        payload: Bytes::from(vec![0xA5; payload_len]),
        ..Default::default()
    })
}

fn bench_size(c: &mut Criterion, name: &str, payload_len: usize) {
    let packet = publish(payload_len);
    let mut one = BytesMut::new();
    encode(&packet, ProtocolVersion::V5, &mut one).expect("encodes");
    let wire: Vec<u8> = one.iter().copied().cycle().take(one.len() * BATCH).collect();

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("encode", |b| {
        let mut out = BytesMut::with_capacity(wire.len());
        b.iter(|| {
            out.clear();
            for _ in 0..BATCH {
                encode(black_box(&packet), ProtocolVersion::V5, &mut out).expect("encodes");
            }
            black_box(out.len())
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut decoder = Decoder::new(Some(ProtocolVersion::V5), usize::MAX);
            decoder.feed(black_box(&wire));
            let mut n = 0;
            while let Ok(Some(packet)) = decoder.next_packet() {
                black_box(&packet);
                n += 1;
            }
            assert_eq!(n, BATCH);
        })
    });
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("decode_bytes", |b| {
        b.iter(|| {
            let mut decoder = Decoder::new(Some(ProtocolVersion::V5), usize::MAX);
            decoder.feed(black_box(&wire));
            while let Ok(Some(packet)) = decoder.next_packet() {
                black_box(&packet);
            }
        })
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    bench_size(c, "publish_16B", 16);
    bench_size(c, "publish_64KiB", 64 * 1024);
}

criterion_group!(benches, codec);
criterion_main!(benches);
