//! The liveness phase: faults stop, every client comes back, and within a step budget every promise must be kept.
//! Then the retained store is compared with the model.

use super::*;

impl World {
    /// Liveness: faults stop, every client reconnects and answers promptly; within a step budget everything owed
    /// must have arrived.
    pub fn settle(&mut self, budget: u64) -> Result<(), Violation> {
        self.faults = false;
        self.slow_acks = false;
        self.power_cut_in = None;
        self.disk_full_until = None;
        if let Some(disk) = self.disk.as_ref() {
            disk.fs.set_full(false);
            disk.fs.set_quiet(true);
        }
        self.resume_storage_if_due(true)?;
        self.log("--- liveness phase: faults off ---".into());
        self.choose_absent()?;
        let blocked: Vec<ConnectionId> = self.links.iter().filter(|(_, l)| l.blocked).map(|(c, _)| *c).collect();
        for conn in blocked {
            self.schedule(self.now, Event::Writable { conn });
        }
        // Lost verdicts are a fault too: they arrive now (the broker ignores those it timed out already).
        let lost: Vec<ConnectionId> = self
            .links
            .iter_mut()
            .filter_map(|(c, l)| std::mem::take(&mut l.verdict_lost).then_some(*c))
            .collect();
        for conn in lost {
            self.schedule(self.now, Event::AuthVerdict { conn });
        }
        let mut quiet_rounds = 0;
        let mut steps = 0;
        while quiet_rounds < 5 {
            steps += 1;
            if steps > budget {
                return Err(self.stall(&format!("the liveness phase did not settle within {budget} steps")));
            }
            if let Some((_, event)) = self.queue.first_key_value() {
                // Keep-alive traffic is not progress.
                let ping = matches!(event, Event::ToBroker { data, .. } if data[..] == [0xC0, 0x00])
                    || matches!(event, Event::ToClient { data, .. } if data[..] == [0xD0, 0x00]);
                self.next_event()?;
                if !ping {
                    quiet_rounds = 0;
                }
                continue;
            }
            let mut idle = true;
            for client in 0..self.clients.len() {
                if self.rearm(client)? {
                    idle = false;
                    continue;
                }
                if self.stays_away(client) {
                    continue;
                }
                if self.clients[client].conn.is_none() && !self.previous_open(client) {
                    self.connect(client, false)?;
                    idle = false;
                } else if !self.clients[client].pending_acks.is_empty() {
                    self.flush_acks(client);
                    idle = false;
                } else if self.clients[client].connacked
                    && self.now.saturating_sub(self.clients[client].last_sent_ms) > 20_000
                {
                    // Keep alive, as a real client does while idle [MQTT-3.1.2-20].
                    self.send(client, Packet::PingReq);
                }
            }
            if idle {
                self.check_expiring_sent()?;
                self.now += 1_000;
                self.fire_timers()?;
                // A timer that produced work (a will, say) means the system is not quiet yet.
                let pings_only = self
                    .queue
                    .values()
                    .all(|e| matches!(e, Event::ToBroker { data, .. } if data[..] == [0xC0, 0x00]));
                quiet_rounds = if pings_only { quiet_rounds + 1 } else { 0 };
                // Clients away for their delayed wills come back once all else is quiet (see `delayed_wills`).
                if quiet_rounds >= 2 && self.return_absent()? {
                    quiet_rounds = 0;
                }
                if self.someone_away() {
                    quiet_rounds = quiet_rounds.min(2);
                }
            } else {
                quiet_rounds = 0;
            }
        }
        // Every message routed to a session is owed to it, unless the model says the configuration allowed the
        // broker to drop it (bounded queues, see `model::queue`): no waiver for the whole seed.
        self.check_delayed_wills()?;
        self.model.check_backlogs(self.now)?;
        self.model.check_liveness()?;
        self.check_drained()?;
        self.check_retained()?;
        self.check_auth_probes()?;
        self.check_identity_probes()?;
        self.check_misbehaving_closed()?;
        // Last: the power goes out once more, and recovery must restore what the model says was committed.
        if self.disk.is_some() {
            let model = self.model.clone();
            self.restart_broker(vec![model], " at the end of the run")?;
        }
        Ok(())
    }

    /// Once quiet, every connected client's own QoS 1/2 publishes are acknowledged (PUBACK, or PUBREC then PUBCOMP)
    /// [MQTT-4.3.2-4], [MQTT-4.3.3-8], and it holds no message it has not acknowledged.
    fn check_drained(&self) -> Result<(), Violation> {
        for (index, c) in self.clients.iter().enumerate() {
            if c.conn.is_none() || !c.connacked {
                continue;
            }
            if let Some((id, state)) = c.outgoing.iter().next() {
                return Err(Violation(format!(
                    "c{index}: its publish with packet id {id} is still unacknowledged ({state:?}) after the liveness \
                     phase [MQTT-4.3.2-4], [MQTT-4.3.3-8]"
                )));
            }
            if !c.unacked_in.is_empty() || !c.pending_acks.is_empty() {
                return Err(Violation(format!(
                    "c{index}: inbound messages {:?} still unacknowledged after the liveness phase",
                    c.unacked_in
                )));
            }
        }
        Ok(())
    }

