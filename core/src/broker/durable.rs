//! The broker's side of persistence: recording every change to durable state as a [`Record`] output, rebuilding
//! the broker from an [`Image`] after a restart, and producing the image a snapshot writes.
//!
//! Durable state is the retained messages plus every session with a non-zero expiry (the ones that outlive their
//! connection). The driver must not send bytes produced after a record before that record is on disk (when it
//! promises `sync = "always"`): that is what makes a PUBACK mean "stored".

use super::message::{Delivery, Message};
use super::session::{Awaiting, Inflight, PendingWill, Session, SessionKey};
use super::sys::SYS_PREFIX;
use super::timer::Timer;
use super::{Broker, Output};
use crate::packet::{QoS, Will};
use crate::persist::{
    session_records, EntryImage, Image, Record, RetainedSink, SentState, SessionImage, StoredMessage, StoredWill,
};
use crate::time::Time;
use bytes::{Bytes, BytesMut};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

impl Broker {
    pub(super) fn next_message_id(&mut self) -> u64 {
        self.next_message_id += 1;
        self.next_message_id
    }

    fn record(&mut self, record: Record) {
        self.stats.records_written += 1;
        self.outputs.push_back(Output::Persist(record));
    }

    /// The session's key for records, if its changes are recorded.
    fn durable_key(&self, key: SessionKey) -> Option<u64> {
        self.sessions.get(&key).filter(|s| s.durable).map(|_| key.0)
    }

    /// After CONNECT set the session's expiry: start, update or stop recording it.
    pub(super) fn persist_session_attached(&mut self, key: SessionKey, had_pending_will: bool) {
        if !self.config.persistence {
            return;
        }
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        let should_be_durable = session.expiry_interval > 0;
        match (session.durable, should_be_durable) {
            (false, true) => {
                // A session that was not durable before is written whole: its messages, then the records a
                // snapshot would write for it.
                session.durable = true;
                let mut messages = BTreeMap::new();
                collect_stored_messages(session, &mut messages);
                let records: Vec<Record> = messages
                    .into_iter()
                    .map(|(id, message)| Record::Store {
                        id,
                        message: Box::new(message),
                    })
                    .chain(session_records(
                        key.0,
                        &session_image(session, self.config.durable_wills),
                    ))
                    .collect();
                for record in records {
                    self.record(record);
                }
            }
            (true, true) => {
                let expiry = session.expiry_interval;
                let armed = armed_will(session, self.config.durable_wills);
                self.record(Record::SessionExpiry { key: key.0, expiry });
                if had_pending_will {
                    self.record(Record::WillDone { key: key.0 });
                }
                if self.config.durable_wills {
                    // The new connection's will replaces whatever the last one left.
                    self.record(match armed {
                        Some(will) => Record::WillPending {
                            key: key.0,
                            will: Box::new(will),
                        },
                        None => Record::WillDone { key: key.0 },
                    });
                }
            }
            (true, false) => {
                session.durable = false;
                self.record(Record::SessionEnd { key: key.0 });
            }
            (false, false) => {}
        }
    }

    pub(super) fn persist_expiry(&mut self, key: SessionKey, expiry: u32) {
        if let Some(k) = self.durable_key(key) {
            self.record(Record::SessionExpiry { key: k, expiry });
        }
    }

    pub(super) fn persist_offline(&mut self, key: SessionKey) {
        if let Some(k) = self.durable_key(key) {
            let at = self.now;
            self.record(Record::SessionOffline { key: k, at });
        }
    }

    pub(super) fn persist_session_end(&mut self, key: SessionKey, session: &Session) {
        if session.durable {
            self.record(Record::SessionEnd { key: key.0 });
        }
    }

    pub(super) fn persist_subscribe(&mut self, key: SessionKey, filter: &str) {
        let Some(k) = self.durable_key(key) else {
            return;
        };
        if let Some(subscription) = self
            .sessions
            .get(&key)
            .and_then(|s| s.subscriptions.get(filter))
            .copied()
        {
            self.record(Record::Subscribe {
                key: k,
                filter: filter.to_string(),
                subscription,
            });
        }
    }

    pub(super) fn persist_unsubscribe(&mut self, key: SessionKey, filter: &str) {
        if let Some(k) = self.durable_key(key) {
            self.record(Record::Unsubscribe {
                key: k,
                filter: filter.to_string(),
            });
        }
    }

