//! Limits and switches of the broker core. The io crate fills this from flags and the TOML file.

/// Every limit the core enforces. Defaults are what an embedded single-machine broker should do out of the box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest packet the broker accepts, in bytes, fixed header included. Advertised to v5 clients as
    /// Maximum Packet Size in CONNACK.
    pub max_packet_size: u32,
    /// How many QoS 1/2 PUBLISHes a client may have unacknowledged towards the broker (Receive Maximum in CONNACK).
    pub receive_maximum: u16,
    /// Upper bound on QoS 1/2 messages in flight towards one client, whatever Receive Maximum it asked for.
    pub max_inflight: u16,
    /// QoS 1/2 messages queued for one session beyond its inflight window. For an online session a full queue holds
    /// publishers back: their PUBLISH is acknowledged only once it fits (see `flow`), so nothing acknowledged is
    /// dropped. An offline session cannot drain, so what does not fit its queue is dropped and counted.
    pub max_queued_messages: usize,
    /// Retained messages sent on subscribe are handed to the session in slices: at most this many queued at once,
    /// the next as the subscriber acknowledges and reads (see `retained_stream`).
    pub retained_slice: usize,
    /// Bytes of encoded output held for one connection that is not reading; past this QoS 0 messages to it are
    /// dropped and QoS 1/2 messages stay queued in its session.
    pub max_outbuf_bytes: usize,
    /// PUBLISH payloads of at least this many bytes are not copied: each subscriber's output holds the encoded header
    /// followed by the message's payload, shared (see `outbuf`), and a received packet this large is decoded from an
    /// allocation of its own, so keeping its payload pins nothing else. Smaller payloads are copied, which is
    /// cheaper for them. `usize::MAX` copies every payload.
    pub shared_payload_min: usize,
    /// Maximum simultaneous connections; more get CONNACK "Server busy" / "Server unavailable".
    pub max_connections: usize,
    /// Cap on Session Expiry Interval in seconds (v5); also the expiry applied to v3.1.1 persistent sessions.
    pub max_session_expiry: u32,
    /// Cap on keep alive in seconds; a client asking for more (or for 0) is told Server Keep Alive (v5).
    /// 0 means no cap.
    pub max_keep_alive: u16,
    /// Largest CONNECT (and AUTH before CONNACK) accepted, in bytes: checked on the fixed header, before the body is
    /// buffered, so an unauthenticated client cannot make the broker hold a Maximum-Packet-Size packet. Fits a will
    /// with a modest payload by default.
    pub max_connect_size: u32,
    /// Budget for all bytes buffered from connections not yet past CONNACK; the connection that exceeds it is
    /// closed. 0: no budget.
    pub max_preconnect_bytes: usize,
    /// Budget for the partial packets held from all connections past CONNACK. The core only reports what each
    /// holds ([`Broker::partial_input`](super::Broker::partial_input)); the driver enforces it by not reading from
    /// the connections that hold the most while the total is above it.
    pub max_partial_input_bytes: usize,
    /// Milliseconds a new connection may take to send CONNECT before it is closed.
    pub connect_timeout_ms: u64,
    /// Whether retained messages are supported (Retain Available).
    pub retain_available: bool,
    /// Topic Alias Maximum the broker accepts from clients (0 disables inbound aliases).
    pub max_topic_alias: u16,
    /// Highest QoS the broker supports (Maximum QoS in CONNACK).
    pub maximum_qos: u8,
    /// Whether wildcard, shared subscriptions and subscription identifiers are available.
    pub wildcard_subscriptions: bool,
    pub shared_subscriptions: bool,
    pub subscription_identifiers: bool,
    /// Interval of `$SYS/broker/...` statistics publishes in seconds; 0 disables them.
    pub sys_interval: u32,
    /// Whether the broker emits persistence records (`Output::Persist`) for retained messages and sessions with a
    /// non-zero expiry. Off means memory only.
    pub persistence: bool,
    /// Also record the will of a connected durable session (as armed, `StoredWill::ARMED`), so that a broker
    /// restored from the records publishes it after its Will Delay Interval unless the client resumes first
    /// [MQTT-3.1.2-8, MQTT-3.1.3-9]: a cluster node's new leader, whose predecessor's connections were lost in the
    /// failover. Off: the will of a connected client is memory only (a single broker's documented rule).
    pub durable_wills: bool,
    /// After a failed authentication, the next failure from the same IP address has its refusing CONNACK held
    /// this many milliseconds, doubling per further failure (0 disables the slow-down).
    pub auth_failure_delay_ms: u64,
    /// Cap on that delay, in milliseconds.
    pub auth_failure_delay_max_ms: u64,
    /// Quotas (see `quota`); 0 means unlimited for each.
    /// Connected clients per source IP address; more get CONNACK 0x97 Quota exceeded (3.1.1: return code 3).
    pub max_connections_per_address: usize,
    /// CONNECTs per second per source IP address (a token bucket holding one second's worth); more get CONNACK
    /// 0x9F Connection rate exceeded (3.1.1: return code 3).
    pub max_connects_per_second_per_address: u32,
    /// PUBLISHes per second per connection; more are dropped (QoS 1/2: PUBACK/PUBREC 0x97), a sustained flood
    /// is disconnected with 0x96.
    pub max_publish_rate: u32,
    /// Payload bytes per second per connection, with the same treatment.
    pub max_publish_bytes_rate: u64,
    /// Subscriptions per session; more get 0x97 Quota exceeded in SUBACK (3.1.1: 0x80).
    pub max_subscriptions_per_client: usize,
    /// Levels of a topic name or filter; deeper ones get 0x90 (PUBLISH) / 0x8F (SUBSCRIBE).
    pub max_topic_levels: usize,
    /// Bytes of a topic name or filter; longer ones get 0x90 (PUBLISH) / 0x8F (SUBSCRIBE).
    pub max_topic_length: usize,
    /// Payload bytes of the QoS 1/2 messages one session holds (queued and inflight); at the bound the session's
    /// queue is full, as at `max_queued_messages`.
    pub max_queued_bytes: u64,
    /// Payload bytes of the QoS 1/2 messages all sessions hold together; at the bound QoS 1/2 PUBLISHes are
    /// refused with 0x97 (MQTT 5) or held (3.1.1).
    pub max_queued_bytes_total: u64,
    /// The timer queue is never compacted below this many entries (stale ones included); above, once it doubled
    /// since the last pass. Not a user setting: tests and the simulator lower it so that compaction, which must keep
    /// every entry that still has work to do, happens often rather than only after bursts of 1024 connections.
    pub timer_compaction_min: usize,
    /// Listeners whose clients are who their transport verified them to be (`Input::Identified`: a TLS client
    /// certificate's Common Name), not who their CONNECT says: the verified name is authenticated as the User Name
    /// and the CONNECT's own User Name and Password are ignored. A CONNECT on such a listener without a verified
    /// name is refused with 0x87 Not authorized (3.1.1: return code 5). Not a limit: the io crate fills it from
    /// the listeners' `use_identity_as_username`.
    pub identity_as_username: Vec<super::ListenerId>,
    /// A known bug to plant, so the vopr can prove it finds it. Only with the `planted-bugs` feature.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<PlantedBug>,
}

