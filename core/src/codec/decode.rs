//! Decoding of one whole packet (fixed header byte plus body) for a known protocol version, with every
//! malformed-packet rule of the specifications checked.

use super::error::DecodeError;
use super::primitive::Reader;
use super::property::{self, Context};
use crate::packet::*;
use crate::topic::validate_topic_name;
use bytes::Bytes;

/// Decodes a packet whose first byte is `header` and whose body (after the remaining length) is `body`.
/// `version` is `None` before CONNECT: then only CONNECT decodes.
pub fn decode_packet(header: u8, body: Bytes, version: Option<ProtocolVersion>) -> Result<Packet, DecodeError> {
    let kind = header >> 4;
    let flags = header & 0x0F;
    let packet_type = PacketType::from_nibble(kind).ok_or(DecodeError::InvalidPacketType(kind))?;
    check_flags(packet_type, flags, version)?;
    let mut r = Reader::new(body);
    // Before CONNECT the version is unknown; CONNECT carries its own.
    let v5 = match (packet_type, version) {
        (PacketType::Connect, _) => false,
        (_, None) => return Err(DecodeError::FirstPacketNotConnect),
        (_, Some(version)) => version.is_v5(),
    };
    let packet = match packet_type {
        PacketType::Connect => Packet::Connect(Box::new(decode_connect(&mut r)?)),
        PacketType::ConnAck => Packet::ConnAck(decode_connack(&mut r, v5)?),
        PacketType::Publish => Packet::Publish(decode_publish(&mut r, flags, v5)?),
        PacketType::PubAck => Packet::PubAck(decode_pub_response(&mut r, v5, PUBACK_REASONS)?),
        PacketType::PubRec => Packet::PubRec(decode_pub_response(&mut r, v5, PUBACK_REASONS)?),
        PacketType::PubRel => Packet::PubRel(decode_pub_response(&mut r, v5, PUBREL_REASONS)?),
        PacketType::PubComp => Packet::PubComp(decode_pub_response(&mut r, v5, PUBREL_REASONS)?),
        PacketType::Subscribe => Packet::Subscribe(decode_subscribe(&mut r, v5)?),
        PacketType::SubAck => Packet::SubAck(decode_suback(&mut r, v5)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(decode_unsubscribe(&mut r, v5)?),
        PacketType::UnsubAck => Packet::UnsubAck(decode_unsuback(&mut r, v5)?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(decode_disconnect(&mut r, v5)?),
        // AUTH exists only in MQTT 5.
        PacketType::Auth if !v5 => return Err(DecodeError::InvalidPacketType(kind)),
        PacketType::Auth => Packet::Auth(decode_auth(&mut r)?),
    };
    r.finish()?;
    Ok(packet)
}

/// A publish acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP) whose remaining length is 2, decoded from its two
/// body bytes: exactly what `decode_packet` gives for it, without taking the bytes out of the receive buffer as a
/// shared `Bytes` (a subscriber's PUBACKs are most of what a fan-out broker decodes). `None` for any other packet.
pub fn decode_short_ack(
    header: u8,
    body: [u8; 2],
    version: Option<ProtocolVersion>,
) -> Option<Result<Packet, DecodeError>> {
    let packet_type = PacketType::from_nibble(header >> 4)?;
    let make = match packet_type {
        PacketType::PubAck => Packet::PubAck,
        PacketType::PubRec => Packet::PubRec,
        PacketType::PubRel => Packet::PubRel,
        PacketType::PubComp => Packet::PubComp,
        _ => return None,
    };
    let decoded = (|| {
        check_flags(packet_type, header & 0x0F, version)?;
        if version.is_none() {
            return Err(DecodeError::FirstPacketNotConnect);
        }
        // [MQTT-2.2.1-3]; section 3.4.2.1: a remaining length of 2 means Success with no properties.
        match u16::from_be_bytes(body) {
            0 => Err(DecodeError::ZeroPacketId),
            id => Ok(make(PubResponse::new(id, ReasonCode::SUCCESS))),
        }
    })();
    Some(decoded)
}

/// Reserved flag bits of the fixed header [MQTT-2.1.3-1]; PUBLISH flags are checked with its fields.
///
/// MQTT 3.1 (protocol level 3) had no reserved bits: PUBREL, SUBSCRIBE and UNSUBSCRIBE carried QoS 1 and set DUP
/// when they were retries (MQTT 3.1 sections 3.7, 3.8 and 3.10), so on a 3.1 connection DUP is accepted there.
fn check_flags(packet_type: PacketType, flags: u8, version: Option<ProtocolVersion>) -> Result<(), DecodeError> {
    const DUP: u8 = 0b1000;
    let expected = match packet_type {
        PacketType::Publish => return Ok(()),
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
        _ => 0,
    };
    let dup_retry = expected == 0b0010 && version == Some(ProtocolVersion::V3_1) && flags == expected | DUP;
    if flags == expected || dup_retry {
        Ok(())
    } else {
        Err(DecodeError::InvalidFixedHeaderFlags {
            packet_type: packet_type as u8,
            flags,
        })
    }
}

fn packet_id(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16()? {
        // [MQTT-2.2.1-3]
        0 => Err(DecodeError::ZeroPacketId),
        id => Ok(id),
    }
}

fn topic_name(r: &mut Reader, allow_empty: bool) -> Result<String, DecodeError> {
    let topic = r.string()?;
    if topic.is_empty() && allow_empty {
        return Ok(topic);
    }
    validate_topic_name(&topic).map_err(DecodeError::InvalidTopicName)?;
    Ok(topic)
}

/// Reads the CONNECT protocol name and level; used by the decoder to know how to answer a CONNECT it rejects.
pub fn connect_version(body: &[u8]) -> Option<ProtocolVersion> {
    let mut r = Reader::new(Bytes::copy_from_slice(body.get(..body.len().min(9))?));
    let name = r.string().ok()?;
    match (name.as_str(), r.u8().ok()?) {
        ("MQTT", 4) => Some(ProtocolVersion::V3_1_1),
        ("MQTT", 5) => Some(ProtocolVersion::V5),
        ("MQIsdp", 3) => Some(ProtocolVersion::V3_1),
        _ => None,
    }
}

fn decode_connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.string().map_err(|_| DecodeError::InvalidProtocolName)?;
    let level = r.u8()?;
    let protocol = match (name.as_str(), level) {
        ("MQTT", 4) => ProtocolVersion::V3_1_1,
        ("MQTT", 5) => ProtocolVersion::V5,
        ("MQIsdp", 3) => ProtocolVersion::V3_1,
        // [MQTT-3.1.2-2]: a level we do not speak is answered with 0x84 / return code 1.
        ("MQTT", level) | ("MQIsdp", level) => return Err(DecodeError::UnsupportedProtocolVersion(level)),
        // [MQTT-3.1.2-1]
        _ => return Err(DecodeError::InvalidProtocolName),
    };
    let v5 = protocol.is_v5();
    let flags = r.u8()?;
    // [MQTT-3.1.2-3]: the reserved flag must be 0.
    if flags & 0x01 != 0 {
        return Err(DecodeError::InvalidConnectFlags);
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    // [MQTT-3.1.2-11], [MQTT-3.1.2-13]: without a will, its QoS and retain must be 0.
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(DecodeError::InvalidConnectFlags);
    }
    // [MQTT-3.1.2-12]
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::InvalidQoS)?;
    // [MQTT-3.1.2-22] (3.1.1): a password requires a user name. MQTT 5 lifted this rule.
    if !v5 && has_password && !has_username {
        return Err(DecodeError::InvalidConnectFlags);
    }
    let keep_alive = r.u16()?;
    let properties = if v5 {
        property::decode(r, Context::Connect)?
    } else {
        Properties::default()
    };
    let client_id = r.string()?;
    let will = if will_flag {
        let properties = if v5 {
            property::decode(r, Context::Will)?
        } else {
            Properties::default()
        };
        let topic = topic_name(r, false)?;
        let payload = r.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username { Some(r.string()?) } else { None };
    let password = if has_password { Some(r.binary()?) } else { None };
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive,
        properties,
        client_id,
        will,
        username,
        password,
    })
}