    pub(super) fn persist_retained(&mut self, message: &Message) {
        if !self.config.persistence || message.topic.starts_with(SYS_PREFIX) {
            return;
        }
        if message.payload.is_empty() {
            self.record(Record::RetainClear {
                topic: message.topic.to_string(),
            });
        } else {
            self.record(Record::Retain {
                message: Box::new(stored_message(message)),
            });
        }
    }

    /// A QoS 1/2 delivery joined a durable session's queue: its message (once per message) and the entry.
    pub(super) fn record_enqueue(&mut self, key: SessionKey, delivery: &Delivery) {
        if delivery.qos == QoS::AtMostOnce || self.planted(super::planted::PlantedBug::EnqueueNotRecorded) {
            return;
        }
        let Some(k) = self.durable_key(key) else {
            return;
        };
        let id = delivery.message.id;
        if self.last_stored_message != Some(id) {
            self.last_stored_message = Some(id);
            self.record(Record::Store {
                id,
                message: Box::new(stored_message(&delivery.message)),
            });
        }
        self.record(Record::Enqueue {
            key: k,
            seq: delivery.seq,
            id,
            qos: delivery.qos,
            retain: delivery.retain,
            subscription_ids: delivery.subscription_ids.clone(),
        });
    }

    pub(super) fn persist_sent(&mut self, key: SessionKey, seq: u64, packet_id: u16, state: Awaiting) {
        if let Some(k) = self.durable_key(key) {
            self.record(Record::Sent {
                key: k,
                seq,
                packet_id,
                state: sent_state(state),
            });
        }
    }

    pub(super) fn persist_done(&mut self, key: SessionKey, seq: u64) {
        if let Some(k) = self.durable_key(key) {
            self.record(Record::Done { key: k, seq });
        }
    }

    pub(super) fn persist_qos2(&mut self, key: SessionKey, packet_id: u16, received: bool) {
        if received && self.planted(super::planted::PlantedBug::Qos2ReceiptNotPersisted) {
            return;
        }
        if let Some(k) = self.durable_key(key) {
            self.record(if received {
                Record::Qos2Received { key: k, packet_id }
            } else {
                Record::Qos2Released { key: k, packet_id }
            });
        }
    }

    pub(super) fn persist_will_pending(&mut self, key: SessionKey) {
        let Some(k) = self.durable_key(key) else {
            return;
        };
        if let Some(pending) = self.sessions.get(&key).and_then(|s| s.pending_will.as_ref()) {
            let will = Box::new(stored_will(&pending.will, pending.publish_at));
            self.record(Record::WillPending { key: k, will });
        }
    }

    pub(super) fn persist_will_done(&mut self, key: SessionKey) {
        if let Some(k) = self.durable_key(key) {
            self.record(Record::WillDone { key: k });
        }
    }

    /// The durable state as it stands: what a snapshot writes.
    pub fn image(&self) -> Image {
        let mut image = self.image_without_retained();
        self.retained.for_each(|topic, message| {
            if !topic.starts_with(SYS_PREFIX) {
                image.retained.insert(topic.to_string(), stored_message(message));
            }
        });
        image
    }

    /// The durable sessions and the messages their entries refer to (the image but its retained messages).
    pub(super) fn image_without_retained(&self) -> Image {
        let mut image = Image::default();
        for (key, session) in self.sessions.iter().filter(|(_, s)| s.durable) {
            collect_stored_messages(session, &mut image.messages);
            image
                .sessions
                .insert(key.0, session_image(session, self.config.durable_wills));
        }
        image
    }

