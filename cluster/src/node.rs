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

use crate::config::{NodeConfig, Recovered};
use crate::failover::Watch;
use crate::image::{apply_entry_data, LazyImage, REPLAY_WINDOW_BYTES};
use crate::members::{self, MemberChange, MemberChangeError};
use crate::relay::{self, RelayKind, RelayMessage, Relayed, Remote};
use crate::release::Held;
use crate::snapshot::SnapshotJob;
use crate::storage::LogStore;
use crate::wire::{self, DataError, PeerError};
use bytes::Bytes;
use mqtt_core::broker::{Broker, ConnectionId, Input, Output, PartialInput};
use mqtt_core::persist::{Image, Record};
use mqtt_core::time::Time;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message, Snapshot};
use raft::{RawNode, StateRole};
use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// An event from the driver.
#[derive(Debug)]
pub enum NodeInput<'a> {
    /// A client transport event, as for a single broker. The leader serves clients; with
    /// `NodeConfig::relay_clients` any other node that knows the leader relays them to it (see `relay`), else a
    /// connection opened on a node that does not serve is closed at once (`ClusterEvent::ClientRefused`).
    Client(Input<'a>),
    /// One whole peer message as it came off the wire from node `from` (the transport's framing removed).
    Peer { from: u64, message: &'a [u8] },
    /// Time has passed; fire the Raft tick and the broker's timers that are due.
    Tick,
    /// The transport could not reach `peer` (connection refused or dropped); raft-rs then probes it gently.
    PeerUnreachable { peer: u64 },
    /// The driver could not queue this relay message for `peer` (its link's queue is full, or the message is over
    /// the bound): the relayed connection it belongs to is closed on both sides, loudly
    /// (`ClusterEvent::RelayDropped`), instead of going on with a hole that, at the end of a stream, no later
    /// message would reveal. The client reconnects and resumes its session. A message that ends a stream
    /// (`relay::ends_stream`) is never dropped at a full queue, so the other side always hears of the close.
    RelayDropped { peer: u64, message: &'a [u8] },
    /// The `Persist*` outputs before the `NodeOutput::ConfirmDurable` that carried this number are durable (the
    /// driver hands it back when it acts on that output). Only then does raft-rs count them: a leader toward a
    /// commit, any node toward what it may apply.
    Durable(u64),
    /// With `NodeConfig::propose_per_turn`: propose the records of the inputs since the last `Flush` as one entry.
    /// A driver sends it once per loop turn, before it writes and syncs (so one entry, one append message per
    /// follower and one sync carry the whole turn). Without that setting each input's records are proposed at once.
    Flush,
    /// The snapshot of a `NodeOutput::TakeSnapshot` is durable (written, synced and in place: a restart recovers
    /// from it): the node compacts its log up to it and serves it to followers that lag behind.
    SnapshotWritten(Snapshot),
}

/// What the driver must do, in order (see the ordering rule in the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub enum NodeOutput {
    /// A broker output for a client connection: `Transmit`, `Close` or `Event`, never `Persist` (records travel
    /// as Raft entries). Released only under the commit rule.
    Client(Output),
    /// Send this message to peer `to`. It is self-contained (header and protobuf body); the transport adds its
    /// own length prefix. It may be dropped: Raft retries.
    Peer { to: u64, message: Bytes },
    /// Send this message to peer `to` without waiting for the `Persist*` outputs before it: a leader's appends
    /// and heartbeats, which raft-rs lets leave while the leader writes the same entries (raft thesis 10.2.1), so
    /// the leader's and the followers' syncs overlap. A driver may also treat it as `Peer` (later is always safe).
    PeerEarly { to: u64, message: Bytes },
    /// Append these entries to the durable log. The first one's index may be at or below the last stored entry:
    /// everything from that index on is replaced.
    PersistEntries(Vec<Entry>),
    /// Store the hard state (term, vote, commit) durably, replacing the previous one.
    PersistHardState(HardState),
    /// Store this snapshot durably, replacing the previous one. Then, with `discard_log`, drop every log entry
    /// (the snapshot came from the leader and replaces a log that disagreed); without it, entries at or below the
    /// snapshot's index may be dropped (log compaction) and later ones must be kept.
    PersistSnapshot { snapshot: Snapshot, discard_log: bool },
    /// Encode this frozen image (`SnapshotJob::encode`) and store it durably as the next snapshot, as
    /// `PersistSnapshot` without `discard_log` does, then hand it back as `NodeInput::SnapshotWritten`. Not a
    /// promise: nothing after it waits for it, so the driver does it off its loop, taking as long as it takes (one
    /// at a time: the node asks for no other meanwhile). Until it is handed back the log keeps every entry, and a
    /// snapshot the driver never finishes (a crash) costs nothing but the work.
    TakeSnapshot(Box<SnapshotJob>),
    /// Everything before this output is durable once the driver acts on it (the ordering rule): the driver then
    /// gives the number back as `NodeInput::Durable`, at once or after other inputs. Until then a leader does not
    /// count its own copy of these entries toward a commit (a commit counted on an unsynced write, announced to the
    /// followers, and lost in a crash would be a committed entry lost), and no node applies them.
    ConfirmDurable(u64),
    /// Something worth logging.
    Event(ClusterEvent),
}

/// A node's role in the Raft group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl From<StateRole> for Role {
    fn from(role: StateRole) -> Role {
        match role {
            StateRole::Follower => Role::Follower,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Candidate => Role::Candidate,
            StateRole::Leader => Role::Leader,
        }
    }
}

