//! The cluster simulation's clients: persistent publishers (QoS 1/2) and subscribers (QoS 2 on `t/#`), and volatile
//! clean-session clients (QoS 0, pings). They follow the client's side of the spec: resend unacknowledged PUBLISHes
//! with DUP and unfinished PUBRELs after reconnecting [MQTT-4.4.0-1], and keep their QoS 2 receive state across
//! connections so a resent PUBLISH is not delivered twice [MQTT-4.3.3-9]. What they observe goes to the checker.

use super::check::Checker;
use bytes::{Bytes, BytesMut};
use mqtt_core::broker::ConnectionId;
use mqtt_core::codec::{self, Decoder};
use mqtt_core::packet::*;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Publisher,
    Subscriber,
    /// Clean session, QoS 0 only: nothing of it is durable, so a node serves it without any commit.
    Volatile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    AwaitAck,
    AwaitComp,
}

struct Out {
    payload: Bytes,
    qos: QoS,
    retain: bool,
    stage: Stage,
}

pub struct Client {
    pub index: usize,
    pub kind: Kind,
    pub version: ProtocolVersion,
    pub conn: Option<(ConnectionId, usize)>,
    pub connacked: bool,
    /// Its session exists (a CONNACK was received once): every later CONNACK must say Session Present.
    pub has_session: bool,
    pub subscribed: bool,
    pub reconnect_at: u64,
    decoder: Decoder,
    outgoing: BTreeMap<u16, Out>,
    next_packet_id: u16,
    incoming_qos2: BTreeSet<u16>,
    pub inflight_max: usize,
    pub next_seq: u64,
    /// DISCONNECTs from the server with reason 0x8B Server shutting down (a failover) so far.
    pub failover_disconnects: u64,
    /// Connections on which a CONNACK with Session Present 1 came after the client lost one (resumed sessions).
    pub resumed: u64,
}

impl Client {
    pub fn new(index: usize, kind: Kind, version: ProtocolVersion, inflight_max: usize) -> Client {
        Client {
            index,
            kind,
            version,
            conn: None,
            connacked: false,
            has_session: false,
            subscribed: false,
            reconnect_at: 0,
            decoder: Decoder::new(Some(version), usize::MAX),
            outgoing: BTreeMap::new(),
            next_packet_id: 1,
            incoming_qos2: BTreeSet::new(),
            inflight_max,
            next_seq: 1,
            failover_disconnects: 0,
            resumed: 0,
        }
    }

    pub fn name(&self) -> String {
        format!("c{}", self.index)
    }

    fn persistent(&self) -> bool {
        self.kind != Kind::Volatile
    }

    /// Nothing left to finish: no unacknowledged publish, subscribed if a subscriber.
    pub fn is_quiet(&self) -> bool {
        self.outgoing.is_empty() && (self.kind != Kind::Subscriber || self.subscribed)
    }

    pub fn can_publish(&self) -> bool {
        self.kind == Kind::Publisher && self.connacked && self.outgoing.len() < self.inflight_max
    }

