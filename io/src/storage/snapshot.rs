//! Snapshot files: a header frame, one frame per record, and a trailer frame with the record count, so a file cut
//! short is recognised as such rather than read as a smaller state.

use super::{snapshot_path, StorageError};
use bytes::BytesMut;
use mqtt_core::persist::frame;
use mqtt_core::persist::Image;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

pub const MAGIC: &[u8] = b"mqtt-broker snapshot v1";
pub const TRAILER: &[u8] = b"end of snapshot";

/// Writes the snapshot of `generation` atomically; returns its size in bytes.
pub fn write(dir: &Path, generation: u64, image: &Image) -> Result<u64, StorageError> {
    let path = snapshot_path(dir, generation);
    let tmp = path.with_extension("snap.tmp");
    let io_err = |e| StorageError::io(&tmp, e);
    let file = File::create(&tmp).map_err(io_err)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut frames = BytesMut::new();
    let mut body = BytesMut::new();
    frame::put(&mut frames, MAGIC);
    let mut count: u64 = 0;
    let mut size: u64 = 0;
    for record in image.to_records() {
        body.clear();
        if let Err(e) = record.encode(&mut body) {
            log::error!("snapshot: cannot encode a record: {e:?}");
            continue;
        }
        frame::put(&mut frames, &body);
        count += 1;
        if frames.len() >= 1 << 20 {
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
    let file = out.into_inner().map_err(|e| io_err(e.into_error()))?;
    file.sync_all().map_err(io_err)?;
    std::fs::rename(&tmp, &path).map_err(|e| StorageError::io(&path, e))?;
    Ok(size)
}