const CONNACK_REASONS: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B,
    0x9C, 0x9D, 0x9F,
];
const PUBACK_REASONS: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_REASONS: &[u8] = &[0x00, 0x92];
const SUBACK_REASONS: &[u8] = &[0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2];
const UNSUBACK_REASONS: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT_REASONS: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH_REASONS: &[u8] = &[0x00, 0x18, 0x19];

fn reason(r: &mut Reader, allowed: &[u8]) -> Result<ReasonCode, DecodeError> {
    let code = r.u8()?;
    if allowed.contains(&code) {
        Ok(ReasonCode(code))
    } else {
        Err(DecodeError::InvalidReasonCode(code))
    }
}

fn decode_connack(r: &mut Reader, v5: bool) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    // [MQTT-3.2.2-1]: bits 7-1 are reserved.
    if flags & 0xFE != 0 {
        return Err(DecodeError::InvalidConnAckFlags);
    }
    let session_present = flags & 0x01 != 0;
    if v5 {
        let reason = reason(r, CONNACK_REASONS)?;
        // [MQTT-3.2.2-6]: a non-zero Reason Code requires Session Present 0.
        if session_present && reason != ReasonCode::SUCCESS {
            return Err(DecodeError::SessionPresentWithError);
        }
        let properties = property::decode(r, Context::ConnAck)?;
        return Ok(ConnAck {
            session_present,
            reason,
            properties: properties.into(),
        });
    }
    let reason = match r.u8()? {
        0 => ReasonCode::SUCCESS,
        1 => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        2 => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        3 => ReasonCode::SERVER_UNAVAILABLE,
        4 => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        5 => ReasonCode::NOT_AUTHORIZED,
        code => return Err(DecodeError::InvalidReasonCode(code)),
    };
    // [MQTT-3.2.2-4] (3.1.1): a non-zero return code requires Session Present 0.
    if session_present && reason != ReasonCode::SUCCESS {
        return Err(DecodeError::SessionPresentWithError);
    }
    Ok(ConnAck {
        session_present,
        reason,
        properties: Default::default(),
    })
}

