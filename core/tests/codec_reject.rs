//! One rejection test per malformed-packet rule, each naming the normative statement it checks. Every case must
//! give a typed error (never a panic) with the reason code the server closes the connection with.

use mqtt_core::codec::{DecodeError, Decoder};
use mqtt_core::packet::{ProtocolVersion, ReasonCode};

fn decode(version: Option<ProtocolVersion>, bytes: &[u8]) -> Result<(), DecodeError> {
    let mut decoder = Decoder::new(version, 1 << 20);
    decoder.feed(bytes);
    decoder.next_packet().map(|p| assert!(p.is_some(), "packet incomplete"))
}

fn v5(bytes: &[u8]) -> DecodeError {
    decode(Some(ProtocolVersion::V5), bytes).expect_err("must be rejected")
}

fn v311(bytes: &[u8]) -> DecodeError {
    decode(Some(ProtocolVersion::V3_1_1), bytes).expect_err("must be rejected")
}

#[test]
fn reserved_fixed_header_flags_are_malformed_mqtt_2_1_3_1() {
    // PUBREL must have flags 0010.
    assert!(matches!(
        v5(&[0x60, 0x02, 0x00, 0x01]),
        DecodeError::InvalidFixedHeaderFlags { .. }
    ));
    // SUBSCRIBE with flags 0000.
    let e = v5(&[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00]);
    assert!(matches!(e, DecodeError::InvalidFixedHeaderFlags { .. }));
    assert_eq!(e.reason_code(), ReasonCode::MALFORMED_PACKET);
    // PINGREQ with a flag bit.
    assert!(matches!(
        v311(&[0xC1, 0x00]),
        DecodeError::InvalidFixedHeaderFlags { .. }
    ));
}

#[test]
fn publish_with_qos3_is_malformed_mqtt_3_3_1_4() {
    assert_eq!(v5(&[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01]), DecodeError::InvalidQoS);
}

#[test]
fn dup_on_qos0_publish_is_malformed_mqtt_3_3_1_2() {
    assert_eq!(v311(&[0x38, 0x03, 0x00, 0x01, b't']), DecodeError::DupWithQoS0);
}

#[test]
fn zero_packet_identifier_is_rejected_mqtt_2_2_1_3() {
    assert_eq!(
        v311(&[0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x00]),
        DecodeError::ZeroPacketId
    );
    assert_eq!(v311(&[0x40, 0x02, 0x00, 0x00]), DecodeError::ZeroPacketId);
}

#[test]
fn wildcard_in_publish_topic_is_rejected_mqtt_3_3_2_2() {
    let e = v5(&[0x30, 0x04, 0x00, 0x02, b'a', b'+', 0x00]);
    assert!(matches!(e, DecodeError::InvalidTopicName(_)));
    assert_eq!(e.reason_code(), ReasonCode::TOPIC_NAME_INVALID);
}

#[test]
fn empty_publish_topic_is_invalid_in_v311_mqtt_4_7_3_1() {
    assert!(matches!(
        v311(&[0x30, 0x02, 0x00, 0x00]),
        DecodeError::InvalidTopicName(_)
    ));
}

#[test]
fn null_character_in_string_is_malformed_mqtt_1_5_4_2() {
    assert_eq!(
        v311(&[0x30, 0x05, 0x00, 0x03, b'a', 0x00, b'b']),
        DecodeError::NullCharacter
    );
}

#[test]
fn ill_formed_utf8_and_surrogates_are_malformed_mqtt_1_5_4_1() {
    // 0xED 0xA0 0x80 would be U+D800, a surrogate.
    assert_eq!(
        v311(&[0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80]),
        DecodeError::InvalidUtf8
    );
    assert_eq!(v311(&[0x30, 0x03, 0x00, 0x01, 0xFF]), DecodeError::InvalidUtf8);
}

