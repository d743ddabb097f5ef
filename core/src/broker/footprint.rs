//! How much the broker holds, counted structure by structure: what a long-running leak check compares against its
//! baseline (every count must come back once the clients that caused it are gone).

use super::Broker;

/// Sizes of the broker's collections at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footprint {
    pub connections: usize,
    pub sessions: usize,
    pub client_ids: usize,
    /// Pending timer entries (stale ones included: they are dropped when they fire).
    pub timers: usize,
    pub subscriptions: usize,
    pub subscription_nodes: usize,
    pub retained: usize,
    pub retained_nodes: usize,
    /// Payload bytes of queued and inflight QoS 1/2 messages, as the queue quota counts them.
    pub queued_bytes: u64,
    /// Addresses tracked for the connect rate and for authentication failures.
    pub tracked_addresses: usize,
    /// Outputs not yet taken by the driver.
    pub pending_outputs: usize,
}

impl Broker {
    pub fn footprint(&self) -> Footprint {
        Footprint {
            connections: self.connections.len(),
            sessions: self.sessions.len(),
            client_ids: self.sessions_by_client_id.len(),
            timers: self.timers.len(),
            subscriptions: self.subscriptions.len(),
            subscription_nodes: self.subscriptions.node_count(),
            retained: self.retained.len(),
            retained_nodes: self.retained.node_count(),
            queued_bytes: self.queued_bytes_total(),
            tracked_addresses: self.connect_rate_addresses() + self.auth_throttle.len(),
            pending_outputs: self.outputs.len(),
        }
    }
}
