//! Snapshot files: a header frame, one frame per record, and a trailer frame with the record count, so a file cut
//! short is recognised as such rather than read as a smaller state.

use super::{snapshot_path, FileSystem, Planted, StorageError, WriteFile};
use bytes::BytesMut;
use mqtt_core::persist::frame;
use mqtt_core::persist::Record;
use std::path::{Path, PathBuf};

/// Frames are written in chunks of about this size.
const CHUNK: usize = 1 << 20;

pub const MAGIC: &[u8] = b"mqtt-broker snapshot v1";
pub const TRAILER: &[u8] = b"end of snapshot";

/// Where the snapshot of `generation` is written before it is complete.
pub fn tmp_path(dir: &Path, generation: u64) -> PathBuf {
    snapshot_path(dir, generation).with_extension("snap.tmp")
}

/// Writes `records` as the snapshot of `generation` atomically and durably (contents synced, renamed into place,
/// directory synced); returns its size in bytes. A record that cannot be encoded stops the write with the file
/// and the offset it would have had: a snapshot that silently lacks it would look whole.
pub fn write<F: FileSystem>(
    fs: &F,
    dir: &Path,
    generation: u64,
    records: impl Iterator<Item = Record>,
    planted: Option<Planted>,
) -> Result<u64, StorageError> {
    let path = snapshot_path(dir, generation);
    let tmp = tmp_path(dir, generation);
    let io_err = |e| StorageError::io(&tmp, e);
    let mut out = fs.create(&tmp).map_err(io_err)?;
    let mut frames = BytesMut::new();
    let mut body = BytesMut::new();
    frame::put(&mut frames, MAGIC);
    let mut count: u64 = 0;
    let mut size: u64 = 0;
    for record in records {
        body.clear();
        if let Err(e) = record.encode(&mut body) {
            return Err(StorageError::Unencodable {
                path: tmp.clone(),
                offset: size + frames.len() as u64,
                detail: format!("{e:?}"),
            });
        }
        frame::put(&mut frames, &body);
        count += 1;
        if frames.len() >= CHUNK {
            out.write_all(&frames).map_err(io_err)?;
            size += frames.len() as u64;
            frames.clear();
        }
    }
    let mut trailer = TRAILER.to_vec();
    trailer.extend_from_slice(&count.to_be_bytes());
    frame::put(&mut frames, &trailer);
    out.write_all(&frames).map_err(io_err)?;
    size += frames.len() as u64;
    #[cfg(feature = "planted-bugs")]
    if planted == Some(super::PlantedBug::SnapshotRenamedBeforeSync) {
        // The bug: the new name (made durable by the caller's directory sync) may point at unsynced contents.
        fs.rename(&tmp, &path).map_err(|e| StorageError::io(&path, e))?;
        fs.sync_dir(dir).map_err(|e| StorageError::io(dir, e))?;
        out.sync_all().map_err(|e| StorageError::io(&path, e))?;
        return Ok(size);
    }
    let _ = planted;
    out.sync_all().map_err(io_err)?;
    fs.rename(&tmp, &path).map_err(|e| StorageError::io(&path, e))?;
    fs.sync_dir(dir).map_err(|e| StorageError::io(dir, e))?;
    Ok(size)
}
