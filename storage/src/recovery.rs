//! Start-up: load the newest snapshot, replay its log. A log that ends in a torn or damaged frame with nothing valid
//! after it (a crash in the middle of a write) is truncated there with a warning; damage followed by valid records
//! stops start-up with an error naming the file and offset, unless `--repair` says to truncate anyway.

use super::snapshot::{MAGIC, TRAILER};
use super::{snapshot_path, wal_path, FileSystem, Planted, StorageError};
use mqtt_core::persist::frame::{self, Scan};
use mqtt_core::persist::{Image, Record, RetainedSink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Generation of the newest log recovered from (0: none, a fresh data directory).
    pub generation: u64,
    /// Generation of the snapshot loaded, the first log replayed. Below `generation` after a crash while a snapshot
    /// was written in the background: the logs from this one to `generation` are replayed in turn.
    pub first_generation: u64,
    pub snapshot_records: u64,
    pub log_records: u64,
    /// Bytes cut from the end of the log (a torn write, or damage given up with `--repair`).
    pub truncated_bytes: u64,
    /// Records that referred to state already gone.
    pub orphan_records: u64,
    pub elapsed: Duration,
}

/// Loads the newest snapshot, then replays the logs from its generation to the newest one. A snapshot is written
/// after its generation's log has started (see `Storage::begin_snapshot`), so until it is complete the records since
/// the previous snapshot are in two (or, after failed snapshots, more) consecutive logs: snapshot G, log G, log G+1.
/// Every log but the last was synced before the next one started, so damage in one of them is never a torn write.
/// Retained messages go to `retained`, not into the image (whose `retained` stays empty).
pub fn recover<F: FileSystem>(
    fs: &F,
    dir: &Path,
    repair: bool,
    planted: Option<Planted>,
    retained: &mut dyn RetainedSink,
) -> Result<(Image, Recovery), StorageError> {
    let started = Instant::now();
    let mut image = Image::default();
    let mut recovery = Recovery::default();
    let (snapshots, logs) = generations(fs, dir)?;
    let newest_snapshot = snapshots.iter().max().copied();
    let newest_log = logs.iter().max().copied();
    if let (None, Some(g)) = (newest_snapshot, newest_log) {
        if !repair {
            return Err(StorageError::Corrupt {
                path: wal_path(dir, g),
                offset: 0,
                detail: "its snapshot is missing".into(),
            });
        }
    }
    // Without a snapshot (only with --repair, see above), take what the newest log has.
    if let Some(first) = newest_snapshot.or(newest_log) {
        let last = newest_log.map_or(first, |g| g.max(first));
        recovery.first_generation = first;
        recovery.generation = last;
        if newest_snapshot.is_some() {
            recovery.snapshot_records = load_snapshot(fs, &snapshot_path(dir, first), repair, &mut image, retained)?;
        }
        for generation in first..=last {
            let log = wal_path(dir, generation);
            if !fs.exists(&log) {
                if first == last {
                    break; // A snapshot alone: a crash before its log started.
                }
                let later = wal_path(dir, last);
                let detail = format!("it is missing, but the later log {} exists", later.display());
                if !repair {
                    return Err(StorageError::Corrupt {
                        path: log,
                        offset: 0,
                        detail,
                    });
                }
                log::warn!("--repair: {}: {detail}; dropping the logs after it", log.display());
                recovery.truncated_bytes += drop_logs(fs, dir, generation + 1..=last)?;
                break;
            }
            // A log followed by others was synced before the next one started, so its end cannot be torn, unless
            // nothing was committed after it (a commit whose sync failed, then a snapshot: nothing depends on it).
            let may_be_torn = (generation + 1..=last).all(|g| fs.len(&wal_path(dir, g)).map_or(true, |len| len == 0));
            let (records, truncated, damaged) =
                replay_log(fs, &log, may_be_torn, repair, &mut image, retained, planted)?;
            recovery.log_records += records;
            recovery.truncated_bytes += truncated;
            if damaged && generation < last {
                log::warn!("--repair: dropping the logs after the damaged {}", log.display());
                recovery.truncated_bytes += drop_logs(fs, dir, generation + 1..=last)?;
                break;
            }
        }
    }
    image.collect_garbage();
    recovery.orphan_records = image.orphan_records;
    recovery.elapsed = started.elapsed();
    Ok((image, recovery))
}

