//! Decode and encode errors. Each decode error maps to the reason code the server closes the connection with.

use crate::packet::ReasonCode;
use crate::topic::TopicError;
use std::fmt;

/// Why bytes could not be decoded into a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The whole packet would exceed the allowed maximum packet size [MQTT-3.2.2-15], [MQTT-3.1.2-24].
    PacketTooLarge { size: usize, max: usize },
    /// The Variable Byte Integer used more than four bytes [MQTT-1.5.5-1].
    MalformedVariableInteger,
    /// Packet type 0, or AUTH before MQTT 5.
    InvalidPacketType(u8),
    /// Reserved flags in the fixed header have the wrong value [MQTT-2.1.3-1].
    InvalidFixedHeaderFlags { packet_type: u8, flags: u8 },
    /// QoS 3 in a PUBLISH [MQTT-3.3.1-4], a will [MQTT-3.1.2-12] or subscription options.
    InvalidQoS,
    /// DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2].
    DupWithQoS0,
    /// The fields ran past the end of the packet.
    UnexpectedEnd,
    /// Bytes left over after the last field.
    TrailingBytes,
    /// A string is not well-formed UTF-8 (this includes surrogates) [MQTT-1.5.4-1].
    InvalidUtf8,
    /// A string contains U+0000 [MQTT-1.5.4-2].
    NullCharacter,
    /// The CONNECT protocol name is neither "MQTT" nor "MQIsdp" [MQTT-3.1.2-1].
    InvalidProtocolName,
    /// The CONNECT protocol level is not one this server speaks [MQTT-3.1.2-2].
    UnsupportedProtocolVersion(u8),
    /// CONNECT flags break a rule: reserved bit [MQTT-3.1.2-3], will flag rules [MQTT-3.1.2-11], [MQTT-3.1.2-13],
    /// password without user name in 3.1.1 [MQTT-3.1.2-22].
    InvalidConnectFlags,
    /// The CONNACK acknowledge flags have reserved bits set [MQTT-3.2.2-1].
    InvalidConnAckFlags,
    /// A CONNACK refusing the connection (non-zero reason / return code) with Session Present set
    /// [MQTT-3.2.2-6] (MQTT 5), [MQTT-3.2.2-4] (3.1.1).
    SessionPresentWithError,
    /// A property identifier this version does not define.
    UnknownProperty(u8),
    /// A property that this packet may not carry.
    PropertyNotAllowed(u8),
    /// A property that may appear once appeared again.
    DuplicateProperty(u8),
    /// A property value out of its range (e.g. Receive Maximum 0).
    InvalidPropertyValue(u8),
    /// A reason code this packet type does not define.
    InvalidReasonCode(u8),
    /// Packet identifier 0 where one is required [MQTT-2.2.1-3].
    ZeroPacketId,
    /// SUBSCRIBE or UNSUBSCRIBE without any topic filter [MQTT-3.8.3-3], [MQTT-3.10.3-2].
    NoTopicFilters,
    /// Reserved bits set in subscription options [MQTT-3.8.3-5], or Retain Handling 3.
    InvalidSubscriptionOptions,
    /// The topic name of a PUBLISH or will is not valid [MQTT-3.3.2-2], [MQTT-4.7.3-1].
    InvalidTopicName(TopicError),
    /// The first packet of a connection was not CONNECT [MQTT-3.1.0-1].
    FirstPacketNotConnect,
}

impl DecodeError {
    /// The reason code for the DISCONNECT (or CONNACK) the server sends because of this error.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            UnsupportedProtocolVersion(_) => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            InvalidTopicName(_) => ReasonCode::TOPIC_NAME_INVALID,
            // Section 2.2.2.2 and the property descriptions call these a Protocol Error.
            DuplicateProperty(_) | InvalidPropertyValue(_) | FirstPacketNotConnect => ReasonCode::PROTOCOL_ERROR,
            InvalidSubscriptionOptions => ReasonCode::MALFORMED_PACKET,
            _ => ReasonCode::MALFORMED_PACKET,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeError::*;
        match self {
            PacketTooLarge { size, max } => write!(f, "packet of {size} bytes exceeds the maximum of {max}"),
            MalformedVariableInteger => write!(f, "variable byte integer longer than 4 bytes"),
            InvalidPacketType(t) => write!(f, "invalid packet type {t}"),
            InvalidFixedHeaderFlags { packet_type, flags } => {
                write!(
                    f,
                    "invalid fixed header flags {flags:#06b} for packet type {packet_type}"
                )
            }
            InvalidQoS => write!(f, "QoS 3 is not a valid QoS"),
            DupWithQoS0 => write!(f, "DUP flag set on a QoS 0 PUBLISH"),
            UnexpectedEnd => write!(f, "packet ends in the middle of a field"),
            TrailingBytes => write!(f, "bytes left after the last field"),
            InvalidUtf8 => write!(f, "string is not well-formed UTF-8"),
            NullCharacter => write!(f, "string contains U+0000"),
            InvalidProtocolName => write!(f, "unknown protocol name"),
            UnsupportedProtocolVersion(level) => write!(f, "unsupported protocol level {level}"),
            InvalidConnectFlags => write!(f, "invalid CONNECT flags"),
            InvalidConnAckFlags => write!(f, "invalid CONNACK flags"),
            SessionPresentWithError => write!(f, "CONNACK with Session Present and a non-zero reason code"),
            UnknownProperty(id) => write!(f, "unknown property {id:#04x}"),
            PropertyNotAllowed(id) => write!(f, "property {id:#04x} not allowed in this packet"),
            DuplicateProperty(id) => write!(f, "property {id:#04x} appears more than once"),
            InvalidPropertyValue(id) => write!(f, "property {id:#04x} has an invalid value"),
            InvalidReasonCode(code) => write!(f, "reason code {code:#04x} not valid for this packet"),
            ZeroPacketId => write!(f, "packet identifier 0"),
            NoTopicFilters => write!(f, "no topic filters"),
            InvalidSubscriptionOptions => write!(f, "invalid subscription options"),
            InvalidTopicName(e) => write!(f, "invalid topic name: {e:?}"),
            FirstPacketNotConnect => write!(f, "first packet was not CONNECT"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a packet could not be encoded: a value the wire format cannot express.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The packet would exceed 268,435,455 bytes of remaining length.
    PacketTooLarge,
    /// A string or binary field is longer than 65,535 bytes.
    FieldTooLong,
    /// A Subscription Identifier outside 1..=268,435,455.
    InvalidVariableInteger,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::PacketTooLarge => write!(f, "packet too large to encode"),
            EncodeError::FieldTooLong => write!(f, "string or binary field longer than 65,535 bytes"),
            EncodeError::InvalidVariableInteger => write!(f, "variable byte integer out of range"),
        }
    }
}

impl std::error::Error for EncodeError {}
