//! The model follows every packet the broker reads from a client, in the order the broker reads it (the world
//! decodes each client-to-broker stream in step with the broker): sessions and wills on CONNECT, subscriptions and
//! the retained copies they may be sent on SUBSCRIBE, and each PUBLISH's routing plan, applied at once for QoS 0 and
//! once the broker's answer shows whether it was admitted for QoS 1/2 (see `admission`).

use super::*;

impl World {
    /// Applies `packet`, which the broker reads now from `client` on `conn`, to the model.
    pub(super) fn model_processes(&mut self, client: usize, conn: ConnectionId, packet: &Packet) {
        if self.flooded(conn) {
            // Closed by the publish rate at an earlier packet: the broker reads nothing more from it.
            return;
        }
        let maybe_unread = match self.rest_of_input(conn) {
            transient_close::RestOfInput::Unread => {
                self.log(format!(
                    "c{client} {conn:?}: not processed, the connection closed at an earlier PUBLISH"
                ));
                return;
            }
            transient_close::RestOfInput::MaybeUnread => true,
            transient_close::RestOfInput::Read => false,
        };
        self.observe_read(packet);
        match packet {
            Packet::Connect(connect) => {
                self.expiry_on_connect(client, conn, connect);
                self.takeover_decides_will(client, connect.clean_start);
                self.model.on_connect(client, connect.clean_start, self.now);
                // Clean Start ends the old session: its delayed will is due now.
                self.count_due_wills();
                let receive_maximum = connect.properties.receive_maximum.unwrap_or(u16::MAX);
                let window = usize::from(receive_maximum.min(self.opts.max_inflight).max(1));
                self.model.on_attached(client, conn.0, window);
                self.model.sessions[client].max_packet_size = connect.properties.maximum_packet_size;
                if let Some(will) = &connect.will {
                    if let Some(id) = message_id(&will.payload) {
                        self.model.wills.insert(id, WillState::Armed);
                    }
                }
            }
            Packet::Subscribe(subscribe) => {
                let mut predicted = Vec::with_capacity(subscribe.filters.len());
                for (filter, options) in &subscribe.filters {
                    // The model routes with the QoS the broker must grant, not the one asked for.
                    let options = &self.granted_options(*options);
                    let refusal = self.model.subscribe_refusal(client, filter);
                    if refusal.is_none() {
                        let is_new = !self.model.sessions[client].subscriptions.contains_key(filter);
                        self.model.on_subscribe(client, filter, *options);
                        let withheld = self.model.retained_expired_withheld;
                        self.model
                            .on_subscribe_retained(client, filter, *options, is_new, self.now);
                        if self.model.retained_expired_withheld > withheld {
                            self.coverage
                                .hit(crate::coverage::Feature::RetainedExpiredBeforeSubscribe);
                        }
                        self.offer_chunk_retained(client, filter, *options, is_new);
                    }
                    predicted.push(refusal);
                }
                self.model
                    .predicted_subacks
                    .insert((client, subscribe.packet_id), predicted);
                self.widen_blind_plans();
            }
            Packet::Unsubscribe(unsubscribe) => {
                for filter in &unsubscribe.filters {
                    self.model.on_unsubscribe(client, filter);
                }
            }
            Packet::Publish(publish) => {
                self.ack_order_read(conn, publish);
                self.republished_into_new_session(client, publish);
                // A resend is a new publication, stored (and retained) anew with its own expiry stamp: the last read
                // bounds the stamp of the copy the broker holds, whatever it made of this one.
                if let Some(info) = message_id(&publish.payload).and_then(|id| self.model.messages.get_mut(&id)) {
                    info.last_read_ms = self.now;
                    info.uncapped_read_ms = self.now;
                    info.latest_read_ms = info.latest_read_ms.max(self.now);
                }
                self.transient_close_reads(client, conn, publish);
                let Some(rate_unsure) = self.publish_rate_admits(client, conn, publish) else {
                    return;
                };
                let qos2_maybe_held =
                    publish.qos == QoS::ExactlyOnce && self.model.qos2_unsure.contains(&(client, publish.packet_id));
                if qos2_maybe_held {
                    // The broker may not have kept this id (its first PUBLISH acknowledged but maybe dropped): the
                    // resend may be a new one, routed below as unsure (seed 8512).
                    self.model.forget_qos2(client, publish.packet_id);
                }
                if !self.model.routes_publish(client, publish) {
                    return;
                }
                let id = message_id(&publish.payload);
                if let Some(id) = &id {
                    if !self.model.messages.contains_key(id) {
                        let info = MessageInfo {
                            publisher: client,
                            topic: publish.topic.clone(),
                            qos: publish.qos,
                            expires: publish.properties.message_expiry_interval.is_some(),
                            expiry: publish.properties.message_expiry_interval,
                            first_seen_ms: self.now,
                            earliest_seen_ms: self.now,
                            last_read_ms: self.now,
                            uncapped_read_ms: self.now,
                            latest_read_ms: self.now,
                            bytes: publish.payload.len() as u64,
                            expired_before_restart: false,
                        };
                        self.model.messages.insert(id.clone(), info);
                    }
                }
                if publish.qos == QoS::AtMostOnce {
                    let mut plan = self.model.plan_publish(Some(client), publish, id);
                    // A QoS 0 PUBLISH the rate may have dropped silently: its retained topic holds it or the
                    // message before (seed 19049: unsure QoS 2 resends left the buckets unknown).
                    // Or one the broker may not have read (see `transient_close`).
                    plan.maybe_dropped = rate_unsure || maybe_unread;
                    self.retain_after_chunk(&plan, publish);
                    self.model.apply_publish(plan);
                } else {
                    let mut plan = self.model.plan_publish(Some(client), publish, id.clone());
                    let unsure = self.model.qos2_unsure.remove(&(client, publish.packet_id));
                    if unsure && publish.qos == QoS::ExactlyOnce || rate_unsure {
                        // The broker may have taken this id unseen (see `admission`): it routes the resend now, or
                        // routed it then; any matching subscriber of either moment may get it, none is owed it.
                        self.model.unpin(&mut plan);
                        plan.make_optional(plan.clone());
                    }
                    let uncertain = self.admission_uncertainty(conn, client, publish);
                    self.chunk_publishes.push(PendingPublish {
                        conn,
                        client,
                        publish: publish.clone(),
                        id,
                        plan,
                        uncertain,
                        blind: false,
                        qos2_maybe_held,
                    });
                }
            }
            Packet::PubRel(rel) => self.model.on_pubrel(client, rel.packet_id),
            Packet::PubAck(ack) => self.model.on_client_ack(client, ack.packet_id),
            Packet::PubComp(comp) => self.model.on_client_ack(client, comp.packet_id),
            Packet::Disconnect(disconnect) => {
                self.expiry_on_disconnect(client, disconnect);
                if let Some(link) = self.links.get_mut(&conn) {
                    link.saw_disconnect = disconnect.reason == ReasonCode::NORMAL_DISCONNECTION;
                }
            }
            _ => {}
        }
    }
}
