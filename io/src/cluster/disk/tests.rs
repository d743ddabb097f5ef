//! Recovery of the Raft files: restarts, overwritten suffixes, torn tails, damaged frames, compaction (including a
//! crash in the middle of one), and a directory from another cluster.

use super::*;

fn entry(index: u64, term: u64, data: &str) -> Entry {
    Entry {
        index,
        term,
        data: data.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

fn open(dir: &Path) -> (RaftDisk, Recovered) {
    RaftDisk::open(dir, "demo", 1, false).expect("open")
}

/// Where the frames of a log's bytes end (the zeros it was extended with follow).
fn data_end(data: &[u8]) -> usize {
    let mut offset = 0;
    while let Scan::Frame { next, .. } = frame::scan(data, offset) {
        offset = next;
    }
    offset
}

fn indexes(entries: &[Entry]) -> Vec<(u64, u64)> {
    entries.iter().map(|e| (e.index, e.term)).collect()
}

/// A directory whose log holds entries 1..=n of term 1, one commit each, and hard state (1, 1, n); returns the byte
/// offset where each commit's frames start.
fn directory_with(n: u64) -> (tempfile::TempDir, Vec<u64>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut disk, recovered) = open(dir.path());
    assert_eq!(recovered, Recovered::default(), "a fresh directory holds nothing");
    let mut offsets = Vec::new();
    for i in 1..=n {
        offsets.push(disk.log_len);
        disk.append(&[entry(i, 1, &format!("e{i}"))]);
        disk.set_hard_state(&hard_state(1, 1, i));
        disk.commit().expect("commit");
    }
    (dir, offsets)
}

#[test]
fn committed_entries_and_hard_state_survive_a_restart() {
    let (dir, _) = directory_with(3);
    let (_, recovered) = open(dir.path());
    assert_eq!(indexes(&recovered.entries), [(1, 1), (2, 1), (3, 1)]);
    assert_eq!(recovered.entries[2].data.as_ref(), b"e3");
    assert_eq!(recovered.hard_state, hard_state(1, 1, 3));
    assert_eq!(recovered.truncated_bytes, 0);
}

#[test]
fn uncommitted_appends_are_not_on_disk() {
    let (dir, _) = directory_with(1);
    let (mut disk, _) = open(dir.path());
    disk.append(&[entry(2, 1, "queued")]);
    assert!(disk.has_pending());
    drop(disk);
    assert_eq!(indexes(&open(dir.path()).1.entries), [(1, 1)]);
}

#[test]
fn a_new_leaders_entries_replace_the_uncommitted_suffix() {
    let (dir, _) = directory_with(4);
    let (mut disk, _) = open(dir.path());
    disk.append(&[entry(3, 2, "new3"), entry(4, 2, "new4"), entry(5, 2, "new5")]);
    disk.set_hard_state(&hard_state(2, 2, 2));
    disk.commit().expect("commit");
    let (_, recovered) = open(dir.path());
    assert_eq!(indexes(&recovered.entries), [(1, 1), (2, 1), (3, 2), (4, 2), (5, 2)]);
    assert_eq!(recovered.entries[2].data.as_ref(), b"new3");
    assert_eq!(recovered.hard_state, hard_state(2, 2, 2));
}

#[test]
fn torn_tail_is_truncated_keeping_every_earlier_commit() {
    let (dir, offsets) = directory_with(3);
    let log = log_path(dir.path(), 0);
    // Commit 3 wrote two frames: entry 3, then the hard state.
    let data = std::fs::read(&log).expect("read");
    let len = data_end(&data) as u64;
    let Scan::Frame { next: entry_end, .. } = frame::scan(&data, offsets[2] as usize) else {
        panic!("entry 3's frame")
    };
    for cut in [
        offsets[2] + 1,
        offsets[2] + 8,
        entry_end as u64 - 1,
        entry_end as u64 + 3,
        len - 1,
    ] {
        let copy = tempfile::tempdir().expect("tempdir");
        for entry in std::fs::read_dir(dir.path()).expect("dir").flatten() {
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).expect("copy");
        }
        let copied = log_path(copy.path(), 0);
        OpenOptions::new()
            .write(true)
            .open(&copied)
            .expect("open")
            .set_len(cut)
            .expect("cut");
        let (mut disk, recovered) = open(copy.path());
        let (kept, valid) = if cut < entry_end as u64 {
            (vec![(1, 1), (2, 1)], offsets[2])
        } else {
            (vec![(1, 1), (2, 1), (3, 1)], entry_end as u64)
        };
        assert_eq!(indexes(&recovered.entries), kept, "cut at {cut}");
        assert_eq!(recovered.hard_state, hard_state(1, 1, 2), "cut at {cut}");
        // A tail of zeros only (the first bytes of a length) reads as the zeros the log is extended with.
        let zeros = data[valid as usize..cut as usize].iter().all(|b| *b == 0);
        assert_eq!(
            recovered.truncated_bytes,
            if zeros { 0 } else { cut - valid },
            "cut at {cut}"
        );
        // The truncated log takes appends again and reads back whole.
        disk.append(&[entry(3, 2, "again")]);
        disk.commit().expect("commit");
        assert_eq!(indexes(&open(copy.path()).1.entries), [(1, 1), (2, 1), (3, 2)]);
    }
}

