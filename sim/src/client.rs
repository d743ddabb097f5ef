//! A simulated MQTT client that behaves as the spec asks of a client: it acknowledges what it receives (maybe
//! late), resends its unacknowledged publishes with DUP after reconnecting to a surviving session, respects the
//! broker's Receive Maximum, and keeps its QoS 2 receive state across connections.

use bytes::Bytes;
use mqtt_core::broker::ConnectionId;
use mqtt_core::codec::Decoder;
use mqtt_core::packet::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Where a client's own outgoing QoS 1/2 message stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    AwaitingAck(Box<Publish>),
    AwaitingComp(u16),
}

pub struct SimClient {
    pub index: usize,
    pub client_id: String,
    pub version: ProtocolVersion,
    /// Keeps its session across connections (Clean Start 0 and a Session Expiry, `session_expiry` seconds).
    pub persistent: bool,
    pub session_expiry: u32,
    /// Uses only shared subscriptions (so its deliveries are checked as a group member's).
    pub shared_only: bool,
    pub conn: Option<ConnectionId>,
    pub connacked: bool,
    pub decoder: Decoder,
    /// The session epoch as this client has seen it (bumped on Session Present 0).
    pub epoch: u64,
    /// Filters subscribed and not yet unsubscribed, with what was asked.
    pub filters: BTreeMap<String, SubscriptionOptions>,
    /// Every filter it has used in this epoch (retained deliveries may match any of them).
    pub filters_ever: BTreeSet<String>,
    /// Subscription Identifiers it has given in this epoch, each with its filter (MQTT 5), and the next one.
    pub subscription_ids: BTreeMap<u32, String>,
    pub next_subscription_id: u32,
    pub outgoing: BTreeMap<u16, Outgoing>,
    pub next_packet_id: u16,
    /// QoS 2 packet ids received and not yet released [MQTT-4.3.3-9]: survives reconnects like the session.
    pub incoming_qos2: BTreeSet<u16>,
    /// Packet ids of QoS 1/2 PUBLISHes received on this connection and not yet completed, for the Receive
    /// Maximum check.
    pub unacked_in: BTreeSet<u16>,
    /// Acknowledgements not yet sent (a slow client sends them later).
    pub pending_acks: VecDeque<Packet>,
    /// The broker's Receive Maximum for our publishes.
    pub broker_receive_maximum: u16,
    pub receive_maximum: u16,
    /// Maximum Packet Size announced in CONNECT (MQTT 5 only); the decoder enforces it on what the broker sends.
    pub max_packet_size: Option<u32>,
    pub topic_aliases: BTreeMap<u16, String>,
    /// Topic Alias Maximum the broker granted in CONNACK (0: none) and the aliases set on this connection.
    pub broker_alias_max: u16,
    pub out_aliases: BTreeMap<String, u16>,
    /// Highest QoS asked per filter over the session epoch (including unsubscribed filters, whose in-flight
    /// messages may still arrive), and SUBSCRIBEs awaiting their SUBACK with what they asked.
    pub granted: BTreeMap<String, QoS>,
    pub pending_subscribes: BTreeMap<u16, Vec<(String, QoS)>>,
    /// Will Delay Interval of the armed will (seconds).
    pub armed_will_delay: u32,
    /// QoS and Retain of the armed will.
    pub armed_will_qos: QoS,
    pub armed_will_retain: bool,
    pub next_seq: u64,
    pub will_count: u64,
    /// The will id of the current connection.
    pub armed_will: Option<crate::model::MsgId>,
    pub last_sent_ms: u64,
}

impl SimClient {
    pub fn new(
        index: usize,
        version: ProtocolVersion,
        persistent: bool,
        shared_only: bool,
        receive_maximum: u16,
    ) -> Self {
        SimClient {
            index,
            client_id: format!("sim-{index}"),
            version,
            persistent,
            session_expiry: 86_400,
            shared_only,
            conn: None,
            connacked: false,
            decoder: Decoder::new(Some(version), usize::MAX),
            max_packet_size: None,
            epoch: 0,
            filters: BTreeMap::new(),
            filters_ever: BTreeSet::new(),
            subscription_ids: BTreeMap::new(),
            next_subscription_id: 1,
            outgoing: BTreeMap::new(),
            next_packet_id: 1,
            incoming_qos2: BTreeSet::new(),
            unacked_in: BTreeSet::new(),
            pending_acks: VecDeque::new(),
            broker_receive_maximum: u16::MAX,
            receive_maximum,
            topic_aliases: BTreeMap::new(),
            broker_alias_max: 0,
            out_aliases: BTreeMap::new(),
            granted: BTreeMap::new(),
            pending_subscribes: BTreeMap::new(),
            armed_will_delay: 0,
            armed_will_qos: QoS::AtLeastOnce,
            armed_will_retain: false,
            next_seq: 1,
            will_count: 0,
            armed_will: None,
            last_sent_ms: 0,
        }
    }

