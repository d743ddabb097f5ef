//! The cluster world: nodes with their disks, the network between them, the clients, the fault schedule, and the
//! loop that drives them one virtual millisecond at a time.

mod faults;
mod snapshots;

use super::check::Checker;
use super::client::{Client, Kind};
use super::disk::{Disk, Write};
use super::links::{LinkTiming, Links};
use super::net::{Net, NetFaults};
use super::options::ClusterOptions;
use super::streams::RelayStreams;
use crate::trace::Trace;
use mqtt_cluster::{ClusterEvent, Node, NodeConfig, NodeInput, NodeOutput};
use mqtt_core::broker::{Config as BrokerConfig, ConnectionId, Input, ListenerId, Output};
use mqtt_core::packet::{ProtocolVersion, QoS};
use mqtt_core::time::Time;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};

const CLUSTER_ID: u64 = 0x005e_edc1;

/// What a run did, for the report.
#[derive(Debug, Clone, Default)]
pub struct ClusterCounts {
    pub published: u64,
    pub acknowledged: u64,
    pub crashes: u64,
    pub writes_lost: u64,
    pub restarts: u64,
    pub partitions: u64,
    pub garbage: u64,
    pub refused: u64,
    pub leader_terms: u64,
    pub client_connects: u64,
    pub client_refusals: u64,
    pub peer_messages: u64,
    pub releases_checked: u64,
    pub snapshots: u64,
    pub snapshots_installed: u64,
    /// Snapshots a node was writing when it crashed (the write never completed).
    pub snapshots_unwritten: u64,
    pub leaderless_ms_after_heal: u64,
    /// Client connections a follower relayed to the leader, and how many of them got their CONNACK.
    pub relayed_connects: u64,
    pub relayed_connacks: u64,
    /// DISCONNECT 0x8B received by clients (failovers), and CONNACKs that resumed a session.
    pub failover_disconnects: u64,
    pub sessions_resumed: u64,
    /// Relayed connections closed because their leader changed or its stream broke; relay sequence gaps seen.
    pub relays_closed: u64,
    pub relay_gaps: u64,
    /// Relay messages the links could not queue (the connection closed on both sides instead).
    pub relays_dropped: u64,
    /// Node-to-node streams broken and redialled; breaks the senders learned of (`PeerUnreachable`).
    pub stream_breaks: u64,
    pub stream_reconnects: u64,
    pub unreachable_reports: u64,
    /// Acknowledgements checked against the disks, relayed chunks checked against the leader's stream.
    pub acks_verified: u64,
    pub relayed_chunks_checked: u64,
}

struct SimNode {
    id: u64,
    node: Option<Node>,
    disk: Disk,
    restart_at: Option<u64>,
    /// Crash right after this many more writes (in the middle of acting on a node's outputs).
    crash_after_writes: Option<u32>,
    /// Outputs the driver has taken from the node and not yet acted on (waiting for a sync).
    pending: VecDeque<NodeOutput>,
    /// How long a sync takes, ms (0: at once).
    disk_latency: u64,
    /// When the sync under way completes.
    sync_at: Option<u64>,
    /// The last `NodeOutput::ConfirmDurable` acted on, to hand back to the node.
    durable: Option<u64>,
    /// Relay messages the links could not queue, to hand back to the node (`NodeInput::RelayDropped`).
    relays_dropped: Vec<(u64, bytes::Bytes)>,
    /// The node's own snapshot being written, and when the write completes (see `snapshots`).
    snapshot: Option<(u64, mqtt_cluster::eraftpb::Snapshot)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Setup,
    Faults,
    Liveness,
}

pub struct World {
    seed: u64,
    opts: ClusterOptions,
    rng: ChaCha8Rng,
    pub now: u64,
    nodes: Vec<SimNode>,
    net: Net,
    /// The node-to-node streams (relay messages always; Raft messages with `raft_on_links`).
    links: Links,
    streams: RelayStreams,
    /// Client connections a follower relays: local connection -> cluster-wide id.
    relayed: BTreeMap<ConnectionId, ConnectionId>,
    clients: Vec<Client>,
    /// Open client connections: connection -> (node index, client index).
    conns: BTreeMap<ConnectionId, (usize, usize)>,
    /// Client bytes on their way to a node (delivered within the same millisecond, in order).
    to_nodes: VecDeque<(ConnectionId, Vec<u8>)>,
    next_conn: u64,
    check: Checker,
    pub trace: Trace,
    pub counts: ClusterCounts,
    phase: Phase,
    partition_until: Option<u64>,
    #[cfg_attr(not(feature = "planted-bugs"), allow(dead_code))]
    planted: Option<PlantedBug>,
}

