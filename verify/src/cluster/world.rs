//! Three real cluster nodes (`mqtt_cluster::Node`, raft-rs and the broker core inside) with the network between
//! them and one client. Everything is deterministic, so a path of [`Step`]s rebuilds the same world every time;
//! the checker's state is that path plus a [`ClusterView`] it compares states by.
//!
//! The network: after every step, every message in flight is delivered (and whatever it causes, until none is
//! left), except on links the checker has cut, where they are lost. The checker chooses the steps that change what
//! happens: which node's clock runs, which links are cut or healed, when the client connects and publishes. A
//! message is never delayed past a later step; lost messages and clocks running at different speeds are what bring
//! leader changes with entries in flight. This keeps the state space small enough to explore exhaustively.
//!
//! What a state is identified by: each node's state is a function of the inputs it was given, so the view keeps
//! a running hash of each node's inputs (`histories`) instead of the node. Two paths that give every node the same
//! inputs (they differ only in how independent nodes' steps interleave) are one state.

use super::scenario::ClusterScenario;
use bytes::Bytes;
use mqtt_cluster::eraftpb::MessageType;
use mqtt_cluster::{wire, ClusterEvent, Node, NodeConfig, NodeInput, NodeOutput, Recovered};
use mqtt_core::broker::{ConnectionId, Input, ListenerId, Output};
use mqtt_core::time::Time;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

/// Node ids are 1..=NODES.
pub const NODES: u64 = 3;
const CLUSTER_ID: u64 = 0x7e57;
const TICK_MS: u64 = 100;

/// One step of the environment, a node's clock or the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Node `n`'s clock reaches its next deadline: a Raft tick (and any broker timer due).
    Tick(u64),
    /// The network cuts the link between `a` and `b` (`a < b`): messages between them are lost until it heals.
    Cut(u64, u64),
    /// A cut link heals.
    Heal(u64, u64),
    /// The client connects to node `n`, which is serving, and sends again the message it has no PUBACK for.
    Connect(u64),
    /// The client sends its next message: a retained QoS 1 PUBLISH, so that acknowledging it depends on a record.
    Publish,
}

/// A broken rule, kept in the view once seen.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClusterViolation {
    /// A PUBACK reached the client while the entry holding its record was durable on fewer than a majority.
    ReleasedBeforeCommit { msg: u8, node: u64, index: u64, term: u64 },
    /// A PUBACK for a PUBLISH whose input proposed no entry.
    AckWithoutRecord { msg: u8, node: u64 },
}

/// The client: one connection at a time, one message in flight (window 1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ClientView {
    /// The node and connection it is connected to.
    pub conn: Option<(u64, ConnectionId)>,
    pub next_msg: u8,
    /// Sent, no PUBACK yet.
    pub pending: Option<u8>,
    pub acked: BTreeSet<u8>,
    pub connects_left: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterView {
    pub histories: [u64; NODES as usize],
    /// Messages in flight per (from, to), oldest first.
    pub channels: BTreeMap<(u64, u64), VecDeque<Bytes>>,
    /// Each node's durable log: index to term, as its `PersistEntries` outputs left it.
    pub durable: [BTreeMap<u64, u64>; NODES as usize],
    pub serving: [bool; NODES as usize],
    pub ticks_left: [u8; NODES as usize],
    /// Cut links (`a < b`), and cuts the network may still make.
    pub cut: BTreeSet<(u64, u64)>,
    pub cuts_left: u8,
    pub client: ClientView,
    /// The entry (index, term) of every PUBACK the client got.
    pub acked_entries: BTreeSet<(u64, u64)>,
    /// A leader was deposed while it held client outputs (which it then dropped).
    pub deposed_holding: bool,
    pub violations: BTreeSet<ClusterViolation>,
}

impl ClusterView {
    /// Whether the entry (index, term) is in the durable logs of a majority.
    pub fn on_majority(&self, index: u64, term: u64) -> bool {
        let copies = self.durable.iter().filter(|log| log.get(&index) == Some(&term)).count();
        copies as u64 > NODES / 2
    }
}

