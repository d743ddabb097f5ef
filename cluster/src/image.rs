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
//! answering Raft while it does. A node that does not serve catches up whenever it is a window
//! (`REPLAY_WINDOW_BYTES`) behind, so a failover has at most that much to apply; the leader not at all. What is
//! applied, and in what order, is what the eager image applied: the normal entries' records, committed, in index
//! order, onto the image of the snapshot before them.

use crate::node::ClusterEvent;
use crate::storage::LogStore;
use crate::wire::{self, DataError};
use mqtt_core::persist::{frame, Image, Peek, Record};
use raft::eraftpb::{Entry, EntryType};
use std::collections::{HashMap, HashSet};

/// The image's garbage is collected once it holds at least this many messages (and twice the live ones).
const COLLECT_MIN_MESSAGES: usize = 4096;

/// Entry data replayed together (see `Replay`): enough to hold a queue entry's whole life under load (enqueued and
/// sent in one entry, finished a commit later, a few entries on), little enough that its bookkeeping stays small.
pub(crate) const REPLAY_WINDOW_BYTES: u64 = 4 << 20;

/// The image at some committed index, at or below the node's applied index.
pub(crate) struct LazyImage {
    image: Image,
    /// The index of the last entry applied to `image`; below the store's snapshot index, the snapshot replaces it.
    at: u64,
    collect: Collector,
}

