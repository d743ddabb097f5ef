//! The cluster invariants, checked from outside the nodes: the simulator knows every node's durable disk, so it
//! knows the commit index independently of what any leader claims.
//!
//! - Commit rule: when a node releases outputs that waited for entry (index, term), a majority of the disks hold
//!   that entry durably.
//! - One leader per term: no two nodes start serving in the same term, and outputs are released only by the node
//!   that served the term of their entry.
//! - No stale leader: a node does not serve clients once another node has served a higher term for longer than a
//!   leader cut off from its quorum needs to notice (check-quorum).
//! - Agreement: nodes at the same applied index have the same digest of applied entries (and, at the end, equal
//!   images).
//! - No acknowledgement of an uncommitted record, seen by the client: when a publisher receives the PUBACK or
//!   PUBREC of a message, an entry that stores the message (a `Store` or `Retain` record holding its payload) is
//!   durable on a majority of the disks. The simulator reads the entries as the nodes write them, so this holds
//!   whatever path the acknowledgement took (straight from the leader, or relayed by a follower).
//! - Per-publisher order: each subscriber receives the messages of one publisher (one topic each) at one QoS for
//!   the first time in the order they were published (an ordered topic, section 4.6 [MQTT-4.6.0-6]; QoS 1
//!   redeliveries of earlier ones may come between).
//! - Delivery: every acknowledged QoS 1/2 message reaches every subscriber, QoS 2 exactly once, across any
//!   sequence of leader changes (checked at the end of the liveness phase; duplicates at once).

use super::disk::Disk;
use bytes::Bytes;
use mqtt_cluster::eraftpb::Entry;
use mqtt_core::packet::QoS;
use mqtt_core::persist::Record;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
pub struct Checker {
    /// Every QoS 1/2 message a publisher sent, with its QoS.
    published: BTreeMap<Bytes, QoS>,
    /// Messages whose PUBACK / PUBREC the publisher got.
    acknowledged: BTreeSet<Bytes>,
    /// Deliveries per (subscriber, message).
    delivered: BTreeMap<(usize, Bytes), u32>,
    /// Who served which term.
    leaders: BTreeMap<u64, u64>,
    /// Nodes serving now: id -> (term, since ms).
    serving: BTreeMap<u64, (u64, u64)>,
    /// The first digest seen at each applied index.
    digests: BTreeMap<u64, (u64, u64)>,
    pub releases_checked: u64,
    /// Entries (index, term) that store each payload, as written to any disk.
    stored_in: BTreeMap<Bytes, BTreeSet<(u64, u64)>>,
    /// Entries already read.
    entries_read: BTreeSet<(u64, u64)>,
    /// Acknowledgements received and not yet checked against the disks: (publisher, payload).
    acks_to_verify: Vec<(usize, Bytes)>,
    pub acks_verified: u64,
    /// The highest message number of each publisher at each QoS that each subscriber received.
    last_seen: BTreeMap<(usize, u64, u8), u64>,
}

impl Checker {
    pub fn published(&mut self, payload: &Bytes, qos: QoS) {
        self.published.insert(payload.clone(), qos);
    }

    /// Publisher `client` received the acknowledgement of `payload`; checked by `verify_acks`.
    pub fn acknowledged(&mut self, client: usize, payload: &Bytes) {
        self.acknowledged.insert(payload.clone());
        self.acks_to_verify.push((client, payload.clone()));
    }

    /// Entries a node writes (each (index, term) read once): which payloads they store.
    pub fn entries_written(&mut self, entries: &[Entry]) {
        for entry in entries {
            if entry.data.is_empty() || !self.entries_read.insert((entry.index, entry.term)) {
                continue;
            }
            // An entry that does not decode is reported by the node that applies it.
            let Ok(records) = mqtt_cluster::wire::decode_records(&entry.data) else {
                continue;
            };
            for record in records {
                if let Record::Store { message, .. } | Record::Retain { message } = record {
                    self.stored_in
                        .entry(message.payload.clone())
                        .or_default()
                        .insert((entry.index, entry.term));
                }
            }
        }
    }

