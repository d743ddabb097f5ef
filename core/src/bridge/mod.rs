//! The client side of a Mosquitto-style bridge, as a sans-IO state machine of its own.
//!
//! A bridge is two MQTT client connections and the forwarding between them: one to the remote broker (a socket the
//! driver opens), one to the local broker core (an in-memory connection the driver feeds to the core like any
//! accepted socket). Every decision about the local broker's messages (routing, retained, sessions, ACLs,
//! durability) stays in the broker: the bridge is just one more client of it, which subscribes to the `out` rules
//! and publishes what the `in` rules bring.
//!
//! Nothing is acknowledged before the other side has it: a QoS 1/2 message is acknowledged to the broker it came
//! from only once the broker it went to acknowledged it (PUBACK, or PUBREC for QoS 2, after which that broker owns
//! the exactly-once delivery). So the bridge needs no disk of its own: while the remote is down, QoS 1/2 messages
//! wait in the local broker's session for the bridge (durable, bounded by the broker's limits) and in the remote
//! broker's session for the bridge (if `clean_start = false`). The bridge holds at most `queue_size` of them per
//! direction, because it announces that as its Receive Maximum on both connections; QoS 0 messages wait in its
//! queue up to the same bound and beyond it are dropped and counted.
//!
//! On reconnecting, unacknowledged PUBLISHes are resent with DUP and PUBRELs resent, in their original order
//! [MQTT-4.4.0-1]; packet ids stay the same, so a broker that kept the session delivers a QoS 2 message once.
//! What is not durable: the bridge's own in-flight state lives in memory, so across a restart of this process a
//! message the local broker resends may reach the remote twice (QoS 1 semantics for QoS 2, at that one moment).
//!
//! Loops: both subscriptions set No Local [MQTT-3.8.3-3], so neither broker sends the bridge what the bridge
//! published there. A 3.1.1 remote has no No Local; as Mosquitto does with `try_private`, the bridge then sets the
//! top bit of the protocol level (0x84), which Mosquitto takes as "this is a bridge" and stops echoing. Against a
//! 3.1.1 remote that does not know the bit (`try_private = false`), a message of a `both` rule comes back once
//! and is published locally once more, but goes no further: the local subscription's No Local stops it.
//!
//! Driving it: call [`Bridge::start`], then [`Bridge::handle_input`] for every event, drain
//! [`Bridge::poll_output`] after each, and call `handle_input(now, Input::Tick)` once [`Bridge::poll_timeout`] is
//! due.

mod config;
mod link;
#[cfg(any(test, feature = "testing"))]
pub mod pair;
mod rules;
#[cfg(test)]
mod tests;

pub use config::{BridgeConfig, Direction, Rule};
pub use rules::{filter_matches, map_topic, Side};

use crate::packet::{
    Connect, Disconnect, Packet, Properties, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, Subscribe,
    SubscriptionOptions,
};
use crate::time::Time;
use bytes::Bytes;
use link::{Awaiting, Link, LinkState, Origin, Pending, Received, ReceivedState, Sent};
use std::collections::VecDeque;
use std::time::Duration;

/// How long the bridge waits before reopening its connection to the local broker after it closed.
const LOCAL_RETRY: Duration = Duration::from_secs(1);

/// An event from the driver.
#[derive(Debug)]
pub enum Input<'a> {
    /// The transport asked for with [`Output::OpenLocal`] / [`Output::OpenRemote`] is connected.
    Opened(Side),
    /// Bytes arrived on that side's connection.
    Received(Side, &'a [u8]),
    /// That side's connection closed or failed (or could not be opened). Ignored when it is not open.
    Closed(Side),
    /// The driver holds too many unwritten bytes for that side (`true`: publish nothing more there, so messages
    /// wait in the bridge's bounded queue) or wrote them out (`false`).
    Blocked(Side, bool),
    /// Time passed.
    Tick,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a connection to that side (the remote: TCP or TLS; the local broker: a new in-memory connection), then
    /// report `Opened` or `Closed`.
    Open(Side),
    /// Write these bytes to that side's connection.
    Transmit(Side, Bytes),
    /// Close that side's connection after what was handed out before; no `Closed` needed.
    Close(Side),
    Event(Event),
}

