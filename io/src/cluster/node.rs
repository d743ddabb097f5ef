//! A cluster node as the driver's core: the sans-IO [`mqtt_cluster::Node`] with its Raft log on disk
//! ([`RaftDisk`]) and its links to the other nodes ([`PeerTransport`]), all on the driver's one loop and clock.
//!
//! The ordering rule of the node (a `Persist*` output is durable before anything after it is acted on) is kept by
//! a group commit: persist outputs are queued on the disk as they come; every other output that follows one is held
//! in order, marked with the write that will carry those persists; once per loop turn (`end_turn`) the disk writes
//! everything queued, once, and a sync thread (`syncer`) syncs it; when that sync completes (the thread wakes the
//! loop) the outputs held for it go out: peer messages to the links, client outputs to the driver. The loop does
//! not wait for the sync meanwhile: it takes further input, and writes the next batch while this one syncs (one sync
//! in flight at a time; the next covers every write since).
//!
//! Two kinds of output need less, and waiting for an unrelated sync would add a disk round trip to every commit:
//! - `PeerEarly` (a leader's appends) goes at once: the followers write while the leader does.
//! - A client output depends only on the entries committed so far (the node releases it then): it waits until
//!   this node's own copy of the log is synced up to the index the node had applied when it handed the output out,
//!   not for entries appended since. Client outputs keep their order among themselves.

