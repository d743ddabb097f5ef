//! The simulated world: one broker core, simulated clients, a network of per-connection FIFO links with delays
//! (so connections overtake each other but bytes within one never reorder), a virtual clock, and faults.

use crate::client::{Outgoing, SimClient};
use crate::model::{message_id, MessageInfo, Model, Violation, WillState};
use crate::options::{Options, FILTERS, TOPICS};
use crate::trace::Trace;
use bytes::{Bytes, BytesMut};
use mqtt_core::broker::{Broker, Config, ConnectionId, Input, ListenerId, Output};
use mqtt_core::codec::{encode, Decoder};
use mqtt_core::packet::*;
use mqtt_core::time::Time;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};

#[derive(Debug)]
enum Event {
    ToBroker {
        conn: ConnectionId,
        data: Vec<u8>,
    },
    ToClient {
        conn: ConnectionId,
        data: Bytes,
    },
    /// The broker's close reached the client.
    ClientSeesClose {
        conn: ConnectionId,
    },
    Writable {
        conn: ConnectionId,
    },
}

/// One transport connection as the network sees it.
struct Link {
    /// The simulated client behind it; `None` for a misbehaving one.
    client: Option<usize>,
    /// Decodes the client-to-broker stream in step with the broker, so the model sees packets in the broker's order.
    shadow: Decoder,
    last_to_broker: u64,
    last_to_client: u64,
    closed_by_broker: bool,
    /// The client side is gone (cut, crashed, or hung up after DISCONNECT).
    client_gone: bool,
    saw_disconnect: bool,
    blocked: bool,
}

/// Counters for the summary.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub published: u64,
    pub cuts: u64,
    pub crashes: u64,
    pub slow_readers: u64,
    pub time_jumps: u64,
    pub garbage: u64,
    pub connects: u64,
    pub steps: u64,
}

pub struct World {
    pub opts: Options,
    rng: ChaCha8Rng,
    pub now: u64,
    broker: Broker,
    clients: Vec<SimClient>,
    pub model: Model,
    pub trace: Trace,
    queue: BTreeMap<(u64, u64), Event>,
    sequence: u64,
    links: BTreeMap<ConnectionId, Link>,
    next_conn: u64,
    slow_acks: bool,
    faults: bool,
    pub counts: Counts,
}

fn encoded(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    // Packets built by the simulator are valid by construction.
    encode(packet, version, &mut out).expect("simulator packets encode");
    out.to_vec()
}

impl World {
    pub fn new(opts: Options, mut rng: ChaCha8Rng, config: Config, trace: Trace) -> World {
        let broker_seed = rng.gen();
        let clients = (0..opts.clients)
            .map(|i| {
                let version = if rng.gen_bool(opts.v5_share) {
                    ProtocolVersion::V5
                } else {
                    ProtocolVersion::V3_1_1
                };
                let persistent = rng.gen_bool(opts.persistent_share);
                let shared_only = opts.shared && version.is_v5() && rng.gen_bool(0.3);
                let receive_maximum = if version.is_v5() {
                    opts.client_receive_maximum
                } else {
                    u16::MAX
                };
                SimClient::new(i, version, persistent, shared_only, receive_maximum)
            })
            .collect();
        World {
            model: Model::new(opts.clients),
            broker: Broker::new(config, broker_seed),
            slow_acks: opts.slow_ack_rate > 0.0,
            opts,
            rng,
            now: 0,
            clients,
            trace,
            queue: BTreeMap::new(),
            sequence: 0,
            links: BTreeMap::new(),
            next_conn: 1,
            faults: true,
            counts: Counts::default(),
        }
    }

    fn log(&mut self, line: String) {
        let stamped = format!("{:>9}ms {line}", self.now);
        self.trace.record(stamped);
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.sequence += 1;
        self.queue.insert((at, self.sequence), event);
    }

    fn delay(&mut self) -> u64 {
        if self.opts.max_delay_ms == 0 {
            0
        } else {
            self.rng.gen_range(0..=self.opts.max_delay_ms)
        }
    }

