//! The file-system operations storage needs, and no more, so that the simulator can run the same storage code on
//! a simulated disk that tears writes, loses what was not synced, flips bits and fails (see `sim`'s `SimFs`).
//! [`StdFs`] is the real thing, used by the binary.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// A file opened for writing.
pub trait WriteFile {
    /// Writes all of `data` at the end of the file (log) or where the last write stopped (new snapshot).
    fn write_all(&mut self, data: &[u8]) -> io::Result<()>;
    /// Cuts the file to `len` bytes (a failed append takes back whatever part of it was written).
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// `fdatasync`: the data written so far survives a power cut.
    fn sync_data(&mut self) -> io::Result<()>;
    /// `fsync`: the data and the file's metadata survive a power cut.
    fn sync_all(&mut self) -> io::Result<()>;
}

/// A directory of files, as storage uses it.
pub trait FileSystem {
    type File: WriteFile;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Creates `path` empty (truncating it if it exists), for writing.
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens `path` for appending, creating it if need be.
    fn open_append(&self, path: &Path) -> io::Result<Self::File>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn len(&self, path: &Path) -> io::Result<u64>;
    fn exists(&self, path: &Path) -> bool;
    /// Cuts `path` to `len` bytes and syncs it.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Replaces `to` with `from` atomically (durable once the directory is synced).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries in `dir` (names that are not UTF-8 are left out: storage never writes any).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Makes file creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

impl WriteFile for File {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        Write::write_all(self, data)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn sync_all(&mut self) -> io::Result<()> {
        File::sync_all(self)
    }
}

impl FileSystem for StdFs {
    type File = File;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn create(&self, path: &Path) -> io::Result<File> {
        File::create(path)
    }

    fn open_append(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}
