//! Times the part of a background snapshot that stays on the event loop, `Broker::frozen_image` (a pointer per
//! retained message and a copy of the sessions), with a million retained messages of the fleet shape
//! (`site/S/device/D/temp`, 64 B payloads), restored as recovery does. Run in release:
//! `cargo run --release -p mqtt-core --example freeze_time [sites] [devices] [runs]`.

use bytes::Bytes;
use mqtt_core::broker::{Broker, Config};
use mqtt_core::packet::QoS;
use mqtt_core::persist::{Image, Record, StoredMessage};
use mqtt_core::time::Time;
use std::time::Instant;

fn main() {
    let arg = |i: usize, default: u32| std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (sites, devices, runs) = (arg(1, 1000), arg(2, 1000), arg(3, 5));
    let mut image = Image::default();
    for s in 0..sites {
        for d in 0..devices {
            image.apply(Record::Retain {
                message: Box::new(StoredMessage {
                    topic: format!("site/{s}/device/{d}/temp"),
                    payload: Bytes::from(vec![b'x'; 64]),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    properties: Default::default(),
                    expires_at: None,
                }),
            });
        }
    }
    let mut broker = Broker::new(Config::default(), 1);
    broker.restore(Time::from_millis(1), image);
    eprintln!("{} retained messages restored", sites * devices);
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let frozen = broker.frozen_image();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        let dropped = Instant::now();
        drop(frozen);
        eprintln!(
            "freeze {:.1} ms (dropping the frozen image {:.1} ms)",
            times[times.len() - 1],
            dropped.elapsed().as_secs_f64() * 1000.0
        );
    }
    times.sort_by(f64::total_cmp);
    println!(
        "frozen_image with {} retained: min {:.1} ms, median {:.1} ms, max {:.1} ms over {runs} runs",
        sites * devices,
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
}
