//! The real broker core with its environment: the scripted clients, the packets in flight between them, the
//! records written to "disk", and a virtual clock. Everything here is deterministic, so a list of [`Action`]s
//! rebuilds the same world every time: that is how the checker's states (which cannot hold a `Broker`, since it is
//! neither `Clone` nor `Hash`) are turned back into a broker to take the next step from.

use crate::client::{ClientView, Link, OldLink, Pkt, Violation};
use crate::scenario::{Scenario, TOPIC};
use bytes::{Bytes, BytesMut};
use mqtt_core::broker::{Broker, Config, ConnectionId, Input, ListenerId, Output};
use mqtt_core::codec::{self, Decoder};
use mqtt_core::packet::{
    Connect, Packet, Properties, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions,
};
use mqtt_core::persist::{Image, Record};
use mqtt_core::time::Time;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

/// Which of a client's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Current,
    /// The connection a takeover replaced.
    Old,
}

/// One step of the environment or of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// The broker receives the next packet a client sent on that connection.
    ToBroker(usize, Side),
    /// The client receives the next packet the broker sent on that connection.
    ToClient(usize, Side),
    /// The publisher sends its next message.
    Publish(usize),
    /// The network cuts the client's current connection (both ends notice; what was in flight is lost).
    Cut(usize),
    /// An offline client connects again, resuming its session (Clean Start 0).
    Reconnect(usize),
    /// An online client opens a second connection with its client id (Clean Start 0); the first stays open.
    Takeover(usize),
    /// The broker process dies and is restored from the records written so far; every connection is lost.
    Crash,
    /// The clock jumps to the broker's next deadline and the timer fires.
    Tick,
}

/// What the checker hashes and the properties read: the clients and the fault budgets, plus a digest of the
/// broker's state (see [`World::digest`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct View {
    pub clients: Vec<ClientView>,
    pub cuts_left: u8,
    pub crashes_left: u8,
    pub ticks_left: u8,
    pub takeovers_left: u8,
    /// The broker has a deadline (a `Tick` would do something).
    pub timer_armed: bool,
    pub violations: BTreeSet<Violation>,
}

/// The broker configuration every scenario runs: persistence on (acknowledged means recorded), no `$SYS`.
pub fn config() -> Config {
    Config {
        persistence: true,
        sys_interval: 0,
        ..Config::default()
    }
}

pub struct World<'s> {
    scenario: &'s Scenario,
    config: &'s Config,
    broker: Broker,
    now: Time,
    /// The records written so far, applied: the state a crash restores.
    durable: Image,
    /// The broker's connection for each client's current and old link.
    current: Vec<Option<ConnectionId>>,
    old: Vec<Option<ConnectionId>>,
    /// The broker has accepted the client's current connection (sent its CONNACK), so its session is online.
    attached: Vec<bool>,
    decoders: BTreeMap<ConnectionId, Decoder>,
    next_conn: u64,
    restarts: u64,
    pub view: View,
    /// When set, one line per event: the story a counterexample is told as.
    pub story: Option<Vec<String>>,
}

