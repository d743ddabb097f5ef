//! Coverage: what the run really did, observed where it happens (see `crate::coverage`).

use super::*;
use crate::coverage::Feature;

impl World {
    fn hit(&mut self, feature: Feature) {
        self.coverage.hit(feature);
    }

    /// A packet a client is about to process.
    pub(super) fn observe_delivery(&mut self, client: usize, packet: &Packet) {
        match packet {
            Packet::Publish(p) => {
                self.hit(match p.qos {
                    QoS::AtMostOnce => Feature::Qos0Delivered,
                    QoS::AtLeastOnce => Feature::Qos1Delivered,
                    QoS::ExactlyOnce => Feature::Qos2Delivered,
                });
                if p.retain {
                    self.hit(Feature::RetainedOnSubscribe);
                }
                if p.dup {
                    self.hit(Feature::Redelivered);
                }
                if p.properties.message_expiry_interval.is_some() {
                    self.hit(Feature::ExpiryDelivered);
                }
                if self.clients[client].shared_only {
                    self.hit(Feature::SharedDelivered);
                }
                if p.topic.starts_with("will/") {
                    let id = message_id(&p.payload).unwrap_or_default();
                    match self.will_options_of.get(&id) {
                        Some((QoS::AtMostOnce, _)) => self.hit(Feature::WillQos0),
                        Some((QoS::ExactlyOnce, _)) => self.hit(Feature::WillQos2),
                        _ => {}
                    }
                    if self.will_options_of.get(&id).is_some_and(|(_, retain)| *retain) {
                        self.hit(Feature::WillRetained);
                    }
                    self.observe_owed_will(&id);
                    let delayed = matches!(self.model.wills.get(&id), Some(WillState::Delayed { .. }))
                        || self.owed_after_delay(&id);
                    self.hit(if delayed {
                        Feature::WillAfterDelay
                    } else {
                        Feature::WillPublished
                    });
                }
            }
            Packet::ConnAck(c) if c.session_present => self.hit(Feature::SessionResumed),
            Packet::SubAck(s) if s.reasons.iter().any(|r| r.is_error()) => self.hit(Feature::SubscribeRefused),
            Packet::PubAck(a) if a.reason.is_error() => self.hit(Feature::PublishRefused),
            Packet::PubRec(a) if a.reason.is_error() => self.hit(Feature::PublishRefused),
            Packet::Disconnect(_) => self.hit(Feature::ServerDisconnect),
            _ => {}
        }
    }

    /// A packet the broker is about to process (the model's view).
    pub(super) fn observe_read(&mut self, packet: &Packet) {
        if matches!(packet, Packet::Disconnect(d) if d.reason == ReasonCode::DISCONNECT_WITH_WILL) {
            self.hit(Feature::DisconnectWithWill);
        }
    }

    /// A packet a client sends.
    pub(super) fn observe_sent(&mut self, packet: &Packet) {
        if matches!(packet, Packet::Publish(p) if p.properties.topic_alias.is_some()) {
            self.hit(Feature::ClientTopicAlias);
        }
    }

    pub(super) fn observe_event(&mut self, event: &mqtt_core::broker::Event) {
        if matches!(event, mqtt_core::broker::Event::ClientDisconnected { reason, .. } if reason.contains("keep alive"))
        {
            self.hit(Feature::KeepAliveTimeout);
        }
    }

    pub(super) fn observe_held_publish(&mut self) {
        self.hit(Feature::PublisherHeld);
    }

    pub(super) fn observe_deferred_verdict(&mut self) {
        self.hit(Feature::DeferredVerdict);
    }

    pub(super) fn observe_torn_commit(&mut self) {
        self.hit(Feature::FaultTornCommit);
    }

    /// At the end of a run: the faults injected and what the end state shows happened.
    pub fn finish_coverage(&mut self) -> crate::coverage::Coverage {
        let c = &self.counts;
        let faults = [
            (c.cuts, Feature::FaultCut),
            (c.crashes, Feature::FaultClientCrash),
            (c.slow_readers, Feature::FaultSlowReader),
            (c.time_jumps, Feature::FaultTimeJump),
            (c.garbage, Feature::FaultMisbehaving),
            (c.takeovers, Feature::FaultTakeover),
            (c.broker_restarts, Feature::FaultBrokerCrash),
            (c.disk_full, Feature::FaultDiskFull),
        ];
        for (count, feature) in faults {
            if count > 0 {
                self.coverage.hit(feature);
            }
        }
        if self.clients.iter().filter(|c| c.epoch > 0).count() > 32 {
            self.hit(Feature::ManyClients);
        }
        if self.model.wills.values().any(|w| *w == WillState::Cancelled) {
            self.hit(Feature::WillCancelled);
        }
        if self.broker.stats().messages_dropped + self.dropped_before_restarts > 0 {
            self.hit(Feature::MessagesDropped);
        }
        self.coverage
    }
}