/// A notable happening in the cluster layer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterEvent {
    RoleChanged {
        role: Role,
        term: u64,
        leader: Option<u64>,
    },
    /// This node leads and has rebuilt its broker from the image at `applied`: it serves clients from now on.
    Serving {
        term: u64,
        applied: u64,
    },
    /// This node stopped leading: `dropped` held outputs were never sent, `closed` client connections closed.
    Deposed {
        term: u64,
        dropped: usize,
        closed: usize,
    },
    /// Held outputs of entry `index` of `term` are released now (the entry is committed and applied).
    Released {
        index: u64,
        term: u64,
        outputs: usize,
    },
    /// A client connected to a node that is not serving; its connection was closed.
    ClientRefused {
        conn: ConnectionId,
        leader: Option<u64>,
    },
    /// A client connected to this node is relayed to the leader `leader` as cluster-wide connection `global`.
    ClientRelayed {
        conn: ConnectionId,
        global: ConnectionId,
        leader: u64,
    },
    /// Relayed connections closed because the leader they were relayed to changed or became unreachable, or
    /// (on a leader) because the node holding their clients did.
    RelaysClosed {
        peer: u64,
        closed: usize,
    },
    /// A relay message for `peer` could not be queued (`NodeInput::RelayDropped`): connection `conn` (as this node
    /// knows it: local on the node holding the client, cluster-wide on the leader) was closed on both sides.
    RelayDropped {
        peer: u64,
        conn: ConnectionId,
    },
    /// A client relayed to the leader took the bytes of CONNECTs not yet whole over `max_preconnect_bytes`: closed
    /// here, the newest offender, as the leader's broker closes its own.
    RelayedPreconnectBudgetExceeded {
        conn: ConnectionId,
    },
    /// A relay message arrived out of sequence (the link dropped one): the connection was closed.
    RelayGap {
        conn: ConnectionId,
        expected: u64,
        got: u64,
    },
    /// A peer message was refused; nothing of it was applied.
    PeerRefused {
        from: u64,
        error: PeerError,
    },
    /// A committed entry's data did not decode (it cannot have been written by a node of this version); it was
    /// skipped.
    EntryUndecodable {
        index: u64,
        error: DataError,
    },
    /// This node's snapshot of its image at `index` is durable, and its log compacted.
    SnapshotTaken {
        index: u64,
    },
    /// This node installed a snapshot from the leader at `index`.
    SnapshotInstalled {
        index: u64,
    },
    /// A configuration change was applied at `index` (or replayed at start-up): `voters` are the members now.
    MembersChanged {
        index: u64,
        change: MemberChange,
        voters: Vec<u64>,
    },
    /// This node was removed from the cluster by the change at `index`: it stops serving and takes no part any more.
    Removed {
        index: u64,
    },
    /// A committed configuration change could not be applied (not one this version proposes, or refused by raft-rs).
    ConfChangeRefused {
        index: u64,
        why: String,
    },
    /// A recovered snapshot did not decode; the node started from an empty image (the leader will send another).
    SnapshotUndecodable {
        error: DataError,
    },
    /// The recovered log has a hole before entry `index` (or does not follow the snapshot): the entries from there
    /// on were not taken; the leader will send them again.
    RecoveredLogGap {
        index: u64,
    },
}

/// Replication progress, for `cluster status` and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: u64,
    pub role: Role,
    pub term: u64,
    pub leader: Option<u64>,
    pub commit: u64,
    pub applied: u64,
    pub serving: bool,
    /// The voters as this node's applied configuration has them.
    pub voters: Vec<u64>,
    /// For a leader: each member's highest log index known to be replicated on it.
    pub match_index: BTreeMap<u64, u64>,
    /// Client outputs waiting for a commit, and the bytes of their transmits.
    pub held_outputs: usize,
    pub held_bytes: usize,
    /// QoS 0 PUBLISH packets dropped because held output reached `NodeConfig::max_held_bytes`, since start.
    pub held_qos0_dropped: u64,
    /// Relayed connections closed because one of their messages could not be queued (`NodeInput::RelayDropped`),
    /// since start.
    pub relays_dropped: u64,
}

/// A leader's view of one follower's replication (raft-rs's `Progress`), for traces and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerProgress {
    pub id: u64,
    /// `probe`, `replicate` or `snapshot`.
    pub state: &'static str,
    pub matched: u64,
    pub next: u64,
    /// Whether the leader sends this follower nothing new for now (a probe in flight, a full inflight window, a
    /// snapshot pending).
    pub paused: bool,
    /// Appends sent and not yet acknowledged.
    pub inflight: usize,
    pub pending_snapshot: u64,
    pub recent_active: bool,
}

