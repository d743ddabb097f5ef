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
    /// Keeps its session across connections (Clean Start 0 and a long Session Expiry).
    pub persistent: bool,
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
    pub topic_aliases: BTreeMap<u16, String>,
    pub next_seq: u64,
    pub will_count: u64,
    /// The will id of the current connection.
    pub armed_will: Option<String>,
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
            shared_only,
            conn: None,
            connacked: false,
            decoder: Decoder::new(Some(version), usize::MAX),
            epoch: 0,
            filters: BTreeMap::new(),
            filters_ever: BTreeSet::new(),
            outgoing: BTreeMap::new(),
            next_packet_id: 1,
            incoming_qos2: BTreeSet::new(),
            unacked_in: BTreeSet::new(),
            pending_acks: VecDeque::new(),
            broker_receive_maximum: u16::MAX,
            receive_maximum,
            topic_aliases: BTreeMap::new(),
            next_seq: 1,
            will_count: 0,
            armed_will: None,
            last_sent_ms: 0,
        }
    }

    /// The CONNECT for a new connection.
    pub fn connect_packet(&mut self, with_will: bool) -> Connect {
        let mut connect = mqtt_core::harness::connect_packet(self.version, &self.client_id);
        connect.clean_start = !self.persistent;
        connect.keep_alive = 60;
        if self.version.is_v5() {
            if self.persistent {
                connect.properties.session_expiry_interval = Some(86_400);
            }
            if self.receive_maximum != u16::MAX {
                connect.properties.receive_maximum = Some(self.receive_maximum);
            }
            connect.properties.topic_alias_maximum = Some(4);
        }
        self.armed_will = None;
        if with_will {
            self.will_count += 1;
            let id = format!("w{}:{}", self.index, self.will_count);
            connect.will = Some(Will {
                topic: format!("will/{}", self.index),
                payload: Bytes::from(id.clone()),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Properties::default(),
            });
            self.armed_will = Some(id);
        }
        self.decoder = Decoder::new(Some(self.version), usize::MAX);
        self.connacked = false;
        self.unacked_in.clear();
        self.topic_aliases.clear();
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
            self.outgoing.clear();
            self.incoming_qos2.clear();
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
}
