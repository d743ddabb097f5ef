//! Durability through the core: every change to durable state is a record, and a broker rebuilt from the records
//! (the harness's `crash_and_restart`) carries on as if it had not stopped [MQTT-4.1.0-1]: session state lasts as
//! long as the session, also across a server restart.

mod common;

use common::*;
use mqtt_core::broker::{Config, ConnectionId};
use mqtt_core::harness::Harness;
use mqtt_core::packet::*;
use mqtt_core::persist::{Image, Peek, Record};
use std::time::Duration;

fn durable_harness() -> Harness {
    Harness::new(Config {
        persistence: true,
        ..Config::default()
    })
}

fn persistent(client_id: &str) -> Connect {
    let mut connect = v5(client_id);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(3600);
    connect
}

fn resume(h: &mut Harness, client_id: &str) -> (ConnectionId, ConnAck) {
    connect_ok(h, persistent(client_id))
}

#[test]
fn queued_messages_of_an_offline_session_survive_a_restart() {
    let mut h = durable_harness();
    let sub = connected(&mut h, persistent("sub"));
    subscribe(&mut h, sub, "t/#", QoS::ExactlyOnce);
    h.drop_connection(sub);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t/1", "one", QoS::AtLeastOnce, 1);
    publish(&mut h, publisher, "t/2", "two", QoS::ExactlyOnce, 2);
    publish(&mut h, publisher, "t/0", "qos0 is not kept", QoS::AtMostOnce, 0);
    h.crash_and_restart();
    let (sub, connack) = resume(&mut h, "sub");
    // [MQTT-3.2.2-2]: the session was found.
    assert!(connack.session_present);
    let got = publishes(&mut h, sub);
    assert_eq!(payloads(&got), vec!["one", "two"]);
    assert_eq!(got[1].qos, QoS::ExactlyOnce);
    // The subscription survived too: new messages still arrive.
    let publisher = connected(&mut h, v5("pub2"));
    publish(&mut h, publisher, "t/3", "three", QoS::AtLeastOnce, 1);
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["three"]);
}

#[test]
fn inflight_messages_are_resent_with_dup_after_a_restart_mqtt_4_4_0_1() {
    let mut h = durable_harness();
    let sub = connected(&mut h, persistent("sub"));
    subscribe(&mut h, sub, "t", QoS::ExactlyOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", "q1", QoS::AtLeastOnce, 1);
    publish(&mut h, publisher, "t", "q2", QoS::ExactlyOnce, 2);
    let first = publishes(&mut h, sub);
    assert_eq!(first.len(), 2);
    // The QoS 2 one gets as far as PUBREC → PUBREL before the crash.
    h.send(
        sub,
        Packet::PubRec(PubResponse::new(first[1].packet_id, ReasonCode::SUCCESS)),
    );
    assert!(matches!(h.recv(sub), Some(Packet::PubRel(_))));
    h.crash_and_restart();
    let (sub, _) = resume(&mut h, "sub");
    let again = h.recv_all(sub);
    // The unacknowledged QoS 1 PUBLISH again with DUP and the same packet id [MQTT-3.3.1-1], and PUBREL for the
    // QoS 2 one that was past PUBREC.
    assert!(
        matches!(&again[0], Packet::Publish(p) if p.dup && p.packet_id == first[0].packet_id && &p.payload[..] == b"q1")
    );
    assert!(matches!(&again[1], Packet::PubRel(r) if r.packet_id == first[1].packet_id));
    assert_eq!(again.len(), 2);
}

#[test]
fn exactly_once_state_of_incoming_qos2_survives_a_restart_mqtt_4_3_3_9() {
    let mut h = durable_harness();
    let sub = connected(&mut h, persistent("sub"));
    subscribe(&mut h, sub, "t", QoS::AtMostOnce);
    let publisher = connected(&mut h, persistent("pub"));
    publish(&mut h, publisher, "t", "once", QoS::ExactlyOnce, 7);
    assert!(matches!(h.recv(publisher), Some(Packet::PubRec(r)) if r.packet_id == 7));
    assert_eq!(publishes(&mut h, sub).len(), 1);
    h.crash_and_restart();
    let (sub, _) = resume(&mut h, "sub");
    let (publisher, _) = resume(&mut h, "pub");
    // The publisher did not see PUBCOMP, so it sends the PUBLISH again with DUP: not delivered a second time.
    let mut again = publish_packet("t", "once", QoS::ExactlyOnce, 7);
    again.dup = true;
    h.send(publisher, Packet::Publish(again));
    assert!(matches!(h.recv(publisher), Some(Packet::PubRec(r)) if r.packet_id == 7));
    h.send(publisher, Packet::PubRel(PubResponse::new(7, ReasonCode::SUCCESS)));
    assert_eq!(
        h.recv(publisher),
        Some(Packet::PubComp(PubResponse::new(7, ReasonCode::SUCCESS)))
    );
    assert!(publishes(&mut h, sub).is_empty(), "delivered once only");
}

#[test]
fn retained_messages_survive_a_restart_and_clearing_one_is_durable_too() {
    let mut h = durable_harness();
    let publisher = connected(&mut h, v5("pub"));
    retain(&mut h, publisher, "r/keep", "kept");
    retain(&mut h, publisher, "r/gone", "cleared later");
    retain(&mut h, publisher, "r/gone", "");
    h.crash_and_restart();
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "r/#", QoS::AtMostOnce);
    let got = publishes(&mut h, sub);
    assert_eq!(payloads(&got), vec!["kept"]);
    assert!(got[0].retain, "[MQTT-3.3.1-9]");
}

