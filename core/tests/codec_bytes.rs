//! Byte-exact tests against packets written out by hand from the specifications' field layouts.

use bytes::{Bytes, BytesMut};
use mqtt_core::codec::{encode, Decoder};
use mqtt_core::packet::*;

fn encoded(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out).expect("encodes");
    out.to_vec()
}

fn decoded(bytes: &[u8], version: Option<ProtocolVersion>) -> Packet {
    let mut decoder = Decoder::new(version, usize::MAX);
    decoder.feed(bytes);
    decoder.next_packet().expect("decodes").expect("complete packet")
}

#[test]
fn v311_connect_with_will_and_credentials() {
    // 3.1.1 section 3.1: "MQTT", level 4, flags: username, password, will retain, will QoS 1, will, clean session.
    let bytes: Vec<u8> = vec![
        0x10,
        0x24, // CONNECT, remaining length 36
        0x00,
        0x04,
        b'M',
        b'Q',
        b'T',
        b'T',
        0x04, // protocol name and level
        0b1110_1110,
        0x00,
        0x3C, // flags, keep alive 60
        0x00,
        0x03,
        b'c',
        b'i',
        b'd', // client id
        0x00,
        0x04,
        b'w',
        b'/',
        b't',
        b'p', // will topic
        0x00,
        0x03,
        b'b',
        b'y',
        b'e', // will payload
        0x00,
        0x04,
        b'u',
        b's',
        b'e',
        b'r', // user name
        0x00,
        0x02,
        b'p',
        b'w', // password
    ];
    let connect = Connect {
        protocol: ProtocolVersion::V3_1_1,
        clean_start: true,
        keep_alive: 60,
        properties: Properties::default(),
        client_id: "cid".into(),
        will: Some(Will {
            topic: "w/tp".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        }),
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"pw")),
    };
    let packet = Packet::Connect(Box::new(connect));
    assert_eq!(encoded(&packet, ProtocolVersion::V3_1_1), bytes);
    assert_eq!(decoded(&bytes, None), packet);
}

#[test]
fn v31_connect_uses_mqisdp() {
    let bytes: Vec<u8> = vec![
        0x10, 0x0F, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x0A, 0x00, 0x01, b'a',
    ];
    let Packet::Connect(connect) = decoded(&bytes, None) else {
        panic!("expected CONNECT");
    };
    assert_eq!(connect.protocol, ProtocolVersion::V3_1);
    assert_eq!(encoded(&Packet::Connect(connect), ProtocolVersion::V3_1), bytes);
}

#[test]
fn v5_connect_with_properties() {
    // MQTT 5.0 section 3.1.2.11: properties after keep alive; Session Expiry 0x11 = 120, Receive Maximum 0x21 = 20.
    let bytes: Vec<u8> = vec![
        0x10, 0x17, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00,
        0x1E, // fixed, name, level, flags, ka 30
        0x08, 0x11, 0x00, 0x00, 0x00, 0x78, 0x21, 0x00, 0x14, // properties (length 8)
        0x00, 0x02, b'i', b'd', // client id
    ];
    let mut connect = Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 30,
        properties: Properties::default(),
        client_id: "id".into(),
        will: None,
        username: None,
        password: None,
    };
    connect.properties.session_expiry_interval = Some(120);
    connect.properties.receive_maximum = Some(20);
    let packet = Packet::Connect(Box::new(connect));
    assert_eq!(encoded(&packet, ProtocolVersion::V5), bytes);
    assert_eq!(decoded(&bytes, None), packet);
}

#[test]
fn v5_publish_with_properties() {
    let bytes: Vec<u8> = vec![
        0x3B, 0x0F, // PUBLISH, DUP, QoS 1, RETAIN
        0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, // topic, packet id 10
        0x05, 0x01, 0x01, 0x23, 0x00, 0x02, // properties: payload format 1, topic alias 2
        b'h', b'i',
    ];
    let mut publish = Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "a/b".into(),
        packet_id: 10,
        properties: Default::default(),
        payload: Bytes::from_static(b"hi"),
    };
    publish.properties.payload_format_indicator = Some(1);
    publish.properties.topic_alias = Some(2);
    let packet = Packet::Publish(publish);
    assert_eq!(encoded(&packet, ProtocolVersion::V5), bytes);
    assert_eq!(decoded(&bytes, Some(ProtocolVersion::V5)), packet);
}