    /// Every acknowledgement received since the last call was of a message stored by an entry that a majority of
    /// the disks hold durably.
    pub fn verify_acks(&mut self, disks: &[&Disk]) -> Result<(), String> {
        for (client, payload) in std::mem::take(&mut self.acks_to_verify) {
            self.acks_verified += 1;
            let entries = self.stored_in.get(&payload);
            let committed = entries.is_some_and(|entries| {
                entries.iter().any(|(index, term)| {
                    let holding = disks.iter().filter(|d| d.holds(*index, *term)).count();
                    holding * 2 > disks.len()
                })
            });
            if !committed {
                return Err(format!(
                    "c{client} received the acknowledgement of {payload:?} while no entry storing it was durable on a \
                     majority (entries storing it: {entries:?}): an acknowledgement for an uncommitted record"
                ));
            }
        }
        Ok(())
    }

    pub fn acknowledged_count(&self) -> usize {
        self.acknowledged.len()
    }

    pub fn delivered(&mut self, subscriber: usize, payload: &Bytes) -> Result<(), String> {
        let Some(published) = self.published.get(payload) else {
            return Err(format!("c{subscriber} received {payload:?}, which nobody published"));
        };
        let n = self.delivered.entry((subscriber, payload.clone())).or_insert(0);
        *n += 1;
        if *n == 1 {
            // Payloads are "publisher:number", numbered from 1 by each publisher.
            let parsed = std::str::from_utf8(payload).ok().and_then(|p| {
                let (publisher, number) = p.split_once(':')?;
                Some((publisher.parse::<u64>().ok()?, number.parse::<u64>().ok()?))
            });
            if let Some((publisher, number)) = parsed {
                let qos = *published as u8;
                let last = self.last_seen.entry((subscriber, publisher, qos)).or_insert(0);
                if number < *last {
                    return Err(format!(
                        "c{subscriber} received c{publisher}'s QoS {qos} message {number} after its message {last}: \
                         out of publisher order [MQTT-4.6.0-6]"
                    ));
                }
                *last = number;
            }
        }
        if *published == QoS::ExactlyOnce && *n > 1 {
            return Err(format!(
                "QoS 2 message {payload:?} delivered {n} times to c{subscriber}"
            ));
        }
        Ok(())
    }

    /// Node `node` releases outputs that waited for entry (index, term).
    pub fn released(&mut self, node: u64, index: u64, term: u64, disks: &[&Disk]) -> Result<(), String> {
        self.releases_checked += 1;
        if self.leaders.get(&term) != Some(&node) {
            return Err(format!(
                "n{node} released outputs of entry {index} of term {term}, which it did not serve (leader: {:?})",
                self.leaders.get(&term)
            ));
        }
        let holding = disks.iter().filter(|d| d.holds(index, term)).count();
        if holding * 2 <= disks.len() {
            return Err(format!(
                "n{node} released outputs of entry {index} (term {term}) held durably by only {holding} of {} nodes: \
                 an acknowledgement for an uncommitted record",
                disks.len()
            ));
        }
        Ok(())
    }

    pub fn serving(&mut self, node: u64, term: u64, now: u64) -> Result<(), String> {
        if let Some(other) = self.leaders.insert(term, node).filter(|o| *o != node) {
            return Err(format!("n{node} and n{other} both served clients in term {term}"));
        }
        self.serving.insert(node, (term, now));
        Ok(())
    }

    pub fn stopped_serving(&mut self, node: u64) {
        self.serving.remove(&node);
    }

