//! The node's image of the applied state, brought up to date only when something needs it.
//!
//! Every committed entry is in the node's log (in memory, from its latest snapshot on), and the snapshot thread
//! already rebuilds the image from the previous snapshot and the entries since (see `snapshot`). Applying every
//! entry to an image on the loop as well did the same work twice: on a follower under a QoS 1 fan-out load it was
//! 41 % of the process's CPU (decoding the records, `Image::apply`, the garbage collection), on the leader 18 %
//! (its own records). The image is needed only when this node starts serving as leader (its broker is rebuilt
//! from it) and by the checks of tests and the simulator. So it stays at the index it was last brought to, and
//! is caught up from the log, or from the latest snapshot once the log behind it is compacted, when needed: a new
//! leader catches up a bounded amount of entry data per input (see `Node::maybe_serve`), so its loop keeps
//! answering Raft while it does. What is applied, and in what order, is what the eager image applied: the normal
//! entries' records, committed, in index order, onto the image of the snapshot before them.

use crate::node::ClusterEvent;
use crate::storage::LogStore;
use crate::wire;
use mqtt_core::persist::Image;
use raft::eraftpb::{Entry, EntryType};

/// The image's garbage is collected once it holds at least this many messages (and twice the live ones).
const COLLECT_MIN_MESSAGES: usize = 4096;

/// The image at some committed index, at or below the node's applied index.
pub(crate) struct LazyImage {
    image: Image,
    /// The index of the last entry applied to `image`; below the store's snapshot index, the snapshot replaces it.
    at: u64,
    /// Collect the image's garbage once it holds this many messages (see `collect_garbage`).
    collect_at: usize,
}

impl LazyImage {
    pub(crate) fn new(image: Image, at: u64) -> LazyImage {
        LazyImage {
            image,
            at,
            collect_at: COLLECT_MIN_MESSAGES,
        }
    }

    /// The image of a snapshot installed at `at`.
    pub(crate) fn replace(&mut self, image: Image, at: u64) {
        self.image = image;
        self.at = at;
    }

    /// Whether entries up to `applied` still have to be applied.
    pub(crate) fn is_behind(&self, applied: u64) -> bool {
        self.at < applied
    }

    /// Takes the image, caught up beforehand (see `catch_up`); the next catch-up starts from the latest snapshot.
    pub(crate) fn take(&mut self) -> Image {
        self.at = 0;
        std::mem::take(&mut self.image)
    }

    /// A snapshot at `index` was written: an image behind it would be rebuilt from it anyway, so its memory goes now.
    pub(crate) fn compacted(&mut self, index: u64) {
        if self.at < index {
            self.take();
        }
    }

    /// Applies the committed entries after the image's index through `through` from `store`, about `budget` bytes
    /// of entry data at most (at least one entry), first replacing the image by the store's snapshot if the log
    /// behind it is compacted. True once the image is at `through`. An entry or snapshot that does not decode is
    /// reported in `events` and skipped (the eager image did the same).
    pub(crate) fn catch_up(
        &mut self,
        store: &LogStore,
        through: u64,
        budget: u64,
        events: &mut Vec<ClusterEvent>,
    ) -> bool {
        if self.at >= through {
            return true;
        }
        let base = store.snapshot_index();
        if self.at < base {
            match wire::decode_snapshot_data(&store.snapshot_data()) {
                Ok((_, image)) => self.image = image,
                Err(error) => events.push(ClusterEvent::SnapshotUndecodable { error }),
            }
            self.at = base;
        }
        let mut spent = 0;
        for entry in store.entries_after(self.at) {
            if entry.index > through || (spent > 0 && spent >= budget) {
                break;
            }
            spent += entry.data.len() as u64 + 1;
            if entry.get_entry_type() == EntryType::EntryNormal {
                apply_entry_data(&mut self.image, entry, events);
            }
            self.at = entry.index;
        }
        self.collect_garbage();
        self.at >= through
    }

    /// A copy of the image caught up through `through`, for checks: costly, the node's own image stays as it is.
    pub(crate) fn copy_at(&self, store: &LogStore, through: u64) -> Image {
        let mut copy = LazyImage {
            image: Image::default(),
            at: 0,
            collect_at: self.collect_at,
        };
        if self.at >= store.snapshot_index() {
            copy.image = self.image.clone();
            copy.at = self.at;
        }
        copy.catch_up(store, through, u64::MAX, &mut Vec::new());
        copy.image
    }

    /// The image as it is (callers catch it up first).
    pub(crate) fn get(&self) -> &Image {
        &self.image
    }

    /// Drops the messages no queue entry refers to any more, once they may be as many as the live ones: a `Done`
    /// record ends a queue entry but leaves its message in the image (another entry may refer to it). Without this
    /// every message a durable session ever received stays in memory (43 MB after 10,000 entries of a QoS 1
    /// bench). Safe between entries: an entry that queues a message carries its `Store` too (the broker stores a
    /// message again in each input that queues it), so no later entry refers to a message collected here.
    fn collect_garbage(&mut self) {
        if self.image.messages.len() < self.collect_at {
            return;
        }
        self.image.collect_garbage();
        self.collect_at = (2 * self.image.messages.len()).max(COLLECT_MIN_MESSAGES);
    }
}

/// Applies a normal entry's records to `image`.
pub(crate) fn apply_entry_data(image: &mut Image, entry: &Entry, events: &mut Vec<ClusterEvent>) {
    if entry.data.is_empty() {
        return;
    }
    match wire::decode_records(&entry.data) {
        Ok(records) => {
            for record in records {
                image.apply(record);
            }
        }
        Err(error) => events.push(ClusterEvent::EntryUndecodable {
            index: entry.index,
            error,
        }),
    }
}
