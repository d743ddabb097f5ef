//! The log's format: one frame (length, CRC-32, body; `mqtt_core::persist::frame`) per group commit, so that a
//! commit is atomic. A crash in the middle of a write tears its frame, and recovery drops the whole commit, never a
//! part of it (a part could hold a message queued for a subscriber without the publisher's QoS 2 receipt that
//! makes its resend a duplicate, say).
//!
//! A commit of one record is framed as the record itself (as every record was before batches existed, so older
//! logs replay unchanged); a commit of several is one frame whose body is [`BATCH`] followed by each record with a
//! 4-byte length. The records inside carry no checksum of their own: the frame's covers them, and a torn batch must
//! not look like valid frames to the torn-tail check.

use bytes::{BufMut, Bytes, BytesMut};
use mqtt_core::persist::frame;
use mqtt_core::persist::log::{replay_frames, Replay};
use mqtt_core::persist::{Image, Record, RetainedSink};

/// First byte of a batch frame's body; no record's tag.
const BATCH: u8 = 0xB7;

/// The records of the next group commit.
#[derive(Debug, Default)]
pub struct Pending {
    /// Each record as its length (4 bytes) and encoding.
    records: BytesMut,
    count: usize,
    scratch: BytesMut,
}

impl Pending {
    pub fn push(&mut self, record: &Record) {
        self.scratch.clear();
        // Only values the MQTT wire format could not carry either fail to encode; the core never produces them.
        if record.encode(&mut self.scratch).is_ok() {
            self.records
                .put_u32(u32::try_from(self.scratch.len()).unwrap_or(u32::MAX));
            self.records.put_slice(&self.scratch);
            self.count += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn clear(&mut self) {
        self.records.clear();
        self.count = 0;
    }

    /// Frames the pending records as one commit into `out` (cleared first).
    pub fn frame(&self, out: &mut BytesMut) {
        out.clear();
        match self.count {
            0 => {}
            1 => frame::put(out, &self.records[4..]),
            _ => {
                let mut body = BytesMut::with_capacity(1 + self.records.len());
                body.put_u8(BATCH);
                body.put_slice(&self.records);
                frame::put(out, &body);
            }
        }
    }
}

/// The records of one frame's body: a single record, or a batch.
pub fn decode(body: &[u8]) -> Result<Vec<Record>, String> {
    let Some(mut rest) = body.strip_prefix(&[BATCH]) else {
        return Record::decode(Bytes::copy_from_slice(body))
            .map(|r| vec![r])
            .map_err(|e| format!("undecodable record: {e}"));
    };
    let mut records = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or("a batch's record length is cut short")?;
        let len = u32::from_be_bytes(*len) as usize;
        let encoded = tail.get(..len).ok_or("a batch's record is cut short")?;
        let record = Record::decode(Bytes::copy_from_slice(encoded))
            .map_err(|e| format!("undecodable record in a batch: {e}"))?;
        records.push(record);
        rest = &tail[len..];
    }
    Ok(records)
}

/// Applies every readable commit of `data` to `image`, stopping at the first damage: a commit whose records do not
/// decode or fail the sanity checks is damage too, and none of its records is applied.
/// Retained messages go to `retained`.
pub fn replay(data: &[u8], image: &mut Image, retained: &mut dyn RetainedSink) -> Replay {
    replay_frames(data, |body| {
        let commit = decode(body)?;
        crate::sanity::check(image, &commit)?;
        let applied = commit.len() as u64;
        for record in commit {
            image.apply_with(record, retained);
        }
        Ok(applied)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_core::persist::log::append;
    use std::collections::BTreeMap;

    fn session_end(key: u64) -> Record {
        Record::SessionEnd { key }
    }

    #[test]
    fn a_commit_replays_whole_or_not_at_all() {
        let mut pending = Pending::default();
        for key in 0..3 {
            pending.push(&session_end(key));
        }
        let mut log = BytesMut::new();
        pending.frame(&mut log);
        let whole = replay(&log, &mut Image::default(), &mut BTreeMap::new());
        assert_eq!((whole.records, whole.damage), (3, None));
        // Torn anywhere, the commit is a torn tail and none of its records is applied.
        for cut in 1..log.len() {
            let torn = replay(&log[..cut], &mut Image::default(), &mut BTreeMap::new());
            assert_eq!(torn.records, 0, "cut at {cut}");
            assert!(
                torn.damage.is_some_and(|d| d.torn_tail && d.offset == 0),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn one_record_commits_and_older_logs_are_plain_frames() {
        let mut pending = Pending::default();
        pending.push(&session_end(7));
        let mut framed = BytesMut::new();
        pending.frame(&mut framed);
        let mut plain = BytesMut::new();
        append(&mut plain, &session_end(7), &mut BytesMut::new());
        assert_eq!(framed, plain);
        let replayed = replay(&plain, &mut Image::default(), &mut BTreeMap::new());
        assert_eq!((replayed.records, replayed.damage), (1, None));
    }
}
