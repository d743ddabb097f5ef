//! The node's side of relaying clients (see `relay` for the messages): a client on a node that does not serve
//! relayed to the leader, the leader's broker connections of clients other nodes hold, sequence gaps, dropped
//! relay messages, and relayed streams ended when a link or the leader changes.

use super::{ClusterEvent, Node, NodeOutput, Role};
use crate::relay::{self, RelayKind, RelayMessage, Relayed, Remote};
use crate::wire::PeerError;
use mqtt_core::broker::{ConnectionId, Input, Output};

impl Node {
    pub(super) fn send_relay(&mut self, to: u64, message: RelayMessage) {
        let bytes = relay::encode(self.config.cluster_id, &message);
        self.outputs.push_back(NodeOutput::Peer { to, message: bytes });
    }

    /// A client connection opened on a node that does not serve: relayed to the leader, if relaying is on and a
    /// leader is known. False if not (the caller closes it).
    pub(super) fn start_relay(&mut self, conn: ConnectionId, input: &Input<'_>) -> bool {
        let Some(leader) = self.leader.filter(|l| *l != self.config.node_id) else {
            return false;
        };
        if self.unreachable.contains(&leader) {
            // Its link broke: the client is better off trying again (here or elsewhere) than waiting on it.
            return false;
        }
        if !self.config.relay_clients || self.role == Role::Leader || self.removed {
            return false;
        }
        self.relayed.insert(
            conn,
            Relayed {
                leader,
                next_out: 0,
                next_in: 0,
                partial: Default::default(),
            },
        );
        self.event(ClusterEvent::ClientRelayed {
            conn,
            global: relay::global_id(self.config.node_id, conn),
            leader,
        });
        self.relay_input(conn, input);
        true
    }

    /// A relayed client's input, on its way to the leader.
    pub(super) fn relay_input(&mut self, conn: ConnectionId, input: &Input<'_>) {
        let Some(kind) = RelayKind::from_input(input) else {
            return;
        };
        let Some(relayed) = self.relayed.get_mut(&conn) else {
            return;
        };
        if let Input::Received { data, .. } = input {
            relayed.partial.feed(data);
            if relayed.partial.packets() == 0 && self.preconnect_over_budget() {
                // The leader's broker would close it too, but only once the bytes crossed the link: closed here
                // instead of relaying them, the follower neither queues nor relays more than the budget of
                // connections not yet accepted.
                self.relay_input(conn, &Input::Closed { conn });
                self.hand_to_driver(Output::Close { conn });
                self.event(ClusterEvent::RelayedPreconnectBudgetExceeded { conn });
                return;
            }
        }
        let Some(relayed) = self.relayed.get_mut(&conn) else {
            return;
        };
        let leader = relayed.leader;
        let seq = relayed.next_out;
        relayed.next_out += 1;
        if kind == RelayKind::Closed {
            self.relayed.remove(&conn);
        }
        let global = relay::global_id(self.config.node_id, conn);
        self.send_relay(
            leader,
            RelayMessage {
                conn: global,
                seq,
                kind,
            },
        );
    }

    /// Whether the bytes relayed of CONNECTs not yet whole exceed the broker's `max_preconnect_bytes` (the budget
    /// of connections not yet accepted, as on the leader). Summed only while a connection sends its CONNECT.
    pub(super) fn preconnect_over_budget(&self) -> bool {
        let budget = self.config.broker.max_preconnect_bytes;
        let held: usize = self
            .relayed
            .values()
            .filter(|r| r.partial.packets() == 0)
            .map(|r| r.partial.held())
            .sum();
        budget > 0 && held > budget
    }

    /// Ends every relayed stream through `peer`: on this side, the client connections relayed to it (closed;
    /// the leader is told, in case it still listens), or the broker connections of clients it holds (closed in
    /// the broker, as if their clients had gone: wills follow the spec; and the holding node told).
    pub(super) fn close_relays_via(&mut self, peer: u64) {
        let local: Vec<ConnectionId> = self
            .relayed
            .iter()
            .filter(|(_, r)| r.leader == peer)
            .map(|(c, _)| *c)
            .collect();
        let remote: Vec<ConnectionId> = self
            .remote
            .iter()
            .filter(|(_, r)| r.origin == peer)
            .map(|(c, _)| *c)
            .collect();
        if local.is_empty() && remote.is_empty() {
            return;
        }
        for conn in &local {
            self.relay_input(*conn, &Input::Closed { conn: *conn });
            self.close_for_failover(*conn);
        }
        for conn in &remote {
            // The holding node is told too (the message waits for the link to come back): it may not see a break
            // of its own (the two directions are separate connections, and one may break alone), and its client
            // would otherwise wait forever on a connection this broker no longer knows.
            if let Some(r) = self.remote.remove(conn) {
                let (seq, kind) = (r.next_out, RelayKind::Failover);
                self.send_relay(peer, RelayMessage { conn: *conn, seq, kind });
            }
            self.feed_broker(Input::Closed { conn: *conn });
        }
        self.event(ClusterEvent::RelaysClosed {
            peer,
            closed: local.len() + remote.len(),
        });
    }

