//! The `[cluster]` table: this node's id, the cluster's id, every voter with its node-to-node address, and the Raft
//! timing. A cluster starts with 3 or 5 voters; every node's file lists the same `peers`, itself included, so the
//! files of one cluster differ only in `node_id` (and the node's own listeners and data directory). Members added
//! or removed at run time (`cluster add-node`) live in the Raft log, not here; a node that joins says `join = true`.
//!
//! Absent `[cluster]`, the broker runs alone exactly as before.

use super::error::{file_origin, ConfigError, Problem};
use super::Source;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;
use toml::Spanned;

/// Default length of one Raft tick.
pub const DEFAULT_TICK_MS: u64 = 100;
/// Default election timeout, in ticks (raft-rs randomises it between this and twice this).
pub const DEFAULT_ELECTION_TICKS: u64 = 10;
/// Default heartbeat interval, in ticks.
pub const DEFAULT_HEARTBEAT_TICKS: u64 = 2;
/// The cluster id travels in every node-to-node handshake; a bound keeps the handshake small and bounded.
pub const MAX_CLUSTER_ID_LEN: usize = 64;

/// One `peers` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerFile {
    pub id: Spanned<u64>,
    pub address: Spanned<String>,
}

/// The `[cluster]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    pub node_id: Spanned<u64>,
    pub cluster_id: Spanned<String>,
    pub peers: Spanned<Vec<PeerFile>>,
    /// Where this node accepts other nodes' connections; default: its own `peers` address.
    #[serde(default)]
    pub listen: Option<Spanned<String>>,
    #[serde(default)]
    pub tick_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub election_ticks: Option<Spanned<u64>>,
    #[serde(default)]
    pub heartbeat_ticks: Option<Spanned<u64>>,
    /// Bytes of client output the leader holds waiting for commits; beyond it QoS 0 messages are dropped.
    #[serde(default)]
    pub max_held_bytes: Option<Spanned<u64>>,
    /// Bytes of applied entries after which a node snapshots its image and compacts its log.
    #[serde(default)]
    pub snapshot_bytes: Option<Spanned<u64>>,
    /// This node joins a running cluster: `peers` lists the current members and this node (for its address);
    /// it becomes a voter once `mqtt-broker cluster add-node` adds it.
    #[serde(default)]
    pub join: Option<Spanned<bool>>,
}

/// One voter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: u64,
    pub address: SocketAddr,
}

/// The effective cluster configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub node_id: u64,
    pub cluster_id: String,
    /// Every voter, this node included, sorted by id.
    pub peers: Vec<Peer>,
    /// Where other nodes connect to this one.
    pub listen: SocketAddr,
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// See `mqtt_cluster::NodeConfig::max_held_bytes`.
    pub max_held_bytes: usize,
    /// See `mqtt_cluster::NodeConfig::snapshot_bytes`.
    pub snapshot_bytes: u64,
    /// See `mqtt_cluster::NodeConfig::joining`.
    pub join: bool,
}

impl ClusterSettings {
    /// The other voters.
    pub fn others(&self) -> impl Iterator<Item = &Peer> + '_ {
        self.peers.iter().filter(move |p| p.id != self.node_id)
    }

    pub fn voter_ids(&self) -> Vec<u64> {
        self.peers.iter().map(|p| p.id).collect()
    }

    pub fn to_toml(&self) -> toml::Table {
        let int = |n: u64| toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
        let mut t = toml::Table::new();
        t.insert("node_id".into(), int(self.node_id));
        t.insert("cluster_id".into(), toml::Value::String(self.cluster_id.clone()));
        t.insert("listen".into(), toml::Value::String(self.listen.to_string()));
        t.insert("tick_ms".into(), int(self.tick.as_millis() as u64));
        t.insert("election_ticks".into(), int(self.election_ticks as u64));
        t.insert("heartbeat_ticks".into(), int(self.heartbeat_ticks as u64));
        t.insert("max_held_bytes".into(), int(self.max_held_bytes as u64));
        t.insert("snapshot_bytes".into(), int(self.snapshot_bytes));
        if self.join {
            t.insert("join".into(), toml::Value::Boolean(true));
        }
        let peers = self
            .peers
            .iter()
            .map(|p| {
                let mut e = toml::Table::new();
                e.insert("id".into(), int(p.id));
                e.insert("address".into(), toml::Value::String(p.address.to_string()));
                toml::Value::Table(e)
            })
            .collect();
        t.insert("peers".into(), toml::Value::Array(peers));
        t
    }
}

