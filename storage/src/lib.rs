//! Durable storage on real files: an append-only log of the core's records with group commit, and snapshots that
//! let the log start afresh, so disk use and start-up time follow live state rather than history.
//!
//! Files in the data directory, both named by a generation number:
//! - `snapshot-G.snap`: every record needed to rebuild the state as it was when generation G began;
//! - `wal-G.log`: the records emitted since.
//!
//! A snapshot of generation G+1 freezes the state at one moment: the log of G is synced and the log of G+1 starts
//! right then, so the broker goes on committing while the snapshot is written, on another thread
//! ([`Storage::begin_snapshot`], [`SnapshotJob::write`], [`Storage::finish_snapshot`]). It is written as a temporary
//! file, synced, renamed into place and the directory synced; only then are the old files removed. Recovery loads the
//! newest complete snapshot and replays the logs from its generation on: snapshot G, log G and log G+1 when the
//! snapshot of G+1 was not complete at a crash.
//!
//! All file access goes through [`FileSystem`]: the binary uses [`StdFs`], the simulator a simulated disk with
//! faults, so both run this same code.

pub mod fs;
#[cfg(feature = "planted-bugs")]
mod planted;
mod recovery;
mod sanity;
mod snapshot;
mod wal;

pub use fs::{FileSystem, StdFs, WriteFile};
#[cfg(feature = "planted-bugs")]
pub use planted::PlantedBug;
pub use recovery::Recovery;
pub use snapshot::tmp_path as snapshot_tmp_path;

use bytes::BytesMut;
use mqtt_core::persist::{Image, Record, RetainedSink};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// When an acknowledged record must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Before anything the broker sends after it (the acknowledgement included) leaves the machine.
    Always,
    /// Within this period; a crash (of the machine, not just the process) can lose that much.
    Interval(Duration),
    /// Memory only: nothing is written.
    None,
}

/// Why storage failed.
#[derive(Debug)]
pub enum StorageError {
    Io {
        path: PathBuf,
        source: io::Error,
    },
    /// A record in the middle of a file is damaged; data after it would be lost by truncating.
    Corrupt {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    /// A record could not be encoded, at this offset of the file being written: the write is abandoned.
    Unencodable {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    /// A snapshot was asked for while the one of this generation is still being written.
    SnapshotInFlight {
        generation: u64,
    },
    /// Snapshots kept failing, and the logs since the last complete one outgrew their bound: commits stop (the
    /// driver refuses QoS 1/2 messages as for a full disk) until a snapshot succeeds, so the disk that the logs
    /// take and the time recovery spends replaying them stay bounded.
    ChainTooLong {
        bytes: u64,
        limit: u64,
        failures: u32,
    },
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            StorageError::Corrupt { path, offset, detail } => write!(
                f,
                "{} is corrupt at byte {offset}: {detail}; valid data follows, so start-up stops rather than drop it \
                 (start with --repair to truncate the file there)",
                path.display()
            ),
            StorageError::Unencodable { path, offset, detail } => write!(
                f,
                "{}: cannot encode the record at byte {offset} ({detail}); the write is abandoned",
                path.display()
            ),
            StorageError::SnapshotInFlight { generation } => {
                write!(f, "the snapshot of generation {generation} is still being written")
            }
            StorageError::ChainTooLong { bytes, limit, failures } => write!(
                f,
                "{failures} snapshot(s) in a row failed and the logs since the last complete one hold {bytes} bytes \
                 (limit {limit}); nothing more is logged until a snapshot succeeds"
            ),
        }
    }
}

impl std::error::Error for StorageError {}

impl StorageError {
    fn io(path: &Path, source: io::Error) -> StorageError {
        StorageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether this is the disk running out of space (or quota).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::Io { source, .. } if matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)))
    }
}

/// The log grows to at least this before a snapshot replaces it.
const MIN_COMPACT_BYTES: u64 = 64 * 1024 * 1024;

/// After a failed snapshot the next is tried this much later, doubling with each failure in a row up to
/// [`MAX_SNAPSHOT_RETRY`]: a disk that keeps refusing is neither hammered nor given up on.
const SNAPSHOT_RETRY: Duration = Duration::from_secs(1);
const MAX_SNAPSHOT_RETRY: Duration = Duration::from_secs(64);

