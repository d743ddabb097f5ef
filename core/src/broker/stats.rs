//! Counters for `$SYS` topics, logs and the simulator's summary.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub connections_opened: u64,
    pub connections_closed: u64,
    pub clients_connected_max: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    /// Messages not delivered because of a full queue, a slow consumer or a client's Maximum Packet Size.
    pub messages_dropped: u64,
    /// QoS 1/2 PUBLISHes whose acknowledgement waited for room in a subscriber's queue.
    pub publishes_held: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub protocol_errors: u64,
    /// Connections closed because bytes buffered before CONNACK exceeded `max_preconnect_bytes`.
    pub preconnect_budget_closes: u64,
    /// Connections closed for sending without reading their replies (see `REPLY_SLACK`).
    pub unread_reply_closes: u64,
    /// CONNECTs, PUBLISHes and SUBSCRIBE filters refused by a quota (see `quota`).
    pub quota_refusals: u64,
    pub wills_published: u64,
    /// Persistence records emitted.
    pub records_written: u64,
}