    /// Rebuilds durable state from a recovered image, on a broker that has not run yet. Every session starts
    /// offline; its expiry counts from when its connection ended (or from now, if the broker stopped while it was
    /// connected) [MQTT-3.1.2-23].
    pub fn restore(&mut self, now: Time, image: Image) {
        self.now = self.now.max(now);
        let (max_key, max_id) = image.high_water_marks();
        self.next_session_key = self.next_session_key.max(max_key + 1);
        self.next_message_id = self.next_message_id.max(max_id);
        let mut messages: BTreeMap<u64, Arc<Message>> = BTreeMap::new();
        // The planted `RestartDeadlineUncapped` caps nothing: a clock set back stretches every expiry.
        let cap_from = if self.planted(super::planted::PlantedBug::RestartDeadlineUncapped) {
            Time::from_millis(u64::MAX / 2)
        } else {
            self.now
        };
        for (id, stored) in image.messages {
            let recorded = stored.expires_at;
            let message = Arc::new(message_from(id, stored, cap_from));
            self.record_capped(recorded, &message, |m| Record::Store {
                id,
                message: Box::new(m),
            });
            messages.insert(id, message);
        }
        // Messages recovered straight into the tree (`retained_recovery`) get their ids now that the ids in use are
        // known. Fresh ones, as before: a retained message's id is not persisted.
        let mut next_id = self.next_message_id;
        self.retained.for_each_value_mut(|message| {
            if message.id == UNNUMBERED {
                next_id += 1;
                Arc::make_mut(message).id = next_id;
            }
        });
        self.next_message_id = next_id;
        for topic in std::mem::take(&mut self.capped_retained) {
            if let Some(message) = self.retained.get(&topic).cloned() {
                self.record_capped(None, &message, |m| Record::Retain { message: Box::new(m) });
            }
        }
        for (_, stored) in image.retained {
            let id = self.next_message_id();
            let recorded = stored.expires_at;
            let message = Arc::new(message_from(id, stored, cap_from));
            self.record_capped(recorded, &message, |m| Record::Retain { message: Box::new(m) });
            self.retained.insert(&message.topic, Arc::clone(&message));
        }
        for (k, s) in image.sessions {
            let key = SessionKey(k);
            self.restore_session(key, s, &messages);
        }
    }

    /// A recovered message whose recorded expiry deadline `recorded` this restart capped (the clock was set back
    /// while the broker was down, see `capped_deadline`) is recorded again with the capped deadline: that is its
    /// deadline from now on. Left at the recorded one, every later restart would cap it afresh, each giving it a
    /// full interval again, and the message would outlive its Message Expiry Interval by the time the broker ran
    /// between restarts [MQTT-3.3.2-5]. The driver writes the record with the first input's.
    fn record_capped(
        &mut self,
        recorded: Option<Time>,
        message: &Message,
        record: impl FnOnce(StoredMessage) -> Record,
    ) {
        let capped = message.expires_at != recorded;
        if capped && self.config.persistence && !self.planted(super::planted::PlantedBug::CappedDeadlineNotRecorded) {
            self.record(record(stored_message(message)));
        }
    }