/// While snapshots fail, the logs since the last complete one may grow to this many times the size that asks for a
/// snapshot; beyond it commits stop ([`StorageError::ChainTooLong`]).
const MAX_CHAIN_FACTOR: u64 = 4;

pub struct Storage<F: FileSystem = StdFs> {
    fs: F,
    dir: PathBuf,
    mode: SyncMode,
    generation: u64,
    wal: F::File,
    wal_path: PathBuf,
    wal_len: u64,
    /// Records not yet written: the next group commit.
    pending: wal::Pending,
    /// The next commit, framed.
    framed: BytesMut,
    /// Written but not yet synced (interval mode).
    unsynced: bool,
    last_sync: Instant,
    snapshot_len: u64,
    /// The disk refused a write: records are not kept (the snapshot that ends this supersedes them).
    suspended: bool,
    /// fdatasync calls on the log so far (for metrics).
    fsyncs: u64,
    /// The generation whose snapshot is being written (by a [`SnapshotJob`], maybe on another thread): its log is
    /// the current one, and the files of older generations stay until the snapshot is complete.
    in_flight: Option<u64>,
    /// Test hook (`MQTT_BROKER_FAULT_INJECTION=1`): while `fault-disk-full` exists in the data directory, writes
    /// fail as if the disk were full.
    fault_injection: bool,
    /// The log grows to at least this before a snapshot replaces it.
    min_compact_bytes: u64,
    /// Bytes of the logs before the current one that recovery still needs: those since the last complete
    /// snapshot (one log while a snapshot is written, more after failed ones).
    chain_bytes: u64,
    /// Snapshots that failed in a row, and when the next may be tried.
    snapshot_failures: u32,
    snapshot_retry_at: Option<Instant>,
    /// The first wait after a failed snapshot (doubling with each further one); zero in the simulator, which has
    /// no wall clock to wait on.
    snapshot_retry: Duration,
    #[cfg(feature = "planted-bugs")]
    planted: Option<PlantedBug>,
}

impl Storage<StdFs> {
    /// Recovers the state in `dir` (creating it if need be), writes it out as a fresh snapshot, and opens the log
    /// of the new generation.
    pub fn open(dir: &Path, mode: SyncMode, repair: bool) -> Result<(Storage, Image, Recovery), StorageError> {
        let mut opened = Storage::open_in(StdFs, dir, mode, repair)?;
        opened.0.fault_injection = std::env::var_os("MQTT_BROKER_FAULT_INJECTION").is_some();
        Ok(opened)
    }

    /// [`Storage::open`], handing each retained message to `retained` as it is read (the broker's start-up passes
    /// `Broker::retained_recovery`, so the tree is built from the records without an image of them first); the
    /// returned image's `retained` is empty.
    pub fn open_into(
        dir: &Path,
        mode: SyncMode,
        repair: bool,
        retained: &mut dyn RetainedSink,
    ) -> Result<(Storage, Image, Recovery), StorageError> {
        let mut opened = Storage::open_planted_into(StdFs, dir, mode, repair, None, retained)?;
        opened.0.fault_injection = std::env::var_os("MQTT_BROKER_FAULT_INJECTION").is_some();
        Ok(opened)
    }
}

impl<F: FileSystem> Storage<F> {
    /// [`Storage::open`] on the file system `fs`.
    pub fn open_in(fs: F, dir: &Path, mode: SyncMode, repair: bool) -> Result<(Self, Image, Recovery), StorageError> {
        Self::open_planted(fs, dir, mode, repair, None)
    }

    /// [`Storage::open_in`], handing each retained message to `retained` as it is read, as the binary does
    /// ([`Storage::open_into`]): the simulator recovers through the same path.
    pub fn open_in_into(
        fs: F,
        dir: &Path,
        mode: SyncMode,
        repair: bool,
        retained: &mut dyn RetainedSink,
    ) -> Result<(Self, Image, Recovery), StorageError> {
        Self::open_planted_into(fs, dir, mode, repair, None, retained)
    }