use super::disk::{DiskError, RaftDisk, Recovered};
use super::snapshotter::Snapshotter;
use super::syncer::Syncer;
use super::timing;
use super::transport::{PeerEvent, PeerTransport, TransportConfig};
use crate::config::ClusterSettings;
use crate::driver::{Core, CORE_TOKEN_BASE};
use mio::{Registry, Token};
use mqtt_cluster::eraftpb::HardState;
use mqtt_cluster::{
    ClusterEvent, MemberChange, Node, NodeConfig, NodeInput, NodeOutput, PeerError, Role, SharedAuthenticator,
};
use mqtt_core::broker::{Authenticator, Broker, Config as BrokerConfig, Gauges, Input, Output, Stats};
use mqtt_core::persist::Image;
use mqtt_core::time::Time;
use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// The cluster id as the node's peer messages carry it: a 64-bit digest (FNV-1a) of the configured name, so the
/// operator names clusters and the wire carries a fixed-size id. The links' hello carries the name itself.
pub fn cluster_id_digest(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// The node's configuration from the `[cluster]` table and the broker limits.
pub fn node_config(cluster: &ClusterSettings, broker: BrokerConfig, seed: u64) -> NodeConfig {
    let mut config = NodeConfig::new(
        cluster.node_id,
        cluster.voter_ids(),
        cluster_id_digest(&cluster.cluster_id),
    );
    config.tick_ms = cluster.tick.as_millis() as u64;
    // Jitter breaks the symmetry of simultaneous elections (raft-rs's own randomisation is pinned; see NodeConfig).
    config.tick_jitter_ms = (config.tick_ms / 5).max(1);
    config.election_tick = cluster.election_ticks;
    config.heartbeat_tick = cluster.heartbeat_ticks;
    config.max_held_bytes = cluster.max_held_bytes;
    config.snapshot_bytes = cluster.snapshot_bytes;
    config.broker = broker;
    config.broker.persistence = true;
    // Connections are lost in a failover: their wills must survive it, to go out after their delay unless the
    // client resumes in time [MQTT-3.1.2-8, MQTT-3.1.3-9].
    config.broker.durable_wills = true;
    config.seed = seed;
    // Every node serves clients: one that does not lead relays them to the leader.
    config.relay_clients = true;
    // One entry per loop turn (`end_turn` flushes): one append message per follower and one sync carry the turn.
    config.propose_per_turn = true;
    config.joining = cluster.join;
    config
}

/// Opens the node's Raft files in `dir` and builds the node from them.
pub fn open(
    dir: &Path,
    cluster: &ClusterSettings,
    config: NodeConfig,
    repair: bool,
) -> Result<(ClusterCore, Recovered), DiskError> {
    let (disk, recovered) = RaftDisk::open(dir, &cluster.cluster_id, cluster.node_id, repair)?;
    let for_node = mqtt_cluster::Recovered {
        hard_state: recovered.hard_state.clone(),
        snapshot: (recovered.snapshot.get_metadata().index > 0).then(|| recovered.snapshot.clone()),
        entries: recovered.entries.clone(),
    };
    let max_message = config.max_peer_message;
    let authenticator = config.authenticator.clone();
    let recovered_last = (recovered.entries.last().map_or(0, |e| e.index)).max(recovered.snapshot.get_metadata().index);
    let joining = config.joining;
    let node = Node::new(config, for_node);
    // A node removed at run time takes no part again on the same data (a joining one is not a voter until added).
    if node.is_removed() || (!joining && !node.voters().contains(&cluster.node_id)) {
        return Err(DiskError::Removed {
            path: dir.to_path_buf(),
            node_id: cluster.node_id,
            voters: mqtt_cluster::members::join(&node.voters()),
        });
    }
    let transport = TransportConfig {
        node_id: cluster.node_id,
        cluster_id: cluster.cluster_id.clone(),
        peers: cluster.others().map(|p| (p.id, p.address)).collect(),
        listen: cluster.listen,
        max_message,
        token_base: CORE_TOKEN_BASE,
    };
    let core = ClusterCore {
        node,
        disk,
        transport_config: transport,
        transport: None,
        registry: None,
        unsynced: false,
        written: 0,
        synced: 0,
        writes: VecDeque::new(),
        syncer: None,
        held: VecDeque::new(),
        snapshots: Snapshotter::default(),
        durable: None,
        relays_dropped: Vec::new(),
        held_clients: VecDeque::new(),
        appended_index: recovered_last,
        synced_index: recovered_last,
        ready: VecDeque::new(),
        peer_events: Vec::new(),
        failure: None,
        now: Time::ZERO,
        hard_state: recovered.hard_state.clone(),
        lazy_hard_state: None,
        qos0_dropped_logged: (0, None),
        authenticator,
        member_changes: Vec::new(),
        removed_at: None,
    };
    Ok((core, recovered))
}

/// The driver's core in cluster mode.
pub struct ClusterCore {
    node: Node,
    disk: RaftDisk,
    transport_config: TransportConfig,
    /// Bound when the driver attaches its poller.
    transport: Option<PeerTransport>,
    registry: Option<Registry>,
    /// Persist outputs queued on the disk and not yet written.
    unsynced: bool,
    /// Writes of queued persists made so far (a sequence number), and how many of them are synced.
    written: u64,
    synced: u64,
    /// Writes not yet synced: sequence number, and the last entry index the log held after it.
    writes: VecDeque<(u64, u64)>,
    /// The sync thread, once the driver attached the node (before that, syncs happen on the loop).
    syncer: Option<Syncer>,
    /// Outputs that came after a persist not yet synced, in order, each with the write it waits for.
    held: VecDeque<(u64, NodeOutput)>,
    /// The node's own snapshot being encoded and written on a thread (see `snapshotter`).
    snapshots: Snapshotter,
    /// The last `NodeOutput::ConfirmDurable` acted on and not yet handed back to the node.
    durable: Option<u64>,
    /// Relay messages the links could not queue, to hand back to the node (`NodeInput::RelayDropped`).
    relays_dropped: Vec<(u64, bytes::Bytes)>,
    /// Client outputs waiting for the log to be synced through the index paired with each, in order.
    held_clients: VecDeque<(u64, Output)>,
    /// The last entry index handed to the disk, and the last one synced.
    appended_index: u64,
    synced_index: u64,
    /// Client outputs released, for the driver's `poll_output`.
    ready: VecDeque<Output>,
    peer_events: Vec<PeerEvent>,
    failure: Option<String>,
    now: Time,
    /// The newest hard state the node asked to persist.
    hard_state: HardState,
    /// A hard state that differs from the last written one only in its commit index: written with the next sync.
    lazy_hard_state: Option<HardState>,
    /// QoS 0 messages dropped at the held-output bound as last logged, and when (logged at most every 10 s).
    qos0_dropped_logged: (u64, Option<Instant>),
    /// The authenticator every broker of the node shares, for SIGHUP to swap.
    authenticator: Option<SharedAuthenticator>,
    /// Applied membership changes whose links are not set up yet (those replayed before the transport exists).
    member_changes: Vec<MemberChange>,
    /// When this node applied its own removal: it stops shortly after (see `REMOVED_GRACE`).
    removed_at: Option<Instant>,
}

/// The token of the sync thread's wake-ups: above the links' tokens (`CORE_TOKEN_BASE` and the 2^32 after it).
const SYNC_TOKEN: Token = Token(CORE_TOKEN_BASE + (1 << 32));
/// The token of the snapshot thread's wake-ups.
const SNAPSHOT_TOKEN: Token = Token(CORE_TOKEN_BASE + (1 << 32) + 1);

/// How long a removed node keeps running before it stops: its last messages (the commit of its own removal, the
/// DISCONNECTs of its clients) leave meanwhile.
const REMOVED_GRACE: Duration = Duration::from_millis(500);

impl ClusterCore {
    /// The node, for status and tests.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The address other nodes connect to (port 0 resolved), once attached.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.transport.as_ref().map(PeerTransport::local_addr)
    }

    fn input(&mut self, now: Time, input: NodeInput<'_>) {
        self.now = self.now.max(now);
        self.node.handle_input(self.now, input);
        self.pump();
    }

    /// Moves the node's outputs on under the ordering rule.
    fn pump(&mut self) {
        loop {
            self.pump_outputs();
            // The writes before it are synced: the node may count them (see `NodeOutput::ConfirmDurable`).
            if let Some(number) = self.durable.take() {
                self.node.handle_input(self.now, NodeInput::Durable(number));
            } else if !self.relays_dropped.is_empty() {
                for (peer, message) in std::mem::take(&mut self.relays_dropped) {
                    self.node.handle_input(
                        self.now,
                        NodeInput::RelayDropped {
                            peer,
                            message: &message,
                        },
                    );
                }
            } else {
                break;
            }
        }
    }

    fn pump_outputs(&mut self) {
        while let Some(output) = self.node.poll_output() {
            match output {
                NodeOutput::PersistEntries(entries) => {
                    self.disk.append(&entries);
                    // Later entries replace earlier ones from their index on, so the log now ends here.
                    if let Some(last) = entries.last() {
                        self.appended_index = last.index;
                        let step = if self.node.is_leader() { "prop" } else { "app" };
                        timing::step(step, last.index, entries.len() as u64);
                    }
                    self.unsynced = true;
                }
                NodeOutput::PersistHardState(hard_state) => {
                    // Term and vote are promises: durable before anything after them is acted on. The commit index
                    // is not (Raft re-learns it from the leader after a restart; the recovered commit is only ever
                    // lower), so a hard state that moves only the commit index rides along with the next sync
                    // instead of costing one of its own: on the leader that is one sync less per released batch.
                    let same_vote = hard_state.term == self.hard_state.term && hard_state.vote == self.hard_state.vote;
                    self.hard_state = hard_state.clone();
                    if same_vote {
                        self.lazy_hard_state = Some(hard_state);
                    } else {
                        self.lazy_hard_state = None;
                        self.disk.set_hard_state(&hard_state);
                        self.unsynced = true;
                    }
                }
                NodeOutput::PersistSnapshot { snapshot, discard_log } => {
                    // Written and synced at once (with everything queued before it).
                    if discard_log {
                        self.appended_index = snapshot.get_metadata().index;
                    }
                    match self.disk.save_snapshot(&snapshot, discard_log) {
                        Ok(()) => {
                            // Everything queued or written before it is synced with it.
                            if std::mem::take(&mut self.unsynced) {
                                self.written += 1;
                            }
                            self.synced_through(self.written);
                            self.synced_index = self.appended_index;
                        }
                        Err(e) => self.fail(&e),
                    }
                }
                NodeOutput::PeerEarly { .. } => self.act(output),
                // Not a promise (nothing after it waits for it): off to the snapshot thread at once.
                NodeOutput::TakeSnapshot(job) => {
                    let index = job.index();
                    let path = self.disk.snapshot_scratch_path();
                    if let Err(e) = self.hand_over(index) {
                        self.fail(&e);
                        continue;
                    }
                    match self.snapshots.start(*job, path) {
                        Ok(()) => log::debug!("cluster: snapshot at index {index} frozen, written in the background"),
                        Err(e) => self.fail(&e),
                    }
                }
                NodeOutput::Client(output) => {
                    let needs = self.node.applied();
                    if self.held_clients.is_empty() && needs <= self.synced_index {
                        timing::step("rel", needs, 0);
                        self.ready.push_back(output);
                    } else {
                        self.held_clients.push_back((needs, output));
                    }
                }
                // After a persist not yet written: wait for the write that will carry it.
                other if self.unsynced => self.held.push_back((self.written + 1, other)),
                // After writes still syncing (or behind held output): wait for them too, as raft-rs's messages
                // that follow a persist promise every earlier persist durable (a follower's answer to a repeated
                // append speaks for entries an earlier write carries).
                other if self.synced < self.written || !self.held.is_empty() => {
                    self.held.push_back((self.written, other))
                }
                other => self.act(other),
            }
        }
    }

    fn act(&mut self, output: NodeOutput) {
        match output {
            NodeOutput::Client(output) => self.ready.push_back(output),
            NodeOutput::Peer { to, message } | NodeOutput::PeerEarly { to, message } => {
                timing::step("queue", to, message.len() as u64);
                let Some(transport) = self.transport.as_mut() else {
                    return;
                };
                if transport.send(to, &message) || !mqtt_cluster::relay::is_relay(&message) {
                    // A Raft message may be dropped: Raft sends it again.
                    return;
                }
                // A relay message may not: the stream would go on with a hole (see `NodeInput::RelayDropped`).
                if mqtt_cluster::relay::ends_stream(&message) {
                    transport.send_notice(to, &message);
                } else {
                    self.relays_dropped.push((to, message));
                }
            }
            NodeOutput::Event(event) => {
                log_event(&event);
                match &event {
                    ClusterEvent::PeerRefused { from, error } => self.drop_bad_peer(*from, error),
                    ClusterEvent::MembersChanged { change, .. } => {
                        self.member_changes.push(change.clone());
                        self.apply_member_changes();
                    }
                    ClusterEvent::Removed { .. } => {
                        self.removed_at.get_or_insert_with(Instant::now);
                    }
                    _ => {}
                }
            }
            NodeOutput::ConfirmDurable(number) => self.durable = Some(number),
            // Handled in `pump`: never held.
            NodeOutput::PersistEntries(_)
            | NodeOutput::PersistHardState(_)
            | NodeOutput::PersistSnapshot { .. }
            | NodeOutput::TakeSnapshot(_) => {}
        }
    }

    /// A message that is not a well-formed Raft message of this cluster from the node it claims to be from
    /// drops the connection it came on (nothing of it was applied). A message raft-rs merely declined (stale) does
    /// not: that happens between healthy nodes.
    fn drop_bad_peer(&mut self, from: u64, error: &PeerError) {
        if matches!(error, PeerError::Refused(_)) {
            return;
        }
        if let (Some(transport), Some(registry)) = (self.transport.as_mut(), self.registry.as_ref()) {
            log::error!("cluster: dropping the connection of node {from} ({error})");
            transport.drop_peer(registry, from);
        }
    }

    /// Writes the commit index through what is synced here, before a removed node stops: the commit otherwise rides
    /// along with the next sync, and a removed node syncs nothing more, so its data directory would not show the
    /// removal as committed and would start it again as a member.
    fn persist_commit(&mut self) {
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(self.node.status().commit.min(self.synced_index));
        self.lazy_hard_state = None;
        self.disk.set_hard_state(&hs);
        if let Err(e) = self.disk.commit() {
            log::error!("cluster: the Raft log cannot be written ({e})");
        }
    }

    /// Sets up or drops the links of members added or removed (once the transport exists).
    fn apply_member_changes(&mut self) {
        let (Some(transport), Some(registry)) = (self.transport.as_mut(), self.registry.as_ref()) else {
            return;
        };
        for change in std::mem::take(&mut self.member_changes) {
            match change {
                MemberChange::Add { id, address } => match address.parse() {
                    Ok(address) => transport.add_peer(registry, id, address, Instant::now()),
                    Err(_) => log::error!(
                        "cluster: member {id} was added with the address {address:?}, which is not an IP address and \
                         port; this node cannot reach it"
                    ),
                },
                MemberChange::Remove { id } => transport.remove_peer(registry, id),
            }
        }
    }

    /// `cluster add-node` / `remove-node` on this node: proposed if it leads (see `admin`).
    fn member_request(&mut self, token: usize, change: MemberChange) {
        log::info!("cluster: membership change requested: {change:?}");
        let result = self
            .node
            .request_member_change(self.now, change)
            .map_err(|e| e.to_string());
        match &result {
            Ok(index) => log::info!("cluster: membership change proposed at index {index}"),
            Err(why) => log::warn!("cluster: membership change refused: {why}"),
        }
        self.pump();
        let answer = super::admin::encode_answer(&result);
        if let (Some(transport), Some(registry)) = (self.transport.as_mut(), self.registry.as_ref()) {
            transport.answer_status(registry, token, &answer);
        }
    }

    /// The node-to-node addresses this node knows, its own included, for status answers.
    fn addresses(&self) -> Vec<(u64, std::net::SocketAddr)> {
        let mut all = self
            .transport
            .as_ref()
            .map(PeerTransport::peer_addresses)
            .unwrap_or_default();
        all.push((self.node.node_id(), self.transport_config.listen));
        all.sort_unstable();
        all
    }

    /// The group commit: one write for everything persisted since the last, a sync of it started (unless one is in
    /// flight: the next covers it), then what waited on syncs completed so far.
    fn commit(&mut self) {
        if self.failure.is_some() {
            // Nothing more may be promised.
            self.held.clear();
            self.held_clients.clear();
            return;
        }
        if self.unsynced {
            if let Some(hard_state) = self.lazy_hard_state.take() {
                self.disk.set_hard_state(&hard_state);
            }
            if let Err(e) = self.disk.write() {
                self.fail(&e);
                self.held.clear();
                self.held_clients.clear();
                return;
            }
            self.unsynced = false;
            self.written += 1;
            self.writes.push_back((self.written, self.appended_index));
            timing::step("write", self.appended_index, self.written);
        }
        self.sync_completed();
    }

    /// Takes a completed sync (if any), starts the next one if writes wait for it, and releases what is durable.
    fn sync_completed(&mut self) {
        if let Some((seq, result)) = self.syncer.as_mut().and_then(Syncer::completed) {
            match result {
                Ok(()) => self.synced_through(seq),
                Err(e) => {
                    let error = self.disk.sync_error(e);
                    self.fail(&error);
                }
            }
        }
        if self.failure.is_some() {
            self.held.clear();
            self.held_clients.clear();
            return;
        }
        self.start_sync();
        self.release_durable();
    }

    /// Asks for a sync of every write made so far, unless they are synced or already asked for. The sync thread
    /// runs one at a time: this one starts when the one in flight returns, without waiting for the loop.
    fn start_sync(&mut self) {
        let requested = self.syncer.as_ref().and_then(Syncer::in_flight).unwrap_or(0);
        if self.synced == self.written || requested >= self.written {
            return;
        }
        let seq = self.written;
        if let Some(syncer) = self.syncer.as_mut() {
            match self.disk.sync_handle() {
                Ok(file) => {
                    if syncer.request(seq, file) {
                        return;
                    }
                }
                Err(e) => {
                    self.fail(&e);
                    return;
                }
            }
        }
        // No sync thread (not attached yet, or it is gone): sync on the loop.
        match self.disk.sync() {
            Ok(()) => self.synced_through(seq),
            Err(e) => self.fail(&e),
        }
    }

    /// Writes up to sequence number `seq` are synced.
    fn synced_through(&mut self, seq: u64) {
        self.synced = self.synced.max(seq);
        while let Some(&(w, index)) = self.writes.front() {
            if w > self.synced {
                break;
            }
            self.synced_index = index;
            self.writes.pop_front();
        }
        timing::step("synced", self.synced_index, seq);
    }

    /// The held outputs whose persists are synced go out, in order.
    fn release_durable(&mut self) {
        while self
            .held_clients
            .front()
            .is_some_and(|(needs, _)| *needs <= self.synced_index)
        {
            if let Some((needs, output)) = self.held_clients.pop_front() {
                timing::step("rel", needs, 1);
                self.ready.push_back(output);
            }
        }
        while self.held.front().is_some_and(|(w, _)| *w <= self.synced) {
            if let Some((_, output)) = self.held.pop_front() {
                self.act(output);
            }
        }
        // A `ConfirmDurable` among them: the node counts those writes now (and may commit and release on them).
        if self.durable.is_some() || !self.relays_dropped.is_empty() {
            self.pump();
        }
    }

    fn fail(&mut self, error: &DiskError) {
        log::error!("cluster: the Raft log cannot be written ({error}); this node stops");
        self.failure = Some(format!("cluster: the Raft log cannot be written: {error}"));
    }

    fn log_qos0_drops(&mut self) {
        let dropped = self.node.held_qos0_dropped();
        let (logged, at) = self.qos0_dropped_logged;
        if dropped == logged || at.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            return;
        }
        log::warn!(
            "cluster: {} QoS 0 message(s) dropped (total {dropped}): client output waiting for commits reached \
             max_held_bytes",
            dropped - logged
        );
        self.qos0_dropped_logged = (dropped, Some(Instant::now()));
    }

    /// The messages of this loop turn go out, one write per link.
    fn flush_links(&mut self) {
        if let (Some(transport), Some(registry)) = (self.transport.as_mut(), self.registry.as_ref()) {
            timing::step("flush", self.appended_index, self.synced_index);
            transport.flush(registry, Instant::now(), &mut self.peer_events);
        }
    }

    /// Feeds what the links reported to the node.
    fn deliver_peer_events(&mut self) {
        while !self.peer_events.is_empty() {
            let events = std::mem::take(&mut self.peer_events);
            for event in events {
                match event {
                    PeerEvent::Message { from, data } => {
                        timing::step("recv", from, data.len() as u64);
                        self.input(self.now, NodeInput::Peer { from, message: &data });
                        timing::step("applied", self.node.applied(), self.appended_index);
                    }
                    PeerEvent::Unreachable { peer } => self.input(self.now, NodeInput::PeerUnreachable { peer }),
                    PeerEvent::MemberRequest { token, change } => self.member_request(token, change),
                    PeerEvent::StatusRequest { token } => {
                        let answer = super::status::encode_answer(&self.node.status(), &self.addresses());
                        if let (Some(transport), Some(registry)) = (self.transport.as_mut(), self.registry.as_ref()) {
                            transport.answer_status(registry, token, &answer);
                        }
                    }
                }
            }
        }
    }
}

