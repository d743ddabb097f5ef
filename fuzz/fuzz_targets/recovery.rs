//! Recovery of a damaged data directory (issue: loud storage failures): whatever the log and snapshot files
//! hold, `Storage::open_in` restores a state or refuses with a typed error naming the file; it never panics, and a
//! state it restored is one the core can start from.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mqtt_core::broker::{Broker, Config};
use mqtt_core::time::Time;
use mqtt_storage::{FileSystem, Storage, SyncMode, WriteFile};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

#[derive(Arbitrary, Debug)]
struct Dir {
    /// Files by generation: a snapshot and a log each, any bytes.
    snapshots: Vec<(u8, Vec<u8>)>,
    logs: Vec<(u8, Vec<u8>)>,
    repair: bool,
}

/// An in-memory directory: just enough file system for recovery.
#[derive(Clone, Default)]
struct MemFs(Rc<RefCell<BTreeMap<PathBuf, Vec<u8>>>>);

struct MemFile {
    fs: MemFs,
    path: PathBuf,
}

impl WriteFile for MemFile {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.fs.0.borrow_mut().entry(self.path.clone()).or_default().extend_from_slice(data);
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.fs.0.borrow_mut().entry(self.path.clone()).or_default().truncate(len as usize);
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn sync_all(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn missing(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, path.display().to_string())
}

impl FileSystem for MemFs {
    type File = MemFile;
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn create(&self, path: &Path) -> io::Result<MemFile> {
        self.0.borrow_mut().insert(path.to_path_buf(), Vec::new());
        Ok(MemFile { fs: self.clone(), path: path.to_path_buf() })
    }
    fn open_append(&self, path: &Path) -> io::Result<MemFile> {
        self.0.borrow_mut().entry(path.to_path_buf()).or_default();
        Ok(MemFile { fs: self.clone(), path: path.to_path_buf() })
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.0.borrow().get(path).cloned().ok_or_else(|| missing(path))
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        self.0.borrow().get(path).map(|f| f.len() as u64).ok_or_else(|| missing(path))
    }
    fn exists(&self, path: &Path) -> bool {
        self.0.borrow().contains_key(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.0.borrow_mut().get_mut(path).ok_or_else(|| missing(path))?.truncate(len as usize);
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let data = self.0.borrow_mut().remove(from).ok_or_else(|| missing(from))?;
        self.0.borrow_mut().insert(to.to_path_buf(), data);
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.0.borrow_mut().remove(path).map(|_| ()).ok_or_else(|| missing(path))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        Ok(self
            .0
            .borrow()
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect())
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|input: Dir| {
    let dir = Path::new("/data");
    let fs = MemFs::default();
    for (generation, bytes) in input.snapshots.into_iter().take(3) {
        fs.0.borrow_mut().insert(dir.join(format!("snapshot-{:020}.snap", generation % 4)), bytes);
    }
    for (generation, bytes) in input.logs.into_iter().take(3) {
        fs.0.borrow_mut().insert(dir.join(format!("wal-{:020}.log", generation % 4)), bytes);
    }
    match Storage::open_in(fs, dir, SyncMode::Always, input.repair) {
        // A restored image must be one the core can start from.
        Ok((_storage, image, _recovery)) => {
            let mut broker = Broker::new(Config { persistence: true, ..Config::default() }, 1);
            broker.restore(Time::ZERO, image);
        }
        // A refusal must name the file it refuses.
        Err(error) => assert!(error.to_string().contains("/data/"), "refusal without a file: {error}"),
    }
});
