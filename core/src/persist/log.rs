//! Replaying a log of framed records, the same way for real files (`io`) and the simulated disk (`sim`). Damage at
//! the end with nothing valid after it is a write torn by a crash; damage followed by valid records is corruption
//! that must not be silently dropped.

use super::frame::{self, Scan};
use super::{Image, Record};
use bytes::{Bytes, BytesMut};

/// Frames one record and appends it to `out`.
pub fn append(out: &mut BytesMut, record: &Record, scratch: &mut BytesMut) {
    scratch.clear();
    // Only values the MQTT wire format could not carry either fail to encode; the core never produces them.
    if record.encode(scratch).is_ok() {
        frame::put(out, scratch);
    }
}

/// Where a log stops being readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub offset: usize,
    pub detail: String,
    /// Nothing valid follows: the last write was cut short (truncating there loses nothing that was synced).
    pub torn_tail: bool,
}

/// What replaying a log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub records: u64,
    /// Length of the readable prefix: where the log should be truncated if it is damaged.
    pub valid_len: usize,
    pub damage: Option<Damage>,
}

/// Applies every readable record of `data` to `image`, stopping at the first damage.
pub fn replay(data: &[u8], image: &mut Image) -> Replay {
    let mut offset = 0;
    let mut records = 0;
    loop {
        // A frame whose checksum holds was written whole: a record in it that does not decode is never a torn tail.
        let (detail, whole_frame) = match frame::scan(data, offset) {
            Scan::End => {
                return Replay {
                    records,
                    valid_len: offset,
                    damage: None,
                }
            }
            Scan::Frame { body, next } => match Record::decode(Bytes::copy_from_slice(body)) {
                Ok(record) => {
                    image.apply(record);
                    records += 1;
                    offset = next;
                    continue;
                }
                Err(e) => (format!("undecodable record: {e}"), true),
            },
            Scan::Truncated => ("a record cut short".to_string(), false),
            Scan::Corrupt => ("checksum mismatch".to_string(), false),
        };
        let torn_tail = !whole_frame && frame::valid_frame_after(data, offset).is_none();
        return Replay {
            records,
            valid_len: offset,
            damage: Some(Damage {
                offset,
                detail,
                torn_tail,
            }),
        };
    }
}
