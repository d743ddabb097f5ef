//! Encoding of every control packet for MQTT 3.1, 3.1.1 and 5.0. Each packet's variable header and payload is
//! written once, generically over `Sink`, and measured with a `Counter` to produce the remaining length, so the
//! length can never disagree with the bytes.

use super::error::EncodeError;
use super::primitive::{varint_len, Counter, Sink, VARINT_MAX};
use super::property;
use crate::packet::*;
use bytes::BytesMut;

/// Appends the wire form of `packet` for protocol `version` to `out`.
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
    let remaining = body_len(packet, version)?;
    out.reserve(1 + varint_len(remaining) + remaining);
    out.put_u8(first_byte(packet));
    out.put_varint(remaining)?;
    write_body(packet, version, out)
}

/// Appends the fixed header and variable header of `publish` (topic, packet id, properties), without its payload;
/// the remaining length counts the payload all the same [MQTT-2.1.4], so the payload bytes, sent right after,
/// complete the packet. `encode` writes a PUBLISH the same way, then its payload.
pub fn encode_publish_header(
    publish: &Publish,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let v5 = version.is_v5();
    let mut counter = Counter::default();
    write_publish_header(publish, v5, &mut counter)?;
    let remaining = counter.0 + publish.payload.len();
    if remaining > VARINT_MAX as usize {
        return Err(EncodeError::PacketTooLarge);
    }
    out.reserve(1 + varint_len(remaining) + counter.0);
    out.put_u8(publish_first_byte(publish));
    out.put_varint(remaining)?;
    write_publish_header(publish, v5, out)
}

/// The number of bytes `encode` appends, or `usize::MAX` for a packet that cannot be encoded.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    match body_len(packet, version) {
        Ok(remaining) => 1 + varint_len(remaining) + remaining,
        Err(_) => usize::MAX,
    }
}

fn body_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let mut counter = Counter::default();
    write_body(packet, version, &mut counter)?;
    if counter.0 > VARINT_MAX as usize {
        return Err(EncodeError::PacketTooLarge);
    }
    Ok(counter.0)
}

/// Packet type in the high nibble, flags in the low one [MQTT-2.1.3-1].
fn first_byte(packet: &Packet) -> u8 {
    let kind = packet.packet_type() as u8;
    let flags = match packet {
        Packet::Publish(p) => return publish_first_byte(p),
        Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => 0b0010,
        _ => 0,
    };
    (kind << 4) | flags
}

/// PUBLISH flags: DUP, QoS, RETAIN (section 3.3.1).
fn publish_first_byte(publish: &Publish) -> u8 {
    let flags = (u8::from(publish.dup) << 3) | ((publish.qos as u8) << 1) | u8::from(publish.retain);
    ((PacketType::Publish as u8) << 4) | flags
}

/// A PUBLISH's variable header: everything between the fixed header and the payload.
fn write_publish_header<S: Sink>(publish: &Publish, v5: bool, s: &mut S) -> Result<(), EncodeError> {
    s.put_string(&publish.topic)?;
    if publish.qos != QoS::AtMostOnce {
        s.put_u16(publish.packet_id);
    }
    if v5 {
        property::encode(&publish.properties, s)?;
    }
    Ok(())
}

