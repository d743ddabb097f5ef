//! Recovery on hand-damaged files: torn tail, flipped byte, truncated snapshot, missing snapshot, `--repair`.

use super::*;
use mqtt_core::packet::{Properties, QoS};
use mqtt_core::persist::StoredMessage;
use std::fs::OpenOptions;

fn retain(topic: &str, payload: &str) -> Record {
    Record::Retain {
        message: Box::new(StoredMessage {
            topic: topic.to_string(),
            payload: bytes::Bytes::copy_from_slice(payload.as_bytes()),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default().into(),
            expires_at: None,
        }),
    }
}

/// A data directory whose log holds `n` retained messages `t/0..n`, committed; returns the log's path and the byte
/// offset where each record starts.
fn directory_with_log(n: usize) -> (tempfile::TempDir, PathBuf, Vec<u64>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut storage, image, recovery) = Storage::open(dir.path(), SyncMode::Always, false).expect("open");
    assert_eq!((image, recovery.generation), (Image::default(), 0));
    let mut offsets = Vec::new();
    for i in 0..n {
        offsets.push(storage.wal_len);
        storage.append(&retain(&format!("t/{i}"), &format!("payload {i}")));
        storage.commit().expect("commit");
    }
    let path = storage.wal_path.clone();
    (dir, path, offsets)
}

fn topics(image: &Image) -> Vec<String> {
    image.retained.keys().cloned().collect()
}

#[test]
fn committed_records_survive_a_restart() {
    let (dir, _, _) = directory_with_log(3);
    let (_, image, recovery) = Storage::open(dir.path(), SyncMode::Always, false).expect("reopen");
    assert_eq!(topics(&image), ["t/0", "t/1", "t/2"]);
    assert_eq!((recovery.generation, recovery.log_records), (1, 3));
    // The restart compacted everything into snapshot 2 and removed generation 1.
    let (_, image, recovery) = Storage::open(dir.path(), SyncMode::Always, false).expect("reopen twice");
    assert_eq!(topics(&image), ["t/0", "t/1", "t/2"]);
    assert_eq!(
        (recovery.generation, recovery.snapshot_records, recovery.log_records),
        (2, 3, 0)
    );
    assert!(!wal_path(dir.path(), 1).exists() && !snapshot_path(dir.path(), 1).exists());
}

/// The broker's start-up hands retained messages to its tree as they are read (`open_into`): none stays in the
/// image, clears and replacements in the log apply to the sink, and the snapshot written after recovery still holds
/// them all (the next start finds them there, not in a log).
#[test]
fn open_into_hands_retained_messages_to_the_sink_and_snapshots_them() {
    let (dir, _, _) = directory_with_log(3);
    {
        let (mut storage, _, _) = Storage::open(dir.path(), SyncMode::Always, false).expect("reopen");
        storage.append(&Record::RetainClear { topic: "t/1".into() });
        storage.append(&retain("t/2", "replaced"));
        storage.commit().expect("commit");
    }
    let mut sink: BTreeMap<String, mqtt_core::persist::StoredMessage> = BTreeMap::new();
    let (_, image, recovery) = Storage::open_into(dir.path(), SyncMode::Always, false, &mut sink).expect("open_into");
    assert!(image.retained.is_empty(), "the image holds none of them");
    assert_eq!(sink.keys().collect::<Vec<_>>(), ["t/0", "t/2"]);
    assert_eq!(&sink["t/2"].payload[..], b"replaced");
    assert_eq!((recovery.snapshot_records, recovery.log_records), (3, 2));
    let (_, image, recovery) = Storage::open(dir.path(), SyncMode::Always, false).expect("reopen after");
    assert_eq!(topics(&image), ["t/0", "t/2"]);
    assert_eq!(&image.retained["t/2"].payload[..], b"replaced");
    assert_eq!((recovery.snapshot_records, recovery.log_records), (2, 0));
}

#[test]
fn torn_tail_is_truncated_with_everything_before_it_kept() {
    let (dir, log, offsets) = directory_with_log(3);
    let len = std::fs::metadata(&log).expect("log").len();
    // Cut the last record anywhere inside it.
    for cut in [offsets[2] + 1, offsets[2] + 8, len - 1] {
        let copy = tempfile::tempdir().expect("tempdir");
        for entry in std::fs::read_dir(dir.path()).expect("dir").flatten() {
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).expect("copy");
        }
        let copied_log = copy.path().join(log.file_name().expect("name"));
        OpenOptions::new()
            .write(true)
            .open(&copied_log)
            .expect("open")
            .set_len(cut)
            .expect("cut");
        let (_, image, recovery) = Storage::open(copy.path(), SyncMode::Always, false).expect("recover");
        assert_eq!(topics(&image), ["t/0", "t/1"], "cut at {cut}");
        assert_eq!(recovery.truncated_bytes, cut - offsets[2]);
    }
}