impl std::fmt::Display for PeerProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n{} {} match {} next {} inflight {}{}{}{}",
            self.id,
            self.state,
            self.matched,
            self.next,
            self.inflight,
            if self.paused { " paused" } else { "" },
            if self.pending_snapshot > 0 {
                format!(" snapshot {}", self.pending_snapshot)
            } else {
                String::new()
            },
            if self.recent_active { "" } else { " inactive" },
        )
    }
}

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

    /// Whether this node leads and serves clients.
    pub fn is_leader(&self) -> bool {
        self.broker.is_some()
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn node_id(&self) -> u64 {
        self.config.node_id
    }

    /// The leader as far as this node knows.
    pub fn leader(&self) -> Option<u64> {
        self.leader
    }

    /// The committed state as applied on this node: a copy brought up to the applied index, costly (see `image`),
    /// for checks.
    pub fn image(&self) -> Image {
        self.image.copy_at(self.raft.store(), self.applied)
    }

    /// The index of the last applied entry.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// QoS 0 PUBLISH packets dropped because held output reached `NodeConfig::max_held_bytes`, since start.
    pub fn held_qos0_dropped(&self) -> u64 {
        self.held.dropped_qos0()
    }

    /// Digest of every entry applied (equal on nodes that applied the same entries).
    pub fn applied_digest(&self) -> u64 {
        self.digest
    }

    /// The leader's broker while it serves.
    pub fn broker(&self) -> Option<&Broker> {
        self.broker.as_ref()
    }

    /// The partial packet a client connection holds, for the driver's input budget: on the leader, in its broker;
    /// on a follower that relays it, in the leader's broker, as far as this node relayed it (so a follower's
    /// driver bounds what its clients make the leader hold, as the leader's does for its own).
    pub fn partial_input(&self, conn: ConnectionId) -> PartialInput {
        if let Some(relayed) = self.relayed.get(&conn) {
            return PartialInput {
                held: relayed.partial.held(),
                missing: relayed.partial.missing(),
            };
        }
        self.broker.as_ref().map(|b| b.partial_input(conn)).unwrap_or_default()
    }

    pub fn status(&self) -> NodeStatus {
        let raft = &self.raft.raft;
        let match_index = if self.role == Role::Leader {
            raft.prs().iter().map(|(id, p)| (*id, p.matched)).collect()
        } else {
            BTreeMap::new()
        };
        NodeStatus {
            id: self.config.node_id,
            role: self.role,
            term: self.term,
            leader: self.leader,
            commit: raft.raft_log.committed,
            applied: self.applied,
            serving: self.broker.is_some(),
            voters: self.voters(),
            match_index,
            held_outputs: self.held.len(),
            held_bytes: self.held.bytes(),
            held_qos0_dropped: self.held.dropped_qos0(),
            relays_dropped: self.relays_dropped,
        }
    }

    /// For a leader: raft-rs's replication progress for each other member (empty on any other node), to trace a
    /// follower that does not catch up.
    pub fn peer_progress(&self) -> Vec<PeerProgress> {
        if self.role != Role::Leader {
            return Vec::new();
        }
        let me = self.config.node_id;
        self.raft
            .raft
            .prs()
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, p)| PeerProgress {
                id: *id,
                state: match p.state {
                    raft::ProgressState::Probe => "probe",
                    raft::ProgressState::Replicate => "replicate",
                    raft::ProgressState::Snapshot => "snapshot",
                },
                matched: p.matched,
                next: p.next_idx,
                paused: p.is_paused(),
                inflight: p.ins.count(),
                pending_snapshot: p.pending_snapshot,
                recent_active: p.recent_active,
            })
            .collect()
    }

    /// The voters of the applied configuration, sorted.
    pub fn voters(&self) -> Vec<u64> {
        let mut voters = self.raft.store().conf_state().voters.clone();
        voters.sort_unstable();
        voters
    }

    /// Whether a configuration change removing this node was applied (it serves nothing; a driver stops it).
    pub fn is_removed(&self) -> bool {
        self.removed
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

    /// A follower whose link to its leader broke (the leader's process died, most likely) runs its election clock
    /// on to two ticks short of the timeout, instead of waiting a whole election timeout of silence first. Safe
    /// whatever the cause (an election is always safe in Raft); if the leader lives, its next heartbeat (every
    /// `heartbeat_tick`, less than two ticks away) resets the clock and nothing happens. Both followers see the
    /// link break at once, so their leases run out together and the pre-vote of the first is not refused by the
    /// other's lease: a failover takes about one election timeout less.
    fn hasten_election(&mut self, peer: u64) {
        if self.role != Role::Follower || self.leader != Some(peer) {
            return;
        }
        for _ in 0..self.config.election_tick.saturating_sub(2) {
            self.raft.tick();
        }
    }

    fn handle_peer(&mut self, from: u64, data: &[u8]) {
        self.unreachable.remove(&from);
        if relay::is_relay(data) {
            self.handle_relay(from, data);
            return;
        }
        let result = wire::decode_peer_message(data, self.config.cluster_id, self.config.max_peer_message)
            .and_then(|message| self.check_peer(from, message))
            .and_then(|message| self.raft.step(message).map_err(|e| PeerError::Refused(e.to_string())));
        if let Err(error) = result {
            self.event(ClusterEvent::PeerRefused { from, error });
        }
    }

    fn check_peer(&self, from: u64, message: Message) -> Result<Message, PeerError> {
        if message.from != from || from == self.config.node_id || !self.knows(from) {
            return Err(PeerError::UnknownSender {
                claimed: message.from,
                connection: from,
            });
        }
        if message.to != self.config.node_id {
            return Err(PeerError::WrongRecipient { to: message.to });
        }
        if raft::raw_node::is_local_msg(message.msg_type) {
            return Err(PeerError::Refused(format!("local message type {:?}", message.msg_type)));
        }
        Ok(message)
    }

    fn handle_client(&mut self, input: Input<'_>) {
        match &input {
            Input::Opened { conn, .. } => {
                self.watch.insert(*conn, Watch::default());
            }
            Input::Received { conn, data } => {
                if let Some(watch) = self.watch.get_mut(conn) {
                    watch.upstream(data);
                }
            }
            Input::Closed { conn } => {
                self.watch.remove(conn);
            }
            _ => {}
        }
        if let Some(conn) = input_conn(&input) {
            if self.relayed.contains_key(&conn) {
                self.relay_input(conn, &input);
                return;
            }
        }
        if let Input::Opened { conn, .. } = input {
            if self.broker.is_none() && self.start_relay(conn, &input) {
                return;
            }
            if self.broker.is_none() {
                self.hand_to_driver(Output::Close { conn });
                self.event(ClusterEvent::ClientRefused {
                    conn,
                    leader: self.leader,
                });
                return;
            }
        }
        self.feed_broker(input);
    }

    /// A client input for the broker (the leader's own client's, or a relayed one's).
    fn feed_broker(&mut self, input: Input<'_>) {
        if let Input::Opened { conn, .. } = input {
            if self.broker.is_none() {
                return;
            }
            self.clients.insert(conn);
        }
        let conn = input_conn(&input);
        // A connection this broker does not know was opened before a leader change and is closed already.
        if conn.is_some_and(|c| !self.clients.contains(&c)) {
            return;
        }
        if let Input::Closed { conn } = input {
            self.clients.remove(&conn);
            self.remote.remove(&conn);
        }
        let Some(broker) = self.broker.as_mut() else {
            return;
        };
        broker.handle_input(self.now, input);
        self.drain_broker();
    }

    /// Moves the broker's outputs on: records into one proposed entry, the outputs after the first record held
    /// until it commits, the ones before it out at once (behind anything already held).
    fn drain_broker(&mut self) {
        let Some(broker) = self.broker.as_mut() else {
            return;
        };
        let mut records: Vec<Record> = Vec::new();
        let mut before = Vec::new();
        let mut after = Vec::new();
        while let Some(output) = broker.poll_output() {
            if let Output::Close { conn } = output {
                self.clients.remove(&conn);
            }
            match output {
                Output::Persist(record) => records.push(record),
                other if records.is_empty() => before.push(other),
                other => after.push(other),
            }
        }
        let free = self.held.pass_or_queue(before);
        self.emit_clients(free);
        if crate::planted::relay_before_commit(&self.config) {
            // Planted: relayed connections' outputs skip the commit rule.
            let remote = &self.remote;
            let (early, rest): (Vec<Output>, Vec<Output>) = after.into_iter().partition(|o| match o {
                Output::Transmit { conn, .. } | Output::Close { conn } => remote.contains_key(conn),
                _ => false,
            });
            after = rest;
            self.emit_clients(early);
        }
        if records.is_empty() {
            let free = self.held.pass_or_queue(after);
            self.emit_clients(free);
            return;
        }
        self.held.hold(&records, after);
        self.unproposed.extend(records);
        if !self.config.propose_per_turn {
            self.propose();
        }
    }

    /// Whether records wait for `NodeInput::Flush` to be proposed (with `NodeConfig::propose_per_turn`).
    pub fn has_unproposed(&self) -> bool {
        !self.unproposed.is_empty()
    }

    /// Proposes the records gathered since the last proposal as one entry; the outputs held for them wait for it.
    fn propose(&mut self) {
        if self.unproposed.is_empty() {
            return;
        }
        let data = wire::encode_records(&self.unproposed);
        // Kept for the next turn's records (the vector's capacity with it): the entry's bytes are all that is kept
        // of them, the image is rebuilt from the log (see `image`).
        self.unproposed.clear();
        if let Err(e) = self.raft.propose(Vec::new(), data) {
            // Only a node that is no longer leader drops a proposal: the broker's state is ahead of the log now.
            self.depose(&format!("proposal dropped: {e}"));
            return;
        }
        let index = self.raft.raft.raft_log.last_index();
        let term = self.raft.raft.term;
        if crate::planted::release_before_commit(&self.config) {
            let outputs = self.held.take_open();
            self.emit_clients(outputs);
            self.event(ClusterEvent::Released {
                index,
                term,
                outputs: 0,
            });
            return;
        }
        self.held.seal(index, term);
    }

    /// Handles everything raft-rs has ready, in raft-rs's order: messages a leader may send before its own write,
    /// a snapshot, committed entries, new entries and hard state to persist, messages that must follow the write.
    fn process_ready(&mut self) {
        while self.raft.has_ready() {
            let mut ready = self.raft.ready();
            let writes = !ready.entries().is_empty();
            let snapshot = !ready.snapshot().is_empty();
            let number = ready.number();
            // A leader's appends and heartbeats may leave before its own write of the same entries (raft thesis
            // 10.2.1; raft-rs hands them out as `messages`, apart from those that must follow the write).
            self.send_early(ready.take_messages());
            if !ready.snapshot().is_empty() {
                self.install_snapshot(ready.snapshot().clone());
            }
            let committed = ready.take_committed_entries();
            self.apply(committed);
            if !ready.entries().is_empty() {
                let appended = self.raft.mut_store().append(ready.entries());
                debug_assert!(appended.is_ok(), "raft-rs handed out entries with a gap: {appended:?}");
                self.outputs.push_back(NodeOutput::PersistEntries(ready.take_entries()));
            }
            if let Some(hs) = ready.hs() {
                self.raft.mut_store().set_hard_state(hs.clone());
                self.outputs.push_back(NodeOutput::PersistHardState(hs.clone()));
            }
            self.send(ready.take_persisted_messages());
            // raft-rs counts these writes only when the driver confirms them durable (`NodeInput::Durable`): a
            // leader's own copy must not make up a commit majority while it may still be lost (seed 1725 of the
            // cluster simulator: a leader committed on its unsynced write and one follower's, told the follower,
            // crashed, and the entry was replaced under the follower's commit index, which then never moved).
            self.raft.advance_append_async(ready);
            if snapshot {
                // A snapshot from the leader holds committed state only, and raft-rs needs its applied index at
                // the snapshot as soon as the log behind it is gone from the store (an election meanwhile reads
                // the entries after the applied index: seed 504). Counted at once; a crash before the write ends
                // loses it with the rest of this follower's memory. Only a follower installs one, and a follower
                // counts toward no commit.
                self.raft.on_persist_ready(number);
            } else if writes {
                self.outputs.push_back(NodeOutput::ConfirmDurable(number));
            }
            self.report_applied();
            // A snapshot travels as one message that may be lost, and raft-rs pauses the follower until told how it
            // went. Reporting it finished at once resumes probing: if it was lost, the follower rejects the next
            // append and the leader sends the snapshot again.
            for to in std::mem::take(&mut self.snapshots_sent) {
                self.raft.report_snapshot(to, raft::SnapshotStatus::Finish);
            }
            self.observe_role();
        }
        self.observe_role();
        self.maybe_serve();
        self.maybe_snapshot();
    }

    /// Tells raft-rs how far this node applied, as far as raft-rs allows: an installed snapshot counts as applied
    /// here at once but for raft-rs only once it is durable.
    fn report_applied(&mut self) {
        let log = &self.raft.raft.raft_log;
        let applied = self.applied.min(log.persisted).min(log.committed);
        if applied > log.applied {
            self.raft.advance_apply_to(applied);
        }
    }

    fn send(&mut self, messages: Vec<Message>) {
        self.send_with(messages, false);
    }

    fn send_early(&mut self, messages: Vec<Message>) {
        self.send_with(messages, true);
    }

    fn send_with(&mut self, messages: Vec<Message>, early: bool) {
        if self.removed {
            // A removed node takes no part: a removed leader's heartbeats would keep the others from electing one.
            return;
        }
        for message in messages {
            let to = message.to;
            if message.msg_type == raft::eraftpb::MessageType::MsgSnapshot {
                self.snapshots_sent.push(to);
            }
            let bytes = wire::encode_peer_message(self.config.cluster_id, &message);
            if early {
                self.outputs.push_back(NodeOutput::PeerEarly { to, message: bytes });
            } else {
                self.outputs.push_back(NodeOutput::Peer { to, message: bytes });
            }
        }
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        match wire::decode_snapshot_data(&snapshot.data) {
            Ok((digest, image)) => {
                self.image.replace(image, index);
                self.digest = digest;
                self.applied = index;
                self.last_snapshot = index;
                self.applied_bytes = 0;
                self.last_snapshot_bytes = snapshot.data.len() as u64;
                self.raft.mut_store().install_snapshot(snapshot.clone());
                self.outputs.push_back(NodeOutput::PersistSnapshot {
                    snapshot,
                    discard_log: true,
                });
                self.event(ClusterEvent::SnapshotInstalled { index });
            }
            Err(error) => {
                // raft-rs has already moved its log to the snapshot; without its image this node cannot apply
                // anything after it. A leader only sends snapshots this version wrote, so this is corruption in
                // transit that the protobuf layer did not catch: keep the old image and say so.
                self.event(ClusterEvent::SnapshotUndecodable { error });
            }
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            if entry.index <= self.applied {
                continue;
            }
            self.digest = wire::fold_digest(self.digest, entry.index, entry.term, &entry.data);
            self.applied_bytes += entry.data.len() as u64;
            self.image_lag_bytes += entry.data.len() as u64;
            // The records go to the image when it is needed (see `image`): the entry stays in the log until a
            // snapshot holds it.
            if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
                self.apply_conf_change(&entry);
            }
            self.applied = entry.index;
            self.release(entry.index, entry.term);
        }
        // A node that may have to take over keeps its image a window behind at most, so that a new leader has
        // little to catch up before it serves (after 5 s of fan-out load, catching up from the last snapshot
        // took a failover 0.5-1 s longer); a window at a time, its cancelled records skipped (see `Replay`).
        if self.broker.is_none() && self.image_lag_bytes >= REPLAY_WINDOW_BYTES {
            let mut events = Vec::new();
            if self
                .image
                .catch_up(self.raft.store(), self.applied, CATCH_UP_BYTES, &mut events)
            {
                self.image_lag_bytes = 0;
            }
            for e in events {
                self.event(e);
            }
        }
    }

    /// A committed configuration change takes effect here (raft-rs's rule: on apply, on every node). A node that
    /// removes itself stops serving: a leader first closes its clients as in a failover, and the others elect a
    /// leader among the remaining members.
    fn apply_conf_change(&mut self, entry: &Entry) {
        let index = entry.index;
        let Some((cc, change)) = members::decode_entry(entry) else {
            let why = "not a single add or remove of a voter".to_string();
            self.event(ClusterEvent::ConfChangeRefused { index, why });
            return;
        };
        match self.raft.apply_conf_change(&cc) {
            Ok(conf) => self.raft.mut_store().set_conf_state(conf),
            Err(e) => {
                let why = e.to_string();
                self.event(ClusterEvent::ConfChangeRefused { index, why });
                return;
            }
        }
        let removed = change
            == MemberChange::Remove {
                id: self.config.node_id,
            };
        let voters = self.voters();
        self.event(ClusterEvent::MembersChanged { index, change, voters });
        if removed && !self.removed {
            self.removed = true;
            self.depose("removed from the cluster");
            self.event(ClusterEvent::Removed { index });
        }
    }

    /// Releases the outputs that waited for entries up to `index`. An entry of another term at an index this
    /// leader proposed means its proposal was overwritten: it was deposed, and nothing it held may go out.
    fn release(&mut self, index: u64, term: u64) {
        if self.held.term_of(index).is_some_and(|t| t != term) {
            self.depose("a held entry was overwritten by another leader's");
            return;
        }
        for (index, term, outputs) in self.held.release_through(index) {
            self.event(ClusterEvent::Released {
                index,
                term,
                outputs: outputs.len(),
            });
            self.emit_clients(outputs);
        }
    }

    fn observe_role(&mut self) {
        let raft = &self.raft.raft;
        let role = Role::from(raft.state);
        let term = raft.term;
        let leader = Some(raft.leader_id).filter(|id| *id != raft::INVALID_ID);
        if (role, term, leader) == (self.role, self.term, self.leader) {
            return;
        }
        let was_leader = self.role == Role::Leader;
        let new_term = term != self.term;
        self.role = role;
        self.term = term;
        self.leader = leader;
        self.event(ClusterEvent::RoleChanged { role, term, leader });
        if was_leader && (role != Role::Leader || new_term) {
            self.depose("stepped down");
        }
        // Connections relayed to another leader than the current one lived on a broker that no longer serves.
        let stale: Vec<u64> = self
            .relayed
            .values()
            .map(|r| r.leader)
            .filter(|l| Some(*l) != leader)
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .collect();
        for peer in stale {
            self.close_relays_via(peer);
        }
        if role == Role::Leader && self.serve_after.is_none() {
            // raft-rs appended this term's first (empty) entry on becoming leader: serving waits for it.
            self.serve_after = Some(self.raft.raft.raft_log.last_index());
        }
    }

    /// Whether this node leads without serving yet and has applied its term's first entry: it may serve once its
    /// image is caught up (see `maybe_serve`).
    fn may_serve(&self) -> bool {
        self.broker.is_none()
            && self.role == Role::Leader
            && !self.removed
            && self.serve_after.is_some_and(|after| self.applied >= after)
    }

    /// Whether this node may serve and is bringing its image up to date first (see `maybe_serve`).
    fn catching_up(&self) -> bool {
        self.may_serve() && self.image.is_behind(self.applied)
    }

    fn maybe_serve(&mut self) {
        if !self.may_serve() {
            return;
        }
        let mut events = Vec::new();
        let caught_up = self
            .image
            .catch_up(self.raft.store(), self.applied, CATCH_UP_BYTES, &mut events);
        for e in events {
            self.event(e);
        }
        if !caught_up {
            // The rest on the next input (`poll_timeout` asks for one at once).
            return;
        }
        self.brokers_built += 1;
        let seed = self.config.seed ^ (self.config.node_id << 32) ^ self.brokers_built;
        let config = self.config.broker.clone();
        let mut broker = match &self.config.authenticator {
            Some(shared) => Broker::with_authenticator(config, seed, Box::new(shared.clone())),
            None => Broker::new(config, seed),
        };
        // The broker holds the state from here on; the image is rebuilt from the log if this node steps down.
        broker.restore(self.now, self.image.take());
        self.broker = Some(broker);
        self.event(ClusterEvent::Serving {
            term: self.term,
            applied: self.applied,
        });
    }

    /// Stops leading: held outputs are dropped, client connections closed, the broker (whose state may be ahead
    /// of the committed log) discarded.
    fn depose(&mut self, _why: &str) {
        self.serve_after = None;
        self.unproposed.clear();
        if self.broker.take().is_none() && self.held.is_empty() && self.clients.is_empty() {
            return;
        }
        let (dropped, closes) = self.held.drop_all();
        let mut clients = std::mem::take(&mut self.clients);
        // A connection the broker closed behind a held output is closed by the failover instead (seed 870 of the
        // cluster simulator: a session taken over while the leader lost its quorum kept its old transport open
        // and its client waiting, unserved, for good).
        clients.extend(closes);
        let closed = clients.len();
        for conn in clients {
            match self.remote.remove(&conn) {
                Some(remote) => {
                    let seq = remote.next_out;
                    let kind = RelayKind::Failover;
                    self.send_relay(remote.origin, RelayMessage { conn, seq, kind });
                }
                None => self.close_for_failover(conn),
            }
        }
        self.remote.clear();
        self.event(ClusterEvent::Deposed {
            term: self.term,
            dropped,
            closed,
        });
    }

    /// Hands the driver a snapshot of the applied image once enough was applied since the last
    /// (`NodeConfig::snapshot_entries`, `snapshot_bytes`), to rebuild, encode and write off its loop (see
    /// `snapshot`). The log is compacted only when the driver reports the snapshot durable (`snapshot_written`).
    fn maybe_snapshot(&mut self) {
        if self.snapshot_in_flight.is_some() {
            return;
        }
        let bytes_due = self.applied_bytes >= self.config.snapshot_bytes.max(4 * self.last_snapshot_bytes);
        if self.applied < self.last_snapshot + self.config.snapshot_entries.max(1) && !bytes_due {
            return;
        }
        let index = self.applied;
        let store = self.raft.store();
        let Ok(term) = raft::Storage::term(store, index) else {
            return;
        };
        let base = store.snapshot_index();
        if base >= index {
            return;
        }
        let at = (index, term, store.conf_state().clone());
        let context = raft::GetEntriesContext::empty(false);
        // What rebuilds the image at `index` off the loop: the previous snapshot and the entries since, a pointer
        // each (see `snapshot`). The log reaches back to the previous snapshot unless the node recovered with a gap.
        let job = match raft::Storage::entries(store, base + 1, index + 1, None, context) {
            Ok(entries) => SnapshotJob::replay(at, self.digest, store.snapshot_data(), entries),
            Err(_) => {
                let mut events = Vec::new();
                self.image.catch_up(store, index, u64::MAX, &mut events);
                let job = SnapshotJob::copy(at, self.digest, self.image.get().clone());
                self.outputs.extend(events.into_iter().map(NodeOutput::Event));
                job
            }
        };
        self.snapshot_in_flight = Some(index);
        // Counted from here: what is applied while the driver writes belongs to the next snapshot.
        self.last_snapshot = index;
        self.applied_bytes = 0;
        self.outputs.push_back(NodeOutput::TakeSnapshot(Box::new(job)));
    }

    /// The driver wrote the snapshot of a `TakeSnapshot`: the log is compacted up to it (in memory; the driver's
    /// files were when it wrote it), and it is the snapshot a lagging follower is sent. Unless a snapshot from
    /// the leader at a later index was installed meanwhile: that one stays.
    fn snapshot_written(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        if self.snapshot_in_flight == Some(index) {
            self.snapshot_in_flight = None;
        }
        if index <= self.raft.store().snapshot_index() || index > self.applied {
            return;
        }
        self.last_snapshot_bytes = snapshot.data.len() as u64;
        self.raft.mut_store().compact(snapshot);
        self.image.compacted(index);
        self.event(ClusterEvent::SnapshotTaken { index });
    }

    fn event(&mut self, event: ClusterEvent) {
        self.outputs.push_back(NodeOutput::Event(event));
    }

    fn emit_clients(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            self.emit_client(output);
        }
    }

    /// A broker output on its way out: to the driver, or, for a relayed connection, to the node holding it.
    fn emit_client(&mut self, output: Output) {
        let conn = match &output {
            Output::Transmit { conn, .. } | Output::Close { conn } => Some(*conn),
            Output::Persist(_) | Output::Event(_) => None,
        };
        let Some(remote) = conn.and_then(|c| self.remote.get_mut(&c)) else {
            self.hand_to_driver(output);
            return;
        };
        let origin = remote.origin;
        let seq = remote.next_out;
        remote.next_out += 1;
        let Some((conn, kind)) = RelayKind::from_output(output) else {
            return;
        };
        if kind == RelayKind::Close {
            self.remote.remove(&conn);
        }
        self.send_relay(origin, RelayMessage { conn, seq, kind });
    }

    /// A client output for the driver (a connection whose socket this node holds).
    fn hand_to_driver(&mut self, output: Output) {
        match &output {
            Output::Transmit { conn, data } => {
                if let Some(watch) = self.watch.get_mut(conn) {
                    watch.downstream(data);
                }
            }
            Output::Close { conn } => {
                self.watch.remove(conn);
            }
            Output::Persist(_) | Output::Event(_) => {}
        }
        self.outputs.push_back(NodeOutput::Client(output));
    }

    /// Closes a client connection whose session state lived on a broker that stopped serving: an MQTT 5 client
    /// past its CONNACK is told first (DISCONNECT 0x8B, see `failover`), so it reconnects at once.
    fn close_for_failover(&mut self, conn: ConnectionId) {
        if let Some(data) = self.watch.get(&conn).and_then(Watch::disconnect) {
            self.hand_to_driver(Output::Transmit { conn, data });
        }
        self.hand_to_driver(Output::Close { conn });
    }

    fn send_relay(&mut self, to: u64, message: RelayMessage) {
        let bytes = relay::encode(self.config.cluster_id, &message);
        self.outputs.push_back(NodeOutput::Peer { to, message: bytes });
    }

    /// A client connection opened on a node that does not serve: relayed to the leader, if relaying is on and a
    /// leader is known. False if not (the caller closes it).
    fn start_relay(&mut self, conn: ConnectionId, input: &Input<'_>) -> bool {
        let Some(leader) = self.leader.filter(|l| *l != self.config.node_id) else {
            return false;
        };
        if self.unreachable.contains(&leader) {
            // Its link broke: the client is better off trying again (here or elsewhere) than waiting on it.
            return false;
        }
        if !self.config.relay_clients || self.role == Role::Leader || self.removed {
            return false;
        }
        self.relayed.insert(
            conn,
            Relayed {
                leader,
                next_out: 0,
                next_in: 0,
                partial: Default::default(),
            },
        );
        self.event(ClusterEvent::ClientRelayed {
            conn,
            global: relay::global_id(self.config.node_id, conn),
            leader,
        });
        self.relay_input(conn, input);
        true
    }

    /// A relayed client's input, on its way to the leader.
    fn relay_input(&mut self, conn: ConnectionId, input: &Input<'_>) {
        let Some(kind) = RelayKind::from_input(input) else {
            return;
        };
        let Some(relayed) = self.relayed.get_mut(&conn) else {
            return;
        };
        if let Input::Received { data, .. } = input {
            relayed.partial.feed(data);
            if relayed.partial.packets() == 0 && self.preconnect_over_budget() {
                // The leader's broker would close it too, but only once the bytes crossed the link: closed here
                // instead of relaying them, the follower neither queues nor relays more than the budget of
                // connections not yet accepted.
                self.relay_input(conn, &Input::Closed { conn });
                self.hand_to_driver(Output::Close { conn });
                self.event(ClusterEvent::RelayedPreconnectBudgetExceeded { conn });
                return;
            }
        }
        let Some(relayed) = self.relayed.get_mut(&conn) else {
            return;
        };
        let leader = relayed.leader;
        let seq = relayed.next_out;
        relayed.next_out += 1;
        if kind == RelayKind::Closed {
            self.relayed.remove(&conn);
        }
        let global = relay::global_id(self.config.node_id, conn);
        self.send_relay(
            leader,
            RelayMessage {
                conn: global,
                seq,
                kind,
            },
        );
    }

    /// Whether the bytes relayed of CONNECTs not yet whole exceed the broker's `max_preconnect_bytes` (the budget
    /// of connections not yet accepted, as on the leader). Summed only while a connection sends its CONNECT.
    fn preconnect_over_budget(&self) -> bool {
        let budget = self.config.broker.max_preconnect_bytes;
        let held: usize = self
            .relayed
            .values()
            .filter(|r| r.partial.packets() == 0)
            .map(|r| r.partial.held())
            .sum();
        budget > 0 && held > budget
    }

    /// Ends every relayed stream through `peer`: on this side, the client connections relayed to it (closed;
    /// the leader is told, in case it still listens), or the broker connections of clients it holds (closed in
    /// the broker, as if their clients had gone: wills follow the spec; and the holding node told).
    fn close_relays_via(&mut self, peer: u64) {
        let local: Vec<ConnectionId> = self
            .relayed
            .iter()
            .filter(|(_, r)| r.leader == peer)
            .map(|(c, _)| *c)
            .collect();
        let remote: Vec<ConnectionId> = self
            .remote
            .iter()
            .filter(|(_, r)| r.origin == peer)
            .map(|(c, _)| *c)
            .collect();
        if local.is_empty() && remote.is_empty() {
            return;
        }
        for conn in &local {
            self.relay_input(*conn, &Input::Closed { conn: *conn });
            self.close_for_failover(*conn);
        }
        for conn in &remote {
            // The holding node is told too (the message waits for the link to come back): it may not see a break
            // of its own (the two directions are separate connections, and one may break alone), and its client
            // would otherwise wait forever on a connection this broker no longer knows.
            if let Some(r) = self.remote.remove(conn) {
                let (seq, kind) = (r.next_out, RelayKind::Failover);
                self.send_relay(peer, RelayMessage { conn: *conn, seq, kind });
            }
            self.feed_broker(Input::Closed { conn: *conn });
        }
        self.event(ClusterEvent::RelaysClosed {
            peer,
            closed: local.len() + remote.len(),
        });
    }

    /// A relay message to `peer` that the driver could not queue: its connection ends here and the other side is
    /// told (with a message that ends the stream, which the driver queues whatever the bound).
    fn relay_dropped(&mut self, peer: u64, data: &[u8]) {
        let Ok(message) = relay::decode(data, self.config.cluster_id) else {
            return;
        };
        if message.kind.is_downstream() {
            // On the leader: the broker's connection of a client held by `peer`.
            let conn = message.conn;
            if self.remote.get(&conn).is_none_or(|r| r.origin != peer) {
                return;
            }
            self.remote.remove(&conn);
            // In the dropped message's place, so the holding node takes it in sequence and tells an MQTT 5 client
            // why (DISCONNECT 0x8B) rather than seeing a gap.
            let (seq, kind) = (message.seq, RelayKind::Failover);
            self.send_relay(peer, RelayMessage { conn, seq, kind });
            self.feed_broker(Input::Closed { conn });
            self.relays_dropped += 1;
            self.event(ClusterEvent::RelayDropped { peer, conn });
        } else {
            // On the node holding the client: its connection relayed to `peer`.
            let (origin, conn) = relay::split_id(message.conn);
            let Some(relayed) = self.relayed.get_mut(&conn).filter(|r| r.leader == peer) else {
                return;
            };
            if origin != self.config.node_id {
                return;
            }
            // The close takes the dropped message's place in the sequence (see above).
            relayed.next_out = relayed.next_out.min(message.seq);
            self.relay_input(conn, &Input::Closed { conn });
            self.close_for_failover(conn);
            self.relays_dropped += 1;
            self.event(ClusterEvent::RelayDropped { peer, conn });
        }
    }

    fn handle_relay(&mut self, from: u64, data: &[u8]) {
        let message = match relay::decode(data, self.config.cluster_id) {
            Ok(message) => message,
            Err(error) => {
                let error = PeerError::Malformed(format!("relay: {error}"));
                self.event(ClusterEvent::PeerRefused { from, error });
                return;
            }
        };
        if from == self.config.node_id || !self.knows(from) {
            let error = PeerError::UnknownSender {
                claimed: from,
                connection: from,
            };
            self.event(ClusterEvent::PeerRefused { from, error });
            return;
        }
        if message.kind.is_downstream() {
            self.relay_downstream(from, message);
        } else {
            self.relay_upstream(from, message);
        }
    }

    /// On the node holding the client: the leader's output for it.
    fn relay_downstream(&mut self, from: u64, message: RelayMessage) {
        let (origin, conn) = relay::split_id(message.conn);
        if origin != self.config.node_id {
            return;
        }
        let Some(relayed) = self.relayed.get_mut(&conn).filter(|r| r.leader == from) else {
            // Closed here already (or relayed to another leader since).
            return;
        };
        if message.seq < relayed.next_in {
            // A copy of one already taken (a link that duplicates): nothing new.
            return;
        }
        if message.seq != relayed.next_in {
            let expected = relayed.next_in;
            self.event(ClusterEvent::RelayGap {
                conn,
                expected,
                got: message.seq,
            });
            self.relay_input(conn, &Input::Closed { conn });
            self.hand_to_driver(Output::Close { conn });
            return;
        }
        relayed.next_in += 1;
        match message.kind {
            RelayKind::Transmit(data) => self.hand_to_driver(Output::Transmit { conn, data }),
            RelayKind::Failover => {
                self.relayed.remove(&conn);
                self.close_for_failover(conn);
            }
            _ => {
                self.relayed.remove(&conn);
                self.hand_to_driver(Output::Close { conn });
            }
        }
    }

    /// On the leader: a relayed client's input, for the broker.
    fn relay_upstream(&mut self, from: u64, message: RelayMessage) {
        let conn = message.conn;
        if relay::split_id(conn).0 != from {
            let error = PeerError::UnknownSender {
                claimed: relay::split_id(conn).0,
                connection: from,
            };
            self.event(ClusterEvent::PeerRefused { from, error });
            return;
        }
        if let RelayKind::Opened { .. } = message.kind {
            if self.remote.remove(&conn).is_some() {
                // The id was reused: the node restarted and numbers its connections from the start again.
                self.feed_broker(Input::Closed { conn });
            }
            if self.broker.is_none() || message.seq != 0 {
                self.send_relay(
                    from,
                    RelayMessage {
                        conn,
                        seq: 0,
                        kind: RelayKind::Close,
                    },
                );
                return;
            }
            self.remote.insert(
                conn,
                Remote {
                    origin: from,
                    next_out: 0,
                    next_in: 1,
                },
            );
            if let Some(input) = message.kind.as_input(conn) {
                self.feed_broker(input);
            }
            return;
        }
        let Some(remote) = self.remote.get_mut(&conn) else {
            // Not this broker's connection (it was opened before a leader change, or closed here already): the
            // follower is told, unless it is saying goodbye itself.
            if message.kind != RelayKind::Closed {
                self.send_relay(
                    from,
                    RelayMessage {
                        conn,
                        seq: message.seq.max(1),
                        kind: RelayKind::Close,
                    },
                );
            }
            return;
        };
        if message.seq < remote.next_in {
            return;
        }
        if message.seq != remote.next_in {
            let expected = remote.next_in;
            self.event(ClusterEvent::RelayGap {
                conn,
                expected,
                got: message.seq,
            });
            self.feed_broker(Input::Closed { conn });
            if let Some(remote) = self.remote.remove(&conn) {
                self.send_relay(
                    from,
                    RelayMessage {
                        conn,
                        seq: remote.next_out,
                        kind: RelayKind::Close,
                    },
                );
            }
            return;
        }
        remote.next_in += 1;
        if let Some(input) = message.kind.as_input(conn) {
            self.feed_broker(input);
        }
    }
}

/// The connection a client input is about.
fn input_conn(input: &Input<'_>) -> Option<ConnectionId> {
    match input {
        Input::Opened { conn, .. }
        | Input::Identified { conn, .. }
        | Input::Received { conn, .. }
        | Input::Closed { conn }
        | Input::WriteBlocked { conn }
        | Input::Writable { conn }
        | Input::AuthDecided { conn, .. } => Some(*conn),
        Input::Tick | Input::Shutdown | Input::StorageWritable(_) => None,
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
