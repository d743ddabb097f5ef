//! The Raft log, hard state and snapshot of one node, on real files in the data directory, with the framing, CRC
//! and torn-tail rules of the broker's own log (`mqtt_core::persist::frame`).
//!
//! Files, named by a generation number like the broker's own:
//! - `cluster.id`: one frame naming the cluster and node this directory belongs to; written once, checked at every
//!   start, so a directory from another cluster (or another node) is refused instead of voted with.
//! - `raft-G.snap`: the Raft snapshot that generation G starts from (metadata: index, term, voters; then the
//!   snapshot's data, the broker image, in chunks), with a trailer giving its length;
//! - `raft-G.log`: frames appended since, each an entry or a hard state (tag byte + protobuf). An entry whose index
//!   is not past the last one replaces it and everything after it, as Raft's log does when a new leader overwrites
//!   an uncommitted suffix; the last hard state wins.
//!
//! Appends are buffered and written with one write and one `fdatasync` per [`RaftDisk::commit`]: a group commit,
//! after which what Raft asked to persist is durable. The log is extended ahead of its end with written zeros
//! (`PREALLOCATE`), and frames overwrite them in place: a sync of writes that do not change the file's size or
//! allocation needs no journal commit on ext4 and similar file systems (measured here, three processes syncing
//! 6 KB each on one disk: 241 µs a sync against 434 µs appending), one fewer kernel thread woken per sync. Recovery
//! reads frames up to the first byte that is not one and takes an all-zero rest as the log's end. A snapshot starts a new generation: snapshot file written,
//! synced, renamed; a new log holding the entries after the snapshot and the hard state, synced; then the old
//! files removed. Recovery reads the newest snapshot and its log. The node's own snapshots are written and synced
//! by a thread (`write_snapshot_file`, to `raft-snapshot.tmp`: a name recovery ignores). When the node hands one
//! over (`start_next_log`), the next generation's log starts at once, holding the few entries past the snapshot's
//! index (and any not yet synced) and the hard state; appends go there while the thread works. When the thread is
//! done, the loop renames the snapshot into place as that generation's and removes the older files
//! (`adopt_snapshot`): a rename, no log to rewrite. A crash between leaves the next generation's log without its
//! snapshot: recovery then reads the previous snapshot, the previous log and that log after it (the two overlap,
//! and the later copy of an entry wins), and merges them back into the previous generation's log.

use crate::storage::StorageError;
use bytes::BytesMut;
use mqtt_core::persist::frame::{self, Scan};
use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState, Snapshot, SnapshotMetadata};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const ID_MAGIC: &[u8] = b"mqtt-broker cluster v1";
const SNAP_MAGIC: &[u8] = b"mqtt-broker raft snapshot v1";
const SNAP_TRAILER: &[u8] = b"end of raft snapshot";
const TAG_ENTRY: u8 = 1;
const TAG_HARD_STATE: u8 = 2;
/// Snapshot data is written in frames of at most this, so no single frame approaches the frame size limit.
const SNAP_CHUNK: usize = 1 << 20;
/// How far ahead of its data the log is extended with zeros, whenever a write comes within this of the end. At a
/// few MB/s of entries this costs one journalled sync every fraction of a second instead of every sync.
const PREALLOCATE: u64 = 2 << 20;
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Why the Raft files could not be read or written.
#[derive(Debug)]
pub enum DiskError {
    /// What the broker's own storage reports too: a read or write that failed, or damage with valid data after
    /// it (or a file that is not what its name says).
    Storage(StorageError),
    /// The directory belongs to another cluster or another node.
    Foreign {
        path: PathBuf,
        found: String,
        expected: String,
    },
    /// The recovered configuration no longer has this node among its voters: it was removed at run time.
    Removed {
        path: PathBuf,
        node_id: u64,
        voters: String,
    },
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskError::Storage(error) => error.fmt(f),
            DiskError::Foreign { path, found, expected } => write!(
                f,
                "{} says this data directory belongs to {found}, but this node is {expected}; refusing to start \
                 (point data_dir at this node's own directory)",
                path.display()
            ),
            DiskError::Removed { path, node_id, voters } => write!(
                f,
                "{} says node {node_id} was removed from the cluster (voters now {voters}); refusing to start on it \
                 (to add this node again, start it on an empty data directory with `join = true` and run \
                 `mqtt-broker cluster add-node`)",
                path.display()
            ),
        }
    }
}

