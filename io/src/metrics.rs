//! The broker's Prometheus metrics: one registry, encoded by `prometheus-client` when `/metrics` is scraped.
//!
//! Three sources feed it, all on the event loop:
//! - the core's `Stats` (counters) and `Gauges` (sizes), copied in when a scrape asks (`refresh`), so the core
//!   pays nothing per message for metrics it already counts;
//! - the core's `Event`s (`on_event`): connections per listener and protocol, authentication failures;
//! - the driver's storage calls: commit latency, fsyncs, snapshot durations.
//!
//! The metric types are atomics shared with the HTTP thread through the registry, so encoding needs no lock on
//! the loop's data.

use mqtt_core::broker::{ConnectionId, DropCause, Event, Gauges, Stats};
use mqtt_core::packet::{ProtocolVersion, ReasonCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

type Labels = Vec<(&'static str, String)>;

/// A listener as it appears in labels: its bound address and its transport (`mqtt`, `mqtts`, `ws`, `wss`).
#[derive(Debug, Clone)]
pub struct ListenerLabel {
    pub address: String,
    pub transport: &'static str,
}

const QOS: [&str; 3] = ["0", "1", "2"];

/// Every metric, and the bookkeeping that turns events into gauges.
pub struct Metrics {
    registry: Arc<Registry>,
    listeners: Vec<ListenerLabel>,
    /// The listener of each open connection, and once CONNECTed, the labels its `connections` gauge counts.
    conn_listener: HashMap<ConnectionId, usize>,
    connected: HashMap<ConnectionId, Labels>,

    connections: Family<Labels, Gauge>,
    connects: Family<Labels, Counter>,
    connects_refused: Family<Labels, Counter>,
    auth_failures: Family<Labels, Counter>,
    messages_received: Family<Labels, Counter>,
    messages_sent: Family<Labels, Counter>,
    payload_bytes_received: Family<Labels, Counter>,
    payload_bytes_sent: Family<Labels, Counter>,
    messages_dropped: Family<Labels, Counter>,
    bytes_received: Counter,
    bytes_sent: Counter,
    publishes_held: Counter,
    quota_refusals: Counter,
    protocol_errors: Counter,
    wills_published: Counter,
    records: Counter,

    clients_connected: Gauge,
    sessions: Gauge,
    subscriptions: Gauge,
    retained_messages: Gauge,
    retained_bytes: Gauge,
    queued_messages: Gauge,
    queued_bytes: Gauge,
    inflight_messages: Gauge,

    commit_seconds: Histogram,
    fsyncs: Counter,
    snapshot_seconds: Histogram,
    storage_writable: Gauge,
    /// A cluster node's own metrics (`with_cluster`).
    cluster: Option<ClusterMetrics>,
}

/// What a cluster node adds: where it stands in the Raft group, and what its commit rule cost.
struct ClusterMetrics {
    held_qos0_dropped: Counter,
    applied_index: Gauge,
    term: Gauge,
    leader: Gauge,
    is_leader: Gauge,
}

impl Metrics {
    pub fn new(listeners: Vec<ListenerLabel>) -> Metrics {
        let mut r = Registry::with_prefix("mqtt");
        let family = Family::<Labels, Counter>::default;
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            listeners,
            conn_listener: HashMap::new(),
            connected: HashMap::new(),
            connections: Family::default(),
            connects: family(),
            connects_refused: family(),
            auth_failures: family(),
            messages_received: family(),
            messages_sent: family(),
            payload_bytes_received: family(),
            payload_bytes_sent: family(),
            messages_dropped: family(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            publishes_held: Counter::default(),
            quota_refusals: Counter::default(),
            protocol_errors: Counter::default(),
            wills_published: Counter::default(),
            records: Counter::default(),
            clients_connected: Gauge::default(),
            sessions: Gauge::default(),
            subscriptions: Gauge::default(),
            retained_messages: Gauge::default(),
            retained_bytes: Gauge::default(),
            queued_messages: Gauge::default(),
            queued_bytes: Gauge::default(),
            inflight_messages: Gauge::default(),
            // 50 µs to ~3.3 s: an fdatasync on a fast SSD up to a disk in trouble.
            commit_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 17)),
            fsyncs: Counter::default(),
            // 1 ms to ~65 s.
            snapshot_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            storage_writable: Gauge::default(),
            cluster: None,
        };
        r.register(
            "connections",
            "Clients connected now, per listener, transport and MQTT protocol version",
            m.connections.clone(),
        );
        r.register(
            "connects",
            "CONNECTs accepted (CONNACK 0x00), per listener and protocol",
            m.connects.clone(),
        );
        r.register(
            "connects_refused",
            "CONNECTs refused with a CONNACK, by reason code",
            m.connects_refused.clone(),
        );
        r.register(
            "auth_failures",
            "CONNECTs refused by the authenticator, by reason code",
            m.auth_failures.clone(),
        );
        r.register(
            "messages_received",
            "Application messages received from publishers, by QoS",
            m.messages_received.clone(),
        );
        r.register(
            "messages_sent",
            "Application messages sent to subscribers, by QoS",
            m.messages_sent.clone(),
        );
        r.register(
            "payload_bytes_received",
            "Payload bytes of the messages received, by QoS",
            m.payload_bytes_received.clone(),
        );
        r.register(
            "payload_bytes_sent",
            "Payload bytes of the messages sent, by QoS",
            m.payload_bytes_sent.clone(),
        );
        r.register(
            "messages_dropped",
            "Messages not delivered, by cause",
            m.messages_dropped.clone(),
        );
        r.register(
            "bytes_received",
            "Bytes of MQTT packets received",
            m.bytes_received.clone(),
        );
        r.register("bytes_sent", "Bytes of MQTT packets sent", m.bytes_sent.clone());
        r.register(
            "publishes_held",
            "QoS 1/2 PUBLISHes whose acknowledgement waited for room in a subscriber's queue",
            m.publishes_held.clone(),
        );
        r.register(
            "quota_refusals",
            "CONNECTs, PUBLISHes and SUBSCRIBE filters refused by a quota",
            m.quota_refusals.clone(),
        );
        r.register(
            "protocol_errors",
            "Connections closed for a protocol violation",
            m.protocol_errors.clone(),
        );
        r.register("wills_published", "Will messages published", m.wills_published.clone());
        r.register(
            "storage_records",
            "Records the core emitted for durable storage",
            m.records.clone(),
        );
        r.register("clients_connected", "Clients past CONNACK", m.clients_connected.clone());
        r.register("sessions", "Sessions, connected or not", m.sessions.clone());
        r.register(
            "subscriptions",
            "Subscriptions of all sessions",
            m.subscriptions.clone(),
        );
        r.register(
            "retained_messages",
            "Retained messages published by clients ($SYS excluded)",
            m.retained_messages.clone(),
        );
        r.register(
            "retained_bytes",
            "Payload bytes of the retained messages",
            m.retained_bytes.clone(),
        );
        r.register(
            "queued_messages",
            "QoS 1/2 messages waiting in session queues",
            m.queued_messages.clone(),
        );
        r.register(
            "queued_bytes",
            "Payload bytes of QoS 1/2 messages held by sessions, queued and in flight",
            m.queued_bytes.clone(),
        );
        r.register(
            "inflight_messages",
            "QoS 1/2 messages sent and not yet acknowledged",
            m.inflight_messages.clone(),
        );
        r.register(
            "storage_commit_seconds",
            "Time of one group commit (write and, with sync = always, fdatasync)",
            m.commit_seconds.clone(),
        );
        r.register(
            "storage_fsyncs",
            "fdatasync calls on the write-ahead log",
            m.fsyncs.clone(),
        );
        r.register(
            "storage_snapshot_seconds",
            "Time to write one snapshot",
            m.snapshot_seconds.clone(),
        );
        r.register(
            "storage_writable",
            "1 while the data directory takes writes (or none is used), 0 while it refuses them",
            m.storage_writable.clone(),
        );
        m.storage_writable.set(1);
        Metrics {
            registry: Arc::new(r),
            ..m
        }
    }

    /// Adds a cluster node's metrics. Called before [`Metrics::registry`] hands the registry out.
    pub fn with_cluster(mut self) -> Metrics {
        let Some(r) = Arc::get_mut(&mut self.registry) else {
            return self;
        };
        let sub = r.sub_registry_with_prefix("cluster");
        let c = ClusterMetrics {
            held_qos0_dropped: Counter::default(),
            applied_index: Gauge::default(),
            term: Gauge::default(),
            leader: Gauge::default(),
            is_leader: Gauge::default(),
        };
        sub.register(
            "held_qos0_dropped",
            "QoS 0 PUBLISHes dropped because the leader's output held for commits reached max_held_bytes",
            c.held_qos0_dropped.clone(),
        );
        sub.register(
            "applied_index",
            "The last Raft log index applied on this node",
            c.applied_index.clone(),
        );
        sub.register("term", "This node's Raft term", c.term.clone());
        sub.register(
            "leader",
            "The node id of the leader this node knows of, 0 for none",
            c.leader.clone(),
        );
        sub.register("is_leader", "1 while this node leads the cluster", c.is_leader.clone());
        self.cluster = Some(c);
        self
    }

    /// Copy a cluster node's view in (called when a scrape asks).
    pub fn refresh_cluster(&self, node: &crate::http::ClusterHealth, held_qos0_dropped: u64) {
        let Some(c) = &self.cluster else {
            return;
        };
        set(&c.held_qos0_dropped, held_qos0_dropped);
        let gauge = |g: &Gauge, v: u64| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        gauge(&c.applied_index, node.applied);
        gauge(&c.term, node.term);
        gauge(&c.leader, node.leader.unwrap_or(0));
        c.is_leader.set(i64::from(node.role == "leader"));
    }

    /// The registry, for the HTTP thread.
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(registry: &Registry) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; the encoder only fails if its writer does.
        encode(&mut text, registry).expect("encoding into a String");
        text
    }

    /// Copy the core's counters and sizes in (called when a scrape asks).
    pub fn refresh(&self, stats: &Stats, gauges: &Gauges) {
        for (i, qos) in QOS.iter().enumerate() {
            let labels = vec![("qos", qos.to_string())];
            set(
                &self.messages_received.get_or_create(&labels),
                stats.messages_received_by_qos[i],
            );
            set(
                &self.messages_sent.get_or_create(&labels),
                stats.messages_sent_by_qos[i],
            );
            set(
                &self.payload_bytes_received.get_or_create(&labels),
                stats.payload_bytes_received_by_qos[i],
            );
            set(
                &self.payload_bytes_sent.get_or_create(&labels),
                stats.payload_bytes_sent_by_qos[i],
            );
        }
        for cause in DropCause::ALL {
            let labels = vec![("cause", cause.name().to_string())];
            set(
                &self.messages_dropped.get_or_create(&labels),
                stats.drops_by_cause[cause as usize],
            );
        }
        for (&code, &count) in &stats.connects_refused {
            set(
                &self.connects_refused.get_or_create(&reason_labels(ReasonCode(code))),
                count,
            );
        }
        set(&self.bytes_received, stats.bytes_received);
        set(&self.bytes_sent, stats.bytes_sent);
        set(&self.publishes_held, stats.publishes_held);
        set(&self.quota_refusals, stats.quota_refusals);
        set(&self.protocol_errors, stats.protocol_errors);
        set(&self.wills_published, stats.wills_published);
        set(&self.records, stats.records_written);
        let gauge = |g: &Gauge, v: u64| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        gauge(&self.clients_connected, gauges.clients_connected);
        gauge(&self.sessions, gauges.sessions);
        gauge(&self.subscriptions, gauges.subscriptions);
        gauge(&self.retained_messages, gauges.retained_messages);
        gauge(&self.retained_bytes, gauges.retained_bytes);
        gauge(&self.queued_messages, gauges.queued_messages);
        gauge(&self.queued_bytes, gauges.queued_bytes);
        gauge(&self.inflight_messages, gauges.inflight_messages);
    }

    /// A connection was accepted on listener `index`.
    pub fn on_open(&mut self, conn: ConnectionId, index: usize) {
        self.conn_listener.insert(conn, index);
    }

    /// A connection is gone (whatever the core said before).
    pub fn on_close(&mut self, conn: ConnectionId) {
        self.conn_listener.remove(&conn);
        if let Some(labels) = self.connected.remove(&conn) {
            self.connections.get_or_create(&labels).dec();
        }
    }

    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::ClientConnected { conn, protocol, .. } => {
                let Some(listener) = self.conn_listener.get(conn).and_then(|&i| self.listeners.get(i)) else {
                    return;
                };
                let labels = vec![
                    ("listener", listener.address.clone()),
                    ("transport", listener.transport.to_string()),
                    ("protocol", version(*protocol).to_string()),
                ];
                self.connects.get_or_create(&labels).inc();
                self.connections.get_or_create(&labels).inc();
                if let Some(previous) = self.connected.insert(*conn, labels) {
                    // One connection CONNECTs once [MQTT-3.1.0-2]; should the core ever say so twice, count once.
                    self.connections.get_or_create(&previous).dec();
                }
            }
            Event::ClientDisconnected { conn, .. } => {
                if let Some(labels) = self.connected.remove(conn) {
                    self.connections.get_or_create(&labels).dec();
                }
            }
            Event::AuthenticationFailed { reason, .. } => {
                self.auth_failures.get_or_create(&reason_labels(*reason)).inc();
            }
            _ => {}
        }
    }

    /// One group commit that wrote records took `elapsed`.
    pub fn on_commit(&self, elapsed: Duration) {
        self.commit_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn set_fsyncs(&self, total: u64) {
        set(&self.fsyncs, total);
    }

    pub fn on_snapshot(&self, elapsed: Duration) {
        self.snapshot_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn set_storage_writable(&self, writable: bool) {
        self.storage_writable.set(i64::from(writable));
    }
}

/// Counters only go up; the core's totals do too, so the difference is what happened since the last refresh.
fn set(counter: &Counter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

fn reason_labels(reason: ReasonCode) -> Labels {
    vec![
        ("code", format!("0x{:02x}", reason.0)),
        ("reason", reason.name().to_string()),
    ]
}

fn version(protocol: ProtocolVersion) -> &'static str {
    match protocol {
        ProtocolVersion::V3_1 => "3.1",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V5 => "5.0",
    }
}
