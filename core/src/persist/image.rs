//! The durable state rebuilt from records: what recovery hands to [`crate::broker::Broker::restore`], and what a
//! snapshot writes back out. Applying a record never fails: one that refers to something already gone (a session
//! ended, an entry finished) changes nothing, and is counted so recovery can say so.

use super::record::{Record, SentState, StoredMessage, StoredWill};
use crate::packet::{ProtocolVersion, QoS};
use crate::time::Time;
use crate::topic::Subscription;
use std::collections::{BTreeMap, BTreeSet};

/// One queued or inflight message of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryImage {
    pub message_id: u64,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    /// Packet id and flow state once sent; `None` while queued.
    pub sent: Option<(u16, SentState)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionImage {
    pub client_id: String,
    pub protocol: ProtocolVersion,
    pub expiry: u32,
    /// When its last connection ended; `None` if it was connected when the broker stopped.
    pub offline_since: Option<Time>,
    pub subscriptions: BTreeMap<String, Subscription>,
    /// By sequence number, which is the order they were queued.
    pub entries: BTreeMap<u64, EntryImage>,
    pub incoming_qos2: BTreeSet<u16>,
    pub will: Option<StoredWill>,
}

/// Everything durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    /// By session key.
    pub sessions: BTreeMap<u64, SessionImage>,
    /// By topic.
    pub retained: BTreeMap<String, StoredMessage>,
    /// Messages that queue entries refer to, by id.
    pub messages: BTreeMap<u64, StoredMessage>,
    /// Records that referred to something that did not exist.
    pub orphan_records: u64,
}

/// Where recovery puts the retained messages it reads: an [`Image`]'s own map, or, at the broker's start-up, the
/// broker's retained tree itself (`Broker::retained_recovery`), so that a million retained messages are never held
/// twice (a map of them, then the tree built from it) and the freed map does not leave the heap full of holes.
pub trait RetainedSink {
    /// A `Retain` record: `message` replaces whatever its topic held.
    fn retain(&mut self, message: StoredMessage);
    /// A `RetainClear` record.
    fn clear(&mut self, topic: &str);
    /// The `Retain` records that rebuild what it holds: the first part of the snapshot written after recovery.
    fn records(&self) -> Box<dyn Iterator<Item = Record> + '_>;
}

impl RetainedSink for BTreeMap<String, StoredMessage> {
    fn retain(&mut self, message: StoredMessage) {
        self.insert(message.topic.clone(), message);
    }

    fn clear(&mut self, topic: &str) {
        self.remove(topic);
    }

    fn records(&self) -> Box<dyn Iterator<Item = Record> + '_> {
        Box::new(self.values().map(|m| Record::Retain {
            message: Box::new(m.clone()),
        }))
    }
}

impl Image {
    /// Applies `record`, handing retained messages to `retained` instead of keeping them in `self.retained`.
    pub fn apply_with(&mut self, record: Record, retained: &mut dyn RetainedSink) {
        match record {
            Record::Retain { message } => retained.retain(*message),
            Record::RetainClear { topic } => retained.clear(&topic),
            record => self.apply(record),
        }
    }