impl LazyImage {
    pub(crate) fn new(image: Image, at: u64) -> LazyImage {
        LazyImage {
            image,
            at,
            collect: Collector::default(),
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
        let (mut spent, at) = (0, &mut self.at);
        let entries = store.entries_after(*at).take_while(|entry| {
            if entry.index > through || (spent > 0 && spent >= budget) {
                return false;
            }
            spent += entry.data.len() as u64 + 1;
            *at = entry.index;
            true
        });
        replay_windows(&mut self.image, entries, &mut self.collect, events);
        self.at >= through
    }

    /// A copy of the image caught up through `through`, for checks: costly, the node's own image stays as it is.
    pub(crate) fn copy_at(&self, store: &LogStore, through: u64) -> Image {
        let mut copy = LazyImage {
            image: Image::default(),
            at: 0,
            collect: Collector::default(),
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
}

/// When an image's garbage is collected.
pub(crate) struct Collector {
    /// Collect once the image holds this many messages.
    at: usize,
}

impl Default for Collector {
    fn default() -> Collector {
        Collector {
            at: COLLECT_MIN_MESSAGES,
        }
    }
}

impl Collector {
    /// Drops the messages no queue entry refers to any more, once they may be as many as the live ones: a `Done`
    /// record ends a queue entry but leaves its message in the image (another entry may refer to it). Without this
    /// every message a durable session ever received stays in memory (43 MB after 10,000 entries of a QoS 1
    /// bench). Safe between entries: an entry that queues a message carries its `Store` too (the broker stores a
    /// message again in each input that queues it), so no later entry refers to a message collected here.
    pub(crate) fn garbage(&mut self, image: &mut Image) {
        if image.messages.len() < self.at {
            return;
        }
        image.collect_garbage();
        self.at = (2 * image.messages.len()).max(COLLECT_MIN_MESSAGES);
    }
}

/// Normal entries applied to an image together, skipping what a later record among them cancels. Under a QoS 1
/// load most of a log is queue entries that live a few entries long: `Enqueue` and `Sent` in the entry of the
/// PUBLISH, `Done` in the one of the PUBACK, and the message's `Store`, which every finished entry leaves unreferenced
/// (the garbage collection drops it). A first pass reads only each record's first fields (`Peek`); the second
/// decodes and applies the rest. Exact: a `Done` removes its queue entry from its session whatever `Enqueue` and
/// `Sent` did to it before (and a session ended or opened in between holds no such entry either way), so those two
/// are skipped when a `Done` of the same entry follows; the `Done` itself is applied. A `Store` is skipped when no
/// queue entry left after the window refers to its message and the image holds no earlier copy of it: it would
/// only be collected. Nothing else is skipped; an entry whose data does not decode is reported and none of its
/// records applied, as `apply_entry_data` does.
#[derive(Default)]
pub(crate) struct Replay<'a> {
    entries: Vec<&'a Entry>,
    /// Entry data held, in bytes.
    pub(crate) bytes: u64,
}

impl<'a> Replay<'a> {
    /// Takes a normal entry (others carry no records).
    pub(crate) fn push(&mut self, entry: &'a Entry) {
        if entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
            self.bytes += entry.data.len() as u64;
            self.entries.push(entry);
        }
    }

    /// Applies the entries taken, in order, and starts empty again.
    pub(crate) fn apply(&mut self, image: &mut Image, events: &mut Vec<ClusterEvent>) {
        let entries = std::mem::take(&mut self.entries);
        self.bytes = 0;
        // Pass 1: each entry's record bodies (offset, length), or why they do not scan; each queue entry's last
        // `Done` (by position among the records of the window); the `Enqueue`s.
        let mut frames: Vec<Result<Vec<(usize, usize)>, DataError>> = Vec::with_capacity(entries.len());
        let mut last_done: HashMap<(u64, u64), usize> = HashMap::new();
        let mut enqueues: Vec<(u64, u64, u64, usize)> = Vec::new();
        let mut position = 0;
        for entry in &entries {
            let scanned = scan(&entry.data);
            if let Ok(bodies) = &scanned {
                for &(at, len) in bodies {
                    match Peek::of(&entry.data[at..at + len]) {
                        Peek::Done { key, seq } => {
                            last_done.insert((key, seq), position);
                        }
                        Peek::Enqueue { key, seq, id } => enqueues.push((key, seq, id, position)),
                        _ => {}
                    }
                    position += 1;
                }
            }
            frames.push(scanned);
        }
        let cancelled = |key: u64, seq: u64, position: usize| last_done.get(&(key, seq)).is_some_and(|d| *d > position);
        let needed: HashSet<u64> = enqueues
            .iter()
            .filter(|(key, seq, _, position)| !cancelled(*key, *seq, *position))
            .map(|(_, _, id, _)| *id)
            .collect();
        // Pass 2.
        let mut position = 0;
        for (entry, scanned) in entries.iter().zip(frames) {
            let bodies = match scanned {
                Ok(bodies) => bodies,
                Err(error) => {
                    events.push(ClusterEvent::EntryUndecodable {
                        index: entry.index,
                        error,
                    });
                    continue;
                }
            };
            let mut records = Vec::with_capacity(bodies.len());
            let mut failed = None;
            for (at, len) in bodies {
                let body = &entry.data[at..at + len];
                let skip = match Peek::of(body) {
                    Peek::Enqueue { key, seq, .. } | Peek::Sent { key, seq } => cancelled(key, seq, position),
                    Peek::Store { id } => !needed.contains(&id) && !image.messages.contains_key(&id),
                    Peek::Done { .. } | Peek::Other => false,
                };
                position += 1;
                if skip || failed.is_some() {
                    continue;
                }
                match Record::decode(entry.data.slice_ref(body)) {
                    Ok(record) => records.push(record),
                    Err(e) => failed = Some(DataError(format!("undecodable record at byte {at}: {e}"))),
                }
            }
            match failed {
                Some(error) => events.push(ClusterEvent::EntryUndecodable {
                    index: entry.index,
                    error,
                }),
                None => records.into_iter().for_each(|record| image.apply(record)),
            }
        }
    }
}

/// Applies `entries` to `image` a window (`REPLAY_WINDOW_BYTES`) at a time (see `Replay`), collecting the image's
/// garbage after each: the node's catch-up and the snapshot thread's rebuild alike.
pub(crate) fn replay_windows<'a>(
    image: &mut Image,
    entries: impl IntoIterator<Item = &'a Entry>,
    collect: &mut Collector,
    events: &mut Vec<ClusterEvent>,
) {
    let mut replay = Replay::default();
    for entry in entries {
        replay.push(entry);
        if replay.bytes >= REPLAY_WINDOW_BYTES {
            replay.apply(image, events);
            collect.garbage(image);
        }
    }
    replay.apply(image, events);
    collect.garbage(image);
}

