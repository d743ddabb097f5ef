//! The sans-IO cluster node: raft-rs's `RawNode` beside the broker core, driven like the core itself.
//!
//! One way in, one way out: the driver calls [`Node::handle_input`] with the current time, then drains
//! [`Node::poll_output`] until it returns `None`, then waits until [`Node::poll_timeout`] (or the next input) and
//! calls `handle_input(now, NodeInput::Tick)`.
//!
//! **The ordering rule.** Outputs are in order and the driver acts on them in that order: a `Persist*` output must
//! be durable (written and synced) before the driver acts on any output after it, a peer message or a client
//! transmit alike. This is what makes a vote or an append acknowledgement a promise, and it is the same rule as
//! `sync = "always"`. A driver may batch: write several `Persist*` outputs, sync once, then act on what follows.
//!
//! Who does what: every node applies committed entries (a standby; the [`Image`] they make is brought up to date
//! from the log only when needed, see `image`). The leader also runs the broker: once the first entry of its own
//! term is applied (so every earlier entry is too), it catches the image up, rebuilds the broker with
//! `Broker::restore` from it and starts serving clients. Each broker input's records become one Raft
//! entry; the client outputs that follow the first record wait until that entry is committed and applied (see
//! `release`). A leader that steps down (a higher term, or no word from a quorum within an election timeout:
//! raft-rs's check-quorum) drops its held outputs, closes its clients' connections and its broker.
//!
//! Here: the node's state, its construction from what the driver recovered, the one way in and out, and the Raft
//! clock. Its other jobs, each an `impl Node` of its own: `interface` (the inputs, outputs, events and status
//! types), `raft_ready` (peer messages and raft-rs's ready states), `clients` (the broker's inputs, proposals and
//! the commit rule for its outputs), `leadership` (role changes, serving, deposing), `relaying` (clients held on
//! one node and served by the leader), `snapshots`, and `status` (what can be read of a node).

mod clients;
mod interface;
mod leadership;
mod raft_ready;
mod relaying;
mod snapshots;
mod status;

pub use interface::{ClusterEvent, NodeInput, NodeOutput, NodeStatus, PeerProgress, Role};

use crate::config::{NodeConfig, Recovered};
use crate::failover::Watch;
use crate::image::{apply_entry_data, LazyImage};
use crate::members::{self, MemberChange, MemberChangeError};
use crate::relay::{Relayed, Remote};
use crate::release::Held;
use crate::storage::LogStore;
use crate::wire;
use mqtt_core::broker::{Broker, ConnectionId, Input};
use mqtt_core::persist::{Image, Record};
use mqtt_core::time::Time;
use raft::eraftpb::{ConfState, Entry};
use raft::RawNode;
use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// How many Raft ticks one `Tick` input may catch up on after the driver slept long: beyond this the node resumes
/// from now rather than firing a burst of elections.
const MAX_CATCH_UP_TICKS: u32 = 64;

/// Entry data a new leader applies to its image per input before it serves (see `maybe_serve`): a few ms of work,
/// so its loop goes on answering Raft (heartbeats, appends) while it catches up on up to a snapshot's worth.
const CATCH_UP_BYTES: u64 = 4 << 20;

/// A cluster node. See the module documentation for how to drive it.
pub struct Node {
    config: NodeConfig,
    raft: RawNode<LogStore>,
    /// The applied state, at `applied` once caught up (see `image`).
    image: LazyImage,
    /// Entry data applied since the image was last caught up: a node that does not serve keeps it under
    /// `REPLAY_WINDOW_BYTES` (see `apply`).
    image_lag_bytes: u64,
    applied: u64,
    /// Digest of every entry applied so far (see `wire::fold_digest`).
    digest: u64,
    last_snapshot: u64,
    /// Bytes of entry data applied since the last snapshot, and the size of that snapshot's data.
    applied_bytes: u64,
    last_snapshot_bytes: u64,
    /// Set once this node leads: the index of its term's first entry, applied before it may serve.
    serve_after: Option<u64>,
    broker: Option<Broker>,
    held: Held,
    /// Records produced since the last proposal (see `NodeConfig::propose_per_turn`).
    unproposed: Vec<Record>,
    /// Client connections the broker knows (opened while serving, not yet closed), relayed ones included.
    clients: BTreeSet<ConnectionId>,
    /// On a node that does not serve: its client connections relayed to the leader, by local id.
    relayed: BTreeMap<ConnectionId, Relayed>,
    /// On the leader: the broker's connections whose clients another node holds, by cluster-wide id.
    remote: BTreeMap<ConnectionId, Remote>,
    /// The client connections this node holds the sockets of (served or relayed), watched for a failover.
    watch: BTreeMap<ConnectionId, Watch>,
    /// Peers whose link broke and that have not been heard from since: no new client is relayed to them.
    unreachable: BTreeSet<u64>,
    outputs: VecDeque<NodeOutput>,
    role: Role,
    term: u64,
    leader: Option<u64>,
    now: Time,
    next_tick: Option<Time>,
    rng: ChaCha8Rng,
    /// Brokers built so far, so each gets its own seed.
    brokers_built: u64,
    /// Peers sent a snapshot in the current ready (see `process_ready`).
    snapshots_sent: Vec<u64>,
    /// The index of the snapshot handed to the driver (`NodeOutput::TakeSnapshot`) and not yet written.
    snapshot_in_flight: Option<u64>,
    /// Set once a configuration change removing this node is applied: it serves nothing any more.
    removed: bool,
    /// See `NodeStatus::relays_dropped`.
    relays_dropped: u64,
}