/// Something worth logging or counting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connected {
        side: Side,
        session_present: bool,
    },
    /// The connection ended; the bridge retries after `retry_in`.
    Disconnected {
        side: Side,
        reason: String,
        retry_in: Duration,
    },
    /// A subscription of the bridge was refused.
    SubscribeRefused {
        side: Side,
        filter: String,
        reason: ReasonCode,
    },
    /// A message could not be forwarded (no room for a QoS 0 message, refused by the broker it went to, too large,
    /// or no rule for its topic).
    Dropped {
        from: Side,
        topic: String,
        why: &'static str,
    },
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Messages handed to the remote (`out`) and to the local broker (`in`), resends not counted.
    pub forwarded_out: u64,
    pub forwarded_in: u64,
    pub dropped: u64,
    pub remote_connects: u64,
}

pub struct Bridge {
    config: BridgeConfig,
    now: Time,
    local: Link,
    remote: Link,
    outputs: VecDeque<Output>,
    /// The next reconnect delay towards the remote.
    backoff: Duration,
    /// The remote refused the bridge bit in the protocol level: retry without it.
    private_refused: bool,
    stopped: bool,
    stats: BridgeStats,
}

impl Bridge {
    /// `max_packet_size`: the largest packet the bridge accepts on either connection (announced to both brokers).
    pub fn new(config: BridgeConfig, max_packet_size: u32) -> Bridge {
        let size = max_packet_size as usize;
        Bridge {
            local: Link::new(ProtocolVersion::V5, size),
            remote: Link::new(config.protocol, size),
            backoff: config.reconnect_min,
            config,
            now: Time::ZERO,
            outputs: VecDeque::new(),
            private_refused: false,
            stopped: false,
            stats: BridgeStats::default(),
        }
    }

    pub fn config(&self) -> &BridgeConfig {
        &self.config
    }

    pub fn stats(&self) -> &BridgeStats {
        &self.stats
    }

    pub fn is_up(&self, side: Side) -> bool {
        self.link(side).is_up()
    }

    /// Messages waiting in the bridge to be published on `side`.
    pub fn queued(&self, side: Side) -> usize {
        self.link(side).queued()
    }

    /// QoS 1/2 messages published on `side` and not acknowledged there yet.
    pub fn unacknowledged(&self, side: Side) -> usize {
        self.link(side).sent.len()
    }

    /// Whether the driver should read from `side`: reading stops while the other side's queue is full (a 3.1.1
    /// remote knows no Receive Maximum; TCP then holds its messages back).
    pub fn wants_input(&self, side: Side) -> bool {
        self.link(side.other()).queued() < 2 * self.queue_size()
    }

    /// Open the local connection first; the remote follows once the local broker accepted the bridge.
    pub fn start(&mut self, now: Time) {
        self.now = now;
        self.open(Side::Local);
    }

    /// Graceful end: DISCONNECT to both brokers (a normal disconnect keeps the sessions), then close.
    pub fn stop(&mut self, now: Time) {
        self.now = now;
        self.stopped = true;
        for side in [Side::Remote, Side::Local] {
            if self.link(side).is_up() {
                let _ = self
                    .link_mut(side)
                    .send(now, &Packet::Disconnect(Disconnect::default()));
                self.flush(side);
            }
            if self.link(side).state != LinkState::Down {
                self.outputs.push_back(Output::Close(side));
                self.link_mut(side).closed();
            }
        }
    }

    pub fn handle_input(&mut self, now: Time, input: Input<'_>) {
        self.now = self.now.max(now);
        match input {
            Input::Opened(side) => self.on_opened(side),
            Input::Received(side, data) => self.on_received(side, data),
            Input::Closed(side) => {
                if self.link(side).state != LinkState::Down {
                    self.on_lost(side, "connection closed".to_string());
                }
            }
            Input::Blocked(side, blocked) => {
                self.link_mut(side).blocked = blocked;
                self.pump(side);
            }
            Input::Tick => self.on_tick(),
        }
        self.flush(Side::Local);
        self.flush(Side::Remote);
    }