#[cfg(feature = "planted-bugs")]
type PlantedBug = mqtt_cluster::ClusterBug;
#[cfg(not(feature = "planted-bugs"))]
type PlantedBug = std::convert::Infallible;

impl World {
    pub fn new(
        seed: u64,
        opts: ClusterOptions,
        mut rng: ChaCha8Rng,
        trace: Trace,
        planted: Option<PlantedBug>,
    ) -> World {
        let mut clients = Vec::new();
        let kinds = std::iter::repeat_n(Kind::Subscriber, opts.subscribers)
            .chain(std::iter::repeat_n(Kind::Publisher, opts.publishers))
            .chain(std::iter::repeat_n(Kind::Volatile, opts.volatiles));
        for (index, kind) in kinds.enumerate() {
            let version = if rng.gen_bool(opts.v5_share) {
                ProtocolVersion::V5
            } else {
                ProtocolVersion::V3_1_1
            };
            clients.push(Client::new(index, kind, version, opts.inflight_max));
        }
        let mut world = World {
            seed,
            net: Net::new(opts.net),
            links: Links::new(
                opts.nodes as u64,
                LinkTiming {
                    min_delay: opts.net.min_delay,
                    max_delay: opts.net.max_delay,
                    observe_max: opts.link_observe_ms,
                },
            ),
            streams: RelayStreams::default(),
            relayed: BTreeMap::new(),
            nodes: Vec::new(),
            clients,
            conns: BTreeMap::new(),
            to_nodes: VecDeque::new(),
            next_conn: 1,
            check: Checker::default(),
            trace,
            counts: ClusterCounts::default(),
            phase: Phase::Setup,
            partition_until: None,
            planted,
            now: 0,
            rng,
            opts,
        };
        for id in 1..=world.opts.nodes as u64 {
            let slow = world.rng.gen_bool(world.opts.slow_disk_share);
            world.nodes.push(SimNode {
                id,
                node: None,
                disk: Disk::default(),
                restart_at: None,
                crash_after_writes: None,
                pending: VecDeque::new(),
                disk_latency: if slow {
                    world.rng.gen_range(1..=world.opts.slow_disk_ms)
                } else {
                    0
                },
                sync_at: None,
                durable: None,
                relays_dropped: Vec::new(),
                snapshot: None,
            });
            world.start(id as usize - 1);
        }
        world
    }

    fn node_config(&self, id: u64) -> NodeConfig {
        let peers = (1..=self.opts.nodes as u64).filter(|p| *p != id).collect();
        let mut config = NodeConfig::new(id, peers, CLUSTER_ID);
        config.tick_ms = self.opts.tick_ms;
        config.tick_jitter_ms = self.opts.tick_jitter_ms;
        config.election_tick = self.opts.election_tick;
        config.heartbeat_tick = self.opts.heartbeat_tick;
        config.snapshot_entries = self.opts.snapshot_entries;
        config.seed = self.seed;
        // As in the binary: a node that does not lead relays its clients to the leader.
        config.relay_clients = true;
        config.broker = BrokerConfig {
            persistence: true,
            // Offline subscribers keep everything (a bounded queue would drop legitimately).
            max_queued_messages: 1_000_000,
            max_queued_bytes: u64::MAX,
            max_queued_bytes_total: u64::MAX,
            sys_interval: 0,
            ..BrokerConfig::default()
        };
        #[cfg(feature = "planted-bugs")]
        {
            config.planted_bug = self.planted;
        }
        config
    }

    fn line(&mut self, text: String) {
        let line = format!("{:>7} {text}", self.now);
        self.trace.record(line);
    }

