//! Quotas and limits (issue #9): connections and connect rate per address, publish rates, subscriptions per
//! client, topic size, queued bytes per session and in total. Each limit is 0 = unlimited by default.

mod common;

use common::*;
use mqtt_core::broker::{Config, ConnectionId, ListenerId};
use mqtt_core::harness::Harness;
use mqtt_core::packet::*;
use std::net::SocketAddr;
use std::time::Duration;

fn with(config: Config) -> Harness {
    Harness::new(config)
}

/// Opens a connection from `ip` and sends `connect`; returns the connection and the CONNACK's reason.
fn connect_from(h: &mut Harness, ip: [u8; 4], connect: Connect) -> (ConnectionId, ReasonCode) {
    let conn = h.open_from(SocketAddr::from((ip, 50000)), ListenerId(0));
    h.send(conn, Packet::Connect(Box::new(connect)));
    match h.recv(conn) {
        Some(Packet::ConnAck(connack)) => (conn, connack.reason),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn acks(h: &mut Harness, conn: ConnectionId) -> Vec<(u16, ReasonCode)> {
    h.recv_all(conn)
        .into_iter()
        .filter_map(|p| match p {
            Packet::PubAck(ack) | Packet::PubRec(ack) => Some((ack.packet_id, ack.reason)),
            _ => None,
        })
        .collect()
}

fn payload_of(size: usize, tag: u16) -> String {
    let mut text = tag.to_string();
    while text.len() < size {
        text.push('.');
    }
    text
}

fn assert_accounting(h: &Harness) {
    if let Err(mismatch) = h.broker.check_queue_accounting() {
        panic!("{mismatch}");
    }
}

// ---- 1. connections per address ------------------------------------------------------------------------------

#[test]
fn connections_per_address_beyond_the_limit_get_quota_exceeded_mqtt_3_2_2_2() {
    let mut h = with(Config {
        max_connections_per_address: 2,
        ..Config::default()
    });
    let (a, reason) = connect_from(&mut h, [10, 0, 0, 1], v5("a"));
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(connect_from(&mut h, [10, 0, 0, 1], v5("b")).1, ReasonCode::SUCCESS);
    // The third from the same address: 0x97 Quota exceeded, then closed [MQTT-3.2.2-7].
    let (c, reason) = connect_from(&mut h, [10, 0, 0, 1], v5("c"));
    assert_eq!(reason, ReasonCode::QUOTA_EXCEEDED);
    assert!(h.is_closed(c));
    // 3.1.1 has no 0x97: return code 3 Server unavailable (3.1.1 section 3.2.2.3).
    let (_, reason) = connect_from(&mut h, [10, 0, 0, 1], v311("d"));
    assert_eq!(reason, ReasonCode::SERVER_UNAVAILABLE);
    // Another address is not affected.
    assert_eq!(connect_from(&mut h, [10, 0, 0, 2], v5("e")).1, ReasonCode::SUCCESS);
    // A connection that ends makes room.
    h.send(a, Packet::Disconnect(Disconnect::default()));
    assert_eq!(connect_from(&mut h, [10, 0, 0, 1], v5("f")).1, ReasonCode::SUCCESS);
    assert!(h.broker.stats().quota_refusals >= 2);
}

#[test]
fn session_takeover_from_the_same_address_is_not_counted_twice_mqtt_3_1_4_3() {
    let mut h = with(Config {
        max_connections_per_address: 1,
        ..Config::default()
    });
    let (old, _) = connect_from(&mut h, [10, 0, 0, 1], v5("device"));
    // The same client reconnects over a half-open connection: the old one is taken over, not counted.
    let (_, reason) = connect_from(&mut h, [10, 0, 0, 1], v5("device"));
    assert_eq!(reason, ReasonCode::SUCCESS);
    expect_disconnect(&mut h, old, ReasonCode::SESSION_TAKEN_OVER);
    // A different client from that address is still one too many.
    assert_eq!(
        connect_from(&mut h, [10, 0, 0, 1], v5("other")).1,
        ReasonCode::QUOTA_EXCEEDED
    );
}

// ---- 2. connect rate per address ------------------------------------------------------------------------------

#[test]
fn connect_rate_per_address_is_a_token_bucket() {
    let mut h = with(Config {
        max_connects_per_second_per_address: 2,
        ..Config::default()
    });
    assert_eq!(connect_from(&mut h, [10, 0, 0, 1], v5("a")).1, ReasonCode::SUCCESS);
    assert_eq!(connect_from(&mut h, [10, 0, 0, 1], v5("b")).1, ReasonCode::SUCCESS);
    // A burst of one second's worth, then 0x9F Connection rate exceeded.
    let (c, reason) = connect_from(&mut h, [10, 0, 0, 1], v5("c"));
    assert_eq!(reason, ReasonCode::CONNECTION_RATE_EXCEEDED);
    assert!(h.is_closed(c));
    assert_eq!(
        connect_from(&mut h, [10, 0, 0, 1], v311("c")).1,
        ReasonCode::SERVER_UNAVAILABLE
    );
    // Other addresses have their own bucket.
    assert_eq!(connect_from(&mut h, [10, 0, 0, 2], v5("d")).1, ReasonCode::SUCCESS);
    // Half a second refills one token at 2/s.
    h.advance(Duration::from_millis(500));
    assert_eq!(connect_from(&mut h, [10, 0, 0, 1], v5("e")).1, ReasonCode::SUCCESS);
    assert_eq!(
        connect_from(&mut h, [10, 0, 0, 1], v5("f")).1,
        ReasonCode::CONNECTION_RATE_EXCEEDED
    );
}

#[test]
fn connect_rate_table_stays_bounded_under_many_addresses() {
    let mut h = with(Config {
        max_connects_per_second_per_address: 1,
        ..Config::default()
    });
    for i in 0..5000u32 {
        let ip = (0x0a00_0000 + i).to_be_bytes();
        let conn = h.open_from(SocketAddr::from((ip, 1000)), ListenerId(0));
        h.send(conn, Packet::Connect(Box::new(v5(&format!("c{i}")))));
        h.drop_connection(conn);
    }
    assert!(h.broker.connect_rate_addresses() <= 4096);
    // Once idle, addresses are forgotten as new ones arrive.
    h.advance(Duration::from_secs(5));
    let (_, reason) = connect_from(&mut h, [192, 168, 0, 1], v5("late"));
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert!(h.broker.connect_rate_addresses() < 10);
}

// ---- 3. publish rate per connection ---------------------------------------------------------------------------

#[test]
fn qos1_over_the_message_rate_gets_0x97_and_is_dropped_mqtt_3_4_2_1() {
    let mut h = with(Config {
        max_publish_rate: 5,
        ..Config::default()
    });
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    for i in 1..=8u16 {
        publish(&mut h, publisher, "t", &i.to_string(), QoS::AtLeastOnce, i);
    }
    let answers = acks(&mut h, publisher);
    // Acknowledged in order [MQTT-4.6.0-2]: five within the rate, three refused with 0x97 Quota exceeded (0x96
    // Message rate too high is not a PUBACK reason code, section 3.4.2.1).
    let ids: Vec<u16> = answers.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=8).collect::<Vec<_>>());
    assert!(
        answers[..5].iter().all(|(_, r)| *r == ReasonCode::SUCCESS),
        "{answers:?}"
    );
    assert!(
        answers[5..].iter().all(|(_, r)| *r == ReasonCode::QUOTA_EXCEEDED),
        "{answers:?}"
    );
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["1", "2", "3", "4", "5"]);
    // The connection stays up; a second later the publisher may go on.
    h.advance(Duration::from_secs(1));
    publish(&mut h, publisher, "t", "9", QoS::AtLeastOnce, 9);
    assert_eq!(acks(&mut h, publisher), vec![(9, ReasonCode::SUCCESS)]);
    assert!(!h.is_closed(publisher));
}

