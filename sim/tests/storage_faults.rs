//! The real storage code on the simulated disk, with scripted faults: the cases the simulator found or must keep
//! finding, pinned down one by one.

use mqtt_core::packet::{Properties, QoS};
use mqtt_core::persist::{Image, Record, StoredMessage};
use mqtt_storage::{Storage, SyncMode};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sim::simfs::{DiskFaults, SimFs};
use std::path::Path;

fn retain(topic: &str) -> Record {
    Record::Retain {
        message: Box::new(StoredMessage {
            topic: topic.to_string(),
            payload: bytes::Bytes::from_static(b"payload"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default().into(),
            expires_at: None,
        }),
    }
}

fn open(fs: &SimFs) -> (Storage<SimFs>, Image) {
    let (storage, image, _) =
        Storage::open_in(fs.clone(), Path::new("/data"), SyncMode::Always, false).expect("recovery");
    (storage, image)
}

fn topics(image: &Image) -> Vec<&str> {
    image.retained.keys().map(String::as_str).collect()
}

/// Any storage operation of a snapshot fails (the freeze's new log and directory sync, the snapshot's create, write,
/// sync, rename, directory sync, the removal of old files), having taken effect or not: no commit before or after
/// it is lost, whichever generation's files recovery then finds.
#[test]
fn a_snapshot_failing_at_any_operation_loses_no_commit_before_or_after_it() {
    for op in 0..9 {
        for effect in [true, false] {
            let fs = SimFs::new(ChaCha8Rng::seed_from_u64(1), DiskFaults::default());
            let (mut storage, _) = open(&fs);
            storage.append(&retain("t/before"));
            storage.commit().expect("commit");
            let mut image = Image::default();
            image.apply(retain("t/before"));
            fs.fail_op(op, effect);
            let snapshot = storage.snapshot(&image);
            storage.append(&retain("t/after"));
            // Either the commit goes through, or it fails (and the driver suspends storage).
            let committed = storage.commit().is_ok();
            fs.power_cut();
            let (_, recovered) = open(&fs);
            let expected: &[&str] = if committed {
                &["t/after", "t/before"]
            } else {
                &["t/before"]
            };
            assert_eq!(
                topics(&recovered),
                expected,
                "op {op}, effect {effect}, snapshot {snapshot:?}"
            );
        }
    }
}

/// The driver's snapshot off the event loop: the freeze starts the next log, commits go on while the snapshot is
/// written, and a power cut at any operation of that write (or of the commits around it) recovers every commit
/// that completed: from the new snapshot, or from the previous one and both logs.
#[test]
fn a_power_cut_anywhere_in_a_background_snapshot_loses_no_completed_commit() {
    let (mut in_write, mut after_write) = (0, 0);
    for ops in 0..10 {
        for seed in 0..4 {
            let fs = SimFs::new(ChaCha8Rng::seed_from_u64(seed), DiskFaults::default());
            let (mut storage, _) = open(&fs);
            let mut image = Image::default();
            for topic in ["t/0", "t/1", "t/2"] {
                storage.append(&retain(topic));
                storage.commit().expect("commit");
                image.apply(retain(topic));
            }
            let job = storage.begin_snapshot().expect("freeze");
            storage.append(&retain("t/during"));
            storage.commit().expect("commit while the snapshot is written");
            fs.arm_power_cut(ops);
            let written = job.write(&fs, image.to_records());
            let finished = storage.finish_snapshot(job, written).is_ok();
            storage.append(&retain("t/later"));
            let later = storage.commit().is_ok();
            let struck = fs.disarm_power_cut().is_none();
            match (finished, struck) {
                (false, true) => in_write += 1,
                (true, true) => after_write += 1,
                _ => {}
            }
            fs.power_cut();
            let (_, recovered) = open(&fs);
            let mut expected = vec!["t/0", "t/1", "t/2", "t/during"];
            if later {
                expected.push("t/later");
            }
            assert_eq!(topics(&recovered), expected, "cut after {ops} ops, seed {seed}");
        }
    }
    assert!(
        in_write > 0 && after_write > 0,
        "the cut struck in the write {in_write} and after it {after_write} times"
    );
}

/// A commit torn anywhere by a power cut is recovered whole or not at all.
#[test]
fn a_torn_commit_is_recovered_whole_or_not_at_all() {
    let mut torn = 0;
    for seed in 0..100 {
        let fs = SimFs::new(ChaCha8Rng::seed_from_u64(seed), DiskFaults::default());
        let (mut storage, _) = open(&fs);
        storage.append(&retain("t/0"));
        storage.commit().expect("commit");
        for topic in ["t/1", "t/2", "t/3"] {
            storage.append(&retain(topic));
        }
        // The write happens; the power goes out during its sync.
        fs.arm_power_cut(1);
        assert!(storage.commit().is_err());
        let lost = fs.power_cut();
        let (_, recovered) = open(&fs);
        let count = recovered.retained.len();
        assert!(
            count == 1 || count == 4,
            "seed {seed}: {count} of the commit's records survived"
        );
        if count == 1 && lost > 0 {
            torn += 1;
        }
    }
    assert!(torn > 50, "most power cuts tear the commit: {torn}");
}
