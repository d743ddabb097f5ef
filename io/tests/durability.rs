//! Crash tests on the real binary: a persistent session's acknowledged messages survive SIGKILL of the broker.
//! Independent client: rumqttc (MQTT 3.1.1), over real sockets.

mod common;

use common::clients::{connect4, count_acks, publish_stream};
use common::{pump5, wait_for, BrokerProcess};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn acknowledged_messages_survive_sigkill_of_the_broker() {
    const N: usize = 400;
    let broker = BrokerProcess::start(&["--sync", "always"]);
    // A persistent session subscribes (3.1.1 Clean Session 0 [MQTT-3.1.2-4]) and goes offline.
    let (sub, sub_events) = connect4(&broker, "durable-sub", false);
    sub.subscribe("crash/#", QoS::ExactlyOnce).expect("subscribe");
    assert!(wait_for(&sub_events, WAIT, |e| matches!(
        e,
        Ok(Event::Incoming(Packet::SubAck(_)))
    )
    .then_some(()))
    .is_some());
    sub.disconnect().expect("disconnect");
    drop(sub_events);

    let (q1, q1_events) = connect4(&broker, "pub-q1", true);
    let (q2, q2_events) = connect4(&broker, "pub-q2", true);
    publish_stream(q1, "crash/q1", QoS::AtLeastOnce, "q1", N);
    publish_stream(q2, "crash/q2", QoS::ExactlyOnce, "q2", N);
    // Kill the broker mid-stream, once some of each are acknowledged.
    let deadline = Instant::now() + WAIT;
    let mut acked_q1 = count_acks(&q1_events, QoS::AtLeastOnce, deadline, N / 4);
    let mut acked_q2 = count_acks(&q2_events, QoS::ExactlyOnce, deadline, N / 4);
    let data_dir = broker.crash();
    // Acknowledgements already on their way before the kill count too.
    acked_q1 += count_acks(
        &q1_events,
        QoS::AtLeastOnce,
        Instant::now() + Duration::from_millis(300),
        N,
    );
    acked_q2 += count_acks(
        &q2_events,
        QoS::ExactlyOnce,
        Instant::now() + Duration::from_millis(300),
        N,
    );
    assert!(
        acked_q1 > 0 && acked_q2 > 0,
        "some messages were acknowledged before the kill"
    );
    assert!(acked_q1 < N || acked_q2 < N, "the kill happened mid-stream");

    let broker = BrokerProcess::restart(data_dir, &["--sync", "always"]);
    assert!(
        broker.wait_for_log("recovered 1 session", WAIT),
        "{}",
        broker.log_text()
    );
    let (_sub, sub_events) = connect4(&broker, "durable-sub", false);
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(p) = wait_for(&sub_events, Duration::from_secs(2), |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) => Some(p),
        _ => None,
    }) {
        *received
            .entry(String::from_utf8_lossy(&p.payload).into_owned())
            .or_default() += 1;
    }
    for i in 0..acked_q1 {
        assert!(
            received.contains_key(&format!("q1-{i}")),
            "acknowledged QoS 1 message q1-{i} lost"
        );
    }
    for i in 0..acked_q2 {
        let copies = received.get(&format!("q2-{i}")).copied().unwrap_or(0);
        assert_eq!(
            copies, 1,
            "acknowledged QoS 2 message q2-{i} must arrive exactly once [MQTT-4.3.3]"
        );
    }
    assert!(
        received
            .iter()
            .filter(|(k, _)| k.starts_with("q2-"))
            .all(|(_, n)| *n == 1),
        "no QoS 2 duplicates at all"
    );
}

#[test]
fn retained_messages_and_subscriptions_survive_sigkill() {
    let broker = BrokerProcess::start(&[]);
    let (client, events) = connect4(&broker, "retainer", true);
    for i in 0..50 {
        client
            .publish(
                format!("state/{i}"),
                QoS::AtLeastOnce,
                true,
                format!("v{i}").into_bytes(),
            )
            .expect("publish");
    }
    assert_eq!(count_acks(&events, QoS::AtLeastOnce, Instant::now() + WAIT, 50), 50);
    let data_dir = broker.crash();
    let broker = BrokerProcess::restart(data_dir, &[]);
    let (sub, events) = connect4(&broker, "reader", true);
    sub.subscribe("state/#", QoS::AtMostOnce).expect("subscribe");
    let mut got = 0;
    while wait_for(&events, Duration::from_secs(2), |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) if p.retain => Some(()),
        _ => None,
    })
    .is_some()
    {
        got += 1;
        if got == 50 {
            break;
        }
    }
    assert_eq!(got, 50, "every acknowledged retained message is back [MQTT-3.3.1-5]");
}