impl From<StorageError> for DiskError {
    fn from(error: StorageError) -> DiskError {
        DiskError::Storage(error)
    }
}

impl std::error::Error for DiskError {}

fn io_err(path: &Path) -> impl Fn(io::Error) -> DiskError + '_ {
    move |source| {
        DiskError::Storage(StorageError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// `path` is damaged at `offset` (see `StorageError::Corrupt`).
fn corrupt(path: &Path, offset: u64, detail: impl Into<String>) -> DiskError {
    DiskError::Storage(StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        detail: detail.into(),
    })
}

/// What a data directory held: everything `Node::new` needs to resume where this node stopped.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recovered {
    pub hard_state: HardState,
    /// The newest snapshot (empty metadata: none yet).
    pub snapshot: Snapshot,
    /// The entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
    /// Bytes cut from the end of the log: a torn last write (or damage given up with `--repair`).
    pub truncated_bytes: u64,
}

/// The Raft files of one node.
pub struct RaftDisk {
    dir: PathBuf,
    generation: u64,
    log: File,
    log_path: PathBuf,
    /// Where the log's frames end (the next write goes there), and how long the file is: zeros in between.
    log_len: u64,
    allocated: u64,
    /// Frames not yet written.
    pending: BytesMut,
    scratch: Vec<u8>,
    /// What the files hold, kept so a compaction can rewrite the log's tail.
    hard_state: HardState,
    entries: Vec<Entry>,
    snapshot_index: u64,
    /// The generation whose log `start_next_log` started, and the index of the snapshot it waits for.
    handover: Option<(u64, u64)>,
    /// The thread syncing the directory after a snapshot was put in place and removing the older files.
    cleanup: Option<std::thread::JoinHandle<()>>,
}

