//! The simulated world: one broker core, simulated clients, a network of per-connection FIFO links with delays
//! (so connections overtake each other but bytes within one never reorder), a virtual clock, and faults.

use crate::client::{Outgoing, SimClient};
use crate::model::{message_id, MessageInfo, Model, MsgId, RoutingPlan, Violation, WillState};
use crate::options::Options;
use crate::trace::Trace;
use bytes::{Bytes, BytesMut};
use mqtt_core::broker::{Broker, Config, ConnectionId, Input, ListenerId, Output};
use mqtt_core::codec::{encode, Decoder};
use mqtt_core::packet::*;
use mqtt_core::time::Time;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};

mod ack_order;
mod admission;
mod budget;
mod clock;
mod coalesce;
mod connack;
mod connect_rate;
mod delayed_wills;
mod delivery;
mod describe;
mod disk;
mod durability;
mod enhanced_auth;
mod expiring;
mod expiry;
mod faults;
mod identity;
mod liveness;
mod max_qos;
mod observe;
mod opening;
mod probe;
mod publish_rate;
mod reads;
mod receive;
mod subids;
mod sys_topics;
mod tracing;
mod transient_close;
mod wills;

pub(super) use describe::describe;
mod workload;

#[derive(Debug)]
enum Event {
    ToBroker {
        conn: ConnectionId,
        data: Vec<u8>,
    },
    ToClient {
        conn: ConnectionId,
        data: Bytes,
    },
    /// The broker's close reached the client.
    ClientSeesClose {
        conn: ConnectionId,
    },
    Writable {
        conn: ConnectionId,
    },
    /// The verdict on a CONNECT the authenticator answered `Pending` (see `acl::SimAcl::defers`).
    AuthVerdict {
        conn: ConnectionId,
    },
}

/// One transport connection as the network sees it.
struct Link {
    /// The simulated client behind it; `None` for a misbehaving one.
    client: Option<usize>,
    /// Decodes the client-to-broker stream in step with the broker, so the model sees packets in the broker's order.
    shadow: Decoder,
    last_to_broker: u64,
    last_to_client: u64,
    closed_by_broker: bool,
    /// The client side is gone (cut, crashed, or hung up after DISCONNECT).
    client_gone: bool,
    saw_disconnect: bool,
    blocked: bool,
    /// Topic Aliases the client set on this connection, resolved for the model as the broker resolves them.
    aliases: BTreeMap<u16, String>,
    /// A misbehaving client the broker must disconnect.
    misbehaving: bool,
    /// The last segment of PUBLISHes scheduled to the broker, which the next may join (see `coalesce`).
    segment: Option<(u64, u64)>,
    /// Decodes what the broker sends as it sends it, so the model sees its PUBACKs and PUBRECs at once (which tell
    /// when a held PUBLISH was admitted, see `admission`); `None` for a connection without a simulated client.
    outbound: Option<Decoder>,
    /// Decodes, for the log, what the broker sent after the client left: a packet may span several transmits (a
    /// shared payload comes apart from its header), so the lost stream is decoded as one.
    lost: Option<Decoder>,
    /// The CONNECT waits for a delayed verdict: it and what followed it, read by the broker's decoder but not yet
    /// processed, which the model processes when the broker does (at the verdict) [MQTT-3.1.4-6].
    held: Option<Vec<Packet>>,
    /// The verdict on its CONNECT was lost (a fault): until the liveness phase delivers it, only the connect
    /// timeout ends the wait.
    verdict_lost: bool,
    /// Abandoned by its client, which reconnected over a new connection without closing this one (a half-open
    /// connection): the broker must close it when the new CONNECT takes the session over [MQTT-3.1.4-3], or at
    /// the latest when keep alive runs out.
    zombie: bool,
    /// A misbehaving client above the broker's Maximum QoS, and the refusal it must get (see `max_qos`).
    refusal: Option<max_qos::ExpectedRefusal>,
    /// An enhanced-authentication connection and what it expects next (see `enhanced_auth`).
    auth: Option<enhanced_auth::AuthProbe>,
    /// A connection with a name its transport verified (or none), and what it expects next (see `identity`).
    identity: Option<identity::IdentityProbe>,
    /// Whether the broker reads the rest of the current input (see `transient_close`).
    rest_of_input: transient_close::RestOfInput,
}

