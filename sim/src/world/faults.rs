//! Fault injection: connections cut at a random byte, clients crashing, slow readers, time jumps and misbehaving
//! clients. Each fault is chosen by the seed's fault rates.

use super::*;

impl World {
    /// The client's side of the connection vanishes (no DISCONNECT): the broker learns through `Closed`.
    pub(super) fn drop_client_connection(&mut self, client: usize, partial: bool) -> Result<(), Violation> {
        let Some(conn) = self.clients[client].conn.take() else {
            return Ok(());
        };
        // Bytes in flight are lost; with `partial`, a prefix of the next segment to the broker still arrives,
        // cutting a packet at an arbitrary byte.
        let pending: Vec<(u64, u64)> = self
            .queue
            .iter()
            .filter(
                |(_, e)| matches!(e, Event::ToBroker { conn: c, .. } | Event::ToClient { conn: c, .. } if *c == conn),
            )
            .map(|(k, _)| *k)
            .collect();
        let mut prefix = None;
        for key in pending {
            if let Some(Event::ToBroker { data, .. }) = self.queue.remove(&key) {
                if partial && prefix.is_none() && !data.is_empty() {
                    let cut = self.rng.gen_range(0..data.len());
                    prefix = Some(data[..cut].to_vec());
                }
            }
        }
        if let Some(prefix) = prefix {
            self.deliver_to_broker(conn, prefix)?;
        }
        if let Some(link) = self.links.get_mut(&conn) {
            link.client_gone = true;
        }
        self.log(format!("c{client} {conn:?} connection lost"));
        if self.links.get(&conn).is_some_and(|l| !l.closed_by_broker) {
            self.connection_ended(client, conn, false);
            if let Some(link) = self.links.get_mut(&conn) {
                // The broker forgets the connection on `Closed`; nothing more may come from it.
                link.closed_by_broker = true;
            }
            self.broker_input(Input::Closed { conn })?;
        }
        Ok(())
    }

    pub(super) fn inject_faults(&mut self) -> Result<(), Violation> {
        let n = self.clients.len();
        if self.rng.gen_bool(self.opts.cut_rate) {
            let client = self.rng.gen_range(0..n);
            if self.clients[client].conn.is_some() {
                self.counts.cuts += 1;
                self.drop_client_connection(client, true)?;
            }
        }
        if self.rng.gen_bool(self.opts.crash_rate) {
            let client = self.rng.gen_range(0..n);
            if self.clients[client].conn.is_some() {
                self.counts.crashes += 1;
                self.drop_client_connection(client, false)?;
            }
        }
        if self.rng.gen_bool(self.opts.slow_reader_rate) {
            let client = self.rng.gen_range(0..n);
            if let Some(conn) = self.clients[client].conn {
                if self.links.get(&conn).is_some_and(|l| !l.blocked && !l.closed_by_broker) {
                    self.counts.slow_readers += 1;
                    if let Some(link) = self.links.get_mut(&conn) {
                        link.blocked = true;
                    }
                    self.log(format!("c{client} {conn:?} stops reading"));
                    self.broker_input(Input::WriteBlocked { conn })?;
                    let at = self.now + self.rng.gen_range(10..3_000);
                    self.schedule(at, Event::Writable { conn });
                }
            }
        }
        self.inject_disk_faults()?;
        if self.rng.gen_bool(self.opts.takeover_rate) {
            let client = self.rng.gen_range(0..n);
            self.take_over(client)?;
        }
        if self.rng.gen_bool(self.opts.time_jump_rate) {
            self.counts.time_jumps += 1;
            let jump = self.rng.gen_range(1_000..120_000);
            self.now += jump;
            self.log(format!("time jumps {jump}ms"));
            self.fire_timers()?;
        }
        if self.rng.gen_bool(self.opts.garbage_rate) {
            self.counts.garbage += 1;
            self.misbehave()?;
        }
        Ok(())
    }

