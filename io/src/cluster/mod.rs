//! This broker as one node of a Raft cluster, on real sockets and files: the node's Raft log and hard state in the
//! data directory (`disk`), the node-to-node links (`transport`), and the two around `mqtt_cluster::Node` as the
//! driver's core (`node`), which writes the node's own snapshots on a thread (`snapshotter`).

pub mod admin;
pub mod disk;
pub mod node;
mod snapshotter;
pub mod status;
mod syncer;
pub mod timing;
pub mod transport;