impl<'s> World<'s> {
    /// Every client connected (Clean Start 1, a session that never expires) and every subscriber subscribed.
    pub fn new(scenario: &'s Scenario, config: &'s Config, story: bool) -> World<'s> {
        let mut world = World {
            scenario,
            config,
            broker: Broker::new(config.clone(), 0),
            now: Time::ZERO,
            durable: Image::default(),
            current: vec![None; scenario.clients.len()],
            old: vec![None; scenario.clients.len()],
            attached: vec![true; scenario.clients.len()],
            decoders: BTreeMap::new(),
            next_conn: 1,
            restarts: 0,
            view: View {
                clients: vec![ClientView::online(); scenario.clients.len()],
                cuts_left: scenario.cuts,
                crashes_left: scenario.crashes,
                ticks_left: scenario.ticks,
                takeovers_left: scenario.takeovers,
                timer_armed: false,
                violations: BTreeSet::new(),
            },
            story: None,
        };
        for client in 0..scenario.clients.len() {
            let conn = world.open();
            world.current[client] = Some(conn);
            world.send(conn, &connect_packet(scenario.clients[client].client_id, true));
            if let Some((filter, qos)) = scenario.subscription(client) {
                world.send(conn, &subscribe_packet(filter, qos));
            }
        }
        // The setup's answers (CONNACK, SUBACK) are not part of the explored behaviour.
        for client in &mut world.view.clients {
            client.to_client.clear();
        }
        world.story = story.then(Vec::new);
        world.tell("setup done: every client connected (Clean Start 1, a session that never expires), every subscriber subscribed");
        world.finish_step();
        world
    }

    /// Rebuilds the world a path of actions leads to.
    pub fn replay(scenario: &'s Scenario, config: &'s Config, path: &[Action], story: bool) -> World<'s> {
        let mut world = World::new(scenario, config, story);
        for action in path {
            world.apply(*action);
        }
        world
    }

    pub fn apply(&mut self, action: Action) {
        match action {
            Action::ToBroker(client, side) => self.deliver_to_broker(client, side),
            Action::ToClient(client, side) => self.deliver_to_client(client, side),
            Action::Publish(client) => {
                let messages = self.scenario.messages();
                let view = &mut self.view.clients[client];
                let qos = messages[view.next_msg as usize];
                let msg = view.publish_next(qos);
                self.tell(&format!(
                    "{} publishes message {msg} (QoS {})",
                    self.name(client),
                    qos as u8
                ));
            }
            Action::Cut(client) => {
                self.tell(&format!("✂ network cuts {}'s connection", self.name(client)));
                if let Some(conn) = self.current[client].take() {
                    self.input(Input::Closed { conn });
                    self.decoders.remove(&conn);
                }
                self.view.clients[client].go_offline();
                self.attached[client] = false;
                self.view.cuts_left -= 1;
            }
            Action::Reconnect(client) => {
                self.tell(&format!("{} reconnects (Clean Start 0)", self.name(client)));
                let conn = self.open();
                self.current[client] = Some(conn);
                let view = &mut self.view.clients[client];
                view.link = Link::Connecting;
                view.to_broker.push_back(Pkt::Connect { clean_start: false });
            }
            Action::Takeover(client) => {
                self.tell(&format!(
                    "{} opens a second connection with the same client id (Clean Start 0)",
                    self.name(client)
                ));
                self.old[client] = self.current[client].take();
                let conn = self.open();
                self.current[client] = Some(conn);
                let view = &mut self.view.clients[client];
                view.old = Some(OldLink {
                    to_broker: std::mem::take(&mut view.to_broker),
                    to_client: std::mem::take(&mut view.to_client),
                    closed: false,
                    disconnect: None,
                    after_disconnect: false,
                });
                view.link = Link::Connecting;
                view.to_broker.push_back(Pkt::Connect { clean_start: false });
                self.view.takeovers_left -= 1;
            }
            Action::Crash => self.crash(),
            Action::Tick => {
                if let Some(deadline) = self.broker.poll_timeout() {
                    self.now = self.now.max(deadline);
                }
                self.tell(&format!(
                    "⏰ the clock jumps to {} ms; timers fire",
                    self.now.as_millis()
                ));
                self.input(Input::Tick);
                self.view.ticks_left -= 1;
            }
        }
        self.finish_step();
    }

    fn deliver_to_broker(&mut self, client: usize, side: Side) {
        let view = &mut self.view.clients[client];
        let (packet, conn) = match side {
            Side::Current => (view.to_broker.pop_front(), self.current[client]),
            Side::Old => (
                view.old.as_mut().and_then(|o| o.to_broker.pop_front()),
                self.old[client],
            ),
        };
        let (Some(packet), Some(conn)) = (packet, conn) else {
            return;
        };
        self.tell(&format!(
            "{}{} → broker: {packet:?}",
            self.name(client),
            side_label(side)
        ));
        let real = self.real_packet(client, &packet);
        let shared = match packet {
            Pkt::Publish { msg, .. } if !self.scenario.shared_members().is_empty() => {
                let online: Vec<usize> = self
                    .scenario
                    .shared_members()
                    .into_iter()
                    .filter(|&m| self.attached[m])
                    .collect();
                Some((msg, self.shared_holders(msg), online))
            }
            _ => None,
        };
        self.send(conn, &real);
        if let Some((msg, before, online)) = shared {
            self.check_shared_routing(msg, &before, &online);
        }
    }

    fn deliver_to_client(&mut self, client: usize, side: Side) {
        let view = &mut self.view.clients[client];
        let packet = match side {
            Side::Current => view.to_client.pop_front(),
            Side::Old => view.old.as_mut().and_then(|o| o.to_client.pop_front()),
        };
        let Some(packet) = packet else {
            return;
        };
        self.tell(&format!(
            "broker → {}{}: {packet:?}",
            self.name(client),
            side_label(side)
        ));
        match side {
            Side::Current => {
                if let Some(violation) = self.view.clients[client].receive(client, packet) {
                    self.violate(violation);
                }
            }
            Side::Old => self.view.clients[client].receive_on_old(&packet),
        }
    }

    fn crash(&mut self) {
        self.tell("💥 the broker crashes; it restarts from the records on disk");
        self.durable.collect_garbage();
        self.restarts += 1;
        let mut broker = Broker::new(self.config.clone(), self.restarts);
        broker.restore(self.now, self.durable.clone());
        self.broker = broker;
        self.decoders.clear();
        for client in 0..self.scenario.clients.len() {
            self.current[client] = None;
            self.old[client] = None;
            self.attached[client] = false;
            let view = &mut self.view.clients[client];
            view.go_offline();
            // An old link the broker had not closed yet dies without a DISCONNECT: takeover never happened.
            if view.old.as_ref().is_some_and(|o| !o.closed) {
                view.old = None;
            }
        }
        self.view.crashes_left -= 1;
        self.drain();
    }

    /// After every step: links the broker closed become offline once their last packet has arrived.
    fn finish_step(&mut self) {
        for client in 0..self.scenario.clients.len() {
            let view = &mut self.view.clients[client];
            if view.closing && view.to_client.is_empty() {
                view.go_offline();
                if let Some(conn) = self.current[client].take() {
                    self.decoders.remove(&conn);
                }
            }
            if view.old.as_ref().is_some_and(|o| o.closed && o.to_client.is_empty()) {
                if let Some(conn) = self.old[client].take() {
                    self.decoders.remove(&conn);
                }
            }
        }
        self.view.timer_armed = self.broker.poll_timeout().is_some();
    }

    fn open(&mut self) -> ConnectionId {
        let conn = ConnectionId(self.next_conn);
        self.next_conn += 1;
        self.decoders
            .insert(conn, Decoder::new(Some(ProtocolVersion::V5), usize::MAX));
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000 + conn.0 as u16));
        self.input(Input::Opened {
            conn,
            peer,
            listener: ListenerId(0),
        });
        conn
    }

    fn send(&mut self, conn: ConnectionId, packet: &Packet) {
        let mut bytes = BytesMut::new();
        codec::encode(packet, ProtocolVersion::V5, &mut bytes).expect("scripted packets are encodable");
        self.input(Input::Received { conn, data: &bytes });
    }

    fn input(&mut self, input: Input<'_>) {
        self.broker.handle_input(self.now, input);
        self.drain();
    }

    /// Takes every output in order: bytes become packets in flight to their client, records go to disk.
    fn drain(&mut self) {
        while let Some(output) = self.broker.poll_output() {
            match output {
                Output::Transmit { conn, data } => self.transmitted(conn, &data),
                Output::Close { conn } => self.closed_by_broker(conn),
                Output::Persist(record) => {
                    if let Some(story) = &mut self.story {
                        story.push(format!("        disk: {}", record_summary(&record)));
                    }
                    self.durable.apply(record);
                }
                Output::Event(_) => {}
            }
        }
    }

    fn owner(&self, conn: ConnectionId) -> Option<(usize, Side)> {
        (0..self.scenario.clients.len()).find_map(|c| {
            if self.current[c] == Some(conn) {
                Some((c, Side::Current))
            } else if self.old[c] == Some(conn) {
                Some((c, Side::Old))
            } else {
                None
            }
        })
    }

    fn transmitted(&mut self, conn: ConnectionId, data: &Bytes) {
        let Some((client, side)) = self.owner(conn) else {
            return;
        };
        let decoder = self.decoders.get_mut(&conn).expect("every open link has a decoder");
        decoder.feed(data);
        let mut packets = Vec::new();
        loop {
            match decoder.next_packet() {
                Ok(Some(packet)) => packets.push(packet),
                Ok(None) => break,
                Err(_) => {
                    self.violate(Violation::Undecodable { client });
                    break;
                }
            }
        }
        for packet in packets {
            let pkt = abstract_packet(&packet);
            if side == Side::Current && matches!(pkt, Pkt::ConnAck { reason: 0, .. }) {
                self.attached[client] = true;
            }
            self.check_ack_durable(client, &pkt);
            let view = &mut self.view.clients[client];
            match side {
                Side::Current => view.to_client.push_back(pkt),
                Side::Old => view
                    .old
                    .as_mut()
                    .expect("an old conn has an old link")
                    .to_client
                    .push_back(pkt),
            }
        }
    }

    fn closed_by_broker(&mut self, conn: ConnectionId) {
        let Some((client, side)) = self.owner(conn) else {
            return;
        };
        self.tell(&format!(
            "        broker closes {}{}",
            self.name(client),
            side_label(side)
        ));
        let view = &mut self.view.clients[client];
        match side {
            Side::Current => {
                view.closing = true;
                view.to_broker.clear();
                self.attached[client] = false;
            }
            Side::Old => {
                let old = view.old.as_mut().expect("an old conn has an old link");
                old.closed = true;
                old.to_broker.clear();
            }
        }
    }

    /// A PUBACK or PUBREC is a promise that the message is stored: by the time the broker hands it out, the
    /// records before it must hold the message for every matching subscriber (or that subscriber already has it).
    fn check_ack_durable(&mut self, client: usize, pkt: &Pkt) {
        let (Pkt::PubAck { pid, reason } | Pkt::PubRec { pid, reason }) = *pkt else {
            return;
        };
        if reason >= 0x80 {
            return;
        }
        let Some(msg) = self.view.clients[client]
            .unacked
            .iter()
            .find(|u| u.pid == pid)
            .map(|u| u.msg)
        else {
            return;
        };
        let durable_for = |world: &World, subscriber: usize| {
            world.view.clients[subscriber].received.contains(&msg)
                || image_holds(&world.durable, world.scenario.clients[subscriber].client_id, msg)
        };
        let plain_ok = self
            .scenario
            .plain_subscribers()
            .into_iter()
            .all(|s| durable_for(self, s));
        let members = self.scenario.shared_members();
        let shared_ok = members.is_empty() || members.iter().any(|&m| durable_for(self, m));
        if !(plain_ok && shared_ok) {
            self.violate(Violation::AckedNotDurable { msg });
        }
    }

    /// The members of the shared group that hold message `msg` (queued, inflight or received).
    fn shared_holders(&self, msg: u8) -> BTreeSet<usize> {
        let live = self.broker.image();
        self.scenario
            .shared_members()
            .into_iter()
            .filter(|&m| {
                image_holds(&live, self.scenario.clients[m].client_id, msg)
                    || self.view.clients[m].received.contains(&msg)
            })
            .collect()
    }

    /// Routing a shared-subscription message gives it to one member, an online one if any member is online
    /// (section 4.8.2); `before` is who held it before the PUBLISH arrived, `online` who was online then.
    fn check_shared_routing(&mut self, msg: u8, before: &BTreeSet<usize>, online: &[usize]) {
        let after = self.shared_holders(msg);
        let new: Vec<usize> = after.difference(before).copied().collect();
        let misrouted = after.len() > 1 || new.first().is_some_and(|m| !online.contains(m) && !online.is_empty());
        if misrouted {
            self.violate(Violation::SharedMisrouted { msg });
        }
    }

    fn violate(&mut self, violation: Violation) {
        self.tell(&format!("        ⚠ {violation:?}"));
        self.view.violations.insert(violation);
    }

    /// The broker's state as a number, for the checker to tell states apart: its durable image (sessions, queues,
    /// inflight windows with packet ids and flow states, QoS 2 receipts, retained messages), the records on disk,
    /// its connection and session counts, its next deadline and the clock. What it leaves out is per-connection
    /// bookkeeping that the client views already determine (phase, packet-id counter).
    pub fn digest(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        format!("{:?}", self.broker.image()).hash(&mut hasher);
        format!("{:?}", self.durable).hash(&mut hasher);
        self.broker.connection_count().hash(&mut hasher);
        self.broker.session_count().hash(&mut hasher);
        self.broker.poll_timeout().hash(&mut hasher);
        self.now.hash(&mut hasher);
        hasher.finish()
    }

    fn real_packet(&self, client: usize, pkt: &Pkt) -> Packet {
        let response = |pid: u16| PubResponse {
            packet_id: pid,
            reason: ReasonCode::SUCCESS,
            properties: Properties::default(),
        };
        match *pkt {
            Pkt::Connect { clean_start } => connect_packet(self.scenario.clients[client].client_id, clean_start),
            Pkt::Publish { pid, qos, dup, msg } => Packet::Publish(Publish {
                dup,
                qos: QoS::from_u8(qos).expect("scripted QoS"),
                retain: false,
                topic: TOPIC.to_string(),
                packet_id: pid,
                properties: Default::default(),
                payload: Bytes::from(vec![msg]),
            }),
            Pkt::PubAck { pid, .. } => Packet::PubAck(response(pid)),
            Pkt::PubRec { pid, .. } => Packet::PubRec(response(pid)),
            Pkt::PubRel { pid } => Packet::PubRel(response(pid)),
            Pkt::PubComp { pid } => Packet::PubComp(response(pid)),
            ref other => unreachable!("scripted clients never send {other:?}"),
        }
    }

    fn name(&self, client: usize) -> &'static str {
        self.scenario.clients[client].client_id
    }

    fn tell(&mut self, line: &str) {
        if let Some(story) = &mut self.story {
            story.push(format!("t={:>6}ms  {line}", self.now.as_millis()));
        }
    }

    pub fn scenario(&self) -> &Scenario {
        self.scenario
    }
}

