//! Seeded generation of random *valid* packets for a protocol version, for round-trip property tests and fuzzing.
//! Fields that a version cannot carry (properties before MQTT 5, reason codes on 3.1.1 acknowledgements) are left
//! at their defaults, so that decode(encode(p)) == p holds exactly.

use crate::packet::*;
use bytes::Bytes;
use rand::Rng;

const TOPIC_WORDS: &[&str] = &["a", "b", "sensors", "room1", "", "temp", "$SYS", "ü", "x y"];

fn topic<R: Rng>(rng: &mut R) -> String {
    let levels = rng.gen_range(1..=4);
    let mut parts: Vec<&str> = (0..levels)
        .map(|_| TOPIC_WORDS[rng.gen_range(0..TOPIC_WORDS.len())])
        .collect();
    if parts.iter().all(|p| p.is_empty()) {
        parts[0] = "t";
    }
    parts.join("/")
}

fn filter<R: Rng>(rng: &mut R) -> String {
    let mut levels: Vec<String> = topic(rng).split('/').map(str::to_string).collect();
    for level in levels.iter_mut() {
        if rng.gen_bool(0.2) {
            *level = "+".into();
        }
    }
    if rng.gen_bool(0.3) {
        levels.push("#".into());
    }
    let joined = levels.join("/");
    if rng.gen_bool(0.1) {
        format!("$share/group{}/{}", rng.gen_range(0..3), joined)
    } else {
        joined
    }
}

fn text<R: Rng>(rng: &mut R, max: usize) -> String {
    let len = rng.gen_range(0..=max);
    (0..len)
        .map(|_| match rng.gen_range(0..10) {
            0 => 'é',
            1 => '€',
            2 => '𝄞',
            _ => char::from(rng.gen_range(b'a'..=b'z')),
        })
        .collect()
}

fn binary<R: Rng>(rng: &mut R, max: usize) -> Bytes {
    let len = rng.gen_range(0..=max);
    Bytes::from((0..len).map(|_| rng.gen::<u8>()).collect::<Vec<u8>>())
}