/// The log is extended with zeros ahead of its frames, so a sync of the next frames changes no size or allocation
/// (no journal commit): the zeros are its end on recovery, not damage, and appends go on right after the frames.
#[test]
fn zeros_the_log_was_extended_with_are_its_end() {
    let (dir, _) = directory_with(3);
    let log = log_path(dir.path(), 0);
    let data = std::fs::read(&log).expect("read");
    let end = data_end(&data);
    assert!(
        data.len() >= end + PREALLOCATE as usize / 2,
        "extended ahead: {} of {end}",
        data.len()
    );
    assert!(data[end..].iter().all(|b| *b == 0));
    let (mut disk, recovered) = open(dir.path());
    assert_eq!(recovered.truncated_bytes, 0, "zeros are not a torn tail");
    assert_eq!(recovered.hard_state, hard_state(1, 1, 3));
    disk.append(&[entry(4, 1, "e4")]);
    disk.commit().expect("commit");
    assert_eq!(
        std::fs::metadata(&log).expect("log").len(),
        data.len() as u64,
        "written in place"
    );
    let (_, recovered) = open(dir.path());
    assert_eq!(indexes(&recovered.entries), [(1, 1), (2, 1), (3, 1), (4, 1)]);
    // A write torn inside the zeros (its first bytes made it, the rest did not) is cut off, the earlier frames kept.
    let mut data = std::fs::read(&log).expect("read");
    let end = data_end(&data);
    let mut torn = BytesMut::new();
    frame::put(&mut torn, b"\x01a frame that never finished");
    data[end..end + 12].copy_from_slice(&torn[..12]);
    std::fs::write(&log, &data).expect("write");
    let (mut disk, recovered) = open(dir.path());
    assert_eq!(indexes(&recovered.entries).len(), 4);
    assert_eq!(
        recovered.truncated_bytes,
        (data.len() - end) as u64,
        "cut from the torn frame on"
    );
    disk.append(&[entry(5, 1, "e5")]);
    disk.commit().expect("commit");
    assert_eq!(indexes(&open(dir.path()).1.entries).len(), 5);
}

#[test]
fn flipped_bit_in_the_last_frame_is_a_torn_tail() {
    let (dir, _) = directory_with(3);
    let log = log_path(dir.path(), 0);
    let mut data = std::fs::read(&log).expect("read");
    let last = data_end(&data) - 2;
    data[last] ^= 0x10;
    std::fs::write(&log, &data).expect("write");
    let (_, recovered) = open(dir.path());
    // The last frame is commit 3's hard state: entry 3 is kept, the hard state falls back to commit 2's.
    assert_eq!(indexes(&recovered.entries), [(1, 1), (2, 1), (3, 1)]);
    assert_eq!(recovered.hard_state, hard_state(1, 1, 2));
}

#[test]
fn damage_in_the_middle_stops_start_up_naming_file_and_offset_unless_repaired() {
    let (dir, offsets) = directory_with(3);
    let log = log_path(dir.path(), 0);
    let mut data = std::fs::read(&log).expect("read");
    data[offsets[1] as usize + 12] ^= 0x80;
    std::fs::write(&log, &data).expect("write");
    let text = match RaftDisk::open(dir.path(), "demo", 1, false) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("damage followed by valid frames must not be silently truncated"),
    };
    assert!(text.contains(&log.display().to_string()), "{text}");
    assert!(text.contains(&format!("byte {}", offsets[1])), "{text}");
    assert!(text.contains("--repair"), "{text}");
    assert_eq!(
        std::fs::read(&log).expect("read"),
        data,
        "a refused start leaves the file as it was"
    );
    let (_, recovered) = RaftDisk::open(dir.path(), "demo", 1, true).expect("repair");
    assert_eq!(indexes(&recovered.entries), [(1, 1)]);
}