    /// The whole run: setup, faults, liveness.
    pub fn run(&mut self) -> Result<(), String> {
        self.line(format!("seed {} {}", self.seed, self.opts));
        let result = self.phases();
        self.counts.acknowledged = self.check.acknowledged_count() as u64;
        self.counts.releases_checked = self.check.releases_checked;
        self.counts.acks_verified = self.check.acks_verified;
        self.counts.relayed_chunks_checked = self.streams.chunks_checked;
        self.counts.failover_disconnects = self.clients.iter().map(|c| c.failover_disconnects).sum();
        self.counts.sessions_resumed = self.clients.iter().map(|c| c.resumed).sum();
        self.counts.stream_breaks = self.links.breaks;
        self.counts.stream_reconnects = self.links.reconnects;
        result.map_err(|v| format!("{v} (at {} ms)", self.now))
    }

    fn phases(&mut self) -> Result<(), String> {
        let setup_bound = self.now + 10 * self.opts.election_bound_ms();
        while !self.setup_done() {
            if self.now > setup_bound {
                return Err("liveness: the clients could not connect and subscribe on a healthy cluster".into());
            }
            self.step()?;
        }
        self.phase = Phase::Faults;
        self.line("fault phase".into());
        let end = self.now + self.opts.fault_ms;
        while self.now < end {
            self.step()?;
        }
        self.heal()?;
        let healed_at = self.now;
        let bound = healed_at + 60_000;
        let mut leader_seen = false;
        loop {
            self.step()?;
            if !leader_seen
                && self
                    .nodes
                    .iter()
                    .any(|n| n.node.as_ref().is_some_and(|n| n.is_leader()))
            {
                leader_seen = true;
                self.counts.leaderless_ms_after_heal = self.now - healed_at;
                if self.now - healed_at > self.opts.election_bound_ms() {
                    return Err(format!(
                        "liveness: no leader until {} ms after the network healed (bound {} ms)",
                        self.now - healed_at,
                        self.opts.election_bound_ms()
                    ));
                }
            }
            if leader_seen && self.now.is_multiple_of(10) && self.converged() {
                break;
            }
            if (self.now - healed_at).is_multiple_of(1_000) {
                self.trace_replication();
            }
            if self.now > bound {
                let owed = self.check.all_delivered(&self.subscribers()).err().unwrap_or_default();
                let busy: Vec<String> = self
                    .clients
                    .iter()
                    .filter(|c| !c.is_quiet() || !c.connacked)
                    .map(|c| c.name())
                    .collect();
                let nodes: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| match &n.node {
                        Some(node) => {
                            let s = node.status();
                            let progress: Vec<String> = node.peer_progress().iter().map(|p| p.to_string()).collect();
                            format!(
                                "n{} {:?} term {} commit {} applied {} {:?} {progress:?}",
                                s.id, s.role, s.term, s.commit, s.applied, s.match_index
                            )
                        }
                        None => format!("n{} down", n.id),
                    })
                    .collect();
                return Err(format!(
                    "liveness: not converged 60 s after healing (leader seen: {leader_seen}; clients not done: {busy:?}; \
                     {owed}; nodes: {nodes:?})"
                ));
            }
        }
        self.check.all_delivered(&self.subscribers())?;
        self.compare_images()?;
        self.line("converged".into());
        Ok(())
    }

    /// One trace line per node: its role and commit, and for a leader how far it knows each follower to be.
    fn trace_replication(&mut self) {
        let lines: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
            .map(|node| {
                let s = node.status();
                let progress: Vec<String> = node.peer_progress().iter().map(|p| p.to_string()).collect();
                format!(
                    "n{} {:?} term {} commit {} applied {} pending outputs {}{}",
                    s.id,
                    s.role,
                    s.term,
                    s.commit,
                    s.applied,
                    self.nodes[s.id as usize - 1].pending.len(),
                    if progress.is_empty() {
                        String::new()
                    } else {
                        format!(" | {}", progress.join(", "))
                    }
                )
            })
            .collect();
        for line in lines {
            self.line(line);
        }
    }

    fn subscribers(&self) -> Vec<usize> {
        self.clients
            .iter()
            .filter(|c| c.kind == Kind::Subscriber)
            .map(|c| c.index)
            .collect()
    }

    fn setup_done(&self) -> bool {
        self.clients.iter().all(|c| c.connacked && c.is_quiet())
    }

    fn converged(&self) -> bool {
        let applied: Vec<u64> = self
            .nodes
            .iter()
            .filter_map(|n| n.node.as_ref().map(|n| n.applied()))
            .collect();
        applied.len() == self.nodes.len()
            && applied.windows(2).all(|w| w[0] == w[1])
            && self.clients.iter().all(|c| c.connacked && c.is_quiet())
            && self.check.all_delivered(&self.subscribers()).is_ok()
    }

    fn compare_images(&self) -> Result<(), String> {
        let mut first: Option<(u64, mqtt_core::persist::Image)> = None;
        for n in &self.nodes {
            let Some(node) = &n.node else { continue };
            let mut image = node.image();
            image.collect_garbage();
            image.orphan_records = 0;
            match &first {
                None => first = Some((n.id, image)),
                Some((other, first_image)) if *first_image != image => {
                    return Err(format!(
                        "n{} and n{other} hold different images at applied index {}",
                        n.id,
                        node.applied()
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn heal(&mut self) -> Result<(), String> {
        self.phase = Phase::Liveness;
        self.net.heal();
        self.net.faults = NetFaults::CALM;
        self.partition_until = None;
        self.line("liveness phase: network healed, every node up".into());
        for i in 0..self.nodes.len() {
            self.nodes[i].crash_after_writes = None;
            if self.nodes[i].node.is_none() {
                self.start(i);
            }
        }
        Ok(())
    }

    /// One virtual millisecond.
    fn step(&mut self) -> Result<(), String> {
        while let Some((from, to, message)) = self.net.next_due(self.now) {
            self.peer_message(from, to, &message)?;
        }
        while let Some((from, to, message)) = self.links.next_due(self.now) {
            self.peer_message(from, to, &message)?;
        }
        while let Some((node, peer)) = self.links.next_observation(self.now) {
            let i = node as usize - 1;
            if self.nodes[i].node.is_some() {
                self.counts.unreachable_reports += 1;
                self.line(format!("n{node} sees its stream to n{peer} broken"));
                self.input(i, NodeInput::PeerUnreachable { peer })?;
            }
        }
        let up: Vec<bool> = self.nodes.iter().map(|n| n.node.is_some()).collect();
        let net = &self.net;
        self.links.redial(self.now, &mut self.rng, |a, b| {
            up[a as usize - 1] && up[b as usize - 1] && !net.is_cut(a, b) && !net.is_cut(b, a)
        });
        self.deliver_client_bytes()?;
        for i in 0..self.nodes.len() {
            let due = self.nodes[i]
                .node
                .as_ref()
                .and_then(|n| n.poll_timeout())
                .is_some_and(|t| t.0 <= self.now);
            if due {
                self.input(i, NodeInput::Tick)?;
            }
            if self.nodes[i].restart_at.is_some_and(|t| t <= self.now) {
                self.start(i);
            }
            if self.nodes[i].sync_at.is_some_and(|t| t <= self.now) {
                self.flush(i)?;
            }
            self.snapshot_due(i)?;
            // Background flush: an unsynced write does not stay volatile forever.
            if self.nodes[i].disk.has_unsynced() && self.nodes[i].sync_at.is_none() && self.rng.gen_bool(0.25) {
                self.nodes[i].disk.sync();
                self.flush(i)?;
            }
        }
        self.clients_act()?;
        self.deliver_client_bytes()?;
        if self.phase == Phase::Faults {
            self.inject_faults()?;
        }
        self.check.no_stale_leader(self.now, self.opts.stale_grace_ms())?;
        self.now += 1;
        Ok(())
    }

    fn peer_message(&mut self, from: u64, to: u64, message: &[u8]) -> Result<(), String> {
        let i = to as usize - 1;
        if self.nodes[i].node.is_none() {
            return Ok(());
        }
        self.counts.peer_messages += 1;
        let now = self.now;
        self.trace.detail(|| {
            let Ok(m) = mqtt_cluster::wire::decode_peer_message(message, CLUSTER_ID, usize::MAX) else {
                return format!("{now:>7} n{from}->n{to} {} bytes (relay or garbage)", message.len());
            };
            let snapshot = m.snapshot.as_ref().map_or(0, |s| s.get_metadata().index);
            format!(
                "{now:>7} n{from}->n{to} {:?} term {} index {} log_term {} entries {} commit {} reject {} hint {} \
                 snapshot {snapshot}",
                m.msg_type,
                m.term,
                m.index,
                m.log_term,
                m.entries.len(),
                m.commit,
                m.reject,
                m.reject_hint,
            )
        });
        self.input(i, NodeInput::Peer { from, message })
    }

    /// Breaks the streams of every pair of nodes a partition cuts in either direction (TCP needs both).
    fn break_cut_streams(&mut self) {
        let n = self.nodes.len() as u64;
        for a in 1..=n {
            for b in a + 1..=n {
                if self.net.is_cut(a, b) || self.net.is_cut(b, a) {
                    self.links
                        .break_pair(self.now, a, b, self.opts.link_observe_ms, &mut self.rng);
                }
            }
        }
    }

    fn deliver_client_bytes(&mut self) -> Result<(), String> {
        while let Some((conn, data)) = self.to_nodes.pop_front() {
            let Some(&(i, _)) = self.conns.get(&conn) else { continue };
            self.input(i, NodeInput::Client(Input::Received { conn, data: &data }))?;
        }
        Ok(())
    }

    fn clients_act(&mut self) -> Result<(), String> {
        for c in 0..self.clients.len() {
            let client = &self.clients[c];
            if client.conn.is_none() {
                if client.reconnect_at <= self.now {
                    self.connect(c)?;
                }
                continue;
            }
            let publishing = self.phase == Phase::Faults;
            if publishing && client.can_publish() && self.rng.gen_range(0..self.opts.publish_every_ms) == 0 {
                let qos = if self.rng.gen_bool(self.opts.qos2_share) {
                    QoS::ExactlyOnce
                } else {
                    QoS::AtLeastOnce
                };
                let retain = self.rng.gen_bool(0.2);
                let data = self.clients[c].publish(qos, retain, &mut self.check);
                self.counts.published += 1;
                self.send_from_client(c, data);
            }
            let client = &self.clients[c];
            if publishing && client.kind == Kind::Volatile && client.connacked && self.rng.gen_range(0..20) == 0 {
                let data = self.clients[c].chatter();
                self.send_from_client(c, data);
            }
        }
        Ok(())
    }

    fn send_from_client(&mut self, c: usize, data: Vec<u8>) {
        if let (Some((conn, _)), false) = (self.clients[c].conn, data.is_empty()) {
            self.to_nodes.push_back((conn, data));
        }
    }

    /// Connects client `c` to any node that is up (`any_node_share` of the time, as behind a load balancer: a
    /// follower relays it to the leader it knows, or closes it if it knows none) or else to a node that says it
    /// leads; retries later if no node is up.
    fn connect(&mut self, c: usize) -> Result<(), String> {
        let leaders: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].node.as_ref().is_some_and(|n| n.is_leader()))
            .collect();
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].node.is_some())
            .collect();
        if up.is_empty() {
            self.clients[c].reconnect_at = self.now + self.rng.gen_range(5..30);
            return Ok(());
        }
        let i = if leaders.is_empty() || self.rng.gen_bool(self.opts.any_node_share) {
            up[self.rng.gen_range(0..up.len())]
        } else {
            leaders[self.rng.gen_range(0..leaders.len())]
        };
        let conn = ConnectionId(self.next_conn);
        self.next_conn += 1;
        self.counts.client_connects += 1;
        self.conns.insert(conn, (i, c));
        let data = self.clients[c].on_open(conn, i);
        self.line(format!(
            "{} connects to n{} ({:?})",
            self.clients[c].name(),
            i + 1,
            conn
        ));
        let peer = format!("10.0.0.{}:1883", c + 1)
            .parse()
            .map_err(|e| format!("address: {e}"))?;
        self.input(
            i,
            NodeInput::Client(Input::Opened {
                conn,
                peer,
                listener: ListenerId(0),
            }),
        )?;
        self.to_nodes.push_back((conn, data));
        Ok(())
    }

    fn close_client(&mut self, conn: ConnectionId) {
        if let Some(global) = self.relayed.remove(&conn) {
            self.streams.forget(global);
        }
        if let Some((_, c)) = self.conns.remove(&conn) {
            let at = self.now + self.rng.gen_range(1..40);
            self.clients[c].on_closed(at);
            self.line(format!("{} disconnected ({conn:?})", self.clients[c].name()));
        }
    }

    fn input(&mut self, i: usize, input: NodeInput<'_>) -> Result<(), String> {
        let now = Time(self.now);
        let Some(node) = self.nodes[i].node.as_mut() else {
            return Ok(());
        };
        node.handle_input(now, input);
        self.drain(i)
    }

    /// Takes node `i`'s outputs into its driver queue and acts on what it can (see `flush`).
    fn drain(&mut self, i: usize) -> Result<(), String> {
        while let Some(output) = self.nodes[i].node.as_mut().and_then(|n| n.poll_output()) {
            self.nodes[i].pending.push_back(output);
        }
        self.flush(i)?;
        let id = self.nodes[i].id;
        // Compared only while everything the node wrote is durable: entries are applied only once durable (see
        // `NodeOutput::ConfirmDurable`), but an installed snapshot counts as applied before its write is synced.
        // Nothing acts on that before the sync (the ordering rule), and a crash meanwhile discards it with the rest
        // of the node's memory; a node whose writes are all durable has applied only entries a majority holds.
        let settled = self.nodes[i].pending.is_empty() && !self.nodes[i].disk.has_unsynced();
        if let (Some(node), true) = (self.nodes[i].node.as_ref(), settled) {
            let (applied, digest) = (node.applied(), node.applied_digest());
            self.check.applied(id, applied, digest)?;
        }
        Ok(())
    }

    /// Acts on node `i`'s queued outputs in order. Writes go to the disk's volatile buffer; anything else waits
    /// until the disk has synced what came before it (the node's ordering rule), which on a slow disk takes
    /// `disk_latency` ms, while the node takes further inputs.
    fn flush(&mut self, i: usize) -> Result<(), String> {
        self.flush_outputs(i)?;
        // Everything before the confirmation is synced: the node may count it now (and act on what that frees).
        for (peer, message) in std::mem::take(&mut self.nodes[i].relays_dropped) {
            self.counts.relays_dropped += 1;
            self.input(
                i,
                NodeInput::RelayDropped {
                    peer,
                    message: &message,
                },
            )?;
        }
        while let Some(number) = self.nodes[i].durable.take() {
            let (now, id) = (self.now, self.nodes[i].id);
            self.trace
                .detail(|| format!("{now:>7} n{id} synced: durable through ready {number}"));
            self.input(i, NodeInput::Durable(number))?;
        }
        Ok(())
    }

    fn flush_outputs(&mut self, i: usize) -> Result<(), String> {
        let id = self.nodes[i].id;
        while let Some(output) = self.nodes[i].pending.pop_front() {
            let write = match output {
                NodeOutput::PersistEntries(entries) => Some(Write::Entries(entries)),
                NodeOutput::PersistHardState(hs) => Some(Write::HardState(hs)),
                NodeOutput::PersistSnapshot { snapshot, discard_log } => {
                    Some(Write::Snapshot { snapshot, discard_log })
                }
                // A leader's appends need not wait for its own write of the same entries, nor does a snapshot (it
                // promises nothing: the node compacts only once it is written).
                early @ (NodeOutput::PeerEarly { .. } | NodeOutput::TakeSnapshot(_)) => {
                    self.act(i, id, early)?;
                    None
                }
                other => {
                    if self.nodes[i].disk.has_unsynced() {
                        if self.nodes[i].sync_at.is_none() && self.write_ahead(i) {
                            return Ok(());
                        }
                        if !self.sync_done(i) {
                            self.nodes[i].pending.push_front(other);
                            return Ok(());
                        }
                    }
                    self.act(i, id, other)?;
                    None
                }
            };
            if let Some(write) = write {
                if self.write(i, write) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Group commit: before a sync starts, every write still queued goes to the disk too, so one sync covers them
    /// all (writing later records early is harmless; acting early on what follows them is not). Without it a
    /// slow disk falls further behind with every write. Returns whether the node crashed meanwhile.
    fn write_ahead(&mut self, i: usize) -> bool {
        let queued = std::mem::take(&mut self.nodes[i].pending);
        let (writes, rest): (VecDeque<NodeOutput>, VecDeque<NodeOutput>) = queued.into_iter().partition(|o| {
            matches!(
                o,
                NodeOutput::PersistEntries(_) | NodeOutput::PersistHardState(_) | NodeOutput::PersistSnapshot { .. }
            )
        });
        self.nodes[i].pending = rest;
        for output in writes {
            let write = match output {
                NodeOutput::PersistEntries(entries) => Write::Entries(entries),
                NodeOutput::PersistHardState(hs) => Write::HardState(hs),
                NodeOutput::PersistSnapshot { snapshot, discard_log } => Write::Snapshot { snapshot, discard_log },
                _ => continue,
            };
            if self.write(i, write) {
                return true;
            }
        }
        false
    }

    /// One write into node `i`'s volatile disk buffer. A crash planned "in the middle" strikes right after the
    /// node's k-th next write, before its sync; returns whether it did.
    fn write(&mut self, i: usize, write: Write) -> bool {
        if let Write::Entries(entries) = &write {
            self.check.entries_written(entries);
        }
        let (now, id) = (self.now, self.nodes[i].id);
        self.trace.detail(|| match &write {
            Write::Entries(entries) => format!(
                "{now:>7} n{id} writes entries {}..={} (term {}), unsynced",
                entries.first().map_or(0, |e| e.index),
                entries.last().map_or(0, |e| e.index),
                entries.last().map_or(0, |e| e.term),
            ),
            Write::HardState(hs) => format!(
                "{now:>7} n{id} writes hard state term {} vote {} commit {}, unsynced",
                hs.term, hs.vote, hs.commit
            ),
            Write::Snapshot { snapshot, .. } => {
                format!(
                    "{now:>7} n{id} writes snapshot {}, unsynced",
                    snapshot.get_metadata().index
                )
            }
        });
        self.nodes[i].disk.write(write);
        if let Some(left) = self.nodes[i].crash_after_writes.as_mut() {
            if *left == 0 {
                self.crash(i, "right after a write, before its sync");
                return true;
            }
            *left -= 1;
        }
        false
    }

    /// Whether node `i`'s disk has synced: at once on a fast disk, `disk_latency` ms after the sync began on a
    /// slow one.
    fn sync_done(&mut self, i: usize) -> bool {
        let node = &mut self.nodes[i];
        let done = match node.sync_at {
            _ if node.disk_latency == 0 => true,
            None => {
                node.sync_at = Some(self.now + node.disk_latency);
                false
            }
            Some(at) => at <= self.now,
        };
        if done {
            node.sync_at = None;
            node.disk.sync();
        }
        done
    }

    fn act(&mut self, i: usize, id: u64, output: NodeOutput) -> Result<(), String> {
        match output {
            NodeOutput::Peer { to, message } | NodeOutput::PeerEarly { to, message } => {
                let now = self.now;
                let relay = mqtt_cluster::relay::is_relay(&message);
                if relay {
                    self.tap_relay(&message);
                }
                if relay || self.opts.raft_on_links {
                    let queued = self.links.send(now, id, to, message.clone(), &mut self.rng);
                    // A relay message must not vanish at a full queue (see `NodeInput::RelayDropped`).
                    if !queued && relay {
                        if mqtt_cluster::relay::ends_stream(&message) {
                            self.links.send_notice(now, id, to, message, &mut self.rng);
                        } else {
                            self.nodes[i].relays_dropped.push((to, message));
                        }
                    }
                } else {
                    self.net.send(now, id, to, message, &mut self.rng);
                }
            }
            NodeOutput::Client(Output::Transmit { conn, data }) => {
                if let Some(&(_, c)) = self.conns.get(&conn) {
                    if let Some(global) = self.relayed.get(&conn) {
                        let name = self.clients[c].name();
                        self.streams.client_received(&name, *global, &data)?;
                    }
                    let was_connacked = self.clients[c].connacked;
                    let reply = self.clients[c].on_bytes(&data, &mut self.check)?;
                    if !was_connacked && self.clients[c].connacked && self.relayed.contains_key(&conn) {
                        self.counts.relayed_connacks += 1;
                    }
                    let disks: Vec<&Disk> = self.nodes.iter().map(|n| &n.disk).collect();
                    self.check.verify_acks(&disks)?;
                    self.send_from_client(c, reply);
                }
            }
            NodeOutput::Client(Output::Close { conn }) => self.close_client(conn),
            NodeOutput::Client(Output::Event(_)) => {}
            NodeOutput::Client(Output::Persist(record)) => {
                return Err(format!(
                    "n{id} handed a record to the driver instead of replicating it: {record:?}"
                ))
            }
            NodeOutput::Event(event) => self.on_event(i, id, event)?,
            NodeOutput::ConfirmDurable(number) => self.nodes[i].durable = Some(number),
            NodeOutput::TakeSnapshot(job) => self.take_snapshot(i, *job)?,
            NodeOutput::PersistEntries(_) | NodeOutput::PersistHardState(_) | NodeOutput::PersistSnapshot { .. } => {
                unreachable!("writes are handled by drain")
            }
        }
        Ok(())
    }

    /// The leader's relayed output on its way to the node holding the client: what the client must receive.
    fn tap_relay(&mut self, message: &[u8]) {
        if let Ok(relayed) = mqtt_cluster::relay::decode(message, CLUSTER_ID) {
            if let mqtt_cluster::relay::RelayKind::Transmit(data) = &relayed.kind {
                self.streams.leader_sent(relayed.conn, data);
            }
        }
    }

    fn on_event(&mut self, _i: usize, id: u64, event: ClusterEvent) -> Result<(), String> {
        match &event {
            ClusterEvent::ClientRelayed { conn, global, .. } => {
                self.counts.relayed_connects += 1;
                self.relayed.insert(*conn, *global);
            }
            ClusterEvent::RelaysClosed { closed, .. } => self.counts.relays_closed += *closed as u64,
            ClusterEvent::RelayGap { .. } => self.counts.relay_gaps += 1,
            ClusterEvent::Released { index, term, .. } => {
                let disks: Vec<&Disk> = self.nodes.iter().map(|n| &n.disk).collect();
                self.check.released(id, *index, *term, &disks)?;
                return Ok(());
            }
            ClusterEvent::Serving { term, .. } => {
                self.counts.leader_terms += 1;
                self.check.serving(id, *term, self.now)?;
            }
            ClusterEvent::Deposed { .. } => self.check.stopped_serving(id),
            ClusterEvent::RoleChanged { .. } => {}
            ClusterEvent::PeerRefused { .. } => {
                self.counts.refused += 1;
                if self.counts.refused > self.counts.garbage {
                    return Err(format!("n{id} refused a peer message no one corrupted: {event:?}"));
                }
            }
            ClusterEvent::ClientRefused { .. } => self.counts.client_refusals += 1,
            ClusterEvent::SnapshotTaken { .. } => self.counts.snapshots += 1,
            ClusterEvent::SnapshotInstalled { .. } => self.counts.snapshots_installed += 1,
            ClusterEvent::EntryUndecodable { .. }
            | ClusterEvent::SnapshotUndecodable { .. }
            | ClusterEvent::RecoveredLogGap { .. } => return Err(format!("n{id}: {event:?}")),
            _ => {}
        }
        self.line(format!("n{id} {event:?}"));
        Ok(())
    }

    fn start(&mut self, i: usize) {
        let id = self.nodes[i].id;
        let recovered = self.nodes[i].disk.recover();
        let node = Node::new(self.node_config(id), recovered);
        self.links.started(self.now, id);
        self.line(format!("n{id} starts (applied {})", node.applied()));
        self.nodes[i].node = Some(node);
        self.nodes[i].restart_at = None;
        self.nodes[i].crash_after_writes = None;
        if self.now > 0 {
            self.counts.restarts += 1;
        }
    }

    fn crash(&mut self, i: usize, how: &str) {
        let id = self.nodes[i].id;
        self.nodes[i].node = None;
        self.nodes[i].crash_after_writes = None;
        self.nodes[i].pending.clear();
        self.nodes[i].sync_at = None;
        self.nodes[i].durable = None;
        self.nodes[i].relays_dropped.clear();
        // The snapshot thread dies with the process: its write never completes.
        if let Some((_, snapshot)) = self.nodes[i].snapshot.take() {
            self.counts.snapshots_unwritten += 1;
            let index = snapshot.get_metadata().index;
            self.line(format!("n{id} crashes while it writes snapshot {index}"));
        }
        let lost = self.nodes[i].disk.crash(&mut self.rng);
        self.counts.crashes += 1;
        self.counts.writes_lost += lost as u64;
        self.net.drop_to(id);
        self.links.crashed(self.now, id, &mut self.rng);
        self.check.stopped_serving(id);
        let conns: Vec<ConnectionId> = self
            .conns
            .iter()
            .filter(|(_, (n, _))| *n == i)
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            self.close_client(conn);
        }
        let down = self.rng.gen_range(20..2_000);
        self.nodes[i].restart_at = Some(self.now + down);
        self.line(format!(
            "n{id} crashes {how}, {lost} unsynced writes lost; restarts in {down} ms"
        ));
    }

    fn leader_index(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|i| self.nodes[*i].node.as_ref().is_some_and(|n| n.is_leader()))
    }
}