#[test]
fn acknowledged_messages_leave_the_store_and_ended_sessions_leave_nothing() {
    let mut h = durable_harness();
    let sub = connected(&mut h, persistent("sub"));
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "t", "m", QoS::AtLeastOnce, 1);
    let got = publishes(&mut h, sub);
    h.send(
        sub,
        Packet::PubAck(PubResponse::new(got[0].packet_id, ReasonCode::SUCCESS)),
    );
    let mut image = Image::default();
    for record in h.records.clone() {
        image.apply(record);
    }
    image.collect_garbage();
    assert!(image.messages.is_empty() && image.sessions.values().all(|s| s.entries.is_empty()));
    // A clean session and a session whose expiry is 0 write nothing at all.
    let before = h.records.len();
    let clean = connected(&mut h, v5("clean"));
    subscribe(&mut h, clean, "x", QoS::AtLeastOnce);
    h.drop_connection(clean);
    assert_eq!(h.records.len(), before);
    // Session Expiry Interval 0 on DISCONNECT (section 3.14.2.2.2) ends the durable session: its record says so.
    let mut disconnect = Disconnect::default();
    disconnect.properties.session_expiry_interval = Some(0);
    h.send(sub, Packet::Disconnect(disconnect));
    assert!(matches!(h.records.last(), Some(Record::SessionEnd { .. })));
    h.crash_and_restart();
    let (_, connack) = resume(&mut h, "sub");
    assert!(!connack.session_present);
}

#[test]
fn session_expiry_counts_from_the_disconnect_across_a_restart_mqtt_3_1_2_23() {
    let mut h = durable_harness();
    let mut connect = persistent("sub");
    connect.properties.session_expiry_interval = Some(60);
    let sub = connected(&mut h, connect.clone());
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    h.drop_connection(sub);
    h.advance(Duration::from_secs(40));
    h.crash_and_restart();
    h.advance(Duration::from_secs(30));
    let (_, connack) = connect_ok(&mut h, connect);
    assert!(
        !connack.session_present,
        "70 s after the disconnect, a 60 s session has expired"
    );
}

#[test]
fn delayed_will_is_published_after_a_restart_mqtt_3_1_3_9() {
    let mut h = durable_harness();
    let watcher = connected(&mut h, persistent("watcher"));
    subscribe(&mut h, watcher, "wills/#", QoS::AtLeastOnce);
    let connect = with_will(persistent("dying"), "wills/dying", "gone", QoS::AtLeastOnce, Some(30));
    let dying = connected(&mut h, connect);
    h.drop_connection(dying);
    h.drop_connection(watcher);
    h.crash_and_restart();
    h.advance(Duration::from_secs(31));
    let (watcher, _) = resume(&mut h, "watcher");
    assert_eq!(payloads(&publishes(&mut h, watcher)), vec!["gone"]);
}

