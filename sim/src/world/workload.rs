//! The random workload of the well-behaved clients: connect, publish, subscribe, unsubscribe, disconnect, ping.

use super::*;

impl World {
    pub(super) fn client_action(&mut self, client: usize) -> Result<(), Violation> {
        let Some(conn) = self.clients[client].conn else {
            // Reconnect once the broker is done with the previous connection (takeovers happen separately).
            if !self.previous_open(client) && (self.faults || self.rng.gen_bool(0.5)) {
                let will = self.opts.wills && self.rng.gen_bool(0.5);
                self.connect(client, will)?;
            }
            return Ok(());
        };
        if !self.clients[client].connacked {
            return Ok(());
        }
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..=34 => {
                self.publish(client);
                self.publish_burst(client);
            }
            35..=49 => self.subscribe(client),
            50..=56 => self.unsubscribe(client),
            57..=58 => {
                self.flush_acks(client);
                // Sometimes an MQTT 5 client asks for its will to be published [MQTT-3.14.4-3].
                let c = &self.clients[client];
                let with_will = c.version.is_v5() && c.armed_will.is_some() && self.rng.gen_bool(0.3);
                let disconnect = Disconnect {
                    reason: if with_will {
                        ReasonCode::DISCONNECT_WITH_WILL
                    } else {
                        ReasonCode::NORMAL_DISCONNECTION
                    },
                    properties: Properties {
                        session_expiry_interval: self.disconnect_expiry(client),
                        ..Default::default()
                    }
                    .into(),
                };
                self.send(client, Packet::Disconnect(disconnect));
                // A client hangs up after DISCONNECT; the broker closes its side.
                self.clients[client].conn = None;
                if let Some(link) = self.links.get_mut(&conn) {
                    link.client_gone = true;
                }
            }
            59..=84 => self.flush_acks(client),
            _ => {
                if self.now.saturating_sub(self.clients[client].last_sent_ms) > 20_000 {
                    self.send(client, Packet::PingReq);
                }
            }
        }
        Ok(())
    }

    pub(super) fn publish(&mut self, client: usize) {
        if self.publish_rate_backs_off(client) {
            return;
        }
        let max_qos = self.opts.publish_qos_max();
        let qos = QoS::from_u8(self.rng.gen_range(0..=max_qos)).unwrap_or_default();
        let c = &self.clients[client];
        if qos != QoS::AtMostOnce && !c.can_publish_qos() {
            return;
        }
        let topic = self.topics[self.rng.gen_range(0..self.topics.len())].clone();
        let retain = self.opts.retained && self.rng.gen_bool(self.opts.retain_share);
        let clear = retain && self.rng.gen_bool(0.1);
        let seq = c.next_seq;
        let payload = if clear {
            Bytes::new()
        } else {
            // Padding makes packets of many sizes, within the broker's Maximum Packet Size (which a client must
            // respect [MQTT-3.2.2-15]; with 3.1.1 the limit is configuration both sides know).
            let pad = if self.rng.gen_bool(0.2) {
                self.rng.gen_range(0..2_000)
            } else {
                0
            };
            Bytes::from(format!("m{client}:{seq} {}", "p".repeat(pad)))
        };
        let mut properties = Properties::default();
        if c.version.is_v5() {
            if self.opts.expiry && self.rng.gen_bool(self.opts.expiry_share) {
                properties.message_expiry_interval = Some(self.rng.gen_range(1..10));
            }
            if self.rng.gen_bool(0.2) {
                properties.user_properties.push(("k".into(), format!("{seq}")));
            }
        }
        let c = &mut self.clients[client];
        c.next_seq += 1;
        let packet_id = if qos == QoS::AtMostOnce {
            0
        } else {
            c.allocate_packet_id()
        };
        let mut publish = Publish {
            dup: false,
            qos,
            retain,
            topic,
            packet_id,
            properties: properties.into(),
            payload,
        };
        // Room for a Topic Alias property (3 bytes) that `send` may add.
        let limit = self.opts.max_packet_size as usize - 3;
        let size = mqtt_core::codec::encoded_len(&Packet::Publish(publish.clone()), c.version);
        if size > limit {
            let keep = publish.payload.len().saturating_sub(size - limit);
            publish.payload.truncate(keep);
        }
        if qos != QoS::AtMostOnce {
            c.outgoing
                .insert(packet_id, Outgoing::AwaitingAck(Box::new(publish.clone())));
        }
        self.counts.published += 1;
        self.send(client, Packet::Publish(publish));
    }

    pub(super) fn subscribe(&mut self, client: usize) {
        let topic = self.topics[self.rng.gen_range(0..self.topics.len())].clone();
        let base = self.opts.filter_for(&topic, &mut self.rng);
        let c = &self.clients[client];
        let v5 = c.version.is_v5();
        let filter = if c.shared_only {
            format!("$share/g{}/{base}", self.rng.gen_range(0..2))
        } else {
            base
        };
        let max_qos = if self.opts.qos2 { 2 } else { 1 };
        let mut options = SubscriptionOptions {
            qos: QoS::from_u8(self.rng.gen_range(0..=max_qos)).unwrap_or_default(),
            ..Default::default()
        };
        if v5 {
            options.no_local = !c.shared_only && self.rng.gen_bool(0.1);
            options.retain_handling = match self.rng.gen_range(0..3) {
                0 => RetainHandling::SendAtSubscribe,
                1 => RetainHandling::SendIfNew,
                _ => RetainHandling::DoNotSend,
            };
        }
        self.send_subscribe(client, filter, options, v5);
    }

    /// Sends a SUBSCRIBE of `filter` with `options`, as the client records it (a subscription identifier
    /// sometimes, for MQTT 5).
    pub(super) fn send_subscribe(&mut self, client: usize, filter: String, options: SubscriptionOptions, v5: bool) {
        let c = &mut self.clients[client];
        c.filters.insert(filter.clone(), options);
        c.filters_ever.insert(filter.clone());
        let packet_id = c.allocate_packet_id();
        c.pending_subscribes
            .insert(packet_id, vec![(filter.clone(), options.qos)]);
        let best = c.granted.entry(filter.clone()).or_insert(options.qos);
        *best = (*best).max(options.qos);
        let mut properties = Properties::default();
        // MQTT 5 clients often name their subscriptions; deliveries must then carry the name [MQTT-3.3.4-3].
        if v5 && self.rng.gen_bool(0.5) {
            let id = c.next_subscription_id;
            c.next_subscription_id += 1;
            c.subscription_ids.insert(id, filter.clone());
            properties.subscription_identifiers.push(id);
        }
        let subscribe = Subscribe {
            packet_id,
            properties: properties.into(),
            filters: vec![(filter, options)],
        };
        self.send(client, Packet::Subscribe(subscribe));
    }

    pub(super) fn unsubscribe(&mut self, client: usize) {
        let c = &mut self.clients[client];
        if c.filters.is_empty() {
            return;
        }
        let index = self.rng.gen_range(0..c.filters.len());
        let Some(filter) = c.filters.keys().nth(index).cloned() else {
            return;
        };
        c.filters.remove(&filter);
        let packet_id = c.allocate_packet_id();
        let unsubscribe = Unsubscribe {
            packet_id,
            properties: Default::default(),
            filters: vec![filter],
        };
        self.send(client, Packet::Unsubscribe(unsubscribe));
    }
}