/// Validates the table; every error names the key and its position in the file.
pub fn resolve(file: &ClusterFile, source: &Source<'_>) -> Result<ClusterSettings, ConfigError> {
    let invalid = |key: &str, span: std::ops::Range<usize>, problem: Problem| ConfigError::Invalid {
        origin: file_origin(source.path, source.text, span),
        key: format!("cluster.{key}"),
        problem,
    };
    let node_id = *file.node_id.get_ref();
    if node_id == 0 {
        // raft-rs reserves id 0 for "nobody" (no leader, no vote).
        return Err(invalid("node_id", file.node_id.span(), Problem::Zero));
    }
    let cluster_id = file.cluster_id.get_ref().clone();
    if cluster_id.is_empty() || cluster_id.len() > MAX_CLUSTER_ID_LEN {
        return Err(invalid(
            "cluster_id",
            file.cluster_id.span(),
            Problem::BadClusterId(cluster_id),
        ));
    }
    let mut peers = Vec::new();
    for entry in file.peers.get_ref() {
        let id = *entry.id.get_ref();
        if id == 0 {
            return Err(invalid("peers.id", entry.id.span(), Problem::Zero));
        }
        if peers.iter().any(|p: &Peer| p.id == id) {
            return Err(invalid(
                "peers.id",
                entry.id.span(),
                Problem::DuplicatePeer(id.to_string()),
            ));
        }
        let text = entry.address.get_ref();
        let address = parse_address(text)
            .ok_or_else(|| invalid("peers.address", entry.address.span(), Problem::BadAddress(text.clone())))?;
        if peers.iter().any(|p: &Peer| p.address == address) {
            return Err(invalid(
                "peers.address",
                entry.address.span(),
                Problem::DuplicatePeer(address.to_string()),
            ));
        }
        peers.push(Peer { id, address });
    }
    // A cluster starts with 3 or 5 voters: tolerates 1 or 2 failures; an even count tolerates no more than one
    // fewer. A joining node lists the members as they are now (any number, at run time) and itself.
    let join = file.join.as_ref().is_some_and(|j| *j.get_ref());
    let count_ok = if join {
        peers.len() >= 2
    } else {
        matches!(peers.len(), 3 | 5)
    };
    if !count_ok {
        return Err(invalid("peers", file.peers.span(), Problem::VoterCount(peers.len())));
    }
    let Some(own) = peers.iter().find(|p| p.id == node_id) else {
        return Err(invalid("node_id", file.node_id.span(), Problem::NotAPeer(node_id)));
    };
    let listen = match &file.listen {
        Some(text) => parse_address(text.get_ref())
            .ok_or_else(|| invalid("listen", text.span(), Problem::BadAddress(text.get_ref().clone())))?,
        None => own.address,
    };
    let positive = |key: &str, value: &Option<Spanned<u64>>, default: u64| match value {
        Some(v) if *v.get_ref() == 0 => Err(invalid(key, v.span(), Problem::Zero)),
        Some(v) => Ok(*v.get_ref()),
        None => Ok(default),
    };
    let tick_ms = positive("tick_ms", &file.tick_ms, DEFAULT_TICK_MS)?;
    let election_ticks = positive("election_ticks", &file.election_ticks, DEFAULT_ELECTION_TICKS)?;
    let heartbeat_ticks = positive("heartbeat_ticks", &file.heartbeat_ticks, DEFAULT_HEARTBEAT_TICKS)?;
    let max_held_bytes = positive(
        "max_held_bytes",
        &file.max_held_bytes,
        mqtt_cluster::config::DEFAULT_MAX_HELD_BYTES as u64,
    )?;
    let snapshot_bytes = positive(
        "snapshot_bytes",
        &file.snapshot_bytes,
        mqtt_cluster::config::DEFAULT_SNAPSHOT_BYTES,
    )?;
    // raft-rs refuses a heartbeat that is not shorter than the election timeout: followers would start elections
    // against a live leader.
    if heartbeat_ticks >= election_ticks {
        let span = file
            .heartbeat_ticks
            .as_ref()
            .or(file.election_ticks.as_ref())
            .map_or(0..0, Spanned::span);
        return Err(invalid(
            "heartbeat_ticks",
            span,
            Problem::HeartbeatNotBelowElection {
                heartbeat: heartbeat_ticks,
                election: election_ticks,
            },
        ));
    }
    if tick_ms > 60_000 {
        let span = file.tick_ms.as_ref().map_or(0..0, Spanned::span);
        return Err(invalid("tick_ms", span, Problem::TooLarge { max: 60_000 }));
    }
    if election_ticks > 10_000 {
        let span = file.election_ticks.as_ref().map_or(0..0, Spanned::span);
        return Err(invalid("election_ticks", span, Problem::TooLarge { max: 10_000 }));
    }
    peers.sort_by_key(|p| p.id);
    Ok(ClusterSettings {
        node_id,
        cluster_id,
        peers,
        listen,
        tick: Duration::from_millis(tick_ms),
        election_ticks: election_ticks as usize,
        heartbeat_ticks: heartbeat_ticks as usize,
        max_held_bytes: usize::try_from(max_held_bytes).unwrap_or(usize::MAX),
        snapshot_bytes,
        join,
    })
}

fn parse_address(text: &str) -> Option<SocketAddr> {
    text.trim().parse().ok()
}
