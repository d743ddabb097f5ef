//! Durable storage on real files: an append-only log of the core's records with group commit, and snapshots that
//! let the log start afresh, so disk use and start-up time follow live state rather than history.
//!
//! Files in the data directory, both named by a generation number:
//! - `snapshot-G.snap`: every record needed to rebuild the state as it was when generation G began;
//! - `wal-G.log`: the records emitted since.
//!
//! A new snapshot is written as a temporary file, synced, renamed into place and the directory synced; only then
//! does the log of the new generation start and are the old files removed. Recovery loads the newest complete
//! snapshot and replays its log.
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

use bytes::BytesMut;
use mqtt_core::persist::{Image, Record};
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
    /// A generation whose snapshot is in place but whose log could not be started (its directory sync failed, so
    /// the new snapshot may or may not be durable). Recovery would prefer that snapshot to the current log, so no
    /// commit goes to the current log: the next one starts this generation's first, or fails.
    switch_pending: Option<u64>,
    /// Test hook (`MQTT_BROKER_FAULT_INJECTION=1`): while `fault-disk-full` exists in the data directory, writes
    /// fail as if the disk were full.
    fault_injection: bool,
    /// The log grows to at least this before a snapshot replaces it.
    min_compact_bytes: u64,
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
}

impl<F: FileSystem> Storage<F> {
    /// [`Storage::open`] on the file system `fs`.
    pub fn open_in(fs: F, dir: &Path, mode: SyncMode, repair: bool) -> Result<(Self, Image, Recovery), StorageError> {
        Self::open_planted(fs, dir, mode, repair, None)
    }

    /// [`Storage::open_in`] with a known bug planted (the vopr's self-test).
    #[cfg(feature = "planted-bugs")]
    pub fn open_with_bug(
        fs: F,
        dir: &Path,
        mode: SyncMode,
        repair: bool,
        bug: Option<PlantedBug>,
    ) -> Result<(Self, Image, Recovery), StorageError> {
        Self::open_planted(fs, dir, mode, repair, bug)
    }

    fn open_planted(
        fs: F,
        dir: &Path,
        mode: SyncMode,
        repair: bool,
        planted: Option<Planted>,
    ) -> Result<(Self, Image, Recovery), StorageError> {
        fs.create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let (image, recovery) = recovery::recover(&fs, dir, repair, planted)?;
        // Starting from a snapshot alone (an empty log): carry on with that generation rather than rewrite it, so a
        // restart after a clean shutdown costs only the read.
        let reuse = recovery.generation > 0 && recovery.log_records == 0 && recovery.truncated_bytes == 0;
        let (generation, snapshot_len) = if reuse {
            let path = snapshot_path(dir, recovery.generation);
            let len = fs.len(&path).map_err(|e| StorageError::io(&path, e))?;
            (recovery.generation, len)
        } else {
            let generation = recovery.generation + 1;
            (generation, snapshot::write(&fs, dir, generation, &image, planted)?)
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
            switch_pending: None,
            fault_injection: false,
            min_compact_bytes: MIN_COMPACT_BYTES,
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

    /// The generation whose snapshot and log are being written.
    pub fn generation(&self) -> u64 {
        self.generation
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

    pub fn append(&mut self, record: &Record) {
        if self.suspended {
            return;
        }
        self.pending.push(record);
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
        if !self.pending.is_empty() {
            self.injected_fault(&self.wal_path)?;
            self.finish_switch()?;
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

    /// Whether the log has grown enough that a snapshot should replace it.
    pub fn wants_snapshot(&self) -> bool {
        self.wal_len > self.min_compact_bytes.max(2 * self.snapshot_len)
    }

    /// Writes `image` as the snapshot of a new generation and starts its log. Pending records must have been
    /// committed first (the image already contains their effect).
    pub fn snapshot(&mut self, image: &Image) -> Result<(), StorageError> {
        let started = Instant::now();
        let generation = self.generation + 1;
        self.snapshot_len = snapshot::write(&self.fs, &self.dir, generation, image, self.planted())?;
        self.switch_pending = Some(generation);
        self.finish_switch()?;
        log::info!(
            "snapshot {generation}: {} bytes in {} ms",
            self.snapshot_len,
            started.elapsed().as_millis()
        );
        Ok(())
    }
}

impl<F: FileSystem> Storage<F> {
    /// Starts the log of the generation whose snapshot was put in place, durably, and moves to it.
    fn finish_switch(&mut self) -> Result<(), StorageError> {
        let Some(generation) = self.switch_pending else {
            return Ok(());
        };
        (self.wal, self.wal_path) = start_log(&self.fs, &self.dir, generation)?;
        self.switch_pending = None;
        self.wal_len = 0;
        self.unsynced = false;
        self.generation = generation;
        recovery::remove_older(&self.fs, &self.dir, generation);
        Ok(())
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
