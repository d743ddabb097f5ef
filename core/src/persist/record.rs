//! Persistence records: every change to durable broker state, as a deterministic command. The broker emits them in
//! the order it makes the changes; replaying them in that order (see `image`) rebuilds the state. They are also the
//! commands a replicated log would carry.
//!
//! Encoding: a tag byte, then fields in big-endian, strings and short binaries with a u16 length, payloads with a
//! u32 length, MQTT 5 property blocks as on the wire. Framing and checksums belong to the storage layer.

use crate::codec::decode::decode_options;
use crate::codec::encode::options_byte;
use crate::codec::primitive::{Reader, Sink};
use crate::codec::property::{self, Context};
use crate::codec::{DecodeError, EncodeError};
use crate::packet::{BoxedProperties, Properties, ProtocolVersion, QoS, SubscriptionOptions};
use crate::time::Time;
use crate::topic::Subscription;
use bytes::{Bytes, BytesMut};
use std::fmt;

/// A message as stored: what a subscriber will be sent, and when it stops being worth sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Boxed, and absent for most messages: an image of a million retained messages does not each hold 344 bytes
    /// of empty properties while it is recovered.
    pub properties: BoxedProperties,
    pub expires_at: Option<Time>,
}

/// A will as stored while it waits for its delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWill {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Properties,
    pub publish_at: Time,
}

impl StoredWill {
    /// `publish_at` of a will whose connection was open when it was recorded (see `Config::durable_wills`): a
    /// broker restored from it counts the Will Delay Interval from the restore.
    pub const ARMED: Time = Time(u64::MAX);
}

/// Which acknowledgement an outgoing QoS 1/2 message waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentState {
    /// PUBLISH sent, PUBACK (QoS 1) or PUBREC (QoS 2) awaited.
    Published,
    /// PUBREC received and PUBREL sent; PUBCOMP awaited.
    Released,
}

/// One change to durable state. `key` is the broker's session key, stable across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A persistent session was created (replacing nothing: a clean start ends the old one first).
    SessionOpen {
        key: u64,
        client_id: String,
        protocol: ProtocolVersion,
        expiry: u32,
    },
    /// The Session Expiry Interval as set by a CONNECT that resumed the session, or changed by DISCONNECT: either way
    /// the session has a connection at this point.
    SessionExpiry {
        key: u64,
        expiry: u32,
    },
    /// The session's connection ended at `at`; expiry counts from then.
    SessionOffline {
        key: u64,
        at: Time,
    },
    /// The session and everything in it are gone.
    SessionEnd {
        key: u64,
    },
    Subscribe {
        key: u64,
        filter: String,
        subscription: Subscription,
    },
    Unsubscribe {
        key: u64,
        filter: String,
    },
    /// The retained message of `message.topic` is now this one.
    Retain {
        message: Box<StoredMessage>,
    },
    RetainClear {
        topic: String,
    },
    /// A message that queue entries refer to by `id`.
    Store {
        id: u64,
        message: Box<StoredMessage>,
    },
    /// Message `id` joined the session's queue as entry `seq`.
    Enqueue {
        key: u64,
        seq: u64,
        id: u64,
        qos: QoS,
        retain: bool,
        subscription_ids: Vec<u32>,
    },
    /// Entry `seq` was sent with `packet_id`, or moved on in its QoS 2 flow.
    Sent {
        key: u64,
        seq: u64,
        packet_id: u16,
        state: SentState,
    },
    /// Entry `seq` is finished: acknowledged, expired or dropped.
    Done {
        key: u64,
        seq: u64,
    },
    /// An incoming QoS 2 message was delivered and PUBREC sent; its id is remembered until PUBREL.
    Qos2Received {
        key: u64,
        packet_id: u16,
    },
    Qos2Released {
        key: u64,
        packet_id: u16,
    },
    /// The session's will waits for its delay.
    WillPending {
        key: u64,
        will: Box<StoredWill>,
    },
    /// The pending will was published or cancelled.
    WillDone {
        key: u64,
    },
}

/// Why a record could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    UnknownTag(u8),
    Field(DecodeError),
    /// Bytes left over after the record.
    TrailingBytes(usize),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::UnknownTag(tag) => write!(f, "unknown record tag {tag}"),
            RecordError::Field(e) => write!(f, "malformed record field: {e:?}"),
            RecordError::TrailingBytes(n) => write!(f, "{n} bytes after the record"),
        }
    }
}