#[test]
fn flipped_byte_in_the_last_record_is_a_torn_tail() {
    let (dir, log, offsets) = directory_with_log(3);
    let mut data = std::fs::read(&log).expect("read");
    let at = offsets[2] as usize + 10;
    data[at] ^= 0x01;
    std::fs::write(&log, &data).expect("write");
    let (_, image, _) = Storage::open(dir.path(), SyncMode::Always, false).expect("recover");
    assert_eq!(topics(&image), ["t/0", "t/1"]);
}

#[test]
fn flipped_byte_in_the_middle_stops_start_up_naming_file_and_offset() {
    let (dir, log, offsets) = directory_with_log(3);
    let mut data = std::fs::read(&log).expect("read");
    data[offsets[1] as usize + 12] ^= 0x80;
    std::fs::write(&log, &data).expect("write");
    let error = match Storage::open(dir.path(), SyncMode::Always, false) {
        Err(e) => e,
        Ok(_) => panic!("damage with valid records after it must not be silently truncated"),
    };
    let text = error.to_string();
    assert!(text.contains(&log.display().to_string()), "{text}");
    assert!(text.contains(&format!("byte {}", offsets[1])), "{text}");
    assert!(text.contains("--repair"), "{text}");
    // The files are untouched by the failed start.
    assert_eq!(std::fs::read(&log).expect("read"), data);

    // --repair keeps what precedes the damage.
    let (_, image, recovery) = Storage::open(dir.path(), SyncMode::Always, true).expect("repair");
    assert_eq!(topics(&image), ["t/0"]);
    assert_eq!(recovery.truncated_bytes, data.len() as u64 - offsets[1]);
}

#[test]
fn truncated_snapshot_stops_start_up() {
    let (dir, _, _) = directory_with_log(50);
    // Restart once: generation 2's snapshot holds the 50 messages.
    drop(Storage::open(dir.path(), SyncMode::Always, false).expect("compact"));
    let snapshot = snapshot_path(dir.path(), 2);
    let len = std::fs::metadata(&snapshot).expect("snapshot").len();
    OpenOptions::new()
        .write(true)
        .open(&snapshot)
        .expect("open")
        .set_len(len / 2)
        .expect("cut");
    let error = match Storage::open(dir.path(), SyncMode::Always, false) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a truncated snapshot must not load as a smaller state"),
    };
    assert!(
        error.contains("snapshot-") && error.contains("truncated snapshot"),
        "{error}"
    );
    let (_, image, _) = Storage::open(dir.path(), SyncMode::Always, true).expect("repair");
    assert!(!image.retained.is_empty() && image.retained.len() < 50);
}

#[test]
fn snapshot_replaces_a_grown_log() {
    let (dir, _, _) = directory_with_log(5);
    let (mut storage, image, _) = Storage::open(dir.path(), SyncMode::Always, false).expect("open");
    storage.snapshot(&image).expect("snapshot");
    assert_eq!(storage.generation, 3);
    storage.append(&retain("t/new", "after the snapshot"));
    storage.commit().expect("commit");
    let (_, image, recovery) = Storage::open(dir.path(), SyncMode::Always, false).expect("reopen");
    assert_eq!(image.retained.len(), 6);
    assert_eq!(
        (recovery.generation, recovery.snapshot_records, recovery.log_records),
        (3, 5, 1)
    );
}

#[test]
fn uncommitted_records_hold_sends_only_when_syncing_always() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut always, _, _) = Storage::open(&dir.path().join("a"), SyncMode::Always, false).expect("open");
    always.append(&retain("t", "x"));
    assert!(always.holds_sends());
    always.commit().expect("commit");
    assert!(!always.holds_sends());
    let (mut interval, _, _) = Storage::open(
        &dir.path().join("b"),
        SyncMode::Interval(Duration::from_secs(60)),
        false,
    )
    .expect("open");
    interval.append(&retain("t", "x"));
    assert!(!interval.holds_sends());
    interval.commit().expect("commit");
    assert!(
        interval.sync_deadline().is_some(),
        "written, sync due within the interval"
    );
}

