//! Fills a data directory with N retained messages, as the broker would have logged them, to measure start-up
//! (recovery) time: `cargo run --release -p mqtt-io --example seed_retained -- DIR N [PAYLOAD_BYTES]`.

use mqtt_core::packet::{Properties, QoS};
use mqtt_core::persist::{Record, StoredMessage};
use mqtt_io::storage::{Storage, SyncMode};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(count)) = (args.next(), args.next().and_then(|n| n.parse::<u64>().ok())) else {
        eprintln!("usage: seed_retained DIR N [PAYLOAD_BYTES]");
        std::process::exit(2);
    };
    let payload_len = args.next().and_then(|n| n.parse().ok()).unwrap_or(64usize);
    let started = Instant::now();
    let (mut storage, _, _) = match Storage::open(
        &PathBuf::from(&dir),
        SyncMode::Interval(std::time::Duration::from_secs(1)),
        false,
    ) {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!("seed_retained: {e}");
            std::process::exit(1);
        }
    };
    for i in 0..count {
        let record = Record::Retain {
            message: Box::new(StoredMessage {
                topic: format!("sensors/{}/{}/value", i / 1000, i % 1000),
                payload: bytes::Bytes::from(vec![b'x'; payload_len]),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Properties::default().into(),
                expires_at: None,
            }),
        };
        storage.append(&record);
        if i % 10_000 == 9_999 {
            if let Err(e) = storage.commit() {
                eprintln!("seed_retained: {e}");
                std::process::exit(1);
            }
        }
        if i % 200_000 == 199_999 {
            eprintln!("seed_retained: {} records", i + 1);
        }
    }
    if let Err(e) = storage.commit() {
        eprintln!("seed_retained: {e}");
        std::process::exit(1);
    }
    eprintln!(
        "seed_retained: {count} retained messages in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