    /// [`Storage::open_in_into`] with a known bug planted (the vopr's self-test).
    #[cfg(feature = "planted-bugs")]
    pub fn open_with_bug_into(
        fs: F,
        dir: &Path,
        mode: SyncMode,
        repair: bool,
        bug: Option<PlantedBug>,
        retained: &mut dyn RetainedSink,
    ) -> Result<(Self, Image, Recovery), StorageError> {
        Self::open_planted_into(fs, dir, mode, repair, bug, retained)
    }

    fn open_planted(
        fs: F,
        dir: &Path,
        mode: SyncMode,
        repair: bool,
        planted: Option<Planted>,
    ) -> Result<(Self, Image, Recovery), StorageError> {
        let mut retained = BTreeMap::new();
        let (storage, mut image, recovery) = Self::open_planted_into(fs, dir, mode, repair, planted, &mut retained)?;
        image.retained = retained;
        Ok((storage, image, recovery))
    }

    fn open_planted_into(
        fs: F,
        dir: &Path,
        mode: SyncMode,
        repair: bool,
        planted: Option<Planted>,
        retained: &mut dyn RetainedSink,
    ) -> Result<(Self, Image, Recovery), StorageError> {
        fs.create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let (image, recovery) = recovery::recover(&fs, dir, repair, planted, retained)?;
        // Starting from a snapshot alone (an empty log): carry on with that generation rather than rewrite it, so a
        // restart after a clean shutdown costs only the read.
        let reuse = recovery.generation > 0 && recovery.log_records == 0 && recovery.truncated_bytes == 0;
        let (generation, snapshot_len) = if reuse {
            let path = snapshot_path(dir, recovery.generation);
            let len = fs.len(&path).map_err(|e| StorageError::io(&path, e))?;
            (recovery.generation, len)
        } else {
            let generation = recovery.generation + 1;
            // Nothing is committed yet, so the snapshot may come before its log: a crash between leaves it alone.
            (
                generation,
                snapshot::write(
                    &fs,
                    dir,
                    generation,
                    retained.records().chain(image.to_records()),
                    planted,
                )?,
            )
        };
        let (wal, wal_path) = start_log(&fs, dir, generation)?;
        recovery::remove_older(&fs, dir, generation);
        let storage = Storage {
            fs,
            dir: dir.to_path_buf(),
            mode,
            generation,
            wal,
            wal_path,
            wal_len: 0,
            pending: wal::Pending::default(),
            framed: BytesMut::new(),
            unsynced: false,
            last_sync: Instant::now(),
            snapshot_len,
            suspended: false,
            fsyncs: 0,
            in_flight: None,
            fault_injection: false,
            min_compact_bytes: MIN_COMPACT_BYTES,
            chain_bytes: 0,
            snapshot_failures: 0,
            snapshot_retry_at: None,
            snapshot_retry: SNAPSHOT_RETRY,
            #[cfg(feature = "planted-bugs")]
            planted,
        };
        Ok((storage, image, recovery))
    }

    pub fn mode(&self) -> SyncMode {
        self.mode
    }

    /// Compact once the log outgrows this and twice the snapshot (default 64 MiB): the simulator uses a small
    /// value so that snapshots and generation switches happen, and crash, within a run.
    pub fn set_min_compact_bytes(&mut self, bytes: u64) {
        self.min_compact_bytes = bytes;
    }

    /// The first wait after a failed snapshot before the next is tried (default 1 s, doubling with each failure in
    /// a row up to 64 s); the simulator sets zero, as it has no wall clock.
    pub fn set_snapshot_retry(&mut self, first: Duration) {
        self.snapshot_retry = first;
    }

    /// Snapshots that failed in a row (0 once one succeeds).
    pub fn snapshot_failures(&self) -> u32 {
        self.snapshot_failures
    }

    /// Bytes of every log since the last complete snapshot: what recovery would replay.
    pub fn chain_bytes(&self) -> u64 {
        self.chain_bytes + self.wal_len
    }