/// Counters for the summary.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub published: u64,
    pub cuts: u64,
    pub crashes: u64,
    pub slow_readers: u64,
    pub time_jumps: u64,
    pub garbage: u64,
    pub takeovers: u64,
    /// Broker crashes and restarts from the simulated disk.
    pub broker_restarts: u64,
    /// Suspensions of storage after a failed write (a full disk, EIO).
    pub disk_full: u64,
    /// What the simulated disk did (see `simfs`), as of the end of the run.
    pub disk: crate::simfs::DiskCounts,
    /// Power cuts that struck in the middle of a commit or compaction.
    pub mid_write_crashes: u64,
    /// Recoveries that refused to start (legally: the disk had flipped a bit in synced data).
    pub recovery_refusals: u64,
    pub connects: u64,
    pub steps: u64,
}

pub struct World {
    pub opts: Options,
    rng: ChaCha8Rng,
    pub now: u64,
    broker: Broker,
    clients: Vec<SimClient>,
    pub model: Model,
    pub trace: Trace,
    queue: BTreeMap<(u64, u64), Event>,
    sequence: u64,
    links: BTreeMap<ConnectionId, Link>,
    next_conn: u64,
    slow_acks: bool,
    faults: bool,
    pub counts: Counts,
    /// The seed's topic space.
    topics: Vec<String>,
    /// QoS 1/2 PUBLISHes the model saw in the chunk now being fed to the broker, with their routing as of
    /// reading: applied if the broker routed them at once.
    chunk_publishes: Vec<PendingPublish>,
    /// QoS 0 RETAIN PUBLISHes of the chunk read after a QoS 1/2 one on their topic (see `admission`).
    chunk_retained_after: Vec<crate::model::RoutingPlan>,
    /// How many of `chunk_publishes` were read before the last one whose admission may have evicted for the total
    /// budget, and the most bytes an eviction of the input may have taken: their deliveries to offline sessions
    /// may have been evicted too (see `admission`).
    chunk_evicts: (usize, u64),
    /// PUBLISHes the broker holds for a full subscriber queue (see `mqtt_core::broker` flow control): the model
    /// routes them when the broker does.
    awaiting_admission: Vec<PendingPublish>,
    /// The model's publish-rate buckets and what they predict (see `publish_rate`).
    rates: publish_rate::PublishRates,
    /// The broker's configuration, to start a new one after a crash.
    config: Config,
    /// Where the broker's records go (persistence on), see `disk`.
    disk: Option<disk::SimDisk>,
    /// A power cut waits to strike during the storage operations of a chunk the broker reads: after this many
    /// more of them (see `simfs`).
    power_cut_in: Option<disk::PowerCut>,
    /// The armed power cut struck during the current input: its outputs never leave; `true` if its records had
    /// been synced (it struck during the compaction after them).
    power_cut_struck: Option<bool>,
    /// Messages dropped by brokers that have since crashed, for the coverage table only (a new broker's
    /// counters start at zero).
    dropped_before_restarts: u64,
    /// The disk is full until then (ms).
    disk_full_until: Option<u64>,
    /// Storage suspended after a failed commit (see `disk`).
    suspension: Option<disk::Suspension>,
    /// Work and time the run may take before it counts as stalled (see `budget`).
    pub budget: budget::Budget,
    /// What the run really did (see `observe`).
    coverage: crate::coverage::Coverage,
    /// Wills of connections abandoned for a takeover, decided when the broker takes them over (see `wills`).
    zombie_wills: BTreeMap<ConnectionId, wills::ZombieWill>,
    /// QoS and Retain of each will published, for the coverage of will options.
    will_options_of: BTreeMap<MsgId, (QoS, bool)>,
    /// Session expiry as the broker should apply it (see `expiry`).
    expiries: expiry::Expiries,
    /// Client identifiers the broker assigned so far (see `connack`).
    assigned_ids: BTreeSet<String>,
    /// Delayed wills, and the clients that stay away for theirs in the liveness phase (see `delayed_wills`).
    delayed_wills: delayed_wills::DelayedWills,
    /// The broker's clock: the simulated time plus an offset that may jump at a restart (see `clock`).
    clock: clock::BrokerClock,
    /// The enhanced-authentication connections' random stream (see `enhanced_auth`).
    probes: enhanced_auth::Probes,
    /// The random stream of the connections with verified names (see `identity`).
    identity_probes: identity::IdentityProbes,
    /// The `$SYS` watcher and the world's own counts it is checked against (see `sys_topics`).
    sys: sys_topics::SysWatch,
    /// The connect-rate bursts and the world's own bucket for their address (see `connect_rate`).
    connect_rate: connect_rate::ConnectRate,
    /// The QoS 1/2 PUBLISHes each connection owes an acknowledgement, in reading order (see `ack_order`).
    ack_order: ack_order::AckOrder,
}