    /// A relay message to `peer` that the driver could not queue: its connection ends here and the other side is
    /// told (with a message that ends the stream, which the driver queues whatever the bound).
    pub(super) fn relay_dropped(&mut self, peer: u64, data: &[u8]) {
        let Ok(message) = relay::decode(data, self.config.cluster_id) else {
            return;
        };
        if message.kind.is_downstream() {
            // On the leader: the broker's connection of a client held by `peer`.
            let conn = message.conn;
            if self.remote.get(&conn).is_none_or(|r| r.origin != peer) {
                return;
            }
            self.remote.remove(&conn);
            // In the dropped message's place, so the holding node takes it in sequence and tells an MQTT 5 client
            // why (DISCONNECT 0x8B) rather than seeing a gap.
            let (seq, kind) = (message.seq, RelayKind::Failover);
            self.send_relay(peer, RelayMessage { conn, seq, kind });
            self.feed_broker(Input::Closed { conn });
            self.relays_dropped += 1;
            self.event(ClusterEvent::RelayDropped { peer, conn });
        } else {
            // On the node holding the client: its connection relayed to `peer`.
            let (origin, conn) = relay::split_id(message.conn);
            let Some(relayed) = self.relayed.get_mut(&conn).filter(|r| r.leader == peer) else {
                return;
            };
            if origin != self.config.node_id {
                return;
            }
            // The close takes the dropped message's place in the sequence (see above).
            relayed.next_out = relayed.next_out.min(message.seq);
            self.relay_input(conn, &Input::Closed { conn });
            self.close_for_failover(conn);
            self.relays_dropped += 1;
            self.event(ClusterEvent::RelayDropped { peer, conn });
        }
    }

    pub(super) fn handle_relay(&mut self, from: u64, data: &[u8]) {
        let message = match relay::decode(data, self.config.cluster_id) {
            Ok(message) => message,
            Err(error) => {
                let error = PeerError::Malformed(format!("relay: {error}"));
                self.event(ClusterEvent::PeerRefused { from, error });
                return;
            }
        };
        if from == self.config.node_id || !self.knows(from) {
            let error = PeerError::UnknownSender {
                claimed: from,
                connection: from,
            };
            self.event(ClusterEvent::PeerRefused { from, error });
            return;
        }
        if message.kind.is_downstream() {
            self.relay_downstream(from, message);
        } else {
            self.relay_upstream(from, message);
        }
    }

    /// On the node holding the client: the leader's output for it.
    pub(super) fn relay_downstream(&mut self, from: u64, message: RelayMessage) {
        let (origin, conn) = relay::split_id(message.conn);
        if origin != self.config.node_id {
            return;
        }
        let Some(relayed) = self.relayed.get_mut(&conn).filter(|r| r.leader == from) else {
            // Closed here already (or relayed to another leader since).
            return;
        };
        if message.seq < relayed.next_in {
            // A copy of one already taken (a link that duplicates): nothing new.
            return;
        }
        if message.seq != relayed.next_in {
            let expected = relayed.next_in;
            self.event(ClusterEvent::RelayGap {
                conn,
                expected,
                got: message.seq,
            });
            self.relay_input(conn, &Input::Closed { conn });
            self.hand_to_driver(Output::Close { conn });
            return;
        }
        relayed.next_in += 1;
        match message.kind {
            RelayKind::Transmit(data) => self.hand_to_driver(Output::Transmit { conn, data }),
            RelayKind::Failover => {
                self.relayed.remove(&conn);
                self.close_for_failover(conn);
            }
            _ => {
                self.relayed.remove(&conn);
                self.hand_to_driver(Output::Close { conn });
            }
        }
    }

    /// On the leader: a relayed client's input, for the broker.
    pub(super) fn relay_upstream(&mut self, from: u64, message: RelayMessage) {
        let conn = message.conn;
        if relay::split_id(conn).0 != from {
            let error = PeerError::UnknownSender {
                claimed: relay::split_id(conn).0,
                connection: from,
            };
            self.event(ClusterEvent::PeerRefused { from, error });
            return;
        }
        if let RelayKind::Opened { .. } = message.kind {
            if self.remote.remove(&conn).is_some() {
                // The id was reused: the node restarted and numbers its connections from the start again.
                self.feed_broker(Input::Closed { conn });
            }
            if self.broker.is_none() || message.seq != 0 {
                self.send_relay(
                    from,
                    RelayMessage {
                        conn,
                        seq: 0,
                        kind: RelayKind::Close,
                    },
                );
                return;
            }
            self.remote.insert(
                conn,
                Remote {
                    origin: from,
                    next_out: 0,
                    next_in: 1,
                },
            );
            if let Some(input) = message.kind.as_input(conn) {
                self.feed_broker(input);
            }
            return;
        }
        let Some(remote) = self.remote.get_mut(&conn) else {
            // Not this broker's connection (it was opened before a leader change, or closed here already): the
            // follower is told, unless it is saying goodbye itself.
            if message.kind != RelayKind::Closed {
                self.send_relay(
                    from,
                    RelayMessage {
                        conn,
                        seq: message.seq.max(1),
                        kind: RelayKind::Close,
                    },
                );
            }
            return;
        };
        if message.seq < remote.next_in {
            return;
        }
        if message.seq != remote.next_in {
            let expected = remote.next_in;
            self.event(ClusterEvent::RelayGap {
                conn,
                expected,
                got: message.seq,
            });
            self.feed_broker(Input::Closed { conn });
            if let Some(remote) = self.remote.remove(&conn) {
                self.send_relay(
                    from,
                    RelayMessage {
                        conn,
                        seq: remote.next_out,
                        kind: RelayKind::Close,
                    },
                );
            }
            return;
        }
        remote.next_in += 1;
        if let Some(input) = message.kind.as_input(conn) {
            self.feed_broker(input);
        }
    }
}
