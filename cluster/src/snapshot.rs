//! The node's own snapshots, built, encoded and written off the driver's loop.
//!
//! Encoding the whole image (retained messages, sessions, queued messages) and writing it takes a large image
//! long: 100,000 queued messages are 14.2 MB, 0.2-0.9 s on a busy machine, past the election timeout, on every
//! node at once. So the node only decides when to snapshot and what it covers, and hands the driver what rebuilds
//! the image at that index without copying it: the previous snapshot's data and the entries applied since (shared
//! buffers, a pointer each; cloning the image itself took the loop 96 ms for those 100,000 messages). The driver
//! rebuilds, encodes and writes it where it likes (a thread) and hands the written snapshot back
//! (`NodeInput::SnapshotWritten`). Only then does the node compact its log in memory: until the snapshot is
//! durable every entry it covers stays, in memory and on disk, so a crash mid-write loses nothing (recovery uses
//! the previous snapshot and the whole log).

use crate::image::{replay_windows, Collector};
use crate::node::ClusterEvent;
use crate::wire::{self, DataError};
use bytes::Bytes;
use mqtt_core::persist::Image;
use raft::eraftpb::{ConfState, Entry, Snapshot, SnapshotMetadata};

/// The node's applied state at one index, for the driver to rebuild, encode and write (see
/// `NodeOutput::TakeSnapshot`).
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotJob {
    metadata: SnapshotMetadata,
    digest: u64,
    source: Source,
}

#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// The image itself, cloned (when the log does not reach back to the previous snapshot).
    Image(Image),
    /// The data of the previous snapshot (empty: none) and the entries applied after it, up to the index.
    Replay { base: Bytes, entries: Vec<Entry> },
}

impl SnapshotJob {
    fn metadata(index: u64, term: u64, conf_state: ConfState) -> SnapshotMetadata {
        let mut metadata = SnapshotMetadata {
            index,
            term,
            ..SnapshotMetadata::default()
        };
        metadata.set_conf_state(conf_state);
        metadata
    }

    /// A job that replays `entries` onto the image of the snapshot whose data is `base`.
    pub(crate) fn replay(
        (index, term, conf_state): (u64, u64, ConfState),
        digest: u64,
        base: Bytes,
        entries: Vec<Entry>,
    ) -> SnapshotJob {
        SnapshotJob {
            metadata: Self::metadata(index, term, conf_state),
            digest,
            source: Source::Replay { base, entries },
        }
    }

    /// A job holding a copy of the image.
    pub(crate) fn copy((index, term, conf_state): (u64, u64, ConfState), digest: u64, image: Image) -> SnapshotJob {
        SnapshotJob {
            metadata: Self::metadata(index, term, conf_state),
            digest,
            source: Source::Image(image),
        }
    }

    /// The index of the last entry the snapshot holds.
    pub fn index(&self) -> u64 {
        self.metadata.index
    }

    /// The image at the snapshot's index, live messages only. Costly (it decodes the previous snapshot and applies
    /// the entries since): for the driver to run off its loop.
    pub fn image(&self) -> Result<Image, DataError> {
        let mut image = match &self.source {
            Source::Image(image) => image.clone(),
            Source::Replay { base, entries } => {
                let mut collect = Collector::default();
                let mut image = if base.is_empty() {
                    Image::default()
                } else {
                    wire::decode_snapshot_data(base)?.1
                };
                // The records of normal entries (configuration changes live in the metadata), a window at a time
                // (see `Replay`), the garbage collected as the node's image does.
                let mut events = Vec::new();
                replay_windows(&mut image, entries, &mut collect, &mut events);
                if let Some(ClusterEvent::EntryUndecodable { index, error }) = events.into_iter().next() {
                    return Err(DataError(format!("entry {index}: {error}")));
                }
                image
            }
        };
        // The snapshot holds live messages only (see `Node::collect_garbage`).
        image.collect_garbage();
        Ok(image)
    }

    /// The Raft snapshot: the metadata and the image's records (`wire::encode_snapshot_data`). Costly: for the
    /// driver to run off its loop. An error only if the previous snapshot or an applied entry does not decode,
    /// which the node checked when it took them in (memory corruption, then).
    pub fn encode(&self) -> Result<Snapshot, DataError> {
        let mut snapshot = Snapshot {
            data: wire::encode_snapshot_data(self.digest, &self.image()?),
            ..Snapshot::default()
        };
        snapshot.set_metadata(self.metadata.clone());
        Ok(snapshot)
    }
}
