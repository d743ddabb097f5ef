//! The bridge between two in-memory broker cores (see `pair`).

use super::pair::BridgePair;
use super::*;
use crate::broker::{Config, ConnectionId};
use crate::harness::{connect_packet, Harness};
use crate::packet::{ConnAck, PubResponse, Publish, QoS, Subscribe, SubscriptionOptions};

fn rule(pattern: &str, direction: Direction, qos: QoS, local: &str, remote: &str) -> Rule {
    Rule {
        pattern: pattern.into(),
        direction,
        qos,
        local_prefix: local.into(),
        remote_prefix: remote.into(),
    }
}

/// Both brokers keep their sessions in records (the harness's disk), so a restart keeps them.
fn durable() -> Config {
    Config {
        persistence: true,
        ..Config::default()
    }
}

fn pair(rules: Vec<Rule>) -> BridgePair {
    let config = BridgeConfig::new("test", rules);
    let mut pair = BridgePair::new(config, durable());
    pair.step();
    assert!(
        pair.bridge.is_up(Side::Local) && pair.bridge.is_up(Side::Remote),
        "{:?}",
        pair.events
    );
    pair
}

/// A client with a persistent session subscribed to `filter`.
fn subscriber(h: &mut Harness, id: &str, filter: &str, qos: QoS) -> ConnectionId {
    let mut connect = connect_packet(ProtocolVersion::V5, id);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(3600);
    let (conn, ack) = h.connect(connect);
    assert!(matches!(
        ack,
        Some(Packet::ConnAck(ConnAck {
            reason: ReasonCode::SUCCESS,
            ..
        }))
    ));
    let options = SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    };
    h.send(
        conn,
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters: vec![(filter.into(), options)],
        }),
    );
    assert!(matches!(h.recv(conn), Some(Packet::SubAck(_))));
    conn
}

fn publisher(h: &mut Harness, id: &str) -> ConnectionId {
    let (conn, ack) = h.connect(connect_packet(ProtocolVersion::V5, id));
    assert!(matches!(ack, Some(Packet::ConnAck(_))));
    conn
}

fn publish(h: &mut Harness, conn: ConnectionId, topic: &str, qos: QoS, packet_id: u16, payload: &str) {
    h.send(
        conn,
        Packet::Publish(Publish {
            qos,
            topic: topic.into(),
            packet_id: if qos == QoS::AtMostOnce { 0 } else { packet_id },
            payload: bytes::Bytes::copy_from_slice(payload.as_bytes()),
            ..Publish::default()
        }),
    );
}

/// Every PUBLISH `conn` received, acknowledged as a client would (QoS 2 through PUBCOMP's exchange), as
/// (topic, payload, qos).
fn take(h: &mut Harness, conn: ConnectionId) -> Vec<(String, String, QoS)> {
    let mut got = Vec::new();
    loop {
        let packets = h.recv_all(conn);
        if packets.is_empty() {
            return got;
        }
        for packet in packets {
            match packet {
                Packet::Publish(p) => {
                    match p.qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => {
                            h.send(conn, Packet::PubAck(PubResponse::new(p.packet_id, ReasonCode::SUCCESS)))
                        }
                        QoS::ExactlyOnce => {
                            h.send(conn, Packet::PubRec(PubResponse::new(p.packet_id, ReasonCode::SUCCESS)))
                        }
                    }
                    got.push((p.topic, String::from_utf8_lossy(&p.payload).into_owned(), p.qos));
                }
                Packet::PubRel(r) => h.send(
                    conn,
                    Packet::PubComp(PubResponse::new(r.packet_id, ReasonCode::SUCCESS)),
                ),
                _ => {}
            }
        }
    }
}

/// The acknowledgements a publisher got: (kind, packet id).
fn acks(h: &mut Harness, conn: ConnectionId) -> Vec<(&'static str, u16)> {
    let mut got = Vec::new();
    for packet in h.recv_all(conn) {
        match packet {
            Packet::PubAck(a) => got.push(("PUBACK", a.packet_id)),
            Packet::PubRec(a) => {
                got.push(("PUBREC", a.packet_id));
                h.send(conn, Packet::PubRel(PubResponse::new(a.packet_id, ReasonCode::SUCCESS)));
            }
            Packet::PubComp(a) => got.push(("PUBCOMP", a.packet_id)),
            _ => {}
        }
    }
    got
}

