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
    /// `data[..synced]` is what a power cut keeps, unless the file was cut shorter than that since its last
    /// sync: then `before_cut` is (files are appended to, so this is all a sync needs to remember, without a copy
    /// of the file per sync).
    synced: usize,
    before_cut: Option<Vec<u8>>,
}

impl Inode {
    fn sync(&mut self) {
        self.synced = self.data.len();
        self.before_cut = None;
    }

    fn set_len(&mut self, len: usize) {
        if len < self.synced && self.before_cut.is_none() {
            self.before_cut = Some(self.data[..self.synced].to_vec());
        }
        self.data.resize(len, 0);
        self.synced = self.synced.min(len);
    }

    /// The synced bytes that reads still see.
    fn synced_data(&self) -> &[u8] {
        match &self.before_cut {
            Some(_) => &[],
            None => &self.data[..self.synced],
        }
    }
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
    /// Mutating operations left before one fails with EIO (a test's scripted fault), and whether it takes effect.
    eio_in: Option<(u32, bool)>,
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
            eio_in: None,
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

    /// The `ops`-th mutating operation from now fails with EIO, having taken effect or not: a scripted fault
    /// for tests.
    pub fn fail_op(&self, ops: u32, effect: bool) {
        self.0.borrow_mut().eio_in = Some((ops, effect));
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
            let before = inode.data.len() as u64;
            match inode.before_cut.take() {
                // Cut since the last sync: the cut happened or not.
                Some(old) => {
                    if disk.rng.gen_bool(0.5) {
                        inode.data = old;
                    }
                }
                None => {
                    // Appended since the last sync: the write may be torn anywhere (or gone, or all there).
                    let extra = inode.data.len() - inode.synced;
                    let keep = if extra == 0 { 0 } else { disk.rng.gen_range(0..=extra) };
                    inode.data.truncate(inode.synced + keep);
                }
            }
            lost += before.abs_diff(inode.data.len() as u64);
            inode.sync();
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
                let synced = inode.synced_data().len();
                let range = pick(path, inode.synced_data())?;
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
        // A second flip of the same bit undoes the first: the data is whole again there, nothing left to notice.
        let flips = disk.flips.entry(id).or_default();
        match flips.iter().position(|&flip| flip == (at as u64, bit)) {
            Some(undone) => drop(flips.remove(undone)),
            None => flips.push((at as u64, bit)),
        }
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
        if let Some((left, effect)) = self.eio_in {
            self.eio_in = left.checked_sub(1).map(|left| (left, effect));
            if left == 0 {
                return Ok(Step::Eio { effect });
            }
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
            // Whether the failed operation took effect anyway is as uncertain as on a real disk.
            let effect = self.rng.gen_bool(0.5);
            return Ok(Step::Eio { effect });
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
    /// It fails with EIO, having taken effect or not (a rename done, a sync done, a file created).
    Eio {
        effect: bool,
    },
}

impl Step {
    /// Whether the operation takes effect (a write may also take effect in part, see `write_all`).
    fn happens(&self) -> bool {
        matches!(self, Step::Go | Step::Eio { effect: true })
    }

    fn result(self) -> io::Result<()> {
        match self {
            Step::Go => Ok(()),
            Step::PowerCut => Err(crashed_error()),
            Step::Eio { .. } => Err(io::Error::from_raw_os_error(libc::EIO)),
        }
    }
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
            (Step::Go, true) => {
                disk.counts.enospc += 1;
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            (step, _) => step.result(),
        }
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut disk = self.fs.0.borrow_mut();
        let step = disk.begin()?;
        if step.happens() {
            let inode = disk.inodes.get_mut(&self.inode).ok_or_else(crashed_error)?;
            inode.set_len(len as usize);
        }
        step.result()
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.sync_all()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        let mut disk = self.fs.0.borrow_mut();
        let step = disk.begin()?;
        if step.happens() {
            let inode = disk.inodes.get_mut(&self.inode).ok_or_else(crashed_error)?;
            inode.sync();
        }
        step.result()
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
        let step = disk.begin()?;
        if !step.happens() {
            return Err(step.result().expect_err("an operation that does not happen fails"));
        }
        let inode = disk.new_inode(path);
        step.result()?;
        Ok(SimFile {
            fs: self.clone(),
            inode,
        })
    }

    fn open_append(&self, path: &Path) -> io::Result<SimFile> {
        let mut disk = self.0.borrow_mut();
        disk.check_dir(path)?;
        let step = disk.begin()?;
        if !step.happens() {
            return Err(step.result().expect_err("an operation that does not happen fails"));
        }
        let inode = match disk.names.get(path) {
            Some(id) => *id,
            None => disk.new_inode(path),
        };
        step.result()?;
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
        let step = disk.begin()?;
        if step.happens() {
            let inode = disk.inodes.get_mut(&id).ok_or_else(crashed_error)?;
            inode.set_len(len as usize);
            inode.sync();
        }
        step.result()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.0.borrow_mut();
        let id = disk.inode_of(from)?;
        let step = disk.begin()?;
        if step.happens() {
            disk.names.remove(from);
            disk.names.insert(to.to_path_buf(), id);
        }
        step.result()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.0.borrow_mut();
        disk.inode_of(path)?;
        let step = disk.begin()?;
        if step.happens() {
            disk.names.remove(path);
        }
        step.result()
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
        let step = disk.begin()?;
        if step.happens() {
            let disk = &mut *disk;
            disk.durable_names.retain(|p, _| p.parent() != Some(dir));
            for (path, id) in disk.names.iter().filter(|(p, _)| p.parent() == Some(dir)) {
                disk.durable_names.insert(path.clone(), *id);
            }
        }
        step.result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn disk(seed: u64, faults: DiskFaults) -> SimFs {
        let fs = SimFs::new(ChaCha8Rng::seed_from_u64(seed), faults);
        fs.create_dir_all(Path::new("/d")).expect("mkdir");
        fs
    }

    fn path(name: &str) -> PathBuf {
        Path::new("/d").join(name)
    }

    #[test]
    fn a_power_cut_keeps_what_was_synced_and_tears_the_rest_anywhere() {
        let mut kept_lengths = BTreeSet::new();
        for seed in 0..200 {
            let fs = disk(seed, DiskFaults::default());
            let mut file = fs.open_append(&path("f")).expect("open");
            fs.sync_dir(Path::new("/d")).expect("sync dir");
            file.write_all(b"abc").expect("write");
            file.sync_data().expect("sync");
            file.write_all(b"defgh").expect("write");
            fs.power_cut();
            let data = fs.read(&path("f")).expect("the file's name was synced");
            assert!(b"abcdefgh".starts_with(&data) && data.len() >= 3, "{data:?}");
            kept_lengths.insert(data.len());
        }
        // Lost whole, torn in the middle, kept whole.
        assert!(kept_lengths.contains(&3) && kept_lengths.contains(&8) && kept_lengths.len() > 3);
    }

    #[test]
    fn names_survive_a_power_cut_only_once_the_directory_is_synced() {
        let fs = disk(1, DiskFaults::default());
        let mut file = fs.create(&path("tmp")).expect("create");
        file.write_all(b"x").expect("write");
        file.sync_all().expect("sync");
        fs.power_cut();
        assert!(!fs.exists(&path("tmp")), "created, never made durable in its directory");

        let mut file = fs.create(&path("tmp")).expect("create");
        file.write_all(b"x").expect("write");
        file.sync_all().expect("sync");
        fs.sync_dir(Path::new("/d")).expect("sync dir");
        fs.rename(&path("tmp"), &path("final")).expect("rename");
        fs.power_cut();
        assert!(
            fs.exists(&path("tmp")) && !fs.exists(&path("final")),
            "the rename was not synced"
        );

        fs.rename(&path("tmp"), &path("final")).expect("rename");
        fs.sync_dir(Path::new("/d")).expect("sync dir");
        fs.power_cut();
        assert_eq!(fs.list(Path::new("/d")).expect("list"), ["final"]);
        assert_eq!(fs.read(&path("final")).expect("read"), b"x");
    }

    #[test]
    fn an_armed_power_cut_strikes_at_its_operation_and_everything_after_fails() {
        let fs = disk(2, DiskFaults::default());
        let mut file = fs.open_append(&path("f")).expect("open");
        fs.arm_power_cut(2);
        file.write_all(b"one").expect("first operation");
        file.sync_data().expect("second operation");
        assert!(!fs.crashed());
        assert!(file.write_all(b"two").is_err(), "the third operation is cut");
        assert!(fs.crashed());
        assert!(
            fs.read(&path("f")).is_err() && file.sync_data().is_err(),
            "the process is dead"
        );
        fs.power_cut();
        assert!(!fs.crashed());
    }

    #[test]
    fn bits_flip_only_in_synced_data_and_healing_undoes_them() {
        let fs = disk(3, DiskFaults::default());
        let mut file = fs.open_append(&path("f")).expect("open");
        file.write_all(&[0u8; 64]).expect("write");
        file.sync_data().expect("sync");
        file.write_all(&[0u8; 64]).expect("unsynced write");
        let flip = fs
            .flip_bit(|_, synced| Some(0..synced.len()))
            .expect("synced data to flip");
        assert!(flip.offset < 64, "{flip:?}");
        let data = fs.read(&path("f")).expect("read");
        assert_eq!(data.iter().filter(|b| **b != 0).count(), 1);
        assert_eq!(fs.flips(), [flip]);
        fs.heal_flips();
        assert!(fs.read(&path("f")).expect("read").iter().all(|b| *b == 0));
        assert!(fs.flips().is_empty());
    }

    #[test]
    fn injected_errors_are_bounded_and_a_full_disk_refuses_writes() {
        let faults = DiskFaults {
            eio_rate: 0.5,
            max_eio: 3,
        };
        let fs = disk(4, faults);
        let mut file = fs
            .open_append(&path("f"))
            .unwrap_or_else(|_| fs.open_append(&path("f")).expect("open"));
        let failures = (0..100).filter(|_| file.sync_data().is_err()).count();
        assert!(failures <= 3 && fs.counts().eio <= 3, "{failures}");
        fs.set_full(true);
        let error = file.write_all(b"x").expect_err("the disk is full");
        assert_eq!(error.raw_os_error(), Some(libc::ENOSPC));
        fs.set_full(false);
        file.write_all(b"x").expect("room again");
    }
}