    /// Every misbehaving client must have been disconnected [MQTT-4.13.1-1] as soon as its bad packet arrived: each
    /// kind sends a whole packet (or a fixed header) that breaks a rule the broker checks on receipt, so the
    /// keep-alive timeout must not be what closes it. Half-open connections abandoned by their client are closed by
    /// the takeover or at the latest by the keep-alive timeout, 1.5 times 60 s [MQTT-3.1.2-22]. This runs last,
    /// since the clock jump also times out every idle well-behaved client.
    fn check_misbehaving_closed(&mut self) -> Result<(), Violation> {
        if let Some((conn, _)) = self
            .links
            .iter()
            .find(|(_, l)| l.misbehaving && !l.zombie && !l.closed_by_broker)
        {
            return Err(Violation(format!(
                "misbehaving client on {conn:?} was not disconnected when its bad packet arrived [MQTT-4.13.1-1]"
            )));
        }
        if self
            .links
            .values()
            .any(|l| (l.misbehaving || l.zombie) && !l.closed_by_broker)
        {
            self.now += 91_000;
            self.log("clock advanced 91s for keep-alive timeouts of stuck misbehaving clients".into());
            self.fire_timers()?;
        }
        match self
            .links
            .iter()
            .find(|(_, l)| (l.misbehaving || l.zombie) && !l.closed_by_broker)
        {
            Some((conn, l)) if l.zombie => Err(Violation(format!(
                "{conn:?}, abandoned by c{} for a new connection, was never closed [MQTT-3.1.4-3], [MQTT-3.1.2-22]",
                l.client.unwrap_or_default()
            ))),
            Some((conn, _)) => Err(Violation(format!(
                "misbehaving client on {conn:?} was never disconnected [MQTT-4.13.1-1]"
            ))),
            None => Ok(()),
        }
    }

    /// A fresh subscriber to `#` must get exactly the retained messages the model holds [MQTT-3.3.1-5..6].
    pub(super) fn check_retained(&mut self) -> Result<(), Violation> {
        let conn = self.open(None)?;
        let connect = mqtt_core::harness::connect_packet(ProtocolVersion::V5, "retained-probe");
        // Without wildcard support, every topic of the space by name, one SUBSCRIBE each (so that none exceeds the
        // broker's Maximum Packet Size), each followed by its UNSUBSCRIBE (so that the probe stays within
        // `max_subscriptions_per_client`; the retained messages go out on SUBSCRIBE).
        let filters = if self.opts.wildcards {
            vec!["#".to_string()]
        } else {
            self.probe_topics()
        };
        let mut data = encoded(&Packet::Connect(Box::new(connect)), ProtocolVersion::V5);
        for (packet_id, filter) in (1..).zip(filters) {
            let subscribe = Subscribe {
                packet_id,
                properties: Default::default(),
                filters: vec![(filter.clone(), SubscriptionOptions::default())],
            };
            data.extend(encoded(&Packet::Subscribe(subscribe), ProtocolVersion::V5));
            let unsubscribe = mqtt_core::packet::Unsubscribe {
                packet_id,
                properties: Default::default(),
                filters: vec![filter],
            };
            data.extend(encoded(&Packet::Unsubscribe(unsubscribe), ProtocolVersion::V5));
        }
        let now = self.broker_now();
        let mut decoder = Decoder::new(Some(ProtocolVersion::V5), usize::MAX);
        self.broker.handle_input(now, Input::Received { conn, data: &data });
        while let Some(output) = self.broker.poll_output() {
            if let Output::Transmit { conn: c, data } = output {
                if c == conn {
                    decoder.feed(&data);
                }
            }
        }
        let mut got = BTreeMap::new();
        loop {
            let packet = match decoder.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                Err(e) => {
                    return Err(Violation(format!(
                        "the retained probe cannot decode the broker's output: {e}"
                    )))
                }
            };
            self.log(format!("retained probe receives {}", describe(&packet)));
            if let Packet::Publish(p) = packet {
                if p.retain {
                    got.insert(p.topic.clone(), message_id(&p.payload).unwrap_or_default());
                }
            }
        }
        let expiring = |id: &MsgId| self.model.messages.get(id).is_some_and(|m| m.expires);
        for (topic, id) in &self.model.retained {
            if expiring(id) || self.model.retained_unsure.contains(topic) {
                continue;
            }
            if got.get(topic) != Some(id) {
                return Err(Violation(format!(
                    "retained message of '{topic}' should be {id}, broker has {:?} [MQTT-3.3.1-5]",
                    got.get(topic)
                )));
            }
        }
        for (topic, id) in &got {
            let unsure = self.model.retained_unsure.contains(topic);
            if !self.model.retained.contains_key(topic) && !expiring(id) && !unsure {
                return Err(Violation(format!(
                    "broker retains {id} on '{topic}', the model holds nothing there"
                )));
            }
        }
        Ok(())
    }
}
