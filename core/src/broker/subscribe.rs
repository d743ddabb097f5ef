//! SUBSCRIBE and UNSUBSCRIBE: per-filter checks and reason codes, the subscription tree, and retained messages
//! sent on subscribe per Retain Handling.

use super::session::SessionKey;
use super::{Broker, ConnectionId};
use crate::packet::{Packet, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, UnsubAck, Unsubscribe};
use crate::topic::{parse_shared_subscription, validate_topic_filter, Subscription};

impl Broker {
    pub(super) fn handle_subscribe(&mut self, conn: ConnectionId, subscribe: Subscribe) {
        let Some(key) = self.connections.expected(conn).and_then(|c| c.session) else {
            return;
        };
        let identifier = subscribe.properties.subscription_identifiers.first().copied();
        if identifier.is_some() && !self.config.subscription_identifiers {
            self.protocol_error(
                conn,
                ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                "subscription identifiers not supported",
            );
            return;
        }
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut retained_for = Vec::new();
        for (filter, options) in subscribe.filters {
            let shared = match validate_topic_filter(&filter).and_then(|()| parse_shared_subscription(&filter)) {
                Ok(shared) => shared,
                Err(_) => {
                    reasons.push(ReasonCode::TOPIC_FILTER_INVALID);
                    continue;
                }
            };
            let (plain, group) = match shared {
                Some(shared) => (shared.filter, Some(shared.group)),
                None => (filter.as_str(), None),
            };
            if group.is_some() && !self.config.shared_subscriptions {
                reasons.push(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED);
                continue;
            }
            // [MQTT-3.8.3-4]: No Local on a shared subscription is a Protocol Error.
            if group.is_some() && options.no_local {
                self.protocol_error(conn, ReasonCode::PROTOCOL_ERROR, "No Local on a shared subscription");
                return;
            }
            if !self.config.wildcard_subscriptions && (plain.contains('+') || plain.contains('#')) {
                reasons.push(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED);
                continue;
            }
            // Quotas: topic size (0x8F) and subscriptions per client (0x97) [MQTT-3.9.3-1].
            if let Some(reason) = self.subscription_quota_refusal(key, &filter, plain) {
                reasons.push(reason);
                continue;
            }
            // [MQTT-3.9.3-1]: 0x87 Not authorized in SUBACK (0x80 Failure for 3.1.1, by the encoder).
            if !self.may_subscribe(conn, plain) {
                reasons.push(ReasonCode::NOT_AUTHORIZED);
                continue;
            }
            let mut options = options;
            // The granted QoS may be lower than requested [MQTT-3.8.4-7].
            let zero_as_unlimited =
                self.config.maximum_qos == 0 && self.planted(super::planted::PlantedBug::MaximumQos0Unlimited);
            if !self.planted(super::planted::PlantedBug::MaximumQosNotApplied) && !zero_as_unlimited {
                options.qos = QoS::from_u8(self.config.maximum_qos).map_or(options.qos, |max| options.qos.min(max));
            }
            let subscription = Subscription { options, identifier };
            // [MQTT-3.8.4-3]: a repeated filter replaces the existing subscription.
            let previous = self.subscriptions.insert(plain, group, key, subscription);
            let is_new = previous.is_none();
            if group.is_none() {
                retained_for.push((plain.to_string(), subscription, is_new));
            }
            if let Some(session) = self.sessions.get_mut(&key) {
                session.subscriptions.insert(filter.clone(), subscription);
            }
            self.persist_subscribe(key, &filter);
            reasons.push(ReasonCode(options.qos as u8));
        }
        let suback = SubAck {
            packet_id: subscribe.packet_id,
            reasons,
            ..Default::default()
        };
        // [MQTT-3.8.4-1]: SUBACK first, then the retained messages.
        self.send(conn, &Packet::SubAck(suback));
        for (filter, subscription, is_new) in retained_for {
            self.send_retained(key, &filter, subscription, is_new);
        }
    }

    /// Retained messages for a new subscription, per Retain Handling [MQTT-3.3.1-9], [MQTT-3.3.1-10],
    /// [MQTT-3.3.1-11]. Never for shared subscriptions.
    fn send_retained(&mut self, key: SessionKey, filter: &str, subscription: Subscription, is_new: bool) {
        let wanted = match subscription.options.retain_handling {
            RetainHandling::SendAtSubscribe => true,
            RetainHandling::SendIfNew => {
                is_new || self.planted(super::planted::PlantedBug::RetainHandlingIgnoredOnResubscribe)
            }
            RetainHandling::DoNotSend => false,
        };
        if !wanted || !self.config.retain_available {
            return;
        }
        // In slices as the subscriber makes room, never all at once (see `retained_stream`).
        self.start_retained_stream(key, filter, subscription);
    }

    pub(super) fn handle_unsubscribe(&mut self, conn: ConnectionId, unsubscribe: Unsubscribe) {
        let Some(key) = self.connections.expected(conn).and_then(|c| c.session) else {
            return;
        };
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            if validate_topic_filter(filter).is_err() {
                reasons.push(ReasonCode::TOPIC_FILTER_INVALID);
                continue;
            }
            let removed = self
                .sessions
                .get_mut(&key)
                .and_then(|s| s.subscriptions.remove(filter.as_str()))
                .is_some();
            if removed {
                // [MQTT-3.10.4-1], [MQTT-3.10.4-2]: the subscription is deleted; no new messages are added.
                self.remove_from_tree(filter, key);
                self.stop_retained_stream(key, filter);
                self.persist_unsubscribe(key, filter);
                reasons.push(ReasonCode::SUCCESS);
            } else {
                reasons.push(ReasonCode::NO_SUBSCRIPTION_EXISTED);
            }
        }
        let unsuback = UnsubAck {
            packet_id: unsubscribe.packet_id,
            reasons,
            ..Default::default()
        };
        // [MQTT-3.10.4-4]
        self.send(conn, &Packet::UnsubAck(unsuback));
    }

    /// Removes one subscription of a session from the tree; `filter` is as subscribed (maybe `$share/...`).
    pub(super) fn remove_from_tree(&mut self, filter: &str, key: SessionKey) {
        match parse_shared_subscription(filter) {
            Ok(Some(shared)) => {
                self.subscriptions.remove(shared.filter, Some(shared.group), key);
            }
            _ => {
                self.subscriptions.remove(filter, None, key);
            }
        }
    }
}
