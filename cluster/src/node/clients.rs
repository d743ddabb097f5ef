//! Client connections through the broker: their inputs fed to the leader's broker (or relayed), the broker's
//! records proposed as Raft entries, and its outputs held until their entry commits (the commit rule, see
//! `release`), then handed to the driver or to the node that holds the client.

use super::{ClusterEvent, Node, NodeOutput};
use crate::failover::Watch;
use crate::relay::{RelayKind, RelayMessage};
use crate::wire;
use mqtt_core::broker::{ConnectionId, Input, Output};
use mqtt_core::persist::Record;

impl Node {
    pub(super) fn handle_client(&mut self, input: Input<'_>) {
        match &input {
            Input::Opened { conn, .. } => {
                self.watch.insert(*conn, Watch::default());
            }
            Input::Received { conn, data } => {
                if let Some(watch) = self.watch.get_mut(conn) {
                    watch.upstream(data);
                }
            }
            Input::Closed { conn } => {
                self.watch.remove(conn);
            }
            _ => {}
        }
        if let Some(conn) = input_conn(&input) {
            if self.relayed.contains_key(&conn) {
                self.relay_input(conn, &input);
                return;
            }
        }
        if let Input::Opened { conn, .. } = input {
            if self.broker.is_none() && self.start_relay(conn, &input) {
                return;
            }
            if self.broker.is_none() {
                self.hand_to_driver(Output::Close { conn });
                self.event(ClusterEvent::ClientRefused {
                    conn,
                    leader: self.leader,
                });
                return;
            }
        }
        self.feed_broker(input);
    }

    /// A client input for the broker (the leader's own client's, or a relayed one's).
    pub(super) fn feed_broker(&mut self, input: Input<'_>) {
        if let Input::Opened { conn, .. } = input {
            if self.broker.is_none() {
                return;
            }
            self.clients.insert(conn);
        }
        let conn = input_conn(&input);
        // A connection this broker does not know was opened before a leader change and is closed already.
        if conn.is_some_and(|c| !self.clients.contains(&c)) {
            return;
        }
        if let Input::Closed { conn } = input {
            self.clients.remove(&conn);
            self.remote.remove(&conn);
        }
        let Some(broker) = self.broker.as_mut() else {
            return;
        };
        broker.handle_input(self.now, input);
        self.drain_broker();
    }

    /// Moves the broker's outputs on: records into one proposed entry, the outputs after the first record held
    /// until it commits, the ones before it out at once (behind anything already held).
    pub(super) fn drain_broker(&mut self) {
        let Some(broker) = self.broker.as_mut() else {
            return;
        };
        let mut records: Vec<Record> = Vec::new();
        let mut before = Vec::new();
        let mut after = Vec::new();
        while let Some(output) = broker.poll_output() {
            if let Output::Close { conn } = output {
                self.clients.remove(&conn);
            }
            match output {
                Output::Persist(record) => records.push(record),
                other if records.is_empty() => before.push(other),
                other => after.push(other),
            }
        }
        let free = self.held.pass_or_queue(before);
        self.emit_clients(free);
        if crate::planted::relay_before_commit(&self.config) {
            // Planted: relayed connections' outputs skip the commit rule.
            let remote = &self.remote;
            let (early, rest): (Vec<Output>, Vec<Output>) = after.into_iter().partition(|o| match o {
                Output::Transmit { conn, .. } | Output::Close { conn } => remote.contains_key(conn),
                _ => false,
            });
            after = rest;
            self.emit_clients(early);
        }
        if records.is_empty() {
            let free = self.held.pass_or_queue(after);
            self.emit_clients(free);
            return;
        }
        self.held.hold(&records, after);
        self.unproposed.extend(records);
        if !self.config.propose_per_turn {
            self.propose();
        }
    }

    /// Whether records wait for `NodeInput::Flush` to be proposed (with `NodeConfig::propose_per_turn`).
    pub fn has_unproposed(&self) -> bool {
        !self.unproposed.is_empty()
    }