#[test]
fn qos0_over_the_byte_rate_is_dropped_and_counted() {
    let mut h = with(Config {
        max_publish_bytes_rate: 100,
        ..Config::default()
    });
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "t", QoS::AtMostOnce);
    let publisher = connected(&mut h, v5("pub"));
    let dropped_before = h.broker.stats().messages_dropped;
    // 40-byte payloads at 100 bytes/s: the third still finds tokens left (20), the fourth none.
    for i in 1..=6u16 {
        publish(&mut h, publisher, "t", &payload_of(40, i), QoS::AtMostOnce, 0);
    }
    assert_eq!(publishes(&mut h, sub).len(), 3);
    assert_eq!(h.broker.stats().messages_dropped - dropped_before, 3);
}

#[test]
fn v311_publisher_over_the_rate_is_acknowledged_and_dropped() {
    let mut h = with(Config {
        max_publish_rate: 2,
        ..Config::default()
    });
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v311("pub"));
    for i in 1..=4u16 {
        publish(&mut h, publisher, "t", &i.to_string(), QoS::AtLeastOnce, i);
    }
    // 3.1.1 PUBACK has no reason code: all four are acknowledged, only two delivered.
    assert_eq!(acks(&mut h, publisher).len(), 4);
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["1", "2"]);
}