impl std::error::Error for RecordError {}

impl From<DecodeError> for RecordError {
    fn from(e: DecodeError) -> Self {
        RecordError::Field(e)
    }
}

mod tag {
    pub const SESSION_OPEN: u8 = 1;
    pub const SESSION_EXPIRY: u8 = 2;
    pub const SESSION_OFFLINE: u8 = 3;
    pub const SESSION_END: u8 = 4;
    pub const SUBSCRIBE: u8 = 5;
    pub const UNSUBSCRIBE: u8 = 6;
    pub const RETAIN: u8 = 7;
    pub const RETAIN_CLEAR: u8 = 8;
    pub const STORE: u8 = 9;
    pub const ENQUEUE: u8 = 10;
    pub const SENT: u8 = 11;
    pub const DONE: u8 = 12;
    pub const QOS2_RECEIVED: u8 = 13;
    pub const QOS2_RELEASED: u8 = 14;
    pub const WILL_PENDING: u8 = 15;
    pub const WILL_DONE: u8 = 16;
}

/// What an encoded record says about the queue entry or stored message it concerns, read from its first fields
/// without decoding the rest (`Record::peek`): for a replay that skips the records a later one cancels (a queue
/// entry enqueued, sent and finished within the entries it replays) instead of decoding and applying them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    Store {
        id: u64,
    },
    Enqueue {
        key: u64,
        seq: u64,
        id: u64,
    },
    Sent {
        key: u64,
        seq: u64,
    },
    Done {
        key: u64,
        seq: u64,
    },
    /// Any other record, or bytes too short for the fields above (decoding says what is wrong with them).
    Other,
}

impl Peek {
    /// Peeks at an encoded record (what `Record::encode` wrote).
    pub fn of(data: &[u8]) -> Peek {
        let u64_at = |at: usize| -> Option<u64> { data.get(at..at + 8)?.try_into().ok().map(u64::from_be_bytes) };
        let peeked = match data.first() {
            Some(&tag::STORE) => u64_at(1).map(|id| Peek::Store { id }),
            Some(&tag::ENQUEUE) => (|| {
                Some(Peek::Enqueue {
                    key: u64_at(1)?,
                    seq: u64_at(9)?,
                    id: u64_at(17)?,
                })
            })(),
            Some(&tag::SENT) => u64_at(1).zip(u64_at(9)).map(|(key, seq)| Peek::Sent { key, seq }),
            Some(&tag::DONE) => u64_at(1).zip(u64_at(9)).map(|(key, seq)| Peek::Done { key, seq }),
            _ => None,
        };
        peeked.unwrap_or(Peek::Other)
    }
}

