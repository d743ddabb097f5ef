//! Large payloads are shared, not copied, on their way to subscribers (`Config::shared_payload_min`): each
//! subscriber's output is its encoded PUBLISH header followed by the message's own payload `Bytes`. What reaches the
//! wire must be exactly what the plain encoder makes, and the output limits must count the shared bytes.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use mqtt_core::broker::{Config, ConnectionId, Input};
use mqtt_core::codec::{encode, Decoder};
use mqtt_core::harness::{connect_packet, Harness};
use mqtt_core::packet::*;

const SUBSCRIBERS: usize = 4;
const LARGE: usize = 16 * 1024;

fn harness_with(shared_payload_min: usize, max_outbuf_bytes: usize) -> Harness {
    let mut h = Harness::new(Config {
        shared_payload_min,
        max_outbuf_bytes,
        sys_interval: 0,
        ..Config::default()
    });
    h.transmits = Some(Vec::new());
    h
}

fn large_publish(topic: &str, qos: QoS, packet_id: u16, fill: u8) -> Publish {
    Publish {
        payload: Bytes::from(vec![fill; LARGE]),
        ..publish_packet(topic, "", qos, packet_id)
    }
}

/// The chunks handed out for `conn` since the last call, in order.
fn take_transmits(h: &mut Harness, conn: ConnectionId) -> Vec<Bytes> {
    let transmits = h.transmits.as_mut().expect("recording");
    let (mine, others): (Vec<_>, Vec<_>) = transmits.drain(..).partition(|(c, _)| *c == conn);
    *transmits = others;
    mine.into_iter().map(|(_, data)| data).collect()
}

/// Subscribers with topic aliases and a Subscription Identifier (v5), or plain (3.1.1); returns them and the
/// publisher.
fn fan_out_setup(h: &mut Harness, version: ProtocolVersion) -> (Vec<ConnectionId>, ConnectionId) {
    let subscribers = (0..SUBSCRIBERS)
        .map(|i| {
            let mut connect = connect_packet(version, &format!("sub-{i}"));
            if version.is_v5() {
                // The broker may then replace the topic by an alias [MQTT-3.3.2-12], [MQTT-3.2.2-17].
                connect.properties.topic_alias_maximum = Some(4);
            }
            let conn = connected(h, connect);
            let options = SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            };
            let properties = Properties {
                // [MQTT-3.3.4-3]: the identifier comes back on every matching PUBLISH.
                subscription_identifiers: if version.is_v5() {
                    vec![17 + i as u32]
                } else {
                    Vec::new()
                },
                ..Properties::default()
            };
            subscribe_packet(h, conn, vec![("big/+".into(), options)], properties);
            conn
        })
        .collect();
    let publisher = connected(h, connect_packet(version, "pub"));
    (subscribers, publisher)
}

/// Publishes two large messages on one topic (the second goes out under the alias the first set) and returns,
/// per subscriber, the chunks it was handed.
fn fan_out(h: &mut Harness, version: ProtocolVersion) -> Vec<Vec<Bytes>> {
    let (subscribers, publisher) = fan_out_setup(h, version);
    for conn in &subscribers {
        take_transmits(h, *conn);
    }
    for (packet_id, fill) in [(1, 0xA1), (2, 0xB2)] {
        h.send(
            publisher,
            Packet::Publish(large_publish("big/one", QoS::AtLeastOnce, packet_id, fill)),
        );
    }
    subscribers.iter().map(|conn| take_transmits(h, *conn)).collect()
}

/// Decodes a stream as the client does and encodes every packet again with the plain encoder.
fn reencoded(version: ProtocolVersion, stream: &[u8]) -> (Vec<Publish>, Vec<u8>) {
    let mut decoder = Decoder::new(Some(version), usize::MAX);
    decoder.feed(stream);
    let (mut publishes, mut bytes) = (Vec::new(), BytesMut::new());
    while let Some(packet) = decoder.next_packet().expect("the broker's output decodes") {
        encode(&packet, version, &mut bytes).expect("encodes");
        if let Packet::Publish(publish) = packet {
            publishes.push(publish);
        }
    }
    assert_eq!(decoder.buffered(), 0, "whole packets only");
    (publishes, bytes.to_vec())
}

