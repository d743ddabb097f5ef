//! A broker whose Maximum QoS is below 2 (`Options::maximum_qos`), as the model predicts it from the configuration
//! alone: an MQTT 5 CONNACK says so [MQTT-3.2.2-9]; a SUBSCRIBE asking more is still accepted [MQTT-3.2.2-10] and
//! granted exactly the lower of the two [MQTT-3.8.4-7] (which is what the model then routes with, so deliveries are
//! downgraded [MQTT-3.8.4-8]); nothing is delivered above it; well-behaved clients publish within it
//! [MQTT-3.2.2-11], and a misbehaving one that does not gets DISCONNECT 0x9B (MQTT 5; a 3.1.1 connection is
//! closed), one whose will asks more gets CONNACK 0x9B [MQTT-3.2.2-12].

use super::*;
use crate::coverage::Feature;

/// What a misbehaving connection above the Maximum QoS must get from the broker, and what it did get.
pub(super) struct ExpectedRefusal {
    version: ProtocolVersion,
    /// The will is above Maximum QoS (CONNACK refuses), or a PUBLISH is (DISCONNECT after a successful CONNACK).
    will: bool,
    /// Decodes what the broker sends on this connection.
    decoder: Decoder,
}

impl World {
    /// The filter's options as the broker grants them: QoS at most Maximum QoS [MQTT-3.8.4-7].
    pub(super) fn granted_options(&self, options: SubscriptionOptions) -> SubscriptionOptions {
        let max = QoS::from_u8(self.opts.maximum_qos).unwrap_or(QoS::ExactlyOnce);
        SubscriptionOptions {
            qos: options.qos.min(max),
            ..options
        }
    }

    /// An MQTT 5 CONNACK carries Maximum QoS exactly when it is below 2 [MQTT-3.2.2-9].
    pub(super) fn check_connack_maximum_qos(&mut self, client: usize, connack: &ConnAck) -> Result<(), Violation> {
        if !self.clients[client].version.is_v5() {
            return Ok(());
        }
        let expected = (self.opts.maximum_qos < 2).then_some(self.opts.maximum_qos);
        if connack.properties.maximum_qos != expected {
            return Err(Violation(format!(
                "c{client}: CONNACK says Maximum QoS {:?}, but the broker's is {} [MQTT-3.2.2-9]",
                connack.properties.maximum_qos, self.opts.maximum_qos
            )));
        }
        if expected.is_some() {
            self.coverage.hit(Feature::MaxQosInConnack);
        }
        if expected == Some(0) {
            self.coverage.hit(Feature::MaxQos0InConnack);
        }
        Ok(())
    }

    /// A granted filter gets exactly min(asked, Maximum QoS): the broker lowers nothing else.
    pub(super) fn check_granted_qos(
        &mut self,
        client: usize,
        filter: &str,
        asked: QoS,
        granted: QoS,
    ) -> Result<(), Violation> {
        let expected = self.granted_options(SubscriptionOptions {
            qos: asked,
            ..Default::default()
        });
        if granted != expected.qos {
            return Err(Violation(format!(
                "c{client}: SUBACK granted {granted:?} on '{filter}' for {asked:?}, but the broker's Maximum QoS is {} \
                 so it must grant {:?} [MQTT-3.2.2-10], [MQTT-3.8.4-7]",
                self.opts.maximum_qos, expected.qos
            )));
        }
        if granted < asked {
            self.coverage.hit(Feature::MaxQosGrantedLower);
        }
        Ok(())
    }

    /// Nothing reaches a client above the broker's Maximum QoS.
    pub(super) fn check_delivery_maximum_qos(&self, client: usize, publish: &Publish) -> Result<(), Violation> {
        if publish.qos as u8 > self.opts.maximum_qos {
            return Err(Violation(format!(
                "c{client}: {} delivered at {:?}, above the broker's Maximum QoS {} [MQTT-3.8.4-8]",
                publish.topic, publish.qos, self.opts.maximum_qos
            )));
        }
        Ok(())
    }