#[test]
fn sustained_flood_is_disconnected_with_0x96_mqtt_3_14_2_1() {
    let mut h = with(Config {
        max_publish_rate: 10,
        ..Config::default()
    });
    let publisher = connected(&mut h, v5("flood"));
    // One second's burst (10) plus ten seconds' worth of excess (100) is tolerated; the next one is not.
    for i in 0..110u16 {
        publish(&mut h, publisher, "t", "x", QoS::AtMostOnce, 0);
        assert!(!h.is_closed(publisher), "closed after {i}");
    }
    publish(&mut h, publisher, "t", "x", QoS::AtMostOnce, 0);
    expect_disconnect(&mut h, publisher, ReasonCode::MESSAGE_RATE_TOO_HIGH);
}

#[test]
fn a_flooding_client_does_not_starve_another() {
    let mut h = with(Config {
        max_publish_rate: 20,
        ..Config::default()
    });
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "#", QoS::AtLeastOnce);
    let flood = connected(&mut h, v5("flood"));
    let calm = connected(&mut h, v5("calm"));
    let (mut flood_got, mut calm_got) = (0, 0);
    // Five seconds: the flooder sends 6 QoS 1 messages every 100 ms (three times the rate), the calm client one
    // per 100 ms (half the rate), interleaved.
    for tick in 0..50u16 {
        for i in 0..6 {
            let id = tick * 6 + i + 1;
            publish(&mut h, flood, "flood", "f", QoS::AtLeastOnce, id);
            if i == 3 {
                publish(&mut h, calm, "calm", &tick.to_string(), QoS::AtLeastOnce, tick + 1);
            }
        }
        for p in publishes(&mut h, sub) {
            h.send(sub, Packet::PubAck(PubResponse::new(p.packet_id, ReasonCode::SUCCESS)));
            match p.topic.as_str() {
                "calm" => calm_got += 1,
                _ => flood_got += 1,
            }
        }
        h.advance(Duration::from_millis(100));
    }
    // Every calm message got through and was acknowledged with success.
    assert_eq!(calm_got, 50);
    let calm_acks = acks(&mut h, calm);
    assert_eq!(calm_acks.len(), 50);
    assert!(
        calm_acks.iter().all(|(_, r)| *r == ReasonCode::SUCCESS),
        "{calm_acks:?}"
    );
    // The flooder got its one-second burst plus 20/s for the rest (about 20 + 98), the rest refused with 0x97.
    assert!((110..=125).contains(&flood_got), "{flood_got}");
    let flood_acks = acks(&mut h, flood);
    let refused = flood_acks
        .iter()
        .filter(|(_, r)| *r == ReasonCode::QUOTA_EXCEEDED)
        .count();
    assert_eq!(refused + flood_got, 300);
    // Three times the rate is limited, not (yet) a flood to disconnect.
    assert!(!h.is_closed(flood));
    assert!(!h.is_closed(sub));
}