#[test]
fn records_round_trip_through_their_encoding() {
    let mut h = durable_harness();
    let sub = connected(&mut h, persistent("sub"));
    subscribe(&mut h, sub, "t/#", QoS::ExactlyOnce);
    let publisher = connected(&mut h, persistent("pub"));
    retain(&mut h, publisher, "t/r", "retained");
    publish(&mut h, publisher, "t/a", "a", QoS::ExactlyOnce, 3);
    h.drop_connection(sub);
    assert!(h.records.len() >= 6);
    for record in &h.records {
        let mut buf = bytes::BytesMut::new();
        record.encode(&mut buf).expect("encode");
        // A peek at the first fields agrees with the decoded record (a replay skips records by it).
        let peeked = match record {
            Record::Store { id, .. } => Peek::Store { id: *id },
            Record::Enqueue { key, seq, id, .. } => Peek::Enqueue {
                key: *key,
                seq: *seq,
                id: *id,
            },
            Record::Sent { key, seq, .. } => Peek::Sent { key: *key, seq: *seq },
            Record::Done { key, seq } => Peek::Done { key: *key, seq: *seq },
            _ => Peek::Other,
        };
        assert_eq!(Peek::of(&buf), peeked, "{record:?}");
        assert_eq!(Peek::of(&buf[..buf.len().min(8)]), Peek::Other, "too short to peek");
        assert_eq!(&Record::decode(buf.freeze()).expect("decode"), record);
    }
    for kinds in [
        Record::Done { key: 7, seq: 9 },
        Record::Sent {
            key: 7,
            seq: 9,
            packet_id: 3,
            state: mqtt_core::persist::SentState::Published,
        },
    ] {
        let mut buf = bytes::BytesMut::new();
        kinds.encode(&mut buf).expect("encode");
        assert!(matches!(
            Peek::of(&buf),
            Peek::Done { key: 7, seq: 9 } | Peek::Sent { key: 7, seq: 9 }
        ));
    }
}

#[test]
fn while_storage_is_full_qos1_is_refused_with_0x97_and_qos0_flows() {
    let mut h = durable_harness();
    let sub = connected(&mut h, persistent("sub"));
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    h.input(mqtt_core::broker::Input::StorageWritable(false));
    publish(&mut h, publisher, "t", "not stored", QoS::AtLeastOnce, 1);
    // Nothing acknowledged may be lost, and the disk cannot hold it: Quota exceeded (MQTT 5.0 section 3.4.2.1).
    assert_eq!(
        h.recv(publisher),
        Some(Packet::PubAck(PubResponse::new(1, ReasonCode::QUOTA_EXCEEDED)))
    );
    publish(&mut h, publisher, "t", "best effort", QoS::AtMostOnce, 0);
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["best effort"]);
    h.input(mqtt_core::broker::Input::StorageWritable(true));
    publish(&mut h, publisher, "t", "stored", QoS::AtLeastOnce, 2);
    assert_eq!(
        h.recv(publisher),
        Some(Packet::PubAck(PubResponse::new(2, ReasonCode::SUCCESS)))
    );
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["stored"]);
}

/// [MQTT-4.8.0-2]: a PUBLISH the broker cannot store is a transient error met while processing an inbound packet;
/// a 3.1.1 (or 3.1) client cannot be told with a reason code, so its connection is closed. Nothing is acknowledged,
/// so nothing is lost: the client sends it again once it reconnects and the disk takes writes.
#[test]
fn while_storage_is_full_a_v311_or_v31_qos1_publish_closes_the_connection_mqtt_4_8_0_2() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V3_1] {
        let mut h = durable_harness();
        let sub = connected(&mut h, persistent("sub"));
        subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
        let publisher = connected(&mut h, mqtt_core::harness::connect_packet(version, "pub"));
        h.input(mqtt_core::broker::Input::StorageWritable(false));
        publish(&mut h, publisher, "t", "now", QoS::AtMostOnce, 0);
        assert!(
            !h.is_closed(publisher),
            "{version:?}: QoS 0 needs no storage and keeps flowing"
        );
        publish(&mut h, publisher, "t", "later", QoS::AtLeastOnce, 1);
        assert!(
            h.is_closed(publisher),
            "{version:?}: [MQTT-4.8.0-2] the connection is closed"
        );
        assert!(
            !h.recv_all(publisher).iter().any(|p| matches!(p, Packet::PubAck(_))),
            "{version:?}: nothing acknowledged"
        );
        assert_eq!(h.broker.stats().transient_error_closes, 1);
        assert_eq!(
            payloads(&publishes(&mut h, sub)),
            vec!["now"],
            "{version:?}: the QoS 1 one is not routed"
        );
        // The disk takes writes again: the client resends on a new connection and the message goes through once.
        h.input(mqtt_core::broker::Input::StorageWritable(true));
        let publisher = connected(&mut h, mqtt_core::harness::connect_packet(version, "pub"));
        let mut again = publish_packet("t", "later", QoS::AtLeastOnce, 1);
        again.dup = true;
        h.send(publisher, Packet::Publish(again));
        assert_eq!(
            h.recv(publisher),
            Some(Packet::PubAck(PubResponse::new(1, ReasonCode::SUCCESS)))
        );
        assert_eq!(payloads(&publishes(&mut h, sub)), vec!["later"]);
    }
}