#[test]
fn out_messages_cross_with_prefixes_at_every_qos() {
    let mut p = pair(vec![rule(
        "sensors/#",
        Direction::Out,
        QoS::ExactlyOnce,
        "site/",
        "cloud/site1/",
    )]);
    let sub = subscriber(&mut p.remote, "cloud-sub", "cloud/#", QoS::ExactlyOnce);
    let publ = publisher(&mut p.local, "sensor");
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        publish(
            &mut p.local,
            publ,
            "site/sensors/t",
            qos,
            i as u16 + 1,
            &format!("m{i}"),
        );
        p.step();
    }
    let got = take(&mut p.remote, sub);
    p.step();
    assert_eq!(
        got,
        vec![
            ("cloud/site1/sensors/t".into(), "m0".into(), QoS::AtMostOnce),
            ("cloud/site1/sensors/t".into(), "m1".into(), QoS::AtLeastOnce),
            ("cloud/site1/sensors/t".into(), "m2".into(), QoS::ExactlyOnce),
        ]
    );
    assert_eq!(acks(&mut p.local, publ), vec![("PUBACK", 2), ("PUBREC", 3)]);
    p.step();
    assert_eq!(acks(&mut p.local, publ), vec![("PUBCOMP", 3)]);
    // Every exchange finished on both links.
    p.advance(Duration::from_millis(1));
    assert_eq!(p.bridge.unacknowledged(Side::Remote), 0);
    assert_eq!(p.bridge.unacknowledged(Side::Local), 0);
}

#[test]
fn in_messages_cross_and_qos2_arrives_once() {
    let mut p = pair(vec![rule("cmd/#", Direction::In, QoS::ExactlyOnce, "", "cloud/site1/")]);
    let sub = subscriber(&mut p.local, "device", "cmd/#", QoS::ExactlyOnce);
    let publ = publisher(&mut p.remote, "cloud");
    publish(
        &mut p.remote,
        publ,
        "cloud/site1/cmd/reboot",
        QoS::ExactlyOnce,
        7,
        "now",
    );
    // The cloud's publisher resends before it saw PUBREC (a duplicate with DUP): still one delivery.
    publish(
        &mut p.remote,
        publ,
        "cloud/site1/cmd/reboot",
        QoS::ExactlyOnce,
        7,
        "now",
    );
    p.step();
    let got = take(&mut p.local, sub);
    p.step();
    assert_eq!(got, vec![("cmd/reboot".into(), "now".into(), QoS::ExactlyOnce)]);
    let acks = acks(&mut p.remote, publ);
    assert!(acks.contains(&("PUBREC", 7)), "{acks:?}");
    p.step();
    assert!(take(&mut p.local, sub).is_empty());
}

