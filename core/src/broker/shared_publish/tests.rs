//! The shared encoding must be byte for byte what the plain encoder writes for each subscriber.

use super::*;
use crate::broker::outbuf::Outbuf;
use crate::broker::{Config, ConnectionId};
use crate::harness::{connect_packet, Harness};
use crate::packet::{Properties, PubResponse, Publish, ReasonCode, Subscribe, SubscriptionOptions};

const SHARED_PAYLOAD_MIN: usize = 2048;

fn message(id: u64, topic: &str, payload_len: usize, properties: Properties) -> Arc<Message> {
    Arc::new(Message {
        id,
        topic: topic.into(),
        payload: Bytes::from((0..payload_len).map(|i| i as u8).collect::<Vec<u8>>()),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: properties.into(),
        expires_at: None,
    })
}

fn rich_properties() -> Properties {
    Properties {
        payload_format_indicator: Some(1),
        content_type: Some("text/plain".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "second".into())],
        ..Properties::default()
    }
}

/// Bytes the plain path writes for this delivery: `to_publish`, then `encode`.
fn plain(message: &Arc<Message>, form: Form, version: ProtocolVersion, packet_id: u16) -> Vec<u8> {
    let delivery = Delivery {
        message: Arc::clone(message),
        qos: form.qos,
        retain: form.retain,
        subscription_ids: Vec::new(),
        seq: 0,
    };
    let publish_id = if form.qos == QoS::AtMostOnce { 0 } else { packet_id };
    let mut out = BytesMut::new();
    encode(
        &Packet::Publish(delivery.to_publish(publish_id, false, Time::ZERO)),
        version,
        &mut out,
    )
    .expect("encodes");
    out.to_vec()
}

fn shared(cache: &mut SharedPublishes, message: &Arc<Message>, form: Form, packet_id: u16) -> Vec<u8> {
    let encoded = cache
        .get(message, form, true, Time::ZERO, SHARED_PAYLOAD_MIN)
        .expect("cached");
    let mut outbuf = Outbuf::default();
    assert!(outbuf.append_shared(encoded, packet_id, usize::MAX));
    let mut bytes = Vec::new();
    outbuf.drain(|chunk| bytes.extend_from_slice(&chunk));
    bytes
}

#[test]
fn the_shared_bytes_are_the_plain_encoders_for_every_qos_version_and_property_set() {
    let mut checked = 0;
    let mut id = 0;
    for version in [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for retain in [false, true] {
                for properties in [Properties::default(), rich_properties()] {
                    // Empty, small (copied into the head) and large (shared `Bytes` after the head); a topic long
                    // enough for a two-byte remaining length.
                    for (payload_len, topic) in [
                        (0, "a/b"),
                        (64, "sensors/x"),
                        (200, &"t".repeat(300)[..]),
                        (4096, "big"),
                    ] {
                        id += 1;
                        let message = message(id, topic, payload_len, properties.clone());
                        let form = Form {
                            v5: version.is_v5(),
                            qos,
                            retain,
                        };
                        let mut cache = SharedPublishes::default();
                        for packet_id in [1, 0x1234, 0xFFFF] {
                            assert_eq!(
                                shared(&mut cache, &message, form, packet_id),
                                plain(&message, form, version, packet_id),
                                "{version:?} {qos:?} retain={retain} payload={payload_len} id={packet_id} \
                                 properties={}",
                                !properties.is_empty()
                            );
                            checked += 1;
                        }
                        assert_eq!(cache.hits, 2, "encoded once, reused for the other two ids");
                    }
                }
            }
        }
    }
    assert_eq!(checked, 3 * 3 * 2 * 2 * 4 * 3);
}

#[test]
fn a_large_payload_stays_the_messages_own_bytes() {
    let message = message(1, "big", 4096, Properties::default());
    let form = Form {
        v5: true,
        qos: QoS::AtLeastOnce,
        retain: false,
    };
    let mut cache = SharedPublishes::default();
    let encoded = cache
        .get(&message, form, true, Time::ZERO, SHARED_PAYLOAD_MIN)
        .expect("cached");
    let payload = encoded.payload.as_ref().expect("shared, not copied");
    assert_eq!(payload.as_ptr(), message.payload.as_ptr());
    assert!(encoded.head.len() < 16, "the head is only the PUBLISH header");
}