/// A queue entry for message 42, which no record stored: checksum-valid, and never applicable.
fn enqueue_of_missing_message() -> Record {
    Record::Enqueue {
        key: 1,
        seq: 1,
        id: 42,
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: Vec::new(),
    }
}

/// A checksum-valid record that cannot be right: a queue entry whose message is missing, or a session key the
/// restored broker would overflow. With valid records after it, start-up stops naming the file and the offset;
/// no panic, no image that silently lacks the entry.
#[test]
fn an_entry_whose_message_is_missing_or_an_overflowing_key_stops_start_up() {
    let bad_records = [
        enqueue_of_missing_message(),
        Record::SessionOpen {
            key: u64::MAX,
            client_id: "c".into(),
            protocol: mqtt_core::packet::ProtocolVersion::V5,
            expiry: 0,
        },
    ];
    for (bad, detail) in bad_records
        .into_iter()
        .zip(["message 42, which is missing", "session key"])
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut storage, _, _) = Storage::open(dir.path(), SyncMode::Always, false).expect("open");
        storage.append(&retain("t/0", "before"));
        storage.commit().expect("commit");
        let offset = storage.wal_len;
        storage.append(&bad);
        storage.commit().expect("commit");
        storage.append(&retain("t/1", "after"));
        storage.commit().expect("commit");
        let log = storage.wal_path.clone();
        drop(storage);
        let error = match Storage::open(dir.path(), SyncMode::Always, false) {
            Err(e) => e,
            Ok(_) => panic!("a record that cannot be applied must stop start-up ({detail})"),
        };
        let text = error.to_string();
        assert!(text.contains(&log.display().to_string()), "{text}");
        assert!(text.contains(&format!("byte {offset}")), "{text}");
        assert!(text.contains(detail), "{text}");
    }
}

/// A frame whose checksum holds was written whole, so a record in it that does not decode (or cannot be applied) is
/// not a write torn by a crash, even as the very last frame of the log: start-up stops naming the file and offset
/// instead of truncating it away; `--repair` still can.
#[test]
fn an_undecodable_record_that_passes_its_checksum_at_the_end_of_the_log_stops_start_up() {
    let undecodable = {
        let mut frame = bytes::BytesMut::new();
        mqtt_core::persist::frame::put(&mut frame, &[0xEE, 0, 1, 2, 3]);
        frame.to_vec()
    };
    let unapplicable = {
        let mut pending = wal::Pending::default();
        pending.push(&enqueue_of_missing_message()).expect("encodable");
        let mut frame = bytes::BytesMut::new();
        pending.frame(&mut frame);
        frame.to_vec()
    };
    for (last, detail) in [(undecodable, "undecodable record"), (unapplicable, "which is missing")] {
        let (dir, log, _) = directory_with_log(2);
        let mut data = std::fs::read(&log).expect("read");
        let offset = data.len();
        data.extend_from_slice(&last);
        std::fs::write(&log, &data).expect("write");
        let error = match Storage::open(dir.path(), SyncMode::Always, false) {
            Err(e) => e,
            Ok(_) => panic!("a whole frame that cannot be replayed must not be truncated as a torn write ({detail})"),
        };
        let text = error.to_string();
        assert!(text.contains(&log.display().to_string()), "{text}");
        assert!(text.contains(&format!("byte {offset}")), "{text}");
        assert!(text.contains(detail), "{text}");
        assert_eq!(
            std::fs::read(&log).expect("read"),
            data,
            "the failed start leaves the log as it was"
        );

        let (_, image, recovery) = Storage::open(dir.path(), SyncMode::Always, true).expect("repair");
        assert_eq!(topics(&image), ["t/0", "t/1"]);
        assert_eq!(recovery.truncated_bytes, last.len() as u64);
    }
}

/// Copies every file of `from` into a fresh directory: the disk as a crash at this moment would leave it (StdFs
/// syncs everything storage relies on before going on).
fn crash_copy(from: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(from).expect("dir").flatten() {
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).expect("copy");
    }
    copy
}

/// Where a crash can strike a snapshot written in the background, after its freeze started the next log.
#[derive(Debug, Clone, Copy)]
enum CrashPoint {
    /// Before the thread wrote anything.
    NotStarted,
    /// Half of the temporary file written.
    HalfWritten,
    /// Complete and renamed into place, the old files not yet removed.
    Complete,
    /// Finished: the old files removed.
    Finished,
}

