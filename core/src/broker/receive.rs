//! Bytes in: a connection opened, the bytes it sends decoded into packets (held back while a CONNECT awaits its
//! verdict), and each packet handed to its handler by the connection's phase.

use super::connection::{Connection, Phase};
use super::{Broker, ConnectionId, ListenerId, WillPolicy, MAX_BUFFERED_WHILE_VERIFYING, REPLY_SLACK};
use crate::packet::{Packet, ReasonCode};
use std::net::SocketAddr;

impl Broker {
    pub(super) fn handle_opened(&mut self, conn: ConnectionId, peer: SocketAddr, listener: ListenerId) {
        // Until its CONNECT is accepted a connection may send at most `max_connect_size` bytes in one packet.
        let connection = Connection::new(
            peer,
            listener,
            self.config.max_connect_size.min(self.config.max_packet_size),
            self.config.shared_payload_min,
            self.now,
        );
        self.connections.insert(conn, connection);
        self.stats.connections_opened += 1;
        let deadline = self.now + std::time::Duration::from_millis(self.config.connect_timeout_ms);
        self.arm_connection_timer(conn, deadline);
    }

    pub(super) fn handle_received(&mut self, conn: ConnectionId, data: &[u8]) {
        let Some(connection) = self.connections.if_open_mut(conn) else {
            return;
        };
        if matches!(connection.phase, Phase::Closing | Phase::Refusing) {
            return;
        }
        self.stats.bytes_received += data.len() as u64;
        connection.decoder.feed(data);
        self.decode_received(conn);
        self.account_preconnect_bytes(conn);
    }

    /// Decodes and handles what the connection's decoder holds, packet by packet. While the CONNECT waits for its
    /// verdict, the bytes after it stay undecoded: the server must not process anything the client sent after
    /// CONNECT before it has accepted it (section 3.1.4, [MQTT-3.1.4-6]; 3.1.1: [MQTT-3.1.4-5]). They are decoded
    /// once the verdict lets the client in; a client that sends more than `MAX_BUFFERED_WHILE_VERIFYING` meanwhile
    /// is disconnected.
    pub(super) fn decode_received(&mut self, conn: ConnectionId) {
        // Only the planted `ExpiringOvertaken` puts a packet aside here.
        let mut deferred: Option<Packet> = None;
        loop {
            // The packet handled last time round may have closed the connection.
            let Some(connection) = self.connections.if_open_mut(conn) else {
                return;
            };
            if connection.phase == Phase::Verifying {
                if connection.decoder.buffered() > MAX_BUFFERED_WHILE_VERIFYING {
                    self.close_connection(conn, WillPolicy::Discard, "too much data sent before CONNACK");
                }
                return;
            }
            match connection.decoder.next_packet() {
                Ok(Some(packet)) => {
                    connection.last_activity = self.now;
                    if deferred.is_none() && self.defers_expiring(&packet) {
                        deferred = Some(packet);
                        continue;
                    }
                    let behind = matches!(packet, Packet::Publish(_));
                    if !behind {
                        if let Some(expiring) = deferred.take() {
                            self.handle_packet(conn, expiring);
                        }
                    }
                    self.handle_packet(conn, packet);
                    if let Some(expiring) = deferred.take() {
                        self.handle_packet(conn, expiring);
                    }
                    self.close_if_replies_unread(conn);
                }
                Ok(None) => {
                    if let Some(expiring) = deferred.take() {
                        self.handle_packet(conn, expiring);
                        self.close_if_replies_unread(conn);
                    }
                    return;
                }
                Err(error) => {
                    if let Some(expiring) = deferred.take() {
                        self.handle_packet(conn, expiring);
                    }
                    let reason = error.reason_code();
                    self.handle_decode_error(conn, &error, reason);
                    return;
                }
            }
        }
    }

