//! Retained messages sent on subscribe [MQTT-3.3.1-9], in slices as the subscriber makes room, never all at once.
//!
//! A SUBSCRIBE to `#` over a million retained messages would otherwise queue (or drop) a million deliveries in one
//! input. Instead each wide subscription gets a stream: the filter and the topic it has reached. It hands the
//! session at most `Config::retained_slice` messages queued at a time, through the normal flow control (the inflight
//! window, the queue bounds, `max_outbuf_bytes`), and picks up after the last topic it gave as acknowledgements,
//! `Writable` or a prompt `Tick` free room. Cost per stream: a filter and a topic, whatever the number of matches.
//!
//! Repeated wide subscribes cannot multiply the work: a session has at most one stream per filter (a re-subscribe
//! replaces it, as it replaces the subscription [MQTT-3.8.4-3]), so at most `max_subscriptions_per_client`, and a
//! stream advances only as its own subscriber reads. UNSUBSCRIBE and the end of the session drop it.
//!
//! A message retained after the SUBSCRIBE reached the subscriber by routing (the subscription was already in the
//! tree), so the stream skips messages newer than the SUBSCRIBE: nothing is sent twice. A stream lives in memory
//! only; after a restart the subscription stands and the rest of its retained messages are not sent.

use super::message::{Delivery, Message};
use super::session::SessionKey;
use super::timer::Timer;
use super::Broker;
use crate::packet::QoS;
use crate::topic::Subscription;
use std::sync::Arc;

/// The retained messages of one subscription still to be sent.
pub(super) struct RetainedStream {
    filter: Box<str>,
    subscription: Subscription,
    /// The last message id issued before the SUBSCRIBE: newer ones went to the subscriber by routing.
    newest_id: u64,
    /// The last topic given (or skipped); `None` before the first slice.
    after: Option<String>,
}

/// Topics a slice may walk past without sending (expired or newer messages), per message it may send: bounds the
/// work of one slice even when most matches are skipped.
const SKIP_FACTOR: usize = 4;

impl Broker {
    /// Starts sending the retained messages matching `filter` to `key`, replacing a stream of the same filter.
    pub(super) fn start_retained_stream(&mut self, key: SessionKey, filter: &str, subscription: Subscription) {
        let stream = RetainedStream {
            filter: filter.into(),
            subscription,
            newest_id: self.next_message_id,
            after: None,
        };
        let streams = self.retained_streams.entry(key).or_default();
        streams.retain(|s| *s.filter != *filter);
        streams.push(stream);
        self.advance_retained(key);
    }

    /// UNSUBSCRIBE: nothing more is added for the filter [MQTT-3.10.4-2].
    pub(super) fn stop_retained_stream(&mut self, key: SessionKey, filter: &str) {
        if let Some(streams) = self.retained_streams.get_mut(&key) {
            streams.retain(|s| *s.filter != *filter);
            if streams.is_empty() {
                self.retained_streams.remove(&key);
            }
        }
    }

    pub(super) fn drop_retained_streams(&mut self, key: SessionKey) {
        self.retained_streams.remove(&key);
    }

    /// Retained streams pending, over all sessions (tests, footprint).
    pub fn retained_streams_pending(&self) -> usize {
        self.retained_streams.values().map(Vec::len).sum()
    }