impl Node {
    /// A node from its configuration and what the driver recovered from disk.
    ///
    /// # Panics
    /// On a configuration raft-rs refuses (a zero id, `heartbeat_tick >= election_tick`): a caller's bug, checked
    /// by the driver's configuration loading first.
    pub fn new(mut config: NodeConfig, recovered: Recovered) -> Node {
        // The broker's records are what the cluster replicates: without them nothing would be durable anywhere.
        config.broker.persistence = true;
        let mut store = LogStore::new(ConfState::from((config.voters(), Vec::<u64>::new())));
        let mut image = Image::default();
        let mut digest = 0;
        let mut events = Vec::new();
        if let Some(snapshot) = recovered.snapshot.filter(|s| !s.is_empty()) {
            match wire::decode_snapshot_data(&snapshot.data) {
                Ok((d, i)) => {
                    digest = d;
                    image = i;
                    store.install_snapshot(snapshot);
                }
                Err(error) => events.push(ClusterEvent::SnapshotUndecodable { error }),
            }
        }
        let snapshot_index = store.snapshot_index();
        let mut hs = recovered.hard_state;
        // The snapshot holds committed state only, so the commit index is at least its index (raft-rs insists).
        hs.commit = hs.commit.max(snapshot_index);
        if let Err(index) = store.append(&recovered.entries) {
            events.push(ClusterEvent::RecoveredLogGap { index });
        }
        hs.commit = hs
            .commit
            .min(raft::Storage::last_index(&store).unwrap_or(snapshot_index));
        store.set_hard_state(hs.clone());
        // Committed entries found on disk are applied at once, so the image is current before the first tick.
        let mut applied = snapshot_index;
        let replay: Vec<Entry> = recovered_replay(&config, &store, &recovered.entries, hs.commit);
        // The configuration as of the last applied entry: raft-rs reads it from the store when the node is built.
        let mut conf = store.conf_state().clone();
        let mut removed = false;
        for entry in &replay {
            digest = wire::fold_digest(digest, entry.index, entry.term, &entry.data);
            apply_entry_data(&mut image, entry, &mut events);
            if let Some((_, change)) = members::decode_entry(entry) {
                members::replay(&mut conf, &change);
                removed |= change == MemberChange::Remove { id: config.node_id };
                events.push(ClusterEvent::MembersChanged {
                    index: entry.index,
                    change,
                    voters: conf.voters.clone(),
                });
            }
            applied = applied.max(entry.index);
        }
        store.set_conf_state(conf);
        let raft_config = raft_config(&config, applied);
        // Configuration errors are the caller's (see `# Panics`); nothing from disk or the network reaches here.
        let raft = RawNode::new(&raft_config, store, &slog::Logger::root(slog::Discard, slog::o!()))
            .unwrap_or_else(|e| panic!("invalid cluster node configuration: {e}"));
        let rng = ChaCha8Rng::seed_from_u64(config.seed ^ config.node_id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let term = hs.term;
        let held = Held::new(config.max_held_bytes);
        let mut node = Node {
            config,
            raft,
            image: LazyImage::new(image, applied),
            image_lag_bytes: 0,
            applied,
            digest,
            last_snapshot: snapshot_index,
            applied_bytes: 0,
            last_snapshot_bytes: 0,
            serve_after: None,
            broker: None,
            held,
            unproposed: Vec::new(),
            clients: BTreeSet::new(),
            relayed: BTreeMap::new(),
            remote: BTreeMap::new(),
            watch: BTreeMap::new(),
            unreachable: BTreeSet::new(),
            outputs: VecDeque::new(),
            role: Role::Follower,
            term,
            leader: None,
            now: Time::ZERO,
            next_tick: None,
            rng,
            brokers_built: 0,
            snapshots_sent: Vec::new(),
            snapshot_in_flight: None,
            removed,
            relays_dropped: 0,
        };
        node.outputs.extend(events.into_iter().map(NodeOutput::Event));
        node
    }

    /// Feed one input at time `now`, then drain [`Node::poll_output`].
    pub fn handle_input(&mut self, now: Time, input: NodeInput<'_>) {
        self.now = self.now.max(now);
        if self.next_tick.is_none() {
            self.next_tick = Some(self.now + self.tick_length());
        }
        match input {
            NodeInput::Client(input) => self.handle_client(input),
            // A removed node neither votes nor ticks (see `send_with`).
            NodeInput::Peer { .. } | NodeInput::Tick | NodeInput::PeerUnreachable { .. } if self.removed => {}
            NodeInput::Peer { from, message } => self.handle_peer(from, message),
            NodeInput::Tick => self.handle_tick(),
            NodeInput::PeerUnreachable { peer } => {
                self.raft.report_unreachable(peer);
                if self.unreachable.insert(peer) {
                    self.hasten_election(peer);
                }
                // Relay messages to or from it may have been lost with the connection: the relayed streams end.
                self.close_relays_via(peer);
            }
            NodeInput::Flush => self.propose(),
            NodeInput::RelayDropped { peer, message } => self.relay_dropped(peer, message),
            NodeInput::Durable(number) => {
                self.raft.on_persist_ready(number);
                self.report_applied();
            }
            NodeInput::SnapshotWritten(snapshot) => self.snapshot_written(snapshot),
        }
        self.process_ready();
    }

    /// The next thing the driver must do; drain until `None` after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<NodeOutput> {
        self.outputs.pop_front()
    }