/// Bugs the simulator must be able to find (see `vopr`'s self-test). The type exists without the `planted-bugs`
/// feature so that the broker's checks (`Broker::planted`) need no `cfg`; only the feature can plant one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// The name the transport verified is dropped on a listener in `identity_as_username`: the CONNECT's own User
    /// Name and Password are authenticated instead, so a client with a certificate for one user gets in as
    /// whoever its CONNECT claims, and one without a certificate name is not refused [MQTT-3.1.4-2].
    IdentityIgnored,
    /// On a listener in `identity_as_username`, a connection whose transport verified no name falls back to the
    /// CONNECT's own User Name and Password instead of being refused with 0x87 [MQTT-3.1.4-2]: anyone without a
    /// certificate name gets in with a password, or anonymously.
    IdentityMissingFallsBack,
    /// A duplicate QoS 2 PUBLISH (same packet id, before PUBREL) is delivered again.
    Qos2DuplicateDelivered,
    /// Inflight messages are forgotten when a persistent session reconnects.
    InflightDroppedOnReconnect,
    /// `+` matches more than one topic level.
    PlusMatchesAcrossLevels,
    /// The receipt of an incoming QoS 2 message (its packet id awaiting PUBREL) is not recorded for persistence, so
    /// a restart forgets it and a resent PUBLISH is delivered twice.
    Qos2ReceiptNotPersisted,
    /// A QoS 1/2 message joins a persistent session's queue without its `Enqueue` record, so the PUBACK/PUBREC
    /// promises a message that a crash loses (found by `verify`).
    EnqueueNotRecorded,
    /// A session takeover closes the old connection without DISCONNECT 0x8E [MQTT-3.1.4-3] (found by `verify`).
    TakeoverWithoutDisconnect,
    /// A message to a shared subscription goes to every member of the group, not one (section 4.8.2) (found by
    /// `verify`).
    SharedToEveryMember,
    /// A keep-alive check that finds the connection alive re-arms its timer for the deadline that just passed
    /// instead of the new one, so it is due again at once, forever: the driver spins (the broker still works).
    KeepAliveRearmsStaleDeadline,
    /// A Session Expiry Interval sent on DISCONNECT is ignored: the session keeps the one from CONNECT.
    DisconnectExpiryIgnored,
    /// A takeover publishes the old connection's will even when the session resumes within its Will Delay.
    TakeoverPublishesDelayedWill,
    /// A QoS 1/2 message for an offline session is dropped although its queue has room (every third one once the
    /// queue holds something).
    QueuedMessageDroppedWithRoom,
    /// A queued message that has expired is sent anyway (with a Message Expiry Interval of 0).
    ExpiredMessageDelivered,
    /// Retain Handling 1 (send only if new) sends the retained messages on a re-subscribe too.
    RetainHandlingIgnoredOnResubscribe,
    /// A message for a shared subscription goes to a second member of the group too.
    SharedDeliveredTwice,
    /// A will with a Will Delay Interval is published at once when its connection ends.
    WillDelayIgnored,
    /// A will whose Will Delay Interval ran out with its session still away is forgotten, never published.
    DelayedWillLost,
    /// A PUBACK or PUBCOMP refills the inflight window only when the message at the head of the queue carries no
    /// Message Expiry Interval (a lost wakeup): such a message waits for the next unrelated event.
    ExpiringLeftQueued,
    /// While storage takes no writes, a 3.1.1 client's QoS 1/2 PUBLISH is refused as for MQTT 5, which 3.1.1
    /// encodes as a plain PUBACK: acknowledged, and lost, instead of the connection being closed [MQTT-4.8.0-2].
    V311AcknowledgedOnFullDisk,
    /// A QoS 1/2 will published while storage takes no writes is silently dropped ("the disk cannot take it")
    /// instead of being routed like any other message: its subscribers never get what they are owed.
    WillDroppedWhileSuspended,
    /// A SUBSCRIBE is granted the QoS it asks for although that is above the broker's Maximum QoS.
    MaximumQosNotApplied,
    /// The publish-rate buckets refill only for whole seconds elapsed since the last PUBLISH: a client publishing
    /// more often than once a second never gets a token back once its bucket is empty.
    PublishRateRefillWholeSeconds,
    /// A QoS 1/2 PUBLISH with a Message Expiry Interval is routed after the PUBLISH read right behind it in the
    /// same input: its subscribers get it after a later message of the same publisher [MQTT-4.6.0-6], and its
    /// publisher its acknowledgement after the later one's [MQTT-4.6.0-2]. The per-publisher ordering check finds it
    /// only at seed 1934; the acknowledgement-order check at seed 66 of `vopr --planted-bug expiring-overtaken`.
    ExpiringOvertaken,
    /// A restarted broker takes the recorded message expiry deadlines at face value: a clock set back while it was
    /// down stretches each by the whole jump [MQTT-3.3.2-5], [MQTT-3.3.2-6].
    RestartDeadlineUncapped,
    /// The retained lookup on SUBSCRIBE ignores Message Expiry: a retained message whose interval passed is still
    /// offered (with an interval of 0) instead of being treated as deleted [MQTT-3.3.2-5]. QoS 1/2 copies are still
    /// dropped by the queue's own expiry check, so QoS 0 copies are the ones that leave.
    ExpiredRetainedOffered,
    /// A retained message sent on SUBSCRIBE carries the Message Expiry Interval it was published with, as if received
    /// just now, instead of the interval lowered by the time it waited in the store [MQTT-3.3.2-6]. Found by the
    /// retained-copy interval check (`Model::check_retained_expiry`), often in the seeds that retain and expire much
    /// of what they publish (first at seed 2 of `vopr --planted-bug retained-expiry-not-lowered`).
    RetainedExpiryNotLowered,
    /// A re-authentication the authenticator refuses is answered AUTH 0x00 Success: the connection stays up on
    /// credentials that failed [MQTT-4.12.1-2].
    ReauthFailureAccepted,
    /// `$SYS/broker/bytes/received` and `bytes/sent` swapped (a copy-and-paste slip).
    SysBytesSwapped,
    /// A Maximum QoS of 0 taken for "no limit", as 0 means for the quotas: subscriptions are granted the QoS they
    /// ask for [MQTT-3.2.2-10], [MQTT-3.8.4-7].
    MaximumQos0Unlimited,
    /// One connect-rate bucket for the whole broker instead of one per address: clients from one address use up
    /// the CONNECTs of every other.
    ConnectRateShared,
    /// A session's queue counts as full one message early (`max_queued_messages` - 1): an online subscriber's
    /// publishers are held, and an offline one drops, with one slot still free. Only an exact count of the queue
    /// (the inflight window mirrored, not every unread delivery counted as queued) tells it from a full queue.
    QueueFullOneEarly,
    /// Timer compaction drops a session's Session Expiry entry once a later disconnect moved `expires_at` past it
    /// (or while the session is online again), although `expiry_timer_due` still names that entry, so no new one is
    /// armed: the session never expires [MQTT-4.1.0-2], and a CONNECT after its expiry gets Session Present 1
    /// [MQTT-3.2.2-2]. The broker's bug fixed in 9f3436a (seeds 3629, 18032 of the simulator).
    SessionExpiryCompactedAway,
    /// A QoS 2 resend of an id awaiting PUBREL, read while earlier PUBLISHes of its connection are held for room, is
    /// answered PUBREC at once: its PUBREC overtakes theirs [MQTT-4.6.0-3]. The broker's bug fixed in 2cbb263
    /// (seed 2703 of the simulator: PUBREC 92 before the held 80).
    Qos2DuplicateOvertakesHeld,
    /// The total budget's eviction takes the oldest queued messages of every session, online ones too (the filter
    /// on offline sessions forgotten): an online subscriber loses messages its publishers were told were accepted,
    /// with its own queue far from full [MQTT-4.3.2], [MQTT-4.6.0-6].
    BudgetEvictsOnline,
    /// The total budget's eviction takes each offline session's newest queued message instead of its oldest: a
    /// session that comes back misses recent messages while stale ones it could have lost are delivered, which only
    /// the model's mirror of the eviction (a prefix of each queue, no more bytes than the budget needs) tells from an
    /// allowed drop [MQTT-4.3.2], [MQTT-4.6.0-6]. Found by seed 538 since held PUBLISHes no longer excuse drops
    /// (before, only by seed 2428 of 1..3000, recovery's check of what is owed).
    BudgetEvictsNewest,
    /// Recovery straight into the tree (`Broker::retained_recovery`, the binary's start) ignores a clear record:
    /// a retained message deleted by an empty retained PUBLISH [MQTT-3.3.1-10] comes back after a restart.
    RetainedRecoveryClearIgnored,
    /// A restart that caps a message's expiry deadline (its clock was set back) does not record the capped one: the
    /// next restart caps it afresh from the original deadline, giving it a full interval again [MQTT-3.3.2-5].
    CappedDeadlineNotRecorded,
    /// A PUBLISH held for room is routed, once admitted, to the subscriptions it had when it was first held rather
    /// than to those of the moment it is admitted: a client that unsubscribed meanwhile gets it [MQTT-3.10.4-2], and
    /// one that subscribed meanwhile does not. Only a model that pins down when a held PUBLISH is routed can tell.
    HeldRoutedAtArrival,
    /// A PUBLISH held for a subscriber's full queue, once admitted, skips that subscriber (taken as still full, the
    /// check not made again), while the publisher is acknowledged: the one whose queue made the broker hold it
    /// silently loses the message [MQTT-4.3.2-2], [MQTT-4.3.3-2]. Only a model that owes a held PUBLISH to the
    /// subscribers of the moment it is admitted, with no waiver for held PUBLISHes, finds it.
    HeldCopyDropped,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_packet_size: 256 * 1024 * 1024 - 1,
            receive_maximum: 1024,
            max_inflight: 1024,
            max_queued_messages: 100_000,
            retained_slice: 256,
            max_outbuf_bytes: 4 * 1024 * 1024,
            shared_payload_min: 2048,
            max_connections: 100_000,
            max_session_expiry: u32::MAX,
            max_keep_alive: 0,
            max_connect_size: 64 * 1024,
            max_preconnect_bytes: 64 * 1024 * 1024,
            max_partial_input_bytes: 64 * 1024 * 1024,
            connect_timeout_ms: 10_000,
            retain_available: true,
            max_topic_alias: 64,
            maximum_qos: 2,
            wildcard_subscriptions: true,
            shared_subscriptions: true,
            subscription_identifiers: true,
            sys_interval: 10,
            persistence: false,
            durable_wills: false,
            auth_failure_delay_ms: 500,
            auth_failure_delay_max_ms: 10_000,
            max_connections_per_address: 0,
            max_connects_per_second_per_address: 0,
            max_publish_rate: 0,
            max_publish_bytes_rate: 0,
            max_subscriptions_per_client: 0,
            max_topic_levels: 0,
            max_topic_length: 0,
            max_queued_bytes: 0,
            max_queued_bytes_total: 0,
            timer_compaction_min: super::timer::COMPACT_MIN,
            identity_as_username: Vec::new(),
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }
}