    /// The generation whose snapshot and log are being written.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The file it writes (once complete).
    pub fn path(&self) -> PathBuf {
        snapshot_path(&self.dir, self.generation)
    }

    /// Plants a known bug from now on (the vopr's self-test).
    #[cfg(feature = "planted-bugs")]
    pub fn plant(&mut self, bug: Option<PlantedBug>) {
        self.planted = bug;
    }

    /// The file system, for the simulator's fault injection.
    pub fn fs(&self) -> &F {
        &self.fs
    }

    /// Adds `record` to the next group commit. One that cannot be encoded refuses that commit: [`Storage::commit`]
    /// then fails with [`StorageError::Unencodable`] (naming the log and the offset the commit would have had)
    /// and writes none of it, and the sends waiting for it stay held, as for any failed commit.
    pub fn append(&mut self, record: &Record) {
        if self.suspended {
            return;
        }
        let first = self.pending.refused().is_none();
        if let Err(refused) = self.pending.push(record) {
            if first {
                log::error!(
                    "{}: the commit at byte {} is refused: {}",
                    self.wal_path.display(),
                    self.wal_len,
                    refused.detail
                );
            }
        }
    }

    /// Whether sends must wait for `commit`: records are pending and their acknowledgements must not overtake them.
    pub fn holds_sends(&self) -> bool {
        self.mode == SyncMode::Always && !self.pending.is_empty() && !self.suspended
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes what is pending (one write, one sync: a group commit for everything since the last one). In
    /// `interval` mode the sync happens once the period has passed.
    pub fn commit(&mut self) -> Result<(), StorageError> {
        if self.snapshot_failures > 0 && self.chain_bytes() > self.max_chain_bytes() {
            return Err(StorageError::ChainTooLong {
                bytes: self.chain_bytes(),
                limit: self.max_chain_bytes(),
                failures: self.snapshot_failures,
            });
        }
        if let Some(refused) = self.pending.refused() {
            // Nothing of it is written: a commit without that record would look whole while lacking it.
            return Err(StorageError::Unencodable {
                path: self.wal_path.clone(),
                offset: self.wal_len,
                detail: format!(
                    "record {} of the commit: {}; nothing of the commit is written and nothing waiting for it is sent",
                    refused.index, refused.detail
                ),
            });
        }
        if !self.pending.is_empty() {
            self.injected_fault(&self.wal_path)?;
            self.pending.frame(&mut self.framed);
            if let Err(e) = self.wal.write_all(&self.framed) {
                // Cut off whatever part made it, so the retry does not leave a damaged frame in the middle.
                let _ = self.wal.set_len(self.wal_len);
                return Err(StorageError::io(&self.wal_path, e));
            }
            self.wal_len += self.framed.len() as u64;
            self.pending.clear();
            self.unsynced = true;
        }
        let due = match self.mode {
            SyncMode::Always => true,
            SyncMode::Interval(period) => self.last_sync.elapsed() >= period,
            SyncMode::None => false,
        };
        if self.unsynced && due && !self.planted_skips_sync() {
            self.wal.sync_data().map_err(|e| StorageError::io(&self.wal_path, e))?;
            self.fsyncs += 1;
            self.unsynced = false;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// How many times the log was synced to disk.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs
    }

    pub fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// Stop keeping records after a failed write: their effect will be captured by the snapshot of `resume`.
    pub fn suspend(&mut self) {
        self.suspended = true;
        self.pending.clear();
        self.unsynced = false;
    }

    /// Snapshot the whole state (which includes everything the suspension dropped) and take records again.
    pub fn resume(&mut self, image: &Image) -> Result<(), StorageError> {
        self.injected_fault(&self.dir)?;
        self.snapshot(image)?;
        self.suspended = false;
        Ok(())
    }

    fn injected_fault(&self, path: &Path) -> Result<(), StorageError> {
        if self.fault_injection && self.fs.exists(&self.dir.join("fault-disk-full")) {
            return Err(StorageError::io(path, io::Error::from_raw_os_error(libc::ENOSPC)));
        }
        Ok(())
    }

    /// When the next interval sync is due, if one is waiting.
    pub fn sync_deadline(&self) -> Option<Instant> {
        match self.mode {
            SyncMode::Interval(period) if self.unsynced => Some(self.last_sync + period),
            _ => None,
        }
    }

    /// Whether the logs have grown enough that a snapshot should replace them (and none is being written, and the
    /// wait after a failed one is over). All the logs since the last complete snapshot count, not only the current
    /// one: after a failed snapshot the next is tried after the wait, not once the new log has grown as much again.
    pub fn wants_snapshot(&self) -> bool {
        self.in_flight.is_none()
            && self.snapshot_retry_at.is_none_or(|at| Instant::now() >= at)
            && self.chain_bytes() > self.compact_bytes()
    }

    /// The size of the logs that asks for a snapshot.
    fn compact_bytes(&self) -> u64 {
        self.min_compact_bytes.max(2 * self.snapshot_len)
    }

    /// The size the logs may reach while snapshots fail (see [`StorageError::ChainTooLong`]).
    fn max_chain_bytes(&self) -> u64 {
        self.compact_bytes().saturating_mul(MAX_CHAIN_FACTOR)
    }

    /// A snapshot failed: the next waits, doubling with each failure in a row. Logged here, once per failure.
    fn snapshot_failed(&mut self, generation: u64, error: &StorageError) {
        self.snapshot_failures = self.snapshot_failures.saturating_add(1);
        let wait = self
            .snapshot_retry
            .saturating_mul(1 << (self.snapshot_failures - 1).min(16))
            .min(MAX_SNAPSHOT_RETRY.max(self.snapshot_retry));
        self.snapshot_retry_at = (!wait.is_zero()).then(|| Instant::now() + wait);
        log::error!(
            "snapshot {generation} failed ({} in a row): {error}; the logs since the last complete snapshot hold {} \
             bytes (commits stop beyond {}); next try in {} ms",
            self.snapshot_failures,
            self.chain_bytes(),
            self.max_chain_bytes(),
            wait.as_millis()
        );
    }

    /// The generation whose snapshot is being written, if one is.
    pub fn snapshot_in_flight(&self) -> Option<u64> {
        self.in_flight
    }

    /// Writes `image` as the snapshot of a new generation, here and now: [`Storage::begin_snapshot`], the write,
    /// [`Storage::finish_snapshot`]. Pending records must have been committed first (the image already contains
    /// their effect).
    pub fn snapshot(&mut self, image: &Image) -> Result<(), StorageError> {
        let job = self.begin_snapshot()?;
        let written = job.write(&self.fs, image.to_records());
        self.finish_snapshot(job, written)
    }

    /// Freezes the moment of a snapshot: syncs the current log and starts the log of the next generation, to which
    /// every later commit goes. The caller takes the state as it is now (its effect is exactly what the logs so far
    /// hold) and writes it with the returned job, on any thread, while the broker goes on; then hands the result to
    /// [`Storage::finish_snapshot`]. Pending records must have been committed first. If this fails, nothing changed:
    /// commits go on to the current log.
    pub fn begin_snapshot(&mut self) -> Result<SnapshotJob, StorageError> {
        if let Some(generation) = self.in_flight {
            return Err(StorageError::SnapshotInFlight { generation });
        }
        // A retry after a failed snapshot with nothing logged since freezes the same moment again: no new log.
        let generation = if self.snapshot_failures > 0 && self.wal_len == 0 {
            self.generation
        } else {
            match self.start_next_log() {
                Ok(generation) => generation,
                Err(e) => {
                    self.snapshot_failed(self.generation + 1, &e);
                    return Err(e);
                }
            }
        };
        self.in_flight = Some(generation);
        Ok(SnapshotJob {
            generation,
            dir: self.dir.clone(),
            planted: self.planted(),
            started: Instant::now(),
        })
    }

    /// Syncs the current log and starts the log of the next generation; returns that generation.
    fn start_next_log(&mut self) -> Result<u64, StorageError> {
        // Recovery replays the next log only after all of this one, which must not then lose its end to a power cut
        // (in `interval` mode it may not be synced yet).
        if self.unsynced {
            self.wal.sync_data().map_err(|e| StorageError::io(&self.wal_path, e))?;
            self.fsyncs += 1;
            self.unsynced = false;
            self.last_sync = Instant::now();
        }
        let generation = self.generation + 1;
        (self.wal, self.wal_path) = start_log(&self.fs, &self.dir, generation)?;
        self.chain_bytes += self.wal_len;
        self.wal_len = 0;
        self.generation = generation;
        Ok(generation)
    }

    /// The snapshot of `job` was written (`Ok`: its size) or not. Once it is complete, the files of older
    /// generations go. A failed one leaves them (recovery needs them), removes its unfinished file and is returned:
    /// the log keeps growing until a later snapshot succeeds.
    pub fn finish_snapshot(
        &mut self,
        job: SnapshotJob,
        written: Result<u64, StorageError>,
    ) -> Result<(), StorageError> {
        if self.in_flight == Some(job.generation) {
            self.in_flight = None;
        }
        match written {
            Ok(len) => {
                self.snapshot_len = len;
                self.chain_bytes = 0;
                self.snapshot_failures = 0;
                self.snapshot_retry_at = None;
                recovery::remove_older(&self.fs, &self.dir, job.generation);
                log::info!(
                    "snapshot {}: {len} bytes in {} ms",
                    job.generation,
                    job.started.elapsed().as_millis()
                );
                Ok(())
            }
            Err(e) => {
                let _ = self.fs.remove(&snapshot::tmp_path(&self.dir, job.generation));
                self.snapshot_failed(job.generation, &e);
                Err(e)
            }
        }
    }
}

/// A snapshot frozen by [`Storage::begin_snapshot`], to be written (on any thread) and finished by
/// [`Storage::finish_snapshot`]. A clone writes the same snapshot (one for the thread, one to finish it with).
#[derive(Debug, Clone)]
pub struct SnapshotJob {
    generation: u64,
    dir: PathBuf,
    planted: Option<Planted>,
    started: Instant,
}

impl SnapshotJob {
    /// The generation whose snapshot this is.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The file it writes (once complete).
    pub fn path(&self) -> PathBuf {
        snapshot_path(&self.dir, self.generation)
    }

    /// Writes `records` (the state at the moment of the freeze) as the snapshot, atomically and durably; returns
    /// its size in bytes.
    pub fn write<F: FileSystem>(&self, fs: &F, records: impl Iterator<Item = Record>) -> Result<u64, StorageError> {
        snapshot::write(fs, &self.dir, self.generation, records, self.planted)
    }
}

/// The log of `generation` in `dir`.
pub fn wal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("wal-{generation:020}.log"))
}