#[test]
fn sync_none_keeps_nothing_across_a_restart() {
    let broker = BrokerProcess::start(&["--sync", "none"]);
    let (client, events) = connect4(&broker, "retainer", true);
    client
        .publish("state/x", QoS::AtLeastOnce, true, b"v".to_vec())
        .expect("publish");
    assert_eq!(count_acks(&events, QoS::AtLeastOnce, Instant::now() + WAIT, 1), 1);
    let data_dir = broker.crash();
    assert!(
        std::fs::read_dir(data_dir.path()).expect("dir").next().is_none(),
        "nothing written"
    );
    let broker = BrokerProcess::restart(data_dir, &["--sync", "none"]);
    let (sub, events) = connect4(&broker, "reader", true);
    sub.subscribe("state/#", QoS::AtMostOnce).expect("subscribe");
    let got = wait_for(&events, Duration::from_secs(1), |e| match e {
        Ok(Event::Incoming(Packet::Publish(_))) => Some(()),
        _ => None,
    });
    assert!(got.is_none());
}

#[test]
fn damaged_log_stops_start_up_with_the_file_and_offset() {
    let broker = BrokerProcess::start(&[]);
    let (client, events) = connect4(&broker, "retainer", true);
    for i in 0..3 {
        client
            .publish(format!("s/{i}"), QoS::AtLeastOnce, true, vec![b'x'; 100])
            .expect("publish");
    }
    assert_eq!(count_acks(&events, QoS::AtLeastOnce, Instant::now() + WAIT, 3), 3);
    let data_dir = broker.crash();
    let log = std::fs::read_dir(data_dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("a log file");
    let mut bytes = std::fs::read(&log).expect("read");
    bytes[20] ^= 0xFF; // inside the first record; two valid ones follow
    std::fs::write(&log, &bytes).expect("write");
    let output = std::process::Command::new(common::BIN)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir.path())
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&log.display().to_string()) && stderr.contains("byte 0"),
        "{stderr}"
    );
    // With --repair it starts, having truncated the log at the damage.
    let repaired = BrokerProcess::restart(data_dir, &["--repair"]);
    assert!(repaired.wait_for_log("recovered", WAIT));
}

/// Disk full (injected: the broker's test hook fails writes while `fault-disk-full` exists in its data directory):
/// QoS 1 is refused with 0x97 Quota exceeded to MQTT 5 publishers, QoS 0 keeps flowing, and when the disk works
/// again what was held goes out and QoS 1 is accepted again.
#[test]
fn full_disk_refuses_qos1_with_0x97_while_qos0_flows_then_recovers() {
    use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PubAckReason};
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    let broker = BrokerProcess::start_with_env(dir, &path, &[], &[("MQTT_BROKER_FAULT_INJECTION", "1")]);
    // A persistent subscriber makes QoS 1 messages durable state; another client reads QoS 0 traffic.
    let (stored_sub, stored_events) = connect4(&broker, "stored-sub", false);
    stored_sub.subscribe("stored/#", QoS::AtLeastOnce).expect("subscribe");
    assert!(wait_for(&stored_events, WAIT, |e| matches!(
        e,
        Ok(Event::Incoming(Packet::SubAck(_)))
    )
    .then_some(()))
    .is_some());
    let (flow_sub, flow_events) = connect4(&broker, "flow-sub", true);
    flow_sub.subscribe("flow/#", QoS::AtMostOnce).expect("subscribe");
    assert!(wait_for(&flow_events, WAIT, |e| matches!(
        e,
        Ok(Event::Incoming(Packet::SubAck(_)))
    )
    .then_some(()))
    .is_some());

    let v5_client = |id: &str| {
        let mut opts = rumqttc::v5::MqttOptions::new(id, "127.0.0.1", broker.port());
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, connection) = rumqttc::v5::Client::new(opts, 50);
        (client, pump5(connection))
    };
    let puback = |rx: &Receiver<Result<rumqttc::v5::Event, rumqttc::v5::ConnectionError>>, timeout| {
        wait_for(rx, timeout, |e| match e {
            Ok(rumqttc::v5::Event::Incoming(Packet5::PubAck(ack))) => Some(ack.reason),
            _ => None,
        })
    };
    let (first, first_events) = v5_client("first-pub");
    let (second, second_events) = v5_client("second-pub");
    std::thread::sleep(Duration::from_millis(300));

    std::fs::write(path.join("fault-disk-full"), b"").expect("fault file");
    first
        .publish("stored/1", QoS5::AtLeastOnce, false, b"one".to_vec())
        .expect("publish");
    assert!(broker.wait_for_log("the disk is full", WAIT), "{}", broker.log_text());
    // Its acknowledgement is held: the record behind it never reached the disk.
    assert_eq!(puback(&first_events, Duration::from_millis(500)), None);
    second
        .publish("stored/2", QoS5::AtLeastOnce, false, b"two".to_vec())
        .expect("publish");
    assert_eq!(puback(&second_events, WAIT), Some(PubAckReason::QuotaExceeded));
    second
        .publish("flow/1", QoS5::AtMostOnce, false, b"flows".to_vec())
        .expect("publish");
    let got = wait_for(&flow_events, WAIT, |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) => Some(p.payload.to_vec()),
        _ => None,
    });
    assert_eq!(
        got.as_deref(),
        Some(&b"flows"[..]),
        "QoS 0 keeps flowing while the disk is full"
    );

    std::fs::remove_file(path.join("fault-disk-full")).expect("remove fault file");
    assert!(broker.wait_for_log("writable again", WAIT), "{}", broker.log_text());
    assert_eq!(puback(&first_events, WAIT), Some(PubAckReason::Success));
    let stored = wait_for(&stored_events, WAIT, |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) => Some(p.payload.to_vec()),
        _ => None,
    });
    assert_eq!(stored.as_deref(), Some(&b"one"[..]));
    second
        .publish("stored/3", QoS5::AtLeastOnce, false, b"three".to_vec())
        .expect("publish");
    assert_eq!(puback(&second_events, WAIT), Some(PubAckReason::Success));
}