/// [MQTT-4.8.0-2] for QoS 2, and for a PUBLISH that arrives while earlier ones of the connection are held for a
/// full subscriber queue: the error is met processing this packet, so the connection closes at once, the held ones
/// with it (unacknowledged, so the client still owns them), and the will is published as for any connection the
/// server closes [MQTT-3.1.2-8].
#[test]
fn while_storage_is_full_a_v311_qos2_publish_behind_held_ones_closes_at_once_mqtt_4_8_0_2() {
    let mut h = Harness::new(Config {
        persistence: true,
        max_queued_messages: 1,
        ..Config::default()
    });
    let mut slow = v5("slow");
    slow.properties.receive_maximum = Some(1);
    let sub = connected(&mut h, slow);
    subscribe(&mut h, sub, "t", QoS::ExactlyOnce);
    let watcher = connected(&mut h, v5("watcher"));
    subscribe(&mut h, watcher, "will", QoS::AtMostOnce);
    let publisher = connected(&mut h, with_will(v311("pub"), "will", "gone", QoS::AtMostOnce, None));
    // 1 in flight, 2 queued, 3 held (the slow subscriber has no room).
    for i in 1..=3u16 {
        publish(&mut h, publisher, "t", &i.to_string(), QoS::ExactlyOnce, i);
    }
    let recs: Vec<u16> = h
        .recv_all(publisher)
        .into_iter()
        .filter_map(|p| match p {
            Packet::PubRec(rec) => Some(rec.packet_id),
            _ => None,
        })
        .collect();
    assert_eq!(recs, vec![1, 2], "3 is held for room");
    h.input(mqtt_core::broker::Input::StorageWritable(false));
    publish(&mut h, publisher, "t", "4", QoS::ExactlyOnce, 4);
    assert!(
        h.is_closed(publisher),
        "[MQTT-4.8.0-2] closed at once, not queued behind 3"
    );
    assert!(h.recv_all(publisher).is_empty(), "neither 3 nor 4 acknowledged");
    assert_eq!(payloads(&publishes(&mut h, watcher)), vec!["gone"], "[MQTT-3.1.2-8]");
    assert_eq!(
        payloads(&publishes(&mut h, sub)),
        vec!["1"],
        "3 and 4 were never routed"
    );
}

