//! What connections cost before their CONNACK. Opening a TCP connection is nearly free for a client, so holding
//! one must be nearly free for the broker: a CONNECT may be at most `max_connect_size` bytes (checked on its fixed
//! header, before the body is buffered), and all bytes buffered from connections not yet accepted share one budget,
//! `max_preconnect_bytes`. The connection that takes the total over it is closed (the newest offender), so
//! clients that are already connected never pay for a flood of half-open ones.

use super::{Broker, ConnectionId, Event, Output, Phase, WillPolicy};

impl Broker {
    /// Brings the pre-CONNACK budget up to date with what `conn`'s decoder holds now, and closes `conn` if it took
    /// the total over `max_preconnect_bytes`. Call after feeding and decoding a connection's bytes.
    pub(super) fn account_preconnect_bytes(&mut self, conn: ConnectionId) {
        // Decoding what it sent may have closed it.
        let Some(connection) = self.connections.if_open_mut(conn) else {
            return;
        };
        if connection.phase == Phase::Connected {
            return;
        }
        let held = u32::try_from(connection.decoder.buffered()).unwrap_or(u32::MAX);
        let before = std::mem::replace(&mut connection.preconnect_bytes, held);
        // The total is the sum of every pre-CONNACK connection's `preconnect_bytes`, which includes `before`.
        self.preconnect_bytes = self.preconnect_bytes - before as usize + held as usize;
        let budget = self.config.max_preconnect_bytes;
        if budget > 0 && self.preconnect_bytes > budget {
            self.stats.preconnect_budget_closes += 1;
            let peer = connection.peer;
            self.outputs.push_back(Output::Event(Event::PreconnectBudgetExceeded {
                conn,
                peer,
                buffered_total: self.preconnect_bytes,
            }));
            self.close_connection(
                conn,
                WillPolicy::Discard,
                "bytes buffered from connections not yet accepted exceed max_preconnect_bytes",
            );
        }
    }

    /// `conn` was accepted or ended: its bytes no longer count against the pre-CONNACK budget.
    pub(super) fn release_preconnect_bytes(&mut self, conn: ConnectionId) {
        // `end_connection` calls this for whatever id the driver closes, stale ones included.
        if let Some(connection) = self.connections.if_open_mut(conn) {
            let held = std::mem::take(&mut connection.preconnect_bytes);
            self.preconnect_bytes -= held as usize;
        }
    }

    /// The decoder's limit once the CONNECT is accepted: the full Maximum Packet Size.
    pub(super) fn lift_connect_size_limit(&mut self, conn: ConnectionId) {
        let max_packet_size = self.config.max_packet_size as usize;
        if let Some(connection) = self.connections.expected_mut(conn) {
            connection.decoder.set_max_packet_size(max_packet_size);
        }
    }

    /// Bytes buffered from connections not yet accepted (for tests and metrics).
    pub fn preconnect_bytes(&self) -> usize {
        self.preconnect_bytes
    }
}
