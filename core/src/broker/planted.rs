//! Known bugs that can be switched on with the `planted-bugs` feature, so that the vopr's self-test proves the
//! simulator catches them. Without the feature every check here is a constant `false` and compiles away.

use super::Broker;
#[cfg(feature = "planted-bugs")]
use super::{message::Delivery, message::Message, session::SessionKey};
use crate::packet::{Packet, QoS};
#[cfg(feature = "planted-bugs")]
use std::sync::Arc;

pub(super) use super::config::PlantedBug;

impl Broker {
    /// The planted `HeldRoutedAtArrival`: a PUBLISH about to be held for the first time keeps whom routing gives it
    /// now.
    #[cfg(feature = "planted-bugs")]
    pub(super) fn plant_arrival_plan(
        &mut self,
        publisher: SessionKey,
        mut publish: super::held::HeldPublish,
    ) -> super::held::HeldPublish {
        if self.planted(PlantedBug::HeldRoutedAtArrival) && publish.arrival_plan.is_none() {
            publish.arrival_plan = Some(self.plan_route(&publish.message, Some(publisher)));
        }
        publish
    }

    /// The planted `HeldRoutedAtArrival`: an admitted held PUBLISH goes to whom routing gave it when it was first
    /// held, instead of `plan` (routing now).
    #[cfg(feature = "planted-bugs")]
    pub(super) fn planted_arrival_route(
        &mut self,
        publish: &super::held::HeldPublish,
        plan: Vec<(SessionKey, Delivery)>,
    ) -> Vec<(SessionKey, Delivery)> {
        let Some(arrival) = publish
            .arrival_plan
            .as_ref()
            .filter(|_| self.planted(PlantedBug::HeldRoutedAtArrival))
        else {
            return plan;
        };
        // Not yet queued: their `seq` is still unassigned, as in `plan`.
        let arrival = arrival.clone();
        self.recycle_plan(plan);
        arrival
    }

    /// The planted `HeldCopyDropped`: a PUBLISH about to be held for a full queue remembers that session.
    #[cfg(feature = "planted-bugs")]
    pub(super) fn plant_waited_on(
        &self,
        full: SessionKey,
        mut publish: super::held::HeldPublish,
    ) -> super::held::HeldPublish {
        if self.planted(PlantedBug::HeldCopyDropped) && publish.waited_on.is_none() {
            publish.waited_on = Some(full);
        }
        publish
    }

    /// The planted `HeldCopyDropped`: an admitted held PUBLISH skips the session it waited on, as if that one were
    /// still full, while the publisher is acknowledged.
    #[cfg(feature = "planted-bugs")]
    pub(super) fn plant_held_copy_dropped(
        &self,
        publish: &super::held::HeldPublish,
        mut plan: Vec<(SessionKey, Delivery)>,
    ) -> Vec<(SessionKey, Delivery)> {
        if let Some(waited_on) = publish.waited_on.filter(|_| self.planted(PlantedBug::HeldCopyDropped)) {
            plan.retain(|(key, delivery)| *key != waited_on || delivery.qos == QoS::AtMostOnce);
        }
        plan
    }

    /// Whether `bug` is the one planted (never, without the feature: the check compiles away).
    #[cfg(not(feature = "planted-bugs"))]
    pub(super) fn planted(&self, _bug: PlantedBug) -> bool {
        false
    }

    /// Whether `bug` is the one planted.
    #[cfg(feature = "planted-bugs")]
    pub(super) fn planted(&self, bug: PlantedBug) -> bool {
        self.config.planted_bug == Some(bug)
    }

