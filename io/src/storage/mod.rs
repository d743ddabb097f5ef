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

mod recovery;
mod snapshot;

pub use recovery::Recovery;

use bytes::BytesMut;
use mqtt_core::persist::{Image, Record};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
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

pub struct Storage {
    dir: PathBuf,
    mode: SyncMode,
    generation: u64,
    wal: File,
    wal_path: PathBuf,
    wal_len: u64,
    /// Encoded frames not yet written.
    pending: BytesMut,
    /// Written but not yet synced (interval mode).
    unsynced: bool,
    last_sync: Instant,
    snapshot_len: u64,
    encode_buf: BytesMut,
    /// The disk refused a write: records are not kept (the snapshot that ends this supersedes them).
    suspended: bool,
    /// fdatasync calls on the log so far (for metrics).
    fsyncs: u64,
    /// Test hook (`MQTT_BROKER_FAULT_INJECTION=1`): while `fault-disk-full` exists in the data directory, writes
    /// fail as if the disk were full.
    fault_injection: bool,
}

impl Storage {
    /// Recovers the state in `dir` (creating it if need be), writes it out as a fresh snapshot, and opens the log
    /// of the new generation.
    pub fn open(dir: &Path, mode: SyncMode, repair: bool) -> Result<(Storage, Image, Recovery), StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let (image, recovery) = recovery::recover(dir, repair)?;
        // Starting from a snapshot alone (an empty log): carry on with that generation rather than rewrite it, so a
        // restart after a clean shutdown costs only the read.
        let reuse = recovery.generation > 0 && recovery.log_records == 0 && recovery.truncated_bytes == 0;
        let (generation, snapshot_len) = if reuse {
            let path = snapshot_path(dir, recovery.generation);
            let len = std::fs::metadata(&path).map_err(|e| StorageError::io(&path, e))?.len();
            (recovery.generation, len)
        } else {
            let generation = recovery.generation + 1;
            (generation, snapshot::write(dir, generation, &image)?)
        };
        let (wal, wal_path) = start_log(dir, generation)?;
        recovery::remove_older(dir, generation);
        let storage = Storage {
            dir: dir.to_path_buf(),
            mode,
            generation,
            wal,
            wal_path,
            wal_len: 0,
            pending: BytesMut::new(),
            unsynced: false,
            last_sync: Instant::now(),
            snapshot_len,
            encode_buf: BytesMut::new(),
            suspended: false,
            fsyncs: 0,
            fault_injection: std::env::var_os("MQTT_BROKER_FAULT_INJECTION").is_some(),
        };
        Ok((storage, image, recovery))
    }

    pub fn mode(&self) -> SyncMode {
        self.mode
    }

    pub fn append(&mut self, record: &Record) {
        if self.suspended {
            return;
        }
        mqtt_core::persist::log::append(&mut self.pending, record, &mut self.encode_buf);
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
            if let Err(e) = self.wal.write_all(&self.pending) {
                // Cut off whatever part made it, so the retry does not leave a damaged frame in the middle.
                let _ = self.wal.set_len(self.wal_len);
                return Err(StorageError::io(&self.wal_path, e));
            }
            self.wal_len += self.pending.len() as u64;
            self.pending.clear();
            self.unsynced = true;
        }
        let due = match self.mode {
            SyncMode::Always => true,
            SyncMode::Interval(period) => self.last_sync.elapsed() >= period,
            SyncMode::None => false,
        };
        if self.unsynced && due {
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
        if self.fault_injection && self.dir.join("fault-disk-full").exists() {
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
        self.wal_len > MIN_COMPACT_BYTES.max(2 * self.snapshot_len)
    }

    /// Writes `image` as the snapshot of a new generation and starts its log. Pending records must have been
    /// committed first (the image already contains their effect).
    pub fn snapshot(&mut self, image: &Image) -> Result<(), StorageError> {
        let started = Instant::now();
        let generation = self.generation + 1;
        self.snapshot_len = snapshot::write(&self.dir, generation, image)?;
        (self.wal, self.wal_path) = start_log(&self.dir, generation)?;
        self.wal_len = 0;
        self.unsynced = false;
        self.generation = generation;
        recovery::remove_older(&self.dir, generation);
        log::info!(
            "snapshot {generation}: {} bytes in {} ms",
            self.snapshot_len,
            started.elapsed().as_millis()
        );
        Ok(())
    }
}

pub(crate) fn wal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("wal-{generation:020}.log"))
}

pub(crate) fn snapshot_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("snapshot-{generation:020}.snap"))
}

/// Opens (creating it if need be) the log of `generation` for appending, durably.
fn start_log(dir: &Path, generation: u64) -> Result<(File, PathBuf), StorageError> {
    let path = wal_path(dir, generation);
    let wal = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| StorageError::io(&path, e))?;
    sync_dir(dir)?;
    Ok((wal, path))
}

/// Makes a rename or file creation in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))
}

#[cfg(test)]
mod tests;
