//! mqtt-cluster: the broker's durable state replicated over Raft, as a sans-IO node.
//!
//! The broker core already emits a [`mqtt_core::persist::Record`] for every durable change. Here those records
//! become entries of a Raft log (raft-rs's `RawNode`, the library TiKV runs on), committed on a majority of nodes
//! before any client output that depends on them is released. The leader runs the broker; every node applies
//! committed entries to an image, from which a new leader rebuilds its broker.
//!
//! - [`node`]: the node state machine ([`Node`]): `handle_input(now, NodeInput)`, `poll_output() -> NodeOutput`,
//!   `poll_timeout()`. Nothing in it reads a clock, touches a socket or a file, or draws unseeded randomness.
//! - [`config`]: the node's configuration and the durable state a driver recovers for it.
//! - [`wire`]: peer messages, entry data and snapshot data as bytes, with typed decode errors.
//! - [`members`]: voters added and removed at run time through Raft configuration changes.
//! - [`relay`]: clients on any node, their bytes relayed to the leader's broker over the node-to-node links.
//! - [`snapshot`]: the node's own snapshots, frozen by the node, encoded and written by the driver off its loop.
//! - `storage`: the in-memory Raft log raft-rs reads; `release`: the commit rule for client outputs; `image`: the
//!   applied image, caught up from the log only when needed.

pub mod auth;
pub mod config;
pub mod failover;
mod image;
pub mod members;
pub mod node;
mod planted;
pub mod relay;
mod release;
pub mod snapshot;
mod storage;
pub mod wire;

pub use auth::SharedAuthenticator;
pub use config::{NodeConfig, Recovered};
pub use members::{MemberChange, MemberChangeError};
pub use node::{ClusterEvent, Node, NodeInput, NodeOutput, NodeStatus, PeerProgress, Role};
#[cfg(feature = "planted-bugs")]
pub use planted::ClusterBug;
pub use snapshot::SnapshotJob;
pub use wire::PeerError;

/// raft-rs's protobuf types (entries, hard state, snapshots, messages), for drivers that store them.
pub use raft::eraftpb;