#[test]
fn an_entry_is_the_same_message_not_just_the_same_id() {
    let form = Form {
        v5: false,
        qos: QoS::AtLeastOnce,
        retain: false,
    };
    let mut cache = SharedPublishes::default();
    let first = message(7, "first", 10, Properties::default());
    let second = message(7, "second", 10, Properties::default());
    shared(&mut cache, &first, form, 1);
    assert_eq!(
        shared(&mut cache, &second, form, 1),
        plain(&second, form, ProtocolVersion::V3_1_1, 1)
    );
    // Each form of a message is its own entry.
    let v5 = Form { v5: true, ..form };
    assert_eq!(
        shared(&mut cache, &second, v5, 1),
        plain(&second, v5, ProtocolVersion::V5, 1)
    );
    assert_eq!(cache.hits, 0);
    // A cached message freed and another of the same size allocated: the entry's `Weak` keeps the old allocation,
    // so the new one cannot take its address and be mistaken for it.
    drop(first);
    drop(second);
    let third = message(7, "third", 10, Properties::default());
    assert_eq!(
        shared(&mut cache, &third, v5, 1),
        plain(&third, v5, ProtocolVersion::V5, 1)
    );
    assert_eq!(cache.hits, 0);
}

#[test]
fn a_one_to_one_delivery_and_a_long_header_are_not_cached() {
    let form = Form {
        v5: true,
        qos: QoS::AtLeastOnce,
        retain: false,
    };
    let mut cache = SharedPublishes::default();
    let message = message(1, "t", 10, Properties::default());
    assert!(cache
        .get(&message, form, false, Time::ZERO, SHARED_PAYLOAD_MIN)
        .is_none());
    assert!(cache.slots.is_empty(), "nothing allocated until something fans out");
    let long_topic = self::message(2, &"x".repeat(MAX_CACHED_HEADER), 10, Properties::default());
    assert!(cache
        .get(&long_topic, form, true, Time::ZERO, SHARED_PAYLOAD_MIN)
        .is_none());
    // Once made, an entry is used also by the delivery that would not have made it.
    assert!(cache
        .get(&message, form, true, Time::ZERO, SHARED_PAYLOAD_MIN)
        .is_some());
    assert!(cache
        .get(&message, form, false, Time::ZERO, SHARED_PAYLOAD_MIN)
        .is_some());
    assert_eq!(cache.hits, 1);
    assert_eq!(cache.slots.len(), SLOTS);
}

/// A whole broker: subscribers of every kind (3.1.1 and 5, QoS 0/1/2, a Subscription Identifier, topic aliases, a
/// small Maximum Packet Size) receive the same bytes, chunk for chunk, whether the shared encodings are used or
/// not.
#[test]
fn a_fan_out_hands_out_the_same_bytes_with_and_without_shared_encodings() {
    let (with, hits) = run_fan_out(true);
    let (without, no_hits) = run_fan_out(false);
    assert!(hits > 100, "the shared encodings were used ({hits} hits)");
    assert_eq!(no_hits, 0);
    assert_eq!(with.len(), without.len());
    for ((conn, bytes), (other_conn, other_bytes)) in with.iter().zip(&without) {
        assert_eq!(conn, other_conn);
        assert_eq!(bytes, other_bytes, "connection {conn:?}");
    }
}

/// Protocol, granted QoS, Subscription Identifier, Topic Alias Maximum, Maximum Packet Size.
type SubscriberKind = (ProtocolVersion, QoS, Option<u32>, Option<u16>, Option<u32>);

