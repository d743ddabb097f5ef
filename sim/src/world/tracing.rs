//! Trace lines for what the broker writes to its disk: each record's kind and a digest of its exact encoding.

use super::*;
use mqtt_core::persist::Record;

impl World {
    /// A record the broker wrote, hashed as its encoded bytes (what reaches the disk, before framing).
    pub(super) fn trace_record(&mut self, record: &Record) {
        let mut bytes = BytesMut::new();
        if let Err(e) = record.encode(&mut bytes) {
            // Not the trace's to judge: recovery (see `disk`) reports a record that cannot be stored.
            self.log(format!("disk <- {} (does not encode: {e:?})", kind(record)));
            return;
        }
        let digest = self.trace.absorb(&bytes);
        self.log(format!("disk <- {} {} bytes {digest}", kind(record), bytes.len()));
    }
}

/// The record's variant name (from its `Debug` form, so that new kinds need no change here).
fn kind(record: &Record) -> String {
    let text = format!("{record:?}");
    let end = text.find([' ', '{', '(']).unwrap_or(text.len());
    text[..end].to_string()
}