#[test]
fn qos1_published_while_the_remote_is_down_arrives_after_back_off() {
    let mut p = pair(vec![rule("a/#", Direction::Out, QoS::AtLeastOnce, "", "")]);
    let sub = subscriber(&mut p.remote, "far", "a/#", QoS::AtLeastOnce);
    let publ = publisher(&mut p.local, "near");
    p.remote_reachable = false;
    p.cut_remote();
    for i in 1..=5u16 {
        publish(&mut p.local, publ, "a/x", QoS::AtLeastOnce, i, &format!("m{i}"));
        p.step();
    }
    // The local broker has them (on its disk, in the bridge's session): acknowledged.
    assert_eq!(acks(&mut p.local, publ).len(), 5);
    assert_eq!(p.bridge.queued(Side::Remote), 5);
    p.advance(Duration::from_secs(10));
    let delays: Vec<Duration> = p
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Disconnected {
                side: Side::Remote,
                retry_in,
                ..
            } => Some(*retry_in),
            _ => None,
        })
        .collect();
    assert_eq!(
        delays[..4],
        [1, 2, 4, 8].map(Duration::from_secs),
        "back-off doubles: {delays:?}"
    );
    p.remote_reachable = true;
    p.advance(Duration::from_secs(30));
    let got: Vec<String> = take(&mut p.remote, sub).into_iter().map(|(_, m, _)| m).collect();
    assert_eq!(got, ["m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(p.bridge.queued(Side::Remote), 0);
    p.step();
    assert_eq!(p.bridge.unacknowledged(Side::Remote), 0);
}

#[test]
fn remote_restart_mid_stream_loses_nothing_acknowledged() {
    let mut p = pair(vec![rule("a/#", Direction::Out, QoS::AtLeastOnce, "", "")]);
    let sub = subscriber(&mut p.remote, "far", "a/#", QoS::AtLeastOnce);
    let publ = publisher(&mut p.local, "near");
    let mut acked = Vec::new();
    let mut received = Vec::new();
    let mut sub = Some(sub);
    for i in 1..=40u16 {
        publish(&mut p.local, publ, "a/x", QoS::AtLeastOnce, i, &format!("m{i}"));
        p.step();
        if i == 20 {
            p.restart_remote();
            sub = None;
        }
        if i == 25 {
            p.advance(Duration::from_secs(5));
        }
        if i == 30 {
            // The subscriber's session survived the restart: it reconnects and gets what was kept for it.
            let mut connect = connect_packet(ProtocolVersion::V5, "far");
            connect.clean_start = false;
            connect.properties.session_expiry_interval = Some(3600);
            let (conn, _) = p.remote.connect(connect);
            sub = Some(conn);
        }
        if let Some(sub) = sub {
            received.extend(take(&mut p.remote, sub).into_iter().map(|(_, m, _)| m));
            p.step();
        }
        acked.extend(acks(&mut p.local, publ).into_iter().map(|(_, id)| id));
    }
    p.advance(Duration::from_secs(5));
    received.extend(take(&mut p.remote, sub.unwrap()).into_iter().map(|(_, m, _)| m));
    acked.extend(acks(&mut p.local, publ).into_iter().map(|(_, id)| id));
    assert!(acked.len() >= 20, "acknowledged {acked:?}");
    for id in acked {
        assert!(
            received.contains(&format!("m{id}")),
            "m{id} acknowledged, never delivered: {received:?}"
        );
    }
}

#[test]
fn both_directions_do_not_loop() {
    let mut p = pair(vec![rule("chat/#", Direction::Both, QoS::AtLeastOnce, "", "")]);
    let local_sub = subscriber(&mut p.local, "l", "chat/#", QoS::AtLeastOnce);
    let remote_sub = subscriber(&mut p.remote, "r", "chat/#", QoS::AtLeastOnce);
    let local_pub = publisher(&mut p.local, "lp");
    let remote_pub = publisher(&mut p.remote, "rp");
    publish(&mut p.local, local_pub, "chat/a", QoS::AtLeastOnce, 1, "from-local");
    publish(&mut p.remote, remote_pub, "chat/b", QoS::AtLeastOnce, 1, "from-remote");
    p.step();
    p.advance(Duration::from_secs(5));
    let l: Vec<String> = take(&mut p.local, local_sub).into_iter().map(|(_, m, _)| m).collect();
    let r: Vec<String> = take(&mut p.remote, remote_sub).into_iter().map(|(_, m, _)| m).collect();
    p.advance(Duration::from_secs(5));
    assert_eq!(l.len(), 2, "{l:?}");
    assert!(l.contains(&"from-local".to_string()) && l.contains(&"from-remote".to_string()));
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(p.bridge.stats().forwarded_out, 1);
    assert_eq!(p.bridge.stats().forwarded_in, 1);
}

#[test]
fn qos0_beyond_the_queue_is_dropped_and_counted_while_down() {
    let mut config = BridgeConfig::new("small", vec![rule("a/#", Direction::Out, QoS::AtMostOnce, "", "")]);
    config.queue_size = 3;
    let mut p = BridgePair::new(config, Config::default());
    let publ = publisher(&mut p.local, "near");
    p.remote_reachable = false;
    p.cut_remote();
    for i in 0..10 {
        publish(&mut p.local, publ, "a/x", QoS::AtMostOnce, 0, &format!("m{i}"));
        p.step();
    }
    assert_eq!(p.bridge.queued(Side::Remote), 3);
    assert_eq!(p.bridge.stats().dropped, 7);
}

#[test]
fn remote_keep_alive_pings_and_a_silent_remote_is_dropped() {
    let mut config = BridgeConfig::new("ka", vec![rule("a/#", Direction::In, QoS::AtMostOnce, "", "")]);
    config.keep_alive = 10;
    let mut p = BridgePair::new(config, Config::default());
    p.advance(Duration::from_secs(60));
    assert!(p.bridge.is_up(Side::Remote), "pings keep it up: {:?}", p.events);
    // The remote stops answering: frozen, its connection open.
    let before = p.bridge.stats().remote_connects;
    p.remote_reachable = false;
    let now = p.now();
    p.bridge.handle_input(now, Input::Tick);
    // Swallow what the bridge sends from now on by cutting the link from the remote's view only.
    let mut silent = 0;
    for _ in 0..20 {
        p.bridge.handle_input(p.now() + Duration::from_secs(1), Input::Tick);
        while let Some(out) = p.bridge.poll_output() {
            if let Output::Event(Event::Disconnected { reason, .. }) = out {
                assert_eq!(reason, "keep alive timed out");
                silent += 1;
            }
        }
        p.local.now = p.local.now + Duration::from_secs(1);
        p.remote.now = p.local.now;
    }
    assert_eq!(silent, 1);
    assert_eq!(p.bridge.stats().remote_connects, before);
}

#[test]
fn a_v311_bridge_to_a_remote_refusing_the_bridge_bit_retries_without_it() {
    let mut config = BridgeConfig::new("v311", vec![rule("a/#", Direction::Both, QoS::AtLeastOnce, "", "")]);
    config.protocol = ProtocolVersion::V3_1_1;
    let mut p = BridgePair::new(config, durable());
    // Our own broker does not know protocol level 0x84: the first CONNACK refuses it, the retry goes through.
    p.advance(Duration::from_secs(5));
    assert!(p.bridge.is_up(Side::Remote), "{:?}", p.events);
    let sub = subscriber(&mut p.remote, "far", "a/#", QoS::AtLeastOnce);
    let publ = publisher(&mut p.local, "near");
    publish(&mut p.local, publ, "a/x", QoS::AtLeastOnce, 1, "hello");
    p.step();
    let got = take(&mut p.remote, sub);
    assert_eq!(got, vec![("a/x".into(), "hello".into(), QoS::AtLeastOnce)]);
}

#[test]
fn a_message_refused_with_quota_exceeded_is_retried_not_dropped() {
    let mut p = pair(vec![rule("cmd/#", Direction::In, QoS::AtLeastOnce, "", "")]);
    let sub = subscriber(&mut p.local, "device", "cmd/#", QoS::AtLeastOnce);
    let publ = publisher(&mut p.remote, "cloud");
    // The local disk stops taking writes: QoS 1/2 PUBLISHes are refused with 0x97.
    p.local.input(crate::broker::Input::StorageWritable(false));
    publish(&mut p.remote, publ, "cmd/x", QoS::AtLeastOnce, 1, "later");
    p.step();
    p.advance(Duration::from_secs(3));
    assert!(take(&mut p.local, sub).is_empty());
    assert_eq!(p.bridge.stats().dropped, 0);
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, Event::Disconnected { side: Side::Local, reason, .. } if reason.contains("0x97"))));
    p.local.input(crate::broker::Input::StorageWritable(true));
    p.advance(Duration::from_secs(3));
    let got = take(&mut p.local, sub);
    assert_eq!(got, vec![("cmd/x".into(), "later".into(), QoS::AtLeastOnce)]);
    p.step();
    assert_eq!(p.bridge.unacknowledged(Side::Local), 0);
}
