//! The durable state frozen for a snapshot written off the event loop: the driver hands it to a thread and goes on
//! serving clients while the thread encodes and writes it.
//!
//! Retained messages are the bulk of a large state (a million of them, say) and are immutable once stored (a new
//! value replaces the `Arc`, never changes it), so the frozen state shares them: a pointer each instead of a copy of
//! topic, properties and payload handle. Sessions and the messages their queue entries refer to are copied, as in
//! [`Broker::image`]: their size is bounded by the queue limits, and they change in place.

use super::durable::stored_message;
use super::message::Message;
use super::Broker;
use crate::persist::{Image, Record};
use std::sync::Arc;

/// The durable state at one moment, owned, and `Send` so a thread can write it.
#[derive(Debug, Default)]
pub struct FrozenImage {
    /// Retained messages (`$SYS` topics left out, as in [`Broker::image`]), in topic order.
    retained: Vec<Arc<Message>>,
    /// Everything else: sessions and the messages their entries refer to (and retained messages only if frozen
    /// [`FrozenImage::from_image`]).
    rest: Image,
}

impl FrozenImage {
    /// An image taken otherwise (a core that is not a [`Broker`]), frozen as it is: its records, retained ones
    /// included, are its own.
    pub fn from_image(image: Image) -> FrozenImage {
        FrozenImage {
            retained: Vec::new(),
            rest: image,
        }
    }

    /// The records that rebuild this state from nothing, the same as [`Image::to_records`] of [`Broker::image`]
    /// at the moment of the freeze; each retained record is built as it is written, so only one is copied at a time.
    pub fn to_records(&self) -> impl Iterator<Item = Record> + '_ {
        let retained = self.retained.iter().map(|m| Record::Retain {
            message: Box::new(stored_message(m)),
        });
        retained.chain(self.rest.to_records())
    }

    /// Retained messages in the frozen state.
    pub fn retained_len(&self) -> usize {
        self.retained.len()
    }

    /// The state as an [`Image`] (copies every retained message: for tests and the simulator).
    pub fn to_image(&self) -> Image {
        let mut image = self.rest.clone();
        for message in &self.retained {
            image
                .retained
                .insert(message.topic.to_string(), stored_message(message));
        }
        image
    }
}

/// The thread that writes a snapshot owns its frozen state.
const _: fn() = || {
    fn send<T: Send + 'static>() {}
    send::<FrozenImage>();
};

impl Broker {
    /// The durable state as it stands, frozen for a snapshot written elsewhere (see the module comment): costs a
    /// pointer per retained message and a copy of the sessions.
    pub fn frozen_image(&self) -> FrozenImage {
        let mut retained = Vec::new();
        self.retained.for_each(|topic, message| {
            if !topic.starts_with(super::sys::SYS_PREFIX) {
                retained.push(Arc::clone(message));
            }
        });
        FrozenImage {
            retained,
            rest: self.image_without_retained(),
        }
    }
}