fn write_body<S: Sink>(packet: &Packet, version: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    let v5 = version.is_v5();
    match packet {
        Packet::Connect(connect) => write_connect(connect, s),
        Packet::ConnAck(connack) => {
            s.put_u8(u8::from(connack.session_present));
            if v5 {
                s.put_u8(connack.reason.0);
                property::encode(&connack.properties, s)
            } else {
                s.put_u8(v3_connack_code(connack.reason));
                Ok(())
            }
        }
        Packet::Publish(publish) => {
            write_publish_header(publish, v5, s)?;
            s.put_slice(&publish.payload);
            Ok(())
        }
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            s.put_u16(r.packet_id);
            // Section 3.4.2.1: reason code and properties may be omitted when Success with no properties.
            if v5 && (r.reason != ReasonCode::SUCCESS || !r.properties.is_empty()) {
                s.put_u8(r.reason.0);
                if !r.properties.is_empty() {
                    property::encode(&r.properties, s)?;
                }
            }
            Ok(())
        }
        Packet::Subscribe(subscribe) => {
            s.put_u16(subscribe.packet_id);
            if v5 {
                property::encode(&subscribe.properties, s)?;
            }
            for (filter, options) in &subscribe.filters {
                s.put_string(filter)?;
                s.put_u8(options_byte(options, v5));
            }
            Ok(())
        }
        Packet::SubAck(suback) => {
            s.put_u16(suback.packet_id);
            if v5 {
                property::encode(&suback.properties, s)?;
            }
            for reason in &suback.reasons {
                s.put_u8(if v5 { reason.0 } else { v3_suback_code(*reason) });
            }
            Ok(())
        }
        Packet::Unsubscribe(unsubscribe) => {
            s.put_u16(unsubscribe.packet_id);
            if v5 {
                property::encode(&unsubscribe.properties, s)?;
            }
            for filter in &unsubscribe.filters {
                s.put_string(filter)?;
            }
            Ok(())
        }
        Packet::UnsubAck(unsuback) => {
            s.put_u16(unsuback.packet_id);
            // 3.1.1 UNSUBACK has no payload.
            if v5 {
                property::encode(&unsuback.properties, s)?;
                for reason in &unsuback.reasons {
                    s.put_u8(reason.0);
                }
            }
            Ok(())
        }
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(disconnect) => {
            // Section 3.14.2.1: a Normal disconnection without properties may be sent with no variable header.
            // When a reason code is written, the property length is written too (even 0): the spec allows leaving
            // it out, but clients in the field (rumqttc 0.25) fail to parse a DISCONNECT without it.
            if v5 && (disconnect.reason != ReasonCode::NORMAL_DISCONNECTION || !disconnect.properties.is_empty()) {
                s.put_u8(disconnect.reason.0);
                property::encode(&disconnect.properties, s)?;
            }
            Ok(())
        }
        Packet::Auth(auth) => {
            // As for DISCONNECT, the property length accompanies the reason code.
            if auth.reason != ReasonCode::SUCCESS || !auth.properties.is_empty() {
                s.put_u8(auth.reason.0);
                property::encode(&auth.properties, s)?;
            }
            Ok(())
        }
    }
}

fn write_connect<S: Sink>(connect: &Connect, s: &mut S) -> Result<(), EncodeError> {
    let v5 = connect.protocol.is_v5();
    let name = if connect.protocol == ProtocolVersion::V3_1 {
        "MQIsdp"
    } else {
        "MQTT"
    };
    s.put_string(name)?;
    s.put_u8(connect.protocol.level());
    let mut flags = 0u8;
    if connect.clean_start {
        flags |= 0x02;
    }
    if let Some(will) = &connect.will {
        flags |= 0x04 | ((will.qos as u8) << 3);
        if will.retain {
            flags |= 0x20;
        }
    }
    if connect.password.is_some() {
        flags |= 0x40;
    }
    if connect.username.is_some() {
        flags |= 0x80;
    }
    s.put_u8(flags);
    s.put_u16(connect.keep_alive);
    if v5 {
        property::encode(&connect.properties, s)?;
    }
    s.put_string(&connect.client_id)?;
    if let Some(will) = &connect.will {
        if v5 {
            property::encode(&will.properties, s)?;
        }
        s.put_string(&will.topic)?;
        s.put_binary(&will.payload)?;
    }
    if let Some(username) = &connect.username {
        s.put_string(username)?;
    }
    if let Some(password) = &connect.password {
        s.put_binary(password)?;
    }
    Ok(())
}

/// Subscription options byte (section 3.8.3.1); 3.1.1 has only the QoS bits.
pub(crate) fn options_byte(options: &SubscriptionOptions, v5: bool) -> u8 {
    let mut byte = options.qos as u8;
    if v5 {
        byte |= u8::from(options.no_local) << 2;
        byte |= u8::from(options.retain_as_published) << 3;
        byte |= (options.retain_handling as u8) << 4;
    }
    byte
}

/// The 3.1.1 CONNACK return code nearest to an MQTT 5 reason code (3.1.1 section 3.2.2.3).
pub fn v3_connack_code(reason: ReasonCode) -> u8 {
    match reason {
        ReasonCode::SUCCESS => 0,
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => 1,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => 2,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD => 4,
        ReasonCode::NOT_AUTHORIZED | ReasonCode::BANNED | ReasonCode::BAD_AUTHENTICATION_METHOD => 5,
        _ => 3,
    }
}

/// 3.1.1 SUBACK return codes are the granted QoS or 0x80 Failure.
fn v3_suback_code(reason: ReasonCode) -> u8 {
    if reason.is_error() || reason.0 > 2 {
        0x80
    } else {
        reason.0
    }
}
