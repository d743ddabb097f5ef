//! An in-memory bridged pair: a local and a remote broker core (each in a [`Harness`]) and a [`Bridge`] between
//! them, on one virtual clock. For the bridge's unit tests and the simulator.

use super::{Bridge, BridgeConfig, Event, Input, Output, Side};
use crate::broker::{Config, ConnectionId};
use crate::harness::Harness;
use crate::time::Time;
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Duration;

pub struct BridgePair {
    pub local: Harness,
    pub remote: Harness,
    pub bridge: Bridge,
    local_conn: Option<ConnectionId>,
    remote_conn: Option<ConnectionId>,
    /// While false, opening the remote connection fails (the remote host is down or unreachable).
    pub remote_reachable: bool,
    /// The bridge's events, in order.
    pub events: Vec<Event>,
    /// When set, bytes between the bridge and the remote wait on the wire (`to_remote`, `to_bridge`) until
    /// [`BridgePair::deliver`] moves them, and a cut loses what is still on it. Otherwise they arrive at once.
    pub hold_wire: bool,
    pub to_remote: VecDeque<Bytes>,
    pub to_bridge: VecDeque<Bytes>,
}

impl BridgePair {
    /// Both brokers with `broker` as their configuration; the bridge starts at once.
    pub fn new(config: BridgeConfig, broker: Config) -> BridgePair {
        let mut local = Harness::new(broker.clone());
        let mut remote = Harness::new(broker.clone());
        local.transmits = Some(Vec::new());
        remote.transmits = Some(Vec::new());
        let mut bridge = Bridge::new(config, broker.max_packet_size);
        bridge.start(Time::ZERO);
        let mut pair = BridgePair {
            local,
            remote,
            bridge,
            local_conn: None,
            remote_conn: None,
            remote_reachable: true,
            events: Vec::new(),
            hold_wire: false,
            to_remote: VecDeque::new(),
            to_bridge: VecDeque::new(),
        };
        pair.step();
        pair
    }

    pub fn now(&self) -> Time {
        self.local.now
    }

    fn harness(&mut self, side: Side) -> &mut Harness {
        match side {
            Side::Local => &mut self.local,
            Side::Remote => &mut self.remote,
        }
    }

    fn conn(&mut self, side: Side) -> &mut Option<ConnectionId> {
        match side {
            Side::Local => &mut self.local_conn,
            Side::Remote => &mut self.remote_conn,
        }
    }

    /// Carry bytes between the bridge and both brokers until nothing moves.
    pub fn step(&mut self) {
        loop {
            let mut moved = false;
            while let Some(output) = self.bridge.poll_output() {
                moved = true;
                self.apply(output);
            }
            for side in [Side::Local, Side::Remote] {
                let Some(conn) = *self.conn(side) else { continue };
                let data: Vec<bytes::Bytes> = self
                    .harness(side)
                    .transmits
                    .get_or_insert_with(Vec::new)
                    .drain(..)
                    // Test clients read their packets from the harness inboxes; their raw bytes are not needed.
                    .filter(|(c, _)| *c == conn)
                    .map(|(_, data)| data)
                    .collect();
                let now = self.now();
                for chunk in data {
                    if side == Side::Remote && self.hold_wire {
                        self.to_bridge.push_back(chunk);
                        continue;
                    }
                    moved = true;
                    self.bridge.handle_input(now, Input::Received(side, &chunk));
                }
                if self.harness(side).is_closed(conn) {
                    moved = true;
                    *self.conn(side) = None;
                    self.bridge.handle_input(now, Input::Closed(side));
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn apply(&mut self, output: Output) {
        let now = self.now();
        match output {
            Output::Open(side) => {
                if side == Side::Remote && !self.remote_reachable {
                    self.bridge.handle_input(now, Input::Closed(side));
                    return;
                }
                let conn = self.harness(side).open();
                *self.conn(side) = Some(conn);
                self.bridge.handle_input(now, Input::Opened(side));
            }
            Output::Transmit(Side::Remote, data) if self.hold_wire => {
                if self.remote_conn.is_some() {
                    self.to_remote.push_back(data);
                }
            }
            Output::Transmit(side, data) => {
                if let Some(conn) = *self.conn(side) {
                    self.harness(side).send_bytes(conn, &data);
                }
            }
            Output::Close(side) => {
                if let Some(conn) = self.conn(side).take() {
                    self.harness(side).drop_connection(conn);
                }
            }
            Output::Event(event) => self.events.push(event),
        }
    }

    /// Move the clock forward by `by`, firing the timers of the bridge and both brokers on the way, in order.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now() + by;
        loop {
            let next = [
                self.bridge.poll_timeout(),
                self.local.broker.poll_timeout(),
                self.remote.broker.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .filter(|t| *t <= target)
            .min();
            let Some(at) = next else { break };
            let at = at.max(self.now());
            self.tick_all(at);
        }
        self.tick_all(target);
    }

    fn tick_all(&mut self, at: Time) {
        self.local.now = at;
        self.remote.now = at;
        self.local.input(crate::broker::Input::Tick);
        self.remote.input(crate::broker::Input::Tick);
        self.bridge.handle_input(at, Input::Tick);
        self.step();
    }

    /// Moves the oldest chunk on the wire towards the remote (`to_remote`) or towards the bridge; false if there
    /// was none.
    pub fn deliver(&mut self, to_remote: bool) -> bool {
        let now = self.now();
        let chunk = if to_remote {
            self.to_remote.pop_front()
        } else {
            self.to_bridge.pop_front()
        };
        let Some(chunk) = chunk else { return false };
        match (to_remote, self.remote_conn) {
            (true, Some(conn)) => self.remote.send_bytes(conn, &chunk),
            (false, Some(_)) => self.bridge.handle_input(now, Input::Received(Side::Remote, &chunk)),
            (_, None) => {}
        }
        self.step();
        true
    }

    /// Delivers everything on the wire, and what that causes, until it is empty.
    pub fn deliver_all(&mut self) {
        while self.deliver(true) || self.deliver(false) {}
    }

    /// The network between the bridge and the remote fails: both ends see the connection close, and what was on
    /// the wire is lost.
    pub fn cut_remote(&mut self) {
        self.to_remote.clear();
        self.to_bridge.clear();
        if let Some(conn) = self.remote_conn.take() {
            self.remote.drop_connection(conn);
        }
        let now = self.now();
        self.bridge.handle_input(now, Input::Closed(Side::Remote));
        self.step();
    }

    /// The remote broker process dies and restarts from its records.
    pub fn restart_remote(&mut self) {
        self.to_remote.clear();
        self.to_bridge.clear();
        self.remote.crash_and_restart();
        self.remote_conn = None;
        let now = self.now();
        self.bridge.handle_input(now, Input::Closed(Side::Remote));
        self.step();
    }
}