#[test]
fn frame_with_valid_checksum_but_garbage_inside_is_refused() {
    let (dir, _) = directory_with(1);
    let (mut disk, _) = open(dir.path());
    frame::put(&mut disk.pending, &[9, 1, 2, 3]);
    disk.commit().expect("commit");
    disk.append(&[entry(2, 1, "after")]);
    disk.commit().expect("commit");
    drop(disk);
    let text = match RaftDisk::open(dir.path(), "demo", 1, false) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("an unknown frame tag is corruption"),
    };
    assert!(text.contains("unknown frame tag 9"), "{text}");
}

fn snapshot(index: u64, term: u64, data: &[u8]) -> Snapshot {
    let mut s = Snapshot::default();
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
    s.data = data.to_vec().into();
    s
}

#[test]
fn snapshot_compacts_the_log_and_recovery_starts_from_it() {
    let (dir, _) = directory_with(5);
    let (mut disk, _) = open(dir.path());
    // Large enough to take several chunks.
    let image: Vec<u8> = (0..SNAP_CHUNK * 2 + 7).map(|i| i as u8).collect();
    disk.save_snapshot(&snapshot(3, 1, &image), false).expect("snapshot");
    disk.append(&[entry(6, 1, "e6")]);
    disk.commit().expect("commit");
    assert!(!log_path(dir.path(), 0).exists(), "the compacted log is removed");
    let (disk, recovered) = open(dir.path());
    assert_eq!(disk.snapshot_index(), 3);
    assert_eq!(recovered.snapshot.get_metadata().index, 3);
    assert_eq!(recovered.snapshot.get_metadata().get_conf_state().voters, [1, 2, 3]);
    assert_eq!(recovered.snapshot.data.as_ref(), &image[..]);
    assert_eq!(indexes(&recovered.entries), [(4, 1), (5, 1), (6, 1)]);
    assert_eq!(recovered.hard_state, hard_state(1, 1, 5));
}

#[test]
fn a_leaders_snapshot_past_the_log_replaces_it() {
    let (dir, _) = directory_with(2);
    let (mut disk, _) = open(dir.path());
    disk.save_snapshot(&snapshot(10, 3, b"image"), true).expect("snapshot");
    let (_, recovered) = open(dir.path());
    assert!(recovered.entries.is_empty());
    assert_eq!(recovered.hard_state.commit, 10, "the snapshot is committed");
    assert_eq!(recovered.hard_state.term, 1, "term and vote are kept");
}

#[test]
fn a_leaders_snapshot_with_discard_log_drops_even_matching_entries() {
    let (dir, _) = directory_with(5);
    let (mut disk, _) = open(dir.path());
    disk.save_snapshot(&snapshot(3, 1, b"image"), true).expect("snapshot");
    assert!(open(dir.path()).1.entries.is_empty());
}

#[test]
fn crash_between_snapshot_and_new_log_recovers_from_the_previous_log() {
    let (dir, _) = directory_with(5);
    let (mut disk, _) = open(dir.path());
    disk.save_snapshot(&snapshot(3, 1, b"image"), false).expect("snapshot");
    drop(disk);
    // As if the process died after the snapshot's rename, before the new log's: restore generation 0's log.
    let (full, _) = directory_with(5);
    std::fs::copy(log_path(full.path(), 0), log_path(dir.path(), 0)).expect("copy");
    std::fs::remove_file(log_path(dir.path(), 1)).expect("remove");
    let (_, recovered) = open(dir.path());
    assert_eq!(indexes(&recovered.entries), [(4, 1), (5, 1)]);
    assert_eq!(recovered.hard_state, hard_state(1, 1, 5));
    // It was rewritten as generation 1's log: the next start reads it directly.
    assert!(log_path(dir.path(), 1).exists() && !log_path(dir.path(), 0).exists());
    assert_eq!(open(dir.path()).1, recovered);
}

