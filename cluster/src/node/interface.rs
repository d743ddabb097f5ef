//! What goes into and comes out of a node: the driver's inputs, the outputs it must act on in order, the events
//! worth logging, and the status and replication progress a node reports.

use crate::members::MemberChange;
use crate::snapshot::SnapshotJob;
use crate::wire::{DataError, PeerError};
use bytes::Bytes;
use mqtt_core::broker::{ConnectionId, Input, Output};
use raft::eraftpb::{Entry, HardState, Snapshot};
use raft::StateRole;
use std::collections::BTreeMap;

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
