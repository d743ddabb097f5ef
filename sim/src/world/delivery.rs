//! Bytes crossing the simulated network: into the broker (in chunks, held while an authentication verdict is
//! pending) and out to a client.

use super::*;

impl World {
    /// Delivers bytes to the broker, in chunks if so chosen, and tells the model about each packet as the broker
    /// processes it.
    pub(super) fn deliver_to_broker(&mut self, conn: ConnectionId, data: Vec<u8>) -> Result<(), Violation> {
        if self.links.get(&conn).is_none_or(|l| l.closed_by_broker) {
            return Ok(());
        }
        let mut offset = 0;
        // Sometimes a whole segment trickles in one byte at a time.
        let bytewise = self.opts.chunking && self.rng.gen_bool(0.1);
        while offset < data.len() {
            let size = if bytewise {
                1
            } else if self.opts.chunking {
                self.rng.gen_range(1..=data.len() - offset)
            } else {
                data.len()
            };
            let chunk = &data[offset..offset + size];
            // The bytes are in the hash from their sending (`send`, `misbehave`); how they are cut into inputs is
            // added here, without a line of its own (there would be more of those than of all others).
            self.trace.absorb(&(size as u32).to_le_bytes());
            offset += size;
            let mut packets = Vec::new();
            if let Some(link) = self.links.get_mut(&conn) {
                link.shadow.feed(chunk);
                while let Ok(Some(mut packet)) = link.shadow.next_packet() {
                    // Resolve inbound Topic Aliases as the broker must [MQTT-3.3.2-12].
                    if let Packet::Publish(publish) = &mut packet {
                        if let Some(alias) = publish.properties.topic_alias {
                            if publish.topic.is_empty() {
                                publish.topic = link.aliases.get(&alias).cloned().unwrap_or_default();
                            } else {
                                link.aliases.insert(alias, publish.topic.clone());
                            }
                        }
                    }
                    packets.push(packet);
                }
            }
            // The model first, so that a will published because of this input sees the subscriptions as they are.
            let client = self.links.get(&conn).and_then(|l| l.client);
            // An armed power cut may strike during this chunk's storage operations: keep the model from before.
            let armed = match (self.power_cut_in, self.disk.as_mut()) {
                (Some(cut), Some(disk)) if self.suspension.is_none() => {
                    disk.arm(cut);
                    // A cut in a compaction strikes after the commit: only the state after the input is legal.
                    let before = matches!(cut, disk::PowerCut::AfterOps(_)).then(|| {
                        let mut before = self.model.clone();
                        disk::forget_held(&mut before, &self.awaiting_admission);
                        before
                    });
                    Some(before)
                }
                _ => None,
            };
            self.sys_publishes_read(&packets);
            self.connect_rate_reads(conn, &packets);
            self.input_starts(conn);
            if let Some(client) = client {
                for packet in packets {
                    if self.hold_until_verdict(conn, &packet) {
                        self.log(format!("broker holds c{client} {conn:?}: {}", describe(&packet)));
                        continue;
                    }
                    // When the broker reads a packet matters as much as when it was sent: this is the model's order.
                    self.log(format!("broker reads c{client} {conn:?}: {}", describe(&packet)));
                    self.model_processes(client, conn, &packet);
                }
            }
            self.broker_input(Input::Received { conn, data: chunk })?;
            if let Some(model_before) = armed {
                if let Some(committed) = self.power_cut_struck.take() {
                    self.power_cut_in = None;
                    // Synced, the input's records must survive; else recovery may restore the state before or
                    // after it (its outputs never left).
                    let model_after = self.model.clone();
                    let (candidates, during) = match model_before {
                        Some(model_before) if !committed => (vec![model_before, model_after], " during a commit"),
                        _ => (vec![model_after], " during a compaction"),
                    };
                    self.counts.mid_write_crashes += 1;
                    self.observe_torn_commit();
                    return self.restart_broker(candidates, during);
                }
                self.power_cut_in = match (self.power_cut_in, self.disk.as_mut()) {
                    (Some(cut), Some(disk)) => disk.disarm(cut),
                    _ => None,
                };
            }
            if self.links.get(&conn).is_none_or(|l| l.closed_by_broker) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Whether the broker leaves `packet` unprocessed until a delayed verdict: a CONNECT the authenticator defers
    /// (whose verdict is then scheduled, or as a fault lost) and whatever follows it meanwhile.
    pub(super) fn hold_until_verdict(&mut self, conn: ConnectionId, packet: &Packet) -> bool {
        let defers = matches!(packet, Packet::Connect(c) if sim_acl(&self.opts).defers(conn, &c.client_id));
        let Some(link) = self.links.get_mut(&conn) else {
            return false;
        };
        if let Some(held) = link.held.as_mut() {
            held.push(packet.clone());
            return true;
        }
        if !defers {
            return false;
        }
        link.held = Some(vec![packet.clone()]);
        // Lost while faults are on: the connect timeout must end the connection.
        if self.faults && self.rng.gen_bool(0.05) {
            link.verdict_lost = true;
            self.log(format!("{conn:?}: the verdict on its CONNECT will never come"));
        } else {
            let at = self.now + self.rng.gen_range(1..=300);
            self.log(format!("{conn:?}: the verdict on its CONNECT comes at {at}ms"));
            self.schedule(at, Event::AuthVerdict { conn });
        }
        self.observe_deferred_verdict();
        true
    }

    /// A delayed verdict arrives (always Allow: the simulated clients are entitled). If the broker still waits for
    /// it, it now processes the CONNECT and what followed, and so does the model; otherwise (closed, timed out,
    /// broker restarted) the broker must ignore it.
    pub(super) fn deliver_verdict(&mut self, conn: ConnectionId) -> Result<(), Violation> {
        let held = self
            .links
            .get_mut(&conn)
            .and_then(|link| link.held.take())
            .unwrap_or_default();
        let client = self.links.get(&conn).and_then(|link| link.client);
        self.input_starts(conn);
        if self.broker.awaiting_verdict(conn) {
            if let Some(client) = client {
                for packet in &held {
                    self.log(format!(
                        "broker reads c{client} {conn:?} after the verdict: {}",
                        describe(packet)
                    ));
                    self.model_processes(client, conn, packet);
                }
            }
        } else {
            self.log(format!("{conn:?}: verdict for a connection no longer waiting"));
        }
        self.broker_input(Input::AuthDecided {
            conn,
            decision: mqtt_core::broker::AuthDecision::Allow { data: None },
        })
    }

    pub(super) fn deliver_to_client(&mut self, conn: ConnectionId, data: Bytes) -> Result<(), Violation> {
        let Some(link) = self.links.get_mut(&conn) else {
            return Ok(());
        };
        let Some(client) = link.client else {
            if link.auth.is_some() {
                return self.auth_probe_receives(conn, &data);
            }
            if link.identity.is_some() {
                return self.identity_probe_receives(conn, &data);
            }
            if self.connect_rate.probes.contains_key(&conn) {
                return self.connect_rate_receives(conn, &data);
            }
            return self.misbehaving_receives(conn, &data);
        };
        if link.client_gone || self.clients[client].conn != Some(conn) {
            // A packet whose start the client did read is not decoded here: only whole packets are told.
            let version = self.clients[client].version;
            let decoder = link.lost.get_or_insert_with(|| Decoder::new(Some(version), usize::MAX));
            decoder.feed(&data);
            let mut lost = Vec::new();
            while let Ok(Some(packet)) = decoder.next_packet() {
                lost.push(describe(&packet));
            }
            self.log(format!(
                "c{client} {conn:?}: lost, the client left: {} ({} bytes)",
                lost.join(", "),
                data.len()
            ));
            return Ok(());
        }
        self.clients[client].decoder.feed(&data);
        loop {
            let packet = match self.clients[client].decoder.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                Err(e) => return Err(Violation(format!("c{client} cannot decode what the broker sent: {e}"))),
            };
            self.log(format!("c{client} {conn:?} receives {}", describe(&packet)));
            self.observe_delivery(client, &packet);
            self.check_subscription_ids(client, &packet)?;
            self.check_rate_delivery(client, &packet)?;
            self.check_connack(client, &packet)?;
            self.forgive_republished(client, &packet);
            self.client_receives(client, packet)?;
        }
        if !self.slow_acks || !self.rng.gen_bool(self.opts.slow_ack_rate) {
            self.flush_acks(client);
        }
        Ok(())
    }
}