impl Record {
    /// Appends the encoded record to `out`. Fails only for values the MQTT wire format could not carry either.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let s = out;
        match self {
            Record::SessionOpen {
                key,
                client_id,
                protocol,
                expiry,
            } => {
                s.put_u8(tag::SESSION_OPEN);
                put_u64(s, *key);
                s.put_string(client_id)?;
                s.put_u8(protocol.level());
                s.put_u32(*expiry);
            }
            Record::SessionExpiry { key, expiry } => {
                s.put_u8(tag::SESSION_EXPIRY);
                put_u64(s, *key);
                s.put_u32(*expiry);
            }
            Record::SessionOffline { key, at } => {
                s.put_u8(tag::SESSION_OFFLINE);
                put_u64(s, *key);
                put_u64(s, at.as_millis());
            }
            Record::SessionEnd { key } => {
                s.put_u8(tag::SESSION_END);
                put_u64(s, *key);
            }
            Record::Subscribe {
                key,
                filter,
                subscription,
            } => {
                s.put_u8(tag::SUBSCRIBE);
                put_u64(s, *key);
                s.put_string(filter)?;
                s.put_u8(options_byte(&subscription.options, true));
                s.put_u32(subscription.identifier.unwrap_or(0));
            }
            Record::Unsubscribe { key, filter } => {
                s.put_u8(tag::UNSUBSCRIBE);
                put_u64(s, *key);
                s.put_string(filter)?;
            }
            Record::Retain { message } => {
                s.put_u8(tag::RETAIN);
                put_message(s, message)?;
            }
            Record::RetainClear { topic } => {
                s.put_u8(tag::RETAIN_CLEAR);
                s.put_string(topic)?;
            }
            Record::Store { id, message } => {
                s.put_u8(tag::STORE);
                put_u64(s, *id);
                put_message(s, message)?;
            }
            Record::Enqueue {
                key,
                seq,
                id,
                qos,
                retain,
                subscription_ids,
            } => {
                s.put_u8(tag::ENQUEUE);
                put_u64(s, *key);
                put_u64(s, *seq);
                put_u64(s, *id);
                s.put_u8(*qos as u8 | (u8::from(*retain) << 2));
                let count = u16::try_from(subscription_ids.len()).map_err(|_| EncodeError::FieldTooLong)?;
                s.put_u16(count);
                for id in subscription_ids {
                    s.put_u32(*id);
                }
            }
            Record::Sent {
                key,
                seq,
                packet_id,
                state,
            } => {
                s.put_u8(tag::SENT);
                put_u64(s, *key);
                put_u64(s, *seq);
                s.put_u16(*packet_id);
                s.put_u8(match state {
                    SentState::Published => 0,
                    SentState::Released => 1,
                });
            }
            Record::Done { key, seq } => {
                s.put_u8(tag::DONE);
                put_u64(s, *key);
                put_u64(s, *seq);
            }
            Record::Qos2Received { key, packet_id } | Record::Qos2Released { key, packet_id } => {
                let t = if matches!(self, Record::Qos2Received { .. }) {
                    tag::QOS2_RECEIVED
                } else {
                    tag::QOS2_RELEASED
                };
                s.put_u8(t);
                put_u64(s, *key);
                s.put_u16(*packet_id);
            }
            Record::WillPending { key, will } => {
                s.put_u8(tag::WILL_PENDING);
                put_u64(s, *key);
                s.put_string(&will.topic)?;
                put_payload(s, &will.payload)?;
                s.put_u8(will.qos as u8 | (u8::from(will.retain) << 2));
                property::encode(&will.properties, s)?;
                put_u64(s, will.publish_at.as_millis());
            }
            Record::WillDone { key } => {
                s.put_u8(tag::WILL_DONE);
                put_u64(s, *key);
            }
        }
        Ok(())
    }

    /// Reads one record that fills `data` exactly.
    pub fn decode(data: Bytes) -> Result<Record, RecordError> {
        let mut r = Reader::new(data);
        let record = match r.u8()? {
            tag::SESSION_OPEN => {
                let key = get_u64(&mut r)?;
                let client_id = r.string()?;
                let level = r.u8()?;
                let protocol =
                    ProtocolVersion::from_level(level).ok_or(DecodeError::UnsupportedProtocolVersion(level))?;
                Record::SessionOpen {
                    key,
                    client_id,
                    protocol,
                    expiry: r.u32()?,
                }
            }
            tag::SESSION_EXPIRY => Record::SessionExpiry {
                key: get_u64(&mut r)?,
                expiry: r.u32()?,
            },
            tag::SESSION_OFFLINE => Record::SessionOffline {
                key: get_u64(&mut r)?,
                at: Time::from_millis(get_u64(&mut r)?),
            },
            tag::SESSION_END => Record::SessionEnd { key: get_u64(&mut r)? },
            tag::SUBSCRIBE => {
                let key = get_u64(&mut r)?;
                let filter = r.string()?;
                let options: SubscriptionOptions = decode_options(r.u8()?, true)?;
                let identifier = Some(r.u32()?).filter(|id| *id != 0);
                Record::Subscribe {
                    key,
                    filter,
                    subscription: Subscription { options, identifier },
                }
            }
            tag::UNSUBSCRIBE => Record::Unsubscribe {
                key: get_u64(&mut r)?,
                filter: r.string()?,
            },
            tag::RETAIN => Record::Retain {
                message: Box::new(get_message(&mut r)?),
            },
            tag::RETAIN_CLEAR => Record::RetainClear { topic: r.string()? },
            tag::STORE => Record::Store {
                id: get_u64(&mut r)?,
                message: Box::new(get_message(&mut r)?),
            },
            tag::ENQUEUE => {
                let key = get_u64(&mut r)?;
                let seq = get_u64(&mut r)?;
                let id = get_u64(&mut r)?;
                let (qos, retain) = qos_retain(r.u8()?)?;
                let count = r.u16()?;
                let subscription_ids = (0..count).map(|_| r.u32()).collect::<Result<Vec<_>, _>>()?;
                Record::Enqueue {
                    key,
                    seq,
                    id,
                    qos,
                    retain,
                    subscription_ids,
                }
            }
            tag::SENT => Record::Sent {
                key: get_u64(&mut r)?,
                seq: get_u64(&mut r)?,
                packet_id: r.u16()?,
                state: match r.u8()? {
                    0 => SentState::Published,
                    1 => SentState::Released,
                    other => return Err(RecordError::Field(DecodeError::InvalidReasonCode(other))),
                },
            },
            tag::DONE => Record::Done {
                key: get_u64(&mut r)?,
                seq: get_u64(&mut r)?,
            },
            tag::QOS2_RECEIVED => Record::Qos2Received {
                key: get_u64(&mut r)?,
                packet_id: r.u16()?,
            },
            tag::QOS2_RELEASED => Record::Qos2Released {
                key: get_u64(&mut r)?,
                packet_id: r.u16()?,
            },
            tag::WILL_PENDING => {
                let key = get_u64(&mut r)?;
                let topic = r.string()?;
                let payload = get_payload(&mut r)?;
                let (qos, retain) = qos_retain(r.u8()?)?;
                let properties = unpinned(property::decode(&mut r, Context::Will)?);
                let publish_at = Time::from_millis(get_u64(&mut r)?);
                Record::WillPending {
                    key,
                    will: Box::new(StoredWill {
                        topic,
                        payload,
                        qos,
                        retain,
                        properties,
                        publish_at,
                    }),
                }
            }
            tag::WILL_DONE => Record::WillDone { key: get_u64(&mut r)? },
            other => return Err(RecordError::UnknownTag(other)),
        };
        if !r.is_empty() {
            return Err(RecordError::TrailingBytes(r.remaining()));
        }
        Ok(record)
    }
}