fn run_fan_out(sharing: bool) -> (Vec<(ConnectionId, Vec<u8>)>, u64) {
    let mut h = Harness::new(Config {
        sys_interval: 0,
        shared_payload_min: SHARED_PAYLOAD_MIN,
        max_inflight: 4,
        ..Config::default()
    });
    h.broker.shared_publishes.disabled = !sharing;
    let mut subscribers = Vec::new();
    let kinds: [SubscriberKind; 8] = [
        (ProtocolVersion::V3_1_1, QoS::AtMostOnce, None, None, None),
        (ProtocolVersion::V3_1_1, QoS::AtLeastOnce, None, None, None),
        (ProtocolVersion::V3_1, QoS::ExactlyOnce, None, None, None),
        (ProtocolVersion::V5, QoS::AtLeastOnce, None, None, None),
        (ProtocolVersion::V5, QoS::ExactlyOnce, None, None, None),
        (ProtocolVersion::V5, QoS::AtLeastOnce, Some(9), None, None),
        (ProtocolVersion::V5, QoS::AtLeastOnce, None, Some(3), None),
        (ProtocolVersion::V5, QoS::AtLeastOnce, None, None, Some(400)),
    ];
    for (i, (version, qos, identifier, alias_maximum, max_packet)) in kinds.into_iter().enumerate() {
        let mut connect = connect_packet(version, &format!("sub-{i}"));
        connect.properties.topic_alias_maximum = alias_maximum;
        connect.properties.maximum_packet_size = max_packet;
        let (conn, _) = h.connect(connect);
        let options = SubscriptionOptions {
            qos,
            retain_as_published: i % 2 == 0,
            ..SubscriptionOptions::default()
        };
        let properties = Properties {
            subscription_identifiers: identifier.into_iter().collect(),
            ..Properties::default()
        };
        h.send(
            conn,
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: properties.into(),
                filters: vec![("fan/#".into(), options)],
            }),
        );
        subscribers.push((conn, version));
    }
    let (publisher, _) = h.connect(connect_packet(ProtocolVersion::V5, "pub"));
    h.transmits = Some(Vec::new());
    for n in 0..60u16 {
        let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][usize::from(n % 3)];
        let properties = if n % 4 == 0 {
            rich_properties()
        } else {
            Properties::default()
        };
        let payload_len = [5, 64, 300, 4096][usize::from(n % 4)];
        h.send(
            publisher,
            Packet::Publish(Publish {
                dup: false,
                qos,
                retain: n % 5 == 0,
                topic: format!("fan/{}", n % 7),
                packet_id: if qos == QoS::AtMostOnce { 0 } else { n + 1 },
                properties: properties.into(),
                payload: Bytes::from(vec![n as u8; payload_len]),
            }),
        );
    }
    // Acknowledge what comes until nothing more does: the small inflight windows move and pump queued messages
    // again, one at a time.
    let mut received = 0;
    for _ in 0..1000 {
        let mut acked = false;
        for (conn, _) in &subscribers {
            for packet in h.recv_all(*conn) {
                let ok = |id| PubResponse::new(id, ReasonCode::SUCCESS);
                let reply = match packet {
                    Packet::Publish(publish) => {
                        received += 1;
                        match publish.qos {
                            QoS::AtMostOnce => None,
                            QoS::AtLeastOnce => Some(Packet::PubAck(ok(publish.packet_id))),
                            QoS::ExactlyOnce => Some(Packet::PubRec(ok(publish.packet_id))),
                        }
                    }
                    Packet::PubRel(rel) => Some(Packet::PubComp(ok(rel.packet_id))),
                    _ => None,
                };
                if let Some(reply) = reply {
                    h.send(*conn, reply);
                    acked = true;
                }
            }
        }
        if !acked {
            break;
        }
    }
    // Every subscriber but the one whose Maximum Packet Size drops the large ones got all 60, or the QoS 0 one
    // as many as its buffer took.
    assert!(received > 7 * 45, "{received} PUBLISHes received");
    let transmits = h.transmits.take().expect("recording");
    let per_conn = subscribers
        .iter()
        .map(|(conn, _)| {
            let bytes = transmits
                .iter()
                .filter(|(c, _)| c == conn)
                .flat_map(|(_, data)| data.iter().copied())
                .collect();
            (*conn, bytes)
        })
        .collect();
    (per_conn, h.broker.shared_publishes.hits)
}
