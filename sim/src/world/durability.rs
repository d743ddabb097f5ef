//! What a recovered broker must hold, decided by the reference model (not by the core's own view of its state): the
//! retained messages, every persistent session with its subscriptions and incoming QoS 2 packet ids, and the
//! QoS 1/2 messages it still owes each persistent session.

use super::*;
use crate::model::message_id;
use mqtt_core::persist::Image;

impl World {
    /// Whether each session of `image` holds no more copies of a message (queued or in flight) than `model` counts
    /// routed to it and not completed, give or take those of held PUBLISHes admitted unseen: the candidate states
    /// before and after the input a power cut struck may differ in that alone (seed 1798 of 1..12000, strict: the
    /// state before a resend of m1:118 was chosen, the broker had recovered the resend's copy and sent it ahead of
    /// m1:120, which the model, one copy short, took for a drop).
    pub(super) fn copies_match(&self, image: &Image, model: &Model, held: &[PendingPublish]) -> Result<(), String> {
        for session in image.sessions.values() {
            let Some(index) = self.clients.iter().position(|c| c.client_id == session.client_id) else {
                continue;
            };
            let mut copies: BTreeMap<MsgId, usize> = BTreeMap::new();
            for entry in session.entries.values() {
                if let Some(id) = image
                    .messages
                    .get(&entry.message_id)
                    .and_then(|m| message_id(&m.payload))
                {
                    *copies.entry(id).or_default() += 1;
                }
            }
            for (id, count) in copies {
                let unseen = held.iter().filter(|p| p.blind && p.id.as_ref() == Some(&id)).count();
                let counted = model.sessions[index].backlog.copies(&id);
                if count > counted + unseen {
                    return Err(format!(
                        "{}: {count} copies of {id} queued, but the model counts {counted}",
                        session.client_id
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether `image` (what recovery restored) is the committed state as `model` describes it; the first
    /// difference otherwise. `held`: PUBLISHes the broker held when it crashed; those whose publisher stopped
    /// reading may have been admitted unseen (see `admission`), so their effects may or may not be there.
    pub(super) fn image_matches_model(
        &self,
        image: &Image,
        model: &Model,
        held: &[PendingPublish],
    ) -> Result<(), String> {
        let unseen: Vec<&PendingPublish> = held.iter().filter(|p| p.blind).collect();
        if image.orphan_records != 0 {
            return Err(format!(
                "{} records refer to state that does not exist",
                image.orphan_records
            ));
        }
        let sessions: BTreeMap<&str, &mqtt_core::persist::SessionImage> =
            image.sessions.values().map(|s| (s.client_id.as_str(), s)).collect();
        for (index, client) in self.clients.iter().enumerate() {
            let expected = &model.sessions[index];
            let found = sessions.get(client.client_id.as_str());
            // Only a persistent session outlives its connection, and so the broker [MQTT-3.1.2-5].
            let durable = client.persistent && expected.exists;
            let Some(session) = found else {
                if durable {
                    return Err(format!("session of {} lost", client.client_id));
                }
                continue;
            };
            if !durable {
                return Err(format!("session of {} restored, but it had ended", client.client_id));
            }
            let filters: BTreeMap<&str, QoS> = session
                .subscriptions
                .iter()
                .map(|(f, s)| (f.as_str(), s.options.qos))
                .collect();
            let owed: BTreeMap<&str, QoS> = expected
                .subscriptions
                .iter()
                .map(|(f, o)| (f.as_str(), o.qos))
                .collect();
            if filters != owed {
                return Err(format!(
                    "{}: subscriptions {filters:?}, but the model has {owed:?}",
                    client.client_id
                ));
            }
            // A resent QoS 2 PUBLISH must still be recognised [MQTT-4.3.3-9].
            let unseen_qos2: BTreeSet<u16> = unseen
                .iter()
                .filter(|p| p.client == index && p.publish.qos == QoS::ExactlyOnce)
                .map(|p| p.publish.packet_id)
                .collect();
            let unsure = |id: &u16| model.qos2_unsure.contains(&(index, *id));
            let known = |id: &u16| {
                expected.qos2_pending.contains(id)
                    || unseen_qos2.contains(id)
                    || model.qos2_unsure.contains(&(index, *id))
            };
            if !session.incoming_qos2.iter().all(known)
                || !expected
                    .qos2_pending
                    .iter()
                    .all(|id| session.incoming_qos2.contains(id) || unseen_qos2.contains(id) || unsure(id))
            {
                return Err(format!(
                    "{}: incoming QoS 2 ids {:?}, but the model has {:?}",
                    client.client_id, session.incoming_qos2, expected.qos2_pending
                ));
            }
            let held: BTreeSet<MsgId> = session
                .entries
                .values()
                .filter_map(|e| image.messages.get(&e.message_id))
                .filter_map(|m| message_id(&m.payload))
                .collect();
            // Nothing queued that was never routed to it: retained copies and wills are the model's to check
            // when they arrive.
            let routed = |id: &MsgId| {
                let key = (index, expected.epoch, id.clone());
                model.expected.contains_key(&key)
                    || model.shared_allowed.contains(&key)
                    || model.optional.contains(&key)
                    || model.ever_retained.contains(id)
                    || model.unpinned.contains(id)
                    || id.starts_with('w')
            };
            if let Some(id) = held.iter().find(|id| !routed(id)) {
                return Err(format!(
                    "{}: message {id} is in its queue, but was never routed to it",
                    client.client_id
                ));
            }
            // A drop the configuration allowed (a full offline queue, the total budget's eviction) is marked on
            // the delivery; any other owed message must still be queued.
            let droppable = |id: &MsgId| {
                model.excused.contains(&(index, expected.epoch, id.clone()))
                    || expected
                        .backlog
                        .unreceived()
                        .any(|e| e.id == *id && e.droppable.is_some())
            };
            let missing = model.expected.iter().find(|((c, epoch, id), qos)| {
                *c == index
                    && *epoch == expected.epoch
                    && **qos != QoS::AtMostOnce
                    && !model.delivered.contains_key(&(*c, *epoch, id.clone()))
                    && !model.optional.contains(&(*c, *epoch, id.clone()))
                    && !model.messages.get(id).is_some_and(|m| m.expires)
                    && !held.contains(id)
                    && !droppable(id)
            });
            if let Some(((_, _, id), _)) = missing {
                return Err(format!(
                    "{}: message {id} is owed and was never delivered, but is not in its queue",
                    client.client_id
                ));
            }
        }
        let retained: BTreeMap<&str, Option<MsgId>> = image
            .retained
            .iter()
            .map(|(topic, m)| (topic.as_str(), message_id(&m.payload)))
            .collect();
        // Where the model cannot pin the retained store down (a held or unseen RETAIN PUBLISH), it does not hold
        // recovery to it either.
        let unsure = |topic: &str| {
            model.retained_unsure.contains(topic) || unseen.iter().any(|p| p.publish.retain && p.publish.topic == topic)
        };
        for (topic, id) in &model.retained {
            let expires = model.messages.get(id).is_some_and(|m| m.expires);
            if unsure(topic) {
                continue;
            }
            match retained.get(topic.as_str()) {
                Some(Some(found)) if found == id => {}
                None if expires => {}
                other => {
                    return Err(format!(
                        "retained message on {topic}: {other:?}, but the model has {id}"
                    ))
                }
            }
        }
        if let Some(topic) = retained
            .keys()
            .find(|t| !t.starts_with('$') && !model.retained.contains_key(**t) && !unsure(t))
        {
            return Err(format!("retained message on {topic}, which the model has cleared"));
        }
        // An unsure topic still holds a message published with RETAIN on it that this state knows of [MQTT-3.3.1-5]:
        // recovery showing one this state has not seen is the state after the input, not before (seed 9805 of
        // 1..12000, strict: m2:41, a QoS 0 RETAIN PUBLISH read in the input a power cut struck, recovered as the
        // retained message of unsure 'a'; the state before matched, and c2's copy of it on SUBSCRIBE had no origin).
        let known = |topic: &str, id: &MsgId| {
            let info = model.messages.get(id).or_else(|| model.will_messages.get(id));
            (model.ever_retained.contains(id) && info.is_some_and(|m| m.topic == topic))
                || unseen
                    .iter()
                    .any(|p| p.publish.retain && p.publish.topic == topic && p.id.as_ref() == Some(id))
        };
        for (topic, id) in &retained {
            if let (Some(id), true) = (id, !topic.starts_with('$') && unsure(topic)) {
                if !known(topic, id) {
                    return Err(format!(
                        "retained message on {topic} is {id}, which this state has not seen"
                    ));
                }
            }
        }
        Ok(())
    }
}