    /// Sends the next slice of `key`'s streams, oldest first, while the session has room. Called after anything
    /// that may free room (`pump`: acknowledgements, `Writable`, reconnection) and from its own timer.
    pub(super) fn advance_retained(&mut self, key: SessionKey) {
        // Every pump asks; nearly always nobody streams.
        if self.retained_streams.is_empty() {
            return;
        }
        // Taken out while sending: `deliver` pumps, and the pump calls back here; the nested call finds nothing.
        let Some(mut streams) = self.retained_streams.remove(&key) else {
            return;
        };
        let slice = self.config.retained_slice.max(1);
        let mut sent_any = false;
        while let Some(stream) = streams.first_mut() {
            let room = self.retained_room(key);
            if room == 0 {
                break;
            }
            let (batch, last_seen, done) = self.retained_batch(stream, room.min(slice));
            let mut sent = 0;
            for message in &batch {
                let qos = message.qos.min(stream.subscription.options.qos);
                if !self.retained_may_send(key, qos) {
                    break;
                }
                let delivery = Delivery {
                    qos,
                    // Retained messages sent because of a subscription keep RETAIN set [MQTT-3.3.1-9].
                    retain: true,
                    subscription_ids: stream.subscription.identifier.into_iter().collect(),
                    message: self.planted_fresh_expiry(message),
                    seq: 0,
                };
                self.deliver(key, delivery);
                sent += 1;
            }
            sent_any |= sent > 0 || last_seen.is_some();
            if sent < batch.len() {
                // Stopped for room: resume after the last one sent (the skipped ones before it are skipped again).
                if sent > 0 {
                    stream.after = Some(batch[sent - 1].topic.to_string());
                }
                break;
            }
            if done {
                streams.remove(0);
                continue;
            }
            stream.after = last_seen.or(stream.after.take());
        }
        if streams.is_empty() {
            return;
        }
        self.retained_streams.insert(key, streams);
        // Room may come back without an input for this session: a QoS 0 slice handed out whole to a socket that
        // takes it all. Ask for a prompt Tick, but only after progress: a stream that cannot move waits for an
        // acknowledgement or `Writable` (both pump), so a stalled subscriber never spins the loop.
        if sent_any && self.connected_and_writable(key) {
            self.timers.arm(self.now, Timer::RetainedStream(key));
        }
    }

    /// Up to `limit` messages of `stream` to send now, the last topic walked past, and whether the walk ended.
    fn retained_batch(&self, stream: &RetainedStream, limit: usize) -> (Vec<Arc<Message>>, Option<String>, bool) {
        let (now, newest) = (self.now, stream.newest_id);
        let ignore_expiry = self.planted(super::planted::PlantedBug::ExpiredRetainedOffered);
        let mut batch = Vec::with_capacity(limit);
        let (mut walked, mut last_seen) = (0, None);
        let done = self
            .retained
            .for_each_match_after(&stream.filter, stream.after.as_deref(), |topic, message| {
                walked += 1;
                // [MQTT-3.3.2-5]: an expired retained message is deleted, never sent.
                if (!message.is_expired(now) || ignore_expiry) && message.id <= newest {
                    batch.push(Arc::clone(message));
                }
                if batch.len() >= limit || walked >= limit * SKIP_FACTOR {
                    last_seen = Some(topic.to_owned());
                    return false;
                }
                true
            });
        (batch, last_seen, done)
    }

    /// How many messages the session may be handed now: none offline or while its output is held back, else what
    /// keeps its queue within `retained_slice`.
    fn retained_room(&self, key: SessionKey) -> usize {
        let Some(session) = self.sessions.get(&key) else {
            return 0;
        };
        if !self.output_has_room(key) {
            return 0;
        }
        self.config.retained_slice.max(1).saturating_sub(session.queue().len())
    }

    fn connected_and_writable(&self, key: SessionKey) -> bool {
        let conn = self.sessions.get(&key).and_then(|s| s.connection);
        conn.and_then(|c| self.connections.expected(c))
            .is_some_and(|c| !c.write_blocked)
    }

    /// Connected, not write-blocked, and its output buffer at most half full (QoS 0 deliveries go straight there and
    /// are dropped past `max_outbuf_bytes`; the stream must never cause that).
    fn output_has_room(&self, key: SessionKey) -> bool {
        let conn = self.sessions.get(&key).and_then(|s| s.connection);
        conn.and_then(|c| self.connections.expected(c))
            .is_some_and(|c| !c.write_blocked && c.outbuf.len() < self.config.max_outbuf_bytes / 2)
    }

    /// The retained message to send: itself, unless the planted `RetainedExpiryNotLowered` restamps its expiry as if
    /// it had been received now, so its full interval is sent again.
    fn planted_fresh_expiry(&self, message: &Arc<Message>) -> Arc<Message> {
        let secs = message.properties.message_expiry_interval;
        match secs {
            Some(secs) if self.planted(super::planted::PlantedBug::RetainedExpiryNotLowered) => {
                let mut fresh = Message::clone(message);
                fresh.expires_at = Some(self.now + std::time::Duration::from_secs(u64::from(secs)));
                Arc::new(fresh)
            }
            _ => Arc::clone(message),
        }
    }

    /// Whether one more delivery at `qos` goes through without being dropped for room.
    fn retained_may_send(&self, key: SessionKey, qos: QoS) -> bool {
        if !self.output_has_room(key) {
            return false;
        }
        if qos == QoS::AtMostOnce {
            return true;
        }
        let limits = self.queue_limits();
        self.sessions
            .get(&key)
            .is_some_and(|s| s.queue().len() < self.config.retained_slice.max(1) && !limits.is_full(s))
    }
}

