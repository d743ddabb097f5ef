//! Durable state as deterministic records (see `record`) and the state they rebuild (see `image`). The broker core
//! emits records; storage (real files in `io`, a simulated disk in `sim`) keeps them; recovery replays them into an
//! [`Image`] and hands it to [`crate::broker::Broker::restore`].

pub mod frame;
mod image;
pub mod log;
mod record;
pub mod sanity;

pub use image::{session_records, EntryImage, Image, RetainedSink, SessionImage};
pub use record::{Peek, Record, RecordError, SentState, StoredMessage, StoredWill};