    /// The planted shared-subscription bug: the first shared pick's message also goes to another member of the
    /// same shared subscription.
    #[cfg(feature = "planted-bugs")]
    pub(super) fn plant_shared_twice(&self, message: &Arc<Message>, shared: &mut Vec<(SessionKey, Delivery)>) {
        if !self.planted(PlantedBug::SharedDeliveredTwice) {
            return;
        }
        let Some((picked, delivery)) = shared.first() else {
            return;
        };
        let Some(session) = self.sessions.get(picked) else {
            return;
        };
        let inner_matches = |filter: &String| {
            filter
                .strip_prefix("$share/")
                .and_then(|rest| rest.split_once('/'))
                .is_some_and(|(_, inner)| naive_match(inner, &message.topic))
        };
        let Some(filter) = session.subscriptions.keys().find(|f| inner_matches(f)) else {
            return;
        };
        // The second member gets its copy as routing would give it one: by its own subscription's QoS and
        // identifier, so that only the shared-delivery check can tell (not the identifier or granted-QoS checks).
        let other = self.sessions.iter().find_map(|(key, s)| {
            let subscription = s.subscriptions.get(filter.as_str()).filter(|_| key != picked)?;
            Some((*key, subscription.options.qos, subscription.identifier))
        });
        if let Some((other, qos, identifier)) = other {
            let copy = Delivery {
                message: Arc::clone(&delivery.message),
                qos: delivery.message.qos.min(qos),
                retain: delivery.retain,
                subscription_ids: identifier.into_iter().collect(),
                seq: 0,
            };
            shared.push((other, copy));
        }
    }

    /// The planted `+` bug: a filter ending in `+` also matches topics one level deeper than it should.
    #[cfg(feature = "planted-bugs")]
    pub(super) fn plant_plus_across_levels(
        &mut self,
        message: &Arc<Message>,
        publisher: Option<SessionKey>,
        plan: &mut Vec<(SessionKey, Delivery)>,
    ) {
        if !self.planted(PlantedBug::PlusMatchesAcrossLevels) {
            return;
        }
        let Some((parent, _)) = message.topic.rsplit_once('/') else {
            return;
        };
        for (key, session) in &self.sessions {
            if plan.iter().any(|(k, _)| k == key) || publisher == Some(*key) {
                continue;
            }
            let wrongly_matches = session
                .subscriptions
                .iter()
                .find(|(filter, _)| filter.ends_with('+') && naive_match(filter, parent));
            if let Some((_, subscription)) = wrongly_matches {
                plan.push((
                    *key,
                    Delivery {
                        message: Arc::clone(message),
                        qos: message.qos.min(subscription.options.qos),
                        retain: false,
                        subscription_ids: subscription.identifier.into_iter().collect(),
                        seq: 0,
                    },
                ));
            }
        }
    }
}

impl Broker {
    /// The planted shared-subscription bug: every other member of a group that got the message gets it too.
    #[cfg(feature = "planted-bugs")]
    pub(super) fn plant_shared_to_every_member(
        &mut self,
        message: &Arc<Message>,
        plan: &mut Vec<(SessionKey, Delivery)>,
    ) {
        if !self.planted(PlantedBug::SharedToEveryMember) {
            return;
        }
        for (key, session) in &self.sessions {
            if plan.iter().any(|(k, _)| k == key) {
                continue;
            }
            let member = session.subscriptions.iter().find(|(filter, _)| {
                let mut levels = filter.splitn(3, '/');
                levels.next() == Some("$share") && levels.nth(1).is_some_and(|f| naive_match(f, &message.topic))
            });
            if let Some((_, subscription)) = member {
                plan.push((
                    *key,
                    Delivery {
                        message: Arc::clone(message),
                        qos: message.qos.min(subscription.options.qos),
                        retain: false,
                        subscription_ids: subscription.identifier.into_iter().collect(),
                        seq: 0,
                    },
                ));
            }
        }
    }
}

#[cfg(feature = "planted-bugs")]
fn naive_match(filter: &str, topic: &str) -> bool {
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match (level, topic_levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(t)) if f == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

impl Broker {
    /// The planted `ExpiringOvertaken`: a QoS 1/2 PUBLISH with a Message Expiry Interval is put aside and handled
    /// after the PUBLISH read right behind it in the same input (see `decode_received`).
    pub(super) fn defers_expiring(&self, packet: &Packet) -> bool {
        self.planted(PlantedBug::ExpiringOvertaken)
            && matches!(packet, Packet::Publish(p) if p.qos != QoS::AtMostOnce && p.properties.message_expiry_interval.is_some())
    }
}