    /// Where recovery (`mqtt_storage::Storage::open_into`) puts the retained messages it reads: straight into the
    /// tree, one decoded record at a time, instead of an image map that [`Broker::restore`] would copy from.
    /// `restore` must follow (it numbers them); `now` is the restore's time, which caps their expiry.
    pub fn retained_recovery(&mut self, now: Time) -> RetainedRecovery<'_> {
        self.now = self.now.max(now);
        RetainedRecovery {
            broker: self,
            slab: BytesMut::new(),
        }
    }

    fn restore_session(&mut self, key: SessionKey, image: SessionImage, messages: &BTreeMap<u64, Arc<Message>>) {
        let mut session = Session::new(Arc::from(image.client_id.as_str()), image.protocol);
        session.expiry_interval = image.expiry;
        session.durable = true;
        // Left unknown (as recorded) if it was connected when the broker stopped; expiry then counts from now.
        session.offline_since = image.offline_since;
        let offline_since = image.offline_since.unwrap_or(self.now);
        for (filter, subscription) in &image.subscriptions {
            match crate::topic::parse_shared_subscription(filter) {
                Ok(Some(shared)) => self
                    .subscriptions
                    .insert(shared.filter, Some(shared.group), key, *subscription),
                _ => self.subscriptions.insert(filter, None, key, *subscription),
            };
            session.subscriptions.insert(filter.clone(), *subscription);
        }
        let mut last_packet_id = 0;
        for (seq, entry) in image.entries {
            let Some(message) = messages.get(&entry.message_id) else {
                continue;
            };
            let delivery = Delivery {
                message: Arc::clone(message),
                qos: entry.qos,
                retain: entry.retain,
                subscription_ids: entry.subscription_ids,
                seq,
            };
            session.next_seq = session.next_seq.max(seq + 1);
            match entry.sent {
                Some((packet_id, state)) => {
                    last_packet_id = packet_id;
                    let state = match (state, entry.qos) {
                        (SentState::Released, _) => Awaiting::PubComp,
                        (SentState::Published, QoS::ExactlyOnce) => Awaiting::PubRec,
                        (SentState::Published, _) => Awaiting::PubAck,
                    };
                    session.push_inflight(Inflight {
                        packet_id,
                        delivery,
                        state,
                    });
                }
                None => session.queue_mut().push_back(delivery),
            }
        }
        session.set_next_packet_id(last_packet_id);
        if !image.incoming_qos2.is_empty() {
            *session.incoming_qos2_mut() = image.incoming_qos2;
        }
        if let Some(will) = image.will {
            let publish_at = if will.publish_at == StoredWill::ARMED {
                // Its connection was open when recorded and is gone now: the delay counts from here, capped by the
                // session's expiry, as if the connection had just closed [MQTT-3.1.2-8].
                let delay = will.properties.will_delay_interval.unwrap_or(0).min(image.expiry);
                self.now + Duration::from_secs(u64::from(delay))
            } else {
                let delay = will.properties.will_delay_interval.unwrap_or(0).min(image.expiry);
                capped_deadline(will.publish_at, self.now, delay)
            };
            session.pending_will = Some(Box::new(PendingWill {
                will: will_from(will),
                publish_at,
            }));
            self.timers.arm(publish_at, Timer::WillDelay(key));
        }
        if image.expiry != u32::MAX {
            let at = capped_deadline(
                offline_since + Duration::from_secs(u64::from(image.expiry)),
                self.now,
                image.expiry,
            );
            session.expires_at = Some(at);
            session.expiry_timer_due = Some(at);
            self.timers.arm(at, Timer::SessionExpiry(key));
        }
        self.sessions_by_client_id.insert(Arc::clone(&session.client_id), key);
        self.sessions.insert(key, Box::new(session));
        self.recount_queued(key);
    }
}

fn sent_state(state: Awaiting) -> SentState {
    match state {
        Awaiting::PubComp => SentState::Released,
        Awaiting::PubAck | Awaiting::PubRec => SentState::Published,
    }
}

pub(super) fn stored_message(m: &Message) -> StoredMessage {
    StoredMessage {
        topic: m.topic.to_string(),
        payload: m.payload.clone(),
        qos: m.qos,
        retain: m.retain,
        properties: m.properties.clone(),
        expires_at: m.expires_at,
    }
}

/// The recorded deadline `at` of an interval of `secs` seconds, as a restarted broker at `now` keeps it. The times
/// in the records are the driver's clock (wall-clock based, see `io`'s `Clock`): if that clock was set back while
/// the broker was down, `at` lies further ahead than the whole interval, which would stretch the interval by the
/// jump. It is capped at a full interval from the restart: not lost, not longer than the interval again. A
/// clock set forward cannot be told from time really passed: what is due is due.
pub(super) fn capped_deadline(at: Time, now: Time, secs: u32) -> Time {
    at.min(now + Duration::from_secs(u64::from(secs)))
}

/// The id of a retained message recovered into the tree and not numbered yet: real ids start at 1.
const UNNUMBERED: u64 = 0;

/// Recovered payloads up to this long are copied into shared slabs of `SLAB_BYTES`: a 64 B payload in an allocation
/// of its own is an 80 B malloc chunk, in a slab 64 B (a million retained messages: 15 MiB less).
const SLAB_PAYLOAD_MAX: usize = 256;

/// One slab: big enough that its one bookkeeping allocation does not count, small enough that the payloads still
/// alive in a slab whose others were replaced pin little. A slab never holds more than recovery put in it, so the
/// memory it keeps is at most what the recovered payloads took.
const SLAB_BYTES: usize = 64 * 1024;

/// The broker's retained tree as recovery's [`RetainedSink`] (see [`Broker::retained_recovery`]).
pub struct RetainedRecovery<'a> {
    broker: &'a mut Broker,
    /// The free end of the current payload slab.
    slab: BytesMut,
}

