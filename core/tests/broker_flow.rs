//! Flow control of incoming QoS 1/2 PUBLISHes: the broker acknowledges a message only once every online
//! subscriber's queue has taken it, so an acknowledged message is never dropped for a slow consumer. A PUBLISH that
//! does not fit is held unacknowledged; the publisher's Receive Maximum [MQTT-3.3.4-7] then stops it.

mod common;

use common::*;
use mqtt_core::broker::Config;
use mqtt_core::broker::ConnectionId;
use mqtt_core::harness::Harness;
use mqtt_core::packet::*;

/// A broker whose session queues hold two messages, with a subscriber that allows one message in flight.
fn slow_subscriber_setup(receive_maximum: u16) -> (Harness, ConnectionId, ConnectionId) {
    let config = Config {
        max_queued_messages: 2,
        receive_maximum,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let mut connect = v5("slow");
    connect.properties.receive_maximum = Some(1);
    let sub = connected(&mut h, connect);
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    (h, sub, publisher)
}

fn pubacks(h: &mut Harness, conn: ConnectionId) -> Vec<u16> {
    h.recv_all(conn)
        .into_iter()
        .filter_map(|p| match p {
            Packet::PubAck(ack) => Some(ack.packet_id),
            _ => None,
        })
        .collect()
}

/// The ids of the PUBRECs `conn` has received so far; a DISCONNECT among them fails the test.
fn pubrecs(h: &mut Harness, conn: ConnectionId) -> Vec<u16> {
    h.recv_all(conn)
        .into_iter()
        .filter_map(|p| match p {
            Packet::PubRec(r) => Some(r.packet_id),
            Packet::Disconnect(d) => panic!("disconnected: {:?}", d.reason),
            _ => None,
        })
        .collect()
}

/// Acknowledges every PUBLISH the subscriber has received so far; returns their payloads.
fn ack_all(h: &mut Harness, sub: ConnectionId) -> Vec<String> {
    let got = publishes(h, sub);
    for p in &got {
        h.send(sub, Packet::PubAck(PubResponse::new(p.packet_id, ReasonCode::SUCCESS)));
    }
    payloads(&got)
}

#[test]
fn publish_to_a_full_queue_is_held_unacknowledged_then_delivered_in_order() {
    let (mut h, sub, publisher) = slow_subscriber_setup(1024);
    // 1 goes in flight, 2 and 3 fill the queue; 4 and 5 do not fit.
    for i in 1..=5u16 {
        publish(&mut h, publisher, "t", &i.to_string(), QoS::AtLeastOnce, i);
    }
    assert_eq!(pubacks(&mut h, publisher), vec![1, 2, 3], "4 and 5 must wait for room");
    assert_eq!(h.broker.stats().messages_dropped, 0);

    let mut received = Vec::new();
    for _ in 0..10 {
        received.extend(ack_all(&mut h, sub));
    }
    // Every message arrives once, in the order published [MQTT-4.6.0-5], and the held ones are acknowledged.
    assert_eq!(received, vec!["1", "2", "3", "4", "5"]);
    assert_eq!(pubacks(&mut h, publisher), vec![4, 5]);
    assert_eq!(h.broker.stats().messages_dropped, 0);
    assert!(h.broker.stats().publishes_held >= 2);
}

#[test]
fn qos2_publish_to_a_full_queue_gets_pubrec_only_when_taken_mqtt_4_3_3() {
    let (mut h, sub, publisher) = slow_subscriber_setup(1024);
    for i in 1..=4u16 {
        publish(&mut h, publisher, "t", &i.to_string(), QoS::ExactlyOnce, i);
    }
    assert_eq!(pubrecs(&mut h, publisher), vec![1, 2, 3]);
    // A retransmission of the held PUBLISH is not a second message.
    let mut again = publish_packet("t", "4", QoS::ExactlyOnce, 4);
    again.dup = true;
    h.send(publisher, Packet::Publish(again));
    assert_eq!(pubrecs(&mut h, publisher), Vec::<u16>::new());
    let mut received = Vec::new();
    for _ in 0..10 {
        received.extend(ack_all(&mut h, sub));
    }
    assert_eq!(received, vec!["1", "2", "3", "4"]);
    assert_eq!(pubrecs(&mut h, publisher), vec![4]);
}

/// A QoS 2 resend of a PUBLISH already received (its id awaits PUBREL) read behind a held PUBLISH is answered in
/// its turn: PUBRECs leave in the order the PUBLISHes were received [MQTT-4.6.0-3], [MQTT-4.3.3-9]. Found by the
/// simulator's acknowledgement-order check (seed 2703: PUBREC 92 overtook the held id 80). The held duplicate does
/// not count twice against Receive Maximum [MQTT-3.3.4-7].
#[test]
fn qos2_duplicate_behind_a_held_publish_is_answered_in_its_turn_mqtt_4_6_0_3() {
    let (mut h, sub, publisher) = slow_subscriber_setup(5);
    for i in 1..=4u16 {
        publish(&mut h, publisher, "t", &i.to_string(), QoS::ExactlyOnce, i);
    }
    assert_eq!(pubrecs(&mut h, publisher), vec![1, 2, 3], "4 is held for room");
    // The publisher missed PUBREC 2 and sends it again: a duplicate, read after 4.
    let mut again = publish_packet("t", "2", QoS::ExactlyOnce, 2);
    again.dup = true;
    h.send(publisher, Packet::Publish(again));
    assert_eq!(
        pubrecs(&mut h, publisher),
        Vec::<u16>::new(),
        "PUBREC 2 must not overtake the held 4"
    );
    let mut received = Vec::new();
    for _ in 0..10 {
        received.extend(ack_all(&mut h, sub));
    }
    // Delivered once each: the duplicate is not routed again.
    assert_eq!(received, vec!["1", "2", "3", "4"]);
    assert_eq!(pubrecs(&mut h, publisher), vec![4, 2]);
}

#[test]
fn publisher_keeps_being_served_while_its_publish_is_held() {
    let (mut h, sub, publisher) = slow_subscriber_setup(1024);
    // The publisher is also a subscriber of another topic, and publishes QoS 0 there while its QoS 1 waits.
    subscribe(&mut h, publisher, "echo", QoS::AtLeastOnce);
    for i in 1..=4u16 {
        publish(&mut h, publisher, "t", &i.to_string(), QoS::AtLeastOnce, i);
    }
    assert_eq!(pubacks(&mut h, publisher), vec![1, 2, 3]);
    h.send(publisher, Packet::PingReq);
    assert_eq!(
        h.recv(publisher),
        Some(Packet::PingResp),
        "[MQTT-3.12.4-1] while a PUBLISH is held"
    );
    publish(&mut h, publisher, "echo", "qos0", QoS::AtMostOnce, 0);
    assert_eq!(
        payloads(&publishes(&mut h, publisher)),
        vec!["qos0"],
        "QoS 0 is never held"
    );
    assert_eq!(ack_all(&mut h, sub), vec!["1"]);
}

#[test]
fn more_unacknowledged_publishes_than_receive_maximum_is_a_protocol_error_mqtt_3_3_4_7() {
    let (mut h, _sub, publisher) = slow_subscriber_setup(2);
    // 1..=3 are taken; 4 and 5 are held (2 unacknowledged = Receive Maximum); 6 exceeds it.
    for i in 1..=6u16 {
        publish(&mut h, publisher, "t", &i.to_string(), QoS::AtLeastOnce, i);
    }
    expect_disconnect(&mut h, publisher, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
}

#[test]
fn subscriber_going_offline_releases_held_publishers() {
    let config = Config {
        max_queued_messages: 2,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let mut connect = v5("slow");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(600);
    connect.properties.receive_maximum = Some(1);
    let sub = connected(&mut h, connect.clone());
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    for i in 1..=5u16 {
        publish(&mut h, publisher, "t", &i.to_string(), QoS::AtLeastOnce, i);
    }
    assert_eq!(pubacks(&mut h, publisher), vec![1, 2, 3]);
    // Offline, the session cannot drain: the held messages are taken as far as its queue allows, the rest dropped
    // and counted, and the publisher is no longer held up.
    h.drop_connection(sub);
    assert_eq!(pubacks(&mut h, publisher), vec![4, 5]);
    assert_eq!(h.broker.stats().messages_dropped, 2);
    let (sub, _) = connect_ok(&mut h, connect);
    // [MQTT-4.4.0-1]: the inflight message is resent first, then the queue.
    assert_eq!(payloads(&publishes(&mut h, sub)), vec!["1"]);
}

#[test]
fn held_publishes_are_discarded_with_their_connection() {
    let (mut h, sub, publisher) = slow_subscriber_setup(1024);
    for i in 1..=5u16 {
        publish(&mut h, publisher, "t", &i.to_string(), QoS::AtLeastOnce, i);
    }
    assert_eq!(pubacks(&mut h, publisher), vec![1, 2, 3]);
    // Never acknowledged, so the publisher still owns them and resends them on its next connection.
    h.drop_connection(publisher);
    let mut received = Vec::new();
    for _ in 0..10 {
        received.extend(ack_all(&mut h, sub));
    }
    assert_eq!(received, vec!["1", "2", "3"]);
}

#[test]
fn shared_group_prefers_a_member_with_room() {
    let config = Config {
        max_queued_messages: 1,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let mut slow = v5("slow");
    slow.properties.receive_maximum = Some(1);
    let a = connected(&mut h, slow);
    let b = connected(&mut h, v5("fast"));
    subscribe(&mut h, a, "$share/g/t", QoS::AtLeastOnce);
    subscribe(&mut h, b, "$share/g/t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v5("pub"));
    for i in 1..=6u16 {
        publish(&mut h, publisher, "t", &i.to_string(), QoS::AtLeastOnce, i);
    }
    // a takes one in flight and one queued; everything else goes to b, and nothing is held.
    assert_eq!(pubacks(&mut h, publisher), vec![1, 2, 3, 4, 5, 6]);
    let to_a = publishes(&mut h, a).len();
    let to_b = publishes(&mut h, b).len();
    assert_eq!(
        (to_a, to_a + to_b),
        (1, 5),
        "one in flight to a, one queued for a, the rest to b"
    );
}

#[test]
fn v311_publisher_is_held_the_same_way() {
    let config = Config {
        max_queued_messages: 1,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let sub = connected(&mut h, v311("sub"));
    subscribe(&mut h, sub, "t", QoS::AtLeastOnce);
    let publisher = connected(&mut h, v311("pub"));
    // The 3.1.1 subscriber announces no Receive Maximum; the broker's inflight cap applies.
    for i in 1..=1100u16 {
        publish(&mut h, publisher, "t", &i.to_string(), QoS::AtLeastOnce, i);
    }
    let acked = pubacks(&mut h, publisher).len();
    assert_eq!(acked, 1024 + 1, "max_inflight in flight plus one queued");
    let mut received = 0;
    while received < 1100 {
        let got = ack_all(&mut h, sub).len();
        assert!(got > 0, "stalled at {received}");
        received += got;
    }
    assert_eq!(pubacks(&mut h, publisher).len(), 1100 - 1025);
}

/// [MQTT-3.12.4-1] owes a PINGRESP for every PINGREQ, but a client that floods PINGREQs without reading would
/// make the broker hold its replies without bound: past `max_outbuf_bytes` plus the reply slack it is disconnected,
/// while a client that pipelines a reasonable number is answered in full once it reads.
#[test]
fn a_ping_flood_without_reading_is_disconnected_a_modest_pipeline_is_answered() {
    let config = Config {
        max_outbuf_bytes: 16 * 1024,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let patient = connected(&mut h, v5("patient"));
    let flooder = connected(&mut h, v5("flooder"));
    for conn in [patient, flooder] {
        h.input(mqtt_core::broker::Input::WriteBlocked { conn });
    }
    let pings = [0xC0u8, 0x00].repeat(1000);
    h.send_bytes(patient, &pings);
    for _ in 0..50 {
        h.send_bytes(flooder, &pings);
    }
    assert!(
        h.is_closed(flooder),
        "50,000 unread PINGRESPs exceed 16 KiB + the reply slack"
    );
    assert_eq!(h.broker.stats().unread_reply_closes, 1);
    assert!(!h.is_closed(patient));
    h.input(mqtt_core::broker::Input::Writable { conn: patient });
    let replies = h.recv_all(patient);
    assert_eq!(replies.len(), 1000);
    assert!(replies.iter().all(|p| matches!(p, Packet::PingResp)));
}