#[test]
fn variable_byte_integer_longer_than_four_bytes_is_malformed_mqtt_1_5_5_1() {
    assert_eq!(
        v311(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
        DecodeError::MalformedVariableInteger
    );
}

#[test]
fn non_minimal_remaining_length_is_malformed_mqtt_1_5_5_1() {
    assert_eq!(v311(&[0xC0, 0x80, 0x00]), DecodeError::MalformedVariableInteger);
}

#[test]
fn huge_length_prefix_is_refused_before_the_body_arrives() {
    let mut decoder = Decoder::new(Some(ProtocolVersion::V5), 1024);
    // Remaining length 268,435,455: only the fixed header is fed.
    decoder.feed(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]);
    let e = decoder.next_packet().expect_err("too large");
    assert!(matches!(e, DecodeError::PacketTooLarge { max: 1024, .. }));
    assert_eq!(e.reason_code(), ReasonCode::PACKET_TOO_LARGE);
}

#[test]
fn trailing_bytes_are_malformed() {
    assert_eq!(v311(&[0xC0, 0x01, 0x00]), DecodeError::TrailingBytes);
    assert_eq!(v311(&[0x40, 0x03, 0x00, 0x01, 0x00]), DecodeError::TrailingBytes);
}

#[test]
fn truncated_fields_are_malformed() {
    assert_eq!(v311(&[0x30, 0x02, 0x00, 0x05]), DecodeError::UnexpectedEnd);
}

#[test]
fn connect_reserved_flag_is_malformed_mqtt_3_1_2_3() {
    let e = decode(
        None,
        &[0x10, 0x0D, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x03, 0, 60, 0, 1, b'a'],
    )
    .unwrap_err();
    assert_eq!(e, DecodeError::InvalidConnectFlags);
}

#[test]
fn will_qos_without_will_flag_is_malformed_mqtt_3_1_2_11() {
    let e = decode(
        None,
        &[0x10, 0x0D, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x0A, 0, 60, 0, 1, b'a'],
    )
    .unwrap_err();
    assert_eq!(e, DecodeError::InvalidConnectFlags);
}

#[test]
fn will_retain_without_will_flag_is_malformed_mqtt_3_1_2_13() {
    let e = decode(
        None,
        &[0x10, 0x0D, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x22, 0, 60, 0, 1, b'a'],
    )
    .unwrap_err();
    assert_eq!(e, DecodeError::InvalidConnectFlags);
}

#[test]
fn will_qos3_is_malformed_mqtt_3_1_2_12() {
    let bytes = [
        0x10, 0x12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x1C, 0, 60, 0, 1, b'a', 0, 1, b't', 0, 0,
    ];
    let e = decode(None, &bytes).unwrap_err();
    assert_eq!(e, DecodeError::InvalidQoS);
}

#[test]
fn password_without_username_is_malformed_in_v311_mqtt_3_1_2_22() {
    let bytes = [
        0x10, 0x10, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x42, 0, 60, 0, 1, b'a', 0, 1, b'p',
    ];
    assert_eq!(decode(None, &bytes).unwrap_err(), DecodeError::InvalidConnectFlags);
    // MQTT 5 allows it (section 3.1.2.9).
    let bytes = [
        0x10, 0x11, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x42, 0, 60, 0, 0, 1, b'a', 0, 1, b'p',
    ];
    assert!(decode(None, &bytes).is_ok());
}

#[test]
fn unknown_protocol_name_is_rejected_mqtt_3_1_2_1() {
    let e = decode(
        None,
        &[0x10, 0x0D, 0, 4, b'M', b'Q', b'T', b'X', 4, 0x02, 0, 60, 0, 1, b'a'],
    )
    .unwrap_err();
    assert_eq!(e, DecodeError::InvalidProtocolName);
}