    fn packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.outgoing.contains_key(&id) {
                return id;
            }
        }
    }

    fn encode(&self, packets: &[Packet]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for packet in packets {
            // The clients only build packets valid for their version.
            codec::encode(packet, self.version, &mut out).expect("a simulated client's packet encodes");
        }
        out.to_vec()
    }

    /// A new connection is open: the CONNECT.
    pub fn on_open(&mut self, conn: ConnectionId, node: usize) -> Vec<u8> {
        self.conn = Some((conn, node));
        self.connacked = false;
        self.decoder = Decoder::new(Some(self.version), usize::MAX);
        let mut connect = mqtt_core::harness::connect_packet(self.version, &format!("sim-{}", self.index));
        connect.clean_start = !self.persistent();
        connect.keep_alive = 0;
        if self.version.is_v5() && self.persistent() {
            connect.properties.session_expiry_interval = Some(86_400);
        }
        self.encode(&[Packet::Connect(Box::new(connect))])
    }

    pub fn on_closed(&mut self, reconnect_at: u64) {
        self.conn = None;
        self.connacked = false;
        self.reconnect_at = reconnect_at;
    }

    /// A new QoS 1/2 message (retained: it also replaces the topic's retained message, one more kind of durable
    /// state to replicate); returns its bytes.
    pub fn publish(&mut self, qos: QoS, retain: bool, check: &mut Checker) -> Vec<u8> {
        let payload = Bytes::from(format!("{}:{}", self.index, self.next_seq));
        self.next_seq += 1;
        let packet_id = self.packet_id();
        check.published(&payload, qos);
        self.outgoing.insert(
            packet_id,
            Out {
                payload: payload.clone(),
                qos,
                retain,
                stage: Stage::AwaitAck,
            },
        );
        self.encode(&[Packet::Publish(
            self.publish_packet(packet_id, qos, retain, payload, false),
        )])
    }

    /// A QoS 0 message and a ping (volatile clients).
    pub fn chatter(&mut self) -> Vec<u8> {
        let payload = Bytes::from(format!("{}:{}", self.index, self.next_seq));
        self.next_seq += 1;
        let publish = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: format!("v/{}", self.index),
            packet_id: 0,
            properties: Default::default(),
            payload,
        };
        self.encode(&[Packet::Publish(publish), Packet::PingReq])
    }

    fn publish_packet(&self, packet_id: u16, qos: QoS, retain: bool, payload: Bytes, dup: bool) -> Publish {
        Publish {
            dup,
            qos,
            retain,
            topic: format!("t/{}", self.index),
            packet_id,
            properties: Default::default(),
            payload,
        }
    }

    /// Bytes from the node; returns what the client sends back.
    pub fn on_bytes(&mut self, data: &[u8], check: &mut Checker) -> Result<Vec<u8>, String> {
        self.decoder.feed(data);
        let mut replies = Vec::new();
        loop {
            match self.decoder.next_packet() {
                Ok(Some(packet)) => self.on_packet(packet, check, &mut replies)?,
                Ok(None) => break,
                Err(e) => return Err(format!("{} could not decode what the broker sent: {e}", self.name())),
            }
        }
        Ok(self.encode(&replies))
    }

    fn on_packet(&mut self, packet: Packet, check: &mut Checker, replies: &mut Vec<Packet>) -> Result<(), String> {
        match packet {
            Packet::ConnAck(ack) => {
                if ack.reason.0 >= 0x80 {
                    return Ok(());
                }
                if self.persistent() && self.has_session && !ack.session_present {
                    return Err(format!(
                        "{}: persistent session lost (CONNACK Session Present 0)",
                        self.name()
                    ));
                }
                if ack.session_present {
                    self.resumed += 1;
                }
                self.has_session = self.persistent();
                self.connacked = true;
                // Unfinished exchanges go on where they stopped [MQTT-4.4.0-1].
                for (id, out) in &self.outgoing {
                    replies.push(match out.stage {
                        Stage::AwaitAck => {
                            Packet::Publish(self.publish_packet(*id, out.qos, out.retain, out.payload.clone(), true))
                        }
                        Stage::AwaitComp => Packet::PubRel(PubResponse::new(*id, ReasonCode::SUCCESS)),
                    });
                }
                if self.kind == Kind::Subscriber && !self.subscribed {
                    let options = SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        ..SubscriptionOptions::default()
                    };
                    replies.push(Packet::Subscribe(Subscribe {
                        packet_id: 1,
                        properties: Default::default(),
                        filters: vec![("t/#".to_string(), options)],
                    }));
                }
            }
            Packet::SubAck(ack) => {
                if ack.reasons.iter().all(|r| r.0 < 0x80) {
                    self.subscribed = true;
                }
            }
            Packet::PubAck(ack) => {
                if let Some(out) = self.outgoing.get(&ack.packet_id) {
                    if out.qos == QoS::AtLeastOnce {
                        let out = self.outgoing.remove(&ack.packet_id).expect("just found");
                        if ack.reason.0 < 0x80 {
                            check.acknowledged(self.index, &out.payload);
                        }
                    }
                }
            }
            Packet::PubRec(rec) => {
                if let Some(out) = self.outgoing.get_mut(&rec.packet_id) {
                    if rec.reason.0 >= 0x80 {
                        self.outgoing.remove(&rec.packet_id);
                    } else {
                        if out.stage == Stage::AwaitAck {
                            check.acknowledged(self.index, &out.payload);
                        }
                        out.stage = Stage::AwaitComp;
                        replies.push(Packet::PubRel(PubResponse::new(rec.packet_id, ReasonCode::SUCCESS)));
                    }
                }
            }
            Packet::PubComp(comp) => {
                self.outgoing.remove(&comp.packet_id);
            }
            Packet::Publish(publish) => match publish.qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => {
                    check.delivered(self.index, &publish.payload)?;
                    replies.push(Packet::PubAck(PubResponse::new(publish.packet_id, ReasonCode::SUCCESS)));
                }
                QoS::ExactlyOnce => {
                    if self.incoming_qos2.insert(publish.packet_id) {
                        check.delivered(self.index, &publish.payload)?;
                    }
                    replies.push(Packet::PubRec(PubResponse::new(publish.packet_id, ReasonCode::SUCCESS)));
                }
            },
            Packet::PubRel(rel) => {
                self.incoming_qos2.remove(&rel.packet_id);
                replies.push(Packet::PubComp(PubResponse::new(rel.packet_id, ReasonCode::SUCCESS)));
            }
            // The only reasons a server here has to end a connection: a failover (0x8B, the node holding the socket
            // says so before closing it [MQTT-3.14.2-1]) or the client's own new connection taking the session over
            // (0x8E) [MQTT-3.1.4-3].
            Packet::Disconnect(d) => match d.reason {
                ReasonCode::SERVER_SHUTTING_DOWN => self.failover_disconnects += 1,
                ReasonCode::SESSION_TAKEN_OVER => {}
                other => {
                    return Err(format!(
                        "{}: server DISCONNECT with reason {:#04x}, neither a failover nor a takeover",
                        self.name(),
                        other.0
                    ))
                }
            },
            Packet::PingResp | Packet::UnsubAck(_) => {}
            other => return Err(format!("{}: server sent a client-only packet {other:?}", self.name())),
        }
        Ok(())
    }
}