/// The design of a snapshot written off the event loop: the freeze starts log G+1, commits go on there while the
/// thread writes snapshot G+1, and a crash anywhere in that write recovers snapshot G + log G + log G+1, or
/// snapshot G+1 + log G+1 once it is complete: nothing committed before or during the write is lost.
#[test]
fn a_crash_during_a_background_snapshot_loses_nothing_committed_before_or_during_it() {
    for point in [
        CrashPoint::NotStarted,
        CrashPoint::HalfWritten,
        CrashPoint::Complete,
        CrashPoint::Finished,
    ] {
        let (dir, _, _) = directory_with_log(3);
        let (mut storage, mut image, _) = Storage::open(dir.path(), SyncMode::Always, false).expect("open");
        assert_eq!(storage.generation, 2);
        for i in 3..6 {
            let record = retain(&format!("t/{i}"), "before the freeze");
            image.apply(record.clone());
            storage.append(&record);
            storage.commit().expect("commit");
        }
        let frozen = image.clone();
        let job = storage.begin_snapshot().expect("freeze");
        assert_eq!((job.generation(), storage.generation), (3, 3));
        assert!(!storage.wants_snapshot(), "one snapshot at a time");
        assert!(matches!(
            storage.begin_snapshot(),
            Err(StorageError::SnapshotInFlight { generation: 3 })
        ));
        // Committed while the thread writes: into the new log.
        for i in 6..8 {
            storage.append(&retain(&format!("t/{i}"), "during the write"));
            storage.commit().expect("commit");
        }
        match point {
            CrashPoint::NotStarted => {}
            CrashPoint::HalfWritten => {
                // A complete snapshot, written elsewhere, cut in half where the thread would have its temporary file.
                let elsewhere = tempfile::tempdir().expect("tempdir");
                let len = snapshot::write(&StdFs, elsewhere.path(), 3, frozen.to_records(), None).expect("write");
                let data = std::fs::read(snapshot_path(elsewhere.path(), 3)).expect("read");
                std::fs::write(snapshot_tmp_path(dir.path(), 3), &data[..len as usize / 2]).expect("tmp");
            }
            CrashPoint::Complete | CrashPoint::Finished => {
                let written = job.write(&StdFs, frozen.to_records());
                assert!(written.is_ok());
                if matches!(point, CrashPoint::Finished) {
                    storage.finish_snapshot(job, written).expect("finish");
                    assert!(!wal_path(dir.path(), 2).exists() && !snapshot_path(dir.path(), 2).exists());
                }
            }
        }
        let crashed = crash_copy(dir.path());
        drop(storage);
        let (_, recovered, recovery) = Storage::open(crashed.path(), SyncMode::Always, false).expect("recover");
        let expected: Vec<String> = (0..8).map(|i| format!("t/{i}")).collect();
        assert_eq!(topics(&recovered), expected, "{point:?}");
        let first = match point {
            CrashPoint::NotStarted | CrashPoint::HalfWritten => 2,
            CrashPoint::Complete | CrashPoint::Finished => 3,
        };
        assert_eq!(
            (recovery.first_generation, recovery.generation, recovery.log_records),
            (first, 3, if first == 2 { 5 } else { 2 }),
            "{point:?}"
        );
        // Recovery compacted it all into generation 4, and the unfinished file went with the old generations.
        assert!(!snapshot_tmp_path(crashed.path(), 3).exists(), "{point:?}");
        assert!(!wal_path(crashed.path(), 2).exists() && !wal_path(crashed.path(), 3).exists());
    }
}