fn log_event(event: &ClusterEvent) {
    match event {
        ClusterEvent::RoleChanged { role, term, leader } => {
            log::info!("cluster: now {role:?} in term {term}, leader {leader:?}")
        }
        ClusterEvent::Serving { term, applied } => {
            log::info!("cluster: leading term {term}, serving clients from the image at index {applied}")
        }
        ClusterEvent::Deposed { term, dropped, closed } => log::warn!(
            "cluster: stopped leading in term {term}: {dropped} uncommitted output(s) dropped, {closed} client(s) closed"
        ),
        ClusterEvent::PeerRefused { from, error } => {
            log::error!("cluster: message from node {from} refused, nothing applied: {error}")
        }
        ClusterEvent::ClientRefused { conn, leader } => {
            log::info!("cluster: client conn {} refused: not the leader (leader: {leader:?})", conn.0)
        }
        ClusterEvent::ClientRelayed { conn, global, leader } => {
            log::info!("cluster: client conn {} relayed to node {leader} as conn {:#x}", conn.0, global.0)
        }
        ClusterEvent::RelaysClosed { peer, closed } => {
            log::info!("cluster: {closed} relayed connection(s) through node {peer} closed")
        }
        ClusterEvent::RelayDropped { peer, conn } => log::warn!(
            "cluster: relayed conn {:#x} closed on both sides: a message for node {peer} could not be queued \
             (its link's queue is full)",
            conn.0
        ),
        ClusterEvent::RelayGap { conn, expected, got } => log::warn!(
            "cluster: relayed conn {:#x} closed: message {got} arrived where {expected} was due (the link dropped one)",
            conn.0
        ),
        ClusterEvent::RelayedPreconnectBudgetExceeded { conn } => log::warn!(
            "cluster: conn {}: bytes of CONNECTs relayed and not yet whole exceed max_preconnect_bytes: closed",
            conn.0
        ),
        ClusterEvent::Released { .. } => log::trace!("cluster: {event:?}"),
        ClusterEvent::MembersChanged { index, change, voters } => log::info!(
            "cluster: membership change at index {index} applied: {change:?}; voters now {}",
            mqtt_cluster::members::join(voters)
        ),
        ClusterEvent::Removed { index } => log::error!(
            "cluster: this node was removed from the cluster at index {index}: it serves no clients and stops"
        ),
        other => log::info!("cluster: {other:?}"),
    }
}