impl RaftDisk {
    /// Opens `dir` for node `node_id` of `cluster_id`: checks (or, in a fresh directory, writes) `cluster.id`, and
    /// recovers the snapshot, entries and hard state.
    pub fn open(dir: &Path, cluster_id: &str, node_id: u64, repair: bool) -> Result<(RaftDisk, Recovered), DiskError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        check_identity(dir, cluster_id, node_id)?;
        let (snapshots, logs) = generations(dir)?;
        let generation = snapshots.iter().chain(&logs).max().copied().unwrap_or(0);
        let mut recovered = Recovered::default();
        // A hand-over's log without its snapshot (a crash while the thread wrote it): the previous generation's
        // snapshot and both logs hold everything (see `start_next_log`).
        let stale = generation > 0
            && !snapshots.contains(&generation)
            && logs.contains(&generation)
            && logs.contains(&(generation - 1))
            && (generation == 1 || snapshots.contains(&(generation - 1)));
        let generation = if stale { generation - 1 } else { generation };
        if snapshots.contains(&generation) {
            let path = snap_path(dir, generation);
            recovered.snapshot = read_snapshot(&path)?;
        } else if generation > 0 && !repair {
            return Err(corrupt(
                &log_path(dir, generation),
                0,
                format!("its snapshot raft-{generation:020}.snap is missing"),
            ));
        }
        let snapshot_index = recovered.snapshot.get_metadata().index;
        let path = log_path(dir, generation);
        // A crash between a compaction's snapshot and its new log leaves the snapshot without a log: the previous
        // generation's log still holds the hard state and the entries, and is rewritten as this generation's.
        let previous = log_path(dir, generation.wrapping_sub(1));
        let source = if !path.exists() && generation > 0 && previous.exists() {
            log::warn!(
                "{} is missing (a crash during compaction): recovering from {}",
                path.display(),
                previous.display()
            );
            previous
        } else {
            path.clone()
        };
        let log_len = if source.exists() {
            let (len, cut) = replay(&source, snapshot_index, repair, &mut recovered)?;
            recovered.truncated_bytes = cut;
            len
        } else {
            0
        };
        if stale {
            let next = log_path(dir, generation + 1);
            log::warn!(
                "{} has no snapshot (a crash while it was written): recovering from {} and {}",
                next.display(),
                path.display(),
                next.display()
            );
            let (_, cut) = replay(&next, snapshot_index, repair, &mut recovered)?;
            recovered.truncated_bytes += cut;
        }
        // A snapshot holds committed state only; the hard state's commit may lag it when the snapshot was put in
        // place after the log's last hard state was written (`adopt_snapshot` writes none), and raft-rs refuses a
        // commit index below its snapshot.
        if recovered.hard_state.commit < snapshot_index {
            recovered.hard_state.commit = snapshot_index;
        }
        let log = open_log(dir, &source)?;
        let allocated = log.metadata().map_err(io_err(&source))?.len().max(log_len);
        let mut disk = RaftDisk {
            dir: dir.to_path_buf(),
            generation,
            log,
            log_path: source.clone(),
            log_len,
            allocated,
            pending: BytesMut::new(),
            scratch: Vec::new(),
            hard_state: recovered.hard_state.clone(),
            entries: recovered.entries.clone(),
            snapshot_index,
            handover: None,
            cleanup: None,
        };
        if source != path || stale {
            // Both logs merged into this generation's (the newer one removed after the rename: until then the
            // two still recover the same).
            disk.rewrite(generation)?;
            if stale {
                let next = log_path(dir, generation + 1);
                std::fs::remove_file(&next).map_err(io_err(&next))?;
                sync_dir(dir)?;
            }
        }
        Ok((disk, recovered))
    }

    /// Queues entries for the next commit; an entry at or below the last index replaces the suffix from there.
    pub fn append(&mut self, entries: &[Entry]) {
        for entry in entries {
            self.put(TAG_ENTRY, entry);
            overwrite(&mut self.entries, entry.clone());
        }
    }

    /// Queues the hard state for the next commit.
    pub fn set_hard_state(&mut self, hard_state: &HardState) {
        self.put(TAG_HARD_STATE, hard_state);
        self.hard_state = hard_state.clone();
    }

    fn put(&mut self, tag: u8, message: &dyn protobuf::Message) {
        self.scratch.clear();
        self.scratch.push(tag);
        // Writing a protobuf message to a Vec fails only for messages over 2 GiB, which a bounded Raft entry
        // (the broker's records are bounded by its packet size) cannot be.
        if message.write_to_vec(&mut self.scratch).is_ok() {
            frame::put(&mut self.pending, &self.scratch);
        }
    }

    /// Whether appends wait for [`RaftDisk::commit`].
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes and syncs everything queued: one write and one `fdatasync` for all of it.
    pub fn commit(&mut self) -> Result<(), DiskError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.write()?;
        self.sync()
    }

    /// Writes everything queued, without syncing it (see `sync`, `sync_handle`): durable only once a sync that
    /// starts after this returns has completed.
    pub fn write(&mut self) -> Result<(), DiskError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let end = self.log_len + self.pending.len() as u64;
        let extend = end + PREALLOCATE / 2 > self.allocated;
        let written = self.log.write_all_at(&self.pending, self.log_len).and_then(|()| {
            if !extend {
                return Ok(());
            }
            // Zeros past the new end, written (not a hole, not `fallocate`'s unwritten extents, both of which
            // make the sync that first writes into them commit the journal): the sync covering this write makes
            // them and the file's new size durable once, and the syncs after it only flush data.
            let target = end + PREALLOCATE;
            let mut at = end.max(self.allocated);
            while at < target {
                let n = (target - at).min(ZEROS.len() as u64);
                self.log.write_all_at(&ZEROS[..n as usize], at)?;
                at += n;
            }
            self.allocated = target;
            Ok(())
        });
        if let Err(e) = written {
            // Cut off whatever part made it (and the zeros after it), so a retry does not leave a torn frame in
            // the middle of the log.
            let _ = self.log.set_len(self.log_len);
            self.allocated = self.log_len;
            return Err(io_err(&self.log_path)(e));
        }
        self.allocated = self.allocated.max(end);
        self.log_len = end;
        self.pending.clear();
        Ok(())
    }

    /// Syncs what `write` wrote to the current log.
    pub fn sync(&mut self) -> Result<(), DiskError> {
        self.log.sync_data().map_err(io_err(&self.log_path))
    }

    /// An error of a sync of the current log made elsewhere (see `sync_handle`).
    pub fn sync_error(&self, source: io::Error) -> DiskError {
        io_err(&self.log_path)(source)
    }

    /// A second handle of the current log, for a sync on another thread (`fdatasync` on it covers every write
    /// made through this one before the sync starts).
    pub fn sync_handle(&self) -> Result<File, DiskError> {
        self.log.try_clone().map_err(io_err(&self.log_path))
    }

    /// The index of the snapshot the files start from.
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    /// Makes `snapshot` the start of a new generation: the entries it covers are dropped, later ones kept if they
    /// continue it (log compaction); with `discard_log` (a leader's snapshot replacing a log that disagreed) none
    /// are. Pending appends are committed first, so nothing queued before the snapshot is lost.
    pub fn save_snapshot(&mut self, snapshot: &Snapshot, discard_log: bool) -> Result<(), DiskError> {
        self.commit()?;
        let meta = snapshot.get_metadata();
        if meta.index <= self.snapshot_index {
            // Older than what the files already start from: nothing to do.
            return Ok(());
        }
        let snap = snap_path(&self.dir, self.generation + 1);
        write_snapshot(&snap, snapshot)?;
        // A hand-over's log is compacted away with the rest: its snapshot, when written, is dropped.
        self.handover = None;
        self.start_generation(snapshot, discard_log)
    }

    /// The node handed over its own snapshot at `snapshot_index` (a thread writes it): the next generation's log
    /// starts now, so that putting the snapshot in place later (`adopt_snapshot`) is a rename, not a rewrite of
    /// everything appended meanwhile. It holds every entry past the snapshot's index or past `synced_index` (the
    /// last entry the current log holds synced), whichever is lower, and the hard state, synced: with the previous
    /// snapshot and the current log it recovers everything should the new snapshot never be written, and with the
    /// new snapshot alone once it is. Everything queued goes in it: every persist so far is durable on return.
    pub fn start_next_log(&mut self, snapshot_index: u64, synced_index: u64) -> Result<(), DiskError> {
        let generation = self.generation + 1;
        self.install_log(generation, snapshot_index.min(synced_index))?;
        self.pending.clear();
        self.handover = Some((generation, snapshot_index));
        Ok(())
    }

    /// Where a thread writes the node's own snapshot (`write_snapshot_file`) before `adopt_snapshot` renames it into
    /// place. Recovery does not read it (it is not a generation's file); the next one overwrites it.
    pub fn snapshot_scratch_path(&self) -> PathBuf {
        self.dir.join("raft-snapshot.tmp")
    }

    /// Makes `snapshot`, written and synced at `written` (`write_snapshot_file`), the start of a new generation, as
    /// `save_snapshot` without `discard_log` does; the loop's part is a rename (its log was started at the
    /// hand-over, `start_next_log`). A snapshot not past the one the files start from, or not the one handed over
    /// (a leader's was installed meanwhile), is dropped: false.
    pub fn adopt_snapshot(&mut self, written: &Path, snapshot: &Snapshot) -> Result<bool, DiskError> {
        let meta = snapshot.get_metadata();
        let expected = Some((self.generation, meta.index));
        if meta.index <= self.snapshot_index || self.handover != expected {
            let _ = std::fs::remove_file(written);
            return Ok(false);
        }
        self.handover = None;
        let snap = snap_path(&self.dir, self.generation);
        std::fs::rename(written, &snap).map_err(io_err(&snap))?;
        // The current log was started for this snapshot (`start_next_log`): only what is held in memory changes.
        if self
            .entries
            .iter()
            .any(|e| e.index == meta.index && e.term == meta.term)
        {
            self.entries.retain(|e| e.index > meta.index);
        } else {
            self.entries.clear();
        }
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.snapshot_index = meta.index;
        // The directory sync that makes the rename durable, and the older files' removal after it, on a thread: the
        // loop's part is the rename. Until the sync, a crash may find the snapshot not in place, and then needs the
        // older files, which are removed only after it.
        let old = self.older_files(self.generation);
        let dir = self.dir.clone();
        // The previous one is long done (snapshots are far apart); waited for, so at most one runs.
        self.wait_cleanup();
        let spawned = std::thread::Builder::new()
            .name("raft-cleanup".into())
            .spawn(move || match sync_dir(&dir) {
                Ok(()) => remove_files(old),
                Err(e) => log::warn!("the Raft files before a snapshot are kept: {e}"),
            });
        match spawned {
            Ok(handle) => self.cleanup = Some(handle),
            Err(e) => log::warn!("the Raft files before a snapshot are kept (no thread to remove them: {e})"),
        }
        Ok(true)
    }

    /// Waits until the files a snapshot put in place made obsolete are removed (see `adopt_snapshot`).
    pub fn wait_cleanup(&mut self) {
        if let Some(handle) = self.cleanup.take() {
            let _ = handle.join();
        }
    }

    /// The log of the generation after the current one, starting from `snapshot` (already in place as that
    /// generation's snapshot file): the entries it covers are dropped, later ones kept if they continue it.
    fn start_generation(&mut self, snapshot: &Snapshot, discard_log: bool) -> Result<(), DiskError> {
        let meta = snapshot.get_metadata();
        let generation = self.generation + 1;
        // Entries past the snapshot survive only if they continue it (same term at its index, or later).
        let continues = !discard_log
            && self
                .entries
                .iter()
                .any(|e| e.index == meta.index && e.term == meta.term);
        if continues {
            self.entries.retain(|e| e.index > meta.index);
        } else {
            self.entries.clear();
        }
        if self.hard_state.commit < meta.index {
            self.hard_state.commit = meta.index;
        }
        self.snapshot_index = meta.index;
        self.rewrite(generation)
    }

    /// Writes the entries and hard state held as the log of `generation` (a temporary file, synced, renamed into
    /// place), appends there from now on, and removes the files of older generations.
    fn rewrite(&mut self, generation: u64) -> Result<(), DiskError> {
        self.install_log(generation, 0)?;
        self.remove_older(generation);
        Ok(())
    }

    /// Writes the entries held past index `after` and the hard state as the log of `generation` (a temporary file,
    /// synced, renamed into place, the directory synced) and appends there from now on.
    fn install_log(&mut self, generation: u64, after: u64) -> Result<(), DiskError> {
        let path = log_path(&self.dir, generation);
        let mut body = BytesMut::new();
        let mut scratch = Vec::new();
        for entry in self.entries.iter().filter(|e| e.index > after) {
            put_message(&mut body, &mut scratch, TAG_ENTRY, entry);
        }
        put_message(&mut body, &mut scratch, TAG_HARD_STATE, &self.hard_state);
        let tmp = path.with_extension("log.tmp");
        write_synced(&tmp, &body)?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        // The file is in place and its directory synced just above: no second directory sync (one `fsync` less
        // on the loop for each snapshot put in place).
        self.log = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
        self.log_path = path;
        self.log_len = body.len() as u64;
        self.allocated = self.log_len;
        self.generation = generation;
        Ok(())
    }

    /// Removes the files of generations before `generation` (a failure is logged: they are only disk space).
    fn remove_older(&mut self, generation: u64) {
        remove_files(self.older_files(generation));
    }

    /// The files of generations before `generation`.
    fn older_files(&self, generation: u64) -> Vec<PathBuf> {
        let (snapshots, logs) = match generations(&self.dir) {
            Ok(found) => found,
            Err(e) => {
                log::warn!("cannot list old Raft files: {e}");
                return Vec::new();
            }
        };
        snapshots
            .into_iter()
            .filter(|g| *g < generation)
            .map(|g| snap_path(&self.dir, g))
            .chain(
                logs.into_iter()
                    .filter(|g| *g < generation)
                    .map(|g| log_path(&self.dir, g)),
            )
            .collect()
    }
}