#[test]
fn unsupported_protocol_level_maps_to_0x84_mqtt_3_1_2_2() {
    let e = decode(
        None,
        &[0x10, 0x0D, 0, 4, b'M', b'Q', b'T', b'T', 6, 0x02, 0, 60, 0, 1, b'a'],
    )
    .unwrap_err();
    assert_eq!(e, DecodeError::UnsupportedProtocolVersion(6));
    assert_eq!(e.reason_code(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
}

#[test]
fn first_packet_must_be_connect_mqtt_3_1_0_1() {
    assert_eq!(
        decode(None, &[0xC0, 0x00]).unwrap_err(),
        DecodeError::FirstPacketNotConnect
    );
}

#[test]
fn subscribe_without_filters_is_malformed_mqtt_3_8_3_3() {
    assert_eq!(v5(&[0x82, 0x03, 0x00, 0x01, 0x00]), DecodeError::NoTopicFilters);
}

#[test]
fn unsubscribe_without_filters_is_malformed_mqtt_3_10_3_2() {
    assert_eq!(v311(&[0xA2, 0x02, 0x00, 0x01]), DecodeError::NoTopicFilters);
}

#[test]
fn reserved_subscription_option_bits_are_malformed_mqtt_3_8_3_5() {
    assert_eq!(
        v5(&[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x40]),
        DecodeError::InvalidSubscriptionOptions
    );
    // 3.1.1: bits 2-7 are reserved.
    assert_eq!(
        v311(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x04]),
        DecodeError::InvalidSubscriptionOptions
    );
}

#[test]
fn retain_handling_3_is_rejected() {
    assert_eq!(
        v5(&[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x30]),
        DecodeError::InvalidSubscriptionOptions
    );
}

#[test]
fn unknown_property_is_malformed() {
    assert_eq!(
        v5(&[0x40, 0x05, 0x00, 0x01, 0x00, 0x01, 0x7F]),
        DecodeError::UnknownProperty(0x7F)
    );
}

#[test]
fn property_not_allowed_in_packet_is_rejected() {
    // Topic Alias (0x23) in PUBACK.
    assert_eq!(
        v5(&[0x40, 0x07, 0x00, 0x01, 0x00, 0x03, 0x23, 0x00, 0x01]),
        DecodeError::PropertyNotAllowed(0x23)
    );
}

#[test]
fn duplicate_property_is_protocol_error_section_2_2_2_2() {
    // Reason String twice in PUBACK.
    let e = v5(&[0x40, 0x0A, 0x00, 0x01, 0x00, 0x06, 0x1F, 0x00, 0x00, 0x1F, 0x00, 0x00]);
    assert_eq!(e, DecodeError::DuplicateProperty(0x1F));
    assert_eq!(e.reason_code(), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn topic_alias_zero_is_protocol_error_mqtt_3_3_2_8() {
    let e = v5(&[0x30, 0x07, 0x00, 0x01, b't', 0x03, 0x23, 0x00, 0x00]);
    assert_eq!(e, DecodeError::InvalidPropertyValue(0x23));
    assert_eq!(e.reason_code(), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn receive_maximum_zero_is_protocol_error() {
    let bytes = [
        0x10, 0x10, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 3, 0x21, 0, 0, 0, 1, b'a',
    ];
    let e = decode(None, &bytes).unwrap_err();
    assert_eq!(e, DecodeError::InvalidPropertyValue(0x21));
}

#[test]
fn subscription_identifier_zero_is_protocol_error() {
    assert_eq!(
        v5(&[0x82, 0x08, 0x00, 0x01, 0x02, 0x0B, 0x00, 0x00, 0x01, b'a', 0x00]),
        DecodeError::InvalidPropertyValue(0x0B)
    );
}

#[test]
fn invalid_reason_code_for_packet_is_malformed() {
    // 0x04 is a DISCONNECT reason, not a PUBACK reason.
    assert_eq!(
        v5(&[0x40, 0x03, 0x00, 0x01, 0x04]),
        DecodeError::InvalidReasonCode(0x04)
    );
}

#[test]
fn auth_is_invalid_before_mqtt5() {
    assert_eq!(v311(&[0xF0, 0x00]), DecodeError::InvalidPacketType(15));
}

#[test]
fn packet_type_zero_is_malformed() {
    assert_eq!(v311(&[0x00, 0x00]), DecodeError::InvalidPacketType(0));
}

#[test]
fn connack_with_session_present_and_an_error_is_malformed_mqtt_3_2_2_6() {
    // MQTT 5: Session Present 1 with Reason Code 0x80 (Unspecified error).
    let e = v5(&[0x20, 0x03, 0x01, 0x80, 0x00]);
    assert_eq!(e, DecodeError::SessionPresentWithError);
    assert_eq!(e.reason_code(), ReasonCode::MALFORMED_PACKET);
    // Either alone is fine.
    assert!(decode(Some(ProtocolVersion::V5), &[0x20, 0x03, 0x01, 0x00, 0x00]).is_ok());
    assert!(decode(Some(ProtocolVersion::V5), &[0x20, 0x03, 0x00, 0x80, 0x00]).is_ok());
}

#[test]
fn connack_with_session_present_and_a_return_code_is_malformed_in_v311_mqtt_3_2_2_4() {
    // 3.1.1: Session Present 1 with return code 5 (not authorized).
    assert_eq!(v311(&[0x20, 0x02, 0x01, 0x05]), DecodeError::SessionPresentWithError);
    assert!(decode(Some(ProtocolVersion::V3_1_1), &[0x20, 0x02, 0x01, 0x00]).is_ok());
    assert!(decode(Some(ProtocolVersion::V3_1_1), &[0x20, 0x02, 0x00, 0x05]).is_ok());
}

#[test]
fn dup_on_pubrel_subscribe_unsubscribe_is_accepted_only_from_mqtt_3_1_clients_mqtt_2_1_3_1() {
    // MQTT 3.1 sent these with QoS 1 and DUP set on retries; 3.1.1 and 5 reserve the flags as 0010.
    let pubrel = [0x6A, 0x02, 0x00, 0x01];
    let subscribe = [0x8A, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x01];
    let unsubscribe = [0xAA, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'];
    for bytes in [&pubrel[..], &subscribe[..], &unsubscribe[..]] {
        assert!(
            decode(Some(ProtocolVersion::V3_1), bytes).is_ok(),
            "3.1 retry {bytes:02x?} must decode"
        );
        assert!(matches!(v311(bytes), DecodeError::InvalidFixedHeaderFlags { .. }));
        let mut v5_bytes = bytes.to_vec();
        if bytes[0] == 0x8A {
            // An MQTT 5 SUBSCRIBE has a property length after the packet id.
            v5_bytes = vec![0x8A, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x01];
        }
        assert!(matches!(v5(&v5_bytes), DecodeError::InvalidFixedHeaderFlags { .. }));
    }
    // Even for 3.1, flags other than QoS 1 (with or without DUP) stay invalid.
    let e = decode(
        Some(ProtocolVersion::V3_1),
        &[0x8B, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x01],
    );
    assert!(matches!(e, Err(DecodeError::InvalidFixedHeaderFlags { .. })));
    let e = decode(Some(ProtocolVersion::V3_1), &[0x68, 0x02, 0x00, 0x01]);
    assert!(matches!(e, Err(DecodeError::InvalidFixedHeaderFlags { .. })));
    // And DUP stays invalid on packets that never had QoS 1 in 3.1.
    let e = decode(Some(ProtocolVersion::V3_1), &[0xC8, 0x00]);
    assert!(matches!(e, Err(DecodeError::InvalidFixedHeaderFlags { .. })));
}

#[test]
fn packet_type_zero_is_rejected_on_its_first_byte() {
    // Section 2.1.2: type 0 is reserved. Nothing after the first byte can make it valid, so the decoder must not
    // wait for a remaining length or a body.
    for first in [0x00u8, 0x0F] {
        let mut decoder = Decoder::new(Some(ProtocolVersion::V5), 1 << 20);
        decoder.feed(&[first]);
        assert_eq!(decoder.next_packet(), Err(DecodeError::InvalidPacketType(0)));
    }
    // A valid type with only its first byte is simply incomplete.
    let mut decoder = Decoder::new(Some(ProtocolVersion::V5), 1 << 20);
    decoder.feed(&[0xC0]);
    assert_eq!(decoder.next_packet(), Ok(None));
}