    /// The next output; drain until `None` after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When `Input::Tick` is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        // A borrowed slice, not `array::IntoIter`: memcheck flags the optimised fold over a by-value array of
        // `Option<Time>` as a jump on uninitialised memory (a false positive, but it fails CI's valgrind step).
        let (local, remote) = (&self.local, &self.remote);
        [
            local.retry_at,
            local.connect_deadline,
            local.keep_alive_deadline(),
            remote.retry_at,
            remote.connect_deadline,
            remote.keep_alive_deadline(),
        ]
        .iter()
        .flatten()
        .min()
        .copied()
    }

    fn link(&self, side: Side) -> &Link {
        match side {
            Side::Local => &self.local,
            Side::Remote => &self.remote,
        }
    }

    fn link_mut(&mut self, side: Side) -> &mut Link {
        match side {
            Side::Local => &mut self.local,
            Side::Remote => &mut self.remote,
        }
    }

    fn queue_size(&self) -> usize {
        usize::from(self.config.queue_size.max(1))
    }

    fn flush(&mut self, side: Side) {
        if let Some(data) = self.link_mut(side).take_tx() {
            self.outputs.push_back(Output::Transmit(side, data));
        }
    }

    fn event(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    fn open(&mut self, side: Side) {
        let deadline = self.now + self.config.connect_timeout;
        let link = self.link_mut(side);
        link.state = LinkState::Opening;
        link.retry_at = None;
        link.connect_deadline = Some(deadline);
        self.outputs.push_back(Output::Open(side));
    }

    fn on_opened(&mut self, side: Side) {
        if self.link(side).state != LinkState::Opening {
            return;
        }
        let now = self.now;
        self.link_mut(side).opened(now);
        self.link_mut(side).state = LinkState::Connecting;
        let connect = self.connect_packet(side);
        let mut bytes = bytes::BytesMut::new();
        if let Err(e) = crate::codec::encode(&Packet::Connect(Box::new(connect)), self.link(side).version, &mut bytes) {
            self.close(side, format!("cannot encode CONNECT: {e}"));
            return;
        }
        if side == Side::Remote && self.config.protocol == ProtocolVersion::V3_1_1 && self.try_private() {
            mark_bridge(&mut bytes);
        }
        self.link_mut(side).tx.extend_from_slice(&bytes);
    }

    fn try_private(&self) -> bool {
        self.config.try_private && !self.private_refused
    }

    fn connect_packet(&self, side: Side) -> Connect {
        let mut properties = Properties {
            receive_maximum: Some(self.config.queue_size.max(1)),
            maximum_packet_size: Some(self.local.decoder_max()),
            ..Properties::default()
        };
        match side {
            // The local session outlives restarts, so what arrives for the remote while this process is down
            // waits in it.
            Side::Local => {
                properties.session_expiry_interval = Some(u32::MAX);
                Connect {
                    protocol: ProtocolVersion::V5,
                    clean_start: false,
                    keep_alive: 0,
                    properties,
                    client_id: self.config.local_client_id.clone(),
                    will: None,
                    username: None,
                    password: None,
                }
            }
            Side::Remote => {
                if self.config.protocol.is_v5() {
                    properties.session_expiry_interval = Some(self.config.session_expiry);
                } else {
                    properties = Properties::default();
                }
                Connect {
                    protocol: self.config.protocol,
                    clean_start: self.config.clean_start,
                    keep_alive: self.config.keep_alive,
                    properties,
                    client_id: self.config.client_id.clone(),
                    will: None,
                    username: self.config.username.clone(),
                    password: self.config.password.clone(),
                }
            }
        }
    }

    fn on_received(&mut self, side: Side, data: &[u8]) {
        if matches!(self.link(side).state, LinkState::Down | LinkState::Opening) {
            return;
        }
        let now = self.now;
        let link = self.link_mut(side);
        link.last_received = now;
        link.decoder.feed(data);
        loop {
            let packet = match self.link_mut(side).decoder.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => return,
                Err(e) => {
                    self.close(side, format!("malformed packet from the broker: {e}"));
                    return;
                }
            };
            self.on_packet(side, packet);
            if matches!(self.link(side).state, LinkState::Down) {
                return;
            }
        }
    }

    fn on_packet(&mut self, side: Side, packet: Packet) {
        let connected = self.link(side).is_up();
        match packet {
            Packet::ConnAck(ack) if self.link(side).state == LinkState::Connecting => self.on_connack(side, ack),
            _ if !connected => self.close(side, "packet before CONNACK".to_string()),
            Packet::Publish(publish) => self.on_publish(side, publish),
            Packet::PubAck(ack) => self.on_ack(side, ack, Awaiting::PubAck),
            Packet::PubRec(ack) => self.on_ack(side, ack, Awaiting::PubRec),
            Packet::PubComp(ack) => self.on_ack(side, ack, Awaiting::PubComp),
            Packet::PubRel(rel) => self.on_pubrel(side, rel.packet_id),
            Packet::SubAck(ack) => {
                let filters = self.filters(side);
                for (filter, reason) in filters.into_iter().zip(ack.reasons) {
                    if reason.0 >= 0x80 {
                        self.event(Event::SubscribeRefused { side, filter, reason });
                    }
                }
            }
            Packet::PingResp | Packet::UnsubAck(_) | Packet::Auth(_) => {}
            Packet::Disconnect(d) => {
                self.close(side, format!("DISCONNECT from the broker, reason 0x{:02X}", d.reason.0))
            }
            other => self.close(side, format!("unexpected {:?} from the broker", other.packet_type())),
        }
    }

    fn on_connack(&mut self, side: Side, ack: crate::packet::ConnAck) {
        if ack.reason.0 >= 0x80 || (ack.reason.0 != 0 && !self.link(side).version.is_v5()) {
            // 3.1.1 return code 1 (unacceptable protocol level) to the bridge bit: the remote is no Mosquitto.
            if side == Side::Remote && self.try_private() && ack.reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION {
                self.private_refused = true;
            }
            self.close(side, format!("CONNACK refused, reason 0x{:02X}", ack.reason.0));
            return;
        }
        let now = self.now;
        let requested = match side {
            Side::Local => 0,
            Side::Remote => self.config.keep_alive,
        };
        let queue_size = self.queue_size();
        let link = self.link_mut(side);
        link.state = LinkState::Up;
        link.connect_deadline = None;
        link.keep_alive = Duration::from_secs(ack.properties.server_keep_alive.unwrap_or(requested).into());
        link.send_quota = usize::from(ack.properties.receive_maximum.unwrap_or(u16::MAX)).min(queue_size);
        link.max_qos = ack
            .properties
            .maximum_qos
            .and_then(QoS::from_u8)
            .unwrap_or(QoS::ExactlyOnce);
        if !ack.session_present {
            link.new_session();
        }
        if side == Side::Remote {
            self.backoff = self.config.reconnect_min;
            self.stats.remote_connects += 1;
        }
        self.event(Event::Connected {
            side,
            session_present: ack.session_present,
        });
        self.subscribe(side);
        self.resend(side);
        self.pump(side);
        // The remote is worth connecting to once local deliveries can be taken and made.
        if side == Side::Local && self.remote.state == LinkState::Down && self.remote.retry_at.is_none() {
            let _ = now;
            self.open(Side::Remote);
        }
    }

    /// The filters the bridge subscribes to on `side`, in rule order.
    fn filters(&self, side: Side) -> Vec<String> {
        self.config
            .rules
            .iter()
            .filter_map(|rule| match side {
                Side::Local => rule.direction.outbound().then(|| rule.local_filter()),
                Side::Remote => rule.direction.inbound().then(|| rule.remote_filter()),
            })
            .collect()
    }

    /// Subscribing again after every CONNACK costs one packet and covers a broker that lost the session.
    fn subscribe(&mut self, side: Side) {
        let qos: Vec<QoS> = self
            .config
            .rules
            .iter()
            .filter(|rule| match side {
                Side::Local => rule.direction.outbound(),
                Side::Remote => rule.direction.inbound(),
            })
            .map(|rule| rule.qos)
            .collect();
        let filters: Vec<(String, SubscriptionOptions)> = self
            .filters(side)
            .into_iter()
            .zip(qos)
            .map(|(filter, qos)| {
                let options = SubscriptionOptions {
                    qos,
                    // Loop prevention [MQTT-3.8.3-3]; retained flags cross as published [MQTT-3.3.1-12].
                    no_local: true,
                    retain_as_published: true,
                    ..SubscriptionOptions::default()
                };
                (filter, options)
            })
            .collect();
        #[cfg(feature = "planted-bugs")]
        let filters: Vec<(String, SubscriptionOptions)> = if side == Side::Remote && self.config.planted_remote_echo {
            filters
                .into_iter()
                .map(|(f, o)| (f, SubscriptionOptions { no_local: false, ..o }))
                .collect()
        } else {
            filters
        };
        if filters.is_empty() {
            return;
        }
        let packet_id = self.link_mut(side).allocate_id();
        let subscribe = Packet::Subscribe(Subscribe {
            packet_id,
            properties: Default::default(),
            filters,
        });
        let now = self.now;
        if let Err(e) = self.link_mut(side).send(now, &subscribe) {
            self.close(side, format!("cannot encode SUBSCRIBE: {e}"));
        }
    }

    /// Everything published on `side` and not acknowledged, again, in its original order [MQTT-4.4.0-1]: PUBLISH
    /// with DUP [MQTT-3.3.1-1] until PUBREC, PUBREL after it.
    fn resend(&mut self, side: Side) {
        #[cfg(feature = "planted-bugs")]
        if self.config.planted_no_resend {
            return;
        }
        let now = self.now;
        let link = self.link_mut(side);
        let mut order: Vec<(u64, u16)> = link.sent.iter().map(|(id, s)| (s.seq, *id)).collect();
        order.sort_unstable();
        for (_, id) in order {
            let Some(sent) = link.sent.get(&id) else { continue };
            let packet = match sent.state {
                Awaiting::PubComp => Packet::PubRel(PubResponse::new(id, ReasonCode::SUCCESS)),
                Awaiting::PubAck | Awaiting::PubRec => {
                    let mut publish = sent.publish.clone();
                    publish.dup = true;
                    publish.packet_id = id;
                    Packet::Publish(publish)
                }
            };
            // Encoded once before, so it encodes again.
            let _ = link.send(now, &packet);
        }
    }

    fn on_publish(&mut self, from: Side, publish: Publish) {
        let id = publish.packet_id;
        let now = self.now;
        if publish.qos != QoS::AtMostOnce {
            if let Some(received) = self.link(from).received.get(&id).copied() {
                // A resend of a message the bridge has: answer what is owed, forward nothing again.
                let src = self.link_mut(from);
                let _ = match received.state {
                    ReceivedState::Forwarded => Ok(()),
                    ReceivedState::Acked => {
                        src.received.remove(&id);
                        src.send(now, &Packet::PubAck(PubResponse::new(id, ReasonCode::SUCCESS)))
                    }
                    ReceivedState::RecSent => src.send(now, &Packet::PubRec(PubResponse::new(id, ReasonCode::SUCCESS))),
                };
                return;
            }
        }
        let to = from.other();
        let Some((topic, rule_qos)) = map_topic(&self.config.rules, from, &publish.topic) else {
            self.drop_message(from, &publish, "no rule forwards its topic");
            return;
        };
        let qos = publish.qos.min(rule_qos).min(self.link(to).max_qos);
        if qos == QoS::AtMostOnce && self.link(to).qos0_queued >= self.queue_size() {
            self.drop_message(from, &publish, "the bridge's queue is full");
            return;
        }
        let origin = if qos != QoS::AtMostOnce {
            let src = self.link_mut(from);
            src.received.insert(
                id,
                Received {
                    qos: publish.qos,
                    state: ReceivedState::Forwarded,
                },
            );
            Some(Origin {
                packet_id: id,
                generation: src.generation,
            })
        } else {
            // Nothing will acknowledge it on the other side: the bridge takes it over now.
            self.acknowledge_now(from, &publish);
            None
        };
        let mut properties = publish.properties;
        // Both belong to the connection it came on. Checked first: a write allocates a message's empty properties.
        if !properties.subscription_identifiers.is_empty() || properties.topic_alias.is_some() {
            properties.subscription_identifiers.clear();
            properties.topic_alias = None;
        }
        let forwarded = Publish {
            dup: false,
            qos,
            retain: publish.retain,
            topic,
            packet_id: 0,
            properties,
            payload: publish.payload,
        };
        match to {
            Side::Remote => self.stats.forwarded_out += 1,
            Side::Local => self.stats.forwarded_in += 1,
        }
        self.link_mut(to).push(Pending {
            publish: forwarded,
            origin,
        });
        self.pump(to);
    }

    /// Acknowledges a QoS 1/2 message the bridge will not forward with an acknowledgement of its own.
    fn acknowledge_now(&mut self, from: Side, publish: &Publish) {
        let now = self.now;
        let id = publish.packet_id;
        let src = self.link_mut(from);
        let _ = match publish.qos {
            QoS::AtMostOnce => Ok(()),
            QoS::AtLeastOnce => src.send(now, &Packet::PubAck(PubResponse::new(id, ReasonCode::SUCCESS))),
            QoS::ExactlyOnce => {
                src.received.insert(
                    id,
                    Received {
                        qos: QoS::ExactlyOnce,
                        state: ReceivedState::RecSent,
                    },
                );
                src.send(now, &Packet::PubRec(PubResponse::new(id, ReasonCode::SUCCESS)))
            }
        };
    }

    fn drop_message(&mut self, from: Side, publish: &Publish, why: &'static str) {
        self.acknowledge_now(from, publish);
        self.stats.dropped += 1;
        self.event(Event::Dropped {
            from,
            topic: publish.topic.clone(),
            why,
        });
    }

    /// Publish what waits for `side`, as far as its Receive Maximum allows; order is kept (a QoS 0 message waits
    /// behind a QoS 1 message that has no room yet).
    fn pump(&mut self, side: Side) {
        let now = self.now;
        loop {
            let link = self.link_mut(side);
            if !link.is_up() || link.blocked {
                return;
            }
            let Some(front) = link.front() else { return };
            let qos = front.publish.qos;
            if qos != QoS::AtMostOnce
                && (link.sent.len() >= link.send_quota || link.sent.len() >= usize::from(u16::MAX - 1))
            {
                return;
            }
            let Some(Pending { mut publish, origin }) = link.pop() else {
                return;
            };
            if qos != QoS::AtMostOnce {
                publish.packet_id = link.allocate_id();
            }
            if let Err(e) = link.send(now, &Packet::Publish(publish.clone())) {
                // Too large for the codec: nothing else can take it either.
                let _ = e;
                if let Some(origin) = origin {
                    self.acknowledge_origin(side.other(), origin);
                }
                self.stats.dropped += 1;
                self.event(Event::Dropped {
                    from: side.other(),
                    topic: publish.topic,
                    why: "cannot be encoded for the other broker",
                });
                continue;
            }
            if qos != QoS::AtMostOnce {
                let seq = link.next_seq();
                let state = if qos == QoS::AtLeastOnce {
                    Awaiting::PubAck
                } else {
                    Awaiting::PubRec
                };
                let id = publish.packet_id;
                link.sent.insert(
                    id,
                    Sent {
                        seq,
                        publish,
                        origin,
                        state,
                    },
                );
            }
        }
    }

    fn on_ack(&mut self, side: Side, ack: PubResponse, expected: Awaiting) {
        let now = self.now;
        let id = ack.packet_id;
        let link = self.link_mut(side);
        let Some(sent) = link.sent.get_mut(&id) else {
            // An acknowledgement for nothing in flight (a duplicate): nothing to do.
            return;
        };
        if sent.state != expected {
            return;
        }
        let refused = ack.reason.0 >= 0x80;
        if refused && expected != Awaiting::PubComp && ack.reason == ReasonCode::QUOTA_EXCEEDED {
            // Transient (the broker's disk is full, a queue is at its bound): keep the message and try again on a
            // new connection, where it is resent; dropping it would lose what its source was told is taken.
            self.close(
                side,
                "the broker refused a message with 0x97 Quota exceeded".to_string(),
            );
            return;
        }
        let origin = sent.origin;
        let topic = sent.publish.topic.clone();
        match expected {
            Awaiting::PubRec if !refused => {
                sent.state = Awaiting::PubComp;
                let _ = link.send(now, &Packet::PubRel(PubResponse::new(id, ReasonCode::SUCCESS)));
            }
            _ => {
                link.sent.remove(&id);
            }
        }
        if expected != Awaiting::PubComp {
            if refused {
                // The broker refused it for good (not authorized, topic invalid): nothing is gained by keeping the
                // source waiting.
                self.stats.dropped += 1;
                self.event(Event::Dropped {
                    from: side.other(),
                    topic,
                    why: "refused by the broker it was forwarded to",
                });
            }
            if let Some(origin) = origin {
                self.acknowledge_origin(side.other(), origin);
            }
        }
        self.pump(side);
    }

    /// The message `origin` on `side` reached the other broker: acknowledge it where it came from.
    fn acknowledge_origin(&mut self, side: Side, origin: Origin) {
        let now = self.now;
        let link = self.link_mut(side);
        if origin.generation != link.generation {
            return;
        }
        let up = link.is_up();
        let Some(received) = link.received.get_mut(&origin.packet_id) else {
            return;
        };
        if received.state != ReceivedState::Forwarded {
            return;
        }
        let id = origin.packet_id;
        match received.qos {
            QoS::ExactlyOnce => {
                received.state = ReceivedState::RecSent;
                if up {
                    let _ = link.send(now, &Packet::PubRec(PubResponse::new(id, ReasonCode::SUCCESS)));
                }
            }
            _ if up => {
                link.received.remove(&id);
                let _ = link.send(now, &Packet::PubAck(PubResponse::new(id, ReasonCode::SUCCESS)));
            }
            // Owed until the broker resends it after reconnecting.
            _ => received.state = ReceivedState::Acked,
        }
    }

    /// PUBREL: the message was PUBREC'd, so the bridge forwarded it already; PUBCOMP in any case [MQTT-4.3.3-11].
    fn on_pubrel(&mut self, side: Side, id: u16) {
        let now = self.now;
        let link = self.link_mut(side);
        let reason = match link.received.get(&id) {
            Some(r) if r.state == ReceivedState::Forwarded => return,
            Some(_) => {
                link.received.remove(&id);
                ReasonCode::SUCCESS
            }
            None => ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        };
        let _ = link.send(now, &Packet::PubComp(PubResponse::new(id, reason)));
    }

    fn on_tick(&mut self) {
        let now = self.now;
        for side in [Side::Local, Side::Remote] {
            let link = self.link(side);
            if link.retry_at.is_some_and(|at| at <= now) && !self.stopped {
                self.open(side);
                continue;
            }
            if link.connect_deadline.is_some_and(|at| at <= now) {
                self.close(side, "connect timed out".to_string());
                continue;
            }
            if let Some(due) = link.keep_alive_deadline().filter(|due| *due <= now) {
                let _ = due;
                let keep_alive = link.keep_alive;
                if now.saturating_sub(link.last_received) >= keep_alive.mul_f32(1.5) {
                    self.close(side, "keep alive timed out".to_string());
                } else {
                    let _ = self.link_mut(side).send(now, &Packet::PingReq);
                }
            }
        }
    }

    /// Close `side` on the bridge's own initiative.
    fn close(&mut self, side: Side, reason: String) {
        self.outputs.push_back(Output::Close(side));
        self.on_lost(side, reason);
    }

    /// `side`'s connection is gone: schedule the next attempt.
    fn on_lost(&mut self, side: Side, reason: String) {
        // What was encoded for the dead connection is not sent; `resend` rebuilds it.
        self.link_mut(side).closed();
        let retry_in = match side {
            Side::Local => LOCAL_RETRY,
            Side::Remote => {
                let delay = self.backoff;
                self.backoff = (self.backoff * 2).min(self.config.reconnect_max);
                delay
            }
        };
        if !self.stopped {
            let at = self.now + retry_in;
            self.link_mut(side).retry_at = Some(at);
        }
        self.event(Event::Disconnected { side, reason, retry_in });
    }
}

impl Link {
    fn decoder_max(&self) -> u32 {
        u32::try_from(self.max_packet_size()).unwrap_or(u32::MAX)
    }
}

/// Sets the bridge bit (0x80) of a 3.1.1 CONNECT's protocol level, after the fixed header's remaining length and
/// the protocol name "MQTT" (2 + 4 bytes).
fn mark_bridge(connect: &mut bytes::BytesMut) {
    let length_bytes = connect[1..].iter().take_while(|b| **b & 0x80 != 0).count() + 1;
    let level = 1 + length_bytes + 6;
    if let Some(byte) = connect.get_mut(level) {
        *byte |= 0x80;
    }
}