// ---- 4. subscriptions per client ------------------------------------------------------------------------------

#[test]
fn subscriptions_beyond_the_limit_get_quota_exceeded_mqtt_3_9_3_1() {
    let mut h = with(Config {
        max_subscriptions_per_client: 2,
        ..Config::default()
    });
    let sub = connected(&mut h, v5("sub"));
    let options = SubscriptionOptions::default();
    let filters = ["a", "b", "c"].iter().map(|f| (f.to_string(), options)).collect();
    let suback = subscribe_packet(&mut h, sub, filters, Properties::default());
    assert_eq!(
        suback.reasons,
        vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::QUOTA_EXCEEDED
        ]
    );
    // Replacing an existing subscription is not a new one [MQTT-3.8.4-3].
    assert_eq!(
        subscribe(&mut h, sub, "a", QoS::AtLeastOnce).reasons,
        vec![ReasonCode::GRANTED_QOS_1]
    );
    // Room again after UNSUBSCRIBE.
    h.send(
        sub,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 8,
            properties: Default::default(),
            filters: vec!["b".to_string()],
        }),
    );
    let _ = h.recv_all(sub);
    assert_eq!(
        subscribe(&mut h, sub, "c", QoS::AtMostOnce).reasons,
        vec![ReasonCode::GRANTED_QOS_0]
    );
    // 3.1.1: 0x80 Failure.
    let old = connected(&mut h, v311("old"));
    subscribe(&mut h, old, "x", QoS::AtMostOnce);
    subscribe(&mut h, old, "y", QoS::AtMostOnce);
    assert_eq!(
        subscribe(&mut h, old, "z", QoS::AtMostOnce).reasons,
        vec![ReasonCode(0x80)]
    );
}

// ---- 5. topic levels and length -------------------------------------------------------------------------------

#[test]
fn publish_to_a_topic_over_the_limits_gets_0x90_in_puback_mqtt_3_4_2_1() {
    let mut h = with(Config {
        max_topic_levels: 3,
        max_topic_length: 20,
        ..Config::default()
    });
    let sub = connected(&mut h, v5("sub"));
    subscribe(&mut h, sub, "#", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    publish(&mut h, publisher, "a/b/c/d", "deep", QoS::AtLeastOnce, 1);
    publish(
        &mut h,
        publisher,
        "a/bbbbbbbbbbbbbbbbbbbbbbbbb",
        "long",
        QoS::ExactlyOnce,
        2,
    );
    publish(&mut h, publisher, "a/b/c", "ok", QoS::AtLeastOnce, 3);
    publish(&mut h, publisher, "a/b/c/d", "deep0", QoS::AtMostOnce, 0);
    // Not malformed, only refused by this server: 0x90 Topic Name invalid, and the connection stays up.
    assert_eq!(
        acks(&mut h, publisher),
        vec![
            (1, ReasonCode::TOPIC_NAME_INVALID),
            (2, ReasonCode::TOPIC_NAME_INVALID),
            (3, ReasonCode::SUCCESS)
        ]
    );
    assert!(!h.is_closed(publisher));
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["ok"]);
}