/// The node's own snapshot as a thread writes it: at the hand-over the next generation's log starts (the entries
/// past the snapshot's index, the queued ones too) and takes the appends. A crash before the snapshot is put in
/// place (the scratch file whole, or torn) recovers from the previous snapshot and both logs, merged back into one.
/// Put in place (a rename), it leaves the older files behind and recovery starts from it; one a leader's snapshot
/// replaced meanwhile is dropped.
#[test]
fn a_snapshot_written_by_a_thread_counts_only_once_put_in_place() {
    let (dir, _) = directory_with(5);
    let (mut disk, _) = open(dir.path());
    let scratch = disk.snapshot_scratch_path();
    disk.append(&[entry(6, 1, "e6")]);
    disk.start_next_log(3, 5).expect("hand over");
    assert!(!disk.has_pending(), "what was queued is in the new log, synced");
    assert!(log_path(dir.path(), 0).exists() && log_path(dir.path(), 1).exists());
    disk.append(&[entry(7, 1, "e7")]);
    disk.commit().expect("commit");
    write_snapshot_file(&scratch, &snapshot(3, 1, b"image at 3")).expect("write");
    drop(disk);
    // Killed before the snapshot was put in place: whole, then torn, the scratch file changes nothing.
    for cut in [None, Some(9)] {
        if let Some(len) = cut {
            OpenOptions::new()
                .write(true)
                .open(&scratch)
                .and_then(|f| f.set_len(len))
                .expect("tear");
        }
        let (_, recovered) = open(dir.path());
        assert_eq!(recovered.snapshot.get_metadata().index, 0, "no snapshot");
        assert_eq!(
            indexes(&recovered.entries),
            (1..=7).map(|i| (i, 1)).collect::<Vec<_>>(),
            "both logs"
        );
        assert_eq!(recovered.hard_state, hard_state(1, 1, 5));
        assert!(
            log_path(dir.path(), 0).exists() && !log_path(dir.path(), 1).exists(),
            "merged back into the first log"
        );
    }
    let (mut disk, _) = open(dir.path());
    disk.append(&[entry(8, 1, "e8")]);
    disk.start_next_log(3, 7).expect("hand over");
    disk.append(&[entry(9, 1, "e9")]);
    disk.commit().expect("commit");
    write_snapshot_file(&scratch, &snapshot(3, 1, b"image at 3")).expect("write");
    assert!(disk
        .adopt_snapshot(&scratch, &snapshot(3, 1, b"image at 3"))
        .expect("adopt"));
    assert!(!scratch.exists());
    disk.wait_cleanup();
    assert!(!log_path(dir.path(), 0).exists(), "removed once the rename is synced");
    drop(disk);
    let (mut disk, recovered) = open(dir.path());
    assert_eq!(recovered.snapshot.data.as_ref(), b"image at 3");
    assert_eq!(
        indexes(&recovered.entries),
        (4..=9).map(|i| (i, 1)).collect::<Vec<_>>(),
        "the entries after the snapshot, appended before and after the hand-over"
    );
    // Killed again between a hand-over and its snapshot, now with a snapshot before it: that snapshot and both logs.
    disk.start_next_log(6, 9).expect("hand over");
    disk.append(&[entry(10, 1, "e10")]);
    disk.commit().expect("commit");
    drop(disk);
    let (mut disk, recovered) = open(dir.path());
    assert_eq!(recovered.snapshot.data.as_ref(), b"image at 3");
    assert_eq!(
        indexes(&recovered.entries),
        (4..=10).map(|i| (i, 1)).collect::<Vec<_>>()
    );
    assert!(!log_path(dir.path(), 2).exists(), "merged back into the snapshot's log");
    // A leader's snapshot at 10 is installed while the thread writes one at 4: that one is dropped.
    disk.start_next_log(4, 10).expect("hand over");
    write_snapshot_file(&scratch, &snapshot(4, 1, b"image at 4")).expect("write");
    disk.save_snapshot(&snapshot(10, 2, b"leader's"), true)
        .expect("install");
    assert!(!disk
        .adopt_snapshot(&scratch, &snapshot(4, 1, b"image at 4"))
        .expect("adopt"));
    assert!(!scratch.exists());
    assert_eq!(open(dir.path()).1.snapshot.data.as_ref(), b"leader's");
}

#[test]
fn truncated_snapshot_stops_start_up() {
    let (dir, _) = directory_with(2);
    let (mut disk, _) = open(dir.path());
    disk.save_snapshot(&snapshot(2, 1, &[7u8; 5000]), false)
        .expect("snapshot");
    let path = snap_path(dir.path(), 1);
    let len = std::fs::metadata(&path).expect("snap").len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(len - 30)
        .expect("cut");
    let text = match RaftDisk::open(dir.path(), "demo", 1, false) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a truncated snapshot must not load"),
    };
    assert!(text.contains("raft-") && text.contains("before its trailer"), "{text}");
}

#[test]
fn directory_of_another_cluster_or_node_is_refused_naming_the_file() {
    let (dir, _) = directory_with(1);
    for (cluster, node) in [("other", 1), ("demo", 2)] {
        let text = match RaftDisk::open(dir.path(), cluster, node, false) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{cluster}/{node} must not open demo/1's directory"),
        };
        assert!(
            text.contains(&dir.path().join("cluster.id").display().to_string()),
            "{text}"
        );
        assert!(text.contains("cluster \"demo\" node 1"), "{text}");
    }
    // Nothing was changed by the refusals.
    assert_eq!(indexes(&open(dir.path()).1.entries), [(1, 1)]);
}