    /// Proposes the records gathered since the last proposal as one entry; the outputs held for them wait for it.
    pub(super) fn propose(&mut self) {
        if self.unproposed.is_empty() {
            return;
        }
        let data = wire::encode_records(&self.unproposed);
        // Kept for the next turn's records (the vector's capacity with it): the entry's bytes are all that is kept
        // of them, the image is rebuilt from the log (see `image`).
        self.unproposed.clear();
        if let Err(e) = self.raft.propose(Vec::new(), data) {
            // Only a node that is no longer leader drops a proposal: the broker's state is ahead of the log now.
            self.depose(&format!("proposal dropped: {e}"));
            return;
        }
        let index = self.raft.raft.raft_log.last_index();
        let term = self.raft.raft.term;
        if crate::planted::release_before_commit(&self.config) {
            let outputs = self.held.take_open();
            self.emit_clients(outputs);
            self.event(ClusterEvent::Released {
                index,
                term,
                outputs: 0,
            });
            return;
        }
        self.held.seal(index, term);
    }

    /// Releases the outputs that waited for entries up to `index`. An entry of another term at an index this
    /// leader proposed means its proposal was overwritten: it was deposed, and nothing it held may go out.
    pub(super) fn release(&mut self, index: u64, term: u64) {
        if self.held.term_of(index).is_some_and(|t| t != term) {
            self.depose("a held entry was overwritten by another leader's");
            return;
        }
        for (index, term, outputs) in self.held.release_through(index) {
            self.event(ClusterEvent::Released {
                index,
                term,
                outputs: outputs.len(),
            });
            self.emit_clients(outputs);
        }
    }

    pub(super) fn emit_clients(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            self.emit_client(output);
        }
    }

    /// A broker output on its way out: to the driver, or, for a relayed connection, to the node holding it.
    pub(super) fn emit_client(&mut self, output: Output) {
        let conn = match &output {
            Output::Transmit { conn, .. } | Output::Close { conn } => Some(*conn),
            Output::Persist(_) | Output::Event(_) => None,
        };
        let Some(remote) = conn.and_then(|c| self.remote.get_mut(&c)) else {
            self.hand_to_driver(output);
            return;
        };
        let origin = remote.origin;
        let seq = remote.next_out;
        remote.next_out += 1;
        let Some((conn, kind)) = RelayKind::from_output(output) else {
            return;
        };
        if kind == RelayKind::Close {
            self.remote.remove(&conn);
        }
        self.send_relay(origin, RelayMessage { conn, seq, kind });
    }

    /// A client output for the driver (a connection whose socket this node holds).
    pub(super) fn hand_to_driver(&mut self, output: Output) {
        match &output {
            Output::Transmit { conn, data } => {
                if let Some(watch) = self.watch.get_mut(conn) {
                    watch.downstream(data);
                }
            }
            Output::Close { conn } => {
                self.watch.remove(conn);
            }
            Output::Persist(_) | Output::Event(_) => {}
        }
        self.outputs.push_back(NodeOutput::Client(output));
    }

    /// Closes a client connection whose session state lived on a broker that stopped serving: an MQTT 5 client
    /// past its CONNACK is told first (DISCONNECT 0x8B, see `failover`), so it reconnects at once.
    pub(super) fn close_for_failover(&mut self, conn: ConnectionId) {
        if let Some(data) = self.watch.get(&conn).and_then(Watch::disconnect) {
            self.hand_to_driver(Output::Transmit { conn, data });
        }
        self.hand_to_driver(Output::Close { conn });
    }
}

/// The connection a client input is about.
pub(super) fn input_conn(input: &Input<'_>) -> Option<ConnectionId> {
    match input {
        Input::Opened { conn, .. }
        | Input::Identified { conn, .. }
        | Input::Received { conn, .. }
        | Input::Closed { conn }
        | Input::WriteBlocked { conn }
        | Input::Writable { conn }
        | Input::AuthDecided { conn, .. } => Some(*conn),
        Input::Tick | Input::Shutdown | Input::StorageWritable(_) => None,
    }
}