#[test]
fn a_retained_message_queued_after_a_snapshot_is_stored_again() {
    // Found by the simulator: after a snapshot dropped a message no queue referred to any more, queueing the same
    // (retained) message again for a persistent session wrote only the queue entry, which recovery then lost.
    let mut h = durable_harness();
    let first = connected(&mut h, persistent("first"));
    subscribe(&mut h, first, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    let mut packet = publish_packet("t", "state", QoS::AtLeastOnce, 1);
    packet.retain = true;
    h.send(publisher, Packet::Publish(packet));
    let got = publishes(&mut h, first);
    h.send(
        first,
        Packet::PubAck(PubResponse::new(got[0].packet_id, ReasonCode::SUCCESS)),
    );
    h.compact_records();
    // A second persistent session subscribes: the retained message is queued for it, then the broker restarts.
    let second = connected(&mut h, persistent("second"));
    subscribe(&mut h, second, "t", QoS::AtLeastOnce);
    h.crash_and_restart();
    // Not acknowledged before the crash: resent from the recovered session, without a new SUBSCRIBE [MQTT-4.4.0-1].
    let (second, _) = resume(&mut h, "second");
    assert_eq!(payloads(&publishes(&mut h, second)), vec!["state"]);
}

/// With `durable_wills` (a cluster node's broker), the will of a connected durable session is recorded too: a broker
/// rebuilt from the records (a new leader after a failover) publishes it once its delay has passed since the
/// rebuild [MQTT-3.1.2-8], unless the client resumes its session first [MQTT-3.1.3-9]; a will discarded by a normal
/// DISCONNECT [MQTT-3.1.2-10] or replaced by a reconnect without one stays gone.
#[test]
fn with_durable_wills_a_connected_clients_will_survives_a_restart_and_waits_for_its_delay() {
    let mut h = Harness::new(Config {
        persistence: true,
        durable_wills: true,
        ..Config::default()
    });
    let watcher = connected(&mut h, persistent("watcher"));
    subscribe(&mut h, watcher, "wills/#", QoS::AtLeastOnce);
    let with_will = |id: &str| {
        with_will(
            persistent(id),
            &format!("wills/{id}"),
            &format!("{id} gone"),
            QoS::AtLeastOnce,
            Some(30),
        )
    };
    connected(&mut h, with_will("absent"));
    connected(&mut h, with_will("back"));
    let quiet = connected(&mut h, with_will("quiet"));
    h.send(quiet, Packet::Disconnect(Disconnect::default()));
    let replaced = connected(&mut h, with_will("replaced"));
    h.drop_connection(replaced);
    connected(&mut h, persistent("replaced"));
    h.drop_connection(watcher);
    h.crash_and_restart();
    h.advance(Duration::from_secs(20));
    connect_ok(&mut h, with_will("back"));
    h.advance(Duration::from_secs(9));
    let (watcher, _) = resume(&mut h, "watcher");
    assert!(publishes(&mut h, watcher).is_empty(), "nothing before the delay");
    h.advance(Duration::from_secs(2));
    assert_eq!(payloads(&publishes(&mut h, watcher)), vec!["absent gone"]);
}

/// A snapshot written off the event loop writes the state of the moment it was frozen: the same records as the
/// image of that moment, whatever the broker changes afterwards (a retained message replaced or cleared, a queued
/// message acknowledged), while the retained messages are shared with the broker rather than copied.
#[test]
fn a_frozen_image_writes_the_state_of_its_freeze_whatever_changes_after() {
    let mut h = durable_harness();
    let sub = connected(&mut h, persistent("sub"));
    subscribe(&mut h, sub, "q/#", QoS::AtLeastOnce);
    h.drop_connection(sub);
    let publisher = connected(&mut h, v5("pub"));
    for (topic, payload) in [("r/a", "a1"), ("r/b", "b1"), ("r/c", "c1")] {
        retain(&mut h, publisher, topic, payload);
    }
    publish(&mut h, publisher, "q/1", "queued", QoS::AtLeastOnce, 1);
    let before = h.broker.image();
    assert_eq!(before.retained.len(), 3);
    assert_eq!(before.messages.len(), 1, "the offline session's queued message");
    let frozen = h.broker.frozen_image();
    assert_eq!(frozen.retained_len(), 3);
    let rebuilt = |frozen: &mqtt_core::broker::FrozenImage| {
        let mut image = Image::default();
        for record in frozen.to_records() {
            image.apply(record);
        }
        image
    };
    assert_eq!(rebuilt(&frozen), before);
    assert_eq!(frozen.to_image(), before);

    // The broker moves on: a retained value replaced, one cleared, a new one, and the queued message delivered.
    retain(&mut h, publisher, "r/a", "a2");
    retain(&mut h, publisher, "r/b", "");
    retain(&mut h, publisher, "r/d", "d1");
    let (sub, _) = resume(&mut h, "sub");
    let got = publishes(&mut h, sub);
    assert_eq!(payloads(&got), vec!["queued"]);
    h.send(
        sub,
        Packet::PubAck(PubResponse::new(got[0].packet_id, ReasonCode::SUCCESS)),
    );
    let after = h.broker.image();
    assert_ne!(after, before);
    assert!(after.messages.is_empty());
    assert_eq!(
        rebuilt(&frozen),
        before,
        "the frozen state did not move with the broker"
    );
}