#[test]
fn subscribe_to_a_filter_over_the_limits_gets_0x8f_mqtt_3_9_3_1() {
    let mut h = with(Config {
        max_topic_levels: 2,
        max_topic_length: 30,
        ..Config::default()
    });
    let sub = connected(&mut h, v5("sub"));
    let options = SubscriptionOptions::default();
    let filters = [
        "a/b",
        "a/b/c",
        "$share/group/a/+",
        "$share/group/a/+/c",
        &"x".repeat(31),
    ]
    .iter()
    .map(|f| (f.to_string(), options))
    .collect();
    let suback = subscribe_packet(&mut h, sub, filters, Properties::default());
    assert_eq!(
        suback.reasons,
        vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::TOPIC_FILTER_INVALID,
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::TOPIC_FILTER_INVALID,
            ReasonCode::TOPIC_FILTER_INVALID
        ]
    );
}

#[test]
fn will_topic_over_the_limits_refuses_the_connect() {
    let mut h = with(Config {
        max_topic_levels: 2,
        ..Config::default()
    });
    let mut connect = v5("w");
    connect.will = Some(Will {
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "a/b/c".to_string(),
        payload: bytes::Bytes::from_static(b"bye"),
        properties: Properties::default(),
    });
    let (_, reason) = connect_from(&mut h, [10, 0, 0, 1], connect);
    assert_eq!(reason, ReasonCode::TOPIC_NAME_INVALID);
}

// ---- 6. queued bytes per session ------------------------------------------------------------------------------

/// A subscriber allowing one message in flight that does not acknowledge yet, and a publisher.
fn slow_subscriber(config: Config) -> (Harness, ConnectionId, ConnectionId) {
    let mut h = with(config);
    let mut connect = v5("slow");
    connect.properties.receive_maximum = Some(1);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(600);
    let sub = connected(&mut h, connect);
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    (h, sub, publisher)
}

#[test]
fn online_session_at_its_byte_bound_holds_the_publisher_back() {
    let (mut h, sub, publisher) = slow_subscriber(Config {
        max_queued_bytes: 25,
        ..Config::default()
    });
    // 10 bytes each: 1 in flight, 2 and 3 queued (30 bytes), 4 does not fit.
    for i in 1..=4u16 {
        publish(&mut h, publisher, "t", &payload_of(10, i), QoS::AtLeastOnce, i);
    }
    assert_eq!(acks(&mut h, publisher).len(), 3, "the fourth waits for room");
    assert_accounting(&h);
    assert_eq!(h.broker.queued_bytes_total(), 30);
    let mut received = Vec::new();
    for _ in 0..6 {
        for p in publishes(&mut h, sub) {
            received.push(p.payload.clone());
            h.send(sub, Packet::PubAck(PubResponse::new(p.packet_id, ReasonCode::SUCCESS)));
        }
        assert_accounting(&h);
    }
    assert_eq!(received.len(), 4);
    assert_eq!(acks(&mut h, publisher), vec![(4, ReasonCode::SUCCESS)]);
    assert_eq!(h.broker.stats().messages_dropped, 0);
    assert_eq!(h.broker.queued_bytes_total(), 0);
}

#[test]
fn offline_session_at_its_byte_bound_drops_and_counts() {
    let (mut h, sub, publisher) = slow_subscriber(Config {
        max_queued_bytes: 25,
        ..Config::default()
    });
    h.drop_connection(sub);
    for i in 1..=5u16 {
        publish(&mut h, publisher, "t", &payload_of(10, i), QoS::AtLeastOnce, i);
    }
    // Offline sessions never hold anyone back: all five acknowledged, two dropped.
    assert_eq!(acks(&mut h, publisher).len(), 5);
    assert_eq!(h.broker.stats().messages_dropped, 2);
    assert_eq!(h.broker.queued_bytes_total(), 30);
    assert_accounting(&h);
}

// ---- 7. total queued bytes ------------------------------------------------------------------------------------

