//! What crosses a wire or a disk: peer messages (a small header, then raft-rs's protobuf `eraftpb::Message`), the
//! batch of broker records one Raft entry carries, and the data of a Raft snapshot (an image and the applied-entry
//! digest). Every decoder here returns a typed error on bad input; none panics.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use mqtt_core::persist::{frame, log, Image, Record};
use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState, Message, Snapshot};
use std::fmt;

/// The first bytes of every peer message: a message from something that is not a node of this broker is refused
/// before anything else is read.
pub const PEER_MAGIC: [u8; 4] = *b"MQRF";
/// The header format; a node refuses versions it does not know.
pub const PEER_VERSION: u8 = 1;
/// Magic, version, cluster id.
pub const PEER_HEADER_LEN: usize = 4 + 1 + 8;
/// The default cap on one peer message (header included). Snapshots travel as one message, so this bounds the
/// durable state a cluster can hold; the node refuses anything larger.
pub const DEFAULT_MAX_PEER_MESSAGE: usize = 64 * 1024 * 1024;

/// Why a peer message was refused. Nothing of a refused message is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerError {
    /// Larger than the configured cap.
    TooLarge {
        len: usize,
        max: usize,
    },
    /// Shorter than the header.
    Truncated {
        len: usize,
    },
    /// Not a peer message of this broker at all.
    BadMagic,
    UnknownVersion(u8),
    /// A node of another cluster (or one configured with another cluster id).
    WrongCluster {
        expected: u64,
        got: u64,
    },
    /// The protobuf body does not decode.
    Malformed(String),
    /// The message names a sender other than the connection it came from, or one that is not a member.
    UnknownSender {
        claimed: u64,
        connection: u64,
    },
    /// The message is addressed to another node.
    WrongRecipient {
        to: u64,
    },
    /// raft-rs refused the message (a local message type, a stale step); its reason.
    Refused(String),
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::TooLarge { len, max } => write!(f, "peer message of {len} bytes exceeds the {max}-byte cap"),
            PeerError::Truncated { len } => write!(f, "peer message of {len} bytes is shorter than its header"),
            PeerError::BadMagic => write!(f, "not a cluster peer message (bad magic)"),
            PeerError::UnknownVersion(v) => write!(f, "unknown peer message version {v}"),
            PeerError::WrongCluster { expected, got } => {
                write!(
                    f,
                    "peer belongs to cluster {got:#x}, this node to cluster {expected:#x}"
                )
            }
            PeerError::Malformed(detail) => write!(f, "malformed raft message: {detail}"),
            PeerError::UnknownSender { claimed, connection } => {
                write!(f, "message claims sender {claimed} but came from peer {connection}")
            }
            PeerError::WrongRecipient { to } => write!(f, "message addressed to node {to}"),
            PeerError::Refused(detail) => write!(f, "raft refused the message: {detail}"),
        }
    }
}

impl std::error::Error for PeerError {}

/// Encodes a raft message for a peer of cluster `cluster_id`.
pub fn encode_peer_message(cluster_id: u64, message: &Message) -> Bytes {
    let mut out = BytesMut::with_capacity(PEER_HEADER_LEN + message.compute_size() as usize);
    out.put_slice(&PEER_MAGIC);
    out.put_u8(PEER_VERSION);
    out.put_u64(cluster_id);
    // Writing a well-formed message into a growable buffer cannot fail (no required fields in proto3).
    let body = message.write_to_bytes().unwrap_or_default();
    out.put_slice(&body);
    out.freeze()
}

/// Decodes a peer message, checking size, header and cluster id before the body is parsed.
pub fn decode_peer_message(data: &[u8], cluster_id: u64, max: usize) -> Result<Message, PeerError> {
    if data.len() > max {
        return Err(PeerError::TooLarge { len: data.len(), max });
    }
    if data.len() < PEER_HEADER_LEN {
        return Err(PeerError::Truncated { len: data.len() });
    }
    let mut header = &data[..PEER_HEADER_LEN];
    if header[..4] != PEER_MAGIC {
        return Err(PeerError::BadMagic);
    }
    header.advance(4);
    let version = header.get_u8();
    if version != PEER_VERSION {
        return Err(PeerError::UnknownVersion(version));
    }
    let got = header.get_u64();
    if got != cluster_id {
        return Err(PeerError::WrongCluster {
            expected: cluster_id,
            got,
        });
    }
    Message::parse_from_bytes(&data[PEER_HEADER_LEN..]).map_err(|e| PeerError::Malformed(e.to_string()))
}

/// Why stored or replicated data did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError(pub String);

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DataError {}

/// The data of one Raft entry: every record one broker input produced, each framed (length, CRC) as in the log.
pub fn encode_records(records: &[Record]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut scratch = BytesMut::new();
    for record in records {
        log::append(&mut out, record, &mut scratch);
    }
    out.to_vec()
}