/// A background snapshot that fails (the disk is full, say) leaves the logs it was to replace, and removes its
/// unfinished file; the next one freezes a generation later, and recovery replays the whole chain of logs.
#[test]
fn failed_background_snapshots_leave_a_chain_of_logs_that_recovery_replays_in_order() {
    let (dir, _, _) = directory_with_log(2);
    let (mut storage, _, _) = Storage::open(dir.path(), SyncMode::Always, false).expect("open");
    for (i, generation) in [(2, 3), (3, 4)] {
        storage.append(&retain(&format!("t/{i}"), "x"));
        storage.commit().expect("commit");
        let job = storage.begin_snapshot().expect("freeze");
        assert_eq!(job.generation(), generation);
        std::fs::write(snapshot_tmp_path(dir.path(), generation), b"unfinished").expect("tmp");
        let failed = storage.finish_snapshot(job, Err(StorageError::io(dir.path(), io::Error::other("disk full"))));
        assert!(failed.is_err());
        assert!(!snapshot_tmp_path(dir.path(), generation).exists());
        assert_eq!(storage.snapshot_in_flight(), None, "the next one may start");
    }
    // Clear one of them in the newest log: replayed after the older logs, so it stays cleared.
    storage.append(&Record::RetainClear { topic: "t/0".into() });
    storage.append(&retain("t/4", "y"));
    storage.commit().expect("commit");
    drop(storage);
    let (_, image, recovery) = Storage::open(dir.path(), SyncMode::Always, false).expect("recover");
    assert_eq!(topics(&image), ["t/1", "t/2", "t/3", "t/4"]);
    assert_eq!((recovery.first_generation, recovery.generation), (2, 4));
}

/// Every log of a chain but the last was synced before the next started, so damage at its end is not a torn write:
/// start-up stops naming the file and offset; `--repair` cuts it there and drops the later logs (whose records
/// depend on what was lost). A missing log in the middle of a chain stops start-up too.
#[test]
fn damage_or_a_gap_in_the_middle_of_a_chain_of_logs_stops_start_up() {
    let (dir, _, _) = directory_with_log(3);
    // Reopened: snapshot 2 holds t/0..t/2, and log 2 starts empty.
    let (mut storage, _, _) = Storage::open(dir.path(), SyncMode::Always, false).expect("open");
    drop(storage.begin_snapshot().expect("freeze: generation 3, never written"));
    storage.append(&retain("t/later", "in log 3"));
    storage.commit().expect("commit");
    drop(storage);
    // Log 2 as a disk that lost its end would leave it: two commits, the second cut short.
    let log2 = wal_path(dir.path(), 2);
    let mut records = Vec::new();
    for i in 0..2 {
        let mut pending = wal::Pending::default();
        pending
            .push(&retain(&format!("t/x{i}"), "in log 2"))
            .expect("encodable");
        let mut framed = bytes::BytesMut::new();
        pending.frame(&mut framed);
        records.extend_from_slice(&framed);
    }
    let cut_at = records.len() - 3;
    std::fs::write(&log2, &records[..cut_at]).expect("write");
    let error = match Storage::open(dir.path(), SyncMode::Always, false) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a torn end in a log followed by another must not be cut silently"),
    };
    assert!(error.contains("wal-00000000000000000002.log"), "{error}");
    assert!(error.contains("synced before the next one started"), "{error}");

    let repaired = crash_copy(dir.path());
    let (_, image, recovery) = Storage::open(repaired.path(), SyncMode::Always, true).expect("repair");
    assert_eq!(
        topics(&image),
        ["t/0", "t/1", "t/2", "t/x0"],
        "log 3 dropped after the damage"
    );
    assert!(recovery.truncated_bytes > 0);

    // A gap: log 2 missing while log 3 exists.
    std::fs::remove_file(&log2).expect("remove");
    let error = match Storage::open(dir.path(), SyncMode::Always, false) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a missing log in the middle of a chain must stop start-up"),
    };
    assert!(
        error.contains("wal-00000000000000000002.log") && error.contains("missing"),
        "{error}"
    );
}

/// A record that cannot be encoded (a topic longer than a 16-bit length can say) stops the snapshot with the file
/// and the offset it would have had, instead of a snapshot that looks whole without it.
#[test]
fn a_record_that_cannot_be_encoded_stops_the_snapshot_naming_file_and_offset() {
    let (dir, _, _) = directory_with_log(1);
    let (mut storage, mut image, _) = Storage::open(dir.path(), SyncMode::Always, false).expect("open");
    image.apply(retain(&"x".repeat(70_000), "too long a topic"));
    let error = storage.snapshot(&image).expect_err("unencodable");
    let text = error.to_string();
    assert!(matches!(error, StorageError::Unencodable { .. }), "{text}");
    assert!(text.contains("snapshot-00000000000000000003.snap.tmp"), "{text}");
    assert!(text.contains("at byte "), "{text}");
    assert!(
        !snapshot_tmp_path(dir.path(), 3).exists(),
        "the unfinished file is removed"
    );
    // Nothing committed is lost: generation 2's snapshot and the chain still recover.
    storage.append(&retain("t/after", "z"));
    storage.commit().expect("commit");
    drop(storage);
    let (_, image, _) = Storage::open(dir.path(), SyncMode::Always, false).expect("recover");
    assert_eq!(topics(&image), ["t/0", "t/after"]);
}

