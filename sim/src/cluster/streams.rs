//! What relayed clients receive, checked against what the leader's broker sent them. The simulator carries the
//! node-to-node messages, so it reads the leader's relay `Transmit`s for each cluster-wide connection as they leave
//! the leader; a relayed client must receive a prefix of that stream, chunk by chunk, never a stream with a hole
//! (a message lost on the way and a later one passed on), optionally ended by the DISCONNECT 0x8B that the node
//! holding the socket writes itself in a failover, and nothing after that.

use mqtt_cluster::failover::DISCONNECT_SERVER_SHUTTING_DOWN;
use mqtt_core::broker::ConnectionId;
use std::collections::BTreeMap;

#[derive(Default)]
struct Stream {
    /// Everything the leader sent, in relay sequence order.
    sent: Vec<u8>,
    /// How much of it the client received.
    received: usize,
    /// The client got the failover DISCONNECT: the stream is over.
    ended: bool,
}

#[derive(Default)]
pub struct RelayStreams {
    streams: BTreeMap<ConnectionId, Stream>,
    pub chunks_checked: u64,
    pub failover_disconnects: u64,
}

impl RelayStreams {
    /// The leader sends `data` to the client of cluster-wide connection `global`.
    pub fn leader_sent(&mut self, global: ConnectionId, data: &[u8]) {
        self.streams.entry(global).or_default().sent.extend_from_slice(data);
    }

    /// The relayed client of `global` received `data` (one output of the node holding its socket).
    pub fn client_received(&mut self, client: &str, global: ConnectionId, data: &[u8]) -> Result<(), String> {
        self.chunks_checked += 1;
        let stream = self.streams.entry(global).or_default();
        if stream.ended {
            return Err(format!(
                "{client} received {} bytes on relayed connection {global:?} after its failover DISCONNECT",
                data.len()
            ));
        }
        let rest = &stream.sent[stream.received..];
        if rest.starts_with(data) {
            stream.received += data.len();
            return Ok(());
        }
        if data == DISCONNECT_SERVER_SHUTTING_DOWN {
            stream.ended = true;
            self.failover_disconnects += 1;
            return Ok(());
        }
        let skipped = (stream.received..stream.sent.len())
            .find(|from| stream.sent[*from..].starts_with(data))
            .map(|from| from - stream.received);
        Err(format!(
            "relayed connection {global:?} of {client} has a hole: {} bytes at offset {} are not what its leader sent \
             next ({} bytes sent so far{})",
            data.len(),
            stream.received,
            stream.sent.len(),
            match skipped {
                Some(n) => format!("; they follow {n} bytes the client never got"),
                None => String::new(),
            }
        ))
    }

    /// The connection is over; its record goes.
    pub fn forget(&mut self, global: ConnectionId) {
        self.streams.remove(&global);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_passes_a_hole_fails() {
        let conn = ConnectionId(1 << 48 | 5);
        let mut s = RelayStreams::default();
        s.leader_sent(conn, b"ab");
        s.leader_sent(conn, b"cd");
        s.leader_sent(conn, b"ef");
        assert!(s.client_received("c0", conn, b"ab").is_ok());
        let hole = s.client_received("c0", conn, b"ef").unwrap_err();
        assert!(hole.contains("has a hole") && hole.contains("follow 2 bytes"), "{hole}");
    }

    #[test]
    fn the_failover_disconnect_ends_the_stream() {
        let conn = ConnectionId(2 << 48 | 9);
        let mut s = RelayStreams::default();
        s.leader_sent(conn, b"xy");
        s.leader_sent(conn, b"zz");
        assert!(s.client_received("c1", conn, b"xy").is_ok());
        // What the leader sent after "xy" was lost with the stream: the holding node ends it with 0x8B.
        assert!(s.client_received("c1", conn, &DISCONNECT_SERVER_SHUTTING_DOWN).is_ok());
        assert_eq!(s.failover_disconnects, 1);
        assert!(
            s.client_received("c1", conn, b"zz").is_err(),
            "nothing after the DISCONNECT"
        );
    }
}
