//! A simulated file system for the real storage code (`mqtt_storage::FileSystem`), with the faults of a real disk,
//! each drawn from the seed and bounded in number ("fault atlas"):
//! - a power cut keeps what was synced and, of what was not, an arbitrary prefix (so any write can be torn at any
//!   byte, and a whole unsynced write can vanish); directory changes survive only once the directory was synced;
//! - a power cut can be armed to strike in the middle of a sequence of operations (a commit, a snapshot, a
//!   generation switch): the operation it hits has partly happened, and every later one fails;
//! - bits flip in data that was synced earlier (bit rot), which recovery must notice;
//! - operations fail with EIO, and writes with ENOSPC while the disk is full.
//!
//! One disk is shared by the storage code and the world (which injects faults and crashes): a cloned handle.

use mqtt_storage::{FileSystem, WriteFile};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// How often the disk fails, per operation, and how many faults of each kind a run may see at most.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskFaults {
    /// Probability that a write, sync, create, rename or directory sync fails with EIO.
    pub eio_rate: f64,
    /// At most this many EIO failures in a run.
    pub max_eio: u32,
}

#[derive(Debug, Clone, Default)]
struct Inode {
    /// What reads see (the page cache).
    data: Vec<u8>,
    /// What a power cut keeps.
    durable: Vec<u8>,
}

/// A bit flipped in synced data: where, for checking that recovery names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flip {
    pub path: PathBuf,
    pub offset: u64,
}

/// What the disk did, for the summary and the trace.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskCounts {
    pub eio: u32,
    pub enospc: u32,
    pub flips: u32,
    pub power_cuts: u32,
    /// Unsynced bytes lost (or torn off) by power cuts.
    pub lost_bytes: u64,
}

struct Disk {
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    names: BTreeMap<PathBuf, u64>,
    /// The names as a power cut leaves them: as of each directory's last sync.
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    rng: ChaCha8Rng,
    faults: DiskFaults,
    /// Writes fail with ENOSPC.
    full: bool,
    /// Injected failures are off (recovery after a crash runs on a working disk, as an operator would make sure).
    quiet: bool,
    /// Mutating operations left before the armed power cut strikes.
    crash_in: Option<u32>,
    /// The power is cut: every operation fails until `power_cut` restores a disk.
    crashed: bool,
    /// Flipped bits in synced data, by inode: offset and the bit's mask.
    flips: BTreeMap<u64, Vec<(u64, u8)>>,
    counts: DiskCounts,
}

/// A handle on the simulated disk.
#[derive(Clone)]
pub struct SimFs(Rc<RefCell<Disk>>);

/// A file open for writing (appending at the end).
pub struct SimFile {
    fs: SimFs,
    inode: u64,
}

fn crashed_error() -> io::Error {
    io::Error::other("simulated power cut")
}

impl SimFs {
    pub fn new(rng: ChaCha8Rng, faults: DiskFaults) -> SimFs {
        SimFs(Rc::new(RefCell::new(Disk {
            inodes: BTreeMap::new(),
            next_inode: 1,
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            dirs: BTreeSet::new(),
            rng,
            faults,
            full: false,
            quiet: false,
            crash_in: None,
            crashed: false,
            flips: BTreeMap::new(),
            counts: DiskCounts::default(),
        })))
    }

    pub fn set_full(&self, full: bool) {
        self.0.borrow_mut().full = full;
    }

    pub fn is_full(&self) -> bool {
        self.0.borrow().full
    }

    /// Injected failures (EIO, ENOSPC, an armed power cut) off or on.
    pub fn set_quiet(&self, quiet: bool) {
        self.0.borrow_mut().quiet = quiet;
    }

    /// The power goes out during the `ops`-th mutating operation from now (0: the next one).
    pub fn arm_power_cut(&self, ops: u32) {
        self.0.borrow_mut().crash_in = Some(ops);
    }

    /// Takes the armed power cut back; returns how many operations it still had to wait.
    pub fn disarm_power_cut(&self) -> Option<u32> {
        self.0.borrow_mut().crash_in.take()
    }

    /// Whether an armed power cut has struck (the process is dead; `power_cut` brings the disk back).
    pub fn crashed(&self) -> bool {
        self.0.borrow().crashed
    }

    pub fn counts(&self) -> DiskCounts {
        self.0.borrow().counts
    }