/// A QoS 1/2 PUBLISH the model has seen but the broker may not have routed yet.
#[derive(Clone)]
struct PendingPublish {
    conn: ConnectionId,
    client: usize,
    publish: Publish,
    id: Option<MsgId>,
    plan: RoutingPlan,
    /// Why the broker may hold or refuse it rather than route it at once (`None`: it must route it).
    uncertain: Option<String>,
    /// The publisher's connection was write-blocked while the PUBLISH waited, so its acknowledgement may have
    /// come out later than the admission (see `admission`).
    blind: bool,
    /// A QoS 2 resend whose id the broker may still hold from a first receipt the model is unsure of: the broker
    /// may answer it as a duplicate (PUBREC, nothing to store) where a new PUBLISH would need storage.
    qos2_maybe_held: bool,
}

/// A broker with the seed's access rules.
pub(super) fn new_broker(opts: &Options, config: Config, seed: u64) -> Broker {
    Broker::with_authenticator(config, seed, Box::new(sim_acl(opts)))
}

/// The seed's access rules and deferred verdicts: the same for every broker of the run (restarts included), so
/// that the world knows which CONNECTs wait.
pub(super) fn sim_acl(opts: &Options) -> crate::acl::SimAcl {
    crate::acl::SimAcl {
        enabled: opts.quotas.acl,
        defer_one_in: opts.quotas.deferred_auth,
        salt: opts.seed,
        identity_listener: opts.identity_listener,
    }
}

pub(super) fn encoded(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    // Packets built by the simulator are valid by construction.
    encode(packet, version, &mut out).expect("simulator packets encode");
    out.to_vec()
}

impl World {
    pub fn new(opts: Options, mut rng: ChaCha8Rng, config: Config, trace: Trace) -> World {
        let broker_seed = rng.gen();
        let (opts_steps, short_expiry, clients_count) = (opts.steps, opts.short_expiry, opts.clients);
        let assigned_ids = opts.assigned_ids;
        let clock = clock::BrokerClock::new(opts.restart_clock_jumps);
        let opts_seed = opts.seed;
        let clients = (0..opts.clients)
            .map(|i| {
                let version = if rng.gen_bool(opts.v5_share) {
                    ProtocolVersion::V5
                } else {
                    ProtocolVersion::V3_1_1
                };
                let persistent = rng.gen_bool(opts.persistent_share);
                let shared_only = opts.shared && version.is_v5() && rng.gen_bool(0.3);
                let receive_maximum = if version.is_v5() {
                    opts.client_receive_maximum
                } else {
                    u16::MAX
                };
                let mut client = SimClient::new(i, version, persistent, shared_only, receive_maximum);
                if let Some(interval) = expiry::short_expiry(i).filter(|_| short_expiry) {
                    client.session_expiry = interval;
                }
                if assigned_ids && version.is_v5() && !persistent && i % 3 == 2 {
                    // [MQTT-3.1.3-6]: the broker assigns one, and says which in CONNACK [MQTT-3.2.2-16].
                    client.client_id.clear();
                }
                if version.is_v5() && rng.gen_bool(0.5) {
                    client.max_packet_size = opts.client_max_packet_size;
                }
                client
            })
            .collect();
        let topics = opts.topics();
        // From a stream of its own, so that the rest of the seed stays what it was.
        let disk = config
            .persistence
            .then(|| disk::SimDisk::new(&opts, ChaCha8Rng::seed_from_u64(opts.seed ^ 0xd15c_0000_0000_0002)));
        World {
            model: Model::new(opts.clients, opts.queues_bounded())
                .with_quotas(opts.quotas)
                .with_limits(crate::model::QueueLimits {
                    messages: opts.max_queued_messages,
                    bytes: opts.quotas.max_queued_bytes,
                    total: opts.quotas.max_queued_bytes_total,
                }),
            broker: new_broker(&opts, config.clone(), broker_seed),
            slow_acks: opts.slow_ack_rate > 0.0,
            opts,
            rng,
            now: 0,
            clients,
            trace,
            queue: BTreeMap::new(),
            sequence: 0,
            links: BTreeMap::new(),
            next_conn: 1,
            faults: true,
            counts: Counts::default(),
            topics,
            chunk_publishes: Vec::new(),
            chunk_retained_after: Vec::new(),
            chunk_evicts: (0, 0),
            awaiting_admission: Vec::new(),
            rates: Default::default(),
            disk,
            config: config.clone(),
            power_cut_in: None,
            power_cut_struck: None,
            dropped_before_restarts: 0,
            disk_full_until: None,
            suspension: None,
            budget: budget::Budget::for_steps(opts_steps),
            coverage: Default::default(),
            zombie_wills: BTreeMap::new(),
            will_options_of: BTreeMap::new(),
            expiries: expiry::Expiries::new(clients_count),
            assigned_ids: BTreeSet::new(),
            delayed_wills: Default::default(),
            clock,
            probes: enhanced_auth::Probes::new(opts_seed),
            identity_probes: identity::IdentityProbes::new(opts_seed),
            sys: sys_topics::SysWatch::new(opts_seed),
            connect_rate: connect_rate::ConnectRate::new(opts_seed),
            ack_order: Default::default(),
        }
    }

