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
#[derive(Debug)]
pub struct Pending {
    /// Each record as its length (4 bytes) and encoding.
    records: BytesMut,
    count: usize,
    scratch: BytesMut,
    /// The first record of this commit that could not be encoded: the commit is refused whole (a commit without
    /// it would look whole on disk while lacking what later records and acknowledgements depend on).
    refused: Option<Refused>,
    /// The largest frame body the log's format lets recovery read back ([`frame::MAX_BODY`]; smaller in tests).
    max_body: usize,
}

/// Why a commit cannot be written: which of its records, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The record's position in its commit (0 for the first).
    pub index: usize,
    pub detail: String,
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            records: BytesMut::new(),
            count: 0,
            scratch: BytesMut::new(),
            refused: None,
            max_body: frame::MAX_BODY,
        }
    }
}

impl Pending {
    /// Adds `record` to the commit. One that cannot be encoded (a value the MQTT wire format could not carry
    /// either, or an encoding past the frame format's limit) refuses the whole commit: [`Pending::refused`] says
    /// which and why, and the commit stays pending (so the sends waiting for it stay held) until cleared.
    pub fn push(&mut self, record: &Record) -> Result<(), Refused> {
        let index = self.count;
        let refuse = |detail: String| Refused { index, detail };
        if let Some(refused) = &self.refused {
            return Err(refused.clone());
        }
        self.scratch.clear();
        let result = match record.encode(&mut self.scratch) {
            Err(e) => Err(refuse(format!("{} cannot be encoded: {e:?}", record_kind(record)))),
            // The body of a batch frame: its tag, then each record with its 4-byte length.
            Ok(()) if 1 + self.records.len() + 4 + self.scratch.len() > self.max_body => Err(refuse(format!(
                "{} of {} bytes takes its commit past the log frame's limit of {} bytes",
                record_kind(record),
                self.scratch.len(),
                self.max_body
            ))),
            Ok(()) => {
                // Within `max_body`, so it fits the 4-byte length.
                self.records.put_u32(self.scratch.len() as u32);
                self.records.put_slice(&self.scratch);
                Ok(())
            }
        };
        self.count += 1;
        if let Err(refused) = &result {
            self.refused = Some(refused.clone());
        }
        result
    }

    /// Why this commit cannot be written, if it cannot.
    pub fn refused(&self) -> Option<&Refused> {
        self.refused.as_ref()
    }

    #[cfg(test)]
    pub fn set_max_body(&mut self, max_body: usize) {
        self.max_body = max_body;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn clear(&mut self) {
        self.records.clear();
        self.count = 0;
        self.refused = None;
    }

    /// Frames the pending records as one commit into `out` (cleared first). Not for a refused commit (its records
    /// are incomplete).
    pub fn frame(&self, out: &mut BytesMut) {
        debug_assert!(self.refused.is_none(), "a refused commit is never framed");
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

/// What a record is, for an error message: its kind and what it belongs to (not its contents, which may be large).
fn record_kind(record: &Record) -> String {
    let topic = |t: &str| -> String { t.chars().take(64).collect() };
    match record {
        Record::SessionOpen { key, .. } => format!("the SessionOpen record of session {key}"),
        Record::SessionExpiry { key, .. } => format!("a SessionExpiry record of session {key}"),
        Record::SessionOffline { key, .. } => format!("a SessionOffline record of session {key}"),
        Record::SessionEnd { key } => format!("the SessionEnd record of session {key}"),
        Record::Subscribe { key, .. } => format!("a Subscribe record of session {key}"),
        Record::Unsubscribe { key, .. } => format!("an Unsubscribe record of session {key}"),
        Record::Retain { message } => format!("the Retain record of topic {:?}", topic(&message.topic)),
        Record::RetainClear { topic: t } => format!("the RetainClear record of topic {:?}", topic(t)),
        Record::Store { id, message } => {
            format!("the Store record of message {id} (topic {:?})", topic(&message.topic))
        }
        Record::Enqueue { key, seq, .. } => format!("the Enqueue record of entry {seq} of session {key}"),
        Record::Sent { key, seq, .. } => format!("a Sent record of entry {seq} of session {key}"),
        Record::Done { key, seq } => format!("the Done record of entry {seq} of session {key}"),
        Record::Qos2Received { key, .. } => format!("a Qos2Received record of session {key}"),
        Record::Qos2Released { key, .. } => format!("a Qos2Released record of session {key}"),
        Record::WillPending { key, .. } => format!("the WillPending record of session {key}"),
        Record::WillDone { key } => format!("the WillDone record of session {key}"),
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
            pending.push(&session_end(key)).expect("encodable");
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
        pending.push(&session_end(7)).expect("encodable");
        let mut framed = BytesMut::new();
        pending.frame(&mut framed);
        let mut plain = BytesMut::new();
        append(&mut plain, &session_end(7), &mut BytesMut::new());
        assert_eq!(framed, plain);
        let replayed = replay(&plain, &mut Image::default(), &mut BTreeMap::new());
        assert_eq!((replayed.records, replayed.damage), (1, None));
    }
}
