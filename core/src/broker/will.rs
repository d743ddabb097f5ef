//! Will messages: published when a connection ends without a normal DISCONNECT, after the Will Delay Interval.

use super::auth::ClientIdentity;
use super::message::Message;
use super::session::SessionKey;
use super::{Broker, Event};
use crate::packet::Will;
use std::sync::Arc;

impl Broker {
    /// Publishes a will as an ordinary application message (retained if asked [MQTT-3.1.2-17]), if its author may
    /// still publish to its topic: the ACL was checked at CONNECT, but it may have been reloaded since (a will can
    /// wait for its delay, or in an offline session, long after the CONNECT).
    pub(super) fn publish_will(&mut self, will: Will, client_id: &str, username: Option<&str>) {
        let author = ClientIdentity { client_id, username };
        if !self.authenticator.authorize_publish(author, &will.topic) {
            self.stats.dropped(super::DropCause::WillDenied, 1);
            self.outputs.push_back(super::Output::Event(Event::WillRefused {
                client_id: client_id.to_string(),
                topic: will.topic,
            }));
            return;
        }
        let mut properties = will.properties;
        // Will Delay Interval is about when to publish, not part of the message.
        properties.will_delay_interval = None;
        let expires_at = properties
            .message_expiry_interval
            .map(|secs| self.now + std::time::Duration::from_secs(u64::from(secs)));
        let message = Message {
            id: self.next_message_id(),
            topic: will.topic.into(),
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: properties.into(),
            expires_at,
        };
        if self.storage_full
            && message.qos != crate::packet::QoS::AtMostOnce
            && self.planted(super::planted::PlantedBug::WillDroppedWhileSuspended)
        {
            return;
        }
        self.stats.wills_published += 1;
        self.publish_message(Arc::new(message), None);
    }

    pub(super) fn check_will_delay(&mut self, key: SessionKey) {
        let now = self.now;
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        if session.connection.is_some() || session.pending_will.as_ref().is_none_or(|w| w.publish_at > now) {
            return;
        }
        if let Some(pending) = session.pending_will.take() {
            let (client_id, username) = (Arc::clone(&session.client_id), session.username.clone());
            self.persist_will_done(key);
            if self.planted(super::planted::PlantedBug::DelayedWillLost) {
                return;
            }
            self.publish_will(pending.will, &client_id, username.as_deref());
        }
    }
}