/// [MQTT-4.8.0-2] on the real binary, with rumqttc speaking 3.1.1: while the disk is full (the fault hook), a QoS 1
/// PUBLISH the broker cannot store closes the connection instead of being acknowledged. The client reconnects and
/// sends it again; once the disk takes writes, it is acknowledged, and every acknowledged message survives SIGKILL
/// of the broker and reaches the persistent subscriber.
#[test]
fn full_disk_closes_a_v311_publishers_connection_mqtt_4_8_0_2_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    let broker = BrokerProcess::start_with_env(dir, &path, &[], &[("MQTT_BROKER_FAULT_INJECTION", "1")]);
    // A persistent subscriber, offline: what it is owed is durable state.
    let (sub, sub_events) = connect4(&broker, "stored-sub", false);
    sub.subscribe("stored/#", QoS::AtLeastOnce).expect("subscribe");
    assert!(wait_for(&sub_events, WAIT, |e| matches!(
        e,
        Ok(Event::Incoming(Packet::SubAck(_)))
    )
    .then_some(()))
    .is_some());
    sub.disconnect().expect("disconnect");
    std::thread::sleep(Duration::from_millis(200));

    // The 3.1.1 publisher's event loop keeps polling after an error, so it reconnects and resends what was not
    // acknowledged (its session is persistent), as a real client would.
    let mut opts = MqttOptions::new("v311-pub", "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(false);
    let (publisher, mut connection) = Client::new(opts, 50);
    let (tx, events) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            let failed = event.is_err();
            if tx.send(event).is_err() {
                return;
            }
            if failed {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    });
    let puback = |until: Duration| {
        wait_for(&events, until, |e| match e {
            Ok(Event::Incoming(Packet::PubAck(ack))) => Some(Ok(ack.pkid)),
            Err(e) => Some(Err(e.to_string())),
            _ => None,
        })
    };
    publisher
        .publish("stored/before", QoS::AtLeastOnce, false, b"before".to_vec())
        .expect("publish");
    assert!(matches!(puback(WAIT), Some(Ok(_))), "acknowledged while the disk works");

    // Another client's QoS 1 PUBLISH meets the full disk first: storage is suspended.
    let (trigger, trigger_events) = connect4(&broker, "trigger", true);
    std::fs::write(path.join("fault-disk-full"), b"").expect("fault file");
    trigger
        .publish("stored/trigger", QoS::AtLeastOnce, false, b"trigger".to_vec())
        .expect("publish");
    assert!(broker.wait_for_log("the disk is full", WAIT), "{}", broker.log_text());

    publisher
        .publish("stored/during", QoS::AtLeastOnce, false, b"during".to_vec())
        .expect("publish");
    // No PUBACK: the connection is closed [MQTT-4.8.0-2].
    match puback(WAIT) {
        Some(Err(_)) => {}
        other => panic!("expected the connection closed, got {other:?}\n{}", broker.log_text()),
    }
    // While the disk stays full, every reconnect that resends it is closed again; nothing is acknowledged.
    std::thread::sleep(Duration::from_millis(600));
    let acked_while_full: Vec<_> = events
        .try_iter()
        .filter_map(|e| match e {
            Ok(Event::Incoming(Packet::PubAck(ack))) => Some(ack.pkid),
            _ => None,
        })
        .collect();
    assert!(
        acked_while_full.is_empty(),
        "acknowledged {acked_while_full:?} while the disk was full"
    );

    std::fs::remove_file(path.join("fault-disk-full")).expect("remove fault file");
    assert!(broker.wait_for_log("writable again", WAIT), "{}", broker.log_text());
    // Reconnected, the resent PUBLISH is stored and acknowledged.
    let deadline = Instant::now() + WAIT;
    let mut acked = false;
    while !acked && Instant::now() < deadline {
        acked = matches!(puback(Duration::from_millis(200)), Some(Ok(_)));
    }
    assert!(
        acked,
        "the resent PUBLISH is acknowledged once the disk works\n{}",
        broker.log_text()
    );
    assert!(
        wait_for(&trigger_events, WAIT, |e| matches!(
            e,
            Ok(Event::Incoming(Packet::PubAck(_)))
        )
        .then_some(()))
        .is_some(),
        "the PUBLISH that met the full disk is acknowledged once the snapshot holds it"
    );

    // Every acknowledged message is durable: kill the broker, restart it, the subscriber gets them all.
    let dir = broker.crash();
    let broker = BrokerProcess::restart(dir, &[]);
    let (_sub, sub_events) = connect4(&broker, "stored-sub", false);
    let mut got = std::collections::BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < 3 && Instant::now() < deadline {
        if let Some(payload) = wait_for(&sub_events, Duration::from_millis(200), |e| match e {
            Ok(Event::Incoming(Packet::Publish(p))) => Some(String::from_utf8_lossy(&p.payload).into_owned()),
            _ => None,
        }) {
            got.insert(payload);
        }
    }
    for payload in ["before", "trigger", "during"] {
        assert!(
            got.contains(payload),
            "{payload} was acknowledged and lost: got {got:?}"
        );
    }
}