fn put_u64(s: &mut BytesMut, value: u64) {
    s.put_slice(&value.to_be_bytes());
}

fn get_u64(r: &mut Reader) -> Result<u64, DecodeError> {
    r.u64()
}

fn put_payload(s: &mut BytesMut, payload: &[u8]) -> Result<(), EncodeError> {
    let len = u32::try_from(payload.len()).map_err(|_| EncodeError::FieldTooLong)?;
    s.put_u32(len);
    s.put_slice(payload);
    Ok(())
}

fn get_payload(r: &mut Reader) -> Result<Bytes, DecodeError> {
    let len = r.u32()? as usize;
    // Copied out so a long-lived message does not pin the whole file buffer (or Raft entry) it was read from.
    r.copied(len)
}

/// Properties with their binary data copied out, like a payload: the only binary property a PUBLISH or a Will
/// carries (Correlation Data) would otherwise pin the whole buffer the record was read from.
fn unpinned(mut properties: Properties) -> Properties {
    if let Some(data) = properties.correlation_data.as_mut() {
        *data = Bytes::copy_from_slice(data);
    }
    properties
}

fn qos_retain(byte: u8) -> Result<(QoS, bool), DecodeError> {
    let qos = QoS::from_u8(byte & 0x03).ok_or(DecodeError::InvalidQoS)?;
    Ok((qos, byte & 0x04 != 0))
}

fn put_message(s: &mut BytesMut, m: &StoredMessage) -> Result<(), EncodeError> {
    s.put_string(&m.topic)?;
    put_payload(s, &m.payload)?;
    s.put_u8(m.qos as u8 | (u8::from(m.retain) << 2));
    property::encode(&m.properties, s)?;
    put_u64(s, m.expires_at.map_or(0, |t| t.as_millis().max(1)));
    Ok(())
}

fn get_message(r: &mut Reader) -> Result<StoredMessage, DecodeError> {
    let topic = r.string()?;
    let payload = get_payload(r)?;
    let (qos, retain) = qos_retain(r.u8()?)?;
    // Most stored messages have no properties (every MQTT 3.1.1 one): an empty block (its length, one zero byte)
    // is taken as such without building and dropping a full `Properties` (3 % of a follower's CPU).
    let properties = if r.peek_u8() == Some(0) {
        r.u8()?;
        BoxedProperties::default()
    } else {
        unpinned(property::decode(r, Context::Publish)?).into()
    };
    let expires_at = Some(get_u64(r)?).filter(|ms| *ms != 0).map(Time::from_millis);
    Ok(StoredMessage {
        topic,
        payload,
        qos,
        retain,
        properties,
        expires_at,
    })
}
