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

/// The directory sync that makes a new generation durable fails after taking effect: the next commit must not go
/// to the old generation's log, which recovery no longer reads (the new snapshot is newer).
#[test]
fn a_generation_switch_whose_directory_sync_failed_loses_no_later_commit() {
    for effect in [true, false] {
        let fs = SimFs::new(ChaCha8Rng::seed_from_u64(1), DiskFaults::default());
        let (mut storage, _) = open(&fs);
        storage.append(&retain("t/before"));
        storage.commit().expect("commit");
        let mut image = Image::default();
        image.apply(retain("t/before"));
        // The snapshot's operations: create, write, sync, rename, open the new log, sync the directory.
        fs.fail_op(5, effect);
        assert!(storage.snapshot(&image).is_err(), "the directory sync fails");
        storage.append(&retain("t/after"));
        // Either the commit completes the switch, or it fails (and the driver suspends storage).
        let committed = storage.commit().is_ok();
        fs.power_cut();
        let (_, recovered) = open(&fs);
        let topics: Vec<&String> = recovered.retained.keys().collect();
        if committed {
            assert_eq!(topics, ["t/after", "t/before"], "effect {effect}");
        } else {
            assert!(topics.contains(&&"t/before".to_string()), "effect {effect}: {topics:?}");
        }
    }
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