/// `--repair` gave up a log in the middle of a chain: the later logs hold records that depend on what was lost, so
/// they are cut to nothing (and kept as files, so the next snapshot's generation stays above them). Returns the
/// bytes cut.
fn drop_logs<F: FileSystem>(
    fs: &F,
    dir: &Path,
    generations: std::ops::RangeInclusive<u64>,
) -> Result<u64, StorageError> {
    let mut cut = 0;
    for generation in generations {
        let log = wal_path(dir, generation);
        if fs.exists(&log) {
            cut += fs.len(&log).map_err(|e| StorageError::io(&log, e))?;
            fs.truncate(&log, 0).map_err(|e| StorageError::io(&log, e))?;
        }
    }
    Ok(cut)
}

fn load_snapshot<F: FileSystem>(
    fs: &F,
    path: &Path,
    repair: bool,
    image: &mut Image,
    retained: &mut dyn RetainedSink,
) -> Result<u64, StorageError> {
    let data = fs.read(path).map_err(|e| StorageError::io(path, e))?;
    let corrupt = |offset: usize, detail: &str| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        detail: detail.to_string(),
    };
    let mut offset = match frame::scan(&data, 0) {
        Scan::Frame { body, next } if body == MAGIC => next,
        _ => return Err(corrupt(0, "not a snapshot file (bad header)")),
    };
    let mut count = 0u64;
    loop {
        let problem = match frame::scan(&data, offset) {
            Scan::Frame { body, next } if body.starts_with(TRAILER) => {
                let expected = body
                    .get(TRAILER.len()..)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes);
                if expected == Some(count) {
                    return Ok(count);
                }
                let _ = next;
                "record count in the trailer does not match".to_string()
            }
            Scan::Frame { body, next } => match Record::decode(bytes::Bytes::copy_from_slice(body)) {
                Ok(record) => match super::sanity::check(image, std::slice::from_ref(&record)) {
                    Ok(()) => {
                        image.apply_with(record, retained);
                        count += 1;
                        offset = next;
                        continue;
                    }
                    Err(detail) => detail,
                },
                Err(_) => "undecodable record".to_string(),
            },
            Scan::End | Scan::Truncated => "the file ends before its trailer (truncated snapshot)".to_string(),
            Scan::Corrupt => "checksum mismatch".to_string(),
        };
        if repair {
            log::warn!(
                "--repair: {} is damaged at byte {offset} ({problem}); keeping the {count} records before it",
                path.display()
            );
            return Ok(count);
        }
        return Err(corrupt(offset, &problem));
    }
}

/// Replays a log into `image`; returns the records applied, the bytes truncated from its end, and whether it was
/// damaged (and cut, with `--repair`). Only a log that `may_be_torn` (the last of a chain with records) may end in
/// a torn write: the others were synced before the next one started.
fn replay_log<F: FileSystem>(
    fs: &F,
    path: &Path,
    may_be_torn: bool,
    repair: bool,
    image: &mut Image,
    retained: &mut dyn RetainedSink,
    planted: Option<Planted>,
) -> Result<(u64, u64, bool), StorageError> {
    let data = fs.read(path).map_err(|e| StorageError::io(path, e))?;
    #[cfg(feature = "planted-bugs")]
    if planted == Some(super::PlantedBug::RecoverySkipsDamagedFrame) {
        return Ok((replay_skipping_damage(&data, image, retained), 0, false));
    }
    let _ = planted;
    let replay = super::wal::replay(&data, image, retained);
    let Some(damage) = replay.damage else {
        return Ok((replay.records, 0, false));
    };
    let torn_tail = damage.torn_tail && may_be_torn;
    if !torn_tail && !repair {
        let detail = if damage.torn_tail {
            format!(
                "{}, in a log that was synced before the next one started",
                damage.detail
            )
        } else {
            damage.detail
        };
        return Err(StorageError::Corrupt {
            path: path.to_path_buf(),
            offset: damage.offset as u64,
            detail,
        });
    }
    let cut = (data.len() - replay.valid_len) as u64;
    if torn_tail {
        log::warn!(
            "{}: {} at byte {}, the last write before a crash; truncating {cut} bytes",
            path.display(),
            damage.detail,
            damage.offset
        );
    } else {
        log::warn!(
            "--repair: {}: {} at byte {}; truncating {cut} bytes, including valid records after it",
            path.display(),
            damage.detail,
            damage.offset
        );
    }
    fs.truncate(path, replay.valid_len as u64)
        .map_err(|e| StorageError::io(path, e))?;
    Ok((replay.records, cut, true))
}

