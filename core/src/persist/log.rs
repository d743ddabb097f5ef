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

/// Applies every readable record of `data` to `image`, stopping at the first damage: a record that does not decode
/// or fails the [`super::sanity`] checks (a number that overflows, an entry whose message is missing) is damage too.
pub fn replay(data: &[u8], image: &mut Image) -> Replay {
    replay_frames(data, |body| {
        let record = Record::decode(Bytes::copy_from_slice(body)).map_err(|e| format!("undecodable record: {e}"))?;
        super::sanity::check(image, std::slice::from_ref(&record))?;
        image.apply(record);
        Ok(1)
    })
}

/// Walks the frames of `data` in order, handing each intact frame's body to `apply`, which applies it and returns
/// how many records it held, or why the body cannot be applied. Stops at the first damage: a torn or corrupt frame,
/// or a body `apply` refuses. One walk for every log format built on `frame` (single records here, group commits in
/// `mqtt-storage`), so that they classify damage alike.
pub fn replay_frames(data: &[u8], mut apply: impl FnMut(&[u8]) -> Result<u64, String>) -> Replay {
    let mut offset = 0;
    let mut records = 0;
    loop {
        // A frame whose checksum holds was written whole: if its records cannot be decoded or applied, the writer or
        // the disk is wrong, not a crash, and that is never a torn tail, also at the very end of the log.
        let (detail, whole_frame) = match frame::scan(data, offset) {
            Scan::End => {
                return Replay {
                    records,
                    valid_len: offset,
                    damage: None,
                }
            }
            Scan::Frame { body, next } => match apply(body) {
                Ok(applied) => {
                    records += applied;
                    offset = next;
                    continue;
                }
                Err(detail) => (detail, true),
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