/// The (offset, length) of each record body in an entry's data, each frame's checksum checked.
fn scan(data: &[u8]) -> Result<Vec<(usize, usize)>, DataError> {
    let mut bodies = Vec::new();
    let mut offset = 0;
    loop {
        match frame::scan(data, offset) {
            frame::Scan::End => return Ok(bodies),
            frame::Scan::Frame { body, next } => {
                bodies.push((offset + frame::HEADER, body.len()));
                offset = next;
            }
            frame::Scan::Truncated => return Err(DataError(format!("record cut short at byte {offset}"))),
            frame::Scan::Corrupt => return Err(DataError(format!("checksum mismatch at byte {offset}"))),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mqtt_core::packet::{ProtocolVersion, QoS};
    use mqtt_core::persist::{SentState, StoredMessage};
    use rand::Rng;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn message(payload: u64) -> Box<StoredMessage> {
        Box::new(StoredMessage {
            topic: "t".into(),
            payload: Bytes::from(payload.to_be_bytes().to_vec()),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
            expires_at: None,
        })
    }

    /// A random run of records over few sessions, entries, messages and sequence numbers, so that queue entries
    /// are enqueued, sent and finished within one entry or across entries, sessions end and reopen under the same
    /// key with the same sequence numbers, a message is stored again with other contents, and records refer to
    /// what is gone. As the broker writes them, an entry that queues a message stores it too (see
    /// `Collector::garbage`).
    fn random_entries(rng: &mut ChaCha8Rng) -> Vec<Entry> {
        (1..=rng.gen_range(1..40u64))
            .map(|index| {
                let mut records: Vec<Record> = Vec::new();
                for _ in 0..rng.gen_range(0..30) {
                    let record = {
                        let key = rng.gen_range(1..4);
                        let seq = rng.gen_range(1..6);
                        let id = rng.gen_range(1..8);
                        match rng.gen_range(0..20) {
                            0 => Record::SessionOpen {
                                key,
                                client_id: format!("c{key}"),
                                protocol: ProtocolVersion::V5,
                                expiry: 60,
                            },
                            1 => Record::SessionEnd { key },
                            2..=4 => Record::Store {
                                id,
                                message: message(rng.gen()),
                            },
                            5..=9 => Record::Enqueue {
                                key,
                                seq,
                                id,
                                qos: QoS::AtLeastOnce,
                                retain: false,
                                subscription_ids: Vec::new(),
                            },
                            10..=13 => Record::Sent {
                                key,
                                seq,
                                packet_id: rng.gen(),
                                state: SentState::Published,
                            },
                            _ => Record::Done { key, seq },
                        }
                    };
                    if let Record::Enqueue { id, .. } = record {
                        if !records
                            .iter()
                            .any(|r| matches!(r, Record::Store { id: i, .. } if *i == id))
                        {
                            records.push(Record::Store {
                                id,
                                message: message(rng.gen()),
                            });
                        }
                    }
                    records.push(record);
                }
                Entry {
                    index,
                    data: wire::encode_records(&records).into(),
                    ..Entry::default()
                }
            })
            .collect()
    }

    fn comparable(mut image: Image) -> Image {
        image.collect_garbage();
        image.orphan_records = 0;
        image
    }

    #[test]
    fn a_replay_that_skips_cancelled_records_ends_at_the_image_of_applying_every_record() {
        for seed in 0..2000 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let entries = random_entries(&mut rng);
            let mut every = Image::default();
            for entry in &entries {
                apply_entry_data(&mut every, entry, &mut Vec::new());
            }
            // In one window, and in windows of a few entries (a queue entry's records split between them).
            let mut whole = Image::default();
            let mut replay = Replay::default();
            entries.iter().for_each(|e| replay.push(e));
            replay.apply(&mut whole, &mut Vec::new());
            let mut windows = Image::default();
            for chunk in entries.chunks(rng.gen_range(1..5)) {
                let mut replay = Replay::default();
                chunk.iter().for_each(|e| replay.push(e));
                replay.apply(&mut windows, &mut Vec::new());
            }
            let every = comparable(every);
            assert_eq!(comparable(whole), every, "seed {seed}, one window");
            assert_eq!(comparable(windows), every, "seed {seed}, windows");
        }
    }

    #[test]
    fn an_entry_that_does_not_decode_is_reported_and_not_applied() {
        let good = wire::encode_records(&[Record::SessionOpen {
            key: 1,
            client_id: "c".into(),
            protocol: ProtocolVersion::V5,
            expiry: 60,
        }]);
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let entries: Vec<Entry> = [good, bad]
            .into_iter()
            .zip(1..)
            .map(|(data, index)| Entry {
                index,
                data: data.into(),
                ..Entry::default()
            })
            .collect();
        let (mut image, mut events) = (Image::default(), Vec::new());
        let mut replay = Replay::default();
        entries.iter().for_each(|e| replay.push(e));
        replay.apply(&mut image, &mut events);
        assert_eq!(image.sessions.len(), 1);
        assert!(matches!(
            events.as_slice(),
            [ClusterEvent::EntryUndecodable { index: 2, .. }]
        ));
    }
}
