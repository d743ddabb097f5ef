//! Arbitrary bytes in arbitrary chunks into the decoder, for every starting version: no panic, and every decoded
//! packet survives encode → decode unchanged.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mqtt_core::codec::selfcheck::decode_reencode;
use mqtt_core::packet::ProtocolVersion;

#[derive(Arbitrary, Debug)]
struct Input {
    version: Option<ProtocolVersion>,
    chunks: Vec<u8>,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let chunks: Vec<usize> = input.chunks.iter().map(|&c| usize::from(c)).collect();
    decode_reencode(input.version, &input.data, &chunks);
});