    /// No node still serves (accepts clients, hands them output) once another has served a higher term for longer
    /// than `grace`, how long a leader cut off from its quorum may take to notice. Its clients would wait forever
    /// for acknowledgements it can never commit instead of moving to the real leader.
    pub fn no_stale_leader(&self, now: u64, grace: u64) -> Result<(), String> {
        for (node, (term, _)) in &self.serving {
            for (other, (other_term, since)) in &self.serving {
                if other_term > term && now > since + grace {
                    return Err(format!(
                        "stale leader: n{node} (term {term}) still serves clients {} ms after n{other} began serving \
                         term {other_term}",
                        now - since
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn applied(&mut self, node: u64, applied: u64, digest: u64) -> Result<(), String> {
        match self.digests.get(&applied) {
            Some((first_node, first)) if *first != digest => Err(format!(
                "n{node} applied other entries up to index {applied} than n{first_node} had (digests {digest:#x} vs \
                 {first:#x}): an entry applied twice, skipped or different"
            )),
            Some(_) => Ok(()),
            None => {
                self.digests.insert(applied, (node, digest));
                Ok(())
            }
        }
    }

    /// Every acknowledged message reached every subscriber (QoS 2 exactly once was checked as they came).
    pub fn all_delivered(&self, subscribers: &[usize]) -> Result<(), String> {
        for payload in &self.acknowledged {
            for sub in subscribers {
                if !self.delivered.contains_key(&(*sub, payload.clone())) {
                    return Err(format!(
                        "acknowledged message {payload:?} never reached subscriber c{sub}"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::disk::Write;
    use mqtt_core::persist::StoredMessage;

    fn entry_storing(index: u64, term: u64, payload: &'static [u8]) -> Entry {
        let message = StoredMessage {
            topic: "t/0".into(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
            expires_at: None,
        };
        let record = Record::Store {
            id: 1,
            message: Box::new(message),
        };
        Entry {
            index,
            term,
            data: mqtt_cluster::wire::encode_records(&[record]).into(),
            ..Entry::default()
        }
    }

    #[test]
    fn an_acknowledgement_needs_its_entry_durable_on_a_majority() {
        let mut check = Checker::default();
        let entry = entry_storing(3, 1, b"0:1");
        check.entries_written(std::slice::from_ref(&entry));
        let mut disks: Vec<Disk> = (0..3).map(|_| Disk::default()).collect();
        disks[0].write(Write::Entries(vec![entry.clone()]));
        disks[0].sync();
        disks[1].write(Write::Entries(vec![entry]));
        check.acknowledged(0, &Bytes::from_static(b"0:1"));
        let refs: Vec<&Disk> = disks.iter().collect();
        let err = check.verify_acks(&refs).unwrap_err();
        assert!(err.contains("an acknowledgement for an uncommitted record"), "{err}");
        disks[1].sync();
        check.acknowledged(0, &Bytes::from_static(b"0:1"));
        let refs: Vec<&Disk> = disks.iter().collect();
        assert!(check.verify_acks(&refs).is_ok(), "two of three hold it durably");
        check.acknowledged(0, &Bytes::from_static(b"0:2"));
        assert!(check.verify_acks(&refs).is_err(), "no entry stores it at all");
    }

    #[test]
    fn first_deliveries_follow_each_publishers_order_per_qos() {
        let mut check = Checker::default();
        for (payload, qos) in [
            (&b"1:1"[..], QoS::AtLeastOnce),
            (b"1:2", QoS::AtLeastOnce),
            (b"1:3", QoS::ExactlyOnce),
        ] {
            check.published(&Bytes::from_static(payload), qos);
        }
        assert!(
            check.delivered(0, &Bytes::from_static(b"1:3")).is_ok(),
            "another QoS: its own order"
        );
        assert!(check.delivered(0, &Bytes::from_static(b"1:1")).is_ok());
        assert!(check.delivered(0, &Bytes::from_static(b"1:2")).is_ok());
        assert!(
            check.delivered(0, &Bytes::from_static(b"1:1")).is_ok(),
            "a QoS 1 redelivery"
        );
        assert!(check.delivered(1, &Bytes::from_static(b"1:2")).is_ok());
        let err = check.delivered(1, &Bytes::from_static(b"1:1")).unwrap_err();
        assert!(err.contains("out of publisher order"), "{err}");
    }
}