    /// The CONNECT for a new connection; the will (if any) has `will_delay` and, as `will_options`, its QoS and
    /// Retain flag.
    pub fn connect_packet(&mut self, with_will: bool, will_delay: u32, will_options: (QoS, bool)) -> Connect {
        let mut connect = mqtt_core::harness::connect_packet(self.version, &self.client_id);
        connect.clean_start = !self.persistent;
        connect.keep_alive = 60;
        if self.version.is_v5() {
            if self.persistent {
                connect.properties.session_expiry_interval = Some(self.session_expiry);
            }
            if self.receive_maximum != u16::MAX {
                connect.properties.receive_maximum = Some(self.receive_maximum);
            }
            connect.properties.topic_alias_maximum = Some(4);
            connect.properties.maximum_packet_size = self.max_packet_size;
        }
        self.armed_will = None;
        if with_will {
            self.will_count += 1;
            let id = format!("w{}:{}", self.index, self.will_count);
            connect.will = Some(Will {
                topic: format!("will/{}", self.index),
                payload: Bytes::from(id.clone()),
                qos: will_options.0,
                retain: will_options.1,
                properties: Properties {
                    will_delay_interval: (will_delay > 0 && self.version.is_v5()).then_some(will_delay),
                    ..Properties::default()
                },
            });
            self.armed_will = Some(id.into());
            self.armed_will_delay = if self.version.is_v5() { will_delay } else { 0 };
            (self.armed_will_qos, self.armed_will_retain) = will_options;
        }
        // [MQTT-3.1.2-24]: the broker must not send a packet larger than this; the decoder rejects one.
        let limit = self.max_packet_size.map_or(usize::MAX, |max| max as usize);
        self.decoder = Decoder::new(Some(self.version), limit);
        self.connacked = false;
        self.unacked_in.clear();
        self.topic_aliases.clear();
        self.out_aliases.clear();
        self.broker_alias_max = 0;
        self.pending_subscribes.clear();
        self.pending_acks.clear();
        connect
    }

    pub fn allocate_packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.outgoing.contains_key(&id) {
                return id;
            }
        }
    }

    /// How many more QoS 1/2 publishes the broker's Receive Maximum allows now.
    pub fn can_publish_qos(&self) -> bool {
        self.outgoing.len() < usize::from(self.broker_receive_maximum)
    }

    /// After CONNACK: a lost session resets everything; a surviving one gets our unacknowledged messages again,
    /// in order, with DUP set [MQTT-4.4.0-1].
    pub fn on_connack(&mut self, session_present: bool) -> Vec<Packet> {
        self.connacked = true;
        if !session_present {
            self.epoch += 1;
            self.filters.clear();
            self.filters_ever.clear();
            self.subscription_ids.clear();
            self.outgoing.clear();
            self.incoming_qos2.clear();
            self.granted.clear();
            return Vec::new();
        }
        self.outgoing
            .values()
            .map(|entry| match entry {
                Outgoing::AwaitingAck(publish) => {
                    let mut again = (**publish).clone();
                    again.dup = true;
                    Packet::Publish(again)
                }
                Outgoing::AwaitingComp(id) => Packet::PubRel(PubResponse::new(*id, ReasonCode::SUCCESS)),
            })
            .collect()
    }

    /// Acknowledgement flow for a received PUBLISH; returns whether it is new to this client (not a QoS 2 DUP it
    /// already holds), and queues the acknowledgement.
    pub fn on_publish(&mut self, publish: &Publish) -> bool {
        match publish.qos {
            QoS::AtMostOnce => true,
            QoS::AtLeastOnce => {
                self.unacked_in.insert(publish.packet_id);
                self.pending_acks
                    .push_back(Packet::PubAck(PubResponse::new(publish.packet_id, ReasonCode::SUCCESS)));
                true
            }
            QoS::ExactlyOnce => {
                self.unacked_in.insert(publish.packet_id);
                let new = self.incoming_qos2.insert(publish.packet_id);
                self.pending_acks
                    .push_back(Packet::PubRec(PubResponse::new(publish.packet_id, ReasonCode::SUCCESS)));
                new
            }
        }
    }

    /// Marks an acknowledgement as sent: QoS 1 completes with PUBACK, QoS 2 with PUBCOMP [MQTT-3.3.4-9].
    pub fn on_ack_sent(&mut self, ack: &Packet) {
        match ack {
            Packet::PubAck(r) => {
                self.unacked_in.remove(&r.packet_id);
            }
            Packet::PubComp(r) => {
                self.unacked_in.remove(&r.packet_id);
                self.incoming_qos2.remove(&r.packet_id);
            }
            _ => {}
        }
    }

    /// Replaces the topic by a Topic Alias when the broker allows aliases [MQTT-3.3.2-7]: an alias already set on
    /// this connection is used with an empty topic (if `use_existing`), a new one is set while the broker's
    /// maximum allows, and otherwise the topic goes out in full.
    pub fn apply_topic_alias(&mut self, mut publish: Publish, use_existing: bool) -> Publish {
        if !self.version.is_v5() || self.broker_alias_max == 0 {
            return publish;
        }
        if let Some(&alias) = self.out_aliases.get(&publish.topic) {
            publish.properties.topic_alias = Some(alias);
            if use_existing {
                publish.topic.clear();
            }
        } else if self.out_aliases.len() < usize::from(self.broker_alias_max) {
            let alias = self.out_aliases.len() as u16 + 1;
            self.out_aliases.insert(publish.topic.clone(), alias);
            publish.properties.topic_alias = Some(alias);
        }
        publish
    }

    /// The highest QoS this client may receive a message on `topic` with: the best QoS asked for (and granted, as
    /// SUBACK cannot grant more) among its filters of this epoch that match [MQTT-3.8.4-8] (`None`: no filter
    /// matches). Requests in flight count, since the broker may have processed them already.
    pub fn qos_bound(&self, topic: &str) -> Option<QoS> {
        self.filters_ever
            .iter()
            .filter(|f| crate::model::matches(crate::model::plain_filter(f), topic))
            .map(|f| self.granted.get(f).copied().unwrap_or(QoS::ExactlyOnce))
            .max()
    }
}