    /// A misbehaving client breaks the Maximum QoS (only in seeds where it is below 2, 3 in 10 misbehaviours): its
    /// PUBLISH or its will asks QoS 2.
    pub(super) fn misbehave_above_maximum_qos(&mut self, conn: ConnectionId) -> Option<Result<(), Violation>> {
        if self.opts.maximum_qos >= 2 || !self.rng.gen_bool(0.3) {
            return None;
        }
        let version = if self.rng.gen_bool(0.5) {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        };
        let will = self.rng.gen_bool(0.5);
        let mut connect = mqtt_core::harness::connect_packet(version, &format!("bad-{}", conn.0));
        if will {
            connect.will = Some(Will {
                // Within every topic quota (which is checked first), like the PUBLISH topic below.
                topic: "a".into(),
                payload: Bytes::from_static(b"bad"),
                qos: QoS::ExactlyOnce,
                retain: false,
                properties: Properties::default(),
            });
        }
        let mut data = encoded(&Packet::Connect(Box::new(connect)), version);
        if !will {
            // At Maximum QoS 0, QoS 1 is above it too.
            let qos = if self.opts.maximum_qos == 0 && self.rng.gen_bool(0.5) {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            let publish = Packet::Publish(Publish {
                qos,
                topic: "a".into(),
                packet_id: 1,
                payload: Bytes::from_static(b"x"),
                ..Default::default()
            });
            data.extend(encoded(&publish, version));
        }
        if let Some(link) = self.links.get_mut(&conn) {
            link.refusal = Some(ExpectedRefusal {
                version,
                will,
                decoder: Decoder::new(Some(version), usize::MAX),
            });
        }
        let what = if will { "will" } else { "PUBLISH" };
        let digest = self.trace.absorb(&data);
        self.log(format!(
            "misbehaving client on {conn:?}: {what} of QoS 2 above Maximum QoS {} ({version:?}) {digest}",
            self.opts.maximum_qos
        ));
        self.schedule(self.now, Event::ToBroker { conn, data });
        Some(Ok(()))
    }

    /// What the broker sends a misbehaving connection: above Maximum QoS, MQTT 5 gets CONNACK 0x9B for the will
    /// [MQTT-3.2.2-12] and DISCONNECT 0x9B for the PUBLISH (section 3.3.1.2: a Protocol Error); 3.1.1 has no
    /// reason codes, so a refusing CONNACK or a close without DISCONNECT. A quota may refuse the CONNECT first
    /// (0x97, 0x9F: checked before the CONNECT's contents).
    pub(super) fn misbehaving_receives(&mut self, conn: ConnectionId, data: &[u8]) -> Result<(), Violation> {
        let Some(refusal) = self.links.get_mut(&conn).and_then(|l| l.refusal.as_mut()) else {
            return Ok(());
        };
        refusal.decoder.feed(data);
        let (version, will) = (refusal.version, refusal.will);
        let mut packets = Vec::new();
        while let Ok(Some(packet)) = refusal.decoder.next_packet() {
            packets.push(packet);
        }
        let v5 = version.is_v5();
        let quota =
            |reason: ReasonCode| reason == ReasonCode::QUOTA_EXCEEDED || reason == ReasonCode::CONNECTION_RATE_EXCEEDED;
        for packet in packets {
            let wrong = match &packet {
                Packet::ConnAck(ack) if ack.reason.is_error() && (quota(ack.reason) || !v5) => None,
                Packet::ConnAck(ack) if will && ack.reason == ReasonCode::QOS_NOT_SUPPORTED => {
                    self.coverage.hit(Feature::MaxQosRefused);
                    None
                }
                Packet::ConnAck(ack) if !will && !ack.reason.is_error() => None,
                Packet::Disconnect(d) if !will && v5 && d.reason == ReasonCode::QOS_NOT_SUPPORTED => {
                    self.coverage.hit(Feature::MaxQosRefused);
                    None
                }
                other => Some(describe(other)),
            };
            if let Some(wrong) = wrong {
                let what = if will { "a will" } else { "a PUBLISH" };
                return Err(Violation(format!(
                    "{conn:?} ({version:?}) sent {what} of QoS 2 above Maximum QoS {} and got {wrong}, not the \
                     refusal 0x9B QoS not supported [MQTT-3.2.2-12]",
                    self.opts.maximum_qos
                )));
            }
        }
        Ok(())
    }
}
