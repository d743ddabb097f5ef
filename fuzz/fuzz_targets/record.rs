//! Record decoding on damaged bytes (issue: loud storage failures): any input decodes to a record or a typed
//! error, never a panic; a decoded record encodes to bytes that decode to the same record.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use mqtt_core::persist::Record;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = Record::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let mut out = BytesMut::new();
    // A record that decoded must be encodable again: an encoding error would be a record recovery accepts but
    // the next snapshot cannot write.
    record.encode(&mut out).expect("a decoded record encodes");
    let again = Record::decode(out.freeze()).expect("an encoded record decodes");
    assert_eq!(again, record);
});