    /// The power goes out now: each file keeps what was synced and an arbitrary prefix of what was not, and the
    /// directories what was synced. Returns the unsynced bytes lost.
    pub fn power_cut(&self) -> u64 {
        let mut disk = self.0.borrow_mut();
        let disk = &mut *disk;
        disk.crashed = false;
        disk.crash_in = None;
        disk.full = false;
        disk.counts.power_cuts += 1;
        disk.names = disk.durable_names.clone();
        let live: BTreeSet<u64> = disk.names.values().copied().collect();
        disk.inodes.retain(|id, _| live.contains(id));
        disk.flips.retain(|id, _| live.contains(id));
        let mut lost = 0u64;
        for inode in disk.inodes.values_mut() {
            let kept = if inode.data.starts_with(&inode.durable) {
                // Appended since the last sync: the write may be torn anywhere (or gone, or all there).
                let extra = inode.data.len() - inode.durable.len();
                let keep = if extra == 0 { 0 } else { disk.rng.gen_range(0..=extra) };
                inode.data[..inode.durable.len() + keep].to_vec()
            } else if disk.rng.gen_bool(0.5) {
                inode.data.clone()
            } else {
                inode.durable.clone()
            };
            lost += (inode.data.len() as u64).abs_diff(kept.len() as u64);
            inode.data = kept.clone();
            inode.durable = kept;
        }
        disk.counts.lost_bytes += lost;
        lost
    }

