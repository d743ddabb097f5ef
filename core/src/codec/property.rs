//! MQTT 5.0 properties (section 2.2.2): the identifier table, which packet may carry which property, decoding with
//! duplicate and range checks, and encoding.

use super::error::{DecodeError, EncodeError};
use super::primitive::{Counter, Reader, Sink};
use crate::packet::Properties;

/// Which packet (or the will) a property block belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Connect,
    ConnAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    PubResponse,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
    Will,
}

impl Context {
    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

const CONNECT: u16 = 1 << Context::Connect as u16;
const CONNACK: u16 = 1 << Context::ConnAck as u16;
const PUBLISH: u16 = 1 << Context::Publish as u16;
const PUBRESP: u16 = 1 << Context::PubResponse as u16;
const SUBSCRIBE: u16 = 1 << Context::Subscribe as u16;
const SUBACK: u16 = 1 << Context::SubAck as u16;
const UNSUBACK: u16 = 1 << Context::UnsubAck as u16;
const DISCONNECT: u16 = 1 << Context::Disconnect as u16;
const AUTH: u16 = 1 << Context::Auth as u16;
const WILL: u16 = 1 << Context::Will as u16;
const ALL: u16 = 0x07FF;

/// The packets each property may appear in (MQTT 5.0 table in section 2.2.2.2); `None` for unknown identifiers.
fn allowed_in(id: u8) -> Option<u16> {
    Some(match id {
        0x01..=0x03 | 0x08 | 0x09 => PUBLISH | WILL,
        0x0B => PUBLISH | SUBSCRIBE,
        0x11 => CONNECT | CONNACK | DISCONNECT,
        0x12 | 0x13 | 0x1A | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => CONNACK,
        0x15 | 0x16 => CONNECT | CONNACK | AUTH,
        0x17 | 0x19 => CONNECT,
        0x18 => WILL,
        0x1C => CONNACK | DISCONNECT,
        0x1F => CONNACK | PUBRESP | SUBACK | UNSUBACK | DISCONNECT | AUTH,
        0x21 | 0x22 | 0x27 => CONNECT | CONNACK,
        0x23 => PUBLISH,
        0x26 => ALL,
        _ => return None,
    })
}

/// Sets a property that may appear only once; a second occurrence is a Protocol Error (section 2.2.2.2).
fn set_once<T>(slot: &mut Option<T>, id: u8, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(id));
    }
    *slot = Some(value);
    Ok(())
}

/// A byte property that may only be 0 or 1.
fn flag(reader: &mut Reader, id: u8) -> Result<u8, DecodeError> {
    match reader.u8()? {
        value @ (0 | 1) => Ok(value),
        _ => Err(DecodeError::InvalidPropertyValue(id)),
    }
}

fn nonzero_u16(reader: &mut Reader, id: u8) -> Result<u16, DecodeError> {
    match reader.u16()? {
        0 => Err(DecodeError::InvalidPropertyValue(id)),
        value => Ok(value),
    }
}

/// Decodes a property block (length prefix included) for `context`.
pub fn decode(reader: &mut Reader, context: Context) -> Result<Properties, DecodeError> {
    let len = reader.varint()? as usize;
    if len > reader.remaining() {
        return Err(DecodeError::UnexpectedEnd);
    }
    let mut block = Reader::new(reader.bytes(len)?);
    let mut p = Properties::default();
    while !block.is_empty() {
        // Identifiers are Variable Byte Integers, but every defined one fits in one byte.
        let id = block.varint()?;
        let id = u8::try_from(id).map_err(|_| DecodeError::UnknownProperty(0xFF))?;
        let allowed = allowed_in(id).ok_or(DecodeError::UnknownProperty(id))?;
        if allowed & context.bit() == 0 {
            return Err(DecodeError::PropertyNotAllowed(id));
        }
        let b = &mut block;
        match id {
            0x01 => set_once(&mut p.payload_format_indicator, id, flag(b, id)?)?,
            0x02 => set_once(&mut p.message_expiry_interval, id, b.u32()?)?,
            0x03 => set_once(&mut p.content_type, id, b.string()?)?,
            0x08 => {
                // The Response Topic is the Topic Name of the response: no wildcards [MQTT-3.3.2-14], not empty.
                let topic = b.string()?;
                crate::topic::validate_topic_name(&topic).map_err(|_| DecodeError::InvalidPropertyValue(id))?;
                set_once(&mut p.response_topic, id, topic)?
            }
            0x09 => set_once(&mut p.correlation_data, id, b.binary()?)?,
            0x0B => {
                let value = b.varint()?;
                if value == 0 {
                    return Err(DecodeError::InvalidPropertyValue(id));
                }
                // Only PUBLISH (server to client) may carry several [MQTT-3.8.2-?]; SUBSCRIBE carries one.
                if context != Context::Publish && !p.subscription_identifiers.is_empty() {
                    return Err(DecodeError::DuplicateProperty(id));
                }
                p.subscription_identifiers.push(value);
            }
            0x11 => set_once(&mut p.session_expiry_interval, id, b.u32()?)?,
            0x12 => set_once(&mut p.assigned_client_identifier, id, b.string()?)?,
            0x13 => set_once(&mut p.server_keep_alive, id, b.u16()?)?,
            0x15 => set_once(&mut p.authentication_method, id, b.string()?)?,
            0x16 => set_once(&mut p.authentication_data, id, b.binary()?)?,
            0x17 => set_once(&mut p.request_problem_information, id, flag(b, id)?)?,
            0x18 => set_once(&mut p.will_delay_interval, id, b.u32()?)?,
            0x19 => set_once(&mut p.request_response_information, id, flag(b, id)?)?,
            0x1A => set_once(&mut p.response_information, id, b.string()?)?,
            0x1C => set_once(&mut p.server_reference, id, b.string()?)?,
            0x1F => set_once(&mut p.reason_string, id, b.string()?)?,
            // [MQTT-3.1.2-?]: Receive Maximum of 0 is a Protocol Error.
            0x21 => set_once(&mut p.receive_maximum, id, nonzero_u16(b, id)?)?,
            0x22 => set_once(&mut p.topic_alias_maximum, id, b.u16()?)?,
            // [MQTT-3.3.2-8]: Topic Alias 0 is not permitted.
            0x23 => set_once(&mut p.topic_alias, id, nonzero_u16(b, id)?)?,
            0x24 => set_once(&mut p.maximum_qos, id, flag(b, id)?)?,
            0x25 => set_once(&mut p.retain_available, id, flag(b, id)?)?,
            0x26 => {
                let key = b.string()?;
                let value = b.string()?;
                p.user_properties.push((key, value));
            }
            0x27 => {
                let value = b.u32()?;
                if value == 0 {
                    return Err(DecodeError::InvalidPropertyValue(id));
                }
                set_once(&mut p.maximum_packet_size, id, value)?;
            }
            0x28 => set_once(&mut p.wildcard_subscription_available, id, flag(b, id)?)?,
            0x29 => set_once(&mut p.subscription_identifier_available, id, flag(b, id)?)?,
            0x2A => set_once(&mut p.shared_subscription_available, id, flag(b, id)?)?,
            _ => return Err(DecodeError::UnknownProperty(id)),
        }
    }
    Ok(p)
}