fn qos<R: Rng>(rng: &mut R) -> QoS {
    match rng.gen_range(0..3) {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn packet_id<R: Rng>(rng: &mut R) -> u16 {
    rng.gen_range(1..=u16::MAX)
}

fn maybe<R: Rng, T>(rng: &mut R, make: impl FnOnce(&mut R) -> T) -> Option<T> {
    if rng.gen_bool(0.4) {
        Some(make(rng))
    } else {
        None
    }
}

fn user_properties<R: Rng>(rng: &mut R) -> Vec<(String, String)> {
    let n = if rng.gen_bool(0.3) { rng.gen_range(1..4) } else { 0 };
    (0..n).map(|_| (text(rng, 6), text(rng, 6))).collect()
}

fn message_properties<R: Rng>(rng: &mut R, p: &mut Properties) {
    p.payload_format_indicator = maybe(rng, |r| r.gen_range(0..=1));
    p.message_expiry_interval = maybe(rng, |r| r.gen());
    p.content_type = maybe(rng, |r| text(r, 10));
    p.response_topic = maybe(rng, topic);
    p.correlation_data = maybe(rng, |r| binary(r, 8));
    p.user_properties = user_properties(rng);
}

fn reason_props<R: Rng>(rng: &mut R) -> Properties {
    Properties {
        reason_string: maybe(rng, |r| text(r, 12)),
        user_properties: user_properties(rng),
        ..Default::default()
    }
}

fn pick<R: Rng>(rng: &mut R, codes: &[u8]) -> ReasonCode {
    ReasonCode(codes[rng.gen_range(0..codes.len())])
}

/// A random CONNECT for `version`.
pub fn connect<R: Rng>(rng: &mut R, version: ProtocolVersion) -> Connect {
    let v5 = version.is_v5();
    let mut properties = Properties::default();
    if v5 {
        properties.session_expiry_interval = maybe(rng, |r| r.gen());
        properties.receive_maximum = maybe(rng, |r| r.gen_range(1..=u16::MAX));
        properties.maximum_packet_size = maybe(rng, |r| r.gen_range(1..=u32::MAX));
        properties.topic_alias_maximum = maybe(rng, |r| r.gen());
        properties.request_response_information = maybe(rng, |r| r.gen_range(0..=1));
        properties.request_problem_information = maybe(rng, |r| r.gen_range(0..=1));
        properties.user_properties = user_properties(rng);
        if rng.gen_bool(0.1) {
            properties.authentication_method = Some("SCRAM-SHA-1".into());
            properties.authentication_data = maybe(rng, |r| binary(r, 8));
        }
    }
    let will = maybe(rng, |r| {
        let mut props = Properties::default();
        if v5 {
            message_properties(r, &mut props);
            props.will_delay_interval = maybe(r, |r| r.gen());
        }
        Will {
            topic: topic(r).replace(['+', '#'], "w"),
            payload: binary(r, 16),
            qos: qos(r),
            retain: r.gen(),
            properties: props,
        }
    });
    let username = maybe(rng, |r| text(r, 8));
    // 3.1.1 forbids a password without a user name [MQTT-3.1.2-22].
    let password = if username.is_some() || v5 {
        maybe(rng, |r| binary(r, 8))
    } else {
        None
    };
    let client_id = match version {
        ProtocolVersion::V3_1 => format!("c{}", rng.gen_range(0..1000)),
        _ => text(rng, 12),
    };
    Connect {
        protocol: version,
        clean_start: rng.gen(),
        keep_alive: rng.gen(),
        properties,
        client_id,
        will,
        username,
        password,
    }
}

/// A random PUBLISH for `version`.
pub fn publish<R: Rng>(rng: &mut R, version: ProtocolVersion) -> Publish {
    let qos = qos(rng);
    let mut properties = Properties::default();
    if version.is_v5() {
        message_properties(rng, &mut properties);
        properties.topic_alias = maybe(rng, |r| r.gen_range(1..=u16::MAX));
        let n = if rng.gen_bool(0.2) { rng.gen_range(1..3) } else { 0 };
        properties.subscription_identifiers = (0..n).map(|_| rng.gen_range(1..=crate::codec::VARINT_MAX)).collect();
    }
    Publish {
        dup: qos != QoS::AtMostOnce && rng.gen(),
        qos,
        retain: rng.gen(),
        topic: topic(rng),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { packet_id(rng) },
        properties: properties.into(),
        payload: binary(rng, 64),
    }
}

/// A random valid packet of any of the 15 types (AUTH only for MQTT 5).
pub fn packet<R: Rng>(rng: &mut R, version: ProtocolVersion) -> Packet {
    let v5 = version.is_v5();
    let kinds = if v5 { 15 } else { 14 };
    match rng.gen_range(0..kinds) {
        0 => Packet::Connect(Box::new(connect(rng, version))),
        1 => {
            let mut connack = ConnAck {
                session_present: rng.gen(),
                ..Default::default()
            };
            if v5 {
                connack.reason = pick(rng, &[0x00, 0x80, 0x85, 0x86, 0x87, 0x89, 0x9C]);
                connack.properties = reason_props(rng);
                connack.properties.assigned_client_identifier = maybe(rng, |r| text(r, 10));
                connack.properties.server_keep_alive = maybe(rng, |r| r.gen());
                connack.properties.maximum_qos = maybe(rng, |r| r.gen_range(0..=1));
                connack.properties.retain_available = maybe(rng, |r| r.gen_range(0..=1));
                connack.properties.topic_alias_maximum = maybe(rng, |r| r.gen());
                connack.properties.shared_subscription_available = maybe(rng, |r| r.gen_range(0..=1));
            } else {
                connack.reason = pick(rng, &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87]);
            }
            // [MQTT-3.2.2-6], [MQTT-3.2.2-4]: Session Present only with success.
            connack.session_present &= connack.reason == ReasonCode::SUCCESS;
            Packet::ConnAck(connack)
        }
        2 => Packet::Publish(publish(rng, version)),
        n @ 3..=6 => {
            let mut response = PubResponse::new(packet_id(rng), ReasonCode::SUCCESS);
            if v5 {
                let codes: &[u8] = if n <= 4 {
                    &[0x00, 0x10, 0x80, 0x87, 0x97]
                } else {
                    &[0x00, 0x92]
                };
                response.reason = pick(rng, codes);
                response.properties = reason_props(rng);
            }
            match n {
                3 => Packet::PubAck(response),
                4 => Packet::PubRec(response),
                5 => Packet::PubRel(response),
                _ => Packet::PubComp(response),
            }
        }
        7 => {
            let count = rng.gen_range(1..4);
            let filters = (0..count)
                .map(|_| {
                    let mut options = SubscriptionOptions {
                        qos: qos(rng),
                        ..Default::default()
                    };
                    if v5 {
                        options.no_local = rng.gen();
                        options.retain_as_published = rng.gen();
                        options.retain_handling = match rng.gen_range(0..3) {
                            0 => RetainHandling::SendAtSubscribe,
                            1 => RetainHandling::SendIfNew,
                            _ => RetainHandling::DoNotSend,
                        };
                    }
                    (filter(rng), options)
                })
                .collect();
            let mut properties = Properties::default();
            if v5 {
                properties.subscription_identifiers = maybe(rng, |r| r.gen_range(1..=1000)).into_iter().collect();
                properties.user_properties = user_properties(rng);
            }
            Packet::Subscribe(Subscribe {
                packet_id: packet_id(rng),
                properties,
                filters,
            })
        }
        8 => {
            let count = rng.gen_range(1..4);
            let codes: &[u8] = if v5 {
                &[0x00, 0x01, 0x02, 0x80, 0x87, 0x8F, 0xA2]
            } else {
                &[0x00, 0x01, 0x02, 0x80]
            };
            Packet::SubAck(SubAck {
                packet_id: packet_id(rng),
                properties: if v5 { reason_props(rng) } else { Properties::default() },
                reasons: (0..count).map(|_| pick(rng, codes)).collect(),
            })
        }
        9 => {
            let count = rng.gen_range(1..4);
            Packet::Unsubscribe(Unsubscribe {
                packet_id: packet_id(rng),
                properties: Properties {
                    user_properties: if v5 { user_properties(rng) } else { Vec::new() },
                    ..Default::default()
                },
                filters: (0..count).map(|_| filter(rng)).collect(),
            })
        }
        10 => {
            let mut unsuback = UnsubAck {
                packet_id: packet_id(rng),
                ..Default::default()
            };
            if v5 {
                unsuback.properties = reason_props(rng);
                let count = rng.gen_range(1..4);
                unsuback.reasons = (0..count).map(|_| pick(rng, &[0x00, 0x11, 0x80, 0x87])).collect();
            }
            Packet::UnsubAck(unsuback)
        }
        11 => Packet::PingReq,
        12 => Packet::PingResp,
        13 => {
            let mut disconnect = Disconnect::default();
            if v5 {
                disconnect.reason = pick(rng, &[0x00, 0x04, 0x81, 0x82, 0x8B, 0x8D, 0x8E, 0x93, 0x95]);
                disconnect.properties = reason_props(rng);
                disconnect.properties.session_expiry_interval = maybe(rng, |r| r.gen());
                disconnect.properties.server_reference = maybe(rng, |r| text(r, 8));
            }
            Packet::Disconnect(disconnect)
        }
        _ => {
            let mut properties = reason_props(rng);
            properties.authentication_method = maybe(rng, |r| text(r, 8));
            properties.authentication_data = maybe(rng, |r| binary(r, 8));
            Packet::Auth(Auth {
                reason: pick(rng, &[0x00, 0x18, 0x19]),
                properties,
            })
        }
    }
}