    /// Feeds one input to the broker and routes its outputs into the network. A panic is a failure.
    fn broker_input(&mut self, input: Input<'_>) -> Result<(), Violation> {
        let now = Time::from_millis(self.now);
        let broker = &mut self.broker;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            broker.handle_input(now, input);
            let mut outputs = Vec::new();
            while let Some(output) = broker.poll_output() {
                outputs.push(output);
            }
            outputs
        }));
        let outputs = outcome.map_err(|panic| {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Violation(format!("broker panicked: {text}"))
        })?;
        for output in outputs {
            self.route_output(output)?;
        }
        Ok(())
    }

    fn route_output(&mut self, output: Output) -> Result<(), Violation> {
        match output {
            Output::Transmit { conn, data } => {
                let delay = self.delay();
                let link = self
                    .links
                    .get_mut(&conn)
                    .ok_or_else(|| Violation(format!("transmit to unknown {conn:?}")))?;
                if link.closed_by_broker {
                    return Err(Violation(format!("transmit on {conn:?} after the broker closed it")));
                }
                let at = (self.now + delay).max(link.last_to_client);
                link.last_to_client = at;
                self.schedule(at, Event::ToClient { conn, data });
            }
            Output::Close { conn } => {
                let delay = self.delay();
                let Some(link) = self.links.get_mut(&conn) else {
                    return Err(Violation(format!("close of unknown {conn:?}")));
                };
                link.closed_by_broker = true;
                let at = (self.now + delay).max(link.last_to_client);
                let (client, normal) = (link.client, link.saw_disconnect);
                self.schedule(at, Event::ClientSeesClose { conn });
                if let Some(client) = client {
                    self.connection_ended(client, conn, normal);
                }
                self.log(format!("broker closes {conn:?}"));
            }
            Output::Event(event) => self.log(format!("event {event:?}")),
        }
        Ok(())
    }

    /// The broker is done with a client's connection: its will is due unless it disconnected normally, and a
    /// session that ends with the connection is gone.
    fn connection_ended(&mut self, client: usize, conn: ConnectionId, normal: bool) {
        let current = self.clients[client].conn == Some(conn) || self.clients[client].conn.is_none();
        if !current {
            return;
        }
        // A will exists only once the broker processed the CONNECT that carried it.
        let armed = self.clients[client]
            .armed_will
            .take()
            .filter(|id| self.model.wills.get(id) == Some(&WillState::Armed));
        if let Some(id) = armed {
            if normal {
                self.model.wills.insert(id, WillState::Discarded);
            } else {
                self.model.wills.insert(id.clone(), WillState::Due);
                let will = Publish {
                    qos: QoS::AtLeastOnce,
                    topic: format!("will/{client}"),
                    payload: Bytes::from(id.clone()),
                    ..Default::default()
                };
                self.model.on_publish(None, &will, Some(id.clone()));
                self.log(format!("c{client} {conn:?} ended abnormally: will {id} due"));
            }
        }
        if !self.clients[client].persistent {
            self.model.on_session_end(client);
        }
    }

    fn fire_timers(&mut self) -> Result<(), Violation> {
        while self.broker.poll_timeout().is_some_and(|t| t.as_millis() <= self.now) {
            self.broker_input(Input::Tick)?;
        }
        Ok(())
    }

    fn send(&mut self, client: usize, packet: Packet) {
        let Some(conn) = self.clients[client].conn else {
            return;
        };
        let version = self.clients[client].version;
        self.clients[client].last_sent_ms = self.now;
        self.clients[client].on_ack_sent(&packet);
        let data = encoded(&packet, version);
        let delay = self.delay();
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        let at = (self.now + delay).max(link.last_to_broker);
        link.last_to_broker = at;
        self.log(format!("c{client} {conn:?} sends {}", describe(&packet)));
        self.schedule(at, Event::ToBroker { conn, data });
    }

    fn open(&mut self, client: Option<usize>) -> Result<ConnectionId, Violation> {
        let conn = ConnectionId(self.next_conn);
        self.next_conn += 1;
        self.links.insert(
            conn,
            Link {
                client,
                shadow: Decoder::new(None, usize::MAX),
                last_to_broker: self.now,
                last_to_client: self.now,
                closed_by_broker: false,
                client_gone: false,
                saw_disconnect: false,
                blocked: false,
            },
        );
        let peer = SocketAddr::from(([10, 0, 0, 1], (conn.0 % 60_000) as u16 + 1));
        self.broker_input(Input::Opened {
            conn,
            peer,
            listener: ListenerId(0),
        })?;
        Ok(conn)
    }

    fn connect(&mut self, client: usize, with_will: bool) -> Result<(), Violation> {
        let conn = self.open(Some(client))?;
        self.counts.connects += 1;
        self.clients[client].conn = Some(conn);
        let connect = self.clients[client].connect_packet(with_will);
        self.send(client, Packet::Connect(Box::new(connect)));
        Ok(())
    }

    /// Delivers bytes to the broker, in chunks if so chosen, and tells the model about each packet as the broker
    /// processes it.
    fn deliver_to_broker(&mut self, conn: ConnectionId, data: Vec<u8>) -> Result<(), Violation> {
        if self.links.get(&conn).is_none_or(|l| l.closed_by_broker) {
            return Ok(());
        }
        let mut offset = 0;
        while offset < data.len() {
            let size = if self.opts.chunking {
                self.rng.gen_range(1..=data.len() - offset)
            } else {
                data.len()
            };
            let chunk = &data[offset..offset + size];
            offset += size;
            let mut packets = Vec::new();
            if let Some(link) = self.links.get_mut(&conn) {
                link.shadow.feed(chunk);
                while let Ok(Some(packet)) = link.shadow.next_packet() {
                    packets.push(packet);
                }
            }
            // The model first, so that a will published because of this input sees the subscriptions as they are.
            let client = self.links.get(&conn).and_then(|l| l.client);
            if let Some(client) = client {
                for packet in &packets {
                    self.model_processes(client, conn, packet);
                }
            }
            self.broker_input(Input::Received { conn, data: chunk })?;
            if self.links.get(&conn).is_none_or(|l| l.closed_by_broker) {
                return Ok(());
            }
        }
        Ok(())
    }

    fn model_processes(&mut self, client: usize, conn: ConnectionId, packet: &Packet) {
        match packet {
            Packet::Connect(connect) => {
                self.model.on_connect(client, connect.clean_start);
                if let Some(will) = &connect.will {
                    if let Some(id) = message_id(&will.payload) {
                        self.model.wills.insert(id, WillState::Armed);
                    }
                }
            }
            Packet::Subscribe(subscribe) => {
                for (filter, options) in &subscribe.filters {
                    self.model.on_subscribe(client, filter, *options);
                }
            }
            Packet::Unsubscribe(unsubscribe) => {
                for filter in &unsubscribe.filters {
                    self.model.on_unsubscribe(client, filter);
                }
            }
            Packet::Publish(publish) => {
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
                        };
                        self.model.messages.insert(id.clone(), info);
                    }
                }
                self.model.on_publish(Some(client), publish, id);
            }
            Packet::PubRel(rel) => self.model.on_pubrel(client, rel.packet_id),
            Packet::Disconnect(disconnect) => {
                if let Some(link) = self.links.get_mut(&conn) {
                    link.saw_disconnect = disconnect.reason == ReasonCode::NORMAL_DISCONNECTION;
                }
            }
            _ => {}
        }
    }

    fn deliver_to_client(&mut self, conn: ConnectionId, data: Bytes) -> Result<(), Violation> {
        let Some(link) = self.links.get(&conn) else {
            return Ok(());
        };
        let Some(client) = link.client else {
            return Ok(());
        };
        if link.client_gone || self.clients[client].conn != Some(conn) {
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
            self.client_receives(client, packet)?;
        }
        if !self.slow_acks || !self.rng.gen_bool(self.opts.slow_ack_rate) {
            self.flush_acks(client);
        }
        Ok(())
    }

    fn client_receives(&mut self, client: usize, packet: Packet) -> Result<(), Violation> {
        match packet {
            Packet::ConnAck(connack) => {
                if connack.reason.is_error() {
                    return Err(Violation(format!("c{client} refused: {:?}", connack.reason)));
                }
                let expected = self.model.sessions[client].expect_present.take();
                if expected != Some(connack.session_present) {
                    return Err(Violation(format!(
                        "c{client} got Session Present {} but the model expected {expected:?} [MQTT-3.2.2-2], \
                         [MQTT-3.2.2-3]",
                        connack.session_present
                    )));
                }
                let broker_max = connack.properties.receive_maximum.unwrap_or(u16::MAX);
                let c = &mut self.clients[client];
                c.broker_receive_maximum = broker_max.min(self.opts.receive_maximum);
                for resend in c.on_connack(connack.session_present) {
                    self.send(client, resend);
                }
            }
            Packet::Publish(mut publish) => {
                let c = &mut self.clients[client];
                if let Some(alias) = publish.properties.topic_alias {
                    if publish.topic.is_empty() {
                        publish.topic = c
                            .topic_aliases
                            .get(&alias)
                            .cloned()
                            .ok_or_else(|| Violation(format!("c{client}: unknown alias {alias} from broker")))?;
                    } else {
                        c.topic_aliases.insert(alias, publish.topic.clone());
                    }
                }
                if publish.qos != QoS::AtMostOnce && !publish.dup && c.unacked_in.contains(&publish.packet_id) {
                    return Err(Violation(format!(
                        "c{client}: packet id {} reused while still unacknowledged [MQTT-2.2.1-3]",
                        publish.packet_id
                    )));
                }
                let first_time = c.on_publish(&publish);
                if c.unacked_in.len() > usize::from(c.receive_maximum) {
                    return Err(Violation(format!(
                        "c{client}: {} unacknowledged QoS 1/2 messages exceed its Receive Maximum {} [MQTT-3.3.4-9]",
                        c.unacked_in.len(),
                        c.receive_maximum
                    )));
                }
                // The session epoch is the model's: a CONNACK lost in a cut leaves the client unaware of a new session.
                let epoch = self.model.sessions[client].epoch;
                let filters = c.filters_ever.clone();
                if publish.topic.starts_with("will/") {
                    if let Some(id) = message_id(&publish.payload) {
                        self.model.on_will_delivery(&id)?;
                    }
                }
                self.model.on_delivery(client, epoch, &publish, first_time, &filters)?;
            }
            Packet::PubAck(ack) => {
                let c = &mut self.clients[client];
                if matches!(c.outgoing.get(&ack.packet_id), Some(Outgoing::AwaitingAck(p)) if p.qos == QoS::AtLeastOnce)
                {
                    c.outgoing.remove(&ack.packet_id);
                }
            }
            Packet::PubRec(rec) => {
                let c = &mut self.clients[client];
                if matches!(c.outgoing.get(&rec.packet_id), Some(Outgoing::AwaitingAck(p)) if p.qos == QoS::ExactlyOnce)
                {
                    c.outgoing.insert(rec.packet_id, Outgoing::AwaitingComp(rec.packet_id));
                    self.send(
                        client,
                        Packet::PubRel(PubResponse::new(rec.packet_id, ReasonCode::SUCCESS)),
                    );
                }
            }
            Packet::PubComp(comp) => {
                let c = &mut self.clients[client];
                if matches!(c.outgoing.get(&comp.packet_id), Some(Outgoing::AwaitingComp(_))) {
                    c.outgoing.remove(&comp.packet_id);
                }
            }
            Packet::PubRel(rel) => {
                let ack = Packet::PubComp(PubResponse::new(rel.packet_id, ReasonCode::SUCCESS));
                self.clients[client].pending_acks.push_back(ack);
            }
            Packet::SubAck(suback) => {
                if let Some(bad) = suback.reasons.iter().find(|r| r.is_error()) {
                    return Err(Violation(format!("c{client}: SUBACK refused a valid filter: {bad:?}")));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn flush_acks(&mut self, client: usize) {
        while let Some(ack) = self.clients[client].pending_acks.pop_front() {
            self.send(client, ack);
        }
    }

    /// The client's side of the connection vanishes (no DISCONNECT): the broker learns through `Closed`.
    fn drop_client_connection(&mut self, client: usize, partial: bool) -> Result<(), Violation> {
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

    fn inject_faults(&mut self) -> Result<(), Violation> {
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

    /// A misbehaving client: garbage after CONNECT, or an oversized packet. The broker must drop it and carry on.
    fn misbehave(&mut self) -> Result<(), Violation> {
        let conn = self.open(None)?;
        let connect = mqtt_core::harness::connect_packet(ProtocolVersion::V5, &format!("bad-{}", conn.0));
        let mut data = encoded(&Packet::Connect(Box::new(connect)), ProtocolVersion::V5);
        match self.rng.gen_range(0..3) {
            0 => data.extend((0..self.rng.gen_range(1..64)).map(|_| self.rng.gen::<u8>())),
            // A PUBLISH claiming more than the maximum packet size.
            1 => data.extend([0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0, 1, b'x']),
            // A second CONNECT [MQTT-3.1.0-2].
            _ => data.extend(data.clone()),
        }
        self.log(format!("misbehaving client on {conn:?}"));
        self.schedule(self.now, Event::ToBroker { conn, data });
        Ok(())
    }

    fn client_action(&mut self, client: usize) -> Result<(), Violation> {
        let Some(conn) = self.clients[client].conn else {
            // Reconnect only once the broker is done with the previous connection (no takeover in this model).
            let previous_open = self
                .links
                .values()
                .any(|l| l.client == Some(client) && !l.closed_by_broker);
            if !previous_open && (self.faults || self.rng.gen_bool(0.5)) {
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
            0..=34 => self.publish(client),
            35..=49 => self.subscribe(client),
            50..=56 => self.unsubscribe(client),
            57..=58 => {
                self.flush_acks(client);
                self.send(client, Packet::Disconnect(Disconnect::default()));
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

    fn publish(&mut self, client: usize) {
        let max_qos = if self.opts.qos2 { 2 } else { 1 };
        let qos = QoS::from_u8(self.rng.gen_range(0..=max_qos)).unwrap_or_default();
        let c = &self.clients[client];
        if qos != QoS::AtMostOnce && !c.can_publish_qos() {
            return;
        }
        let topic = TOPICS[self.rng.gen_range(0..TOPICS.len())].to_string();
        let retain = self.opts.retained && self.rng.gen_bool(0.15);
        let clear = retain && self.rng.gen_bool(0.1);
        let seq = c.next_seq;
        let payload = if clear {
            Bytes::new()
        } else {
            Bytes::from(format!("m{client}:{seq} payload"))
        };
        let mut properties = Properties::default();
        if c.version.is_v5() {
            if self.opts.expiry && self.rng.gen_bool(0.2) {
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
        let publish = Publish {
            dup: false,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload,
        };
        if qos != QoS::AtMostOnce {
            c.outgoing
                .insert(packet_id, Outgoing::AwaitingAck(Box::new(publish.clone())));
        }
        self.counts.published += 1;
        self.send(client, Packet::Publish(publish));
    }

    fn subscribe(&mut self, client: usize) {
        let base = FILTERS[self.rng.gen_range(0..FILTERS.len())];
        let c = &self.clients[client];
        let v5 = c.version.is_v5();
        let filter = if c.shared_only {
            format!("$share/g{}/{base}", self.rng.gen_range(0..2))
        } else {
            base.into()
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
        let c = &mut self.clients[client];
        c.filters.insert(filter.clone(), options);
        c.filters_ever.insert(filter.clone());
        let packet_id = c.allocate_packet_id();
        let subscribe = Subscribe {
            packet_id,
            properties: Properties::default(),
            filters: vec![(filter, options)],
        };
        self.send(client, Packet::Subscribe(subscribe));
    }

    fn unsubscribe(&mut self, client: usize) {
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
            properties: Properties::default(),
            filters: vec![filter],
        };
        self.send(client, Packet::Unsubscribe(unsubscribe));
    }

    fn handle_event(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::ToBroker { conn, data } => self.deliver_to_broker(conn, data),
            Event::ToClient { conn, data } => self.deliver_to_client(conn, data),
            Event::ClientSeesClose { conn } => {
                let client = self.links.get(&conn).and_then(|l| l.client);
                if let Some(client) = client {
                    if self.clients[client].conn == Some(conn) {
                        self.clients[client].conn = None;
                        self.log(format!("c{client} {conn:?} closed by broker"));
                    }
                }
                Ok(())
            }
            Event::Writable { conn } => {
                let open = self.links.get_mut(&conn).filter(|l| l.blocked && !l.closed_by_broker);
                if let Some(link) = open {
                    link.blocked = false;
                    self.broker_input(Input::Writable { conn })?;
                }
                Ok(())
            }
        }
    }

    /// One step: a fault maybe, then either the next network event or a client action.
    pub fn step(&mut self) -> Result<(), Violation> {
        self.counts.steps += 1;
        if self.faults {
            self.inject_faults()?;
        }
        if !self.queue.is_empty() && self.rng.gen_bool(0.6) {
            return self.next_event();
        }
        self.now += self.rng.gen_range(0..3);
        self.fire_timers()?;
        let client = self.rng.gen_range(0..self.clients.len());
        self.client_action(client)
    }

    fn next_event(&mut self) -> Result<(), Violation> {
        let Some(((at, _), event)) = self.queue.pop_first() else {
            return Ok(());
        };
        self.now = self.now.max(at);
        self.fire_timers()?;
        self.handle_event(event)
    }

    /// Liveness: faults stop, every client reconnects and answers promptly; within a step budget everything owed
    /// must have arrived.
    pub fn settle(&mut self, budget: u64) -> Result<(), Violation> {
        self.faults = false;
        self.slow_acks = false;
        self.log("--- liveness phase: faults off ---".into());
        let blocked: Vec<ConnectionId> = self.links.iter().filter(|(_, l)| l.blocked).map(|(c, _)| *c).collect();
        for conn in blocked {
            self.schedule(self.now, Event::Writable { conn });
        }
        let mut quiet_rounds = 0;
        let mut steps = 0;
        while quiet_rounds < 5 {
            steps += 1;
            if steps > budget {
                return Err(Violation(format!(
                    "liveness: the system did not settle within {budget} steps"
                )));
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
                let previous_open = self
                    .links
                    .values()
                    .any(|l| l.client == Some(client) && !l.closed_by_broker);
                if self.clients[client].conn.is_none() && !previous_open {
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
                self.now += 1_000;
                self.fire_timers()?;
                // A timer that produced work (a will, say) means the system is not quiet yet.
                let pings_only = self
                    .queue
                    .values()
                    .all(|e| matches!(e, Event::ToBroker { data, .. } if data[..] == [0xC0, 0x00]));
                quiet_rounds = if pings_only { quiet_rounds + 1 } else { 0 };
            } else {
                quiet_rounds = 0;
            }
        }
        self.model.check_liveness()?;
        self.check_retained()
    }

    /// A fresh subscriber to `#` must get exactly the retained messages the model holds [MQTT-3.3.1-5..6].
    fn check_retained(&mut self) -> Result<(), Violation> {
        let conn = self.open(None)?;
        let connect = mqtt_core::harness::connect_packet(ProtocolVersion::V5, "retained-probe");
        let subscribe = Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters: vec![("#".into(), SubscriptionOptions::default())],
        };
        let mut data = encoded(&Packet::Connect(Box::new(connect)), ProtocolVersion::V5);
        data.extend(encoded(&Packet::Subscribe(subscribe), ProtocolVersion::V5));
        let now = Time::from_millis(self.now);
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
        while let Ok(Some(packet)) = decoder.next_packet() {
            if let Packet::Publish(p) = packet {
                if p.retain {
                    got.insert(p.topic.clone(), message_id(&p.payload).unwrap_or_default());
                }
            }
        }
        let expiring = |id: &String| self.model.messages.get(id).is_some_and(|m| m.expires);
        for (topic, id) in &self.model.retained {
            if expiring(id) {
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
            if !self.model.retained.contains_key(topic) && !expiring(id) {
                return Err(Violation(format!(
                    "broker retains {id} on '{topic}', the model holds nothing there"
                )));
            }
        }
        Ok(())
    }
}

/// A short description of a packet for the trace.
fn describe(packet: &Packet) -> String {
    match packet {
        Packet::Connect(c) => format!("CONNECT {} clean={}", c.client_id, c.clean_start),
        Packet::ConnAck(c) => format!("CONNACK present={} {:?}", c.session_present, c.reason),
        Packet::Publish(p) => format!(
            "PUBLISH {} q{} id={} dup={} retain={} {}",
            p.topic,
            p.qos as u8,
            p.packet_id,
            p.dup,
            p.retain,
            String::from_utf8_lossy(&p.payload).split(' ').next().unwrap_or("")
        ),
        Packet::PubAck(r) => format!("PUBACK {}", r.packet_id),
        Packet::PubRec(r) => format!("PUBREC {}", r.packet_id),
        Packet::PubRel(r) => format!("PUBREL {}", r.packet_id),
        Packet::PubComp(r) => format!("PUBCOMP {}", r.packet_id),
        Packet::Subscribe(s) => format!("SUBSCRIBE {:?}", s.filters.iter().map(|f| &f.0).collect::<Vec<_>>()),
        Packet::SubAck(s) => format!("SUBACK {:?}", s.reasons),
        Packet::Unsubscribe(u) => format!("UNSUBSCRIBE {:?}", u.filters),
        Packet::UnsubAck(_) => "UNSUBACK".into(),
        Packet::PingReq => "PINGREQ".into(),
        Packet::PingResp => "PINGRESP".into(),
        Packet::Disconnect(d) => format!("DISCONNECT {:?}", d.reason),
        Packet::Auth(_) => "AUTH".into(),
    }
}