impl Core for ClusterCore {
    fn handle_input(&mut self, now: Time, input: Input<'_>) {
        let input = match input {
            // The node's tick fires Raft's tick and the broker's timers alike.
            Input::Tick => NodeInput::Tick,
            other => NodeInput::Client(other),
        };
        self.input(now, input);
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.ready.pop_front()
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.node.poll_timeout()
    }

    fn image(&self) -> Image {
        self.node.image()
    }

    /// The counters of the broker this node runs while it leads; zero on a node that does not lead.
    fn stats(&self) -> Stats {
        self.node.broker().map(|b| b.stats().clone()).unwrap_or_default()
    }

    fn gauges(&self) -> Gauges {
        self.node.broker().map(Broker::gauges).unwrap_or_default()
    }

    /// The leader's broker decodes its clients' packets; a follower relays them, and counts what the leader holds
    /// of each (so the input budget holds on every node).
    fn partial_input(&self, conn: mqtt_core::broker::ConnectionId) -> mqtt_core::broker::PartialInput {
        self.node.partial_input(conn)
    }

    fn unsent_output(&self, conn: mqtt_core::broker::ConnectionId) -> usize {
        self.node.broker().map_or(0, |b| b.unsent_output(conn))
    }

    /// SIGHUP: the node's current broker and every broker it builds later check the freshly loaded files.
    fn set_authenticator(&mut self, authenticator: Box<dyn Authenticator>) {
        if let Some(shared) = &self.authenticator {
            shared.replace(authenticator);
        }
    }

