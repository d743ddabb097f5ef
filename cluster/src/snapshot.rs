//! The node's own snapshots, encoded and written off the driver's loop.
//!
//! Encoding the whole image (retained messages, sessions, queued messages) and writing it takes a large image
//! long: 100,000 queued messages are 14.7 MB, 0.3-0.9 s on a busy machine, past the election timeout, on every
//! node at once. So the node only decides when to snapshot and what it covers, and freezes its image (a clone:
//! the payloads are shared, not copied); the driver encodes and writes it where it likes (a thread) and hands the
//! written snapshot back (`NodeInput::SnapshotWritten`). Only then does the node compact its log in memory: until
//! the snapshot is durable every entry it covers stays, in memory and on disk, so a crash mid-write loses nothing
//! (recovery uses the previous snapshot and the whole log).

use crate::wire;
use mqtt_core::persist::Image;
use raft::eraftpb::{ConfState, Snapshot, SnapshotMetadata};

/// The node's applied state frozen at one index, for the driver to encode and write (see
/// `NodeOutput::TakeSnapshot`).
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotJob {
    metadata: SnapshotMetadata,
    digest: u64,
    image: Image,
}

impl SnapshotJob {
    pub(crate) fn new(index: u64, term: u64, conf_state: ConfState, digest: u64, image: Image) -> SnapshotJob {
        let mut metadata = SnapshotMetadata {
            index,
            term,
            ..SnapshotMetadata::default()
        };
        metadata.set_conf_state(conf_state);
        SnapshotJob {
            metadata,
            digest,
            image,
        }
    }

    /// The index of the last entry the snapshot holds.
    pub fn index(&self) -> u64 {
        self.metadata.index
    }

    /// The frozen image (for tests and the simulator's checks).
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// The Raft snapshot: the metadata and the image's records (`wire::encode_snapshot_data`). The costly part,
    /// for the driver to run off its loop.
    pub fn encode(&self) -> Snapshot {
        let mut snapshot = Snapshot {
            data: wire::encode_snapshot_data(self.digest, &self.image),
            ..Snapshot::default()
        };
        snapshot.set_metadata(self.metadata.clone());
        snapshot
    }
}
