//! Round-trip property tests: for thousands of generated valid packets of every kind and every version,
//! decode(encode(p)) == p, `encoded_len` is exact, and decoding one byte at a time gives the same packet.

use bytes::BytesMut;
use mqtt_core::codec::{encode, encoded_len, generate, Decoder};
use mqtt_core::packet::{Packet, ProtocolVersion};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

const VERSIONS: [ProtocolVersion; 3] = [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1, ProtocolVersion::V5];

fn decode_all(version: ProtocolVersion, bytes: &[u8], chunk: usize) -> Vec<Packet> {
    decode_all_with(Decoder::new(Some(version), usize::MAX), bytes, chunk)
}

fn decode_all_with(mut decoder: Decoder, bytes: &[u8], chunk: usize) -> Vec<Packet> {
    let mut packets = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        decoder.feed(piece);
        while let Some(packet) = decoder.next_packet().expect("valid bytes decode") {
            packets.push(packet);
        }
    }
    assert_eq!(decoder.buffered(), 0, "nothing left over");
    packets
}

#[test]
fn every_generated_packet_round_trips_in_every_version() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5EED);
    for version in VERSIONS {
        let mut kinds = BTreeSet::new();
        for _ in 0..4000 {
            let packet = generate::packet(&mut rng, version);
            kinds.insert(packet.packet_type() as u8);
            let mut bytes = BytesMut::new();
            encode(&packet, version, &mut bytes).expect("generated packets encode");
            assert_eq!(encoded_len(&packet, version), bytes.len(), "encoded_len of {packet:?}");
            let decoded = decode_all(version, &bytes, bytes.len());
            assert_eq!(decoded, vec![packet], "{version:?}");
        }
        let expected = if version.is_v5() { 15 } else { 14 };
        assert_eq!(kinds.len(), expected, "every packet type generated for {version:?}");
    }
}

#[test]
fn a_stream_decodes_the_same_in_any_chunking() {
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    for version in VERSIONS {
        let packets: Vec<Packet> = (0..300).map(|_| generate::packet(&mut rng, version)).collect();
        let mut bytes = BytesMut::new();
        for packet in &packets {
            encode(packet, version, &mut bytes).expect("encodes");
        }
        for chunk in [1, 2, 3, 7, 64, 1000] {
            assert_eq!(decode_all(version, &bytes, chunk), packets, "chunk size {chunk}");
            // Some or all packets received into allocations of their own.
            for own_allocation_min in [0, 40, 200] {
                let decoder = Decoder::new(Some(version), usize::MAX).with_own_allocation_min(own_allocation_min);
                assert_eq!(
                    decode_all_with(decoder, &bytes, chunk),
                    packets,
                    "chunk size {chunk}, own allocations from {own_allocation_min}"
                );
            }
        }
    }
}

#[test]
fn payloads_are_slices_of_the_input_not_copies() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut publish = generate::publish(&mut rng, ProtocolVersion::V5);
    publish.payload = bytes::Bytes::from(vec![7u8; 4096]);
    let mut bytes = BytesMut::new();
    encode(&Packet::Publish(publish), ProtocolVersion::V5, &mut bytes).expect("encodes");
    let mut decoder = Decoder::new(Some(ProtocolVersion::V5), usize::MAX);
    decoder.feed(&bytes);
    let Some(Packet::Publish(decoded)) = decoder.next_packet().expect("decodes") else {
        panic!("expected PUBLISH");
    };
    // A second decoded slice of the same frame shares its allocation: slicing is O(1) with no copy.
    let whole = decoded.payload.clone();
    assert_eq!(whole.as_ptr(), decoded.payload.as_ptr());
    assert_eq!(decoded.payload.len(), 4096);
}

/// A PUBLISH sent as its header then its payload (see `encode_publish_header`) is byte for byte the PUBLISH `encode`
/// writes, in every version, with properties, across the 1-, 2- and 3-byte remaining length boundaries [MQTT-2.1.4].
#[test]
fn publish_header_then_payload_equals_the_whole_encoding() {
    use mqtt_core::codec::encode_publish_header;
    use mqtt_core::packet::{Properties, Publish, QoS};
    let properties = Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(60),
        content_type: Some("application/octet-stream".into()),
        response_topic: Some("replies/1".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"corr")),
        subscription_identifiers: vec![1, 300, 268_435_455],
        topic_alias: Some(7),
        user_properties: vec![("k".into(), "v".into())],
        ..Properties::default()
    };
    for version in VERSIONS {
        for payload_len in [0, 1, 100, 127 - 20, 200, 16_383, 16_384, 70_000] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let publish = Publish {
                    dup: qos != QoS::AtMostOnce,
                    qos,
                    retain: true,
                    topic: "sensors/large".into(),
                    packet_id: if qos == QoS::AtMostOnce { 0 } else { 42 },
                    properties: if version.is_v5() {
                        properties.clone().into()
                    } else {
                        Default::default()
                    },
                    payload: bytes::Bytes::from(vec![0xA5; payload_len]),
                };
                let packet = Packet::Publish(publish.clone());
                let mut whole = BytesMut::new();
                encode(&packet, version, &mut whole).expect("encodes");
                let mut split = BytesMut::new();
                encode_publish_header(&publish, version, &mut split).expect("header encodes");
                assert_eq!(split.len() + payload_len, whole.len(), "{version:?} {payload_len}");
                split.extend_from_slice(&publish.payload);
                assert_eq!(split, whole, "{version:?} payload {payload_len} {qos:?}");
                assert_eq!(decode_all(version, &split, 1000), vec![packet]);
            }
        }
    }
}