    fn cluster_health(&self) -> Option<(crate::http::ClusterHealth, u64)> {
        let status = self.node.status();
        let role = match status.role {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::PreCandidate => "pre-candidate",
        };
        let health = crate::http::ClusterHealth {
            node_id: status.id,
            role,
            term: status.term,
            leader: status.leader,
            applied: status.applied,
        };
        Some((health, status.held_qos0_dropped))
    }

    fn attach(&mut self, registry: &Registry) -> io::Result<()> {
        let transport = PeerTransport::bind(registry, self.transport_config.clone(), Instant::now()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot listen for cluster nodes on {}: {e}",
                    self.transport_config.listen
                ),
            )
        })?;
        self.transport = Some(transport);
        self.syncer = Some(Syncer::start(registry, SYNC_TOKEN)?);
        self.snapshots.attach(registry, SNAPSHOT_TOKEN)?;
        self.registry = Some(registry.try_clone()?);
        self.apply_member_changes();
        Ok(())
    }

    fn owns(&self, token: Token) -> bool {
        token == SYNC_TOKEN || token == SNAPSHOT_TOKEN || self.transport.as_ref().is_some_and(|t| t.owns(token))
    }

    fn io_event(&mut self, now: Time, event: &mio::event::Event) {
        self.now = self.now.max(now);
        timing::step("ev", event.token().0 as u64, 0);
        if self.syncer.as_ref().is_some_and(|s| s.token() == event.token()) {
            // A sync completed: what waited for it goes out now, not at the end of the turn.
            self.sync_completed();
            return;
        }
        if event.token() == SNAPSHOT_TOKEN {
            self.snapshot_completed();
            return;
        }
        if let (Some(transport), Some(registry)) = (self.transport.as_mut(), self.registry.as_ref()) {
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            transport.handle_event(
                registry,
                event.token(),
                readable,
                event.is_writable(),
                Instant::now(),
                &mut self.peer_events,
            );
        }
        self.deliver_peer_events();
    }

    fn end_turn(&mut self, now: Time) {
        self.now = self.now.max(now);
        timing::step("turn", self.node.applied(), self.appended_index);
        // Also here, not only on the thread's wake-up: before the driver attached the node there is none.
        self.snapshot_completed();
        if let (Some(transport), Some(registry)) = (self.transport.as_mut(), self.registry.as_ref()) {
            transport.on_timers(registry, Instant::now(), &mut self.peer_events);
            transport.read_more(registry, &mut self.peer_events);
        }
        self.deliver_peer_events();
        if self.node.has_unproposed() {
            self.input(self.now, NodeInput::Flush);
        }
        // What needed no sync leaves before it: the leader's appends then reach the followers while it syncs its own
        // copy, so the two syncs of a commit overlap instead of following each other.
        self.flush_links();
        self.commit();
        self.flush_links();
        // Sending what the commit released may have failed a link; the node hears of it now.
        self.deliver_peer_events();
        if self.node.has_unproposed() {
            self.input(self.now, NodeInput::Flush);
        }
        self.commit();
        self.flush_links();
        self.log_qos0_drops();
    }

    fn io_deadline(&self) -> Option<Instant> {
        // Held output waits for the sync in flight, whose completion wakes the loop; with none in flight it goes
        // at the end of the next turn.
        let syncing = self.syncer.as_ref().and_then(Syncer::in_flight).is_some();
        let held = !syncing && (!self.held.is_empty() || !self.held_clients.is_empty());
        let pending = self.unsynced || held || !self.peer_events.is_empty();
        let pending = pending || self.node.has_unproposed();
        let pending = pending || self.transport.as_ref().is_some_and(PeerTransport::has_unfinished_reads);
        let held = pending.then(Instant::now);
        let links = self.transport.as_ref().and_then(PeerTransport::next_deadline);
        let stop = self.removed_at.map(|at| at + REMOVED_GRACE);
        held.into_iter().chain(links).chain(stop).min()
    }

    fn failure(&mut self) -> Option<String> {
        if self.failure.is_none() && self.removed_at.is_some_and(|at| at.elapsed() >= REMOVED_GRACE) {
            self.removed_at = None;
            self.persist_commit();
            return Some(format!(
                "cluster: node {} was removed from the cluster by a configuration change; it stops (its data \
                 directory will not start it again)",
                self.node.node_id()
            ));
        }
        self.failure.take()
    }
}

mod snapshot;
#[cfg(test)]
mod tests;