    /// A misbehaving client: each kind breaks one rule of the spec. The broker must close it (checked at the end
    /// of the run) and keep serving everyone else (checked by the liveness phase).
    pub(super) fn misbehave(&mut self) -> Result<(), Violation> {
        let conn = self.open(None)?;
        if let Some(link) = self.links.get_mut(&conn) {
            link.misbehaving = true;
        }
        if let Some(done) = self.misbehave_above_maximum_qos(conn) {
            return done;
        }
        let retain_refused = self.opts.retain_unavailable && self.rng.gen_bool(0.3);
        let kind = if retain_refused { 9 } else { self.rng.gen_range(0..9) };
        // Kind 8 needs properties, so MQTT 5.
        let version = if kind == 8 || self.rng.gen_bool(0.5) {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        };
        let connect = mqtt_core::harness::connect_packet(version, &format!("bad-{}", conn.0));
        let connect = encoded(&Packet::Connect(Box::new(connect)), version);
        let publish = |topic: &str, payload: Vec<u8>, properties: Properties| {
            let packet = Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                topic: topic.to_string(),
                packet_id: 1,
                payload: payload.into(),
                properties: properties.into(),
                ..Default::default()
            });
            encoded(&packet, version)
        };
        let (what, data) = match kind {
            // Packet type 0 is reserved [MQTT-2.1.2] (and what follows is noise).
            0 => {
                let mut data = connect;
                data.push(0x00);
                data.extend((0..self.rng.gen_range(1..64)).map(|_| self.rng.gen::<u8>()));
                ("garbage after CONNECT", data)
            }
            // A header claiming more than the Maximum Packet Size [MQTT-3.2.2-15]... from the client's side.
            1 => {
                let mut data = connect;
                data.extend([0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0, 1, b'x']);
                ("oversized length claim", data)
            }
            // A whole packet one byte over the broker's Maximum Packet Size.
            2 => {
                let mut data = connect;
                let size = self.opts.max_packet_size as usize;
                let mut packet = publish("a", Vec::new(), Properties::default());
                let overhead = packet.len();
                packet = publish("a", vec![b'x'; size + 1 - overhead.min(size)], Properties::default());
                data.extend(packet);
                ("packet over the maximum size", data)
            }
            // [MQTT-3.1.0-2]: a second CONNECT.
            3 => {
                let mut data = connect.clone();
                data.extend(connect);
                ("second CONNECT", data)
            }
            // [MQTT-3.1.0-1]: the first packet must be CONNECT.
            4 => (
                "PUBLISH before CONNECT",
                publish("a", b"x".to_vec(), Properties::default()),
            ),
            // [MQTT-3.3.2-2]: no wildcards in a topic name.
            5 => {
                let mut data = connect;
                data.extend(publish("a/+", b"x".to_vec(), Properties::default()));
                ("wildcard in a topic name", data)
            }
            // [MQTT-3.3.1-4]: QoS 3 is malformed.
            6 => {
                let mut data = connect;
                data.extend([0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01]);
                ("PUBLISH with QoS 3", data)
            }
            // [MQTT-3.3.4-6]: a client's PUBLISH must not carry a Subscription Identifier.
            8 => {
                let mut data = connect;
                let properties = Properties {
                    subscription_identifiers: vec![1],
                    ..Default::default()
                };
                data.extend(publish("a", b"x".to_vec(), properties));
                ("PUBLISH with a Subscription Identifier", data)
            }
            // [MQTT-3.3.1-19]: a retained PUBLISH to a broker that said Retain Available 0 (0x9A).
            9 => {
                let mut data = connect;
                let packet = Packet::Publish(Publish {
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    topic: "a".into(),
                    packet_id: 1,
                    payload: b"x".to_vec().into(),
                    ..Default::default()
                });
                data.extend(encoded(&packet, version));
                self.coverage.hit(crate::coverage::Feature::RetainRefused);
                ("retained PUBLISH while retain is unavailable", data)
            }
            // [MQTT-3.8.1-1]: SUBSCRIBE's fixed-header flags must be 0010.
            _ => {
                let mut data = connect;
                data.extend([0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00]);
                ("SUBSCRIBE with bad flags", data)
            }
        };
        let digest = self.trace.absorb(&data);
        self.log(format!("misbehaving client on {conn:?}: {what} {digest}"));
        self.schedule(self.now, Event::ToBroker { conn, data });
        Ok(())
    }

    /// The client believes its connection dead (half-open) and connects again while the broker still holds the old
    /// one, which must then be closed by the takeover [MQTT-3.1.4-3]. Its will goes with the old connection and is
    /// decided when the broker takes it over (see `wills`).
    fn take_over(&mut self, client: usize) -> Result<(), Violation> {
        let c = &self.clients[client];
        let Some(conn) = c.conn else {
            return Ok(());
        };
        // Without a client identifier of its own, a new CONNECT is a new client: it takes nothing over.
        if !c.connacked || c.client_id.is_empty() {
            return Ok(());
        }
        self.abandon(client, conn);
        self.counts.takeovers += 1;
        if let Some(link) = self.links.get_mut(&conn) {
            link.zombie = true;
            link.client_gone = true;
        }
        self.clients[client].conn = None;
        self.log(format!("c{client} abandons {conn:?} (half-open) and connects again"));
        self.connect(client, false)
    }

    /// The disk's faults: it fills up for a while, bits flip in synced data, the power goes out between inputs or
    /// (armed) in the middle of a later input's storage operations. Injected EIO is the disk's own (`simfs`).
    fn inject_disk_faults(&mut self) -> Result<(), Violation> {
        let Some(fs) = self.disk.as_ref().map(|d| d.fs.clone()) else {
            return Ok(());
        };
        if self.disk_full_until.is_some_and(|until| self.now >= until) {
            self.disk_full_until = None;
            fs.set_full(false);
            self.log("the disk has room again".into());
        }
        if self.disk_full_until.is_none() && self.rng.gen_bool(self.opts.disk_full_rate) {
            let until = self.now + self.rng.gen_range(50..5_000);
            fs.set_full(true);
            self.disk_full_until = Some(until);
            self.log(format!("the disk is full until {until}ms"));
        }
        if fs.counts().flips < self.opts.disk.max_flips && self.rng.gen_bool(self.opts.disk.flip_rate) {
            if let Some(flip) = disk::SimDisk::flip_bit(&fs) {
                self.log(format!(
                    "the disk flips a bit in {} at byte {}",
                    flip.path.display(),
                    flip.offset
                ));
                // Damage is only found by a recovery: often let one come before a compaction replaces the file.
                if self.suspension.is_none() && self.rng.gen_bool(0.5) {
                    let model = self.model.clone();
                    self.restart_broker(vec![model], " after the bit flip")?;
                }
            }
        }
        // No crash while storage is suspended: what changed since (without promises) is not durable, and the model
        // cannot tell which of those changes clients have already seen.
        if self.suspension.is_none()
            && self.power_cut_in.is_none()
            && self.rng.gen_bool(self.opts.disk.compaction_cut_rate)
        {
            let cut = disk::PowerCut::InCompaction(self.rng.gen_range(0..8));
            self.power_cut_in = Some(cut);
            self.log(format!("the power will go out: {cut:?}"));
        }
        let crash = self.rng.gen_bool(self.opts.broker_crash_rate);
        if self.suspension.is_none() && self.power_cut_in.is_none() && crash {
            if self.rng.gen_bool(self.opts.disk.mid_write_share) {
                // During the storage operations (commit, snapshot, generation switch) of a chunk read later.
                let cut = if self.rng.gen_bool(0.5) {
                    disk::PowerCut::AfterOps(self.rng.gen_range(0..12))
                } else {
                    disk::PowerCut::InCompaction(self.rng.gen_range(0..8))
                };
                self.power_cut_in = Some(cut);
                self.log(format!("the power will go out: {cut:?}"));
            } else {
                let model = self.model.clone();
                self.restart_broker(vec![model], "")?;
            }
        }
        Ok(())
    }
}