/// A record that cannot be encoded (a topic longer than a 16-bit length can say) refuses its whole group commit:
/// the commit fails naming the log and the offset it would have had, none of it is written (neither the records
/// before it in the commit nor those after), and the sends waiting for it stay held until the caller gives the
/// commit up (`suspend`, which the driver does on any failed commit). Never a silent skip.
#[test]
fn a_record_that_cannot_be_encoded_refuses_its_commit_naming_file_and_offset() {
    let (dir, _, _) = directory_with_log(1);
    let (mut storage, _, _) = Storage::open(dir.path(), SyncMode::Always, false).expect("open");
    storage.append(&retain("t/before", "committed"));
    storage.commit().expect("commit");
    let (log, offset) = (storage.wal_path.clone(), storage.wal_len);
    storage.append(&retain("t/same-commit", "before it"));
    storage.append(&retain(&"x".repeat(70_000), "too long a topic"));
    storage.append(&retain("t/after", "after it"));
    assert!(storage.holds_sends(), "its acknowledgements wait for the commit");
    for attempt in 0..2 {
        let error = storage.commit().expect_err("unencodable");
        let text = error.to_string();
        assert!(matches!(error, StorageError::Unencodable { .. }), "{text}");
        assert!(text.contains("wal-00000000000000000002.log"), "{text}");
        assert!(text.contains(&format!("at byte {offset} ")), "{text}");
        assert!(text.contains("record 1 of the commit"), "{text}");
        assert!(text.contains("Retain record of topic \"xxx"), "{text}");
        assert!(text.contains("FieldTooLong"), "{text}");
        assert_eq!(
            std::fs::metadata(&log).expect("log").len(),
            offset,
            "attempt {attempt}: nothing written"
        );
        assert!(
            storage.holds_sends(),
            "attempt {attempt}: nothing waiting for it may be sent"
        );
    }
    storage.suspend();
    assert!(!storage.has_pending() && !storage.holds_sends());
    drop(storage);
    let (_, image, _) = Storage::open(dir.path(), SyncMode::Always, false).expect("recover");
    assert_eq!(topics(&image), ["t/0", "t/before"]);
}

/// A record (or a commit) whose encoding is past the log frame's limit would be read back as damage and cut as a
/// torn write: it refuses its commit instead, like any record that cannot be encoded. The limit is lowered here so
/// the test does not need half a gigabyte.
#[test]
fn a_commit_past_the_frame_limit_is_refused_not_written() {
    let big = "y".repeat(40 * 1024);
    // One record alone past the limit; two that fit alone but not together.
    let cases = [
        (vec![retain("t/huge", &"z".repeat(100 * 1024))], 0),
        (vec![retain("t/a", &big), retain("t/b", &big)], 1),
    ];
    for (records, refused_index) in cases {
        let (dir, _, _) = directory_with_log(1);
        let (mut storage, _, _) = Storage::open(dir.path(), SyncMode::Always, false).expect("open");
        storage.pending.set_max_body(64 * 1024);
        let offset = storage.wal_len;
        for record in &records {
            storage.append(record);
        }
        let text = storage.commit().expect_err("past the limit").to_string();
        assert!(text.contains(&format!("at byte {offset} ")), "{text}");
        assert!(
            text.contains(&format!("record {refused_index} of the commit")),
            "{text}"
        );
        assert!(text.contains("past the log frame's limit of 65536 bytes"), "{text}");
        assert_eq!(storage.wal_len, offset);
        drop(storage);
        let (_, image, _) = Storage::open(dir.path(), SyncMode::Always, false).expect("recover");
        assert_eq!(topics(&image), ["t/0"]);
    }
}

/// A file whose generation number cannot be carried on from (past 64 bits, or the largest, which leaves no room
/// for the next generation) stops start-up naming it, instead of being skipped as a file that is not storage's.
#[test]
fn a_generation_number_that_overflows_stops_start_up_naming_the_file() {
    for name in [
        "wal-99999999999999999999.log",
        "snapshot-18446744073709551616.snap",
        "wal-18446744073709551615.log",
    ] {
        let (dir, _, _) = directory_with_log(1);
        std::fs::write(dir.path().join(name), b"").expect("write");
        let text = match Storage::open(dir.path(), SyncMode::Always, false) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{name} must not be skipped"),
        };
        assert!(text.contains(name) && text.contains("at byte 0"), "{text}");
        assert!(text.contains("generation number"), "{text}");
    }
    // Other files are not storage's and stay ignored.
    let (dir, _, _) = directory_with_log(1);
    std::fs::write(dir.path().join("wal-backup.log"), b"x").expect("write");
    let (_, image, _) = Storage::open(dir.path(), SyncMode::Always, false).expect("open");
    assert_eq!(topics(&image), ["t/0"]);
}