    fn log(&mut self, line: String) {
        self.trace.record_at(self.now, line);
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.sequence += 1;
        self.queue.insert((at, self.sequence), event);
    }

    fn delay(&mut self) -> u64 {
        if self.opts.max_delay_ms == 0 {
            0
        } else {
            self.rng.gen_range(0..=self.opts.max_delay_ms)
        }
    }

    /// Feeds one input to the broker and routes its outputs into the network. A panic is a failure.
    fn broker_input(&mut self, input: Input<'_>) -> Result<(), Violation> {
        let now = self.broker_now();
        let sys_snapshot = self.sys_snapshot(&input);
        self.model.batch += 1;
        let storage_was_suspended = self.suspension.is_some();
        let broker = &mut self.broker;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            broker.handle_input(now, input);
            let mut outputs = Vec::new();
            while let Some(output) = broker.poll_output() {
                outputs.push(output);
            }
            outputs
        }));
        let outputs = outcome.map_err(|panic| {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Violation(format!("broker panicked: {text}"))
        })?;
        self.sys_outputs(sys_snapshot, &outputs)?;
        // What the broker acknowledged in this input tells which held PUBLISHes it admitted or refused.
        let acks = self.decode_acks(&outputs)?;
        // The quota byte counters are exact on every path that adds or removes a queued message.
        self.broker
            .check_queue_accounting()
            .map_err(|mismatch| Violation(format!("queued-bytes accounting: {mismatch}")))?;
        // The group commit: this input's records reach the disk before any of its outputs reach the network.
        let mut rest = Vec::with_capacity(outputs.len());
        for output in outputs {
            match output {
                Output::Persist(record) => {
                    self.trace_record(&record);
                    if let Some(disk) = self.disk.as_mut() {
                        disk.append(&record);
                    }
                }
                other => rest.push(other),
            }
        }
        // While suspended the driver writes nothing (the records are dropped: the snapshot that ends the
        // suspension has their effect).
        let broker = &self.broker;
        let commit = match self.disk.as_mut() {
            Some(disk) if self.suspension.is_none() => disk.commit(|| broker.image()),
            _ => disk::Commit::Done,
        };
        // The broker retries the PUBLISHes held for room at the end of the input, after the connections it closed
        // in it are gone: a session whose connection closed is offline by then, so what does not fit its queue is
        // dropped, not held (seed 47).
        for output in &rest {
            if let Output::Close { conn } = output {
                if let Some(Some(client)) = self.links.get(conn).map(|l| l.client) {
                    self.model.on_offline(client, conn.0);
                }
            }
        }
        self.settle_admissions(&acks, storage_was_suspended)?;
        // Written only with a disk that takes writes (a suspended one commits nothing, see above).
        let written = self.disk.is_some() && self.suspension.is_none();
        if written && matches!(commit, disk::Commit::Done | disk::Commit::Compacted(_))
            || matches!(commit, disk::Commit::PowerCut { committed: true })
        {
            self.clock.caps_recorded = true;
        }
        match commit {
            disk::Commit::Done => {}
            disk::Commit::Compacted(generation) => self.log(format!("log compacted into snapshot {generation}")),
            disk::Commit::Failed(error) => return self.suspend_storage(rest, &error),
            disk::Commit::PowerCut { committed } => {
                // The broker's state changed as the input's closes say (a will published on a DISCONNECT with
                // Will, a session ended with its connection) whether or not the outputs leave: the model follows
                // before `restart_broker` chooses what recovery may restore.
                for output in &rest {
                    if let Output::Close { conn } = output {
                        if let Some((Some(client), normal)) = self.links.get(conn).map(|l| (l.client, l.saw_disconnect))
                        {
                            self.connection_ended(client, *conn, normal);
                        }
                    }
                }
                // The process dies: nothing of this input leaves (see `restart_broker`).
                self.power_cut_struck = Some(committed);
                return Ok(());
            }
        }
        for output in rest {
            if let Some(output) = self.hold_if_suspended(output) {
                self.route_output(output)?;
            }
        }
        Ok(())
    }

    fn route_output(&mut self, output: Output) -> Result<(), Violation> {
        match output {
            Output::Transmit { conn, data } => {
                let delay = self.delay();
                let link = self
                    .links
                    .get_mut(&conn)
                    .ok_or_else(|| Violation(format!("transmit to unknown {conn:?}")))?;
                if link.closed_by_broker {
                    return Err(Violation(format!("transmit on {conn:?} after the broker closed it")));
                }
                let at = (self.now + delay).max(link.last_to_client);
                link.last_to_client = at;
                let digest = self.trace.absorb(&data);
                self.log(format!("broker sends {conn:?} {} bytes {digest}", data.len()));
                self.schedule(at, Event::ToClient { conn, data });
            }
            Output::Close { conn } => {
                let delay = self.delay();
                let Some(link) = self.links.get_mut(&conn) else {
                    return Err(Violation(format!("close of unknown {conn:?}")));
                };
                link.closed_by_broker = true;
                let at = (self.now + delay).max(link.last_to_client);
                let (client, normal) = (link.client, link.saw_disconnect);
                self.drop_held_of(conn);
                self.schedule(at, Event::ClientSeesClose { conn });
                if let Some(client) = client {
                    self.connection_ended(client, conn, normal);
                }
                self.log(format!("broker closes {conn:?}"));
            }
            Output::Event(event) => {
                self.observe_event(&event);
                self.log(format!("event {event:?}"));
            }
            // Records were taken out and committed by `broker_input` before any output was routed.
            Output::Persist(_) => {}
        }
        Ok(())
    }

    /// The broker is done with a client's connection: its will is due unless it disconnected normally, and a
    /// session that ends with the connection is gone.
    fn connection_ended(&mut self, client: usize, conn: ConnectionId, normal: bool) {
        // Only the connection the broker has attached to the session takes the session with it: a new connection
        // whose CONNECT the broker never read leaves the session with the abandoned one (seed 545: c4's new
        // connection was lost unread, its session stayed online behind the half-open one, its queue full).
        let attached = self.model.sessions[client].attached;
        if self.zombie_ended(client, conn) {
            if attached == Some(conn.0) {
                self.model.on_offline(client, conn.0);
                if !self.clients[client].persistent {
                    self.model.on_session_end(client);
                }
            }
            return;
        }
        let current = self.clients[client].conn == Some(conn) || self.clients[client].conn.is_none();
        self.model.on_offline(client, conn.0);
        if !current {
            return;
        }
        // A will exists only once the broker processed the CONNECT that carried it.
        let armed = self.clients[client]
            .armed_will
            .take()
            .filter(|id| self.model.wills.get(id) == Some(&WillState::Armed));
        if let Some(id) = armed {
            // The will goes out after its delay or when the session ends, whichever is first [MQTT-3.1.3-9].
            let delay = u64::from(self.clients[client].armed_will_delay.min(self.session_expiry(client)));
            if normal {
                self.model.wills.insert(id, WillState::Discarded);
            } else if delay > 0 && self.clients[client].persistent {
                let due_at = self.now + delay * 1000;
                let (qos, retain) = (
                    self.clients[client].armed_will_qos,
                    self.clients[client].armed_will_retain,
                );
                self.will_delayed(client, &id, due_at, qos, retain);
                self.log(format!(
                    "c{client} {conn:?} ended abnormally: will {id} due at {due_at}ms"
                ));
            } else {
                self.will_due(client, &id);
                self.log(format!("c{client} {conn:?} ended abnormally: will {id} due"));
            }
        }
        if !self.clients[client].persistent && attached.is_none_or(|a| a == conn.0) {
            self.model.on_session_end(client);
        }
        self.expiry_on_end(client, conn);
    }

    fn fire_timers(&mut self) -> Result<(), Violation> {
        self.publish_delayed_wills_due();
        self.count_due_wills();
        while self.broker.poll_timeout().is_some_and(|t| self.broker_due(t)) {
            self.spend_tick()?;
            self.broker_input(Input::Tick)?;
        }
        Ok(())
    }

    fn send(&mut self, client: usize, packet: Packet) {
        let Some(conn) = self.clients[client].conn else {
            return;
        };
        let version = self.clients[client].version;
        self.clients[client].last_sent_ms = self.now;
        self.clients[client].on_ack_sent(&packet);
        let packet = match packet {
            Packet::Publish(publish) if self.opts.client_aliases => {
                let use_existing = self.rng.gen_bool(0.7);
                Packet::Publish(self.clients[client].apply_topic_alias(publish, use_existing))
            }
            other => other,
        };
        self.observe_sent(&packet);
        let data = encoded(&packet, version);
        let delay = self.delay();
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        let at = (self.now + delay).max(link.last_to_broker);
        link.last_to_broker = at;
        let digest = self.trace.absorb(&data);
        self.log(format!("c{client} {conn:?} sends {} {digest}", describe(&packet)));
        self.schedule_to_broker(conn, at, data);
    }

    fn handle_event(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::ToBroker { conn, data } => self.deliver_to_broker(conn, data),
            Event::ToClient { conn, data } => self.deliver_to_client(conn, data),
            Event::ClientSeesClose { conn } => {
                let client = self.links.get(&conn).and_then(|l| l.client);
                if let Some(client) = client {
                    if self.clients[client].conn == Some(conn) {
                        self.clients[client].conn = None;
                        self.log(format!("c{client} {conn:?} closed by broker"));
                    }
                }
                Ok(())
            }
            Event::AuthVerdict { conn } => self.deliver_verdict(conn),
            Event::Writable { conn } => {
                let open = self.links.get_mut(&conn).filter(|l| l.blocked && !l.closed_by_broker);
                if let Some(link) = open {
                    link.blocked = false;
                    self.broker_input(Input::Writable { conn })?;
                }
                Ok(())
            }
        }
    }

    /// One step: a fault maybe, then either the next network event or a client action.
    pub fn step(&mut self) -> Result<(), Violation> {
        self.counts.steps += 1;
        self.spend()?;
        if self.faults {
            self.inject_faults()?;
        }
        self.maybe_authenticate()?;
        self.maybe_identify()?;
        self.maybe_watch_sys()?;
        self.maybe_connect_burst()?;
        if !self.queue.is_empty() && self.rng.gen_bool(0.6) {
            return self.next_event();
        }
        self.now += self.rng.gen_range(0..3);
        self.fire_timers()?;
        self.resume_storage_if_due(false)?;
        let client = self.rng.gen_range(0..self.clients.len());
        self.client_action(client)
    }

    fn next_event(&mut self) -> Result<(), Violation> {
        let Some(((at, _), event)) = self.queue.pop_first() else {
            return Ok(());
        };
        self.spend()?;
        self.now = self.now.max(at);
        self.fire_timers()?;
        self.handle_event(event)
    }
}
