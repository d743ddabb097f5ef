//! Malformed-packet rules of MQTT 5.0 and 3.1.1 that `codec_reject.rs` does not cover yet, one test per
//! statement: each input must be refused with a typed error whose reason code is Malformed Packet or Protocol
//! Error (the server then closes the connection [MQTT-4.13.1-1]).

use mqtt_core::codec::{DecodeError, Decoder};
use mqtt_core::packet::{ProtocolVersion, ReasonCode};

fn decode(version: Option<ProtocolVersion>, bytes: &[u8]) -> Result<(), DecodeError> {
    let mut decoder = Decoder::new(version, 1 << 20);
    decoder.feed(bytes);
    decoder.next_packet().map(|p| assert!(p.is_some(), "packet incomplete"))
}

fn refused(version: Option<ProtocolVersion>, bytes: &[u8]) -> ReasonCode {
    let error = decode(version, bytes).expect_err("must be rejected");
    let reason = error.reason_code();
    assert!(
        reason == ReasonCode::MALFORMED_PACKET || reason == ReasonCode::PROTOCOL_ERROR,
        "{error:?} gives {reason}"
    );
    reason
}

const V5: Option<ProtocolVersion> = Some(ProtocolVersion::V5);
const V311: Option<ProtocolVersion> = Some(ProtocolVersion::V3_1_1);

/// A v5 CONNECT for client id "a" with `flags` and `payload_tail` after the client id (will or credentials).
fn connect_v5(flags: u8, will_and_credentials: &[u8]) -> Vec<u8> {
    let mut body = vec![
        0x00, 0x04, b'M', b'Q', b'T', b'T', 5, flags, 0x00, 0x3c, 0x00, 0x00, 0x01, b'a',
    ];
    body.extend_from_slice(will_and_credentials);
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

#[test]
fn connect_reserved_flag_set_is_malformed_mqtt_3_1_2_3() {
    assert!(
        decode(V5, &connect_v5(0x02, &[])).is_ok(),
        "the well-formed CONNECT decodes"
    );
    refused(V5, &connect_v5(0x03, &[]));
}

#[test]
fn will_qos_without_will_flag_is_malformed_mqtt_3_1_2_11() {
    refused(V5, &connect_v5(0x02 | 0x08, &[]));
}

#[test]
fn will_retain_without_will_flag_is_malformed_mqtt_3_1_2_13() {
    refused(V5, &connect_v5(0x02 | 0x20, &[]));
}

#[test]
fn will_qos_3_is_malformed_mqtt_3_1_2_12() {
    // Will Properties (empty), Will Topic "t", Will Payload "m" [MQTT-3.1.2-9].
    let will = [0x00, 0x00, 0x01, b't', 0x00, 0x01, b'm'];
    assert!(
        decode(V5, &connect_v5(0x02 | 0x04 | 0x08, &will)).is_ok(),
        "Will QoS 1 decodes"
    );
    refused(V5, &connect_v5(0x02 | 0x04 | 0x18, &will));
}

#[test]
fn password_without_user_name_is_malformed_in_v311() {
    // The Password Flag needs the User Name Flag in 3.1.1 [MQTT-3.1.2-22] (3.1.1) (5.0 dropped the rule).
    let body = [
        0x00, 0x04, b'M', b'Q', b'T', b'T', 4, 0x42, 0x00, 0x3c, 0x00, 0x01, b'a', 0x00, 0x01, b'p',
    ];
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    refused(V311, &packet);
}

#[test]
fn reserved_fixed_header_flags_of_unsubscribe_auth_and_disconnect_are_malformed() {
    // [MQTT-3.10.1-1]: UNSUBSCRIBE must be 0010; [MQTT-3.15.1-1]: AUTH 0000; [MQTT-3.14.1-1]: DISCONNECT 0000.
    assert!(decode(V311, &[0xA2, 0x05, 0x00, 0x01, 0x00, 0x01, b'a']).is_ok());
    refused(V311, &[0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a']);
    assert!(decode(V5, &[0xF0, 0x00]).is_ok());
    refused(V5, &[0xF1, 0x00]);
    refused(V5, &[0xE1, 0x00]);
    // And PUBREL [MQTT-3.6.1-1], SUBSCRIBE [MQTT-3.8.1-1] with 0000 instead of 0010.
    refused(V5, &[0x60, 0x02, 0x00, 0x01]);
    refused(V311, &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00]);
}

#[test]
fn subscribe_and_unsubscribe_without_filters_are_refused() {
    // [MQTT-3.8.3-2]: at least one Topic Filter; [MQTT-3.10.3-2] likewise for UNSUBSCRIBE.
    refused(V5, &[0x82, 0x03, 0x00, 0x01, 0x00]);
    refused(V5, &[0xA2, 0x03, 0x00, 0x01, 0x00]);
    refused(V311, &[0x82, 0x02, 0x00, 0x01]);
    refused(V311, &[0xA2, 0x02, 0x00, 0x01]);
}

#[test]
fn reserved_subscription_option_bits_are_malformed_mqtt_3_8_3_5() {
    assert!(decode(V5, &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x01]).is_ok());
    refused(V5, &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0xC1]);
}