#[test]
fn total_budget_refuses_v5_qos1_with_quota_exceeded() {
    let (mut h, sub, publisher) = slow_subscriber(Config {
        max_queued_bytes_total: 40,
        ..Config::default()
    });
    for i in 1..=5u16 {
        publish(&mut h, publisher, "t", &payload_of(10, i), QoS::AtLeastOnce, i);
    }
    let answers = acks(&mut h, publisher);
    assert_eq!(
        answers.iter().map(|(_, r)| *r).collect::<Vec<_>>(),
        vec![
            ReasonCode::SUCCESS,
            ReasonCode::SUCCESS,
            ReasonCode::SUCCESS,
            ReasonCode::SUCCESS,
            ReasonCode::QUOTA_EXCEEDED
        ]
    );
    // QoS 0 is never queued, so it still flows.
    publish(&mut h, publisher, "t", "zero", QoS::AtMostOnce, 0);
    let got = publishes(&mut h, sub);
    assert_eq!(got.len(), 2, "the inflight one and the QoS 0 one");
    assert_accounting(&h);
}

#[test]
fn total_budget_holds_v311_publishers_until_it_drains() {
    let (mut h, sub, _) = slow_subscriber(Config {
        max_queued_bytes_total: 40,
        ..Config::default()
    });
    let publisher = connected(&mut h, v311("old"));
    for i in 1..=6u16 {
        publish(&mut h, publisher, "t", &payload_of(10, i), QoS::AtLeastOnce, i);
    }
    assert_eq!(acks(&mut h, publisher).len(), 4, "5 and 6 wait for the budget");
    let mut received = 0;
    for _ in 0..10 {
        for p in publishes(&mut h, sub) {
            received += 1;
            h.send(sub, Packet::PubAck(PubResponse::new(p.packet_id, ReasonCode::SUCCESS)));
        }
        assert_accounting(&h);
    }
    assert_eq!(received, 6);
    assert_eq!(acks(&mut h, publisher).len(), 2);
    assert_eq!(h.broker.stats().messages_dropped, 0);
}

#[test]
fn total_budget_is_made_from_offline_sessions_oldest_messages_first() {
    let (mut h, sub, publisher) = slow_subscriber(Config {
        max_queued_bytes_total: 40,
        ..Config::default()
    });
    h.drop_connection(sub);
    for i in 1..=4u16 {
        publish(&mut h, publisher, "t", &payload_of(10, i), QoS::AtLeastOnce, i);
    }
    assert_eq!(h.broker.queued_bytes_total(), 40);
    // The budget is used up by an offline session: its oldest message gives way, the new one is accepted.
    publish(&mut h, publisher, "t", &payload_of(10, 5), QoS::AtLeastOnce, 5);
    let answers = acks(&mut h, publisher);
    assert!(answers.iter().all(|(_, r)| *r == ReasonCode::SUCCESS), "{answers:?}");
    assert_eq!(h.broker.stats().messages_dropped, 1);
    assert_accounting(&h);
    let mut connect = v5("slow");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(600);
    let sub = connected(&mut h, connect);
    let mut got = Vec::new();
    for _ in 0..6 {
        for p in publishes(&mut h, sub) {
            got.push(String::from_utf8_lossy(&p.payload).trim_end_matches('.').to_string());
            h.send(sub, Packet::PubAck(PubResponse::new(p.packet_id, ReasonCode::SUCCESS)));
        }
    }
    assert_eq!(got, vec!["2", "3", "4", "5"]);
    assert_accounting(&h);
}

#[test]
fn v311_publisher_is_not_held_when_only_offline_inflight_messages_fill_the_budget() {
    let (mut h, sub, _) = slow_subscriber(Config {
        max_queued_bytes_total: 10,
        ..Config::default()
    });
    let publisher = connected(&mut h, v311("old"));
    publish(&mut h, publisher, "t", &payload_of(10, 1), QoS::AtLeastOnce, 1);
    assert_eq!(publishes(&mut h, sub).len(), 1);
    // The subscriber leaves with the message in flight: it must be resent on reconnect [MQTT-4.4.0-1], so it
    // stays, and no amount of waiting would free the budget.
    h.drop_connection(sub);
    publish(&mut h, publisher, "t", &payload_of(10, 2), QoS::AtLeastOnce, 2);
    assert_eq!(
        acks(&mut h, publisher).len(),
        2,
        "acknowledged and dropped rather than held for ever"
    );
    assert_eq!(h.broker.stats().messages_dropped, 1);
    assert_eq!(h.broker.queued_bytes_total(), 10);
    assert_accounting(&h);
}