#[test]
fn a_large_payload_reaches_every_subscriber_byte_identical_to_the_plain_encoding() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let shared = fan_out(&mut harness_with(2048, usize::MAX), version);
        let copied = fan_out(&mut harness_with(usize::MAX, usize::MAX), version);
        for (i, (shared, copied)) in shared.iter().zip(&copied).enumerate() {
            let stream = shared.concat();
            assert_eq!(
                stream,
                copied.concat(),
                "{version:?}: same bytes whether shared or copied"
            );
            let (publishes, plain) = reencoded(version, &stream);
            assert_eq!(stream, plain, "{version:?}: byte-identical to the plain encoder");
            assert_eq!(publishes.len(), 2);
            assert!(publishes.iter().all(|p| p.payload.len() == LARGE));
            if version.is_v5() {
                // The first PUBLISH sets the alias with the topic, the second uses it alone [MQTT-3.3.2-12].
                assert_eq!(publishes[0].topic, "big/one");
                assert_eq!(publishes[0].properties.topic_alias, Some(1));
                assert_eq!(publishes[1].topic, "");
                assert_eq!(publishes[1].properties.topic_alias, Some(1));
                for publish in &publishes {
                    assert_eq!(publish.properties.subscription_identifiers, vec![17 + i as u32]);
                }
            }
            // Copied: one chunk per publish; shared: a header chunk and a payload chunk each.
            assert_eq!(copied.len(), 2, "{version:?}");
            assert_eq!(shared.len(), 4, "{version:?}");
        }
    }
}

#[test]
fn subscribers_are_handed_the_same_payload_memory() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let chunks = fan_out(&mut harness_with(2048, usize::MAX), version);
        for message in 0..2 {
            let payload_chunks: Vec<&Bytes> = chunks.iter().map(|chunks| &chunks[2 * message + 1]).collect();
            assert!(payload_chunks.iter().all(|chunk| chunk.len() == LARGE));
            let first = payload_chunks[0].as_ptr();
            assert!(
                payload_chunks.iter().all(|chunk| chunk.as_ptr() == first),
                "{version:?}: one payload in memory for all {SUBSCRIBERS} subscribers"
            );
        }
    }
}

/// A QoS 0 message to a connection whose output is full is dropped; a shared payload counts in full towards
/// `max_outbuf_bytes` as a copied one would.
#[test]
fn max_outbuf_bytes_counts_shared_payloads() {
    for shared_payload_min in [2048, usize::MAX] {
        let mut h = harness_with(shared_payload_min, 2 * LARGE + 100);
        let sub = connected(&mut h, v5("sub"));
        subscribe(&mut h, sub, "big/+", QoS::AtMostOnce);
        let publisher = connected(&mut h, v5("pub"));
        h.input(Input::WriteBlocked { conn: sub });
        let dropped_before = h.broker.stats().messages_dropped;
        for fill in 0..4 {
            h.send(
                publisher,
                Packet::Publish(large_publish("big/one", QoS::AtMostOnce, 0, fill)),
            );
        }
        // Two fill the buffer to just under the bound, the third passes the check and the fourth is dropped.
        assert_eq!(
            h.broker.stats().messages_dropped - dropped_before,
            1,
            "{shared_payload_min}"
        );
        h.input(Input::Writable { conn: sub });
        let received = publishes(&mut h, sub);
        assert_eq!(received.len(), 3, "{shared_payload_min}");
        let fills: Vec<u8> = received.iter().map(|p| p.payload[0]).collect();
        assert_eq!(fills, vec![0, 1, 2]);
    }
}

#[test]
fn small_payloads_still_go_out_as_one_transmit_per_flush() {
    let mut h = harness_with(2048, usize::MAX);
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "t/+", QoS::AtMostOnce);
    let publisher = connected(&mut h, v5("pub"));
    h.input(Input::WriteBlocked { conn: sub });
    for i in 0..5 {
        publish(&mut h, publisher, "t/small", &"x".repeat(64 + i), QoS::AtMostOnce, 0);
    }
    take_transmits(&mut h, sub);
    h.input(Input::Writable { conn: sub });
    let chunks = take_transmits(&mut h, sub);
    assert_eq!(chunks.len(), 1, "five small PUBLISHes, one buffer");
    assert_eq!(publishes(&mut h, sub).len(), 5);

    // Small, large, small: the large payload alone is a chunk of its own, between the others.
    h.input(Input::WriteBlocked { conn: sub });
    publish(&mut h, publisher, "t/small", "before", QoS::AtMostOnce, 0);
    h.send(
        publisher,
        Packet::Publish(large_publish("t/large", QoS::AtMostOnce, 0, 9)),
    );
    publish(&mut h, publisher, "t/small", "after", QoS::AtMostOnce, 0);
    h.input(Input::Writable { conn: sub });
    let chunks = take_transmits(&mut h, sub);
    assert_eq!(chunks.iter().map(Bytes::len).filter(|&len| len == LARGE).count(), 1);
    assert_eq!(chunks.len(), 3, "small + header, payload, small");
    let received = publishes(&mut h, sub);
    assert_eq!(payloads(&received)[0], "before");
    assert_eq!(received[1].payload.len(), LARGE);
    assert_eq!(payloads(&received)[2], "after");
}