/// `packet` encoded, with the one byte `Z` (which only the field under test contains) replaced by 0xFF, which is
/// never valid UTF-8.
fn with_ill_formed_utf8(packet: &mqtt_core::packet::Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    mqtt_core::codec::encode(packet, version, &mut out).expect("encodes");
    let mut bytes = out.to_vec();
    let at: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'Z')
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "exactly one marker");
    assert!(
        decode(Some(version), &bytes).is_ok(),
        "the packet with the marker decodes"
    );
    bytes[at[0]] = 0xFF;
    bytes
}

#[test]
fn ill_formed_utf8_is_malformed_in_every_string_field() {
    use mqtt_core::packet::*;
    let connect = |f: &dyn Fn(&mut Connect)| {
        let mut c = Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 60,
            properties: Properties::default(),
            client_id: "c".into(),
            will: None,
            username: None,
            password: None,
        };
        f(&mut c);
        Packet::Connect(Box::new(c))
    };
    let publish = |f: &dyn Fn(&mut Publish)| {
        let mut p = Publish {
            topic: "t".into(),
            ..Default::default()
        };
        f(&mut p);
        Packet::Publish(p)
    };
    let cases: Vec<(&str, Packet)> = vec![
        ("client id [MQTT-3.1.3-4]", connect(&|c| c.client_id = "Z".into())),
        (
            "will topic [MQTT-3.1.3-11]",
            connect(&|c| {
                c.will = Some(Will {
                    topic: "Z".into(),
                    ..Default::default()
                })
            }),
        ),
        ("user name [MQTT-3.1.3-12]", connect(&|c| c.username = Some("Z".into()))),
        ("topic name [MQTT-3.3.2-1]", publish(&|p| p.topic = "Z".into())),
        (
            "response topic [MQTT-3.3.2-13]",
            publish(&|p| p.properties.response_topic = Some("Z".into())),
        ),
        (
            "content type [MQTT-3.3.2-19]",
            publish(&|p| p.properties.content_type = Some("Z".into())),
        ),
        (
            "user property value [MQTT-1.5.7-1]",
            publish(&|p| p.properties.user_properties = vec![("k".into(), "Z".into())]),
        ),
        (
            "subscribe filter [MQTT-3.8.3-1]",
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: Default::default(),
                filters: vec![("Z".into(), SubscriptionOptions::default())],
            }),
        ),
        (
            "unsubscribe filter [MQTT-3.10.3-1]",
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 1,
                properties: Default::default(),
                filters: vec!["Z".into()],
            }),
        ),
    ];
    for (field, packet) in cases {
        let bytes = with_ill_formed_utf8(&packet, ProtocolVersion::V5);
        let error = decode(V5, &bytes).expect_err(field);
        assert_eq!(error.reason_code(), ReasonCode::MALFORMED_PACKET, "{field}: {error:?}");
    }
}

#[test]
fn a_response_topic_with_a_wildcard_is_refused() {
    // [MQTT-3.3.2-14]; wildcards belong in Topic Filters only [MQTT-4.7.0-1].
    use mqtt_core::packet::*;
    for response in ["a/+", "a/#"] {
        let mut publish = Publish {
            topic: "t".into(),
            ..Default::default()
        };
        publish.properties.response_topic = Some(response.into());
        let mut out = bytes::BytesMut::new();
        mqtt_core::codec::encode(&Packet::Publish(publish), ProtocolVersion::V5, &mut out).expect("encodes");
        assert_eq!(refused(V5, &out), ReasonCode::PROTOCOL_ERROR);
    }
}

#[test]
fn connect_payload_fields_must_match_their_flags_and_order() {
    // User Name present iff its flag [MQTT-3.1.2-16], [MQTT-3.1.2-17]; Password likewise [MQTT-3.1.2-18],
    // [MQTT-3.1.2-19]; in the order client id, will, user name, password [MQTT-3.1.3-1], the client id first and
    // always present [MQTT-3.1.3-3]. A field the flags do not announce is left over (Malformed), a field they do
    // announce but is missing cuts the packet short (Malformed).
    let user = [0x00, 0x01, b'u'];
    let password = [0x00, 0x01, b'p'];
    let both: Vec<u8> = user.iter().chain(&password).copied().collect();
    assert!(
        decode(V5, &connect_v5(0x02 | 0x80 | 0x40, &both)).is_ok(),
        "user name then password decodes"
    );
    refused(V5, &connect_v5(0x02, &user));
    refused(V5, &connect_v5(0x02 | 0x80, &[]));
    refused(V5, &connect_v5(0x02 | 0x80, &both));
    refused(V5, &connect_v5(0x02 | 0x80 | 0x40, &user));
    // Without its client id field the CONNECT ends early.
    let body = [0x00, 0x04, b'M', b'Q', b'T', b'T', 5, 0x02, 0x00, 0x3c, 0x00];
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    refused(V5, &packet);
}