#[test]
fn queued_bytes_are_released_by_expiry_and_session_end() {
    let (mut h, sub, publisher) = slow_subscriber(Config::default());
    let mut expiring = publish_packet("t", "expires-soon", QoS::AtLeastOnce, 1);
    expiring.properties.message_expiry_interval = Some(1);
    for i in 1..=3u16 {
        publish(&mut h, publisher, "t", &payload_of(10, i), QoS::AtLeastOnce, i + 10);
    }
    h.send(publisher, Packet::Publish(expiring));
    assert_eq!(h.broker.queued_bytes_total(), 42);
    h.drop_connection(sub);
    h.advance(Duration::from_secs(2));
    // Reconnect: the expired one is discarded as the queue is pumped [MQTT-3.3.2-5].
    let mut connect = v5("slow");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(600);
    let sub = connected(&mut h, connect);
    for _ in 0..5 {
        for p in publishes(&mut h, sub) {
            h.send(sub, Packet::PubAck(PubResponse::new(p.packet_id, ReasonCode::SUCCESS)));
        }
    }
    assert_eq!(h.broker.queued_bytes_total(), 0);
    assert_accounting(&h);
    // A session that ends with messages queued gives their bytes back.
    publish(&mut h, publisher, "t", &payload_of(10, 4), QoS::AtLeastOnce, 20);
    publish(&mut h, publisher, "t", &payload_of(10, 5), QoS::AtLeastOnce, 21);
    assert_eq!(h.broker.queued_bytes_total(), 20);
    h.send(
        sub,
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::SUCCESS,
            properties: Properties {
                session_expiry_interval: Some(0),
                ..Properties::default()
            }
            .into(),
        }),
    );
    assert_eq!(h.broker.queued_bytes_total(), 0);
    assert_accounting(&h);
}

// ---- 8. connect timeout ---------------------------------------------------------------------------------------

#[test]
fn connect_timeout_closes_a_connection_that_sent_only_part_of_connect() {
    let mut h = with(Config {
        connect_timeout_ms: 2_000,
        ..Config::default()
    });
    let conn = h.open();
    // A CONNECT fixed header promising more bytes than ever arrive.
    h.send_bytes(conn, &[0x10, 0x20, 0x00]);
    h.advance(Duration::from_millis(1_900));
    assert!(!h.is_closed(conn));
    h.advance(Duration::from_millis(200));
    assert!(h.is_closed(conn));
}

#[test]
fn queued_bytes_are_recounted_after_a_restart() {
    let (mut h, sub, publisher) = slow_subscriber(Config {
        persistence: true,
        max_queued_bytes_total: 1000,
        ..Config::default()
    });
    for i in 1..=3u16 {
        publish(&mut h, publisher, "t", &payload_of(10, i), QoS::AtLeastOnce, i);
    }
    // One in flight (unacknowledged), two queued, then the broker crashes.
    assert_eq!(publishes(&mut h, sub).len(), 1);
    h.crash_and_restart();
    assert_eq!(h.broker.queued_bytes_total(), 30);
    assert_accounting(&h);
    let mut connect = v5("slow");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(600);
    let sub = connected(&mut h, connect);
    for _ in 0..5 {
        for p in publishes(&mut h, sub) {
            h.send(sub, Packet::PubAck(PubResponse::new(p.packet_id, ReasonCode::SUCCESS)));
        }
    }
    assert_eq!(h.broker.queued_bytes_total(), 0);
    assert_accounting(&h);
}