    /// When the node next needs `NodeInput::Tick`. Before its first input, or while a new leader catches its image
    /// up: at once.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.catching_up() {
            return Some(self.now);
        }
        let raft = self.next_tick.unwrap_or(Time::ZERO);
        let broker = self.broker.as_ref().and_then(|b| b.poll_timeout());
        Some(broker.map_or(raft, |b| b.min(raft)))
    }

    /// Proposes adding or removing one voter (see `members`); only the leader does, one change at a time. Returns
    /// the index of the proposed entry: the change takes effect when that entry is applied
    /// (`ClusterEvent::MembersChanged`). Drain [`Node::poll_output`] afterwards, as after an input.
    pub fn request_member_change(&mut self, now: Time, change: MemberChange) -> Result<u64, MemberChangeError> {
        self.now = self.now.max(now);
        if self.removed || self.role != Role::Leader {
            return Err(MemberChangeError::NotLeader {
                leader: self.leader.filter(|l| *l != self.config.node_id),
            });
        }
        change.check(&self.voters())?;
        // raft-rs would turn a second change into an empty entry while the first is unapplied; refuse it instead.
        if self.raft.raft.has_pending_conf() {
            return Err(MemberChangeError::Pending);
        }
        let (cc, context) = change.to_conf_change();
        self.raft
            .propose_conf_change(context, cc)
            .map_err(|e| MemberChangeError::Dropped(e.to_string()))?;
        let index = self.raft.raft.raft_log.last_index();
        self.process_ready();
        Ok(index)
    }

    /// Whether `id` may send this node peer messages: a member of the applied configuration or of the initial one.
    /// (A node being added is in neither on a lagging follower; raft-rs only needs its leader to hear it.)
    fn knows(&self, id: u64) -> bool {
        let conf = self.raft.store().conf_state();
        conf.voters.contains(&id) || conf.learners.contains(&id) || self.config.peers.contains(&id)
    }

    fn tick_length(&mut self) -> Duration {
        let jitter = if self.config.tick_jitter_ms > 0 {
            self.rng.gen_range(0..=self.config.tick_jitter_ms)
        } else {
            0
        };
        Duration::from_millis(self.config.tick_ms.max(1) + jitter)
    }

    fn handle_tick(&mut self) {
        let mut fired = 0;
        while let Some(next) = self.next_tick.filter(|t| *t <= self.now) {
            if fired == MAX_CATCH_UP_TICKS {
                self.next_tick = Some(self.now + self.tick_length());
                break;
            }
            self.raft.tick();
            fired += 1;
            self.next_tick = Some(next + self.tick_length());
        }
        if let Some(broker) = self.broker.as_mut() {
            if broker.poll_timeout().is_some_and(|t| t <= self.now) {
                broker.handle_input(self.now, Input::Tick);
                self.drain_broker();
            }
        }
    }

    fn event(&mut self, event: ClusterEvent) {
        self.outputs.push_back(NodeOutput::Event(event));
    }
}

fn raft_config(config: &NodeConfig, applied: u64) -> raft::Config {
    raft::Config {
        id: config.node_id,
        election_tick: config.election_tick,
        heartbeat_tick: config.heartbeat_tick,
        // One value in the range: raft-rs's thread RNG then has nothing to choose (see `NodeConfig::election_tick`).
        min_election_tick: config.election_tick,
        max_election_tick: config.election_tick + 1,
        applied,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        // A leader that has not heard from a quorum within an election timeout steps down (and stops serving).
        check_quorum: !crate::planted::keep_serving_without_quorum(config),
        // A node cut off and rejoining does not disrupt a healthy leader with a higher term.
        pre_vote: true,
        ..raft::Config::default()
    }
}

/// The recovered entries applied at start-up: those after the snapshot, up to the commit index.
fn recovered_replay(config: &NodeConfig, store: &LogStore, recovered: &[Entry], commit: u64) -> Vec<Entry> {
    if crate::planted::reapply_after_snapshot(config) {
        // Planted: every recovered entry up to the commit, including those the snapshot already holds.
        return recovered.iter().filter(|e| e.index <= commit).cloned().collect();
    }
    store.entries_through(commit).cloned().collect()
}