#[test]
fn v5_subscribe_with_options() {
    // Options byte 0b0010_1110: Retain Handling 2, RAP, No Local, QoS 2.
    let bytes: Vec<u8> = vec![0x82, 0x08, 0x00, 0x01, 0x00, 0x00, 0x02, b'a', b'/', 0b0010_1110];
    let options = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
    };
    let packet = Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![("a/".into(), options)],
    });
    assert_eq!(encoded(&packet, ProtocolVersion::V5), bytes);
    assert_eq!(decoded(&bytes, Some(ProtocolVersion::V5)), packet);
}

#[test]
fn v5_puback_short_form_and_with_reason() {
    let success = Packet::PubAck(PubResponse::new(0x1234, ReasonCode::SUCCESS));
    assert_eq!(encoded(&success, ProtocolVersion::V5), vec![0x40, 0x02, 0x12, 0x34]);
    let no_subs = Packet::PubAck(PubResponse::new(1, ReasonCode::NO_MATCHING_SUBSCRIBERS));
    assert_eq!(
        encoded(&no_subs, ProtocolVersion::V5),
        vec![0x40, 0x03, 0x00, 0x01, 0x10]
    );
    // Section 3.4.2.1: remaining length 3 (reason without properties) decodes too.
    assert_eq!(
        decoded(&[0x40, 0x03, 0x00, 0x01, 0x10], Some(ProtocolVersion::V5)),
        no_subs
    );
}

#[test]
fn v311_connack_return_codes() {
    let refused = Packet::ConnAck(ConnAck {
        session_present: false,
        reason: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        properties: Properties::default(),
    });
    assert_eq!(encoded(&refused, ProtocolVersion::V3_1_1), vec![0x20, 0x02, 0x00, 0x04]);
    let accepted = Packet::ConnAck(ConnAck {
        session_present: true,
        ..Default::default()
    });
    assert_eq!(
        encoded(&accepted, ProtocolVersion::V3_1_1),
        vec![0x20, 0x02, 0x01, 0x00]
    );
}

#[test]
fn v311_acks_and_disconnect_have_no_reason_bytes() {
    let suback = Packet::SubAck(SubAck {
        packet_id: 2,
        properties: Properties::default(),
        reasons: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::TOPIC_FILTER_INVALID],
    });
    assert_eq!(
        encoded(&suback, ProtocolVersion::V3_1_1),
        vec![0x90, 0x04, 0x00, 0x02, 0x01, 0x80]
    );
    let unsuback = Packet::UnsubAck(UnsubAck {
        packet_id: 2,
        properties: Properties::default(),
        reasons: vec![ReasonCode::SUCCESS],
    });
    assert_eq!(
        encoded(&unsuback, ProtocolVersion::V3_1_1),
        vec![0xB0, 0x02, 0x00, 0x02]
    );
    let disconnect = Packet::Disconnect(Disconnect {
        reason: ReasonCode::SERVER_SHUTTING_DOWN,
        properties: Properties::default(),
    });
    assert_eq!(encoded(&disconnect, ProtocolVersion::V3_1_1), vec![0xE0, 0x00]);
    assert_eq!(encoded(&disconnect, ProtocolVersion::V5), vec![0xE0, 0x02, 0x8B, 0x00]);
    // Section 3.14.2.2.1: the short form without property length is valid input.
    let mut decoder = Decoder::new(Some(ProtocolVersion::V5), 16);
    decoder.feed(&[0xE0, 0x01, 0x8B]);
    assert_eq!(decoder.next_packet().expect("decodes"), Some(disconnect));
}

#[test]
fn remaining_length_uses_variable_byte_integer() {
    let publish = Packet::Publish(Publish {
        topic: "t".into(),
        payload: Bytes::from(vec![0u8; 200]),
        ..Default::default()
    });
    let bytes = encoded(&publish, ProtocolVersion::V3_1_1);
    // 3 + 200 = 203 = 0xCB 0x01 [MQTT-1.5.5].
    assert_eq!(&bytes[..3], &[0x30, 0xCB, 0x01]);
}