pub struct ClusterWorld<'s> {
    _scenario: &'s ClusterScenario,
    nodes: Vec<Node>,
    clocks: Vec<Time>,
    next_conn: u64,
    /// The entry each (connection, packet id) PUBLISH proposed.
    entry_of: BTreeMap<(ConnectionId, u16), (u64, u64)>,
    pub view: ClusterView,
    pub story: Option<Vec<String>>,
}

impl<'s> ClusterWorld<'s> {
    pub fn new(scenario: &'s ClusterScenario, story: bool) -> ClusterWorld<'s> {
        let nodes = (1..=NODES)
            .map(|id| Node::new(node_config(scenario, id), Recovered::default()))
            .collect();
        let mut world = ClusterWorld {
            _scenario: scenario,
            nodes,
            clocks: vec![Time::ZERO; NODES as usize],
            next_conn: 1,
            entry_of: BTreeMap::new(),
            view: ClusterView {
                histories: [0; NODES as usize],
                channels: BTreeMap::new(),
                durable: Default::default(),
                serving: [false; NODES as usize],
                ticks_left: scenario.ticks,
                cut: BTreeSet::new(),
                cuts_left: scenario.cuts,
                client: ClientView {
                    connects_left: scenario.connects,
                    ..ClientView::default()
                },
                acked_entries: BTreeSet::new(),
                deposed_holding: false,
                violations: BTreeSet::new(),
            },
            story: story.then(Vec::new),
        };
        // A first input at time 0 starts each node's tick clock (its first Raft tick is due one tick later).
        for id in 1..=NODES {
            world.input(id, NodeInput::Tick, 0);
        }
        world.settle();
        world
    }

    pub fn replay(scenario: &'s ClusterScenario, path: &[Step], story: bool) -> ClusterWorld<'s> {
        let mut world = ClusterWorld::new(scenario, story);
        for step in path {
            world.step(*step);
        }
        world
    }

    /// Every step possible from here.
    pub fn steps(view: &ClusterView, scenario: &ClusterScenario, steps: &mut Vec<Step>) {
        for a in 1..=NODES {
            for b in a + 1..=NODES {
                if view.cut.contains(&(a, b)) {
                    steps.push(Step::Heal(a, b));
                } else if view.cuts_left > 0 {
                    steps.push(Step::Cut(a, b));
                }
            }
        }
        for id in 1..=NODES {
            if view.ticks_left[idx(id)] > 0 {
                steps.push(Step::Tick(id));
            }
        }
        let client = &view.client;
        match client.conn {
            None if client.connects_left > 0 => {
                for id in 1..=NODES {
                    if view.serving[idx(id)] {
                        steps.push(Step::Connect(id));
                    }
                }
            }
            Some(_) if client.pending.is_none() && client.next_msg < scenario.messages => steps.push(Step::Publish),
            _ => {}
        }
    }

    pub fn step(&mut self, step: Step) {
        self.act(step);
        self.settle();
    }

    fn act(&mut self, step: Step) {
        match step {
            Step::Tick(id) => {
                let i = idx(id);
                let due = self.nodes[i].poll_timeout().unwrap_or(self.clocks[i]);
                self.clocks[i] = self.clocks[i].max(due);
                let ms = self.clocks[i].as_millis();
                self.tell(format!("⏰ node {id}'s clock reaches {ms} ms"));
                self.view.ticks_left[i] -= 1;
                self.input(id, NodeInput::Tick, ms);
            }
            Step::Cut(a, b) => {
                self.tell(format!("✂ the network cuts nodes {a} and {b} apart"));
                self.view.cut.insert((a, b));
                self.view.cuts_left -= 1;
            }
            Step::Heal(a, b) => {
                self.tell(format!("the link between nodes {a} and {b} heals"));
                self.view.cut.remove(&(a, b));
            }
            Step::Connect(id) => {
                let conn = ConnectionId(self.next_conn);
                self.next_conn += 1;
                self.view.client.conn = Some((id, conn));
                self.view.client.connects_left -= 1;
                self.tell(format!("client connects to node {id} (connection {})", conn.0));
                let peer = SocketAddr::from(([127, 0, 0, 1], 40000 + conn.0 as u16));
                self.client_input(
                    id,
                    Input::Opened {
                        conn,
                        peer,
                        listener: ListenerId(0),
                    },
                    conn.0,
                );
                self.client_input(
                    id,
                    Input::Received {
                        conn,
                        data: &connect_bytes(),
                    },
                    1,
                );
                if let Some(msg) = self.view.client.pending {
                    self.tell(format!("client sends message {msg} again"));
                    self.publish(id, conn, msg, true);
                }
            }
            Step::Publish => {
                let Some((id, conn)) = self.view.client.conn else {
                    unreachable!("Publish is offered only while connected");
                };
                let msg = self.view.client.next_msg;
                self.view.client.next_msg += 1;
                self.view.client.pending = Some(msg);
                self.tell(format!("client sends message {msg} (QoS 1, retained) to node {id}"));
                self.publish(id, conn, msg, false);
            }
        }
    }

    fn publish(&mut self, id: u64, conn: ConnectionId, msg: u8, dup: bool) {
        let pid = u16::from(msg) + 1;
        let data = publish_bytes(pid, msg, dup);
        let outputs = self.feed(id, NodeInput::Client(Input::Received { conn, data: &data }), 2);
        // The entry this input proposed: the last appended with data (the records of this PUBLISH).
        let entry = outputs.iter().rev().find_map(|o| match o {
            NodeOutput::PersistEntries(entries) => entries
                .iter()
                .rev()
                .find(|e| !e.data.is_empty())
                .map(|e| (e.index, e.term)),
            _ => None,
        });
        if let Some(entry) = entry {
            self.entry_of.insert((conn, pid), entry);
        }
        self.handle_outputs(id, outputs);
    }

    /// Delivers every message in flight, and what they cause, until none is left: oldest link first, in order on
    /// each link. A message on a cut link is lost.
    fn settle(&mut self) {
        while let Some((&(from, to), _)) = self.view.channels.iter().next() {
            let queue = self.view.channels.remove(&(from, to)).unwrap_or_default();
            let cut = self.view.cut.contains(&(from.min(to), from.max(to)));
            for message in queue {
                if cut {
                    self.tell(format!("        lost: {}", describe(&message, from, to)));
                    continue;
                }
                self.tell(format!("    node {to} receives {}", describe(&message, from, to)));
                let mut h = DefaultHasher::new();
                (from, &message).hash(&mut h);
                self.input(
                    to,
                    NodeInput::Peer {
                        from,
                        message: &message,
                    },
                    h.finish(),
                );
            }
        }
    }

    fn client_input(&mut self, id: u64, input: Input<'_>, tag: u64) {
        let outputs = self.feed(id, NodeInput::Client(input), tag);
        self.handle_outputs(id, outputs);
    }

    fn input(&mut self, id: u64, input: NodeInput<'_>, tag: u64) {
        let outputs = self.feed(id, input, tag);
        self.handle_outputs(id, outputs);
    }

    /// Gives node `id` one input, folding it into its history, and takes everything it outputs.
    fn feed(&mut self, id: u64, input: NodeInput<'_>, tag: u64) -> Vec<NodeOutput> {
        let i = idx(id);
        let mut h = DefaultHasher::new();
        (
            self.view.histories[i],
            input_kind(&input),
            tag,
            self.clocks[i].as_millis(),
        )
            .hash(&mut h);
        if let NodeInput::Client(Input::Received { data, .. }) = &input {
            data.hash(&mut h);
        }
        self.view.histories[i] = h.finish();
        let node = &mut self.nodes[i];
        node.handle_input(self.clocks[i], input);
        // One input per driver loop turn: the turn ends with a Flush, which proposes its records as one entry.
        node.handle_input(self.clocks[i], NodeInput::Flush);
        let mut outputs = Vec::new();
        while let Some(output) = node.poll_output() {
            outputs.push(output);
        }
        outputs
    }

    /// Acts on a node's outputs in order, as a driver would (a `Persist*` is durable before what follows it).
    fn handle_outputs(&mut self, id: u64, outputs: Vec<NodeOutput>) {
        let i = idx(id);
        for output in outputs {
            match output {
                // An early message may leave before the writes ahead of it; delivering it after them is always safe.
                NodeOutput::Peer { to, message } | NodeOutput::PeerEarly { to, message } => {
                    self.view.channels.entry((id, to)).or_default().push_back(message);
                }
                NodeOutput::PersistEntries(entries) => {
                    let log = &mut self.view.durable[i];
                    if let Some(first) = entries.first() {
                        log.split_off(&first.index);
                    }
                    for e in &entries {
                        log.insert(e.index, e.term);
                    }
                }
                NodeOutput::PersistHardState(_) => {}
                NodeOutput::PersistSnapshot { snapshot, discard_log } => {
                    let meta = snapshot.get_metadata();
                    let log = &mut self.view.durable[i];
                    if discard_log {
                        log.clear();
                    }
                    log.insert(meta.index, meta.term);
                }
                // The binary writes it on a thread; here at once, durable before what follows, then the node is told
                // (the simulator covers a write that lags or never completes).
                NodeOutput::TakeSnapshot(job) => {
                    let Ok(snapshot) = job.encode() else {
                        self.tell(format!("        node {id}'s snapshot does not rebuild"));
                        continue;
                    };
                    let meta = snapshot.get_metadata();
                    self.view.durable[i].insert(meta.index, meta.term);
                    self.tell_and_act(id, NodeInput::SnapshotWritten(snapshot));
                }
                NodeOutput::Client(Output::Transmit { conn, data }) => self.transmitted(id, conn, &data),
                NodeOutput::Client(Output::Close { conn }) => {
                    if self.view.client.conn == Some((id, conn)) {
                        self.tell(format!("        node {id} closes the client's connection"));
                        self.view.client.conn = None;
                    }
                }
                NodeOutput::Client(_) => {}
                NodeOutput::Event(event) => self.event(id, event),
                // The writes before it are durable (handled above, in order): the node may count them now.
                NodeOutput::ConfirmDurable(number) => self.tell_and_act(id, NodeInput::Durable(number)),
            }
        }
        self.view.serving[i] = self.nodes[i].status().serving;
    }

    /// What the driver tells node `id` while acting on its outputs (a write done), and acting on what it answers.
    fn tell_and_act(&mut self, id: u64, input: NodeInput<'_>) {
        let i = idx(id);
        let node = &mut self.nodes[i];
        node.handle_input(self.clocks[i], input);
        let mut more = Vec::new();
        while let Some(output) = node.poll_output() {
            more.push(output);
        }
        self.handle_outputs(id, more);
    }

    fn event(&mut self, id: u64, event: ClusterEvent) {
        let line = match event {
            ClusterEvent::RoleChanged { role, term, .. } => format!("node {id} is {role:?} in term {term}"),
            ClusterEvent::Serving { term, applied } => {
                format!("node {id} serves clients (term {term}, applied {applied})")
            }
            ClusterEvent::Deposed { term, dropped, closed } => {
                if dropped > 0 {
                    self.view.deposed_holding = true;
                }
                format!("node {id} deposed in term {term}: {dropped} held outputs dropped, {closed} clients closed")
            }
            ClusterEvent::Released { index, term, outputs } => {
                format!("node {id} releases {outputs} outputs of entry {index} (term {term})")
            }
            other => format!("node {id}: {other:?}"),
        };
        self.tell(format!("        {line}"));
    }

    /// Bytes for the client: every PUBACK in them must follow its record's commit on a majority.
    fn transmitted(&mut self, id: u64, conn: ConnectionId, data: &[u8]) {
        if self.view.client.conn != Some((id, conn)) {
            return;
        }
        for (first, body) in packets(data) {
            if first != 0x40 || body.len() < 2 {
                continue;
            }
            let pid = u16::from_be_bytes([body[0], body[1]]);
            let msg = (pid - 1) as u8;
            match self.entry_of.get(&(conn, pid)).copied() {
                Some((index, term)) => {
                    self.tell(format!(
                        "        client gets PUBACK for message {msg} (entry {index}, term {term})"
                    ));
                    if !self.view.on_majority(index, term) {
                        self.view.violations.insert(ClusterViolation::ReleasedBeforeCommit {
                            msg,
                            node: id,
                            index,
                            term,
                        });
                    }
                    self.view.acked_entries.insert((index, term));
                }
                None => {
                    self.view
                        .violations
                        .insert(ClusterViolation::AckWithoutRecord { msg, node: id });
                }
            }
            self.view.client.acked.insert(msg);
            if self.view.client.pending == Some(msg) {
                self.view.client.pending = None;
            }
        }
    }

    fn tell(&mut self, line: String) {
        if let Some(story) = &mut self.story {
            story.push(line);
        }
    }
}

fn idx(id: u64) -> usize {
    (id - 1) as usize
}

fn node_config(scenario: &ClusterScenario, id: u64) -> NodeConfig {
    let mut config = NodeConfig::new(id, (1..=NODES).collect(), CLUSTER_ID);
    // The shortest timing raft-rs accepts: a follower campaigns after 2 silent ticks, a leader heartbeats every
    // tick. No jitter: which node's clock runs is the checker's choice.
    config.election_tick = 2;
    config.heartbeat_tick = 1;
    config.tick_ms = TICK_MS;
    config.tick_jitter_ms = 0;
    config.broker = crate::world::config();
    config.snapshot_entries = 1_000;
    // As the binary runs a node (io/src/cluster/node.rs).
    config.propose_per_turn = true;
    #[cfg(feature = "planted-bugs")]
    {
        config.planted_bug = scenario.planted;
    }
    let _ = scenario;
    config
}

fn input_kind(input: &NodeInput<'_>) -> u8 {
    match input {
        NodeInput::Client(_) => 0,
        NodeInput::Peer { .. } => 1,
        NodeInput::Tick => 2,
        NodeInput::PeerUnreachable { .. } => 3,
        NodeInput::Flush => 4,
        NodeInput::Durable(_) => 5,
        NodeInput::RelayDropped { .. } => 6,
        NodeInput::SnapshotWritten(_) => 7,
    }
}

/// A 3.1.1 CONNECT, client id "c", Clean Session, no keep alive (no timers to model).
fn connect_bytes() -> Vec<u8> {
    vec![0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 1, b'c']
}

/// A 3.1.1 retained QoS 1 PUBLISH of message `msg` to "t" with packet id `pid`.
fn publish_bytes(pid: u16, msg: u8, dup: bool) -> Vec<u8> {
    let first = 0x30 | 0x02 | 0x01 | if dup { 0x08 } else { 0 };
    let [hi, lo] = pid.to_be_bytes();
    vec![first, 7, 0, 1, b't', hi, lo, b'm', msg]
}

/// The packets in `data` (first byte, body); the broker's answers to this client are all short.
fn packets(mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let (first, len) = (data[0], data[1] as usize);
        assert!(
            len < 128 && data.len() >= 2 + len,
            "the broker's packets to this client are whole and short"
        );
        out.push((first, &data[2..2 + len]));
        data = &data[2 + len..];
    }
    out
}

/// A peer message for the story: its Raft type, term and entries.
fn describe(message: &[u8], from: u64, to: u64) -> String {
    match wire::decode_peer_message(message, CLUSTER_ID, wire::DEFAULT_MAX_PEER_MESSAGE) {
        Ok(m) => {
            let kind = format!("{:?}", m.msg_type).trim_start_matches("Msg").to_string();
            let entries = if m.msg_type == MessageType::MsgAppend && !m.entries.is_empty() {
                format!(
                    ", entries {}..={}",
                    m.entries[0].index,
                    m.entries[m.entries.len() - 1].index
                )
            } else {
                String::new()
            };
            let reject = if m.reject { ", rejected" } else { "" };
            format!("{kind} {from}→{to} (term {}{entries}{reject})", m.term)
        }
        Err(e) => format!("an undecodable message {from}→{to} ({e:?})"),
    }
}