fn decode_publish(r: &mut Reader, flags: u8, v5: bool) -> Result<Publish, DecodeError> {
    let dup = flags & 0x08 != 0;
    let retain = flags & 0x01 != 0;
    // [MQTT-3.3.1-4]
    let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::InvalidQoS)?;
    // [MQTT-3.3.1-2]
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::DupWithQoS0);
    }
    // An empty topic is allowed in MQTT 5 only with a Topic Alias; the broker checks the alias.
    let topic = topic_name(r, v5)?;
    let packet_id = if qos == QoS::AtMostOnce { 0 } else { packet_id(r)? };
    let properties = if v5 {
        property::decode(r, Context::Publish)?
    } else {
        Properties::default()
    };
    let payload = r.rest();
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        properties: properties.into(),
        payload,
    })
}

fn decode_pub_response(r: &mut Reader, v5: bool, allowed: &[u8]) -> Result<PubResponse, DecodeError> {
    let packet_id = packet_id(r)?;
    let mut response = PubResponse::new(packet_id, ReasonCode::SUCCESS);
    // Section 3.4.2.1: a remaining length of 2 means Success with no properties.
    if v5 && !r.is_empty() {
        response.reason = reason(r, allowed)?;
        if !r.is_empty() {
            response.properties = property::decode(r, Context::PubResponse)?.into();
        }
    }
    Ok(response)
}

pub(crate) fn decode_options(byte: u8, v5: bool) -> Result<SubscriptionOptions, DecodeError> {
    // [MQTT-3.8.3-5] (v5: bits 6-7 reserved); 3.1.1 [MQTT-3-8.3-4]: bits 2-7 reserved.
    let reserved = if v5 { 0xC0 } else { 0xFC };
    if byte & reserved != 0 {
        return Err(DecodeError::InvalidSubscriptionOptions);
    }
    let qos = QoS::from_u8(byte & 0x03).ok_or(DecodeError::InvalidQoS)?;
    let retain_handling = match (byte >> 4) & 0x03 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::InvalidSubscriptionOptions),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0x04 != 0,
        retain_as_published: byte & 0x08 != 0,
        retain_handling,
    })
}

fn decode_subscribe(r: &mut Reader, v5: bool) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if v5 {
        property::decode(r, Context::Subscribe)?
    } else {
        Properties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        // Filter syntax is checked by the broker, which answers per filter in SUBACK (0x8F / 0x80).
        let filter = r.string()?;
        let options = decode_options(r.u8()?, v5)?;
        filters.push((filter, options));
    }
    // [MQTT-3.8.3-3]
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters);
    }
    Ok(Subscribe {
        packet_id,
        properties: properties.into(),
        filters,
    })
}

fn decode_suback(r: &mut Reader, v5: bool) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if v5 {
        property::decode(r, Context::SubAck)?
    } else {
        Properties::default()
    };
    let allowed: &[u8] = if v5 { SUBACK_REASONS } else { &[0x00, 0x01, 0x02, 0x80] };
    let mut reasons = Vec::new();
    while !r.is_empty() {
        reasons.push(reason(r, allowed)?);
    }
    Ok(SubAck {
        packet_id,
        properties: properties.into(),
        reasons,
    })
}

fn decode_unsubscribe(r: &mut Reader, v5: bool) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if v5 {
        property::decode(r, Context::Unsubscribe)?
    } else {
        Properties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string()?);
    }
    // [MQTT-3.10.3-2]
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters);
    }
    Ok(Unsubscribe {
        packet_id,
        properties: properties.into(),
        filters,
    })
}

fn decode_unsuback(r: &mut Reader, v5: bool) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    if !v5 {
        return Ok(UnsubAck {
            packet_id,
            ..Default::default()
        });
    }
    let properties = property::decode(r, Context::UnsubAck)?;
    let mut reasons = Vec::new();
    while !r.is_empty() {
        reasons.push(reason(r, UNSUBACK_REASONS)?);
    }
    Ok(UnsubAck {
        packet_id,
        properties: properties.into(),
        reasons,
    })
}

fn decode_disconnect(r: &mut Reader, v5: bool) -> Result<Disconnect, DecodeError> {
    let mut disconnect = Disconnect::default();
    // Section 3.14.2.1: no variable header means Normal disconnection.
    if v5 && !r.is_empty() {
        disconnect.reason = reason(r, DISCONNECT_REASONS)?;
        if !r.is_empty() {
            disconnect.properties = property::decode(r, Context::Disconnect)?.into();
        }
    }
    Ok(disconnect)
}

fn decode_auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    let mut auth = Auth::default();
    // Section 3.15.2.1: no variable header means Success.
    if !r.is_empty() {
        auth.reason = reason(r, AUTH_REASONS)?;
        if !r.is_empty() {
            auth.properties = property::decode(r, Context::Auth)?.into();
        }
    }
    Ok(auth)
}