    pub fn apply(&mut self, record: Record) {
        let applied = match record {
            Record::SessionOpen {
                key,
                client_id,
                protocol,
                expiry,
            } => {
                self.sessions.insert(
                    key,
                    SessionImage {
                        client_id,
                        protocol,
                        expiry,
                        offline_since: None,
                        subscriptions: BTreeMap::new(),
                        entries: BTreeMap::new(),
                        incoming_qos2: BTreeSet::new(),
                        will: None,
                    },
                );
                true
            }
            Record::SessionExpiry { key, expiry } => self.session(key, |s| {
                s.expiry = expiry;
                s.offline_since = None;
            }),
            Record::SessionOffline { key, at } => self.session(key, |s| s.offline_since = Some(at)),
            Record::SessionEnd { key } => self.sessions.remove(&key).is_some(),
            Record::Subscribe {
                key,
                filter,
                subscription,
            } => self.session(key, |s| {
                s.subscriptions.insert(filter, subscription);
            }),
            Record::Unsubscribe { key, filter } => self.session(key, |s| {
                s.subscriptions.remove(&filter);
            }),
            Record::Retain { message } => {
                self.retained.insert(message.topic.clone(), *message);
                true
            }
            Record::RetainClear { topic } => {
                self.retained.remove(&topic);
                true
            }
            Record::Store { id, message } => {
                self.messages.insert(id, *message);
                true
            }
            Record::Enqueue {
                key,
                seq,
                id,
                qos,
                retain,
                subscription_ids,
            } => {
                let known = self.messages.contains_key(&id);
                known
                    && self.session(key, |s| {
                        let entry = EntryImage {
                            message_id: id,
                            qos,
                            retain,
                            subscription_ids,
                            sent: None,
                        };
                        s.entries.insert(seq, entry);
                    })
            }
            Record::Sent {
                key,
                seq,
                packet_id,
                state,
            } => self.entry(key, seq, |e| e.sent = Some((packet_id, state))),
            Record::Done { key, seq } => self.session(key, |s| {
                s.entries.remove(&seq);
            }),
            Record::Qos2Received { key, packet_id } => self.session(key, |s| {
                s.incoming_qos2.insert(packet_id);
            }),
            Record::Qos2Released { key, packet_id } => self.session(key, |s| {
                s.incoming_qos2.remove(&packet_id);
            }),
            Record::WillPending { key, will } => self.session(key, |s| s.will = Some(*will)),
            Record::WillDone { key } => self.session(key, |s| s.will = None),
        };
        if !applied {
            self.orphan_records += 1;
        }
    }

    fn session(&mut self, key: u64, change: impl FnOnce(&mut SessionImage)) -> bool {
        match self.sessions.get_mut(&key) {
            Some(session) => {
                change(session);
                true
            }
            None => false,
        }
    }

    fn entry(&mut self, key: u64, seq: u64, change: impl FnOnce(&mut EntryImage)) -> bool {
        match self.sessions.get_mut(&key).and_then(|s| s.entries.get_mut(&seq)) {
            Some(entry) => {
                change(entry);
                true
            }
            None => false,
        }
    }

    /// Forgets messages no queue entry refers to any more.
    pub fn collect_garbage(&mut self) {
        let live: BTreeSet<u64> = self
            .sessions
            .values()
            .flat_map(|s| s.entries.values().map(|e| e.message_id))
            .collect();
        self.messages.retain(|id, _| live.contains(id));
    }

    /// The records that rebuild this image from nothing: what a snapshot contains.
    pub fn to_records(&self) -> impl Iterator<Item = Record> + '_ {
        let retained = self.retained.records();
        let messages = self.messages.iter().map(|(id, m)| Record::Store {
            id: *id,
            message: Box::new(m.clone()),
        });
        let sessions = self.sessions.iter().flat_map(|(key, s)| session_records(*key, s));
        retained.chain(messages).chain(sessions)
    }

    /// The largest session key, message id and entry sequence number in use, so that new ones never collide.
    pub fn high_water_marks(&self) -> (u64, u64) {
        let key = self.sessions.keys().next_back().copied().unwrap_or(0);
        let id = self.messages.keys().next_back().copied().unwrap_or(0);
        (key, id)
    }
}

/// The records that rebuild one session from nothing (the messages its entries refer to are `Store`d apart).
pub fn session_records(key: u64, s: &SessionImage) -> Vec<Record> {
    let mut out = vec![Record::SessionOpen {
        key,
        client_id: s.client_id.clone(),
        protocol: s.protocol,
        expiry: s.expiry,
    }];
    if let Some(at) = s.offline_since {
        out.push(Record::SessionOffline { key, at });
    }
    for (filter, subscription) in &s.subscriptions {
        out.push(Record::Subscribe {
            key,
            filter: filter.clone(),
            subscription: *subscription,
        });
    }
    for (seq, e) in &s.entries {
        out.push(Record::Enqueue {
            key,
            seq: *seq,
            id: e.message_id,
            qos: e.qos,
            retain: e.retain,
            subscription_ids: e.subscription_ids.clone(),
        });
        if let Some((packet_id, state)) = e.sent {
            out.push(Record::Sent {
                key,
                seq: *seq,
                packet_id,
                state,
            });
        }
    }
    for packet_id in &s.incoming_qos2 {
        out.push(Record::Qos2Received {
            key,
            packet_id: *packet_id,
        });
    }
    if let Some(will) = &s.will {
        out.push(Record::WillPending {
            key,
            will: Box::new(will.clone()),
        });
    }
    out
}