/// Snapshots that keep failing: each failure waits (doubling) before the next try, which comes once the wait is
/// over however little the new log has grown (the whole chain of logs since the last complete snapshot counts); a
/// retry with nothing logged since freezes the same generation again (no new file). The chain is bounded: past
/// four times the compaction size commits stop (`ChainTooLong`, which the driver answers by refusing QoS 1/2 as
/// for a full disk, and ends with a snapshot). A crash meanwhile recovers every commit from the chain.
#[test]
fn failing_snapshots_are_retried_after_a_wait_and_the_chain_of_logs_stays_bounded() {
    const COMPACT: u64 = 1024;
    const WAIT: Duration = Duration::from_millis(40);
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut storage, mut image, _) = Storage::open(dir.path(), SyncMode::Always, false).expect("open");
    storage.set_min_compact_bytes(COMPACT);
    storage.set_snapshot_retry(WAIT);
    let fail = |storage: &mut Storage| {
        let job = storage.begin_snapshot().expect("freeze");
        let generation = job.generation();
        let injected = StorageError::io(dir.path(), io::Error::other("injected failure"));
        assert!(storage.finish_snapshot(job, Err(injected)).is_err());
        generation
    };
    let mut committed = 0;
    let (bytes, limit, failures) = loop {
        assert!(committed < 1000, "the chain is never refused");
        let record = retain(&format!("t/{committed:03}"), &"p".repeat(200));
        let before = storage.wal_len;
        storage.append(&record);
        match storage.commit() {
            Ok(()) => {
                image.apply(record);
                committed += 1;
            }
            Err(StorageError::ChainTooLong { bytes, limit, failures }) => {
                assert_eq!(storage.wal_len, before, "the refused commit is not written");
                break (bytes, limit, failures);
            }
            Err(e) => panic!("{e}"),
        }
        if !storage.wants_snapshot() {
            continue;
        }
        let failures = storage.snapshot_failures();
        let generation = fail(&mut storage);
        assert_eq!(storage.snapshot_failures(), failures + 1);
        assert!(storage.chain_bytes() > COMPACT);
        assert!(!storage.wants_snapshot(), "not retried before the wait is over");
        if failures < 2 {
            std::thread::sleep(WAIT * (1 << failures));
            assert!(
                storage.wants_snapshot(),
                "retried once the wait is over, the new log still empty"
            );
        }
        if failures == 0 {
            assert_eq!(
                fail(&mut storage),
                generation,
                "nothing logged since: the same generation again"
            );
            std::thread::sleep(WAIT * 2);
        }
    };
    assert!(failures >= 3, "{failures}");
    assert_eq!(limit, 4 * COMPACT);
    assert!(
        bytes > limit && bytes < limit + 300,
        "bounded to the limit and one commit: {bytes}"
    );
    assert!(storage.chain_bytes() < limit + 300);

    // A crash now: recovery replays the whole chain of logs.
    let crashed = crash_copy(dir.path());
    let (_, recovered, recovery) = Storage::open(crashed.path(), SyncMode::Always, false).expect("recover");
    assert_eq!(recovered.retained, image.retained);
    assert!(
        recovery.generation - recovery.first_generation >= 2,
        "a chain of logs: {recovery:?}"
    );

    // The driver suspends and ends it with a snapshot; then commits go on and the chain is gone.
    storage.suspend();
    storage.resume(&image).expect("snapshot");
    assert_eq!((storage.snapshot_failures(), storage.chain_bytes()), (0, 0));
    let logs = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .count();
    assert_eq!(logs, 1, "the older logs are removed");
    storage.append(&retain("t/after", "x"));
    storage.commit().expect("commits go on");
    drop(storage);
    let (_, recovered, _) = Storage::open(dir.path(), SyncMode::Always, false).expect("recover");
    assert_eq!(recovered.retained.len(), committed + 1);
}
