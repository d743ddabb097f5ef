//! Choosing the I/O driver: `--io` picks one and the broker says which; `auto` falls back to epoll when no
//! io_uring ring can be created, and says why; `--io uring` without a ring refuses to start.
//!
//! Ring creation is made to fail for real: `MQTT_BROKER_IO_URING_ENTRIES=0` asks io_uring_setup(2) for a ring of
//! no entries, which the kernel refuses with EINVAL.

mod common;

use common::{BrokerProcess, BIN};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const NO_RING: (&str, &str) = ("MQTT_BROKER_IO_URING_ENTRIES", "0");

/// A QoS 1 message from one paho-independent client (rumqttc) to another through the broker.
fn round_trip(broker: &BrokerProcess) {
    round_trip_of(broker, b"ring or not".to_vec());
}

fn round_trip_of(broker: &BrokerProcess, payload: Vec<u8>) {
    let connect = |id: &str| {
        let mut opts = MqttOptions::new(id, "127.0.0.1", broker.port());
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(4 << 20, 4 << 20);
        let (client, connection) = Client::new(opts, 16);
        let events = common::pump4(connection);
        let ack = common::wait_for(&events, WAIT, |e| match e {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => Some(ack),
            _ => None,
        });
        assert!(ack.is_some(), "CONNACK for {id}");
        (client, events)
    };
    let (sub, sub_events) = connect("io-sub");
    sub.subscribe("io/driver", QoS::AtLeastOnce).unwrap();
    let subscribed = common::wait_for(&sub_events, WAIT, |e| match e {
        Ok(Event::Incoming(Packet::SubAck(_))) => Some(()),
        _ => None,
    });
    assert!(subscribed.is_some(), "SUBACK");
    let (publisher, _pub_events) = connect("io-pub");
    publisher
        .publish("io/driver", QoS::AtLeastOnce, false, payload.clone())
        .unwrap();
    let got = common::wait_for(&sub_events, WAIT, |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) => Some(p),
        _ => None,
    });
    let got = got.expect("message delivered");
    assert!(
        got.payload.as_ref() == payload.as_slice(),
        "payload of {} bytes intact",
        payload.len()
    );
}

/// io_uring's two ways to receive, both bounded to 64 KiB per arming: a multishot receive limited in bytes (Linux
/// 6.17+, the default where the kernel has it) and single receives (older kernels, or forced by the variable). Both
/// carry a small message and one of 1 MiB, which spans many receives and bundles of provided buffers, intact.
#[test]
fn io_uring_bounded_receives_carry_small_and_large_messages_intact() {
    let large: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    for env in [&[][..], &[("MQTT_BROKER_IO_URING_SINGLE_RECV", "1")][..]] {
        let broker = BrokerProcess::start_on_io("uring", env);
        assert!(said(&broker, "io driver: io_uring (configured"), "{env:?}");
        round_trip(&broker);
        round_trip_of(&broker, large.clone());
    }
}

fn said(broker: &BrokerProcess, needle: &str) -> bool {
    broker.log.lock().unwrap().iter().any(|l| l.contains(needle))
}

#[test]
fn auto_falls_back_to_epoll_when_no_ring_can_be_created_and_says_why() {
    let broker = BrokerProcess::start_on_io("auto", &[NO_RING]);
    assert!(
        said(&broker, "io driver: epoll (io_uring unavailable:"),
        "{:?}",
        broker.log.lock().unwrap()
    );
    assert!(!said(&broker, "io driver: io_uring"));
    round_trip(&broker);
}

#[test]
fn auto_runs_io_uring_where_the_probe_ring_works() {
    let broker = BrokerProcess::start_on_io("auto", &[]);
    assert!(
        said(&broker, "io driver: io_uring (the probe ring works"),
        "{:?}",
        broker.log.lock().unwrap()
    );
    round_trip(&broker);
}

#[test]
fn io_flag_selects_each_driver_and_the_broker_says_so() {
    for (io, line) in [
        ("epoll", "io driver: epoll (configured)"),
        ("uring", "io driver: io_uring (configured"),
    ] {
        let broker = BrokerProcess::start_on_io(io, &[]);
        assert!(said(&broker, line), "{io}: {:?}", broker.log.lock().unwrap());
        round_trip(&broker);
    }
}

#[test]
fn io_uring_asked_for_but_unavailable_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--io", "uring", "--data-dir"])
        .arg(dir.path())
        .env(NO_RING.0, NO_RING.1)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("io_uring is unavailable"), "{stderr}");
}

#[test]
fn io_key_in_the_config_file_selects_the_driver() {
    let broker = BrokerProcess::start_with_config("io = \"epoll\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n", &[]);
    if common::test_io().is_none() {
        assert!(
            said(&broker, "io driver: epoll (configured)"),
            "{:?}",
            broker.log.lock().unwrap()
        );
    }
    round_trip(&broker);
}

/// One counter of the `io stats` line the broker prints when it stops with `MQTT_BROKER_IO_STATS` set.
fn counter(line: &str, name: &str) -> u64 {
    let at = line
        .find(&format!(" {name}: "))
        .unwrap_or_else(|| panic!("{name} in {line}"))
        + name.len()
        + 3;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name}'s value in {line}"))
}

/// The per-message counters the drivers are compared by (BENCHMARKS.md, "Why io_uring trailed epoll") count what
/// the loop did: one QoS 1 message through the broker is at least four reads (two CONNECTs, SUBSCRIBE, PUBLISH; the
/// subscriber's PUBACK may come after the stop) and five sends (two CONNACKs, SUBACK, the PUBLISH, the publisher's
/// PUBACK), each a send of its own under io_uring, and its receives are completions. Printed only when asked for.
#[test]
fn io_stats_count_reads_and_sends_on_each_driver_when_asked() {
    for (io, name) in [("uring", "io_uring"), ("epoll", "epoll")] {
        let mut broker = BrokerProcess::start_on_io(io, &[("MQTT_BROKER_IO_STATS", "1")]);
        round_trip(&broker);
        broker.signal(libc::SIGTERM);
        assert!(broker.wait_for_log("io stats (", WAIT), "{io}: {}", broker.log_text());
        broker.wait_exit(WAIT);
        let log = broker.log_text();
        let line = log.lines().find(|l| l.contains("io stats (")).expect("stats line");
        assert!(line.contains(&format!("io stats ({name})")), "{line}");
        assert!(counter(line, "reads") >= 4, "{line}");
        assert!(counter(line, "read_bytes") >= counter(line, "reads"), "{line}");
        assert!(counter(line, "flushes") >= 5, "{line}");
        assert!(counter(line, "turns") >= 1, "{line}");
        if io == "uring" {
            assert!(counter(line, "sends") >= 5, "{line}");
            assert!(counter(line, "recv_cqes") >= 4, "{line}");
            assert!(counter(line, "recv_bytes") >= counter(line, "read_bytes"), "{line}");
            assert!(counter(line, "enters") >= 1, "{line}");
            assert!(counter(line, "cqes") >= counter(line, "recv_cqes"), "{line}");
        } else {
            assert_eq!(counter(line, "enters"), 0, "{line}");
        }
    }
    let mut quiet = BrokerProcess::start_on_io("uring", &[]);
    round_trip(&quiet);
    quiet.signal(libc::SIGTERM);
    quiet.wait_exit(WAIT);
    assert!(!quiet.log_text().contains("io stats ("), "{}", quiet.log_text());
}