impl RetainedRecovery<'_> {
    /// `payload` in the current slab (a new one when it is full), or as it is if it is long or empty.
    fn in_slab(&mut self, payload: Bytes) -> Bytes {
        if payload.is_empty() || payload.len() > SLAB_PAYLOAD_MAX {
            return payload;
        }
        if self.slab.capacity() < payload.len() {
            self.slab = BytesMut::with_capacity(SLAB_BYTES);
        }
        self.slab.extend_from_slice(&payload);
        // Splitting shares the slab's buffer: the payload's bytes stay where they were written.
        self.slab.split().freeze()
    }
}

impl RetainedSink for RetainedRecovery<'_> {
    fn retain(&mut self, mut message: StoredMessage) {
        message.payload = self.in_slab(std::mem::take(&mut message.payload));
        let recorded = message.expires_at;
        let message = Arc::new(message_from(UNNUMBERED, message, self.broker.now));
        // Recorded again by `restore`, once the log has no later record for the topic left to replace it.
        if message.expires_at != recorded {
            self.broker.capped_retained.insert(message.topic.to_string());
        } else {
            self.broker.capped_retained.remove(&*message.topic);
        }
        // Only one retained message per topic: a later record replaces the earlier [MQTT-3.3.1-5].
        self.broker.retained.insert(&message.topic, Arc::clone(&message));
    }

    fn clear(&mut self, topic: &str) {
        if self
            .broker
            .planted(super::planted::PlantedBug::RetainedRecoveryClearIgnored)
        {
            return;
        }
        self.broker.capped_retained.remove(topic);
        self.broker.retained.remove(topic);
    }

    fn records(&self) -> Box<dyn Iterator<Item = Record> + '_> {
        let mut messages = Vec::with_capacity(self.broker.retained.len());
        self.broker.retained.for_each(|topic, message| {
            if !topic.starts_with(SYS_PREFIX) {
                messages.push(Arc::clone(message));
            }
        });
        Box::new(messages.into_iter().map(|m| Record::Retain {
            message: Box::new(stored_message(&m)),
        }))
    }
}

fn message_from(id: u64, m: StoredMessage, now: Time) -> Message {
    let expires_at = match (m.expires_at, m.properties.message_expiry_interval) {
        (Some(at), Some(secs)) => Some(capped_deadline(at, now, secs)),
        (at, _) => at,
    };
    Message {
        id,
        topic: m.topic.into(),
        payload: m.payload,
        qos: m.qos,
        retain: m.retain,
        properties: m.properties,
        expires_at,
    }
}

fn stored_will(will: &Will, publish_at: Time) -> StoredWill {
    StoredWill {
        topic: will.topic.clone(),
        payload: will.payload.clone(),
        qos: will.qos,
        retain: will.retain,
        properties: will.properties.clone(),
        publish_at,
    }
}

fn will_from(w: StoredWill) -> Will {
    Will {
        topic: w.topic,
        payload: w.payload,
        qos: w.qos,
        retain: w.retain,
        properties: w.properties,
    }
}

/// The will of a connected session, as recorded with `Config::durable_wills`.
fn armed_will(session: &Session, durable_wills: bool) -> Option<StoredWill> {
    let will = session
        .will
        .as_ref()
        .filter(|_| durable_wills && session.connection.is_some())?;
    Some(stored_will(will, StoredWill::ARMED))
}

fn session_image(session: &Session, durable_wills: bool) -> SessionImage {
    let mut entries = BTreeMap::new();
    for inflight in session.inflight() {
        let d = &inflight.delivery;
        if d.qos == QoS::AtMostOnce {
            continue;
        }
        let entry = entry_image(d, Some((inflight.packet_id, sent_state(inflight.state))));
        entries.insert(d.seq, entry);
    }
    for d in session.queue().iter().filter(|d| d.qos != QoS::AtMostOnce) {
        entries.insert(d.seq, entry_image(d, None));
    }
    SessionImage {
        client_id: session.client_id.to_string(),
        protocol: session.protocol,
        expiry: session.expiry_interval,
        offline_since: session.offline_since,
        subscriptions: session.subscriptions.clone(),
        entries,
        incoming_qos2: session.incoming_qos2().clone(),
        will: session
            .pending_will
            .as_ref()
            .map(|p| stored_will(&p.will, p.publish_at))
            .or_else(|| armed_will(session, durable_wills)),
    }
}