    /// Deliveries to a connection stop at `max_outbuf_bytes` (see `publish`), but the replies to its own packets
    /// (PINGRESP, PUBACK, SUBACK, ...) are owed whatever it holds. A client that keeps sending without reading them
    /// would grow its buffer without bound, so past the limit plus `REPLY_SLACK` it is disconnected.
    pub(super) fn close_if_replies_unread(&mut self, conn: ConnectionId) {
        let limit = self.config.max_outbuf_bytes.saturating_add(REPLY_SLACK);
        // The packet just handled may have closed the connection.
        if self.connections.if_open(conn).is_some_and(|c| c.outbuf.len() > limit) {
            self.stats.unread_reply_closes += 1;
            self.close_connection(
                conn,
                WillPolicy::Publish,
                "replies beyond max_outbuf_bytes unread: the client sends without reading",
            );
        }
    }

    pub(super) fn handle_packet(&mut self, conn: ConnectionId, packet: Packet) {
        // A packet handled just before (the planted `ExpiringOvertaken` handles two in a row) may have closed it.
        let Some(phase) = self.connections.if_open(conn).map(|c| c.phase) else {
            return;
        };
        match (phase, packet) {
            // A verifying connection decodes nothing (see `decode_received`).
            (Phase::Closing | Phase::Refusing | Phase::Verifying, _) => {}
            (Phase::AwaitingConnect, Packet::Connect(connect)) => self.handle_connect(conn, connect),
            // [MQTT-3.1.0-1]: the first packet must be CONNECT; anything else closes the connection.
            (Phase::AwaitingConnect, _) => {
                self.close_connection(conn, WillPolicy::Discard, "first packet was not CONNECT")
            }
            (Phase::Authenticating, Packet::Auth(auth)) => self.handle_auth_during_connect(conn, auth),
            (Phase::Authenticating, _) => {
                self.protocol_error(conn, ReasonCode::PROTOCOL_ERROR, "expected AUTH during authentication")
            }
            // [MQTT-3.1.0-2]: a second CONNECT is a Protocol Error.
            (Phase::Connected, Packet::Connect(_)) => {
                self.protocol_error(conn, ReasonCode::PROTOCOL_ERROR, "second CONNECT")
            }
            (Phase::Connected, Packet::Publish(publish)) => self.handle_publish(conn, publish),
            (Phase::Connected, Packet::PubAck(ack)) => self.handle_puback(conn, ack),
            (Phase::Connected, Packet::PubRec(rec)) => self.handle_pubrec(conn, rec),
            (Phase::Connected, Packet::PubRel(rel)) => self.handle_pubrel(conn, rel),
            (Phase::Connected, Packet::PubComp(comp)) => self.handle_pubcomp(conn, comp),
            (Phase::Connected, Packet::Subscribe(subscribe)) => self.handle_subscribe(conn, subscribe),
            (Phase::Connected, Packet::Unsubscribe(unsubscribe)) => self.handle_unsubscribe(conn, unsubscribe),
            // [MQTT-3.12.4-1]
            (Phase::Connected, Packet::PingReq) => {
                self.send(conn, &Packet::PingResp);
            }
            (Phase::Connected, Packet::Disconnect(disconnect)) => self.handle_disconnect(conn, disconnect),
            (Phase::Connected, Packet::Auth(auth)) => self.handle_reauth(conn, auth),
            // Server-to-client packets sent by a client.
            (Phase::Connected, _) => {
                self.protocol_error(conn, ReasonCode::PROTOCOL_ERROR, "packet not valid from a client")
            }
        }
    }

    pub(super) fn handle_decode_error(
        &mut self,
        conn: ConnectionId,
        error: &crate::codec::DecodeError,
        reason: ReasonCode,
    ) {
        // As in `handle_packet`: a deferred packet handled just before may have closed it.
        let Some(connection) = self.connections.if_open(conn) else {
            return;
        };
        let text = format!("decode error: {error:?}");
        match connection.phase {
            Phase::AwaitingConnect => self.reject_connect_on_decode_error(conn, error, &text),
            _ => self.protocol_error(conn, reason, &text),
        }
    }
}