fn side_label(side: Side) -> &'static str {
    match side {
        Side::Current => "",
        Side::Old => " (old connection)",
    }
}

/// Whether `image` has message `msg` queued or inflight in the session of `client_id`.
fn image_holds(image: &Image, client_id: &str, msg: u8) -> bool {
    image
        .sessions
        .values()
        .filter(|s| s.client_id == client_id)
        .flat_map(|s| s.entries.values())
        .any(|e| {
            image
                .messages
                .get(&e.message_id)
                .is_some_and(|m| m.payload.as_ref() == [msg])
        })
}

fn connect_packet(client_id: &str, clean_start: bool) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start,
        keep_alive: 0,
        properties: Properties {
            // A session that never expires [MQTT-3.1.2-23]: nothing owed to it may be dropped.
            session_expiry_interval: Some(u32::MAX),
            ..Properties::default()
        },
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
    }))
}

fn subscribe_packet(filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![(
            filter.to_string(),
            SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
        )],
    })
}

fn abstract_packet(packet: &Packet) -> Pkt {
    match packet {
        Packet::ConnAck(c) => Pkt::ConnAck {
            session_present: c.session_present,
            reason: c.reason.0,
        },
        Packet::Publish(p) => Pkt::Publish {
            pid: p.packet_id,
            qos: p.qos as u8,
            dup: p.dup,
            msg: p.payload.first().copied().unwrap_or(u8::MAX),
        },
        Packet::PubAck(r) => Pkt::PubAck {
            pid: r.packet_id,
            reason: r.reason.0,
        },
        Packet::PubRec(r) => Pkt::PubRec {
            pid: r.packet_id,
            reason: r.reason.0,
        },
        Packet::PubRel(r) => Pkt::PubRel { pid: r.packet_id },
        Packet::PubComp(r) => Pkt::PubComp { pid: r.packet_id },
        Packet::SubAck(_) => Pkt::SubAck,
        Packet::Disconnect(d) => Pkt::Disconnect { reason: d.reason.0 },
        Packet::Connect(_) => Pkt::Other("CONNECT"),
        Packet::Subscribe(_) => Pkt::Subscribe,
        Packet::Unsubscribe(_) => Pkt::Other("UNSUBSCRIBE"),
        Packet::UnsubAck(_) => Pkt::Other("UNSUBACK"),
        Packet::PingReq => Pkt::Other("PINGREQ"),
        Packet::PingResp => Pkt::Other("PINGRESP"),
        Packet::Auth(_) => Pkt::Other("AUTH"),
    }
}

/// One line per record, without payloads.
fn record_summary(record: &Record) -> String {
    match record {
        Record::Store { id, message } => format!("Store message #{id} (payload {:?})", message.payload.as_ref()),
        Record::Retain { message } => format!("Retain {}", message.topic),
        Record::WillPending { key, .. } => format!("WillPending session {key}"),
        other => format!("{other:?}"),
    }
}