    /// Flips one bit in data synced earlier, in a file whose name matches `pick` (the world chooses which files
    /// matter); returns where, or `None` if no such synced data exists.
    pub fn flip_bit(&self, pick: impl Fn(&Path, &[u8]) -> Option<std::ops::Range<usize>>) -> Option<Flip> {
        let mut disk = self.0.borrow_mut();
        let disk = &mut *disk;
        let candidates: Vec<(PathBuf, u64, std::ops::Range<usize>)> = disk
            .names
            .iter()
            .filter_map(|(path, id)| {
                let inode = disk.inodes.get(id)?;
                // Only synced bytes that are still what reads see.
                let synced = inode.durable.len().min(inode.data.len());
                let range = pick(path, &inode.durable[..synced])?;
                (range.start < range.end && range.end <= synced).then(|| (path.clone(), *id, range))
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (path, id, range) = candidates[disk.rng.gen_range(0..candidates.len())].clone();
        let at = disk.rng.gen_range(range);
        let bit = 1u8 << disk.rng.gen_range(0..8);
        let inode = disk.inodes.get_mut(&id)?;
        inode.data[at] ^= bit;
        inode.durable[at] ^= bit;
        disk.flips.entry(id).or_default().push((at as u64, bit));
        disk.counts.flips += 1;
        Some(Flip {
            path,
            offset: at as u64,
        })
    }

    /// The flipped bits still in the files that exist now.
    pub fn flips(&self) -> Vec<Flip> {
        let disk = self.0.borrow();
        let mut found = Vec::new();
        for (path, id) in &disk.names {
            let len = disk.inodes.get(id).map_or(0, |i| i.data.len() as u64);
            for &(offset, _) in disk.flips.get(id).into_iter().flatten() {
                if offset < len {
                    found.push(Flip {
                        path: path.clone(),
                        offset,
                    });
                }
            }
        }
        found
    }

    /// Undoes every bit flip (the operator restores the damaged files from a backup).
    pub fn heal_flips(&self) {
        let mut disk = self.0.borrow_mut();
        let disk = &mut *disk;
        for (id, flips) in std::mem::take(&mut disk.flips) {
            let Some(inode) = disk.inodes.get_mut(&id) else {
                continue;
            };
            for (at, bit) in flips {
                let at = at as usize;
                if let Some(byte) = inode.data.get_mut(at) {
                    *byte ^= bit;
                }
                if let Some(byte) = inode.durable.get_mut(at) {
                    *byte ^= bit;
                }
            }
        }
    }

    /// The contents of `path` as reads see them (for tests and the trace).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let disk = self.0.borrow();
        disk.names
            .get(path)
            .and_then(|id| disk.inodes.get(id))
            .map(|i| i.data.clone())
    }
}

impl Disk {
    /// One mutating operation begins: the armed power cut may strike now, or an injected EIO fail it.
    fn begin(&mut self) -> io::Result<Step> {
        if self.crashed {
            return Err(crashed_error());
        }
        if self.quiet {
            return Ok(Step::Go);
        }
        if let Some(left) = self.crash_in {
            if left == 0 {
                self.crashed = true;
                self.crash_in = None;
                return Ok(Step::PowerCut);
            }
            self.crash_in = Some(left - 1);
        }
        if self.counts.eio < self.faults.max_eio
            && self.faults.eio_rate > 0.0
            && self.rng.gen_bool(self.faults.eio_rate)
        {
            self.counts.eio += 1;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(Step::Go)
    }

    fn inode_of(&self, path: &Path) -> io::Result<u64> {
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn check_dir(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(dir) if self.dirs.contains(dir) => Ok(()),
            _ => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn new_inode(&mut self, path: &Path) -> u64 {
        let id = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(id, Inode::default());
        self.names.insert(path.to_path_buf(), id);
        id
    }
}

/// What an operation does once begun.
enum Step {
    Go,
    /// The power goes out during it: it happens in part (a write) or not at all, and fails.
    PowerCut,
}

impl WriteFile for SimFile {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let mut disk = self.fs.0.borrow_mut();
        let step = disk.begin()?;
        let full = disk.full && !disk.quiet;
        // A write that cannot complete still writes some of its bytes first.
        let written = match (&step, full) {
            (Step::Go, false) => data.len(),
            _ => disk.rng.gen_range(0..=data.len()),
        };
        let inode = disk.inodes.get_mut(&self.inode).ok_or_else(crashed_error)?;
        inode.data.extend_from_slice(&data[..written]);
        match (step, full) {
            (Step::PowerCut, _) => Err(crashed_error()),
            (Step::Go, true) => {
                disk.counts.enospc += 1;
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            (Step::Go, false) => Ok(()),
        }
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut disk = self.fs.0.borrow_mut();
        if let Step::PowerCut = disk.begin()? {
            return Err(crashed_error());
        }
        let inode = disk.inodes.get_mut(&self.inode).ok_or_else(crashed_error)?;
        inode.data.resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.sync_all()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        let mut disk = self.fs.0.borrow_mut();
        if let Step::PowerCut = disk.begin()? {
            return Err(crashed_error());
        }
        let inode = disk.inodes.get_mut(&self.inode).ok_or_else(crashed_error)?;
        inode.durable = inode.data.clone();
        Ok(())
    }
}

impl FileSystem for SimFs {
    type File = SimFile;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut disk = self.0.borrow_mut();
        for ancestor in dir.ancestors() {
            disk.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn create(&self, path: &Path) -> io::Result<SimFile> {
        let mut disk = self.0.borrow_mut();
        disk.check_dir(path)?;
        if let Step::PowerCut = disk.begin()? {
            return Err(crashed_error());
        }
        let inode = disk.new_inode(path);
        Ok(SimFile {
            fs: self.clone(),
            inode,
        })
    }

    fn open_append(&self, path: &Path) -> io::Result<SimFile> {
        let mut disk = self.0.borrow_mut();
        disk.check_dir(path)?;
        if let Step::PowerCut = disk.begin()? {
            return Err(crashed_error());
        }
        let inode = match disk.names.get(path) {
            Some(id) => *id,
            None => disk.new_inode(path),
        };
        Ok(SimFile {
            fs: self.clone(),
            inode,
        })
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let disk = self.0.borrow();
        if disk.crashed {
            return Err(crashed_error());
        }
        let id = disk.inode_of(path)?;
        Ok(disk.inodes.get(&id).map(|i| i.data.clone()).unwrap_or_default())
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        let disk = self.0.borrow();
        let id = disk.inode_of(path)?;
        Ok(disk.inodes.get(&id).map_or(0, |i| i.data.len() as u64))
    }

    fn exists(&self, path: &Path) -> bool {
        let disk = self.0.borrow();
        disk.names.contains_key(path) || disk.dirs.contains(path)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut disk = self.0.borrow_mut();
        let id = disk.inode_of(path)?;
        if let Step::PowerCut = disk.begin()? {
            return Err(crashed_error());
        }
        let inode = disk.inodes.get_mut(&id).ok_or_else(crashed_error)?;
        inode.data.truncate(len as usize);
        inode.durable = inode.data.clone();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.0.borrow_mut();
        let id = disk.inode_of(from)?;
        if let Step::PowerCut = disk.begin()? {
            return Err(crashed_error());
        }
        disk.names.remove(from);
        disk.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.0.borrow_mut();
        disk.inode_of(path)?;
        if let Step::PowerCut = disk.begin()? {
            return Err(crashed_error());
        }
        disk.names.remove(path);
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let disk = self.0.borrow();
        if disk.crashed {
            return Err(crashed_error());
        }
        Ok(disk
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut disk = self.0.borrow_mut();
        if let Step::PowerCut = disk.begin()? {
            return Err(crashed_error());
        }
        let disk = &mut *disk;
        disk.durable_names.retain(|p, _| p.parent() != Some(dir));
        for (path, id) in disk.names.iter().filter(|(p, _)| p.parent() == Some(dir)) {
            disk.durable_names.insert(path.clone(), *id);
        }
        Ok(())
    }
}