/// Removes `paths` (one already gone is fine: a later compaction may have removed it first).
fn remove_files(paths: Vec<PathBuf>) {
    for path in paths {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot remove old {}: {e}", path.display()),
        }
    }
}

fn put_message(out: &mut BytesMut, scratch: &mut Vec<u8>, tag: u8, message: &dyn protobuf::Message) {
    scratch.clear();
    scratch.push(tag);
    if message.write_to_vec(scratch).is_ok() {
        frame::put(out, scratch);
    }
}

/// Raft's log rule: an entry at index i replaces whatever was at i and after.
fn overwrite(entries: &mut Vec<Entry>, entry: Entry) {
    if let Some(first) = entries.first().map(|e| e.index) {
        if entry.index < first {
            entries.clear();
        } else {
            entries.truncate((entry.index - first) as usize);
        }
    }
    entries.push(entry);
}

fn identity_text(cluster_id: &str, node_id: u64) -> String {
    format!("cluster {cluster_id:?} node {node_id}")
}

fn check_identity(dir: &Path, cluster_id: &str, node_id: u64) -> Result<(), DiskError> {
    let path = dir.join("cluster.id");
    let expected = identity_text(cluster_id, node_id);
    match std::fs::read(&path) {
        Ok(data) => {
            let found = match frame::scan(&data, 0) {
                Scan::Frame { body, .. } if body.starts_with(ID_MAGIC) => {
                    String::from_utf8_lossy(&body[ID_MAGIC.len()..]).into_owned()
                }
                _ => return Err(corrupt(&path, 0, "not a cluster identity file")),
            };
            if found != expected {
                return Err(DiskError::Foreign { path, found, expected });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut body = ID_MAGIC.to_vec();
            body.extend_from_slice(expected.as_bytes());
            let mut out = BytesMut::new();
            frame::put(&mut out, &body);
            let tmp = dir.join("cluster.id.tmp");
            write_synced(&tmp, &out)?;
            std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
            sync_dir(dir)
        }
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// Replays a log into `recovered`; returns the valid length and the bytes cut from its end.
fn replay(path: &Path, snapshot_index: u64, repair: bool, recovered: &mut Recovered) -> Result<(u64, u64), DiskError> {
    let data = std::fs::read(path).map_err(io_err(path))?;
    let mut offset = 0;
    let problem = loop {
        match frame::scan(&data, offset) {
            Scan::End => return Ok((offset as u64, 0)),
            // The zeros the log was extended with (see `PREALLOCATE`): its end, not damage.
            Scan::Truncated | Scan::Corrupt if data[offset..].iter().all(|b| *b == 0) => return Ok((offset as u64, 0)),
            Scan::Frame { body, next } => {
                if let Err(detail) = apply_frame(body, snapshot_index, recovered) {
                    break detail;
                }
                offset = next;
            }
            Scan::Truncated => break "a frame cut short".to_string(),
            Scan::Corrupt => break "checksum mismatch".to_string(),
        }
    };
    let torn_tail = frame::valid_frame_after(&data, offset).is_none();
    if !torn_tail && !repair {
        return Err(corrupt(path, offset as u64, problem));
    }
    let cut = (data.len() - offset) as u64;
    log::warn!(
        "{}: {problem} at byte {offset}{}; truncating {cut} bytes",
        path.display(),
        if torn_tail {
            ", the last write before a crash"
        } else {
            " (--repair: valid frames after it are dropped)"
        }
    );
    let file = OpenOptions::new().write(true).open(path).map_err(io_err(path))?;
    file.set_len(offset as u64)
        .and_then(|()| file.sync_all())
        .map_err(io_err(path))?;
    Ok((offset as u64, cut))
}

fn apply_frame(body: &[u8], snapshot_index: u64, recovered: &mut Recovered) -> Result<(), String> {
    let (tag, message) = body.split_first().ok_or("an empty frame")?;
    match *tag {
        TAG_ENTRY => {
            let entry = Entry::parse_from_bytes(message).map_err(|e| format!("undecodable entry: {e}"))?;
            // A log rewritten by compaction starts after the snapshot; older entries are covered by it.
            if entry.index > snapshot_index {
                let next = recovered.entries.last().map_or(snapshot_index + 1, |e| e.index + 1);
                if entry.index > next {
                    return Err(format!("entry {} follows entry {}: a gap", entry.index, next - 1));
                }
                overwrite(&mut recovered.entries, entry);
            }
            Ok(())
        }
        TAG_HARD_STATE => {
            recovered.hard_state =
                HardState::parse_from_bytes(message).map_err(|e| format!("undecodable hard state: {e}"))?;
            Ok(())
        }
        other => Err(format!("unknown frame tag {other}")),
    }
}

fn write_snapshot(path: &Path, snapshot: &Snapshot) -> Result<(), DiskError> {
    let tmp = path.with_extension("snap.tmp");
    write_snapshot_file(&tmp, snapshot)?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
}

/// Writes `snapshot` as a snapshot file at `path` and syncs it (no rename: see `RaftDisk::adopt_snapshot`). Any
/// thread may call it: it touches no file but `path`.
pub fn write_snapshot_file(path: &Path, snapshot: &Snapshot) -> Result<(), DiskError> {
    let mut out = BytesMut::new();
    let mut scratch = Vec::new();
    frame::put(&mut out, SNAP_MAGIC);
    snapshot
        .get_metadata()
        .write_to_vec(&mut scratch)
        .map_err(|e| io_err(path)(io::Error::other(e)))?;
    frame::put(&mut out, &scratch);
    for chunk in snapshot.get_data().chunks(SNAP_CHUNK) {
        frame::put(&mut out, chunk);
    }
    let mut trailer = SNAP_TRAILER.to_vec();
    trailer.extend_from_slice(&(snapshot.get_data().len() as u64).to_be_bytes());
    frame::put(&mut out, &trailer);
    write_synced(path, &out)
}

/// Reads a snapshot file; any damage is an error (a snapshot is written whole and renamed into place, so a torn
/// one is not a crash artefact but corruption).
fn read_snapshot(path: &Path) -> Result<Snapshot, DiskError> {
    let data = std::fs::read(path).map_err(io_err(path))?;
    let corrupt = |offset: usize, detail: &str| corrupt(path, offset as u64, detail);
    let mut offset = match frame::scan(&data, 0) {
        Scan::Frame { body, next } if body == SNAP_MAGIC => next,
        _ => return Err(corrupt(0, "not a Raft snapshot file (bad header)")),
    };
    let mut snapshot = Snapshot::default();
    match frame::scan(&data, offset) {
        Scan::Frame { body, next } => {
            let meta = SnapshotMetadata::parse_from_bytes(body).map_err(|_| corrupt(offset, "undecodable metadata"))?;
            snapshot.set_metadata(meta);
            offset = next;
        }
        _ => return Err(corrupt(offset, "damaged metadata")),
    }
    let mut payload = Vec::new();
    loop {
        match frame::scan(&data, offset) {
            Scan::Frame { body, .. } if body.starts_with(SNAP_TRAILER) => {
                let expected = body
                    .get(SNAP_TRAILER.len()..)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes);
                if expected != Some(payload.len() as u64) {
                    return Err(corrupt(offset, "data length in the trailer does not match"));
                }
                snapshot.set_data(payload.into());
                return Ok(snapshot);
            }
            Scan::Frame { body, next } => {
                payload.extend_from_slice(body);
                offset = next;
            }
            Scan::End | Scan::Truncated => return Err(corrupt(offset, "the file ends before its trailer")),
            Scan::Corrupt => return Err(corrupt(offset, "checksum mismatch")),
        }
    }
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), DiskError> {
    let mut file = File::create(path).map_err(io_err(path))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(io_err(path))
}

/// Opens the log for writes at given offsets (not appends: frames overwrite the zeros it was extended with).
fn open_log(dir: &Path, path: &Path) -> Result<File, DiskError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    sync_dir(dir)?;
    Ok(file)
}

fn sync_dir(dir: &Path) -> Result<(), DiskError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

pub(crate) fn log_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("raft-{generation:020}.log"))
}

pub(crate) fn snap_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("raft-{generation:020}.snap"))
}

/// Generations of the Raft snapshots and logs present.
fn generations(dir: &Path) -> Result<(Vec<u64>, Vec<u64>), DiskError> {
    let mut snapshots = Vec::new();
    let mut logs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let number = |suffix: &str| name.strip_prefix("raft-")?.strip_suffix(suffix)?.parse::<u64>().ok();
        if let Some(g) = number(".snap") {
            snapshots.push(g);
        } else if let Some(g) = number(".log") {
            logs.push(g);
        }
    }
    Ok((snapshots, logs))
}

#[cfg(test)]
mod tests;