fn entry_image(d: &Delivery, sent: Option<(u16, SentState)>) -> EntryImage {
    EntryImage {
        message_id: d.message.id,
        qos: d.qos,
        retain: d.retain,
        subscription_ids: d.subscription_ids.clone(),
        sent,
    }
}

/// The messages a session's QoS 1/2 queue entries refer to, by id.
fn collect_stored_messages(session: &Session, out: &mut BTreeMap<u64, StoredMessage>) {
    for delivery in session
        .inflight()
        .iter()
        .map(|i| &i.delivery)
        .chain(session.queue().iter())
    {
        if delivery.qos != QoS::AtMostOnce {
            out.entry(delivery.message.id)
                .or_insert_with(|| stored_message(&delivery.message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Broker, Config};
    use crate::packet::{ProtocolVersion, QoS};
    use crate::persist::{Image, Record, StoredMessage};
    use crate::time::Time;
    use bytes::Bytes;
    use std::collections::BTreeSet;

    fn stored(topic: &str, payload: &str, expiry: Option<u32>) -> Box<StoredMessage> {
        let mut message = StoredMessage {
            topic: topic.into(),
            payload: Bytes::from(payload.to_owned()),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
            expires_at: expiry.map(|secs| Time::from_millis(1_000 * u64::from(secs) + 500_000)),
        };
        if expiry.is_some() {
            message.properties.message_expiry_interval = expiry;
        }
        Box::new(message)
    }

    /// What a data directory replays: a session with a queued message (id 900), retained messages replaced and
    /// cleared, one with an expiry that the restore caps.
    fn records() -> Vec<Record> {
        let retain = |topic, payload, expiry| Record::Retain {
            message: stored(topic, payload, expiry),
        };
        vec![
            Record::SessionOpen {
                key: 3,
                client_id: "sub".into(),
                protocol: ProtocolVersion::V5,
                expiry: 3600,
            },
            retain("r/a", "a1", None),
            Record::Store {
                id: 900,
                message: stored("q/1", "queued", None),
            },
            Record::Enqueue {
                key: 3,
                seq: 1,
                id: 900,
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: Vec::new(),
            },
            retain("r/b", "b1", None),
            retain("r/c", "c1", Some(60)),
            Record::RetainClear { topic: "r/b".into() },
            retain("r/a", "a2", None),
            retain("r/b/deeper", "d1", None),
        ]
    }

    fn config() -> Config {
        Config {
            persistence: true,
            ..Config::default()
        }
    }

    /// Recovery straight into the tree restores what the image path restores (replacements, clears and capped
    /// expiry included), and numbers the retained messages after every id in use, each once.
    #[test]
    fn retained_recovery_into_the_tree_restores_what_the_image_does() {
        let now = Time::from_millis(10_000);
        let mut via_image = Broker::new(config(), 1);
        let mut image = Image::default();
        for record in records() {
            image.apply(record);
        }
        via_image.restore(now, image);

        let mut streamed = Broker::new(config(), 1);
        let mut image = Image::default();
        {
            let mut sink = streamed.retained_recovery(now);
            for record in records() {
                image.apply_with(record, &mut sink);
            }
        }
        assert!(image.retained.is_empty(), "the sink took every retained message");
        streamed.restore(now, image);

        assert_eq!(streamed.image(), via_image.image());
        assert_eq!(streamed.image().retained.len(), 3);
        let mut ids = BTreeSet::new();
        streamed.retained.for_each(|_, message| {
            assert!(message.id > 900, "id {} is at or below one in use", message.id);
            assert!(ids.insert(message.id), "id {} given twice", message.id);
        });
        assert_eq!(ids.len(), 3);
        assert!(streamed.next_message_id() > *ids.last().expect("three ids"));
        // Small payloads share a slab: the last two retained ("a2", then "d1") sit side by side in it.
        let payload = |topic| streamed.retained.get(topic).expect(topic).payload.clone();
        let (a, d) = (payload("r/a"), payload("r/b/deeper"));
        assert_eq!((&a[..], &d[..]), (&b"a2"[..], &b"d1"[..]));
        assert_eq!(a.as_ptr().wrapping_add(a.len()), d.as_ptr());
    }
}