#[cfg(test)]
mod tests {
    use crate::broker::{Config, ConnectionId, SessionKey};
    use crate::harness::{connect_packet, Harness};
    use crate::packet::*;
    use bytes::Bytes;
    use std::time::Duration;

    const SLICE: usize = 16;
    const INFLIGHT: u16 = 8;

    fn topic(i: usize) -> String {
        format!("site/{}/device/{}/temp", i / 50, i % 50)
    }

    /// A broker holding `n` retained messages (QoS 1), published by a client that then leaves.
    fn with_retained(n: usize, config: Config) -> Harness {
        let mut h = Harness::new(config);
        let (p, _) = h.connect(connect_packet(ProtocolVersion::V5, "p"));
        for i in 0..n {
            let publish = Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: true,
                topic: topic(i),
                packet_id: (i % 60_000 + 1) as u16,
                properties: Default::default(),
                payload: Bytes::from(format!("{i}")),
            };
            h.send(p, Packet::Publish(publish));
            h.recv_all(p);
        }
        h.drop_connection(p);
        h
    }

    fn config() -> Config {
        Config {
            retained_slice: SLICE,
            max_inflight: INFLIGHT,
            ..Config::default()
        }
    }

    fn subscribe(h: &mut Harness, conn: ConnectionId, filter: &str, qos: QoS) {
        let filters = vec![(
            filter.to_string(),
            SubscriptionOptions {
                qos,
                ..Default::default()
            },
        )];
        h.send(
            conn,
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: Default::default(),
                filters,
            }),
        );
    }

    fn held(h: &Harness, key: SessionKey) -> (usize, usize) {
        h.broker
            .sessions
            .get(&key)
            .map_or((0, 0), |s| (s.queue().len(), s.inflight().len()))
    }

    /// Reads and acknowledges every PUBLISH `sub` gets until nothing more comes, even after the Ticks due now;
    /// `each_round` sees the broker before each read. Returns the PUBLISHes in the order received.
    fn drain_acking(h: &mut Harness, sub: ConnectionId, mut each_round: impl FnMut(&Harness)) -> Vec<Publish> {
        let mut got = Vec::new();
        loop {
            each_round(h);
            let mut acked = 0;
            for packet in h.recv_all(sub) {
                if let Packet::Publish(p) = packet {
                    if p.qos != QoS::AtMostOnce {
                        h.send(sub, Packet::PubAck(PubResponse::new(p.packet_id, ReasonCode::SUCCESS)));
                    }
                    got.push(p);
                    acked += 1;
                }
            }
            if acked == 0 {
                h.advance(Duration::ZERO);
                if h.client(sub).is_some_and(|c| c.inbox.is_empty()) {
                    return got;
                }
            }
        }
    }

    /// Every topic the `#` subscription should get, in the store's order (lexicographic by level).
    fn expected(n: usize) -> Vec<String> {
        let mut topics: Vec<String> = (0..n).map(topic).collect();
        topics.sort_by(|a, b| a.split('/').cmp(b.split('/')));
        topics
    }

    /// [MQTT-3.3.1-9]: a SUBSCRIBE to `#` over N retained messages gets all N, with RETAIN set, in order, once
    /// each; but the session never holds more than `retained_slice` queued plus its inflight window at any time,
    /// each acknowledgement letting the next one in.
    #[test]
    fn a_wide_subscribe_is_sent_in_slices_within_the_bound_and_delivers_all_in_order() {
        let n = 3000;
        let mut h = with_retained(n, config());
        let (sub, _) = h.connect(connect_packet(ProtocolVersion::V5, "sub"));
        let key = h
            .broker
            .connections
            .expected(sub)
            .expect("open")
            .session
            .expect("connected");
        subscribe(&mut h, sub, "#", QoS::AtLeastOnce);
        let mut peak = (0, 0);
        let got = drain_acking(&mut h, sub, |h| {
            let (queued, inflight) = held(h, key);
            assert!(
                queued <= SLICE && inflight <= usize::from(INFLIGHT),
                "held {queued} queued, {inflight} inflight"
            );
            peak = (peak.0.max(queued), peak.1.max(inflight));
        });
        assert!(
            got.iter().all(|p| p.retain),
            "sent because of the subscription: RETAIN set [MQTT-3.3.1-9]"
        );
        let got: Vec<String> = got.into_iter().map(|p| p.topic).collect();
        assert_eq!(got, expected(n));
        assert_eq!(
            peak,
            (SLICE, usize::from(INFLIGHT)),
            "the bound was reached, not avoided"
        );
        assert_eq!(h.broker.retained_streams_pending(), 0, "a finished stream is dropped");
        assert_eq!(h.broker.stats().messages_dropped, 0);
    }

    /// A RETAIN PUBLISH held for a full queue while a SUBSCRIBE starts a retained stream reaches the new
    /// subscription by routing once admitted; the stream must not send it again as a retained copy, since it was
    /// not the topic's retained message when the SUBSCRIBE came [MQTT-3.3.1-9] (the simulator's seeds 1657, 3837).
    #[test]
    fn a_held_retained_publish_routed_after_a_subscribe_is_not_sent_again_by_its_stream() {
        let config = Config {
            retained_slice: 1,
            max_inflight: 1,
            max_queued_messages: 2,
            ..Config::default()
        };
        let mut h = with_retained(3, config);
        let late = "site/0/device/9/temp";
        let (slow, _) = h.connect(connect_packet(ProtocolVersion::V5, "slow"));
        subscribe(&mut h, slow, late, QoS::AtLeastOnce);
        h.recv_all(slow);
        let (publisher, _) = h.connect(connect_packet(ProtocolVersion::V5, "q"));
        let publish = |packet_id: u16, retain: bool| {
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain,
                topic: late.into(),
                packet_id,
                properties: Default::default(),
                payload: Bytes::from_static(b"x"),
            })
        };
        // One in slow's window, two in its queue: full, so the RETAIN PUBLISH is held unacknowledged.
        for packet_id in 1..=3 {
            h.send(publisher, publish(packet_id, false));
        }
        h.send(publisher, publish(4, true));
        let acked = |packets: Vec<Packet>| {
            packets
                .iter()
                .any(|p| matches!(p, Packet::PubAck(ack) if ack.packet_id == 4))
        };
        assert!(!acked(h.recv_all(publisher)), "held while slow's queue is full");
        let (sub, _) = h.connect(connect_packet(ProtocolVersion::V5, "sub"));
        subscribe(&mut h, sub, "#", QoS::AtLeastOnce);
        // slow drains one: the held PUBLISH is admitted, stored as retained and routed to `#` too.
        for packet in h.recv_all(slow) {
            if let Packet::Publish(p) = packet {
                h.send(slow, Packet::PubAck(PubResponse::new(p.packet_id, ReasonCode::SUCCESS)));
            }
        }
        assert!(acked(h.recv_all(publisher)), "admitted once slow had room");
        let got: Vec<(String, bool)> = drain_acking(&mut h, sub, |_| {})
            .into_iter()
            .map(|p| (p.topic, p.retain))
            .collect();
        let late_copies: Vec<bool> = got.iter().filter(|(t, _)| t == late).map(|(_, r)| *r).collect();
        assert_eq!(late_copies, [false], "routed once, never as a retained copy: {got:?}");
        assert_eq!(
            got.iter().filter(|(_, retain)| *retain).count(),
            3,
            "the three retained at SUBSCRIBE"
        );
    }

    /// QoS 0: nothing queues, so the slices are bounded by the output buffer (half of `max_outbuf_bytes`), and
    /// none is dropped as to a slow consumer; the stream resumes on its own Tick once the output is handed out,
    /// and waits while the driver reports the socket full.
    #[test]
    fn a_qos_0_stream_stays_within_half_the_output_buffer_and_loses_nothing() {
        let n = 3000;
        let config = Config {
            max_outbuf_bytes: 4096,
            ..config()
        };
        let mut h = with_retained(n, config);
        let (sub, _) = h.connect(connect_packet(ProtocolVersion::V5, "sub"));
        let mut before = h.client(sub).map_or(0, |c| c.bytes_received);
        subscribe(&mut h, sub, "site/+/device/#", QoS::AtMostOnce);
        let mut got = Vec::new();
        let mut rounds = 0;
        loop {
            // One Tick, one slice (the harness's `advance` would run every Tick due at this instant).
            if rounds > 0 {
                before = h.client(sub).map_or(0, |c| c.bytes_received);
                h.input(crate::broker::Input::Tick);
            }
            let handed = h.client(sub).map_or(0, |c| c.bytes_received) - before;
            assert!(handed <= 2048 + 64, "{handed} bytes in one slice");
            let publishes: Vec<_> = h
                .recv_all(sub)
                .into_iter()
                .filter_map(|p| match p {
                    Packet::Publish(p) => Some(p.topic),
                    _ => None,
                })
                .collect();
            if publishes.is_empty() && rounds > 0 {
                break;
            }
            got.extend(publishes);
            rounds += 1;
            if rounds == 5 {
                // The driver says the socket is full: nothing more until Writable.
                h.input(crate::broker::Input::WriteBlocked { conn: sub });
                h.advance(Duration::from_millis(10));
                assert!(h.recv_all(sub).is_empty(), "held while write-blocked");
                h.input(crate::broker::Input::Writable { conn: sub });
            }
        }
        assert_eq!(got, expected(n));
        assert!(rounds > 10, "sent in slices, not at once: {rounds}");
        assert_eq!(h.broker.stats().messages_dropped, 0);
    }

    /// Repeated wide subscribes do not multiply the work: a re-subscribe replaces the session's stream (starting
    /// over, per Retain Handling 0 [MQTT-3.3.1-10]), UNSUBSCRIBE drops it, and many subscribers that never read hold
    /// at most their slice and window each, whatever the number of retained messages.
    #[test]
    fn re_subscribes_replace_the_stream_and_idle_subscribers_hold_only_their_slice() {
        let n = 2000;
        let mut h = with_retained(n, config());
        let mut keys = Vec::new();
        for c in 0..20 {
            let (sub, _) = h.connect(connect_packet(ProtocolVersion::V5, &format!("sub{c}")));
            keys.push((
                sub,
                h.broker
                    .connections
                    .expected(sub)
                    .expect("open")
                    .session
                    .expect("connected"),
            ));
            for _ in 0..10 {
                subscribe(&mut h, sub, "#", QoS::AtLeastOnce);
            }
        }
        assert_eq!(
            h.broker.retained_streams_pending(),
            20,
            "one stream per session and filter"
        );
        for &(sub, key) in &keys {
            let (queued, inflight) = held(&h, key);
            assert!(queued <= SLICE && inflight <= usize::from(INFLIGHT));
            // Ten SUBSCRIBEs, one stream: the client got the first slice ten times at most.
            let publishes = h
                .recv_all(sub)
                .into_iter()
                .filter(|p| matches!(p, Packet::Publish(_)))
                .count();
            assert!(publishes <= usize::from(INFLIGHT), "{publishes}");
        }
        let (sub, _) = keys[0];
        h.send(
            sub,
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 2,
                properties: Default::default(),
                filters: vec!["#".into()],
            }),
        );
        assert_eq!(
            h.broker.retained_streams_pending(),
            19,
            "UNSUBSCRIBE drops the stream [MQTT-3.10.4-2]"
        );
        h.drop_connection(keys[1].0);
        assert_eq!(
            h.broker.retained_streams_pending(),
            18,
            "the end of the session drops it"
        );
    }

    /// A message retained after the SUBSCRIBE reaches the subscriber by routing; the stream does not send it a
    /// second time when it comes to its topic.
    #[test]
    fn a_message_retained_after_the_subscribe_is_not_sent_twice() {
        let n = 200;
        let mut h = with_retained(n, config());
        let (sub, _) = h.connect(connect_packet(ProtocolVersion::V5, "sub"));
        subscribe(&mut h, sub, "#", QoS::AtLeastOnce);
        let (p, _) = h.connect(connect_packet(ProtocolVersion::V5, "p2"));
        let last = expected(n).pop().expect("some");
        let publish = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: last.clone(),
            packet_id: 0,
            properties: Default::default(),
            payload: Bytes::from_static(b"new"),
        };
        h.send(p, Packet::Publish(publish));
        let got: Vec<(String, Bytes)> = drain_acking(&mut h, sub, |_| {})
            .into_iter()
            .map(|p| (p.topic, p.payload))
            .collect();
        assert_eq!(got.len(), n, "every topic once");
        assert_eq!(got.iter().filter(|(t, _)| *t == last).count(), 1);
        assert!(got.contains(&(last, Bytes::from_static(b"new"))));
    }
}
