//! Checks on records read back from disk that a checksum cannot make: numbers the broker would overflow when it
//! continues from them, and queue entries whose message is missing. Each failure is a typed refusal (with the
//! file and offset, from the caller), never a panic or a silently incomplete image. Every way records come back from
//! disk goes through it: the broker's own log and snapshots (`mqtt-storage`) and [`super::log::replay`] (a Raft
//! snapshot's image in a cluster).

use super::{Image, Record};
use std::collections::BTreeSet;

/// Whether `records` (one commit, or one snapshot record) may be applied to `image`: every session key, message id
/// and entry sequence number leaves room for the next one (the restored broker continues at the largest plus one),
/// and every queue entry refers to a message that is stored, before it or in the same commit.
pub fn check(image: &Image, records: &[Record]) -> Result<(), String> {
    let mut stored = BTreeSet::new();
    for record in records {
        let numbers: &[(&str, u64)] = match record {
            Record::SessionOpen { key, .. } => &[("session key", *key)],
            Record::Store { id, .. } => {
                stored.insert(*id);
                &[("message id", *id)]
            }
            Record::Enqueue { key, seq, id, .. } => {
                if !image.messages.contains_key(id) && !stored.contains(id) {
                    return Err(format!(
                        "a queue entry of session {key} refers to message {id}, which is missing"
                    ));
                }
                &[("session key", *key), ("entry sequence number", *seq)]
            }
            _ => &[],
        };
        if let Some((what, _)) = numbers.iter().find(|(_, n)| *n == u64::MAX) {
            return Err(format!("a {what} of {} leaves no room for the next one", u64::MAX));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_without_its_message_and_a_maximal_key_are_refused() {
        let image = Image::default();
        let enqueue = |id| Record::Enqueue {
            key: 1,
            seq: 1,
            id,
            qos: crate::packet::QoS::AtLeastOnce,
            retain: false,
            subscription_ids: Vec::new(),
        };
        let err = check(&image, &[enqueue(7)]).unwrap_err();
        assert!(err.contains("message 7, which is missing"), "{err}");
        let err = check(
            &image,
            &[
                Record::SessionEnd { key: 1 },
                Record::SessionOpen {
                    key: u64::MAX,
                    client_id: "c".into(),
                    protocol: crate::packet::ProtocolVersion::V5,
                    expiry: 0,
                },
            ],
        )
        .unwrap_err();
        assert!(err.contains("session key"), "{err}");
        assert!(
            check(&image, &[Record::SessionEnd { key: u64::MAX }]).is_ok(),
            "ends create nothing"
        );
    }

    /// The core's own replay (a cluster's Raft snapshot image) refuses an entry whose message is missing at the
    /// record's offset, as damage that is not a torn write, instead of applying what it can and dropping the rest.
    #[test]
    fn replay_stops_at_an_entry_without_its_message_naming_its_offset() {
        use crate::persist::log::{append, replay};
        let (mut data, mut scratch) = (bytes::BytesMut::new(), bytes::BytesMut::new());
        let open = Record::SessionOpen {
            key: 1,
            client_id: "c".into(),
            protocol: crate::packet::ProtocolVersion::V5,
            expiry: 0,
        };
        append(&mut data, &open, &mut scratch);
        let offset = data.len();
        let enqueue = Record::Enqueue {
            key: 1,
            seq: 1,
            id: 7,
            qos: crate::packet::QoS::AtLeastOnce,
            retain: false,
            subscription_ids: Vec::new(),
        };
        append(&mut data, &enqueue, &mut scratch);
        append(&mut data, &Record::SessionEnd { key: 1 }, &mut scratch);
        let mut image = Image::default();
        let replayed = replay(&data, &mut image);
        let damage = replayed.damage.expect("refused");
        assert_eq!((damage.offset, damage.torn_tail, replayed.records), (offset, false, 1));
        assert!(
            damage.detail.contains("message 7, which is missing"),
            "{}",
            damage.detail
        );
        assert!(
            image.sessions.contains_key(&1),
            "the records before it are applied, none after"
        );
    }
}