/// Writes the properties without their length prefix, in identifier order (User Properties in their own order).
fn write_body<S: Sink>(p: &Properties, s: &mut S) -> Result<(), EncodeError> {
    if let Some(v) = p.payload_format_indicator {
        s.put_u8(0x01);
        s.put_u8(v);
    }
    if let Some(v) = p.message_expiry_interval {
        s.put_u8(0x02);
        s.put_u32(v);
    }
    if let Some(v) = &p.content_type {
        s.put_u8(0x03);
        s.put_string(v)?;
    }
    if let Some(v) = &p.response_topic {
        s.put_u8(0x08);
        s.put_string(v)?;
    }
    if let Some(v) = &p.correlation_data {
        s.put_u8(0x09);
        s.put_binary(v)?;
    }
    for &v in &p.subscription_identifiers {
        s.put_u8(0x0B);
        if v == 0 {
            return Err(EncodeError::InvalidVariableInteger);
        }
        s.put_varint(v as usize)?;
    }
    if let Some(v) = p.session_expiry_interval {
        s.put_u8(0x11);
        s.put_u32(v);
    }
    if let Some(v) = &p.assigned_client_identifier {
        s.put_u8(0x12);
        s.put_string(v)?;
    }
    if let Some(v) = p.server_keep_alive {
        s.put_u8(0x13);
        s.put_u16(v);
    }
    if let Some(v) = &p.authentication_method {
        s.put_u8(0x15);
        s.put_string(v)?;
    }
    if let Some(v) = &p.authentication_data {
        s.put_u8(0x16);
        s.put_binary(v)?;
    }
    if let Some(v) = p.request_problem_information {
        s.put_u8(0x17);
        s.put_u8(v);
    }
    if let Some(v) = p.will_delay_interval {
        s.put_u8(0x18);
        s.put_u32(v);
    }
    if let Some(v) = p.request_response_information {
        s.put_u8(0x19);
        s.put_u8(v);
    }
    if let Some(v) = &p.response_information {
        s.put_u8(0x1A);
        s.put_string(v)?;
    }
    if let Some(v) = &p.server_reference {
        s.put_u8(0x1C);
        s.put_string(v)?;
    }
    if let Some(v) = &p.reason_string {
        s.put_u8(0x1F);
        s.put_string(v)?;
    }
    if let Some(v) = p.receive_maximum {
        s.put_u8(0x21);
        s.put_u16(v);
    }
    if let Some(v) = p.topic_alias_maximum {
        s.put_u8(0x22);
        s.put_u16(v);
    }
    if let Some(v) = p.topic_alias {
        s.put_u8(0x23);
        s.put_u16(v);
    }
    if let Some(v) = p.maximum_qos {
        s.put_u8(0x24);
        s.put_u8(v);
    }
    if let Some(v) = p.retain_available {
        s.put_u8(0x25);
        s.put_u8(v);
    }
    for (key, value) in &p.user_properties {
        s.put_u8(0x26);
        s.put_string(key)?;
        s.put_string(value)?;
    }
    if let Some(v) = p.maximum_packet_size {
        s.put_u8(0x27);
        s.put_u32(v);
    }
    if let Some(v) = p.wildcard_subscription_available {
        s.put_u8(0x28);
        s.put_u8(v);
    }
    if let Some(v) = p.subscription_identifier_available {
        s.put_u8(0x29);
        s.put_u8(v);
    }
    if let Some(v) = p.shared_subscription_available {
        s.put_u8(0x2A);
        s.put_u8(v);
    }
    Ok(())
}

/// Byte length of the properties without the length prefix.
pub fn body_len(p: &Properties) -> Result<usize, EncodeError> {
    if p.is_empty() {
        return Ok(0);
    }
    let mut counter = Counter::default();
    write_body(p, &mut counter)?;
    Ok(counter.0)
}

/// Writes the property block: length prefix then properties.
pub fn encode<S: Sink>(p: &Properties, s: &mut S) -> Result<(), EncodeError> {
    let len = body_len(p)?;
    s.put_varint(len)?;
    if len > 0 {
        write_body(p, s)?;
    }
    Ok(())
}