/// Planted bug: replays every frame that reads, stepping over damaged ones to the next valid frame.
#[cfg(feature = "planted-bugs")]
fn replay_skipping_damage(data: &[u8], image: &mut Image, retained: &mut dyn RetainedSink) -> u64 {
    let mut offset = 0;
    let mut records = 0;
    loop {
        match frame::scan(data, offset) {
            Scan::Frame { body, next } => {
                for record in super::wal::decode(body).unwrap_or_default() {
                    image.apply_with(record, retained);
                    records += 1;
                }
                offset = next;
            }
            Scan::End => return records,
            Scan::Truncated | Scan::Corrupt => match frame::valid_frame_after(data, offset) {
                Some(next) => offset = next,
                None => return records,
            },
        }
    }
}

/// Generations of the snapshots and logs present.
fn generations<F: FileSystem>(fs: &F, dir: &Path) -> Result<(Vec<u64>, Vec<u64>), StorageError> {
    let mut snapshots = Vec::new();
    let mut logs = Vec::new();
    for name in fs.list(dir).map_err(|e| StorageError::io(dir, e))? {
        let name = name.as_str();
        let corrupt = |detail: &str| StorageError::Corrupt {
            path: dir.join(name),
            offset: 0,
            detail: detail.to_string(),
        };
        if let Some(g) = parse(name, "snapshot-", ".snap").map_err(corrupt)? {
            snapshots.push(g);
        } else if let Some(g) = parse(name, "wal-", ".log").map_err(corrupt)? {
            logs.push(g);
        }
    }
    Ok((snapshots, logs))
}

/// The generation in a file name of this pattern; `None` for other files. A generation too large for the broker
/// to go on from (it overflows 64 bits, or leaves no room for the next one) is refused: skipping such a file
/// would start without what it holds.
fn parse(name: &str, prefix: &str, suffix: &str) -> Result<Option<u64>, &'static str> {
    let Some(digits) = name.strip_prefix(prefix).and_then(|n| n.strip_suffix(suffix)) else {
        return Ok(None);
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match digits.parse::<u64>() {
        Ok(u64::MAX) => Err("its generation number leaves no room for the next one"),
        Ok(generation) => Ok(Some(generation)),
        Err(_) => Err("its generation number overflows a 64-bit integer"),
    }
}

/// Removes the files of generations before `generation`, and unfinished snapshot files.
pub fn remove_older<F: FileSystem>(fs: &F, dir: &Path, generation: u64) {
    let Ok((snapshots, logs)) = generations(fs, dir) else {
        return;
    };
    let old: Vec<PathBuf> = snapshots
        .into_iter()
        .filter(|g| *g < generation)
        .map(|g| snapshot_path(dir, g))
        .chain(logs.into_iter().filter(|g| *g < generation).map(|g| wal_path(dir, g)))
        .collect();
    for path in old {
        if let Err(e) = fs.remove(&path) {
            log::warn!("cannot remove old {}: {e}", path.display());
        }
    }
    if let Ok(names) = fs.list(dir) {
        for name in names.iter().filter(|n| n.ends_with(".snap.tmp")) {
            let _ = fs.remove(&dir.join(name));
        }
    }
}