/// The records of one entry's data. Each record is decoded from a slice of `data` (no copy of its frame): what a
/// record keeps past decoding (payloads, strings, Correlation Data) is copied out by `Record::decode`, so nothing
/// long-lived pins the entry's buffer.
pub fn decode_records(data: &Bytes) -> Result<Vec<Record>, DataError> {
    let mut records = Vec::with_capacity(frame_count(data));
    let mut offset = 0;
    loop {
        match frame::scan(data, offset) {
            frame::Scan::End => return Ok(records),
            frame::Scan::Frame { body, next } => {
                let record = Record::decode(data.slice_ref(body))
                    .map_err(|e| DataError(format!("undecodable record at byte {offset}: {e}")))?;
                records.push(record);
                offset = next;
            }
            frame::Scan::Truncated => return Err(DataError(format!("record cut short at byte {offset}"))),
            frame::Scan::Corrupt => return Err(DataError(format!("checksum mismatch at byte {offset}"))),
        }
    }
}

/// How many frames `data` holds by their length fields alone (checked by `decode_records` as it goes): the
/// records vector is allocated once instead of regrown (a record is large; regrowing copied them, 5 % of a
/// follower's CPU in a QoS 1 bench).
fn frame_count(data: &[u8]) -> usize {
    let (mut offset, mut count) = (0usize, 0usize);
    while let Some(header) = data.get(offset..offset + frame::HEADER) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        offset = offset.saturating_add(frame::HEADER).saturating_add(len);
        count += 1;
    }
    count
}

/// A Raft snapshot's data: the digest of every entry applied up to it, then the image's records.
pub fn encode_snapshot_data(digest: u64, image: &Image) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u64(digest);
    let mut scratch = BytesMut::new();
    for record in image.to_records() {
        log::append(&mut out, &record, &mut scratch);
    }
    out.freeze()
}

/// The digest and image of a snapshot's data.
pub fn decode_snapshot_data(data: &[u8]) -> Result<(u64, Image), DataError> {
    if data.len() < 8 {
        return Err(DataError(format!(
            "snapshot data of {} bytes has no digest",
            data.len()
        )));
    }
    let digest = u64::from_be_bytes(data[..8].try_into().map_err(|_| DataError("digest".into()))?);
    let mut image = Image::default();
    let replay = log::replay(&data[8..], &mut image);
    match replay.damage {
        None => Ok((digest, image)),
        Some(damage) => Err(DataError(format!(
            "snapshot damaged at byte {}: {}",
            damage.offset + 8,
            damage.detail
        ))),
    }
}

/// Entry, hard state and snapshot as protobuf bytes, for a driver's durable log (it adds its own framing and CRC).
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    entry.write_to_bytes().unwrap_or_default()
}

pub fn decode_entry(data: &[u8]) -> Result<Entry, DataError> {
    Entry::parse_from_bytes(data).map_err(|e| DataError(format!("undecodable raft entry: {e}")))
}

pub fn encode_hard_state(hs: &HardState) -> Vec<u8> {
    hs.write_to_bytes().unwrap_or_default()
}

pub fn decode_hard_state(data: &[u8]) -> Result<HardState, DataError> {
    HardState::parse_from_bytes(data).map_err(|e| DataError(format!("undecodable raft hard state: {e}")))
}

pub fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    snapshot.write_to_bytes().unwrap_or_default()
}

pub fn decode_snapshot(data: &[u8]) -> Result<Snapshot, DataError> {
    Snapshot::parse_from_bytes(data).map_err(|e| DataError(format!("undecodable raft snapshot: {e}")))
}

/// Folds one applied entry into the running digest (index, term, then the data eight bytes at a time, each step an
/// xor, an odd multiply and a rotation: each a bijection, so one differing word always shows): nodes that applied
/// the same entries in the same order have the same digest, so an entry applied twice or skipped shows. A word at a
/// time, not FNV-1a's byte at a time: the byte loop cost a follower 5 % of its CPU in a QoS 1 bench.
pub fn fold_digest(digest: u64, index: u64, term: u64, data: &[u8]) -> u64 {
    const PRIME: u64 = 0x100_0000_01b3;
    let step = |h: u64, word: u64| (h ^ word).wrapping_mul(PRIME).rotate_left(29);
    let mut h = step(step(digest ^ 0xcbf2_9ce4_8422_2325, index), term);
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut array = [0u8; 8];
        array.copy_from_slice(word);
        h = step(h, u64::from_le_bytes(array));
    }
    // The tail with its length, so that data differing only in trailing zero bytes differs.
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    step(step(h, u64::from_le_bytes(tail)), data.len() as u64)
}
