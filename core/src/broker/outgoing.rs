//! Packets out and connections ended: a packet encoded into a connection's output buffer within the client's
//! Maximum Packet Size, a DISCONNECT to say why, a connection closed and forgotten (its session detached, its will
//! handled), writes resumed, and the shutdown.

use super::connection::Phase;
use super::{Broker, ConnectionId, DropCause, Event, Output, WillPolicy};
use crate::packet::{Disconnect, Packet, ProtocolVersion, ReasonCode};

impl Broker {
    /// Ends a connection because of something the client did: a DISCONNECT with the reason for MQTT 5 clients
    /// [MQTT-4.13.1-1], just a close for older ones; the will is published.
    pub(super) fn protocol_error(&mut self, conn: ConnectionId, reason: ReasonCode, text: &str) {
        self.stats.protocol_errors += 1;
        self.disconnect_with(conn, reason, text);
    }

    /// Sends DISCONNECT with `reason` to an MQTT 5 client, then closes the connection with the will published.
    pub(super) fn disconnect_with(&mut self, conn: ConnectionId, reason: ReasonCode, text: &str) {
        let is_v5_connected = self
            .connections
            .expected(conn)
            .is_some_and(|c| c.is_v5() && matches!(c.phase, Phase::Connected | Phase::Authenticating));
        if is_v5_connected {
            self.send(conn, &Packet::Disconnect(disconnect_packet(reason, text)));
        }
        let text = format!("{text} ({reason})");
        self.close_connection(conn, WillPolicy::Publish, &text);
    }

    /// Whether `packet` fits the connection's Maximum Packet Size as it stands, before any optional property is
    /// stripped (only MQTT 5 clients announce one).
    pub(super) fn fits_client(&self, conn: ConnectionId, packet: &Packet) -> bool {
        self.connections.expected(conn).is_some_and(|connection| {
            let version = connection.protocol.unwrap_or(ProtocolVersion::V3_1_1);
            !version.is_v5() || crate::codec::encoded_len(packet, version) <= connection.client_max_packet_size as usize
        })
    }

    /// Encodes `packet` into the connection's output buffer, honouring the client's Maximum Packet Size
    /// [MQTT-3.1.2-24]: a packet too large loses its Reason String and User Properties first [MQTT-3.1.2-25]...
    /// and is not sent at all if still too large. Returns whether it was sent.
    pub(super) fn send(&mut self, conn: ConnectionId, packet: &Packet) -> bool {
        let Some(connection) = self.connections.expected_mut(conn) else {
            return false;
        };
        if connection.phase == Phase::Closing {
            return false;
        }
        let version = connection.protocol.unwrap_or(ProtocolVersion::V3_1_1);
        // Only MQTT 5 clients announce a Maximum Packet Size.
        let limit = if version.is_v5() {
            connection.client_max_packet_size as usize
        } else {
            usize::MAX
        };
        // [MQTT-3.1.2-29]: without Request Problem Information, no Reason String / User Properties except on
        // PUBLISH, CONNACK and DISCONNECT.
        let problem_info_suppressed = !connection.request_problem_information
            && !matches!(packet, Packet::Publish(_) | Packet::ConnAck(_) | Packet::Disconnect(_));
        // Encoded once, straight into the output buffer; measured afterwards (the hot path pays one encode).
        let shared_payload_min = self.config.shared_payload_min;
        let sent = !problem_info_suppressed && connection.outbuf.encode(packet, version, limit, shared_payload_min);
        if !sent {
            let mut trimmed = packet.clone();
            strip_optional_properties(&mut trimmed);
            if !connection.outbuf.encode(&trimmed, version, limit, shared_payload_min) {
                self.stats.dropped(DropCause::PacketTooLarge, 1);
                return false;
            }
        }
        if !connection.dirty {
            connection.dirty = true;
            self.dirty.push_back(conn);
        }
        true
    }

    /// Flushes what is buffered for the connection, asks the driver to close it, and detaches its session.
    pub(super) fn close_connection(&mut self, conn: ConnectionId, will: WillPolicy, reason: &str) {
        if !self.connections.contains(conn) {
            return;
        }
        self.hand_out(conn);
        self.outputs.push_back(Output::Close { conn });
        self.end_connection(conn, will, reason);
    }

    /// Forgets a connection (the driver already closed it or was told to) and detaches its session: the will is
    /// handled per `will`, and the session ends now or is left to expire [MQTT-3.1.2-23].
    pub(super) fn end_connection(&mut self, conn: ConnectionId, will: WillPolicy, reason: &str) {
        self.release_preconnect_bytes(conn);
        let Some(connection) = self.connections.remove(conn) else {
            return;
        };
        self.stats.connections_closed += 1;
        let was_connected = connection.phase == Phase::Connected;
        if was_connected {
            self.connected_clients = self.connected_clients.saturating_sub(1);
        }
        self.quota_connection_ended(conn, &connection, was_connected);
        if let Some(key) = connection.session {
            self.detach_session(key, conn, will);
        }
        if connection.phase != Phase::AwaitingConnect || connection.client_id.is_some() {
            self.outputs.push_back(Output::Event(Event::ClientDisconnected {
                conn,
                client_id: connection.client_id.map(|id| id.to_string()),
                reason: reason.to_string(),
            }));
        }
    }

    pub(super) fn handle_writable(&mut self, conn: ConnectionId) {
        let Some(connection) = self.connections.if_open_mut(conn) else {
            return;
        };
        connection.write_blocked = false;
        if !connection.outbuf.is_empty() && !connection.dirty {
            connection.dirty = true;
            self.dirty.push_back(conn);
        }
        if let Some(key) = connection.session {
            self.pump(key);
        }
    }

    pub(super) fn shutdown(&mut self) {
        let ids = self.connections.ids();
        for conn in ids {
            // [MQTT-4.13.2-1]-style courtesy: MQTT 5 clients learn why they are being disconnected.
            self.disconnect_with_policy(
                conn,
                ReasonCode::SERVER_SHUTTING_DOWN,
                WillPolicy::Discard,
                "server shutting down",
            );
        }
    }

    pub(super) fn disconnect_with_policy(
        &mut self,
        conn: ConnectionId,
        reason: ReasonCode,
        will: WillPolicy,
        text: &str,
    ) {
        // `shutdown` walks ids taken before it closed any.
        let is_v5_connected = self
            .connections
            .if_open(conn)
            .is_some_and(|c| c.is_v5() && c.phase == Phase::Connected);
        if is_v5_connected {
            self.send(conn, &Packet::Disconnect(disconnect_packet(reason, text)));
        }
        self.close_connection(conn, will, text);
    }
}

/// A server DISCONNECT with a Reason String saying why, for the client's logs (section 3.14.2.2.3).
pub(super) fn disconnect_packet(reason: ReasonCode, text: &str) -> Disconnect {
    Disconnect {
        reason,
        properties: crate::packet::Properties {
            reason_string: Some(text.to_string()),
            ..Default::default()
        }
        .into(),
    }
}

/// Removes the properties a receiver can live without (Reason String, User Properties) [MQTT-3.1.2-25].
pub(super) fn strip_optional_properties(packet: &mut Packet) {
    let properties = match packet {
        Packet::ConnAck(p) => &mut p.properties,
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => &mut p.properties,
        Packet::SubAck(p) => &mut p.properties,
        Packet::UnsubAck(p) => &mut p.properties,
        Packet::Disconnect(p) => &mut p.properties,
        Packet::Auth(p) => &mut p.properties,
        _ => return,
    };
    properties.reason_string = None;
    properties.user_properties.clear();
}
