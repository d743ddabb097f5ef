//! This broker as one node of a Raft cluster, on real sockets and files: the node's Raft log and hard state in the
//! data directory (`disk`), and the node-to-node links (`transport`).

pub mod disk;
pub mod transport;