/// The snapshot of `generation` in `dir`.
pub fn snapshot_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("snapshot-{generation:020}.snap"))
}

/// Opens (creating it if need be) the log of `generation` for appending, durably.
fn start_log<F: FileSystem>(fs: &F, dir: &Path, generation: u64) -> Result<(F::File, PathBuf), StorageError> {
    let path = wal_path(dir, generation);
    let wal = fs.open_append(&path).map_err(|e| StorageError::io(&path, e))?;
    fs.sync_dir(dir).map_err(|e| StorageError::io(dir, e))?;
    Ok((wal, path))
}

/// The planted bug, if any (`None` is all there is without the `planted-bugs` feature).
#[cfg(feature = "planted-bugs")]
type Planted = PlantedBug;
#[cfg(not(feature = "planted-bugs"))]
type Planted = std::convert::Infallible;

impl<F: FileSystem> Storage<F> {
    fn planted(&self) -> Option<Planted> {
        #[cfg(feature = "planted-bugs")]
        return self.planted;
        #[cfg(not(feature = "planted-bugs"))]
        None
    }

    /// Planted bug: the group commit's sync is skipped, so an acknowledgement leaves before its record is durable.
    fn planted_skips_sync(&self) -> bool {
        #[cfg(feature = "planted-bugs")]
        return self.planted == Some(PlantedBug::SyncSkippedBeforeAck);
        #[cfg(not(feature = "planted-bugs"))]
        false
    }
}

#[cfg(test)]
mod tests;
