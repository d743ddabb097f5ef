//! The batch of records one Raft entry carries and the applied-entry digest: what a follower decodes from an entry
//! keeps nothing of the entry's buffer alive, and the digest tells apart entries that differ anywhere.

use bytes::Bytes;
use mqtt_cluster::wire;
use mqtt_core::packet::{Properties, QoS};
use mqtt_core::persist::{Record, StoredMessage};

fn store(id: u64, correlation: Option<&[u8]>) -> Record {
    let properties = Properties {
        correlation_data: correlation.map(Bytes::copy_from_slice),
        ..Properties::default()
    };
    Record::Store {
        id,
        message: Box::new(StoredMessage {
            topic: format!("t/{id}"),
            payload: Bytes::from(vec![id as u8; 64]),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: properties.into(),
            expires_at: None,
        }),
    }
}

/// Whether `inner` points into `outer`'s bytes.
fn inside(outer: &Bytes, inner: &[u8]) -> bool {
    let range = outer.as_ptr_range();
    !inner.is_empty() && range.contains(&inner.as_ptr())
}

#[test]
fn decoded_records_round_trip_and_do_not_pin_the_entry() {
    let records = vec![
        store(1, None),
        Record::Done { key: 7, seq: 3 },
        store(2, Some(b"request-42")),
        Record::Done { key: 7, seq: 4 },
    ];
    let data = Bytes::from(wire::encode_records(&records));
    let decoded = wire::decode_records(&data).expect("the records just encoded");
    assert_eq!(decoded, records);
    // A queued message can live far longer than the entry it came in (a persistent session offline for hours):
    // its payload and its Correlation Data [MQTT-3.3.2-15] are its own, not slices of the whole entry.
    for record in &decoded {
        if let Record::Store { message, .. } = record {
            assert!(!inside(&data, &message.payload), "payload pins the entry");
            if let Some(correlation) = &message.properties.correlation_data {
                assert!(!inside(&data, correlation), "correlation data pins the entry");
            }
        }
    }
}

#[test]
fn a_damaged_entry_is_an_error_not_a_shorter_batch() {
    let data = wire::encode_records(&[store(1, None), store(2, None)]);
    let mut flipped = data.clone();
    let at = flipped.len() - 3;
    flipped[at] ^= 0x40;
    assert!(wire::decode_records(&Bytes::from(flipped)).is_err());
    assert!(wire::decode_records(&Bytes::from(data[..data.len() - 1].to_vec())).is_err());
    // A length field claiming more than is there is counted, not trusted, when sizing the batch.
    let mut long = data.clone();
    long[0] = 0x7f;
    assert!(wire::decode_records(&Bytes::from(long)).is_err());
}

#[test]
fn the_digest_tells_apart_entries_that_differ_anywhere() {
    let data: Vec<u8> = (0..100u8).collect();
    let base = wire::fold_digest(0, 5, 2, &data);
    assert_eq!(base, wire::fold_digest(0, 5, 2, &data), "a pure function of its inputs");
    assert_ne!(base, wire::fold_digest(0, 6, 2, &data), "index");
    assert_ne!(base, wire::fold_digest(0, 5, 3, &data), "term");
    assert_ne!(base, wire::fold_digest(0, 2, 5, &data), "index and term swapped");
    assert_ne!(base, wire::fold_digest(1, 5, 2, &data), "the digest before");
    for at in [0, 7, 8, 63, 96, 99] {
        let mut other = data.clone();
        other[at] ^= 1;
        assert_ne!(base, wire::fold_digest(0, 5, 2, &other), "byte {at}");
    }
    let mut longer = data.clone();
    longer.push(0);
    assert_ne!(base, wire::fold_digest(0, 5, 2, &longer), "a trailing zero byte");
    // Order matters: the same two entries applied the other way round give another digest.
    let (a, b) = (b"first".as_slice(), b"second".as_slice());
    assert_ne!(
        wire::fold_digest(wire::fold_digest(0, 1, 1, a), 2, 1, b),
        wire::fold_digest(wire::fold_digest(0, 1, 1, b), 2, 1, a)
    );
}