/// A log grown past the compaction threshold (64 MiB) is replaced by a snapshot written on a thread of its own: the
/// loop freezes the state and starts the next log, and when the thread is done it wakes the idle loop, which
/// removes the older generation's files. Then a SIGKILL: everything acknowledged, before and after the snapshot,
/// is back [MQTT-3.3.1-5].
#[test]
fn a_grown_log_is_compacted_by_a_background_snapshot_finished_while_idle() {
    const BIG: usize = 512 * 1024;
    let broker = BrokerProcess::start(&["--sync", "always", "--max-packet-size", "1048576"]);
    let dir = broker.data_dir.path().to_path_buf();
    let mut opts = rumqttc::MqttOptions::new("compactor", "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(2 << 20, 2 << 20);
    opts.set_inflight(16);
    let (client, connection) = Client::new(opts, 64);
    let events = common::pump4(connection);
    for i in 0..100 {
        client
            .publish(
                format!("state/{i}"),
                QoS::AtLeastOnce,
                true,
                format!("v{i}").into_bytes(),
            )
            .expect("publish");
    }
    // 140 values of 512 KiB on one topic: the state stays small, the log passes 64 MiB.
    let big = |i: usize| {
        let mut payload = vec![b'x'; BIG];
        payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
        payload
    };
    for i in 0..140 {
        client.publish("big", QoS::AtLeastOnce, true, big(i)).expect("publish");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    assert_eq!(count_acks(&events, QoS::AtLeastOnce, deadline, 240), 240);
    // Idle from here: only the thread's wake-up can finish the snapshot.
    assert!(
        broker.wait_for_log("snapshot 2:", Duration::from_secs(30)),
        "{}",
        broker.log_text()
    );
    let names = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("data dir")
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        names(),
        ["snapshot-00000000000000000002.snap", "wal-00000000000000000002.log"],
        "generation 1 removed once the snapshot was complete"
    );
    for i in 0..10 {
        client
            .publish(format!("after/{i}"), QoS::AtLeastOnce, true, b"a".to_vec())
            .expect("publish");
    }
    assert_eq!(count_acks(&events, QoS::AtLeastOnce, Instant::now() + WAIT, 10), 10);
    let data_dir = broker.crash();
    let broker = BrokerProcess::restart(data_dir, &["--max-packet-size", "1048576"]);
    let mut opts = rumqttc::MqttOptions::new("reader", "127.0.0.1", broker.port());
    opts.set_max_packet_size(2 << 20, 2 << 20);
    let (reader, connection) = Client::new(opts, 64);
    let events = common::pump4(connection);
    reader.subscribe("#", QoS::AtMostOnce).expect("subscribe");
    let mut got: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    while let Some(p) = wait_for(&events, Duration::from_secs(3), |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) if p.retain => Some(p),
        _ => None,
    }) {
        got.insert(p.topic.clone(), p.payload.to_vec());
        if got.len() == 111 {
            break;
        }
    }
    assert_eq!(
        got.len(),
        111,
        "100 state, 10 after, 1 big: {:?}",
        got.keys().collect::<Vec<_>>()
    );
    assert_eq!(got.get("big"), Some(&big(139)), "the last value of the big topic");
}
