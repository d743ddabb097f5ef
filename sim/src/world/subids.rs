//! Subscription Identifiers on delivery: a PUBLISH carries the identifiers of the subscriptions it was sent for
//! [MQTT-3.3.4-3], so each one it carries must name a subscription the client made (in this session) whose filter
//! matches the topic; a 3.1.1 client has none to get.

use super::*;
use crate::coverage::Feature;
use crate::model::{matches, plain_filter};

impl World {
    pub(super) fn check_subscription_ids(&mut self, client: usize, packet: &Packet) -> Result<(), Violation> {
        let Packet::Publish(publish) = packet else {
            return Ok(());
        };
        let ids = &publish.properties.subscription_identifiers;
        if ids.is_empty() {
            return Ok(());
        }
        let c = &self.clients[client];
        // A topic sent by alias only: the client resolves it as it processes the packet (see `receive`).
        let topic = match publish.properties.topic_alias {
            Some(alias) if publish.topic.is_empty() => c.topic_aliases.get(&alias).cloned().unwrap_or_default(),
            _ => publish.topic.clone(),
        };
        for id in ids {
            match c.subscription_ids.get(id) {
                None => {
                    return Err(Violation(format!(
                        "c{client} got '{topic}' with Subscription Identifier {id}, which names none of its \
                         subscriptions [MQTT-3.3.4-3]"
                    )))
                }
                Some(filter) if !matches(plain_filter(filter), &topic) => {
                    return Err(Violation(format!(
                        "c{client} got '{topic}' with Subscription Identifier {id}, that of '{filter}', which does \
                         not match it [MQTT-3.3.4-3]"
                    )))
                }
                Some(_) => {}
            }
        }
        self.coverage.hit(Feature::SubscriptionIdDelivered);
        Ok(())
    }
}
