//! The decode fuzz target's property, run in `cargo test` over seeded random inputs: mutated valid streams and raw
//! random bytes, fed in random chunkings, never panic, and whatever decodes re-encodes to the same packet.

use bytes::BytesMut;
use mqtt_core::codec::{encode, generate, selfcheck::decode_reencode};
use mqtt_core::packet::ProtocolVersion;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
fn mutated_packet_streams_never_panic_and_round_trip() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xF022);
    let mut decoded_total = 0;
    for round in 0..3000 {
        let version = [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1, ProtocolVersion::V5][round % 3];
        let mut bytes = BytesMut::new();
        let connect = generate::connect(&mut rng, version);
        encode(
            &mqtt_core::packet::Packet::Connect(Box::new(connect)),
            version,
            &mut bytes,
        )
        .expect("encodes");
        for _ in 0..rng.gen_range(0..5) {
            let packet = generate::packet(&mut rng, version);
            if !matches!(packet, mqtt_core::packet::Packet::Connect(_)) {
                encode(&packet, version, &mut bytes).expect("encodes");
            }
        }
        let mut data = bytes.to_vec();
        for _ in 0..rng.gen_range(0..4) {
            let i = rng.gen_range(0..data.len());
            data[i] = rng.gen();
        }
        let chunks: Vec<usize> = (0..4).map(|_| rng.gen_range(1..20)).collect();
        decoded_total += decode_reencode(None, &data, &chunks);
    }
    assert!(
        decoded_total > 3000,
        "most mutated streams still decode something: {decoded_total}"
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xB17E5);
    for _ in 0..20_000 {
        let len = rng.gen_range(0..64);
        let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let version = match rng.gen_range(0..4) {
            0 => None,
            1 => Some(ProtocolVersion::V3_1_1),
            _ => Some(ProtocolVersion::V5),
        };
        decode_reencode(version, &data, &[rng.gen_range(1..8)]);
    }
}
